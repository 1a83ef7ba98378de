#!/usr/bin/env node
// Issue 18, repair in time proportional to the damage. One run, page-cached files, the libuv pool; medians
// of --rounds. For each format (default: the default `medium` sidecar, format v2 with local parity: one
// wide GF(2^16) code, 1024 + 128 chunks, plus 16 XOR groups; and a `--format v1` row: 16 + 2 stripes of
// 1 MiB chunks), baselines in the same run: `verify` of the same intact file, and the copy repair
// (`mode: 'copy'`: a full copy of the file, then a full re-verify).
//   1. 2 GiB file: verify (intact); repair of one damaged chunk in place and by copy.
//   2. 2 GiB file, about 57 MiB of scattered damage (v1: 57 chunks, one per stripe; v2: 57 MiB in chunks at
//      a stride, which spreads over the groups): in place vs copy.
//   3. 4 GiB file, one damaged chunk already known from a verify report: repair({ chunks }) (target < 0.5 s),
//      beside a full verify of that file.
// verify and the one-chunk in-place repair alternate for --pair-rounds (the ratio's median is over pairs).
//   node benches/ecc-repair.bench.mjs [--gib 2] [--big-gib 4] [--rounds 3] [--pair-rounds 7] [--formats v2,v1]
import { closeSync, openSync, readSync, rmSync, statSync, utimesSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { loadavg } from 'node:os';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const root = join(import.meta.dirname, '..');
const tv = require(join(root, 'dist', 'index.js'));
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : process.argv[i + 1];
};
const gib = Number(arg('gib', 2));
const bigGib = Number(arg('big-gib', 4));
const rounds = Number(arg('rounds', 3));
const pairRounds = Number(arg('pair-rounds', 7));
const formats = String(arg('formats', 'v2,v1')).split(',');
const MiB = 1 << 20;

function makeFile(path, bytes) {
  const block = Buffer.alloc(64 << 20);
  for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i);
  const fd = openSync(path, 'w');
  for (let done = 0; done < bytes; ) {
    const n = Math.min(block.length, bytes - done);
    block.writeUInt32LE(done >>> 0, 0);
    writeSync(fd, block, 0, n);
    done += n;
  }
  closeSync(fd);
}

