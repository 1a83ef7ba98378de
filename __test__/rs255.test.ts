import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { xorAt } from './helpers/bytes';

interface Vectors {
  table: {
    length: number;
    blocks: number;
    codecs: { n: number; eccLen: number; sha256: string; first16: string }[];
  };
  helloWorld: { input: string; rs16Parity: string; inline10: string };
  zeros200: { n: number; correctable: number; uncorrectable: number };
}
const vectors = JSON.parse(readFileSync(join(__dirname, 'fixtures', 'rs-vectors.json'), 'utf8')) as Vectors;

function katInput(): Buffer {
  const b = Buffer.alloc(519);
  for (let i = 0; i < 512; i++) b[i] = i & 0xff;
  b.write('PyFolds', 512, 'latin1');
  return b;
}

function pseudoRandom(len: number, seed = 1): Buffer {
  const b = Buffer.alloc(len);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    b[i] = s & 0xff;
  }
  return b;
}

async function rejection(p: Promise<unknown>): Promise<tv.TensorVaultError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(tv.TensorVaultError);
    return err as tv.TensorVaultError;
  }
  throw new Error('expected a rejection');
}

function thrown(fn: () => unknown): tv.TensorVaultError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(tv.TensorVaultError);
    return err as tv.TensorVaultError;
  }
  throw new Error('expected a throw');
}

describe('rs(N) known answers (PyFolds contract §3)', () => {
  it('matches the table for rs(16), rs(32), rs(64)', async () => {
    const data = katInput();
    expect(data.length).toBe(vectors.table.length);
    for (const v of vectors.table.codecs) {
      const codec = new tv.RsCodec(v.n);
      expect(codec.name).toBe(`rs(${v.n})`);
      expect(codec.eccLength(data.length)).toBe(v.eccLen);
      expect(codec.blockCount(data.length)).toBe(vectors.table.blocks);
      const parity = await codec.encode(data);
      expect(parity.length).toBe(v.eccLen);
      expect(createHash('sha256').update(parity).digest('hex')).toBe(v.sha256);
      expect(parity.subarray(0, 16).toString('hex')).toBe(v.first16);
      expect(codec.encodeSync(data).equals(parity)).toBe(true);
    }
  });

  it('matches the hello-world parity and inline chunk', async () => {
    const hw = Buffer.from(vectors.helloWorld.input);
    expect((await new tv.RsCodec(16).encode(hw)).toString('hex')).toBe(vectors.helloWorld.rs16Parity);
    const inline = new tv.RsCodec(tv.RsCodec.INLINE_DEFAULT_PARITY);
    const chunk = await inline.protectChunk(hw);
    expect(chunk.toString('hex')).toBe(vectors.helloWorld.inline10);
    const back = await inline.recoverChunk(chunk);
    expect(back).toEqual({ data: hw, correctedBytes: 0, correctedBlocks: [] });
  });

  it('rs(16) on 200 zero bytes recovers 8 byte errors and reports failure on 9', async () => {
    const { n, correctable, uncorrectable } = vectors.zeros200;
    const codec = new tv.RsCodec(n);
    const zeros = Buffer.alloc(200);
    const parity = await codec.encode(zeros);
    const damage = (count: number): Buffer => {
      const d = Buffer.alloc(200);
      for (let i = 0; i < count; i++) d[i * 17 + 5] = 0x80 + i;
      return d;
    };
    const fixed = await codec.decode(damage(correctable), parity);
    expect(fixed.data.equals(zeros)).toBe(true);
    expect(fixed.correctedBytes).toBe(8);
    expect(fixed.correctedBlocks).toEqual([0]);
    const input = damage(uncorrectable);
    const err = await rejection(codec.decode(input, parity));
    expect(err.code).toBe('TV_ECC_UNCORRECTABLE');
    expect(err.context).toMatchObject({ block: 0, offset: 0, end: 200, parity: 16 });
    expect(input.equals(damage(uncorrectable))).toBe(true);
  });
});

