/**
 * Shared pieces of the `tensorvault` command: exit codes, a small argument parser, a progress bar and
 * error reporting.
 */
import { TensorVaultError } from '../errors';
import type { Progress } from '../job';

/**
 * Exit codes, par2-style (documented in the README): 0 success, 1 damage found but repairable,
 * 2 damage not repairable, 3 bad command line, 6 file I/O error, 7 internal error, 130 interrupted.
 */
export const ExitCode = {
  OK: 0,
  REPAIRABLE: 1,
  UNREPAIRABLE: 2,
  USAGE: 3,
  IO: 6,
  INTERNAL: 7,
  INTERRUPTED: 130,
} as const;

/** A command-line usage error (exit code 3). */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Parsed arguments: positionals and `--flag` / `--key value` / `--key=value` options. */
export interface ParsedArgs {
  positionals: string[];
  flags: Set<string>;
  values: Map<string, string>;
}

/**
 * Parse `argv` against the known boolean `flags` and valued `options`; unknown options are a
 * {@link UsageError}.
 */
export function parseArgs(
  argv: readonly string[],
  flags: readonly string[],
  options: readonly string[],
): ParsedArgs {
  const out: ParsedArgs = { positionals: [], flags: new Set(), values: new Map() };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      out.positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
      if (flags.includes(name) && eq === -1) out.flags.add(name);
      else if (options.includes(name)) {
        const value = eq === -1 ? argv[++i] : arg.slice(eq + 1);
        if (value === undefined) throw new UsageError(`--${name} needs a value`);
        out.values.set(name, value);
      } else throw new UsageError(`unknown option ${arg}`);
    } else out.positionals.push(arg);
  }
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
 * notice. Returns the `onProgress` callback and a `done()` that clears the line.
 */
export function progressBar(
  label: string,
  minBytes = 64 * 1024 * 1024,
): {
  onProgress: ((p: Progress) => void) | undefined;
  done: () => void;
} {
  const tty = process.stderr.isTTY === true;
  if (!tty) return { onProgress: undefined, done: () => {} };
  const start = performance.now();
  let shown = false;
  return {
    onProgress: (p) => {
      if (p.bytesTotal < minBytes) return;
      const frac = p.bytesTotal > 0 ? Math.min(1, p.bytesDone / p.bytesTotal) : 0;
      const width = 30;
      const filled = Math.round(frac * width);
      const secs = (performance.now() - start) / 1000;
      const bar = `${'#'.repeat(filled)}${'.'.repeat(width - filled)}`;
      process.stderr.write(
        `\r${label} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${formatBytes(p.bytesDone)} ${formatRate(p.bytesDone, secs)}  `,
      );
      shown = true;
    },
    done: () => {
      if (shown) process.stderr.write('\r\x1b[K');
    },
  };
}

/** Map an error to an exit code and print it to stderr. */
export function reportError(err: unknown): number {
  if (err instanceof UsageError) {
    process.stderr.write(`tensorvault: ${err.message}\nTry 'tensorvault --help'.\n`);
    return ExitCode.USAGE;
  }
  if (err instanceof TensorVaultError) {
    process.stderr.write(`tensorvault: ${err.message} [${err.code}]\n`);
    switch (err.code) {
      case 'TV_ABORTED':
        return ExitCode.INTERRUPTED;
      case 'TV_INVALID_ARGUMENT':
        return ExitCode.USAGE;
      case 'TV_ECC_UNREPAIRABLE':
      case 'TV_ECC_STALE_SIDECAR':
      case 'TV_ECC_SIDECAR_CORRUPT':
      case 'TV_ECC_REPAIR_FAILED':
        return ExitCode.UNREPAIRABLE;
      case 'TV_INTERNAL':
      case 'TV_NATIVE_UNAVAILABLE':
        return ExitCode.INTERNAL;
      default:
        return ExitCode.IO;
    }
  }
  process.stderr.write(
    `tensorvault: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  return ExitCode.INTERNAL;
}

/** An AbortSignal that fires on SIGINT/SIGTERM, so long commands stop cleanly. */
export function interruptSignal(): AbortSignal {
  const ac = new AbortController();
  const stop = (): void => ac.abort(new Error('interrupted'));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return ac.signal;
}
