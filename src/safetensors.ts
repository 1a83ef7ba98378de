/**
 * safetensors: {@link openSafetensors} maps a file private copy-on-write, validates its header on the
 * libuv pool and hands out zero-copy typed views per tensor; {@link saveSafetensors} streams tensors to
 * a temporary file in the reference layout (byte-identical to Python's `safetensors.save_file`) and
 * renames it into place. Sharded Hugging Face checkpoints (`*.safetensors.index.json`) are read with
 * {@link openShardedSafetensors} and written with {@link saveShardedSafetensors}. Format notes:
 * `docs/formats/safetensors.md`.
 */
import { constants as bufferConstants } from 'node:buffer';
import { statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import {
  callNative,
  ErrorCode,
  fromNative,
  invalidArgument,
  TensorVaultAbortError,
  TensorVaultError,
} from './errors';
import { type JobOptions, runJob } from './job';
import {
  type NativeJobControl,
  type NativeSafetensorsHandle,
  type NativeSafetensorsWriterHandle,
  type NativeTensorInfo,
  native,
} from './native';

/** Region buffers start and end on multiples of this (a multiple of every page size in use). */
const REGION_ALIGN = 64 * 1024;

/** The element types of the safetensors format, in the reference order. */
export const DTYPES = [
  'BOOL',
  'F4',
  'F6_E2M3',
  'F6_E3M2',
  'U8',
  'I8',
  'F8_E5M2',
  'F8_E4M3',
  'F8_E8M0',
  'I16',
  'U16',
  'F16',
  'BF16',
  'I32',
  'U32',
  'F32',
  'C64',
  'F64',
  'I64',
  'U64',
] as const;

/** A safetensors dtype name. */
export type Dtype = (typeof DTYPES)[number];

/** Bits per element of each dtype. */
const BITS: Readonly<Record<Dtype, number>> = {
  BOOL: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
};

/** The typed arrays tensors are viewed as. */
export type TensorArray =
  | Float64Array
  | Float32Array
  | BigInt64Array
  | BigUint64Array
  | Int32Array
  | Uint32Array
  | Int16Array
  | Uint16Array
  | Int8Array
  | Uint8Array;

type ViewCtor = {
  new (buffer: ArrayBuffer, byteOffset?: number, length?: number): TensorArray;
  readonly BYTES_PER_ELEMENT: number;
};

/**
 * The typed array each dtype is viewed as: `F16`/`BF16` as `Uint16Array` (raw bits; Node 20 has no
 * `Float16Array`), the 8-bit floats, `BOOL` and the packed 4/6-bit floats as `Uint8Array`, `C64` as
 * a `Float32Array` of interleaved (real, imaginary) pairs.
 */
const VIEW: Readonly<Record<Dtype, ViewCtor>> = {
  BOOL: Uint8Array,
  F4: Uint8Array,
  F6_E2M3: Uint8Array,
  F6_E3M2: Uint8Array,
  U8: Uint8Array,
  I8: Int8Array,
  F8_E5M2: Uint8Array,
  F8_E4M3: Uint8Array,
  F8_E8M0: Uint8Array,
  I16: Int16Array,
  U16: Uint16Array,
  F16: Uint16Array,
  BF16: Uint16Array,
  I32: Int32Array,
  U32: Uint32Array,
  F32: Float32Array,
  C64: Float32Array,
  F64: Float64Array,
  I64: BigInt64Array,
  U64: BigUint64Array,
};

/** Whether `v` is a safetensors dtype name. */
export function isDtype(v: unknown): v is Dtype {
  return typeof v === 'string' && (DTYPES as readonly string[]).includes(v);
}

/** Bytes needed by `shape` elements of `dtype` (throws on a shape that is not whole bytes). */
export function byteLengthOf(dtype: Dtype, shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  const bits = n * BITS[dtype];
  if (bits % 8 !== 0) {
    throw invalidArgument('shape', `${shape.length} ${dtype} elements do not fill whole bytes`, {
      dtype,
    });
  }
  return bits / 8;
}

/** A tensor's header entry. */
export interface TensorInfo {
  /** Name of the tensor. */
  name: string;
  /** Element type. */
  dtype: Dtype;
  /** Dimensions (empty for a scalar). */
  shape: readonly number[];
  /** Size in bytes. */
  byteLength: number;
  /** Absolute offset of the tensor's first byte in the file. */
  fileOffset: number;
}

/** A tensor read from a file: a typed view with its dtype and shape beside it. */
export interface Tensor extends TensorInfo {
  /** The elements, typed by dtype (see {@link DTYPES} for the mapping). */
  data: TensorArray;
  /** The same bytes as a `Uint8Array`. */
  bytes: Uint8Array;
  /**
   * True when the bytes were copied rather than viewed in place: the tensor's file offset is not a
   * multiple of its element size (a typed view needs alignment), or the runtime forbids external
   * ArrayBuffers. A copy is private; writes to it are not shared with other views.
   */
  copied: boolean;
}

/** Options of {@link openSafetensors}. */
export interface OpenSafetensorsOptions {
  /** Aborts the open. */
  signal?: AbortSignal;
  /**
   * When the runtime forbids external ArrayBuffers (some Electron builds), copy each tensor when it is
   * read (default true); false throws `TV_EXTERNAL_BUFFERS_UNAVAILABLE` instead. The whole file is
   * never copied.
   */
  copy?: boolean;
  /**
   * Largest tensor handed out as one ArrayBuffer (default: `buffer.constants.MAX_LENGTH`, 4 GiB on
   * Node 20). Larger tensors throw `TV_TENSOR_TOO_LARGE`; read them with `chunks()` or `readRange()`.
   */
  maxTensorBytes?: number;
  /**
   * Default of {@link TensorOptions.populate} for every `tensor()` and `chunks()` call on this file
   * (default false). Opening never populates anything: the open stays instant whatever the file size.
   */
  populate?: boolean;
  /**
   * Largest region buffer that tensor views are windows on (default and upper bound:
   * `buffer.constants.MAX_LENGTH`; rounded down to a multiple of 64 KiB). A file no larger is viewed
   * through one buffer; a larger one through overlapping regions. Only worth setting to exercise the
   * multi-region path on small files.
   */
  regionBytes?: number;
}

/** Options of {@link SafetensorsFile.tensor}. */
export interface TensorOptions {
  /**
   * Map the tensor's pages before returning the view (Linux ≥ 5.14, `madvise(MADV_POPULATE_READ)`),
   * so that reading it takes no page faults: worth it when the whole tensor is about to be read (a
   * first full read of a 4 GiB warm checkpoint measured 4–13 % faster, see
   * `docs/benchmarks-safetensors.md`). It runs on the calling thread and reads from disk whatever is
   * not in the page cache, so `tensor()` then takes as long as that read; prefer
   * {@link SafetensorsFile.prefetch}, which does the same on the libuv pool, for large or cold
   * tensors. The view stays zero-copy and copy-on-write. Default: the file's
   * {@link OpenSafetensorsOptions.populate} (false).
   */
  populate?: boolean;
}

/** Options of {@link SafetensorsFile.chunks}. */
export interface ChunkOptions {
  /** Bytes per chunk (default 64 MiB). */
  chunkBytes?: number;
  /** Map each chunk's pages before it is yielded (see {@link TensorOptions.populate}). */
  populate?: boolean;
}

/** Result of {@link SafetensorsFile.prefetch}. */
export interface PrefetchResult {
  /** Bytes of tensor data covered. */
  byteLength: number;
  /**
   * False when the system cannot populate mappings (Linux before 5.14, other systems): nothing was
   * done and views fault their pages in on first touch as usual.
   */
  populated: boolean;
}

function checkName(name: unknown): string {
  if (typeof name !== 'string')
    throw invalidArgument('name', `tensor name must be a string, got ${typeof name}`);
  return name;
}

function checkOptionsObject(options: unknown): void {
  if (typeof options !== 'object' || options === null) {
    throw invalidArgument('options', 'options must be an object');
  }
}

function checkPopulate(populate: unknown): boolean | undefined {
  if (populate !== undefined && typeof populate !== 'boolean') {
    throw invalidArgument('populate', `populate must be a boolean, got ${typeof populate}`);
  }
  return populate;
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
  /** The `__metadata__` map, or null when the file has none. */
  readonly metadata: Readonly<Record<string, string>> | null;
  /** Tensor names in file order. */
  readonly names: readonly string[];
  /** Absolute offset of the data area (8 + header length). */
  readonly dataStart: number;
  #handle: NativeSafetensorsHandle;
  #infos: Map<string, TensorInfo>;
  #copy: boolean;
  #max: number;
  #populate: boolean;
  /** Bytes mapped: the whole file. */
  #fileLength: number;
  /** Largest region buffer (a multiple of 64 KiB). */
  #regionBytes: number;
  /** Region buffers made so far, by `start:length` (see {@link SafetensorsFile.#window}). */
  #regions = new Map<string, ArrayBuffer>();
  /** Set once the runtime refused an external buffer: every view is then a copy. */
  #noExternal = false;

  /** @internal Use {@link openSafetensors}. */
  constructor(path: string, handle: NativeSafetensorsHandle, options: OpenSafetensorsOptions) {
    this.path = path;
    this.#handle = handle;
    this.#copy = options.copy !== false;
    this.#max = options.maxTensorBytes ?? bufferConstants.MAX_LENGTH;
    this.#populate = options.populate ?? false;
    const infos = JSON.parse(callNative(() => handle.tensorsJson())) as NativeTensorInfo[];
    this.#infos = new Map(
      infos.map((t: NativeTensorInfo) => [
        t.name,
        Object.freeze({
          name: t.name,
          dtype: t.dtype as Dtype,
          shape: Object.freeze([...t.shape]),
          byteLength: t.byteLength,
          fileOffset: t.fileOffset,
        }),
      ]),
    );
    this.names = Object.freeze(infos.map((t) => t.name));
    const meta = callNative(() => handle.metadata());
    this.metadata =
      meta === null || meta === undefined
        ? null
        : Object.freeze(Object.fromEntries(meta.map((e) => [e.key, e.value])));
    this.dataStart = callNative(() => handle.dataStart());
    // The header validation guarantees contiguous data with no trailing bytes.
    this.#fileLength = infos.reduce((n, t) => Math.max(n, t.fileOffset + t.byteLength), this.dataStart);
    const cap = Math.min(options.regionBytes ?? bufferConstants.MAX_LENGTH, bufferConstants.MAX_LENGTH);
    this.#regionBytes = Math.max(REGION_ALIGN, cap - (cap % REGION_ALIGN));
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
    let buffer = this.#regions.get(key);
    if (buffer === undefined) {
      const handle = this.#handle;
      try {
        buffer = callNative(() => handle.regionBuffer(start, length));
      } catch (err) {
        if (err instanceof TensorVaultError && err.code === ErrorCode.EXTERNAL_BUFFERS_UNAVAILABLE) {
          this.#noExternal = true;
          return null;
        }
        throw err;
      }
      this.#regions.set(key, buffer);
    }
    return { buffer, byteOffset: abs - start };
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

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#handle.closed;
  }

  /** Whether the file holds a tensor called `name`. */
  has(name: string): boolean {
    return this.#infos.has(name);
  }

  /** Dtype, shape, byte length and file offset of tensor `name`. */
  info(name: string): TensorInfo {
    const info = this.#infos.get(checkName(name));
    if (info === undefined) {
      throw new TensorVaultError(ErrorCode.TENSOR_NOT_FOUND, `no tensor named ${JSON.stringify(name)}`, {
        name,
        path: this.path,
      });
    }
    return info;
  }

  /** Every tensor's header entry, in file order. */
  infos(): TensorInfo[] {
    return [...this.#infos.values()];
  }

  /**
   * Tensor `name` as a typed view over the mapped file (zero-copy unless {@link Tensor.copied}).
   * Throws `TV_TENSOR_TOO_LARGE` for a tensor larger than one ArrayBuffer may be (use `chunks()`),
   * `TV_FILE_CHANGED` if the file was truncated since it was opened, `TV_CLOSED` after `close()`.
   * With `{ populate: true }` the tensor's pages are mapped before the view is returned (see
   * {@link TensorOptions.populate}).
   */
  tensor(name: string, options: TensorOptions = {}): Tensor {
    const info = this.info(name);
    checkOptionsObject(options);
    const populate = checkPopulate(options.populate) ?? this.#populate;
    const w = this.#bytes(name, info, 0, info.byteLength, populate);
    const Ctor = VIEW[info.dtype];
    let { buffer, byteOffset } = w;
    let copied = w.copied;
    if (!copied && info.fileOffset % Ctor.BYTES_PER_ELEMENT !== 0) {
      // A typed view needs its offset aligned to the element size: copy this one tensor.
      buffer = buffer.slice(byteOffset, byteOffset + info.byteLength);
      byteOffset = 0;
      copied = true;
    }
    return {
      ...info,
      data: new Ctor(buffer, byteOffset, info.byteLength / Ctor.BYTES_PER_ELEMENT),
      bytes: new Uint8Array(buffer, byteOffset, info.byteLength),
      copied,
    };
  }

  /**
   * Copy `length` bytes of tensor `name` starting `offset` bytes into it, on the libuv pool. Works for
   * tensors of any size.
   */
  async readRange(name: string, offset: number, length: number): Promise<Buffer> {
    const info = this.info(name);
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length < 0 ||
      offset + length > info.byteLength
    ) {
      throw invalidArgument(
        'range',
        `range [${offset}, ${offset}+${length}) is outside tensor ${JSON.stringify(name)} (${info.byteLength} bytes)`,
        {
          name,
          offset,
          length,
          byteLength: info.byteLength,
        },
      );
    }
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
    checkOptionsObject(options);
    const populate = checkPopulate(options.populate) ?? this.#populate;
    const step = options.chunkBytes ?? 64 * 1024 * 1024;
    if (!Number.isSafeInteger(step) || step < 1 || step > this.#max) {
      throw invalidArgument('chunkBytes', `chunkBytes must be an integer from 1 to ${this.#max}`, {
        actual: step,
      });
    }
    for (let at = 0; at < info.byteLength; at += step) {
      const len = Math.min(step, info.byteLength - at);
      const w = this.#bytes(name, info, at, len, populate);
      yield new Uint8Array(w.buffer, w.byteOffset, len);
    }
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
    checkOptionsObject(options);
    let byteLength = 0;
    for (const n of list ?? this.names) byteLength += (this.#infos.get(n) as TensorInfo).byteLength;
    const handle = this.#handle;
    const populated = await runJob('prefetchSafetensors', options, (control) =>
      handle.prefetch(list, control),
    );
    return { byteLength, populated };
  }

  /** Release the file. Views already handed out stay valid until they are garbage-collected. */
  close(): void {
    this.#handle.close();
    this.#regions.clear();
  }
}

/**
 * Open and validate the safetensors file at `path` (on the libuv pool). Nothing is exposed unless the
 * whole header passes every check (`TV_SAFETENSORS_INVALID` with `context.reason` otherwise).
 */
export async function openSafetensors(
  path: string,
  options: OpenSafetensorsOptions = {},
): Promise<SafetensorsFile> {
  if (typeof path !== 'string' || path.length === 0)
    throw invalidArgument('path', 'path must be a non-empty string');
  checkOptionsObject(options);
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
  const signal = options.signal;
  if (signal?.aborted)
    throw new TensorVaultAbortError('The operation was aborted before it started', signal.reason);
  let handle: NativeSafetensorsHandle;
  try {
    handle = await native().openSafetensors(path);
  } catch (err) {
    throw fromNative(err, signal);
  }
  if (signal?.aborted) {
    handle.close();
    throw new TensorVaultAbortError('The operation was aborted', signal.reason);
  }
  return new SafetensorsFile(path, handle, options);
}

/** Bytes accepted as a tensor's data. */
export type TensorSource =
  | ArrayBufferView
  | ArrayBuffer
  | AsyncIterable<ArrayBufferView | ArrayBuffer>
  | Iterable<ArrayBufferView | ArrayBuffer>;

/** A tensor to write. `data` may be an async source (chunks of any size) for data that does not fit in memory. */
export interface TensorInput {
  /** Element type. */
  dtype: Dtype;
  /** Dimensions (empty for a scalar). */
  shape: readonly number[];
  /** The little-endian, C-order bytes: a typed array, Buffer, ArrayBuffer, or (async) iterable of chunks. */
  data: TensorSource;
}

/**
 * The tensors to write: a record or Map of name → {@link TensorInput} (or a bare typed array, written
 * as a 1-D tensor of its element type), or an iterable of `[name, input]` pairs.
 */
export type TensorsToSave =
  | Readonly<Record<string, TensorInput | TensorArray>>
  | ReadonlyMap<string, TensorInput | TensorArray>
  | Iterable<readonly [string, TensorInput | TensorArray]>;

/** Options of {@link saveSafetensors}. */
export interface SaveSafetensorsOptions extends JobOptions {
  /** The `__metadata__` string map (omitted from the header when undefined or null). */
  metadata?: Readonly<Record<string, string>> | null;
}

/** Result of {@link saveSafetensors}. */
export interface SaveSafetensorsResult {
  /** Where the file was written. */
  path: string;
  /** Size of the file in bytes. */
  byteLength: number;
  /** Tensor names in file order. */
  names: string[];
}

function dtypeOfArray(a: ArrayBufferView): Dtype | undefined {
  if (a instanceof Float64Array) return 'F64';
  if (a instanceof Float32Array) return 'F32';
  if (a instanceof BigInt64Array) return 'I64';
  if (a instanceof BigUint64Array) return 'U64';
  if (a instanceof Int32Array) return 'I32';
  if (a instanceof Uint32Array) return 'U32';
  if (a instanceof Int16Array) return 'I16';
  if (a instanceof Uint16Array) return 'U16';
  if (a instanceof Int8Array) return 'I8';
  if (a instanceof Uint8Array) return 'U8';
  return undefined;
}

interface Prepared {
  name: string;
  dtype: Dtype;
  shape: number[];
  byteLength: number;
  data: TensorSource;
}

function entriesOf(tensors: TensorsToSave): [string, TensorInput | TensorArray][] {
  if (tensors instanceof Map) return [...tensors.entries()];
  if (typeof tensors === 'object' && tensors !== null && Symbol.iterator in tensors) {
    return [...(tensors as Iterable<readonly [string, TensorInput | TensorArray]>)].map((e) => {
      if (!Array.isArray(e) || e.length !== 2)
        throw invalidArgument('tensors', 'an iterable of tensors must yield [name, tensor] pairs');
      return [e[0], e[1]];
    });
  }
  if (typeof tensors !== 'object' || tensors === null) {
    throw invalidArgument('tensors', 'tensors must be an object, a Map or an iterable of [name, tensor]');
  }
  return Object.entries(tensors as Record<string, TensorInput | TensorArray>);
}

function prepare(tensors: TensorsToSave): Prepared[] {
  const out: Prepared[] = [];
  for (const [name, value] of entriesOf(tensors)) {
    if (typeof name !== 'string') throw invalidArgument('tensors', 'tensor names must be strings');
    if (ArrayBuffer.isView(value)) {
      const dtype = dtypeOfArray(value);
      if (dtype === undefined) {
        throw invalidArgument(
          'tensors',
          `tensor ${JSON.stringify(name)}: pass { dtype, shape, data } for a DataView`,
        );
      }
      const bpe = BITS[dtype] / 8;
      out.push({ name, dtype, shape: [value.byteLength / bpe], byteLength: value.byteLength, data: value });
      continue;
    }
    if (typeof value !== 'object' || value === null) {
      throw invalidArgument(
        'tensors',
        `tensor ${JSON.stringify(name)} must be { dtype, shape, data } or a typed array`,
      );
    }
    const { dtype, shape, data } = value as TensorInput;
    if (!isDtype(dtype)) {
      throw invalidArgument('dtype', `tensor ${JSON.stringify(name)}: unknown dtype ${String(dtype)}`, {
        name,
        actual: String(dtype),
      });
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw invalidArgument(
        'shape',
        `tensor ${JSON.stringify(name)}: shape must be an array of non-negative integers`,
        {
          name,
        },
      );
    }
    const byteLength = byteLengthOf(dtype, shape);
    if (!Number.isSafeInteger(byteLength)) {
      throw invalidArgument('shape', `tensor ${JSON.stringify(name)}: shape is too large`, { name });
    }
    if (data === undefined || data === null) {
      throw invalidArgument('data', `tensor ${JSON.stringify(name)}: data is missing`, { name });
    }
    if (ArrayBuffer.isView(data) || data instanceof ArrayBuffer) {
      if (data.byteLength !== byteLength) {
        throw new TensorVaultError(
          ErrorCode.TENSOR_SIZE_MISMATCH,
          `tensor ${JSON.stringify(name)}: ${dtype} ${JSON.stringify(shape)} needs ${byteLength} bytes, data has ${data.byteLength}`,
          { name, expected: byteLength, actual: data.byteLength },
        );
      }
    } else if (!(Symbol.asyncIterator in data) && !(Symbol.iterator in data)) {
      throw invalidArgument(
        'data',
        `tensor ${JSON.stringify(name)}: data must be bytes or an (async) iterable of chunks`,
        {
          name,
        },
      );
    }
    out.push({ name, dtype, shape: [...shape], byteLength, data });
  }
  return out;
}

function asBytes(chunk: unknown, name: string): Uint8Array {
  if (ArrayBuffer.isView(chunk)) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk);
  throw invalidArgument(
    'data',
    `tensor ${JSON.stringify(name)}: chunks must be typed arrays, Buffers or ArrayBuffers`,
    {
      name,
    },
  );
}

