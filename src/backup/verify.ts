/** `verifyBackup`: every check of a backup, read-only. */
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, invalidArgument, TensorVaultError } from '../errors';
import type { VerifyResult } from '../eventlog/index';
import { assertRegularFile, WriterLock } from '../io/index';
import { type EntryCheck, walkArchive } from './extract';
import { type BackupManifest, parseManifest } from './manifest';
import { type BackupVerifyOptions, checkReadOptions } from './options';
import {
  archiveHashStatus,
  entriesAgainst,
  invalidAtBackup,
  loadSidecar,
  readOptions,
  type SignatureStatus,
  signatureStatus,
  strip,
  verifyStaged,
} from './read';

/** Result of {@link verifyBackup}. */
export interface BackupVerifyResult {
  /** True when every check passed. */
  ok: boolean;
  /** Human-readable list of what failed. */
  problems: string[];
  /** Per-file results. */
  entries: EntryCheck[];
  /** `valid`, `invalid`, `absent` (unsigned), or `unchecked` (signed, no key given). */
  signature: SignatureStatus;
  /** The archive's own SHA-256 against the sidecar: `ok`, `mismatch`, or `unrecorded` (Libervia). */
  archiveHash: 'ok' | 'mismatch' | 'unrecorded';
  /** Chain verification (with `readData`). */
  chain?: VerifyResult;
  /** The manifest that was used. */
  manifest?: BackupManifest;
  /** `sidecar` or `inner` (the copy inside the archive, when the sidecar is missing). */
  manifestSource: 'sidecar' | 'inner' | 'none';
}

/**
 * The private staging folders of `readData` verifies in the OS temp folder: `tv-verify-PID-XXXXXX`
 * (the verifying process's PID, for diagnostics, then `mkdtemp`'s suffix).
 */
const VERIFY_STAGING = /^tv-verify-(?<pid>\d+)-[0-9A-Za-z]{6}$/;

/**
 * The lock file inside a staging folder: its verify holds an exclusive `flock` on it (through the
 * native writer lock) from just after creating the folder until the folder is gone. The kernel
 * releases it when the verify dies, however it dies.
 */
export const VERIFY_STAGING_LOCK = '.tv-verify.lock';

/**
 * A new staging folder, with its lock taken. The lock is not released in the process's `exit` event:
 * a verify that exits without its `finally` leaves the lock file behind, so the folder can be swept.
 * A sweep in another process can take a new folder's lock between its creation and ours (and then
 * removes the folder): a fresh folder is made. Where the temp folder has no `flock` (some network
 * file systems) the folder is used without a lock file, so no sweep ever takes it.
 */
async function makeStaging(): Promise<{ dir: string; lock: WriterLock | undefined }> {
  for (let attempt = 1; ; attempt++) {
    const dir = await fsp.mkdtemp(join(tmpdir(), `tv-verify-${process.pid}-`));
    try {
      return { dir, lock: WriterLock.acquire(join(dir, VERIFY_STAGING_LOCK), { releaseAtExit: false }) };
    } catch (err) {
      const code = err instanceof TensorVaultError ? err.code : undefined;
      if (code === ErrorCode.LOCKED || code === ErrorCode.NOT_FOUND) {
        if (attempt < 8) continue; // swept meanwhile: the sweep removes it
        throw err;
      }
      await fsp.rm(join(dir, VERIFY_STAGING_LOCK), { force: true }).catch(() => {});
      return { dir, lock: undefined };
    }
  }
}

/**
 * Remove a staging folder whose lock `lock` holds (none: see `makeStaging`): everything but the lock file first, then the lock
 * (which removes its file), then the empty folder. Killed in the middle, it leaves the folder with its
 * lock file (swept later) or empty.
 */
async function removeStaging(dir: string, lock: WriterLock | undefined): Promise<void> {
  if (lock === undefined) {
    await fsp.rm(dir, { recursive: true, force: true });
    return;
  }
  try {
    const names = await fsp.readdir(dir).catch(() => [] as string[]);
    for (const name of names) {
      if (name !== VERIFY_STAGING_LOCK) await fsp.rm(join(dir, name), { recursive: true, force: true });
    }
  } finally {
    lock.release();
  }
  // Not empty: a sweep took the released lock meanwhile (recreating its file); it removes the folder.
  await fsp.rmdir(dir).catch(() => {});
}

/**
 * Remove the staging folders that `readData` verifies left in the OS temp folder when they were
 * killed (`kill -9`, a crash: the `finally` that removes one never ran; each is a full extracted copy of
 * the archive's log): those owned by this user whose lock this process can take, so whose verify is
 * gone. Liveness is the lock, not the PID in the name: a live verify in another PID namespace sharing
 * this temp folder (two containers) has a PID that may be free or reused here, but its lock is held. A
 * folder without a lock file is left alone: a verify that is creating it, or one left by a version that
 * took no lock (remove those by hand). Best effort; returns how many were removed. Called by every
 * `readData` verify and every restore.
 */
