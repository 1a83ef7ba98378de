/**
 * Lazy remote loads: `loadCheckpoint('s3://…')`. The manifest and the sidecar are fetched, the header
 * with one ranged request of exactly its length; each tensor's chunks are fetched with ranged requests
 * the first time it is viewed, verified against their digests as they stream in, and kept in a sparse
 * file in a bounded local cache folder. The checks after that are the local lazy load's own: the cache
 * folder holds a tensorvault checkpoint whose weights file is sparse, opened with `loadCheckpoint`, so
 * the seal, the header digest and every chunk digest are checked by the same code as on a local disk.
 */
import { constants as bufferConstants } from 'node:buffer';
import { createHash, randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { type FileHandle, open, readFile, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { TensorDamagedError } from '../checkpoint/errors';
import type { CheckpointLayout } from '../checkpoint/layout';
import type { Checkpoint } from '../checkpoint/lazy';
import { loadCheckpoint } from '../checkpoint/load';
import type { CheckpointReport, LoadCheckpointOptions } from '../checkpoint/parse';
import {
  type CheckpointChunkOptions,
  type CheckpointReadOptions,
  chunkOptionsOf,
  tooLargeForView,
} from '../checkpoint/read-options';
import { chunkSpan } from '../checkpoint/rs';
import { asyncDisposeSymbol, disposeSymbol } from '../dispose';
import { repair as eccRepair } from '../ecc/erasure';
import { ErrorCode, invalidArgument, TensorVaultError, throwIfAborted } from '../errors';
import { atomicWriteFile } from '../io/atomic';
import { closeQuietly, makeFolder, typedIoError } from '../io/fs';
import { abortable } from '../job';
import { checkTensorRange, type Tensor, type TensorInfo } from '../safetensors/reader';
import { optionalSignal, optionsObject } from '../validate';
import { evict } from './cache';
import { publishRemote, remoteCacheDir } from './common';
import { type ChunkSource, chunkSourceOf, fetchChunks, localChunkGood } from './fetch';
import type { RemoteFileEntry } from './manifest';
import { crossCheck, openManifest } from './pull';
import { type RemoteOptions, readAll, type Store, type StoreMetrics } from './store';
import { joinKey } from './url';

/** Options of a lazy remote load (with those of {@link loadCheckpoint}). */
export interface RemoteLoadOptions extends LoadCheckpointOptions, RemoteOptions {
  /** The cache folder (default: the cache folder's `remote-cache/`; env `TV_REMOTE_CACHE`). */
  cacheDir?: string;
  /**
   * Bound of the cache folder in bytes on disk (default 8 GiB): on open, other checkpoints' cache
   * entries are removed, least recently used first, until the entries are under it (nothing else in
   * `cacheDir` is counted or removed).
   */
  cacheBytes?: number;
  /** Ranged requests in flight (default 8). */
  concurrency?: number;
}

/**
 * A checkpoint read lazily from an object store: the same surface as {@link Checkpoint} (names, info,
 * tensor, tensors, report, close, `using` / `await using`), plus {@link RemoteCheckpoint.transfer}, the
 * bytes and requests this load has made.
 */
export class RemoteCheckpoint {
  /** URL of the weights object. */
  readonly url: string;
  /** Local path of the cached (sparse) weights file. */
  readonly path: string;
  readonly layout: CheckpointLayout;
  readonly metadata: Readonly<Record<string, unknown>>;
  readonly version: string | undefined;
  #local: Checkpoint;
  #store: Store;
  #src: ChunkSource;
  /** The stored `.tvecc` parity, when the set has one and repair is on. */
  #parity: ChunkSource | undefined;
  /** Why there is no {@link RemoteCheckpoint.#parity} (for the error message). */
  #noParity: string;
  #have: Set<number>;
  #hintPath: string;
  #concurrency: number;
  #signal: AbortSignal;
  #queue: Promise<unknown> = Promise.resolve();
  #mark: string;
  /** Aborted by `close()`: the fetches in flight stop at once. */
  #closer = new AbortController();
  #closed = false;

  /** @internal Use `loadCheckpoint('s3://…')`. */
  constructor(
    have: Set<number>,
    url: string,
    local: Checkpoint,
    store: Store,
    src: ChunkSource,
    concurrency: number,
    mark: string,
    parity: ChunkSource | string,
    signal?: AbortSignal,
  ) {
    this.url = url;
    this.#parity = typeof parity === 'string' ? undefined : parity;
    this.#noParity = typeof parity === 'string' ? parity : '';
    this.path = local.path;
    this.layout = local.layout;
    this.metadata = local.metadata;
    this.version = local.version;
    this.#local = local;
    this.#store = store;
    this.#src = src;
    this.#concurrency = concurrency;
    // The caller's signal or close(), whichever comes first, stops a fetch (as in integrity.ts).
    this.#signal =
      signal === undefined ? this.#closer.signal : AbortSignal.any([signal, this.#closer.signal]);
    this.#hintPath = `${local.path}.chunks`;
    this.#have = have;
    this.#mark = mark;
  }

  /** The verification state (as a local lazy load's). */
  get report(): CheckpointReport {
    return this.#local.report;
  }

  /** Requests made and bytes received from the store by this load so far. */
  get transfer(): Readonly<StoreMetrics> {
    return { ...this.#store.metrics };
  }

  /** Tensor names in file order. */
  get names(): readonly string[] {
    return this.#local.names;
  }

  /** Dtype, shape, size and offset of tensor `name` (from the verified header; no request). */
  info(name: string): TensorInfo {
    return this.#local.info(name);
  }

  /**
   * Fetch (once) and verify the chunks of `[start, end)` of the weights (`tensor`: what they are for,
   * named in an error). Chunks that arrive damaged twice are repaired from the stored parity when the set
   * has one (see {@link RemoteCheckpoint.#repairFromParity}); otherwise, or when the parity cannot
   * rebuild them, `TV_REMOTE_DAMAGED` names the tensor and the chunks. `callSignal` (a range read's
   * own) stops this call only: at once while it waits behind another fetch, else its requests.
   */
  async #ensureRange(start: number, end: number, tensor?: string, callSignal?: AbortSignal): Promise<void> {
    const [first, last] = chunkSpan(start, end, this.#src.chunkSize);
    const signal = callSignal === undefined ? this.#signal : AbortSignal.any([this.#signal, callSignal]);
    const prior = this.#queue;
    // What waits is not cancelled by this: only this call stops waiting.
    const run = abortable(prior, callSignal).then(async () => {
      if (this.#closed) throw this.#closedError();
      throwIfAborted(callSignal);
      const fh = await open(this.path, 'r+');
      try {
        const todo: number[] = [];
        // Chunks fetched by this or an earlier load (the hint file) are not fetched again: the local lazy
        // load verifies them before any view is handed out, and a mismatch there fetches them again.
        for (let c = first; c < last; c++) if (!this.#have.has(c)) todo.push(c);
        if (todo.length === 0) return;
        const t0 = performance.now();
        const before = this.#store.metrics.bytesDown;
        const bad = await fetchChunks(this.#src, todo, fh, {
          concurrency: this.#concurrency,
          rangeSize: 8 * 1024 * 1024,
          signal,
          onChunk: (c) => this.#have.add(c),
          // With a parity to repair from, a chunk damaged as stored is written as stored (never listed
          // as fetched: the local load refuses it), so that the repair need not fetch it again.
          keepDamaged: this.#parity !== undefined,
        });
        let still = bad;
        let why = this.#noParity;
        if (bad.length > 0 && this.#parity !== undefined) {
          [still, why] = await this.#repairFromParity(fh, bad, this.#parity, signal);
        }
        await atomicWriteFile(this.#hintPath, JSON.stringify([...this.#have]), { sync: false }).catch(
          () => {},
        );
        // Recently used: evicted after the entries not used since (least recently used first).
        const now = new Date();
        await utimes(dirname(this.path), now, now).catch(() => {});
        publishRemote({
          event: 'fetched',
          url: this.url,
          chunks: todo.length,
          bytes: this.#store.metrics.bytesDown - before,
          ms: performance.now() - t0,
        });
        if (still.length > 0) {
          const what = tensor === undefined ? '' : `tensor ${JSON.stringify(tensor)}: `;
          throw new TensorVaultError(
            ErrorCode.REMOTE_DAMAGED,
            `${this.url}: ${what}chunks ${still.join(', ')} do not match their digests (fetched twice; ${why})`,
            {
              url: this.url,
              file: this.url.slice(this.url.lastIndexOf('/') + 1),
              ...(tensor === undefined ? {} : { tensor }),
              chunks: still.join(','),
              reason: 'chunk_digest',
            },
          );
        }
      } finally {
        await closeQuietly(fh);
      }
    });
    this.#queue = Promise.allSettled([prior, run]);
    await run;
  }

  /**
   * Rebuild the weights chunks `bad` (damaged as stored) from the stored `.tvecc` parity, locally, in the
   * cache entry; nothing is ever written to the store. The parity object is fetched into the entry
   * (`NAME.safetensors.remote.tvecc`, every chunk checked against the manifest's digests; kept for later
   * repairs), then the rest of the weights not yet cached (what the erasure repair reads of the
   * damaged chunks' stripes: for a single-stripe v1 sidecar or the wide v2 code, every other chunk).
   * Damaged chunks are in the cached file as stored (`keepDamaged`), so that the parity sees only their
   * damaged bytes, not zeros (a checkpoint's parity chunks are often smaller than 1 MiB). The repair then
   * rebuilds them in place in the cached file (every rebuilt piece checked against the parity's own
   * digests) and each is checked again against its sealed leaf before it counts as fetched. Returns the
   * chunks still damaged, and why.
   */
  async #repairFromParity(
    fh: FileHandle,
    bad: number[],
    parity: ChunkSource,
    signal: AbortSignal,
  ): Promise<[number[], string]> {
    publishRemote({ event: 'damaged', url: this.url, chunks: bad });
    // The manifest's size of the parity is not sealed: a parity larger than the weights twice over (a
    // sidecar has at most as many parity chunks as data chunks, plus its tables) is not fetched.
    if (parity.size > 2 * this.#src.size + 64 * 1024 * 1024)
      return [
        bad,
        `the stored parity is listed with ${parity.size} bytes, more than any parity of these weights`,
      ];
    const o = { concurrency: this.#concurrency, rangeSize: 8 * 1024 * 1024, signal };
    const sidecar = `${this.path}.remote.tvecc`;
    const pfh = await open(sidecar, 'a+');
    let parityBad: number[];
    try {
      const st = await pfh.stat();
      if (st.size !== parity.size) await pfh.truncate(parity.size);
    } finally {
      await closeQuietly(pfh);
    }
    const rw = await open(sidecar, 'r+');
    try {
      const todo: number[] = [];
      const n = Math.ceil(parity.size / parity.chunkSize);
      for (let i = 0; i < n; i++) if (!(await localChunkGood(rw, parity, i))) todo.push(i);
      // Damaged parity chunks are kept as stored: the erasure repair finds them by its own digests.
      parityBad = await fetchChunks(parity, todo, rw, { ...o, keepDamaged: true });
      await rw.sync();
    } finally {
      await closeQuietly(rw);
    }
    // The rest of the weights, verified as they arrive; the damaged chunks written as stored.
    const rest: number[] = [];
    const n = Math.ceil(this.#src.size / this.#src.chunkSize);
    for (let c = 0; c < n; c++) if (!this.#have.has(c) && !bad.includes(c)) rest.push(c);
    const alsoBad = await fetchChunks(this.#src, rest, fh, {
      ...o,
      onChunk: (c) => this.#have.add(c),
      keepDamaged: true,
    });
    const damaged = [...new Set([...bad, ...alsoBad])].sort((a, b) => a - b);
    await fh.sync();
    let why = 'the stored parity cannot rebuild them';
    try {
      await eccRepair(this.path, {
        sidecar,
        // The cached file's modification time is not the one protected: never a reason to refuse.
        force: true,
        // In place: the cached file stays the inode the local load has mapped.
        mode: 'in-place',
        signal,
      });
    } catch (err) {
      if (signal.aborted) throw err;
      const code = err instanceof TensorVaultError ? err.code : 'TV_INTERNAL';
      why = `the stored parity cannot rebuild them: ${code}${parityBad.length > 0 ? `, parity chunks ${parityBad.join(', ')} damaged too` : ''}`;
    }
    const still: number[] = [];
    for (const c of damaged) {
      if (await localChunkGood(fh, this.#src, c)) this.#have.add(c);
      else still.push(c);
    }
    const repaired = damaged.filter((c) => !still.includes(c));
    if (repaired.length > 0) publishRemote({ event: 'repaired', url: this.url, chunks: repaired });
    // Only the chunks asked for fail this call; others still damaged are tried again when needed.
    return [bad.filter((c) => still.includes(c)), why];
  }

  /**
   * Tensor `name`: its chunks are fetched with ranged requests the first time (verified as they stream
   * in), then checked and viewed as a local lazy load does (zero-copy view on the cached file).
   */
  async tensor(name: string): Promise<Tensor> {
    const info = this.#local.info(name);
    // Refused before anything is fetched (a view larger than one ArrayBuffer cannot be made).
    if (info.byteLength > bufferConstants.MAX_LENGTH) throw tooLargeForView(name, info.byteLength);
    return this.#fetched(
      info.fileOffset,
      info.fileOffset + info.byteLength,
      () => this.#local.tensor(name),
      name,
    );
  }

  /** Every tensor (the whole weights file is fetched, in parallel ranged requests). */
  async tensors(): Promise<Map<string, Tensor>> {
    return this.#fetched(0, this.#src.size, () => this.#local.tensors());
  }

  /**
   * A copy of `length` bytes of tensor `name` from `offset` bytes into it, as the local
   * {@link Checkpoint.readRange} gives it: only the 1 MiB chunks the range covers are fetched (ranged
   * GETs, once; verified as they stream in, then checked again by the local lazy load before the copy is
   * made), so a read costs its length rounded out to the chunk boundaries it touches. Works for tensors
   * of any size, including those over 4 GiB that {@link RemoteCheckpoint.tensor} refuses on Node 20;
   * damage outside the range does not stop it. A chunk damaged as stored inside the range is repaired
   * from the stored parity as {@link RemoteCheckpoint.tensor} does (unless the set has none or `repair`
   * is `false`); otherwise `TV_REMOTE_DAMAGED` names the tensor (`context.tensor`) and the chunks: never
   * unverified bytes. `TV_INVALID_ARGUMENT` for a range outside the tensor, `TV_TENSOR_NOT_FOUND`,
   * `TV_CLOSED` after {@link RemoteCheckpoint.close}, `AbortError` (`TV_ABORTED`) on `signal` (at once
   * while the read waits behind another fetch; its requests in flight are aborted).
   */
  async readRange(
    name: string,
    offset: number,
    length: number,
    options: CheckpointReadOptions = {},
  ): Promise<Buffer> {
    if (this.#closed) throw this.#closedError();
    const info = this.#local.info(name);
    optionsObject(options);
    const signal = optionalSignal(options.signal);
    checkTensorRange(info, offset, length);
    const start = info.fileOffset + offset;
    return this.#fetched(
      start,
      start + length,
      () => this.#local.readRange(name, offset, length, signal === undefined ? {} : { signal }),
      name,
      signal,
    );
  }

  /**
   * The bytes of tensor `name` in pieces of `chunkBytes` (default 64 MiB), each fetched and checked
   * before it is yielded exactly as {@link RemoteCheckpoint.readRange} reads a range (only the chunks
   * each piece covers are fetched, when the iteration reaches it; repaired from the stored parity, or
   * `TV_REMOTE_DAMAGED` from the first piece that covers damage: the pieces before it were intact). Each
   * piece is a copy. The accessor for a tensor larger than one ArrayBuffer (`TV_TENSOR_TOO_LARGE` from
   * {@link RemoteCheckpoint.tensor} on Node 20). Arguments are checked when it is called
   * (`TV_INVALID_ARGUMENT`, `TV_TENSOR_NOT_FOUND`, `TV_CLOSED`); `signal` stops the iteration with an
   * `AbortError`.
   */
  chunks(name: string, options: CheckpointChunkOptions = {}): AsyncGenerator<Uint8Array, void, undefined> {
    if (this.#closed) throw this.#closedError();
    const info = this.#local.info(name);
    const { signal, step } = chunkOptionsOf(options);
    return this.#pieces(info, step, signal);
  }

  async *#pieces(
    info: TensorInfo,
    step: number,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<Uint8Array, void, undefined> {
    for (let at = 0; at < info.byteLength; at += step) {
      const len = Math.min(step, info.byteLength - at);
      const start = info.fileOffset + at;
      yield await this.#fetched(
        start,
        start + len,
        () => this.#local.readRange(info.name, at, len, signal === undefined ? {} : { signal }),
        info.name,
        signal,
      );
    }
  }

  /**
   * `read` once bytes `[start, end)` are cached. Cached bytes that changed on the local disk are fetched
   * again, once; a local write or read error (a full disk under the cache) is `TV_IO`.
   */
  async #fetched<T>(
    start: number,
    end: number,
    read: () => Promise<T>,
    tensor?: string,
    signal?: AbortSignal,
  ): Promise<T> {
    if (this.#closed) throw this.#closedError();
    try {
      await this.#ensureRange(start, end, tensor, signal);
      try {
        return await read();
      } catch (err) {
        if (!(err instanceof TensorDamagedError)) throw err;
        for (const c of err.chunks) this.#have.delete(c);
        await this.#ensureRange(start, end, tensor, signal);
        return await read();
      }
    } catch (err) {
      // Closed meanwhile: whatever the interrupted request reported (an abort, a reset connection).
      if (this.#closed) throw this.#closedError(err);
      throw typedIoError(err, this.#local.path);
    }
  }

  #closedError(cause?: unknown): TensorVaultError {
    return new TensorVaultError(
      ErrorCode.CLOSED,
      `${this.url}: the remote checkpoint is closed`,
      { url: this.url },
      cause === undefined ? undefined : { cause },
    );
  }

  /**
   * Close the cached file and the store's connections. Fetches in flight stop at once and their
   * `tensor()` / `tensors()` reject with `TV_CLOSED`, as does any later call. Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closer.abort(this.#closedError());
    this.#local.close();
    this.#store.close();
    // The entry may be evicted again (by a later open of another checkpoint).
    rmSync(this.#mark, { force: true });
  }

  /** `using ckpt = await loadCheckpoint('s3://…')`: {@link RemoteCheckpoint.close} at the end of the scope. */
  [disposeSymbol](): void {
    this.close();
  }

  /**
   * `await using ckpt = await loadCheckpoint('s3://…')`: {@link RemoteCheckpoint.close}, then wait until
   * the fetches and checks in flight have settled (the cached file's descriptors are closed when this
   * resolves).
   */
  async [asyncDisposeSymbol](): Promise<void> {
    this.close();
    await this.#queue.catch(() => undefined);
    await this.#local[asyncDisposeSymbol]();
  }
}

/**
 * Open the checkpoint whose weights object is `url` lazily (see the module comment). Only the
 * `tensorvault` layout has the per-chunk digests this needs; other layouts: `pull` them.
 */
export async function loadRemoteCheckpoint(
  url: string,
  options: RemoteLoadOptions = {},
): Promise<RemoteCheckpoint> {
  optionsObject(options);
  const cacheBytes = options.cacheBytes ?? 8 * 1024 ** 3;
  if (typeof cacheBytes !== 'number' || !Number.isFinite(cacheBytes) || cacheBytes < 0)
    throw invalidArgument('cacheBytes', 'cacheBytes must be a number of bytes, 0 or more');
  const concurrency = options.concurrency ?? 8;
  if (!Number.isSafeInteger(concurrency) || concurrency < 1 || concurrency > 64)
    throw invalidArgument('concurrency', 'concurrency must be an integer from 1 to 64');
  const t0 = performance.now();
  const { store, prefix, manifest } = await openManifest(url, options);
  let mark: string | undefined;
  try {
    const mainUrl = store.url(joinKey(prefix, manifest.main));
    if (manifest.layout !== 'tensorvault') {
      throw new TensorVaultError(
        ErrorCode.CHECKPOINT_INVALID,
        `${mainUrl}: a lazy remote load needs the tensorvault layout (chunk digests); this set is ${manifest.layout}: pull it`,
        { path: mainUrl, reason: 'remote_layout' },
      );
    }
    const weights = manifest.files.find((f) => f.name === manifest.main) as RemoteFileEntry;
    const metaName = `${manifest.main}.meta.json`;
    const metaEntry = manifest.files.find((f) => f.name === metaName);
    if (metaEntry === undefined) {
      throw new TensorVaultError(ErrorCode.REMOTE_DAMAGED, `${mainUrl}: the manifest lists no ${metaName}`, {
        url: mainUrl,
        reason: 'manifest',
      });
    }
    const meta = await readAll(store, joinKey(prefix, metaName), options.signal);
    if (createHash('sha256').update(meta).digest('hex') !== metaEntry.sha256) {
      throw new TensorVaultError(
        ErrorCode.REMOTE_DAMAGED,
        `${mainUrl}: ${metaName} does not match its digest`,
        {
          url: mainUrl,
          file: metaName,
          reason: 'chunk_digest',
        },
      );
    }
    crossCheck(manifest, meta, mainUrl);
    const block = (
      JSON.parse(meta.toString('utf8')) as { tensorvault: { header_length: number; header_sha256: string } }
    ).tensorvault;
    // The cache entry is named by the weights' digest: the same bytes share one entry whatever the URL.
    const root = options.cacheDir ?? join(remoteCacheDir(), 'remote-cache');
    const dir = join(root, weights.sha256.slice(0, 32));
    // Marked open before anything else: no other open (here or in another process) evicts it meanwhile.
    mark = join(dir, `.tv-open-${process.pid}-${randomBytes(6).toString('hex')}`);
    for (let attempt = 0; ; attempt++) {
      await makeFolder(dir, 'a cache folder');
      try {
        await writeFile(mark, '', { flag: 'wx' });
        break;
      } catch (err) {
        // The folder was evicted by another process between the two calls: made again.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt > 0) throw err;
      }
    }
    const now = new Date();
    await utimes(dir, now, now);
    await evict(root, dir, cacheBytes);
    const local = join(dir, manifest.main);
    // Other processes sharing the cache may be opening this entry right now: the sidecar is replaced
    // atomically (temporary file and rename), never rewritten in place, and only when it differs.
    const cachedMeta = await readFile(`${local}.meta.json`).catch(() => undefined);
    if (cachedMeta === undefined || !cachedMeta.equals(meta))
      await atomicWriteFile(`${local}.meta.json`, meta, { sync: false });
    const fh = await open(local, 'a+');
    try {
      const st = await fh.stat();
      if (st.size !== weights.size) await fh.truncate(weights.size);
    } finally {
      await closeQuietly(fh);
    }
    // The header: one ranged request of exactly its length, checked against the sealed header digest.
    const src = chunkSourceOf(store, prefix, manifest, weights);
    const hfh = await open(local, 'r+');
    try {
      const hbuf = Buffer.allocUnsafe(block.header_length);
      const { bytesRead } = await hfh.read(hbuf, 0, block.header_length, 0);
      const cached =
        bytesRead === block.header_length &&
        createHash('sha256').update(hbuf).digest('hex') === block.header_sha256;
      if (!cached) {
        const header = Buffer.concat(
          await (async () => {
            const parts: Uint8Array[] = [];
            for await (const c of await store.read(src.key, [0, block.header_length], options.signal))
              parts.push(c);
            return parts;
          })(),
        );
        if (createHash('sha256').update(header).digest('hex') !== block.header_sha256) {
          throw new TensorVaultError(
            ErrorCode.REMOTE_DAMAGED,
            `${mainUrl}: the safetensors header does not match its sealed digest`,
            {
              url: mainUrl,
              file: manifest.main,
              chunks: '0',
              reason: 'chunk_digest',
            },
          );
        }
        await hfh.write(header, 0, header.byteLength, 0);
      }
    } finally {
      await closeQuietly(hfh);
    }
    // The local lazy load checks the seal, the header and file length, the key policy and `expect`.
    const {
      cacheDir: _c,
      cacheBytes: _b,
      concurrency: _n,
      endpoint: _e,
      region: _r,
      credentials: _k,
      forcePathStyle: _f,
      maxAttempts: _m,
      ...loadOptions
    } = options;
    const ck = await loadCheckpoint(local, {
      ...loadOptions,
      repair: false,
      verify: options.verify === 'full' ? 'lazy' : (options.verify ?? 'lazy'),
    });
    // Which chunks earlier loads fetched into this entry (a hint: each is verified before use).
    const have = new Set<number>();
    try {
      const hint = JSON.parse(await readFile(`${local}.chunks`, 'utf8')) as unknown;
      if (Array.isArray(hint)) for (const c of hint) if (Number.isSafeInteger(c)) have.add(c as number);
    } catch {
      // no hint: every chunk is fetched when first needed
    }
    // The stored parity repairs damaged chunks (unless repair is off); never written to.
    const tveccEntry = manifest.files.find((f) => f.name === `${manifest.main}.tvecc`);
    const parity =
      tveccEntry === undefined
        ? 'the set has no parity'
        : options.repair === false
          ? 'repair is off'
          : chunkSourceOf(store, prefix, manifest, tveccEntry);
    const remote = new RemoteCheckpoint(
      have,
      mainUrl,
      ck,
      store,
      src,
      concurrency ?? 8,
      mark,
      parity,
      options.signal,
    );
    if (options.verify === 'full') {
      try {
        await remote.tensors();
      } catch (err) {
        ck.close();
        throw err;
      }
      // Every tensor was fetched and its chunks checked: a full verification (the local open above was
      // lazy, so its report said 'lazy').
      ck.report.verify = 'full';
    }
    publishRemote({
      event: 'opened',
      url: mainUrl,
      bytes: store.metrics.bytesDown,
      ms: performance.now() - t0,
    });
    return remote;
  } catch (err) {
    store.close();
    if (mark !== undefined) {
      // Cleanup never replaces the error: a mark in a folder that could not be made (a cacheDir under
      // a regular file) fails here with ENOTDIR, which `force` does not ignore.
      try {
        rmSync(mark, { force: true });
      } catch {
        // not made, or not reachable
      }
    }
    // A full disk under the cache, a failing read: TV_IO (not a bare Node error).
    throw typedIoError(err, options.cacheDir ?? url);
  }
}
