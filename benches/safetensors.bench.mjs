#!/usr/bin/env node
// safetensors benchmarks against named baselines, in one script so ratios are fair on a shared machine.
//   node --expose-gc benches/safetensors.bench.mjs [--gib 4] [--tensors 300] [--iterations N] [--json out.json]
//        [--cases open,read,write,million] [--million 1000000]
// Cases (on a generated checkpoint of --gib GiB in --tensors tensors, F32 and BF16):
//   open     openSafetensors + first tensor view      vs Python safe_open + get_tensor (numpy), same file
//            (+ RSS growth of this process before any tensor is touched)
//   read     every tensor through its view, warm page cache (copy into a 64 MiB scratch buffer)
//            vs fs.readSync of the same bytes into the same buffer (64 MiB reads). Cases:
//            - "same open file": one SafetensorsFile for every iteration, so after the warm-up its pages
//              are already mapped (a second pass; the only read case of the first version of this bench)
//            - "first touch": a fresh open per iteration (timed: open, views, copy), so every iteration
//              pays the page faults of a new mapping; plain views, tensor({ populate: true }),
//              await prefetch() before the views, prefetch() running while the views are read
//            (+ how much of the file the kernel mapped with 2 MiB PMD entries after a first touch)
//   write    saveSafetensors streaming the same bytes (fsync + rename)
//            vs fs.writeSync of the same bytes + fsync, and Python save_file (numpy) on a 1 GiB subset;
//            interleaved rounds in ABBA order, medians
//   million  openSafetensors of a header of --million one-byte tensors (79.7 MB of JSON for a million):
//            time to open, time to the first tensor, and the longest event-loop gap while it runs (a 5 ms
//            heartbeat), vs Python safe_open + get_tensor on the same file and JSON.parse of the header
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { Bench } from 'tinybench';

const require = createRequire(import.meta.url);
const tv = require('../dist/index.js');
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : process.argv[i + 1];
};
const gib = Number(arg('gib', 4));
const count = Number(arg('tensors', 300));
const iterations = Number(arg('iterations', 5));
const cases = new Set(arg('cases', 'open,read,write,million').split(','));
const needBig = cases.has('open') || cases.has('read') || cases.has('write');
const root = join(import.meta.dirname, '..');
const python = process.env.TV_PYTHON ?? join(root, '.venv', 'bin', 'python');
const dir = join(root, 'target', 'bench-data');
mkdirSync(dir, { recursive: true });
const total = Math.round(gib * 1024 ** 3);

// ~count tensors: F32 [rows, 1024] and every third BF16 [rows, 2048]; sizes sum to `total`.
const per = Math.floor(total / count / 4096) * 4096;
const specs = [];
for (let i = 0; i < count; i++) {
  const bf16 = i % 3 === 2;
  specs.push({
    name: `model.layers.${i}.weight`,
    dtype: bf16 ? 'BF16' : 'F32',
    shape: [per / 4096, bf16 ? 2048 : 1024],
    bytes: per,
  });
}
const dataBytes = per * count;
const block = Buffer.alloc(64 << 20);
for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i);

async function* source(bytes) {
  for (let at = 0; at < bytes; at += block.length)
    yield block.subarray(0, Math.min(block.length, bytes - at));
}
const tensorsFor = (list) =>
  Object.fromEntries(list.map((s) => [s.name, { dtype: s.dtype, shape: s.shape, data: source(s.bytes) }]));

const file = join(dir, `st-${gib}gib-${count}.safetensors`);
if (needBig && !existsSync(file))
  await tv.saveSafetensors(file, tensorsFor(specs), { metadata: { format: 'pt' } });
const fileBytes = needBig ? statSync(file).size : 0;
const results = [];
let rssOpen;
let pmdAfterFirstTouch;
const writeRounds = {};
const loadAtStart = loadavg();
const record = (group, name, medianMs, bytes, baseMs) =>
  results.push({
    group,
    case: name,
    medianMs,
    ...(bytes ? { gbPerS: bytes / 1e9 / (medianMs / 1000) } : {}),
    vsBaseline: baseMs / medianMs,
  });
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
};

