/**
 * File-system helpers for the ring log: Node errors → {@link TensorVaultError}, full writes, folder
 * fsync, and the writer lock (`<file>.lock`).
 */
import {
  closeSync,
  fsyncSync,
  linkSync,
  openSync,
  readFileSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { ErrorCode, TensorVaultError } from '../errors';

/** Map a Node fs error to a {@link TensorVaultError} about `path`. */
export function fsError(err: unknown, path: string): TensorVaultError {
  if (err instanceof TensorVaultError) return err;
  const e = err as NodeJS.ErrnoException;
  const ctx = { path, errno: e?.errno ?? null, syscall: e?.syscall ?? null };
  const msg = `${path}: ${e?.message ?? String(err)}`;
  switch (e?.code) {
    case 'ENOENT':
      return new TensorVaultError(ErrorCode.NOT_FOUND, msg, ctx, { cause: err });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new TensorVaultError(ErrorCode.PERMISSION_DENIED, msg, ctx, { cause: err });
    case 'EISDIR':
      return new TensorVaultError(ErrorCode.IS_DIRECTORY, msg, ctx, { cause: err });
    default:
      return new TensorVaultError(ErrorCode.IO, msg, ctx, { cause: err });
  }
}

/** Write all of `buf` to `fd` at `position`, looping over short writes. */
export function writeAllAt(fd: number, buf: Uint8Array, position: number): void {
  let off = 0;
  while (off < buf.length) {
    const n = writeSync(fd, buf, off, buf.length - off, position + off);
    if (n <= 0) throw Object.assign(new Error('write returned 0 bytes'), { code: 'EIO' });
    off += n;
  }
}

/** fsync a folder so a rename inside it is durable. Best effort where folders cannot be opened. */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Some platforms/file systems do not allow fsync on a folder; the rename is still atomic.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

interface LockInfo {
  pid: number;
  hostname: string;
  since: string;
  /** The process start time from /proc (Linux), to tell a reused pid from the lock holder. */
  start?: string;
}

/** Start time of process `pid` (field 22 of /proc/<pid>/stat), or undefined where /proc is missing. */
function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    return stat
      .slice(stat.lastIndexOf(')') + 2)
      .split(' ')
      .at(22 - 3);
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether the lock's holder still runs: its pid is alive and, where known, has the same start time. */
function isHolderAlive(holder: LockInfo): boolean {
  if (!isAlive(holder.pid)) return false;
  if (holder.start === undefined) return true;
  const now = processStart(holder.pid);
  return now === undefined || now === holder.start;
}

function readLock(lockPath: string): LockInfo | undefined {
  try {
    const v = JSON.parse(readFileSync(lockPath, 'utf8')) as Partial<LockInfo>;
    if (typeof v.pid === 'number' && typeof v.hostname === 'string') {
      return {
        pid: v.pid,
        hostname: v.hostname,
        since: String(v.since ?? ''),
        ...(typeof v.start === 'string' ? { start: v.start } : {}),
      };
    }
  } catch {
    // unreadable or damaged lock: treated as stale below
  }
  return undefined;
}

/**
 * Take the writer lock `<file>.lock` for `path`. The lock file appears complete or not at all (written to
 * a temp name, then hard-linked into place, which fails if it exists). A lock left by a dead process on
 * this host (pid gone, or reused by a process with another start time) is taken over; a live holder (this
 * process included) is a `TV_LOCKED` error.
 */
export function acquireLock(path: string): string {
  const lockPath = `${path}.lock`;
  const tmp = `${lockPath}.${process.pid}.tmp`;
  const start = processStart(process.pid);
  const info: LockInfo = {
    pid: process.pid,
    hostname: hostname(),
    since: new Date().toISOString(),
    ...(start !== undefined ? { start } : {}),
  };
  try {
    writeFileSync(tmp, `${JSON.stringify(info)}\n`);
  } catch (err) {
    throw fsError(err, tmp);
  }
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        linkSync(tmp, lockPath);
        return lockPath;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw fsError(err, lockPath);
      }
      const holder = readLock(lockPath);
      const stale = holder === undefined || (holder.hostname === info.hostname && !isHolderAlive(holder));
      if (!stale) {
        throw new TensorVaultError(
          ErrorCode.LOCKED,
          `${path} is already open for writing by ${holder.pid === process.pid ? 'another logger in this process' : `process ${holder.pid} on ${holder.hostname}`} (lock ${lockPath}); one writer per file`,
          { path, lock: lockPath, pid: holder.pid, hostname: holder.hostname, since: holder.since },
        );
      }
      try {
        unlinkSync(lockPath);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fsError(err, lockPath);
      }
    }
    throw new TensorVaultError(ErrorCode.LOCKED, `${path}: could not take the lock ${lockPath}`, {
      path,
      lock: lockPath,
    });
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
  }
}

/** Release a lock taken by {@link acquireLock} if this process still holds it. */
export function releaseLock(lockPath: string): void {
  const holder = readLock(lockPath);
  if (holder !== undefined && holder.pid === process.pid && holder.hostname === hostname()) {
    try {
      unlinkSync(lockPath);
    } catch {
      // already gone
    }
  }
}
