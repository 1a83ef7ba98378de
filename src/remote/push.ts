/**
 * push: upload a checkpoint set (weights, sidecars, parity) or any single file (a backup archive) to an
 * object store with parallel multipart uploads, a SHA-256 and an MD5 per part that the store checks,
 * resumable after an interruption, and the manifest written last as the commit point.
 */
import { createHash, webcrypto } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { checkpointFiles, treeHashOf } from '../checkpoint/layout';
import { parseCheckpoint } from '../checkpoint/parse';
import { ErrorCode, invalidArgument, TensorVaultError, throwIfAborted } from '../errors';
import { closeQuietly, makeFolder, typedIoError } from '../io/fs';
import type { JobOptions } from '../job';
import { optionsObject } from '../validate';
import { publishRemote, remoteCacheDir } from './common';
import {
  chunkLeaves,
  type LeafHash,
  leafHex,
  MANIFEST_SUFFIX,
  REMOTE_CHUNK_SIZE,
  type RemoteFileEntry,
  type RemoteManifest,
  type RemoteSetKind,
} from './manifest';
import { openStore } from './open-store';
import {
  checkPartSize,
  missingAsUndefined,
  type RemoteOptions,
  readAll,
  type Store,
  type UploadedPart,
  type WriteOptions,
} from './store';
import { joinKey, parseRemoteUrl } from './url';

/** Options of {@link push}. */
export interface PushOptions extends JobOptions, RemoteOptions {
  /** Multipart part size (default 8 MiB; a multiple of 1 MiB, at least 5 MiB and at most 5 GiB as S3 requires; else `TV_INVALID_ARGUMENT`). */
  partSize?: number;
  /** Parts in flight at once (default 8). */
  concurrency?: number;
  /** Replace a set that already has a manifest at the target (default false: `TV_EXISTS`). */
  overwrite?: boolean;
  /** Where the resume state of unfinished uploads is kept (default: the cache folder, `remote-state/`). */
  stateDir?: string;
}

/** One uploaded file. */
export interface PushedFile {
  name: string;
  size: number;
  /** Parts (1 for a single-request upload). */
  parts: number;
  /** Parts found already stored by an earlier, interrupted push (not sent again). */
  reusedParts: number;
}

/** What {@link push} did. */
export interface PushResult {
  /** URL of the main object (pass it to `pull`, `loadCheckpoint`, `verify`). */
  url: string;
  /** URL of the manifest. */
  manifest: string;
  layout: RemoteSetKind;
  files: PushedFile[];
  /** Bytes of the set. */
  bytes: number;
  /** Body bytes sent in this call (less than `bytes` after a resume). */
  bytesUploaded: number;
}

/** The files of the set at `localPath`, data files first and JSON sidecars last. */
function setFiles(localPath: string): {
  files: string[];
  layout: RemoteSetKind;
  leaves?: string;
  leafHash: LeafHash;
} {
  if (localPath.endsWith('.safetensors')) {
    const f = checkpointFiles(localPath);
    if (existsSync(f.meta) || existsSync(f.json)) {
      const p = parseCheckpoint(localPath);
      const data = [p.weights, f.tvecc, f.rsEcc].filter((x) => existsSync(x));
      const json = [f.meta, f.json].filter((x) => existsSync(x));
      return {
        files: [...new Set([...data, ...json])],
        layout: p.layout,
        // The weights' leaves are the sealed block's own (same chunk size and tree hash), so that a
        // reader cross-checks the manifest against the seal.
        leafHash: p.block === undefined ? 'sha256' : treeHashOf(p.block.algorithm),
        ...(p.block === undefined ? {} : { leaves: p.block.leaves }),
      };
    }
  }
  // A backup archive travels with its sidecar manifest (`BASE.tar.gz[.enc]` → `BASE.manifest.json`).
  const m = /^(.*)\.(tar\.gz|tgz)(\.enc)?$/.exec(localPath);
  const sidecar = m === null ? undefined : `${m[1]}.manifest.json`;
  return {
    files: sidecar !== undefined && existsSync(sidecar) ? [localPath, sidecar] : [localPath],
    layout: 'file',
    leafHash: 'sha256',
  };
}

