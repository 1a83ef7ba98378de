/**
 * `tensorvault protect|verify|repair <file>`: the erasure parity sidecar (`<file>.tvecc`).
 *
 * Exit codes (par2-style): 0 intact / done, 1 damage found and repairable (verify), 2 damage not
 * repairable, sidecar unusable or stale, 3 bad command line, 6 I/O error, 7 internal error, 130
 * interrupted.
 */
import { readFile } from 'node:fs/promises';
import {
  type ChunkDigestName,
  type EccFormat,
  type EccLayout,
  type EccVerifyResult,
  type ErasureProtectionLevel,
  eccSidecarPath,
  type ProtectOptions,
  protect,
  type RepairResult,
  repair,
  type SidecarOptions,
  verify,
} from '../ecc/erasure';
import { type ErrorContext, TensorVaultError } from '../errors';
import {
  CONNECTION_HELP,
  ExitCode,
  formatBytes,
  formatRate,
  interruptSignal,
  note,
  type ParsedArgs,
  parseArgs,
  parseSize,
  progressBar,
  reportError,
  UsageError,
} from './common';

const EXIT_TEXT = `Exit codes: 0 intact (or repaired), 1 damage found but repairable (verify), 2 damage not
            repairable, sidecar unusable or stale (the file was edited after protect), 3 bad command
            line, 6 I/O error, 7 internal error, 130 interrupted.`;

/** A verb of this group. */
export interface Verb {
  run: (argv: readonly string[]) => Promise<number>;
  usage: string;
}

function oneFile(positionals: readonly string[], verb: string): string {
  if (positionals.length !== 1) throw new UsageError(`${verb} takes exactly one file`);
  return positionals[0] as string;
}

function intArg(text: string | undefined, name: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text)) throw new UsageError(`--${name}: not a whole number: ${text}`);
  return Number(text);
}

function listChunks(label: string, chunks: readonly number[]): string {
  if (chunks.length === 0) return '';
  const shown = chunks.slice(0, 20).join(', ');
  return `  ${label}: ${shown}${chunks.length > 20 ? `, … (${chunks.length} in all)` : ''}\n`;
}

/** `format v2, code k+m, S chunks, …`: the code and its shape (v2 is one stripe over every chunk). */
function describeCode(l: EccLayout): string {
  return l.formatVersion === 2
    ? `format v2 (wide GF(2^16) code), code ${l.k}+${l.m}, ${formatBytes(l.chunkSize)} chunks${l.localGroups > 0 ? `, local parity: ${l.localGroups} ${l.interleavedGroups ? `interleaved groups (chunk i in group i mod ${l.localGroups})` : `groups of ${l.localGroup} consecutive chunks`}` : ''}`
    : `format v1, code ${l.k}+${l.m}, ${formatBytes(l.chunkSize)} chunks, ${l.chunks} chunks in ${l.stripes} stripes`;
}

/** The repair guarantee of a layout, in words. */
function describeGuarantee(l: EccLayout): string {
  if (l.formatVersion === 2 || l.stripes <= 1) {
    const local = l.localGroups > 0 ? ', plus one in each local group they leave untouched' : '';
    return `any ${l.m} damaged chunk(s) of ${formatBytes(l.chunkSize)} (data or parity, anywhere) are repairable${local}`;
  }
  return `any single burst of up to ${formatBytes(Math.max(0, (l.m * l.stripes - 1) * l.chunkSize + 1))} is repairable; at most ${l.m} damaged chunk(s) per stripe`;
}

