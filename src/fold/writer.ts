/**
 * {@link writeFold}: `.fold` / `.mind` files that PyFolds's reader accepts (its writer checklist),
 * written atomically and durably, with PyFolds's options and a strict writer: encryption or a trust
 * block that the level cannot carry is refused (PyFolds silently drops them), reserved metadata keys,
 * duplicate names and non-string keys are refused.
 */
import type { KeyObject } from 'node:crypto';
import { callNative, fromNative, invalidArgument } from '../errors';
import { type JobOptions, runJob } from '../job';
import { native } from '../native';
import type { FoldWriteResult, FoldChunkInput as NativeChunk } from '../native/binding';
import { byteLengthOf, type Dtype, isDtype } from '../safetensors/dtype';
import { optionsObject, utf8Exact } from '../validate';
import { toFoldJson } from './json';
import { compact, rawSigningSeed } from './options';

/** A tensor of a state dict to store as a `STEN` (safetensors) chunk. */
export interface FoldTensorInput {
  dtype: Dtype;
  shape: readonly number[];
  /** Little-endian element bytes (a typed array of the dtype, or its bytes). */
  data: ArrayBufferView;
}

/** One chunk to write: raw bytes, a JSON value, or a state dict. */
export type FoldChunkInput =
  | { name: string; ctype?: string; data: Uint8Array }
  | { name: string; json: unknown }
  | { name: string; stateDict: Readonly<Record<string, FoldTensorInput>> };

/** Options of {@link writeFold} (PyFolds's writer options). */
export interface WriteFoldOptions extends JobOptions {
  /** `'zstd'` (default, level 3 as PyFolds) or `'none'`. */
  compress?: 'zstd' | 'none';
  /** zstd level (default 3). */
  zstdLevel?: number;
  /** PyFolds's protection: `off`/`none`/`0` (default), `low` rs(16), `med` rs(32), `high` rs(64). */
  protection?: string;
  /** An explicit codec `rs(N)` (N 1..254) or `none`; overrides `protection`. */
  ecc?: string;
  /** Integrity key: digests, manifest and trust-block hashes become `hmac-sha256:`. */
  hmacKey?: string | Uint8Array;
  /**
   * Security level (default `basic`); `high`/`paranoid` add the Merkle root and allow encryption and
   * signing. The metadata's `security_features` claims only what the file holds (a trust block only
   * with `signingKey`, encryption only with `encryptionKey`), so the file opens under `policy: 'strict'`.
   */
  level?: 'basic' | 'standard' | 'high' | 'paranoid';
  /** AES-256 key (32 bytes): every chunk encrypted (needs level high or paranoid). */
  encryptionKey?: Uint8Array;
  /** Ed25519 private key (PKCS#8 PEM, KeyObject or 32-byte seed) for the trust block (needs level high or paranoid). */
  signingKey?: string | KeyObject | Uint8Array;
  /** Caller metadata (plain JSON values; reserved keys refused). */
  metadata?: Record<string, unknown>;
  /** `created_at_unix` (default: now). */
  createdAt?: number;
  /**
   * Bare-hex digests and manifest hash, the form `pyfolds` 1.0.x writes and checks (its reader refuses
   * the prefixed `sha256:` form). No HMAC key, level basic or standard only. Note that 1.0.x's own rs(N)
   * is only correct for chunks of at most 255 − N stored bytes.
   */
  legacyDigests?: boolean;
}

/** Longest chunk name the reader accepts (bytes of UTF-8; `MAX_NAME_LEN` in the core's fold format). */
const MAX_NAME_BYTES = 4096;

/**
 * A name the reader will accept back: well-formed Unicode (a lone surrogate was written as U+FFFD, so
 * the chunk came back under another name) and at most 4096 bytes (the reader refused longer ones).
 */
function checkName(name: string, what: string): void {
  // With the `u` flag a surrogate pair is one code point: only a lone surrogate matches.
  if (/[\uD800-\uDFFF]/u.test(name)) {
    throw invalidArgument(
      'chunks',
      `${what} ${JSON.stringify(name)} is not well-formed Unicode (a lone surrogate)`,
    );
  }
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > MAX_NAME_BYTES) {
    throw invalidArgument('chunks', `${what} of ${bytes} bytes: the limit is ${MAX_NAME_BYTES}`);
  }
}

