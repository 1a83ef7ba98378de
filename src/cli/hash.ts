/**
 * `tensorvault hash <file>... [--tree] [--chunk-size N] [--threads N] [--leaves] [--json]`
 * `tensorvault hash --check SUMS`
 *
 * Plain SHA-256 lines are sha256sum's (`<hex>  <file>`), so the output drops into existing scripts and
 * `--check` reads what `sha256sum` writes.
 */
import { readFileSync } from 'node:fs';
import { TensorVaultError } from '../errors';
import { hashFile } from '../hash/index';
import { ioError } from '../io/fs';
import {
  ExitCode,
  formatBytes,
  formatRate,
  interruptSignal,
  note,
  parseArgs,
  parseSize,
  progressBar,
  reportError,
  UsageError,
} from './common';
import { printable } from './text';

export const usage = `tensorvault hash <file>... [options]
tensorvault hash --check SUMS

  SHA-256 of files, printed as sha256sum prints them (<hex>  <file>), or a file's chunk tree root
  (docs/formats/chunk-tree.md, printed as <algorithm>:<hex>  <file>).

  --check SUMS       read sha256sum lines from SUMS ('-' for stdin) and check each file: <file>: OK or
                     <file>: FAILED; exit 1 if any does not match (sha256sum -c compatible)
  --tree             chunk tree instead of a plain SHA-256
  --chunk-size N     tree chunk size (power of two, 4k..1G; default 4M); implies --tree
  --threads N        threads for the tree (default: all cores)
  --leaves           also print each chunk's SHA-256; implies --tree
  --json             one JSON object per file; with --check, one object for the whole check:
                     { sums, passed, checked, ok, failed, unreadable, malformed, files: [{ file,
                     status: ok|failed|unreadable, expected, actual?, error? }] }
  -q, --quiet        no progress and no timing on stderr
`;

/**
 * One line of a sha256sum file: `<64 hex> <space or *><name>` (text or binary mode), or GNU's escaped
 * form for a name holding a backslash, a newline or a carriage return: the line starts with `\` and the
 * name has `\\`, `\n`, `\r` (such lines were skipped as badly formatted, so the file was never checked).
 */
export function parseSumLine(line: string): { digest: string; file: string } | undefined {
  const m = /^(\\?)([0-9a-fA-F]{64}) [ *](.+)$/.exec(line);
  if (m === null) return undefined;
  let file = m[3] as string;
  if (m[1] === '\\') {
    let bad = false;
    file = file.replace(/\\(.?)/g, (_, c: string) => {
      if (c === '\\') return '\\';
      if (c === 'n') return '\n';
      if (c === 'r') return '\r';
      bad = true;
      return '';
    });
    if (bad) return undefined;
  }
  return { digest: (m[2] as string).toLowerCase(), file };
}

/** `<hex>  <name>` as sha256sum writes it: a name with a backslash, newline or CR escaped, the line marked. */
export function sumLine(digest: string, file: string): string {
  if (!/[\\\n\r]/.test(file)) return `${digest}  ${file}`;
  const escaped = file.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\r/g, '\\r');
  return `\\${digest}  ${escaped}`;
}

/** One listed file's outcome in `hash --check --json`. */
interface CheckedFile {
  file: string;
  /** `ok`: the digest matches; `failed`: it does not; `unreadable`: the file could not be hashed. */
  status: 'ok' | 'failed' | 'unreadable';
  expected: string;
  /** The file's SHA-256 (absent when unreadable). */
  actual?: string;
  /** Why the file could not be hashed (unreadable only). */
  error?: { code: string; message: string };
}

