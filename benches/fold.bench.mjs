#!/usr/bin/env node
// .fold benchmarks against a named baseline, in one script so that ratios are fair on a shared machine.
//   node benches/fold.bench.mjs [--gib 1] [--tensors 64] [--iterations 5] [--ecc-mib 256] [--json out.json]
// Cases (a generated state dict of --gib GiB in --tensors F32 tensors, mildly compressible values):
//   open+read  openFold + stateDict() + touch every page of every tensor (warm page cache), for a .fold
//              stored as is (verify lazy: CRC-32C + SHA-256 of the chunk on first read; verify none) and
//              a zstd .fold (level 3), vs openSafetensors + every tensor view + the same touch, on a
//              safetensors file holding exactly the same bytes (the STEN payload).
//   verify     verifyFold on a --ecc-mib MiB chunk with no ECC, rs(16), rs(32), rs(64): CRC-32C +
//              digest + the parity consistency check (rs(N) re-encode), MB/s of stored bytes.
//   write      writeFold of the same state dict, stored as is and zstd (fsync + rename), for the
//              trade-off table: size and throughput per compression and ECC level.
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const tv = require('../dist/index.js');
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : process.argv[i + 1];
};
const gib = Number(arg('gib', 1));
const count = Number(arg('tensors', 64));
const iterations = Number(arg('iterations', 5));
const eccMib = Number(arg('ecc-mib', 256));
const root = join(import.meta.dirname, '..');
const dir = join(root, 'target', 'bench-data', 'fold');
mkdirSync(dir, { recursive: true });

const per = Math.floor((gib * 1024 ** 3) / count / 4) * 4;
function stateDict(bytesPer, n) {
  const sd = {};
  for (let t = 0; t < n; t++) {
    const a = new Float32Array(bytesPer / 4);
    // Smooth values with a little noise: zstd finds some redundancy (as in real weights, it is not much).
    let s = (t + 1) * 2654435761;
    for (let i = 0; i < a.length; i++) {
      s = (s * 1103515245 + 12345) >>> 0;
      a[i] = Math.sin(i / 512) * 0.05 + ((s >>> 16) & 0xff) / 65536;
    }
    sd[`layer.${t}.weight`] = { dtype: 'F32', shape: [a.length], data: a };
  }
  return sd;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
async function time(fn, n = iterations) {
  await fn(); // warm-up (page cache, mappings of the code)
  const xs = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    xs.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return median(xs);
}
let sink = 0;
function touch(tensors) {
  for (const t of tensors) {
    const b = t.bytes;
    for (let i = 0; i < b.length; i += 4096) sink ^= b[i];
  }
}
const mbps = (bytes, ms) => (bytes / 1e6 / (ms / 1e3)).toFixed(0);

const sd = stateDict(per, count);
const sten = tv.encodeStateDict(sd);
const total = sten.length;
const stPath = join(dir, 'same.safetensors');
writeFileSync(stPath, sten);
const results = {
  machine: {
    cpus: cpus().length,
    model: cpus()[0]?.model,
    mem: totalmem(),
    node: process.version,
    kernel: release(),
  },
  bytes: total,
  cases: {},
};
console.log(
  `state dict: ${count} F32 tensors, ${(total / 1024 ** 3).toFixed(3)} GiB; ${iterations} timed runs each, medians`,
);

// write (also produces the files read below); baseline: the same bytes with fs.writeSync + fsync
const write = {};
{
  const p = join(dir, 'baseline.bin');
  const ms = await time(() => {
    const fd = openSync(p, 'w');
    writeSync(fd, sten);
    fsyncSync(fd);
    closeSync(fd);
  }, 2);
  write['fs.writeSync + fsync (baseline)'] = { ms, size: total, path: p };
  console.log(
    `write ${'fs + fsync'.padEnd(14)} ${ms.toFixed(0).padStart(7)} ms  ${mbps(total, ms).padStart(6)} MB/s  (baseline)`,
  );
}
for (const [label, opts] of [
  ['stored as is', { compress: 'none' }],
  ['zstd 3', { compress: 'zstd' }],
]) {
  const p = join(dir, `sd-${label.replace(/\W+/g, '')}.fold`);
  const ms = await time(() => tv.writeFold(p, [{ name: 'torch_state', data: sten, ctype: 'STEN' }], opts), 2);
  write[label] = { ms, size: statSync(p).size, path: p };
  console.log(
    `write ${label.padEnd(14)} ${ms.toFixed(0).padStart(7)} ms  ${mbps(total, ms).padStart(6)} MB/s  file ${(statSync(p).size / total).toFixed(3)}× the payload`,
  );
}
results.cases.write = write;

// open + read the state dict
const readCases = {
  'openSafetensors (baseline)': async () => {
    const f = await tv.openSafetensors(stPath);
    touch(f.infos().map((t) => f.tensor(t.name)));
    f.close();
  },
  'openFold as is, verify lazy': async () => {
    const f = await tv.openFold(write['stored as is'].path);
    touch((await f.stateDict()).tensors());
    f.close();
  },
  'openFold as is, verify none': async () => {
    const f = await tv.openFold(write['stored as is'].path, { verify: 'none' });
    touch((await f.stateDict()).tensors());
    f.close();
  },
  'openFold zstd, verify lazy': async () => {
    const f = await tv.openFold(write['zstd 3'].path);
    touch((await f.stateDict()).tensors());
    f.close();
  },
};
const read = {};
for (const [label, fn] of Object.entries(readCases)) read[label] = await time(fn);
const base = read['openSafetensors (baseline)'];
for (const [label, ms] of Object.entries(read)) {
  console.log(
    `read  ${label.padEnd(30)} ${ms.toFixed(1).padStart(8)} ms  ${mbps(total, ms).padStart(6)} MB/s  ${(ms / base).toFixed(2)}× baseline time`,
  );
}
results.cases.read = read;

// verify throughput per ECC level
const small = tv.encodeStateDict(stateDict(Math.floor((eccMib * 1024 ** 2) / 16 / 4) * 4, 16));
const verify = {};
for (const ecc of ['none', 'rs(16)', 'rs(32)', 'rs(64)']) {
  const p = join(dir, `ecc-${ecc.replace(/\W+/g, '')}.fold`);
  const wms = await time(
    () => tv.writeFold(p, [{ name: 'torch_state', data: small, ctype: 'STEN' }], { compress: 'none', ecc }),
    1,
  );
  const vms = await time(() => tv.verifyFold(p), 3);
  const size = statSync(p).size;
  verify[ecc] = { writeMs: wms, verifyMs: vms, overhead: size / small.length - 1 };
  console.log(
    `ecc   ${ecc.padEnd(7)} size +${((size / small.length - 1) * 100).toFixed(1).padStart(5)} %  write ${mbps(small.length, wms).padStart(5)} MB/s  verify ${mbps(small.length, vms).padStart(5)} MB/s`,
  );
  rmSync(p);
}
results.cases.verify = verify;
results.sink = sink;
const out = arg('json', undefined);
if (out) writeFileSync(out, JSON.stringify(results, null, 2));
for (const w of Object.values(write)) rmSync(w.path);
rmSync(stPath);
