/**
 * The checkpoint outboard `NAME.safetensors.tvob` (`docs/formats/checkpoint.md`, "The outboard"): the
 * BLAKE3 chaining values of the 64 KiB pieces of each `blake3-tree-v1` leaf, so that a lazy load
 * verifies only the pieces a tensor covers instead of its whole 1 MiB chunk. It is an accelerator and
 * untrusted: a chunk's values are used only after they merge to the sealed leaf; a missing, stale or
 * tampered outboard makes the loader hash whole chunks as before.
 */
import { promises as fsp } from 'node:fs';
import { dirname } from 'node:path';
import { keepAttributesOf, tempName } from '../io/atomic';
import { fsyncDir } from '../io/fs';
import { runJob } from '../job';
import { native } from '../native';
import type { NativeOutboard } from '../native/binding';
import type { CheckpointFiles, IntegrityBlock } from './layout';

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
    await keepAttributesOf(tmp, out, files.weights);
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
  #handle: NativeOutboard | null | undefined;

  /** `handle`: the outboard already opened (by the checkpoint open's fast path) for this block. */
  constructor(path: string, block: IntegrityBlock, handle?: NativeOutboard) {
    this.#path = path;
    this.#block = block;
    if (handle !== undefined) this.#handle = handle;
  }

  /** Pieces per chunk, or 0 when there is no usable outboard (opens it on first call). */
  pieces(): number {
    if (this.#handle === undefined) {
      this.#handle = null;
      if (this.#block.algorithm.startsWith('blake3-')) {
        try {
          this.#handle =
            native().checkpointOutboardOpen(this.#path, this.#block.chunk_size, this.#block.file_length) ??
            null;
        } catch {
          // unusable: whole chunks
        }
      }
    }
    return this.#handle === null ? 0 : this.#handle.pieces();
  }

  /**
   * Check pieces `[first, last)` of chunk `chunk` (a full chunk), read from `weightsFd` by the addon.
   * `unusable`: the outboard's values for the chunk do not merge to `leafHex` (or cannot be read); the
   * caller hashes the whole chunk instead.
   */
  verify(chunk: number, leafHex: string, first: number, last: number, weightsFd: number): PieceCheck {
    this.pieces(); // opens it on first use
    const handle = this.#handle;
    if (handle == null) return 'unusable';
    try {
      const r = handle.verify(chunk, leafHex, first, last, weightsFd);
      return r === 0 ? 'ok' : r === 1 ? 'damaged' : 'unusable';
    } catch {
      return 'unusable';
    }
  }

  /** Close the outboard (reopened on next use, e.g. after a repair replaced the set). */
  close(): void {
    this.#handle?.close();
    this.#handle = undefined;
  }
}