/** Chunks above this size are written on the libuv pool; smaller ones on the JS thread. */
const ASYNC_WRITE_MIN = 1024 * 1024;
/** Large views are handed to the pool in pieces of this size (so cancellation is prompt). */
const WRITE_PIECE = 64 * 1024 * 1024;

async function writeTensor(
  writer: NativeSafetensorsWriterHandle,
  control: NativeJobControl,
  t: Prepared,
): Promise<void> {
  const put = async (bytes: Uint8Array): Promise<void> => {
    for (let at = 0; at < bytes.byteLength; at += WRITE_PIECE) {
      if (control.cancelled) throw new TensorVaultAbortError();
      const piece = bytes.subarray(at, Math.min(bytes.byteLength, at + WRITE_PIECE));
      if (piece.byteLength < ASYNC_WRITE_MIN) writer.writeSync(piece, control);
      else await writer.write(piece, control);
    }
  };
  const src = t.data;
  if (ArrayBuffer.isView(src) || src instanceof ArrayBuffer) {
    await put(asBytes(src, t.name));
    return;
  }
  let got = 0;
  const iterable = src as AsyncIterable<unknown> | Iterable<unknown>;
  for await (const chunk of iterable) {
    const bytes = asBytes(chunk, t.name);
    if (got + bytes.byteLength > t.byteLength) {
      throw new TensorVaultError(
        ErrorCode.TENSOR_SIZE_MISMATCH,
        `tensor ${JSON.stringify(t.name)}: source yielded more than the ${t.byteLength} bytes its dtype and shape need`,
        { name: t.name, expected: t.byteLength, actual: got + bytes.byteLength },
      );
    }
    got += bytes.byteLength;
    await put(bytes);
  }
  if (got !== t.byteLength) {
    throw new TensorVaultError(
      ErrorCode.TENSOR_SIZE_MISMATCH,
      `tensor ${JSON.stringify(t.name)}: source yielded ${got} bytes, its dtype and shape need ${t.byteLength}`,
      { name: t.name, expected: t.byteLength, actual: got },
    );
  }
}

