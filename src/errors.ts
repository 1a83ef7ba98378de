/**
 * Typed errors. Every failure tensorvault reports is a {@link TensorVaultError} with a stable `code`
 * from {@link ErrorCode} and a `context` object holding what is needed to act on it (path, errno,
 * expected, actual, ...).
 */

/** The stable error codes. New codes may be added; existing ones never change meaning. */
export const ErrorCode = {
  /** An argument has the wrong type or an out-of-range value. */
  INVALID_ARGUMENT: 'TV_INVALID_ARGUMENT',
  /** The path does not exist. */
  NOT_FOUND: 'TV_NOT_FOUND',
  /** The process may not read or write the path. */
  PERMISSION_DENIED: 'TV_PERMISSION_DENIED',
  /** A folder was given where a file is expected. */
  IS_DIRECTORY: 'TV_IS_DIRECTORY',
  /**
   * A socket, FIFO or device was given where a regular file is expected, or anything but a folder where
   * a folder is expected (`context.kind`: `a regular file`, `a FIFO`, …).
   */
  NOT_A_FILE: 'TV_NOT_A_FILE',
  /** The file changed size while it was being read. */
  FILE_CHANGED: 'TV_FILE_CHANGED',
  /** Any other operating-system I/O failure (see `context.errno`, `context.syscall`). */
  IO: 'TV_IO',
  /** Stored data is inconsistent with itself. */
  CORRUPT: 'TV_CORRUPT',
  /** `update()` or `digest()` was called on a hash that is already finished. */
  HASH_FINALIZED: 'TV_HASH_FINALIZED',
  /** Another live writer holds the lock of an event log or ring log (`context.path`, `context.pid`). */
  LOCKED: 'TV_LOCKED',
  /** The destination already holds data that the operation refuses to replace (see `--overwrite`). */
  EXISTS: 'TV_EXISTS',
  /**
   * A restore into this folder was interrupted (or is running) before its log was in place: a read-only
   * open refuses it; the next read-write open or restore finishes or undoes it (`context.path`).
   */
  RESTORE_INCOMPLETE: 'TV_RESTORE_INCOMPLETE',
  /** A hash chain does not verify (see `context.reason`, `context.index`). */
  CHAIN_INVALID: 'TV_CHAIN_INVALID',
  /** A file's bytes do not match the SHA-256 or size recorded for it. */
  CHECKSUM_MISMATCH: 'TV_CHECKSUM_MISMATCH',
  /** An archive holds something a safe restore must refuse (path escape, link, device, unlisted file). */
  UNSAFE_ARCHIVE: 'TV_UNSAFE_ARCHIVE',
  /** Input exceeded a size, count or depth budget (decompression bomb, export/replay limit). */
  BUDGET_EXCEEDED: 'TV_BUDGET_EXCEEDED',
  /** A manifest signature is missing, malformed or does not verify. */
  SIGNATURE_INVALID: 'TV_SIGNATURE_INVALID',
  /**
   * A safetensors file (or sharded index) failed validation; `context.reason` names the rule
   * (`header_too_large`, `offset_gap`, `trailing_bytes`, ...) and `context.name` the tensor.
   */
  SAFETENSORS_INVALID: 'TV_SAFETENSORS_INVALID',
  /** No tensor of that name in the file. */
  TENSOR_NOT_FOUND: 'TV_TENSOR_NOT_FOUND',
  /** A tensor is larger than one ArrayBuffer may be on this runtime; read it in chunks. */
  TENSOR_TOO_LARGE: 'TV_TENSOR_TOO_LARGE',
  /** A tensor's data does not have the byte length its dtype and shape require. */
  TENSOR_SIZE_MISMATCH: 'TV_TENSOR_SIZE_MISMATCH',
  /** `tensor(name, dtype)` asked for a dtype the tensor does not have (`context.expected`, `actual`). */
  TENSOR_DTYPE_MISMATCH: 'TV_TENSOR_DTYPE_MISMATCH',
  /** The runtime forbids external ArrayBuffers and copying was not allowed. */
  EXTERNAL_BUFFERS_UNAVAILABLE: 'TV_EXTERNAL_BUFFERS_UNAVAILABLE',
  /** A Reed-Solomon block has more damage than its parity can repair (`context.block`, `offset`, `end`). */
  ECC_UNCORRECTABLE: 'TV_ECC_UNCORRECTABLE',
  /** A protection level other than `off`, `none`, `0`, `low`, `med`, `high` (`context.level`). */
  ECC_UNKNOWN_PROTECTION: 'TV_ECC_UNKNOWN_PROTECTION',
  /** An ECC codec name other than `rs(N)` with N from 1 to 254, or `none` (`context.name`). */
  ECC_UNKNOWN_CODEC: 'TV_ECC_UNKNOWN_CODEC',
  /** A parity stream whose length does not fit the data (`context.expected`, `actual`). */
  ECC_PARITY_LENGTH: 'TV_ECC_PARITY_LENGTH',
  /** An inline ECC chunk whose length cannot be whole blocks (typically truncated; `context.length`). */
  ECC_INVALID_LENGTH: 'TV_ECC_INVALID_LENGTH',
  /** Damage exceeds the parity budget: `context.chunks` lists the chunks that cannot be rebuilt. */
  ECC_UNREPAIRABLE: 'TV_ECC_UNREPAIRABLE',
  /** An ECC sidecar is unusable: both header copies, or both copies of a digest-table block, are damaged. */
  ECC_SIDECAR_CORRUPT: 'TV_ECC_SIDECAR_CORRUPT',
  /**
   * The file was modified after it was protected (modification time or length differ from the sidecar's
   * record) and most of it differs: the sidecar looks stale, and `repair` refuses to roll the edit back
   * unless `force` is set (`context.path`, `sidecar`, `differingBytes`, `fileLength`).
   */
  ECC_STALE_SIDECAR: 'TV_ECC_STALE_SIDECAR',
  /** A repair produced bytes that failed verification; nothing was replaced. */
  ECC_REPAIR_FAILED: 'TV_ECC_REPAIR_FAILED',
  /** A checkpoint's files are malformed or missing a sidecar (`context.reason`, `context.path`). */
  CHECKPOINT_INVALID: 'TV_CHECKPOINT_INVALID',
  /** A checkpoint's integrity hash or seal does not match its bytes and metadata. */
  CHECKPOINT_INTEGRITY: 'TV_CHECKPOINT_INTEGRITY',
  /** A tensor's bytes do not match their chunk digests and could not be repaired (`context.tensor`, `chunks`). */
  CHECKPOINT_TENSOR_DAMAGED: 'TV_CHECKPOINT_TENSOR_DAMAGED',
  /** The tensors differ from what the caller expects (missing, unexpected, wrong shape or dtype). */
  CHECKPOINT_MISMATCH: 'TV_CHECKPOINT_MISMATCH',
  /** The checkpoint's version is not the expected one (`context.expected`, `actual`). */
  CHECKPOINT_VERSION: 'TV_CHECKPOINT_VERSION',
  /** A keyed (HMAC) integrity hash is required, or a key is needed to check one (no downgrade). */
  CHECKPOINT_HMAC_REQUIRED: 'TV_CHECKPOINT_HMAC_REQUIRED',
  /** A load_secure manifest points outside its folder or carries no hash (`context.reason`). */
  CHECKPOINT_UNSAFE_MANIFEST: 'TV_CHECKPOINT_UNSAFE_MANIFEST',
  /**
   * A v2 event log created with `hmacKey` was opened (or restored, or verified from a backup) without
   * it: its records carry an HMAC that cannot be checked (`context.path`: its `log.json`,
   * `context.reason: 'key_missing'`). Give the key: `hmacKey` / `logKey`, CLI `--log-key-env NAME`.
   */
  EVENTLOG_HMAC_REQUIRED: 'TV_EVENTLOG_HMAC_REQUIRED',
  /**
   * A key was given (`hmacKey` / `logKey`, CLI `--log-key-env NAME`) for an event log that is not
   * keyed: a v2 log whose metadata carries a plain SHA-256 check, which verifies, and no HMAC
   * (`context.path`: its `log.json`), or a legacy (Libervia) log, a format without HMAC
   * (`context.path`: its `event-log` folder); `context.reason: 'log_not_keyed'`. Created without
   * `hmacKey`, or rewritten by someone without the key: refused either way (no downgrade). A check that
   * does not verify is `TV_CORRUPT`.
   */
  EVENTLOG_HMAC_UNEXPECTED: 'TV_EVENTLOG_HMAC_UNEXPECTED',
  /** A caller-supplied data source (a tensor's iterator) threw; `cause` is its error, `context.name` the tensor. */
  SOURCE_FAILED: 'TV_SOURCE_FAILED',
  /**
   * A `.fold` / `.mind` container is structurally invalid (`context.reason`: `bad_magic`, `unfinalised`,
   * `index_not_json`, `bad_offset`, `overlap`, `header_mismatch`, `bad_ecc_len`, `duplicate_name`, ...;
   * `context.chunk` when one chunk is concerned).
   */
  FOLD_INVALID: 'TV_FOLD_INVALID',
  /**
   * A `.fold` chunk or file-level hash does not verify and parity could not repair it
   * (`context.check`: `crc32c`, `digest`, `ecc`, `chunk_hashes`, `manifest_hash`, `merkle_root`,
   * `zstd`, `length`; `context.chunk`).
   */
  FOLD_CORRUPT: 'TV_FOLD_CORRUPT',
  /**
   * A `.fold` digest cannot be checked: it is keyed (`hmac-sha256:`) and no `hmacKey` was given, or a
   * key was given and the file is not keyed (`context.reason`: `key_missing`, `file_not_keyed`).
   */
  FOLD_UNVERIFIABLE: 'TV_FOLD_UNVERIFIABLE',
  /** A `.fold` chunk is encrypted and no `decryptionKey` was given (`context.chunk`). */
  FOLD_KEY_REQUIRED: 'TV_FOLD_KEY_REQUIRED',
  /** AES-GCM authentication of a `.fold` chunk failed: wrong key or tampered bytes (`context.chunk`). */
  FOLD_DECRYPT_FAILED: 'TV_FOLD_DECRYPT_FAILED',
  /** The caller's `.fold` policy refuses the file (`context.rule`). */
  FOLD_POLICY: 'TV_FOLD_POLICY',
  /** A `.fold` chunk tensorvault will not decode (a pickled `torch_state`; `context.chunk`). */
  FOLD_UNSUPPORTED: 'TV_FOLD_UNSUPPORTED',
  /** No chunk of that name in the `.fold` file (`context.chunk`). */
  FOLD_CHUNK_NOT_FOUND: 'TV_FOLD_CHUNK_NOT_FOUND',
  /**
   * An object store refused the credentials (HTTP 401/403: unknown access key, bad signature, access
   * denied), or none were found (`reason: CredentialsProviderError`; no request was sent). `context.url`,
   * `status`, `reason` (the store's error name); never a key or a signature.
   */
  REMOTE_AUTH: 'TV_REMOTE_AUTH',
  /**
   * No such object or bucket in the store, or no commit manifest (`context.reason: no_manifest`: the set
   * was never completely pushed). `context.url`, `key`.
   */
  REMOTE_NOT_FOUND: 'TV_REMOTE_NOT_FOUND',
  /**
   * Bytes read from (or stored in) an object store do not match their digests and could not be repaired
   * (`context.url`, `file`, `chunks`, `reason`: `chunk_digest`, `part_etag`, `manifest_mismatch`, `size`).
   */
  REMOTE_DAMAGED: 'TV_REMOTE_DAMAGED',
  /**
   * The store kept failing (network error, HTTP 5xx, throttling) after the retries with backoff
   * (`context.url`, `attempts`, `status`, `reason`).
   */
  REMOTE_UNAVAILABLE: 'TV_REMOTE_UNAVAILABLE',
  /** The operation was cancelled through its `AbortSignal`. */
  ABORTED: 'TV_ABORTED',
  /** The native addon could not be found or loaded for this platform. */
  NATIVE_UNAVAILABLE: 'TV_NATIVE_UNAVAILABLE',
  /** The object was used after `close()`. */
  CLOSED: 'TV_CLOSED',
  /** An optional peer package (`winston` for `tensorvault/winston`) is not installed (`context.package`). */
  MISSING_PEER: 'TV_MISSING_PEER',
  /** A bug inside tensorvault (for example a caught Rust panic). Please report it. */
  INTERNAL: 'TV_INTERNAL',
} as const;

