#!/usr/bin/env node
// Checkpoint benchmarks against named baselines, in one script so ratios are fair on a shared machine.
//   node --expose-gc benches/checkpoint.bench.mjs [--gib 1] [--tensors 291] [--rounds 3]
//        [--cases hash,save,open,read] (default all) [--phases]
//   --phases prints the timeline of each `medium` parity save (the `saved` event's `phases`).
// Cases (a generated checkpoint of --gib GiB in --tensors tensors of mixed sizes, F32):
//   save   saveCheckpoint (tensorvault layout, hash + `medium` parity; and without parity)
//          vs a plain fs write of the same tensor bytes + fsync (and saveSafetensors alone);
//          interleaved rounds, medians
//   open   loadCheckpoint (verify lazy) + first tensor verified  vs  openSafetensors + first tensor,
//          and Python safe_open + get_tensor (numpy) on the same file when .venv exists
//   read   every tensor through loadCheckpoint (lazy: tensor() one by one, and tensors()) vs the
//          chunk-tree hash of the file (hashFile, all cores) as the anchor: GB/s
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { subscribe } from 'node:diagnostics_channel';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const tv = require('../dist/index.js');
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : process.argv[i + 1];
};
const gib = Number(arg('gib', 1));
const count = Number(arg('tensors', 291));
const rounds = Number(arg('rounds', 3));
const only = new Set(String(arg('cases', 'hash,save,open,read')).split(','));
const root = join(import.meta.dirname, '..');
const python = process.env.TV_PYTHON ?? join(root, '.venv', 'bin', 'python');
const dir = join(root, 'target', 'bench-data', 'checkpoint');
mkdirSync(dir, { recursive: true });
const total = Math.round(gib * 1024 ** 3);

