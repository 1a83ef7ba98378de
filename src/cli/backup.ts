/**
 * `tensorvault backup create|verify|restore`: cold backups of an event log.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { createBackup } from '../backup/create';
import type { ManifestKey } from '../backup/manifest';
import { type BackupPhase, type BackupReadOptions, restoreBackup, verifyBackup } from '../backup/restore';
import {
  ExitCode,
  formatBytes,
  formatRate,
  interruptSignal,
  note,
  output,
  type ParsedArgs,
  parseArgs,
  progressBar,
  readKeyFile,
  UsageError,
} from './common';
import { logKeyOf } from './eventlog';

/** Exit code when a restore refuses to replace an existing (or locked) event log. */

export const usage = `tensorvault backup <create|verify|restore> ...

  create <dataDir> <outDir>     pack DATA/event-log/* and the snapshot into
                                OUT/backup-eventlog-YYYYMMDD-HHMMSS-xxxxxx.tar.gz + .manifest.json
      --log-key-env NAME        the log's hmacKey, from environment variable NAME (hex or text):
                                also check the log's authentication at the cut
      --sign-key FILE           sign the manifest with this Ed25519 private key (PEM)
      --hmac-key-file FILE      sign the manifest with HMAC-SHA256 under this key (raw or hex)
      --encrypt-key-file FILE   encrypt the archive with AES-256-GCM (32-byte key, raw or hex)
      --level N                 gzip level 1-9 (default 6; libdeflate level N)
      --threads N               gzip members compressed at once (default cores + 1, max 8)

  verify <archive>              manifest, archive SHA-256, entry list and sizes (read-only)
      --read-data               also every file's SHA-256 and a full chain verification
      --manifest FILE           sidecar manifest (default: next to the archive)
      --public-key FILE         check an Ed25519 signature (PEM public key)
      --hmac-key-file FILE      check an HMAC signature
      --require-signature       fail when the manifest is unsigned
      --encrypt-key-file FILE   key of an encrypted archive
      --log-key-env NAME        the log's hmacKey, from environment variable NAME (hex or text);
                                needed with --read-data for a log opened with hmacKey

  restore <archive> <destDir>   staging, checksums, full chain verification, then atomic placement
      --overwrite               replace an existing event log (kept until the new one verifies)
      --allow-invalid-chain     restore a backup whose chain was INVALID at backup time (refused
                                without it), as evidence: every file's SHA-256 is still checked,
                                the log is placed as archived (no HEAD rebuilt: a writer refuses
                                to extend it) and the restore says so (exit 2)
      (and --manifest, --public-key, --hmac-key-file, --require-signature, --encrypt-key-file,
      --log-key-env: needed for a log opened with hmacKey)

  --json                        machine-readable output

Exit codes: 0 success; 2 verification failed (checksum, missing/extra entry, invalid chain now or
at backup time (restore --allow-invalid-chain: restored, but the chain was invalid at backup), bad signature, a keyed log without --log-key-env or an unkeyed one with it; verify:
any failed check); 3 bad
command line; 4 restore refused (an event log exists and
--overwrite was not given, or a writer holds it); 5 invalid input (restore: hostile archive,
decompression bomb, corrupt archive or manifest); 6 I/O error; 7 internal error; 130 interrupted.
`;

function keyBytes(path: string, what: string): Buffer {
  const raw = readKeyFile(path, what);
  const text = raw.toString('latin1').trim();
  return /^[0-9a-fA-F]+$/.test(text) && text.length % 2 === 0 && text.length >= 32
    ? Buffer.from(text, 'hex')
    : raw;
}

