/** `restoreBackup`: staging → verify everything → journaled, atomic placement. */
import { channel } from 'node:diagnostics_channel';
import { promises as fsp } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { ErrorCode, invalidArgument, TensorVaultError, throwIfAborted } from '../errors';
import { EVENT_LOG_CHANNEL, LAYOUT, type VerifyResult } from '../eventlog/index';
import {
  assertRegularFile,
  beginSwap,
  commitSwap,
  exists,
  ioError,
  makeFolder,
  placeSwap,
  rollBackSwap,
  settleSwap,
  swapStep,
  WriterLock,
} from '../io/index';
import { walkArchive } from './extract';
import { type BackupManifest, parseManifest } from './manifest';
import { checkReadOptions, type RestoreOptions } from './options';
import {
  archiveHashStatus,
  chainVerdict,
  entriesAgainst,
  invalidAtBackup,
  loadSidecar,
  readOptions,
  signatureStatus,
  strip,
  verifyStaged,
} from './read';
import { removeDeadVerifyStagings } from './verify';

export type { BackupPhase, BackupReadOptions, BackupVerifyOptions, RestoreOptions } from './options';
export { backupManifestPath } from './read';
export { type BackupVerifyResult, verifyBackup } from './verify';

/** Result of {@link restoreBackup}. */
export interface RestoreResult {
  /** Where the log now lives. */
  destDir: string;
  /** Files placed. */
  files: number;
  /** Events in the restored log. */
  totalEvents: number;
  /**
   * The full verification of the restored log (always valid, except for a backup invalid at backup
   * time restored with `allowInvalidChain`: then the verdict on the log as restored).
   */
  chain: VerifyResult;
  /** False for a backup whose source chain was invalid at backup time (restored with `allowInvalidChain`). */
  chainValidAtBackup: boolean;
  /** Why the source chain was invalid at backup time (the manifest's `tensorvault.chain_problem`), or null. */
  chainProblemAtBackup: string | null;
  /** True when an existing log was replaced (`overwrite`). */
  replaced: boolean;
  /** Notes (e.g. unsigned manifest, Libervia archive without an archive hash). */
  warnings: string[];
}

const OWNED = [LAYOUT.dir, LAYOUT.snapshot, LAYOUT.legacyAnchor, LAYOUT.legacySingle] as const;

const eventLogDiag = channel(EVENT_LOG_CHANNEL);

/** What the manifest says of the source chain at backup time. */
interface AtBackup {
  valid: boolean;
  problem: string | null;
}

/**
 * Before anything is written: the sidecar's archive hash and signature (a mismatch throws). Returns
 * the sidecar (if any) and the warnings so far.
 */
async function preflight(
  archivePath: string,
  options: RestoreOptions,
): Promise<{ sidecar: BackupManifest | undefined; warnings: string[] }> {
  const warnings: string[] = [];
  await assertRegularFile(archivePath);
  const sidecar = await loadSidecar(archivePath, options);
  if (sidecar === undefined) {
    warnings.push('no sidecar manifest: using manifest.json from inside the archive');
    return { sidecar, warnings };
  }
  const sigProblems: string[] = [];
  if (signatureStatus(sidecar, options, sigProblems) === 'absent')
    warnings.push('the manifest is not signed');
  const hash = await archiveHashStatus(archivePath, sidecar, options);
  if (hash === 'mismatch') {
    throw new TensorVaultError(
      ErrorCode.CHECKSUM_MISMATCH,
      'the archive does not match the SHA-256 in its manifest',
      {
        path: archivePath,
        expected: sidecar.archive?.sha256 ?? null,
      },
    );
  }
  if (hash === 'unrecorded') warnings.push('the manifest records no archive hash (Libervia backup)');
  if (sigProblems.length > 0) {
    throw new TensorVaultError(ErrorCode.SIGNATURE_INVALID, sigProblems.join('; '), { path: archivePath });
  }
  return { sidecar, warnings };
}

