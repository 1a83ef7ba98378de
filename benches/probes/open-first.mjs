#!/usr/bin/env node
// Probe (issue 14): what a process that opens a checkpoint only a few times sees. Each contender runs in a
// fresh process (after its library is imported): K opens in a row of the same file and tensor, each
// timed on its own, so the first open (addon or module loading, cold code) and the next ones (JS not yet
// optimised by V8) show apart from the steady state that long loops measure. Contenders:
// `openSafetensors` + `tensor()`, `loadCheckpoint` + verified `tensor()`, Python `safe_open` +
// `get_tensor` (the real `safetensors` from PyPI, `.venv` or TV_PYTHON). Then, with --loop N, the
// steady state of each: rounds of N opens in one process (medians per open).
//   node benches/probes/open-first.mjs CHECKPOINT [TENSOR] [--k 20] [--procs 2] [--loop 1000]
//        [--dist OTHER/dist/index.js (another build)] [--no-python]
// CHECKPOINT: e.g. `node benches/probes/open-loop.mjs --make /tmp/probe/model.safetensors`.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { arg, flag, loadBuild, root } from '../lib/cli.mjs';

const path = process.argv[2];
if (path === undefined || path.startsWith('--')) throw new Error('usage: open-first.mjs CHECKPOINT [TENSOR]');
const K = Number(arg('k', 20));
const procs = Number(arg('procs', 2));
const loop = Number(arg('loop', 0));
const python = process.env.TV_PYTHON ?? join(root, '.venv', 'bin', 'python');
const dist = arg('dist', join(root, 'dist', 'index.js'));

const nodeChild = `
const tv = require(${JSON.stringify(dist)});
const [mode, path, k, loop] = process.argv.slice(1);
(async () => {
  const name = process.argv[5] || (await tv.openSafetensors(path)).names[0];
  const once = mode === 'lazy'
    ? async () => { const c = await tv.loadCheckpoint(path); await c.tensor(name); c.close(); }
    : async () => { const f = await tv.openSafetensors(path); f.tensor(name); f.close(); };
  const out = { first: [], loop: [] };
  for (let i = 0; i < Number(k); i++) { const t0 = performance.now(); await once(); out.first.push((performance.now() - t0) * 1000); }
  for (let r = 0; r < (Number(loop) > 0 ? 5 : 0); r++) {
    const t0 = performance.now();
    for (let i = 0; i < Number(loop); i++) await once();
    out.loop.push(((performance.now() - t0) / Number(loop)) * 1000);
  }
  console.log(JSON.stringify(out));
})();
`;
const pyChild = `
import sys, time, json
t0 = time.perf_counter()
from safetensors import safe_open
path, name, k, loop = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
out = {'import': (time.perf_counter() - t0) * 1e6, 'first': [], 'loop': []}
def once():
    with safe_open(path, framework='np') as f:
        f.get_tensor(name)
for i in range(k):
    t = time.perf_counter(); once(); out['first'].append((time.perf_counter() - t) * 1e6)
for r in range(5 if loop > 0 else 0):
    t = time.perf_counter()
    for i in range(loop): once()
    out['loop'].append((time.perf_counter() - t) / loop * 1e6)
print(json.dumps(out))
`;

const name =
  process.argv[3] !== undefined && !process.argv[3].startsWith('--')
    ? process.argv[3]
    : (await loadBuild(dist).openSafetensors(path)).names[0];
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1));
};
const med = (v) => [...v].sort((a, b) => a - b)[v.length >> 1];
const range = (v) => (v.length === 0 ? '-' : `${Math.min(...v).toFixed(0)}–${Math.max(...v).toFixed(0)}`);
const rows = [];
for (const [label, cmd, args] of [
  [
    'openSafetensors + tensor',
    process.execPath,
    (p) => ['-e', nodeChild, 'plain', p, String(K), String(loop), name],
  ],
  [
    'loadCheckpoint + verified tensor',
    process.execPath,
    (p) => ['-e', nodeChild, 'lazy', p, String(K), String(loop), name],
  ],
  ...(existsSync(python) && !flag('no-python')
    ? [['Python safe_open + get_tensor', python, (p) => ['-c', pyChild, p, name, String(K), String(loop)]]]
    : []),
]) {
  const runs = [];
  for (let i = 0; i < procs; i++) runs.push(run(cmd, args(path)));
  rows.push({
    label,
    first: runs.map((r) => r.first[0]),
    second: runs.map((r) => r.first[1]),
    rest: runs.flatMap((r) => r.first.slice(2)),
    loop: runs.flatMap((r) => r.loop),
    imp: runs.map((r) => r.import).filter((x) => x !== undefined),
  });
}
console.log(`\n${dist}\n${path} · tensor ${name} · ${K} opens per process, ${procs} processes each (µs)\n`);
console.log(
  `| contender | 1st | 2nd | 3rd–${K}th (range · median) |${loop > 0 ? ` loop of ${loop} (per open, range over 5 rounds × processes) |` : ''}`,
);
console.log(`|---|---:|---:|---:|${loop > 0 ? '---:|' : ''}`);
for (const r of rows) {
  console.log(
    `| ${r.label}${r.imp.length ? ` (import ${Math.min(...r.imp.map((x) => x / 1000)).toFixed(1)}–${Math.max(...r.imp.map((x) => x / 1000)).toFixed(1)} ms)` : ''} | ${range(r.first)} | ${range(r.second)} | ${range(r.rest)} · ${med(r.rest).toFixed(0)} |${loop > 0 ? ` ${range(r.loop)} |` : ''}`,
  );
}
