#!/usr/bin/env node
// Probe: what a CheckpointManager's bookkeeping costs as its run folder grows. Saves N tiny checkpoints
// (the tensor bytes do not matter here), then times list() (which every save calls twice: before the
// save's prune and in it), this build against another (--base OTHER/dist/index.js), alternating.
//   node benches/probes/manager-list.mjs [--n 200] [--rounds 5] [--base OTHER/dist/index.js]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { arg, loadBuild } from '../lib/cli.mjs';

const n = Number(arg('n', 200));
const rounds = Number(arg('rounds', 5));
const base = arg('base', undefined);
const builds = [{ name: 'this', tv: loadBuild() }];
if (base !== undefined) builds.push({ name: 'base', tv: loadBuild(base) });
const dir = mkdtempSync(join(tmpdir(), 'tv-manager-list-'));
try {
  const m = new builds[0].tv.CheckpointManager(dir, { keepLast: n + 1 });
  for (let i = 0; i < n; i++) await m.save(i, { w: new Float32Array(16) }, { metrics: { loss: i } });
  const ms = Object.fromEntries(builds.map((b) => [b.name, []]));
  for (let r = 0; r < rounds; r++) {
    for (const b of r % 2 === 0 ? builds : [...builds].reverse()) {
      const mm = new b.tv.CheckpointManager(dir, { keepLast: n + 1, keepBest: 1, metric: 'loss' });
      const t = performance.now();
      const list = mm.list();
      ms[b.name].push(performance.now() - t);
      if (list.length !== n) throw new Error(`${b.name}: listed ${list.length} of ${n}`);
    }
  }
  for (const [name, xs] of Object.entries(ms)) {
    xs.sort((a, b) => a - b);
    console.log(
      `${name}: list() of ${n} checkpoints, median ${xs[xs.length >> 1].toFixed(1)} ms (${(
        (xs[xs.length >> 1] / n) * 1000
      ).toFixed(0)} µs each), best ${xs[0].toFixed(1)} ms`,
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
