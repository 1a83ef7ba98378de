/**
 * The on-disk pieces of a checkpoint: file names of the three layouts, PyFolds's integrity hash
 * (contract section 2) and tensorvault's integrity block (`docs/formats/checkpoint.md`).
 */
import { basename, dirname, join } from 'node:path';
import { callNative, ErrorCode, invalidArgument, TensorVaultError } from '../errors';
import { canonicalJson } from '../eventlog/canonical';
import { hmacSha256, sha256 } from '../hash/index';
import { type JobOptions, runJob } from '../job';
import { native } from '../native';
import type { Dtype } from '../safetensors/dtype';
import type { TensorInfo } from '../safetensors/types';

/**
 * A checkpoint layout: `tensorvault` (the default: PyFolds 2.0.2's files plus tensorvault's integrity
 * block and optional `.tvecc` parity), `pyfolds` (PyFolds 2.0.2: `NAME.safetensors` +
 * `NAME.safetensors.meta.json`), `pyfolds-ecc` (PyFolds ADR 0042: `NAME.json` + `NAME.safetensors.ecc`).
 */
export type CheckpointLayout = 'tensorvault' | 'pyfolds' | 'pyfolds-ecc';

/** Every layout name. */
export const LAYOUTS: readonly CheckpointLayout[] = ['tensorvault', 'pyfolds', 'pyfolds-ecc'];

/** The files a checkpoint at `weights` may consist of (absolute or relative as given). */
export interface CheckpointFiles {
  /** `NAME.safetensors`: the weights. */
  weights: string;
  /** `NAME.safetensors.meta.json`: the sidecar of the `pyfolds` and `tensorvault` layouts. */
  meta: string;
  /** `NAME.json`: the sidecar of the `pyfolds-ecc` layout. */
  json: string;
  /** `NAME.safetensors.ecc`: the rs(N) parity stream of the `pyfolds-ecc` layout. */
  rsEcc: string;
  /** `NAME.safetensors.tvecc`: the erasure parity sidecar of the `tensorvault` layout. */
  tvecc: string;
  /** `NAME.safetensors.tvob`: the outboard of the `tensorvault` layout (`outboard.ts`; an accelerator). */
  tvob: string;
  /** `NAME.safetensors.ckpt-commit`: the commit record of a save in progress (see `save.ts`). */
  journal: string;
  /** `.NAME.safetensors.ckpt-lock`: the writer lock. */
  lock: string;
}

/**
 * The file names of a checkpoint whose weights are at `path`. `json` and `lock` (a `path.join` each, the
 * only costly names, and not read by an open whose folder holds nothing to recover) are made when first
 * read.
 */
export function checkpointFiles(path: string): CheckpointFiles {
  if (typeof path !== 'string' || path.length === 0) {
    throw invalidArgument('path', 'path must be a non-empty string');
  }
  let json: string | undefined;
  let lock: string | undefined;
  return {
    weights: path,
    meta: `${path}.meta.json`,
    get json(): string {
      if (json === undefined) {
        const base = basename(path);
        const stem = base.endsWith('.safetensors') ? base.slice(0, -'.safetensors'.length) : base;
        json = join(dirname(path), `${stem}.json`);
      }
      return json;
    },
    rsEcc: `${path}.ecc`,
    tvecc: `${path}.tvecc`,
    tvob: `${path}.tvob`,
    journal: `${path}.ckpt-commit`,
    get lock(): string {
      lock ??= join(dirname(path), `.${basename(path)}.ckpt-lock`);
      return lock;
    },
  };
}

/** The sidecar files of a checkpoint (everything but the weights, the journal and the lock). */
export function sidecarFiles(f: CheckpointFiles): string[] {
  return [f.meta, f.json, f.rsEcc, f.tvecc, f.tvob];
}

// ---------------------------------------------------------------------------------------------
// PyFolds integrity hash (contract section 2)

const TORCH_DTYPE: Partial<Record<Dtype, string>> = {
  F32: 'torch.float32',
  F16: 'torch.float16',
  BF16: 'torch.bfloat16',
  F64: 'torch.float64',
  I8: 'torch.int8',
  I16: 'torch.int16',
  I32: 'torch.int32',
  I64: 'torch.int64',
  U8: 'torch.uint8',
  U16: 'torch.uint16',
  U32: 'torch.uint32',
  U64: 'torch.uint64',
  BOOL: 'torch.bool',
  F8_E4M3: 'torch.float8_e4m3fn',
  F8_E5M2: 'torch.float8_e5m2',
  C64: 'torch.complex64',
  F8_E8M0: 'torch.float8_e8m0fnu',
  F8_E4M3FNUZ: 'torch.float8_e4m3fnuz',
  F8_E5M2FNUZ: 'torch.float8_e5m2fnuz',
};

