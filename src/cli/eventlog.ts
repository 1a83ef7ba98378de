/**
 * `tensorvault eventlog verify|info <dataDir>`: check an event log (legacy Libervia or v2) read-only.
 */
import { EventLog } from '../eventlog/index';
import { ExitCode, interruptSignal, parseArgs, progressBar, UsageError } from './common';

export const usage = `tensorvault eventlog <verify|info> <dataDir> [options]

  verify <dataDir>   verify the hash chain (fast: snapshot, sealed segments, tail and head)
      --full         verify every event from the first kept one
  info <dataDir>     format, segments, events, last event
  --log-key-env NAME the log's hmacKey, from environment variable NAME (hex or text): needed
                     to open a log created with hmacKey
  --json             machine-readable output

Exit codes: 0 valid; 2 the chain does not verify, or the log is keyed and --log-key-env was not
given (TV_EVENTLOG_HMAC_REQUIRED), or --log-key-env was given for a log without a key
(TV_EVENTLOG_HMAC_UNEXPECTED); 3 bad command line; 4 a restore into the folder was interrupted
(TV_RESTORE_INCOMPLETE); 5 invalid input (the log's metadata is damaged, TV_CORRUPT); 6 I/O error
(no such log: TV_NOT_FOUND); 7 internal error; 130 interrupted (README table).
`;

/**
 * `--log-key-env NAME`: the event log's `hmacKey`, read from environment variable NAME (never from the
 * command line, where other users could see it): hex (an even number of hex digits, at least 32) or
 * else the text's UTF-8 bytes.
 */
export function logKeyOf(values: Map<string, string>): Uint8Array | undefined {
  const name = values.get('log-key-env');
  if (name === undefined) return undefined;
  const text = process.env[name];
  if (text === undefined || text === '') {
    throw new UsageError(`--log-key-env: the environment variable ${name} is not set or empty`);
  }
  return /^[0-9a-fA-F]+$/.test(text) && text.length % 2 === 0 && text.length >= 32
    ? Buffer.from(text, 'hex')
    : Buffer.from(text, 'utf8');
}

/** Run the `eventlog` verb; returns the exit code. */
export async function run(argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h') {
    process.stdout.write(usage);
    return sub === undefined ? ExitCode.USAGE : ExitCode.OK;
  }
  const a = parseArgs(rest, ['full', 'json'], ['log-key-env']);
  if (a.positionals.length !== 1) throw new UsageError(`eventlog ${sub} takes one data folder`);
  const key = logKeyOf(a.values);
  const log = await EventLog.open(a.positionals[0] as string, {
    readOnly: true,
    ...(key ? { hmacKey: key } : {}),
  });
  if (sub === 'verify') {
    // Ctrl-C / SIGTERM stop the check within a segment (exit 130); a bar on a terminal.
    const bar = progressBar('verifying');
    const job = { signal: interruptSignal(), ...(bar.onProgress ? { onProgress: bar.onProgress } : {}) };
    const r = await (a.flags.has('full') ? log.verifyChainFull(job) : log.verifyChain(job)).finally(bar.done);
    if (a.flags.has('json')) process.stdout.write(`${JSON.stringify(r)}\n`);
    else {
      process.stdout.write(
        r.valid
          ? `valid (${r.mode}, ${r.totalEvents} events, ${r.totalVerified} checked one by one)\n`
          : `INVALID at event ${r.firstInvalidIndex ?? '?'}${r.firstInvalidId ? ` (${r.firstInvalidId})` : ''}: ${r.reason}\n`,
      );
      for (const w of r.warnings) process.stdout.write(`  note: ${w}\n`);
    }
    return r.valid ? ExitCode.OK : ExitCode.UNREPAIRABLE;
  }
  if (sub === 'info') {
    const last = await log.getLastEntry();
    const info = {
      format: log.format,
      segments: log.segments,
      events: await log.count(),
      last: last ?? null,
    };
    process.stdout.write(
      a.flags.has('json') ? `${JSON.stringify(info)}\n` : `${JSON.stringify(info, null, 2)}\n`,
    );
    return ExitCode.OK;
  }
  throw new UsageError(`unknown eventlog command '${sub}' (verify or info)`);
}
