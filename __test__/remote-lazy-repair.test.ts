// Lazy remote loads repair damaged chunks from the stored parity. A chunk damaged at rest in the store
// made `tensor()` fail with TV_REMOTE_DAMAGED although the pushed `.tvecc` could rebuild it (pull and the
// local lazy load both repair). Now the chunk is rebuilt locally in the cache entry from the stored
// parity, checked against its sealed digest, and only then viewed; nothing is written to the store.
// When the parity cannot rebuild it (or there is none), the error names the tensor and the chunks.
//
// Against the real S3-compatible server of the remote specs (s3s-fs, scripts/setup-s3.mjs; each object
// is a plain file in its data folder, damaged here by flipping a byte) and the file:// store.
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { flipStored, type S3Server, type SetupS3, s3Available, setupPath } from './helpers/s3';
import { tempDir } from './helpers/tmp';

const dir = tempDir('tv-remote-lazy-repair-');
const MiB = 1024 * 1024;
const BUCKET = 'tvlazy';

/** Twelve 1 MiB float32 tensors, values a function of (tensor, index). */
function tensors(): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (let i = 0; i < 12; i++)
    out[`layer.${i}`] = new Float32Array(262_144).map((_, j) => i * 1000 + (j % 997));
  return out;
}

/** Every file under `root` with its bytes (what the store holds). */
function snapshot(root: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.set(p, readFileSync(p));
    }
  };
  walk(root);
  return out;
}

/** The 1 MiB chunk (remote chunk size) holding byte `at` of the weights. */
const chunkOf = (at: number): number => Math.floor(at / MiB);

/** A remote URL as `loadCheckpoint` types it (`s3://…` or `file://…`). */
type RemoteUrl = `s3://${string}` | `file://${string}`;