interface UploadState {
  url: string;
  uploadId: string;
  size: number;
  mtimeMs: number;
  partSize: number;
  /** Part number → the ETag the store answered for it (some stores' ListParts omit ETags). */
  parts: Record<string, string>;
}

/** The local weights do not match their sealed chunk digests: they are not published. */
function damagedLocal(path: string): TensorVaultError {
  return new TensorVaultError(
    ErrorCode.CHECKPOINT_INTEGRITY,
    `${path}: the weights do not match their sealed chunk digests; repair or re-save before pushing`,
    { path, reason: 'chunk_digest' },
  );
}

/**
 * A file sent but not yet visible in the store: `commit` makes it so (PutObject or
 * CompleteMultipartUpload; with `ifAbsent`, only when no object is stored at its key, else `TV_EXISTS`).
 */
interface StagedFile {
  entry: RemoteFileEntry;
  parts: number;
  reused: number;
  /** Resolves with the version (ETag) of the object it made visible. */
  commit: (write: WriteOptions) => Promise<string>;
}

/**
 * Send one file without making it visible: a small file is read (its PutObject waits for `commit`), a
 * large one has all its parts uploaded (the multipart upload is completed by `commit`). When `sealed`
 * is given (the weights' sealed chunk leaves), the leaves of the bytes read must equal it, else the
 * multipart upload is aborted and `TV_CHECKPOINT_INTEGRITY` thrown: nothing in the store changed.
 */