/** One of the stable error codes. */
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Context attached to an error: string or number fields such as `path`, `errno`, `expected`. */
export type ErrorContext = Readonly<Record<string, string | number | null>>;

/** Fields any error's context may carry besides the ones its code documents. */
export interface CommonContext {
  readonly [field: string]: string | number | null | undefined;
}

/** Context of a file-system error. */
export interface FileContext {
  /** The path the error is about. */
  readonly path?: string;
  /**
   * The OS error number, positive as in `errno.h` and `os.constants.errno` (2 for ENOENT, 13 for
   * EACCES), from the native core and the TypeScript side alike (Node's own `err.errno` is libuv's
   * negative number; it is turned positive here).
   */
  readonly errno?: number;
  /** The system call that failed. */
  readonly syscall?: string;
  /**
   * The temporary file an atomic write went through, when the failure was there (`path` is then the
   * destination the caller asked for).
   */
  readonly tempPath?: string;
}

/**
 * The documented context fields of each error code (README "Errors"). Narrow an error to one code with
 * {@link TensorVaultError.is} and its `context` has these fields, typed:
 *
 * @example
 * if (e instanceof TensorVaultError && e.is('TV_ECC_UNREPAIRABLE')) console.log(e.context.chunks);
 */
export interface ErrorContextMap {
  TV_INVALID_ARGUMENT: {
    /** The argument, or the path of the bad field (`options.sign.key`, `shape[1]`). */
    readonly argument?: string;
    readonly actual?: string | number;
    readonly min?: number;
    readonly max?: number;
    /** A request an object store refused (any other HTTP 4xx): the URL, the status and its error name. */
    readonly url?: string;
    readonly status?: number;
    readonly reason?: string;
  };
  TV_NOT_FOUND: FileContext;
  TV_PERMISSION_DENIED: FileContext;
  TV_IS_DIRECTORY: FileContext;
  TV_NOT_A_FILE: FileContext & {
    /** What the path is instead (`a FIFO`, `a socket`, `a regular file`, …). */
    readonly kind?: string;
  };
  TV_IO: FileContext;
  TV_FILE_CHANGED: FileContext & {
    readonly expected?: number;
    readonly actual?: number;
    /**
     * `replaced`: a checkpoint repair found its set replaced by a newer save and repaired nothing.
     * `object_changed`: a remote repair found the stored weights replaced by another writer after it
     * read them, and wrote nothing (`write_conflict`: another conditional write to the key was in
     * flight). `chunk_digest`: its pulled copy changed on the local disk before the rewrite.
     * `concurrent_push`: another push to the same key replaced an object of the set a push had just
     * written (`file`), so the stored set is not that push's.
     */
    readonly reason?: string;
  };
  TV_LOCKED: {
    readonly path?: string;
    /** The holder's process id, host and since when it holds the lock (when the lock file says). */
    readonly pid?: number;
    readonly hostname?: string;
    readonly since?: string;
    /**
     * `'note-lock'` when the holder is a tensorvault from before the flock lock (built before f236a3e),
     * which locks by its lock-file note alone: a live process on this host that the note names.
     */
    readonly olderBuild?: 'note-lock';
  };
  TV_EXISTS: {
    readonly path?: string;
    /**
     * `object_exists`: a push without `overwrite` found an object already stored at one of its keys
     * when it made it visible (a conditional write, `If-None-Match: *`, refused it: another push won).
     * `write_conflict`: the store refused it because another conditional write to the key was in flight.
     */
    readonly reason?: string;
  };
  TV_REMOTE_AUTH: {
    readonly url?: string;
    /** The HTTP status; `null` when no response was received (no credentials found: no request sent). */
    readonly status?: number | null;
    readonly reason?: string;
  };
  TV_REMOTE_NOT_FOUND: { readonly url?: string; readonly key?: string; readonly reason?: string };
  TV_REMOTE_DAMAGED: {
    readonly url?: string;
    readonly file?: string;
    /** The tensor a lazy remote load was asked for, when the damage is in its chunks. */
    readonly tensor?: string;
    /** The damaged chunks (of `chunk_size` bytes), comma-separated. */
    readonly chunks?: string;
    /** With `reason: 'short_object'`: the HTTP status of the refused range (`null`: none received). */
    readonly status?: number | null;
    readonly reason?: string;
  };
  TV_REMOTE_UNAVAILABLE: {
    readonly url?: string;
    readonly attempts?: number;
    /** The last HTTP status; `null` when the last attempt got no response (a network error). */
    readonly status?: number | null;
    readonly reason?: string;
  };
  TV_CORRUPT: {
    readonly path?: string;
    readonly reason?: string;
    readonly expected?: number;
    readonly actual?: number;
  };
  TV_CHAIN_INVALID: {
    readonly path?: string;
    readonly reason?: string | null;
    readonly index?: number | null;
  };
  TV_CHECKSUM_MISMATCH: {
    readonly path?: string;
    readonly expected?: string | null;
    readonly actual?: string | null;
  };
  TV_SAFETENSORS_INVALID: {
    /** A stable reason (`header_too_large`, `overlapping_tensors`, `unknown_dtype`, …). */
    readonly reason?: string;
    /** The tensor, when the problem is one tensor's. */
    readonly name?: string;
    readonly expected?: number;
    readonly actual?: number;
  };
  TV_TENSOR_NOT_FOUND: { readonly name?: string };
  TV_TENSOR_TOO_LARGE: { readonly name?: string; readonly actual?: number; readonly max?: number };
  TV_TENSOR_SIZE_MISMATCH: { readonly name?: string; readonly expected?: number; readonly actual?: number };
  TV_TENSOR_DTYPE_MISMATCH: { readonly name?: string; readonly expected?: string; readonly actual?: string };
  TV_ECC_UNREPAIRABLE: {
    readonly path?: string;
    /** The data chunks that cannot be rebuilt, comma-separated (`"0,16,32"`). */
    readonly chunks?: string;
    /** The stripes that lost more chunks than they have parity, comma-separated. */
    readonly stripes?: string;
  };
  TV_ECC_STALE_SIDECAR: {
    readonly path?: string;
    readonly sidecar?: string;
    /** Bytes of the file that differ from what was protected. */
    readonly differingBytes?: number;
    readonly fileLength?: number;
  };
  TV_ECC_UNCORRECTABLE: {
    readonly block?: number;
    readonly offset?: number;
    readonly end?: number;
    readonly parity?: number;
  };
  TV_ECC_INVALID_LENGTH: {
    /** The inline chunk's length, and the parity bytes per block. */
    readonly length?: number;
    readonly parity?: number;
  };
  TV_ECC_SIDECAR_CORRUPT: { readonly path?: string; readonly reason?: string };
  TV_ECC_UNKNOWN_PROTECTION: { readonly level?: string };
  TV_ECC_UNKNOWN_CODEC: { readonly name?: string };
  TV_ECC_PARITY_LENGTH: {
    readonly dataLength?: number;
    readonly expected?: number;
    readonly actual?: number;
  };
  TV_CHECKPOINT_INVALID: { readonly path?: string; readonly reason?: string; readonly actual?: string };
  TV_CHECKPOINT_INTEGRITY: {
    readonly path?: string;
    /**
     * `seal`, `header`, `hash`, `key` (PyFolds layouts: the keyed hash does not match bytes that
     * independent evidence says are intact; the key is probably wrong) or a description of the damage.
     */
    readonly reason?: string;
    /** With `reason: 'key'`: what vouches for the bytes, `rs` (the rs(N) stream) or `tvecc`. */
    readonly evidence?: string;
    /** Damaged chunks and tensors, comma-separated. */
    readonly chunks?: string;
    readonly tensors?: string;
    /** With `reason: 'key'`: the rs(N) blocks whose correction was tried too, comma-separated. */
    readonly blocks?: string;
    readonly expected?: number;
    readonly actual?: number;
  };
  TV_CHECKPOINT_TENSOR_DAMAGED: {
    readonly path?: string;
    readonly tensor?: string;
    /** Damaged chunk indices, comma-separated. */
    readonly chunks?: string;
    readonly reason?: string;
  };
  TV_CHECKPOINT_MISMATCH: {
    readonly path?: string;
    readonly missing?: number;
    readonly unexpected?: number;
    readonly wrongShape?: number;
    readonly wrongDtype?: number;
  };
  TV_CHECKPOINT_VERSION: {
    readonly path?: string;
    readonly expected?: string;
    readonly actual?: string | null;
  };
  TV_CHECKPOINT_HMAC_REQUIRED: { readonly path?: string; readonly actual?: string };
  TV_EVENTLOG_HMAC_REQUIRED: { readonly path?: string; readonly reason?: 'key_missing' };
  TV_EVENTLOG_HMAC_UNEXPECTED: { readonly path?: string; readonly reason?: 'log_not_keyed' };
  TV_CHECKPOINT_UNSAFE_MANIFEST: {
    readonly path?: string;
    readonly reason?: string;
    readonly weightFile?: string;
  };
  TV_SOURCE_FAILED: {
    /** The tensor whose data source threw (its error is the `cause`). */
    readonly name?: string;
  };
  TV_FOLD_INVALID: { readonly path?: string; readonly reason?: string; readonly chunk?: string };
  TV_FOLD_CORRUPT: { readonly path?: string; readonly check?: string; readonly chunk?: string };
  TV_FOLD_UNVERIFIABLE: { readonly path?: string; readonly reason?: string };
  TV_FOLD_KEY_REQUIRED: { readonly path?: string; readonly chunk?: string };
  TV_FOLD_DECRYPT_FAILED: { readonly path?: string; readonly chunk?: string };
  TV_FOLD_POLICY: { readonly path?: string; readonly rule?: string };
  TV_FOLD_UNSUPPORTED: { readonly path?: string; readonly chunk?: string };
  TV_FOLD_CHUNK_NOT_FOUND: { readonly path?: string; readonly chunk?: string };
  TV_MISSING_PEER: { readonly package?: string };
  TV_NATIVE_UNAVAILABLE: {
    readonly platform?: string;
    readonly arch?: string;
    readonly libc?: string | null;
    readonly packages?: string;
    readonly override?: string | null;
    readonly tried?: string;
  };
}

