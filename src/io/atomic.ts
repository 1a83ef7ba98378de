/**
 * Atomic replacement for the files the TypeScript side writes (JSON sidecars, manifests, the ring
 * log's compaction, the event log's metadata): a temporary file in the same folder, fsync, rename over
 * the target, fsync the folder. A crash leaves the old file or the new one, never a torn one. The Rust
 * core's writers do the same in `io/atomic.rs`, with the same target rule ({@link writableTarget}).
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  fdatasyncSync,
  promises as fsp,
  fstatSync,
  lstatSync,
  openSync,
  readdirSync,
  realpathSync,
  renameSync,
  type Stats,
  statSync,
  unlinkSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { callNative, ErrorCode, TensorVaultError } from '../errors';
import { native } from '../native';
import { folderError, fsyncDir, fsyncDirSync, ioError, notRegularFile, writeAllAt } from './fs';

/** Longest file name (UTF-8 bytes) a temporary's name holds whole ({@link tempStem}). */
export const TEMP_STEM_MAX = 200;
/** How many bytes of a longer name a temporary's name keeps, before `~` and the hash. */
const TEMP_STEM_CUT = 190;

/**
 * The part of a temporary's name that stands for the file `name` it replaces: `name` itself, or, for
 * a name longer than {@link TEMP_STEM_MAX} bytes (whose `.NAME.PID.X.tmp` could pass NAME_MAX, 255
 * bytes, and fail with ENAMETOOLONG although the name itself is legal), its first 190 bytes (whole
 * characters), `~` and the FNV-1a 32-bit hash of the whole name (8 hex digits). The core makes the
 * same (`temp_stem` in `io/atomic.rs`), so each side's sweeps recognise the other's temporaries.
 */
export function tempStem(name: string): string {
  const bytes = Buffer.from(name, 'utf8');
  if (bytes.length <= TEMP_STEM_MAX) return name;
  let cut = TEMP_STEM_CUT;
  while (cut > 0 && ((bytes[cut] as number) & 0xc0) === 0x80) cut--;
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return `${bytes.subarray(0, cut).toString('utf8')}~${h.toString(16).padStart(8, '0')}`;
}

/**
 * Temp-file name next to `path` (same folder, so the rename is atomic): `.NAME.PID.RANDOM.tmp` (NAME
 * as {@link tempStem} gives it), so a later writer can tell a dead writer's leftover from a live one's
 * file ({@link removeDeadTemps}).
 */
export function tempName(path: string): string {
  return join(
    dirname(path),
    `.${tempStem(basename(path))}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`,
  );
}

/**
 * Lock the temp just created at `tmp` through its descriptor `fd`: an exclusive `flock`, held until
 * `fd` is closed, that marks its writer alive for every sweep of dead writers' temps (here and in the
 * core, in this PID namespace or another). True when it is locked and `tmp` still names it; false when
 * a sweep took it between its creation and the lock (the writer then uses another name). On a file
 * system without `flock` the temp is used unlocked.
 */
export function lockTemp(fd: number, tmp: string): boolean {
  try {
    if (!callNative(() => native().tryLockFd(fd, tmp))) return false;
  } catch {
    // no flock here: unlocked, as before locks
  }
  try {
    const mine = fstatSync(fd);
    const now = lstatSync(tmp);
    return mine.dev === now.dev && mine.ino === now.ino;
  } catch {
    return false;
  }
}

/** How many fresh names a writer tries when sweeps keep taking its new temps. */
const TEMP_TRIES = 64;

/**
 * Create and lock ({@link lockTemp}) a new temp for `target` (`O_EXCL`, `mode`), retrying under a new
 * name when a sweep took it; returns the open file and its path. A failure is a typed error about
 * `target` (`what` it says), the temp's path in `context.tempPath`.
 */
