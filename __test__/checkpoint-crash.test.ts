// kill -9 at random points of saveCheckpoint and of the manager's save + prune: after each kill the path
// loads (fully verified) as the old or the new set, never a torn one, and no temporary file outlives the
// next open. TV_CKPT_KILLS sets the number of kills per scenario (default 50 each, 100 in all).
import { spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sweepHooks } from '../dist/checkpoint/commit.js';
import * as tv from '../dist/index.js';
import { native } from '../dist/native/index.js';
import { rng } from './helpers/random';
import { tempDir } from './helpers/tmp';

const child = join(__dirname, 'fixtures', 'checkpoint-kill-child.cjs');
const kills = Number(process.env.TV_CKPT_KILLS ?? 50);

/** Run the child until it has saved at least once, then kill -9 it after a random delay. */
function runAndKill(args: string[], delayMs: number, out: string[] = []): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let last = -1;
    let timer: NodeJS.Timeout | undefined;
    let err = '';
    p.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    p.stdout.on('data', (d: Buffer) => {
      out.push(d.toString());
      const m = [...d.toString().matchAll(/saved (\d+)/g)].at(-1);
      if (m) last = Number(m[1]);
      if (timer === undefined) timer = setTimeout(() => p.kill('SIGKILL'), delayMs);
    });
    p.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolve(last);
      else reject(new Error(`child exited ${code}: ${err}`));
    });
  });
}

async function check(path: string, lastSaved: number): Promise<number> {
  const c = await tv.loadCheckpoint(path, { verify: 'full' });
  try {
    const gen = c.metadata.gen as number;
    // the old set (the last one reported saved) or the one being saved when the kill came
    expect([lastSaved, lastSaved + 1]).toContain(gen);
    const w = (await c.tensor('w')).data as Float32Array;
    const b = (await c.tensor('b')).data as Int32Array;
    expect(w.every((x) => x === gen)).toBe(true);
    expect(b.length).toBe(1000 + (gen % 7));
    expect(b.every((x) => x === gen)).toBe(true);
    return gen;
  } finally {
    c.close();
  }
}

describe('kill -9 during saves', () => {
  it(`saveCheckpoint: ${kills} kills, always the old or the new set`, async () => {
    const dir = tempDir('tv-ckpt-kill-');
    const path = join(dir, 'model.safetensors');
    const random = rng(0xc0ffee);
    let gen = 0;
    let interrupted = 0;
    for (let i = 0; i < kills; i++) {
      const last = await runAndKill([path, 'save', String(gen)], Math.floor(random() * 120));
      // evidence that the kill landed inside a save: temporaries or a commit record before the load
      if (readdirSync(dir).some((f) => f.endsWith('.tmp') || f.endsWith('.ckpt-commit'))) interrupted++;
      gen = await check(path, last);
      // the load cleaned up: no temporaries, no commit record, no lock left
      expect(readdirSync(dir).filter((f) => f.endsWith('.tmp') || f.endsWith('.ckpt-commit'))).toEqual([]);
    }
    expect(interrupted).toBeGreaterThan(kills / 4);
  });

  it(`saveCheckpoint with the wide parity (v2, from the buffers): ${Math.ceil(kills / 2)} kills`, async () => {
    const dir = tempDir('tv-ckpt-kill-wide-');
    const path = join(dir, 'model.safetensors');
    const random = rng(0x5eed);
    let gen = 0;
    let interrupted = 0;
    const out: string[] = [];
    for (let i = 0; i < Math.ceil(kills / 2); i++) {
      const last = await runAndKill([path, 'wide', String(gen)], Math.floor(random() * 400), out);
      if (readdirSync(dir).some((f) => f.endsWith('.tmp') || f.endsWith('.ckpt-commit'))) interrupted++;
      gen = await check(path, last);
      // the parity set committed with the weights is the one that protects them
      const v = await tv.verify(path, { sidecar: `${path}.tvecc` });
      expect(v.status).toBe('intact');
      expect(readdirSync(dir).filter((f) => f.endsWith('.tmp') || f.endsWith('.ckpt-commit'))).toEqual([]);
    }
    expect(interrupted).toBeGreaterThan(kills / 8);
    // the saves were the wide code: k + m above one GF(2^8) stripe's 255
    const [k, m] = (/ecc tvecc (\d+)\+(\d+)/.exec(out.join('')) ?? []).slice(1).map(Number);
    expect((k as number) + (m as number)).toBeGreaterThan(255);
  });

  it(`CheckpointManager save + prune: ${kills} kills, every listed checkpoint verifies`, async () => {
    const dir = tempDir('tv-ckpt-kill-run-');
    const random = rng(0xbadcafe);
    let gen = 0;
    for (let i = 0; i < kills; i++) {
      const last = await runAndKill([dir, 'manager', String(gen)], Math.floor(random() * 120));
      const m = new tv.CheckpointManager(dir, { keepLast: 2, keepBest: 1, metric: 'loss' });
      const steps = m.list().map((c) => c.step);
      expect(steps.length).toBeGreaterThan(0);
      for (const s of steps) {
        const c = await tv.loadCheckpoint(m.pathOf(s), { verify: 'full' });
        expect(c.metadata.gen).toBe(s);
        expect(((await c.tensor('w')).data as Float32Array).every((x) => x === s)).toBe(true);
        c.close();
      }
      gen = Math.max(last, ...steps);
      expect(readdirSync(dir).filter((f) => f.endsWith('.tmp') || f.endsWith('.ckpt-commit'))).toEqual([]);
    }
  });
});

