// Child process for the event-log "full disk" test, run under `ulimit -f` (a file-size limit: a write
// past it fails with EFBIG, as one on a full disk fails with ENOSPC, after writing what fits):
//   node eventlog-full-disk-child.mjs <dataDir> <format>
// Appends small events, then a batch too big to fit (it must fail, and none of it may stay), then small
// ones again (they must fit where the failed batch's partial lines were cut off). Prints one JSON line: what happened.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const tv = require('../../dist/index.js');
const [dataDir, format] = process.argv.slice(2);
const out = { before: 0, bigError: null, after: 0, afterErrors: [], verify: null, count: null };
const log = await tv.EventLog.open(dataDir, { format, segmentSize: 10_000, fsync: 'always' });
for (let i = 0; i < 10; i++) {
  await log.append('a', 'SMALL', 'x', String(i), { i });
  out.before++;
}
try {
  // One batch (one write) of about 24 KB: more than fits.
  await log.appendMany(
    Array.from({ length: 64 }, (_, i) => ({
      actor: 'a',
      evento: 'BATCH',
      entidade: 'x',
      entidadeId: `b-${i}`,
    })),
  );
} catch (err) {
  out.bigError = { name: err.constructor.name, code: err.code };
}
for (let i = 0; i < 3; i++) {
  try {
    await log.append('a', 'SMALL', 'x', `after-${i}`, { i });
    out.after++;
  } catch (err) {
    out.afterErrors.push(`${err.code}: ${err.message}`);
  }
}
out.verify = await log.verifyChainFull();
out.count = await log.count();
await log.close();
process.stdout.write(`${JSON.stringify(out)}\n`);
