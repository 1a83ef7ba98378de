#!/usr/bin/env node
// Event-log and backup benchmarks against named baselines, in one process so ratios are fair on a
// shared machine.
//   node benches/eventlog.bench.mjs [--gib 1] [--iterations 3] [--groups append,verify,backup]
//                                   [--skip-backup] [--json out.json]
// --groups runs only the named groups (the ~1 GiB data set is built first whenever it is missing), so a
// long run can be split into shorter ones that each hold the machine's benchmark lock briefly.
// Cases:
//   append   events/s: Libervia's algorithm (whole-segment JSON rewrite, node:crypto; the baseline),
//            tensorvault legacy mode (same format, atomic + fsync), v2 (one line per event), v2 batched
//   verify   events/s of verifyChainFull / verifyChain on a v2 log vs a naive verifier (JSON.parse per
//            line, node:crypto SHA-256 of the same canonical preimage)
//   backup   a ~1 GiB v2 event log: tv.createBackup (libdeflate level 6, 1 MiB gzip members compressed
//            in parallel by the native core) vs node-tar (gzip 6, the baseline), archiver (tar + gzip 6),
//            GNU tar | gzip -6 and GNU tar | pigz -6
// node-tar and archiver are not project dependencies: `npm install --no-save tar@7 archiver@7` first
// (cases whose tool is missing are skipped and say so).
import { execFileSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import {
  createWriteStream,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';

const require = createRequire(import.meta.url);
const tv = require('../dist/index.js');
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : process.argv[i + 1];
};
const gib = Number(arg('gib', 1));
const iterations = Number(arg('iterations', 3));
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const loadavgAtStart = loadavg();
const groups = new Set(String(arg('groups', 'append,verify,backup')).split(','));
if (process.argv.includes('--skip-backup')) groups.delete('backup');
const work = join(import.meta.dirname, '..', 'target', 'bench-eventlog');
mkdirSync(work, { recursive: true });
const results = [];
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const optional = (name) => {
  try {
    return require(name);
  } catch {
    return undefined;
  }
};

// ---------------------------------------------------------------- append
const sha = (s) => createHash('sha256').update(s, 'utf8').digest('hex');
/** Libervia's append, reimplemented as the baseline: keep the segment in memory, rewrite it whole. */
function liberviaAppender(dir) {
  mkdirSync(join(dir, 'event-log'), { recursive: true });
  const seg = [];
  let prev = null;
  return (i) => {
    const payload = { index: i, data: `Evento ${i}` };
    const base = {
      timestamp: new Date().toISOString(),
      actor: 'bench',
      evento: 'E',
      entidade: 'X',
      entidade_id: String(i % 10),
      payload_hash: sha(JSON.stringify(payload, Object.keys(payload).sort())),
      previous_hash: prev,
    };
    const e = {
      id: randomUUID(),
      ...base,
      current_hash: sha(
        [
          prev ?? '',
          base.timestamp,
          base.actor,
          base.evento,
          base.entidade,
          base.entidade_id,
          base.payload_hash,
        ].join('|'),
      ),
    };
    seg.push(e);
    prev = e.current_hash;
    writeFileSync(join(dir, 'event-log', 'segment-000001.json'), JSON.stringify(seg, null, 2));
  };
}

async function appendCase(name, count, make) {
  const times = [];
  for (let it = 0; it < iterations; it++) {
    const dir = join(work, `append-${it}-${Math.random().toString(36).slice(2)}`);
    const { step, close } = await make(dir);
    const t0 = performance.now();
    await step(count);
    const ms = performance.now() - t0;
    await close?.();
    rmSync(dir, { recursive: true, force: true });
    times.push(ms);
  }
  const ms = median(times);
  results.push({ group: 'append', case: name, events: count, medianMs: ms, eventsPerS: (count * 1000) / ms });
  process.stderr.write(`append ${name}: ${((count * 1000) / ms).toFixed(0)} events/s\n`);
}

const N_SMALL = 2000;
const N_BIG = 20000;
if (groups.has('append')) {
  await appendCase(
    `Libervia algorithm (baseline), ${N_SMALL} events in one segment`,
    N_SMALL,
    async (dir) => {
      const add = liberviaAppender(dir);
      return {
        step: async (n) => {
          for (let i = 0; i < n; i++) add(i);
        },
      };
    },
  );
  for (const [fmt, fsync, count] of [
    ['legacy', 'never', N_SMALL],
    ['legacy', 'always', 500],
    ['v2', 'never', N_SMALL],
    ['v2', 'never', N_BIG],
    ['v2', 'always', N_SMALL],
  ]) {
    await appendCase(`tensorvault ${fmt}, fsync ${fsync}, ${count} events`, count, async (dir) => {
      const log = await tv.EventLog.open(dir, { format: fmt, fsync });
      return {
        step: async (n) => {
          for (let i = 0; i < n; i++)
            await log.append('bench', 'E', 'X', String(i % 10), { index: i, data: `Evento ${i}` });
        },
        close: () => log.close(),
      };
    });
  }
  await appendCase(`tensorvault v2, fsync always, appendMany x100, ${N_BIG} events`, N_BIG, async (dir) => {
    const log = await tv.EventLog.open(dir, { fsync: 'always' });
    return {
      step: async (n) => {
        for (let i = 0; i < n; i += 100) {
          await log.appendMany(
            Array.from({ length: 100 }, (_, k) => ({
              actor: 'bench',
              evento: 'E',
              entidade: 'X',
              entidadeId: String(k),
              payload: { index: i + k },
            })),
          );
        }
      },
      close: () => log.close(),
    };
  });
}

// ---------------------------------------------------------------- the ~1 GiB v2 data set
const data = join(work, `data-${gib}gib`);
const target = Math.round(gib * 1024 ** 3);
const logBytes = () => {
  const d = join(data, 'event-log');
  return existsSync(d) ? readdirSync(d).reduce((a, f) => a + statSync(join(d, f)).size, 0) : 0;
};
if (!existsSync(join(data, '.complete'))) {
  rmSync(data, { recursive: true, force: true });
  const log = await tv.EventLog.open(data, { fsync: 'never', snapshotEvery: 100_000 });
  const t0 = performance.now();
  let events = 0;
  while (logBytes() < target) {
    for (let b = 0; b < 20; b++) {
      await log.appendMany(
        Array.from({ length: 5000 }, (_, k) => ({
          actor: `user-${k % 97}`,
          evento: ['SITUACAO_CRIADA', 'DECISAO_REGISTRADA', 'EPISODIO_ENCERRADO'][k % 3],
          entidade: 'SituacaoDecisoria',
          entidadeId: randomUUID(),
          payload: { index: events + k, note: 'x'.repeat(k % 50) },
        })),
      );
      events += 5000;
    }
  }
  await log.close();
  const ms = performance.now() - t0;
  results.push({
    group: 'append',
    case: `tensorvault v2, fsync never, appendMany x5000 (data set, ${events} events)`,
    events,
    medianMs: ms,
    eventsPerS: (events * 1000) / ms,
  });
  writeFileSync(join(data, '.complete'), String(events));
}
const events = Number(readFileSync(join(data, '.complete'), 'utf8'));
const inputBytes = logBytes() + statSync(join(data, 'event-log-snapshot.json')).size;
process.stderr.write(`data set: ${events} events, ${(inputBytes / 1024 ** 3).toFixed(2)} GiB\n`);

// ---------------------------------------------------------------- verify
if (groups.has('verify')) {
  // Verify on the first ~200k events (a copy of the first segments) so the figure is quick to take.
  const segs = readdirSync(join(data, 'event-log'))
    .filter((f) => f.endsWith('.jsonl'))
    .sort();
  const naive = () => {
    let prev = null;
    let count = 0;
    for (const f of segs.slice(0, 20)) {
      const lines = readFileSync(join(data, 'event-log', f), 'utf8').split('\n');
      for (let i = 1; i < lines.length; i++) {
        if (lines[i] === '') continue;
        const e = JSON.parse(lines[i]);
        const { current_hash, ...rest } = e;
        if (e.previous_hash !== prev && count > 0) throw new Error('link');
        if (sha(`tv-eventlog-v2\n${tv.canonicalJson(rest)}`) !== current_hash) throw new Error('hash');
        prev = current_hash;
        count++;
      }
    }
    return count;
  };
  const sub = join(work, 'verify-200k');
  if (!existsSync(sub)) {
    mkdirSync(join(sub, 'event-log'), { recursive: true });
    for (const f of ['log.json', 'HEAD', ...segs.slice(0, 20)])
      writeFileSync(join(sub, 'event-log', f), readFileSync(join(data, 'event-log', f)));
    // Rebuild head/snapshot for the cut by opening as a writer once.
    rmSync(join(sub, 'event-log', 'HEAD'));
    const w = await tv.EventLog.open(sub, { snapshotEvery: 1 });
    await w.append('bench', 'E', 'X', '1');
    await w.close();
  }
  const log = await tv.EventLog.open(sub, { readOnly: true });
  const n = naive();
  for (const [name, fn] of [
    ['naive: JSON.parse + node:crypto per event (baseline)', async () => naive()],
    ['tv verifyChainFull', () => log.verifyChainFull()],
    ['tv verifyChain (fast)', () => log.verifyChain()],
  ]) {
    const times = [];
    for (let it = 0; it < iterations; it++) {
      const t0 = performance.now();
      const r = await fn();
      times.push(performance.now() - t0);
      if (typeof r === 'object' && !r.valid) throw new Error(`verify failed: ${r.reason}`);
    }
    const ms = median(times);
    results.push({ group: 'verify', case: name, events: n, medianMs: ms, eventsPerS: (n * 1000) / ms });
    process.stderr.write(`verify ${name}: ${((n * 1000) / ms).toFixed(0)} events/s\n`);
  }
}

// ---------------------------------------------------------------- backup
if (groups.has('backup')) {
  const nodeTar = optional('tar');
  const archiver = optional('archiver');
  const has = (cmd) => {
    try {
      execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  const out = join(work, 'out');
  const members = ['event-log', 'event-log-snapshot.json'];
  const cases = [
    [
      'node-tar, gzip 6 (baseline)',
      nodeTar &&
        (async (f) => nodeTar.c({ gzip: { level: 6 }, file: f, cwd: data, portable: true }, members)),
    ],
    [
      'archiver tar + gzip 6',
      archiver &&
        (async (f) => {
          const a = archiver('tar', { gzip: true, gzipOptions: { level: 6 } });
          const done = pipeline(a, createWriteStream(f));
          a.directory(join(data, 'event-log'), 'event-log');
          a.file(join(data, 'event-log-snapshot.json'), { name: 'event-log-snapshot.json' });
          await a.finalize();
          await done;
        }),
    ],
    [
      'GNU tar | gzip -6',
      has('gzip') &&
        (async (f) =>
          execFileSync('sh', ['-c', `tar -cf - -C '${data}' ${members.join(' ')} | gzip -6 > '${f}'`])),
    ],
    [
      'GNU tar | pigz -6 (2 threads)',
      has('pigz') &&
        (async (f) =>
          execFileSync('sh', ['-c', `tar -cf - -C '${data}' ${members.join(' ')} | pigz -6 -p 2 > '${f}'`])),
    ],
    [
      'tv.createBackup (libdeflate 6, parallel 1 MiB members, one pass, hashes, chain check, fsync)',
      async () => {
        const r = await tv.createBackup(data, out, { compressionLevel: 6 });
        rmSync(r.manifestPath);
        return r.archivePath;
      },
    ],
  ];
  let baseMs;
  for (const [name, fn] of cases) {
    if (!fn) {
      process.stderr.write(`backup ${name}: skipped (tool not installed)\n`);
      results.push({ group: 'backup', case: name, skipped: true });
      continue;
    }
    rmSync(out, { recursive: true, force: true });
    mkdirSync(out, { recursive: true });
    const times = [];
    let size = 0;
    for (let it = 0; it < iterations; it++) {
      const f = join(out, `a${it}.tar.gz`);
      const t0 = performance.now();
      const produced = (await fn(f)) ?? f;
      times.push(performance.now() - t0);
      size = statSync(typeof produced === 'string' ? produced : f).size;
      rmSync(typeof produced === 'string' ? produced : f, { force: true });
    }
    const ms = median(times);
    baseMs ??= ms;
    results.push({
      group: 'backup',
      case: name,
      inputBytes,
      medianMs: ms,
      gbPerS: inputBytes / 1e9 / (ms / 1000),
      compressedBytes: size,
      ratio: inputBytes / size,
      vsBaseline: baseMs / ms,
    });
    process.stderr.write(
      `backup ${name}: ${(inputBytes / 1e9 / (ms / 1000)).toFixed(3)} GB/s, ratio ${(inputBytes / size).toFixed(2)}\n`,
    );
  }
}

const machine = `${cpus()[0]?.model ?? 'cpu'} x${cpus().length}, Node ${process.version}`;
const report = {
  date: new Date().toISOString(),
  machine,
  loadavgAtStart,
  loadavgAtEnd: loadavg(),
  iterations,
  gib,
  groups: [...groups],
  results,
};
const json = arg('json', undefined);
if (json) writeFileSync(json, JSON.stringify(report, null, 2));
console.log(JSON.stringify(report, null, 2));