// Warm the page cache.
if (needBig) {
  const fd = openSync(file, 'r');
  for (let at = 0; at < fileBytes; at += block.length) readSync(fd, block, 0, block.length, at);
  closeSync(fd);
}

// --- open + first tensor -------------------------------------------------------------------------
if (cases.has('open')) {
  const first = specs[0].name;
  globalThis.gc?.();
  const rss0 = process.memoryUsage().rss;
  const probe = await tv.openSafetensors(file);
  rssOpen = process.memoryUsage().rss - rss0;
  probe.close();
  const openTimes = [];
  const firstTimes = [];
  for (let i = 0; i < 50; i++) {
    const t0 = performance.now();
    const f = await tv.openSafetensors(file);
    const t1 = performance.now();
    const t = f.tensor(first);
    const t2 = performance.now();
    if (t.data.length === 0) throw new Error('empty');
    openTimes.push(t1 - t0);
    firstTimes.push(t2 - t0);
    f.close();
    // Let the previous iteration's views be collected (and their mappings unmapped) outside the timing.
    globalThis.gc?.();
    await new Promise((r) => setTimeout(r, 1));
  }
  const pyOpen = spawnSync(
    python,
    [
      '-c',
      `import sys, time, json
from safetensors import safe_open
ts = []
for i in range(50):
    t0 = time.perf_counter()
    with safe_open(sys.argv[1], framework='np') as f:
        a = f.get_tensor(sys.argv[2])
    ts.append((time.perf_counter() - t0) * 1000)
ts.sort()
print(json.dumps({'median': ts[len(ts)//2]}))`,
      file,
      first,
    ],
    { encoding: 'utf8' },
  );
  if (pyOpen.status !== 0) throw new Error(pyOpen.stderr);
  const pyFirst = JSON.parse(pyOpen.stdout).median;
  record(
    'open + first tensor',
    'Python safe_open + get_tensor (numpy, copies the tensor)',
    pyFirst,
    0,
    pyFirst,
  );
  record('open + first tensor', 'tv.openSafetensors (validate, map)', median(openTimes), 0, pyFirst);
  record(
    'open + first tensor',
    'tv.openSafetensors + tensor() (zero-copy view)',
    median(firstTimes),
    0,
    pyFirst,
  );
}

