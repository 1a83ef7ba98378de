#!/usr/bin/env node
// Erasure codec against its baselines, in one run on one machine: tensorvault's codec (native, one
// thread), Intel ISA-L (C harness benches/isal/ec_bench.c, when `libisal-dev` is installed) and
// `@ronomon/reed-solomon` (when installed: `npm install --no-save @ronomon/reed-solomon`).
// 10 data + 4 parity shards of 1 MiB by default; figures are GB/s of data, medians of three rounds.
// Also the public `ErasureCodec` API (what a caller gets: argument conversion, output allocation)
// against the native kernel loop. The first line names the kernels in use and the CPU features; run
// with TV_CPU=avx2 to measure what an AVX2-only CPU gets (the ISA-L AVX2 rows are run either way).
//   node benches/erasure.bench.mjs [k=10] [m=4] [shardSize=1048576]
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const k = Number(process.argv[2] ?? 10);
const m = Number(process.argv[3] ?? 4);
const size = Number(process.argv[4] ?? 1 << 20);
const roundMs = 400;
const gb = (x) => (x === undefined ? '   -  ' : (x / 1e9).toFixed(2).padStart(6));

const rows = [];

// tensorvault (the ecc/erasure module of the built package).
const { benchmarkErasure, ErasureCodec } = require(join(root, 'dist', 'ecc', 'erasure.js'));
const { describeCpu } = require(join(root, 'dist', 'ecc', 'cpu.js'));
console.log(
  `${describeCpu()}\nload ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}, ${new Date().toISOString()}\n`,
);
const tvr = await benchmarkErasure(k, m, size, 1, roundMs);
rows.push({ name: `tensorvault (${tvr.kernel})`, ...tvr });

// The public ErasureCodec API on the same shapes (synchronous, on the calling thread below 32 MiB).
const syncRate = (fn) => {
  fn();
  const rates = [];
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    let calls = 0;
    while (calls === 0 || performance.now() - t0 < roundMs) {
      fn();
      calls++;
    }
    rates.push((k * size * calls) / ((performance.now() - t0) / 1000));
  }
  return rates.sort((a, b) => a - b)[1];
};
const apiCodec = new ErasureCodec(k, m);
const apiData = Array.from({ length: k }, (_, i) => Buffer.alloc(size, i + 1));
const apiAll = [...apiData, ...apiCodec.encode(apiData)];
const lose = (n) => apiAll.map((s, i) => (i < n ? null : s));
const apiRow = {
  name: `tensorvault ErasureCodec API (${apiCodec.kernel})`,
  encode: syncRate(() => apiCodec.encode(apiData)),
  reconstructOne: syncRate(() => apiCodec.reconstruct(lose(1))),
  reconstructAll: syncRate(() => apiCodec.reconstruct(lose(m))),
};
rows.push(apiRow);
// The same through the no-allocation methods (caller buffers, rebuilt in place).
const apiParity = Array.from({ length: m }, () => Buffer.alloc(size));
const inPlace = apiAll.map((s) => Buffer.from(s));
const presentAfter = (n) => inPlace.map((_, i) => i >= n);
const intoRow = {
  name: `tensorvault encodeInto/reconstructInto`,
  encode: syncRate(() => apiCodec.encodeInto(apiData, apiParity)),
  reconstructOne: syncRate(() => apiCodec.reconstructInto(inPlace, presentAfter(1))),
  reconstructAll: syncRate(() => apiCodec.reconstructInto(inPlace, presentAfter(m))),
};
rows.push(intoRow);

// ISA-L through the C harness: its runtime dispatch (its best kernel here), then its AVX2 entry point.
let isal;
try {
  const dir = mkdtempSync(join(tmpdir(), 'tv-isal-'));
  isal = join(dir, 'ec_bench');
  execFileSync('cc', ['-O2', '-o', isal, join(root, 'benches', 'isal', 'ec_bench.c'), '-lisal'], {
    stdio: 'pipe',
  });
  const out = JSON.parse(
    execFileSync(isal, [String(k), String(m), String(size), String(roundMs / 1000)]).toString(),
  );
  rows.push({ name: 'ISA-L 2.30 (libisal-dev)', ...out });
} catch (err) {
  isal = undefined;
  rows.push({ name: `ISA-L: not available (${String(err.message).split('\n')[0]})` });
}

// Same instruction set on both sides: what CPUs without AVX-512/GFNI get (most AMD Zen 2/3, older Intel).
const avx2Rows = [];
if (tvr.kernel !== 'portable') {
  try {
    const a = tvr.kernel === 'avx2' ? tvr : await benchmarkErasure(k, m, size, 1, roundMs, 'avx2');
    avx2Rows.push({ name: 'tensorvault (avx2)', ...a });
    if (isal !== undefined) {
      const out = JSON.parse(
        execFileSync(isal, [String(k), String(m), String(size), String(roundMs / 1000), 'avx2']).toString(),
      );
      avx2Rows.push({ name: 'ISA-L 2.30 (ec_encode_data_avx2)', ...out });
    }
  } catch (err) {
    avx2Rows.push({ name: `avx2: not available (${String(err.message).split('\n')[0]})` });
  }
}