/** PyTorch's name of a safetensors dtype, or undefined for the packed 4/6-bit floats. */
export function torchDtype(dtype: Dtype): string | undefined {
  return TORCH_DTYPE[dtype];
}

/** The dtype label fed to the PyFolds hash (`torch.*`; `safetensors.F4` etc. for dtypes torch lacks). */
export function hashDtypeLabel(dtype: Dtype): string {
  return TORCH_DTYPE[dtype] ?? `safetensors.${dtype}`;
}

/** Python's `str(tuple(shape))`: `()`, `(2,)`, `(2, 4)`. */
export function pythonShape(shape: readonly number[]): string {
  if (shape.length === 0) return '()';
  if (shape.length === 1) return `(${shape[0]},)`;
  return `(${shape.join(', ')})`;
}

/** Python's `sorted()` order of strings: by Unicode code point (not UTF-16 code unit). */
export function codePointCompare(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done === true) return y.done === true ? 0 : -1;
    if (y.done === true) return 1;
    const cx = x.value.codePointAt(0) as number;
    const cy = y.value.codePointAt(0) as number;
    if (cx !== cy) return cx < cy ? -1 : 1;
  }
}

/** A tensor as the PyFolds hash sees it. */
export interface HashableTensor {
  name: string;
  dtype: Dtype;
  shape: readonly number[];
  /** The tensor's bytes, possibly in pieces (read on demand, in order). */
  bytes: () => Iterable<Uint8Array>;
}

/** PyFolds's framing of one tensor: key, torch dtype, `str(tuple(shape))`, no separators. */
function framingOf(t: { name: string; dtype: Dtype; shape: readonly number[] }): Buffer {
  return Buffer.from(`${t.name}${hashDtypeLabel(t.dtype)}${pythonShape(t.shape)}`, 'utf8');
}

function byName<T extends { name: string }>(tensors: readonly T[]): T[] {
  return [...tensors].sort((a, b) => codePointCompare(a.name, b.name));
}

/**
 * The plain hex SHA-256 of PyFolds's framing over `tensors` (sorted by name; key, torch dtype,
 * `str(tuple(shape))`, raw bytes; no separators), hashed on the libuv pool. Honours `signal`.
 */
export async function pyfoldsDigest(
  tensors: readonly HashableTensor[],
  options: JobOptions = {},
): Promise<string> {
  const pieces: Uint8Array[] = [];
  for (const t of byName(tensors)) {
    pieces.push(framingOf(t));
    for (const piece of t.bytes()) pieces.push(piece);
  }
  return framedDigest(null, pieces, options);
}

/**
 * {@link pyfoldsDigest} of the tensors of the safetensors file at `path` (as its header lists them in
 * `infos`), read from the file by the addon in 1 MiB blocks while it hashes: nothing is mapped, and no
 * tensor is limited by the largest `ArrayBuffer`.
 */
export async function pyfoldsDigestOfFile(
  path: string,
  infos: readonly TensorInfo[],
  options: JobOptions = {},
): Promise<string> {
  const pieces: (Uint8Array | number[])[] = [];
  for (const t of byName(infos)) pieces.push(framingOf(t), [t.fileOffset, t.byteLength]);
  return framedDigest(path, pieces, options);
}

/**
 * {@link pyfoldsDigestOfFile} of the file at `path` as it would be with `patches` (byte offset → the
 * bytes written there) applied, without writing it: the tensors' ranges are read from the file except
 * where a patch covers them. For the read-only check of an rs(N) correction (`rs.ts`).
 */