function describeVerify(file: string, r: EccVerifyResult): string {
  const l = r.layout;
  let out = `${file}: ${r.status.toUpperCase()}\n`;
  out += `  ${describeCode(l)}, ${l.digest} digests\n`;
  if (r.actualLength !== l.fileLength) {
    out += `  length ${r.actualLength} bytes, expected ${l.fileLength} (${r.actualLength < l.fileLength ? 'truncated' : 'trailing bytes'})\n`;
  }
  out += listChunks('damaged chunks', r.damagedChunks);
  out += listChunks('damaged parity slots', r.damagedParity);
  out += listChunks('UNREADABLE chunks (I/O error)', r.unreadableChunks);
  out += listChunks('UNREADABLE parity slots (I/O error)', r.unreadableParity);
  if (r.unreadableChunks.length + r.unreadableParity.length > 0) {
    out +=
      '  the medium returned read errors: parity rebuilds these, but check the disk (SMART, dmesg) and copy what matters off it\n';
  }
  out += listChunks('UNREPAIRABLE chunks', r.unrepairableChunks);
  if (r.status === 'stale') {
    const differ = r.differingExact
      ? `${r.differingBytes} of its bytes differ`
      : `chunks holding ${r.differingBytes} of its bytes differ`;
    out += `  STALE sidecar: ${file} was modified after it was protected and ${differ}\n`;
    out += `  protect it again, or \`tensorvault repair --force\` to roll it back (the damage would be ${r.damageStatus})\n`;
  } else if (r.modifiedSinceProtect === true && r.status !== 'intact') {
    out += '  note: the file was modified after it was protected (modification time or length differ)\n';
  }
  const s = r.sidecar;
  const side: string[] = [];
  if (!s.headerA) side.push('header A damaged');
  if (!s.headerB) side.push('header B damaged');
  if (s.tableABadBlocks.length > 0) side.push(`table A: ${s.tableABadBlocks.length} bad block(s)`);
  if (s.tableBBadBlocks.length > 0) side.push(`table B: ${s.tableBBadBlocks.length} bad block(s)`);
  if (s.actualLength !== s.expectedLength)
    side.push(`length ${s.actualLength}, expected ${s.expectedLength}`);
  if (side.length > 0) out += `  sidecar: ${side.join('; ')}\n`;
  return out;
}

/** What every verb of this group shares: `--help`, one file, `--sidecar`, Ctrl-C, the progress bar, timing. */
async function runSidecarVerb<T>(
  argv: readonly string[],
  verb: string,
  usage: string,
  values: readonly string[],
  label: string,
  job: (file: string, args: ParsedArgs, options: SidecarOptions) => Promise<T>,
  flags: readonly string[] = [],
): Promise<{ file: string; args: ParsedArgs; r: T; seconds: number } | null> {
  const args = parseArgs(argv, ['json', 'help', ...flags], ['sidecar', ...values]);
  if (args.flags.has('help')) {
    process.stdout.write(usage);
    return null;
  }
  const file = oneFile(args.positionals, verb);
  const sidecar = args.values.get('sidecar');
  const bar = progressBar(label);
  const started = performance.now();
  const options: SidecarOptions = {
    signal: interruptSignal(),
    ...(sidecar !== undefined ? { sidecar } : {}),
    ...(bar.onProgress ? { onProgress: bar.onProgress } : {}),
  };
  // An async wrapper so that a usage error thrown while building the options still clears the bar.
  const r = await (async () => job(file, args, options))().finally(bar.done);
  return { file, args, r, seconds: (performance.now() - started) / 1000 };
}

const protectUsage = `tensorvault protect <file> [options]

  Write <file>.tvecc: per-chunk digests and interleaved Reed-Solomon parity that locate and repair
  damage to the file (and to the sidecar itself). docs/formats/ecc-sidecar.md.

  --level L          low (6.25 % parity), medium (12.5 %, default), high (40 %); format v2 repairs
                     any that share of the chunks (a 1 GiB file at medium: any 128 chunks of 1 MiB),
                     v1 stripes of 32+2, 16+2, 10+4 (2, 2, 4 damaged chunks per stripe)
  --k N --m N --chunk-size S
                     custom code: N data + N parity chunks per stripe, chunk size (power of two, 4k..1G)
  --digest D         chunk digest: blake3 (default, fastest verify) or sha256 (the chunk tree's leaves)
  --format F         auto (default: v1 when the file fits one GF(2^8) stripe, else v2), v1 (GF(2^8)
                     stripes: up to m damaged chunks per stripe) or v2 (one wide GF(2^16) code: any m
                     damaged chunks anywhere; with --k, k must be the file's chunk count)
  --sidecar PATH     sidecar path (default <file>.tvecc)
  --json             machine-readable output

${EXIT_TEXT}
`;

