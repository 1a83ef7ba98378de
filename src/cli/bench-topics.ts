/**
 * `tensorvault bench rs | hash | safetensors`: what the README claims for the rs(N) codec, hashing and
 * safetensors reads, measured on the user's own machine, each beside a same-run yardstick (node:crypto's
 * SHA-256 of the same bytes). Median of three rounds; every round runs at least `--round-ms`.
 */
import { createHash, randomFillSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeCpu } from '../ecc/cpu';
import { RsCodec } from '../ecc/rs255';
import { hashFile, sha256 } from '../hash/index';
import { openSafetensors, saveSafetensors } from '../safetensors/index';
import { ExitCode, formatBytes, type ParsedArgs, parseSize, UsageError } from './common';

export const topicsUsage = `tensorvault bench rs [--codecs 16,32,64] [--size 64M] [--threads N] [--json]
tensorvault bench hash [--size 256M] [--json]
tensorvault bench safetensors [--size 256M] [--json]

  rs           encode, verify and decode (clean, and with errors in every 8th block) of the
               reedsolo-compatible rs(N) codec, per --codecs
  hash         SHA-256 in memory (tensorvault vs node:crypto) and of a file (hashFile: plain and tree)
  safetensors  open + first tensor, and reading every tensor through views, on a temporary file

  Every table has a 'yardstick' row: node:crypto's SHA-256 of the same bytes in the same run, so figures
  from different machines compare as ratios. --round-ms N sets the minimum length of a timed round.
`;

interface Row {
  case: string;
  bytes: number;
  ms: number;
  gbps: number;
}

async function timedMedian(roundMs: number, fn: () => unknown): Promise<number> {
  const rounds: number[] = [];
  for (let r = 0; r < 3; r++) {
    let n = 0;
    const t0 = performance.now();
    do {
      await fn();
      n++;
    } while (performance.now() - t0 < roundMs);
    rounds.push((performance.now() - t0) / n);
  }
  rounds.sort((a, b) => a - b);
  return rounds[1] as number;
}

function row(name: string, bytes: number, ms: number): Row {
  return { case: name, bytes, ms, gbps: bytes / ms / 1e6 };
}

function yardstick(buf: Uint8Array, roundMs: number): Promise<Row> {
  return timedMedian(roundMs, () => createHash('sha256').update(buf).digest()).then((ms) =>
    row('yardstick: node:crypto SHA-256', buf.length, ms),
  );
}

async function benchRs(a: ParsedArgs, roundMs: number): Promise<Row[]> {
  const codecs = (a.values.get('codecs') ?? '16,32,64').split(',').map((s) => {
    const n = Number(s.replace(/^rs\(|\)$/g, ''));
    if (!Number.isInteger(n) || n < 1 || n > RsCodec.MAX_PARITY)
      throw new UsageError(`--codecs: not a parity count: ${s}`);
    return n;
  });
  const size = parseSize(a.values.get('size') ?? '64M', 'size');
  const threads = a.values.has('threads') ? Number(a.values.get('threads')) : undefined;
  const opts = threads === undefined ? {} : { threads };
  const data = randomFillSync(Buffer.alloc(size));
  const rows: Row[] = [await yardstick(data, roundMs)];
  for (const n of codecs) {
    const codec = new RsCodec(n);
    const parity = await codec.encode(data, opts);
    rows.push(row(`rs(${n}) encode`, size, await timedMedian(roundMs, () => codec.encode(data, opts))));
    rows.push(
      row(
        `rs(${n}) verify (intact)`,
        size,
        await timedMedian(roundMs, () => codec.verify(data, parity, opts)),
      ),
    );
    rows.push(
      row(
        `rs(${n}) decode (intact)`,
        size,
        await timedMedian(roundMs, () => codec.decode(data, parity, opts)),
      ),
    );
    const damaged = Buffer.from(data);
    const block = 255 - n;
    for (let at = 0; at < size; at += 8 * block) damaged[at] = (damaged[at] as number) ^ 0x5a;
    rows.push(
      row(
        `rs(${n}) decode (1 error / 8 blocks)`,
        size,
        await timedMedian(roundMs, () => codec.decode(damaged, parity, opts)),
      ),
    );
  }
  return rows;
}

