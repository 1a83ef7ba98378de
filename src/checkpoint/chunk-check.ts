/**
 * The check behind a lazy checkpoint's first view or verified range read: the chunks a span covers
 * (and, reading tensors one after another, the next ones) against the sealed leaves, or only its
 * 64 KiB pieces against the outboard; what passes is recorded in {@link CheckedBytes}. The queue,
 * the repair and the report stay in {@link Checkpoint}.
 */
import { readSync } from 'node:fs';
import { sha256 } from '../hash/index';
import { native } from '../native';
import type { TensorInfo } from '../safetensors/reader';
import type { CheckedBytes } from './checked';
import type { WeightsFd } from './descriptor';
import { fdPath } from './integrity';
import { equalHex, type IntegrityBlock, leafAt, treeHashOf } from './layout';
import type { Checkpoint } from './lazy';
import type { OutboardReader } from './outboard';
import { chunkSpan } from './rs';
import { fileLeaves } from './write';

/** Chunks verified by one read-ahead job when tensors are viewed one after another (32 MiB at 1 MiB). */
const READ_AHEAD = 32;
/** Size of the shared scratch buffer of single-chunk checks. */
const CHUNK_SCRATCH = 1024 * 1024;
let scratch = Buffer.alloc(0);

/** What the chunk checks of one {@link Checkpoint} read and record. */
export interface ChunkCheckState {
  /** The sealed integrity block of the weights (tensorvault layout). */
  block: IntegrityBlock;
  /** The weights' path (what the native hasher is given where there is no `/proc/self/fd`). */
  weights: string;
  /** What has been checked so far; the chunks and pieces that pass are added to it. */
  checked: CheckedBytes;
  /** The outboard (blake3 trees), if the checkpoint has one. */
  outboard: OutboardReader | undefined;
  /** The mapped file's own descriptor (`TV_CLOSED` after close); asked for only when a chunk is read. */
  descriptor: () => WeightsFd;
}

/** The chunks of `span` not yet verified that do not match their leaves. */
export async function checkChunks(
  s: ChunkCheckState,
  span: TensorInfo,
  signal?: AbortSignal,
): Promise<number[]> {
  const { block, checked } = s;
  const cs = block.chunk_size;
  const [first, last] = chunkSpan(span.fileOffset, span.fileOffset + span.byteLength, cs);
  const todo: number[] = [];
  for (let c = first; c < last; c++) if (!checked.has(c)) todo.push(c);
  if (todo.length === 0) return [];
  // The chunks are read with pread from the mapped file's own descriptor: the same page-cache pages
  // the views map (this process never writes to the mapping before a view is handed out). The caller
  // has dropped what was checked before if the file changed since (CheckedBytes.current).
  const weights = s.descriptor();
  const tree = treeHashOf(block.algorithm);
  const nChunks = Math.ceil(block.file_length / cs);
  const bad: number[] = [];
  const sequential = first > 0 && checked.has(first - 1);
  if (todo.length === 1 && !sequential) {
    const c = todo[0] as number;
    const r = checkPieces(s, span, c, weights.fd);
    if (r === 'ok') return [];
    if (r === 'damaged') return [c];
    // One chunk (≤ 1 MiB, from the page cache in the common case) is read and hashed on this thread:
    // a pool round trip costs more than the work.
    const start = c * cs;
    const len = Math.min(block.file_length, start + cs) - start;
    // One scratch buffer for every single-chunk check (read and hashed synchronously): a fresh
    // 1 MiB buffer per first view is external memory that makes V8 collect.
    if (scratch.length < len) scratch = Buffer.allocUnsafe(Math.max(len, CHUNK_SCRATCH));
    const buf = scratch.subarray(0, len);
    const got = readSync(weights.fd, buf, 0, len, start);
    const digest =
      got !== len ? '' : tree === 'sha256' ? sha256(buf).toString('hex') : native().checkpointLeaf(buf, tree);
    if (equalHex(digest, leafAt(block, c))) checked.add(c);
    else bad.push(c);
    return bad;
  }
  // Several chunks, or tensors read one after another: one native job reads and hashes the
  // tensor's chunks and, when the reads look sequential, the next unverified ones up to READ_AHEAD
  // chunks in all (in parallel on the pool), so a loop over tensor() pays one job per READ_AHEAD
  // chunks rather than one per tensor. Damage found ahead is not reported here: those chunks stay
  // unverified and are checked again when their tensor is viewed.
  const from = todo[0] as number;
  let to = last;
  if (sequential) while (to < nChunks && to - from < READ_AHEAD && !checked.has(to)) to++;
  const leaves = await weights.lend((fd) =>
    fileLeaves(fdPath(fd, s.weights), tree, from, to - from, signal ? { signal } : {}, cs),
  );
  for (let c = from; c < to; c++) {
    if (checked.has(c)) continue;
    const i = c - from;
    if (equalHex(leaves.slice(i * 64, i * 64 + 64), leafAt(block, c))) checked.add(c);
    else if (c < last) bad.push(c);
  }
  return bad;
}

/**
 * A span in one full chunk, first view: check only the 64 KiB pieces it covers (not yet checked)
 * against the outboard, whose values for the chunk must first merge to the sealed leaf. `unusable`
 * (no outboard, stale, tampered, or the span covers the whole chunk): hash the whole chunk.
 */
function checkPieces(
  s: ChunkCheckState,
  span: TensorInfo,
  c: number,
  fd: number,
): 'ok' | 'damaged' | 'unusable' {
  const { outboard: ob, block, checked } = s;
  const cs = block.chunk_size;
  const start = c * cs;
  if (ob === undefined || start + cs > block.file_length) return 'unusable';
  const n = ob.pieces();
  if (n === 0) return 'unusable';
  const [a, b] = checked.uncheckedPieces(span.fileOffset, span.byteLength, c, n, cs);
  if (a === b) return 'ok';
  if (b - a === n) return 'unusable'; // every piece: one whole-chunk hash is as cheap
  const r = ob.verify(c, leafAt(block, c), a, b, fd);
  if (r !== 'ok') return r;
  checked.addPieces(c, a, b, n);
  return 'ok';
}
