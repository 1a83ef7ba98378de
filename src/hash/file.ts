/** Hashing files on the libuv pool: plain SHA-256 or the chunk tree (`docs/formats/chunk-tree.md`). */
import { invalidArgument } from '../errors';
import { type JobOptions, runJob } from '../job';
import { native } from '../native';
import { describeValue, optionalBoolean, optionsObject } from '../validate';
import { describe } from './sha256';

/** Default chunk size of the chunk tree: 4 MiB. */
export const DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024;

/** Options of {@link hashFile}. */
export interface HashFileOptions extends JobOptions {
  /** Compute the chunk tree instead of one plain SHA-256 (default false). */
  tree?: boolean;
  /** Chunk size of the tree in bytes: a power of two from 4 KiB to 1 GiB (default 4 MiB). Implies `tree`. */
  chunkSize?: number;
  /** Return the tree's leaf digests (default false). Implies `tree`. */
  leaves?: boolean;
  /** Threads for the tree (default: all cores). */
  threads?: number;
}

/** Result of {@link hashFile}. */
export interface HashFileResult {
  /** `sha256` for a plain hash, `sha256-tree-v1` for a chunk tree root. */
  algorithm: 'sha256' | 'sha256-tree-v1';
  /** Hex digest: the file's SHA-256, or the tree's root. */
  digest: string;
  /** The file's length in bytes. */
  length: number;
  /** Chunk size of the tree (tree only). */
  chunkSize?: number;
  /** Number of chunks (tree only). */
  chunkCount?: number;
  /** Hex SHA-256 of each chunk, in order (only with `leaves: true`). */
  leaves?: string[];
}

function checkPositiveInt(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw invalidArgument(name, `${name} must be an integer from ${min} to ${max}, got ${describeValue(v)}`, {
      actual: typeof v === 'number' ? v : describeValue(v),
    });
  }
  return v;
}

/**
 * Hash the file at `path` on the libuv pool (the JS thread is never blocked). Plain SHA-256 by
 * default; with `tree`, `chunkSize` or `leaves`, the chunk tree (chunks hashed in parallel). Honours
 * `signal` (rejects with an `AbortError` and stops reading) and reports `onProgress`. A file whose
 * length is a placeholder (0, as every procfs file reports, or any length on sysfs) is read to its
 * end, as `sha256sum` reads it, and `length` is what was read.
 */
export async function hashFile(path: string, options: HashFileOptions = {}): Promise<HashFileResult> {
  if (typeof path !== 'string' || path.length === 0) {
    throw invalidArgument('path', `path must be a non-empty string, got ${describe(path)}`);
  }
  optionsObject(options);
  optionalBoolean(options.tree, 'tree');
  optionalBoolean(options.leaves, 'leaves');
  const tree = options.tree === true || options.chunkSize !== undefined || options.leaves === true;
  const chunkSize = tree
    ? checkPositiveInt('chunkSize', options.chunkSize ?? DEFAULT_CHUNK_SIZE, 1, 2 ** 30)
    : undefined;
  const threads =
    options.threads === undefined ? undefined : checkPositiveInt('threads', options.threads, 1, 1024);
  const result = await runJob('hashFile', options, (control) =>
    native().hashFile(path, chunkSize, threads, control),
  );
  const out: HashFileResult = {
    algorithm: tree ? 'sha256-tree-v1' : 'sha256',
    digest: result.digest.toString('hex'),
    length: result.length,
  };
  if (tree && result.chunkSize !== undefined) {
    out.chunkSize = result.chunkSize;
    out.chunkCount = (result.leaves?.length ?? 0) / 32;
    if (options.leaves === true && result.leaves !== undefined) {
      const leaves: string[] = [];
      for (let i = 0; i < result.leaves.length; i += 32)
        leaves.push(result.leaves.toString('hex', i, i + 32));
      out.leaves = leaves;
    }
  }
  return out;
}
