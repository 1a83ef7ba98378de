#!/usr/bin/env node
// Probe (issue 14): a loop of opens for CPU accounting from outside (`/usr/bin/time`, user + sys), which
// wanders less than wall time on a shared machine. N iterations of `loadCheckpoint` + first verified
// `tensor()` + `close()` (verified), or `openSafetensors` + `tensor()` + `close()` (plain), of the first
// tensor; nothing is printed. Compare builds by alternating fresh processes.
//   /usr/bin/time node benches/probes/open-cpu.mjs CHECKPOINT verified|plain [N] [--dist OTHER/dist/index.js]
import { arg, loadBuild } from '../lib/cli.mjs';

const [path, mode, n] = process.argv.slice(2);
if (path === undefined || (mode !== 'verified' && mode !== 'plain'))
  throw new Error('usage: open-cpu.mjs CHECKPOINT verified|plain [N] [--dist OTHER/dist/index.js]');
const tv = loadBuild(arg('dist', undefined));
const name = (await tv.openSafetensors(path)).names[0];
const N = Number(n ?? 3000);
if (mode === 'plain') {
  for (let i = 0; i < N; i++) {
    const f = await tv.openSafetensors(path);
    f.tensor(name);
    f.close();
  }
} else {
  for (let i = 0; i < N; i++) {
    const c = await tv.loadCheckpoint(path);
    await c.tensor(name);
    c.close();
  }
}
