/**
 * Argument checks shared by every public entry point. Each throws `TV_INVALID_ARGUMENT` whose
 * `context.argument` is the path of the bad field (`options`, `overwrite`, `tensors.w.shape`), and
 * builds its message with {@link describeValue}, which never throws (a Symbol, `Object.create(null)`,
 * a detached buffer or a revoked proxy cannot turn a refusal into a `TypeError`).
 */
import { type ErrorContext, invalidArgument, type TensorVaultError } from './errors';

/** A short description of any value for an error message; never throws. */
export function describeValue(v: unknown): string {
  try {
    if (v === null) return 'null';
    switch (typeof v) {
      case 'string':
        return v.length > 40 ? `a string of ${v.length} characters` : JSON.stringify(v);
      case 'number':
      case 'boolean':
      case 'undefined':
        return String(v);
      case 'bigint':
        return `a bigint (${v.toString()}n)`;
      case 'symbol':
        return 'a symbol';
      case 'function':
        return 'a function';
    }
    if (Array.isArray(v)) return `an array of ${v.length}`;
    if (ArrayBuffer.isView(v)) {
      return isDetached(v.buffer) ? 'a detached typed array' : `a ${viewName(v)} of ${v.byteLength} bytes`;
    }
    if (v instanceof ArrayBuffer) return isDetached(v) ? 'a detached ArrayBuffer' : 'an ArrayBuffer';
    const proto: unknown = Object.getPrototypeOf(v);
    if (proto === null) return 'an object without a prototype';
    const name = (proto as { constructor?: { name?: unknown } }).constructor?.name;
    return typeof name === 'string' && name !== 'Object' ? `an object (${name})` : 'an object';
  } catch {
    return 'an unprintable value';
  }
}

/** Whether the argument `path` (`logKey`, `keys.0.key`, `credentials`) carries a secret. */
export function isSecretArgument(path: string): boolean {
  return /key|secret|passw|token|credential/i.test(path);
}

/**
 * A description of a secret for an error message: its type and size only, never its content (a key
 * passed as a string where bytes are taken must not land in a message, a stack or a log). Never throws.
 */
export function describeSecret(v: unknown): string {
  try {
    switch (typeof v) {
      case 'string':
        return `a string of ${v.length} characters`;
      case 'number':
        return 'a number';
      case 'bigint':
        return 'a bigint';
    }
    return describeValue(v);
  } catch {
    return 'an unprintable value';
  }
}

/** {@link describeValue}, or {@link describeSecret} when the argument `path` carries a secret. */
export function describeArgument(path: string, v: unknown): string {
  return isSecretArgument(path) ? describeSecret(v) : describeValue(v);
}

/**
 * Whether `s` holds a lone UTF-16 surrogate: not well-formed Unicode, so UTF-8 cannot encode it and the
 * addon's string conversion would turn it into U+FFFD (two different names into one). With the `u` flag a
 * surrogate pair is one code point: only a lone surrogate matches `\p{Cs}`.
 */
export function hasLoneSurrogate(s: string): boolean {
  return /\p{Cs}/u.test(s);
}

/**
 * Throws `TV_INVALID_ARGUMENT` (`context.argument`: `argument`) when the string `s` holds a lone UTF-16
 * surrogate (see {@link hasLoneSurrogate}); `what` names it in the message ("tensor name").
 */
export function checkWellFormed(argument: string, s: string, what: string): void {
  if (hasLoneSurrogate(s)) {
    throw invalidArgument(
      argument,
      `${what} ${JSON.stringify(s)} is not well-formed Unicode (it holds a lone UTF-16 surrogate, which UTF-8 cannot encode)`,
      { value: JSON.stringify(s) },
    );
  }
}

/**
 * The UTF-8 bytes of `s`; throws `TV_INVALID_ARGUMENT` (`context.argument`: `argument`, `context.position`:
 * the UTF-16 index of the first lone surrogate, plus `context`) when `s` holds a lone UTF-16 surrogate,
 * which `Buffer.from(s, 'utf8')` would turn into U+FFFD (two different strings into the same bytes). The
 * message never repeats the string (it may be a key); `what` names it ("data", "hmacKey").
 */
export function utf8Exact(argument: string, s: string, what: string, context: ErrorContext = {}): Buffer {
  const at = s.search(/\p{Cs}/u);
  if (at >= 0) {
    const unit = s.charCodeAt(at).toString(16).toUpperCase();
    throw invalidArgument(
      argument,
      `${what} is not well-formed Unicode: it holds a lone UTF-16 surrogate (U+${unit} at index ${at}), which UTF-8 cannot encode (pass bytes to use them as they are)`,
      { ...context, position: at },
    );
  }
  return Buffer.from(s, 'utf8');
}

