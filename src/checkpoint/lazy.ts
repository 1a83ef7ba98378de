/** The loaded checkpoint: lazy, verified-on-first-view tensors. */
/**
 * Loading, verifying and repairing checkpoints of the three layouts; lazy verification per tensor.
 */
import { constants as bufferConstants } from 'node:buffer';
import { fstatSync, read, statSync } from 'node:fs';
import { asyncDisposeSymbol, disposeSymbol } from '../dispose';
import { repair as eccRepair } from '../ecc/erasure';
import { ErrorCode, TensorVaultError, throwIfAborted } from '../errors';
import { ioError } from '../io/fs';
import { abortable } from '../job';
import type { NativeOutboard } from '../native/binding';
import { checkTensorRange, type SafetensorsFile, type Tensor, type TensorInfo } from '../safetensors/reader';
import { optionalSignal, optionsObject } from '../validate';
import { CheckedBytes } from './checked';
import { type ChunkCheckState, checkChunks } from './chunk-check';
import { publish, racedError } from './commit';
import { closedError, WeightsFd } from './descriptor';
import { TensorDamagedError } from './errors';
import { fdPath, mergeReport, openPair, verifyWhole } from './integrity';
import { type CheckpointLayout, type HmacKey, type IntegrityBlock, treeHashOf } from './layout';
import { loadCheckpoint } from './load';
import { OutboardReader } from './outboard';
import type { CheckpointReport, Parsed } from './parse';
import {
  type CheckpointChunkOptions,
  type CheckpointReadOptions,
  chunkOptionsOf,
  tooLargeForView,
} from './read-options';
import { notAboutParity, replacedError, underLock } from './repair-lock';
import { chunkSpan } from './rs';
import { treeDamage } from './tree-check';

/**
 * `length` bytes of `fd` from `position`, read on the libuv pool (`fs.read`, in pieces below its 2 GiB
 * limit); undefined when the file ends first.
 */
async function preadAll(fd: number, length: number, position: number): Promise<Buffer | undefined> {
  const buf = Buffer.allocUnsafeSlow(length); // its own ArrayBuffer, as the addon's copies have
  let done = 0;
  while (done < length) {
    const n = Math.min(length - done, 1 << 30);
    const got = await new Promise<number>((resolve, reject) =>
      read(fd, buf, done, n, position + done, (err, bytes) => (err ? reject(err) : resolve(bytes))),
    );
    if (got === 0) return undefined;
    done += got;
  }
  return buf;
}

/**
 * A loaded checkpoint: metadata, version, verified tensor views and the verification report. Views are
 * zero-copy windows on the mapped weights (see {@link SafetensorsFile}); {@link Checkpoint.tensor}
 * checks the bytes first according to the verify mode.
 */
export class Checkpoint {
  /** The weights file. */
  readonly path: string;
  /** The layout detected. */
  readonly layout: CheckpointLayout;
  /** The checkpoint's metadata (from its sidecar). */
  readonly metadata: Readonly<Record<string, unknown>>;
  /** Metadata `version` as a string (or undefined). */
  readonly version: string | undefined;
  /** The verification state (updated as tensors are verified). */
  readonly report: CheckpointReport;
  #p: Parsed;
  #file: SafetensorsFile;
  #key: HmacKey | undefined;
  #repair: boolean;
  /** What has been checked of the mapped weights (chunks, outboard pieces). */
  #checked = new CheckedBytes();
  #allVerified = false;
  #queue: Promise<unknown> = Promise.resolve();
  /** Checks queued on {@link Checkpoint.#queue} and not finished (a repair may be among them). */
  #pending = 0;
  /** The weights' own descriptor (see {@link Checkpoint.#descriptor}). */
  #fd: WeightsFd | undefined;
  /** Whether {@link Checkpoint.close} was called. */
  #closed = false;
  /** The outboard (blake3 trees): first views check only the 64 KiB pieces a tensor covers. */
  #outboard: OutboardReader | undefined;