function checkMetadata(metadata: unknown): { key: string; value: string }[] | null {
  if (metadata === undefined || metadata === null) return null;
  if (typeof metadata !== 'object' || Array.isArray(metadata)) {
    throw invalidArgument('metadata', 'metadata must be an object mapping strings to strings');
  }
  return Object.entries(metadata as Record<string, unknown>).map(([key, value]) => {
    if (typeof value !== 'string') {
      throw invalidArgument('metadata', `metadata value of ${JSON.stringify(key)} must be a string`, { key });
    }
    return { key, value };
  });
}

/**
 * Write `tensors` to `path` as safetensors, streaming with constant memory, in the reference layout
 * (byte-identical to Python's `safetensors.save_file` for the same tensors and metadata). The file
 * appears atomically: a temporary file in the same folder is fsynced and renamed over `path`, then the
 * folder is fsynced; on any failure or abort, `path` is left as it was. A reader that has the old file
 * open keeps reading the old bytes.
 */
export async function saveSafetensors(
  path: string,
  tensors: TensorsToSave,
  options: SaveSafetensorsOptions = {},
): Promise<SaveSafetensorsResult> {
  if (typeof path !== 'string' || path.length === 0)
    throw invalidArgument('path', 'path must be a non-empty string');
  checkOptionsObject(options);
  const prepared = prepare(tensors);
  const metadata = checkMetadata(options.metadata);
  return runJob('saveSafetensors', options, async (control) => {
    const writer = native().createSafetensorsWriter(
      path,
      prepared.map((t) => t.name),
      prepared.map((t) => t.dtype),
      prepared.map((t) => t.shape),
      metadata,
    );
    try {
      const byName = new Map(prepared.map((t) => [t.name, t]));
      const order = writer.order();
      for (const name of order) {
        const t = byName.get(name);
        if (t !== undefined) await writeTensor(writer, control, t);
      }
      await writer.finish();
      return { path, byteLength: statSync(path).size, names: order };
    } catch (err) {
      writer.abort();
      throw err;
    }
  });
}