async function runProtect(argv: readonly string[]): Promise<number> {
  const done = await runSidecarVerb(
    argv,
    'protect',
    protectUsage,
    ['level', 'k', 'm', 'chunk-size', 'digest', 'format'],
    'protecting',
    (file, args, common) => {
      const level = args.values.get('level');
      const k = intArg(args.values.get('k'), 'k');
      const m = intArg(args.values.get('m'), 'm');
      const cs = args.values.get('chunk-size');
      const digest = args.values.get('digest');
      const format = args.values.get('format');
      if (format !== undefined && format !== 'auto' && format !== 'v1' && format !== 'v2') {
        throw new UsageError(`--format must be auto, v1 or v2, got ${format}`);
      }
      const custom = k !== undefined || m !== undefined || cs !== undefined;
      if (custom && (k === undefined || m === undefined || cs === undefined)) {
        throw new UsageError('--k, --m and --chunk-size go together');
      }
      if (custom && level !== undefined)
        throw new UsageError('give --level or --k/--m/--chunk-size, not both');
      if (level !== undefined && !['low', 'medium', 'high'].includes(level)) {
        throw new UsageError(`--level must be low, medium or high, got ${level}`);
      }
      if (digest !== undefined && digest !== 'blake3' && digest !== 'sha256') {
        throw new UsageError(`--digest must be blake3 or sha256, got ${digest}`);
      }
      const options: ProtectOptions = {
        ...common,
        ...(custom
          ? { k: k as number, m: m as number, chunkSize: parseSize(cs as string, 'chunk-size') }
          : {}),
        ...(level !== undefined ? { level: level as ErasureProtectionLevel } : {}),
        ...(digest !== undefined ? { digest: digest as ChunkDigestName } : {}),
        ...(format !== undefined ? { format: format as EccFormat } : {}),
      };
      return protect(file, options);
    },
  );
  if (done === null) return ExitCode.OK;
  const { file, args, r, seconds } = done;
  if (args.flags.has('json')) {
    process.stdout.write(`${JSON.stringify({ file, ...r, seconds })}\n`);
  } else {
    const l = r.layout;
    const overhead = l.fileLength > 0 ? ((l.sidecarLength / l.fileLength) * 100).toFixed(1) : '-';
    process.stdout.write(
      `protected ${file} → ${r.sidecarPath}\n  ${describeCode(l)}, ${l.digest} digests, sidecar ${formatBytes(l.sidecarLength)} (${overhead} %)\n  ${describeGuarantee(l)}\n`,
    );
    note(`${formatBytes(l.fileLength)} in ${seconds.toFixed(2)} s (${formatRate(l.fileLength, seconds)})`);
  }
  return ExitCode.OK;
}

const verifyUsage = `tensorvault verify <file> [options]

  Check <file> against <file>.tvecc, read-only: intact, repairable (which chunks), unrepairable, or
  stale (the file was edited after protect: its modification time or length differ from the sidecar's
  record and most of its bytes differ).

  --sidecar PATH     sidecar path (default <file>.tvecc)
  --json             machine-readable output

A stored set instead of <file>: tensorvault verify <url> [options], <url> = s3://bucket/prefix/NAME
  or file:///dir/NAME; it verifies the set where it is (exit 0 intact, 1 repairable, 2 damaged) and
  takes --concurrency N, --json and the connection options below, not --sidecar (full help:
  tensorvault verify s3://… --help).

${CONNECTION_HELP}
${EXIT_TEXT}
`;

