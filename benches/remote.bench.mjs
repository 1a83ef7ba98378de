#!/usr/bin/env node
// Object storage (issue 19) against a real S3-compatible server on 127.0.0.1 (s3s-fs, scripts/setup-s3.mjs),
// every figure beside a named baseline run in the same script on the same server and file:
//   node benches/remote.bench.mjs [--mib 1024] [--lazy-gib 4] [--rounds 3] [--cases push,lazy] [--json out.json]
// Cases:
//   push   push / pull of one --mib MiB file (a backup-like single file) with tensorvault, vs the AWS CLI
//          (`aws s3 cp`, the PyPI awscli, its default 8 MiB multipart and 10 threads) uploading and
//          downloading the same file from the same server; rounds interleaved (tv, aws, tv, aws, …), medians.
//          Pull verifies every 1 MiB chunk's SHA-256 as it streams; `aws s3 cp` checks nothing on a
//          multipart download.
//   lazy   a --lazy-gib GiB tensorvault checkpoint (64 MiB tensors) pushed once; then loadCheckpoint('s3://…')
//          and 3 tensors viewed: bytes received (client count), requests, time to open, time to the first
//          tensor; vs pull of the whole checkpoint (bytes and time).
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startS3Server } from '../scripts/setup-s3.mjs';

const tv = await import('../dist/index.js');
const { values: args } = parseArgs({
  options: {
    mib: { type: 'string', default: '1024' },
    'lazy-gib': { type: 'string', default: '4' },
    rounds: { type: 'string', default: '3' },
    cases: { type: 'string', default: 'push,lazy' },
    json: { type: 'string' },
  },
});
const MiB = 1024 * 1024;
const cases = new Set(args.cases.split(','));
const work = mkdtempSync(join(process.env.TV_BENCH_DIR ?? tmpdir(), 'tv-remote-bench-'));
const server = await startS3Server({ root: join(work, 'store') });
const BUCKET = 'bench';
mkdirSync(join(server.root, BUCKET));
const opts = {
  endpoint: server.endpoint,
  region: 'us-east-1',
  credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
};
const results = {
  machine: `${cpus().length} × ${cpus()[0]?.model}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()}, Node ${process.version}`,
  load: loadavg()[0],
  date: new Date().toISOString(),
};
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mbps = (bytes, s) => bytes / s / 1e6;

/** Incompressible bytes (a compressed archive looks like this), 8 MiB at a time. */
function writeRandomFile(path, bytes) {
  const fd = openSync(path, 'w');
  const block = Buffer.alloc(8 * MiB);
  for (let o = 0; o < bytes; o += block.byteLength) {
    randomFillSync(block);
    writeSync(fd, block, 0, Math.min(block.byteLength, bytes - o));
  }
  closeSync(fd);
}

function aws(...a) {
  const t0 = performance.now();
  const r = spawnSync('aws', ['--endpoint-url', server.endpoint, '--region', 'us-east-1', ...a], {
    env: { ...process.env, ...server.env },
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`aws ${a.join(' ')}: ${r.stderr}`);
  return (performance.now() - t0) / 1000;
}

if (cases.has('push')) {
  const bytes = Number(args.mib) * MiB;
  const file = join(work, 'payload.tar.gz');
  writeRandomFile(file, bytes);
  const awsVersion = spawnSync('aws', ['--version'], { encoding: 'utf8' });
  const t = { tvPush: [], awsPush: [], tvPull: [], awsPull: [] };
  for (let r = 0; r < Number(args.rounds); r++) {
    let t0 = performance.now();
    await tv.push(file, `s3://${BUCKET}/tv${r}`, { ...opts, stateDir: join(work, 'state') });
    t.tvPush.push((performance.now() - t0) / 1000);
    t.awsPush.push(aws('s3', 'cp', '--only-show-errors', file, `s3://${BUCKET}/aws${r}/payload.tar.gz`));
    const dest = join(work, `pull${r}`);
    t0 = performance.now();
    await tv.pull(`s3://${BUCKET}/tv${r}/payload.tar.gz`, dest, opts);
    t.tvPull.push((performance.now() - t0) / 1000);
    rmSync(dest, { recursive: true, force: true });
    t.awsPull.push(
      aws('s3', 'cp', '--only-show-errors', `s3://${BUCKET}/aws${r}/payload.tar.gz`, join(work, 'aws-dl')),
    );
    rmSync(join(work, 'aws-dl'), { force: true });
  }
  const m = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, median(v)]));
  results.push = {
    bytes,
    baseline: awsVersion.stdout.trim() || awsVersion.stderr.trim(),
    seconds: t,
    pushMBps: mbps(bytes, m.tvPush),
    awsPushMBps: mbps(bytes, m.awsPush),
    pushRatio: m.awsPush / m.tvPush,
    pullMBps: mbps(bytes, m.tvPull),
    awsPullMBps: mbps(bytes, m.awsPull),
    pullRatio: m.awsPull / m.tvPull,
  };
  process.stdout.write(
    `push ${results.push.pushMBps.toFixed(0)} MB/s vs aws s3 cp ${results.push.awsPushMBps.toFixed(0)} MB/s (×${results.push.pushRatio.toFixed(2)}); ` +
      `pull ${results.push.pullMBps.toFixed(0)} MB/s vs ${results.push.awsPullMBps.toFixed(0)} MB/s (×${results.push.pullRatio.toFixed(2)})\n`,
  );
  rmSync(file, { force: true });
}

