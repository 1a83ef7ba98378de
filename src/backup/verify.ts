/** `verifyBackup`: every check of a backup, read-only. */
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, invalidArgument, TensorVaultError } from '../errors';
import type { VerifyResult } from '../eventlog/index';
import { alive, assertRegularFile } from '../io/index';
import { type EntryCheck, walkArchive } from './extract';
import { type BackupManifest, parseManifest } from './manifest';
import { type BackupVerifyOptions, checkReadOptions } from './options';
import {
  archiveHashStatus,
  entriesAgainst,
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
 * (the verifying process's PID, then `mkdtemp`'s suffix).
 */
const VERIFY_STAGING = /^tv-verify-(?<pid>\d+)-[0-9A-Za-z]{6}$/;

/**
 * Remove the staging folders that `readData` verifies left in the OS temp folder when they were
 * killed (`kill -9`, a crash: the `finally` that removes one never ran; each is a full extracted copy of
 * the archive's log): those named with the PID of a process that no longer runs and owned by this
 * user. A live verify's folder (its PID runs) is kept. Best effort; returns how many were removed.
 * Called by every `readData` verify and every restore.
 */
export async function removeDeadVerifyStagings(): Promise<number> {
  const dir = tmpdir();
  const names = await fsp.readdir(dir).catch(() => [] as string[]);
  const uid = process.getuid?.();
  let removed = 0;
  for (const name of names) {
    const pid = VERIFY_STAGING.exec(name)?.groups?.pid;
    if (pid === undefined || alive(Number(pid))) continue;
    const path = join(dir, name);
    const st = await fsp.lstat(path).catch(() => undefined);
    if (st === undefined || !st.isDirectory() || (uid !== undefined && st.uid !== uid)) continue;
    try {
      await fsp.rm(path, { recursive: true, force: true });
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
 * that is removed afterwards; one that a killed verify left is removed by the next `readData` verify or
 * restore: {@link removeDeadVerifyStagings}).
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
  try {
    if (options.readData) {
      await removeDeadVerifyStagings();
      staging = await fsp.mkdtemp(join(tmpdir(), `tv-verify-${process.pid}-`));
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
    ];
    if (err instanceof TensorVaultError && (found as string[]).includes(err.code)) problems.push(err.message);
    else throw err;
  } finally {
    if (staging !== undefined) await fsp.rm(staging, { recursive: true, force: true });
  }
  res.ok = problems.length === 0;
  return res;
}