  /** @internal Use {@link loadCheckpoint}. */
  constructor(
    p: Parsed,
    file: SafetensorsFile,
    fd: WeightsFd | undefined,
    report: CheckpointReport,
    key: HmacKey | undefined,
    repair: boolean,
    outboard?: NativeOutboard,
    headerPieces = 0,
  ) {
    this.#fd = fd;
    this.path = p.files.weights;
    this.layout = p.layout;
    this.metadata = p.metadata;
    const v = p.metadata.version;
    this.version = typeof v === 'string' ? v : v === undefined ? undefined : String(v);
    this.report = report;
    this.#p = p;
    this.#file = file;
    this.#key = key;
    this.#repair = repair;
    if (report.verify === 'full' && report.status !== 'damaged') this.#allVerified = true;
    if (p.block !== undefined && p.tvob !== undefined && treeHashOf(p.block.algorithm) === 'blake3')
      this.#outboard = new OutboardReader(p.tvob, p.block, outboard);
    else outboard?.close();
    // The open checked the header through the outboard (the handle passed in): the pieces of chunk 0
    // that hold it are verified.
    const n = headerPieces > 0 ? (this.#outboard?.pieces() ?? 0) : 0;
    if (headerPieces < n) {
      this.#checked.current(this.#file.fileStamp()); // the file's state they were checked in
      this.#checked.addPieces(0, 0, headerPieces, n);
    }
  }

  /** Tensor names in file order. */
  get names(): readonly string[] {
    return this.#file.names;
  }

  /** Dtype, shape, size and offset of tensor `name`. */
  info(name: string): TensorInfo {
    return this.#file.info(name);
  }

  /**
   * Tensor `name` as a zero-copy typed view, after its bytes were checked (verify `lazy`: its chunks
   * against their digests, the first time it is viewed; PyFolds layouts: the whole hash on the first
   * view). Damage is repaired from parity when the checkpoint has some and `repair` is on; otherwise
   * rejects with {@link TensorDamagedError} (`TV_CHECKPOINT_TENSOR_DAMAGED`) naming the tensor and chunks.
   */
  async tensor(name: string): Promise<Tensor> {
    const info = this.#file.info(name);
    // Refused before its bytes are checked (a check of more than 4 GiB for a view that cannot be made).
    if (info.byteLength > bufferConstants.MAX_LENGTH) throw tooLargeForView(name, info.byteLength);
    if (this.report.verify !== 'none' && !this.#allVerified) {
      if (this.#pending === 0 && this.#vouched(info)) {
        // Its bytes were already checked (its chunks, or the outboard pieces it lies in): nothing to
        // read or wait for, so no trip through the queue (most of a first view's cost when the open
        // checked the pieces that hold the header and the first tensors).
        this.#verifiedView(info, performance.now());
      } else {
        await this.#inTurn(() => this.#ensure(info));
      }
    }
    return this.#file.tensor(name);
  }

  /**
   * Whether every byte of `info` is already verified, by whole chunks or by the outboard pieces of
   * its one chunk (no check runs: this only reads the records of earlier ones).
   */
  #vouched(info: TensorInfo): boolean {
    const block = this.#p.block;
    if (this.#p.layout !== 'tensorvault' || block === undefined) return false;
    this.#checked.current(this.#file.fileStamp());
    return this.#checked.vouches(info.fileOffset, info.byteLength, block.chunk_size);
  }

  /** Every tensor, verified as {@link Checkpoint.tensor} does, by name. */
  async tensors(): Promise<Map<string, Tensor>> {
    if (
      this.report.verify === 'lazy' &&
      !this.#allVerified &&
      this.#p.block !== undefined &&
      !this.#file.closed
    ) {
      // All of them: hash the whole file's chunks at once (all cores), then only damage is handled
      // per tensor below.
      const block = this.#p.block;
      const run = this.#queue.then(async () => {
        // The descriptor is taken here, when the check starts, and held until it ends: a close() in
        // between fails the check with TV_CLOSED instead of freeing the number it reads through.
        const damage = await this.#descriptor().lend((fd) => {
          this.#checked.current(this.#file.fileStamp());
          return treeDamage(this.#p, block, {}, fdPath(fd, this.#p.weights));
        });
        const bad = new Set(damage);
        const n = Math.ceil(block.file_length / block.chunk_size);
        for (let i = 0; i < n; i++) if (!bad.has(i)) this.#checked.add(i);
      });
      this.#queue = run.catch(() => {});
      await run;
    }
    const out = new Map<string, Tensor>();
    for (const n of this.names) out.set(n, await this.tensor(n));
    return out;
  }

  /**
   * A copy of `length` bytes of tensor `name` from `offset` bytes into it (read from the file on the
   * libuv pool, not from the mapping: never what this process wrote through a view),
   * after the bytes were checked as {@link Checkpoint.tensor} checks a tensor (verify `lazy`: the
   * checkpoint chunks the range covers, or the outboard pieces it lies in, the first time they are
   * read; PyFolds layouts: the whole hash once). Works for tensors of any size, including those over
   * 4 GiB that {@link Checkpoint.tensor} refuses on Node 20; damage outside the range does not stop it.
   * Damage inside it is repaired from parity when the checkpoint has some and `repair` is on, otherwise
   * rejects with {@link TensorDamagedError} (`TV_CHECKPOINT_TENSOR_DAMAGED`) naming the tensor and the
   * chunks: never unverified bytes. `TV_INVALID_ARGUMENT` for a range outside the tensor,
   * `TV_TENSOR_NOT_FOUND`, `TV_CLOSED` after {@link Checkpoint.close}, `TV_FILE_CHANGED` when the set
   * was replaced since the load (`reason: 'replaced'`; nothing is repaired), `AbortError` on `signal`.
   * A file truncated under it gives `TV_FILE_CHANGED` or, like a first view, damage of the chunks cut.
   */
  async readRange(
    name: string,
    offset: number,
    length: number,
    options: CheckpointReadOptions = {},
  ): Promise<Buffer> {
    if (this.#closed) throw closedError(this.path);
    const info = this.#file.info(name);
    optionsObject(options);
    const signal = optionalSignal(options.signal);
    checkTensorRange(info, offset, length);
    return this.#verifiedRead(info, offset, length, signal, () =>
      this.#checkedCopy(info, offset, length, signal),
    );
  }

  /**
   * The copy {@link Checkpoint.readRange} returns: read from the file through the mapped file's own
   * descriptor (the bytes the check read), not from the mapping, whose pages this process may have
   * written through a view (private copy-on-write). When the file changed on disk since the check
   * (its stat differs from the stamp the check was made under), the range is checked again and read
   * again; `TV_FILE_CHANGED` if it keeps changing or was cut short.
   */
  async #checkedCopy(
    info: TensorInfo,
    offset: number,
    length: number,
    signal?: AbortSignal,
  ): Promise<Buffer> {
    const at = info.fileOffset + offset;
    const span: TensorInfo = { ...info, fileOffset: at, byteLength: length };
    for (let attempt = 1; ; attempt++) {
      const buf = await this.#descriptor()
        .lend((fd) => preadAll(fd, length, at))
        .catch((err: unknown) => {
          throw ioError(err, this.path, 'reading');
        });
      if (buf === undefined) {
        throw new TensorVaultError(
          ErrorCode.FILE_CHANGED,
          `${this.path} was cut short under a read of tensor "${info.name}"; load the checkpoint again`,
          { path: this.path, reason: 'truncated', expected: at + length },
        );
      }
      if (this.#checked.unchanged(this.#file.fileStamp())) return buf;
      if (attempt === 3) {
        throw new TensorVaultError(
          ErrorCode.FILE_CHANGED,
          `${this.path} kept changing on disk while tensor "${info.name}" was read; load the checkpoint again`,
          { path: this.path, reason: 'changed' },
        );
      }
      await this.#ensure(info, span, signal);
    }
  }

  /**
   * The bytes of tensor `name` in pieces of `chunkBytes` (default 64 MiB), each checked before it is
   * yielded exactly as {@link Checkpoint.readRange} checks a range (repaired from parity, or
   * `TV_CHECKPOINT_TENSOR_DAMAGED` from the first piece that covers damage; the pieces before it were
   * intact). Each piece is a zero-copy `Uint8Array` window on the mapping (a copy where the runtime
   * forbids external buffers). The accessor for a tensor larger than one ArrayBuffer
   * (`TV_TENSOR_TOO_LARGE` from {@link Checkpoint.tensor} on Node 20). Arguments are checked when it is
   * called (`TV_INVALID_ARGUMENT`, `TV_TENSOR_NOT_FOUND`, `TV_CLOSED`); `signal` stops the iteration
   * with an `AbortError`.
   */
  chunks(name: string, options: CheckpointChunkOptions = {}): AsyncGenerator<Uint8Array, void, undefined> {
    if (this.#closed) throw closedError(this.path);
    const info = this.#file.info(name);
    const { signal, step } = chunkOptionsOf(options);
    return this.#verifiedPieces(info, step, signal);
  }

  async *#verifiedPieces(
    info: TensorInfo,
    step: number,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<Uint8Array, void, undefined> {
    for (let at = 0; at < info.byteLength; at += step) {
      const len = Math.min(step, info.byteLength - at);
      yield await this.#verifiedRead(info, at, len, signal, () => this.#file.rangeBytes(info.name, at, len));
    }
  }

  /**
   * `read()` of bytes `offset .. offset + length` of tensor `info`, once they are checked (queued
   * behind the checks in flight, like a first {@link Checkpoint.tensor} view; the read runs in the
   * same turn of the queue, so no repair replaces the file between the check and the read).
   */
  async #verifiedRead<T>(
    info: TensorInfo,
    offset: number,
    length: number,
    signal: AbortSignal | undefined,
    read: () => T | Promise<T>,
  ): Promise<T> {
    if (this.#closed) throw closedError(this.path);
    throwIfAborted(signal);
    const span: TensorInfo = { ...info, fileOffset: info.fileOffset + offset, byteLength: length };
    if (this.report.verify === 'none' || this.#allVerified || length === 0) return read();
    if (this.#pending === 0 && this.#vouched(span)) return read();
    return this.#inTurn(async () => {
      throwIfAborted(signal);
      await this.#ensure(info, span, signal);
      if (this.#closed) throw closedError(this.path);
      throwIfAborted(signal);
      return read();
    }, signal);
  }

  /**
   * `work` in its turn of the queue: after the checks queued before it, and before any queued after
   * it starts (a repair among them cannot replace the file under it); counted in
   * {@link Checkpoint.#pending} until both it and the turn before it have settled. `signal` ends only
   * this caller's wait: what waits ahead is not cancelled, and the queue still waits for it.
   */
  async #inTurn<T>(work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    this.#pending++;
    const prior = this.#queue;
    const run = abortable(prior, signal).then(work);
    this.#queue = Promise.allSettled([prior, run]).finally(() => this.#pending--);
    return await run;
  }

  /**
   * The mapped file's own descriptor, duplicated on first use (a lazy open that never reads beside
   * its views makes none): reads through it see the file the views map, even if the path was replaced.
   * `TV_CLOSED` after {@link Checkpoint.close}.
   */
  #descriptor(): WeightsFd {
    if (this.#closed) throw closedError(this.path);
    this.#fd ??= new WeightsFd(this.#file);
    return this.#fd;
  }

  /**
   * Close the files now (views handed out keep only their mapped pages, until collected). A check in
   * flight (a first {@link Checkpoint.tensor} view, {@link Checkpoint.tensors}) rejects with
   * `TV_CLOSED`; one already reading keeps the weights' descriptor open until that read returns, never
   * longer. A checkpoint dropped without `close()` has its files closed when it is garbage-collected.
   * Idempotent.
   */
  close(): void {
    this.#closed = true;
    this.#file.close();
    this.#fd?.close();
    this.#fd = undefined;
    this.#outboard?.close();
  }

  /** `using ckpt = await loadCheckpoint(...)`: {@link Checkpoint.close} at the end of the scope. */
  [disposeSymbol](): void {
    this.close();
  }

  /**
   * `await using ckpt = await loadCheckpoint(...)`: {@link Checkpoint.close}, then wait until the checks
   * in flight have settled (their descriptor is closed when this resolves).
   */
  async [asyncDisposeSymbol](): Promise<void> {
    this.close();
    await this.#queue;
  }

  /**
   * Check the bytes `span` (by default all of tensor `info`; a range of it for
   * {@link Checkpoint.readRange}) as the first view of `info` does, repairing them when allowed.
   */
  async #ensure(info: TensorInfo, span: TensorInfo = info, signal?: AbortSignal): Promise<void> {
    if (this.#closed) throw closedError(this.path);
    const t0 = performance.now();
    if (this.#p.layout !== 'tensorvault') {
      await this.#verifyWhole(info.name, signal);
      return;
    }
    let bad = await this.#checkChunks(span, signal);
    if (bad.length > 0) {
      // The failure path only (no stat per view): a set replaced since the open is reported as such,
      // and never repaired with the opened set's digests.
      if (this.#replaced()) this.#failReplaced(info.name, bad);
      this.#damaged(info.name, bad);
      if (!this.#repair || this.#p.tvecc === undefined) {
        const why = this.#p.tvecc === undefined ? 'the checkpoint has no parity' : 'repair is off';
        this.#fail(info.name, bad, why);
      }
      await this.#repairTvecc(info.name, bad, signal);
      bad = await this.#checkChunks(span, signal);
      if (bad.length > 0) this.#fail(info.name, bad, 'bytes still differ after repair');
    }
    this.#verifiedView(span, t0);
  }

  /**
   * Record the bytes `span` of a tensor as verified (report, status, the `verified` event, whose
   * `bytes` and `chunks` are those of the span); the tensor counts in `verifiedTensors` once the span
   * is all of it.
   */
  #verifiedView(span: TensorInfo, t0: number): void {
    const block = this.#p.block as IntegrityBlock;
    const whole = this.#file.info(span.name);
    const all = span.fileOffset === whole.fileOffset && span.byteLength === whole.byteLength;
    if (all && !this.report.verifiedTensors.includes(span.name)) this.report.verifiedTensors.push(span.name);
    if (
      this.report.status === 'unverified' &&
      this.#checked.count === Math.ceil(block.file_length / block.chunk_size)
    ) {
      this.report.status = 'intact'; // every byte of the file has been checked
    }
    publish({
      event: 'verified',
      path: this.path,
      tensor: span.name,
      bytes: span.byteLength,
      chunks: chunkSpan(span.fileOffset, span.fileOffset + span.byteLength, block.chunk_size),
      ms: performance.now() - t0,
    });
  }

  #damaged(tensor: string, chunks: number[]): void {
    for (const c of chunks) if (!this.report.damagedChunks.includes(c)) this.report.damagedChunks.push(c);
    if (!this.report.damagedTensors.includes(tensor)) this.report.damagedTensors.push(tensor);
    publish({ event: 'damaged', path: this.path, tensor, chunks });
  }

  #fail(tensor: string, chunks: number[], why: string): never {
    if (this.#replaced()) this.#failReplaced(tensor, chunks);
    this.#failIfCut(tensor, chunks);
    this.report.status = 'damaged';
    const err = new TensorDamagedError(this.path, tensor, chunks, why);
    publish({ event: 'failed', op: 'load', path: this.path, tensor, chunks, code: err.code });
    throw err;
  }

  /**
   * Whether the set at the path is no longer the one this checkpoint opened: another file is there (a
   * newer save, or another process's repair, renamed one into place; a save's commit renames the
   * weights first, so a sidecar or parity file of the newer set comes with newer weights). Asked only
   * once a check has failed: the views never stat the path.
   */
  #replaced(): boolean {
    if (this.#file.closed) return false;
    try {
      const opened = fstatSync(this.#descriptor().fd);
      const now = statSync(this.#p.weights);
      return now.ino !== opened.ino || now.dev !== opened.dev;
    } catch {
      return false; // removed (a prune): the check's own error stands
    }
  }

  /**
   * A first view's check failed and the set was replaced since the open (see {@link #replaced}):
   * `TV_FILE_CHANGED`, `reason: 'replaced'`, not damage; nothing was repaired.
   */
  #failReplaced(tensor: string, chunks: number[]): never {
    const err = replacedError(
      this.path,
      `tensor "${tensor}" could not be verified against it and nothing was repaired: load the checkpoint again`,
      { tensor },
    );
    publish({ event: 'failed', op: 'load', path: this.path, tensor, chunks, code: err.code });
    throw err;
  }

  /**
   * The weights were cut short under the mapping (another process truncated them) and could not be
   * repaired: `TV_FILE_CHANGED`, as the views' own size check reports it, rather than damage.
   */
  #failIfCut(tensor: string, chunks: number[]): void {
    if (this.#file.closed) return;
    const expected = this.#file.fileLength;
    const actual = fstatSync(this.#descriptor().fd).size;
    if (actual >= expected) return;
    const err = new TensorVaultError(
      ErrorCode.FILE_CHANGED,
      `file changed while open: ${this.path} was ${expected} bytes, now ${actual}`,
      { path: this.path, expected, actual },
    );
    publish({ event: 'failed', op: 'load', path: this.path, tensor, chunks, code: err.code });
    throw err;
  }

  /** The chunks of `span` not yet verified that do not match their leaves (see {@link checkChunks}). */
  async #checkChunks(span: TensorInfo, signal?: AbortSignal): Promise<number[]> {
    const state: ChunkCheckState = {
      block: this.#p.block as IntegrityBlock,
      weights: this.#p.weights,
      checked: this.#checked,
      outboard: this.#outboard,
      descriptor: () => this.#descriptor(),
    };
    // Chunks checked earlier (ahead, or for another tensor) are skipped only while the file is unchanged.
    this.#descriptor(); // TV_CLOSED first, as a check that reads
    this.#checked.current(this.#file.fileStamp());
    return await checkChunks(state, span, signal);
  }

  async #repairTvecc(tensor: string, chunks: number[], signal?: AbortSignal): Promise<void> {
    const t0 = performance.now();
    try {
      const ino = this.#file.closed ? undefined : fstatSync(this.#descriptor().fd).ino;
      const sidecar = this.#p.tvecc as string;
      // force: the sealed integrity block already proved these bytes are damage, not an edit after the
      // save, so rolling back to the protected bytes is right even when the sidecar's hints call it stale.
      const r = await underLock(
        this.#p,
        ino,
        () => eccRepair(this.#p.weights, { sidecar, force: true, ...(signal ? { signal } : {}) }),
        signal,
      );
      for (const c of chunks) if (!this.report.repairedChunks.includes(c)) this.report.repairedChunks.push(c);
      publish({
        event: 'repaired',
        path: this.path,
        tensor,
        chunks,
        eccChunks: r.repairedChunks,
        ms: performance.now() - t0,
      });
    } catch (err) {
      // A full disk, a read error, a lock: the repair could not run; the tensor is not marked damaged
      // beyond its parity, and a later view tries again.
      if (
        err instanceof TensorVaultError &&
        err.code !== ErrorCode.ABORTED &&
        err.code !== ErrorCode.INTERNAL &&
        !notAboutParity(err)
      ) {
        this.#fail(tensor, chunks, `parity cannot repair it (${err.code})`);
      }
      throw err;
    }
    // The repaired file is a new inode: map it again and verify from scratch.
    this.#file.close();
    this.#fd?.close();
    this.#fd = undefined;
    const pair = await openPair(this.#p.weights);
    if (this.#closed) {
      // Closed while the repaired file was opened: it is not kept.
      pair.file.close();
      pair.fd.close();
      throw closedError(this.path);
    }
    this.#file = pair.file;
    this.#fd = pair.fd;
    this.#checked.clear();
    this.#outboard?.close();
    this.report.status = 'repaired';
  }

  async #verifyWhole(tensor: string, signal?: AbortSignal): Promise<void> {
    const t0 = performance.now();
    // The weights are read through the mapped file's own descriptor, held open until the check ends:
    // the bytes the views map, even if a newer save has replaced the path since the open.
    const r = await this.#descriptor().lend(async (fd) => {
      const ino = fstatSync(fd).ino;
      const from = fdPath(fd, this.#p.weights);
      let r: Awaited<ReturnType<typeof verifyWhole>> | undefined;
      try {
        const options = signal ? { signal } : {};
        r = await verifyWhole(this.#p, this.#file, this.#key, this.#repair, options, ino, false, from);
      } catch (err) {
        if (!racedError(err) || !this.#replaced()) throw err;
      }
      if (r === undefined || (r.report.status === 'damaged' && this.#replaced())) {
        // The set was replaced since the open, and the parity (read by path) is the newer set's: check
        // the opened bytes against the opened set's hash again without repairing anything.
        try {
          r = await verifyWhole(this.#p, this.#file, this.#key, false, {}, ino, false, from);
        } catch (err) {
          if (racedError(err)) this.#failReplaced(tensor, []);
          throw err;
        }
        if (r.report.status === 'damaged') this.#failReplaced(tensor, r.report.damagedChunks ?? []);
      }
      return r;
    });
    if (this.#closed) {
      // Closed while the check ran: a file it repaired and mapped again is not kept.
      if (r.file !== this.#file) r.file.close();
      throw closedError(this.path);
    }
    if (r.file !== this.#file) {
      // The repaired file is a new mapping: its own descriptor is made on the next read.
      this.#fd?.close();
      this.#fd = undefined;
      this.#file = r.file;
    }
    mergeReport(this.report, r.report);
    if (r.report.status === 'damaged') {
      this.#fail(tensor, r.report.damagedChunks ?? [], r.why ?? 'the integrity hash does not match');
    }
    this.#allVerified = true;
    this.report.verifiedTensors = [...this.#file.names];
    publish({ event: 'verified', path: this.path, tensor: null, bytes: 0, ms: performance.now() - t0 });
  }
}