/** The parsed `*.safetensors.index.json` of a sharded checkpoint. */
export interface ShardIndex {
  /** The index's `metadata` object (typically `{ total_size }`). */
  metadata: Readonly<Record<string, unknown>>;
  /** Tensor name → shard file name (relative to the index's folder). */
  weightMap: Readonly<Record<string, string>>;
}

function invalidIndex(
  path: string,
  message: string,
  context: Record<string, string | number> = {},
): TensorVaultError {
  return new TensorVaultError(ErrorCode.SAFETENSORS_INVALID, `${path}: ${message}`, {
    path,
    reason: 'invalid_index',
    ...context,
  });
}

/**
 * A sharded checkpoint opened through its index: one logical set of tensors. Shards are opened on
 * first use (header read and validated then); tensor data is only touched when viewed.
 */
export class ShardedSafetensors {
  /** The index file's path. */
  readonly indexPath: string;
  /** The index's `metadata` object. */
  readonly metadata: Readonly<Record<string, unknown>>;
  /** Tensor names, sorted. */
  readonly names: readonly string[];
  /** Shard file names, in order of first appearance. */
  readonly shards: readonly string[];
  #dir: string;
  #weightMap: Readonly<Record<string, string>>;
  #open = new Map<string, Promise<SafetensorsFile>>();
  #options: OpenSafetensorsOptions;
  #closed = false;