/**
 * Extract into `staging` and check everything there: the manifest (sidecar or inner, and that they
 * agree), every file's size and SHA-256, nothing unlisted, then the full chain. Throws at the first
 * problem; returns the chain's verdict.
 */
async function stageAndCheck(
  archivePath: string,
  staging: string,
  sidecar: BackupManifest | undefined,
  options: RestoreOptions,
  warnings: string[],
): Promise<{
  chain: VerifyResult;
  files: number;
  atBackup: AtBackup;
  checked: { fingerprint: Fingerprint; chain: VerifyResult };
}> {
  options.onPhase?.('archive');
  const walk = await walkArchive(archivePath, {
    ...(sidecar ? { manifest: sidecar } : {}),
    extractTo: staging,
    rejectExtra: true,
    hash: true,
    ...readOptions(options),
  });
  let manifest = sidecar;
  if (walk.innerManifest !== undefined) {
    const innerM = parseManifest(walk.innerManifest.toString('utf8'), `${archivePath}:manifest.json`);
    if (sidecar !== undefined && strip(innerM) !== strip(sidecar)) {
      throw new TensorVaultError(
        ErrorCode.CHECKSUM_MISMATCH,
        'manifest.json inside the archive differs from the sidecar manifest',
        { path: archivePath },
      );
    }
    if (sidecar === undefined) {
      const p: string[] = [];
      if (signatureStatus(innerM, options, p) === 'absent') warnings.push('the manifest is not signed');
      if (p.length > 0)
        throw new TensorVaultError(ErrorCode.SIGNATURE_INVALID, p.join('; '), { path: archivePath });
      manifest = innerM;
      const extra = entriesAgainst(innerM, walk.seen).filter((e) => e.status === 'extra');
      if (extra.length > 0) {
        throw new TensorVaultError(
          ErrorCode.UNSAFE_ARCHIVE,
          `archive holds a file the manifest does not list: ${extra[0]?.path}`,
          { name: extra[0]?.path ?? null },
        );
      }
      walk.entries.push(...entriesAgainst(innerM, walk.seen));
    }
  }
  if (manifest === undefined) {
    throw new TensorVaultError(
      ErrorCode.CORRUPT,
      'no manifest: neither a sidecar nor manifest.json in the archive',
      {
        path: archivePath,
      },
    );
  }
  const invalid = invalidAtBackup(manifest);
  const atBackup: AtBackup = {
    valid: invalid === undefined,
    problem: invalid === undefined ? null : (manifest.tensorvault?.chain_problem ?? null),
  };
  if (invalid !== undefined && options.allowInvalidChain !== true) {
    throw new TensorVaultError(
      ErrorCode.CHAIN_INVALID,
      `${invalid} (to restore it anyway, as evidence: allowInvalidChain, CLI --allow-invalid-chain)`,
      {
        path: archivePath,
        reason: manifest.tensorvault?.chain_problem ?? null,
      },
    );
  }
  // Every file's size and SHA-256 against the manifest, an archive invalid at backup time included.
  const bad = walk.entries.filter((e) => e.status !== 'ok');
  if (bad.length > 0) {
    throw new TensorVaultError(
      ErrorCode.CHECKSUM_MISMATCH,
      `backup does not match its manifest: ${bad.map((e) => `${e.path} (${e.status})`).join(', ')}`,
      { path: archivePath, first: bad[0]?.path ?? null },
    );
  }
  const evidence = !atBackup.valid;
  const chain = await verifyStaged(staging, manifest, options, evidence);
  // The files the verdict was reached on (HEAD written from the checked events included): the check
  // in place makes sure that these, and only these, are what was placed.
  const checked = {
    fingerprint: await fingerprint(
      staging,
      (await fsp.readdir(staging)).filter((n) => n !== LAYOUT.lock && n !== 'manifest.json'),
    ),
    chain,
  };
  // Evidence is placed whatever its chain says now (the manifest already says it was invalid).
  if (!chain.valid && !evidence) {
    throw new TensorVaultError(
      ErrorCode.CHAIN_INVALID,
      `the restored chain does not verify: ${chain.reason ?? ''}`,
      {
        path: archivePath,
        reason: chain.reason ?? null,
        index: chain.firstInvalidIndex ?? null,
      },
    );
  }
  return { chain, files: walk.entries.length, atBackup, checked };
}

