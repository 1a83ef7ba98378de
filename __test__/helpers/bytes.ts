/** `buf[i] ^= v` without the `noUncheckedIndexedAccess` noise (out-of-range `i` is a test bug). */
export function xorAt(buf: Uint8Array, i: number, v: number): void {
  if (i < 0 || i >= buf.length) throw new RangeError(`index ${i} outside ${buf.length} bytes`);
  buf[i] = (buf[i] ?? 0) ^ v;
}
