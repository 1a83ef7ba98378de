/**
 * Remote repair: rebuild the damaged chunks of a stored checkpoint's weights from the parity stored with
 * it, and rewrite only the parts of the object that hold them. The set is pulled into a temporary folder
 * (which verifies every chunk and repairs the weights from the parity); then the weights object is
 * replaced by a multipart upload in which the parts holding repaired chunks are sent and every other part
 * is copied by the store from the stored object (UploadPartCopy: no transfer). All or nothing: every
 * part's bytes are checked against the manifest's chunk digests as they are read from the pulled copy,
 * each part's ETag against the MD5 of those bytes (a copied part's too), and only then is the upload
 * completed; any failure before that aborts it and leaves the stored object as it was. The final
 * write is conditional on the version of the object the repair read (If-Match on its ETag, taken
 * before the pull): weights replaced meanwhile by another writer are never overwritten with repaired
 * old ones (`TV_FILE_CHANGED`, `reason: object_changed`, nothing written). The repaired
 * chunks are then read back and checked against their digests. The manifest and the sidecars are
 * unchanged: the object gets back the bytes they describe.
 */
import { mkdtemp, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { equalHex } from '../checkpoint/layout';
import { ErrorCode, invalidArgument, TensorVaultError } from '../errors';
import { closeQuietly, removeQuietly, typedIoError } from '../io/fs';
import { optionsObject } from '../validate';
import { publishRemote } from './common';
import { type ChunkSink, fetchChunks } from './fetch';
import { type LeafHash, leafHashOf, leafHex, leafOf, type RemoteFileEntry } from './manifest';
import { openManifest, type PullOptions, pull } from './pull';
import { checkPartSize, md5Hex, type UploadedPart, type WriteOptions } from './store';
import { joinKey } from './url';

/** Options of {@link repairRemote}. */
export interface RepairRemoteOptions extends Omit<PullOptions, 'overwrite' | 'repair'> {
  /**
   * Part size of the rewritten object (default 8 MiB; a multiple of 1 MiB, at least 5 MiB and at most
   * 5 GiB, as for push; else `TV_INVALID_ARGUMENT` before anything is read or written).
   */
  partSize?: number;
  /** Where the set is pulled to while it is repaired (default the OS temp folder). */
  workDir?: string;
  /**
   * Requests in flight at once (default 8; an integer from 1 to 64, else `TV_INVALID_ARGUMENT` before
   * anything is read or written): the pull's ranged GETs, the rewrite's parts (sent or copied by the
   * store) and the read-back of the repaired chunks.
   */
  concurrency?: number;
}

/** What {@link repairRemote} did. */
export interface RemoteRepairReport {
  url: string;
  /** `intact`: nothing was damaged; `repaired`: the damaged chunks were rebuilt and rewritten. */
  status: 'intact' | 'repaired';
  /** Chunks (of 1 MiB) of the weights that were damaged in the store and are now rewritten. */
  repairedChunks: number[];
  /** Parts sent with repaired bytes. */
  partsRewritten: number;
  /** Parts copied by the store from the stored object (not transferred). */
  partsCopied: number;
  /** Body bytes sent. */
  bytesUploaded: number;
}

const dropSink: ChunkSink = {
  write: (async () => ({ bytesWritten: 0, buffer: Buffer.alloc(0) })) as unknown as ChunkSink['write'],
};

/**
 * A check of the bytes of `entry` fed in order from its start (in pieces of any length): resolves with
 * the chunks completed by each piece whose leaf differs from the manifest's.
 */
function orderedLeafCheck(
  entry: RemoteFileEntry,
  chunkSize: number,
  hash: LeafHash,
): (piece: Buffer) => Promise<number[]> {
  let chunk = 0;
  let pending: Buffer[] = [];
  let have = 0;
  return async (piece) => {
    const bad: number[] = [];
    let p = 0;
    while (p < piece.byteLength) {
      const want = Math.min(chunkSize, entry.size - chunk * chunkSize) - have;
      if (want <= 0) {
        // More bytes than the file has: every further piece is wrong.
        bad.push(chunk);
        break;
      }
      const take = Math.min(want, piece.byteLength - p);
      pending.push(piece.subarray(p, p + take));
      have += take;
      p += take;
      if (take === want) {
        const data = pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending);
        if (!equalHex(await leafHex(data, hash), leafOf(entry, chunk))) bad.push(chunk);
        chunk += 1;
        pending = [];
        have = 0;
      }
    }
    return bad;
  };
}

