#!/usr/bin/env node
// Probe (issue 14): what `saveCheckpoint` costs beyond the write, without the disk. Saves 1 GiB of
// in-memory tensors (291) to a tmpfs folder (default /dev/shm), alternating `ecc: 'off'` and
// `ecc: 'medium'`, and prints the wall and process CPU time of each save. Set TVDIST to another build's
// dist/index.js to compare two builds in the same minutes.
//   node benches/probes/save-cpu.mjs [--dir /dev/shm] [--rounds 3]
import { randomFillSync } from 'node:crypto';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const tv = require(process.env.TVDIST ?? join(import.meta.dirname, '..', '..', 'dist', 'index.js'));
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : process.argv[i + 1];
};
const dir = arg('dir', '/dev/shm');
const rounds = Number(arg('rounds', 3));
const count = 291;
const pattern = randomFillSync(Buffer.alloc(16 << 20));
const big = Math.floor(1024 ** 3 / count / 4096) * 4096;
const tensors = {};
for (let i = 0; i < count; i++) {
  const u = new Uint8Array(big);
  for (let a = 0; a < big; a += pattern.length)
    u.set(pattern.subarray(0, Math.min(pattern.length, big - a)), a);
  u[0] = i;
  tensors[`t.${String(i).padStart(4, '0')}`] = u;
}
const out = [];
for (let r = 0; r < rounds; r++) {
  for (const ecc of ['off', 'medium']) {
    const p = join(dir, `save-cpu-${process.pid}.safetensors`);
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await tv.saveCheckpoint(p, tensors, { ecc });
    const c = process.cpuUsage(c0);
    out.push(
      `${ecc}: wall ${(performance.now() - t0).toFixed(0)} ms, CPU ${((c.user + c.system) / 1000).toFixed(0)} ms`,
    );
    for (const s of ['', '.meta.json', '.tvecc', '.tvob']) rmSync(p + s, { force: true });
  }
}
console.log(out.join(' | '));