/** The context type of errors with code `C`. */
export type ContextOf<C extends ErrorCode> = C extends keyof ErrorContextMap
  ? ErrorContextMap[C] & CommonContext
  : CommonContext;

const KNOWN_CODES: ReadonlySet<string> = new Set(Object.values(ErrorCode));

/**
 * The error every tensorvault API throws or rejects with. `code` is stable; `context` carries the facts
 * of the failure, typed per code ({@link ErrorContextMap}). `err instanceof TensorVaultError` gives a
 * `TensorVaultError` whose `code` is an {@link ErrorCode} (a misspelt code does not compile) and whose
 * `context` is the union of the documented contexts; {@link TensorVaultError.is} narrows both to one code.
 * `TensorVaultError<'TV_X'>` is the error of code `TV_X`.
 */
export interface TensorVaultError<C extends ErrorCode = ErrorCode> extends Error {
  /** Stable machine-readable code. */
  readonly code: C;
  /** Facts about the failure (path, errno, expected, actual, ...); see {@link ErrorContextMap}. */
  readonly context: ContextOf<C>;
  /** Whether this error has code `code`; narrows `code` and `context` to that code's. */
  is<K extends ErrorCode>(code: K): this is TensorVaultError<K>;
  /** The path the error is about, when there is one. */
  readonly path: string | undefined;
  /** The OS errno behind the error, when there is one (positive: `os.constants.errno`). */
  readonly errno: number | undefined;
}