function manifestKey(values: Map<string, string>, signing: boolean): ManifestKey | undefined {
  const pem = values.get(signing ? 'sign-key' : 'public-key');
  const hmac = values.get('hmac-key-file');
  if (pem !== undefined && hmac !== undefined) throw new UsageError('give one key, not both');
  if (pem !== undefined) {
    const option = signing ? '--sign-key' : '--public-key';
    const key = readKeyFile(pem, option);
    try {
      const k = signing ? createPrivateKey(key) : createPublicKey(key);
      if (k.asymmetricKeyType !== 'ed25519') throw new Error(`a ${k.asymmetricKeyType} key`);
    } catch (err) {
      throw new UsageError(
        `${option} ${pem}: not an Ed25519 ${signing ? 'private' : 'public'} key in PEM (${(err as Error).message})`,
      );
    }
    return { type: 'ed25519', key };
  }
  if (hmac !== undefined) return { type: 'hmac-sha256', key: keyBytes(hmac, '--hmac-key-file') };
  return undefined;
}

/** The options `verify` and `restore` share: manifest, keys, signature policy, Ctrl-C, progress. */
/** The bar's label at each step of a verify or restore. */
const PHASE_LABEL: Record<BackupPhase, string> = {
  checksum: 'archive sha256',
  archive: 'reading archive',
  chain: 'verifying chain',
  place: 'checking in place',
};

function readOptions(a: ParsedArgs, bar: ReturnType<typeof progressBar>): BackupReadOptions {
  const key = manifestKey(a.values, false);
  const ek = encKey(a.values);
  const lk = logKeyOf(a.values);
  return {
    requireSignature: a.flags.has('require-signature'),
    signal: interruptSignal(),
    ...(a.values.has('manifest') ? { manifestPath: a.values.get('manifest') as string } : {}),
    ...(key ? { key } : {}),
    ...(ek ? { encryptionKey: ek } : {}),
    ...(lk ? { logKey: lk } : {}),
    ...(bar.onProgress ? { onProgress: bar.onProgress, onPhase: (p) => bar.phase(PHASE_LABEL[p]) } : {}),
  };
}

function encKey(values: Map<string, string>): Uint8Array | undefined {
  const f = values.get('encrypt-key-file');
  if (f === undefined) return undefined;
  const k = keyBytes(f, '--encrypt-key-file');
  if (k.length !== 32)
    throw new UsageError('--encrypt-key-file must hold a 32-byte key (raw or 64 hex digits)');
  return k;
}

const out = (s: string): boolean => process.stdout.write(s);