export async function createLockedTemp(
  target: string,
  mode: number,
  what = 'cannot write',
): Promise<{ fh: fsp.FileHandle; tmp: string }> {
  for (let i = 0; ; i++) {
    const tmp = tempName(target);
    const fh = await fsp
      .open(tmp, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, mode)
      .catch((err: unknown) => {
        throw ioError(err, target, what, tmp);
      });
    if (lockTemp(fh.fd, tmp)) return { fh, tmp };
    await fh.close();
    if (i + 1 >= TEMP_TRIES) {
      throw new TensorVaultError(ErrorCode.IO, `${target}: its temporary files kept being removed`, {
        path: target,
        tempPath: tmp,
      });
    }
  }
}

/** Whether process `pid` exists on this host (`EPERM`: it exists, owned by someone else). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A folder's `.*.tmp` entries as its last listing found them, by folder (see {@link tempsIn}). */
const listings = new Map<string, { at: number; entries: number; temps: string[] }>();
const LISTINGS_MAX = 1024;
/** A folder of at least this many entries is large: its listing is reused for a while. */
const LARGE_FOLDER = 2048;
/** How long a large folder's listing is reused, per entry (ms): 50,000 entries for 1 s. */
const REUSE_MS_PER_ENTRY = 0.02;

/**
 * The `.*.tmp` entries of `dir`: listed now, or, for a large folder ({@link LARGE_FOLDER} entries),
 * from its last listing when that is recent (`fresh` forces a listing). Listing the folder on every
 * write made writing N files into one folder cost O(N²): 17 ms per write at 50,000 entries, against
 * 0.6 ms in a small folder. A small folder is listed on every call, so a dead writer's temp is gone
 * after the next write; in a large one, a temp left by a writer that died since the listing is removed
 * by a later write.
 */
export function tempsIn(dir: string, fresh = false): string[] {
  const last = listings.get(dir);
  const now = performance.now();
  if (
    !fresh &&
    last !== undefined &&
    last.entries >= LARGE_FOLDER &&
    now - last.at < last.entries * REUSE_MS_PER_ENTRY
  )
    return last.temps;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const temps = names.filter((n) => n.startsWith('.') && n.endsWith('.tmp'));
  if (listings.size >= LISTINGS_MAX) listings.clear();
  listings.set(dir, { at: now, entries: names.length, temps });
  return temps;
}

/** @internal Tests: the last listing of `dir`, or undefined. */
export function lastListing(dir: string): { at: number; entries: number; temps: string[] } | undefined {
  return listings.get(dir);
}

/** Forget `name` in `dir`'s last listing (it was removed). */
export function forgetTemp(dir: string, name: string): void {
  const last = listings.get(dir);
  if (last !== undefined) last.temps = last.temps.filter((t) => t !== name);
}

/**
 * Remove temporary files for `path` left by writers that are dead (a kill mid-write leaves one as large
 * as the file): `.NAME.PID.X.tmp` whose PID does not run here and whose lock ({@link lockTemp}) can be
 * taken. Live writers' files are kept, also those of writers in another PID namespace sharing the
 * folder (two containers), whose PID means nothing here: they hold their temp's lock. Temps named with
 * this process's own PID are removed when their lock is free: a write stopped inside this process (its
 * worker thread terminated mid-write) left them, and a live writer of this process, in any thread,
 * holds its temp's lock. This costs no listing of its own (the folder's listing is the one this write
 * already takes, see {@link tempsIn}). Best effort.
 */
export function removeDeadTemps(path: string): void {
  const prefix = `.${tempStem(basename(path))}.`;
  const dir = dirname(path);
  for (const name of tempsIn(dir)) {
    if (!name.startsWith(prefix)) continue;
    const m = /^(\d+)\.[0-9a-z]+$/.exec(name.slice(prefix.length, -'.tmp'.length));
    if (m === null) continue;
    removeIfDead(dir, name, Number(m[1]));
  }
}

