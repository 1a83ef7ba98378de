/**
 * `verifyBackup` (read-only) and `restoreBackup` (staging → verify → atomic placement).
 */
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { ErrorCode, invalidArgument, TensorVaultError } from '../errors';
import { canonicalJson, EventLog, LAYOUT, type VerifyResult } from '../eventlog/index';
import { hashFile } from '../hash/index';
import {
  assertRegularFile,
  beginSwap,
  commitSwap,
  exists,
  ioError,
  placeSwap,
  rollBackSwap,
  settleSwap,
  swapStep,
  WriterLock,
} from '../io/index';
import { requiredString } from '../validate';
import { type EntryCheck, walkArchive } from './extract';
import { type BackupManifest, parseManifest, verifyManifestSignature } from './manifest';
import {
  type BackupReadOptions,
  type BackupVerifyOptions,
  checkReadOptions,
  type RestoreOptions,
} from './options';

export type { BackupReadOptions, BackupVerifyOptions, RestoreOptions } from './options';

/** Result of {@link verifyBackup}. */
export interface BackupVerifyResult {
  /** True when every check passed. */
  ok: boolean;
  /** Human-readable list of what failed. */
  problems: string[];
  /** Per-file results. */
  entries: EntryCheck[];
  /** `valid`, `invalid`, `absent` (unsigned), or `unchecked` (signed, no key given). */
  signature: 'valid' | 'invalid' | 'absent' | 'unchecked';
  /** The archive's own SHA-256 against the sidecar: `ok`, `mismatch`, or `unrecorded` (Libervia). */
  archiveHash: 'ok' | 'mismatch' | 'unrecorded';
  /** Chain verification (with `readData`). */
  chain?: VerifyResult;
  /** The manifest that was used. */
  manifest?: BackupManifest;
  /** `sidecar` or `inner` (the copy inside the archive, when the sidecar is missing). */
  manifestSource: 'sidecar' | 'inner' | 'none';
}

/** Result of {@link restoreBackup}. */
export interface RestoreResult {
  /** Where the log now lives. */
  destDir: string;
  /** Files placed. */
  files: number;
  /** Events in the restored log. */
  totalEvents: number;
  /** The full verification of the restored log. */
  chain: VerifyResult;
  /** True when an existing log was replaced (`overwrite`). */
  replaced: boolean;
  /** Notes (e.g. unsigned manifest, Libervia archive without an archive hash). */
  warnings: string[];
}

/** Sidecar manifest path of an archive. */
export function backupManifestPath(archivePath: string): string {
  requiredString(archivePath, 'archivePath');
  const name = basename(archivePath).replace(/\.tar\.gz(\.enc)?$/, '');
  return join(dirname(archivePath), `${name}.manifest.json`);
}

async function loadSidecar(archivePath: string, o: BackupReadOptions): Promise<BackupManifest | undefined> {
  const path = o.manifestPath ?? backupManifestPath(archivePath);
  let text: string;
  try {
    await assertRegularFile(path);
    text = await fsp.readFile(path, 'utf8');
  } catch (err) {
    if (err instanceof TensorVaultError && err.code === ErrorCode.NOT_FOUND && o.manifestPath === undefined) {
      return undefined;
    }
    throw ioError(err, path, 'cannot read manifest');
  }
  return parseManifest(text, path);
}

function signatureStatus(
  m: BackupManifest,
  o: BackupReadOptions,
  problems: string[],
): BackupVerifyResult['signature'] {
  if (o.key !== undefined) {
    try {
      verifyManifestSignature(m, o.key);
      return 'valid';
    } catch (err) {
      problems.push((err as Error).message);
      return 'invalid';
    }
  }
  if (m.signature === undefined) {
    if (o.requireSignature) problems.push('the manifest is not signed');
    return 'absent';
  }
  if (o.requireSignature) problems.push('a signature is required but no key was given');
  return 'unchecked';
}

const strip = (m: BackupManifest): string => {
  const { archive: _a, signature: _s, ...rest } = m;
  return canonicalJson(rest);
};

function summaryProblems(m: BackupManifest, chain: VerifyResult): string[] {
  const s = m.eventlog_summary;
  const out: string[] = [];
  if (s.total_events !== chain.totalEvents) {
    out.push(`the manifest records ${s.total_events} events, the archive holds ${chain.totalEvents}`);
  }
  if ((s.last_current_hash ?? null) !== chain.head.hash && chain.totalEvents > 0) {
    out.push('the last event differs from the manifest (tail cut or rewritten)');
  }
  return out;
}