export async function pyfoldsDigestPatched(
  path: string,
  infos: readonly TensorInfo[],
  patches: ReadonlyMap<number, Uint8Array>,
  options: JobOptions = {},
): Promise<string> {
  const sorted = [...patches].sort((a, b) => a[0] - b[0]);
  const pieces: (Uint8Array | number[])[] = [];
  for (const t of byName(infos)) {
    pieces.push(framingOf(t));
    const end = t.fileOffset + t.byteLength;
    let at = t.fileOffset;
    for (const [from, bytes] of sorted) {
      const to = from + bytes.length;
      if (to <= at || from >= end) continue;
      if (from > at) pieces.push([at, from - at]);
      const hi = Math.min(to, end);
      pieces.push(bytes.subarray(Math.max(at, from) - from, hi - from));
      at = hi;
    }
    if (at < end) pieces.push([at, end - at]);
  }
  return framedDigest(path, pieces, options);
}

/** The hex SHA-256 of `pieces` (bytes, or `[offset, length]` ranges of the file at `path`) on the pool. */
async function framedDigest(
  path: string | null,
  pieces: (Uint8Array | number[])[],
  options: JobOptions,
): Promise<string> {
  const digest = await runJob('pyfoldsDigest', options, (control) =>
    native().sha256Pieces(path, pieces, control),
  );
  return digest.toString('hex');
}

/** A key for the HMAC: a string (UTF-8, as PyFolds's environment variable) or bytes. */
export type HmacKey = string | Uint8Array;

export function keyBytes(key: HmacKey): Uint8Array {
  return typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
}

/** PyFolds's stored hash: `sha256:<hex>`, or with a key `hmac-sha256:` + HMAC(key, hex digest as ASCII). */
export function formatPyfoldsHash(hexDigest: string, key?: HmacKey): string {
  if (key === undefined) return `sha256:${hexDigest}`;
  return `hmac-sha256:${hmacSha256(keyBytes(key), Buffer.from(hexDigest, 'ascii')).toString('hex')}`;
}

/** How a stored PyFolds hash is written. */
export type StoredHashKind = 'sha256' | 'hmac-sha256' | 'legacy-sha256';

/** Parse a stored PyFolds hash; throws `TV_CHECKPOINT_INVALID` for anything else. */
export function parseStoredHash(text: unknown, path: string): { kind: StoredHashKind; hex: string } {
  if (typeof text === 'string') {
    let m = /^sha256:([0-9a-f]{64})$/i.exec(text);
    if (m !== null) return { kind: 'sha256', hex: (m[1] as string).toLowerCase() };
    m = /^hmac-sha256:([0-9a-f]{64})$/i.exec(text);
    if (m !== null) return { kind: 'hmac-sha256', hex: (m[1] as string).toLowerCase() };
    m = /^([0-9a-f]{64})$/i.exec(text);
    if (m !== null) return { kind: 'legacy-sha256', hex: (m[1] as string).toLowerCase() };
  }
  throw new TensorVaultError(
    ErrorCode.CHECKPOINT_INVALID,
    `${path}: integrity_hash is not sha256:<hex>, hmac-sha256:<hex> or a bare hex digest`,
    { path, reason: 'bad_hash', actual: typeof text === 'string' ? text.slice(0, 100) : typeof text },
  );
}

/** Whether the plain hex digest `hexDigest` matches the stored hash (constant-time compare). */
export function pyfoldsHashMatches(
  stored: { kind: StoredHashKind; hex: string },
  hexDigest: string,
  key: HmacKey | undefined,
): boolean {
  let want: string;
  if (stored.kind === 'hmac-sha256') {
    if (key === undefined) return false;
    want = formatPyfoldsHash(hexDigest, key).slice('hmac-sha256:'.length);
  } else want = hexDigest;
  return equalHex(want, stored.hex);
}

/** Constant-time equality of two hex strings. */
export function equalHex(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return d === 0;
}

// ---------------------------------------------------------------------------------------------
// tensorvault integrity block (docs/formats/checkpoint.md)

/** Version of the integrity block. */
export const INTEGRITY_VERSION = 1;
/** Chunk size of the checkpoint's chunk tree (1 MiB: a tensor's first view checks at most 1 MiB more than it needs). */
export const CHECKPOINT_CHUNK_SIZE = 1024 * 1024;

/**
 * The integrity block's algorithm: the chunk tree (`sha256-tree-v1`, or `blake3-tree-v1` written by
 * new saves) and the seal (`sha256` unkeyed, `hmac-sha256` keyed).
 */
export type IntegrityAlgorithm =
  | 'sha256-tree-v1+sha256'
  | 'sha256-tree-v1+hmac-sha256'
  | 'blake3-tree-v1+sha256'
  | 'blake3-tree-v1+hmac-sha256';

