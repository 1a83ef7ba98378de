/**
 * The TypeScript side's file plumbing, written once: Node errno → {@link TensorVaultError} (the same
 * rule as the Rust core's `IoError`), folder fsync, full positioned writes, and small reads.
 */
import {
  closeSync,
  constants,
  promises as fsp,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  type Stats,
  statSync,
  writeSync,
} from 'node:fs';
import { constants as osConstants } from 'node:os';
import { dirname } from 'node:path';
import { ErrorCode, TensorVaultError } from '../errors';

/**
 * A Node fs error as a typed error about `path`: `ENOENT` → `TV_NOT_FOUND`, `EACCES`/`EPERM` →
 * `TV_PERMISSION_DENIED`, `EISDIR` → `TV_IS_DIRECTORY`, anything else (`EROFS`, `ENOSPC`, …) →
 * `TV_IO`; `context` carries `path`, `errno` and `syscall`. `what` prefixes the message. `tempPath`:
 * the error happened while writing `path` through that temporary file (an atomic write); the message
 * names `path` only and `context.tempPath` the temporary.
 */
export function ioError(err: unknown, path: string, what?: string, tempPath?: string): TensorVaultError {
  if (err instanceof TensorVaultError)
    return tempPath === undefined ? err : namingDestination(err, tempPath, path);
  const e = err as NodeJS.ErrnoException | undefined;
  const code =
    e?.code === 'ENOENT'
      ? ErrorCode.NOT_FOUND
      : e?.code === 'EACCES' || e?.code === 'EPERM'
        ? ErrorCode.PERMISSION_DENIED
        : e?.code === 'EISDIR'
          ? ErrorCode.IS_DIRECTORY
          : ErrorCode.IO;
  let detail = e?.message ?? String(err);
  // A failure while writing through the temporary file of an atomic write is the destination's:
  // Node's message names the temporary (`, open '<temp>'`, `, rename '<temp>' -> '<dest>'`), so that
  // part is cut; the temporary goes to `tempPath`.
  if (tempPath !== undefined && e?.path === tempPath && typeof e?.syscall === 'string') {
    const at = detail.indexOf(`, ${e.syscall} '`);
    if (at >= 0) detail = detail.slice(0, at + 2 + e.syscall.length);
  } else if (tempPath !== undefined && (e as { dest?: unknown } | undefined)?.dest === tempPath) {
    detail = detail.replace(` -> '${tempPath}'`, ''); // copyfile '<src>' -> '<temp>'
  }
  return new TensorVaultError(
    code,
    what === undefined ? `${path}: ${detail}` : `${what} ${path}: ${detail}`,
    {
      path,
      // errno positive, as errno.h and the native core report it (libuv's is negative).
      errno: typeof e?.errno === 'number' ? Math.abs(e.errno) : null,
      syscall: e?.syscall ?? null,
      ...(tempPath !== undefined ? { tempPath } : {}),
    },
    { cause: err },
  );
}

/**
 * `err` as an error about `dest` when it is about `temp`, the temporary file written in place of
 * `dest` (its `context.path`): the same code, the message naming `dest`, `context.path` = `dest` and
 * `context.tempPath` = the temporary (kept when the error already has one: the native writers' own
 * temporary inside `temp`). Any other error is returned as it is.
 */
export function namingDestination(err: TensorVaultError, temp: string, dest: string): TensorVaultError {
  if (err.context.path !== temp) return err;
  const ctx = err.context as Record<string, unknown>;
  return new TensorVaultError(
    err.code,
    err.message.split(temp).join(dest),
    { ...err.context, path: dest, tempPath: typeof ctx.tempPath === 'string' ? ctx.tempPath : temp },
    { cause: err },
  );
}

/**
 * `err` as thrown at a public API's boundary: a Node system error (an `fs` call's `ENOSPC`, `EIO`, …,
 * with its `syscall`) becomes the {@link ioError} about its own path (else `path`); anything else is
 * returned as it is.
 */
export function typedIoError(err: unknown, path: string): unknown {
  if (err instanceof TensorVaultError) return err;
  const e = err as NodeJS.ErrnoException | undefined;
  if (e instanceof Error && typeof e.code === 'string' && typeof e.syscall === 'string') {
    return ioError(err, typeof e.path === 'string' ? e.path : path);
  }
  return err;
}

/**
 * Close `handle` (a `FileHandle`, or anything with a `close()`) as a clean-up in a `finally` or a
 * `catch`: best effort, never throws, so that it never replaces the error that is on its way out (or
 * leaves what comes after it undone). Only for handles whose writes were already fsynced, or that were
 * only read or are temporaries: a failed close loses nothing there.
 */
