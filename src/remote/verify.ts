/**
 * Remote verify and listing: check a stored set without writing it to disk (every chunk of every file
 * streamed in ranged requests and compared with its digest; damaged weights are fetched once more, with
 * their parity, for the erasure code to say whether it rebuilds them), and list the sets under a prefix.
 */
import { createHash } from 'node:crypto';
import { type FileHandle, mkdtemp, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { checkpointFiles } from '../checkpoint/layout';
import { checkKeyPolicy, checkOptions } from '../checkpoint/parse';
import { parseStoredHash } from '../checkpoint/pyfolds-hash';
import { rethrownByParity } from '../checkpoint/repair-lock';
import { verifyCheckpoint } from '../checkpoint/verify';
import { verify as eccVerify } from '../ecc/erasure';
import { ErrorCode, TensorVaultError } from '../errors';
import { closeQuietly, removeQuietly, typedIoError } from '../io/fs';
import type { JobOptions } from '../job';
import { optionsObject } from '../validate';
import { publishRemote } from './common';
import { type ChunkSink, chunkLen, chunkSourceOf, fetchChunks } from './fetch';
import { loadRemoteCheckpoint, type RemoteLoadOptions } from './lazy';
import { MANIFEST_SUFFIX, parseManifest, type RemoteManifest } from './manifest';
import { openStore } from './open-store';
import { openManifest, parityName } from './pull';
import { type RemoteOptions, readAll, type Store } from './store';
import { joinKey, parseRemoteUrl } from './url';

/** Options of {@link verifyRemote}. */
export interface VerifyRemoteOptions
  extends JobOptions,
    RemoteOptions,
    Pick<RemoteLoadOptions, 'hmacKey' | 'requireHmac' | 'cacheDir'> {
  /** Ranged requests in flight (default 8). */
  concurrency?: number;
  /**
   * Where damaged weights and their parity are fetched to, to ask the parity whether it rebuilds them
   * (default the OS temp folder; only when the weights are damaged and the set has parity).
   */
  workDir?: string;
}

/** What {@link verifyRemote} found. */
export interface RemoteVerifyReport {
  url: string;
  layout: RemoteManifest['layout'];
  /**
   * `intact`: every chunk matches; `repairable`: only the weights are damaged, the parity arrived intact
   * and rebuilds them (the erasure code's own budget decides, as for a local verify); else `damaged`.
   */
  status: 'intact' | 'repairable' | 'damaged';
  /**
   * Per file: size (as the manifest records it), the size of the stored object, and the damaged chunk
   * indexes (of `chunkSize` bytes; a chunk past the end of a shorter object is damaged). A file whose
   * stored size differs from `size` is damaged even when every chunk of `size` bytes matches. A file
   * the manifest lists but the store no longer has is `missing` (every chunk damaged, `storedSize` 0).
   */
  files: { name: string; size: number; storedSize: number; damagedChunks: number[]; missing?: true }[];
  chunkSize: number;
  /** Body bytes read from the store. */
  bytesRead: number;
}

/**
 * Whether the stored parity rebuilds the stored weights: both are fetched (every chunk of the weights
 * written as stored, damaged or not, in the manifest's length, as a pull stages them) into a temporary
 * folder under `workDir`, and the erasure code verifies them, read-only. Its verdict, within its budget
 * or not, is the one a local verify of the same bytes gives and the one the repair of a pull meets.
 * `parity`: the `.tvecc` sidecar, or the rs(N) stream `.ecc` of a `pyfolds-ecc` set, fetched with its
 * `NAME.json` and judged by the local `verifyCheckpoint` (rs(N) blocks, the correction against the hash).
 */
async function parityRebuilds(
  store: Store,
  prefix: string,
  manifest: RemoteManifest,
  parity: string,
  options: VerifyRemoteOptions,
): Promise<boolean> {
  const root = options.workDir ?? tmpdir();
  const work = await mkdtemp(join(root, 'tv-remote-verify-')).catch((err: unknown) => {
    throw typedIoError(err, root);
  });
  try {
    const weights = join(work, manifest.main);
    const fetched: [string, string][] = [
      [manifest.main, weights],
      [parity, join(work, parity)],
    ];
    // pyfolds-ecc: the rs(N) verdict needs the PyFolds hash (NAME.json) to judge the correction.
    const json = basename(checkpointFiles(weights).json);
    if (manifest.layout === 'pyfolds-ecc') fetched.push([json, join(work, json)]);
    for (const [name, path] of fetched) {
      const f = manifest.files.find((e) => e.name === name);
      if (f === undefined) return false;
      const src = chunkSourceOf(store, prefix, manifest, f);
      const all = Array.from({ length: Math.ceil(f.size / manifest.chunk_size) }, (_, i) => i);
      const fh = await open(path, 'w+');
      try {
        await fh.truncate(f.size);
        await fetchChunks(src, all, fh, {
          concurrency: options.concurrency ?? 8,
          rangeSize: 8 * 1024 * 1024,
          signal: options.signal,
          keepDamaged: true,
        });
      } finally {
        await closeQuietly(fh);
      }
    }
    try {
      if (manifest.layout === 'pyfolds-ecc') {
        // The local verify of the same bytes: the rs(N) stream corrects every damaged block and the
        // correction matches the PyFolds hash (what the repair of a pull then checks and writes).
        const r = await verifyCheckpoint(weights, {
          ...(options.hmacKey === undefined ? {} : { hmacKey: options.hmacKey }),
          ...(options.signal === undefined ? {} : { signal: options.signal }),
        });
        return r.status === 'repairable';
      }
      const v = await eccVerify(weights, {
        sidecar: join(work, parity),
        ...(options.signal === undefined ? {} : { signal: options.signal }),
      });
      // The staged copy's modification time is not the one protected: `damageStatus`, never `stale`.
      return v.damageStatus === 'repairable';
    } catch (err) {
      // An unusable sidecar cannot repair anything; an abort, a full disk or a read error rejects, as
      // does a keyed PyFolds hash without its key or with the wrong one (the local verify's answer).
      if (keyError(err))
        throw atUrl(err as TensorVaultError, weights, store.url(joinKey(prefix, manifest.main)));
      if (rethrownByParity(err)) throw err;
      return false;
    }
  } catch (err) {
    throw typedIoError(err, work);
  } finally {
    await removeQuietly(work);
  }
}

/**
 * `err` of the local check of the temporary copy `local` (removed when the verify returns), naming the
 * stored weights' `url` instead, in its message and `context.path`.
 */
function atUrl(err: TensorVaultError, local: string, url: string): TensorVaultError {
  return new TensorVaultError(
    err.code,
    err.message.split(local).join(url),
    { ...err.context, path: url },
    { cause: err },
  );
}

/** A keyed integrity hash checked without its key (or with a wrong one): the caller's to fix. */
function keyError(err: unknown): boolean {
  return (
    err instanceof TensorVaultError &&
    (err.code === ErrorCode.CHECKPOINT_HMAC_REQUIRED ||
      (err.code === ErrorCode.CHECKPOINT_INTEGRITY && err.context.reason === 'key'))
  );
}

/**
 * The key policy of a PyFolds set (`pyfolds`, `pyfolds-ecc`), as the local `verifyCheckpoint` applies
 * it: with a key configured (`hmacKey`, `PYFOLDS_CHECKPOINT_HMAC_KEY`) or `requireHmac: true`, an
 * unkeyed integrity hash is `TV_CHECKPOINT_HMAC_REQUIRED` (`context.path`: the weights' URL, `actual`:
 * the stored hash's kind). The hash's kind is read from the stored sidecar (`NAME.json` or
 * `NAME.safetensors.meta.json`) once it matches the manifest's digest; a sidecar that does not is
 * reported damaged by the chunk pass, never taken as evidence either way.
 */
async function checkPyfoldsKeyPolicy(
  store: Store,
  prefix: string,
  manifest: RemoteManifest,
  mainUrl: string,
  options: VerifyRemoteOptions,
): Promise<void> {
  const { key, requireHmac } = checkOptions({
    verify: 'full',
    ...(options.hmacKey === undefined ? {} : { hmacKey: options.hmacKey }),
    ...(options.requireHmac === undefined ? {} : { requireHmac: options.requireHmac }),
  });
  if (!requireHmac) return;
  const name =
    manifest.layout === 'pyfolds-ecc'
      ? basename(checkpointFiles(manifest.main).json)
      : `${manifest.main}.meta.json`;
  const entry = manifest.files.find((f) => f.name === name);
  if (entry === undefined) return;
  let doc: unknown;
  try {
    const bytes = await readAll(store, joinKey(prefix, name), options.signal);
    if (createHash('sha256').update(bytes).digest('hex') !== entry.sha256) return;
    doc = JSON.parse(bytes.toString('utf8')) as unknown;
  } catch (err) {
    // Missing, damaged or not JSON: the chunk pass reports the file. An outage, an abort: rejected.
    const reported =
      !(err instanceof TensorVaultError) ||
      err.code === ErrorCode.REMOTE_NOT_FOUND ||
      err.code === ErrorCode.REMOTE_DAMAGED;
    if (!reported) throw err;
    return;
  }
  const text =
    typeof doc === 'object' && doc !== null
      ? (doc as { integrity_hash?: unknown }).integrity_hash
      : undefined;
  const stored = parseStoredHash(text, mainUrl);
  // The local policy (mode 'none': whether the hash matches, under the key, is not this pass's to say).
  checkKeyPolicy({ files: { weights: mainUrl }, stored }, key, true, 'none');
}

const dropSink: ChunkSink = {
  write: (async () => ({ bytesWritten: 0, buffer: Buffer.alloc(0) })) as unknown as FileHandle['write'],
};

/**
 * Verify the set whose main object is `url` where it is stored: for a tensorvault checkpoint the seal
 * and header first (as a lazy load opens it), then every chunk of every file, streamed and compared
 * with its digest; nothing is written to disk but the checkpoint's header in the lazy-load cache and,
 * when the weights are damaged and the set has parity, a temporary copy of both (under `workDir`) that
 * the erasure code checks to say whether the damage is within what the parity rebuilds.
 * Resolves with the report; rejects when the set cannot be read at all (missing, no manifest, seal) or
 * the key policy refuses it (`hmacKey` / `requireHmac` and an unkeyed set: `TV_CHECKPOINT_HMAC_REQUIRED`).
 */
export async function verifyRemote(
  url: string,
  options: VerifyRemoteOptions = {},
): Promise<RemoteVerifyReport> {
  optionsObject(options);
  const t0 = performance.now();
  const { store, prefix, manifest } = await openManifest(url, options);
  const mainUrl = store.url(joinKey(prefix, manifest.main));
  try {
    if (manifest.layout === 'pyfolds' || manifest.layout === 'pyfolds-ecc') {
      await checkPyfoldsKeyPolicy(store, prefix, manifest, mainUrl, options);
    } else if (manifest.layout === 'tensorvault') {
      const { concurrency: _c, onProgress: _p, workDir: _w, ...o } = options;
      try {
        (await loadRemoteCheckpoint(mainUrl, { ...o, verify: 'none' })).close();
      } catch (err) {
        // A damaged header (chunk 0 of the weights) is reported with the other chunks below; the
        // parity may rebuild it (pull checks the seal after the repair).
        const c = err instanceof TensorVaultError ? err.context : undefined;
        if (c?.reason !== 'chunk_digest' || c.file !== manifest.main) throw err;
      }
    }
    const total = manifest.files.reduce((a, f) => a + f.size, 0);
    let done = 0;
    const files: RemoteVerifyReport['files'] = [];
    const before = store.metrics.bytesDown;
    for (const f of manifest.files) {
      const stored = await store.head(joinKey(prefix, f.name), options.signal);
      const n = Math.ceil(f.size / manifest.chunk_size);
      const all = Array.from({ length: n }, (_, i) => i);
      if (stored === undefined) {
        // Deleted from the store (a parity file, a sidecar): reported, not thrown.
        files.push({ name: f.name, size: f.size, storedSize: 0, damagedChunks: all, missing: true });
        done += f.size;
        options.onProgress?.({ bytesDone: done, bytesTotal: total });
        continue;
      }
      const storedSize = stored;
      const src = chunkSourceOf(store, prefix, manifest, f);
      const bad = await fetchChunks(src, all, dropSink, {
        concurrency: options.concurrency ?? 8,
        rangeSize: 8 * 1024 * 1024,
        signal: options.signal,
        onChunk: (_i, b) => {
          done += b;
          options.onProgress?.({ bytesDone: done, bytesTotal: total });
        },
      });
      // Damaged chunks were checked too: the progress reaches the total.
      if (bad.length > 0) {
        for (const c of bad) done += chunkLen(src, c);
        options.onProgress?.({ bytesDone: done, bytesTotal: total });
      }
      files.push({ name: f.name, size: f.size, storedSize, damagedChunks: bad });
    }
    const damagedFiles = files
      .filter((f) => f.damagedChunks.length > 0 || f.storedSize !== f.size)
      .map((f) => f.name);
    const parity = parityName(manifest);
    // Only the weights damaged, the parity intact: repairable if the parity rebuilds them, which the
    // erasure code itself decides (its budget), as a local verify and the pull of a repair ask it. An
    // object only longer than recorded (every chunk matches) needs no parity: the rewrite drops the rest.
    const weightsOnly = damagedFiles.length === 1 && damagedFiles[0] === manifest.main;
    const chunksBad = (files.find((f) => f.name === manifest.main)?.damagedChunks.length ?? 0) > 0;
    const status: RemoteVerifyReport['status'] =
      damagedFiles.length === 0
        ? 'intact'
        : weightsOnly &&
            (!chunksBad ||
              (parity !== undefined && (await parityRebuilds(store, prefix, manifest, parity, options))))
          ? 'repairable'
          : 'damaged';
    const report: RemoteVerifyReport = {
      url: mainUrl,
      layout: manifest.layout,
      status,
      files,
      chunkSize: manifest.chunk_size,
      bytesRead: store.metrics.bytesDown - before,
    };
    publishRemote({ event: 'verified', url: mainUrl, status, ms: performance.now() - t0 });
    return report;
  } finally {
    store.close();
  }
}

/** One set found by {@link listRemote}. */
export interface RemoteListEntry {
  /** URL of the main object. */
  url: string;
  name: string;
  /** `complete` (has a manifest) or `incomplete` (a weights or archive object without one). */
  state: 'complete' | 'incomplete';
  layout?: RemoteManifest['layout'];
  /** Bytes of the set (complete) or of the object (incomplete). */
  bytes: number;
  files?: number;
  createdAt?: string;
}

/** The sets stored under the prefix `url` (`s3://bucket/prefix/`), complete or not. */
export async function listRemote(
  url: string,
  options: RemoteOptions & { signal?: AbortSignal } = {},
): Promise<RemoteListEntry[]> {
  optionsObject(options);
  const target = parseRemoteUrl(url);
  const { store, key } = await openStore(target, options);
  try {
    const objects = await store.list(key, options.signal);
    const keys = new Map(objects.map((o) => [o.key, o.size]));
    const out: RemoteListEntry[] = [];
    for (const o of objects) {
      if (o.key.endsWith(MANIFEST_SUFFIX)) {
        const mainKey = o.key.slice(0, -MANIFEST_SUFFIX.length);
        try {
          const m = parseManifest(await readAll(store, o.key, options.signal), store.url(o.key));
          out.push({
            url: store.url(mainKey),
            name: m.main,
            state: 'complete',
            layout: m.layout,
            bytes: m.files.reduce((a, f) => a + f.size, 0),
            files: m.files.length,
            createdAt: m.created_at,
          });
        } catch (err) {
          if (!(err instanceof TensorVaultError) || err.code !== ErrorCode.REMOTE_DAMAGED) throw err;
          out.push({
            url: store.url(mainKey),
            name: mainKey.slice(mainKey.lastIndexOf('/') + 1),
            state: 'incomplete',
            bytes: keys.get(mainKey) ?? 0,
          });
        }
      } else if (
        (o.key.endsWith('.safetensors') || o.key.endsWith('.tar.gz') || o.key.endsWith('.tgz')) &&
        !keys.has(`${o.key}${MANIFEST_SUFFIX}`)
      ) {
        out.push({
          url: store.url(o.key),
          name: o.key.slice(o.key.lastIndexOf('/') + 1),
          state: 'incomplete',
          bytes: o.size,
        });
      }
    }
    return out.sort((a, b) => (a.url < b.url ? -1 : a.url > b.url ? 1 : 0));
  } finally {
    store.close();
  }
}
