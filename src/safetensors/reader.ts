/**
 * The safetensors reader: {@link openSafetensors} maps a file private copy-on-write, validates its
 * header on the libuv pool and hands out zero-copy typed views per tensor, windows on region buffers
 * over the mapping. Format notes: `docs/formats/safetensors.md`.
 */
import { constants as bufferConstants } from 'node:buffer';
import { disposeSymbol } from '../dispose';
import {
  abortError,
  callNative,
  ErrorCode,
  fromNative,
  invalidArgument,
  TensorVaultError,
  throwIfAborted,
} from '../errors';
import { settleClosedMappings } from '../io/mappings';
import { type JobOptions, runJob } from '../job';
import { type NativeSafetensorsHandle, type NativeTensorInfo, native } from '../native';
import type { NativeFd } from '../native/binding';
import {
  checkWellFormed,
  describeValue,
  hasLoneSurrogate,
  optionalBoolean,
  optionsObject,
} from '../validate';
import { type Dtype, isDtype, VIEW } from './dtype';
import type {
  ChunkOptions,
  OpenSafetensorsOptions,
  PrefetchResult,
  Tensor,
  TensorInfo,
  TensorOptions,
  TypedTensor,
} from './types';

export {
  ChunkOptions,
  OpenSafetensorsOptions,
  PrefetchResult,
  Tensor,
  TensorInfo,
  TensorOptions,
  TypedTensor,
} from './types';

/** Region buffers start and end on multiples of this (a multiple of every page size in use). */
const REGION_ALIGN = 64 * 1024;
/** Size of the first view's region (see `SafetensorsFile.#window`). */
const FIRST_REGION = 4 * 1024 * 1024;

function freezeInfo(t: NativeTensorInfo): TensorInfo {
  return Object.freeze({
    name: t.name,
    dtype: t.dtype as Dtype,
    shape: Object.freeze([...t.shape]),
    // Only when a dimension is above 2^53 - 1 (the addon then sends every dimension as text).
    ...(t.exactShape ? { exactShape: Object.freeze([...t.exactShape]) } : {}),
    byteLength: t.byteLength,
    fileOffset: t.fileOffset,
  });
}

function checkName(name: unknown): string {
  if (typeof name !== 'string')
    throw invalidArgument('name', `tensor name must be a string, got ${typeof name}`);
  // The addon would look up the name with its lone surrogates turned into U+FFFD: another tensor.
  checkWellFormed('name', name, 'tensor name');
  return name;
}

function checkPopulate(populate: unknown): boolean | undefined {
  if (populate !== undefined && typeof populate !== 'boolean') {
    throw invalidArgument('populate', `populate must be a boolean, got ${typeof populate}`);
  }
  return populate;
}

/**
 * `TV_INVALID_ARGUMENT` (`range`) unless `offset` and `length` are safe integers naming bytes inside
 * tensor `info`: the check of every `readRange`.
 */
export function checkTensorRange(info: TensorInfo, offset: number, length: number): void {
  if (
    !Number.isSafeInteger(offset) ||
    !Number.isSafeInteger(length) ||
    offset < 0 ||
    length < 0 ||
    offset + length > info.byteLength
  ) {
    throw invalidArgument(
      'range',
      `range [${describeValue(offset)}, +${describeValue(length)}) is outside tensor ${JSON.stringify(info.name)} (${info.byteLength} bytes)`,
      { name: info.name, offset, length, byteLength: info.byteLength },
    );
  }
}

/**
 * An open safetensors file. Tensor views are zero-copy windows on a private copy-on-write mapping:
 * writing through a view changes this process's copy only, never the file. The mapping lives until
 * `close()` has been called and every view has been garbage-collected, so views stay valid after
 * `close()`.
 */
