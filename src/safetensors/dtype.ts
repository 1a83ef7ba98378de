import { invalidArgument } from '../errors';
import { describeValue } from '../validate';

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
  'F8_E4M3FNUZ',
  'F8_E5M2FNUZ',
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

/** @internal Bits per element of each dtype. */
export const BITS: Readonly<Record<Dtype, number>> = {
  BOOL: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  F8_E4M3FNUZ: 8,
  F8_E5M2FNUZ: 8,
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

/** The typed array a tensor of dtype `D` is viewed as (see {@link VIEW}), for typed access. */
export interface ArrayOfDtype {
  BOOL: Uint8Array;
  F4: Uint8Array;
  F6_E2M3: Uint8Array;
  F6_E3M2: Uint8Array;
  U8: Uint8Array;
  I8: Int8Array;
  F8_E5M2: Uint8Array;
  F8_E4M3: Uint8Array;
  F8_E8M0: Uint8Array;
  F8_E4M3FNUZ: Uint8Array;
  F8_E5M2FNUZ: Uint8Array;
  I16: Int16Array;
  U16: Uint16Array;
  F16: Uint16Array;
  BF16: Uint16Array;
  I32: Int32Array;
  U32: Uint32Array;
  F32: Float32Array;
  C64: Float32Array;
  F64: Float64Array;
  I64: BigInt64Array;
  U64: BigUint64Array;
}

type ViewCtor = {
  new (buffer: ArrayBuffer, byteOffset?: number, length?: number): TensorArray;
  readonly BYTES_PER_ELEMENT: number;
};

/**
 * The typed array each dtype is viewed as: `F16`/`BF16` as `Uint16Array` (raw bits; Node 20 has no
 * `Float16Array`), the 8-bit floats, `BOOL` and the packed 4/6-bit floats as `Uint8Array`, `C64` as
 * a `Float32Array` of interleaved (real, imaginary) pairs.
 */
/** @internal The typed-array constructor each dtype is viewed as. */
export const VIEW: Readonly<Record<Dtype, ViewCtor>> = {
  BOOL: Uint8Array,
  F4: Uint8Array,
  F6_E2M3: Uint8Array,
  F6_E3M2: Uint8Array,
  U8: Uint8Array,
  I8: Int8Array,
  F8_E5M2: Uint8Array,
  F8_E4M3: Uint8Array,
  F8_E8M0: Uint8Array,
  F8_E4M3FNUZ: Uint8Array,
  F8_E5M2FNUZ: Uint8Array,
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
  if (!isDtype(dtype))
    throw invalidArgument('dtype', `dtype must be one of ${DTYPES.join(', ')}, got ${describeValue(dtype)}`);
  if (!Array.isArray(shape))
    throw invalidArgument('shape', `shape must be an array of dimensions, got ${describeValue(shape)}`);
  let n = 1;
  for (const [i, d] of shape.entries()) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0)
      throw invalidArgument(
        `shape[${i}]`,
        `shape[${i}] must be a non-negative integer, got ${describeValue(d)}`,
      );
    n *= d;
  }
  if (!Number.isSafeInteger(n * BITS[dtype]))
    throw invalidArgument('shape', `shape [${shape.join(', ')}] holds more elements than a number can count`);
  const bits = n * BITS[dtype];
  if (bits % 8 !== 0) {
    throw invalidArgument('shape', `${n} ${dtype} elements do not fill whole bytes`, {
      dtype,
    });
  }
  return bits / 8;
}
