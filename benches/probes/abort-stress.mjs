#!/usr/bin/env node
// Probe: every long operation of the API aborted at random instants, many times over, with a watchdog.
// An abort must settle the promise (rejected with TV_ABORTED, or resolved when the work had already
// ended) within seconds, and leave the files in a state the next call accepts: a protected file still
// verifies, a damaged one still repairs to its original bytes, a checkpoint path holds the old or the new
// set. CI's vitest found `hashFile` hanging once in about 200 aborts (2026-12-04: the reader thread waited
// for a buffer that the stopped hasher had dropped); this probe hunts for the same kind of race in
// every job, far more often than a test can afford to.
//   node benches/probes/abort-stress.mjs [--n 200] [--mib 64] [--only hashFile,protect,...] [--dir DIR]
// Prints, per operation, the outcomes (aborted / finished / other error codes) and the slowest settle
// after the abort; exits 1 on an unexpected outcome and kills itself (exit 3, SIGKILL: a hung native
// worker blocks a normal exit) when an operation does not settle within 30 s.
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { arg, loadBuild } from '../lib/cli.mjs';

const tv = loadBuild(process.env.TVDIST);
const n = Number(arg('n', 200));
const mib = Number(arg('mib', 64));
const only = arg('only', undefined)?.split(',');
const dir = arg('dir', '/dev/shm/tv-abort-stress');
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });

const sha = (path) => createHash('sha256').update(readFileSync(path)).digest('hex');
const bytes = mib << 20;
const data = join(dir, 'data.bin');
{
  const fd = openSync(data, 'w');
  const block = randomBytes(1 << 20);
  for (let i = 0; i < mib; i++) {
    block.writeUInt32LE(i, 0);
    writeSync(fd, block);
  }
  closeSync(fd);
}
const dataSha = sha(data);
const buffer = readFileSync(data);
const tensors = () => ({
  w: { dtype: 'F32', shape: [bytes / 4], data: new Float32Array(buffer.buffer, 0, bytes / 4) },
});

/** Flip one byte of `path` at `at` (a damage that every parity level repairs). */
function flip(path, at) {
  const fd = openSync(path, 'r+');
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, at);
  b[0] ^= 0x5a;
  writeSync(fd, b, 0, 1, at);
  closeSync(fd);
}

/** `protect` in `format` to its own sidecar; an aborted one leaves the previous sidecar or none, never a half-written one. */
function protectCase(format) {
  const sidecar = join(dir, `${format}.tvecc`);
  return {
    run: (signal) => tv.protect(data, { signal, level: 'medium', format, sidecar }),
    after: async () => {
      if (!existsSync(sidecar)) return;
      const r = await tv.verify(data, { sidecar });
      if (r.status !== 'intact') throw new Error(`${format} sidecar after abort: ${r.status}`);
    },
  };
}

/**
 * The check after a job that writes `path`: an aborted write leaves the previous complete file or none
 * (then `check(path)` must pass); a finished one leaves a file.
 */
function afterWrite(path, check) {
  return async (outcome) => {
    if (existsSync(path)) await check(path);
    else if (outcome === 'finished') throw new Error(`finished, but no ${path}`);
  };
}

