/**
 * Object stores behind one small interface, {@link Store}: `S3Store` (`s3-store.ts`: AWS SDK for
 * JavaScript v3, any S3-compatible endpoint) and `FileStore` (`file-store.ts`: `file://`, for tests and
 * NFS); `openStore` (`open-store.ts`) picks one for a URL. Every request is counted in
 * {@link StoreMetrics}; every store error becomes a typed {@link TensorVaultError}.
 */
import { createHash } from 'node:crypto';
import { abortError, ErrorCode, invalidArgument, TensorVaultError } from '../errors';

/** Bytes and requests a store has moved (read them to see what a lazy load transferred). */
export interface StoreMetrics {
  /** Requests sent (retries by the client count once). */
  requests: number;
  /** Body bytes received (GET). */
  bytesDown: number;
  /** Body bytes sent (PUT, UploadPart). */
  bytesUp: number;
}

/** Digests of a part already computed by the caller (so that they are not computed twice). */
export interface PartDigests {
  md5: Buffer;
  sha256: Buffer;
}

/** One uploaded part of a multipart upload. */
export interface UploadedPart {
  part: number;
  etag: string;
  size: number;
}

/** Connection options of a remote target (each falls back to the standard environment variables). */
export interface RemoteOptions {
  /** Endpoint URL (default `AWS_ENDPOINT_URL_S3`, then `AWS_ENDPOINT_URL`, else AWS). */
  endpoint?: string;
  /** Region (default `AWS_REGION`, then `AWS_DEFAULT_REGION`, then `us-east-1`). */
  region?: string;
  /** Credentials (default: the SDK's chain: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, profiles, …). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Path-style requests (`endpoint/bucket/key`); default true when an endpoint is set, as self-hosted stores need. */
  forcePathStyle?: boolean;
  /** Attempts per request, retries included, with exponential backoff and jitter (default 5). */
  maxAttempts?: number;
}

/** The endpoint of `options`, else of the environment (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`). */
export function endpointOf(options: RemoteOptions): string | undefined {
  return options.endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
}

/** The region of `options`, else of the environment (`AWS_REGION`, `AWS_DEFAULT_REGION`). */
export function regionOf(options: RemoteOptions): string | undefined {
  return options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
}

/**
 * Check the connection options (and the endpoint / region variables they fall back to) before any
 * request: a mistake there is `TV_INVALID_ARGUMENT`, not an outage after retries.
 */
