#!/usr/bin/env node
// protect / verify of an intact, page-cached file (2 threads, the libuv pool), per level and chunk digest,
// in one run. The first line names the kernels in use (TV_CPU=avx2 caps the erasure kernel; BLAKE3 and
// SHA-256 pick their own paths). Baseline in the same run: node:crypto SHA-256 of the file's bytes
// (one core, from the page cache in 64 MiB reads).
// With --burst LEVEL: afterwards, protect at LEVEL, overwrite the largest burst that level guarantees to
// repair ((m·S − 1)·chunk + 1 bytes, S = stripes) and time `repair` (rebuild, full atomic copy, re-verify).
//   node benches/ecc-file.bench.mjs [--gib 2] [--levels low,medium] [--digests blake3,sha256] [--rounds 3]
//   node benches/ecc-file.bench.mjs --gib 1 --levels none --burst medium
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { loadavg } from 'node:os';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const root = join(import.meta.dirname, '..');
const tv = require(join(root, 'dist', 'index.js'));
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : process.argv[i + 1];
};
const gib = Number(arg('gib', 2));
const levels = arg('levels', 'low,medium')
  .split(',')
  .filter((l) => l !== 'none');
const burst = arg('burst', undefined);
const digests = arg('digests', 'blake3,sha256').split(',');
const rounds = Number(arg('rounds', 3));
const file = join(root, 'target', 'bench-data', `ecc-file-${gib}g.bin`);
const bytes = Math.round(gib * 1024 ** 3);

const block = Buffer.alloc(64 << 20);
for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i);
{
  const fd = openSync(file, 'w');
  for (let done = 0; done < bytes; ) {
    const n = Math.min(block.length, bytes - done);
    block.writeUInt32LE(done >>> 0, 0);
    writeSync(fd, block, 0, n);
    done += n;
  }
  closeSync(fd);
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const gbs = (ms) => (bytes / 1e9 / (ms / 1000)).toFixed(2);

console.log(tv.describeCpu());
console.log(
  `load ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}, ${new Date().toISOString()}, ${gib} GiB page-cached file`,
);
const shaTimes = [];
for (let r = 0; r < rounds; r++) {
  const t0 = performance.now();
  const h = createHash('sha256');
  const fd = openSync(file, 'r');
  for (;;) {
    const n = readSync(fd, block, 0, block.length);
    if (n === 0) break;
    h.update(block.subarray(0, n));
  }
  closeSync(fd);
  h.digest();
  shaTimes.push(performance.now() - t0);
}
const sha = median(shaTimes);
console.log(`baseline node:crypto SHA-256 of the file (1 core): ${gbs(sha)} GB/s`);
console.log('level   digest  protect GB/s  verify GB/s (median of rounds)  × baseline (verify)');
for (const level of levels) {
  for (const digest of digests) {
    const p = [];
    const v = [];
    for (let r = 0; r < rounds; r++) {
      rmSync(`${file}.tvecc`, { force: true });
      let t0 = performance.now();
      await tv.protect(file, { level, digest });
      p.push(performance.now() - t0);
      t0 = performance.now();
      const res = await tv.verify(file);
      v.push(performance.now() - t0);
      if (res.status !== 'intact') throw new Error(`verify: ${res.status}`);
    }
    console.log(
      `${level.padEnd(8)}${digest.padEnd(8)}${gbs(median(p)).padStart(12)}${gbs(median(v)).padStart(13)}${''.padStart(32)}${(sha / median(v)).toFixed(2)}×`,
    );
  }
}
if (burst !== undefined) {
  rmSync(`${file}.tvecc`, { force: true });
  const p = await tv.protect(file, { level: burst });
  const { k, m, chunkSize } = p.layout;
  const chunks = Math.ceil(bytes / chunkSize);
  const stripes = Math.ceil(chunks / k);
  const len = (m * stripes - 1) * chunkSize + 1;
  const at = Math.floor((bytes - len) / 2);
  const fd = openSync(file, 'r+');
  const junk = Buffer.alloc(Math.min(len, block.length), 0xa5);
  for (let done = 0; done < len; done += junk.length)
    writeSync(fd, junk, 0, Math.min(junk.length, len - done), at + done);
  closeSync(fd);
  const t0 = performance.now();
  const r = await tv.repair(file);
  const ms = performance.now() - t0;
  if (r.after.status !== 'intact') throw new Error(`repair: ${r.after.status}`);
  console.log(
    `repair of a ${(len / 2 ** 20).toFixed(0)} MiB burst (${burst}, ${k}+${m}, ${r.repairedChunks.length} chunks rebuilt): ${(ms / 1000).toFixed(2)} s`,
  );
}
rmSync(`${file}.tvecc`, { force: true });
console.log(
  `load at end ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}`,
);