describe('lazy remote loads repair damaged chunks from the stored parity', () => {
  let s: S3Server | undefined;
  let opts: Record<string, unknown> = {};
  let withParity: string;
  let without: string;
  const want = tensors();

  beforeAll(async () => {
    mkdirSync(join(dir, 'p'), { recursive: true });
    mkdirSync(join(dir, 'n'), { recursive: true });
    withParity = join(dir, 'p', 'model.safetensors');
    without = join(dir, 'n', 'model.safetensors');
    await tv.saveCheckpoint(withParity, want, { ecc: 'medium' });
    await tv.saveCheckpoint(without, want);
    if (s3Available) {
      const setup = (await import(setupPath)) as SetupS3;
      s = await setup.startS3Server({ root: join(dir, 'store') });
      mkdirSync(join(s.root, BUCKET), { recursive: true });
      opts = {
        endpoint: s.endpoint,
        credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey },
        region: 'us-east-1',
      };
    }
  });
  afterAll(async () => {
    await s?.stop();
  });

  /** Push `local` to `target` (`s3://` or `file://`); the folder that holds its objects. */
  async function pushed(local: string, target: string): Promise<{ url: RemoteUrl; folder: string }> {
    const r = await tv.push(local, target, { ...opts, stateDir: join(dir, 'state') });
    const folder = target.startsWith('file://')
      ? target.slice('file://'.length)
      : join((s as S3Server).root, BUCKET, target.slice(`s3://${BUCKET}/`.length));
    return { url: r.url as RemoteUrl, folder };
  }

  /** The byte offset of tensor `name`'s data in the weights. */
  async function offsetOf(url: RemoteUrl, name: string, cacheDir: string): Promise<number> {
    const ck = await tv.loadCheckpoint(url, { ...opts, cacheDir });
    try {
      return ck.info(name).fileOffset;
    } finally {
      ck.close();
    }
  }

  const cases = [
    { store: 's3', target: () => `s3://${BUCKET}/repair`, skip: !s3Available },
    { store: 'file', target: () => `file://${join(dir, 'file-store', 'repair')}`, skip: false },
  ];

  for (const c of cases) {
    it.skipIf(c.skip)(
      `${c.store}: a damaged chunk is rebuilt from the stored parity, checked, then viewed; the store is not written`,
      async () => {
        const { url, folder } = await pushed(withParity, c.target());
        const at = await offsetOf(url, 'layer.5', join(dir, `probe-${c.store}`));
        flipStored(join(folder, 'model.safetensors'), at + 100, 0xff);
        const before = snapshot(folder);
        // Before: TV_REMOTE_DAMAGED "chunks N do not match their digests (fetched twice)".
        const ck = await tv.loadCheckpoint(url, { ...opts, cacheDir: join(dir, `cache-${c.store}`) });
        try {
          const t = await ck.tensor('layer.5');
          expect(Buffer.from(t.data.buffer, t.data.byteOffset, t.byteLength)).toEqual(
            Buffer.from((want['layer.5'] as Float32Array).buffer),
          );
          // The other tensors read as before (from the cache the repair filled, still verified).
          const u = await ck.tensor('layer.11');
          expect(Buffer.from(u.data.buffer, u.data.byteOffset, u.byteLength)).toEqual(
            Buffer.from((want['layer.11'] as Float32Array).buffer),
          );
        } finally {
          ck.close();
        }
        // Never written to the store: every object as it was, the damaged byte included.
        const after = snapshot(folder);
        expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
        for (const [p, b] of before) expect((after.get(p) as Buffer).equals(b), p).toBe(true);
      },
    );
  }

  it.skipIf(!s3Available)(
    'without parity, or beyond it: TV_REMOTE_DAMAGED names the tensor and the chunks, nothing is viewed',
    async () => {
      const none = await pushed(without, `s3://${BUCKET}/none`);
      const at = await offsetOf(none.url, 'layer.3', join(dir, 'probe-none'));
      flipStored(join(none.folder, 'model.safetensors'), at + 100, 0xff);
      const ck = await tv.loadCheckpoint(none.url, { ...opts, cacheDir: join(dir, 'cache-none') });
      try {
        await expect(ck.tensor('layer.3')).rejects.toMatchObject({
          code: 'TV_REMOTE_DAMAGED',
          context: { tensor: 'layer.3', chunks: String(chunkOf(at + 100)), reason: 'chunk_digest' },
        });
        expect((await ck.tensor('layer.4')).byteLength).toBe(MiB); // the rest still reads
      } finally {
        ck.close();
      }
      // More damage than the parity covers: the parity of this checkpoint is 25 chunks of 64 KiB (one
      // stripe of 193 + 25); a byte flipped in each 64 KiB of two tensors damages 32 of them.
      const over = await pushed(withParity, `s3://${BUCKET}/over`);
      const offs = await Promise.all(
        ['layer.2', 'layer.6'].map((n) => offsetOf(over.url, n, join(dir, 'probe-over'))),
      );
      const flips: number[] = [];
      for (const o of offs)
        for (let p = 0; p < MiB; p += 64 * 1024) {
          flipStored(join(over.folder, 'model.safetensors'), o + p + 100, 0xff);
          if (o === offs[1]) flips.push(o + p + 100);
        }
      const before = snapshot(over.folder);
      const ck2 = await tv.loadCheckpoint(over.url, { ...opts, cacheDir: join(dir, 'cache-over') });
      try {
        const err = await ck2.tensor('layer.6').catch((e: unknown) => e);
        expect(err).toMatchObject({
          code: 'TV_REMOTE_DAMAGED',
          context: {
            tensor: 'layer.6',
            // The chunks of layer.6 that hold a flipped byte (its other chunk reads intact).
            chunks: [...new Set(flips.map((at) => chunkOf(at)))].join(','),
          },
        });
        expect((err as Error).message).toMatch(/parity cannot rebuild/);
      } finally {
        ck2.close();
      }
      const after = snapshot(over.folder);
      for (const [p, b] of before) expect((after.get(p) as Buffer).equals(b), p).toBe(true);
      expect(statSync(join(over.folder, 'model.safetensors')).size).toBe(statSync(withParity).size);
    },
  );

  it('a parity object listed larger than any parity of the weights is not fetched for a repair', async () => {
    // The manifest's entry of the .tvecc is not sealed: a store that lists it with an absurd size does not
    // make a lazy load fetch (and write into its cache) that much.
    const { url, folder } = await pushed(withParity, `file://${join(dir, 'file-store', 'huge')}`);
    const at = await offsetOf(url, 'layer.1', join(dir, 'probe-huge'));
    flipStored(join(folder, 'model.safetensors'), at + 100, 0xff);
    const manifestPath = join(folder, 'model.safetensors.tvremote.json');
    const m = JSON.parse(readFileSync(manifestPath, 'utf8')) as {
      files: { name: string; size: number; leaves: string }[];
    };
    const entry = m.files.find((f) => f.name === 'model.safetensors.tvecc') as {
      size: number;
      leaves: string;
    };
    entry.size = 2 * statSync(withParity).size + 65 * MiB;
    entry.leaves = '0'.repeat(64 * Math.ceil(entry.size / MiB));
    writeFileSync(manifestPath, JSON.stringify(m));
    const ck = await tv.loadCheckpoint(url, { ...opts, cacheDir: join(dir, 'cache-huge') });
    try {
      const err = await ck.tensor('layer.1').catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'TV_REMOTE_DAMAGED', context: { tensor: 'layer.1' } });
      expect((err as Error).message).toMatch(/more than any parity of these weights/);
      expect(ck.transfer.bytesDown).toBeLessThan(4 * MiB); // the tensor's chunks, twice; no parity
    } finally {
      ck.close();
    }
  });
});
