/**
 * What a lazily loaded checkpoint has checked of its mapped weights: whole chunks (their digests
 * matched the sealed leaves) and, for a chunk checked in part through the outboard, the 64 KiB pieces
 * that matched. Only the record: the checks run in chunk-check.ts (`checkChunks`, for
 * {@link Checkpoint}); a view is handed out without a check only when this record vouches for every
 * byte of it.
 */
import { chunkSpan } from './rs';

export class CheckedBytes {
  /** Chunks whose every byte matched. */
  readonly #chunks = new Set<number>();
  /** Chunks checked in part through the outboard: chunk → its pieces (1 = matched). */
  readonly #pieces = new Map<number, Uint8Array>();

  /** Whether chunk `c` was checked whole. */
  has(c: number): boolean {
    return this.#chunks.has(c);
  }

  /** Record chunk `c` as checked whole. */
  add(c: number): void {
    this.#chunks.add(c);
  }

  /** How many chunks were checked whole. */
  get count(): number {
    return this.#chunks.size;
  }

  /** Forget everything (the file was replaced by a repair: it is checked again from scratch). */
  clear(): void {
    this.#chunks.clear();
    this.#pieces.clear();
  }

  /**
   * Whether every byte of `[offset, offset + length)` is already checked, by whole chunks (of `cs`
   * bytes) or by the pieces of its one chunk.
   */
  vouches(offset: number, length: number, cs: number): boolean {
    const [first, last] = chunkSpan(offset, offset + length, cs);
    if (last - first !== 1) {
      for (let c = first; c < last; c++) if (!this.#chunks.has(c)) return false;
      return true;
    }
    if (this.#chunks.has(first)) return true;
    const mask = this.#pieces.get(first);
    if (mask === undefined) return false;
    const [a, b] = pieceSpan(offset, length, first, mask.length, cs);
    for (let i = a; i < b; i++) if (mask[i] !== 1) return false;
    return true;
  }

  /**
   * The pieces `[a, b)` of chunk `c` (cut in `n` pieces of a `cs`-byte chunk) that hold bytes of
   * `[offset, offset + length)`, without the checked pieces at either end (`a === b`: none left).
   */
  uncheckedPieces(offset: number, length: number, c: number, n: number, cs: number): [number, number] {
    const mask = this.#pieces.get(c);
    let [a, b] = pieceSpan(offset, length, c, n, cs);
    while (a < b && mask?.[a] === 1) a++;
    while (b > a && mask?.[b - 1] === 1) b--;
    return [a, b];
  }

  /** Record pieces `[a, b)` of chunk `c` (cut in `n`) as checked; all of them make the chunk checked. */
  addPieces(c: number, a: number, b: number, n: number): void {
    const m = this.#pieces.get(c) ?? new Uint8Array(n);
    m.fill(1, a, b);
    if (m.every((x) => x === 1)) {
      this.#pieces.delete(c);
      this.#chunks.add(c);
    } else this.#pieces.set(c, m);
  }
}

/** The pieces `[a, b)` of chunk `c` (cut in `n` pieces of a `cs`-byte chunk) holding the bytes given. */
function pieceSpan(offset: number, length: number, c: number, n: number, cs: number): [number, number] {
  const start = c * cs;
  const piece = cs / n;
  const lo = Math.max(offset, start) - start;
  const hi = Math.min(offset + length, start + cs) - start;
  return [Math.floor(lo / piece), Math.ceil(hi / piece)];
}