/**
 * What identifies each file and folder of a log, by path relative to its root: device and inode
 * (which a rename keeps), and for a file its size and modification time (ns). Two equal fingerprints
 * are the same files, with the same bytes unless something wrote them and set their time back.
 */
type Fingerprint = Map<string, string>;

/** The {@link Fingerprint} of the entries `names` (those that exist) under `root`, recursively. */
async function fingerprint(root: string, names: readonly string[]): Promise<Fingerprint> {
  const out: Fingerprint = new Map();
  const walk = async (rel: string): Promise<void> => {
    const path = join(root, rel);
    const st = await fsp.lstat(path, { bigint: true }).catch((err: unknown) => {
      throw ioError(err, path, 'cannot read');
    });
    if (st.isDirectory()) {
      out.set(rel, `dir ${st.dev}:${st.ino}`);
      const names = await fsp.readdir(path).catch((err: unknown) => {
        throw ioError(err, path, 'cannot read');
      });
      for (const n of names.sort()) await walk(join(rel, n));
    } else out.set(rel, `${st.isFile() ? 'file' : 'other'} ${st.dev}:${st.ino} ${st.size} ${st.mtimeNs}`);
  };
  for (const n of names) if (await exists(join(root, n))) await walk(n);
  return out;
}

/** The first path where `now` differs from `checked`, or undefined when they are the same files. */
function fingerprintDiff(checked: Fingerprint, now: Fingerprint): string | undefined {
  for (const [rel, id] of now) {
    const was = checked.get(rel);
    if (was === undefined) return `${rel} was not in the log that was checked`;
    if (was !== id) return `${rel} is not the file that was checked`;
  }
  for (const rel of checked.keys()) if (!now.has(rel)) return `${rel} is missing`;
  return undefined;
}

/**
 * The check of the log just placed in `dest`: that its files are the very files the staged check
 * (the full chain verdict, {@link chainVerdict}) read, moved by rename, and nothing else of the
 * layout. Equal, the staged verdict is the verdict in place (the same bytes give the same verdict),
 * without reading every event again; otherwise it is invalid, naming the first difference.
 */
async function checkInPlace(dest: string, checked: Fingerprint, staged: VerifyResult): Promise<VerifyResult> {
  const diff = fingerprintDiff(checked, await fingerprint(dest, OWNED));
  if (diff === undefined) return staged;
  return { ...staged, valid: false, reason: `the placed files are not the ones checked in staging: ${diff}` };
}

/**
 * Put the staged log in place. Only the log's own layout is ever placed: a manifest (signed or not)
 * naming anything else at the top of the destination (`.bashrc`, `config.json`) is refused before
 * anything moves. The swap is journaled first (io/swap.ts): a kill at any point leaves a state that
 * the next read-write open or restore finishes or undoes, never a folder without a log. The old log is
 * deleted only after the new one verifies in place; otherwise it is put back.
 */