export class SafetensorsFile {
  /** The path the file was opened from. */
  readonly path: string;
  /** Absolute offset of the data area (8 + header length). */
  readonly dataStart: number;
  /** Number of tensors in the file. */
  readonly tensorCount: number;
  #handle: NativeSafetensorsHandle;
  /**
   * Entries looked up so far. The header stays in the addon: opening a file builds nothing per tensor
   * on the JS thread (a million-tensor header used to block the event loop for seconds, issue 13 item
   * 14); `info()` asks the addon's index, and `names` / `infos()` are built on first use.
   */
  #infos = new Map<string, TensorInfo>();
  #names: readonly string[] | undefined;
  #all: readonly TensorInfo[] | undefined;
  #metadata: Readonly<Record<string, string>> | null | undefined;
  #copy: boolean;
  #max: number;
  #populate: boolean;
  /** Bytes mapped: the whole file. */
  #fileLength: number;
  /** Bytes of tensor data. */
  #dataLength: number;
  /** Largest region buffer (a multiple of 64 KiB). */
  #regionBytes: number;
  /** Region buffers made so far, by `start:length` (see {@link SafetensorsFile.#window}). */
  #regions = new Map<string, ArrayBuffer>();
  /** The small region of the file's first view (see {@link SafetensorsFile.#window}). */
  #first: { start: number; buffer: ArrayBuffer } | undefined;
  /** Set once the runtime refused an external buffer: every view is then a copy. */
  #noExternal = false;

  /** @internal Use {@link openSafetensors}. */
  constructor(path: string, handle: NativeSafetensorsHandle, options: OpenSafetensorsOptions) {
    this.path = path;
    this.#handle = handle;
    this.#copy = options.copy !== false;
    this.#max = options.maxTensorBytes ?? bufferConstants.MAX_LENGTH;
    this.#populate = options.populate ?? false;
    this.dataStart = callNative(() => handle.dataStart());
    this.tensorCount = callNative(() => handle.tensorCount());
    // The header validation guarantees contiguous data with no trailing bytes.
    this.#fileLength = callNative(() => handle.fileLength());
    this.#dataLength = callNative(() => handle.dataLength());
    const cap = Math.min(options.regionBytes ?? bufferConstants.MAX_LENGTH, bufferConstants.MAX_LENGTH);
    this.#regionBytes = Math.max(REGION_ALIGN, cap - (cap % REGION_ALIGN));
  }

  /**
   * Tensor names in file order. Built on first use (one string from the addon, parsed once), then
   * cached: O(number of tensors), so a file of a million tensors pays for it only when asked.
   */
  get names(): readonly string[] {
    if (this.#names === undefined) {
      const handle = this.#handle;
      this.#names = Object.freeze(JSON.parse(callNative(() => handle.namesJson())) as string[]);
    }
    return this.#names;
  }

  /** The `__metadata__` map, or null when the file has none (built on first use). */
  get metadata(): Readonly<Record<string, string>> | null {
    if (this.#metadata === undefined) {
      const handle = this.#handle;
      const meta = callNative(() => handle.metadata());
      this.#metadata =
        meta === null || meta === undefined
          ? null
          : Object.freeze(Object.fromEntries(meta.map((e) => [e.key, e.value])));
    }
    return this.#metadata;
  }