export async function removeDeadVerifyStagings(): Promise<number> {
  const dir = tmpdir();
  const names = await fsp.readdir(dir).catch(() => [] as string[]);
  const uid = process.getuid?.();
  let removed = 0;
  for (const name of names) {
    if (!VERIFY_STAGING.test(name)) continue;
    const path = join(dir, name);
    const st = await fsp.lstat(path).catch(() => undefined);
    if (st === undefined || !st.isDirectory() || (uid !== undefined && st.uid !== uid)) continue;
    const lockPath = join(path, VERIFY_STAGING_LOCK);
    const lst = await fsp.lstat(lockPath).catch(() => undefined);
    if (lst === undefined || !lst.isFile()) continue;
    let lock: WriterLock;
    try {
      lock = WriterLock.acquire(lockPath, { releaseAtExit: false });
    } catch {
      continue; // held: its verify runs (here or in another PID namespace); or not ours to lock
    }
    try {
      await removeStaging(path, lock);
      removed++;
    } catch {
      // not ours to remove, or removed by another sweep meanwhile
    }
  }
  return removed;
}

/**
 * Verify a backup without changing anything. Quick mode: manifest (and signature), the archive's
 * SHA-256, the entry list against the manifest, and sizes. `readData`: also every file's SHA-256 and
 * a full chain verification (in a private temp folder, `tv-verify-PID-XXXXXX` in the OS temp folder,
 * locked while the verify runs and removed afterwards; one that a killed verify left is removed by the
 * next `readData` verify or restore: {@link removeDeadVerifyStagings}).
 */
export async function verifyBackup(
  archivePath: string,
  options: BackupVerifyOptions = {},
): Promise<BackupVerifyResult> {
  if (typeof archivePath !== 'string' || archivePath === '')
    throw invalidArgument('archivePath', 'archivePath must be a path');
  checkReadOptions(options);
  const problems: string[] = [];
  await assertRegularFile(archivePath);
  const sidecar = await loadSidecar(archivePath, options);
  const res: BackupVerifyResult = {
    ok: false,
    problems,
    entries: [],
    signature: 'absent',
    archiveHash: 'unrecorded',
    manifestSource: sidecar ? 'sidecar' : 'none',
  };
  if (sidecar !== undefined) {
    res.manifest = sidecar;
    res.signature = signatureStatus(sidecar, options, problems);
    res.archiveHash = await archiveHashStatus(archivePath, sidecar, options);
    if (res.archiveHash === 'mismatch')
      problems.push('the archive file does not match the SHA-256 in its manifest');
  }
  let staging: string | undefined;
  let stagingLock: WriterLock | undefined;
  try {
    if (options.readData) {
      await removeDeadVerifyStagings();
      ({ dir: staging, lock: stagingLock } = await makeStaging());
    }
    options.onPhase?.('archive');
    const walk = await walkArchive(archivePath, {
      ...(sidecar ? { manifest: sidecar } : {}),
      ...(staging ? { extractTo: staging } : {}),
      hash: options.readData === true,
      ...readOptions(options),
    });
    let manifest = sidecar;
    if (walk.innerManifest !== undefined) {
      let innerM: BackupManifest | undefined;
      try {
        innerM = parseManifest(walk.innerManifest.toString('utf8'), `${archivePath}:manifest.json`);
      } catch (err) {
        problems.push((err as Error).message);
      }
      if (innerM !== undefined && sidecar !== undefined && strip(innerM) !== strip(sidecar)) {
        problems.push('manifest.json inside the archive differs from the sidecar manifest');
      }
      if (innerM !== undefined && sidecar === undefined) {
        manifest = innerM;
        res.manifest = innerM;
        res.manifestSource = 'inner';
        res.signature = signatureStatus(innerM, options, problems);
        walk.entries.push(...entriesAgainst(innerM, walk.seen));
      }
    } else if (sidecar === undefined)
      problems.push('no manifest: neither a sidecar nor manifest.json in the archive');
    else if (sidecar.tensorvault !== undefined) problems.push('manifest.json is missing from the archive');
    const invalid = manifest === undefined ? undefined : invalidAtBackup(manifest);
    if (invalid !== undefined) problems.push(invalid);
    res.entries = walk.entries;
    for (const e of walk.entries)
      if (e.status !== 'ok' && e.status !== 'unchecked') problems.push(`${e.path}: ${e.status}`);
    if (staging !== undefined && problems.length === 0) {
      res.chain = await verifyStaged(staging, manifest, options);
      if (!res.chain.valid) problems.push(`chain: ${res.chain.reason ?? 'invalid'}`);
    }
  } catch (err) {
    const found = [
      ErrorCode.UNSAFE_ARCHIVE,
      ErrorCode.BUDGET_EXCEEDED,
      ErrorCode.CORRUPT,
      ErrorCode.CHECKSUM_MISMATCH,
      ErrorCode.EVENTLOG_HMAC_REQUIRED,
      ErrorCode.EVENTLOG_HMAC_UNEXPECTED,
    ];
    if (err instanceof TensorVaultError && (found as string[]).includes(err.code)) problems.push(err.message);
    else throw err;
  } finally {
    if (staging !== undefined) await removeStaging(staging, stagingLock);
  }
  res.ok = problems.length === 0;
  return res;
}
