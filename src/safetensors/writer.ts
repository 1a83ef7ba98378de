import { statSync } from 'node:fs';
import { abortError, ErrorCode, invalidArgument, TensorVaultError } from '../errors';
import { folderError } from '../io/fs';
import { abortable, type JobOptions, runJob } from '../job';
import { type NativeJobControl, type NativeSafetensorsWriterHandle, native } from '../native';
import { bytesOf, checkWellFormed, describeValue, optionsObject } from '../validate';
import { BITS, byteLengthOf, type Dtype, isDtype, type TensorArray } from './dtype';

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
  | Readonly<Record<string, TensorInput | TensorArray | Float16ArrayLike>>
  | ReadonlyMap<string, TensorInput | TensorArray | Float16ArrayLike>
  | Iterable<readonly [string, TensorInput | TensorArray | Float16ArrayLike]>;

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

/**
 * `Float16Array` where the runtime has it (Node 24 and later; not Node 20 or 22), typed structurally
 * so that the declarations need no `lib` that names it.
 */
export interface Float16ArrayLike extends ArrayBufferView {
  readonly [Symbol.toStringTag]: 'Float16Array';
  readonly BYTES_PER_ELEMENT: 2;
}

const Float16ArrayCtor = (globalThis as { Float16Array?: abstract new (...args: never[]) => object })
  .Float16Array;