describe('protection levels and names', () => {
  it('maps the PyFolds levels', () => {
    expect(tv.eccFromProtection('off')).toBeNull();
    expect(tv.eccFromProtection('none')).toBeNull();
    expect(tv.eccFromProtection('0')).toBeNull();
    expect(tv.eccFromProtection('low')?.name).toBe('rs(16)');
    expect(tv.eccFromProtection('med')?.name).toBe('rs(32)');
    expect(tv.eccFromProtection('high')?.name).toBe('rs(64)');
  });

  it('accepts what PyFolds accepts: any letter case, and an empty or missing level as off (issue 13)', () => {
    expect(tv.eccFromProtection('LOW')?.name).toBe('rs(16)');
    expect(tv.eccFromProtection('Med')?.name).toBe('rs(32)');
    expect(tv.eccFromProtection('HIGH')?.name).toBe('rs(64)');
    expect(tv.eccFromProtection('Off')).toBeNull();
    expect(tv.eccFromProtection('')).toBeNull();
    expect(tv.eccFromProtection(undefined)).toBeNull();
    expect(tv.eccFromProtection(null)).toBeNull();
  });

  it('rejects other levels, including medium, with a typed error', () => {
    for (const bad of ['medium', 'Medium', 'rs(16)', '1', ' low']) {
      const err = thrown(() => tv.eccFromProtection(bad));
      expect(err.code).toBe('TV_ECC_UNKNOWN_PROTECTION');
      expect(err.context.level).toBe(bad);
    }
    expect(thrown(() => tv.eccFromProtection(3 as unknown as string)).code).toBe('TV_INVALID_ARGUMENT');
  });

  it('parses codec names', () => {
    expect(tv.eccFromName('rs(10)')?.parity).toBe(10);
    expect(tv.eccFromName('none')).toBeNull();
    // rs(0), rs(255) and rs(999) alike (rs(255) was TV_INVALID_ARGUMENT while rs(0) was not).
    for (const bad of ['rs()', 'rs(016)', 'RS(16)', 'reed-solomon', 'rs(0)', 'rs(255)', 'rs(999)']) {
      const e = thrown(() => tv.eccFromName(bad));
      expect([e.code, e.context.name]).toEqual(['TV_ECC_UNKNOWN_CODEC', bad]);
    }
  });

  it('blockCount and eccLength require a length (they returned NaN without one)', () => {
    const codec = new tv.RsCodec(16);
    for (const bad of [undefined, -1, 1.5, Number.NaN, '10']) {
      expect(thrown(() => codec.eccLength(bad as number)).code).toBe('TV_INVALID_ARGUMENT');
      expect(thrown(() => codec.blockCount(bad as number)).code).toBe('TV_INVALID_ARGUMENT');
    }
    expect(codec.eccLength(0)).toBe(0);
  });

  it('validates the parity count', () => {
    for (const bad of [0, 255, 1.5, Number.NaN, '16']) {
      expect(thrown(() => new tv.RsCodec(bad as number)).code).toBe('TV_INVALID_ARGUMENT');
    }
    expect(new tv.RsCodec(254).blockDataLength).toBe(1);
    expect(['avx512-gfni', 'avx2', 'portable']).toContain(tv.eccKernel());
  });
});

