/**
 * `tensorvault hash <file> [--tree] [--chunk-size N] [--threads N] [--leaves] [--json]`
 */
import { hashFile } from '../hash/index';
import {
  ExitCode,
  formatBytes,
  formatRate,
  interruptSignal,
  parseArgs,
  parseSize,
  progressBar,
  UsageError,
} from './common';

export const usage = `tensorvault hash <file> [options]

  SHA-256 of a file, or its chunk tree root (docs/formats/chunk-tree.md).

  --tree             chunk tree instead of a plain SHA-256
  --chunk-size N     tree chunk size (power of two, 4k..1G; default 4M); implies --tree
  --threads N        threads for the tree (default: all cores)
  --leaves           also print each chunk's SHA-256; implies --tree
  --json             machine-readable output
`;

/** Run the `hash` verb; returns the exit code. */
export async function run(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv, ['tree', 'leaves', 'json', 'help'], ['chunk-size', 'threads']);
  if (args.flags.has('help')) {
    process.stdout.write(usage);
    return ExitCode.OK;
  }
  if (args.positionals.length !== 1) throw new UsageError('hash takes exactly one file');
  const file = args.positionals[0] as string;
  const chunk = args.values.get('chunk-size');
  const threads = args.values.get('threads');
  const tree = args.flags.has('tree') || args.flags.has('leaves') || chunk !== undefined;
  const bar = progressBar('hashing');
  const started = performance.now();
  const result = await hashFile(file, {
    tree,
    leaves: args.flags.has('leaves'),
    signal: interruptSignal(),
    ...(chunk !== undefined ? { chunkSize: parseSize(chunk, 'chunk-size') } : {}),
    ...(threads !== undefined ? { threads: Number(threads) } : {}),
    ...(bar.onProgress ? { onProgress: bar.onProgress } : {}),
  }).finally(bar.done);
  const seconds = (performance.now() - started) / 1000;
  if (args.flags.has('json')) {
    process.stdout.write(`${JSON.stringify({ file, ...result, seconds })}\n`);
  } else {
    process.stdout.write(`${result.algorithm}:${result.digest}  ${file}\n`);
    for (const [i, leaf] of (result.leaves ?? []).entries()) process.stdout.write(`  chunk ${i}: ${leaf}\n`);
    process.stderr.write(
      `${formatBytes(result.length)} in ${seconds.toFixed(2)} s (${formatRate(result.length, seconds)})\n`,
    );
  }
  return ExitCode.OK;
}
