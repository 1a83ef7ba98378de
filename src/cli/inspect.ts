/**
 * `tensorvault inspect <file.safetensors | index.json> [--json]`
 */
import { openSafetensors, openShardedSafetensors, type TensorInfo } from '../safetensors';
import { ExitCode, formatBytes, parseArgs, UsageError } from './common';
import { printable, printableJson } from './text';

export const usage = `tensorvault inspect <file.safetensors | model.safetensors.index.json> [options]

  List a safetensors checkpoint's tensors (name, dtype, shape, size) and metadata. The header is
  validated; no tensor data is read. A sharded checkpoint is read through its index.

  --json             machine-readable output
`;

interface Row extends TensorInfo {
  shard?: string;
}

/** Run the `inspect` verb; returns the exit code. */
export async function run(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv, ['json'], []);
  if (args.positionals.length !== 1) throw new UsageError('inspect takes exactly one file');
  const file = args.positionals[0] as string;
  let rows: Row[];
  let metadata: Readonly<Record<string, unknown>> | null;
  let kind: 'safetensors' | 'sharded';
  if (file.endsWith('.json')) {
    kind = 'sharded';
    const sharded = await openShardedSafetensors(file);
    try {
      rows = [];
      for (const name of sharded.names)
        rows.push({ ...(await sharded.info(name)), shard: sharded.shardOf(name) });
      metadata = sharded.metadata;
    } finally {
      await sharded.close();
    }
  } else {
    kind = 'safetensors';
    const f = await openSafetensors(file);
    try {
      rows = f.infos();
      metadata = f.metadata;
    } finally {
      f.close();
    }
  }
  const total = rows.reduce((s, r) => s + r.byteLength, 0);
  if (args.flags.has('json')) {
    process.stdout.write(
      `${printableJson(JSON.stringify({ file, kind, metadata, tensorCount: rows.length, totalBytes: total, tensors: rows }))}\n`,
    );
    return ExitCode.OK;
  }
  // Names, shard names and metadata come from the file: control characters are escaped (src/cli/text.ts).
  const names = rows.map((r) => printable(r.name));
  const nameW = Math.min(60, Math.max(4, ...names.map((n) => n.length)));
  const lines = rows.map((r, i) => {
    const shape = `[${(r.exactShape ?? r.shape).join(', ')}]`;
    const shard = r.shard === undefined ? '' : `  ${printable(r.shard)}`;
    return `${(names[i] as string).padEnd(nameW)}  ${r.dtype.padEnd(8)} ${shape.padEnd(20)} ${formatBytes(r.byteLength).padStart(10)}${shard}`;
  });
  process.stdout.write(`${printable(file)}: ${rows.length} tensors, ${formatBytes(total)}\n`);
  if (metadata !== null && Object.keys(metadata).length > 0) {
    process.stdout.write('metadata:\n');
    for (const [k, v] of Object.entries(metadata))
      process.stdout.write(
        `  ${printable(k)}: ${typeof v === 'string' ? printable(v) : printableJson(JSON.stringify(v))}\n`,
      );
  }
  process.stdout.write(
    `${'name'.padEnd(nameW)}  ${'dtype'.padEnd(8)} ${'shape'.padEnd(20)} ${'size'.padStart(10)}\n`,
  );
  process.stdout.write(`${lines.join('\n')}\n`);
  return ExitCode.OK;
}
