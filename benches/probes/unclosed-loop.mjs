#!/usr/bin/env node
// Probe (qa22 #3): a loop whose `await`s all resolve at once and that drops what it opens without
// `close()` (a long-running service relying on "closed by the garbage collector"), and what the fix's
// report to the collector costs a loop that does close. Two parts, in one process each:
//   unclosed: N lazy loads + first view, then N openSafetensors + view, none closed; the peak number of
//             open descriptors (sampled every 100), or the iteration that failed (EMFILE).
//   closed:   N loads + view + close, then N opens + view + close; µs per iteration and the number of
//             collections by kind (major = mark-compact), the baseline being another build's dist
//             (TVDIST) in the same minutes.
//   bash -c 'ulimit -n 1024; node benches/probes/unclosed-loop.mjs unclosed [--n 3000]'
//   node benches/probes/unclosed-loop.mjs closed [--n 5000]
// TVDIST: another build's dist/index.js (default this checkout's).
import { readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver, performance } from 'node:perf_hooks';

const require = createRequire(import.meta.url);
const tv = require(process.env.TVDIST ?? join(import.meta.dirname, '..', '..', 'dist', 'index.js'));
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : process.argv[i + 1];
};
const mode = process.argv[2] ?? 'unclosed';
const n = Number(arg('n', mode === 'closed' ? 5000 : 3000));
const dir = join(tmpdir(), `tv-unclosed-${process.pid}`);
const ckpt = join(dir, 'ck.safetensors');
const plain = join(dir, 'st.safetensors');
const tensors = {
  'a.weight': { dtype: 'F32', shape: [256, 256], data: new Float32Array(65536).map((_, i) => i) },
  'a.bias': new Float32Array(256).fill(1),
};
await tv.saveCheckpoint(ckpt, tensors, { ecc: 'medium' });
await tv.saveSafetensors(plain, tensors);
const fds = () => readdirSync('/proc/self/fd').length;
const label = process.env.TVDIST ?? 'this build';

if (mode === 'unclosed') {
  let peak = 0;
  for (const [what, once] of [
    ['loadCheckpoint', async () => (await tv.loadCheckpoint(ckpt)).tensor('a.bias')],
    ['openSafetensors', async () => (await tv.openSafetensors(plain)).tensor('a.bias')],
  ]) {
    for (let i = 1; i <= n; i++) {
      try {
        await once();
      } catch (e) {
        console.log(`${label}: ${what} #${i} failed: ${e.code} ${e.message}`);
        process.exitCode = 1;
        break;
      }
      if (i % 100 === 0) peak = Math.max(peak, fds());
    }
    if (process.exitCode === 1) break;
    console.log(`${label}: ${n} unclosed ${what}: peak descriptors ${peak}`);
  }
} else {
  const kinds = {};
  new PerformanceObserver((l) => {
    for (const e of l.getEntries()) kinds[e.detail.kind] = (kinds[e.detail.kind] ?? 0) + 1;
  }).observe({ entryTypes: ['gc'] });
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const c = await tv.loadCheckpoint(ckpt);
    await c.tensor('a.bias');
    c.close();
  }
  const t1 = performance.now();
  for (let i = 0; i < n; i++) {
    const f = await tv.openSafetensors(plain);
    f.tensor('a.bias');
    f.close();
  }
  const t2 = performance.now();
  await new Promise((r) => setTimeout(r, 100));
  const { constants } = await import('node:perf_hooks');
  console.log(
    `${label}: closed load + view ${(((t1 - t0) / n) * 1000).toFixed(0)} µs, open + view ${(((t2 - t1) / n) * 1000).toFixed(0)} µs; collections: major ${kinds[constants.NODE_PERFORMANCE_GC_MAJOR] ?? 0}, minor ${kinds[constants.NODE_PERFORMANCE_GC_MINOR] ?? 0}, incremental ${kinds[constants.NODE_PERFORMANCE_GC_INCREMENTAL] ?? 0}`,
  );
}
try {
  rmSync(dir, { recursive: true, force: true });
} catch {
  console.log(`left ${dir} (no descriptor left to remove it)`);
}