// --- read every tensor ----------------------------------------------------------------------------
if (cases.has('read')) {
  const copyAll = (f, options) => {
    for (const name of f.names) {
      const b = f.tensor(name, options).bytes;
      for (let at = 0; at < b.length; at += block.length)
        block.set(b.subarray(at, Math.min(b.length, at + block.length)));
    }
  };
  /** FilePmdMapped summed over this process's mappings of `file`, in bytes. */
  const pmdMapped = () => {
    const smaps = readFileSync('/proc/self/smaps', 'utf8').split('\n');
    let inFile = false;
    let kb = 0;
    for (const line of smaps) {
      if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inFile = line.endsWith(file);
      else if (inFile && line.startsWith('FilePmdMapped:')) kb += Number(line.split(/\s+/)[1]);
    }
    return kb * 1024;
  };
  const settle = async () => {
    // Collect dropped views so that their mapping is unmapped now (N-API finalizers run from the event
    // loop, hence the wait), not inside the next timed iteration.
    globalThis.gc?.();
    await new Promise((r) => setTimeout(r, 5));
    globalThis.gc?.();
  };
  const readBaseline = () => {
    const fd = openSync(file, 'r');
    for (let at = dataStartOfFile; at < fileBytes; at += block.length)
      readSync(fd, block, 0, Math.min(block.length, fileBytes - at), at);
    closeSync(fd);
  };
  let dataStartOfFile;
  {
    // 1. One open file for every iteration: after the warm-up iteration its pages are mapped.
    const f = await tv.openSafetensors(file);
    dataStartOfFile = f.dataStart;
    const bench = new Bench({ iterations, time: 0, warmupIterations: 1, warmupTime: 0 });
    bench.add('fs.readSync 64 MiB chunks into a buffer', readBaseline);
    bench.add('views, same open file (pages mapped by the warm-up): every tensor copied', () => {
      copyAll(f);
    });
    bench.add('views, same open file: touch one byte per 4 KiB page', () => {
      let x = 0;
      for (const name of f.names) {
        const b = f.tensor(name).bytes;
        for (let at = 0; at < b.length; at += 4096) x ^= b[at];
      }
      return x;
    });
    await bench.run();
    const base = bench.tasks[0].result.latency.p50;
    for (const t of bench.tasks)
      record(`read ${gib} GiB warm`, t.name, t.result.latency.p50, dataBytes, base);
    f.close();
  }
  await settle();
  {
    // 2. A fresh open per iteration (timed: open, views, copy), so every iteration pays the page faults
    // of a new mapping; the previous one is released outside the timing.
    let fresh;
    const freshHooks = {
      afterEach: async () => {
        fresh?.close();
        fresh = undefined;
        await settle();
      },
    };
    const bench = new Bench({ iterations, time: 0, warmupIterations: 1, warmupTime: 0 });
    bench.add('fs.readSync 64 MiB chunks into a buffer (again, same conditions as below)', readBaseline);
    bench.add(
      'first touch: open + views (default) + copy',
      async () => {
        fresh = await tv.openSafetensors(file);
        copyAll(fresh);
      },
      freshHooks,
    );
    bench.add(
      'first touch: open + tensor({ populate: true }) + copy',
      async () => {
        fresh = await tv.openSafetensors(file);
        copyAll(fresh, { populate: true });
      },
      freshHooks,
    );
    bench.add(
      'first touch: open + await prefetch() + views + copy',
      async () => {
        fresh = await tv.openSafetensors(file);
        await fresh.prefetch();
        copyAll(fresh);
      },
      freshHooks,
    );
    bench.add(
      'first touch: open + prefetch() running while views are copied',
      async () => {
        fresh = await tv.openSafetensors(file);
        const p = fresh.prefetch();
        copyAll(fresh);
        await p;
      },
      freshHooks,
    );
    await bench.run();
    const base = bench.tasks[0].result.latency.p50;
    for (const t of bench.tasks)
      record(`read ${gib} GiB warm, first touch`, t.name, t.result.latency.p50, dataBytes, base);
    const g = await tv.openSafetensors(file);
    copyAll(g);
    pmdAfterFirstTouch = pmdMapped();
    g.close();
    await settle();
  }
}

