/**
 * `tensorvault push | pull | ls | verify <url>`: checkpoints and backups in S3-compatible object storage.
 */
import { pull } from '../remote/pull';
import { push } from '../remote/push';
import { repairRemote } from '../remote/repair';
import type { RemoteOptions } from '../remote/store';
import { listRemote, verifyRemote } from '../remote/verify';
import {
  CONNECTION_HELP,
  ExitCode,
  formatBytes,
  formatRate,
  interruptSignal,
  type ParsedArgs,
  parseArgs,
  parseSize,
  progressBar,
  UsageError,
} from './common';
import { printable } from './text';

const connection = CONNECTION_HELP;

const exits = `Exit codes: 0 success; 1 damage found that the stored parity can repair (verify); 2 damage
that cannot be repaired (TV_REMOTE_DAMAGED); 3 bad command line; 4 refused (the destination exists:
--overwrite); 5 invalid input; 6 store or file error (TV_REMOTE_AUTH, TV_REMOTE_NOT_FOUND,
TV_REMOTE_UNAVAILABLE); 7 internal error; 130 interrupted.
`;

const OPTS = ['endpoint', 'region', 'retries', 'concurrency'];

function remoteOptions(a: ParsedArgs): RemoteOptions & { concurrency?: number } {
  const o: RemoteOptions & { concurrency?: number } = {};
  const endpoint = a.values.get('endpoint');
  if (endpoint !== undefined) o.endpoint = endpoint;
  const region = a.values.get('region');
  if (region !== undefined) o.region = region;
  const int = (name: string, min: number, max: number): number | undefined => {
    const v = a.values.get(name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min || n > max)
      throw new UsageError(`--${name}: an integer from ${min} to ${max}`);
    return n;
  };
  const retries = int('retries', 1, 20);
  if (retries !== undefined) o.maxAttempts = retries;
  const c = int('concurrency', 1, 64);
  if (c !== undefined) o.concurrency = c;
  return o;
}

function url(a: ParsedArgs, i: number, what: string): string {
  const u = a.positionals[i];
  if (u === undefined) throw new UsageError(`missing ${what}`);
  return u;
}

/** `tensorvault push`. */
export const pushVerb = {
  usage: `tensorvault push <file> <url> [options]

  Upload a checkpoint set (NAME.safetensors with its sidecars and parity) or a backup archive (with its
  .manifest.json) to s3://bucket/prefix or file:///folder: parallel multipart, a SHA-256 and MD5 per
  part, the manifest NAME.tvremote.json written last. An interrupted push resumes where it stopped.

  --part-size SIZE    multipart part size (default 8M; multiple of 1M, 5M to 5G)
  --concurrency N     parts in flight (default 8)
  --overwrite         replace a set already stored at the URL
  --json              print the result as JSON

${connection}
${exits}`,
  async run(argv: readonly string[]): Promise<number> {
    const a = parseArgs(argv, ['overwrite'], [...OPTS, 'part-size']);
    if (a.positionals.length !== 2) throw new UsageError('push takes <file> <url>');
    const ps = a.values.get('part-size');
    const bar = progressBar('push');
    const t0 = performance.now();
    const r = await push(url(a, 0, '<file>'), url(a, 1, '<url>'), {
      ...remoteOptions(a),
      ...(ps === undefined ? {} : { partSize: parseSize(ps, 'part-size') }),
      overwrite: a.flags.has('overwrite'),
      signal: interruptSignal(),
      ...(bar.onProgress === undefined ? {} : { onProgress: bar.onProgress }),
    });
    bar.done();
    const secs = (performance.now() - t0) / 1000;
    if (a.flags.has('json')) process.stdout.write(`${JSON.stringify({ ...r, seconds: secs })}\n`);
    else {
      for (const f of r.files)
        process.stdout.write(
          `${f.name}  ${formatBytes(f.size)}  ${f.parts} part(s)${f.reusedParts > 0 ? `, ${f.reusedParts} already stored` : ''}\n`,
        );
      process.stdout.write(
        `pushed ${r.url} (${formatBytes(r.bytesUploaded)} sent, ${formatRate(r.bytesUploaded, secs)})\n`,
      );
    }
    return ExitCode.OK;
  },
};

/** `tensorvault pull`. */
export const pullVerb = {
  usage: `tensorvault pull <url> <destDir> [options]

  Download the set whose main object is <url> (s3://bucket/prefix/NAME.safetensors) into <destDir>,
  every chunk verified against its digest as it arrives, damaged weights chunks rebuilt from the stored
  parity; an interrupted pull resumes from the chunks already verified.

  --concurrency N     ranged requests in flight (default 8)
  --overwrite         replace files in <destDir>
  --json              print the result as JSON

${connection}
${exits}`,
  async run(argv: readonly string[]): Promise<number> {
    const a = parseArgs(argv, ['overwrite'], OPTS);
    if (a.positionals.length !== 2) throw new UsageError('pull takes <url> <destDir>');
    const bar = progressBar('pull');
    const t0 = performance.now();
    const r = await pull(url(a, 0, '<url>'), url(a, 1, '<destDir>'), {
      ...remoteOptions(a),
      overwrite: a.flags.has('overwrite'),
      signal: interruptSignal(),
      ...(bar.onProgress === undefined ? {} : { onProgress: bar.onProgress }),
    });
    bar.done();
    const secs = (performance.now() - t0) / 1000;
    // A parity file missing or damaged in the store was left out: the weights verified without it.
    for (const name of r.skippedFiles)
      process.stderr.write(
        `tensorvault: warning: ${printable(name)} is missing or damaged in the store; not placed\n`,
      );
    if (a.flags.has('json')) process.stdout.write(`${JSON.stringify({ ...r, seconds: secs })}\n`);
    else {
      process.stdout.write(
        `pulled ${r.path} (${formatBytes(r.bytes)}; ${formatBytes(r.bytesDownloaded)} received, ${formatRate(r.bytesDownloaded, secs)})${r.reusedChunks > 0 ? `; ${r.reusedChunks} chunks resumed` : ''}${r.repairedChunks.length > 0 ? `; repaired chunks ${r.repairedChunks.join(', ')}` : ''}\n`,
      );
    }
    return ExitCode.OK;
  },
};