/**
 * Remove the temporaries in `dir` whose name matches `pattern` (which captures the writer's PID as
 * the group `pid`, as {@link tempName} puts it) and whose writer is dead (or is this process, stopped: see {@link removeDeadTemps}): for writers whose target
 * name is new on every run (a backup's archive and manifest), where {@link removeDeadTemps} of the
 * next run's target would never see the last run's leftover. Best effort.
 */
export function removeDeadTempsMatching(dir: string, pattern: RegExp): void {
  for (const name of tempsIn(dir)) {
    const pid = pattern.exec(name)?.groups?.pid;
    if (pid !== undefined) removeIfDead(dir, name, Number(pid));
  }
}

/**
 * Unlink `dir/name` when no writer holds the temp's lock and its writer `pid` is not running here (on a
 * file system without `flock`: by the PID alone, as before locks), or is this process (then only by the
 * lock: without `flock` nothing tells a stopped writer of this process from a live one, and it is kept).
 */
function removeIfDead(dir: string, name: string, pid: number): void {
  if (!(pid > 0)) return;
  if (pid === process.pid) removeUnlockedTemp(join(dir, name), false);
  else if (!alive(pid)) removeUnlockedTemp(join(dir, name), true);
}

/**
 * Open the temporary at `path` and try to take its lock ({@link lockTemp}), then run `fn` with the
 * answer, the lock held while `fn` runs when it was free, and close the file (which lets the lock go).
 * `free` is true when the lock was taken (no writer holds it), false when a writer holds it, undefined
 * where the file system has no `flock`. When the temp cannot be opened, returns `unopened(err)`
 * instead (`ENOENT`: it is gone).
 */
function withTempLock<T>(
  path: string,
  fn: (free: boolean | undefined) => T,
  unopened: (err: NodeJS.ErrnoException) => T,
): T {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    return unopened(err as NodeJS.ErrnoException);
  }
  try {
    let free: boolean | undefined;
    try {
      free = callNative(() => native().tryLockFd(fd, path));
    } catch {
      free = undefined; // no flock here
    }
    return fn(free);
  } finally {
    closeSync(fd);
  }
}

/**
 * Unlink the temporary at `path` when no writer holds its lock ({@link lockTemp}), holding that lock
 * across the unlink. `withoutFlock`: whether to remove it where the file system has no `flock` (true
 * for a temp whose writer's PID is dead; false for one named with this process's own PID, whose writer
 * nothing else tells from a live one). flock is per open file description: a live writer of this
 * process, in any thread, still holds it. Returns whether the temp is gone.
 */
export function removeUnlockedTemp(path: string, withoutFlock: boolean): boolean {
  const dir = dirname(path);
  const name = basename(path);
  return withTempLock(
    path,
    (free) => {
      // Locked: a live writer (in another PID namespace, or in this process).
      if (!(free ?? withoutFlock)) return false;
      try {
        unlinkSync(path);
      } catch {
        return false; // not ours to remove
      }
      forgetTemp(dir, name);
      return true;
    },
    (err) => {
      if (err.code !== 'ENOENT') return false;
      forgetTemp(dir, name);
      return true;
    },
  );
}

/**
 * Whether no writer holds the lock of the temporary at `path` (a probe: the lock is taken and let go
 * at once). False when it is locked or gone, and where the file system has no `flock`.
 */
export function tempUnlocked(path: string): boolean {
  return withTempLock(
    path,
    (free) => free === true,
    () => false,
  );
}

/**
 * Where a writer that replaces `path` may put its file: `path` itself when it does not exist or is a
 * regular file; for a symlink, the regular file it resolves to (the link stays, its target is
 * replaced). Anything else (a folder, `/dev/null` or another device, a FIFO, a socket, a dangling
 * symlink) is refused with `TV_NOT_A_FILE` or `TV_IS_DIRECTORY`: renaming a file over a device node
 * would replace the device for every program on the machine. The same rule as the core's
 * `writable_target`.
 */