// --- write -----------------------------------------------------------------------------------------
if (cases.has('write')) {
  // Writes are disk-bound and the disk is shared. Its speed was seen to alternate from one 4 GiB write to
  // the next (slow, fast, slow, fast, whoever wrote), so the cases run in ABBA order (A B, then B A, ...)
  // and every case gets as many odd as even slots. Each output is deleted (and `sync` run) before a write.
  // Per-round times are printed and saved with --json.
  const interleaved = async (label, rounds, cases) => {
    const times = cases.map(() => []);
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? [...cases.keys()] : [...cases.keys()].reverse();
      for (const i of order) {
        const c = cases[i];
        await c.before?.();
        spawnSync('sync');
        times[i].push(await c.run());
      }
    }
    writeRounds[label] = Object.fromEntries(
      cases.map((c, i) => [c.name, times[i].map((t) => Math.round(t))]),
    );
    console.error(label, JSON.stringify(writeRounds[label]));
    return times.map(median);
  };
  const timed = async (fn) => {
    const t0 = performance.now();
    await fn();
    return performance.now() - t0;
  };
  {
    const out = join(dir, 'st-write.safetensors');
    const plain = join(dir, 'st-write.bin');
    const [fsMs, tvMs] = await interleaved(`write ${gib} GiB`, 4, [
      {
        name: 'fs',
        before: () => rmSync(plain, { force: true }),
        run: () =>
          timed(() => {
            const fd = openSync(plain, 'w');
            for (let at = 0; at < dataBytes; at += block.length)
              writeSync(fd, block, 0, Math.min(block.length, dataBytes - at));
            fsyncSync(fd);
            closeSync(fd);
          }),
      },
      {
        name: 'tv',
        before: () => rmSync(out, { force: true }),
        run: () => timed(() => tv.saveSafetensors(out, tensorsFor(specs), { metadata: { format: 'pt' } })),
      },
    ]);
    record(`write ${gib} GiB`, 'fs.writeSync 64 MiB chunks + fsync (same bytes)', fsMs, dataBytes, fsMs);
    record(`write ${gib} GiB`, 'tv.saveSafetensors streaming (fsync + rename)', tvMs, dataBytes, fsMs);
    rmSync(plain, { force: true });
    rmSync(out, { force: true });
  }
  {
    // Python save_file holds its arrays in memory: compare on a 1 GiB subset. One Python process per
    // round (array set-up untimed), interleaved with tensorvault.
    const sub = specs.slice(0, Math.max(1, Math.round((count * 1) / gib)));
    const subBytes = sub.reduce((s, x) => s + x.bytes, 0);
    const out = join(dir, 'st-write-sub.safetensors');
    const pySave = () => {
      const py = spawnSync(
        python,
        [
          '-c',
          `import sys, time, json, os
import numpy as np
from safetensors.numpy import save_file
n, per = int(sys.argv[2]), int(sys.argv[3])
base = np.frombuffer(np.random.default_rng(1).bytes(per), dtype=np.float32)
t = {f'model.layers.{i}.weight': base.copy() for i in range(n)}
t0 = time.perf_counter()
save_file(t, sys.argv[1], metadata={'format': 'pt'})
fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd); os.close(fd)
print(json.dumps({'ms': (time.perf_counter() - t0) * 1000}))`,
          out,
          String(sub.length),
          String(per),
        ],
        { encoding: 'utf8' },
      );
      if (py.status !== 0) throw new Error(py.stderr);
      return JSON.parse(py.stdout).ms;
    };
    const subSpecs = sub.map((s) => ({ ...s, dtype: 'F32', shape: [s.bytes / 4] }));
    const [pyMs, ourMs] = await interleaved(
      'write 1 GiB subset',
      Math.max(4, iterations + (iterations % 2)),
      [
        { name: 'python', before: () => rmSync(out, { force: true }), run: async () => pySave() },
        {
          name: 'tv',
          before: () => rmSync(out, { force: true }),
          run: () =>
            timed(() => tv.saveSafetensors(out, tensorsFor(subSpecs), { metadata: { format: 'pt' } })),
        },
      ],
    );
    const label = `write ${(subBytes / 1024 ** 3).toFixed(2)} GiB subset`;
    record(label, 'Python save_file (numpy) + fsync', pyMs, subBytes, pyMs);
    record(label, 'tv.saveSafetensors streaming (fsync + rename)', ourMs, subBytes, pyMs);
    rmSync(out, { force: true });
  }
}

