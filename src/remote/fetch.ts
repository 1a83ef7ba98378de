/**
 * Ranged, parallel, verified reads: chunks of an object are fetched in runs of consecutive chunks (one
 * ranged GET each), hashed as the bytes stream in, compared with their digests, and only then written
 * at their offset in a local file. A chunk that arrives damaged is fetched once more on its own.
 */
import type { FileHandle } from 'node:fs/promises';
import { equalHex } from '../checkpoint/layout';
import { TensorVaultError } from '../errors';
import {
  type LeafHash,
  leafHashOf,
  leafHex,
  leafOf,
  mapLimit,
  type RemoteFileEntry,
  type RemoteManifest,
} from './manifest';
import type { Store } from './store';
import { joinKey } from './url';

/** How to fetch: parallel requests, bytes per request, cancellation, a callback per chunk written. */
export interface FetchOptions {
  concurrency: number;
  /** Bytes per ranged request (a multiple of the chunk size; default 8 MiB). */
  rangeSize: number;
  signal?: AbortSignal | undefined;
  onChunk?: ((index: number, bytes: number) => void) | undefined;
  /**
   * Write a chunk that does not match its leaf too (still reported bad), and the part received of a
   * chunk cut short: a pull's staging copy then holds the stored bytes, so the parity repair sees only
   * the bytes that are damaged. A chunk left unwritten was a whole chunk of zeros, beyond the parity of
   * a small file (one flipped byte: 'no usable parity').
   */
  keepDamaged?: boolean;
}

/** The chunks of a file, its digests and where it is. */
export interface ChunkSource {
  store: Store;
  key: string;
  size: number;
  chunkSize: number;
  /** Expected leaf (hex) of chunk `i`. */
  leaf: (i: number) => string;
  /** The hash of the leaves. */
  hash: LeafHash;
}

/** File `f` of `manifest`, stored under `prefix` in `store`, as a {@link ChunkSource}. */
export function chunkSourceOf(
  store: Store,
  prefix: string,
  manifest: RemoteManifest,
  f: RemoteFileEntry,
): ChunkSource {
  return {
    store,
    key: joinKey(prefix, f.name),
    size: f.size,
    chunkSize: manifest.chunk_size,
    leaf: (i) => leafOf(f, i),
    hash: leafHashOf(manifest),
  };
}

/** The length of chunk `i` (the last one may be short). */
export function chunkLen(src: ChunkSource, i: number): number {
  return Math.min(src.chunkSize, src.size - i * src.chunkSize);
}

/** Whether chunk `i` of the local file already holds the right bytes (a resumed pull, a warm cache). */
export async function localChunkGood(fh: FileHandle, src: ChunkSource, i: number): Promise<boolean> {
  const len = chunkLen(src, i);
  const buf = Buffer.allocUnsafe(len);
  const { bytesRead } = await fh.read(buf, 0, len, i * src.chunkSize);
  if (bytesRead !== len) return false;
  return equalHex(await leafHex(buf, src.hash), src.leaf(i));
}

/** Consecutive chunk indexes grouped into runs of at most `max`. */
function runs(chunks: readonly number[], max: number): number[][] {
  const out: number[][] = [];
  for (const c of chunks) {
    const last = out[out.length - 1];
    if (last !== undefined && last.length < max && (last[last.length - 1] as number) + 1 === c) last.push(c);
    else out.push([c]);
  }
  return out;
}

/** Where verified chunks go: a file handle, or a sink that drops them (remote verify). */
export type ChunkSink = Pick<FileHandle, 'write'>;

async function fetchRun(
  src: ChunkSource,
  run: readonly number[],
  fh: ChunkSink,
  o: FetchOptions,
  bad: Set<number>,
): Promise<void> {
  const first = run[0] as number;
  const last = run[run.length - 1] as number;
  const start = first * src.chunkSize;
  const end = start + (last - first) * src.chunkSize + chunkLen(src, last);
  let idx = first;
  let buf = Buffer.allocUnsafe(chunkLen(src, idx));
  let fill = 0;
  const finish = async (): Promise<void> => {
    // SHA-256 is hashed on the libuv pool (webcrypto): the JS thread keeps parsing the other responses meanwhile.
    const hex = await leafHex(buf, src.hash);
    if (equalHex(hex, src.leaf(idx))) {
      await fh.write(buf, 0, buf.byteLength, idx * src.chunkSize);
      bad.delete(idx);
      o.onChunk?.(idx, buf.byteLength);
    } else {
      bad.add(idx);
      if (o.keepDamaged === true) await fh.write(buf, 0, buf.byteLength, idx * src.chunkSize);
    }
  };
  let body: AsyncIterable<Uint8Array>;
  try {
    body = await src.store.read(src.key, [start, end], o.signal);
  } catch (err) {
    // The object ends before this run (HTTP 416): its chunks are missing, which is damage, not an outage.
    if (err instanceof TensorVaultError && err.context.reason === 'short_object') {
      for (const c of run) bad.add(c);
      return;
    }
    throw err;
  }
  for await (const piece of body) {
    let p = 0;
    while (p < piece.byteLength) {
      if (idx > last) {
        // More bytes than asked for: the store ignored or mangled the range.
        for (const c of run) if (!bad.has(c)) bad.add(c);
        return;
      }
      const take = Math.min(buf.byteLength - fill, piece.byteLength - p);
      buf.set(piece.subarray(p, p + take), fill);
      fill += take;
      p += take;
      if (fill === buf.byteLength) {
        await finish();
        idx += 1;
        if (idx <= last) {
          buf = Buffer.allocUnsafe(chunkLen(src, idx));
          fill = 0;
        }
      }
    }
  }
  // A short body: the chunks not completed are missing.
  if (o.keepDamaged === true && idx <= last && fill > 0) await fh.write(buf, 0, fill, idx * src.chunkSize);
  for (let c = idx; c <= last; c++) bad.add(c);
}

/**
 * Fetch `chunks` (sorted chunk indexes) of `src` into `fh`, each verified before it is written.
 * Damaged chunks are fetched once more on their own; resolves with those still damaged (never written).
 */
export async function fetchChunks(
  src: ChunkSource,
  chunks: readonly number[],
  fh: ChunkSink,
  o: FetchOptions,
): Promise<number[]> {
  const bad = new Set<number>();
  const per = Math.max(1, Math.floor(o.rangeSize / src.chunkSize));
  await mapLimit(runs(chunks, per), o.concurrency, (run) => fetchRun(src, run, fh, o, bad));
  if (bad.size > 0) {
    const again = [...bad].sort((a, b) => a - b);
    await mapLimit(again, o.concurrency, (c) => fetchRun(src, [c], fh, o, bad));
  }
  return [...bad].sort((a, b) => a - b);
}
