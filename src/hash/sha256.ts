/**
 * SHA-256 and HMAC-SHA256 over buffers, batches of small inputs in one native call, and a streaming
 * {@link Sha256} that stands in for Node's `Hash`. Files: `./file.ts`.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { callNative, ErrorCode, invalidArgument, TensorVaultError } from '../errors';
import { type NativeSha256State, native } from '../native';
import { bytesOf, describeArgument, describeValue, hasLoneSurrogate, utf8Exact } from '../validate';

/**
 * Bytes accepted by the hashing functions: a Buffer, any typed array or DataView, or a string (UTF-8). A
 * string must be well-formed Unicode: one holding a lone UTF-16 surrogate is `TV_INVALID_ARGUMENT` (UTF-8
 * cannot encode it; converting it to U+FFFD would give two different strings one digest), except in
 * {@link Sha256.update}, which converts as `crypto.Hash.update` does.
 */
export type BinaryInput = string | NodeJS.ArrayBufferView | ArrayBuffer;

/** Encodings accepted for string input (as in `Hash.update`). */
export type InputEncoding = 'utf8' | 'utf-8' | 'latin1' | 'binary' | 'ascii' | 'hex' | 'base64' | 'base64url';

/** Encodings accepted for the digest (as in `Hash.digest`). */
export type DigestEncoding = 'hex' | 'base64' | 'base64url' | 'latin1' | 'binary';

const INPUT_ENCODINGS = new Set(['utf8', 'utf-8', 'latin1', 'binary', 'ascii', 'hex', 'base64', 'base64url']);
const DIGEST_ENCODINGS = new Set(['hex', 'base64', 'base64url', 'latin1', 'binary']);

/**
 * `data` as bytes. A string is UTF-8 (or `encoding`): refused when it holds a lone surrogate if `exact`,
 * else converted as Node does (each lone surrogate becomes U+FFFD).
 */
function toBytes(data: unknown, argument: string, exact: boolean, encoding?: InputEncoding): Uint8Array {
  if (typeof data === 'string') {
    if (encoding !== undefined && !INPUT_ENCODINGS.has(encoding as string))
      throw invalidArgument('encoding', `encoding must be a string encoding, got ${describeValue(encoding)}`);
    if (exact && encoding === undefined) return utf8Exact(argument, data, argument);
    return Buffer.from(data, encoding ?? 'utf8');
  }
  if (ArrayBuffer.isView(data) || data instanceof ArrayBuffer) return bytesOf(data, argument);
  throw invalidArgument(
    argument,
    `${argument} must be a string, Buffer, TypedArray, DataView or ArrayBuffer, got ${describeArgument(argument, data)}`,
  );
}

/** @internal A short description of a value for error messages (never throws). */
export const describe = describeValue;

/**
 * SHA-256 of `data` (strings are UTF-8; one with a lone UTF-16 surrogate is `TV_INVALID_ARGUMENT`).
 * Returns the 32-byte digest.
 */
export function sha256(data: BinaryInput): Buffer {
  const bytes = toBytes(data, 'data', true);
  return callNative(() => native().sha256(bytes));
}

/**
 * @internal SHA-256 of a string converted as `Buffer.from(s, 'utf8')` does (a lone surrogate becomes
 * U+FFFD): the legacy (Libervia) event-log rule, reproduced bit for bit. Nothing public hashes this way.
 */
export function sha256Lossy(data: string): Buffer {
  const bytes = Buffer.from(data, 'utf8');
  return callNative(() => native().sha256(bytes));
}

/** Packed bytes handed to the batch hash; reused between calls (the native call is synchronous). */
let scratch = Buffer.allocUnsafe(0);
/** Largest buffer kept in `scratch` between calls. */
const SCRATCH_KEEP = 16 * 1024 * 1024;
/** Largest packed batch per native call (its item ends are 32-bit). */
const BATCH_BYTES = 256 * 1024 * 1024;