  /** @internal Use {@link openShardedSafetensors}. */
  constructor(indexPath: string, index: ShardIndex, options: OpenSafetensorsOptions) {
    this.indexPath = indexPath;
    this.metadata = index.metadata;
    this.#weightMap = index.weightMap;
    this.#dir = dirname(indexPath);
    this.#options = options;
    this.names = Object.freeze(Object.keys(index.weightMap).sort());
    this.shards = Object.freeze([...new Set(Object.values(index.weightMap))]);
  }

  /** The shard file holding tensor `name`. */
  shardOf(name: string): string {
    const shard = Object.hasOwn(this.#weightMap, name) ? this.#weightMap[name] : undefined;
    if (shard === undefined) {
      throw new TensorVaultError(ErrorCode.TENSOR_NOT_FOUND, `no tensor named ${JSON.stringify(name)}`, {
        name,
        path: this.indexPath,
      });
    }
    return shard;
  }

  /** The opened shard file holding `name` (opened and validated on first use). */
  async file(name: string): Promise<SafetensorsFile> {
    if (this.#closed) throw new TensorVaultError(ErrorCode.CLOSED, 'the sharded checkpoint is closed');
    const shard = this.shardOf(name);
    let p = this.#open.get(shard);
    if (p === undefined) {
      p = openSafetensors(join(this.#dir, shard), this.#options);
      this.#open.set(shard, p);
      p.catch(() => this.#open.delete(shard));
    }
    const f = await p;
    if (!f.has(name)) {
      throw invalidIndex(
        this.indexPath,
        `the index maps ${JSON.stringify(name)} to ${shard}, which does not hold it`,
        {
          name,
          shard,
        },
      );
    }
    return f;
  }

  /** Dtype, shape and size of tensor `name`. */
  async info(name: string): Promise<TensorInfo> {
    return (await this.file(name)).info(name);
  }

  /** Tensor `name` as a typed view (see {@link SafetensorsFile.tensor}). */
  async tensor(name: string, options: TensorOptions = {}): Promise<Tensor> {
    return (await this.file(name)).tensor(name, options);
  }

  /** Close every opened shard (views stay valid until collected). */
  async close(): Promise<void> {
    this.#closed = true;
    const files = await Promise.allSettled(this.#open.values());
    for (const f of files) if (f.status === 'fulfilled') f.value.close();
    this.#open.clear();
  }
}

/** Parse and check a shard index's JSON text. */
export function parseShardIndex(text: string, path = 'index'): ShardIndex {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw invalidIndex(path, `not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw invalidIndex(path, 'not a JSON object');
  const { metadata, weight_map: weightMap } = json as { metadata?: unknown; weight_map?: unknown };
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw invalidIndex(path, 'weight_map is missing or not an object');
  }
  for (const [name, file] of Object.entries(weightMap)) {
    if (
      typeof file !== 'string' ||
      file.length === 0 ||
      basename(file) !== file ||
      file === '.' ||
      file === '..'
    ) {
      throw invalidIndex(
        path,
        `weight_map[${JSON.stringify(name)}] must be a file name in the index's folder`,
        { name },
      );
    }
  }
  if (
    metadata !== undefined &&
    (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata))
  ) {
    throw invalidIndex(path, 'metadata is not an object');
  }
  return {
    metadata: Object.freeze({ ...((metadata as Record<string, unknown> | undefined) ?? {}) }),
    weightMap: Object.freeze({ ...(weightMap as Record<string, string>) }),
  };
}

/**
 * Open a Hugging Face sharded checkpoint through its `*.safetensors.index.json`. Shard files must sit
 * in the index's folder (names with path separators are refused). Shards are opened lazily.
 */
export async function openShardedSafetensors(
  indexPath: string,
  options: OpenSafetensorsOptions = {},
): Promise<ShardedSafetensors> {
  if (typeof indexPath !== 'string' || indexPath.length === 0) {
    throw invalidArgument('indexPath', 'indexPath must be a non-empty string');
  }
  checkOptionsObject(options);
  let text: string;
  try {
    text = await readFile(indexPath, { encoding: 'utf8', signal: options.signal });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.name === 'AbortError')
      throw new TensorVaultAbortError('The operation was aborted', options.signal?.reason);
    const code =
      e.code === 'ENOENT'
        ? ErrorCode.NOT_FOUND
        : e.code === 'EACCES'
          ? ErrorCode.PERMISSION_DENIED
          : ErrorCode.IO;
    throw new TensorVaultError(
      code,
      `cannot read ${indexPath}: ${e.message}`,
      { path: indexPath },
      { cause: err },
    );
  }
  return new ShardedSafetensors(resolve(indexPath), parseShardIndex(text, indexPath), options);
}

/** Options of {@link saveShardedSafetensors}. */
export interface SaveShardedOptions extends SaveSafetensorsOptions {
  /** Largest shard in tensor bytes (default 5 GB, as Hugging Face); a larger tensor gets a shard of its own. */
  maxShardBytes?: number;
  /** File name prefix: `PREFIX-00001-of-00003.safetensors`, `PREFIX.safetensors.index.json` (default `model`). */
  prefix?: string;
}

/** Result of {@link saveShardedSafetensors}. */
export interface SaveShardedResult {
  /** Path of the index file. */
  indexPath: string;
  /** Shard file names in order. */
  shards: string[];
  /** Sum of all tensors' byte lengths (`metadata.total_size` in the index). */
  totalSize: number;
}

/**
 * Write `tensors` as a Hugging Face sharded checkpoint in folder `dir`: shards of at most
 * `maxShardBytes` tensor bytes (tensors in the given order, as `huggingface_hub` plans them), each
 * written atomically, then `PREFIX.safetensors.index.json` (atomically, last).
 */
export async function saveShardedSafetensors(
  dir: string,
  tensors: TensorsToSave,
  options: SaveShardedOptions = {},
): Promise<SaveShardedResult> {
  if (typeof dir !== 'string' || dir.length === 0)
    throw invalidArgument('dir', 'dir must be a non-empty string');
  checkOptionsObject(options);
  const max = options.maxShardBytes ?? 5_000_000_000;
  if (!Number.isSafeInteger(max) || max < 1)
    throw invalidArgument('maxShardBytes', 'maxShardBytes must be a positive integer');
  const prefix = options.prefix ?? 'model';
  if (typeof prefix !== 'string' || prefix.length === 0 || basename(prefix) !== prefix) {
    throw invalidArgument('prefix', 'prefix must be a plain file name');
  }
  const entries = entriesOf(tensors);
  const prepared = prepare(entries);
  const groups: [string, TensorInput | TensorArray][][] = [];
  let current: [string, TensorInput | TensorArray][] = [];
  let size = 0;
  for (const [i, t] of prepared.entries()) {
    if (current.length > 0 && size + t.byteLength > max) {
      groups.push(current);
      current = [];
      size = 0;
    }
    current.push(entries[i] as [string, TensorInput | TensorArray]);
    size += t.byteLength;
  }
  if (current.length > 0 || groups.length === 0) groups.push(current);
  const width = 5;
  const n = String(groups.length).padStart(width, '0');
  const shards = groups.map((_, i) => `${prefix}-${String(i + 1).padStart(width, '0')}-of-${n}.safetensors`);
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  for (const [i, group] of groups.entries()) {
    const shard = shards[i] as string;
    await saveSafetensors(join(dir, shard), group, {
      ...options,
      metadata: options.metadata ?? { format: 'pt' },
    });
    for (const [name] of group) weightMap[name] = shard;
  }
  for (const t of prepared) totalSize += t.byteLength;
  const sortedMap = Object.fromEntries(
    Object.keys(weightMap)
      .sort()
      .map((k) => [k, weightMap[k]]),
  );
  const index = { metadata: { total_size: totalSize }, weight_map: sortedMap };
  const indexPath = join(dir, `${prefix}.safetensors.index.json`);
  try {
    await native().writeFileAtomic(indexPath, Buffer.from(`${JSON.stringify(index, null, 2)}\n`));
  } catch (err) {
    throw fromNative(err);
  }
  return { indexPath, shards, totalSize };
}
