// Corruption campaign: checkpoints of every layout loaded with verify: 'lazy' after random damage
// (bit flips, bursts, truncations, in the weights, the sidecar or the parity). Every tensor handed out
// must have the original bytes, dtype and shape; everything else must be a typed error. Seeded, so a
// failure reproduces; TV_CKPT_CAMPAIGN sets the number of trials (default 240).
import { readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { rng } from './helpers/random';
import { tempDir } from './helpers/tmp';

const trials = Number(process.env.TV_CKPT_CAMPAIGN ?? 240);

const configs = [
  { layout: 'tensorvault', ecc: 'off' },
  { layout: 'tensorvault', ecc: 'medium' },
  { layout: 'tensorvault', ecc: 'high' },
  { layout: 'pyfolds', ecc: 'off' },
  { layout: 'pyfolds-ecc', ecc: 'low' },
  { layout: 'pyfolds-ecc', ecc: 'high' },
] as const;

describe('corruption campaign (verify: lazy)', () => {
  it(`${trials} trials: zero tensors returned with wrong bytes`, async () => {
    const dir = tempDir('tv-ckpt-campaign-');
    const random = rng(20261202);
    const int = (n: number): number => Math.floor(random() * n);
    const stats = { returned: 0, refused: 0, repaired: 0, wrong: 0 };
    const codes = new Map<string, number>();
    for (let i = 0; i < trials; i++) {
      const cfg = configs[i % configs.length] as (typeof configs)[number];
      const path = join(dir, `c${i}.safetensors`);
      const big = new Float32Array(300_000 + int(200_000)).map((_, k) => k * 0.5 + i);
      const src: Record<string, { dtype: 'F32' | 'I16' | 'U8'; shape: number[]; data: ArrayBufferView }> = {
        big: { dtype: 'F32', shape: [big.length], data: big },
        small: { dtype: 'I16', shape: [3, 5], data: new Int16Array(15).map((_, k) => k - 7 + i) },
        bytes: { dtype: 'U8', shape: [333], data: new Uint8Array(333).map((_, k) => (k * 31 + i) & 255) },
      };
      const r = await tv.saveCheckpoint(path, src, { layout: cfg.layout, ecc: cfg.ecc });
      // damage one of the set's files
      const file = r.files[int(r.files.length)] as string;
      const buf = readFileSync(file);
      const kind = int(4);
      if (kind === 0) {
        for (let k = 0, n = 1 + int(8); k < n; k++) {
          const at = int(buf.length);
          buf[at] = (buf[at] ?? 0) ^ (1 << int(8));
        }
        writeFileSync(file, buf);
      } else if (kind === 1) {
        const len = 1 + int(64);
        const at = int(Math.max(1, buf.length - len));
        for (let k = 0; k < len && at + k < buf.length; k++) buf[at + k] = int(256);
        writeFileSync(file, buf);
      } else if (kind === 2) {
        truncateSync(file, int(buf.length));
      } else {
        const at = int(buf.length);
        buf[at] = (buf[at] ?? 0) ^ 0xff;
        writeFileSync(file, buf);
      }
      let c: tv.Checkpoint | undefined;
      try {
        c = await tv.loadCheckpoint(path);
        for (const name of c.names) {
          try {
            const t = await c.tensor(name);
            const want = src[name];
            const ok =
              want !== undefined &&
              t.dtype === want.dtype &&
              JSON.stringify(t.shape) === JSON.stringify(want.shape) &&
              Buffer.from(t.bytes).equals(
                Buffer.from(want.data.buffer, want.data.byteOffset, want.data.byteLength),
              );
            if (ok) stats.returned++;
            else stats.wrong++;
          } catch (err) {
            expect(err).toBeInstanceOf(tv.TensorVaultError);
            const code = (err as tv.TensorVaultError).code;
            codes.set(code, (codes.get(code) ?? 0) + 1);
            stats.refused++;
          }
        }
        if (c.report.status === 'repaired') stats.repaired++;
      } catch (err) {
        expect(err).toBeInstanceOf(tv.TensorVaultError);
        const code = (err as tv.TensorVaultError).code;
        codes.set(code, (codes.get(code) ?? 0) + 1);
        stats.refused++;
      } finally {
        c?.close();
      }
      for (const f of [...r.files, `${path}.meta.json`]) rmSync(f, { force: true });
    }
    expect(stats.wrong).toBe(0);
    // the campaign must exercise both outcomes: repairs and refusals
    expect(stats.repaired).toBeGreaterThan(trials / 20);
    expect(stats.refused).toBeGreaterThan(trials / 20);
    expect(stats.returned).toBeGreaterThan(trials);
    console.log(JSON.stringify({ trials, ...stats, codes: Object.fromEntries(codes) }));
  });
});