/**
 * Pack `items` (strings as UTF-8) and hash them with one native call per batch of up to 256 MiB;
 * `each(hexOrBytes)` receives each batch's result in order.
 */
function hashPacked<T>(
  items: readonly BinaryInput[],
  call: (data: Uint8Array, ends: Uint32Array) => T,
  each: (result: T) => void,
  exact = true,
): void {
  if (!Array.isArray(items)) {
    throw invalidArgument('items', `items must be an array, got ${describe(items)}`);
  }
  let i = 0;
  do {
    // Upper bound of the batch's bytes: 3 UTF-8 bytes per UTF-16 unit at most.
    let cap = 0;
    let strings = true;
    let j = i;
    for (; j < items.length; j++) {
      const it = items[j];
      if (typeof it !== 'string') strings = false;
      const need =
        typeof it === 'string'
          ? it.length * 3
          : ArrayBuffer.isView(it) || it instanceof ArrayBuffer
            ? it.byteLength
            : Number.NaN;
      if (Number.isNaN(need)) {
        throw invalidArgument(
          'items',
          `items[${j}] must be a string, Buffer, TypedArray, DataView or ArrayBuffer, got ${describe(it)}`,
          { index: j },
        );
      }
      if (need > 0xffffffff) {
        throw invalidArgument('items', `items[${j}] is larger than 4 GiB: hash it with Sha256`, {
          index: j,
        });
      }
      if (j > i && cap + need > BATCH_BYTES) break;
      cap += need;
    }
    let buf = scratch;
    if (buf.length < cap) {
      buf = Buffer.allocUnsafe(
        cap <= SCRATCH_KEEP ? Math.min(SCRATCH_KEEP, Math.max(cap, 2 * buf.length)) : cap,
      );
      if (buf.length <= SCRATCH_KEEP) scratch = buf;
    }
    const ends = new Uint32Array(j - i);
    let at = 0;
    if (strings && j > i) {
      // Strings only: one UTF-8 write of them all. When the byte count equals the UTF-16 unit count
      // every character was ASCII (any other takes more bytes than units), so the ends follow from
      // the string lengths; otherwise the items are written again one by one below.
      const joined = (i === 0 && j === items.length ? items : items.slice(i, j)).join('');
      if (exact && hasLoneSurrogate(joined)) refuseLoneSurrogate(items, i, j);
      if (buf.write(joined, 0, 'utf8') === joined.length) {
        for (let k = i; k < j; k++) {
          at += (items[k] as string).length;
          ends[k - i] = at;
        }
      }
    }
    for (let k = at === 0 ? i : j; k < j; k++) {
      const it = items[k] as BinaryInput;
      if (typeof it === 'string') {
        if (exact && hasLoneSurrogate(it)) refuseLoneSurrogate(items, k, k + 1);
        at += buf.write(it, at, 'utf8');
      } else {
        const bytes = toBytes(it, 'items', exact);
        buf.set(bytes, at);
        at += bytes.length;
      }
      ends[k - i] = at;
    }
    const data = buf.subarray(0, at);
    each(callNative(() => call(data, ends)));
    i = j;
  } while (i < items.length);
}

/** Throws for the first string of `items[from..to)` that holds a lone surrogate (its index in context). */
function refuseLoneSurrogate(items: readonly BinaryInput[], from: number, to: number): void {
  for (let k = from; k < to; k++) {
    const it = items[k];
    if (typeof it === 'string') utf8Exact('items', it, `items[${k}]`, { index: k });
  }
}

/**
 * SHA-256 of each item (strings are UTF-8, each well-formed: see {@link BinaryInput}), computed with one native call for the whole list (per
 * 256 MiB), so thousands of small inputs do not pay one call each. Synchronous: meant for many small
 * items; for large inputs use {@link hashFile} or {@link Sha256}. Returns one 32-byte digest per item.
 */
export function sha256Many(items: readonly BinaryInput[]): Buffer[] {
  const out: Buffer[] = [];
  hashPacked(
    items,
    (d, e) => native().sha256Many(d, e),
    (digests) => {
      for (let k = 0; k < digests.length; k += 32) out.push(digests.subarray(k, k + 32));
    },
  );
  return out;
}

