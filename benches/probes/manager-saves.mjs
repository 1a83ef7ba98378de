#!/usr/bin/env node
// Probe (seventeenth session): what a CheckpointManager's save and latest() cost as the number of kept
// checkpoints grows (keepLast large, optionally keepBest by a metric). Saves --n tiny checkpoints and
// prints the mean save time per hundred, then times list() and latest().
//   node benches/probes/manager-saves.mjs [--n 400] [--best 5] [--dir /tmp/tv-manager-saves]
//        [--dist OTHER/dist/index.js]
import { rmSync } from 'node:fs';
import { arg, loadBuild } from '../lib/cli.mjs';

const tv = loadBuild(arg('dist', undefined));
const dir = arg('dir', '/tmp/tv-manager-saves');
const n = Number(arg('n', 400));
const best = Number(arg('best', 0));
rmSync(dir, { recursive: true, force: true });
const m = new tv.CheckpointManager(dir, {
  keepLast: 1_000_000,
  ...(best > 0 ? { keepBest: best, metric: 'loss' } : {}),
});
let last = performance.now();
const parts = [];
for (let i = 1; i <= n; i++) {
  await m.save(i, { w: new Float32Array(256) }, { metrics: { loss: (i * 7919) % 1000 } });
  if (i % 100 === 0) {
    const now = performance.now();
    parts.push(`${i - 99}–${i}: ${((now - last) / 100).toFixed(2)} ms`);
    last = now;
  }
}
let t0 = performance.now();
m.list();
const list = performance.now() - t0;
t0 = performance.now();
m.latest();
const latest = performance.now() - t0;
console.log(
  `saves (keepBest ${best}) ${parts.join(', ')}; list() ${list.toFixed(1)} ms, latest() ${latest.toFixed(1)} ms`,
);
rmSync(dir, { recursive: true, force: true });