function viewName(v: ArrayBufferView): string {
  const n = (Object.getPrototypeOf(v) as { constructor?: { name?: unknown } } | null)?.constructor?.name;
  return typeof n === 'string' ? n : 'typed array';
}

/** True when `buf`'s memory was transferred away (postMessage, structuredClone, `transfer()`). */
export function isDetached(buf: ArrayBufferLike): boolean {
  const d = (buf as { detached?: unknown }).detached;
  if (typeof d === 'boolean') return d;
  if (buf.byteLength !== 0) return false;
  try {
    new Uint8Array(buf as ArrayBuffer, 0, 0);
    return false;
  } catch {
    return true;
  }
}

const refuse = (path: string, what: string, v: unknown): TensorVaultError =>
  invalidArgument(path, `${path} must be ${what}, got ${describeArgument(path, v)}`);

/**
 * An options argument: `undefined` is `{}`; anything but a plain object (null, an array, a string) is
 * refused, naming `path`.
 */
export function optionsObject<T extends object>(v: T | undefined | null, path = 'options'): T {
  if (v === undefined) return {} as T;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw refuse(path, 'an object', v);
  return v;
}

/** An optional boolean: `undefined` stays undefined; `'false'`, `0` or `1` are refused. */
export function optionalBoolean(v: unknown, path: string): boolean | undefined {
  if (v === undefined || typeof v === 'boolean') return v;
  throw refuse(path, 'true or false', v);
}

/** An optional function (a callback). */
export function optionalFunction<T>(v: T | undefined, path: string): T | undefined {
  if (v === undefined || typeof v === 'function') return v;
  throw refuse(path, 'a function', v);
}

/** An optional string; with `nonEmpty`, '' is refused too; a NUL character always is. */
export function optionalString(v: unknown, path: string, nonEmpty = true): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || (nonEmpty && v === '') || v.includes('\0'))
    throw refuse(path, nonEmpty ? 'a non-empty string' : 'a string', v);
  return v;
}

/** A required string (a path or a name). */
export function requiredString(v: unknown, path: string, nonEmpty = true): string {
  const s = optionalString(v, path, nonEmpty);
  if (s === undefined) throw refuse(path, nonEmpty ? 'a non-empty string' : 'a string', v);
  return s;
}

/** An integer in [min, max] (a safe integer: min and max are), refused as `TV_INVALID_ARGUMENT` naming `path`. */
export function requiredInteger(v: unknown, path: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw invalidArgument(
      path,
      `${path} must be an integer from ${min} to ${max}, got ${describeArgument(path, v)}`,
      {
        actual: describeArgument(path, v),
      },
    );
  return v;
}

/** An optional integer in [min, max]. */
export function optionalInteger(v: unknown, path: string, min: number, max: number): number | undefined {
  return v === undefined ? undefined : requiredInteger(v, path, min, max);
}

/** Bytes: a typed array, DataView or ArrayBuffer that is not detached, viewed as a Uint8Array. */
export function bytesOf(v: unknown, path: string): Uint8Array {
  if (ArrayBuffer.isView(v)) {
    if (isDetached(v.buffer)) throw refuse(path, 'bytes that are still attached', v);
    return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  }
  if (v instanceof ArrayBuffer) {
    if (isDetached(v)) throw refuse(path, 'bytes that are still attached', v);
    return new Uint8Array(v);
  }
  throw refuse(path, 'a Buffer, TypedArray, DataView or ArrayBuffer', v);
}

/** An optional `AbortSignal` (the `signal` option of every cancellable call). */
export function optionalSignal(v: unknown, path = 'signal'): AbortSignal | undefined {
  if (v === undefined || v instanceof AbortSignal) return v;
  throw refuse(path, 'an AbortSignal', v);
}

/** The fields every long job takes (`signal`, `onProgress`, `progressIntervalMs`). */
export function checkJobOptions(o: {
  signal?: unknown;
  onProgress?: unknown;
  progressIntervalMs?: unknown;
}): void {
  optionalSignal(o.signal);
  optionalFunction(o.onProgress, 'onProgress');
  optionalInteger(o.progressIntervalMs, 'progressIntervalMs', 1, 2 ** 31 - 1);
}