/** Every algorithm a reader accepts. */
export const INTEGRITY_ALGORITHMS: readonly IntegrityAlgorithm[] = [
  'sha256-tree-v1+sha256',
  'sha256-tree-v1+hmac-sha256',
  'blake3-tree-v1+sha256',
  'blake3-tree-v1+hmac-sha256',
];

/** The tree hash a block's algorithm names. */
export type TreeHash = 'sha256' | 'blake3';

/** The tree hash of `algorithm`. */
export function treeHashOf(algorithm: IntegrityAlgorithm): TreeHash {
  return algorithm.startsWith('blake3-') ? 'blake3' : 'sha256';
}

/** Whether `algorithm`'s seal is keyed. */
export function isKeyedAlgorithm(algorithm: IntegrityAlgorithm): boolean {
  return algorithm.endsWith('+hmac-sha256');
}

/** The algorithm name of a new block. */
export function integrityAlgorithm(tree: TreeHash, keyed: boolean): IntegrityAlgorithm {
  return `${tree}-tree-v1+${keyed ? 'hmac-sha256' : 'sha256'}` as IntegrityAlgorithm;
}

/** The integrity block stored under `tensorvault` in the `.meta.json` sidecar. */
export interface IntegrityBlock {
  /** Block version (1). */
  integrity: 1;
  /** The tree and the seal (see {@link IntegrityAlgorithm}). */
  algorithm: IntegrityAlgorithm;
  /** Chunk size of the tree over the whole weights file. */
  chunk_size: number;
  /** Length of the weights file. */
  file_length: number;
  /** Length of the safetensors header (8 + JSON length). */
  header_length: number;
  /** SHA-256 (hex) of the header bytes `[0, header_length)`. */
  header_sha256: string;
  /** Chunk-tree root (hex) of the weights file (`docs/formats/chunk-tree.md`). */
  root: string;
  /** The tree's leaves: 64 hex characters per chunk, concatenated. */
  leaves: string;
  /**
   * Parity sidecar, or null: `{ kind: 'tvecc', file: '<basename>' }` (the sealed members; the sidecar
   * may also record the protection `level`, outside the seal: see {@link recordedTveccLevel}).
   */
  ecc: { kind: 'tvecc'; file: string } | null;
  /** `sha256:<hex>` or `hmac-sha256:<hex>` of the seal message. */
  seal: string;
}

/**
 * The seal of an integrity block: `sha256:<hex>` of its seal message, or `hmac-sha256:<hex>` with a key
 * (`docs/formats/checkpoint.md`, "Seal message"). The metadata and `ecc` are made canonical here; the
 * addon frames the fields and hashes them in one call.
 */
export function sealOf(
  block: Omit<IntegrityBlock, 'seal' | 'leaves'>,
  metadata: unknown,
  integrityHash: string,
  key: HmacKey | undefined,
): string {
  const meta = canonicalJson(metadata);
  // Only `kind` and `file` are sealed, as every reader rebuilds them (other members are hints).
  const ecc = canonicalJson(block.ecc === null ? null : { kind: block.ecc.kind, file: block.ecc.file });
  return callNative(() =>
    native().checkpointSeal(
      block.algorithm,
      block.chunk_size,
      block.file_length,
      block.header_length,
      block.header_sha256,
      block.root,
      meta,
      integrityHash,
      ecc,
      key === undefined ? null : keyBytes(key),
    ),
  );
}

/**
 * The chunk-tree root (hex) of `leaves` (hex, concatenated) for a file of `length` bytes: SHA-256
 * (`sha256-tree-v1`) or BLAKE3 (`blake3-tree-v1`) over the 32-byte tree header and the leaves.
 */
export function treeRoot(
  leaves: string,
  chunkSize: number,
  length: number,
  tree: TreeHash = 'sha256',
): string {
  if (tree === 'blake3')
    return native().checkpointTreeRoot(Buffer.from(leaves, 'utf8'), chunkSize, length, 'blake3');
  const header = Buffer.alloc(32);
  header.write('TVCTREE', 0, 'ascii');
  header[7] = 1;
  header[8] = 1;
  header.writeBigUInt64LE(BigInt(chunkSize), 16);
  header.writeBigUInt64LE(BigInt(length), 24);
  return sha256(Buffer.concat([header, Buffer.from(leaves, 'hex')])).toString('hex');
}

