#!/usr/bin/env node
// Probe (qa22 #4): records per second of a RingFileLog in a worker thread (default options, capacity
// 10,000, 200,000 `info` records, `--batch` records per event-loop turn), where records are written at
// the end of the turn that logged them (a terminated worker runs no `exit` event). Compare with another
// build's dist (TVDIST, a folder) in the same minutes: a build before the fix wrote lazily (one append
// per interval) in workers too, and 07446dc wrote every record as it was logged.
//   node benches/probes/ring-worker.mjs [--n 200000] [--batch 10] [--rounds 3]
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : Number(process.argv[i + 1]);
};
const dist = process.env.TVDIST ?? join(import.meta.dirname, '..', '..', 'dist');
const n = arg('n', 200_000);
const rounds = arg('rounds', 3);
const batch = arg('batch', 10);
const code = `
const { parentPort, workerData } = require('node:worker_threads');
const { RingFileLog } = require(workerData.dist + '/index.js');
const log = new RingFileLog(workerData.path, { capacityLines: 10000 });
(async () => {
  const t0 = performance.now();
  for (let i = 0; i < workerData.n; i++) {
    log.info('step done', { step: i, loss: 0.31 });
    if ((i + 1) % workerData.batch === 0) await new Promise((r) => setImmediate(r));
  }
  const ms = performance.now() - t0;
  log.close();
  parentPort.postMessage({ ms, stats: log.stats() });
})();
`;
for (let round = 0; round < rounds; round++) {
  const path = join(tmpdir(), `tv-ring-worker-${process.pid}-${round}.log`);
  const w = new Worker(code, { eval: true, workerData: { dist, path, n, batch } });
  const m = await new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
  await w.terminate();
  rmSync(path, { force: true });
  rmSync(`${path}.lock`, { force: true });
  console.log(
    `${dist}: ${n} records, ${batch} per turn, in ${m.ms.toFixed(0)} ms, ${((m.ms / n) * 1000).toFixed(2)} µs each; appends ${m.stats.appends}, compactions ${m.stats.compactions}`,
  );
}
