#!/usr/bin/env node
// Probe: the longest event-loop gap while `verifyChainFull()` runs, measured by a 1 ms setInterval and
// perf_hooks.monitorEventLoopDelay, read after one more turn of the loop (a verification whose awaits
// all resolve at once would otherwise finish before the probe sees its gap).
//   node benches/probes/eventlog-verify-gaps.mjs [--format v2|legacy] [--events 300000]
//        [--segment 300000] [--dir DIR] [--dist PATH/index.js]
// Builds the log in DIR when it is empty (fsync off), then verifies it once and prints the time, the
// progress reports and the longest gap. --dist compares another build (e.g. /work/main/dist/index.js).
import { mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const require = createRequire(import.meta.url);
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : process.argv[i + 1];
};
const tv = require(arg('dist', join(import.meta.dirname, '..', '..', 'dist', 'index.js')));
const format = arg('format', 'v2');
const events = Number(arg('events', 300_000));
const segmentSize = Number(arg('segment', 300_000));
const dir = arg('dir', mkdtempSync(join(tmpdir(), 'tv-verify-gaps-')));

const log = await tv.EventLog.open(dir, { format, segmentSize, fsync: 'never' });
if ((await log.verifyChain()).totalEvents === 0) {
  for (let i = 0; i < events; i += 10_000) {
    const batch = [];
    for (let j = i; j < Math.min(events, i + 10_000); j++) {
      batch.push({ actor: 'a', evento: 'E', entidade: 'X', entidadeId: String(j), payload: { i: j } });
    }
    await log.appendMany(batch);
  }
}
const h = monitorEventLoopDelay({ resolution: 5 });
h.enable();
let last = performance.now();
let maxGap = 0;
const iv = setInterval(() => {
  const t = performance.now();
  maxGap = Math.max(maxGap, t - last);
  last = t;
}, 1);
let reports = 0;
const t0 = performance.now();
const r = await log.verifyChainFull({ onProgress: () => reports++ });
const ms = performance.now() - t0;
await new Promise((resolve) => setTimeout(resolve, 10));
clearInterval(iv);
h.disable();
await log.close();
console.log(
  `${format} ${r.totalEvents} events in ${dir}: valid ${r.valid}, ${ms.toFixed(0)} ms, ${reports} progress reports, ` +
    `longest gap ${maxGap.toFixed(0)} ms (monitorEventLoopDelay max ${(h.max / 1e6).toFixed(0)} ms)`,
);