async function runVerify(argv: readonly string[]): Promise<number> {
  const done = await runSidecarVerb(argv, 'verify', verifyUsage, [], 'verifying', (file, _args, options) =>
    verify(file, options),
  );
  if (done === null) return ExitCode.OK;
  const { file, args, r, seconds } = done;
  if (args.flags.has('json')) process.stdout.write(`${JSON.stringify({ file, ...r, seconds })}\n`);
  else {
    process.stdout.write(describeVerify(file, r));
    note(`verified in ${seconds.toFixed(2)} s (${formatRate(r.layout.fileLength, seconds)})`);
  }
  return r.status === 'intact'
    ? ExitCode.OK
    : r.status === 'repairable'
      ? ExitCode.REPAIRABLE
      : ExitCode.UNREPAIRABLE;
}

/** `--chunks 3,17` or `--report verify.json` (the `damagedChunks` of `tensorvault verify --json`). */
async function listedChunks(
  text: string | undefined,
  report: string | undefined,
): Promise<number[] | undefined> {
  if (text !== undefined && report !== undefined)
    throw new UsageError('--chunks and --report exclude each other');
  if (text !== undefined) {
    if (!/^\d+(,\d+)*$/.test(text))
      throw new UsageError(`--chunks: not a comma-separated list of chunk numbers: ${text}`);
    return text.split(',').map(Number);
  }
  if (report === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(report, 'utf8'));
  } catch (err) {
    throw new UsageError(`--report ${report}: not readable JSON (${(err as Error).message})`);
  }
  const list = (parsed as { damagedChunks?: unknown } | null)?.damagedChunks;
  if (!Array.isArray(list) || !list.every((c) => Number.isSafeInteger(c) && c >= 0))
    throw new UsageError(
      `--report ${report}: no damagedChunks list (the output of tensorvault verify --json)`,
    );
  return list as number[];
}

const repairUsage = `tensorvault repair <file> [options]

  Rebuild damaged chunks of <file> (and a damaged sidecar) from parity; every rebuilt chunk is checked
  against its digest before it is written. By default only the damaged chunks are written, into the
  file itself (a kill at any moment leaves it repairable to the same bytes), the length is restored,
  and what was written is checked again; a file that cannot be opened for writing is repaired through
  a copy. A damaged sidecar is replaced atomically; when it cannot be (a read-only folder, a full
  disk), the file stays repaired, the sidecar as it was, and the error's exit code is returned (6 for
  a permission or I/O error). Damage beyond the parity budget changes nothing
  and exits 2 with the unrepairable chunks listed. A file edited after protect (verify says stale) is
  not rolled back: repair exits 2 and changes nothing, unless --force. A repaired file gets back the
  modification time it had when it was protected.

  --copy             write a repaired copy and rename it over the file (a new inode: other hard links
                     keep their bytes), as for a shared or read-only file
  --in-place         in place or fail (no fallback to a copy)
  --chunks LIST      the damaged chunks (comma-separated, from verify): check only their stripes, not
                     the whole file (damage elsewhere is neither seen nor repaired). When the listed
                     chunks are all intact, the whole file is verified: damage elsewhere is reported
                     and the exit code is verify's (1 repairable, 2 not), never "intact"
  --report FILE      the same list from the output of \`tensorvault verify --json\`
  --sidecar PATH     sidecar path (default <file>.tvecc)
  --force            repair a file whose sidecar looks stale, rolling the edit back
  --json             machine-readable output

A stored set instead of <file>: tensorvault repair <url> [options], <url> = s3://bucket/prefix/NAME
  or file:///dir/NAME; it rebuilds a stored checkpoint's damaged chunks from its stored parity and
  takes --part-size SIZE, --json and the connection options below, not --sidecar or the options above
  (full help: tensorvault repair s3://… --help).

${CONNECTION_HELP}
${EXIT_TEXT}
`;

