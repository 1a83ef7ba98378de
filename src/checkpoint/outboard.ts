/**
 * The checkpoint outboard `NAME.safetensors.tvob` (`docs/formats/checkpoint.md`, "The outboard"): the
 * BLAKE3 chaining values of the 64 KiB pieces of each `blake3-tree-v1` leaf, so that a lazy load
 * verifies only the pieces a tensor covers instead of its whole 1 MiB chunk. It is an accelerator and
 * untrusted: a chunk's values are used only after they merge to the sealed leaf; a missing, stale or
 * tampered outboard makes the loader hash whole chunks as before.
 */
import { closeSync, promises as fsp, fstatSync, openSync, readSync } from 'node:fs';
import { dirname } from 'node:path';
import { tempName } from '../io/atomic';
import { fsyncDir } from '../io/fs';
import { runJob } from '../job';
import { native } from '../native';
import type { CheckpointFiles, IntegrityBlock } from './layout';

/** Length of the outboard's header. */
const HEADER_LEN = 40;

/**
 * The save's hook (one call, after the set is committed, under its lock): write the outboard of a
 * `blake3-tree-v1` checkpoint (temporary file, fsync, rename), or remove a stale one. Never fails the
 * save: the commit already removed the old set's outboard, and without one the loader hashes whole
 * chunks.
 */
export async function syncOutboard(files: CheckpointFiles, block: IntegrityBlock | undefined): Promise<void> {
  const out = files.tvob;
  const tmp = tempName(out);
  try {
    if (block === undefined || !block.algorithm.startsWith('blake3-') || block.chunk_size < 128 * 1024) {
      await fsp.rm(out, { force: true });
      return;
    }
    const chunkSize = block.chunk_size;
    await runJob('checkpointOutboard', {}, (control) =>
      native().checkpointWriteOutboard(files.weights, tmp, chunkSize, control),
    );
    await fsp.rename(tmp, out);
    await fsyncDir(dirname(out));
  } catch {
    // An accelerator only (see above).
  } finally {
    await fsp.rm(tmp, { force: true }).catch(() => {});
  }
}

/** Result of {@link OutboardReader.verify}. */
export type PieceCheck = 'ok' | 'damaged' | 'unusable';

/** The outboard of an open checkpoint, opened on first use; checks pieces of one chunk at a time. */
export class OutboardReader {
  #path: string;
  #block: IntegrityBlock;
  #fd: number | undefined;
  /** Pieces per chunk; 0 when the outboard is missing or does not describe this file (never used). */
  #pieces: number | undefined;
  #cvs: Buffer = Buffer.alloc(0);

  constructor(path: string, block: IntegrityBlock) {
    this.#path = path;
    this.#block = block;
  }

  /** Pieces per chunk, or 0 when there is no usable outboard (opens it on first call). */
  pieces(): number {
    if (this.#pieces !== undefined) return this.#pieces;
    this.#pieces = 0;
    if (!this.#block.algorithm.startsWith('blake3-')) return 0;
    let fd: number;
    try {
      fd = openSync(this.#path, 'r');
    } catch {
      return 0;
    }
    try {
      const head = Buffer.alloc(HEADER_LEN);
      const got = readSync(fd, head, 0, HEADER_LEN, 0);
      const n =
        got === HEADER_LEN
          ? native().checkpointOutboardPieces(
              head,
              fstatSync(fd).size,
              this.#block.chunk_size,
              this.#block.file_length,
            )
          : 0;
      if (n > 0) {
        this.#fd = fd;
        this.#pieces = n;
        this.#cvs = Buffer.allocUnsafe(n * 32);
        return n;
      }
    } catch {
      // unusable: whole chunks
    }
    closeSync(fd);
    return 0;
  }

  /**
   * Check pieces `[first, last)` of chunk `chunk` (a full chunk) read from `weightsFd` into `scratch`.
   * `unusable`: the outboard's values for the chunk do not merge to `leafHex` (or cannot be read);
   * the caller hashes the whole chunk instead.
   */
  verify(
    chunk: number,
    leafHex: string,
    first: number,
    last: number,
    weightsFd: number,
    scratch: Buffer,
  ): PieceCheck {
    const n = this.pieces();
    const fd = this.#fd;
    if (n === 0 || fd === undefined) return 'unusable';
    const cs = this.#block.chunk_size;
    const piece = cs / n;
    try {
      const at = HEADER_LEN + chunk * n * 32;
      if (readSync(fd, this.#cvs, 0, n * 32, at) !== n * 32) return 'unusable';
      const len = (last - first) * piece;
      const buf = scratch.subarray(0, len);
      if (readSync(weightsFd, buf, 0, len, chunk * cs + first * piece) !== len) return 'damaged';
      const r = native().checkpointOutboardVerify(this.#cvs, leafHex, buf, first, piece);
      return r === 0 ? 'ok' : r === 1 ? 'damaged' : 'unusable';
    } catch {
      return 'unusable';
    }
  }

  /** Close the outboard (reopened on next use, e.g. after a repair replaced the set). */
  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
    this.#pieces = undefined;
  }
}