async function uploadFile(
  store: Store,
  key: string,
  path: string,
  o: Required<Pick<PushOptions, 'partSize' | 'concurrency' | 'stateDir'>> & JobOptions,
  progress: (bytes: number) => void,
  leafHash: LeafHash,
  sealed?: string,
): Promise<StagedFile> {
  const st = await stat(path);
  const size = st.size;
  const signal = o.signal;
  const name = basename(path);
  if (size <= o.partSize) {
    const data = await readFile(path);
    if (data.byteLength !== size)
      throw new TensorVaultError(ErrorCode.FILE_CHANGED, `${path}: changed while read`, { path });
    const leaves = chunkLeaves(data, REMOTE_CHUNK_SIZE, leafHash);
    if (sealed !== undefined && leaves !== sealed) throw damagedLocal(path);
    return {
      entry: { name, size, sha256: createHash('sha256').update(data).digest('hex'), leaves },
      parts: 1,
      reused: 0,
      commit: async (write) => {
        const version = await store.put(key, data, signal, write);
        progress(size);
        return version;
      },
    };
  }
  const url = store.url(key);
  const stateFile = join(
    o.stateDir,
    `${createHash('sha256').update(`${url}\0${st.dev}:${st.ino}\0${size}\0${st.mtimeMs}\0${o.partSize}`).digest('hex').slice(0, 32)}.json`,
  );
  let uploadId: string | undefined;
  let stored = new Map<number, UploadedPart>();
  let state: UploadState | undefined;
  try {
    const s = JSON.parse(await readFile(stateFile, 'utf8')) as UploadState;
    if (s.url === url && s.size === size && s.mtimeMs === st.mtimeMs && s.partSize === o.partSize) {
      const parts = await store.listParts(key, s.uploadId, signal);
      if (parts !== undefined) {
        uploadId = s.uploadId;
        stored = new Map(parts.map((p) => [p.part, p]));
        state = { ...s, parts: typeof s.parts === 'object' && s.parts !== null ? s.parts : {} };
      }
    }
  } catch (err) {
    if (err instanceof TensorVaultError) throw err;
    // no state: a fresh upload
  }
  if (uploadId === undefined) {
    uploadId = await store.createUpload(key, signal);
    await makeFolder(o.stateDir, 'a state folder');
    state = { url, uploadId, size, mtimeMs: st.mtimeMs, partSize: o.partSize, parts: {} };
    await writeFile(stateFile, JSON.stringify(state));
  }
  const ackd = (state as UploadState).parts;
  const id = uploadId;
  const nParts = Math.ceil(size / o.partSize);
  const whole = createHash('sha256');
  let leaves = '';
  let reused = 0;
  const done: UploadedPart[] = new Array(nParts);
  const fh = await open(path, 'r');
  try {
    // Parts are read (and hashed) in order on this side; their uploads run `concurrency` at a time.
    const inFlight = new Set<Promise<void>>();
    let failure: unknown;
    for (let n = 1; n <= nParts; n++) {
      if (failure !== undefined) break;
      throwIfAborted(signal);
      const start = (n - 1) * o.partSize;
      const len = Math.min(o.partSize, size - start);
      const buf = Buffer.allocUnsafe(len);
      const { bytesRead } = await fh.read(buf, 0, len, start);
      if (bytesRead !== len)
        throw new TensorVaultError(ErrorCode.FILE_CHANGED, `${path}: changed while read`, { path });
      // The part's chunk leaves and SHA-256 on the libuv pool (webcrypto) while this thread does the MD5
      // and the whole-file SHA-256: each byte is read once per digest, and no digest is computed twice.
      const pool = Promise.all([
        Promise.all(
          Array.from({ length: Math.ceil(len / REMOTE_CHUNK_SIZE) }, (_, i) =>
            leafHex(
              buf.subarray(i * REMOTE_CHUNK_SIZE, Math.min(len, (i + 1) * REMOTE_CHUNK_SIZE)),
              leafHash,
            ),
          ),
        ),
        webcrypto.subtle.digest('SHA-256', buf),
      ]);
      whole.update(buf);
      const md5Raw = createHash('md5').update(buf).digest();
      const md5 = md5Raw.toString('hex');
      const [leafDigests, partSha] = await pool;
      leaves += leafDigests.join('');
      // A damaged local chunk stops the upload at its part (checked again on the whole file below).
      if (sealed !== undefined && !sealed.startsWith(leaves)) {
        await Promise.all(inFlight);
        break;
      }
      const digests = { md5: md5Raw, sha256: Buffer.from(partSha) };
      const have = stored.get(n);
      // A part is reused when the store still lists it with this size and its ETag (as listed, or as the
      // store answered when it was uploaded) is the MD5 of these bytes.
      if (
        have !== undefined &&
        have.size === len &&
        (have.etag === '' ? ackd[String(n)] : have.etag) === md5
      ) {
        done[n - 1] = { part: n, etag: md5, size: len };
        reused += 1;
        progress(len);
        continue;
      }
      const task = (async () => {
        let etag = await store.uploadPart(key, id, n, buf, signal, digests);
        // The ETag of a part is the MD5 the store computed over the bytes it stored: compare it with ours
        // (the SHA-256 and MD5 headers are checked by the store itself where it supports them).
        if (etag !== md5) etag = await store.uploadPart(key, id, n, buf, signal, digests);
        if (etag !== md5) {
          throw new TensorVaultError(
            ErrorCode.REMOTE_DAMAGED,
            `${url}: part ${n} was stored with a different digest than was sent (twice)`,
            { url, file: name, reason: 'part_etag', chunks: String(n) },
          );
        }
        done[n - 1] = { part: n, etag, size: len };
        ackd[String(n)] = etag;
        writeFileSync(stateFile, JSON.stringify(state));
        progress(len);
      })().catch((err: unknown) => {
        if (failure === undefined) failure = err;
      });
      inFlight.add(task);
      void task.finally(() => inFlight.delete(task));
      if (inFlight.size >= o.concurrency) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    if (failure !== undefined) throw failure;
  } finally {
    await closeQuietly(fh);
  }
  // The file must not have changed while it was sent.
  const after = await stat(path);
  if (after.size !== size || after.mtimeMs !== st.mtimeMs) {
    throw new TensorVaultError(ErrorCode.FILE_CHANGED, `${path}: changed while it was uploaded`, { path });
  }
  if (sealed !== undefined && leaves !== sealed) {
    // Damaged on the local disk: the parts sent are dropped, nothing becomes visible.
    await store.abort(key, id);
    await rm(stateFile, { force: true });
    throw damagedLocal(path);
  }
  return {
    entry: { name, size, sha256: whole.digest('hex'), leaves },
    parts: nParts,
    reused,
    commit: async (write) => {
      const version = await store.complete(key, id, done, signal, write);
      await rm(stateFile, { force: true });
      return version;
    },
  };
}

/** An ETag as a comparable value: without quotes or a weak `W/` prefix. */
function bareVersion(etag: string): string {
  return etag.replace(/^W\//, '').replace(/^"|"$/g, '');
}

/**
 * After the manifest is written: the stored manifest must be this push's bytes and every object of the
 * set the version this push made visible. Else another push to the same key replaced part of the set
 * meanwhile: `TV_FILE_CHANGED`, `reason: concurrent_push`, naming the first file found replaced.
 */
async function confirmOwnSet(
  store: Store,
  manifestKey: string,
  manifestBytes: Buffer,
  objects: readonly { name: string; version: string }[],
  prefix: string,
  signal: AbortSignal | undefined,
): Promise<void> {
  const replaced = (key: string, name: string): TensorVaultError =>
    new TensorVaultError(
      ErrorCode.FILE_CHANGED,
      `${store.url(key)}: another push to this key replaced ${name} while this push was writing the set; the stored set is not this push's (readers find a mix of two sets damaged): push again`,
      { path: store.url(key), url: store.url(key), file: name, reason: 'concurrent_push' },
    );
  const stored = await missingAsUndefined(readAll(store, manifestKey, signal));
  if (stored === undefined || !stored.equals(manifestBytes))
    throw replaced(manifestKey, manifestKey.slice(manifestKey.lastIndexOf('/') + 1));
  for (const o of objects) {
    // A store that answered no ETag for the write: nothing to compare with (the manifest check stands).
    if (o.version === '') continue;
    const key = joinKey(prefix, o.name);
    const now = await store.stat(key, signal);
    if (now === undefined || bareVersion(now.etag) !== bareVersion(o.version)) throw replaced(key, o.name);
  }
}

/**
 * Upload the checkpoint set whose weights are `localPath` (with its sidecars and parity), or the single
 * file `localPath` (a backup archive), under the prefix `url` (`s3://bucket/prefix` or `file:///dir`).
 * Parts go up in parallel with a SHA-256 and MD5 each; the manifest `NAME.tvremote.json` is written
 * last (the commit point: until it exists, readers see no set). An interrupted push resumes: the parts
 * already stored are listed and only the others are sent. The checkpoint's chunks are checked against
 * its sealed digests while they are read: a damaged local checkpoint is not pushed. After the
 * manifest, the set is read back: when another push to the same key (with `overwrite`) replaced any of
 * it meanwhile, `TV_FILE_CHANGED` (`reason: concurrent_push`; readers refuse such a mix as damaged).
 */
export async function push(localPath: string, url: string, options: PushOptions = {}): Promise<PushResult> {
  if (typeof localPath !== 'string' || localPath.length === 0)
    throw invalidArgument('localPath', 'localPath must be a non-empty string');
  optionsObject(options);
  const partSize = checkPartSize(options.partSize);
  const concurrency = options.concurrency ?? 8;
  if (!Number.isSafeInteger(concurrency) || concurrency < 1 || concurrency > 64)
    throw invalidArgument('concurrency', 'concurrency must be an integer from 1 to 64');
  const target = parseRemoteUrl(url);
  const t0 = performance.now();
  const st = await stat(localPath).catch(() => undefined);
  if (st === undefined || !st.isFile())
    throw new TensorVaultError(ErrorCode.NOT_FOUND, `${localPath}: no such file`, { path: localPath });
  const set = setFiles(localPath);
  const { store, key: prefix } = await openStore(target, options);
  const main = basename(localPath);
  const manifestKey = joinKey(prefix, `${main}${MANIFEST_SUFFIX}`);
  try {
    const existing = (await store.head(manifestKey, options.signal)) !== undefined;
    if (existing && options.overwrite !== true) {
      throw new TensorVaultError(
        ErrorCode.EXISTS,
        `${store.url(manifestKey)}: a set is already stored there (pass overwrite to replace it)`,
        { path: store.url(manifestKey) },
      );
    }
    const sizes = await Promise.all(set.files.map(async (f) => (await stat(f)).size));
    const total = sizes.reduce((a, b) => a + b, 0);
    let doneBytes = 0;
    const progress = (n: number): void => {
      doneBytes += n;
      options.onProgress?.({ bytesDone: doneBytes, bytesTotal: total });
    };
    const o = {
      partSize,
      concurrency,
      stateDir: options.stateDir ?? join(remoteCacheDir(), 'remote-state'),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    };
    const up0 = store.metrics.bytesUp;
    const entries: RemoteFileEntry[] = [];
    const files: PushedFile[] = [];
    const staged: StagedFile[] = [];
    // Every file is sent first without becoming visible; the weights' chunks are compared with their
    // sealed leaves as they are read, so a locally damaged checkpoint changes nothing in the store.
    for (const f of set.files) {
      const sealed = f === set.files[0] ? set.leaves : undefined;
      const r = await uploadFile(store, joinKey(prefix, basename(f)), f, o, progress, set.leafHash, sealed);
      staged.push(r);
      entries.push(r.entry);
      files.push({ name: r.entry.name, size: r.entry.size, parts: r.parts, reusedParts: r.reused });
    }
    // The new set is known good: only now is the old one replaced. Readers see no set (rather than a
    // mix of old and new files) from the deletion of the old manifest until the new one is written.
    if (existing) await store.delete(manifestKey, options.signal);
    // Without overwrite nothing stored is replaced, and the HEAD above is not enough: another push to
    // the same key may have passed it too. Every object is made visible only if none exists at its key
    // (If-None-Match: *, decided by the store), the manifest (the commit point) included: of pushes
    // racing to one key exactly one wins, the others fail with TV_EXISTS, and the loser, refused at its
    // first file, never replaces a file of the winner's set.
    const write: WriteOptions = { ifAbsent: options.overwrite !== true };
    const versions: string[] = [];
    for (const r of staged) versions.push(await r.commit(write));
    const manifest: RemoteManifest = {
      tensorvault_remote: 1,
      main,
      layout: set.layout,
      chunk_size: REMOTE_CHUNK_SIZE,
      leaf_hash: set.leafHash,
      created_at: new Date().toISOString(),
      files: entries,
    };
    const manifestBytes = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
    try {
      await store.put(manifestKey, manifestBytes, options.signal, write);
    } catch (err) {
      // Refused because the manifest now exists: ours when a retried request's first attempt was
      // applied (the same bytes, creation time included), else another push's, which won.
      if (!(err instanceof TensorVaultError && err.code === ErrorCode.EXISTS)) throw err;
      const stored = await readAll(store, manifestKey, options.signal).catch(() => undefined);
      if (stored === undefined || !stored.equals(manifestBytes)) throw err;
    }
    // Pushes with overwrite racing to one key write unconditionally, so their objects can interleave
    // (weights of one, manifest of the other). The manifest binds every object's digests, so readers
    // find such a mix damaged, never load it; and each push checks, after its manifest, that the set
    // stored is still its own: whichever push wrote the manifest last sees the other's objects.
    await confirmOwnSet(
      store,
      manifestKey,
      manifestBytes,
      staged.map((r, i) => ({ name: r.entry.name, version: versions[i] as string })),
      prefix,
      options.signal,
    );
    const result: PushResult = {
      url: store.url(joinKey(prefix, main)),
      manifest: store.url(manifestKey),
      layout: set.layout,
      files,
      bytes: total,
      bytesUploaded: store.metrics.bytesUp - up0,
    };
    publishRemote({
      event: 'pushed',
      url: result.url,
      bytes: total,
      sent: result.bytesUploaded,
      ms: performance.now() - t0,
    });
    return result;
  } catch (e) {
    // A full disk under the state folder, a failing read of the local file: TV_IO.
    const err = typedIoError(e, localPath);
    publishRemote({
      event: 'failed',
      op: 'push',
      url,
      code: err instanceof TensorVaultError ? err.code : 'TV_INTERNAL',
    });
    throw err;
  } finally {
    store.close();
  }
}
