#!/usr/bin/env node
// Ring log benchmarks against pino's own file destination and a PyFolds-style full rewrite, in one
// process so the ratios are fair on a shared machine.
//   node benches/logging.bench.mjs [--iterations N] [--json out.json]
// Every contender is a pino destination, so all pay the same serialisation (pino's) and differ only in
// how records reach the file. Records look like training-loop lines (~110 bytes).
// Groups (each at window capacities 1k and 100k where it applies; the window is full before timing):
//   steady   10,000 INFO records, then the data is handed to the kernel (pino: flush(); ring and
//            PyFolds: one flushSync at the end, i.e. one lazy write per 10,000 records, as at the 5 s
//            default interval for a run logging 2,000 records/s). Baseline: pino.destination(file).
//   storm    every record is an ERROR written before the call returns: 1,000 records per iteration
//            (PyFolds: 100 records at 1k, 10 at 100k, one full rewrite each). Baseline: pino.destination({ sync: true }).
//   flush    one lazy write of 100 pending records (an append for the ring; a full rewrite for PyFolds).
//   compact  one compaction of the ring (atomic rewrite of the window: temp, fdatasync, rename, folder
//            fsync), forced with compactionSlack 0. With the default slack, max(capacity, 4096), it
//            happens once per slack records written.
// The headline figure is the MEAN per record: ring cases run enough iterations to include their
// periodic compactions (e.g. 200 storm iterations at 100k = 2 compactions), so the mean is the amortised
// cost. The median (typical call, without compaction) is shown too.
import { closeSync, mkdirSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Bench } from 'tinybench';

const require = createRequire(import.meta.url);
const tv = require('../dist/index.js');
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : process.argv[i + 1];
};
const iterations = Number(arg('iterations', 7));
const dir = join(import.meta.dirname, '..', 'target', 'bench-data', 'logging');
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
let fileNo = 0;
const newFile = (name) => join(dir, `${fileNo++}-${name}.log`);

/**
 * PyFolds's CircularBufferFileHandler mechanics as a pino destination: a ring of the last N lines in
 * memory; the whole file is rewritten in place (open 'w', write, close: not atomic) when the interval has
 * passed since the last write, at once for ERROR or worse, and on flush.
 */
class PyFoldsStyle {
  constructor(path, capacity, intervalMs = 5000) {
    this.path = path;
    this.capacity = capacity;
    this.intervalMs = intervalMs;
    this.lines = [];
    this.start = 0;
    this.lastWrite = performance.now();
    this[Symbol.for('pino.metadata')] = true;
    this.writable = true;
  }
  write(chunk) {
    const line = chunk.endsWith('\n') ? chunk.slice(0, -1) : chunk;
    if (this.lines.length < this.capacity) this.lines.push(line);
    else {
      this.lines[this.start] = line;
      this.start = (this.start + 1) % this.capacity;
    }
    if (this.lastLevel >= 50 || performance.now() - this.lastWrite >= this.intervalMs) this.flushSync();
    return true;
  }
  flushSync() {
    const ordered = this.lines.slice(this.start).concat(this.lines.slice(0, this.start));
    const fd = openSync(this.path, 'w');
    writeSync(fd, `${ordered.join('\n')}\n`);
    closeSync(fd);
    this.lastWrite = performance.now();
  }
}

const line = (logger, i) => logger.info({ step: i, loss: 0.1234567, lr: 0.0003, epoch: 3 }, 'training step');
const fill = (logger, n) => {
  for (let i = 0; i < n; i++) line(logger, i);
};
const pinoFlush = (dest) =>
  new Promise((resolve, reject) => dest.flush((err) => (err ? reject(err) : resolve())));
const pinoOpts = { base: { pid: process.pid, hostname: 'bench' } };