/** The options of a verify or restore that the archive walk takes as they are. */
function readOptions(o: BackupReadOptions) {
  return {
    ...(o.encryptionKey ? { encryptionKey: o.encryptionKey } : {}),
    ...(o.maxExpandedBytes !== undefined ? { maxBytes: o.maxExpandedBytes } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
  };
}

async function verifyStaged(
  dir: string,
  m: BackupManifest | undefined,
  o: BackupReadOptions,
): Promise<VerifyResult> {
  const keyOpt = o.logKey !== undefined ? { hmacKey: o.logKey } : {};
  const isV2 = await exists(join(dir, LAYOUT.dir, LAYOUT.v2Meta));
  if (isV2) {
    // The head record is not archived: write it from the restored events, then verify everything.
    const w = await EventLog.open(dir, { ...keyOpt, fsync: 'always' });
    await w.close();
  }
  const log = await EventLog.open(dir, { ...keyOpt, readOnly: true });
  let r = await log.verifyChainFull();
  if (!r.valid && !isV2 && /earlier segments were deleted/.test(r.reason ?? '')) {
    // A legacy log pruned by Libervia has no anchor: its full verification cannot pass; use the
    // snapshot-based check Libervia itself used, and say so.
    const fast = await log.verifyChain();
    if (fast.valid) {
      r = {
        ...fast,
        warnings: [...fast.warnings, 'legacy log pruned without an anchor: verified from its snapshot'],
      };
    }
  }
  if (r.valid && m !== undefined) {
    const p = summaryProblems(m, r);
    if (p.length > 0) r = { ...r, valid: false, reason: p.join('; ') };
  }
  return r;
}

/**
 * Verify a backup without changing anything. Quick mode: manifest (and signature), the archive's
 * SHA-256, the entry list against the manifest, and sizes. `readData`: also every file's SHA-256 and
 * a full chain verification (in a private temp folder that is removed afterwards).
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
    if (sidecar.archive !== undefined) {
      const h = await hashFile(archivePath, { ...(options.signal ? { signal: options.signal } : {}) });
      res.archiveHash =
        h.digest === sidecar.archive.sha256 && h.length === sidecar.archive.size ? 'ok' : 'mismatch';
      if (res.archiveHash === 'mismatch')
        problems.push('the archive file does not match the SHA-256 in its manifest');
    }
  }
  let staging: string | undefined;
  try {
    if (options.readData) staging = await fsp.mkdtemp(join(tmpdir(), 'tv-verify-'));
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
        // Compare what was seen against the inner manifest.
        const listed = new Map(innerM.files.map((f) => [f.path, f]));
        for (const [p, s] of walk.seen) {
          const f = listed.get(p);
          if (p === LAYOUT.dir) continue;
          if (f === undefined) walk.entries.push({ path: p, status: 'extra', actualSize: s.size });
          else {
            const e: EntryCheck = {
              path: p,
              status: 'ok',
              expectedSize: f.size,
              actualSize: s.size,
              expectedSha256: f.sha256,
            };
            if (s.sha256 !== undefined) e.actualSha256 = s.sha256;
            e.status =
              f.size !== s.size
                ? 'size-mismatch'
                : s.sha256 === undefined
                  ? 'unchecked'
                  : s.sha256 !== f.sha256
                    ? 'sha256-mismatch'
                    : 'ok';
            walk.entries.push(e);
          }
        }
        for (const f of innerM.files)
          if (!walk.seen.has(f.path)) walk.entries.push({ path: f.path, status: 'missing' });
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
    if (
      err instanceof TensorVaultError &&
      (err.code === ErrorCode.UNSAFE_ARCHIVE ||
        err.code === ErrorCode.BUDGET_EXCEEDED ||
        err.code === ErrorCode.CORRUPT ||
        err.code === ErrorCode.CHECKSUM_MISMATCH)
    ) {
      problems.push(err.message);
    } else throw err;
  } finally {
    if (staging !== undefined) await fsp.rm(staging, { recursive: true, force: true });
  }
  res.ok = problems.length === 0;
  return res;
}

const OWNED = [LAYOUT.dir, LAYOUT.snapshot, LAYOUT.legacyAnchor, LAYOUT.legacySingle] as const;

/**
 * Restore a backup into `destDir` (created if needed; any folder, not only the original). Extracts
 * into a fresh private staging folder inside `destDir` (only the regular files and folders the
 * manifest names), verifies every checksum and the full chain there, and only then moves the log
 * into place by rename. An existing log is never touched without `overwrite`; with it, the old log
 * is moved aside and deleted only after the new one verifies in place. Any failure leaves `destDir`
 * as it was.
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
  const warnings: string[] = [];
  await assertRegularFile(archivePath);
  const sidecar = await loadSidecar(archivePath, options);
  const sigProblems: string[] = [];
  if (sidecar !== undefined) {
    const s = signatureStatus(sidecar, options, sigProblems);
    if (s === 'absent') warnings.push('the manifest is not signed');
    if (sidecar.archive !== undefined) {
      const h = await hashFile(archivePath, { ...(options.signal ? { signal: options.signal } : {}) });
      if (h.digest !== sidecar.archive.sha256 || h.length !== sidecar.archive.size) {
        throw new TensorVaultError(
          ErrorCode.CHECKSUM_MISMATCH,
          'the archive does not match the SHA-256 in its manifest',
          {
            path: archivePath,
            expected: sidecar.archive.sha256,
            actual: h.digest,
          },
        );
      }
    } else warnings.push('the manifest records no archive hash (Libervia backup)');
  } else warnings.push('no sidecar manifest: using manifest.json from inside the archive');
  if (sigProblems.length > 0) {
    throw new TensorVaultError(ErrorCode.SIGNATURE_INVALID, sigProblems.join('; '), { path: archivePath });
  }
  await fsp.mkdir(dest, { recursive: true }).catch((err: unknown) => {
    throw ioError(err, dest, 'cannot create');
  });
  // Hold the destination's writer lock for the whole restore: no writer may start meanwhile.
  const lock = WriterLock.acquire(join(dest, LAYOUT.lock));
  let staging: string | undefined;
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
        const s = signatureStatus(innerM, options, p);
        if (p.length > 0)
          throw new TensorVaultError(ErrorCode.SIGNATURE_INVALID, p.join('; '), { path: archivePath });
        if (s === 'absent') warnings.push('the manifest is not signed');
        manifest = innerM;
        const listed = new Map(innerM.files.map((f) => [f.path, f]));
        for (const [path, seen] of walk.seen) {
          if (path === LAYOUT.dir) continue;
          const f = listed.get(path);
          if (f === undefined)
            throw new TensorVaultError(
              ErrorCode.UNSAFE_ARCHIVE,
              `archive holds a file the manifest does not list: ${path}`,
              { name: path },
            );
          if (f.size !== seen.size || f.sha256 !== seen.sha256) {
            throw new TensorVaultError(
              ErrorCode.CHECKSUM_MISMATCH,
              `${path} does not match its manifest checksum`,
              { path, expected: f.sha256, actual: seen.sha256 ?? null },
            );
          }
        }
        for (const f of innerM.files)
          walk.entries.push(...(walk.seen.has(f.path) ? [] : [{ path: f.path, status: 'missing' as const }]));
      }
    }
    if (manifest === undefined) {
      throw new TensorVaultError(
        ErrorCode.CORRUPT,
        'no manifest: neither a sidecar nor manifest.json in the archive',
        { path: archivePath },
      );
    }
    const bad = walk.entries.filter((e) => e.status !== 'ok');
    if (bad.length > 0) {
      throw new TensorVaultError(
        ErrorCode.CHECKSUM_MISMATCH,
        `backup does not match its manifest: ${bad.map((e) => `${e.path} (${e.status})`).join(', ')}`,
        { path: archivePath, first: bad[0]?.path ?? null },
      );
    }
    const chain = await verifyStaged(staging, manifest, options);
    if (!chain.valid) {
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
    // Place: move the old log aside (kept until the new one verifies in place), then rename in. Only
    // the log's own layout is ever placed: a manifest (signed or not) naming anything else at the top
    // of the destination (`.bashrc`, `config.json`) is refused before anything moves.
    const staged = (await fsp.readdir(staging)).filter((n) => n !== LAYOUT.lock && n !== 'manifest.json');
    const foreign = staged.filter((n) => !(OWNED as readonly string[]).includes(n));
    if (foreign.length > 0) {
      throw new TensorVaultError(
        ErrorCode.CORRUPT,
        `the backup holds files outside the event-log layout, which a restore never writes: ${foreign.join(', ')}`,
        { path: archivePath, names: foreign.join(', ') },
      );
    }
    // The swap is journaled before anything moves (io/swap.ts): a kill at any point leaves a state
    // that the next read-write open or restore finishes or undoes, never a folder without a log.
    const journal = await beginSwap(dest, basename(staging), present, staged);
    try {
      await placeSwap(dest, journal);
      const check = await (
        await EventLog.open(dest, { readOnly: true, ...(options.logKey ? { hmacKey: options.logKey } : {}) })
      ).verifyChain();
      swapStep('verified');
      if (!check.valid) {
        throw new TensorVaultError(
          ErrorCode.CHAIN_INVALID,
          `the restored log does not verify in place: ${check.reason ?? ''}`,
          { path: dest },
        );
      }
    } catch (err) {
      // Roll back: take the new files out, put the old ones back (journaled too).
      await rollBackSwap(dest, journal).catch(() => {});
      throw err;
    }
    await commitSwap(dest, journal);
    return {
      destDir: dest,
      files: walk.entries.length,
      totalEvents: chain.totalEvents,
      chain,
      replaced: present.length > 0,
      warnings: [...warnings, ...chain.warnings],
    };
  } finally {
    if (staging !== undefined) await fsp.rm(staging, { recursive: true, force: true }).catch(() => {});
    lock.release();
  }
}
