// Crash safety of the ring log, with real child processes. TV_LOG_KILL_RUNS sets the number of SIGKILL
// runs (default 40; `TV_LOG_KILL_RUNS=1000 npx vitest run __test__/logging-crash.test.ts` for a long soak).
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { tempDir } from './helpers/tmp';

const dir = tempDir('tv-logcrash-');
const child = join(__dirname, 'fixtures', 'ring-child.cjs');
const KILL_RUNS = Number(process.env.TV_LOG_KILL_RUNS ?? 40);

interface Rec {
  run: number;
  seq: number;
  msg: string;
  level: string;
}
const records = (path: string) => tv.readRingLog(path).records.map((r) => r.value as Rec);

function runChild(mode: string, file: string): ReturnType<typeof spawnSync> {
  return spawnSync(process.execPath, [child, mode, file], { encoding: 'utf8', timeout: 30_000 });
}

describe('ring log across process death', () => {
  it('an error logged just before process.exit(1) is in the file (and so is the pending record after it)', () => {
    const file = join(dir, 'exit.log');
    const r = runChild('error-exit', file);
    expect(r.status).toBe(1);
    expect(records(file).map((x) => x.msg)).toEqual([
      'before the error',
      'the error line',
      'pending at exit',
    ]);
    // Held until the process ended (the kernel released it); the next writer takes it over at once.
    const next = new tv.RingFileLog(file, { capacityLines: 100 });
    expect(next.stats().records).toBe(3);
    next.close();
    expect(existsSync(`${file}.lock`)).toBe(false);
  });

  it('the lock is held through the exit event, and a record logged by a later exit listener is written', () => {
    const file = join(dir, 'exit-listener.log');
    const r = runChild('exit-listener', file);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('second writer during exit: TV_LOCKED\n');
    expect(records(file).map((x) => x.msg)).toEqual(['pending at exit', 'logged by a later exit listener']);
  });

  it('a log in a worker thread writes its pending records when the worker exits, then lets go of the lock', async () => {
    const { Worker } = await import('node:worker_threads');
    const file = join(dir, 'worker.log');
    const dist = join(__dirname, '..', 'dist', 'index.js');
    const w = new Worker(
      `const { RingFileLog } = require(${JSON.stringify(dist)});
       const log = new RingFileLog(${JSON.stringify(file)}, { capacityLines: 10, flushIntervalMs: 60000 });
       log.info('pending in the worker');
       process.exit(0);`,
      { eval: true },
    );
    await new Promise((r) => w.once('exit', r));
    expect(records(file).map((x) => x.msg)).toEqual(['pending in the worker']);
    // The process goes on: the worker's lock was released (closed), so this one may write the file.
    const log = new tv.RingFileLog(file, { capacityLines: 10 });
    log.close();
    expect(existsSync(`${file}.lock`)).toBe(false);
  });

  it('20 workers terminated while idle (a pool reaping them) all leave their last record (qa22 #4)', async () => {
    const { Worker } = await import('node:worker_threads');
    const dist = join(__dirname, '..', 'dist', 'index.js');
    const code = `const { parentPort, workerData } = require('node:worker_threads');
       const { RingFileLog } = require(${JSON.stringify(dist)});
       const log = new RingFileLog(workerData.file, { capacityLines: 10, flushIntervalMs: 60000 });
       log.info('job started', { id: workerData.id });
       log.info('job finished', { id: workerData.id });
       // Back in its event loop (the next turn), the worker reports it is idle, and then sits there.
       setImmediate(() => parentPort.postMessage(log.stats()));
       setInterval(() => {}, 1000); // idle, like a pool's worker`;
    const files = Array.from({ length: 20 }, (_, i) => join(dir, `terminated-${i}.log`));
    const workers = files.map((file, id) => new Worker(code, { eval: true, workerData: { file, id } }));
    const stats = await Promise.all(
      workers.map(
        (w) =>
          new Promise((res, rej) => {
            w.once('message', res);
            w.once('error', rej);
          }),
      ),
    );
    // The two records of the turn that logged them went to the file in one write, at the turn's end.
    const writes = (stats as { pending: number; appends: number; compactions: number }[]).map((s) => ({
      pending: s.pending,
      writes: s.appends + s.compactions,
    }));
    expect(writes).toEqual(files.map(() => ({ pending: 0, writes: 1 })));
    // terminate() runs no `exit` event in the worker (the records were lost when they waited for it).
    await Promise.all(workers.map((w) => w.terminate()));
    for (const [id, file] of files.entries()) {
      expect(records(file).map((x) => [x.msg, (x as Rec & { id: number }).id])).toEqual([
        ['job started', id],
        ['job finished', id],
      ]);
      // Its lock file stays behind (as after SIGKILL); the next writer takes it over.
      const next = new tv.RingFileLog(file, { capacityLines: 10 });
      expect(next.stats().records).toBe(2);
      next.close();
    }
  });

  it('an idle process with only pending records exits at once (the timer is unref’d) and writes them', () => {
    const file = join(dir, 'idle.log');
    const r = runChild('idle-exit', file);
    expect(r.error).toBeUndefined(); // not killed by the 30 s timeout: the 60 s timer did not hold it
    expect(r.status).toBe(0);
    expect(records(file).map((x) => x.msg)).toEqual(['pending when the loop ends']);
  });

  it('an uncaught exception still writes pending records', () => {
    const file = join(dir, 'uncaught.log');
    const r = runChild('uncaught', file);
    expect(r.status).not.toBe(0);
    expect(records(file).map((x) => x.msg)).toEqual(['pending before the throw']);
  });

  it('a write that fails at exit is reported on stderr (not a warning that would never print)', () => {
    const folder = join(dir, 'gone');
    const r = runChild('exit-write-fails', folder);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/^tensorvault: ring log: .*gone.* \[TV_NOT_FOUND\]\n$/);
  });

  it('a second process is refused with TV_LOCKED while the first lives, and takes over once it is killed', async () => {
    const file = join(dir, 'locked.log');
    const holder = spawn(process.execPath, [child, 'hold', file], { stdio: ['ignore', 'pipe', 'inherit'] });
    await waitReady(holder);
    try {
      let err: unknown;
      try {
        new tv.RingFileLog(file);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(tv.TensorVaultError);
      expect((err as tv.TensorVaultError).code).toBe('TV_LOCKED');
      expect((err as tv.TensorVaultError).context.pid).toBe(holder.pid);
    } finally {
      holder.kill('SIGKILL');
      await new Promise((r) => holder.once('exit', r));
    }
    const log = new tv.RingFileLog(file, { flushIntervalMs: 0 });
    log.info('taken over');
    log.close();
    expect(records(file).map((x) => x.msg)).toEqual(['held', 'taken over']);
  });

  it(`SIGKILL at random moments (${KILL_RUNS} runs on one file): always parses, nothing torn kept, only pending lost`, async () => {
    const file = join(dir, 'storm.log');
    let seed = 20261122;
    const rnd = (k: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % k;
    };
    let tornSeen = 0;
    let totalConfirmed = 0;
    for (let run = 1; run <= KILL_RUNS; run++) {
      const c = spawn(process.execPath, [child, 'storm', file, String(run)], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      c.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
      });
      await waitReady(c);
      await new Promise((r) => setTimeout(r, rnd(120)));
      c.kill('SIGKILL');
      const [, signal] = (await new Promise((r) => c.once('exit', (...a) => r(a)))) as [
        number | null,
        string | null,
      ];
      expect(signal).toBe('SIGKILL');
      const confirmed = [...out.matchAll(/^E (\d+)$/gm)].map((m) => Number(m[1]));
      const lastConfirmed = confirmed.at(-1) ?? 0;
      totalConfirmed += confirmed.length;

      // The file parses: no damaged complete line; at most an unterminated tail (a cut write).
      const contents = tv.readRingLog(file);
      expect(contents.skipped, `run ${run}`).toBe(0);
      if (contents.tornTail) tornSeen++;
      const recs = contents.records.map((r) => r.value as Rec);
      expect(recs.length).toBeLessThanOrEqual(300);
      // Records are in order; within one run, consecutive (nothing lost in the middle).
      for (let i = 1; i < recs.length; i++) {
        const a = recs[i - 1] as Rec;
        const b = recs[i] as Rec;
        if (a.run === b.run) expect(b.seq, `run ${run} at ${i}`).toBe(a.seq + 1);
        else expect(b.run, `run ${run} at ${i}`).toBeGreaterThan(a.run);
      }
      // Every confirmed error (and so everything before it) is there: only pending records were lost.
      const mine = recs.filter((r) => r.run === run);
      const maxSeq = mine.at(-1)?.seq ?? 0;
      expect(maxSeq, `run ${run}: last confirmed error ${lastConfirmed}`).toBeGreaterThanOrEqual(
        lastConfirmed,
      );
      if (lastConfirmed > 0) {
        const e = mine.find((r) => r.seq === lastConfirmed);
        expect(e?.level).toBe('error');
        expect(e?.msg).toBe(
          lastConfirmed % 5 === 0 ? `multi\nline ${lastConfirmed}` : `record ${lastConfirmed}`,
        );
      }
    }
    // Sanity of the test itself: children did log and confirm errors before being killed.
    expect(totalConfirmed).toBeGreaterThan(KILL_RUNS);
    // A clean open + close after all that leaves one well-formed file and no temp or lock files.
    const log = new tv.RingFileLog(file, { capacityLines: 300, compactionSlack: 40 });
    log.close();
    const after = tv.readRingLog(file);
    expect(after.tornTail).toBe(false);
    expect(readdirSync(dir).filter((f) => f.includes('storm'))).toEqual(['storm.log']);
    console.log(
      `SIGKILL runs: ${KILL_RUNS}, confirmed errors: ${totalConfirmed}, torn tails seen: ${tornSeen}`,
    );
  });
});

function waitReady(c: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString();
      if (buf.startsWith('R\n')) {
        c.stdout?.off('data', onData);
        resolve();
      }
    };
    c.stdout?.on('data', onData);
    c.once('exit', (code) => reject(new Error(`child exited (${code}) before it was ready`)));
  });
}
