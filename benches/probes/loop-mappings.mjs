#!/usr/bin/env node
// Probe (seventeenth session): what a loop of open + first view + close keeps mapped when its `await`s
// all resolve at once (everything cached), as a model server reloading or an evaluation loop does. Node
// frees a view's external buffer on a later turn of the event loop; before `settleClosedMappings`, such a
// loop kept one whole-file mapping per iteration until `vm.max_map_count` (65,530) killed the process.
// Prints, after each round of N iterations, the mappings of the file in /proc/self/maps and the time per
// iteration.
//   node benches/probes/loop-mappings.mjs CHECKPOINT [--mode lazy|plain] [--n 10000] [--rounds 4]
//        [--dist OTHER/dist/index.js]
// CHECKPOINT: a tensorvault-layout checkpoint (`node benches/probes/open-loop.mjs --make /tmp/x.safetensors`).
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { arg, loadBuild } from '../lib/cli.mjs';

const path = process.argv[2];
if (path === undefined || path.startsWith('--')) throw new Error('usage: loop-mappings.mjs CHECKPOINT');
const tv = loadBuild(arg('dist', undefined));
const mode = arg('mode', 'lazy');
const N = Number(arg('n', 10000));
const R = Number(arg('rounds', 4));
const name = (await tv.openSafetensors(path)).names[0];
const mapped = () =>
  readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((l) => l.endsWith(basename(path))).length;
for (let r = 0; r < R; r++) {
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    if (mode === 'plain') {
      const f = await tv.openSafetensors(path);
      f.tensor(name);
      f.close();
    } else {
      const k = await tv.loadCheckpoint(path);
      await k.tensor(name);
      k.close();
    }
  }
  const us = ((performance.now() - t0) / N) * 1000;
  console.log(
    `round ${r + 1}: ${mapped()} mappings of the file after ${(r + 1) * N} iterations, ${us.toFixed(1)} µs each`,
  );
}