/**
 * {@link sha256Many} with the digests as one lower-case hex string: item `i`'s digest is the 64
 * characters at `i * 64` (compare with `hex.startsWith(expected, i * 64)`, no slicing needed).
 */
export function sha256ManyHex(items: readonly BinaryInput[]): string {
  return manyHex(items, true);
}

/**
 * @internal {@link sha256ManyHex} of strings converted as `Buffer.from(s, 'utf8')` does (a lone surrogate
 * becomes U+FFFD): the legacy (Libervia) event-log rule. Nothing public hashes this way.
 */
export function sha256ManyHexLossy(items: readonly string[]): string {
  return manyHex(items, false);
}

function manyHex(items: readonly BinaryInput[], exact: boolean): string {
  let hex = '';
  hashPacked(
    items,
    (d, e) => native().sha256ManyHex(d, e),
    (h) => {
      hex += h;
    },
    exact,
  );
  return hex;
}

/**
 * HMAC-SHA256 (RFC 2104) of `data` under `key` (strings are UTF-8; a key or data string with a lone UTF-16
 * surrogate is `TV_INVALID_ARGUMENT`, so two different keys never act as one). Returns the 32-byte MAC.
 */
export function hmacSha256(key: BinaryInput, data: BinaryInput): Buffer {
  const k = toBytes(key, 'key', true);
  const d = toBytes(data, 'data', true);
  return callNative(() => native().hmacSha256(k, d));
}

/**
 * Incremental SHA-256 with the shape of Node's `crypto.Hash`: `update()` chains, `digest()` returns a
 * Buffer or an encoded string, `copy()` forks the state, and as a `Transform` stream it can be piped
 * into (the digest is pushed when the input ends).
 */
export class Sha256 extends Transform {
  #state: NativeSha256State | undefined;

  constructor(state?: NativeSha256State) {
    super();
    this.#state = state ?? callNative(() => new (native().NativeSha256)());
  }

  /**
   * Feed `data` (strings in `encoding`, default UTF-8). Returns `this`. Strings are converted exactly as
   * `crypto.Hash.update` converts them, for digests identical to `crypto.createHash('sha256')`'s: in
   * UTF-8 a lone UTF-16 surrogate becomes U+FFFD (so `'\ud800'` and `'\udfff'` feed the same bytes). To
   * have such a string refused, hash it with {@link sha256}, or pass bytes.
   */
  update(data: BinaryInput, encoding?: InputEncoding): this {
    const state = this.#live();
    const bytes = toBytes(data, 'data', false, encoding);
    callNative(() => state.update(bytes));
    return this;
  }

  /** The digest of all input; the hash cannot be used afterwards. */
  digest(): Buffer;
  digest(encoding: DigestEncoding): string;
  digest(encoding?: DigestEncoding): Buffer | string {
    if (encoding !== undefined && !DIGEST_ENCODINGS.has(encoding as string))
      throw invalidArgument('encoding', `encoding must be a digest encoding, got ${describeValue(encoding)}`);
    const state = this.#live();
    this.#state = undefined;
    const out = callNative(() => state.digest());
    return encoding === undefined ? out : out.toString(encoding);
  }

  /** An independent copy of the current state. */
  copy(): Sha256 {
    const state = this.#live();
    return new Sha256(callNative(() => state.copy()));
  }

  #live(): NativeSha256State {
    if (this.#state === undefined) {
      throw new TensorVaultError(ErrorCode.HASH_FINALIZED, 'Digest already called');
    }
    return this.#state;
  }

  override _transform(chunk: unknown, encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.update(
        chunk as BinaryInput,
        (encoding as string) === 'buffer' ? undefined : (encoding as InputEncoding),
      );
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.push(this.digest());
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }
}

/** Create a {@link Sha256}, like `crypto.createHash('sha256')`. */
export function createSha256(): Sha256 {
  return new Sha256();
}