/**
 * Repair the stored set whose main object is `url` in place (see the module comment). Rejects with
 * `TV_REMOTE_DAMAGED` when the damage is beyond the parity, or is in a file other than the weights, and
 * with `TV_FILE_CHANGED` (`reason: object_changed`) when another writer replaced the weights object
 * after the repair read it (nothing is written then).
 */
export async function repairRemote(
  url: string,
  options: RepairRemoteOptions = {},
): Promise<RemoteRepairReport> {
  // Checked before anything is read or written (the rule push uses).
  optionsObject(options);
  const partSize = checkPartSize(options.partSize);
  const concurrency = options.concurrency ?? 8;
  if (!Number.isSafeInteger(concurrency) || concurrency < 1 || concurrency > 64)
    throw invalidArgument('concurrency', 'concurrency must be an integer from 1 to 64');
  const t0 = performance.now();
  const workRoot = options.workDir ?? tmpdir();
  const work = await mkdtemp(join(workRoot, 'tv-remote-repair-')).catch((err: unknown) => {
    throw typedIoError(err, workRoot);
  });
  try {
    const { workDir: _w, partSize: _p, ...pullOptions } = options;
    const { store, prefix, manifest } = await openManifest(url, options);
    const key = joinKey(prefix, manifest.main);
    const mainUrl = store.url(key);
    try {
      // The version of the weights object the repair reads, taken before the pull reads it: the
      // rewrite replaces only that version (If-Match), so a newer object written meanwhile by another
      // writer is never overwritten with a repaired old one (TV_FILE_CHANGED, nothing written).
      const read = await store.stat(key, options.signal);
      const pulled = await pull(url, work, { ...pullOptions, repair: true });
      // A weights object longer (or shorter) than recorded is rewritten too, every part copied.
      const storedSize = read?.size;
      const write: WriteOptions = read === undefined ? { ifAbsent: true } : { ifMatch: read.etag };
      const entry = manifest.files.find((f) => f.name === manifest.main) as RemoteFileEntry;
      if (pulled.repairedChunks.length === 0 && storedSize === entry.size) {
        return {
          url: mainUrl,
          status: 'intact',
          repairedChunks: [],
          partsRewritten: 0,
          partsCopied: 0,
          bytesUploaded: 0,
        };
      }
      const cs = manifest.chunk_size;
      const up0 = store.metrics.bytesUp;
      const fh = await open(pulled.path, 'r');
      // Every byte sent or copied is first checked against the manifest's chunk digests (the pulled copy
      // could have changed on the local disk since the pull verified it): the new object is made visible
      // (one PutObject, or CompleteMultipartUpload) only once all of it is known to be the recorded bytes.
      const check = orderedLeafCheck(entry, cs, leafHashOf(manifest));
      const readVerified = async (start: number, end: number): Promise<Buffer> => {
        const buf = Buffer.alloc(end - start);
        const { bytesRead } = await fh.read(buf, 0, buf.byteLength, start);
        const bad = bytesRead === buf.byteLength ? await check(buf) : [Math.floor((start + bytesRead) / cs)];
        if (bad.length > 0) {
          throw new TensorVaultError(
            ErrorCode.FILE_CHANGED,
            `${pulled.path}: the repaired copy changed after it was verified (chunks ${bad.join(', ')}); the stored object is unchanged`,
            { path: pulled.path, reason: 'chunk_digest' },
          );
        }
        return buf;
      };
      let rewritten = 0;
      let copied = 0;
      try {
        if (entry.size <= partSize) {
          const buf = await readVerified(0, entry.size);
          await store.put(key, buf, options.signal, write);
          rewritten = 1;
        } else {
          const damagedParts = new Set(pulled.repairedChunks.map((c) => Math.floor((c * cs) / partSize) + 1));
          const id = await store.createUpload(key, options.signal);
          const inFlight = new Set<Promise<void>>();
          try {
            const n = Math.ceil(entry.size / partSize);
            const parts: UploadedPart[] = new Array(n);
            // Parts are read and checked in order on this side; their uploads and copies run
            // `concurrency` at a time (as push's parts).
            let failure: unknown;
            for (let part = 1; part <= n && failure === undefined; part++) {
              const start = (part - 1) * partSize;
              const end = Math.min(entry.size, start + partSize);
              const verified = await readVerified(start, end);
              const md5 = md5Hex(verified);
              const size = verified.byteLength;
              const send = damagedParts.has(part);
              // A copied part's bytes are not kept: only their MD5 is needed.
              const buf = send ? verified : undefined;
              const task = (async () => {
                const etag =
                  buf !== undefined
                    ? await store.uploadPart(key, id, part, buf, options.signal)
                    : await store.uploadPartCopy(key, id, part, [start, end], options.signal);
                // A copied part must hold the verified bytes too (its ETag is the MD5 of what was copied).
                if (etag !== md5) {
                  throw new TensorVaultError(
                    ErrorCode.REMOTE_DAMAGED,
                    `${mainUrl}: part ${part} of the rewritten object does not hold the verified bytes`,
                    { url: mainUrl, file: manifest.main, reason: 'part_etag', chunks: String(part) },
                  );
                }
                if (send) rewritten += 1;
                else copied += 1;
                parts[part - 1] = { part, etag, size };
              })().catch((err: unknown) => {
                if (failure === undefined) failure = err;
              });
              inFlight.add(task);
              void task.finally(() => inFlight.delete(task));
              if (inFlight.size >= concurrency) await Promise.race(inFlight);
            }
            await Promise.all(inFlight);
            if (failure !== undefined) throw failure;
            // INVARIANT: the parts cover [0, entry.size) in order, each checked above.
            const sent = parts.reduce((a, p) => a + p.size, 0);
            if (sent !== entry.size)
              throw new TensorVaultError(
                ErrorCode.INTERNAL,
                `${mainUrl}: the rewrite covers ${sent} bytes, not ${entry.size}`,
                { url: mainUrl },
              );
            await store.complete(key, id, parts, options.signal, write);
          } catch (err) {
            // The parts in flight settle first (their failures are caught): then nothing writes to it.
            await Promise.all(inFlight);
            await store.abort(key, id);
            throw err;
          }
        }
      } finally {
        await closeQuietly(fh);
      }
      // Read the repaired chunks back from the store.
      const still = await fetchChunks(
        {
          store,
          key,
          size: entry.size,
          chunkSize: cs,
          leaf: (i) => leafOf(entry, i),
          hash: leafHashOf(manifest),
        },
        pulled.repairedChunks,
        dropSink,
        { concurrency, rangeSize: 8 * 1024 * 1024, signal: options.signal },
      );
      if (still.length > 0) {
        throw new TensorVaultError(
          ErrorCode.REMOTE_DAMAGED,
          `${mainUrl}: chunks ${still.join(', ')} still differ after the rewrite`,
          { url: mainUrl, file: manifest.main, chunks: still.join(','), reason: 'chunk_digest' },
        );
      }
      const report: RemoteRepairReport = {
        url: mainUrl,
        status: 'repaired',
        repairedChunks: pulled.repairedChunks,
        partsRewritten: rewritten,
        partsCopied: copied,
        bytesUploaded: store.metrics.bytesUp - up0,
      };
      publishRemote({
        event: 'repaired',
        url: mainUrl,
        chunks: pulled.repairedChunks,
        ms: performance.now() - t0,
      });
      return report;
    } finally {
      store.close();
    }
  } catch (err) {
    // A full disk under the work folder, a failing read: TV_IO.
    throw typedIoError(err, work);
  } finally {
    await removeQuietly(work);
  }
}
