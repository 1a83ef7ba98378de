/**
 * The on-disk pieces of a checkpoint: file names of the three layouts and tensorvault's integrity
 * block (`docs/formats/checkpoint.md`); PyFolds's integrity hash is in `pyfolds-hash.ts`.
 */
import { lstatSync, realpathSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { callNative, ErrorCode, invalidArgument, TensorVaultError } from '../errors';
import { canonicalJson } from '../eventlog/canonical';
import { sha256 } from '../hash/index';
import { native } from '../native';
import { equalHex, type HmacKey, keyBytes } from './pyfolds-hash';

// PyFolds's integrity hash (contract section 2) lives in its own module, re-exported here beside the
// other on-disk pieces.
export * from './pyfolds-hash';

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
 * read. When `given` is a symlink to a file, the set is the one beside the file it names (its real
 * path): a save replaces that file and its sidecars and the link stays, and a load, verify or repair
 * through the link finds the sidecars beside the target, as the other writers follow a link
 * (README "Files on disk"). A dangling link or any other path is taken as given.
 */
export function checkpointFiles(given: string): CheckpointFiles {
  if (typeof given !== 'string' || given.length === 0) {
    throw invalidArgument('path', 'path must be a non-empty string');
  }
  const path = followLink(given);
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

/** `path`, or the real path of the file it names when it is a symlink that resolves. */
function followLink(path: string): string {
  try {
    return lstatSync(path).isSymbolicLink() ? realpathSync(path) : path;
  } catch {
    return path; // absent, or a dangling link (a save refuses that: writableTarget)
  }
}

/** The sidecar files of a checkpoint (everything but the weights, the journal and the lock). */
export function sidecarFiles(f: CheckpointFiles): string[] {
  return [f.meta, f.json, f.rsEcc, f.tvecc, f.tvob];
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