describe('sidecar and inline streams', () => {
  it('repairs errors and erasures across many blocks, on any thread count', async () => {
    const codec = new tv.RsCodec(32);
    const data = pseudoRandom(3 << 20, 7);
    const parity = await codec.encode(data, { threads: 1 });
    expect((await codec.encode(data, { threads: 2 })).equals(parity)).toBe(true);
    const damaged = Buffer.from(data);
    const erasures: number[] = [];
    const blocks = codec.blockCount(data.length);
    let touched = 0;
    for (let b = 0; b < blocks; b += 97) {
      const start = b * codec.blockDataLength;
      for (let j = 0; j < 10; j++) xorAt(damaged, start + j * 3, 0x41); // 10 errors
      for (let j = 0; j < 12; j++) {
        const p = start + 100 + j; // 12 erasures: 2*10 + 12 = 32
        if (p >= data.length) break;
        damaged[p] = 0;
        erasures.push(p);
      }
      touched++;
    }
    const bad = await codec.verify(damaged, parity, { threads: 2 });
    expect(bad.length).toBe(touched);
    expect(await codec.verify(data, parity)).toEqual([]);
    const out = await codec.decode(damaged, parity, { erasures, threads: 2 });
    expect(out.correctedBlocks).toEqual(bad);
    expect(out.data.equals(data)).toBe(true);
    expect(out.correctedBlocks.length).toBe(touched);
    expect(out.correctedBlocks[1]).toBe(97);
    expect(damaged.equals(data)).toBe(false); // the input is not modified
  });

  it('accepts any typed array or ArrayBuffer view', async () => {
    const codec = new tv.RsCodec(16);
    const base = pseudoRandom(1000, 3);
    const expected = await codec.encode(base);
    const u32 = new Uint32Array(base.buffer.slice(base.byteOffset, base.byteOffset + 1000) as ArrayBuffer);
    expect((await codec.encode(u32)).equals(expected)).toBe(true);
    expect((await codec.encode(new DataView(u32.buffer))).equals(expected)).toBe(true);
    expect((await codec.encode(u32.buffer)).equals(expected)).toBe(true);
    const padded = Buffer.concat([Buffer.from([9, 9, 9]), base]).subarray(3);
    expect((await codec.encode(padded)).equals(expected)).toBe(true);
  });

  it('inline chunks: repair in data and parity, erasures by chunk offset, truncation detected', async () => {
    const codec = new tv.RsCodec(10);
    const data = pseudoRandom(1000, 11);
    const chunk = await codec.protectChunk(data);
    expect(chunk.length).toBe(1000 + codec.eccLength(1000));
    xorAt(chunk, 3, 1);
    xorAt(chunk, 250, 2); // parity of block 0
    chunk[600] = 0;
    const out = await codec.recoverChunk(chunk, { erasures: [600] });
    expect(out.data.equals(data)).toBe(true);
    expect(out.correctedBlocks).toEqual([0, 2]);
    const err = await rejection(codec.recoverChunk(chunk.subarray(0, 255 + 7)));
    expect(err.code).toBe('TV_ECC_INVALID_LENGTH');
    expect(err.context).toMatchObject({ length: 262, parity: 10 });
    for (let j = 0; j < 6; j++) xorAt(chunk, 300 + j, 0x55);
    const bad = await rejection(codec.recoverChunk(chunk));
    expect(bad.code).toBe('TV_ECC_UNCORRECTABLE');
    expect(bad.context).toMatchObject({ block: 1, offset: 255, end: 510 });
  });

  it('rejects bad parity lengths, erasures and options with typed errors', async () => {
    const codec = new tv.RsCodec(16);
    const data = pseudoRandom(500, 5);
    const parity = await codec.encode(data);
    expect((await rejection(codec.verify(data, parity.subarray(1)))).code).toBe('TV_ECC_PARITY_LENGTH');
    const len = await rejection(codec.decode(data, parity.subarray(1)));
    expect(len.code).toBe('TV_ECC_PARITY_LENGTH');
    expect(len.context).toMatchObject({ expected: 48, actual: 47, dataLength: 500 });
    expect((await rejection(codec.decode(data, parity, { erasures: [500] }))).code).toBe(
      'TV_INVALID_ARGUMENT',
    );
    expect((await rejection(codec.decode(data, parity, { erasures: [-1] }))).code).toBe(
      'TV_INVALID_ARGUMENT',
    );
    expect((await rejection(codec.encode(data, { threads: 0 }))).code).toBe('TV_INVALID_ARGUMENT');
    expect((await rejection(codec.encode('text' as unknown as Uint8Array))).code).toBe('TV_INVALID_ARGUMENT');
    expect(thrown(() => codec.encodeSync(Buffer.alloc((1 << 20) + 1))).code).toBe('TV_INVALID_ARGUMENT');
    expect(await codec.encode(Buffer.alloc(0))).toHaveLength(0);
  });

  it('honours an AbortSignal and reports progress', async () => {
    const codec = new tv.RsCodec(64);
    const data = pseudoRandom(32 << 20, 9);
    const controller = new AbortController();
    const p = codec.encode(data, { signal: controller.signal, threads: 1 });
    controller.abort(new Error('stop'));
    const err = await rejection(p);
    expect(err.name).toBe('AbortError');
    expect(err.code).toBe('TV_ABORTED');
    const pre = new AbortController();
    pre.abort();
    expect((await rejection(codec.decode(data, Buffer.alloc(0), { signal: pre.signal }))).code).toBe(
      'TV_ABORTED',
    );
    const seen: number[] = [];
    await codec.encode(data.subarray(0, 4 << 20), {
      onProgress: (p) => seen.push(p.bytesDone),
      progressIntervalMs: 1,
    });
    expect(seen.at(-1)).toBe(4 << 20);
  });
});
