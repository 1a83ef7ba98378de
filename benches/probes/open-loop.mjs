#!/usr/bin/env node
// Probe (issue 14): a loop that opens a checkpoint and views its first tensor, as a training job's
// evaluation loop or a model server's reload does, against the same loop with `openSafetensors`.
// Interleaved rounds of N iterations; medians of the per-iteration wall time and of the process CPU
// time (all threads: the garbage collector's included), so a build can be compared with another in the
// same minutes (set TVDIST to another build's dist/index.js).
//   node benches/probes/open-loop.mjs CHECKPOINT.safetensors [TENSOR] [--n 200] [--rounds 7]
// CHECKPOINT: any tensorvault-layout checkpoint (e.g. the one benches/checkpoint.bench.mjs saves, or
// `node benches/probes/open-loop.mjs --make /tmp/x.safetensors` to write 512 MiB in 291 tensors).
import { randomFillSync } from 'node:crypto';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const tv = require(process.env.TVDIST ?? join(import.meta.dirname, '..', '..', 'dist', 'index.js'));
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : process.argv[i + 1];
};
const make = arg('make', undefined);
if (make !== undefined) {
  // 512 MiB in 291 tensors, every 10th small (4 KiB), names sorting in file order: the checkpoint
  // bench's shape at half its size.
  const total = 512 * 1024 * 1024;
  const count = 291;
  const nSmall = Math.ceil(count / 10);
  const bigBytes = Math.floor((total - nSmall * 4096) / (count - nSmall) / 4096) * 4096;
  const pattern = randomFillSync(Buffer.alloc(16 << 20));
  const tensors = {};
  for (let i = 0; i < count; i++) {
    const small = i % 10 === 0;
    const u8 = new Uint8Array(small ? 4096 : bigBytes);
    for (let at = 0; at < u8.length; at += pattern.length)
      u8.set(pattern.subarray(0, Math.min(pattern.length, u8.length - at)), at);
    u8[0] = i & 255;
    tensors[`${small ? 'a.bias' : 'b.weight'}.${String(i).padStart(4, '0')}`] = u8;
  }
  await tv.saveCheckpoint(make, tensors, { ecc: 'medium' });
  console.log(`wrote ${make}`);
  process.exit(0);
}
const path = process.argv[2];
if (path === undefined || path.startsWith('--')) throw new Error('usage: open-loop.mjs CHECKPOINT [TENSOR]');
const first =
  process.argv[3] !== undefined && !process.argv[3].startsWith('--') ? process.argv[3] : undefined;
const N = Number(arg('n', 200));
const R = Number(arg('rounds', 7));
const name = first ?? (await tv.openSafetensors(path)).names[0];
const res = { plainCpu: [], lazyCpu: [], plainWall: [], lazyWall: [] };
for (let r = 0; r < R; r++) {
  let c0 = process.cpuUsage();
  let t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const f = await tv.openSafetensors(path);
    f.tensor(name);
    f.close();
  }
  let c = process.cpuUsage(c0);
  res.plainCpu.push((c.user + c.system) / 1000 / N);
  res.plainWall.push((performance.now() - t0) / N);
  c0 = process.cpuUsage();
  t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const k = await tv.loadCheckpoint(path);
    await k.tensor(name);
    k.close();
  }
  c = process.cpuUsage(c0);
  res.lazyCpu.push((c.user + c.system) / 1000 / N);
  res.lazyWall.push((performance.now() - t0) / N);
}
const med = (x) => [...x].sort((a, b) => a - b)[x.length >> 1];
const f3 = (x) => med(x).toFixed(3);
console.log(
  `${process.env.TVDIST ?? 'this build'}: per iteration, ms — openSafetensors + tensor: wall ${f3(res.plainWall)}, CPU ${f3(res.plainCpu)}; loadCheckpoint + verified tensor: wall ${f3(res.lazyWall)}, CPU ${f3(res.lazyCpu)} (${(med(res.lazyWall) / med(res.plainWall)).toFixed(2)}× wall)`,
);