// Each case: `run(signal)` starts the operation; `after(outcome)` checks the state it left (may throw).
const cases = {
  hashFile: {
    run: (signal) => tv.hashFile(data, { signal }),
  },
  hashFileTree: {
    run: (signal) => tv.hashFile(data, { signal, tree: true, chunkSize: 1 << 20 }),
  },
  protectV1: protectCase('v1'),
  protectV2: protectCase('v2'),
  verifyV2: {
    setup: () => tv.protect(data, { level: 'medium', format: 'v2', sidecar: join(dir, 'vv2.tvecc') }),
    run: (signal) => tv.verify(data, { signal, sidecar: join(dir, 'vv2.tvecc') }),
  },
  repairV2: {
    setup: async () => {
      await tv.protect(data, { level: 'medium', format: 'v2', sidecar: join(dir, 'rv2.tvecc') });
      copyFileSync(data, join(dir, 'r.bin'));
      copyFileSync(join(dir, 'rv2.tvecc'), join(dir, 'r.bin.tvecc'));
    },
    before: () => {
      for (const at of [17, bytes >> 1, bytes - 5]) flip(join(dir, 'r.bin'), at);
      // And a byte of the sidecar's header copy A (mended in place by the repair).
      flip(join(dir, 'r.bin.tvecc'), 20);
    },
    run: (signal) => tv.repair(join(dir, 'r.bin'), { signal }),
    after: async () => {
      // Whatever the abort left, a repair without abort gives back the original bytes and sidecar.
      const r = await tv.verify(join(dir, 'r.bin'));
      if (r.status !== 'intact') await tv.repair(join(dir, 'r.bin'));
      if (sha(join(dir, 'r.bin')) !== dataSha) throw new Error('repair after an abort: wrong bytes');
      if (sha(join(dir, 'r.bin.tvecc')) !== sha(join(dir, 'rv2.tvecc')))
        throw new Error('repair after an abort: a different sidecar');
    },
  },
  saveSafetensors: {
    run: (signal) => tv.saveSafetensors(join(dir, 's.safetensors'), tensors(), { signal }),
    after: afterWrite(join(dir, 's.safetensors'), async (p) => {
      const f = await tv.openSafetensors(p);
      const same = Buffer.from(f.tensor('w').bytes).equals(buffer);
      f.close();
      if (!same) throw new Error('safetensors after abort: wrong bytes');
    }),
  },
  saveCheckpoint: {
    run: (signal) =>
      tv.saveCheckpoint(join(dir, 'ck', 'model.safetensors'), tensors(), { signal, ecc: 'medium' }),
    after: afterWrite(join(dir, 'ck', 'model.safetensors'), async (p) => {
      const r = await tv.verifyCheckpoint(p);
      if (r.status !== 'intact') throw new Error(`checkpoint after abort: ${r.status}`);
    }),
  },
  repairCheckpoint: {
    setup: () => tv.saveCheckpoint(join(dir, 'ck2', 'model.safetensors'), tensors(), { ecc: 'medium' }),
    before: () => flip(join(dir, 'ck2', 'model.safetensors'), bytes >> 1),
    run: (signal) => tv.repairCheckpoint(join(dir, 'ck2', 'model.safetensors'), { signal }),
    after: async () => {
      // Whatever the abort left, a repair without abort gives back a checkpoint that verifies.
      const p = join(dir, 'ck2', 'model.safetensors');
      await tv.repairCheckpoint(p);
      const r = await tv.verifyCheckpoint(p);
      if (r.status !== 'intact') throw new Error(`checkpoint repair after abort: ${r.status}`);
    },
  },
  writeFold: {
    run: (signal) =>
      tv.writeFold(join(dir, 'm.fold'), [{ name: 'torch_state', ctype: 'TSAV', data: buffer }], {
        signal,
        ecc: 'rs(16)',
      }),
    after: afterWrite(join(dir, 'm.fold'), async (p) => {
      const r = await tv.verifyFold(p);
      if (r.status !== 'intact') throw new Error(`fold after abort: ${r.status}`);
    }),
  },
  repairFold: {
    setup: () =>
      tv.writeFold(join(dir, 'r.fold'), [{ name: 'torch_state', ctype: 'TSAV', data: buffer }], {
        ecc: 'rs(16)',
        compress: 'none',
      }),
    before: () => flip(join(dir, 'r.fold'), bytes >> 1),
    run: (signal) => tv.repairFold(join(dir, 'r.fold'), { signal }),
    after: async () => {
      const p = join(dir, 'r.fold');
      if ((await tv.verifyFold(p)).status !== 'intact') await tv.repairFold(p);
      const r = await tv.verifyFold(p);
      if (r.status !== 'intact')
        throw new Error(`fold repair after abort: ${JSON.stringify(r).slice(0, 300)}`);
    },
  },
  rsEncode: {
    run: (signal) => tv.eccFromName('rs(32)').encode(buffer.subarray(0, 16 << 20), { signal }),
  },
  gzipMembers: {
    run: (signal) => tv.gzipMembers(buffer, { signal }),
  },
};

let failed = false;
for (const [name, c] of Object.entries(cases)) {
  if (only && !only.includes(name)) continue;
  await c.setup?.();
  // One run without abort sizes the random delays.
  c.before?.();
  let t0 = performance.now();
  await c.run(undefined);
  const full = performance.now() - t0;
  await c.after?.('finished');
  const counts = {};
  let slowest = 0;
  for (let i = 0; i < n; i++) {
    c.before?.();
    const ac = new AbortController();
    const delay = Math.random() * full * 1.1;
    t0 = performance.now();
    const p = c.run(ac.signal);
    let abortedAt = 0;
    const timer = setTimeout(() => {
      abortedAt = performance.now();
      ac.abort(new Error('stop'));
    }, delay);
    const watchdog = setTimeout(() => {
      console.log(`HANG ${name} iteration ${i} (abort after ${delay.toFixed(1)} ms of ${full.toFixed(1)})`);
      process.kill(process.pid, 'SIGKILL');
    }, 30_000);
    const outcome = await p.then(
      () => 'finished',
      (e) => (e?.code === 'TV_ABORTED' && e.name === 'AbortError' ? 'aborted' : `${e?.code ?? e}`),
    );
    clearTimeout(timer);
    clearTimeout(watchdog);
    if (abortedAt > 0) slowest = Math.max(slowest, performance.now() - abortedAt);
    counts[outcome] = (counts[outcome] ?? 0) + 1;
    if (outcome !== 'finished' && outcome !== 'aborted') failed = true;
    // A job that settled, aborted or not, leaves no temporary file behind (a crash may; an abort not).
    const temps = readdirSync(dir, { recursive: true }).filter((f) => String(f).endsWith('.tmp'));
    if (temps.length > 0) {
      failed = true;
      console.log(`${name} iteration ${i} (${outcome}): temporary files left: ${temps.join(', ')}`);
      for (const t of temps) rmSync(join(dir, String(t)), { force: true });
    }
    try {
      await c.after?.(outcome);
    } catch (e) {
      failed = true;
      console.log(`${name} iteration ${i}: ${e.message}`);
    }
  }
  console.log(
    `${name.padEnd(16)} ${n} runs of ${full.toFixed(1)} ms: ${JSON.stringify(counts)}; slowest settle after the abort ${slowest.toFixed(1)} ms`,
  );
}
rmSync(dir, { recursive: true, force: true });
writeFileSync(1, failed ? 'FAILED\n' : 'ok\n');
process.exit(failed ? 1 : 0);