/**
 * The {@link TensorVaultError} class. Its `prototype` is typed `TensorVaultError` (every code), so that
 * `instanceof` narrows to the union of codes: a generic class would narrow to `TensorVaultError<any>`,
 * whose `code` and `context` accept anything.
 */
export interface TensorVaultErrorConstructor {
  new <C extends ErrorCode>(
    code: C,
    message: string,
    /** The facts of the failure; another error's `context` may be passed on as it is. */
    context?: ErrorContext | CommonContext,
    options?: { cause?: unknown },
  ): TensorVaultError<C>;
  readonly prototype: TensorVaultError;
}

/** The implementation of {@link TensorVaultError} (exported under that name, typed by the interface). */
class TensorVaultErrorClass extends Error {
  readonly code: ErrorCode;
  readonly context: ContextOf<ErrorCode>;

  constructor(
    code: ErrorCode,
    message: string,
    context: ErrorContext | CommonContext = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TensorVaultError';
    this.code = code;
    this.context = Object.freeze({ ...context }) as ContextOf<ErrorCode>;
  }

  is(code: ErrorCode): boolean {
    return this.code === code;
  }

  get path(): string | undefined {
    const p = this.context.path;
    return typeof p === 'string' ? p : undefined;
  }

  get errno(): number | undefined {
    const e = this.context.errno;
    return typeof e === 'number' ? e : undefined;
  }
}
// The constructor's own name, as `class TensorVaultError` had (`err.constructor.name`, stack headers).
Object.defineProperty(TensorVaultErrorClass, 'name', { value: 'TensorVaultError' });