describe('a save stopped inside this process (a worker thread terminated mid-save)', () => {
  it("its temporaries (this process's PID, unlocked) go at the next save or load; a locked one stays until it is let go", async () => {
    // Regression: the sweeps kept every temporary whose PID was alive, and this process's own is: a
    // worker terminated during saveCheckpoint left its temporaries (as large as the weights) for the
    // rest of the process's life. A live writer holds its temp's flock (per open file description, so
    // in any thread of this process): a temp of our PID whose lock is free has no writer left.
    const dir = tempDir('tv-ckpt-own-');
    const path = join(dir, 'm.safetensors');
    await tv.saveCheckpoint(path, { w: new Float32Array(1000).fill(1) }, { ecc: 'low' });
    const pid = process.pid;
    const stale = [
      `.m.safetensors.${pid}.aa11.tmp`,
      `.m.safetensors.tvecc.${pid}.bb22.tmp`,
      `.m.safetensors.tvob.${pid}.cc33.tmp`,
      `..m.safetensors.${pid}.dd44.tmp.${pid}.7.tmp`,
    ];
    for (const n of stale) writeFileSync(join(dir, n), Buffer.alloc(1 << 20, 0x11));
    // A live writer's temp in this process: its lock held through another descriptor.
    const live = `.m.safetensors.${pid}.ee55.tmp`;
    writeFileSync(join(dir, live), Buffer.alloc(4096, 0x22));
    const fd = openSync(join(dir, live), 'r');
    try {
      expect(native().tryLockFd(fd, join(dir, live))).toBe(true);
      // Another file's temp of this PID is none of the set's business.
      writeFileSync(join(dir, `.other.bin.${pid}.ff66.tmp`), 'x');
      await tv.saveCheckpoint(path, { w: new Float32Array(1000).fill(2) }, { ecc: 'low' });
      expect(
        readdirSync(dir)
          .filter((f) => f.endsWith('.tmp'))
          .sort(),
      ).toEqual([live, `.other.bin.${pid}.ff66.tmp`].sort());
    } finally {
      closeSync(fd); // the writer ends: its lock is gone
    }
    const c = await tv.loadCheckpoint(path);
    expect((await c.tensor('w')).data[0]).toBe(2);
    c.close();
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([`.other.bin.${pid}.ff66.tmp`]);
  });

  it("a temporary whose lock is taken between the sweep's probe and its unlink is kept", async () => {
    // The sweep probes an own-PID temp's lock when it lists the set's dead temporaries, and removes it
    // later: a writer (another thread of this process) that locked it in between must keep its file.
    // The lock is taken again and held across the unlink (removeUnlockedTemp), so the sweep sees it.
    const dir = tempDir('tv-ckpt-own-race-');
    const path = join(dir, 'm.safetensors');
    await tv.saveCheckpoint(path, { w: new Float32Array(1000).fill(1) }, { ecc: 'low' });
    const temp = join(dir, `.m.safetensors.${process.pid}.ab12.tmp`);
    writeFileSync(temp, Buffer.alloc(1 << 16, 0x33)); // unlocked: dead at the probe
    let fd: number | undefined;
    let seen: readonly string[] = [];
    sweepHooks.afterScan = (dead) => {
      seen = dead;
      if (dead.includes(temp) && fd === undefined) {
        fd = openSync(temp, 'r'); // its writer takes the lock now (its own open file description)
        expect(native().tryLockFd(fd, temp)).toBe(true);
      }
    };
    try {
      await tv.saveCheckpoint(path, { w: new Float32Array(1000).fill(2) }, { ecc: 'low' });
      expect(seen).toContain(temp); // the probe found it unlocked (the hook runs in a test build)
      expect(fd).toBeDefined();
      expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([basename(temp)]);
    } finally {
      delete sweepHooks.afterScan;
      if (fd !== undefined) closeSync(fd); // the writer ends
    }
    await tv.saveCheckpoint(path, { w: new Float32Array(1000).fill(3) }, { ecc: 'low' });
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});