/**
 * Parse and structurally check an integrity block (types, lengths, the leaves against the root).
 * Throws `TV_CHECKPOINT_INVALID` (context `reason`) when it is malformed.
 */
export function parseIntegrityBlock(v: unknown, path: string, fastLeaves?: LeafSource): IntegrityBlock {
  const bad = (reason: string, message: string): TensorVaultError =>
    new TensorVaultError(ErrorCode.CHECKPOINT_INVALID, `${path}: integrity block: ${message}`, {
      path,
      reason,
    });
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('block', 'not an object');
  const b = v as Record<string, unknown>;
  if (b.integrity !== INTEGRITY_VERSION) throw bad('version', `unsupported version ${String(b.integrity)}`);
  if (!INTEGRITY_ALGORITHMS.includes(b.algorithm as IntegrityAlgorithm)) {
    throw bad('algorithm', `unknown algorithm ${String(b.algorithm)}`);
  }
  const algorithm = b.algorithm as IntegrityAlgorithm;
  const int = (k: string, min: number): number => {
    const n = b[k];
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min) throw bad(k, `${k} is not an integer`);
    return n;
  };
  const chunk = int('chunk_size', 4096);
  if ((chunk & (chunk - 1)) !== 0 || chunk > 2 ** 30)
    throw bad('chunk_size', 'chunk_size is not a power of two');
  const len = int('file_length', 8);
  const hlen = int('header_length', 8);
  if (hlen > len) throw bad('header_length', 'header_length exceeds file_length');
  const hex = (k: string): string => {
    const s = b[k];
    if (typeof s !== 'string' || !/^[0-9a-f]{64}$/.test(s)) throw bad(k, `${k} is not a hex digest`);
    return s;
  };
  const headerSha = hex('header_sha256');
  const root = hex('root');
  const leaves = b.leaves;
  const chunks = Math.ceil(len / chunk);
  if (fastLeaves !== undefined) return parseWithLeafSource(b, fastLeaves, chunks, bad);
  // blake3 leaves are checked as hex by the native root computation below.
  if (
    typeof leaves !== 'string' ||
    leaves.length !== chunks * 64 ||
    (treeHashOf(algorithm) === 'sha256' && !/^[0-9a-f]*$/.test(leaves))
  ) {
    throw bad('leaves', `leaves must be ${chunks} hex digests`);
  }
  let computed: string;
  try {
    computed = treeRoot(leaves, chunk, len, treeHashOf(algorithm));
  } catch {
    throw bad('leaves', `leaves must be ${chunks} hex digests`);
  }
  if (!equalHex(computed, root)) throw bad('leaves', 'leaves do not match the root');
  return blockOf(b, algorithm, chunk, len, hlen, headerSha, root, leaves, bad);
}

/**
 * The fast path of {@link parseIntegrityBlock}: the leaves arrive decoded and already checked against
 * this text's root, chunk size and file length by the addon (`checkpoint_sidecar.rs`, which cut them out
 * of the sidecar and left `leaves: ""`); the block's `leaves` hex is made only if something reads it
 * ({@link leafAt} asks the source for one leaf).
 */
function parseWithLeafSource(
  b: Record<string, unknown>,
  source: LeafSource,
  chunks: number,
  bad: (reason: string, message: string) => TensorVaultError,
): IntegrityBlock {
  const algorithm = b.algorithm as IntegrityAlgorithm;
  const chunk = b.chunk_size as number;
  const len = b.file_length as number;
  if (b.leaves !== '' || source.byteLength !== chunks * 32) {
    throw bad('leaves', `leaves must be ${chunks} hex digests`);
  }
  const root = b.root as string;
  const block = blockOf(
    b,
    algorithm,
    chunk,
    len,
    b.header_length as number,
    b.header_sha256 as string,
    root,
    '',
    bad,
  );
  return withLeafSource(block, source);
}

/**
 * A block checked by the addon in full (`checkpointOpenLazy`: the checks of
 * {@link parseIntegrityBlock}, the leaves against the root), with its leaves kept there.
 */
export function checkedBlock(fields: Omit<IntegrityBlock, 'leaves'>, source: LeafSource): IntegrityBlock {
  return withLeafSource({ ...fields, leaves: '' }, source);
}