// @ronomon/reed-solomon (encode only: its API rebuilds parity and data through the same call).
try {
  const RS = require('@ronomon/reed-solomon');
  const ctx = RS.create(k, m);
  const buffer = Buffer.alloc(size * k, 7);
  const parity = Buffer.alloc(size * m);
  let sources = 0;
  for (let i = 0; i < k; i++) sources |= 1 << i;
  let targets = 0;
  for (let i = k; i < k + m; i++) targets |= 1 << i;
  const once = () =>
    new Promise((res, rej) =>
      RS.encode(ctx, sources, targets, buffer, 0, buffer.length, parity, 0, parity.length, (e) =>
        e ? rej(e) : res(),
      ),
    );
  const rate = async (fn) => {
    await fn();
    const rates = [];
    for (let r = 0; r < 3; r++) {
      const t0 = performance.now();
      let calls = 0;
      while (calls === 0 || performance.now() - t0 < roundMs) {
        await fn();
        calls++;
      }
      rates.push((k * size * calls) / ((performance.now() - t0) / 1000));
    }
    return rates.sort((a, b) => a - b)[1];
  };
  const encode = await rate(once);
  // Reconstruct: mark the first 1 (or m) data shards as targets, sources = the rest.
  const rebuild = (lost) => {
    let src = 0;
    for (let i = lost; i < k + m; i++) src |= 1 << i;
    let tgt = 0;
    for (let i = 0; i < lost; i++) tgt |= 1 << i;
    return () =>
      new Promise((res, rej) =>
        RS.encode(ctx, src, tgt, buffer, 0, buffer.length, parity, 0, parity.length, (e) =>
          e ? rej(e) : res(),
        ),
      );
  };
  rows.push({
    name: '@ronomon/reed-solomon',
    encode,
    reconstructOne: await rate(rebuild(1)),
    reconstructAll: await rate(rebuild(m)),
  });
} catch (err) {
  rows.push({ name: `@ronomon/reed-solomon: not installed (${String(err.message).split('\n')[0]})` });
}

console.log(`erasure ${k}+${m} × ${size} bytes, one thread, GB/s of data (median of 3)\n`);
console.log(`${'codec'.padEnd(44)} encode  rec 1  rec ${m}`);
for (const r of rows)
  console.log(`${r.name.padEnd(44)} ${gb(r.encode)} ${gb(r.reconstructOne)} ${gb(r.reconstructAll)}`);
const base = (name) => rows.find((r) => r.name.startsWith(name) && r.encode !== undefined);
for (const b of ['ISA-L', '@ronomon']) {
  const r = base(b);
  if (r)
    console.log(
      `ratio tensorvault / ${b}: encode ${(tvr.encode / r.encode).toFixed(2)}×, rec 1 ${(tvr.reconstructOne / r.reconstructOne).toFixed(2)}×, rec ${m} ${(tvr.reconstructAll / r.reconstructAll).toFixed(2)}×`,
    );
}
console.log(
  `ratio encodeInto/reconstructInto / kernel loop: encode ${(intoRow.encode / tvr.encode).toFixed(2)}×, rec 1 ${(intoRow.reconstructOne / tvr.reconstructOne).toFixed(2)}×, rec ${m} ${(intoRow.reconstructAll / tvr.reconstructAll).toFixed(2)}×`,
);
console.log(
  `ratio ErasureCodec API / kernel loop: encode ${(apiRow.encode / tvr.encode).toFixed(2)}×, rec 1 ${(apiRow.reconstructOne / tvr.reconstructOne).toFixed(2)}×, rec ${m} ${(apiRow.reconstructAll / tvr.reconstructAll).toFixed(2)}×`,
);
if (avx2Rows.length > 0) {
  console.log('\nsame instruction set (AVX2) on both sides:');
  for (const r of avx2Rows)
    console.log(`${r.name.padEnd(44)} ${gb(r.encode)} ${gb(r.reconstructOne)} ${gb(r.reconstructAll)}`);
  const [a, b] = avx2Rows;
  if (a?.encode !== undefined && b?.encode !== undefined)
    console.log(
      `ratio tensorvault avx2 / ISA-L avx2: encode ${(a.encode / b.encode).toFixed(2)}×, rec 1 ${(a.reconstructOne / b.reconstructOne).toFixed(2)}×, rec ${m} ${(a.reconstructAll / b.reconstructAll).toFixed(2)}×`,
    );
}
if (existsSync(join(root, 'package.json')) && process.argv.includes('--json'))
  console.log(JSON.stringify([...rows, ...avx2Rows]));
