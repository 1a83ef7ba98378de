#!/usr/bin/env node
// Probe (issue 14): the verified open of this build against another build's, in one process. Both
// builds are loaded side by side (each with its own addon); rounds alternate between them (the order
// rotates), with a full collection between rounds (run with --expose-gc), so that both see the same
// machine and heap. Per round: N iterations of `loadCheckpoint` + first `tensor()` + `close()`, then N of
// `openSafetensors` + `tensor()` + `close()`. Prints the medians and the ratios. With --steps, it also
// times the steps of one build's verified load (open, first view, second view, close) separately.
//   node --expose-gc benches/probes/open-ab.mjs CHECKPOINT --base OTHER/dist/index.js
//        [--tensors a.bias.0000,a.bias.0010] [--rounds 21] [--n 200] [--steps]
// CHECKPOINT: e.g. `node benches/probes/open-loop.mjs --make /tmp/probe/model.safetensors`.
import { arg, flag, loadBuild } from '../lib/cli.mjs';

const path = process.argv[2];
const basePath = arg('base', undefined);
if (path === undefined || path.startsWith('--') || basePath === undefined)
  throw new Error(
    'usage: open-ab.mjs CHECKPOINT --base OTHER/dist/index.js [--tensors a,b] [--rounds R] [--n N]',
  );
const A = loadBuild();
const B = loadBuild(basePath);
const N = Number(arg('n', 200));
const R = Number(arg('rounds', 21));
const names = arg('tensors', undefined)?.split(',') ?? [(await A.openSafetensors(path)).names[0]];

/** Let finalizers run (they are tasks, not microtasks) after a collection. */
async function settle() {
  for (let i = 0; i < 2; i++) {
    globalThis.gc?.();
    await new Promise((r) => setTimeout(r, 5));
  }
}

const res = {};
/** Record one round's per-iteration time (µs) under `key`. */
function record(key, t0) {
  res[key] ??= [];
  res[key].push(((performance.now() - t0) / N) * 1000);
}

async function round(tv, key, name) {
  await settle();
  let t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const k = await tv.loadCheckpoint(path);
    await k.tensor(name);
    k.close();
  }
  record(`${key} verified ${name}`, t0);
  t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const f = await tv.openSafetensors(path);
    f.tensor(name);
    f.close();
  }
  record(`${key} plain ${name}`, t0);
}

for (let r = 0; r < R; r++)
  for (const name of names) {
    const order =
      r % 2 === 0
        ? [
            ['this', A],
            ['base', B],
          ]
        : [
            ['base', B],
            ['this', A],
          ];
    for (const [key, tv] of order) await round(tv, key, name);
  }
const med = (x) => [...x].sort((a, b) => a - b)[x.length >> 1];
for (const [k, v] of Object.entries(res)) console.log(`${k.padEnd(30)} ${med(v).toFixed(1)} µs`);
for (const name of names) {
  const m = (k) => med(res[`${k} ${name}`]);
  console.log(
    `${name}: this ÷ base, verified ${(m('this verified') / m('base verified')).toFixed(3)}, unverified ${(m('this plain') / m('base plain')).toFixed(3)}; verified ÷ unverified: this ${(m('this verified') / m('this plain')).toFixed(2)}, base ${(m('base verified') / m('base plain')).toFixed(2)}`,
  );
}

if (flag('steps')) {
  for (const [key, tv] of [
    ['this', A],
    ['base', B],
  ])
    for (const name of names) {
      await settle();
      const t = [0, 0, 0, 0];
      const n = N * 5;
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        const k = await tv.loadCheckpoint(path);
        const t1 = performance.now();
        await k.tensor(name);
        const t2 = performance.now();
        await k.tensor(name);
        const t3 = performance.now();
        k.close();
        const t4 = performance.now();
        t[0] += t1 - t0;
        t[1] += t2 - t1;
        t[2] += t3 - t2;
        t[3] += t4 - t3;
      }
      const us = t.map((x) => ((x / n) * 1000).toFixed(0));
      console.log(
        `${key} ${name}: open ${us[0]} µs, first view ${us[1]}, second view ${us[2]}, close ${us[3]}`,
      );
    }
}