if (cases.has('lazy')) {
  const gib = Number(args['lazy-gib']);
  const perTensor = 64 * MiB;
  const n = Math.round((gib * 1024 * MiB) / perTensor);
  const ckpt = join(work, 'lazy', 'model.safetensors');
  mkdirSync(join(work, 'lazy'));
  // Tensors from a generator, streamed by the writer (never the whole checkpoint in memory).
  const tensors = {};
  for (let i = 0; i < n; i++) {
    tensors[`layer.${i}.weight`] = {
      dtype: 'F32',
      shape: [perTensor / 4],
      data: (function* () {
        const b = Buffer.alloc(4 * MiB, i & 0xff);
        for (let o = 0; o < perTensor; o += b.byteLength) yield b;
      })(),
    };
  }
  let t0 = performance.now();
  await tv.saveCheckpoint(ckpt, tensors);
  const saveS = (performance.now() - t0) / 1000;
  t0 = performance.now();
  const pushed = await tv.push(ckpt, `s3://${BUCKET}/lazy`, { ...opts, stateDir: join(work, 'state') });
  const pushS = (performance.now() - t0) / 1000;
  const size = statSync(ckpt).size;
  const cacheDir = join(work, 'cache');
  t0 = performance.now();
  const ck = await tv.loadCheckpoint(pushed.url, { ...opts, cacheDir });
  const openS = (performance.now() - t0) / 1000;
  const afterOpen = ck.transfer;
  const names = [ck.names[1], ck.names[Math.floor(n / 2)], ck.names[n - 2]];
  const firstT0 = performance.now();
  await ck.tensor(names[0]);
  const firstS = (performance.now() - firstT0) / 1000;
  for (const name of names.slice(1)) await ck.tensor(name);
  const threeS = (performance.now() - t0) / 1000;
  const tr = ck.transfer;
  ck.close();
  t0 = performance.now();
  const pulled = await tv.pull(pushed.url, join(work, 'lazy-pull'), opts);
  const pullS = (performance.now() - t0) / 1000;
  results.lazy = {
    fileBytes: size,
    tensors: n,
    tensorBytes: perTensor,
    saveSeconds: saveS,
    pushSeconds: pushS,
    openSeconds: openS,
    openBytes: afterOpen.bytesDown,
    openRequests: afterOpen.requests,
    firstTensorSeconds: openS + firstS,
    threeTensorsSeconds: threeS,
    threeTensorsBytes: tr.bytesDown,
    threeTensorsRequests: tr.requests,
    fullPullSeconds: pullS,
    fullPullBytes: pulled.bytesDownloaded,
  };
  process.stdout.write(
    `lazy: ${gib} GiB checkpoint, open ${(openS * 1000).toFixed(0)} ms (${afterOpen.bytesDown} B, ${afterOpen.requests} requests); ` +
      `first tensor at ${((openS + firstS) * 1000).toFixed(0)} ms; 3 tensors: ${(tr.bytesDown / MiB).toFixed(1)} MiB received ` +
      `(${((100 * tr.bytesDown) / size).toFixed(2)} % of the file) in ${tr.requests} requests, ${(threeS * 1000).toFixed(0)} ms; ` +
      `full pull ${(pulled.bytesDownloaded / MiB).toFixed(0)} MiB in ${pullS.toFixed(1)} s\n`,
  );
}

await server.stop();
rmSync(work, { recursive: true, force: true });
if (args.json) writeFileSync(args.json, `${JSON.stringify(results, null, 2)}\n`);
process.stdout.write(`${JSON.stringify(results)}\n`);
