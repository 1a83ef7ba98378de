/**
 * What a lazily loaded checkpoint has checked of its mapped weights: whole chunks (their digests
 * matched the sealed leaves) and, for a chunk checked in part through the outboard, the 64 KiB pieces
 * that matched. Only the record: the checks run in chunk-check.ts (`checkChunks`, for
 * {@link Checkpoint}); a view is handed out without a check only when this record vouches for every
 * byte of it, and only while the file is provably the one that was checked ({@link CheckedBytes.current}).
 */
import { chunkSpan } from './rs';

/**
 * How recent a file's change time may be, at the moment the stamp is taken, for a later write to be
 * sure to change it: the kernel stamps writes with a clock that ticks every 1-10 ms (a jiffy; Linux
 * 6.13+ with multigrain timestamps stamps a write after a stat with a finer, newer time), so a ctime
 * older than this is never given again to a later write. File systems that keep whole seconds
 * (both ctime and mtime with no fraction) get {@link COARSE_NS}.
 */
const RACY_NS = 100_000_000n;
const COARSE_NS = 2_100_000_000n;

/** The file state a record of checks is valid for (fstat before the first check in it). */
interface Stamp {
  /** `"dev ino size mtime_sec mtime_nsec ctime_sec ctime_nsec"`, as the mapped file's fstat gave it. */
  readonly key: string;
  /** The ctime was too close to the clock when stamped: a write after it may leave it unchanged. */
  readonly racy: boolean;
}

/** A stamp from the text of `SafetensorsFile.fileStamp()`, taken now. */
function stampOf(key: string): Stamp {
  const [, , , , mns = '0', cs = '0', cns = '0'] = key.split(' ');
  const now = BigInt(Date.now()) * 1_000_000n;
  const ctimeNs = BigInt(cs) * 1_000_000_000n + BigInt(cns);
  // Whole seconds in both times: a file system that keeps no fraction (FAT, some network mounts).
  const coarse = cns === '0' && mns === '0';
  return { key, racy: ctimeNs > now - (coarse ? COARSE_NS : RACY_NS) };
}

export class CheckedBytes {
  /** Chunks whose every byte matched. */
  readonly #chunks = new Set<number>();
  /** Chunks checked in part through the outboard: chunk → its pieces (1 = matched). */
  readonly #pieces = new Map<number, Uint8Array>();
  /** The file's state before the first check recorded here (undefined: none taken yet). */
  #stamp: Stamp | undefined;

  /** Every chunk ever recorded as checked whole (since the file was last replaced): the report's status. */
  readonly #ever = new Set<number>();

  /**
   * Keep the record only while the file is provably unchanged since the first check in it, given its
   * `stamp` now (`SafetensorsFile.fileStamp()`, an fstat of the mapped file's own descriptor): inode,
   * size, mtime and ctime to the nanosecond must equal the stamp taken before that check, and that
   * stamp must not be racy (a ctime within the clock's tick of the moment it was taken: a write right
   * after it could leave every field as it was). Otherwise the record is forgotten and a
   * new stamp is taken: the checks that follow start over from the file as it is now. Call before
   * every use of the record (a view it vouches for, a check that skips the chunks in it) and before
   * adding to it. Another process's in-place write changes the ctime (and the mtime), so a rewrite
   * after a read-ahead, or after a neighbouring tensor's check, is caught at the first view of the
   * bytes it changed.
   */
  current(stamp: string): void {
    if (this.#stamp !== undefined && !this.#stamp.racy && this.#stamp.key === stamp) return;
    const now = stampOf(stamp);
    this.#chunks.clear();
    this.#pieces.clear();
    this.#stamp = now;
  }

  /**
   * Whether the file is still as stamped, given its `stamp` now (`SafetensorsFile.fileStamp()`; a
   * racy stamp counts as unchanged here: this only tells a change made since the stamp, after a read
   * that followed a check).
   */
  unchanged(stamp: string): boolean {
    return this.#stamp === undefined || this.#stamp.key === stamp;
  }

  /** Whether chunk `c` was checked whole. */
  has(c: number): boolean {
    return this.#chunks.has(c);
  }

  /** Record chunk `c` as checked whole. */
  add(c: number): void {
    this.#chunks.add(c);
    this.#ever.add(c);
  }

  /**
   * How many chunks were checked whole at least once (also those forgotten by {@link current} since:
   * each matched when it was checked).
   */
  get count(): number {
    return this.#ever.size;
  }

  /** Forget everything (the file was replaced by a repair: it is checked again from scratch). */
  clear(): void {
    this.#chunks.clear();
    this.#pieces.clear();
    this.#ever.clear();
    this.#stamp = undefined;
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
      this.add(c);
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
