/** What `verifyBackup` and `restoreBackup` share: the sidecar, signatures, the staged chain check. */
import { promises as fsp } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ErrorCode, TensorVaultError } from '../errors';
import {
  canonicalJson,
  EventLog,
  LAYOUT,
  type VerifyChainOptions,
  type VerifyResult,
  writeRestoredHead,
} from '../eventlog/index';
import { hashFile } from '../hash/index';
import { assertRegularFile, exists, ioError } from '../io/index';
import { requiredString } from '../validate';
import type { EntryCheck } from './extract';
import { type BackupManifest, parseManifest, verifyManifestSignature } from './manifest';
import type { BackupReadOptions } from './options';

/** A manifest's signature: `valid`, `invalid`, `absent` (unsigned), or `unchecked` (signed, no key given). */
export type SignatureStatus = 'valid' | 'invalid' | 'absent' | 'unchecked';

/** Sidecar manifest path of an archive. */
export function backupManifestPath(archivePath: string): string {
  requiredString(archivePath, 'archivePath');
  const name = basename(archivePath).replace(/\.tar\.gz(\.enc)?$/, '');
  return join(dirname(archivePath), `${name}.manifest.json`);
}

export async function loadSidecar(
  archivePath: string,
  o: BackupReadOptions,
): Promise<BackupManifest | undefined> {
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

export function signatureStatus(
  m: BackupManifest,
  o: BackupReadOptions,
  problems: string[],
): SignatureStatus {
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

export const strip = (m: BackupManifest): string => {
  const { archive: _a, signature: _s, ...rest } = m;
  return canonicalJson(rest);
};

export function summaryProblems(m: BackupManifest, chain: VerifyResult): string[] {
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

/**
 * Why a backup whose manifest says its source chain was invalid at backup time cannot be trusted, or
 * undefined. Such an archive is evidence, not a log to put back: its events end where the damage is,
 * and a restore writes the head record from them, which would hide a cut tail for good. Verify reports
 * it as a failed check; restore refuses it, unless asked to restore it as evidence
 * (`allowInvalidChain`: every file still checked, the v2 head record not rebuilt).
 */
export function invalidAtBackup(m: BackupManifest): string | undefined {
  if (m.chain_valid_at_backup !== false) return undefined;
  const why = m.tensorvault?.chain_problem ?? null;
  return `the source chain was INVALID at backup time${why === null ? '' : ` (${why})`}: the archive is evidence of a damaged log, not a backup to restore`;
}

/** The options of a verify or restore that the archive walk takes as they are. */
// The return type is written out: inferred, it was emitted as `Uint8Array<ArrayBufferLike>`, which
// TypeScript before 5.7 rejects (Uint8Array is not generic there).
export function readOptions(o: BackupReadOptions): {
  encryptionKey?: Uint8Array;
  maxBytes?: number;
  signal?: AbortSignal;
  onProgress?: NonNullable<BackupReadOptions['onProgress']>;
} {
  return {
    ...(o.encryptionKey ? { encryptionKey: o.encryptionKey } : {}),
    ...(o.maxExpandedBytes !== undefined ? { maxBytes: o.maxExpandedBytes } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
  };
}

/**
 * The full chain verdict of a staged log, and its events against the manifest's count and last hash.
 * A v2 log's head record (not archived) is written from the events first, except for `evidence` (a
 * backup invalid at backup time, restored with `allowInvalidChain`): its head is left missing, so that
 * the damage the check at backup found (a cut tail shows only against HEAD) is never hidden, and a
 * log whose files cannot even be opened (`TV_CORRUPT`) is an invalid verdict rather than an error.
 */
export async function verifyStaged(
  dir: string,
  m: BackupManifest | undefined,
  o: BackupReadOptions,
  evidence = false,
): Promise<VerifyResult> {
  const keyOpt = o.logKey !== undefined ? { hmacKey: o.logKey } : {};
  const isV2 = await exists(join(dir, LAYOUT.dir, LAYOUT.v2Meta));
  if (isV2 && !evidence) {
    // The head record is not archived: write it from the restored events (under the log's key, when it
    // has one), then verify everything, and the events against the manifest's count and last hash.
    await writeRestoredHead(dir, o.logKey);
  }
  let log: EventLog;
  try {
    log = await EventLog.open(dir, { ...keyOpt, readOnly: true });
  } catch (err) {
    if (!evidence || !(err instanceof TensorVaultError) || err.code !== ErrorCode.CORRUPT) throw err;
    o.onPhase?.('chain');
    return {
      valid: false,
      reason: err.message,
      totalVerified: 0,
      mode: 'full',
      usedSnapshot: false,
      totalEvents: 0,
      head: { seq: null, hash: null },
      warnings: [],
    };
  }
  o.onPhase?.('chain');
  const vo = {
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
  };
  let r = await chainVerdict(log, isV2, vo);
  if (r.valid && m !== undefined) {
    const p = summaryProblems(m, r);
    if (p.length > 0) r = { ...r, valid: false, reason: p.join('; ') };
  }
  return r;
}

/**
 * The chain verdict a backup gives a log, the same at create (the cut's event-by-event check), verify
 * and restore (in staging and again in place): the full check, or for a legacy log pruned by Libervia
 * (no anchor: its full verification cannot pass) the snapshot-based check Libervia itself used.
 */
export async function chainVerdict(
  log: EventLog,
  isV2: boolean,
  vo: VerifyChainOptions,
): Promise<VerifyResult> {
  const r = await log.verifyChainFull(vo);
  if (!r.valid && !isV2 && /earlier segments were deleted/.test(r.reason ?? '')) {
    const fast = await log.verifyChain(vo);
    if (fast.valid) {
      return {
        ...fast,
        warnings: [...fast.warnings, 'legacy log pruned without an anchor: verified from its snapshot'],
      };
    }
  }
  return r;
}

/**
 * The walked archive's files checked against a manifest found inside it (when there was no sidecar to
 * walk against): one entry per file seen or listed.
 */
export function entriesAgainst(
  m: BackupManifest,
  seen: ReadonlyMap<string, { size: number; sha256?: string }>,
): EntryCheck[] {
  const listed = new Map(m.files.map((f) => [f.path, f]));
  const out: EntryCheck[] = [];
  for (const [p, s] of seen) {
    if (p === LAYOUT.dir) continue;
    const f = listed.get(p);
    if (f === undefined) {
      out.push({ path: p, status: 'extra', actualSize: s.size });
      continue;
    }
    const e: EntryCheck = {
      path: p,
      status: 'ok',
      expectedSize: f.size,
      actualSize: s.size,
      expectedSha256: f.sha256,
    };
    if (s.sha256 !== undefined) e.actualSha256 = s.sha256;
    if (f.size !== s.size) e.status = 'size-mismatch';
    else if (s.sha256 === undefined) e.status = 'unchecked';
    else if (s.sha256 !== f.sha256) e.status = 'sha256-mismatch';
    out.push(e);
  }
  for (const f of m.files) if (!seen.has(f.path)) out.push({ path: f.path, status: 'missing' });
  return out;
}

/** Whether the archive file matches the size and SHA-256 its sidecar records (`unrecorded` without). */
export async function archiveHashStatus(
  archivePath: string,
  sidecar: BackupManifest,
  o: BackupReadOptions,
): Promise<'ok' | 'mismatch' | 'unrecorded'> {
  if (sidecar.archive === undefined) return 'unrecorded';
  o.onPhase?.('checksum');
  const h = await hashFile(archivePath, {
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
  });
  return h.digest === sidecar.archive.sha256 && h.length === sidecar.archive.size ? 'ok' : 'mismatch';
}
