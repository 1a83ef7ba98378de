/**
 * Single-writer lock for an event log.
 *
 * Mechanism: a lock file created with `O_CREAT | O_EXCL` (atomic on local filesystems and NFSv3+)
 * holding `{pid, hostname, created_at, token}`. A lock whose owner is on this host and no longer
 * alive (`kill(pid, 0)` → `ESRCH`) is stale: it is broken under a second `O_EXCL` guard file
 * (`<lock>.break`), so two processes breaking the same stale lock cannot both win. A guard older
 * than 30 s is itself stale (its owner died mid-break). Locks from another host are never broken
 * automatically. The lock is released on `release()` and, best effort, at process exit.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { ErrorCode, TensorVaultError } from '../errors';
import { ioError } from './fsutil';

interface LockInfo {
  pid: number;
  hostname: string;
  created_at: string;
  token: string;
}

function readLock(path: string): LockInfo | undefined {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as Partial<LockInfo>;
    if (typeof v.pid === 'number' && typeof v.hostname === 'string' && typeof v.token === 'string') {
      return v as LockInfo;
    }
  } catch {
    // unreadable or half-written: treated below
  }
  return undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function tryCreate(path: string, content: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw ioError(err, path, 'cannot create lock file');
  }
  try {
    writeSync(fd, content);
  } finally {
    closeSync(fd);
  }
  return true;
}

const sleep = (ms: number): void => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
};

/** A held writer lock. */
export class WriterLock {
  readonly path: string;
  readonly #token: string;
  #held = true;
  readonly #onExit = (): void => this.release();

  private constructor(path: string, token: string) {
    this.path = path;
    this.#token = token;
    process.once('exit', this.#onExit);
  }

  /**
   * Take the lock at `path`, waiting up to `timeoutMs` (polling) while a live process holds it.
   * Throws `TV_LOCKED` with the holder's pid and host when it cannot.
   */
  static acquire(path: string, timeoutMs = 0): WriterLock {
    const token = randomBytes(16).toString('hex');
    const content = JSON.stringify({
      pid: process.pid,
      hostname: hostname(),
      created_at: new Date().toISOString(),
      token,
    });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (tryCreate(path, content)) return new WriterLock(path, token);
      const info = readLock(path);
      if (WriterLock.#isStale(path, info)) {
        WriterLock.#breakStale(path, info);
        continue;
      }
      if (Date.now() >= deadline) {
        throw new TensorVaultError(
          ErrorCode.LOCKED,
          `event log is locked by ${info ? `pid ${info.pid} on ${info.hostname}` : 'another process'}: ${path}`,
          { path, pid: info?.pid ?? null, hostname: info?.hostname ?? null },
        );
      }
      sleep(Math.min(20, Math.max(1, deadline - Date.now())));
    }
  }

  static #isStale(path: string, info: LockInfo | undefined): boolean {
    if (info === undefined) {
      // Half-written lock: stale only once it is old enough that its writer cannot still be writing.
      try {
        return Date.now() - statSync(path).mtimeMs > 5_000;
      } catch {
        return false;
      }
    }
    return info.hostname === hostname() && info.pid !== process.pid && !alive(info.pid);
  }

  static #breakStale(path: string, info: LockInfo | undefined): void {
    const guard = `${path}.break`;
    if (!tryCreate(guard, String(process.pid))) {
      try {
        if (Date.now() - statSync(guard).mtimeMs > 30_000) unlinkSync(guard);
      } catch {
        // gone already
      }
      sleep(5);
      return;
    }
    try {
      // Re-check under the guard: the lock may have been broken and retaken meanwhile.
      const now = readLock(path);
      if (now?.token === info?.token && WriterLock.#isStale(path, now)) {
        try {
          unlinkSync(path);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(err, path, 'cannot break lock');
        }
      }
    } finally {
      try {
        unlinkSync(guard);
      } catch {
        // ignore
      }
    }
  }

  /** True while this lock is held. */
  get held(): boolean {
    return this.#held;
  }

  /** Release the lock (only if the file still carries this holder's token). Idempotent. */
  release(): void {
    if (!this.#held) return;
    this.#held = false;
    process.removeListener('exit', this.#onExit);
    if (readLock(this.path)?.token === this.#token) {
      try {
        unlinkSync(this.path);
      } catch {
        // already gone
      }
    }
  }
}