/** Run the `backup` verb; returns the exit code. */
export async function run(argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h') {
    out(usage);
    return sub === undefined ? ExitCode.USAGE : ExitCode.OK;
  }
  const common = ['manifest', 'public-key', 'hmac-key-file', 'encrypt-key-file', 'log-key-env'];
  if (sub === 'create') return await create(rest);
  if (sub === 'verify') {
    const a = parseArgs(rest, ['read-data', 'require-signature', 'json'], common);
    if (a.positionals.length !== 1) throw new UsageError('backup verify takes one archive');
    const archive = a.positionals[0] as string;
    const bar = progressBar('verifying', 0);
    const r = await verifyBackup(archive, {
      readData: a.flags.has('read-data'),
      ...readOptions(a, bar),
    }).finally(bar.done);
    if (a.flags.has('json')) out(`${JSON.stringify(r)}\n`);
    else {
      out(`manifest: ${r.manifestSource}; signature: ${r.signature}; archive sha256: ${r.archiveHash}\n`);
      for (const e of r.entries)
        out(`  ${e.status === 'ok' || e.status === 'unchecked' ? 'ok  ' : 'FAIL'} ${e.path} (${e.status})\n`);
      if (r.chain)
        out(
          `chain: ${r.chain.valid ? `valid (${r.chain.totalEvents} events)` : `INVALID: ${r.chain.reason}`}\n`,
        );
      out(r.ok ? 'backup OK\n' : `backup FAILED:\n${r.problems.map((p) => `  - ${p}\n`).join('')}`);
    }
    return r.ok ? ExitCode.OK : ExitCode.UNREPAIRABLE;
  }
  if (sub === 'restore') {
    const a = parseArgs(rest, ['overwrite', 'allow-invalid-chain', 'require-signature', 'json'], common);
    if (a.positionals.length !== 2)
      throw new UsageError('backup restore takes an archive and a destination folder');
    const [archive, dest] = a.positionals as [string, string];
    const bar = progressBar('restoring', 0);
    const r = await restoreBackup(archive, dest, {
      overwrite: a.flags.has('overwrite'),
      allowInvalidChain: a.flags.has('allow-invalid-chain'),
      ...readOptions(a, bar),
    }).finally(bar.done);
    if (a.flags.has('json')) out(`${JSON.stringify(r)}\n`);
    else {
      out(`[1/4] Manifest and archive checksum verified\n`);
      out(`[2/4] Extracted ${r.files} file(s) into a private staging folder; every SHA-256 matches\n`);
      if (r.chainValidAtBackup)
        out(`[3/4] Chain verified: ${r.totalEvents} events, last hash ${r.chain.head.hash ?? '-'}\n`);
      else
        out(
          `[3/4] Chain INVALID at backup time${r.chainProblemAtBackup === null ? '' : ` (${r.chainProblemAtBackup})`}; ${r.chain.valid ? 'verifies now' : `now: INVALID (${r.chain.reason ?? 'invalid'})`}; restored as evidence (--allow-invalid-chain)\n`,
        );
      out(`[4/4] Restored into ${r.destDir}${r.replaced ? ' (previous log replaced)' : ''}\n`);
      if (!output.quiet) for (const w of r.warnings) out(`  note: ${w}\n`);
    }
    // Restored as asked, but the chain it holds was invalid at backup time: as `backup create` says of
    // such a log (written, exit 2).
    return r.chainValidAtBackup ? ExitCode.OK : ExitCode.UNREPAIRABLE;
  }
  throw new UsageError(`unknown backup command '${sub}' (create, verify or restore)`);
}

async function create(argv: readonly string[]): Promise<number> {
  const a = parseArgs(
    argv,
    ['json'],
    ['sign-key', 'hmac-key-file', 'encrypt-key-file', 'log-key-env', 'level', 'threads'],
  );
  if (a.positionals.length !== 2)
    throw new UsageError('backup create takes a data folder and an output folder');
  const [dataDir, outDir] = a.positionals as [string, string];
  const key = manifestKey(a.values, true);
  const ek = encKey(a.values);
  const lk = logKeyOf(a.values);
  const json = a.flags.has('json');
  const bar = progressBar('backing up', 16 * 1024 * 1024);
  const t0 = performance.now();
  const r = await createBackup(dataDir, outDir, {
    signal: interruptSignal(),
    ...(key ? { sign: key } : {}),
    ...(ek ? { encryptionKey: ek } : {}),
    ...(lk ? { logKey: lk } : {}),
    ...(a.values.has('level') ? { compressionLevel: Number(a.values.get('level')) } : {}),
    ...(a.values.has('threads') ? { threads: Number(a.values.get('threads')) } : {}),
    ...(bar.onProgress ? { onProgress: bar.onProgress } : {}),
    ...(json
      ? {}
      : {
          onStep: (line: string) => {
            bar.done(); // the bar comes back at the next report, below the step line
            out(`${line}\n`);
          },
        }),
  }).finally(bar.done);
  const secs = (performance.now() - t0) / 1000;
  if (json)
    out(
      `${JSON.stringify({ archive: r.archivePath, manifest: r.manifestPath, bytesIn: r.bytesIn, bytesOut: r.bytesOut, seconds: secs, chainValid: r.manifest.chain_valid_at_backup })}\n`,
    );
  else {
    note(
      `${formatBytes(r.bytesIn)} -> ${formatBytes(r.bytesOut)} in ${secs.toFixed(2)} s (${formatRate(r.bytesIn, secs)})`,
    );
  }
  return r.manifest.chain_valid_at_backup ? ExitCode.OK : ExitCode.UNREPAIRABLE;
}