  /**
   * A window on the mapping for file bytes `abs .. abs + len` (`len` ≥ 1): a region buffer and the
   * window's offset in it, or null where the runtime forbids external buffers. Views are typed arrays
   * on a handful of region buffers per file rather than one external buffer each, so making a view
   * costs V8 nothing to account for (issue 11: one external buffer per view cost a collection each,
   * and the old bookkeeping that hid them aborts Node 24+). A file up to `regionBytes` is one region;
   * a larger one is covered by regions of `regionBytes` starting every `regionBytes / 2`, so any range
   * up to half a region lies in one of them; a larger range gets a region of its own.
   */
  #window(abs: number, len: number): { buffer: ArrayBuffer; byteOffset: number } | null {
    if (this.#noExternal) return null;
    const cap = this.#regionBytes;
    const first = this.#first;
    if (first !== undefined && abs >= first.start && abs + len <= first.start + first.buffer.byteLength) {
      return { buffer: first.buffer, byteOffset: abs - first.start };
    }
    if (
      first === undefined &&
      this.#regions.size === 0 &&
      cap > FIRST_REGION &&
      this.#fileLength > FIRST_REGION
    ) {
      // The file's first view gets a small region of its own, the 64 KiB-aligned span of its bytes: a
      // region of the whole mapping (up to regionBytes) makes V8 account that much external memory at
      // once and run a collection, which cost the first view 3–8 ms on a 512 MiB file
      // (docs/benchmarks.md, issue 14). A fixed 4 MiB region still did, every 16 opens: a loop that
      // opens checkpoints and views one tensor ran a full collection every 16 iterations (about a
      // quarter of its time). Later views use the large regions as before, so a loop over every tensor
      // pays for at most one more region.
      const start = Math.floor(abs / REGION_ALIGN) * REGION_ALIGN;
      const length = Math.min(
        Math.max(REGION_ALIGN, Math.ceil((abs + len) / REGION_ALIGN) * REGION_ALIGN - start),
        this.#fileLength - start,
      );
      if (length > 0 && len <= FIRST_REGION && abs + len <= start + length) {
        const buffer = this.#region(start, length);
        if (buffer === null) return null;
        this.#first = { start, buffer };
        return { buffer, byteOffset: abs - start };
      }
    }
    let start = 0;
    let length = this.#fileLength;
    if (length > cap) {
      const half = cap / 2;
      start = Math.floor(abs / half) * half;
      length = Math.min(cap, this.#fileLength - start);
      if (abs + len > start + length) {
        start = abs;
        length = len;
      }
    }
    const key = `${start}:${length}`;
    let buffer = this.#regions.get(key) ?? null;
    if (buffer === null) {
      buffer = this.#region(start, length);
      if (buffer === null) return null;
      this.#regions.set(key, buffer);
    }
    return { buffer, byteOffset: abs - start };
  }

  /** A new region buffer over file bytes `start .. start + length`, or null (no external buffers). */
  #region(start: number, length: number): ArrayBuffer | null {
    const handle = this.#handle;
    try {
      return callNative(() => handle.regionBuffer(start, length));
    } catch (err) {
      if (err instanceof TensorVaultError && err.code === ErrorCode.EXTERNAL_BUFFERS_UNAVAILABLE) {
        this.#noExternal = true;
        return null;
      }
      throw err;
    }
  }