/** `tensorvault ls`. */
export const lsVerb = {
  usage: `tensorvault ls <url> [options]

  The sets stored under a prefix (s3://bucket/prefix/): complete ones (with a manifest) and incomplete
  ones (an object without a manifest: a push that never finished).

${connection}
${exits}`,
  async run(argv: readonly string[]): Promise<number> {
    const a = parseArgs(argv, [], OPTS);
    if (a.positionals.length !== 1) throw new UsageError('ls takes <url>');
    const r = await listRemote(url(a, 0, '<url>'), remoteOptions(a));
    if (a.flags.has('json')) process.stdout.write(`${JSON.stringify(r)}\n`);
    else {
      for (const e of r)
        process.stdout.write(
          `${e.state.padEnd(10)} ${formatBytes(e.bytes).padStart(10)}  ${e.layout ?? '-'}  ${e.url}\n`,
        );
    }
    return ExitCode.OK;
  },
};

/** `tensorvault verify <url>` (a local path goes to the parity-sidecar verify). */
export const verifyVerb = {
  usage: `tensorvault verify <url> [options]

  Verify a stored set where it is: for a checkpoint the seal and header, then every chunk of every file
  streamed and compared with its digest; nothing is kept on disk (damaged weights are fetched once
  more, with their parity, into a temporary folder for the parity to say whether it rebuilds them).
  Exit 0 intact, 1 repairable (only weights chunks damaged, within what the stored parity rebuilds),
  2 damaged. (A local file: tensorvault verify <file>, against its parity sidecar; its --sidecar is not
  taken here.)

  --concurrency N     ranged requests in flight (default 8)
  --json              print the result as JSON

${connection}
${exits}`,
  async run(argv: readonly string[]): Promise<number> {
    const a = parseArgs(argv, [], OPTS);
    if (a.positionals.length !== 1) throw new UsageError('verify takes <url>');
    const bar = progressBar('verify');
    const r = await verifyRemote(url(a, 0, '<url>'), {
      ...remoteOptions(a),
      signal: interruptSignal(),
      ...(bar.onProgress === undefined ? {} : { onProgress: bar.onProgress }),
    });
    bar.done();
    if (a.flags.has('json')) process.stdout.write(`${JSON.stringify(r)}\n`);
    else {
      for (const f of r.files) {
        const why = [
          ...(f.storedSize === f.size ? [] : [`stored size ${f.storedSize} (recorded ${f.size})`]),
          ...(f.damagedChunks.length === 0 ? [] : [`damaged chunks ${f.damagedChunks.join(', ')}`]),
        ];
        process.stdout.write(
          `${f.name}  ${formatBytes(f.size)}  ${why.length === 0 ? 'ok' : why.join(', ')}\n`,
        );
      }
      process.stdout.write(`${r.status}: ${r.url}\n`);
    }
    return r.status === 'intact'
      ? ExitCode.OK
      : r.status === 'repairable'
        ? ExitCode.REPAIRABLE
        : ExitCode.UNREPAIRABLE;
  },
};

/** `tensorvault repair <url>` (a local path goes to the parity-sidecar repair). */
export const repairVerb = {
  usage: `tensorvault repair <url> [options]

  Repair a stored checkpoint in place: the set is pulled into a temporary folder (every chunk verified,
  damaged weights chunks rebuilt from the stored parity), then only the parts of the weights object that
  hold repaired chunks are sent; the others are copied by the store (UploadPartCopy). The rewrite
  replaces only the object the repair read: weights replaced meanwhile by another writer are left as
  they are (TV_FILE_CHANGED, exit 6). Exit 0 intact or repaired, 2 beyond the parity. (A local file:
  tensorvault repair <file>, from its parity sidecar; its --sidecar, --chunks and other options are not
  taken here.)

  --part-size SIZE    part size of the rewritten object (default 8M; multiple of 1M, 5M to 5G)
  --concurrency N     requests in flight: ranged GETs of the pull, parts of the rewrite (default 8)
  --json              print the result as JSON

${connection}
${exits}`,
  async run(argv: readonly string[]): Promise<number> {
    const a = parseArgs(argv, [], [...OPTS, 'part-size']);
    if (a.positionals.length !== 1) throw new UsageError('repair takes <url>');
    const ps = a.values.get('part-size');
    const r = await repairRemote(url(a, 0, '<url>'), {
      ...remoteOptions(a),
      ...(ps === undefined ? {} : { partSize: parseSize(ps, 'part-size') }),
      signal: interruptSignal(),
    });
    if (a.flags.has('json')) process.stdout.write(`${JSON.stringify(r)}\n`);
    else
      process.stdout.write(
        r.status === 'intact'
          ? `intact: ${r.url}\n`
          : `repaired: ${r.url} (chunks ${r.repairedChunks.join(', ')}; ${r.partsRewritten} part(s) sent, ${r.partsCopied} copied by the store)\n`,
      );
    return ExitCode.OK;
  },
};
