// kill -9 at random points of saveCheckpoint and of the manager's save + prune: after each kill the path
// loads (fully verified) as the old or the new set, never a torn one, and no temporary file outlives the
// next open. TV_CKPT_KILLS sets the number of kills per scenario (default 50 each, 100 in all).
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
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
