#!/usr/bin/env node
// Probe (issue 18): repair of one unaligned burst the length of a chunk (it damages two neighbouring
// chunks) in a v2 `medium` sidecar: with consecutive local groups (sidecars written before 2026-12-03) the
// two share a group and go through the global decode, which reads the whole file; with interleaved groups
// each is rebuilt from its own group. Set TVDIST to another build's dist/index.js to compare in one run.
//   node benches/probes/burst-repair.mjs [--gib 1] [--rounds 3] [--dir target/bench-data]
import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const root = join(import.meta.dirname, '..', '..');
const tv = require(process.env.TVDIST ?? join(root, 'dist', 'index.js'));
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : process.argv[i + 1];
};
const bytes = Math.round(Number(arg('gib', 1)) * 1024 ** 3);
const rounds = Number(arg('rounds', 3));
const file = join(arg('dir', join(root, 'target', 'bench-data')), `burst-repair-${process.pid}.bin`);
const block = Buffer.alloc(64 << 20);
for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i);
let fd = openSync(file, 'w');
for (let done = 0; done < bytes; done += block.length) {
  block.writeUInt32LE(done >>> 0, 0);
  writeSync(fd, block, 0, Math.min(block.length, bytes - done));
}
closeSync(fd);
const { layout } = await tv.protect(file);
const cs = layout.chunkSize;
const out = [];
for (let r = 0; r < rounds; r++) {
  // One chunk's length of garbage starting in the middle of chunk 100 + r: chunks 100 + r and 101 + r.
  const at = (100 + r) * cs + cs / 2;
  fd = openSync(file, 'r+');
  writeSync(fd, Buffer.alloc(cs, 0x5a), 0, cs, at);
  closeSync(fd);
  const t0 = performance.now();
  const v = await tv.verify(file);
  const t1 = performance.now();
  const rep = await tv.repair(file);
  const t2 = performance.now();
  out.push(
    `chunks ${v.damagedChunks.join('+')}: verify ${(t1 - t0).toFixed(0)} ms, repair ${(t2 - t1).toFixed(0)} ms (${rep.after.status})`,
  );
}
rmSync(file, { force: true });
rmSync(`${file}.tvecc`, { force: true });
console.log(
  `${process.env.TVDIST ?? 'this build'}: ${layout.k}+${layout.m} × ${cs / 1024} KiB, ${layout.localGroups} groups${layout.interleavedGroups ? ' (interleaved)' : ''}; ${out.join('; ')}`,
);
