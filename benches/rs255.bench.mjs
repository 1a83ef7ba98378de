#!/usr/bin/env node
// rs(N) throughput: tensorvault (native, 1 and 2 threads) against two named baselines run in the same
// script: a plain JavaScript table implementation (log/exp tables, LFSR per block: what a pure-JS
// reedsolo port does) and Python `reedsolo` 1.7 (pure Python, from .venv / TV_PYTHON). The baselines are
// run on smaller inputs and scaled (throughput in MiB/s). Reports wall-clock medians and, for the native
// single-thread runs, MiB per CPU-second (the machine is shared; wall figures wander). The machine-speed
// yardstick is node:crypto SHA-256 of the same buffer in the same run (column "x SHA-256", wall over
// wall; SHA-NI when the CPU has it): compare that ratio between machines, not the raw MiB/s.
//
//   node scripts/build.mjs && node benches/rs255.bench.mjs          (TV_RS_BENCH_MIB=256 by default)
//   TV_RS_BENCH_N=32 TV_RS_BENCH_ENCODE_ONLY=1 TV_CPU=avx2 node benches/rs255.bench.mjs
//     (only rs(32) encode and the yardstick; TV_CPU caps the kernel, see src/ecc/cpu.ts)
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os, { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tv = createRequire(import.meta.url)(join(root, 'dist', 'index.js'));
const MIB = 1 << 20;
const size = Number(process.env.TV_RS_BENCH_MIB ?? 256) * MIB;
const reps = Number(process.env.TV_RS_BENCH_REPS ?? 3);
const python = process.env.TV_PYTHON || join(root, '.venv', 'bin', 'python');
const ns = (process.env.TV_RS_BENCH_N ?? '16,32,64').split(',').map(Number);
const encodeOnly = process.env.TV_RS_BENCH_ENCODE_ONLY === '1';

function data(len, seed = 1) {
  const b = Buffer.allocUnsafe(len);
  let s = seed >>> 0;
  for (let i = 0; i < len; i += 4) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    b.writeUInt32LE(s, i);
  }
  return b;
}

// ---- baseline: plain JS tables ------------------------------------------------------------------
const EXP = new Uint8Array(512);
const LOG = new Uint8Array(256);
{
  let x = 1;
  for (let i = 0; i < 255; i++) {
    EXP[i] = x;
    EXP[i + 255] = x;
    LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= 0x11d;
  }
}
const gmul = (a, b) => (a === 0 || b === 0 ? 0 : EXP[LOG[a] + LOG[b]]);
function generator(n) {
  let g = [1];
  for (let i = 0; i < n; i++) {
    const next = new Array(g.length + 1).fill(0);
    for (let j = 0; j < g.length; j++) {
      next[j] ^= g[j];
      next[j + 1] ^= gmul(g[j], EXP[i]);
    }
    g = next;
  }
  return Uint8Array.from(g);
}
function jsEncode(n, input) {
  const k = 255 - n;
  const gen = generator(n);
  const genLog = Int16Array.from(gen, (c) => (c === 0 ? -1 : LOG[c]));
  const blocks = Math.ceil(input.length / k);
  const out = new Uint8Array(blocks * n);
  const r = new Uint8Array(n + 1);
  for (let b = 0; b < blocks; b++) {
    r.fill(0);
    const end = Math.min(input.length, (b + 1) * k);
    for (let i = b * k; i < end; i++) {
      const fb = input[i] ^ r[0];
      r.copyWithin(0, 1);
      r[n] = 0;
      if (fb !== 0) {
        const lf = LOG[fb];
        for (let j = 1; j <= n; j++) if (genLog[j] >= 0) r[j - 1] ^= EXP[lf + genLog[j]];
      }
    }
    out.set(r.subarray(0, n), b * n);
  }
  return out;
}

// ---- helpers ------------------------------------------------------------------------------------
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
async function time(fn) {
  const walls = [];
  const cpu = [];
  for (let i = 0; i < reps; i++) {
    globalThis.gc?.();
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await fn();
    walls.push(Number(process.hrtime.bigint() - t0) / 1e9);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1e6);
  }
  return { wall: median(walls), cpu: median(cpu) };
}
const mibs = (bytes, s) => bytes / MIB / s;

