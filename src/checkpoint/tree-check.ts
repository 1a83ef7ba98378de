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