export async function closeQuietly(handle: { close(): unknown } | undefined): Promise<void> {
  try {
    await handle?.close();
  } catch {
    // best effort: the error on its way out, if any, is the one the caller sees
  }
}

/**
 * Remove `path` (recursively, `force`) as a clean-up of a temporary file or work folder in a `finally`
 * or a `catch`: best effort, never throws, so that it never replaces the error that is on its way out
 * (`force` ignores only `ENOENT`: an `EACCES`, `EBUSY` or `ENOTDIR` would otherwise be thrown instead).
 */
export async function removeQuietly(path: string): Promise<void> {
  try {
    await fsp.rm(path, { recursive: true, force: true });
  } catch {
    // best effort: a leftover temporary is harmless, a replaced error is not
  }
}

/** Errors of an fsync on a folder that mean "this file system cannot", not "it failed". */
const FSYNC_DIR_UNSUPPORTED = new Set(['EINVAL', 'ENOTSUP', 'EOPNOTSUPP']);

/** fsync a folder so that a rename or unlink inside it survives a crash (async). */
export async function fsyncDir(dir: string): Promise<void> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    await fh.sync();
  } catch (err) {
    if (FSYNC_DIR_UNSUPPORTED.has((err as NodeJS.ErrnoException).code ?? '')) return;
    throw ioError(err, dir, 'cannot fsync folder');
  } finally {
    await closeQuietly(fh);
  }
}

/** {@link fsyncDir} on the calling thread (for synchronous writers such as the ring log). */
export function fsyncDirSync(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    fsyncSync(fd);
  } catch (err) {
    if (FSYNC_DIR_UNSUPPORTED.has((err as NodeJS.ErrnoException).code ?? '')) return;
    throw ioError(err, dir, 'cannot fsync folder');
  } finally {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // best effort: never replaces the error on its way out
      }
    }
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

/** Read a file, or `undefined` when it does not exist. */
export async function readIfExists(path: string): Promise<Buffer | undefined> {
  try {
    return await fsp.readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw ioError(err, path, 'cannot read');
  }
}

/** True when `path` exists (any type; symlinks are not followed). */
export async function exists(path: string): Promise<boolean> {
  try {
    await fsp.lstat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw ioError(err, path, 'cannot stat');
  }
}

/** What a special file is, with its article (`a FIFO`), or undefined for a file or folder. */
function kindOf(st: Stats): string | undefined {
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  return undefined;
}

/**
 * The typed error for a path that is not a regular file: `TV_IS_DIRECTORY` for a folder, else
 * `TV_NOT_A_FILE` naming what it is (a character or block device, a FIFO, a socket). `verb` says what
 * was refused ("read", "replace").
 */
export function notRegularFile(path: string, st: Stats, verb: string): TensorVaultError {
  if (st.isDirectory()) {
    return new TensorVaultError(ErrorCode.IS_DIRECTORY, `${path} is a folder; refusing to ${verb} it`, {
      path,
    });
  }
  const kind = kindOf(st) ?? 'not a regular file';
  return new TensorVaultError(
    ErrorCode.NOT_A_FILE,
    `${path} is ${kind}, not a regular file; refusing to ${verb} it`,
    { path, kind },
  );
}

/**
 * The typed error for a path that is not a folder where one is expected: `TV_NOT_A_FILE` with
 * `context.kind` saying what it is (a regular file, a FIFO, …). `what` names the folder's role, with its
 * article (`a run folder`).
 */
export function notAFolder(path: string, st: Stats | undefined, what = 'a folder'): TensorVaultError {
  const kind = (st?.isFile() ? 'a regular file' : st && kindOf(st)) ?? 'not a folder';
  return new TensorVaultError(ErrorCode.NOT_A_FILE, `${path} is ${kind}, not ${what}`, {
    path,
    kind,
  });
}

/**
 * The {@link notAFolder} error for the nearest existing component of `path` (from `path` itself up)
 * when that component is not a folder, else `undefined`: what an `EEXIST` / `ENOTDIR` on a path
 * under a regular file means. `what` is the role of `path` itself, with its article.
 */
export function notAFolderAbove(path: string, what = 'a folder'): TensorVaultError | undefined {
  for (let p = path; ; p = dirname(p)) {
    let st: Stats | undefined;
    try {
      st = statSync(p);
    } catch {
      st = undefined;
    }
    if (st !== undefined)
      return st.isDirectory() ? undefined : notAFolder(p, st, p === path ? what : 'a folder');
    if (dirname(p) === p) return undefined;
  }
}

