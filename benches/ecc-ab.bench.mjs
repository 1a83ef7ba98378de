#!/usr/bin/env node
// Issue 18: same-run A/B of sidecar v2 against v1 (and, with --base, of this build against another one),
// on one page-cached file, alternating the contenders within every round (the order rotates from round to
// round so that no contender always runs first), so that the ratios are taken between neighbours in time
// on this shared machine. Each contender has its own sidecar, protected once up front; `verify` rounds
// verify the intact file against it, `protect` rounds rewrite it.
//   node benches/ecc-ab.bench.mjs [--gib 1] [--rounds 7] [--op verify|protect] [--dir DIR]
//                                 [--fresh] [--cold] [--write-kib 65536] [--base /other/worktree/dist/index.js]
// --fresh rewrites the file before every round (what benches/ecc-par2.bench.mjs measures on: a file just
// written); without it the file is written once. --dir defaults to target/bench-data (/dev/shm: tmpfs).
// --cold drops the file's and the sidecar's pages from the page cache before every timed run (fsync, then
// posix_fadvise DONTNEED through python3, these two files only, not timed): a verify from the disk.
// --write-kib: the size of the writes that fill the file (default 64 MiB, as ecc-par2.bench.mjs). It decides
// the page-cache folios of the file on ext4 (Linux 6.18): 64 MiB writes leave 2 MiB folios, which a mapping
// maps with one PMD entry each, 1 MiB writes (or `cp`) smaller ones mapped page by page; v2 `protect` reads the
// file through a mapping, so it pays for the page faults and TLB misses of the second kind.
// Prints each run's wall time and CPU seconds, then the median time of each contender and the median of the
// per-round ratios (v2 ÷ v1 by throughput, i.e. v1 time ÷ v2 time), with the load average.
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { arg, flag, loadBuild, root } from './lib/cli.mjs';

const gib = Number(arg('gib', 1));
const rounds = Number(arg('rounds', 7));
const op = arg('op', 'verify');
const dir = arg('dir', join(root, 'target', 'bench-data'));
const fresh = flag('fresh');
const cold = flag('cold');
const base = arg('base', undefined);
const writeKib = Number(arg('write-kib', 65536));
const bytes = Math.round(gib * 1024 ** 3);
mkdirSync(dir, { recursive: true });
const file = join(dir, `ecc-ab-${gib}g.bin`);

function fill() {
  // The same bytes as ecc-par2.bench.mjs's file whatever the write size.
  const block = Buffer.alloc(64 << 20);
  for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i);
  const w = Math.min(writeKib << 10, block.length);
  const fd = openSync(file, 'w');
  for (let done = 0; done < bytes; ) {
    const n = Math.min(block.length, bytes - done);
    block.writeUInt32LE(done >>> 0, 0);
    for (let at = 0; at < n; at += w) writeSync(fd, block, at, Math.min(w, n - at));
    done += n;
  }
  closeSync(fd);
}

const builds = [{ tag: '', tv: loadBuild() }];
if (base) builds.push({ tag: 'base ', tv: loadBuild(base) });
const contenders = builds.flatMap(({ tag, tv }) =>
  ['v2', 'v1'].map((format) => ({
    name: `${tag}${format}`,
    format,
    tv,
    sidecar: join(dir, `ecc-ab-${gib}g.${tag.trim() || 'this'}.${format}.tvecc`),
    ms: [],
    cpu: [],
  })),
);
const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const gbs = (ms) => (bytes / 1e9 / (ms / 1000)).toFixed(3);

async function protect(c) {
  rmSync(c.sidecar, { force: true });
  await c.tv.protect(file, { level: 'medium', format: c.format, sidecar: c.sidecar });
}

/** Drop `paths` from the page cache (after an fsync, so that the dirty pages go too). */
function drop(...paths) {
  const py =
    'import os,sys\nfor p in sys.argv[1:]:\n fd=os.open(p,os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED); os.close(fd)';
  const r = spawnSync('python3', ['-c', py, ...paths], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`dropping the page cache failed: ${r.stderr}`);
}

async function once(c) {
  if (cold) drop(file, c.sidecar);
  const u0 = process.cpuUsage();
  const t0 = performance.now();
  if (op === 'protect') await protect(c);
  else {
    const r = await c.tv.verify(file, { sidecar: c.sidecar });
    if (r.status !== 'intact') throw new Error(`${c.name} verify: ${r.status}`);
  }
  const ms = performance.now() - t0;
  const u = process.cpuUsage(u0);
  return { ms, cpu: (u.user + u.system) / 1e6 };
}

fill();
for (const c of contenders) await protect(c);
console.log(
  `${op}, ${gib} GiB in ${dir} written in ${writeKib} KiB writes${fresh ? ' (rewritten every round)' : ''}${cold ? ', cold (dropped from the page cache before each run)' : ''}, ${rounds} rounds, load ${load()}, ${new Date().toISOString()}`,
);
const ratios = builds.map(() => []);
for (let r = 0; r < rounds; r++) {
  if (fresh) fill();
  const order = contenders.map((_, i) => contenders[(i + r) % contenders.length]);
  const line = [];
  for (const c of order) {
    const o = await once(c);
    c.ms.push(o.ms);
    c.cpu.push(o.cpu);
    line.push(`${c.name} ${gbs(o.ms)} GB/s ${o.cpu.toFixed(2)} CPU-s`);
  }
  builds.forEach((_, b) => {
    const [v2, v1] = [contenders[2 * b], contenders[2 * b + 1]];
    ratios[b].push(v1.ms[r] / v2.ms[r]);
  });
  console.log(`round ${r}: ${line.join(' | ')}  (load ${load()})`);
}
for (const c of contenders)
  console.log(
    `${c.name.padEnd(8)} median ${gbs(median(c.ms))} GB/s, ${median(c.cpu).toFixed(2)} CPU-s (best ${gbs(Math.min(...c.ms))})`,
  );
builds.forEach(({ tag }, b) => {
  console.log(
    `${tag}v2 ÷ v1 per round: ${ratios[b].map((x) => x.toFixed(2)).join(' ')}; median ${median(ratios[b]).toFixed(2)}×`,
  );
});
if (base) {
  const [v2, , bv2, bv1] = contenders;
  const r = v2.ms.map((ms, i) => bv1.ms[i] / ms);
  const s = v2.ms.map((ms, i) => bv2.ms[i] / ms);
  console.log(
    `this v2 ÷ base v1 per round: ${r.map((x) => x.toFixed(2)).join(' ')}; median ${median(r).toFixed(2)}×; this v2 ÷ base v2: median ${median(s).toFixed(2)}×`,
  );
}
console.log(`load ${load()}`);
for (const c of contenders) rmSync(c.sidecar, { force: true });
rmSync(file, { force: true });