// Mixed sizes like a model: every 10th tensor small (a bias, 4 KiB), the rest share the bytes. Names
// sort in file order, so the first tensor is small ("a.bias.0000").
const smallBytes = 4096;
const nSmall = Math.ceil(count / 10);
const bigBytes = Math.floor((total - nSmall * smallBytes) / (count - nSmall) / 4096) * 4096;
const pattern = randomFillSync(Buffer.alloc(16 * 1024 * 1024));
const tensors = {};
let bytes = 0;
for (let i = 0; i < count; i++) {
  const small = i % 10 === 0;
  const len = small ? smallBytes : bigBytes;
  const data = new Float32Array(len / 4);
  const u8 = new Uint8Array(data.buffer);
  for (let at = 0; at < len; at += pattern.length)
    u8.set(pattern.subarray(0, Math.min(pattern.length, len - at)), at);
  u8[0] = i & 255;
  tensors[`${small ? 'a.bias' : 'b.weight'}.${String(i).padStart(4, '0')}`] = data;
  bytes += len;
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const gc = () => globalThis.gc?.();

console.log(
  `# checkpoint bench: ${(bytes / 1024 ** 3).toFixed(2)} GiB in ${count} tensors; ${cpus().length} cores (${cpus()[0]?.model}); load ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}; node ${process.version}; ${new Date().toISOString()}`,
);

// ---- hash speed per core (what the save and the verified reads are bound by)
if (only.has('hash')) {
  const native = require('../dist/native/index.js').native();
  const buf = pattern.subarray(0, 16 * 1024 * 1024);
  const per = (fn) => {
    const ts = [];
    for (let r = 0; r < 5; r++) {
      const t0 = performance.now();
      for (let i = 0; i < 4; i++) fn();
      ts.push(performance.now() - t0);
    }
    return (4 * buf.length) / median(ts) / 1e6;
  };
  const sha = per(() => tv.sha256(buf));
  const b3 = per(() => {
    for (let at = 0; at < buf.length; at += 1 << 20)
      native.checkpointLeaf(buf.subarray(at, at + (1 << 20)), 'blake3');
  });
  console.log(
    `\n| hash, one core, 16 MiB in memory | GB/s |\n|---|---:|\n| SHA-256 (sha2, SHA-NI) | ${sha.toFixed(2)} |\n| BLAKE3 per 1 MiB chunk (one thread) | ${b3.toFixed(2)} |`,
  );
}

// ---- save
const plainPath = join(dir, 'plain.bin');
function plainWrite() {
  const fd = openSync(plainPath, 'w');
  try {
    for (const t of Object.values(tensors)) {
      const u8 = new Uint8Array(t.buffer, t.byteOffset, t.byteLength);
      for (let at = 0; at < u8.length; ) at += writeSync(fd, u8, at, u8.length - at);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
const ckptPath = join(dir, 'model.safetensors');
const rawPath = join(dir, 'raw.safetensors');
if (only.has('save') || !existsSync(ckptPath)) {
  const cases = {
    'fs write + fsync (baseline)': async () => plainWrite(),
    saveSafetensors: async () => tv.saveSafetensors(rawPath, tensors),
    'saveCheckpoint, no parity': async () => tv.saveCheckpoint(ckptPath, tensors, { gitHash: 'bench' }),
    'saveCheckpoint, medium parity': async () =>
      tv.saveCheckpoint(ckptPath, tensors, { ecc: 'medium', gitHash: 'bench' }),
  };
  const times = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
  const timelines = [];
  if (process.argv.includes('--phases')) {
    subscribe('tensorvault:checkpoint', (e) => {
      if (e.event === 'saved' && e.ecc !== 'none') timelines.push(e.phases);
    });
  }
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? Object.keys(cases) : Object.keys(cases).reverse();
    for (const name of order) {
      gc();
      const t0 = performance.now();
      await cases[name]();
      times[name].push(performance.now() - t0);
    }
  }
  const base = median(times['fs write + fsync (baseline)']);
  console.log('\n| save case | median ms | GB/s | ratio to fs write |\n|---|---:|---:|---:|');
  for (const [name, ts] of Object.entries(times)) {
    const m = median(ts);
    console.log(
      `| ${name} | ${m.toFixed(0)} | ${(bytes / m / 1e6).toFixed(2)} | ${(m / base).toFixed(2)}× |`,
    );
  }
  for (const [i, tl] of timelines.entries()) {
    console.log(
      `\nmedium parity save, round ${i + 1}: ${tl.map((p) => `${p.name} ${p.ms.toFixed(0)}`).join(' · ')} ms`,
    );
  }
  rmSync(plainPath, { force: true });
  rmSync(rawPath, { force: true });
}

// ---- open + first verified tensor (the medium-parity checkpoint of the last round)
const first = Object.keys(tensors).sort()[0];
const N = 50;
const lazy = [];
const plain = [];
const openOnly = [];
const loadOnly = [];
if (only.has('open')) {
  // A folder changed in the last 2 s is scanned for an interrupted save on every open (prepareRead's
  // quiet margin, docs/formats/checkpoint.md): wait it out, so that this measures the open of a
  // checkpoint at rest, as Python's is.
  const quietMs = 2000 - (Date.now() - statSync(dirname(ckptPath)).mtimeMs);
  if (quietMs > 0) await new Promise((r) => setTimeout(r, quietMs + 100));
  for (let i = 0; i < N; i++) {
    let t0 = performance.now();
    const f = await tv.openSafetensors(ckptPath);
    const t1 = performance.now();
    f.tensor(first);
    plain.push(performance.now() - t0);
    openOnly.push(t1 - t0);
    f.close();
    t0 = performance.now();
    const c = await tv.loadCheckpoint(ckptPath);
    const t2 = performance.now();
    await c.tensor(first);
    lazy.push(performance.now() - t0);
    loadOnly.push(t2 - t0);
    c.close();
  }
}
let py = null;
if (only.has('open') && existsSync(python)) {
  const r = spawnSync(
    python,
    [
      '-c',
      `import sys, time, json
from safetensors import safe_open
ts = []
for i in range(${N}):
    t0 = time.perf_counter()
    with safe_open(sys.argv[1], framework='np') as f:
        a = f.get_tensor(sys.argv[2])
    ts.append((time.perf_counter() - t0) * 1000)
ts.sort()
print(json.dumps({'median': ts[len(ts)//2]}))`,
      ckptPath,
      first,
    ],
    { encoding: 'utf8' },
  );
  if (r.status === 0) py = JSON.parse(r.stdout).median;
}
const mp = median(plain);
const ml = median(lazy);
if (only.has('open')) {
  console.log(`\n| open + first tensor (${first}, ${smallBytes} B) | median ms | ratio |\n|---|---:|---:|`);
  console.log(`| openSafetensors + tensor (baseline) | ${mp.toFixed(3)} | 1.00× |`);
  console.log(`| loadCheckpoint lazy + verified tensor | ${ml.toFixed(3)} | ${(ml / mp).toFixed(2)}× |`);
  console.log(
    `| (openSafetensors alone) | ${median(openOnly).toFixed(3)} | ${(median(openOnly) / mp).toFixed(2)}× |`,
  );
  console.log(
    `| (loadCheckpoint lazy alone) | ${median(loadOnly).toFixed(3)} | ${(median(loadOnly) / mp).toFixed(2)}× |`,
  );
}
if (py !== null) {
  console.log(
    `| Python safe_open + get_tensor | ${py.toFixed(3)} | ${(py / mp).toFixed(2)}× (tensorvault lazy is ${(py / ml).toFixed(2)}× faster) |`,
  );
}

// ---- every tensor verified
if (only.has('read')) {
  const size = statSync(ckptPath).size;
  const read = [];
  const all = [];
  const tree = [];
  for (let r = 0; r < rounds; r++) {
    gc();
    let t0 = performance.now();
    const c = await tv.loadCheckpoint(ckptPath);
    for (const n of c.names) await c.tensor(n);
    read.push(performance.now() - t0);
    c.close();
    gc();
    t0 = performance.now();
    const c2 = await tv.loadCheckpoint(ckptPath);
    await c2.tensors();
    all.push(performance.now() - t0);
    c2.close();
    t0 = performance.now();
    await tv.hashFile(ckptPath, { chunkSize: 1024 * 1024 });
    tree.push(performance.now() - t0);
  }
  console.log('\n| read every tensor, verified | median ms | GB/s |\n|---|---:|---:|');
  console.log(
    `| loadCheckpoint lazy, tensor() one by one | ${median(read).toFixed(0)} | ${(size / median(read) / 1e6).toFixed(2)} |`,
  );
  console.log(
    `| loadCheckpoint lazy, tensors() | ${median(all).toFixed(0)} | ${(size / median(all) / 1e6).toFixed(2)} |`,
  );
  console.log(
    `| hashFile chunk tree, all cores (anchor) | ${median(tree).toFixed(0)} | ${(size / median(tree) / 1e6).toFixed(2)} |`,
  );
}
console.log(
  `\nload average after: ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}`,
);
for (const f of ['', '.meta.json', '.tvecc', '.tvob']) rmSync(`${ckptPath}${f}`, { force: true });
