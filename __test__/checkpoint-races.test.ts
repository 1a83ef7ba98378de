// Checkpoint calls that meet another writer's work on the same set: a prune during a full load, a newer
// save during a repair, a repair waiting for a save's lock. Each case is driven from a progress callback
// or a held lock, so the interleaving is the same on every run.
import { createHash } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import {
  closeSync,
  copyFileSync,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { publish, unlessRaced } from '../dist/checkpoint/commit.js';
import * as tv from '../dist/index.js';
import { tempDir } from './helpers/tmp';

/** Flip every bit of the byte at `offset` of the file at `path`. */
function xorAt(path: string, offset: number, mask: number): void {
  const fd = openSync(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, offset);
    b[0] = (b[0] as number) ^ mask;
    writeSync(fd, b, 0, 1, offset);
  } finally {
    closeSync(fd);
  }
}

const tensors = (v: number) => ({ w: new Float32Array(4 << 20).fill(v) }); // 16 MiB

describe('checkpoint calls racing another writer', () => {
  it('a full load whose set is pruned while it verifies gives a typed result, never a raw Node error', async () => {
    // Regression: the `verified` event took the size with statSync(path) after the descriptors had
    // verified the set, so a prune by another process in between rejected with a raw ENOENT Error
    // (CheckpointManager.restore() passed it on).
    const dir = tempDir('tv-race-prune-');
    const p = join(dir, 'm.safetensors');
    await tv.saveCheckpoint(p, tensors(1), { ecc: 'medium' });
    let pruned = false;
    const outcome = await tv
      .loadCheckpoint(p, {
        verify: 'full',
        onProgress: () => {
          if (pruned) return;
          pruned = true;
          for (const f of readdirSync(dir)) rmSync(join(dir, f), { force: true });
        },
      })
      .then(
        async (c) => {
          const first = (await c.tensor('w')).data[0];
          c.close();
          return { ok: first };
        },
        (err: unknown) => ({ err }),
      );
    expect(pruned).toBe(true);
    if ('err' in outcome) expect(outcome.err).toBeInstanceOf(tv.TensorVaultError);
    else expect(outcome.ok).toBe(1); // verified through the descriptors opened before the prune
  });

  it('a repair that finds its set replaced by a newer save repairs nothing and checks the newer set, never reporting damage beyond the parity', async () => {
    // Regression: underLock's refusal ("replaced by a newer save; not repaired") was reported as
    // TV_CHECKPOINT_INTEGRITY "parity cannot repair it (TV_FILE_CHANGED)", sending an operator to the
    // runbook's "beyond the parity" step for a healthy, newer checkpoint. Now the refusal is
    // TV_FILE_CHANGED (reason 'replaced'), and repairCheckpoint checks the set that replaced it.
    const dir = tempDir('tv-race-replaced-');
    const p = join(dir, 'm.safetensors');
    const newer = tempDir('tv-race-replaced-new-');
    await tv.saveCheckpoint(join(newer, 'm.safetensors'), tensors(2), { ecc: 'medium' });
    await tv.saveCheckpoint(p, tensors(1), { ecc: 'medium' });
    xorAt(p, 1 << 20, 0xff);
    let replaced = false;
    const report = await tv.repairCheckpoint(p, {
      onProgress: () => {
        if (replaced) return;
        replaced = true;
        // A newer save's renames (each file of the set, the weights last) while the repair verifies
        // the old one.
        const names = readdirSync(newer).filter((f) => !f.startsWith('.'));
        for (const f of [...names.filter((f) => f !== 'm.safetensors'), 'm.safetensors']) {
          copyFileSync(join(newer, f), join(dir, `${f}.incoming`));
          renameSync(join(dir, `${f}.incoming`), join(dir, f));
        }
      },
    });
    expect(replaced).toBe(true);
    expect(report.status).toBe('intact');
    const c = await tv.loadCheckpoint(p, { verify: 'full' });
    try {
      expect((await c.tensor('w')).data[0]).toBe(2); // the newer set, untouched
    } finally {
      c.close();
    }
  });

  it("a repair's signal stops its wait for the lock a save holds", async () => {
    // Regression: underLock waited for the set's lock without the caller's signal, so an aborted repair
    // went on waiting until the other save finished (and then reported its outcome).
    const dir = tempDir('tv-race-lockwait-');
    const p = join(dir, 'm.safetensors');
    await tv.saveCheckpoint(p, tensors(1), { ecc: 'medium' });
    xorAt(p, 1 << 20, 0xff);
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let started!: () => void;
    const holding = new Promise<void>((r) => {
      started = r;
    });
    async function* slow() {
      yield new Uint8Array(1 << 20);
      started();
      await gate; // the save holds the set's lock until the test lets it go
      yield new Uint8Array(1 << 20);
    }
    let saveDone = false;
    const save = tv
      .saveCheckpoint(p, { w: { dtype: 'U8', shape: [2 << 20], data: slow() } }, { ecc: 'medium' })
      .then(() => {
        saveDone = true;
      });
    await holding;
    const ac = new AbortController();
    const repair = tv
      .repairCheckpoint(p, {
        signal: ac.signal,
        // The verify has read every chunk: the repair is about to wait for the lock.
        onProgress: (pr) => {
          if (pr.bytesDone >= pr.bytesTotal) ac.abort();
        },
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    const err = await Promise.race([repair, new Promise((r) => setTimeout(r, 20_000, 'still waiting'))]);
    const doneBeforeRelease = saveDone;
    release();
    await save;
    expect(doneBeforeRelease).toBe(false);
    expect(err).toBeInstanceOf(tv.TensorVaultError);
    expect((err as tv.TensorVaultError).code).toBe('TV_ABORTED');
    expect(existsSync(p)).toBe(true);
  });
});

describe('CheckpointManager.restore() racing a save of the same step', () => {
  it('a step whose set a newer save replaced during the repair is loaded afresh, not skipped as damaged', async () => {
    // Regression: the repair's "replaced by a newer save" refusal made restore() skip the step (and
    // remember it as damaged), falling back to an older checkpoint although an intact set of the step was
    // at the path.
    const dir = tempDir('tv-race-restore-');
    const other = tempDir('tv-race-restore-other-');
    const m = new tv.CheckpointManager(dir, { keepLast: 5, ecc: 'medium' });
    const o = new tv.CheckpointManager(other, { keepLast: 5, ecc: 'medium' });
    await m.save(1, tensors(1));
    await m.save(2, tensors(2));
    await o.save(2, tensors(3));
    xorAt(m.pathOf(2), 1 << 20, 0xff);
    let replaced = false;
    const { checkpoint, report } = await m.restore(undefined, {
      onProgress: () => {
        if (replaced) return;
        replaced = true;
        // Another process's save of step 2: the whole set, each file by a rename (weights last).
        const names = readdirSync(other).filter((f) => !f.startsWith('.'));
        const weights = basename(o.pathOf(2));
        for (const f of [...names.filter((f) => f !== weights), weights]) {
          copyFileSync(join(other, f), join(dir, `${f}.incoming`));
          renameSync(join(dir, `${f}.incoming`), join(dir, f));
        }
      },
    });
    try {
      expect(replaced).toBe(true);
      expect(report.step).toBe(2);
      expect(report.skipped).toEqual([]);
      expect((await checkpoint.tensor('w')).data[0]).toBe(3);
    } finally {
      checkpoint.close();
    }
  });
});

describe("a whole-set check meeting another process's commit", () => {
  /**
   * The state a reader meets during another process's save, built in `dir`: the newer weights (of
   * tensors(2)) in place, the older sidecar still there. `commit` lands the remaining renames.
   */
  async function tornSet(prefix: string): Promise<{ p: string; commit: () => void }> {
    const dir = tempDir(prefix);
    const other = tempDir(`${prefix}new-`);
    const p = join(dir, 'm.safetensors');
    const q = join(other, 'm.safetensors');
    await tv.saveCheckpoint(p, tensors(1), { ecc: 'medium' });
    await tv.saveCheckpoint(q, tensors(2), { ecc: 'medium' });
    const move = (name: string) => {
      copyFileSync(join(other, name), join(dir, `${name}.incoming`));
      renameSync(join(dir, `${name}.incoming`), join(dir, name));
    };
    move('m.safetensors');
    const commit = () => {
      for (const f of readdirSync(other)) if (f !== 'm.safetensors' && !f.startsWith('.')) move(f);
    };
    return { p, commit };
  }

  it('verifyCheckpoint that read the old sidecar beside the new weights checks the set again: a healthy checkpoint is not reported damaged', async () => {
    // Regression: a monitor's verifyCheckpoint during a save in another process returned `damaged`
    // with every chunk listed (seal ok, parity intact) when the save's renames fell between its read of
    // the sidecar and of the weights. The commit's remaining renames land during the verify.
    const { p, commit } = await tornSet('tv-race-verify-');
    let committed = false;
    const report = await tv.verifyCheckpoint(p, {
      onProgress: () => {
        if (committed) return;
        committed = true;
        commit();
      },
    });
    expect(committed).toBe(true);
    expect(report.status).toBe('intact');
    expect(report.damagedChunks).toEqual([]);
    const c = await tv.loadCheckpoint(p, { verify: 'full' });
    try {
      expect((await c.tensor('w')).data[0]).toBe(2);
    } finally {
      c.close();
    }
  });

  it('an event published by work an attempt started, after the attempt settled, is not lost', async () => {
    // Regression (review of fd881db): the attempt's events were held in its async context, and work it
    // started that outlived it (a timer, a promise settled later) pushed into a buffer nobody would
    // publish again: the event was dropped silently.
    const p = join(await tempDir('tv-race-held-'), 'm.safetensors');
    const seen: unknown[] = [];
    const on = (m: unknown) => {
      if ((m as { path?: unknown }).path === p) seen.push((m as { event?: unknown }).event);
    };
    subscribe('tensorvault:checkpoint', on);
    try {
      let late!: Promise<void>;
      // (made-up events, so that only this test's own are counted: cast past CheckpointEvent)
      const made = (event: string) => ({ event, path: p }) as unknown as Parameters<typeof publish>[0];
      await unlessRaced(p, async () => {
        publish(made('during'));
        late = new Promise((r) => setTimeout(r, 10)).then(() => publish(made('after')));
        return { status: 'ok' };
      });
      await late;
      expect(seen).toEqual(['during', 'after']);
    } finally {
      unsubscribe('tensorvault:checkpoint', on);
    }
  });

  it('the torn attempt that is checked again publishes no `damaged` telemetry: only the result that stands', async () => {
    // Regression: unlessRaced ran the check again, but the torn first attempt had already published
    // `damaged` (every chunk) on tensorvault:checkpoint, so a monitor alerting on the channel paged
    // for a healthy checkpoint that verifyCheckpoint then reported intact.
    const { p, commit } = await tornSet('tv-race-telemetry-');
    const events: Record<string, unknown>[] = [];
    const on = (m: unknown) => {
      if ((m as { path?: unknown }).path === p) events.push(m as Record<string, unknown>);
    };
    subscribe('tensorvault:checkpoint', on);
    let committed = false;
    let report: tv.CheckpointReport;
    try {
      report = await tv.verifyCheckpoint(p, {
        onProgress: () => {
          if (committed) return;
          committed = true;
          commit();
        },
      });
    } finally {
      unsubscribe('tensorvault:checkpoint', on);
    }
    expect(committed).toBe(true);
    expect(report.status).toBe('intact'); // the check did run again (the race happened)
    expect(events.map((e) => e.event)).toEqual(['verified']);
    expect(events[0]).toMatchObject({ status: 'intact', chunks: [] });
  });
});

describe('a lazy checkpoint whose set another save replaced after the open', () => {
  const layouts = [
    ['tensorvault', { ecc: 'medium' }],
    ['tensorvault without parity', {}],
    ['pyfolds', { layout: 'pyfolds', hmacKey: null, gitHash: 't' }],
    ['pyfolds-ecc', { layout: 'pyfolds-ecc', ecc: 'low', hmacKey: null, gitHash: 't' }],
  ] as const;

  /** Every file of `dir` and its bytes. */
  const snapshot = (dir: string): Record<string, string> => {
    const out: Record<string, string> = {};
    for (const f of readdirSync(dir).sort())
      out[f] = createHash('sha256')
        .update(readFileSync(join(dir, f)))
        .digest('hex');
    return out;
  };

  /**
   * A lazy open of the set of tensors(1) at `dir/m.safetensors` (with `damage`, one byte of `w` flipped
   * first), then another process's save of tensors(2) lands on the path: every file of the newer set
   * renamed into place (the weights last), as its commit does.
   */
  async function openThenReplace(
    prefix: string,
    options: tv.SaveCheckpointOptions,
    damage: boolean,
  ): Promise<{ c: tv.Checkpoint; dir: string }> {
    const dir = tempDir(prefix);
    const other = tempDir(`${prefix}new-`);
    const p = join(dir, 'm.safetensors');
    await tv.saveCheckpoint(p, tensors(1), options);
    await tv.saveCheckpoint(join(other, 'm.safetensors'), tensors(2), options);
    if (damage) {
      const f = await tv.openSafetensors(p);
      const at = f.info('w').fileOffset + (1 << 20);
      f.close();
      xorAt(p, at, 0xff);
    }
    const c = await tv.loadCheckpoint(p);
    const names = readdirSync(other).filter((f) => !f.startsWith('.'));
    for (const f of [...names.filter((f) => f !== 'm.safetensors'), 'm.safetensors']) {
      copyFileSync(join(other, f), join(dir, `${f}.incoming`));
      renameSync(join(dir, `${f}.incoming`), join(dir, f));
    }
    return { c, dir };
  }

  for (const [name, options] of layouts) {
    it(`${name}: a first view after the replacement maps and verifies the bytes that were opened`, async () => {
      // Regression: the first view of a PyFolds layout hashed the weights by path (the newer file)
      // against the opened sidecar's integrity_hash and failed with TV_CHECKPOINT_TENSOR_DAMAGED for
      // two healthy checkpoints.
      const { c } = await openThenReplace('tv-lazy-replaced-', options, false);
      try {
        expect((await c.tensor('w')).data[0]).toBe(1);
        expect(c.report.status).not.toBe('damaged');
      } finally {
        c.close();
      }
    });

    it(`${name}: a first view whose check fails after the replacement says so (TV_FILE_CHANGED, replaced) and repairs nothing`, async () => {
      // Regression: the failure was reported as damage of the opened checkpoint (or, for a PyFolds
      // layout, of every tensor), sending an operator to the runbook for a path that holds a newer,
      // healthy set; a repair must never touch the newer set.
      const { c, dir } = await openThenReplace('tv-lazy-replaced-bad-', options, true);
      const before = snapshot(dir);
      try {
        const err = await c.tensor('w').then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(tv.TensorVaultError);
        expect((err as tv.TensorVaultError).code).toBe('TV_FILE_CHANGED');
        expect((err as tv.TensorVaultError).context).toMatchObject({ reason: 'replaced', tensor: 'w' });
        expect(c.report.status).not.toBe('damaged');
      } finally {
        c.close();
      }
      expect(snapshot(dir)).toEqual(before);
      const again = await tv.loadCheckpoint(join(dir, 'm.safetensors'), { verify: 'full' });
      try {
        expect((await again.tensor('w')).data[0]).toBe(2);
      } finally {
        again.close();
      }
    });

    it(`${name}: a readRange whose check fails after the replacement: TV_FILE_CHANGED (replaced), nothing repaired`, async () => {
      const { c, dir } = await openThenReplace('tv-range-replaced-bad-', options, true);
      const before = snapshot(dir);
      try {
        // The range holds the damaged byte (1 MiB into w).
        const err = await c.readRange('w', (1 << 20) - 8, 16).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(tv.TensorVaultError);
        expect((err as tv.TensorVaultError).code).toBe('TV_FILE_CHANGED');
        expect((err as tv.TensorVaultError).context).toMatchObject({ reason: 'replaced', tensor: 'w' });
      } finally {
        c.close();
      }
      expect(snapshot(dir)).toEqual(before);
    });
  }
});
