/**
 * `tensorvault fold inspect|verify|repair|extract <file>`: PyFolds `.fold` / `.mind` containers.
 *
 * Exit codes from the shared table (`common.ts`, README "Command line"); errors go through
 * `reportError` like every command's (`--json`: one `{"error":{…}}` object on stderr).
 */
import { writeFileSync } from 'node:fs';
import { TensorVaultError } from '../errors';
import {
  type FoldChecks,
  type FoldVerifyReport,
  type OpenFoldOptions,
  openFold,
  repairFold,
  type VerifyFoldOptions,
  verifyFold,
} from '../fold/index';
import { atomicWriteFile } from '../io/index';
import {
  ExitCode,
  formatBytes,
  interruptSignal,
  note,
  type ParsedArgs,
  parseArgs,
  progressBar,
  readKeyFile,
  UsageError,
} from './common';
import { printable, printableJson } from './text';

const KEY_TEXT = `  --hmac-key TEXT        integrity key (default: $PYFOLDS_INTEGRITY_KEY when set)
  --decryption-key HEX   AES-256 key, 64 hex digits (or --decryption-key-file PATH: 32 raw bytes)
  --trust-key PEM        Ed25519 public key file (SPKI PEM) for the trust block and metadata signature
  --policy P             compatible (default) | strict | authenticated (strict + require HMAC or signature)
  --json                 machine-readable output`;

const EXIT_TEXT = `Exit codes: 0 intact (or repaired), 1 damage found but repairable (verify), 2 damage not
            repairable or verification failed (corrupt chunk, failed decryption, unverifiable
            digest, bad signature, refused by --policy), 3 bad command line (also: an encrypted
            chunk and no key given), 5 invalid input (not a valid container, unsupported chunk,
            no such chunk), 6 I/O error (a missing file, a key file included), 7 internal error,
            130 interrupted.`;

const usage = `tensorvault fold <inspect|verify|repair|extract> <file> [options]

  PyFolds .fold / .mind containers (docs/formats/fold.md).

  inspect <file>              header, chunks, metadata, file-level checks
  verify <file>               check every chunk (CRC-32C, digest, rs(N), decryption, decompression)
                              and the manifest, Merkle root and trust block; read-only
  repair <file> [--output P]  rewrite the chunks rs(N) can repair, atomically, then re-verify
  extract <file> --chunk NAME [--out PATH]
                              write one chunk's verified payload to PATH (default: stdout)

${KEY_TEXT}

${EXIT_TEXT}
`;

const VALUES = [
  'hmac-key',
  'decryption-key',
  'decryption-key-file',
  'trust-key',
  'policy',
  'output',
  'chunk',
  'out',
];

/** A key file named on the command line: a missing or unreadable one is a typed I/O error (exit 6). */

function keyOptions(args: ParsedArgs): OpenFoldOptions {
  const o: OpenFoldOptions = {};
  const hmac = args.values.get('hmac-key') ?? process.env.PYFOLDS_INTEGRITY_KEY;
  if (hmac !== undefined && hmac !== '') o.hmacKey = hmac;
  const hex = args.values.get('decryption-key');
  const keyFile = args.values.get('decryption-key-file');
  if (hex !== undefined) {
    if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new UsageError('--decryption-key must be 64 hex digits');
    o.decryptionKey = Buffer.from(hex, 'hex');
  } else if (keyFile !== undefined) o.decryptionKey = readKeyFile(keyFile, '--decryption-key-file');
  const trust = args.values.get('trust-key');
  if (trust !== undefined) o.trustPublicKey = readKeyFile(trust, '--trust-key').toString('utf8');
  const policy = args.values.get('policy');
  if (policy === 'strict') o.policy = 'strict';
  else if (policy === 'authenticated') o.policy = { strict: true, requireAuthenticated: true };
  else if (policy !== undefined && policy !== 'compatible') {
    throw new UsageError(`--policy must be compatible, strict or authenticated, got ${policy}`);
  }
  return o;
}

function describeChecks(c: FoldChecks): string {
  const line = (k: string, v: { status: string; detail?: string }): string =>
    `  ${k.padEnd(19)}${v.status}${v.detail ? ` (${v.detail})` : ''}\n`;
  let out = line('manifest_hash', c.manifestHash);
  out += line('chunk_hashes', c.chunkHashes);
  out += line('merkle_root', c.merkleRoot);
  out += line('trust_block', c.trustBlock);
  out += line('metadata signature', c.metadataSignature);
  out += `  authenticated      ${c.authenticated === 'none' ? 'no (integrity only: anyone can rewrite every check)' : c.authenticated}\n`;
  for (const w of c.warnings) out += `  warning: ${w}\n`;
  for (const v of c.policyViolations) out += `  POLICY: ${v}\n`;
  return out;
}

function describeReport(file: string, r: FoldVerifyReport): string {
  let out = `${file}: ${r.status.toUpperCase()}${r.isMind ? ' (.mind)' : ''}\n`;
  for (const c of r.chunks) {
    const extra = c.correctedBytes > 0 ? `, ${c.correctedBytes} byte(s) correctable` : '';
    const parity = c.parityDamaged ? ', parity damaged' : '';
    const err = c.error ? `: ${c.error.message} [${c.error.code}]` : '';
    out += `  chunk ${printableJson(JSON.stringify(c.name)).padEnd(18)} ${c.status}${extra}${parity}${err}\n`;
  }
  return out + describeChecks(r.checks);
}