function reedsoloRates(n, len) {
  if (!existsSync(python)) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'tv-rs-bench-'));
  try {
    const script = join(dir, 'b.py');
    writeFileSync(
      script,
      `import time, os, reedsolo\nn=${n}\nd=bytearray(os.urandom(${len}))\nc=reedsolo.RSCodec(n)\n` +
        `t=time.perf_counter(); e=c.encode(d); te=time.perf_counter()-t\n` +
        `t=time.perf_counter(); c.decode(e); td=time.perf_counter()-t\nprint(te, td)\n`,
    );
    const [te, td] = execFileSync(python, [script]).toString().trim().split(' ').map(Number);
    return { encode: mibs(len, te), decode: mibs(len, td) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- run ----------------------------------------------------------------------------------------
console.log(
  `# rs(N) bench: ${size / MIB} MiB, median of ${reps}, ${cpus()[0]?.model ?? '?'} x${cpus().length}`,
);
console.log(
  `# node ${process.version}, ${new Date().toISOString()}, load ${os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}`,
);
console.log(`# ${tv.describeCpu()}`);
const input = data(size);
const rows = [];
const sha = await time(() => createHash('sha256').update(input).digest());
const shaRate = mibs(size, sha.wall);
rows.push({
  codec: '-',
  op: 'yardstick: node:crypto SHA-256 of the same buffer',
  threads: 1,
  'MiB/s (wall)': shaRate.toFixed(0),
  'MiB per CPU-s': mibs(size, sha.cpu).toFixed(0),
  'x SHA-256': '1.00',
});
for (const n of ns) {
  const codec = new tv.RsCodec(n);
  const parity = await codec.encode(input);
  const damaged = Buffer.from(input);
  for (let b = 0; b < codec.blockCount(size); b += 8) {
    for (let j = 0; j < n / 2; j++) {
      const p = b * codec.blockDataLength + j * 3;
      if (p < size) damaged[p] ^= 0xa5;
    }
  }
  // JS baseline (checked against the native bytes)
  const jsLen = Math.min(size, 8 * MIB);
  const jsIn = input.subarray(0, jsLen);
  const js = await time(() => jsEncode(n, jsIn));
  const jsOut = jsEncode(n, jsIn);
  const whole = Math.floor(jsLen / codec.blockDataLength) * n; // the last, partial block differs
  if (!Buffer.from(jsOut.subarray(0, whole)).equals(parity.subarray(0, whole)))
    throw new Error(`JS baseline rs(${n}) differs`);
  const py = encodeOnly ? undefined : reedsoloRates(n, 256 * 1024);
  const jsRate = mibs(jsLen, js.wall);
  for (const threads of [1, 2]) {
    const enc = await time(() => codec.encode(input, { threads }));
    const ops = [['encode', enc, jsRate, py?.encode]];
    if (!encodeOnly) {
      const ver = await time(() => codec.verify(input, parity, { threads }));
      const dec = await time(() => codec.decode(input, parity, { threads }));
      const err = await time(() => codec.decode(damaged, parity, { threads }));
      ops.push(
        ['verify (clean: syndrome check, no copy)', ver, undefined, py?.decode],
        ['decode (clean: check + repaired copy)', dec, undefined, py?.decode],
        ['decode (N/2 errors in every 8th block)', err, undefined, undefined],
      );
    }
    for (const [op, t, base, pyRate] of ops) {
      const rate = mibs(size, t.wall);
      rows.push({
        codec: `rs(${n})`,
        op,
        threads,
        'MiB/s (wall)': rate.toFixed(0),
        'MiB per CPU-s': threads === 1 ? mibs(size, t.cpu).toFixed(0) : '',
        'x SHA-256': threads === 1 ? (rate / shaRate).toFixed(2) : '',
        'x plain JS': base ? (rate / base).toFixed(0) : '',
        'x reedsolo': pyRate ? (rate / pyRate).toFixed(0) : '',
      });
    }
  }
  rows.push({
    codec: `rs(${n})`,
    op: 'baseline: plain JS tables, encode (8 MiB)',
    threads: 1,
    'MiB/s (wall)': jsRate.toFixed(1),
  });
  if (py) {
    rows.push({
      codec: `rs(${n})`,
      op: 'baseline: Python reedsolo encode (256 KiB)',
      threads: 1,
      'MiB/s (wall)': py.encode.toFixed(3),
    });
    rows.push({
      codec: `rs(${n})`,
      op: 'baseline: Python reedsolo decode clean (256 KiB)',
      threads: 1,
      'MiB/s (wall)': py.decode.toFixed(3),
    });
  }
}
console.table(rows);
