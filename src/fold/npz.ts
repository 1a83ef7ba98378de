/**
 * `NPZ0` chunks: a NumPy `.npz` archive (a zip of `.npy` files, stored or deflated) read into typed
 * arrays, with limits before anything is inflated: entry count, declared sizes against the payload
 * budget, CRC-32 of every member, no pickled object arrays, no zip64.
 */
import { crc32, inflateRawSync } from 'node:zlib';
import { ErrorCode, TensorVaultError } from '../errors';

/** One array of an `.npz` chunk. */
export interface NpzArray {
  /** NumPy's dtype name: `float32`, `int32`, `bool`, … */
  dtype: string;
  shape: number[];
  /** Elements (`bool` and `float16` as their raw `Uint8Array` / `Uint16Array`). */
  data: ArrayBufferView;
  /** The raw little-endian element bytes. */
  bytes: Uint8Array;
}

const MAX_ENTRIES = 4096;

type Ctor = {
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): ArrayBufferView;
  BYTES_PER_ELEMENT: number;
};
const DESCR: Record<string, [string, Ctor]> = {
  '|b1': ['bool', Uint8Array],
  '|u1': ['uint8', Uint8Array],
  '|i1': ['int8', Int8Array],
  '<u2': ['uint16', Uint16Array],
  '<i2': ['int16', Int16Array],
  '<f2': ['float16', Uint16Array],
  '<u4': ['uint32', Uint32Array],
  '<i4': ['int32', Int32Array],
  '<f4': ['float32', Float32Array],
  '<u8': ['uint64', BigUint64Array],
  '<i8': ['int64', BigInt64Array],
  '<f8': ['float64', Float64Array],
};

function bad(chunk: string, detail: string): TensorVaultError {
  return new TensorVaultError(
    ErrorCode.FOLD_INVALID,
    `chunk ${JSON.stringify(chunk)} is not a valid .npz: ${detail}`,
    {
      reason: 'npz_invalid',
      chunk,
    },
  );
}

function parseNpy(chunk: string, name: string, b: Buffer): NpzArray {
  if (b.length < 10 || b.toString('latin1', 0, 6) !== '\x93NUMPY')
    throw bad(chunk, `${name}: not a .npy file`);
  const major = b[6] ?? 0;
  if (major < 1 || major > 3) throw bad(chunk, `${name}: .npy format version ${major} is not supported`);
  // Format 1 has a 2-byte header length, formats 2 and 3 a 4-byte one.
  const pre = major === 1 ? 10 : 12;
  if (b.length < pre) throw bad(chunk, `${name}: shorter than its .npy preamble`);
  const hlen = major === 1 ? b.readUInt16LE(8) : b.readUInt32LE(8);
  const start = pre + hlen;
  if (start > b.length) throw bad(chunk, `${name}: header runs past the member`);
  const header = b.toString(major === 3 ? 'utf8' : 'latin1', pre, start);
  const descr = /'descr':\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined)
    throw bad(chunk, `${name}: unreadable header`);
  const kind = DESCR[descr];
  if (kind === undefined)
    throw bad(chunk, `${name}: dtype ${descr} is not supported (object arrays are never unpickled)`);
  if (fortran === 'True') throw bad(chunk, `${name}: Fortran-ordered arrays are not supported`);
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map(Number);
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 0)) throw bad(chunk, `${name}: bad shape`);
  const [dtype, C] = kind;
  const count = shape.reduce((a, d) => a * d, 1);
  const len = count * C.BYTES_PER_ELEMENT;
  if (start + len !== b.length)
    throw bad(chunk, `${name}: ${b.length - start} data bytes, shape needs ${len}`);
  // A fresh, aligned copy: members are small and typed views need aligned offsets.
  const bytes = new Uint8Array(len);
  bytes.set(b.subarray(start));
  return { dtype, shape, data: new C(bytes.buffer, 0, count), bytes };
}

/** Read the arrays of an `.npz` payload; `budget` bounds the total inflated size. */
export function readNpz(chunk: string, payload: Uint8Array, budget: number): Record<string, NpzArray> {
  const b = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  let eocd = -1;
  for (let i = b.length - 22; i >= Math.max(0, b.length - 22 - 65535); i--) {
    if (b.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw bad(chunk, 'no zip end-of-central-directory record');
  const entries = b.readUInt16LE(eocd + 10);
  const cdSize = b.readUInt32LE(eocd + 12);
  const cdOff = b.readUInt32LE(eocd + 16);
  if (entries > MAX_ENTRIES) throw bad(chunk, `${entries} members (limit ${MAX_ENTRIES})`);
  if (cdOff + cdSize > eocd) throw bad(chunk, 'central directory outside the archive');
  const out: Record<string, NpzArray> = {};
  let pos = cdOff;
  let total = 0;
  for (let n = 0; n < entries; n++) {
    if (pos + 46 > eocd || b.readUInt32LE(pos) !== 0x02014b50)
      throw bad(chunk, 'bad central directory entry');
    const method = b.readUInt16LE(pos + 10);
    const crc = b.readUInt32LE(pos + 16);
    const csize = b.readUInt32LE(pos + 20);
    const usize = b.readUInt32LE(pos + 24);
    const nlen = b.readUInt16LE(pos + 28);
    const elen = b.readUInt16LE(pos + 30);
    const clen = b.readUInt16LE(pos + 32);
    const local = b.readUInt32LE(pos + 42);
    const name = b.toString('utf8', pos + 46, pos + 46 + nlen);
    pos += 46 + nlen + elen + clen;
    if (csize === 0xffffffff || usize === 0xffffffff || local === 0xffffffff)
      throw bad(chunk, 'zip64 members are not supported');
    total += usize;
    if (total > budget) throw bad(chunk, `members inflate to more than ${budget} bytes`);
    if (local + 30 > b.length || b.readUInt32LE(local) !== 0x04034b50)
      throw bad(chunk, `${name}: bad local header`);
    const dataAt = local + 30 + b.readUInt16LE(local + 26) + b.readUInt16LE(local + 28);
    if (dataAt + csize > cdOff) throw bad(chunk, `${name}: data outside the archive`);
    const raw = b.subarray(dataAt, dataAt + csize);
    let member: Buffer;
    if (method === 0) member = raw;
    else if (method === 8) {
      try {
        member = inflateRawSync(raw, { maxOutputLength: Math.max(1, usize) });
      } catch (err) {
        throw bad(chunk, `${name}: ${(err as Error).message}`);
      }
    } else throw bad(chunk, `${name}: compression method ${method} is not supported`);
    if (member.length !== usize)
      throw bad(chunk, `${name}: ${member.length} bytes, the directory says ${usize}`);
    if (crc32(member) >>> 0 !== crc) throw bad(chunk, `${name}: CRC-32 mismatch`);
    const key = name.endsWith('.npy') ? name.slice(0, -4) : name;
    if (Object.hasOwn(out, key)) throw bad(chunk, `two members named ${JSON.stringify(key)}`);
    Object.defineProperty(out, key, { value: parseNpy(chunk, name, member), enumerable: true });
  }
  return out;
}
