#!/usr/bin/env node
// Probe: `verifyCheckpoint` (intact) and `repairCheckpoint` (11 single-byte flips spread over the file) of
// one checkpoint, this build against another, alternating in one process (the order flips every round),
// so the two are compared in the same minutes on this shared machine.
//   node benches/probes/checkpoint-repair-ab.mjs --base OTHER/dist/index.js [--gib 2] [--rounds 4] [--dir DIR]
// The checkpoint (`--gib` GiB of F32 in 64 MiB tensors, `medium` parity) is written once by this build
// into DIR (default target/bench-data) and left there for the next run.
import { closeSync, existsSync, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { arg, loadBuild, root } from '../lib/cli.mjs';

const gib = Number(arg('gib', 2));
const rounds = Number(arg('rounds', 4));
const dir = arg('dir', join(root, 'target', 'bench-data', `repair-ab-${gib}g`));
const base = arg('base', undefined);
const builds = [['this', loadBuild()]];
if (base) builds.push(['base', loadBuild(base)]);
const path = join(dir, 'model.safetensors');
const [, tv] = builds[0];
if (!existsSync(path)) {
  mkdirSync(dir, { recursive: true });
  const tensors = {};
  const per = 64 << 20;
  for (let i = 0; i < gib * 16; i++) {
    const a = new Float32Array(per / 4);
    for (let j = 0; j < a.length; j += 1024) a[j] = i + j;
    tensors[`t${i}`] = { dtype: 'F32', shape: [a.length], data: a };
  }
  await tv.saveCheckpoint(path, tensors, { ecc: 'medium' });
}
const size = gib * 2 ** 30;
/** Flip one bit of 11 bytes spread over the tensor data (a repair puts them back). */
function flip() {
  const fd = openSync(path, 'r+');
  const b = Buffer.alloc(1);
  for (let i = 0; i < 11; i++) {
    const at = 4096 + Math.floor(((i + 0.5) / 11) * (size - 8192));
    readSync(fd, b, 0, 1, at);
    b[0] ^= 1;
    writeSync(fd, b, 0, 1, at);
  }
  closeSync(fd);
}
const ms = (t0) => (performance.now() - t0).toFixed(0);
for (let r = 0; r < rounds; r++) {
  const order = r % 2 ? [...builds].reverse() : builds;
  for (const [name, build] of order) {
    let t0 = performance.now();
    const v = await build.verifyCheckpoint(path);
    const verifyMs = ms(t0);
    flip();
    t0 = performance.now();
    const x = await build.repairCheckpoint(path);
    console.log(
      `round ${r} ${name}: verify ${v.status} ${verifyMs} ms, repair ${x.status} (${x.repairedChunks.length} chunks) ${ms(t0)} ms`,
    );
  }
}
