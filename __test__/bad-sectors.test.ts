// Unreadable sectors, end to end: files served by the fault file system (crates/tensorvault-faultfs,
// FUSE in a child process), whose reads of chosen ranges fail with EIO and whose mapped pages there
// raise SIGBUS, as a disk with bad sectors does. An unreadable chunk is an erasure: `verify` names it,
// `repair` rebuilds it from parity, a lazy checkpoint view is repaired before it is handed out.
// Needs /dev/fuse and the right to mount; skips otherwise, unless TV_REQUIRE_FAULTFS=1 (npm test sets
// it where both are present).
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { FaultFs, requireFaultFs } from './helpers/faultfs';
import { tempDir } from './helpers/tmp';

const cli = join(__dirname, '..', 'dist', 'cli', 'main.js');
const dir = tempDir('tv-badsec-');
let fs: FaultFs | null = null;
let why = '';

beforeAll(async () => {
  const r = await FaultFs.open(dir);
  if (typeof r === 'string') {
    why = r;
    if (requireFaultFs) throw new Error(`TV_REQUIRE_FAULTFS=1 but: ${r}`);
  } else fs = r;
}, 180_000);
afterAll(async () => {
  await fs?.close();
});

function bytes(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

describe('unreadable sectors (EIO)', () => {
  it('the CLI: verify lists them as unreadable and repairable, repair rewrites them in place', async (ctx) => {
    if (!fs) return ctx.skip(why);
    const original = bytes(6 << 20, 11);
    writeFileSync(join(fs.backing, 'f.bin'), original);
    const p = await tv.protect(join(fs.backing, 'f.bin'), { level: 'medium' });
    const cs = p.layout.chunkSize;
    await fs.bad('f.bin', 2 * cs + 4096, 4096);
    await fs.bad('f.bin', 9 * cs, 512);
    const file = join(fs.mount, 'f.bin');
    expect(() => readFileSync(file)).toThrow(/EIO|i\/o error/i);

    const v = spawnSync(process.execPath, [cli, 'verify', file], { encoding: 'utf8' });
    expect(v.status, v.stderr).toBe(1);
    expect(v.stdout).toMatch(/REPAIRABLE/);
    expect(v.stdout).toMatch(/UNREADABLE chunks \(I\/O error\): 2, 9\n/);
    const j = spawnSync(process.execPath, [cli, 'verify', '--json', file], { encoding: 'utf8' });
    const report = JSON.parse(j.stdout);
    expect(report.unreadableChunks).toEqual([2, 9]);
    expect(report.damagedChunks).toEqual([2, 9]);
    expect(await fs.eio()).toBeGreaterThan(0);

    const r = spawnSync(process.execPath, [cli, 'repair', file], { encoding: 'utf8' });
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(await fs.ranges('f.bin')).toEqual([]);
    expect(readFileSync(file).equals(original)).toBe(true);
    expect(readFileSync(join(fs.backing, 'f.bin')).equals(original)).toBe(true);
  });

  it('a lazy checkpoint view over a bad sector is rebuilt from parity; verify and repair find it', async (ctx) => {
    if (!fs) return ctx.skip(why);
    const mid = new Int32Array((1.5 * 1024 * 1024) / 4);
    for (let i = 0; i < mid.length; i++) mid[i] = i ^ 0x5a5a;
    const big = new Float32Array((3 * 1024 * 1024) / 4);
    for (let i = 0; i < big.length; i++) big[i] = i * 0.25;
    const tensors = { big, mid, tiny: new Uint8Array([7, 8, 9]) };
    await tv.saveCheckpoint(join(fs.backing, 'ck.safetensors'), tensors, { ecc: 'medium' });
    const c0 = await tv.loadCheckpoint(join(fs.backing, 'ck.safetensors'), { verify: 'none' });
    const at = c0.info('mid').fileOffset;
    c0.close();
    const page = Math.ceil((at + 8192) / 4096) * 4096;
    await fs.bad('ck.safetensors', page, 4096);
    const path = join(fs.mount, 'ck.safetensors');

    const v = await tv.verifyCheckpoint(path);
    expect(v.status).toBe('repairable');
    expect(v.damagedTensors).toContain('mid');
    expect(v.unreadableChunks).toEqual(v.damagedChunks);
    expect(v.unreadableChunks).toHaveLength(1);
    const cv = spawnSync(process.execPath, [cli, 'checkpoint', 'verify', path], { encoding: 'utf8' });
    expect(cv.status, cv.stderr).toBe(1);
    expect(cv.stdout).toContain(`UNREADABLE chunks (I/O error): ${v.unreadableChunks[0]}\n`);

    const c = await tv.loadCheckpoint(path);
    const t = await c.tensor('mid');
    expect(
      Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(Buffer.from(mid.buffer)),
    ).toBe(true);
    expect(c.report.repairedChunks.length).toBeGreaterThan(0);
    c.close();
    expect(await fs.ranges('ck.safetensors')).toEqual([]);
    expect((await tv.verifyCheckpoint(path)).status).toBe('intact');
  });

  it('tensorvault checkpoint repair rebuilds an unreadable chunk and the checkpoint verifies', async (ctx) => {
    if (!fs) return ctx.skip(why);
    const w = new Float32Array((4 * 1024 * 1024) / 4);
    for (let i = 0; i < w.length; i++) w[i] = Math.sin(i);
    await tv.saveCheckpoint(join(fs.backing, 'r.safetensors'), { w }, { ecc: 'medium' });
    await fs.bad('r.safetensors', 2 * 1024 * 1024, 4096);
    const path = join(fs.mount, 'r.safetensors');
    const r = spawnSync(process.execPath, [cli, 'checkpoint', 'repair', path, '--json'], {
      encoding: 'utf8',
    });
    expect(r.status, r.stderr + r.stdout).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.status).toBe('repaired');
    expect(report.unreadableChunks).toEqual(report.repairedChunks);
    expect(await fs.ranges('r.safetensors')).toEqual([]);
    const c = await tv.loadCheckpoint(path, { verify: 'full' });
    const t = await c.tensor('w');
    expect(
      Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(Buffer.from(w.buffer)),
    ).toBe(true);
    c.close();
  });
});