export function writableTarget(path: string): string {
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return path;
    // A regular file where a parent folder should be: TV_NOT_A_FILE naming it.
    throw folderError(err, path) ?? ioError(err, path, 'cannot stat');
  }
  if (st.isFile()) return path;
  if (!st.isSymbolicLink()) throw notRegularFile(path, st, 'replace');
  let target: Stats;
  try {
    target = statSync(path);
  } catch {
    throw new TensorVaultError(ErrorCode.NOT_A_FILE, `${path} is a dangling symlink; refusing to write`, {
      path,
      kind: 'dangling symlink',
    });
  }
  if (!target.isFile()) throw notRegularFile(path, target, 'replace');
  return realpathSync(path);
}

/** The replaced file's permission bits and owner, when it exists. */
function existingAttributes(target: string): { mode: number; uid: number; gid: number } | undefined {
  try {
    const st = statSync(target);
    return { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
  } catch {
    return undefined;
  }
}

/**
 * Copy the extended attributes of `from`, the file being replaced, onto the temporary `tmp` (on Linux:
 * its xattrs, so its POSIX ACLs and SELinux label too; not `security.capability`). Best effort, as
 * in the core's writers: what this process may not set, or a file system without xattrs, is skipped.
 * One `listxattr` when `from` has none.
 */
function keepXattrs(from: string, tmp: string): void {
  callNative(() => native().copyXattrs(from, tmp));
}

/** Ignore only "not permitted" from a chown: a non-root writer cannot give a file away. */
const ignoreEperm = (err: unknown): void => {
  if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
};

/**
 * Give the temporary `tmp`, about to be renamed over `final`, the permission bits, the extended
 * attributes ({@link keepXattrs}) and (where this process may set it) the owner of `final`; when
 * `final` does not exist, the mode and owner of `like` when given and present (a sidecar new to a
 * checkpoint set takes its weights'; not their xattrs), else nothing changes (a new file: the
 * creation mode less the umask). For writers that make their temporaries themselves (the
 * checkpoint set, its repairs); {@link atomicWriteFile} does the same on its own temporary.
 */
export async function keepAttributesOf(tmp: string, final: string, like?: string): Promise<void> {
  const replaced = existingAttributes(final);
  const keep = replaced ?? (like === undefined ? undefined : existingAttributes(like));
  if (keep === undefined) return;
  try {
    // chown first: it clears set-id bits (and file capabilities), which the chmod then puts back;
    // the xattrs before the chmod, so the mode (and an ACL's mask, the group bits) is the one kept.
    await fsp.chown(tmp, keep.uid, keep.gid).catch(ignoreEperm);
    if (replaced !== undefined) keepXattrs(final, tmp);
    await fsp.chmod(tmp, keep.mode);
  } catch (err) {
    throw ioError(err, final, 'cannot keep the mode and owner of', tmp);
  }
}

/** Options of {@link atomicWriteFile}. */
export interface AtomicWriteOptions {
  /**
   * File mode of a new file (default 0o644, less the umask). A replaced file keeps its own mode, its
   * extended attributes (Linux; best effort) and, where this process may set it, its owner.
   */
  mode?: number;
  /** fsync the file and its folder (default true). */
  sync?: boolean;
}

/** Replace `path` atomically with `data` (see the module comment); returns the path written. */
export async function atomicWriteFile(
  path: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions = {},
): Promise<string> {
  const { mode = 0o644, sync = true } = options;
  const target = writableTarget(path);
  removeDeadTemps(target);
  let tmp: string | undefined;
  const keep = existingAttributes(target);
  let fh: fsp.FileHandle | undefined;
  try {
    ({ fh, tmp } = await createLockedTemp(target, mode));
    if (keep !== undefined) {
      await fh.chown(keep.uid, keep.gid).catch(ignoreEperm);
      keepXattrs(target, tmp);
      await fh.chmod(keep.mode);
    }
    await fh.writeFile(data);
    if (sync) await fh.sync();
    writableTarget(target); // again just before the rename: never replace what appeared meanwhile
    await fsp.rename(tmp, target); // the temp's lock (its open file) is held until after the rename
    await fh.close();
    fh = undefined;
  } catch (err) {
    await fh?.close().catch(() => {});
    if (tmp !== undefined) await fsp.rm(tmp, { force: true }).catch(() => {});
    throw ioError(err, path, 'cannot write', tmp);
  }
  if (sync) await fsyncDir(dirname(target));
  return target;
}

/**
 * Copy `src` to `dest` atomically: a temporary file beside `dest` (the kernel's copy, reflinked where
 * the file system can), fsync, rename over `dest`, folder fsync. A failure leaves `dest` as it was and
 * no temporary file behind.
 */
export async function atomicCopyFile(src: string, dest: string): Promise<string> {
  const target = writableTarget(dest);
  removeDeadTemps(target);
  let tmp: string | undefined;
  let fh: fsp.FileHandle | undefined;
  try {
    // The temp is created and locked first, then the copy goes into it (same file: the lock, held by
    // `fh`, marks it live for the whole copy, however long).
    ({ fh, tmp } = await createLockedTemp(target, 0o644));
    await fsp.copyFile(src, tmp, constants.COPYFILE_FICLONE);
    if (!lockTemp(fh.fd, tmp)) throw new Error(`${tmp} was replaced during the copy`);
    await fh.sync();
    writableTarget(target);
    await fsp.rename(tmp, target);
    await fh.close();
    fh = undefined;
  } catch (err) {
    await fh?.close().catch(() => {});
    if (tmp !== undefined) await fsp.rm(tmp, { force: true }).catch(() => {});
    throw ioError(err, dest, 'cannot write', tmp);
  }
  await fsyncDir(dirname(target));
  return target;
}

/**
 * {@link atomicWriteFile} on the calling thread, for synchronous writers (the ring log's compaction).
 * With `keepOpen`, returns the new file's descriptor (open for writing, positioned by the caller);
 * otherwise closes it and returns undefined. `tmpPath` names the temporary file (default: a fresh
 * random name), for writers that clean up a known leftover after a crash.
 */
export function atomicWriteFileSync(
  path: string,
  data: Uint8Array,
  options: AtomicWriteOptions & { keepOpen?: boolean; tmpPath?: string } = {},
): number | undefined {
  const { mode = 0o644, sync = true, keepOpen = false } = options;
  const target = writableTarget(path);
  if (options.tmpPath === undefined) removeDeadTemps(target);
  let tmp = options.tmpPath ?? tempName(target);
  const keep = existingAttributes(target);
  let fd: number | undefined;
  try {
    for (let i = 0; ; i++) {
      fd = openSync(
        tmp,
        constants.O_RDWR |
          constants.O_CREAT |
          (options.tmpPath === undefined ? constants.O_EXCL : constants.O_TRUNC),
        mode,
      );
      // Locked and still at its path (a fixed `tmpPath` is never swept: it carries no PID).
      if (lockTemp(fd, tmp) || options.tmpPath !== undefined) break;
      closeSync(fd);
      fd = undefined;
      if (i + 1 >= TEMP_TRIES) throw new Error('the temporary files kept being removed');
      tmp = tempName(target);
    }
    if (keep !== undefined) {
      try {
        fchownSync(fd, keep.uid, keep.gid);
      } catch (err) {
        ignoreEperm(err);
      }
      keepXattrs(target, tmp);
      fchmodSync(fd, keep.mode);
    }
    writeAllAt(fd, data, 0);
    if (sync) fdatasyncSync(fd);
    writableTarget(target);
    renameSync(tmp, target);
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // not created, or already renamed
    }
    throw ioError(err, path, 'cannot write', tmp);
  }
  try {
    if (sync) fsyncDirSync(dirname(target));
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  if (keepOpen) return fd;
  closeSync(fd);
  return undefined;
}
