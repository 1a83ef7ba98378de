/**
 * Small file helpers shared by the event log and backups: atomic replacement (temp file, fsync,
 * rename, fsync the folder) and errno → {@link TensorVaultError} mapping.
 */
import { randomBytes } from 'node:crypto';
import { constants, promises as fsp } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ErrorCode, TensorVaultError } from '../errors';

/** Turn a Node fs error into a typed error with the path and errno. */
export function ioError(err: unknown, path: string, what: string): TensorVaultError {
  if (err instanceof TensorVaultError) return err;
  const e = err as NodeJS.ErrnoException;
  const code =
    e.code === 'ENOENT'
      ? ErrorCode.NOT_FOUND
      : e.code === 'EACCES' || e.code === 'EPERM'
        ? ErrorCode.PERMISSION_DENIED
        : e.code === 'EISDIR'
          ? ErrorCode.IS_DIRECTORY
          : ErrorCode.IO;
  return new TensorVaultError(
    code,
    `${what} ${path}: ${e.message ?? String(err)}`,
    { path, ...(typeof e.errno === 'number' ? { errno: e.errno } : {}), syscall: e.syscall ?? null },
    { cause: err },
  );
}

/** fsync a folder so a rename or unlink inside it is durable. */
export async function fsyncDir(dir: string): Promise<void> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    await fh.sync();
  } catch (err) {
    throw ioError(err, dir, 'cannot fsync folder');
  } finally {
    await fh?.close();
  }
}

/** Temp-file name next to `path` (same folder, so the rename is atomic). */
export function tempName(path: string): string {
  return join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
}

/**
 * Replace `path` atomically with `data`: write a temp file in the same folder, fsync it, rename it over
 * `path`, fsync the folder. A crash leaves the old file or the new one, never a torn one.
 */
export async function atomicWriteFile(
  path: string,
  data: string | Uint8Array,
  mode = 0o644,
  sync = true,
): Promise<void> {
  const tmp = tempName(path);
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
    await fh.writeFile(data);
    if (sync) await fh.sync();
    await fh.close();
    fh = undefined;
    await fsp.rename(tmp, path);
  } catch (err) {
    await fh?.close().catch(() => {});
    await fsp.rm(tmp, { force: true }).catch(() => {});
    throw ioError(err, path, 'cannot write');
  }
  if (sync) await fsyncDir(dirname(path));
}

/** Read a file, returning `undefined` when it does not exist. */
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
