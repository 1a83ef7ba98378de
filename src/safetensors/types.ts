/** The reader's public types: tensors, their header entries, and the options of opening and viewing. */
import type { ArrayOfDtype, Dtype, TensorArray } from './dtype';
import type { openSafetensors, SafetensorsFile } from './reader';

/** A tensor's header entry. */
export interface TensorInfo {
  /** Name of the tensor. */
  name: string;
  /** Element type. */
  dtype: Dtype;
  /**
   * Dimensions (empty for a scalar). A dimension above `Number.MAX_SAFE_INTEGER` (2^53 - 1), which only a
   * zero-size tensor can have (`[9007199254740993, 0]`), cannot be a number exactly: it is rounded here,
   * and {@link TensorInfo.exactShape} is present with the exact values.
   */
  shape: readonly number[];
  /**
   * Every dimension as exact decimal text (`BigInt(d)` gives it as a bigint), present only when one is
   * above `Number.MAX_SAFE_INTEGER`; absent otherwise (`shape` is then exact). JSON-safe.
   */
  exactShape?: readonly string[];
  /** Size in bytes. */
  byteLength: number;
  /** Absolute offset of the tensor's first byte in the file. */
  fileOffset: number;
}

/** A tensor read from a file: a typed view with its dtype and shape beside it. */
export interface Tensor extends TensorInfo {
  /**
   * The elements, typed by dtype (see {@link DTYPES} for the mapping). A zero-copy view is a window on
   * a region buffer (`data.buffer`) that covers the whole mapped file, or a large part of it: to send
   * the tensor to another thread, post `data.slice()` (its own bytes), not `data`, whose structured
   * clone copies the whole region.
   */
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

/** A tensor whose dtype is known at compile time: `data` is that dtype's typed array. */
export interface TypedTensor<D extends Dtype> extends Tensor {
  dtype: D;
  data: ArrayOfDtype[D];
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
