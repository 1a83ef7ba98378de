#!/usr/bin/env node
// Probe (seventeenth session): writes into a folder that holds many files (a dataset's shards, a job
// writing one file per sample). Every atomic write used to list its whole folder for dead writers'
// temporaries, so writing N files into one folder cost O(N²). Times protect (4 KiB file), saveSafetensors
// and saveCheckpoint (16 floats) in an empty folder and in one of --files entries. With --loads K, it also
// saves K checkpoints in each, leaves the folders quiet for 2.1 s (as a finished job does) and loads each
// once (the first load of a set looked for temporaries by listing the folder).
//   node benches/probes/big-folder.mjs [--files 50000] [--dir /tmp/tv-big-folder] [--n 50] [--loads 60]
//        [--dist OTHER/dist/index.js]
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { arg, loadBuild } from '../lib/cli.mjs';

const tv = loadBuild(arg('dist', undefined));
const root = arg('dir', '/tmp/tv-big-folder');
const files = Number(arg('files', 50000));
const N = Number(arg('n', 50));
const loads = Number(arg('loads', 0));
const small = join(root, 'small');
const big = join(root, 'big');
mkdirSync(small, { recursive: true });
mkdirSync(big, { recursive: true });
for (let i = 0; i < files; i++) writeFileSync(join(big, `shard-${i}.bin`), '');
for (const dir of [small, big]) {
  const p = join(dir, 'p.bin');
  writeFileSync(p, Buffer.alloc(4096, 1));
  const time = async (n, op) => {
    for (let i = 0; i < 3; i++) await op(i);
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await op(i);
    return ((performance.now() - t0) / n).toFixed(2);
  };
  const a = await time(N, () => tv.protect(p));
  const b = await time(N, (i) =>
    tv.saveSafetensors(join(dir, `s${i}.safetensors`), { w: new Float32Array(16) }),
  );
  const c = await time(Math.ceil(N / 2), () =>
    tv.saveCheckpoint(join(dir, 'c.safetensors'), { w: new Float32Array(16) }),
  );
  console.log(
    `${dir === big ? `${files} entries` : 'empty folder'}: protect ${a} ms, saveSafetensors ${b} ms, saveCheckpoint ${c} ms`,
  );
}
if (loads > 0) {
  for (const dir of [small, big])
    for (let i = 0; i < loads; i++)
      await tv.saveCheckpoint(join(dir, `ck${i}.safetensors`), { w: new Float32Array(16).fill(i) });
  await new Promise((r) => setTimeout(r, 2100));
  for (const dir of [small, big]) {
    const t0 = performance.now();
    for (let i = 0; i < loads; i++) {
      const k = await tv.loadCheckpoint(join(dir, `ck${i}.safetensors`));
      await k.tensor('w');
      k.close();
    }
    const ms = ((performance.now() - t0) / loads).toFixed(2);
    console.log(
      `${dir === big ? `${files} entries` : 'empty folder'}: loadCheckpoint of ${loads} sets, each once: ${ms} ms per load`,
    );
  }
}
rmSync(root, { recursive: true, force: true });