const results = [];
async function group(label, perIteration, cases, { baselineIndex = 0 } = {}) {
  const tasks = [];
  for (const c of cases) {
    const bench = new Bench({
      iterations: c.iterations ?? iterations,
      time: 0,
      warmupIterations: 1,
      warmupTime: 0,
    });
    bench.add(c.name, c.fn);
    await bench.run();
    tasks.push(bench.tasks[0]);
    c.close?.();
  }
  const meanNs = (t, c) => (t.result.latency.mean * 1e6) / (c.records ?? perIteration);
  const base = meanNs(tasks[baselineIndex], cases[baselineIndex]);
  tasks.forEach((t, i) => {
    const c = cases[i];
    const records = c.records ?? perIteration;
    const ns = meanNs(t, c);
    results.push({
      group: label,
      case: t.name,
      records,
      iterations: t.result.latency.samplesCount ?? c.iterations ?? iterations,
      medianMs: t.result.latency.p50,
      meanMs: t.result.latency.mean,
      meanNsPerRecord: ns,
      medianNsPerRecord: (t.result.latency.p50 * 1e6) / records,
      recordsPerS: 1e9 / ns,
      vsBaseline: ns / base,
    });
  });
}

// ---- steady: 10,000 INFO records per iteration, one hand-off to the kernel at the end ----
{
  const B = 10_000;
  const cases = [];
  const pinoAsync = pino.destination(newFile('pino-async'));
  const la = pino(pinoOpts, pinoAsync);
  cases.push({
    iterations: 20,
    name: 'pino.destination(file) [baseline]',
    fn: async () => {
      fill(la, B);
      await pinoFlush(pinoAsync);
    },
    close: () => pinoAsync.end(),
  });
  const pinoSync = pino.destination({ dest: newFile('pino-sync'), sync: true });
  const ls = pino(pinoOpts, pinoSync);
  cases.push({
    iterations: 20,
    name: 'pino.destination({ sync: true })',
    fn: () => fill(ls, B),
    close: () => pinoSync.end(),
  });
  for (const cap of [1000, 100_000]) {
    const dest = tv.ringDestination(newFile(`ring-${cap}`), { capacityLines: cap });
    const l = pino(pinoOpts, dest);
    fill(l, cap);
    dest.flushSync();
    cases.push({
      iterations: 20,
      name: `tv ringDestination, capacity ${cap / 1000}k`,
      fn: () => {
        fill(l, B);
        dest.flushSync();
      },
      close: () => dest.end(),
    });
    const py = new PyFoldsStyle(newFile(`pyfolds-${cap}`), cap);
    const lp = pino(pinoOpts, py);
    fill(lp, cap);
    cases.push({
      iterations: 20,
      name: `PyFolds-style rewrite, capacity ${cap / 1000}k`,
      fn: () => {
        fill(lp, B);
        py.flushSync();
      },
    });
  }
  // The standalone API (its own serialisation, ISO time) for reference.
  const own = new tv.RingFileLog(newFile('ring-own'), { capacityLines: 1000 });
  cases.push({
    iterations: 20,
    name: 'tv RingFileLog.info (own JSON), capacity 1k',
    fn: () => {
      for (let i = 0; i < B; i++)
        own.info('training step', { step: i, loss: 0.1234567, lr: 0.0003, epoch: 3 });
      own.flushSync();
    },
    close: () => own.close(),
  });
  await group('steady: 10,000 INFO records, one write', B, cases);
}