async function check(sums: string, json: boolean): Promise<number> {
  let text: string;
  try {
    text = readFileSync(sums === '-' ? 0 : sums, 'utf8');
  } catch (err) {
    // A missing or unreadable SUMS file is a file error (exit 6), not a bad command line.
    throw ioError(err, sums, 'cannot read');
  }
  let failed = 0;
  let unreadable = 0;
  let malformed = 0;
  const files: CheckedFile[] = [];
  const signal = interruptSignal();
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === '') continue;
    const entry = parseSumLine(line);
    if (entry === undefined) {
      malformed++;
      continue;
    }
    let result: CheckedFile;
    try {
      const r = await hashFile(entry.file, { signal });
      const ok = r.digest === entry.digest;
      if (!ok) failed++;
      result = { file: entry.file, status: ok ? 'ok' : 'failed', expected: entry.digest, actual: r.digest };
      if (!json) process.stdout.write(`${entry.file}: ${ok ? 'OK' : 'FAILED'}\n`);
    } catch (err) {
      if (err instanceof TensorVaultError && err.code === 'TV_ABORTED') throw err;
      unreadable++;
      result = {
        file: entry.file,
        status: 'unreadable',
        expected: entry.digest,
        error: {
          code: err instanceof TensorVaultError ? err.code : 'TV_INTERNAL',
          message: err instanceof Error ? err.message : String(err),
        },
      };
      if (!json) process.stdout.write(`${entry.file}: FAILED open or read\n`);
    }
    files.push(result);
  }
  const exit = files.length === 0 || failed + unreadable > 0 ? ExitCode.REPAIRABLE : ExitCode.OK;
  if (json) {
    // One object for the whole check, as the other commands print one per result.
    const summary = {
      checked: files.length,
      ok: files.length - failed - unreadable,
      failed,
      unreadable,
      malformed,
    };
    process.stdout.write(`${JSON.stringify({ sums, passed: exit === ExitCode.OK, ...summary, files })}\n`);
  }
  if (files.length === 0) {
    // As sha256sum -c: a file with nothing to check fails (it exited 0, having checked nothing).
    process.stderr.write(`tensorvault: ${printable(sums)}: no properly formatted checksum lines found\n`);
    return exit;
  }
  if (malformed > 0) note(`tensorvault: WARNING: ${malformed} line(s) are improperly formatted`);
  if (unreadable > 0) note(`tensorvault: WARNING: ${unreadable} listed file(s) could not be read`);
  if (failed > 0) note(`tensorvault: WARNING: ${failed} computed checksum(s) did NOT match`);
  return exit;
}

/** Run the `hash` verb; returns the exit code. */
export async function run(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv, ['tree', 'leaves', 'json'], ['chunk-size', 'threads', 'check']);
  const sums = args.values.get('check');
  if (sums !== undefined) {
    if (args.positionals.length > 0) throw new UsageError('hash --check takes no file arguments');
    return check(sums, args.flags.has('json'));
  }
  if (args.positionals.length === 0) throw new UsageError('hash needs at least one file');
  const chunk = args.values.get('chunk-size');
  const threads = args.values.get('threads');
  const tree = args.flags.has('tree') || args.flags.has('leaves') || chunk !== undefined;
  const signal = interruptSignal();
  let exit: number = ExitCode.OK;
  for (const file of args.positionals) {
    const bar = progressBar('hashing');
    const started = performance.now();
    // As sha256sum: a file that cannot be hashed is reported and the others are still hashed; the exit
    // code is the error's (it stopped at the first one).
    let result: Awaited<ReturnType<typeof hashFile>>;
    try {
      result = await hashFile(file, {
        tree,
        leaves: args.flags.has('leaves'),
        signal,
        ...(chunk !== undefined ? { chunkSize: parseSize(chunk, 'chunk-size') } : {}),
        ...(threads !== undefined ? { threads: Number(threads) } : {}),
        ...(bar.onProgress ? { onProgress: bar.onProgress } : {}),
      }).finally(bar.done);
    } catch (err) {
      // Only a file's own errors: a bad option or an interrupt stops the command as before.
      if (
        !(err instanceof TensorVaultError) ||
        err.code === 'TV_ABORTED' ||
        err.code === 'TV_INVALID_ARGUMENT'
      )
        throw err;
      exit = Math.max(exit, reportError(err));
      continue;
    }
    const seconds = (performance.now() - started) / 1000;
    if (args.flags.has('json')) {
      process.stdout.write(`${JSON.stringify({ file, ...result, seconds })}\n`);
      continue;
    }
    const prefix = result.algorithm === 'sha256' ? '' : `${result.algorithm}:`;
    process.stdout.write(`${sumLine(`${prefix}${result.digest}`, file)}\n`);
    for (const [i, leaf] of (result.leaves ?? []).entries()) process.stdout.write(`  chunk ${i}: ${leaf}\n`);
    note(`${formatBytes(result.length)} in ${seconds.toFixed(2)} s (${formatRate(result.length, seconds)})`);
  }
  return exit;
}