/** A safetensors file (no `__metadata__`) of `tensors`, in the given order, contiguous. */
export function encodeStateDict(tensors: Readonly<Record<string, FoldTensorInput>>): Uint8Array {
  if (typeof tensors !== 'object' || tensors === null || Array.isArray(tensors)) {
    throw invalidArgument('chunks', 'stateDict must be an object of name → { dtype, shape, data }');
  }
  // No prototype: a tensor named `__proto__` is an entry like any other (on `{}` it set the prototype,
  // and the tensor's bytes were written without a header entry).
  const header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> =
    Object.create(null);
  const parts: Uint8Array[] = [];
  let at = 0;
  for (const [name, t] of Object.entries(tensors)) {
    checkName(name, 'tensor');
    if (name === '__metadata__') {
      throw invalidArgument('chunks', 'a tensor may not be named __metadata__ (safetensors keeps that key)');
    }
    if (typeof t !== 'object' || t === null) {
      throw invalidArgument('chunks', `tensor ${JSON.stringify(name)} must be { dtype, shape, data }`);
    }
    if (!isDtype(t.dtype))
      throw invalidArgument('chunks', `tensor ${JSON.stringify(name)}: unknown dtype ${String(t.dtype)}`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw invalidArgument(
        'chunks',
        `tensor ${JSON.stringify(name)}: shape must be an array of non-negative integers`,
      );
    }
    if (!ArrayBuffer.isView(t.data)) {
      throw invalidArgument('chunks', `tensor ${JSON.stringify(name)}: data must be a typed array or Buffer`);
    }
    const want = byteLengthOf(t.dtype, t.shape);
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    if (bytes.length !== want) {
      throw invalidArgument(
        'chunks',
        `tensor ${JSON.stringify(name)}: ${bytes.length} bytes, its dtype and shape need ${want}`,
      );
    }
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [at, at + want] };
    parts.push(bytes);
    at += want;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  if (pad > 0) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const out = Buffer.alloc(8 + json.length + at);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(out, 8);
  let pos = 8 + json.length;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

function toNativeChunk(c: FoldChunkInput): NativeChunk {
  if (typeof c !== 'object' || c === null || typeof c.name !== 'string') {
    throw invalidArgument('chunks', 'each chunk must be an object with a string name');
  }
  checkName(c.name, 'chunk name');
  if ('stateDict' in c) return { name: c.name, ctype: 'STEN', data: encodeStateDict(c.stateDict) };
  if ('json' in c) return { name: c.name, json: toFoldJson(c.json, `chunk ${JSON.stringify(c.name)}`) };
  if ('data' in c && c.data instanceof Uint8Array)
    return { name: c.name, ctype: c.ctype ?? 'RAW0', data: c.data };
  throw invalidArgument(
    'chunks',
    `chunk ${JSON.stringify(c.name)} needs data (Uint8Array), json or stateDict`,
  );
}

function eccParity(options: WriteFoldOptions): number | undefined {
  if (options.ecc !== undefined) {
    return callNative(() => native().rsParseName(String(options.ecc))) ?? undefined;
  }
  return callNative(() => native().rsProtectionParity(options.protection ?? 'off')) ?? undefined;
}

/**
 * Write `chunks` to `path` as a `.fold` file (a `.mind` when a chunk is named `ai_graph` or
 * `ai_vectors`), atomically: a temporary file beside it gets a placeholder header, the chunks and the
 * index, an fsync, the real header and a second fsync, then it is renamed over `path` and the folder
 * is fsynced. A failure leaves `path` as it was and no temporary file behind.
 */
export async function writeFold(
  path: string,
  chunks: readonly FoldChunkInput[],
  options: WriteFoldOptions = {},
): Promise<FoldWriteResult> {
  if (typeof path !== 'string' || path.length === 0)
    throw invalidArgument('path', 'path must be a non-empty string');
  if (!Array.isArray(chunks)) throw invalidArgument('chunks', 'chunks must be an array');
  optionsObject(options);
  const compress = options.compress ?? 'zstd';
  if (compress !== 'zstd' && compress !== 'none')
    throw invalidArgument('compress', "compress must be 'zstd' or 'none'");
  const zstdLevel = options.zstdLevel ?? 3;
  if (!Number.isInteger(zstdLevel) || zstdLevel < 1 || zstdLevel > 22) {
    throw invalidArgument('zstdLevel', 'zstdLevel must be an integer from 1 to 22');
  }
  const hmacKey =
    typeof options.hmacKey === 'string' ? utf8Exact('hmacKey', options.hmacKey, 'hmacKey') : options.hmacKey;
  const native_ = chunks.map(toNativeChunk);
  const opts = compact({
    zstdLevel: compress === 'zstd' ? zstdLevel : undefined,
    ecc: eccParity(options),
    hmacKey,
    level: options.level ?? 'basic',
    encryptionKey: options.encryptionKey,
    signingSeed: options.signingKey === undefined ? undefined : rawSigningSeed(options.signingKey),
    metadataJson: options.metadata === undefined ? undefined : toFoldJson(options.metadata, 'metadata'),
    createdAt: options.createdAt,
    legacyDigests: options.legacyDigests,
  });
  try {
    return await runJob('fold.write', options, (control) => native().foldWrite(path, native_, opts, control));
  } catch (err) {
    throw fromNative(err, options.signal);
  }
}
