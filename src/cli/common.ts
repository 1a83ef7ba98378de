/**
 * Shared pieces of the `tensorvault` command: exit codes, a small argument parser, a progress bar and
 * error reporting.
 */
import { parseArgs as nodeParseArgs } from 'node:util';
import { TensorVaultError } from '../errors';
import { readRegularFileSync } from '../io/index';
import type { Progress } from '../job';
import { abortWork, hasInterruptibleWork, INTERRUPTED_EXIT, interruptibleWork } from './interrupt';
import { printable } from './text';

/**
 * Exit codes, one table for every command (README "Command line"; a test keeps the two in step).
 * par2-style at the bottom: 1 and 2 say what a check found.
 */
export const ExitCode = {
  /** Success (for a check: intact, or repaired). */
  OK: 0,
  /** A check found damage that can be repaired (for `hash --check`: a checksum did not match). */
  REPAIRABLE: 1,
  /** A check found damage that cannot be repaired, or verification failed (checksum, chain, signature). */
  UNREPAIRABLE: 2,
  /** Bad command line or argument. */
  USAGE: 3,
  /** Refused to touch something: locked by another writer, or the destination exists (`--overwrite`). */
  REFUSED: 4,
  /** The input is not a valid file of its kind: malformed, structurally corrupt, hostile. */
  INVALID_INPUT: 5,
  /** File I/O error: missing, a folder, not a regular file, permission, changed while read, disk full. */
  IO: 6,
  /** Internal error (a bug) or the native addon is unavailable. */
  INTERNAL: 7,
  /** Interrupted (Ctrl-C, SIGTERM). */
  INTERRUPTED: INTERRUPTED_EXIT,
  /**
   * The reader of stdout (or stderr) went away (`| head -1`, `| true`): what a shell reports for a
   * command killed by SIGPIPE (128 + 13), as coreutils and git are. Node ignores SIGPIPE, so the write
   * fails with EPIPE instead; the command stops quietly with this code.
   */
  PIPE_CLOSED: 141,
} as const;

/** The exit code of an error code (every `TV_…` code has one; a test checks that none falls through). */
export function exitCodeOf(code: string): number {
  switch (code) {
    case 'TV_ABORTED':
      return ExitCode.INTERRUPTED;
    case 'TV_INVALID_ARGUMENT':
    case 'TV_HASH_FINALIZED':
    case 'TV_CLOSED':
    case 'TV_MISSING_PEER':
      return ExitCode.USAGE;
    case 'TV_ECC_UNREPAIRABLE':
    case 'TV_ECC_STALE_SIDECAR':
    case 'TV_ECC_SIDECAR_CORRUPT':
    case 'TV_ECC_REPAIR_FAILED':
    case 'TV_ECC_UNCORRECTABLE':
    case 'TV_CHAIN_INVALID':
    case 'TV_CHECKSUM_MISMATCH':
    case 'TV_SIGNATURE_INVALID':
    case 'TV_CHECKPOINT_INTEGRITY':
    case 'TV_CHECKPOINT_TENSOR_DAMAGED':
    case 'TV_CHECKPOINT_HMAC_REQUIRED':
    case 'TV_EVENTLOG_HMAC_REQUIRED':
    case 'TV_EVENTLOG_HMAC_UNEXPECTED':
    case 'TV_FOLD_CORRUPT':
    case 'TV_FOLD_UNVERIFIABLE':
    case 'TV_FOLD_DECRYPT_FAILED':
    case 'TV_FOLD_POLICY':
    case 'TV_REMOTE_DAMAGED':
      return ExitCode.UNREPAIRABLE;
    case 'TV_FOLD_KEY_REQUIRED':
      return ExitCode.USAGE;
    case 'TV_CORRUPT':
    case 'TV_UNSAFE_ARCHIVE':
    case 'TV_BUDGET_EXCEEDED':
    case 'TV_SAFETENSORS_INVALID':
    case 'TV_TENSOR_NOT_FOUND':
    case 'TV_TENSOR_TOO_LARGE':
    case 'TV_TENSOR_SIZE_MISMATCH':
    case 'TV_TENSOR_DTYPE_MISMATCH':
    case 'TV_ECC_UNKNOWN_PROTECTION':
    case 'TV_ECC_UNKNOWN_CODEC':
    case 'TV_ECC_PARITY_LENGTH':
    case 'TV_ECC_INVALID_LENGTH':
    case 'TV_CHECKPOINT_INVALID':
    case 'TV_CHECKPOINT_UNSAFE_MANIFEST':
    case 'TV_CHECKPOINT_MISMATCH':
    case 'TV_CHECKPOINT_VERSION':
    case 'TV_FOLD_INVALID':
    case 'TV_FOLD_UNSUPPORTED':
    case 'TV_FOLD_CHUNK_NOT_FOUND':
      return ExitCode.INVALID_INPUT;
    case 'TV_LOCKED':
    case 'TV_EXISTS':
    case 'TV_RESTORE_INCOMPLETE':
      return ExitCode.REFUSED;
    case 'TV_REMOTE_AUTH':
    case 'TV_REMOTE_NOT_FOUND':
    case 'TV_REMOTE_UNAVAILABLE':
      return ExitCode.IO;
    case 'TV_INTERNAL':
    case 'TV_NATIVE_UNAVAILABLE':
    case 'TV_EXTERNAL_BUFFERS_UNAVAILABLE':
      return ExitCode.INTERNAL;
    default:
      // TV_NOT_FOUND, TV_PERMISSION_DENIED, TV_IS_DIRECTORY, TV_NOT_A_FILE, TV_FILE_CHANGED, TV_IO,
      // TV_SOURCE_FAILED (a caller's data source failed to deliver), and codes added later until they are
      // placed above (a test lists the ones that may land here).
      return ExitCode.IO;
  }
}

