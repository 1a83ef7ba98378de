/**
 * `tensorvault log tail <file> [--json] [--lines N]`: print a ring log's records in order.
 */

import { ErrorCode, TensorVaultError } from '../errors';
import { levelName, readRingLog } from '../logging/format';
import { ExitCode, note, parseArgs, UsageError } from './common';
import { printable } from './text';

export const usage = `tensorvault log tail <file> [options]

  Print the records of a ring log file (docs/formats/ring-log.md), oldest first: the last N of the
  window recorded in the file. Safe while a logger is writing the file. Plain text logs (PyFolds's
  CircularBufferFileHandler) are printed line by line.

  --json        print each record as stored (one JSON value per line)
  --lines N     only the last N records

  Exit status 0; 1 when damaged lines were skipped (a torn last line after a crash is normal and only
  noted on stderr); 5 when the file is not a log (binary data).
`;

function formatTime(t: unknown): string {
  if (typeof t === 'number' && Number.isFinite(t)) return new Date(t).toISOString();
  if (typeof t === 'string') return t;
  return '-';
}

/** One record as a human-readable line: time, level, message, then the other fields as JSON. */
function human(value: unknown): string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return typeof value === 'string' ? value : JSON.stringify(value);
  }
  const { time, level, msg, message, ...rest } = value as Record<string, unknown>;
  const text = msg ?? message;
  // An error's stack reads better on its own indented lines than as an escaped JSON string.
  let stack = '';
  const err = rest.err;
  if (typeof err === 'object' && err !== null && typeof (err as { stack?: unknown }).stack === 'string') {
    const { stack: s, ...errRest } = err as Record<string, unknown>;
    stack = `\n    ${String(s).split('\n').join('\n    ')}`;
    rest.err = errRest;
  }
  const extra = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : '';
  return `${formatTime(time)} ${levelName(level).toUpperCase().padEnd(5)} ${text === undefined ? '' : String(text)}${extra}${stack}`;
}

/** Run the `log` verb; returns the exit code. */
export async function run(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv, ['json'], ['lines']);
  const [sub, ...files] = args.positionals;
  if (sub !== 'tail')
    throw new UsageError(
      sub === undefined ? 'log needs a subcommand: tail' : `unknown log subcommand '${sub}'`,
    );
  if (files.length !== 1) throw new UsageError('log tail takes exactly one file');
  const file = files[0] as string;
  let limit: number | undefined;
  const linesArg = args.values.get('lines');
  if (linesArg !== undefined) {
    if (!/^\d+$/.test(linesArg)) throw new UsageError(`--lines: not a count: ${linesArg}`);
    limit = Number(linesArg);
  }
  const contents = readRingLog(file);
  // A binary file is not a log: refuse rather than dump it on the terminal. NUL never appears in a
  // JSON or text log line, and U+FFFD is what invalid UTF-8 decodes to.
  const binary = contents.records.find((r) => {
    const text = typeof r.value === 'string' ? r.value : r.raw;
    return text.includes('\0') || text.includes('\uFFFD');
  });
  if (binary !== undefined) {
    throw new TensorVaultError(ErrorCode.CORRUPT, `${file} is not a log file (it holds binary data)`, {
      path: file,
      reason: 'binary data',
    });
  }
  const records =
    limit === undefined
      ? contents.records
      : contents.records.slice(Math.max(0, contents.records.length - limit));
  const out: string[] = [];
  for (const r of records) out.push(args.flags.has('json') ? r.raw : human(r.value));
  if (out.length > 0) process.stdout.write(`${out.join('\n')}\n`);
  if (contents.tornTail)
    note(`tensorvault: ${printable(file)}: ignored an unterminated last line (a write cut short)`);
  if (contents.skipped > 0) {
    process.stderr.write(`tensorvault: ${printable(file)}: skipped ${contents.skipped} damaged line(s)\n`);
    return ExitCode.REPAIRABLE;
  }
  return ExitCode.OK;
}
