// Zero-copy views and the garbage collector (issue 11). On Node 24 and 26 the old binding aborted the
// process from a finalizer (`napi_adjust_external_memory` drove V8's count below zero); the stress
// runs in a child process so that such an abort fails this test rather than the runner. `npm test`
// runs this file on every Node line of the matrix.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { tempDir } from './helpers/tmp';

const dir = tempDir('tv-views-gc-');
const dist = join(__dirname, '..', 'dist', 'index.js');

describe('tensor views and the garbage collector', () => {
  it('survives thousands of views with forced collections (aligned, misaligned, multi-region files)', () => {
    const r = spawnSync(
      process.execPath,
      ['--expose-gc', join(__dirname, 'helpers', 'views-gc-child.cjs'), dist, dir],
      { encoding: 'utf8', timeout: 120_000 },
    );
    expect(r.stderr).toBe('');
    expect(r.signal).toBeNull();
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.repro).toBe(1600);
    expect(out.alignedViews).toBe(5000);
    expect(out.keptAfterClose).toBe(100);
    // 8 rounds × 250 views over 5 tensors: b, c and d sit at odd offsets (copies); a and e are U8.
    expect(out.misalignedCopies + out.misalignedWindows).toBe(2000);
    expect(out.misalignedWindows).toBe(800);
    expect(out.regionFileBytes).toBeGreaterThan(4 * 128 * 1024);
    expect(out.regionBuffersSeen).toBeGreaterThan(3);
  });

  it('views of one file are windows on one shared region buffer, not one external buffer each', async () => {
    const p = join(dir, 'shared.safetensors');
    await tv.saveSafetensors(p, {
      a: new Float32Array(1024).fill(1),
      b: new Float64Array(512).fill(2),
      c: new Uint8Array(100).fill(3),
    });
    const f = await tv.openSafetensors(p);
    const a = f.tensor('a');
    const b = f.tensor('b');
    const c = f.tensor('c');
    expect(a.data.buffer).toBe(b.data.buffer);
    expect(a.data.buffer).toBe(c.data.buffer);
    // The region covers the whole file, so a view's offset in it is the tensor's file offset.
    for (const t of [a, b, c]) {
      expect(t.copied).toBe(false);
      expect(t.data.byteOffset).toBe(t.fileOffset);
      expect(t.bytes.byteOffset).toBe(t.fileOffset);
      expect(t.bytes.byteLength).toBe(t.byteLength);
    }
    expect(a.data.buffer.byteLength).toBe(f.dataStart + 4096 + 4096 + 100);
    expect(f.tensor('a').data.buffer).toBe(a.data.buffer);
    f.close();
    expect(a.data[1023]).toBe(1);
  });

  it('a view of a range is a window too; regionBytes is validated', async () => {
    const p = join(dir, 'chunks.safetensors');
    const bytes = new Uint8Array(300_000).map((_, i) => i % 253);
    await tv.saveSafetensors(p, { x: bytes });
    const f = await tv.openSafetensors(p, { regionBytes: 64 * 1024 });
    const chunks = [...f.chunks('x', { chunkBytes: 50_000 })];
    expect(chunks.map((c) => c.byteLength)).toEqual([50_000, 50_000, 50_000, 50_000, 50_000, 50_000]);
    for (const c of chunks) expect(c.buffer.byteLength).toBeLessThanOrEqual(64 * 1024);
    expect(Buffer.concat(chunks)).toEqual(Buffer.from(bytes));
    f.close();
    await expect(tv.openSafetensors(p, { regionBytes: 0 })).rejects.toMatchObject({
      code: 'TV_INVALID_ARGUMENT',
      context: { argument: 'regionBytes' },
    });
  });
});