/** A command-line usage error (exit code 3). */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** `-h` / `--help` was given: print the command's usage and exit 0. Thrown by {@link parseArgs}. */
export class HelpRequested extends Error {
  override name = 'HelpRequested';
}

/** Output settings every command shares, from `--json` and `--quiet` anywhere on the command line. */
export const output = { json: false, quiet: false };

/**
 * The connection options of the commands that take an `s3://…` or `file://…` URL (push, pull, ls,
 * and the URL forms of verify and repair), as their help lists them.
 */
export const CONNECTION_HELP = `Connection (each falls back to the standard environment variables):
  --endpoint URL      AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL (self-hosted stores: path-style requests)
  --region NAME       AWS_REGION, AWS_DEFAULT_REGION (default us-east-1)
  credentials         AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS profiles
  --retries N         attempts per request, with exponential backoff (default 5)
`;

/** A note on stderr (timing, hints); silenced by `--quiet`. Errors never go through here. */
export function note(text: string): void {
  if (!output.quiet) process.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** Parsed arguments: positionals and `--flag` / `--key value` / `--key=value` options. */
export interface ParsedArgs {
  positionals: string[];
  flags: Set<string>;
  values: Map<string, string>;
}

/** Short forms every command knows. */
const SHORT: Readonly<Record<string, string>> = { help: 'h', quiet: 'q' };

/**
 * Parse `argv` with Node's `util.parseArgs` (strict: an unknown option, a missing value or a value
 * given to a flag is a {@link UsageError}) against the boolean `flags` and valued `options`. Every
 * command also takes `-h`/`--help` (throws {@link HelpRequested}), `-q`/`--quiet` and `--json`.
 */
export function parseArgs(
  argv: readonly string[],
  flags: readonly string[],
  options: readonly string[],
): ParsedArgs {
  const spec: Record<string, { type: 'boolean' | 'string'; short?: string }> = {};
  for (const f of new Set([...flags, 'help', 'quiet', 'json'])) {
    spec[f] = { type: 'boolean', ...(SHORT[f] !== undefined ? { short: SHORT[f] } : {}) };
  }
  for (const o of options) spec[o] = { type: 'string' };
  let parsed: ReturnType<typeof nodeParseArgs>;
  try {
    parsed = nodeParseArgs({ args: [...argv], options: spec, allowPositionals: true, strict: true });
  } catch (err) {
    if (argv.some((a) => a === '-h' || a === '--help')) throw new HelpRequested();
    throw new UsageError((err as Error).message.replace(/\. To specify a positional argument.*$/s, ''));
  }
  const out: ParsedArgs = { positionals: [...parsed.positionals], flags: new Set(), values: new Map() };
  for (const [k, v] of Object.entries(parsed.values)) {
    if (v === true) out.flags.add(k);
    else if (typeof v === 'string') out.values.set(k, v);
  }
  if (out.flags.has('help')) throw new HelpRequested();
  if (out.flags.has('quiet')) output.quiet = true;
  if (out.flags.has('json')) output.json = true;
  return out;
}

/** Parse a byte size such as `4096`, `64k`, `4M`, `1G` (binary units). */
export function parseSize(text: string, name: string): number {
  const m = /^(\d+)([kKmMgG]?)(i?[bB])?$/.exec(text);
  if (!m) throw new UsageError(`--${name}: not a size: ${text}`);
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(m[2] ?? '').toLowerCase()] ?? 1;
  return Number(m[1]) * unit;
}