export function checkRemoteOptions(options: RemoteOptions): void {
  const endpoint = endpointOf(options);
  if (endpoint !== undefined && endpoint !== '') {
    const from = options.endpoint !== undefined ? 'endpoint' : 'AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL';
    let ok = false;
    try {
      const u = new URL(endpoint);
      ok = (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
    } catch {
      ok = false;
    }
    if (!ok)
      throw invalidArgument(
        'endpoint',
        `${from} must be an http:// or https:// URL (for example http://localhost:9000): ${JSON.stringify(endpoint)}`,
      );
  }
  const region = regionOf(options);
  if (region !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(region))
    throw invalidArgument('region', `not a valid region name: ${JSON.stringify(region)}`);
  const attempts = options.maxAttempts;
  if (attempts !== undefined && (!Number.isSafeInteger(attempts) || attempts < 1 || attempts > 100))
    throw invalidArgument('maxAttempts', 'maxAttempts must be an integer from 1 to 100');
}

/** The default multipart part size of push and remote repair (8 MiB). */
export const DEFAULT_PART_SIZE = 8 * 1024 * 1024;

/**
 * The `partSize` option of push and remote repair (default 8 MiB), checked before any request: a
 * multiple of 1 MiB, at least 5 MiB (S3's smallest part but the last) and at most 5 GiB (its largest),
 * else `TV_INVALID_ARGUMENT`. One rule for every caller: a negative, zero or tiny part size once made
 * a repair complete an empty upload over the stored weights, or loop without end.
 */
export function checkPartSize(partSize: unknown): number {
  if (partSize === undefined) return DEFAULT_PART_SIZE;
  const MiB = 1024 * 1024;
  if (
    typeof partSize !== 'number' ||
    !Number.isSafeInteger(partSize) ||
    partSize < 5 * MiB ||
    partSize > 5 * 1024 * MiB ||
    partSize % MiB !== 0
  )
    throw invalidArgument(
      'partSize',
      `partSize must be a multiple of 1 MiB, at least 5 MiB and at most 5 GiB: ${typeof partSize === 'number' ? String(partSize) : `a ${typeof partSize}`}`,
    );
  return partSize;
}

/** How a write that makes an object visible (PutObject, CompleteMultipartUpload) treats an existing one. */
export interface WriteOptions {
  /**
   * Only create: when an object is already stored at the key, nothing is written and the write fails
   * with `TV_EXISTS` (`reason: object_exists`). S3: `If-None-Match: *`, decided by the store itself, so
   * of two such writes racing to one key at most one succeeds (on a store that honours the header).
   */
  ifAbsent?: boolean;
  /**
   * Only replace the object whose version is this one (its ETag as {@link Store.stat} gave it): when
   * the object stored at the key is another one (replaced meanwhile by another writer) or none,
   * nothing is written and the write fails with `TV_FILE_CHANGED` (`reason: object_changed`). S3:
   * `If-Match: <etag>`, decided by the store; `file://`: the file's identity compared and the file
   * renamed into place under one lock.
   */
  ifMatch?: string;
}

/** The size and version of a stored object. */
export interface ObjectStat {
  size: number;
  /**
   * The object's version: its ETag (S3), or the identity of its file (`file://`: inode, size and
   * modification time). Another object written to the key has another one (unless it holds the same
   * bytes, for an S3 ETag).
   */
  etag: string;
}

/** The operations push, pull, lazy load and verify need from a store. */
export interface Store {
  /** The URL of `key` (for messages and results). */
  url(key: string): string;
  readonly metrics: StoreMetrics;
  /** Size of `key`, or undefined when it does not exist. */
  head(key: string, signal?: AbortSignal): Promise<number | undefined>;
  /** Size and version of `key`, or undefined when it does not exist. */
  stat(key: string, signal?: AbortSignal): Promise<ObjectStat | undefined>;
  /** Bytes `[start, end)` of `key` as a stream (the whole object without a range). */
  read(key: string, range?: [number, number], signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>>;
  /** Put a small object in one request, with its SHA-256 for the store to check; its version. */
  put(key: string, data: Uint8Array, signal?: AbortSignal, write?: WriteOptions): Promise<string>;
  createUpload(key: string, signal?: AbortSignal): Promise<string>;
  /** Upload part `part` (1-based); resolves with the ETag the store computed. */
  uploadPart(
    key: string,
    id: string,
    part: number,
    data: Uint8Array,
    signal?: AbortSignal,
    digests?: PartDigests,
  ): Promise<string>;
  /** Part `part` copied by the store from bytes `[start, end)` of the object `key` (no transfer); its ETag. */
  uploadPartCopy(
    key: string,
    id: string,
    part: number,
    range: [number, number],
    signal?: AbortSignal,
  ): Promise<string>;
  /** The parts stored so far, or undefined when the upload no longer exists. */
  listParts(key: string, id: string, signal?: AbortSignal): Promise<UploadedPart[] | undefined>;
  /**
   * Make the upload the object `key` (with `write.ifAbsent`, only when none exists, with `write.ifMatch`
   * only when the stored one is that version: else the upload stays); the new object's version.
   */
  complete(
    key: string,
    id: string,
    parts: readonly UploadedPart[],
    signal?: AbortSignal,
    write?: WriteOptions,
  ): Promise<string>;
  abort(key: string, id: string): Promise<void>;
  /** Every key under `prefix` with its size. */
  list(prefix: string, signal?: AbortSignal): Promise<{ key: string; size: number }[]>;
  delete(key: string, signal?: AbortSignal): Promise<void>;
  /** Release connections. */
  close(): void;
}

/** The error of a write refused because an object is already stored at `url` (see {@link WriteOptions}). */
export function objectExists(
  url: string,
  reason: 'object_exists' | 'write_conflict' = 'object_exists',
): TensorVaultError {
  return new TensorVaultError(
    ErrorCode.EXISTS,
    reason === 'object_exists'
      ? `${url}: an object is already stored there (written by another push meanwhile?); pass overwrite to replace it`
      : `${url}: another write to this key was in progress; nothing was written`,
    { path: url, reason },
  );
}

/**
 * The error of a conditional write (`ifMatch`) refused because the object stored at `url` is no longer
 * the version the writer read: another writer replaced (or deleted) it meanwhile. Nothing was written.
 */
export function objectChanged(
  url: string,
  reason: 'object_changed' | 'write_conflict' = 'object_changed',
): TensorVaultError {
  return new TensorVaultError(
    ErrorCode.FILE_CHANGED,
    reason === 'object_changed'
      ? `${url}: the stored object changed since it was read (another writer replaced or deleted it); nothing was written`
      : `${url}: another write to this key was in progress; nothing was written`,
    { path: url, url, reason },
  );
}

/** The MD5 ETag of `data` as an S3 store computes it for a part or a single-request object. */
export function md5Hex(data: Uint8Array): string {
  return createHash('md5').update(data).digest('hex');
}

/**
 * Map an SDK or network error to a typed error. Nothing from the request (keys, signatures, the string
 * to sign) goes into the message: only the URL, the HTTP status and the store's error name.
 */
export function storeError(err: unknown, url: string, signal?: AbortSignal): TensorVaultError {
  if (err instanceof TensorVaultError) return err;
  if (signal?.aborted) return abortError(signal);
  const e = err as {
    name?: string;
    code?: string;
    $metadata?: { httpStatusCode?: number; attempts?: number };
    $retryable?: unknown;
  };
  const name = typeof e?.name === 'string' ? e.name : 'Error';
  if (name === 'AbortError') return abortError(signal);
  const status = e?.$metadata?.httpStatusCode;
  const attempts = e?.$metadata?.attempts ?? 1;
  if (name === 'CredentialsProviderError') {
    // The SDK's credential chain found nothing usable: no request was sent, nothing was refused.
    return new TensorVaultError(
      ErrorCode.REMOTE_AUTH,
      `${url}: no usable credentials were found, so no request was sent (looked for the credentials option, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the profile AWS_PROFILE (else default) in ~/.aws/credentials and ~/.aws/config (AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE), SSO, web identity, the container and the instance metadata)`,
      { url, status: null, reason: name },
    );
  }
  const authNames = [
    'InvalidAccessKeyId',
    'SignatureDoesNotMatch',
    'AccessDenied',
    'InvalidToken',
    'ExpiredToken',
  ];
  if (status === 401 || status === 403 || authNames.includes(name)) {
    return new TensorVaultError(
      ErrorCode.REMOTE_AUTH,
      `${url}: the store refused the credentials (${name}${status === undefined ? '' : `, HTTP ${status}`})`,
      { url, status: status ?? null, reason: name },
    );
  }
  if (status === 404 || name === 'NoSuchKey' || name === 'NotFound' || name === 'NoSuchBucket') {
    return new TensorVaultError(ErrorCode.REMOTE_NOT_FOUND, `${url}: not found in the store (${name})`, {
      url,
      reason: name,
    });
  }
  // A conditional write (If-None-Match: *) refused: the object exists (412), or another conditional
  // write to the key was in flight (409, AWS).
  if (status === 412 || name === 'PreconditionFailed') return objectExists(url);
  if (name === 'ConditionalRequestConflict') return objectExists(url, 'write_conflict');
  if (status === 416 || name === 'InvalidRange') {
    // A range past the end of the object: it is shorter than the manifest says (truncated or replaced).
    return new TensorVaultError(
      ErrorCode.REMOTE_DAMAGED,
      `${url}: the stored object is shorter than recorded (${name}${status === undefined ? '' : `, HTTP ${status}`})`,
      { url, status: status ?? null, reason: 'short_object' },
    );
  }
  if (name === 'NoSuchUpload') {
    return new TensorVaultError(ErrorCode.REMOTE_NOT_FOUND, `${url}: the multipart upload no longer exists`, {
      url,
      reason: name,
    });
  }
  if (name === 'BadDigest' || name === 'InvalidDigest' || name === 'XAmzContentSHA256Mismatch') {
    return new TensorVaultError(
      ErrorCode.REMOTE_DAMAGED,
      `${url}: the store received bytes that do not match their checksum (${name})`,
      { url, reason: 'bad_digest' },
    );
  }
  const transient = ['SlowDown', 'RequestTimeout', 'IncompleteBody', 'OperationAborted', 'Throttling'];
  if (status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429) {
    if (!transient.includes(name)) {
      // The store refused the request itself (a key too long, an invalid argument): retrying cannot help.
      return new TensorVaultError(
        ErrorCode.INVALID_ARGUMENT,
        `${url}: the store refused the request (${name}, HTTP ${status})`,
        { url, status, reason: name },
        { cause: err },
      );
    }
  }
  const netCode = typeof e?.code === 'string' ? e.code : undefined;
  const why = netCode ?? name;
  return new TensorVaultError(
    ErrorCode.REMOTE_UNAVAILABLE,
    `${url}: the store did not answer successfully after ${attempts} attempt${attempts === 1 ? '' : 's'} (${why}${status === undefined ? '' : `, HTTP ${status}`})`,
    { url, attempts, status: status ?? null, reason: why },
    { cause: err },
  );
}

/** `undefined` when `op` fails because the object (or upload) does not exist; any other error is thrown. */
export async function missingAsUndefined<T>(op: Promise<T>): Promise<T | undefined> {
  try {
    return await op;
  } catch (err) {
    if (err instanceof TensorVaultError && err.code === ErrorCode.REMOTE_NOT_FOUND) return undefined;
    throw err;
  }
}

/** Read a whole (small) object into memory. */
export async function readAll(store: Store, key: string, signal?: AbortSignal): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of await store.read(key, undefined, signal)) parts.push(c);
  return Buffer.concat(parts);
}
