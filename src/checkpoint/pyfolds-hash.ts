/**
 * PyFolds's integrity hash of a checkpoint (contract section 2): the framing of each tensor (name,
 * torch dtype label, Python shape, bytes, in code-point order of names), the digest over the tensors,
 * a file, or a file with patched ranges, and the stored `sha256:` / `hmac-sha256:` forms.
 */
import { ErrorCode, TensorVaultError } from '../errors';
import { hmacSha256 } from '../hash/index';
import { type JobOptions, runJob } from '../job';
import { native } from '../native';
import type { Dtype } from '../safetensors/dtype';
import type { TensorInfo } from '../safetensors/types';

const TORCH_DTYPE: Partial<Record<Dtype, string>> = {
  F32: 'torch.float32',
  F16: 'torch.float16',
  BF16: 'torch.bfloat16',
  F64: 'torch.float64',
  I8: 'torch.int8',
  I16: 'torch.int16',
  I32: 'torch.int32',
  I64: 'torch.int64',
  U8: 'torch.uint8',
  U16: 'torch.uint16',
  U32: 'torch.uint32',
  U64: 'torch.uint64',
  BOOL: 'torch.bool',
  F8_E4M3: 'torch.float8_e4m3fn',
  F8_E5M2: 'torch.float8_e5m2',
  C64: 'torch.complex64',
  F8_E8M0: 'torch.float8_e8m0fnu',
  F8_E4M3FNUZ: 'torch.float8_e4m3fnuz',
  F8_E5M2FNUZ: 'torch.float8_e5m2fnuz',
};

/** PyTorch's name of a safetensors dtype, or undefined for the packed 4/6-bit floats. */
export function torchDtype(dtype: Dtype): string | undefined {
  return TORCH_DTYPE[dtype];
}

/** The dtype label fed to the PyFolds hash (`torch.*`; `safetensors.F4` etc. for dtypes torch lacks). */
export function hashDtypeLabel(dtype: Dtype): string {
  return TORCH_DTYPE[dtype] ?? `safetensors.${dtype}`;
}

/**
 * Python's `str(tuple(shape))`: `()`, `(2,)`, `(2, 4)`. A dimension above `Number.MAX_SAFE_INTEGER`
 * (only a zero-size tensor can have one) must be given as a bigint (from `TensorInfo.exactShape`): a
 * number there has already been rounded, and the text would not be Python's.
 */
export function pythonShape(shape: readonly (number | bigint)[]): string {
  if (shape.length === 0) return '()';
  if (shape.length === 1) return `(${shape[0]},)`;
  return `(${shape.join(', ')})`;
}

/** Python's `sorted()` order of strings: by Unicode code point (not UTF-16 code unit). */
export function codePointCompare(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done === true) return y.done === true ? 0 : -1;
    if (y.done === true) return 1;
    const cx = x.value.codePointAt(0) as number;
    const cy = y.value.codePointAt(0) as number;
    if (cx !== cy) return cx < cy ? -1 : 1;
  }
}

/** A tensor as the PyFolds hash sees it. */
export interface HashableTensor {
  name: string;
  dtype: Dtype;
  shape: readonly number[];
  /** The exact dimensions as decimal text, when one is above 2^53 - 1 (see `TensorInfo.exactShape`). */
  exactShape?: readonly string[] | undefined;
  /** The tensor's bytes, possibly in pieces (read on demand, in order). */
  bytes: () => Iterable<Uint8Array>;
}

/** PyFolds's framing of one tensor: key, torch dtype, `str(tuple(shape))`, no separators. */
function framingOf(t: {
  name: string;
  dtype: Dtype;
  shape: readonly number[];
  exactShape?: readonly string[] | undefined;
}): Buffer {
  // A dimension above 2^53 - 1 is exact only in `exactShape` (decimal text from the addon).
  const shape = t.exactShape !== undefined ? t.exactShape.map((d) => BigInt(d)) : t.shape;
  return Buffer.from(`${t.name}${hashDtypeLabel(t.dtype)}${pythonShape(shape)}`, 'utf8');
}

function byName<T extends { name: string }>(tensors: readonly T[]): T[] {
  return [...tensors].sort((a, b) => codePointCompare(a.name, b.name));
}

/**
 * The plain hex SHA-256 of PyFolds's framing over `tensors` (sorted by name; key, torch dtype,
 * `str(tuple(shape))`, raw bytes; no separators), hashed on the libuv pool. Honours `signal`.
 */
export async function pyfoldsDigest(
  tensors: readonly HashableTensor[],
  options: JobOptions = {},
): Promise<string> {
  const pieces: Uint8Array[] = [];
  for (const t of byName(tensors)) {
    pieces.push(framingOf(t));
    for (const piece of t.bytes()) pieces.push(piece);
  }
  return framedDigest(null, pieces, options);
}