function exitOf(r: FoldVerifyReport): number {
  return r.status === 'intact'
    ? ExitCode.OK
    : r.status === 'repairable'
      ? ExitCode.REPAIRABLE
      : ExitCode.UNREPAIRABLE;
}

const jsonReplacer = (_k: string, v: unknown): unknown =>
  typeof v === 'bigint'
    ? v.toString()
    : v instanceof TensorVaultError
      ? { code: v.code, message: v.message, context: v.context }
      : typeof v === 'number' && !Number.isFinite(v)
        ? String(v)
        : v;

function oneFile(args: ParsedArgs, verb: string): string {
  if (args.positionals.length !== 1) throw new UsageError(`fold ${verb} takes exactly one file`);
  return args.positionals[0] as string;
}

async function inspect(args: ParsedArgs): Promise<number> {
  const file = oneFile(args, 'inspect');
  const fold = await openFold(file, { ...keyOptions(args), verify: 'none', signal: interruptSignal() });
  if (args.flags.has('json')) {
    const { layout, isMind, version, chunks, checks, metadata } = fold;
    process.stdout.write(
      `${printableJson(JSON.stringify({ file, version, isMind, layout, chunks, checks, metadata }, jsonReplacer))}\n`,
    );
  } else {
    let out = `${file}: .fold ${fold.version}${fold.isMind ? ' (.mind)' : ''}, ${formatBytes(fold.layout.fileLength)}, index ${formatBytes(fold.layout.indexLength)} at ${fold.layout.indexOffset}\n`;
    for (const c of fold.chunks) {
      out += `  ${printableJson(JSON.stringify(c.name)).padEnd(18)} ${c.ctype} ${formatBytes(c.length).padStart(10)} stored ${formatBytes(c.storedLength).padStart(10)}${c.flags === 1 ? ' zstd' : ''} ${c.ecc}${c.encrypted ? ' encrypted' : ''}\n`;
    }
    out += `  security_level     ${printable(String(fold.metadata.security_level ?? '-'))}\n`;
    process.stdout.write(out + describeChecks(fold.checks));
  }
  fold.close();
  return ExitCode.OK;
}

async function verifyOrRepair(args: ParsedArgs, repair: boolean): Promise<number> {
  const file = oneFile(args, repair ? 'repair' : 'verify');
  const bar = progressBar(repair ? 'repairing' : 'verifying');
  const output = args.values.get('output');
  const options: VerifyFoldOptions & { output?: string } = {
    ...keyOptions(args),
    signal: interruptSignal(),
    ...(bar.onProgress ? { onProgress: bar.onProgress } : {}),
    ...(output !== undefined ? { output } : {}),
  };
  if (!repair) {
    const r = await verifyFold(file, options).finally(bar.done);
    if (args.flags.has('json'))
      process.stdout.write(`${printableJson(JSON.stringify({ file, ...r }, jsonReplacer))}\n`);
    else process.stdout.write(describeReport(file, r));
    return exitOf(r);
  }
  const r = await repairFold(file, options).finally(bar.done);
  if (args.flags.has('json')) process.stdout.write(`${JSON.stringify({ file, ...r }, jsonReplacer)}\n`);
  else if (r.before.status === 'intact') process.stdout.write(`${file}: intact, nothing to repair\n`);
  else {
    process.stdout.write(describeReport(file, r.before));
    process.stdout.write(
      `repaired ${output ?? file}: ${r.rewritten.length} chunk(s) rewritten; re-verified ${r.after.status}\n`,
    );
  }
  return r.after.status === 'intact' ? ExitCode.OK : ExitCode.UNREPAIRABLE;
}

async function extract(args: ParsedArgs): Promise<number> {
  const file = oneFile(args, 'extract');
  const name = args.values.get('chunk');
  if (name === undefined) throw new UsageError('fold extract needs --chunk NAME');
  const fold = await openFold(file, { ...keyOptions(args), signal: interruptSignal() });
  const c = await fold.chunk(name);
  const out = args.values.get('out');
  if (out === undefined)
    writeFileSync(1, c.bytes); // EPIPE: exit 141 (main.ts)
  else await atomicWriteFile(out, c.bytes);
  if (args.flags.has('json')) {
    process.stderr.write(
      `${JSON.stringify({ file, chunk: name, bytes: c.bytes.length, status: c.status, correctedBytes: c.correctedBytes })}\n`,
    );
  } else if (out !== undefined) {
    note(`${printable(name)}: ${formatBytes(c.bytes.length)} (${c.status}) → ${printable(out)}`);
  }
  fold.close();
  return ExitCode.OK;
}

/** Run `tensorvault fold …`. */
export async function run(argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const args = parseArgs(rest, ['json', 'help'], VALUES);
  if (sub === undefined || sub === '--help' || sub === '-h' || args.flags.has('help')) {
    process.stdout.write(usage);
    return sub === undefined ? ExitCode.USAGE : ExitCode.OK;
  }
  // Errors, a container that cannot be trusted included, go to reportError (main.ts): --json is
  // honoured and the exit code is the shared table's.
  switch (sub) {
    case 'inspect':
      return await inspect(args);
    case 'verify':
      return await verifyOrRepair(args, false);
    case 'repair':
      return await verifyOrRepair(args, true);
    case 'extract':
      return await extract(args);
    default:
      throw new UsageError(`unknown fold command '${sub}' (inspect, verify, repair, extract)`);
  }
}

export { usage };