/** Flip one byte in each of `chunks` (of `cs` bytes), keeping the modification time (media damage). */
function damage(path, chunks, cs) {
  const st = statSync(path);
  const fd = openSync(path, 'r+');
  const b = Buffer.alloc(1);
  for (const c of chunks) {
    const at = c * cs + 4097;
    readSync(fd, b, 0, 1, at);
    b[0] ^= 0x5a;
    writeSync(fd, b, 0, 1, at);
  }
  closeSync(fd);
  utimesSync(path, st.atime, st.mtime);
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const s = (ms) => `${(ms / 1000).toFixed(3)} s`;
async function time(fn) {
  const t0 = performance.now();
  const r = await fn();
  return { ms: performance.now() - t0, r };
}

async function repairRounds(path, chunks, cs, options, n = rounds) {
  const ms = [];
  for (let i = 0; i < n; i++) {
    damage(path, chunks, cs);
    const { ms: t, r } = await time(() => tv.repair(path, options));
    if (r.after.status !== 'intact' || r.repairedChunks.length !== chunks.length)
      throw new Error(`repair did not do what was asked: ${JSON.stringify(r.repairedChunks)}`);
    ms.push(t);
  }
  return median(ms);
}

const describe = (l) =>
  l.formatVersion === 2
    ? `v2: ${l.k}+${l.m} × ${l.chunkSize / MiB} MiB, local groups ${l.localGroups} × ${l.localGroup} chunks`
    : `v1: ${l.k}+${l.m} per stripe × ${l.chunkSize / MiB} MiB, ${l.stripes} stripes`;

console.log(tv.describeCpu());
console.log(
  `load ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}; rounds ${rounds}, verify / one-chunk repair pairs ${pairRounds} (medians)`,
);
const dir = join(root, 'target', 'bench-data');
const opts = (format) => (format === 'v1' ? { level: 'medium', format: 'v1' } : { level: 'medium' });
for (const format of formats) {
  const file = join(dir, `ecc-repair-${gib}g.bin`);
  makeFile(file, gib * 1024 ** 3);
  await tv.protect(file, opts(format));
  const layout = (await tv.verify(file)).layout;
  const cs = layout.chunkSize;
  console.log(
    `\n${gib} GiB file, medium ${format === 'v1' ? '--format v1' : '(default)'}: ${describe(layout)}`,
  );

  // verify and the one-chunk in-place repair alternate, so that the machine's load drifts into both alike.
  const verifyMs = [];
  const inPlace1Ms = [];
  const one = [Math.floor(layout.chunks / 2)];
  for (let i = 0; i < pairRounds; i++) {
    verifyMs.push((await time(() => tv.verify(file))).ms);
    inPlace1Ms.push(await repairRounds(file, one, cs, {}, 1));
  }
  const v = median(verifyMs);
  const inPlace1 = median(inPlace1Ms);
  const pairs = inPlace1Ms.map((r, i) => r / (verifyMs[i] ?? r));
  console.log(`verify (intact)                          ${s(v)}   1.00× (baseline)`);
  console.log(
    `repair 1 damaged chunk, in place         ${s(inPlace1)}   ${(inPlace1 / v).toFixed(2)}× verify`,
  );
  console.log(
    `  per pair (repair / verify): ${pairs.map((x) => x.toFixed(2)).join(' ')}; median ${median(pairs).toFixed(2)}×`,
  );
  const copy1 = await repairRounds(file, one, cs, { mode: 'copy' });
  console.log(`repair 1 damaged chunk, copy             ${s(copy1)}   ${(copy1 / v).toFixed(2)}× verify`);

  // ~57 MiB scattered: v1 one chunk per stripe (37 is coprime to the stripe count); v2 at a stride of 37.
  const count = Math.ceil((57 * MiB) / cs);
  const many = [...new Set(Array.from({ length: count }, (_, i) => (i * 37) % layout.chunks))].sort(
    (a, b) => a - b,
  );
  if (format === 'v1' && new Set(many.map((c) => c % layout.stripes)).size !== count)
    throw new Error('57 chunks must hit 57 stripes');
  const inPlace57 = await repairRounds(file, many, cs, {});
  const copy57 = await repairRounds(file, many, cs, { mode: 'copy' });
  console.log(
    `repair ${many.length} chunks (${(many.length * cs) / MiB} MiB), in place  ${s(inPlace57)}   ${(inPlace57 / v).toFixed(2)}× verify`,
  );
  console.log(
    `repair ${many.length} chunks, copy                ${s(copy57)}   ${(copy57 / v).toFixed(2)}× verify; in place is ${(copy57 / inPlace57).toFixed(1)}× faster`,
  );
  rmSync(file, { force: true });
  rmSync(`${file}.tvecc`, { force: true });

  const big = join(dir, `ecc-repair-${bigGib}g.bin`);
  makeFile(big, bigGib * 1024 ** 3);
  await tv.protect(big, opts(format));
  const bl = (await tv.verify(big)).layout;
  const bigVerify = median(await Promise.all([0].map(async () => (await time(() => tv.verify(big))).ms)));
  const c = [Math.floor(bl.chunks / 3)];
  const known = [];
  for (let i = 0; i < rounds; i++) {
    damage(big, c, bl.chunkSize);
    const report = await tv.verify(big); // not timed: the report the caller already has
    const { ms, r } = await time(() => tv.repair(big, { chunks: report.damagedChunks }));
    if (r.after.status !== 'intact' || r.checkedBefore !== 'listed')
      throw new Error('known-chunk repair failed');
    known.push(ms);
  }
  console.log(
    `\n${bigGib} GiB file, medium ${format === 'v1' ? '--format v1' : '(default)'}: ${describe(bl)}`,
  );
  console.log(`verify (intact)                          ${s(bigVerify)}`);
  console.log(
    `repair 1 known damaged chunk (chunks: [...]) ${s(median(known))}   ${(median(known) / bigVerify).toFixed(3)}× verify (target < 0.5 s)`,
  );
  rmSync(big, { force: true });
  rmSync(`${big}.tvecc`, { force: true });
}