/**
 * {@link pyfoldsDigest} of the tensors of the safetensors file at `path` (as its header lists them in
 * `infos`), read from the file by the addon in 1 MiB blocks while it hashes: nothing is mapped, and no
 * tensor is limited by the largest `ArrayBuffer`.
 */
export async function pyfoldsDigestOfFile(
  path: string,
  infos: readonly TensorInfo[],
  options: JobOptions = {},
): Promise<string> {
  const pieces: (Uint8Array | number[])[] = [];
  for (const t of byName(infos)) pieces.push(framingOf(t), [t.fileOffset, t.byteLength]);
  return framedDigest(path, pieces, options);
}

/**
 * {@link pyfoldsDigestOfFile} of the file at `path` as it would be with `patches` (byte offset → the
 * bytes written there) applied, without writing it: the tensors' ranges are read from the file except
 * where a patch covers them. For the read-only check of an rs(N) correction (`rs.ts`).
 */
export async function pyfoldsDigestPatched(
  path: string,
  infos: readonly TensorInfo[],
  patches: ReadonlyMap<number, Uint8Array>,
  options: JobOptions = {},
): Promise<string> {
  const sorted = [...patches].sort((a, b) => a[0] - b[0]);
  const pieces: (Uint8Array | number[])[] = [];
  for (const t of byName(infos)) {
    pieces.push(framingOf(t));
    const end = t.fileOffset + t.byteLength;
    let at = t.fileOffset;
    for (const [from, bytes] of sorted) {
      const to = from + bytes.length;
      if (to <= at || from >= end) continue;
      if (from > at) pieces.push([at, from - at]);
      const hi = Math.min(to, end);
      pieces.push(bytes.subarray(Math.max(at, from) - from, hi - from));
      at = hi;
    }
    if (at < end) pieces.push([at, end - at]);
  }
  return framedDigest(path, pieces, options);
}

/** The hex SHA-256 of `pieces` (bytes, or `[offset, length]` ranges of the file at `path`) on the pool. */
async function framedDigest(
  path: string | null,
  pieces: (Uint8Array | number[])[],
  options: JobOptions,
): Promise<string> {
  const digest = await runJob('pyfoldsDigest', options, (control) =>
    native().sha256Pieces(path, pieces, control),
  );
  return digest.toString('hex');
}

/** A key for the HMAC: a string (UTF-8, as PyFolds's environment variable) or bytes. */
export type HmacKey = string | Uint8Array;

export function keyBytes(key: HmacKey): Uint8Array {
  return typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
}

/** PyFolds's stored hash: `sha256:<hex>`, or with a key `hmac-sha256:` + HMAC(key, hex digest as ASCII). */
export function formatPyfoldsHash(hexDigest: string, key?: HmacKey): string {
  if (key === undefined) return `sha256:${hexDigest}`;
  return `hmac-sha256:${hmacSha256(keyBytes(key), Buffer.from(hexDigest, 'ascii')).toString('hex')}`;
}

/** How a stored PyFolds hash is written. */
export type StoredHashKind = 'sha256' | 'hmac-sha256' | 'legacy-sha256';

/** Parse a stored PyFolds hash; throws `TV_CHECKPOINT_INVALID` for anything else. */
export function parseStoredHash(text: unknown, path: string): { kind: StoredHashKind; hex: string } {
  if (typeof text === 'string') {
    let m = /^sha256:([0-9a-f]{64})$/i.exec(text);
    if (m !== null) return { kind: 'sha256', hex: (m[1] as string).toLowerCase() };
    m = /^hmac-sha256:([0-9a-f]{64})$/i.exec(text);
    if (m !== null) return { kind: 'hmac-sha256', hex: (m[1] as string).toLowerCase() };
    m = /^([0-9a-f]{64})$/i.exec(text);
    if (m !== null) return { kind: 'legacy-sha256', hex: (m[1] as string).toLowerCase() };
  }
  throw new TensorVaultError(
    ErrorCode.CHECKPOINT_INVALID,
    `${path}: integrity_hash is not sha256:<hex>, hmac-sha256:<hex> or a bare hex digest`,
    { path, reason: 'bad_hash', actual: typeof text === 'string' ? text.slice(0, 100) : typeof text },
  );
}

/** Whether the plain hex digest `hexDigest` matches the stored hash (constant-time compare). */
export function pyfoldsHashMatches(
  stored: { kind: StoredHashKind; hex: string },
  hexDigest: string,
  key: HmacKey | undefined,
): boolean {
  let want: string;
  if (stored.kind === 'hmac-sha256') {
    if (key === undefined) return false;
    want = formatPyfoldsHash(hexDigest, key).slice('hmac-sha256:'.length);
  } else want = hexDigest;
  return equalHex(want, stored.hex);
}

/** Constant-time equality of two hex strings. */
export function equalHex(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return d === 0;
}