/** `block` whose `leaves` hex is made from `source` when first read (see {@link leafAt}). */
function withLeafSource(block: IntegrityBlock, source: LeafSource): IntegrityBlock {
  const chunks = source.byteLength / 32;
  let hex: string | undefined;
  Object.defineProperty(block, 'leaves', {
    enumerable: true,
    get: () => {
      hex ??= source.hex(0, chunks);
      return hex;
    },
  });
  LEAF_SOURCES.set(block, source);
  return block;
}

/**
 * Decoded leaves (32 bytes per chunk) of a block parsed on the fast path, kept by the addon (no buffer per
 * open for V8 to account) and checked there against the block's root.
 */
export interface LeafSource {
  /** Bytes of leaves. */
  readonly byteLength: number;
  /** Leaves `[first, first + count)` as hex. */
  hex(first: number, count: number): string;
}

/** Decoded leaves of blocks parsed on the fast path. */
const LEAF_SOURCES = new WeakMap<IntegrityBlock, LeafSource>();

function blockOf(
  b: Record<string, unknown>,
  algorithm: IntegrityAlgorithm,
  chunk: number,
  len: number,
  hlen: number,
  headerSha: string,
  root: string,
  leaves: string,
  bad: (reason: string, message: string) => TensorVaultError,
): IntegrityBlock {
  let ecc: IntegrityBlock['ecc'] = null;
  if (b.ecc !== null) {
    const e = b.ecc as Record<string, unknown> | undefined;
    if (
      typeof e !== 'object' ||
      e === null ||
      e.kind !== 'tvecc' ||
      typeof e.file !== 'string' ||
      e.file.length === 0 ||
      /[/\\]/.test(e.file) ||
      e.file === '.' ||
      e.file === '..'
    ) {
      throw bad('ecc', 'ecc must be null or { kind: "tvecc", file: <a file name> }');
    }
    ecc = { kind: 'tvecc', file: e.file };
  }
  if (typeof b.seal !== 'string' || !/^(sha256|hmac-sha256):[0-9a-f]{64}$/.test(b.seal))
    throw bad('seal', 'seal is malformed');
  const keyed = b.seal.startsWith('hmac-');
  if (keyed !== isKeyedAlgorithm(algorithm)) throw bad('seal', 'seal does not match the algorithm');
  return {
    integrity: 1,
    algorithm,
    chunk_size: chunk,
    file_length: len,
    header_length: hlen,
    header_sha256: headerSha,
    root,
    leaves,
    ecc,
    seal: b.seal,
  };
}

/** Leaf `i` (hex) of a block. */
export function leafAt(block: IntegrityBlock, i: number): string {
  const source = LEAF_SOURCES.get(block);
  if (source !== undefined) return source.hex(i, 1);
  return block.leaves.slice(i * 64, i * 64 + 64);
}

/**
 * The `.tvecc` protection a save asked for, as the `.meta.json` sidecar records it in
 * `tensorvault.ecc.level` (absent in files saved before it was written): a preset, or the custom parameters. It is
 * outside the seal (older readers seal only `kind` and `file`), so it is a hint: it decides only the
 * strength of parity rebuilt from weights that verified against the sealed tree.
 */
export type TveccLevel = 'low' | 'medium' | 'high' | { k: number; m: number; chunk_size: number };

/**
 * The recorded {@link TveccLevel} of a parsed `tensorvault.ecc` member, or undefined when it has none or
 * an unusable one (a file saved before it was recorded, or an edited hint, custom parameters with more
 * parity chunks than data chunks included: never a reason to refuse the checkpoint, only to leave the
 * parity to be rebuilt by hand).
 */
export function recordedTveccLevel(ecc: unknown): TveccLevel | undefined {
  if (typeof ecc !== 'object' || ecc === null) return undefined;
  const level = (ecc as Record<string, unknown>).level;
  if (level === 'low' || level === 'medium' || level === 'high') return level;
  if (typeof level !== 'object' || level === null || Array.isArray(level)) return undefined;
  const { k, m, chunk_size: cs } = level as Record<string, unknown>;
  const int = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v > 0;
  // More parity than data (no preset; `{ k: 1, m: 255 }` would rebuild 255 times the weights): an
  // edited hint, not taken.
  return int(k) && int(m) && int(cs) && m <= k ? { k, m, chunk_size: cs } : undefined;
}
