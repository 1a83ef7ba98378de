#!/usr/bin/env node
// Probe (issue 14): the verified open's native steps, each in a loop of its own (N iterations × 5 rounds,
// medians): the unverified open (`openSafetensorsSmall`), the sidecar read and checked
// (`checkpointReadSidecar`), the same file opened, read and closed by node:fs (the I/O floor), the
// one-call verified open (`checkpointOpenLazy`: since the sixteenth session with the document, block and
// seal checks) with and without the outboard.
//   node benches/probes/open-steps.mjs CHECKPOINT [--n 5000]
// CHECKPOINT: a tensorvault-layout checkpoint, e.g. `node benches/probes/open-loop.mjs --make /tmp/x.safetensors`.
import { closeSync, openSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { arg, root } from '../lib/cli.mjs';

const path = process.argv[2];
if (path === undefined || path.startsWith('--')) throw new Error('usage: open-steps.mjs CHECKPOINT [--n N]');
const N = Number(arg('n', 5000));
const { native } = createRequire(import.meta.url)(join(root, 'dist', 'native', 'index.js'));
const meta = `${path}.meta.json`;
const tvob = `${path}.tvob`;
const MAX = 1 << 20;
const buf = Buffer.alloc(1 << 16);
const cases = {
  openSafetensorsSmall() {
    native().openSafetensorsSmall(path, MAX).close();
  },
  checkpointReadSidecar() {
    native().checkpointReadSidecar(meta)?.takeText();
  },
  'node:fs open + read + close of the sidecar'() {
    const fd = openSync(meta, 'r');
    readSync(fd, buf, 0, buf.length, 0);
    closeSync(fd);
  },
  'checkpointOpenLazy, no outboard'() {
    const o = native().checkpointOpenLazy(path, meta, `${tvob}.absent`, MAX, false);
    o?.takeFields();
    o?.takeFile()?.close();
  },
  checkpointOpenLazy() {
    const o = native().checkpointOpenLazy(path, meta, tvob, MAX, false);
    o?.takeFields();
    o?.takeFile()?.close();
    o?.takeOutboard()?.close();
  },
};
const res = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
for (let r = 0; r < 5; r++) {
  for (const [k, fn] of Object.entries(cases)) {
    const t0 = performance.now();
    for (let i = 0; i < N; i++) fn();
    res[k].push(((performance.now() - t0) / N) * 1000);
  }
}
for (const [k, v] of Object.entries(res)) {
  v.sort((a, b) => a - b);
  console.log(`${k.padEnd(44)} median ${v[2].toFixed(1)} µs  [${v.map((x) => x.toFixed(1)).join(' ')}]`);
}