async function place(
  dest: string,
  staging: string,
  present: string[],
  archivePath: string,
  o: RestoreOptions,
  evidence: boolean,
  checked: { fingerprint: Fingerprint; chain: VerifyResult },
) {
  const staged = (await fsp.readdir(staging)).filter((n) => n !== LAYOUT.lock && n !== 'manifest.json');
  const foreign = staged.filter((n) => !(OWNED as readonly string[]).includes(n));
  if (foreign.length > 0) {
    throw new TensorVaultError(
      ErrorCode.CORRUPT,
      `the backup holds files outside the event-log layout, which a restore never writes: ${foreign.join(', ')}`,
      { path: archivePath, names: foreign.join(', ') },
    );
  }
  o.onPhase?.('place');
  const journal = await beginSwap(dest, basename(staging), present, staged);
  try {
    await placeSwap(dest, journal);
    // Evidence (invalid at backup, `allowInvalidChain`) is not expected to verify: its files were
    // checked against the manifest in staging, and it is placed as it is.
    if (evidence) throwIfAborted(o.signal, 'restore aborted');
    // Interrupted here, the swap is rolled back below: the old log (if any) is put back.
    // The verdict of the staging check (the full one, as at create and verify: a backup that
    // verifies is one that restores), which holds in place when the placed files are the ones it read.
    const check = evidence ? undefined : await checkInPlace(dest, checked.fingerprint, checked.chain);
    swapStep('verified');
    if (check !== undefined && !check.valid) {
      throw new TensorVaultError(
        ErrorCode.CHAIN_INVALID,
        `the restored log does not verify in place: ${check.reason ?? ''}`,
        {
          path: dest,
        },
      );
    }
  } catch (err) {
    await rollBackSwap(dest, journal).catch(() => {});
    throw err;
  }
  await commitSwap(dest, journal);
}

/**
 * Restore a backup into `destDir` (created if needed; any folder, not only the original). Extracts
 * into a fresh private staging folder inside `destDir` (only the regular files and folders the
 * manifest names), verifies every checksum and the full chain there, and only then moves the log
 * into place by rename. An existing log is never touched without `overwrite`; with it, the old log
 * is moved aside and deleted only after the new one verifies in place. Any failure leaves `destDir`
 * as it was. A backup whose chain was invalid at backup time is refused (`TV_CHAIN_INVALID`) unless
 * `allowInvalidChain` is set: then it is restored as evidence (see {@link RestoreOptions.allowInvalidChain}).
 */
export async function restoreBackup(
  archivePath: string,
  destDir: string,
  options: RestoreOptions = {},
): Promise<RestoreResult> {
  if (typeof archivePath !== 'string' || archivePath === '')
    throw invalidArgument('archivePath', 'archivePath must be a path');
  if (typeof destDir !== 'string' || destDir === '')
    throw invalidArgument('destDir', 'destDir must be a path');
  checkReadOptions(options);
  const dest = resolve(destDir);
  // A restore stages in `dest` (`.tv-restore-XXXXXX`, removed by settleSwap below when its restore
  // died); the staging folders killed `readData` verifies left in the OS temp folder go here too.
  await removeDeadVerifyStagings();
  const { sidecar, warnings } = await preflight(archivePath, options);
  // The first folder this call creates (undefined when `dest` exists): removed again on failure.
  const created = await makeFolder(dest, 'a destination folder');
  let lock: WriterLock;
  try {
    // Hold the destination's writer lock for the whole restore: no writer may start meanwhile.
    lock = WriterLock.acquire(join(dest, LAYOUT.lock));
  } catch (err) {
    await removeCreated(dest, created);
    throw err;
  }
  let staging: string | undefined;
  let done = false;
  try {
    // A restore killed earlier in this folder is finished or undone first (and its leftovers removed).
    await settleSwap(dest, false);
    const present: string[] = [];
    for (const name of OWNED) if (await exists(join(dest, name))) present.push(name);
    if (present.length > 0 && !options.overwrite) {
      throw new TensorVaultError(
        ErrorCode.EXISTS,
        `${dest} already holds an event log (${present.join(', ')}); pass overwrite: true (CLI: --overwrite) to replace it`,
        { path: dest },
      );
    }
    staging = await fsp.mkdtemp(join(dest, '.tv-restore-'));
    await fsp.chmod(staging, 0o700);
    const staged = await stageAndCheck(archivePath, staging, sidecar, options, warnings);
    const { files, atBackup } = staged;
    if (present.length > 0) await keepReplacedAttributes(dest, staging);
    await place(dest, staging, present, archivePath, options, !atBackup.valid, staged.checked);
    // The verdict was reached in the staging folder: name the files where they now are.
    const chain: VerifyResult =
      staged.chain.reason === undefined
        ? staged.chain
        : { ...staged.chain, reason: staged.chain.reason.replaceAll(staging, dest) };
    done = true;
    if (!atBackup.valid) {
      const why = atBackup.problem === null ? '' : ` (${atBackup.problem})`;
      const now = chain.valid ? 'it verifies now' : `it does not verify now (${chain.reason ?? 'invalid'})`;
      const v2 = await exists(join(dest, LAYOUT.dir, LAYOUT.v2Meta));
      warnings.push(
        `the source chain was INVALID at backup time${why}: restored as evidence (allowInvalidChain); ${now}${v2 ? '; its head record was not rebuilt, so a writer refuses to extend it' : ''}`,
      );
      if (eventLogDiag.hasSubscribers) {
        eventLogDiag.publish({
          event: 'restored-invalid-chain',
          dataDir: dest,
          archive: archivePath,
          reason: atBackup.problem,
          chainValid: chain.valid,
          chainReason: chain.reason ?? null,
        });
      }
    }
    return {
      destDir: dest,
      files,
      totalEvents: chain.totalEvents,
      chain,
      chainValidAtBackup: atBackup.valid,
      chainProblemAtBackup: atBackup.problem,
      replaced: present.length > 0,
      warnings: [...warnings, ...chain.warnings],
    };
  } finally {
    if (staging !== undefined) await fsp.rm(staging, { recursive: true, force: true }).catch(() => {});
    lock.release(); // removes the lock file
    if (!done) await removeCreated(dest, created);
  }
}