export const TensorVaultError = TensorVaultErrorClass as unknown as TensorVaultErrorConstructor;

/**
 * Rejection of an operation cancelled through an `AbortSignal`. Its `name` is `'AbortError'` as in the
 * rest of Node; `cause` is the signal's `reason`.
 */
export class TensorVaultAbortError extends TensorVaultError<'TV_ABORTED'> {
  constructor(message = 'The operation was aborted', cause?: unknown) {
    super(ErrorCode.ABORTED, message, {}, cause === undefined ? undefined : { cause });
    this.name = 'AbortError';
  }
}

/**
 * The {@link TensorVaultAbortError} of work stopped by `signal`: `cause` is `signal.reason` (none
 * without a signal); `message` when the default ("The operation was aborted") says too little.
 */
export function abortError(signal: AbortSignal | undefined, message?: string): TensorVaultAbortError {
  return new TensorVaultAbortError(message, signal?.reason);
}

/** Throw {@link abortError} when `signal` has fired. */
export function throwIfAborted(signal: AbortSignal | undefined, message?: string): void {
  if (signal?.aborted) throw abortError(signal, message);
}

/** Shorthand for an invalid-argument error naming the argument. */
export function invalidArgument(
  argument: string,
  message: string,
  context: ErrorContext = {},
): TensorVaultError {
  return new TensorVaultError(ErrorCode.INVALID_ARGUMENT, message, { argument, ...context });
}

