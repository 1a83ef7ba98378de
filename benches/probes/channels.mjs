// Preload that prints every native job (`tensorvault:job`: op, duration, bytes, outcome) and every checkpoint
// integrity event (`tensorvault:checkpoint`) to stderr with the time since start, to see where a command's
// time goes without a profiler:
//   node --import ./benches/probes/channels.mjs scripts/demo.mjs
import { subscribe } from 'node:diagnostics_channel';

const t0 = performance.now();
const at = () => `@${((performance.now() - t0) / 1000).toFixed(2)}s`;
subscribe('tensorvault:job', (m) =>
  process.stderr.write(
    `  [job ${m.op} ${m.ms.toFixed(0)} ms ${(m.bytes / 2 ** 20).toFixed(0)} MiB ${m.outcome} ${at()}]\n`,
  ),
);
subscribe('tensorvault:checkpoint', (m) =>
  process.stderr.write(`  [checkpoint ${m.event} ${m.part ?? ''} ${m.ms?.toFixed?.(0) ?? ''} ${at()}]\n`),
);