const errnos = osConstants.errno;

/** Whether `err` is a Node error, or a typed one from the core, with the errno of `ENOTDIR` / `EEXIST`. */
function isNotDirError(err: unknown): boolean {
  if (err instanceof TensorVaultError) {
    const errno = (err.context as { errno?: unknown }).errno;
    return errno === errnos.ENOTDIR || errno === errnos.EEXIST;
  }
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOTDIR' || code === 'EEXIST';
}

/**
 * For `err`, raised while creating, opening or stat-ing `path`: `TV_NOT_A_FILE` naming the path
 * component above `path` that is a regular file (or another non-folder) where a folder should be,
 * when that is what an `ENOTDIR` / `EEXIST` in it means; otherwise `undefined`. Works on Node's
 * errors and on the core's (whose `ENOTDIR` is a `TV_IO` with `context.errno` 20).
 */
export function folderError(err: unknown, path: string): TensorVaultError | undefined {
  return isNotDirError(err) ? notAFolderAbove(dirname(path)) : undefined;
}

/** Options of {@link makeFolder}. */
export interface MakeFolderOptions {
  /** The mode of each folder created (less the umask), as `fs.mkdir`'s. */
  mode?: number;
}

/**
 * Create the folder `dir` and its missing parents (`mkdir -p`), failing with a typed error: a path
 * component that exists but is not a folder (a regular file where a parent folder should be) is
 * `TV_NOT_A_FILE` naming that component (see {@link notAFolder}; `what` is the role of `dir` itself,
 * with its article), anything else the {@link ioError} of `dir` (`TV_PERMISSION_DENIED`, `TV_IO`, …).
 * Node's own `mkdir` rejects with a bare `EEXIST` or `ENOTDIR` there. Resolves to the first folder it
 * created, `undefined` when `dir` existed (as `fs.mkdir` with `recursive`). Every `mkdir` of this
 * library on a caller's path goes through it (or {@link makeFolderSync}), so the same situation has
 * the same code everywhere.
 */
export async function makeFolder(
  dir: string,
  what = 'a folder',
  options: MakeFolderOptions = {},
): Promise<string | undefined> {
  try {
    return await fsp.mkdir(dir, { recursive: true, ...options });
  } catch (err) {
    throw (isNotDirError(err) ? notAFolderAbove(dir, what) : undefined) ?? ioError(err, dir, 'cannot create');
  }
}

/** {@link makeFolder} on the calling thread (for synchronous writers such as the ring log). */
export function makeFolderSync(
  dir: string,
  what = 'a folder',
  options: MakeFolderOptions = {},
): string | undefined {
  try {
    return mkdirSync(dir, { recursive: true, ...options });
  } catch (err) {
    throw (isNotDirError(err) ? notAFolderAbove(dir, what) : undefined) ?? ioError(err, dir, 'cannot create');
  }
}

/**
 * Check that `path` is a folder (following symlinks) and can be listed: `TV_NOT_FOUND`,
 * `TV_NOT_A_FILE` (see {@link notAFolder}) or `TV_PERMISSION_DENIED` otherwise.
 */
export function assertFolderSync(path: string, what = 'a folder'): void {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (err) {
    throw ioError(err, path, `cannot open ${what.replace(/^an? /, 'the ')}`);
  }
  if (!st.isDirectory()) throw notAFolder(path, st, what);
}

/**
 * Check that `path` is a regular file (following symlinks) without opening it, so a FIFO or a device
 * is refused at once instead of blocking a read; returns its size. `TV_NOT_FOUND`, `TV_IS_DIRECTORY`,
 * `TV_NOT_A_FILE` otherwise.
 */
export async function assertRegularFile(path: string): Promise<number> {
  let st: Stats;
  try {
    st = await fsp.stat(path);
  } catch (err) {
    throw ioError(err, path, 'cannot open');
  }
  if (!st.isFile()) throw notRegularFile(path, st, 'read');
  return st.size;
}

/**
 * Read a whole regular file on the calling thread. The open is non-blocking and the type is checked
 * on the open descriptor, so a FIFO or a device (`/dev/zero`) is refused at once rather than read
 * forever. `undefined` when the file does not exist and `missingOk`.
 */
export function readRegularFileSync(path: string, missingOk = false): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    if (missingOk && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw ioError(err, path, 'cannot open');
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw notRegularFile(path, st, 'read');
    return readFileSync(fd);
  } catch (err) {
    throw ioError(err, path, 'cannot read');
  } finally {
    closeSync(fd);
  }
}
