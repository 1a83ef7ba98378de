/** The whole-file check of a checkpoint's chunk tree: which chunks (and so which tensors) differ from the sealed leaves. */
import { statSync } from 'node:fs';
import { ioError } from '../io/fs';
import type { JobOptions } from '../job';
import type { SafetensorsFile } from '../safetensors/reader';
import { equalHex, type IntegrityBlock, leafAt, treeHashOf } from './layout';
import type { Parsed } from './parse';
import { chunkSpan } from './rs';
import { fileLeaves } from './write';

/** The native leaves' mark for a chunk that could not be read (`EIO`). */
export const UNREADABLE_LEAF = '!'.repeat(64);

/**
 * Chunks whose digest differs from the block's leaves (hashing the whole file on the pool); those
 * among them that could not be read at all (`EIO`) are also pushed to `unreadable`.
 */
export async function treeDamage(
  p: Parsed,
  block: IntegrityBlock,
  options: JobOptions,
  path: string = p.weights,
  unreadable?: number[],
): Promise<number[]> {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (err) {
    throw ioError(err, path); // pruned meanwhile: TV_NOT_FOUND
  }
  const n = Math.ceil(block.file_length / block.chunk_size);
  const leaves = await fileLeaves(path, treeHashOf(block.algorithm), 0, n, options, block.chunk_size);
  const bad: number[] = [];
  for (let i = 0; i < n; i++) {
    const leaf = leaves.slice(i * 64, i * 64 + 64);
    if (!equalHex(leaf, leafAt(block, i))) {
      bad.push(i);
      if (leaf === UNREADABLE_LEAF) unreadable?.push(i);
    }
  }
  if (size !== block.file_length && bad.length === 0) bad.push(Math.max(0, n - 1));
  return bad;
}

/**
 * The damage of weights whose header or length differs from the sealed block, in the tree's own
 * chunks (what `verifyCheckpoint` reports and `repairCheckpoint` repairs): every chunk whose digest
 * differs, with chunk 0 (the header's) always among them, and the last chunk when the length alone
 * differs.
 */
export async function headerDamage(
  p: Parsed,
  block: IntegrityBlock,
  options: JobOptions,
  unreadable?: number[],
): Promise<number[]> {
  const bad = await treeDamage(p, block, options, p.weights, unreadable);
  return bad.includes(0) ? bad : [0, ...bad];
}

/** The tensors of `f` with bytes in any of the tree's `chunks` (of `cs` bytes each). */
export function tensorsIn(f: SafetensorsFile, chunks: readonly number[], cs: number): string[] {
  const set = new Set(chunks);
  return f
    .infos()
    .filter((t) => {
      const [a, b] = chunkSpan(t.fileOffset, t.fileOffset + t.byteLength, cs);
      for (let c = a; c < b; c++) if (set.has(c)) return true;
      return false;
    })
    .map((t) => t.name);
}

/**
 * The tensors of `f` with no bytes in any of `chunks`: after a whole-file tree check that found
 * `chunks` damaged, those whose bytes all verified.
 */
export function tensorsOutside(f: SafetensorsFile, chunks: readonly number[], cs: number): string[] {
  const damaged = new Set(tensorsIn(f, chunks, cs));
  return f.names.filter((n) => !damaged.has(n));
}

/** The tensors of `f` with bytes in any of the byte ranges `spans` (`[start, end)`). */
export function tensorsOverlapping(
  f: SafetensorsFile,
  spans: readonly (readonly [number, number])[],
): string[] {
  return f
    .infos()
    .filter((t) => spans.some(([a, b]) => t.fileOffset < b && a < t.fileOffset + t.byteLength))
    .map((t) => t.name);
}