// ---- storm: every record is an ERROR, on disk (page cache) before the call returns ----
{
  const B = 1000;
  const err = (logger, n) => {
    for (let i = 0; i < n; i++) logger.error({ step: i, loss: Number.NaN, epoch: 3 }, 'loss is NaN');
  };
  const cases = [];
  const pinoSync = pino.destination({ dest: newFile('storm-pino-sync'), sync: true });
  const ls = pino(pinoOpts, pinoSync);
  cases.push({
    iterations: 20,
    name: 'pino.destination({ sync: true }) [baseline]',
    fn: () => err(ls, B),
    close: () => pinoSync.end(),
  });
  for (const cap of [1000, 100_000]) {
    const dest = tv.ringDestination(newFile(`storm-ring-${cap}`), { capacityLines: cap });
    const l = pino(pinoOpts, dest);
    fill(l, cap);
    dest.flushSync();
    cases.push({
      iterations: cap >= 100_000 ? 200 : 20,
      name: `tv ringDestination, capacity ${cap / 1000}k`,
      fn: () => err(l, B),
      close: () => dest.end(),
    });
    const py = new PyFoldsStyle(newFile(`storm-pyfolds-${cap}`), cap);
    const lp = pino(pinoOpts, py);
    fill(lp, cap);
    const n = cap >= 100_000 ? 10 : 100;
    cases.push({
      iterations: 5,
      name: `PyFolds-style rewrite, capacity ${cap / 1000}k`,
      records: n,
      fn: () => err(lp, n),
    });
  }
  await group('storm: ERROR records, each written at once', B, cases);
}

// ---- flush: one lazy write of 100 pending records ----
{
  const P = 100;
  const cases = [];
  for (const cap of [1000, 100_000]) {
    const dest = tv.ringDestination(newFile(`flush-ring-${cap}`), {
      capacityLines: cap,
      flushIntervalMs: 3_600_000,
    });
    const l = pino(pinoOpts, dest);
    fill(l, cap);
    dest.flushSync();
    cases.push({
      iterations: cap >= 100_000 ? 1000 : 100,
      name: `tv ringDestination, capacity ${cap / 1000}k`,
      records: P,
      fn: () => {
        fill(l, P);
        dest.flushSync();
      },
      close: () => dest.end(),
    });
    const py = new PyFoldsStyle(newFile(`flush-pyfolds-${cap}`), cap, 3_600_000);
    const lp = pino(pinoOpts, py);
    fill(lp, cap);
    cases.push({
      iterations: cap >= 100_000 ? 7 : 20,
      name: `PyFolds-style rewrite, capacity ${cap / 1000}k`,
      records: P,
      fn: () => {
        fill(lp, P);
        py.flushSync();
      },
    });
  }
  await group('flush: 100 pending records, one write', P, cases);
}

// ---- compact: one atomic rewrite of a full window ----
{
  const cases = [];
  for (const cap of [1000, 100_000]) {
    const dest = tv.ringDestination(newFile(`compact-ring-${cap}`), {
      capacityLines: cap,
      flushIntervalMs: 3_600_000,
      compactionSlack: 0,
    });
    const l = pino(pinoOpts, dest);
    fill(l, cap);
    dest.flushSync();
    cases.push({
      name: `tv ring compaction, capacity ${cap / 1000}k`,
      records: 1,
      fn: () => {
        fill(l, 1);
        dest.flushSync();
      },
      close: () => dest.end(),
    });
  }
  await group('compact: one atomic rewrite of the window', 1, cases);
}

const machine = `${cpus()[0]?.model ?? 'cpu'} × ${cpus().length}, Node ${process.version}`;
const out = arg('json');
if (out) writeFileSync(out, JSON.stringify({ machine, results }, null, 2));
console.log(`\n${machine}, ${new Date().toISOString().slice(0, 10)}\n`);
console.log(
  '| group | case | records × iterations | mean ns/record | median ns/record | records/s (mean) | × baseline (mean) |',
);
console.log('|---|---|---:|---:|---:|---:|---:|');
for (const r of results) {
  console.log(
    `| ${r.group} | ${r.case} | ${r.records} × ${r.iterations} | ${r.meanNsPerRecord.toFixed(0)} | ${r.medianNsPerRecord.toFixed(0)} | ${Math.round(r.recordsPerS).toLocaleString('en-US')} | ${r.vsBaseline.toFixed(2)}× |`,
  );
}
rmSync(dir, { recursive: true, force: true });