/** Human-readable byte count. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

/** Throughput in decimal GB/s or MB/s. */
export function formatRate(bytes: number, seconds: number): string {
  const rate = seconds > 0 ? bytes / seconds : 0;
  return rate >= 1e9 ? `${(rate / 1e9).toFixed(2)} GB/s` : `${(rate / 1e6).toFixed(1)} MB/s`;
}

/**
 * A progress bar on stderr, shown only when stderr is a terminal and the work is large enough to
 * notice. Returns the `onProgress` callback, a `done()` that clears the line (also before a line of
 * text is printed: the bar comes back at the next report), and `phase(label)` for work done in steps:
 * the bar is cleared and counts the next step from 0 under its own label. Work that runs several
 * passes without naming them (a repair: verify, rebuild, check again) restarts its count: each pass
 * gets its own bar, labelled `(pass N)`, rather than one bar that falls back from 100 %.
 */
export function progressBar(
  label: string,
  minBytes = 64 * 1024 * 1024,
): {
  onProgress: ((p: Progress) => void) | undefined;
  done: () => void;
  phase: (label: string) => void;
} {
  const tty = process.stderr.isTTY === true;
  if (!tty || output.quiet) return { onProgress: undefined, done: () => {}, phase: () => {} };
  let start = performance.now();
  let shown = false;
  let current = label;
  let pass = 1;
  let last: Progress | undefined;
  /** When the last report came: a new pass began after it. */
  let lastAt = start;
  const done = (): void => {
    if (shown) process.stderr.write('\r\x1b[K');
    shown = false;
  };
  return {
    onProgress: (p) => {
      if (
        last !== undefined &&
        last.bytesTotal > 0 &&
        (p.bytesDone < last.bytesDone || p.bytesTotal !== last.bytesTotal)
      ) {
        // A new pass of the same work: its own bar from 0, timed from the report before (the pass began
        // after it; its first report already counts the bytes done since, so timing it from now showed
        // rates of millions of GB/s).
        done();
        pass++;
        start = lastAt;
      }
      last = p;
      lastAt = performance.now();
      if (p.bytesTotal < minBytes) return;
      const frac = p.bytesTotal > 0 ? Math.min(1, p.bytesDone / p.bytesTotal) : 0;
      const secs = (performance.now() - start) / 1000;
      const text = pass > 1 ? `${current} (pass ${pass})` : current;
      process.stderr.write(`\r${progressLine(text, frac, p.bytesDone, secs, terminalColumns())}`);
      shown = true;
    },
    done,
    phase: (next) => {
      done();
      current = next;
      pass = 1;
      last = undefined;
      start = performance.now();
      lastAt = start;
    },
  };
}

/** The terminal's width: `columns` is undefined off a terminal and 0 on some (a serial console, CI). */
export function terminalColumns(columns = process.stderr.columns): number {
  return columns !== undefined && columns > 0 ? columns : 80;
}

/**
 * One progress line, clamped to `columns` (the bar shrinks first, then the label is cut), so a narrow
 * terminal never wraps it.
 */
