// CheckpointManager: queued saves, keepLast / keepBest retention, latest(), restore() with fall-back.
import { existsSync, lstatSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import * as tv from '../dist/index.js';
import { xorAt } from './helpers/bytes';
import { tempDir } from './helpers/tmp';

const t = (v: number) => ({ w: new Float32Array(1000).fill(v) });

describe('CheckpointManager', () => {
  it('keeps the last N and the best K by a metric', async () => {
    const dir = tempDir('tv-mgr-');
    const m = new tv.CheckpointManager(dir, { keepLast: 2, keepBest: 2, metric: 'loss', mode: 'min' });
    const losses = [5, 1, 4, 0.5, 3, 6, 7];
    // saves are queued: start them all without awaiting, in order
    const all = losses.map((loss, i) => m.save(i + 1, t(i + 1), { metrics: { loss } }));
    await Promise.all(all);
    // last two: 6, 7; best two: step 4 (0.5), step 2 (1)
    expect(m.list().map((c) => c.step)).toEqual([2, 4, 6, 7]);
    expect(m.latest()).toBe(7);
    expect(m.list().find((c) => c.step === 4)?.metrics).toEqual({ loss: 0.5 });
    const max = new tv.CheckpointManager(dir, { keepLast: 0, keepBest: 2, metric: 'loss', mode: 'max' });
    expect([...max.kept()].sort()).toEqual([6, 7]);
    const min = new tv.CheckpointManager(dir, { keepLast: 0, keepBest: 1, metric: 'loss' });
    expect([...min.kept()]).toEqual([4]);
  });

  it('pruning a step that is a symlink removes the link, never the checkpoint it names', async () => {
    // Regression: since checkpoint paths follow symlinks (a save through a link replaces its target), the
    // prune of a step whose file was a link deleted the target's whole set (a checkpoint shared with
    // another run, or kept outside the run folder) and left the link dangling.
    const dir = tempDir('tv-mgr-link-');
    const elsewhere = join(tempDir('tv-mgr-link-shared-'), 'shared.safetensors');
    await tv.saveCheckpoint(elsewhere, t(42), { ecc: 'medium', metadata: { metrics: { loss: 9 } } });
    const m = new tv.CheckpointManager(dir, { keepLast: 2 });
    symlinkSync(elsewhere, m.pathOf(1));
    expect(m.list().map((c) => c.step)).toEqual([1]);
    await m.save(2, t(2));
    await m.save(3, t(3));
    expect(m.list().map((c) => c.step)).toEqual([2, 3]);
    expect(lstatSync(m.pathOf(1), { throwIfNoEntry: false })).toBeUndefined();
    for (const f of [elsewhere, `${elsewhere}.meta.json`, `${elsewhere}.tvecc`])
      expect(existsSync(f), f).toBe(true);
    expect((await tv.verifyCheckpoint(elsewhere)).status).toBe('intact');
  });

  it('a metric changed on disk does not decide what is pruned; a checkpoint with a damaged sidecar is kept, not deleted', async () => {
    // Regression: the metrics were read from the sidecar without checking its seal, so one flipped digit
    // (bit rot, an edit) in a worse checkpoint's metrics made it "best" and the real best was deleted;
    // and a checkpoint whose sidecar was damaged was pruned with its weights.
    const { subscribe, unsubscribe } = await import('node:diagnostics_channel');
    const dir = tempDir('tv-mgr-forged-');
    const m = new tv.CheckpointManager(dir, { keepLast: 1, keepBest: 1, metric: 'loss', mode: 'min' });
    await m.save(1, t(1), { metrics: { loss: 0.1 } });
    await m.save(2, t(2), { metrics: { loss: 5 } });
    const meta = `${m.pathOf(2)}.meta.json`;
    const doc = JSON.parse(readFileSync(meta, 'utf8'));
    expect(doc.metadata.metrics.loss).toBe(5);
    doc.metadata.metrics.loss = 0.01;
    writeFileSync(meta, JSON.stringify(doc, null, 2));
    expect(m.list().map((c) => [c.step, c.sidecar])).toEqual([
      [1, 'sealed'],
      [2, 'damaged'],
    ]);
    const events: Record<string, unknown>[] = [];
    const on = (e: unknown) => events.push(e as Record<string, unknown>);
    subscribe('tensorvault:checkpoint', on);
    try {
      await m.save(3, t(3), { metrics: { loss: 9 } });
    } finally {
      unsubscribe('tensorvault:checkpoint', on);
    }
    // Step 1 is still the best (step 2's forged 0.01 is not trusted), step 3 the last; step 2 is kept
    // because its sidecar is damaged, and named in a `damaged` event.
    expect(m.list().map((c) => c.step)).toEqual([1, 2, 3]);
    expect(events).toContainEqual(
      expect.objectContaining({ event: 'damaged', path: m.pathOf(2), part: 'sidecar', op: 'prune' }),
    );
    // A sidecar that is not JSON at all: kept too; an intact worse one is pruned as before.
    writeFileSync(meta, '{ not json');
    await m.save(4, t(4), { metrics: { loss: 7 } });
    expect(m.list().map((c) => c.step)).toEqual([1, 2, 4]);
  });

  it('latest(), restore() and a save that prunes by keepLast do not read every kept sidecar', async () => {
    // Regression (2026-12-04): each of them listed the run with every sidecar read and its seal
    // checked, so a run keeping many checkpoints paid that per save and per latest(): saves grew
    // from 6.4 ms with 100 kept to 17 ms with 400, latest() took 12 ms. Now only what a prune deletes
    // is read (and, with keepBest, the ranking reuses what it read while the files are unchanged).
    const { native } = await import('../dist/native/index.js');
    const n = native() as unknown as Record<string, (...a: unknown[]) => unknown>;
    const real = n.checkpointReadSidecar as (...a: unknown[]) => unknown;
    let reads = 0;
    n.checkpointReadSidecar = (...a: unknown[]) => {
      reads++;
      return real(...a);
    };
    try {
      const dir = tempDir('tv-mgr-reads-');
      const m = new tv.CheckpointManager(dir, { keepLast: 20 });
      for (let s = 1; s <= 20; s++) await m.save(s, { w: new Float32Array([s]) });
      reads = 0;
      expect(m.latest()).toBe(20);
      expect(reads).toBe(0);
      await m.save(21, { w: new Float32Array([21]) }); // prunes step 1: its sidecar is checked first
      expect(reads).toBeLessThanOrEqual(2);
      expect(m.list().map((c) => c.step)).toEqual(Array.from({ length: 20 }, (_, i) => i + 2));
      reads = 0;
      const r = await m.restore();
      expect(r.report.step).toBe(21);
      expect((await r.checkpoint.tensor('w')).data[0]).toBe(21);
      r.checkpoint.close();
      expect(reads).toBeLessThanOrEqual(1); // the restored checkpoint's own load
      // keepBest: a second prune of an unchanged run reads no sidecar again for the ranking.
      const best = new tv.CheckpointManager(dir, { keepLast: 20, keepBest: 1, metric: 'loss' });
      await best.prune();
      reads = 0;
      await best.prune();
      expect(reads).toBe(0);
    } finally {
      n.checkpointReadSidecar = real;
    }
  });

  it('list() reads the run folder once, not once per checkpoint', async () => {
    // Regression: every set was checked for recovery on its own, each check a scan of the whole folder,
    // so list() (twice per save) grew with the square of the run's checkpoints: 1.7 s for 1,000
    // (benches/probes/manager-list.mjs). Only sets with a commit record or a temporary are checked now.
    const { createRequire } = await import('node:module');
    const fs = createRequire(__filename)('node:fs') as typeof import('node:fs');
    const dir = tempDir('tv-mgr-list-');
    const m = new tv.CheckpointManager(dir, { keepLast: 100 });
    for (let s = 1; s <= 30; s++) await m.save(s, { w: new Float32Array(4) });
    const spy = vi.spyOn(fs, 'readdirSync');
    try {
      expect(m.list()).toHaveLength(30);
      expect(spy.mock.calls.filter(([d]) => String(d) === dir).length).toBeLessThanOrEqual(2);
    } finally {
      spy.mockRestore();
    }
    // A set with a dead writer's temporary is still recovered by list().
    const dead = 2 ** 22 + 99; // above pid_max's default: never a live process
    const { existsSync, writeFileSync: write } = fs;
    const temp = `${dir}/.step-000000007.safetensors.${dead}.ab.tmp`;
    write(temp, 'leftover');
    expect(m.list()).toHaveLength(30);
    expect(existsSync(temp)).toBe(false);
  });

  it('a prune that fails after the save does not reject the save (its step is on disk); it is retried after the next', async () => {
    // Regression: save() awaited the prune and rejected with its error (a full disk refuses the prune's
    // commit record), so a caller took a saved step as not saved. Here a folder where step 1's commit
    // record would go makes the prune fail.
    const { mkdirSync, rmdirSync } = await import('node:fs');
    const { subscribe, unsubscribe } = await import('node:diagnostics_channel');
    const dir = tempDir('tv-mgr-prune-fails-');
    const m = new tv.CheckpointManager(dir, { keepLast: 1 });
    await m.save(1, t(1));
    mkdirSync(`${m.pathOf(1)}.ckpt-commit`);
    const events: Record<string, unknown>[] = [];
    const on = (e: unknown) => events.push(e as Record<string, unknown>);
    subscribe('tensorvault:checkpoint', on);
    try {
      const r = await m.save(2, t(2));
      expect(r.path).toBe(m.pathOf(2));
    } finally {
      unsubscribe('tensorvault:checkpoint', on);
    }
    expect(events).toContainEqual(expect.objectContaining({ event: 'failed', op: 'prune', dir }));
    const c = await tv.loadCheckpoint(m.pathOf(2), { verify: 'full' });
    expect(((await c.tensor('w')).data as Float32Array)[0]).toBe(2);
    c.close();
    rmdirSync(`${m.pathOf(1)}.ckpt-commit`);
    await m.save(3, t(3));
    expect(m.list().map((x) => x.step)).toEqual([3]);
  });

  it('restore() falls back to the newest checkpoint that verifies, with a report', async () => {
    const dir = tempDir('tv-mgr-restore-');
    const m = new tv.CheckpointManager(dir, { keepLast: 5 });
    for (let s = 1; s <= 3; s++) await m.save(s, t(s));
    // damage step 3 beyond repair (no parity) and break step 2's sidecar
    const p3 = m.pathOf(3);
    const b = readFileSync(p3);
    xorAt(b, b.length - 4, 0xff);
    writeFileSync(p3, b);
    writeFileSync(`${m.pathOf(2)}.meta.json`, '{ not json');
    const { checkpoint, report } = await m.restore();
    expect(report.step).toBe(1);
    expect(report.skipped.map((s) => [s.step, s.code])).toEqual([
      [3, 'TV_CHECKPOINT_INTEGRITY'],
      [2, 'TV_CHECKPOINT_INVALID'],
    ]);
    expect(((await checkpoint.tensor('w')).data as Float32Array)[0]).toBe(1);
    checkpoint.close();
    const r1 = await m.restore(1);
    expect(r1.report.step).toBe(1);
    r1.checkpoint.close();
    await expect(m.restore(9)).rejects.toMatchObject({ code: 'TV_NOT_FOUND' });
  });

  it('restore() repairs a damaged checkpoint from parity instead of skipping it', async () => {
    const dir = tempDir('tv-mgr-repair-');
    const m = new tv.CheckpointManager(dir, { keepLast: 5, ecc: 'medium' });
    await m.save(1, t(1));
    await m.save(2, t(2));
    const p = m.pathOf(2);
    const b = readFileSync(p);
    xorAt(b, b.length - 100, 0xff);
    writeFileSync(p, b);
    const { checkpoint, report } = await m.restore();
    expect(report).toEqual({ step: 2, skipped: [] });
    expect(checkpoint.report.status).toBe('repaired');
    checkpoint.close();
  });

  it('save() into a run folder that is a regular file: TV_NOT_A_FILE, the file untouched (qa22 #1)', async () => {
    const file = join(tempDir('tv-mgr-file-'), 'run');
    writeFileSync(file, 'x');
    // Before: a bare Error (EEXIST from mkdir).
    await expect(new tv.CheckpointManager(file).save(1, t(1))).rejects.toMatchObject({
      name: 'TensorVaultError',
      code: 'TV_NOT_A_FILE',
      message: expect.stringMatching(/is a regular file, not a run folder/),
      context: { path: file, kind: 'a regular file' },
    });
    expect(readFileSync(file, 'utf8')).toBe('x');
  });

  it('checks its arguments', () => {
    expect(() => new tv.CheckpointManager('x', { keepBest: 1 })).toThrow(/metric/);
    const m = new tv.CheckpointManager(tempDir('tv-mgr-args-'));
    expect(() => m.save(-1, t(0))).toThrow(/step/);
    expect(() => m.save(1, t(0), { metrics: { loss: Number.NaN } })).toThrow(/finite/);
  });
});

describe('CheckpointManager: reads during its own saves', () => {
  it('latest(), list() and restore() while this process saves never block or fail (they waited 30 s, then TV_LOCKED)', async () => {
    const dir = tempDir('tv-mgr-inproc-');
    const m = new tv.CheckpointManager(dir, { keepLast: 2 });
    const w = new Float32Array(64 * 1024);
    let stop = false;
    let slowest = 0;
    let calls = 0;
    let restores = 0;
    const errors: string[] = [];
    const poll = (): void => {
      if (stop) return;
      const t0 = performance.now();
      try {
        m.latest();
        if (calls % 7 === 0) m.list();
      } catch (err) {
        errors.push(String((err as tv.TensorVaultError).code ?? err));
      }
      slowest = Math.max(slowest, performance.now() - t0);
      calls++;
      setImmediate(poll);
    };
    poll();
    await m.save(0, { w }, { metrics: { loss: 1 } });
    const restoring = (async () => {
      while (!stop) {
        try {
          const r = await m.restore();
          r?.checkpoint.close();
          restores++;
        } catch (err) {
          errors.push(String((err as tv.TensorVaultError).code ?? err));
        }
        await new Promise((r) => setImmediate(r));
      }
    })();
    for (let step = 1; step < 8; step++) await m.save(step, { w }, { metrics: { loss: 1 / (step + 1) } });
    stop = true;
    await restoring;
    expect(errors).toEqual([]);
    expect(slowest).toBeLessThan(1000);
    expect(calls).toBeGreaterThan(10);
    expect(restores).toBeGreaterThan(0);
    expect(m.list().map((c) => c.step)).toEqual([6, 7]);
  }, 60_000);
});

describe('CheckpointManager: arguments', () => {
  it('save(step, tensors, null) is TV_INVALID_ARGUMENT (it was a TypeError)', () => {
    const m = new tv.CheckpointManager(tempDir('tv-mgr-args-'));
    expect(() => m.save(1, t(1), null as unknown as object)).toThrow(
      expect.objectContaining({ code: 'TV_INVALID_ARGUMENT' }),
    );
  });
});

describe('CheckpointManager: resuming from a fallback', () => {
  it('after restore() skipped a damaged newest checkpoint, saves keep keepLast good ones and the damaged one', async () => {
    // Regression: keepLast counted the damaged step 300, so the checkpoint the run resumed from (200) was
    // deleted by the first save after it, and only one good checkpoint was left at a time.
    const dir = tempDir('tv-mgr-fallback-');
    const m = new tv.CheckpointManager(dir, { keepLast: 2 });
    const big = (v: number) => ({ w: new Float32Array(300_000).fill(v) });
    for (const step of [100, 200, 300]) await m.save(step, big(step));
    const raw = readFileSync(m.pathOf(300));
    for (let k = 0; k < 64; k++) xorAt(raw, raw.length - 1 - k * 4099, 0xff);
    writeFileSync(m.pathOf(300), raw);
    const r = await m.restore();
    expect(r.report.step).toBe(200);
    expect(r.report.skipped.map((s) => s.step)).toEqual([300]);
    r.checkpoint.close();
    await m.save(210, big(210));
    await m.save(220, big(220));
    expect(m.list().map((c) => c.step)).toEqual([210, 220, 300]);
    const again = await m.restore();
    expect(again.report.step).toBe(220);
    again.checkpoint.close();
  });
});

describe('CheckpointManager: restore() and sets gone meanwhile', () => {
  it('a set listed but gone when it is loaded (pruned by another process) is not reported as skipped', async () => {
    // Regression: restore() reported it in `skipped` (TV_NOT_FOUND), a false alarm for the runbook's
    // "alert on a non-empty skipped". A dangling link stands for weights deleted after the listing.
    const { symlinkSync } = await import('node:fs');
    const dir = tempDir('tv-mgr-gone-');
    const m = new tv.CheckpointManager(dir, { keepLast: 3 });
    await m.save(1, t(1));
    symlinkSync(join(dir, 'deleted-meanwhile.safetensors'), m.pathOf(2));
    const r = await m.restore();
    expect(r.report).toEqual({ step: 1, skipped: [] });
    r.checkpoint.close();
  });
});