/**
 * Before an overwrite is placed: every staged file and folder that replaces one of the old log's takes
 * that one's mode and, where this process may set it, its owner (README "Files on disk"); one the old
 * log did not have keeps the mode the archive recorded, less the umask, and takes the owner of the
 * replaced folder it goes into. Best effort for the owner (a non-root restore cannot give files away).
 */
async function keepReplacedAttributes(dest: string, staging: string): Promise<void> {
  const walk = async (rel: string, parent: { uid: number; gid: number } | undefined): Promise<void> => {
    const names = await fsp.readdir(join(staging, rel));
    for (const name of names) {
      if (rel === '' && (name === LAYOUT.lock || name === 'manifest.json')) continue;
      const r = rel === '' ? name : join(rel, name);
      const staged = join(staging, r);
      const st = await fsp.lstat(staged);
      const old = await fsp.stat(join(dest, r)).catch(() => undefined);
      const keep = old !== undefined && old.isDirectory() === st.isDirectory() ? old : undefined;
      const owner = keep ?? parent;
      if (owner !== undefined) await fsp.chown(staged, owner.uid, owner.gid).catch(ignoreEperm);
      if (keep !== undefined) await fsp.chmod(staged, keep.mode & 0o7777);
      if (st.isDirectory()) await walk(r, owner);
    }
  };
  try {
    const top = await fsp.stat(dest);
    await walk('', { uid: top.uid, gid: top.gid });
  } catch (err) {
    throw ioError(err, dest, 'cannot give the restored log the modes of the one it replaces');
  }
}

/** Ignore only "not permitted" from a chown: a non-root restore cannot give a file away. */
function ignoreEperm(err: unknown): void {
  if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
}

/**
 * After a failed restore, remove the folders it created for `dest` (from `dest` up to `created`, the
 * first one `mkdir` made), so the destination is as it was. Only empty folders are removed (`rmdir`):
 * anything another process put there meanwhile stays.
 */
async function removeCreated(dest: string, created: string | undefined): Promise<void> {
  if (created === undefined) return;
  const top = resolve(created);
  for (let d = dest; ; d = dirname(d)) {
    try {
      await fsp.rmdir(d);
    } catch {
      return;
    }
    if (d === top || dirname(d) === d) return;
  }
}
