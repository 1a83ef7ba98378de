#!/usr/bin/env node
/**
 * The `tensorvault` command. One file per verb group; each exports `run(argv) → exit code` and `usage`.
 */
// First: the SIGINT/SIGTERM handlers, before any other module loads (a Ctrl-C then exits 130).
import './interrupt';
import { packageVersion } from '../native';
import {
  ExitCode,
  HelpRequested,
  isBrokenPipe,
  onPipeClosed,
  output,
  pipeClosed,
  reportError,
  UsageError,
} from './common';

interface Verb {
  summary: string;
  load: () => Promise<{ run: (argv: readonly string[]) => Promise<number>; usage: string }>;
}

const verbs: Record<string, Verb> = {
  hash: { summary: 'SHA-256 or chunk-tree root of a file', load: async () => import('./hash.js') },
  log: { summary: 'print the records of a ring log file (log tail)', load: async () => import('./log.js') },
  backup: {
    summary: 'event-log cold backups: create, verify, restore',
    load: async () => import('./backup.js'),
  },
  eventlog: { summary: 'verify or describe an event log', load: async () => import('./eventlog.js') },
  inspect: {
    summary: 'tensors, dtypes, shapes, sizes and metadata of a safetensors file',
    load: async () => import('./inspect.js'),
  },
  protect: {
    summary: 'write a parity sidecar (<file>.tvecc) that repairs damage',
    load: async () => (await import('./ecc.js')).protectVerb,
  },
  verify: {
    summary: 'check a file against its parity sidecar, or a stored set (verify s3://…) (exit 0/1/2)',
    load: async () => (await import('./ecc.js')).verifyVerb,
  },
  repair: {
    summary: 'rebuild damaged chunks from the parity sidecar, or of a stored set (repair s3://…)',
    load: async () => (await import('./ecc.js')).repairVerb,
  },
  checkpoint: {
    summary: 'checkpoints: inspect, verify, repair, convert --layout, ls <run folder>',
    load: async () => import('./checkpoint.js'),
  },
  fold: {
    summary: 'PyFolds .fold/.mind containers: inspect, verify, repair, extract',
    load: async () => import('./fold.js'),
  },
  bench: { summary: 'measure throughput (bench ecc)', load: async () => import('./bench.js') },
  push: {
    summary: 'upload a checkpoint set or backup to s3://bucket/prefix (resumable)',
    load: async () => (await import('./remote.js')).pushVerb,
  },
  pull: {
    summary: 'download a pushed set, every chunk verified (resumable)',
    load: async () => (await import('./remote.js')).pullVerb,
  },
  ls: {
    summary: 'list the sets stored under s3://bucket/prefix',
    load: async () => (await import('./remote.js')).lsVerb,
  },
};

/** `verify s3://…` / `verify file://…`: the remote verify; a local path: the parity-sidecar verify. */
const remoteVerify: Verb = {
  summary: 'verify a stored set where it is',
  load: async () => (await import('./remote.js')).verifyVerb,
};

/** `repair s3://…`: rebuild a stored set's damaged chunks from its stored parity, rewriting only their parts. */
const remoteRepair: Verb = {
  summary: 'repair a stored set in place',
  load: async () => (await import('./remote.js')).repairVerb,
};

function help(): string {
  const lines = Object.entries(verbs).map(([name, v]) => `  ${name.padEnd(10)} ${v.summary}`);
  return `tensorvault ${packageVersion()}: keep ML checkpoints, logs and event logs safe on disk

Usage: tensorvault <command> [options]

Commands:
${lines.join('\n')}

Options (every command):
  --help, -h     show help (also: tensorvault <command> --help, -h)
  --json         machine-readable output; errors as {"error":{"code","message","context"}} on stderr
  --quiet, -q    no progress bar and no notes on stderr (errors are still printed)
  --version, -v  print the version

Exit codes: 0 success, 1 damage found but repairable, 2 damage not repairable (or verification
            failed), 3 bad command line, 4 refused (locked, or the destination exists), 5 invalid
            or corrupt input, 6 file I/O error, 7 internal error, 130 interrupted, 141 the
            output's reader went away (| head).
`;
}

async function main(argv: readonly string[]): Promise<number> {
  // Known before any parsing, so that even a usage error is reported the way the caller asked.
  const options = argv.slice(0, argv.includes('--') ? argv.indexOf('--') : argv.length);
  output.json = options.includes('--json');
  output.quiet = options.includes('--quiet') || options.includes('-q');
  const [first, ...rest] = argv;
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    process.stdout.write(help());
    return first === undefined ? ExitCode.USAGE : ExitCode.OK;
  }
  if (first === '--version' || first === '-v') {
    process.stdout.write(`${packageVersion()}\n`);
    return ExitCode.OK;
  }
  const remote = rest.some((a) => /^(s3|file):\/\//i.test(a));
  const verb =
    first === 'verify' && remote ? remoteVerify : first === 'repair' && remote ? remoteRepair : verbs[first];
  if (verb === undefined) throw new UsageError(`unknown command '${first}'`);
  const mod = await verb.load();
  try {
    return await mod.run(rest);
  } catch (err) {
    if (!(err instanceof HelpRequested)) throw err;
    process.stdout.write(mod.usage);
    return ExitCode.OK;
  }
}

// `| head -1`, `| true`: the reader went away. Exit quietly (exit 141), as a command killed by
// SIGPIPE does, instead of an unhandled 'error' event's stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: unknown) => {
    if (!isBrokenPipe(err)) throw err;
    onPipeClosed();
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = pipeClosed() ? ExitCode.PIPE_CLOSED : code;
  },
  (err: unknown) => {
    // After a closed pipe the command's own error (usually its abort) is not worth a message; a
    // synchronous write to fd 1 (fold extract) throws the EPIPE itself.
    process.exitCode = pipeClosed() || isBrokenPipe(err) ? ExitCode.PIPE_CLOSED : reportError(err);
  },
);
