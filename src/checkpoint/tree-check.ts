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
 * Chunks whose digest differs from the block's leaves (hashing the whole file on the pool, or with
 * `only` just those chunks: the caller proved the others intact); those among them that could not be
 * read at all (`EIO`) are also pushed to `unreadable`.
 */
export async function treeDamage(
  p: Parsed,
  block: IntegrityBlock,
  options: JobOptions,
  path: string = p.weights,
  unreadable?: number[],
  only?: readonly number[],
): Promise<number[]> {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (err) {
    throw ioError(err, path); // pruned meanwhile: TV_NOT_FOUND
  }
  const n = Math.ceil(block.file_length / block.chunk_size);
  const tree = treeHashOf(block.algorithm);
  // Runs of consecutive chunks to hash: [first, count].
  const runs: [number, number][] = [];
  if (only === undefined) runs.push([0, n]);
  else {
    for (const c of [...new Set(only)].filter((c) => c >= 0 && c < n).sort((a, b) => a - b)) {
      const last = runs[runs.length - 1];
      if (last !== undefined && last[0] + last[1] === c) last[1]++;
      else runs.push([c, 1]);
    }
  }
  const bad: number[] = [];
  for (const [first, count] of runs) {
    const leaves = await fileLeaves(path, tree, first, count, options, block.chunk_size);
    for (let i = 0; i < count; i++) {
      const leaf = leaves.slice(i * 64, i * 64 + 64);
      if (!equalHex(leaf, leafAt(block, first + i))) {
        bad.push(first + i);
        if (leaf === UNREADABLE_LEAF) unreadable?.push(first + i);
      }
    }
  }
  if (size !== block.file_length && bad.length === 0) bad.push(Math.max(0, n - 1));
  return bad;
}

/**
 * The damage of weights whose header or length differs from the sealed block, in the tree's own
 * chunks (what `verifyCheckpoint` reports and `repairCheckpoint` repairs): every chunk whose digest
 * differs, with chunk 0 (the header's) always among them, and the last chunk when the length alone
 * differs. `only`: the chunks that can differ (another check proved the rest intact), the only ones
 * hashed.
 */
export async function headerDamage(
  p: Parsed,
  block: IntegrityBlock,
  options: JobOptions,
  unreadable?: number[],
  only?: readonly number[],
): Promise<number[]> {
  const bad = await treeDamage(p, block, options, p.weights, unreadable, only);
  return bad.includes(0) ? bad : [0, ...bad];
}

/**
 * The tree's chunks (of `cs` bytes) that hold any byte of the parity's chunks `eccChunks` (of `ecs`
 * bytes each), plus the last one (`n` chunks in all) when the file's length differs from the sealed
 * one (appended bytes may fall in it): every chunk whose digest can differ when the parity's verify
 * found only `eccChunks` damaged, since a byte that differs lies in a damaged parity chunk.
 */
export function treeChunksHolding(
  eccChunks: readonly number[],
  ecs: number,
  cs: number,
  n: number,
  lengthDiffers: boolean,
): number[] {
  const out = new Set<number>();
  for (const c of eccChunks) {
    for (let t = Math.floor((c * ecs) / cs); t <= Math.floor(((c + 1) * ecs - 1) / cs) && t < n; t++)
      out.add(t);
  }
  if (lengthDiffers && n > 0) out.add(n - 1);
  return [...out].sort((a, b) => a - b);
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