function dtypeOfArray(a: ArrayBufferView): Dtype | undefined {
  if (Float16ArrayCtor !== undefined && a instanceof Float16ArrayCtor) return 'F16';
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

/** The class name of a view (`DataView`, `Uint8ClampedArray`, …) for messages. */
function kindOfView(v: ArrayBufferView): string {
  const tag = Object.prototype.toString.call(v).slice(8, -1);
  return tag === 'Object' ? 'view' : tag;
}

/** @internal A tensor to save, checked and normalised. */
export interface Prepared {
  name: string;
  dtype: Dtype;
  shape: number[];
  byteLength: number;
  data: TensorSource;
}

/** @internal The `[name, tensor]` pairs of a tensors argument (shared with the sharded writer). */
export function entriesOf(tensors: TensorsToSave): [string, TensorInput | TensorArray][] {
  if (ArrayBuffer.isView(tensors) || typeof tensors === 'string') {
    throw invalidArgument(
      'tensors',
      `tensors must be an object, a Map or an iterable of [name, tensor], got ${describeValue(tensors)}`,
    );
  }
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

/** @internal Checks and normalises the tensors to write (shared with the sharded writer). */
export function prepare(tensors: TensorsToSave): Prepared[] {
  const out: Prepared[] = [];
  const seen = new Set<string>();
  for (const [name, value] of entriesOf(tensors)) {
    if (typeof name !== 'string') throw invalidArgument('tensors', 'tensor names must be strings');
    // Checked here, before the addon: it would turn a lone surrogate into U+FFFD (a different name, and
    // two of them into a duplicate), and report a duplicate as a damaged header (TV_SAFETENSORS_INVALID).
    checkWellFormed('tensors', name, 'tensor name');
    if (seen.has(name)) {
      throw invalidArgument('tensors', `tensor ${JSON.stringify(name)} is given twice`, { name });
    }
    seen.add(name);
    if (ArrayBuffer.isView(value)) {
      bytesOf(value, `tensors.${name}`);
      const dtype = dtypeOfArray(value);
      if (dtype === undefined) {
        throw invalidArgument(
          'tensors',
          `tensor ${JSON.stringify(name)}: a ${kindOfView(value)} has no dtype of its own; pass { dtype, shape, data }`,
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
      throw invalidArgument(
        'dtype',
        `tensor ${JSON.stringify(name)}: unknown dtype ${describeValue(dtype)}`,
        {
          name,
          actual: describeValue(dtype),
        },
      );
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
    if (overflowsU64(shape, BITS[dtype])) {
      // A zero-size tensor whose other dimensions multiply past 2^64: no safetensors reader (this one,
      // Rust's or Python's) can compute its size, so the header would be refused.
      throw invalidArgument(
        'shape',
        `tensor ${JSON.stringify(name)}: shape [${shape.join(', ')}] × ${BITS[dtype]} bits overflows 64 bits`,
        { name },
      );
    }
    if (data === undefined || data === null) {
      throw invalidArgument('data', `tensor ${JSON.stringify(name)}: data is missing`, { name });
    }
    if (ArrayBuffer.isView(data) || data instanceof ArrayBuffer) {
      bytesOf(data, 'data');
      if (data.byteLength !== byteLength) {
        throw new TensorVaultError(
          ErrorCode.TENSOR_SIZE_MISMATCH,
          `tensor ${JSON.stringify(name)}: ${dtype} ${JSON.stringify(shape)} needs ${byteLength} bytes, data has ${data.byteLength}`,
          { name, expected: byteLength, actual: data.byteLength },
        );
      }
    } else if (typeof data !== 'object' || (!(Symbol.asyncIterator in data) && !(Symbol.iterator in data))) {
      throw invalidArgument(
        'data',
        `tensor ${JSON.stringify(name)}: data must be bytes or an (async) iterable of chunks, got ${describeValue(data)}`,
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
  if (ArrayBuffer.isView(chunk) || chunk instanceof ArrayBuffer) return bytesOf(chunk, 'data');
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
  signal: AbortSignal | undefined,
): Promise<void> {
  const put = async (bytes: Uint8Array): Promise<void> => {
    for (let at = 0; at < bytes.byteLength; at += WRITE_PIECE) {
      if (control.cancelled) throw abortError(signal);
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
  // Iterated by hand so that an abort ends the wait for a source that has stalled (a `for await`
  // would wait on it forever); the source is then told to stop (`return()`).
  const iterable = src as AsyncIterable<unknown> | Iterable<unknown>;
  const it =
    Symbol.asyncIterator in iterable
      ? (iterable as AsyncIterable<unknown>)[Symbol.asyncIterator]()
      : (iterable as Iterable<unknown>)[Symbol.iterator]();
  let finished = false;
  try {
    for (;;) {
      let r: IteratorResult<unknown>;
      try {
        r = await abortable(
          Promise.resolve().then(() => it.next()),
          signal,
        );
      } catch (err) {
        if (err instanceof TensorVaultError) throw err;
        // The caller's source failed: its error is passed on as the cause, not reported as our bug.
        throw new TensorVaultError(
          ErrorCode.SOURCE_FAILED,
          `tensor ${JSON.stringify(t.name)}: its data source threw: ${err instanceof Error ? err.message : describeValue(err)}`,
          { name: t.name },
          { cause: err },
        );
      }
      if (typeof r !== 'object' || r === null) {
        throw invalidArgument(
          'data',
          `tensor ${JSON.stringify(t.name)}: the source's next() returned ${describeValue(r)}`,
          {
            name: t.name,
          },
        );
      }
      if (r.done === true) {
        finished = true;
        break;
      }
      got = await writeChunk(r.value, got);
    }
  } finally {
    if (!finished) Promise.resolve(it.return?.()).catch(() => {});
  }
  if (got !== t.byteLength) {
    throw new TensorVaultError(
      ErrorCode.TENSOR_SIZE_MISMATCH,
      `tensor ${JSON.stringify(t.name)}: source yielded ${got} bytes, its dtype and shape need ${t.byteLength}`,
      { name: t.name, expected: t.byteLength, actual: got },
    );
  }

  async function writeChunk(chunk: unknown, got: number): Promise<number> {
    const bytes = asBytes(chunk, t.name);
    if (got + bytes.byteLength > t.byteLength) {
      throw new TensorVaultError(
        ErrorCode.TENSOR_SIZE_MISMATCH,
        `tensor ${JSON.stringify(t.name)}: source yielded more than the ${t.byteLength} bytes its dtype and shape need`,
        { name: t.name, expected: t.byteLength, actual: got + bytes.byteLength },
      );
    }
    await put(bytes);
    return got + bytes.byteLength;
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
    checkWellFormed('metadata', key, 'metadata key');
    checkWellFormed('metadata', value, `metadata value of ${JSON.stringify(key)}`);
    return { key, value };
  });
}

/**
 * Whether the core's size rule overflows for `shape` of `bits`-bit elements: the product of the
 * dimensions, in order, then times the bits, each step within an unsigned 64-bit integer.
 */
function overflowsU64(shape: readonly number[], bits: number): boolean {
  const max = 2n ** 64n - 1n;
  let n = 1n;
  for (const d of shape) {
    n *= BigInt(d);
    if (n > max) return true;
  }
  return n * BigInt(bits) > max;
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
  optionsObject(options);
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
        if (t !== undefined) await writeTensor(writer, control, t, options.signal);
      }
      await writer.finish();
      return { path, byteLength: statSync(path).size, names: order };
    } catch (err) {
      writer.abort();
      throw err;
    }
  }).catch((err: unknown) => {
    // A regular file where a parent folder should be: TV_NOT_A_FILE naming it, as saveCheckpoint's
    // (the core reports the ENOTDIR as TV_IO).
    throw folderError(err, path) ?? err;
  });
}