  /** The bytes `offset .. offset + len` of tensor `name` (checked): a window, or a copy if need be. */
  #bytes(name: string, info: TensorInfo, offset: number, len: number, populate: boolean) {
    const handle = this.#handle;
    callNative(() => handle.checkRange(name, offset, len, this.#max, populate));
    if (len === 0) return { buffer: new ArrayBuffer(0), byteOffset: 0, copied: false };
    const w = this.#window(info.fileOffset + offset, len);
    if (w !== null) return { ...w, copied: false };
    if (!this.#copy) {
      throw new TensorVaultError(
        ErrorCode.EXTERNAL_BUFFERS_UNAVAILABLE,
        'this runtime forbids external ArrayBuffers; open with { copy: true } to copy each tensor instead',
        { name },
      );
    }
    const buffer = callNative(() => handle.copyRange(name, offset, len, this.#max));
    return { buffer, byteOffset: 0, copied: true };
  }

  /** @internal Length of the mapped file in bytes. */
  get fileLength(): number {
    return this.#fileLength;
  }

  /**
   * @internal SHA-256 (hex) of the file's first `length` bytes (a checkpoint's header digest without
   * reading the file again), or null when the file is shorter. For the header's own length these are
   * the bytes the header was parsed from at the open, so a match vouches for the header in use.
   */
  headerSha256(length: number): string | null {
    const handle = this.#handle;
    return callNative(() => handle.headerSha256(length)) ?? null;
  }

  /**
   * @internal A new descriptor of the mapped file (close-on-exec), for reads beside the views: the
   * same file by construction, not the path opened again. Owned by the addon: closed by the returned
   * object's `close()`, or when it is garbage-collected.
   */
  dupFd(): NativeFd {
    const handle = this.#handle;
    return callNative(() => handle.dupFd());
  }

  /**
   * @internal The mapped file's state now (`fstat` of its own descriptor, none duplicated):
   * `"dev ino size mtime_sec mtime_nsec ctime_sec ctime_nsec"`. `TV_CLOSED` when closed.
   */
  fileStamp(): string {
    const handle = this.#handle;
    return callNative(() => handle.fileStamp());
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#handle.closed;
  }

  /** Whether the file holds a tensor called `name`. */
  has(name: string): boolean {
    // A name with a lone surrogate cannot be in a file (names are UTF-8); the addon would have looked up
    // its U+FFFD form.
    if (typeof name !== 'string' || hasLoneSurrogate(name)) return false;
    if (this.#infos.has(name)) return true;
    const handle = this.#handle;
    return callNative(() => handle.has(name));
  }

  /** Dtype, shape, byte length and file offset of tensor `name` (looked up in the addon's index). */
  info(name: string): TensorInfo {
    checkName(name);
    let info = this.#infos.get(name);
    if (info === undefined) {
      const handle = this.#handle;
      const t = callNative(() => handle.info(name));
      if (t === null || t === undefined) {
        throw new TensorVaultError(ErrorCode.TENSOR_NOT_FOUND, `no tensor named ${JSON.stringify(name)}`, {
          name,
          path: this.path,
        });
      }
      info = freezeInfo(t);
      this.#infos.set(name, info);
    }
    return info;
  }

  /**
   * Every tensor's header entry, in file order. Built on first use and cached: O(number of tensors)
   * on the JS thread (prefer {@link SafetensorsFile.info} by name for large files).
   */
  infos(): TensorInfo[] {
    if (this.#all === undefined) {
      const handle = this.#handle;
      const raw = JSON.parse(callNative(() => handle.tensorsJson())) as NativeTensorInfo[];
      this.#all = Object.freeze(raw.map((t) => this.#infos.get(t.name) ?? freezeInfo(t)));
    }
    return [...this.#all];
  }

  /**
   * Tensor `name` as a typed view over the mapped file (zero-copy unless {@link Tensor.copied}).
   * Throws `TV_TENSOR_TOO_LARGE` for a tensor larger than one ArrayBuffer may be (use `chunks()`),
   * `TV_FILE_CHANGED` if the file was truncated since it was opened, `TV_CLOSED` after `close()`.
   * With `{ populate: true }` the tensor's pages are mapped before the view is returned (see
   * {@link TensorOptions.populate}).
   *
   * With a dtype as second argument (`tensor('w', 'F32')`) the result is typed for it at compile time
   * (`data: Float32Array`), and a tensor of another dtype throws `TV_TENSOR_DTYPE_MISMATCH`: no
   * `BigInt64Array` where a `Float32Array` was expected.
   */
  tensor(name: string, options?: TensorOptions): Tensor;
  tensor<D extends Dtype>(name: string, dtype: D, options?: TensorOptions): TypedTensor<D>;
  tensor(name: string, dtypeOrOptions?: Dtype | TensorOptions, maybeOptions?: TensorOptions): Tensor {
    const typed = typeof dtypeOrOptions === 'string';
    const given = typed ? maybeOptions : dtypeOrOptions;
    const options = given === undefined ? {} : given; // null is refused below, not defaulted
    const info = this.info(name);
    if (typed) checkDtype(info, dtypeOrOptions);
    optionsObject(options);
    return this.#view(
      info,
      0,
      info.byteLength,
      info.shape,
      checkPopulate(options.populate) ?? this.#populate,
    );
  }

  /**
   * Rows `start` to `end` (exclusive; default: to the last row) of tensor `name`, along its first
   * dimension, as a zero-copy view of just those bytes — Python's `safe_open(…).get_slice(name)[a:b]`.
   * Nothing outside the slice is touched. Negative indices count from the end, as in Python; the range
   * is clamped to the tensor. Throws `TV_INVALID_ARGUMENT` for a scalar, or for a dtype packed below
   * one byte per row.
   */
  slice(name: string, start: number, end?: number, options: TensorOptions = {}): Tensor {
    const info = this.info(name);
    optionsObject(options);
    const rows = info.shape[0];
    if (rows === undefined)
      throw invalidArgument('name', `tensor ${JSON.stringify(name)} is a scalar: it has no rows to slice`);
    const rowBytes = rows === 0 ? 0 : info.byteLength / rows;
    if (!Number.isInteger(rowBytes)) {
      throw invalidArgument(
        'name',
        `tensor ${JSON.stringify(name)} (${info.dtype}) packs rows below byte boundaries`,
      );
    }
    if (!Number.isInteger(start) || (end !== undefined && !Number.isInteger(end))) {
      throw invalidArgument(
        'start',
        `slice bounds must be integers, got ${describeValue(start)}, ${describeValue(end)}`,
      );
    }
    const clamp = (i: number) => Math.min(rows, Math.max(0, i < 0 ? rows + i : i));
    const a = clamp(start);
    const b = Math.max(a, clamp(end ?? rows));
    const populate = checkPopulate(options.populate) ?? this.#populate;
    return this.#view(info, a * rowBytes, (b - a) * rowBytes, [b - a, ...info.shape.slice(1)], populate);
  }

  /** A typed view of `len` bytes at `offset` into tensor `info` (copied only where alignment forces it). */
  #view(info: TensorInfo, offset: number, len: number, shape: readonly number[], populate: boolean): Tensor {
    const w = this.#bytes(info.name, info, offset, len, populate);
    const Ctor = VIEW[info.dtype];
    let { buffer, byteOffset } = w;
    let copied = w.copied;
    if (!copied && (info.fileOffset + offset) % Ctor.BYTES_PER_ELEMENT !== 0) {
      // A typed view needs its offset aligned to the element size: copy this one tensor.
      buffer = buffer.slice(byteOffset, byteOffset + len);
      byteOffset = 0;
      copied = true;
    }
    return {
      ...info,
      shape,
      byteLength: len,
      fileOffset: info.fileOffset + offset,
      data: new Ctor(buffer, byteOffset, len / Ctor.BYTES_PER_ELEMENT),
      bytes: new Uint8Array(buffer, byteOffset, len),
      copied,
    };
  }

  /**
   * Copy `length` bytes of tensor `name` starting `offset` bytes into it, on the libuv pool. Works for
   * tensors of any size.
   */
  async readRange(name: string, offset: number, length: number): Promise<Buffer> {
    checkTensorRange(this.info(name), offset, length);
    const handle = this.#handle;
    try {
      return await handle.readRange(name, offset, length);
    } catch (err) {
      throw fromNative(err);
    }
  }

  /**
   * The bytes of tensor `name` in chunks of `chunkBytes` (default 64 MiB), each a zero-copy
   * `Uint8Array` window on the mapping (or a copy where the runtime forbids external buffers). The
   * accessor for tensors larger than one ArrayBuffer.
   */
  *chunks(name: string, options: ChunkOptions = {}): Generator<Uint8Array, void, undefined> {
    const info = this.info(name);
    optionsObject(options);
    const populate = checkPopulate(options.populate) ?? this.#populate;
    const step = options.chunkBytes ?? 64 * 1024 * 1024;
    if (!Number.isSafeInteger(step) || step < 1 || step > this.#max) {
      throw invalidArgument('chunkBytes', `chunkBytes must be an integer from 1 to ${this.#max}`, {
        actual: step,
      });
    }
    for (let at = 0; at < info.byteLength; at += step) {
      const len = Math.min(step, info.byteLength - at);
      yield this.rangeBytes(name, at, len, populate);
    }
  }

  /**
   * @internal Bytes `offset .. offset + length` of tensor `name` as a `Uint8Array`: a zero-copy window
   * on the mapping, or a copy where the runtime forbids external buffers (the checked range of
   * {@link SafetensorsFile.chunks}; `TV_TENSOR_TOO_LARGE` above one ArrayBuffer, `TV_FILE_CHANGED`,
   * `TV_CLOSED`).
   */
  rangeBytes(name: string, offset: number, length: number, populate = this.#populate): Uint8Array {
    const info = this.info(name);
    const w = this.#bytes(name, info, offset, length, populate);
    return new Uint8Array(w.buffer, w.byteOffset, length);
  }

  /**
   * Map every page of the named tensors (default: all) into this process on the libuv pool, in 32 MiB
   * pieces spread over the worker threads, reading from disk whatever is not in the page cache. Views
   * made afterwards (or before) then read without page faults: on a 4 GiB warm checkpoint, a full read
   * of every view with `prefetch()` running alongside measured 7–35 % faster than the plain first read
   * (`docs/benchmarks-safetensors.md`). Nothing is copied: the pages are the page
   * cache's, mapped read-only and copy-on-write, and they count in this process's RSS while mapped.
   * Reports progress in bytes and honours `signal` (`AbortError`; pages done so far stay mapped).
   * Throws `TV_TENSOR_NOT_FOUND` for an unknown name, `TV_FILE_CHANGED` if the file was truncated.
   */
  async prefetch(names?: readonly string[], options: JobOptions = {}): Promise<PrefetchResult> {
    let list: string[] | undefined;
    if (names !== undefined) {
      if (!Array.isArray(names)) throw invalidArgument('names', 'names must be an array of tensor names');
      list = [...new Set(names.map((n) => this.info(n).name))];
    }
    optionsObject(options);
    let byteLength = 0;
    if (list === undefined) byteLength = this.#dataLength;
    else for (const n of list) byteLength += this.info(n).byteLength;
    const handle = this.#handle;
    const populated = await runJob('prefetchSafetensors', options, (control) =>
      handle.prefetch(list, control),
    );
    return { byteLength, populated };
  }

  /**
   * Close the file: its descriptor now, its mapping once no view handed out is left (views stay valid
   * until they are garbage-collected; they hold the mapped pages, not the descriptor). A `readRange()`
   * or `prefetch()` already started completes (it holds the file until it returns; the descriptor is
   * closed then); calls made after `close()` throw `TV_CLOSED`. Idempotent; never throws.
   */
  close(): void {
    const handle = this.#handle;
    callNative(() => handle.close());
    this.#regions.clear();
    this.#first = undefined;
  }

  /** `using f = await openSafetensors(...)`: closed at the end of the scope (views stay valid). */
  [disposeSymbol](): void {
    this.close();
  }
}

function checkDtype(info: TensorInfo, want: unknown): void {
  if (!isDtype(want)) throw invalidArgument('dtype', `not a safetensors dtype: ${describeValue(want)}`);
  if (info.dtype !== want) {
    throw new TensorVaultError(
      ErrorCode.TENSOR_DTYPE_MISMATCH,
      `tensor ${JSON.stringify(info.name)} is ${info.dtype}, not ${want}`,
      { name: info.name, expected: want, actual: info.dtype },
    );
  }
}

/**
 * Headers up to this many bytes (1 MiB, some 7,000 tensors) are opened on the calling thread by
 * {@link openSafetensors}; larger ones on the libuv pool.
 */
export const SYNC_HEADER_MAX = 1024 * 1024;

/**
 * Open and validate the safetensors file at `path` (a header up to {@link SYNC_HEADER_MAX} on the
 * calling thread, a larger one on the libuv pool). Nothing is exposed unless the
 * whole header passes every check (`TV_SAFETENSORS_INVALID` with `context.reason` otherwise).
 */
export async function openSafetensors(
  path: string,
  options: OpenSafetensorsOptions = {},
): Promise<SafetensorsFile> {
  if (typeof path !== 'string' || path.length === 0)
    throw invalidArgument('path', 'path must be a non-empty string');
  optionsObject(options);
  if (
    options.maxTensorBytes !== undefined &&
    (!Number.isSafeInteger(options.maxTensorBytes) || options.maxTensorBytes < 1)
  ) {
    throw invalidArgument('maxTensorBytes', 'maxTensorBytes must be a positive integer');
  }
  if (
    options.regionBytes !== undefined &&
    (!Number.isSafeInteger(options.regionBytes) || options.regionBytes < 1)
  ) {
    throw invalidArgument('regionBytes', 'regionBytes must be a positive integer');
  }
  checkPopulate(options.populate);
  optionalBoolean(options.copy, 'copy');
  const signal = options.signal;
  throwIfAborted(signal, 'The operation was aborted before it started');
  // Closed files whose views were collected are unmapped on a turn of the event loop (see
  // settleClosedMappings): a loop of opens that never yields gets one every ORPHAN_STEP of them.
  const settling = settleClosedMappings();
  if (settling !== undefined) await settling;
  let handle: NativeSafetensorsHandle;
  try {
    // A header of at most SYNC_HEADER_MAX bytes is read and validated on this thread (cheaper than
    // the libuv pool's round trip); a larger one (a million tensors) on the pool, so that it never
    // blocks the event loop.
    handle = native().openSafetensorsSmall(path, SYNC_HEADER_MAX) ?? (await native().openSafetensors(path));
  } catch (err) {
    throw fromNative(err, signal);
  }
  if (signal?.aborted) {
    handle.close();
    throw abortError(signal);
  }
  return new SafetensorsFile(path, handle, options);
}

/**
 * @internal A {@link SafetensorsFile} over a handle the addon opened itself (the checkpoint open's fast
 * path, `checkpointOpenLazy`), with the default options.
 */
export function wrapNativeFile(path: string, handle: NativeSafetensorsHandle): SafetensorsFile {
  return new SafetensorsFile(path, handle, {});
}
