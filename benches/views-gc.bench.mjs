#!/usr/bin/env node
// What tensor views cost the garbage collector (issue 11): making thousands of zero-copy views of
// multi-megabyte tensors must stay cheap on every Node line, and must never abort the process.
//   node benches/views-gc.bench.mjs [--views 4000] [--mib 5] [--tensors 40] [--rounds 7] [--lib DIR]
// Cases, on one generated checkpoint of --tensors F32 tensors of --mib MiB each:
//   one open   one openSafetensors, then --views tensor() calls cycling over the names, each view
//              touched once (data[5]), then close
//   warm       the same views on a file already open and viewed once (steady per-view cost)
//   reopen     the same number of views, with an open/close around every pass over the names
// Baseline: the build before issue 11 (one external ArrayBuffer per view, with external-memory
// credits), run with --lib DIR (a copy of that build's `dist/` beside its `native/`) on Node 20 and
// 22; it aborts Node 24 and 26. Reported: median wall time of --rounds runs, and the number of major
// (mark-compact) and other collections a PerformanceObserver saw per run.
import { mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { constants, PerformanceObserver } from 'node:perf_hooks';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : process.argv[i + 1];
};
const root = join(import.meta.dirname, '..');
const require = createRequire(import.meta.url);
const tv = require(resolve(arg('lib', join(root, 'dist')), 'index.js'));
const views = Number(arg('views', 4000));
const mib = Number(arg('mib', 5));
const count = Number(arg('tensors', 40));
const rounds = Number(arg('rounds', 7));

const dir = join(root, 'target', 'bench-data');
mkdirSync(dir, { recursive: true });
const path = join(dir, `views-gc-${count}x${mib}m.safetensors`);
const elems = (mib * 1024 * 1024) / 4;
const tensors = {};
for (let i = 0; i < count; i++) tensors[`w${i}`] = new Float32Array(elems).fill(i);
await tv.saveSafetensors(path, tensors);
for (const k of Object.keys(tensors)) delete tensors[k];

let majors = 0;
let minors = 0;
const obs = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const kind = e.detail?.kind ?? e.kind;
    if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors++;
    else minors++;
  }
});
obs.observe({ entryTypes: ['gc'] });

let sink = 0;
async function oneOpen() {
  const f = await tv.openSafetensors(path);
  const names = f.names;
  const t0 = performance.now();
  for (let i = 0; i < views; i++) sink += f.tensor(names[i % names.length]).data[5];
  const ms = performance.now() - t0;
  f.close();
  return ms;
}
// The same views on a file already open and already viewed once (its region exists): the steady
// per-view cost, without the first view's region and the collection its size triggers.
let warm;
async function warmFile() {
  warm ??= await tv.openSafetensors(path);
  const names = warm.names;
  sink += warm.tensor(names[0]).data[5];
  const t0 = performance.now();
  for (let i = 0; i < views; i++) sink += warm.tensor(names[i % names.length]).data[5];
  return performance.now() - t0;
}
async function reopen() {
  const t0 = performance.now();
  let made = 0;
  while (made < views) {
    const f = await tv.openSafetensors(path);
    for (const n of f.names) {
      if (made++ === views) break;
      sink += f.tensor(n).data[5];
    }
    f.close();
  }
  return performance.now() - t0;
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results = {};
for (const [name, fn] of [
  ['one open', oneOpen],
  ['open file, region made', warmFile],
  ['reopen', reopen],
]) {
  await fn(); // warm-up
  await new Promise((r) => setTimeout(r, 50));
  const times = [];
  const m0 = majors;
  const n0 = minors;
  for (let r = 0; r < rounds; r++) times.push(await fn());
  await new Promise((r) => setTimeout(r, 50)); // let the observer deliver
  results[name] = {
    ms: median(times),
    majorGcPerRun: (majors - m0) / rounds,
    otherGcPerRun: (minors - n0) / rounds,
  };
}
obs.disconnect();
warm?.close();
rmSync(path, { force: true });

console.log(
  `node ${process.version} (V8 ${process.versions.v8}), ${views} views of ${mib} MiB, median of ${rounds}`,
);
for (const [name, r] of Object.entries(results)) {
  console.log(
    `${name.padEnd(30)} ${r.ms.toFixed(1).padStart(8)} ms   major GC/run ${r.majorGcPerRun.toFixed(1).padStart(5)}   other GC/run ${r.otherGcPerRun.toFixed(1).padStart(6)}`,
  );
}
console.log(JSON.stringify({ node: process.version, views, mib, results, sink: sink > 0 }));
