#!/usr/bin/env node
// Probe (seventeenth session): the fixed cost of one call on small inputs, beside a plain Node baseline
// in the same run: hashFile against node:crypto (readFile + createHash) by file size, verifyCheckpoint
// and loadCheckpoint of a small checkpoint, saveCheckpoint of 4 KiB against fs.writeFile, and two saves
// of one path started at once (they must both complete, in turn, without freezing the event loop).
//   node benches/probes/small-calls.mjs [--dir /tmp/tv-small] [--n 300] [--dist OTHER/dist/index.js]
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { arg, loadBuild } from '../lib/cli.mjs';

const tv = loadBuild(arg('dist', undefined));
const dir = arg('dir', '/tmp/tv-small');
const N = Number(arg('n', 300));
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
async function time(label, op, n = N) {
  for (let i = 0; i < Math.min(20, n); i++) await op();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await op();
  const us = ((performance.now() - t0) / n) * 1000;
  return `${label} ${us.toFixed(0)} µs`;
}
for (const size of [4096, 65536, 1 << 20, 16 << 20]) {
  const p = join(dir, `f${size}.bin`);
  writeFileSync(p, Buffer.alloc(size, 7));
  const n = size > 4 << 20 ? 30 : N;
  const a = await time('hashFile', () => tv.hashFile(p), n);
  const b = await time(
    'node:crypto',
    async () =>
      createHash('sha256')
        .update(await readFile(p))
        .digest(),
    n,
  );
  const c = await time('hashFile tree', () => tv.hashFile(p, { tree: true }), n);
  console.log(`${String(size).padStart(9)} B: ${a} | ${b} | ${c}`);
}
const w = new Float32Array(1 << 16).map((_, i) => i);
const ck = join(dir, 'c.safetensors');
await tv.saveCheckpoint(ck, { w }, { ecc: 'medium' });
console.log(`256 KiB checkpoint: ${await time('verifyCheckpoint', () => tv.verifyCheckpoint(ck))}`);
console.log(
  `256 KiB checkpoint: ${await time('loadCheckpoint full', async () => (await tv.loadCheckpoint(ck, { verify: 'full' })).close())}`,
);
const small = new Float32Array(1024).fill(1);
const raw = Buffer.from(small.buffer);
console.log(
  `4 KiB: ${await time('fs.writeFile', () => writeFile(join(dir, 'x.bin'), raw), 100)} | ${await time('saveCheckpoint off', () => tv.saveCheckpoint(join(dir, 'y.safetensors'), { w: small }, { ecc: 'off' }), 100)} | ${await time('saveCheckpoint medium', () => tv.saveCheckpoint(join(dir, 'z.safetensors'), { w: small }, { ecc: 'medium' }), 100)}`,
);
// Two saves of one path at once, with a timer that ticks while they run.
const cc = join(dir, 'cc.safetensors');
let ticks = 0;
const timer = setInterval(() => ticks++, 10);
const t0 = performance.now();
const r = await Promise.allSettled([
  tv.saveCheckpoint(cc, { w: new Float32Array(1 << 20).fill(1) }, { lockTimeoutMs: 3000 }),
  tv.saveCheckpoint(cc, { w: new Float32Array(1 << 20).fill(2) }, { lockTimeoutMs: 3000 }),
]);
clearInterval(timer);
console.log(
  `two saves of one path at once: ${((performance.now() - t0) / 1000).toFixed(2)} s, ${ticks} timer ticks of 10 ms, ${r.map((x) => (x.status === 'fulfilled' ? 'saved' : x.reason.code)).join(' + ')}`,
);
rmSync(dir, { recursive: true, force: true });