async function benchHash(a: ParsedArgs, roundMs: number): Promise<Row[]> {
  const size = parseSize(a.values.get('size') ?? '256M', 'size');
  const data = randomFillSync(Buffer.alloc(size));
  const dir = mkdtempSync(join(tmpdir(), 'tv-bench-'));
  try {
    const file = join(dir, 'data.bin');
    await saveBytes(file, data);
    return [
      await yardstick(data, roundMs),
      row('tensorvault sha256 (in memory)', size, await timedMedian(roundMs, () => sha256(data))),
      row('hashFile (plain SHA-256)', size, await timedMedian(roundMs, () => hashFile(file))),
      row(
        'hashFile (chunk tree, all cores)',
        size,
        await timedMedian(roundMs, () => hashFile(file, { tree: true })),
      ),
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function saveBytes(file: string, data: Buffer): Promise<void> {
  const { writeFile } = await import('node:fs/promises');
  await writeFile(file, data);
}

async function benchSafetensors(a: ParsedArgs, roundMs: number): Promise<Row[]> {
  const size = parseSize(a.values.get('size') ?? '256M', 'size');
  const tensors = 64;
  const per = Math.max(4, Math.floor(size / tensors / 4) * 4);
  const dir = mkdtempSync(join(tmpdir(), 'tv-bench-'));
  try {
    const file = join(dir, 'model.safetensors');
    const chunk = randomFillSync(new Float32Array(per / 4));
    const input: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
    for (let i = 0; i < tensors; i++)
      input[`layer.${i}.weight`] = { dtype: 'F32', shape: [per / 4], data: chunk };
    await saveSafetensors(file, input);
    const total = per * tensors;
    const openFirst = await timedMedian(roundMs, async () => {
      const f = await openSafetensors(file);
      f.tensor('layer.0.weight');
      f.close();
    });
    const readAll = await timedMedian(roundMs, async () => {
      const f = await openSafetensors(file);
      let x = 0;
      for (const name of f.names) {
        const b = f.tensor(name).bytes;
        for (let i = 0; i < b.length; i += 4096) x ^= b[i] as number; // touch every page
      }
      f.close();
      return x;
    });
    const data = Buffer.from(chunk.buffer);
    return [
      await yardstick(data, roundMs),
      { ...row(`open + first tensor (${tensors} tensors, ${formatBytes(total)})`, 0, openFirst), gbps: 0 },
      row('open + every tensor via views (one read per page)', total, readAll),
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Run one of the topics above; returns the exit code. */
export async function runTopic(topic: string, a: ParsedArgs): Promise<number> {
  const roundMs = Number(a.values.get('round-ms') ?? '200');
  if (!Number.isFinite(roundMs) || roundMs < 0) throw new UsageError('--round-ms: not a number');
  const rows =
    topic === 'rs'
      ? await benchRs(a, roundMs)
      : topic === 'hash'
        ? await benchHash(a, roundMs)
        : await benchSafetensors(a, roundMs);
  if (a.flags.has('json')) {
    process.stdout.write(`${JSON.stringify({ topic, cpu: describeCpu(), rows })}\n`);
    return ExitCode.OK;
  }
  process.stdout.write(`${describeCpu()}\n`);
  const w = Math.max(...rows.map((r) => r.case.length));
  process.stdout.write(
    `${'case'.padEnd(w)}  ${'bytes'.padStart(10)}  ${'time'.padStart(10)}  ${'GB/s'.padStart(6)}\n`,
  );
  for (const r of rows) {
    process.stdout.write(
      `${r.case.padEnd(w)}  ${(r.bytes ? formatBytes(r.bytes) : '-').padStart(10)}  ${`${r.ms.toFixed(2)} ms`.padStart(10)}  ${(r.gbps ? r.gbps.toFixed(2) : '-').padStart(6)}\n`,
    );
  }
  return ExitCode.OK;
}