// --- a million-tensor header ------------------------------------------------------------------------
if (cases.has('million')) {
  const n = Number(arg('million', 1_000_000));
  const mfile = join(dir, `st-million-${n}.safetensors`);
  if (!existsSync(mfile)) {
    const parts = new Array(n);
    for (let i = 0; i < n; i++)
      parts[i] = `"layer.${i}.weight":{"dtype":"U8","shape":[1],"data_offsets":[${i},${i + 1}]}`;
    let h = Buffer.from(`{"__metadata__":{"format":"pt"},${parts.join(',')}}`);
    h = Buffer.concat([h, Buffer.alloc((8 - (h.length % 8)) % 8, 0x20)]);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    writeFileSync(mfile, Buffer.concat([len, h, Buffer.alloc(n, 7)]));
  }
  const headerText = readFileSync(mfile).subarray(8, 8 + Number(readFileSync(mfile).readBigUInt64LE(0)));
  const last = `layer.${n - 1}.weight`;
  const open = [];
  const firstT = [];
  const gaps = [];
  for (let i = 0; i < iterations; i++) {
    globalThis.gc?.();
    await new Promise((r) => setTimeout(r, 20));
    let prev = performance.now();
    let maxGap = 0;
    const beat = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - prev);
      prev = now;
    }, 5);
    prev = performance.now();
    const t0 = performance.now();
    const f = await tv.openSafetensors(mfile);
    const t1 = performance.now();
    const t = f.tensor(last);
    const t2 = performance.now();
    if (t.data[0] !== 7) throw new Error('wrong byte');
    await new Promise((r) => setTimeout(r, 30));
    clearInterval(beat);
    f.close();
    open.push(t1 - t0);
    firstT.push(t2 - t0);
    gaps.push(maxGap);
  }
  const jsonTimes = [];
  for (let i = 0; i < iterations; i++) {
    const t0 = performance.now();
    JSON.parse(headerText.toString('utf8'));
    jsonTimes.push(performance.now() - t0);
  }
  const py = spawnSync(
    python,
    [
      '-c',
      `import sys, time, json
from safetensors import safe_open
ts = []
for i in range(int(sys.argv[3])):
    t0 = time.perf_counter()
    with safe_open(sys.argv[1], framework='np') as f:
        a = f.get_tensor(sys.argv[2])
    ts.append((time.perf_counter() - t0) * 1000)
ts.sort()
print(json.dumps({'median': ts[len(ts)//2]}))`,
      mfile,
      last,
      String(iterations),
    ],
    { encoding: 'utf8' },
  );
  if (py.status !== 0) throw new Error(py.stderr);
  const pyMs = JSON.parse(py.stdout).median;
  const group = `open a header of ${n} tensors (${(headerText.length / 1e6).toFixed(1)} MB)`;
  record(group, 'Python safe_open + get_tensor (numpy)', pyMs, 0, pyMs);
  record(group, 'JSON.parse of the header text (JS thread)', median(jsonTimes), 0, pyMs);
  record(group, 'tv.openSafetensors (validate, map)', median(open), 0, pyMs);
  record(group, 'tv.openSafetensors + tensor(last)', median(firstT), 0, pyMs);
  record(
    group,
    'longest event-loop gap during open (5 ms heartbeat; ratio: none)',
    median(gaps),
    0,
    median(gaps),
  );
  console.error(group, JSON.stringify({ open, firstT, gaps }));
}

const meta = {
  date: new Date().toISOString(),
  node: process.version,
  cpu: cpus()[0]?.model,
  cores: cpus().length,
  memGiB: Math.round(totalmem() / 1024 ** 3),
  file: { bytes: fileBytes, tensors: count },
  rssGrowthOnOpenBytes: rssOpen,
  filePmdMappedAfterFirstTouchBytes: pmdAfterFirstTouch,
  loadAverageAtStart: loadAtStart,
  loadAverageAtEnd: loadavg(),
  kernel: release(),
};
console.log(JSON.stringify(meta, null, 2));
console.table(
  results.map((r) => ({
    ...r,
    medianMs: r.medianMs.toFixed(3),
    gbPerS: r.gbPerS?.toFixed(2),
    vsBaseline: `${r.vsBaseline.toFixed(2)}x`,
  })),
);
const jsonOut = arg('json', undefined);
if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ meta, results, writeRounds }, null, 2));