export function progressLine(
  label: string,
  frac: number,
  bytes: number,
  secs: number,
  columns: number,
): string {
  const tail = ` ${(frac * 100).toFixed(0).padStart(3)}% ${formatBytes(bytes)} ${formatRate(bytes, secs)}`;
  const room = Math.max(0, columns - 1 - tail.length);
  const width = Math.max(0, Math.min(30, room - label.length - 3));
  const filled = Math.round(frac * width);
  const bar = width > 0 ? ` [${'#'.repeat(filled)}${'.'.repeat(width - filled)}]` : '';
  return `${label.slice(0, Math.max(0, room - bar.length))}${bar}${tail}`.slice(0, Math.max(0, columns - 1));
}

/**
 * Map an error to an exit code ({@link exitCodeOf}) and print it to stderr once: a line of text, or
 * with `--json` one JSON object `{ "error": { "code", "message", "context" } }`.
 */
export function reportError(err: unknown): number {
  let code: string;
  let message: string;
  let context: Record<string, unknown> = {};
  let exit: number;
  if (err instanceof UsageError) {
    [code, message, exit] = ['TV_USAGE', err.message, ExitCode.USAGE];
  } else if (err instanceof TensorVaultError) {
    [code, message, exit] = [err.code, err.message, exitCodeOf(err.code)];
    context = err.context as Record<string, unknown>;
  } else {
    code = 'TV_INTERNAL';
    message = `internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`;
    exit = ExitCode.INTERNAL;
  }
  if (output.json) {
    process.stderr.write(`${JSON.stringify({ error: { code, message, context } })}\n`);
    return exit;
  }
  // A message quotes paths, names and arguments as given or read from a file: its control characters
  // (a newline, an ANSI escape) are escaped as `inspect` escapes names, so one error is one line of plain
  // characters. An internal error's stack keeps its lines, each escaped.
  const shown =
    code === 'TV_INTERNAL' && !(err instanceof TensorVaultError)
      ? message.split('\n').map(printable).join('\n')
      : printable(message);
  if (err instanceof UsageError) {
    process.stderr.write(`tensorvault: ${shown} [${code}]\nTry 'tensorvault --help'.\n`);
  } else {
    process.stderr.write(
      `tensorvault: ${shown}${code === 'TV_INTERNAL' && !(err instanceof TensorVaultError) ? '' : ` [${code}]`}\n`,
    );
  }
  return exit;
}

/** Whether stdout or stderr was closed by its reader. */
let closedPipe = false;

/** True once stdout or stderr was closed by its reader (see {@link ExitCode.PIPE_CLOSED}). */
export function pipeClosed(): boolean {
  return closedPipe;
}

/**
 * The reader of stdout or stderr went away: print nothing more, stop the command's work through its
 * interrupt signal (so temp files are removed) and exit {@link ExitCode.PIPE_CLOSED}; at once when the command
 * has no interruptible work running.
 */
export function onPipeClosed(): void {
  if (closedPipe) return;
  closedPipe = true;
  process.exitCode = ExitCode.PIPE_CLOSED;
  if (!hasInterruptibleWork()) process.exit(ExitCode.PIPE_CLOSED);
  abortWork(new Error('output closed'));
}

/** Whether `err` is a write to a pipe whose reader went away. */
export function isBrokenPipe(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'EPIPE';
}

/**
 * An AbortSignal that fires on SIGINT/SIGTERM (and when the output pipe is closed), so long commands
 * stop cleanly. A second signal while the first abort is being cleaned up is absorbed (the cleanup,
 * e.g. removing a temp file, still runs); a third exits at once with 130. The handlers are installed
 * when the command starts (`interrupt.ts`): before a command asks for this signal, a signal exits 130.
 */
export function interruptSignal(): AbortSignal {
  return interruptibleWork(() => {
    if (!output.quiet)
      process.stderr.write('tensorvault: stopping (cleaning up); interrupt again to exit now\n');
  });
}

/**
 * A key file named by a command-line option (`--trust-key`, `--public-key`, `--hmac-key-file`, …): a
 * missing or unreadable file is the typed error of the read (`TV_NOT_FOUND`, exit 6), its message
 * prefixed with the option, like every other file a command reads.
 */
export function readKeyFile(path: string, option: string): Buffer {
  try {
    return readRegularFileSync(path) as Buffer;
  } catch (err) {
    if (!(err instanceof TensorVaultError)) throw err;
    throw new TensorVaultError(err.code, `${option}: ${err.message}`, err.context, { cause: err });
  }
}
