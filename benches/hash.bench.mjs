#!/usr/bin/env node
// Hash benchmarks against node:crypto, in one process so the ratios are fair on a shared machine.
//   node benches/hash.bench.mjs [--iterations N] [--file-gib G] [--buffer-gib G] [--json out.json]
// Cases:
//   buffer  1 GiB in memory: tv.sha256 vs crypto.createHash('sha256').update().digest()
//   file    2 GiB warm file: tv.hashFile (plain; tree on 1 and 2 threads) vs createReadStream → Hash
//           (default 64 KiB reads, and 1 MiB reads as a stronger baseline)
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, existsSync, mkdirSync, openSync, statSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Bench } from 'tinybench';

const require = createRequire(import.meta.url);
const tv = require('../dist/index.js');
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : process.argv[i + 1];
};
const iterations = Number(arg('iterations', 5));
const fileBytes = Math.round(Number(arg('file-gib', 2)) * 1024 ** 3);
const bufferBytes = Math.round(Number(arg('buffer-gib', 1)) * 1024 ** 3);
const dir = join(import.meta.dirname, '..', 'target', 'bench-data');
mkdirSync(dir, { recursive: true });

function makeFile(path, size) {
  if (existsSync(path) && statSync(path).size === size) return;
  const fd = openSync(path, 'w');
  const block = Buffer.alloc(16 << 20);
  for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i);
  for (let off = 0; off < size; off += block.length)
    writeSync(fd, block, 0, Math.min(block.length, size - off), off);
  closeSync(fd);
}

const file = join(dir, `hash-${fileBytes}.bin`);
makeFile(file, fileBytes);
// Warm the page cache.
await pipeline(createReadStream(file, { highWaterMark: 8 << 20 }), createHash('sha256'));

const buffer = Buffer.alloc(bufferBytes, 0xa5);
const results = [];
async function run(label, bytes, cases) {
  const bench = new Bench({ iterations, time: 0, warmupIterations: 1, warmupTime: 0 });
  for (const [name, fn] of cases) bench.add(name, fn);
  await bench.run();
  const base = bench.tasks[0].result.latency.p50;
  for (const t of bench.tasks) {
    const ms = t.result.latency.p50;
    results.push({
      group: label,
      case: t.name,
      medianMs: ms,
      gbPerS: bytes / 1e9 / (ms / 1000),
      vsBaseline: base / ms,
    });
  }
}

await run(`buffer ${bufferBytes / 1024 ** 3} GiB`, bufferBytes, [
  ['node:crypto createHash().update(buf)', () => createHash('sha256').update(buffer).digest()],
  ['tv.sha256(buf)', () => tv.sha256(buffer)],
]);
await run(`warm file ${fileBytes / 1024 ** 3} GiB`, fileBytes, [
  ['node:crypto createReadStream (64 KiB)', () => pipeline(createReadStream(file), createHash('sha256'))],
  [
    'node:crypto createReadStream (1 MiB)',
    () => pipeline(createReadStream(file, { highWaterMark: 1 << 20 }), createHash('sha256')),
  ],
  ['tv.hashFile plain', () => tv.hashFile(file)],
  ['tv.hashFile tree 4 MiB, 1 thread', () => tv.hashFile(file, { tree: true, threads: 1 })],
  ['tv.hashFile tree 4 MiB, 2 threads', () => tv.hashFile(file, { tree: true, threads: 2 })],
]);

const machine = `${cpus()[0]?.model ?? 'cpu'} × ${cpus().length}, Node ${process.version}`;
console.log(`\n${machine}, ${new Date().toISOString().slice(0, 10)}, median of ${iterations}\n`);
console.log('| group | case | median | throughput | × baseline |');
console.log('|---|---|---:|---:|---:|');
for (const r of results) {
  console.log(
    `| ${r.group} | ${r.case} | ${r.medianMs.toFixed(0)} ms | ${r.gbPerS.toFixed(2)} GB/s | ${r.vsBaseline.toFixed(2)}× |`,
  );
}
const out = arg('json');
if (out) (await import('node:fs')).writeFileSync(out, JSON.stringify({ machine, results }, null, 2));
