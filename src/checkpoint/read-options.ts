/**
 * The options of a checkpoint's verified range reads ({@link Checkpoint.readRange},
 * {@link Checkpoint.chunks}) and the error of a view too large for one ArrayBuffer that points to
 * them.
 */
import { constants as bufferConstants } from 'node:buffer';
import { ErrorCode, invalidArgument, TensorVaultError } from '../errors';
import { optionalSignal, optionsObject } from '../validate';
import type { Checkpoint } from './lazy';

/** Default size of the pieces {@link Checkpoint.chunks} yields (64 MiB, as `SafetensorsFile.chunks`). */
export const CHUNK_BYTES = 64 * 1024 * 1024;

/** Options of {@link Checkpoint.readRange}. */
export interface CheckpointReadOptions {
  /**
   * Cancels the read: the promise rejects with an `AbortError` (`TV_ABORTED`), at once while it waits
   * behind another check, otherwise when the check or copy running for it stops. A repair from parity
   * that has already replaced the file is not undone.
   */
  signal?: AbortSignal;
}

/** Options of {@link Checkpoint.chunks}. */
export interface CheckpointChunkOptions extends CheckpointReadOptions {
  /**
   * Bytes per piece yielded (default 64 MiB; at most one ArrayBuffer, `buffer.constants.MAX_LENGTH`).
   * Each piece's checkpoint chunks are checked before it is yielded.
   */
  chunkBytes?: number;
}

/**
 * `chunkBytes` of `options` (default {@link CHUNK_BYTES}), checked: an integer from 1 to one
 * ArrayBuffer's maximum (`TV_INVALID_ARGUMENT`).
 */
export function chunkBytesOf(options: CheckpointChunkOptions): number {
  const step = options.chunkBytes ?? CHUNK_BYTES;
  if (!Number.isSafeInteger(step) || step < 1 || step > bufferConstants.MAX_LENGTH) {
    throw invalidArgument(
      'chunkBytes',
      `chunkBytes must be an integer from 1 to ${bufferConstants.MAX_LENGTH}`,
      {
        actual: step,
      },
    );
  }
  return step;
}

/**
 * The checked options of a `chunks()` call (local or remote): `options` an options object, its `signal`
 * an AbortSignal and its `chunkBytes` in range (`TV_INVALID_ARGUMENT` otherwise, in that order).
 */
export function chunkOptionsOf(options: CheckpointChunkOptions): {
  signal: AbortSignal | undefined;
  step: number;
} {
  optionsObject(options);
  const signal = optionalSignal(options.signal);
  return { signal, step: chunkBytesOf(options) };
}

/**
 * `TV_TENSOR_TOO_LARGE` for a view of tensor `name` (`bytes` long) larger than one ArrayBuffer may
 * hold here, naming the verified range reads that can read it.
 */
export function tooLargeForView(name: string, bytes: number): TensorVaultError {
  const q = JSON.stringify(name);
  return new TensorVaultError(
    ErrorCode.TENSOR_TOO_LARGE,
    `tensor ${q} is ${bytes} bytes, more than one ArrayBuffer may hold here ` +
      `(${bufferConstants.MAX_LENGTH}); read it verified with checkpoint.chunks(${q}) or ` +
      `checkpoint.readRange(${q}, offset, length)`,
    { name, actual: bytes, max: bufferConstants.MAX_LENGTH },
  );
}
