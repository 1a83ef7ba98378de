#!/usr/bin/env node
// Probe (issue 18, item 4): why `ErasureCodec.encode()` (m new output buffers per call) runs at a fraction
// of `encodeInto()` (caller buffers), and whether a cheap change inside the API would close the gap.
// 10 + 4 shards of 1 MiB, one thread, GB/s of data encoded (0.4 s per variant, 3 rounds, in one process):
//   into      encodeInto() into 4 kept buffers (the kernel-speed path)
//   encode    encode(): 4 × Buffer.allocUnsafe(1 MiB)
//   slab      one Buffer.allocUnsafe(4 MiB) per call, sliced into the 4 outputs, then encodeInto()
// The parent runs the rounds once as is and once with glibc's malloc told to keep freed memory
// (MALLOC_MMAP_THRESHOLD_ = 64 MiB, MALLOC_TRIM_THRESHOLD_ = 1 GiB, MALLOC_TOP_PAD_ = 64 MiB).
//   node benches/probes/encode-alloc.mjs
// Results and conclusions: docs/benchmarks-ecc.md ("encode() and fresh memory").
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { loadavg } from 'node:os';
import { join } from 'node:path';

if (process.argv[2] === '--child') {
  const require = createRequire(import.meta.url);
  const tv = require(join(import.meta.dirname, '..', '..', 'dist', 'index.js'));
  const k = 10;
  const m = 4;
  const len = 1 << 20;
  const codec = new tv.ErasureCodec(k, m);
  const data = Array.from({ length: k }, (_, i) => Buffer.alloc(len, i + 1));
  const kept = Array.from({ length: m }, () => Buffer.alloc(len));
  const rate = (fn) => {
    let n = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < 400) {
      fn();
      n++;
    }
    return (n * k * len) / 1e9 / ((performance.now() - t0) / 1000);
  };
  const variants = {
    into: () => codec.encodeInto(data, kept),
    encode: () => codec.encode(data),
    slab: () => {
      const s = Buffer.allocUnsafe(m * len);
      const p = Array.from({ length: m }, (_, j) => s.subarray(j * len, (j + 1) * len));
      codec.encodeInto(data, p);
      return p;
    },
  };
  for (let r = 0; r < 3; r++) {
    const out = Object.entries(variants).map(([name, f]) => `${name} ${rate(f).toFixed(2)}`);
    console.log(`  ${out.join('  ')}`);
  }
} else {
  const keep = {
    MALLOC_MMAP_THRESHOLD_: '67108864',
    MALLOC_TRIM_THRESHOLD_: '1073741824',
    MALLOC_TOP_PAD_: '67108864',
  };
  for (const [label, env] of [
    ['default malloc', {}],
    ['malloc keeping freed memory', keep],
    ['default malloc (again)', {}],
  ]) {
    console.log(`${label} (load ${loadavg()[0].toFixed(2)}), GB/s:`);
    const r = spawnSync(process.execPath, [import.meta.filename, '--child'], {
      env: { ...process.env, ...env },
      encoding: 'utf8',
    });
    process.stdout.write(r.stdout + r.stderr);
  }
}
