/** Repairs of a checkpoint set under its writer lock, and which of their errors say nothing of the parity. */
import { statSync } from 'node:fs';
import { ErrorCode, TensorVaultError } from '../errors';
import { lockSetAsync } from './commit';
import type { Parsed } from './parse';

/**
 * Whether a repair's error is about the machine rather than the parity: the disk (full, failing
 * reads: `TV_IO`), permissions, a lock held by another writer. The damage may still be repairable,
 * so the error is reported as it is, not as damage beyond the parity.
 */
export function notAboutParity(err: unknown): boolean {
  return (
    err instanceof TensorVaultError &&
    (err.code === ErrorCode.IO ||
      err.code === ErrorCode.PERMISSION_DENIED ||
      err.code === ErrorCode.LOCKED ||
      replacedMeanwhile(err))
  );
}

/**
 * The refusal of {@link underLock}: the weights were replaced by a newer save since they were opened,
 * so nothing was repaired. It says nothing of the parity (the newer set is another checkpoint).
 */
export function replacedMeanwhile(err: unknown): boolean {
  return (
    err instanceof TensorVaultError &&
    err.code === ErrorCode.FILE_CHANGED &&
    (err.context as { reason?: unknown }).reason === 'replaced'
  );
}

/**
 * An error of a parity check to rethrow: about the machine or the call (not typed, an abort,
 * {@link notAboutParity}). Any other error of the parity means it cannot repair the damage.
 */
export function rethrownByParity(err: unknown): boolean {
  return !(err instanceof TensorVaultError) || err.code === ErrorCode.ABORTED || notAboutParity(err);
}

/**
 * `TV_FILE_CHANGED` (`reason: 'replaced'`): the weights at `path` are no longer the file that was
 * opened (a newer save, or another process's repair, renamed another file into place). `outcome` says
 * what was therefore not done.
 */
export function replacedError(
  path: string,
  outcome: string,
  context: Record<string, string | number> = {},
): TensorVaultError {
  return new TensorVaultError(
    ErrorCode.FILE_CHANGED,
    `${path} was replaced (by a newer save?) since it was opened; ${outcome}`,
    { ...context, path, reason: 'replaced' },
  );
}

/**
 * Run a repair (which replaces files) under the set's writer lock, after checking that the weights on
 * disk are still the file that was verified (`ino`): a newer save may have replaced them meanwhile, and
 * a repaired old file must never be renamed over a newer set (`TV_FILE_CHANGED`, `reason: 'replaced'`).
 * `signal` stops the wait for the lock.
 */
export async function underLock<T>(
  p: Parsed,
  ino: number | undefined,
  fn: () => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  const lock = await lockSetAsync(p.files, 30_000, signal);
  try {
    if (ino !== undefined) {
      let now: number | undefined;
      try {
        now = statSync(p.weights).ino;
      } catch {
        now = undefined;
      }
      if (now !== ino) throw replacedError(p.files.weights, 'not repaired');
    }
    return await fn();
  } finally {
    lock.release();
  }
}