async function runRepair(argv: readonly string[]): Promise<number> {
  const done = await runSidecarVerb(
    argv,
    'repair',
    repairUsage,
    ['chunks', 'report'],
    'repairing',
    async (file, args, options): Promise<RepairResult & { wholeFile?: EccVerifyResult }> => {
      if (args.flags.has('copy') && args.flags.has('in-place'))
        throw new UsageError('--copy and --in-place exclude each other');
      const mode = args.flags.has('copy') ? 'copy' : args.flags.has('in-place') ? 'in-place' : 'auto';
      const chunks = await listedChunks(args.values.get('chunks'), args.values.get('report'));
      const r = await repair(file, {
        ...options,
        force: args.flags.has('force'),
        mode,
        ...(chunks !== undefined ? { chunks } : {}),
      });
      // The listed chunks are all intact: a stale or wrong list. That says nothing of the rest of the
      // file, which is checked now (never "intact" for a file that is not).
      if (chunks !== undefined && r.before.status === 'intact')
        return { ...r, wholeFile: await verify(file, options) };
      return r;
    },
    ['force', 'copy', 'in-place'],
  );
  if (done === null) return ExitCode.OK;
  const { file, args, r, seconds } = done;
  const sidecarError = r.sidecarError;
  const whole = r.wholeFile;
  if (args.flags.has('json'))
    process.stdout.write(`${JSON.stringify({ file, ...r, seconds }, jsonErrors)}\n`);
  else if (whole !== undefined && whole.status !== 'intact') {
    process.stdout.write(
      `${file}: the listed chunks are intact, nothing was repaired; but the file is not intact:\n${describeVerify(file, whole)}`,
    );
    if (whole.status === 'repairable')
      process.stdout.write(`repair without --chunks (or with the damaged chunks above) to rebuild them\n`);
  } else if (r.before.status === 'intact') process.stdout.write(`${file}: intact, nothing to repair\n`);
  else {
    process.stdout.write(describeVerify(file, r.before));
    const how =
      r.writeMode === 'in-place'
        ? ', written in place'
        : r.writeMode === 'copy'
          ? ', file replaced by a repaired copy'
          : '';
    const scope = r.checkedAfter === 'file' ? 'whole file' : 'written chunks and length';
    process.stdout.write(
      sidecarError === null
        ? `repaired ${file}: ${r.repairedChunks.length} chunk(s) rebuilt${how}${r.sidecarRewritten ? ', sidecar rewritten' : ''}; re-verified ${r.after.status} (${scope})\n`
        : `repaired ${file}: ${r.repairedChunks.length} chunk(s) rebuilt${how}; re-verified (${scope}); the sidecar was NOT rewritten and is still damaged\n`,
    );
    note(`in ${seconds.toFixed(2)} s`);
  }
  // The file is repaired, its sidecar is not: the sidecar's error, with that error's exit code (6 for
  // a permission or I/O error), as any command that could not write what it had to.
  if (sidecarError !== null) {
    const sidecar = args.values.get('sidecar') ?? eccSidecarPath(file);
    return reportError(
      new TensorVaultError(
        sidecarError.code,
        `${file} is repaired, but its sidecar ${sidecar} could not be rewritten and is still damaged (repair again once it can be written): ${sidecarError.message}`,
        sidecarError.context as ErrorContext,
      ),
    );
  }
  // The listed chunks were intact, the file is not: verify's exit code for the file.
  if (whole !== undefined && whole.status !== 'intact')
    return whole.status === 'repairable' ? ExitCode.REPAIRABLE : ExitCode.UNREPAIRABLE;
  return ExitCode.OK;
}

/** `JSON.stringify` replacer: a `TensorVaultError` in a result as `{ code, message, context }`. */
const jsonErrors = (_k: string, v: unknown): unknown =>
  v instanceof TensorVaultError ? { code: v.code, message: v.message, context: v.context } : v;

/** `tensorvault protect`. */
export const protectVerb: Verb = { run: runProtect, usage: protectUsage };
/** `tensorvault verify`. */
export const verifyVerb: Verb = { run: runVerify, usage: verifyUsage };
/** `tensorvault repair`. */
export const repairVerb: Verb = { run: runRepair, usage: repairUsage };
