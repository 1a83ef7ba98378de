/**
 * An abort that lands after a repair has changed the user's file must not turn the outcome into
 * TV_ABORTED: a call that rejects with TV_ABORTED left the file as it was, one that changed it resolves.
 *
 * Defect (QA probe 19): the re-check after the write or rename still honoured cancellation, so repair,
 * repair({ mode: 'copy' }), repairFold and repairCheckpoint rejected with TV_ABORTED although the file
 * had been replaced by the repaired version (and `checkpoint repair` exited 130 with its weights
 * rewritten). The native repairs are swept with a test hook that cancels the job at a chosen byte of
 * its progress (as the AbortSignal would at that instant); the checkpoint repair is aborted from its
 * own `repaired` telemetry event, i.e. right after the weights were repaired.
 */
import { randomBytes } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { closeSync, openSync, readFileSync, readSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { native } from '../dist/native/index.js';
import { tempDir } from './helpers/tmp';

const root = tempDir('tv-repair-abort-');
let n = 0;
const fresh = (name: string): string => join(root, `${++n}-${name}`);

type Hooks = {
  __testCancelAtProgress?: (bytes: number) => void;
  __testCancelFired?: () => boolean;
};
function hooks(): Required<Hooks> {
  const h = native() as unknown as Hooks;
  if (h.__testCancelAtProgress === undefined || h.__testCancelFired === undefined)
    throw new Error('the addon was built without TV_TEST_HOOKS=1');
  return h as Required<Hooks>;
}

function flip(file: string, offsets: number[]): void {
  const fd = openSync(file, 'r+');
  const b = Buffer.alloc(1);
  for (const o of offsets) {
    readSync(fd, b, 0, 1, o);
    b[0] = (b[0] as number) ^ 0xff;
    writeSync(fd, b, 0, 1, o);
  }
  closeSync(fd);
}

type Outcome = 'rejected-unchanged' | 'resolved-repaired';

/**
 * Run `repair` once per cancel point, `points` of them spread over the whole job's progress, on a
 * fresh copy of the damaged files (`setup`), and classify each outcome; throws on any other.
 */
async function sweep(
  setup: () => void,
  repair: (onProgress: (p: tv.Progress) => void) => Promise<unknown>,
  files: { damaged: () => Buffer; repaired: Buffer; path: string },
  points = 80,
): Promise<Record<Outcome, number>> {
  const h = hooks();
  // The job's whole progress, from an uncancelled run.
  setup();
  let total = 0;
  await repair((p) => {
    total = Math.max(total, p.bytesDone);
  });
  expect(readFileSync(files.path).equals(files.repaired)).toBe(true);
  expect(total).toBeGreaterThan(0);
  const seen: Record<Outcome, number> = { 'rejected-unchanged': 0, 'resolved-repaired': 0 };
  const step = Math.max(1, Math.floor(total / points));
  for (let at = 1; at <= total; at += step) {
    setup();
    const before = files.damaged();
    h.__testCancelAtProgress(at);
    let err: unknown;
    try {
      await repair(() => {});
    } catch (e) {
      err = e;
    }
    const fired = h.__testCancelFired();
    h.__testCancelAtProgress(-1);
    expect(fired, `cancel at ${at} of ${total}`).toBe(true);
    const now = readFileSync(files.path);
    if (err !== undefined) {
      expect((err as tv.TensorVaultError).code, `cancel at ${at} of ${total}`).toBe('TV_ABORTED');
      // Rejected as aborted: the file is exactly as the repair found it.
      expect(now.equals(before), `cancel at ${at} of ${total}: rejected TV_ABORTED but changed`).toBe(true);
      seen['rejected-unchanged']++;
    } else {
      expect(now.equals(files.repaired), `cancel at ${at} of ${total}: resolved, not repaired`).toBe(true);
      seen['resolved-repaired']++;
    }
  }
  return seen;
}

describe('an abort after the repair changed the file does not reject', () => {
  for (const mode of ['in-place', 'copy'] as const) {
    it(`repair({ mode: '${mode}' }): rejected TV_ABORTED means unchanged, changed means resolved`, async () => {
      const path = fresh(`f-${mode}.bin`);
      const original = randomBytes(2 * 1024 * 1024 + 1234);
      writeFileSync(path, original);
      await tv.protect(path, { k: 8, m: 4, chunkSize: 65536 });
      const sidecar = readFileSync(`${path}.tvecc`);
      const L = original.length;
      const damage = [10, Math.floor(L / 4), Math.floor(L / 2), L - 10];
      let damaged = Buffer.alloc(0);
      const setup = (): void => {
        writeFileSync(path, original);
        writeFileSync(`${path}.tvecc`, sidecar);
        flip(path, damage);
        damaged = readFileSync(path);
      };
      const seen = await sweep(
        setup,
        (onProgress) => tv.repair(path, { mode, onProgress, progressIntervalMs: 1 }),
        { path, repaired: original, damaged: () => damaged },
      );
      // Both sides of the commit point were hit.
      expect(seen['rejected-unchanged']).toBeGreaterThan(0);
      expect(seen['resolved-repaired']).toBeGreaterThan(0);
    });
  }

  it('repairFold: rejected TV_ABORTED means unchanged, changed means resolved', async () => {
    const path = fresh('n.fold');
    const w = new Float32Array(256 * 1024).map((_, i) => Math.sin(i));
    const v = new Float32Array(64 * 1024).map((_, i) => Math.cos(i));
    await tv.writeFold(
      path,
      [
        { name: 'torch_state', stateDict: { w: { dtype: 'F32', shape: [w.length], data: w } } },
        { name: 'extra_state', stateDict: { v: { dtype: 'F32', shape: [v.length], data: v } } },
      ],
      { protection: 'med' },
    );
    const original = readFileSync(path);
    const L = original.length;
    let damaged = Buffer.alloc(0);
    const setup = (): void => {
      writeFileSync(path, original);
      flip(path, [Math.floor(L / 2), Math.floor(L * 0.8)]);
      damaged = readFileSync(path);
    };
    const seen = await sweep(
      setup,
      (onProgress) => tv.repairFold(path, { onProgress, progressIntervalMs: 1 }),
      { path, repaired: original, damaged: () => damaged },
    );
    expect(seen['rejected-unchanged']).toBeGreaterThan(0);
    expect(seen['resolved-repaired']).toBeGreaterThan(0);
  });

  // The checkpoint repair is several jobs; the abort comes from the caller's signal the moment the
  // repair reports it has rewritten the weights (its `repaired` event), before the re-check.
  const layouts = [
    { what: 'tensorvault layout, damage in the tensors', layout: 'tensorvault', ecc: 'medium', at: 'body' },
    { what: 'tensorvault layout, damage in the header', layout: 'tensorvault', ecc: 'medium', at: 'header' },
    { what: 'pyfolds-ecc layout', layout: 'pyfolds-ecc', ecc: 'high', at: 'body' },
  ] as const;
  for (const c of layouts) {
    it(`repairCheckpoint (${c.what}): an abort right after the weights were repaired resolves`, async () => {
      const path = fresh('m.safetensors');
      const t = {
        'a.weight': new Float32Array(512 * 1024).map((_, i) => Math.sin(i)),
        'b.weight': new Float32Array(128 * 1024).map((_, i) => Math.cos(i)),
      };
      await tv.saveCheckpoint(path, t, { layout: c.layout, ecc: c.ecc });
      const original = readFileSync(path);
      const L = statSync(path).size;
      flip(path, c.at === 'header' ? [20] : [Math.floor(L / 3), L - 100]);
      const ac = new AbortController();
      let events = 0;
      const onEvent = (m: unknown): void => {
        if ((m as { event?: string }).event === 'repaired' && !ac.signal.aborted) {
          events++;
          ac.abort(new Error('stop'));
        }
      };
      subscribe('tensorvault:checkpoint', onEvent);
      let report: tv.CheckpointReport;
      try {
        report = await tv.repairCheckpoint(path, { signal: ac.signal });
      } finally {
        unsubscribe('tensorvault:checkpoint', onEvent);
      }
      expect(events).toBe(1);
      expect(ac.signal.aborted).toBe(true);
      expect(report.status).toBe('repaired');
      expect(readFileSync(path).equals(original)).toBe(true);
      expect((await tv.verifyCheckpoint(path)).status).toBe('intact');
    });
  }
});