const MARKER = 'TVERR1:';

interface NativePayload {
  code: string;
  message: string;
  context: Record<string, string | number | null>;
}

function parsePayload(text: string): NativePayload | undefined {
  try {
    const v: unknown = JSON.parse(text);
    if (typeof v === 'object' && v !== null && 'code' in v && 'message' in v) {
      const p = v as NativePayload;
      if (typeof p.code === 'string' && typeof p.message === 'string') return p;
    }
  } catch {
    // not a payload
  }
  return undefined;
}

/**
 * Turn whatever the native addon threw into a {@link TensorVaultError}. The binding encodes its typed
 * errors as a marked JSON payload; napi-rs's own argument errors become `TV_INVALID_ARGUMENT`.
 */
export function fromNative(err: unknown, signal?: AbortSignal): TensorVaultError {
  if (err instanceof TensorVaultError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (message.startsWith(MARKER)) {
    const payload = parsePayload(message.slice(MARKER.length));
    if (payload !== undefined) {
      if (payload.code === ErrorCode.ABORTED) {
        return abortError(signal, payload.message);
      }
      const code = KNOWN_CODES.has(payload.code) ? (payload.code as ErrorCode) : ErrorCode.INTERNAL;
      return new TensorVaultError(code, payload.message, payload.context ?? {});
    }
  }
  const napiCode = err instanceof Error ? (err as Error & { code?: unknown }).code : undefined;
  if (napiCode === 'InvalidArg' || napiCode === 'NumberExpected' || napiCode === 'StringExpected') {
    return new TensorVaultError(ErrorCode.INVALID_ARGUMENT, message, {}, { cause: err });
  }
  return new TensorVaultError(ErrorCode.INTERNAL, message, {}, { cause: err });
}

/** Call a synchronous native function, converting its errors. */
export function callNative<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw fromNative(err);
  }
}
