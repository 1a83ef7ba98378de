/**
 * The one writer lock, for the ring log, the event log and restores: an advisory `flock` on a lock
 * file, taken and held by the Rust core (`io/lock.rs`). The kernel releases it when its holder dies,
 * however it dies, so there is no stale lock to detect: a reused pid (a container restarted with the
 * writer as pid 1), a lock file torn by a crash or written by hand, and two processes racing for a
 * free lock are all handled by the kernel. The file holds one JSON line about the holder (pid, host,
 * since), used only in the message of a refused writer. A second writer in the same
 * process is refused as well. The file is removed on release. One exception reads the note: a
 * tensorvault from before this lock (built before f236a3e) locked by its note alone, and a note of that
 * kind naming a live process on this host refuses the lock during a rolling upgrade (`TV_LOCKED`,
 * `context.olderBuild: 'note-lock'`); a dead process's note is taken over.
 */
import { hostname } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { disposeSymbol } from '../dispose';
import { abortError, callNative, ErrorCode, TensorVaultError, throwIfAborted } from '../errors';
import { type NativeFileLock, native } from '../native';

/** What a lock file says about its holder. */
export interface LockHolder {
  pid?: number;
  hostname?: string;
  since?: string;
}

/** Options of {@link WriterLock.acquire}. */
export interface AcquireLockOptions {
  /** Keep trying for this long while another writer holds the lock (default 0: fail at once). */
  timeoutMs?: number;
  /** Builds the `TV_LOCKED` message from the holder's description. */
  describe?: (holder: LockHolder) => string;
  /**
   * Release the lock (and remove its file) in the process's `exit` event (default true). The ring log
   * passes false: it still writes during `exit` (its pending records, then records logged by later
   * `exit` listeners), so its lock is held until the process ends and the kernel lets go of it; the
   * lock file stays behind and the next writer takes it over.
   */
  releaseAtExit?: boolean;
}

/** Locks released in the process's `exit` event: one listener for all of them, not one per lock. */
const releasedAtExit = new Set<WriterLock>();
let exitListener = false;

function releaseAllAtExit(): void {
  for (const lock of [...releasedAtExit]) lock.release();
}

const sleep = (ms: number): void => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
};

/**
 * This process's description, written into the lock file for a refused writer's message. Never ended by
 * a newline: the ring log of a build before the flock lock wrote `{pid, hostname, since}` plus a newline
 * where it had no `start`, and that newline is how io/lock.rs tells its note from this one.
 */
function holderLine(): string {
  return JSON.stringify({ pid: process.pid, hostname: hostname(), since: new Date().toISOString() });
}

function parseHolder(text: unknown): LockHolder {
  try {
    const v = JSON.parse(String(text)) as Record<string, unknown>;
    return {
      ...(typeof v.pid === 'number' ? { pid: v.pid } : {}),
      ...(typeof v.hostname === 'string' ? { hostname: v.hostname } : {}),
      ...(typeof v.since === 'string' ? { since: v.since } : {}),
      // An older build's event-log note says when it was taken as `created_at`.
      ...(typeof v.since !== 'string' && typeof v.created_at === 'string' ? { since: v.created_at } : {}),
    };
  } catch {
    return {};
  }
}

/** A held writer lock. */
export class WriterLock {
  /** The lock file. */
  readonly path: string;
  #native: NativeFileLock;

  private constructor(path: string, lock: NativeFileLock, releaseAtExit: boolean) {
    this.path = path;
    this.#native = lock;
    if (releaseAtExit) {
      releasedAtExit.add(this);
      if (!exitListener) {
        process.on('exit', releaseAllAtExit);
        exitListener = true;
      }
    }
  }

  /**
   * Take the lock at `path` (a file, created if missing; anything but a regular file is refused
   * with `TV_NOT_A_FILE`), waiting up to `timeoutMs` while another writer holds it. Throws
   * `TV_LOCKED` with the holder's `pid`, `hostname` and `since` in `context` when it cannot.
   */
  static acquire(path: string, options: AcquireLockOptions = {}): WriterLock {
    const deadline = Date.now() + (options.timeoutMs ?? 0);
    for (;;) {
      try {
        return new WriterLock(
          path,
          callNative(() => native().lockFile(path, holderLine())),
          options.releaseAtExit ?? true,
        );
      } catch (err) {
        if (!(err instanceof TensorVaultError) || err.code !== ErrorCode.LOCKED) throw err;
        if (Date.now() < deadline) {
          sleep(Math.min(20, Math.max(1, deadline - Date.now())));
          continue;
        }
        const holder = parseHolder(err.context.holder);
        if ((err.context as { olderBuild?: unknown }).olderBuild !== undefined) {
          // A tensorvault from before the flock lock, still running here: it takes no flock, so the
          // free flock meant nothing (io/lock.rs, `older_live_holder`).
          throw new TensorVaultError(
            ErrorCode.LOCKED,
            `${path} is held by an older tensorvault (pid ${holder.pid ?? '?'} on ${holder.hostname ?? 'this host'}), which locks by its lock-file note and takes no flock: stop it or let it finish before a newer version writes here`,
            {
              path,
              lock: path,
              pid: holder.pid ?? null,
              hostname: holder.hostname ?? null,
              since: holder.since ?? null,
              olderBuild: 'note-lock',
            },
          );
        }
        const who =
          holder.pid === undefined
            ? 'another writer'
            : holder.pid === process.pid && holder.hostname === hostname()
              ? 'another writer in this process'
              : `process ${holder.pid} on ${holder.hostname ?? 'an unknown host'}`;
        throw new TensorVaultError(
          ErrorCode.LOCKED,
          options.describe?.(holder) ?? `${path} is locked by ${who}`,
          {
            path,
            lock: path,
            pid: holder.pid ?? null,
            hostname: holder.hostname ?? null,
            since: holder.since ?? null,
          },
        );
      }
    }
  }

  /**
   * {@link WriterLock.acquire} for async callers: the wait for another writer (up to `timeoutMs`)
   * sleeps on timers instead of blocking the thread, so the event loop keeps running (and a holder in
   * this same process, such as an earlier save of the same checkpoint, can finish and let go; with
   * the blocking wait it could not, and the second save failed with `TV_LOCKED` after freezing the
   * process for the whole timeout). `signal` aborts the wait (`TensorVaultAbortError`).
   */
  static async acquireAsync(
    path: string,
    options: AcquireLockOptions & { signal?: AbortSignal | undefined } = {},
  ): Promise<WriterLock> {
    const { signal, ...rest } = options;
    const deadline = Date.now() + (options.timeoutMs ?? 0);
    let wait = 1;
    for (;;) {
      try {
        return WriterLock.acquire(path, { ...rest, timeoutMs: 0 });
      } catch (err) {
        if (!(err instanceof TensorVaultError) || err.code !== ErrorCode.LOCKED) throw err;
        if (Date.now() >= deadline) throw err;
      }
      throwIfAborted(signal);
      try {
        await delay(Math.min(wait, Math.max(1, deadline - Date.now())), undefined, signal ? { signal } : {});
      } catch {
        throw abortError(signal);
      }
      wait = Math.min(wait * 2, 20);
    }
  }

  /** True while this lock is held. */
  get held(): boolean {
    return this.#native.held;
  }

  /** Remove the lock file and release the lock. Idempotent. */
  release(): void {
    if (!this.#native.held) return;
    releasedAtExit.delete(this);
    this.#native.release();
  }

  /** `using lock = WriterLock.acquire(...)`: released at the end of the scope. */
  [disposeSymbol](): void {
    this.release();
  }
}
