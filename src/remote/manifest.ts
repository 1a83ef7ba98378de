/**
 * The remote manifest `MAIN.tvremote.json`: the commit point of a pushed set. It is written last; a
 * set without one was never completely pushed and is not read. It lists every file of the set with its
 * size, SHA-256 and the SHA-256 of each `chunk_size` chunk (the same leaves as the checkpoint's chunk
 * tree for the weights file, which the reader cross-checks against the sealed integrity block).
 * Format: docs/remote.md.
 */
import { createHash, webcrypto } from 'node:crypto';
import { ErrorCode, TensorVaultError } from '../errors';
import { native } from '../native';

/** Suffix of the manifest object's key (after the main file's key). */
export const MANIFEST_SUFFIX = '.tvremote.json';

/** Chunk size of the leaves (the checkpoint chunk tree's: 1 MiB). */
export const REMOTE_CHUNK_SIZE = 1024 * 1024;

/**
 * The hash of the leaves: `sha256`, or `blake3` when the weights' sealed integrity block uses a
 * `blake3-tree-v1` chunk tree (the leaves are then the block's own, so a reader cross-checks them).
 */
export type LeafHash = 'sha256' | 'blake3';

/** The leaf hash of a manifest (`sha256` when the field is absent). */
export function leafHashOf(m: RemoteManifest): LeafHash {
  return m.leaf_hash ?? 'sha256';
}

/** The leaf (hex) of one chunk's bytes; SHA-256 on the libuv pool (webcrypto), BLAKE3 in the addon. */
export async function leafHex(buf: Uint8Array, hash: LeafHash): Promise<string> {
  if (hash === 'blake3') return native().checkpointLeaf(buf, 'blake3');
  return Buffer.from(await webcrypto.subtle.digest('SHA-256', buf)).toString('hex');
}

/** The leaf (hex) of one chunk's bytes, on this thread. */
export function leafHexSync(buf: Uint8Array, hash: LeafHash): string {
  if (hash === 'blake3') return native().checkpointLeaf(buf, 'blake3');
  return createHash('sha256').update(buf).digest('hex');
}

/** One file of a pushed set. */
export interface RemoteFileEntry {
  /** Plain file name (no folder); its key is the set's prefix + `/` + name. */
  name: string;
  /** Length in bytes. */
  size: number;
  /** SHA-256 (hex) of the whole file. */
  sha256: string;
  /** The leaf hash (`leaf_hash`) of each chunk, hex, concatenated (`ceil(size / chunk_size)` × 64 characters). */
  leaves: string;
}

/** What kind of set was pushed: a checkpoint layout, or `file` for anything else (a backup archive). */
export type RemoteSetKind = 'tensorvault' | 'pyfolds' | 'pyfolds-ecc' | 'file';

/** The manifest document. */
export interface RemoteManifest {
  tensorvault_remote: 1;
  /** The main file (weights or archive). */
  main: string;
  layout: RemoteSetKind;
  chunk_size: number;
  /** Hash of every file's leaves (absent: `sha256`). */
  leaf_hash?: LeafHash;
  created_at: string;
  files: RemoteFileEntry[];
}

function bad(url: string, why: string): TensorVaultError {
  return new TensorVaultError(ErrorCode.REMOTE_DAMAGED, `${url}: malformed remote manifest (${why})`, {
    url,
    reason: 'manifest',
  });
}

/** Parse and validate a manifest's bytes (`url` names it in errors). */
export function parseManifest(bytes: Uint8Array, url: string): RemoteManifest {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw bad(url, 'not JSON');
  }
  if (typeof doc !== 'object' || doc === null) throw bad(url, 'not an object');
  const m = doc as Record<string, unknown>;
  if (m.tensorvault_remote !== 1) throw bad(url, 'tensorvault_remote is not 1');
  const cs = m.chunk_size;
  if (typeof cs !== 'number' || !Number.isSafeInteger(cs) || cs < 4096 || (cs & (cs - 1)) !== 0)
    throw bad(url, 'chunk_size');
  if (!['tensorvault', 'pyfolds', 'pyfolds-ecc', 'file'].includes(m.layout as string))
    throw bad(url, 'layout');
  if (m.leaf_hash !== undefined && m.leaf_hash !== 'sha256' && m.leaf_hash !== 'blake3')
    throw bad(url, 'leaf_hash');
  if (!Array.isArray(m.files) || m.files.length === 0) throw bad(url, 'files');
  const names = new Set<string>();
  for (const f of m.files as unknown[]) {
    const e = f as Record<string, unknown>;
    if (typeof e !== 'object' || e === null) throw bad(url, 'file entry');
    const name = e.name;
    if (typeof name !== 'string' || !/^[^/\\\0]+$/.test(name) || name === '.' || name === '..')
      throw bad(url, 'file name');
    if (names.has(name)) throw bad(url, `duplicate ${name}`);
    names.add(name);
    const size = e.size;
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0)
      throw bad(url, `size of ${name}`);
    if (typeof e.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(e.sha256)) throw bad(url, `sha256 of ${name}`);
    const n = Math.ceil(size / cs);
    if (typeof e.leaves !== 'string' || e.leaves.length !== n * 64 || !/^[0-9a-f]*$/.test(e.leaves))
      throw bad(url, `leaves of ${name}`);
  }
  if (typeof m.main !== 'string' || !names.has(m.main)) throw bad(url, 'main');
  return m as unknown as RemoteManifest;
}

/** Leaf `i` of a file entry. */
export function leafOf(entry: RemoteFileEntry, i: number): string {
  return entry.leaves.slice(i * 64, i * 64 + 64);
}

/** The leaf of each `chunk`-sized piece of `data`, concatenated. */
export function chunkLeaves(data: Uint8Array, chunk: number, hash: LeafHash = 'sha256'): string {
  let out = '';
  for (let o = 0; o < data.byteLength; o += chunk)
    out += leafHexSync(data.subarray(o, Math.min(data.byteLength, o + chunk)), hash);
  return out;
}

/** Run `fn` over `items` with at most `limit` at once; the first failure stops new work and is thrown. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  let failed: unknown;
  const worker = async (): Promise<void> => {
    while (failed === undefined && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i] as T, i);
      } catch (err) {
        if (failed === undefined) failed = err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failed !== undefined) throw failed;
  return out;
}
