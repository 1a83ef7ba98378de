/** Deterministic pseudo-random numbers for tests (xorshift32), so that a failure reproduces from its seed. */

/** Integers in `[0, 2^32)` from `seed` (0 counts as 1). */
export function xorshift32(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

/** Fractions in `[0, 1)` from `seed` (the integers of {@link xorshift32} over 2^32). */
export function rng(seed: number): () => number {
  const next = xorshift32(seed);
  return () => next() / 2 ** 32;
}
