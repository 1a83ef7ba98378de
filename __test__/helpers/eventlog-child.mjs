// Child process for the event-log tests: `node eventlog-child.mjs <dataDir> <count> <mode>`.
// mode "append": open with a lock wait, append <count> events, close.
// mode "forever": append until killed, printing each committed seq on stdout.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const tv = require('../../dist/index.js');
const [dataDir, countText, mode] = process.argv.slice(2);
const count = Number(countText);
const log = await tv.EventLog.open(dataDir, { lockTimeoutMs: 60_000, segmentSize: 7, snapshotEvery: 5 });
if (mode === 'forever') {
  for (let i = 0; ; i++) {
    const e = await log.append('child', 'TICK', 'Clock', `c-${i % 3}`, { i, pad: 'x'.repeat(i % 200) });
    process.stdout.write(`${e.seq}\n`);
  }
}
for (let i = 0; i < count; i++) {
  await log.append(`pid-${process.pid}`, 'CONCURRENT', 'Worker', String(process.pid), { i });
}
await log.close();
