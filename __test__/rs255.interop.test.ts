// Interop with the real Python `reedsolo` (PyPI, pinned in requirements-interop.txt), both directions.
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { xorAt } from './helpers/bytes';
import { xorshift32 as rng } from './helpers/random';
import { tempDir } from './helpers/tmp';

const root = join(__dirname, '..');
const python = process.env.TV_PYTHON || join(root, '.venv', 'bin', 'python');
const available = existsSync(python);
if (!available && process.env.CI)
  throw new Error(`TV_PYTHON (${python}) is missing: interop tests cannot run under CI`);

type Job =
  | { op: 'encode'; n: number; data: string }
  | { op: 'decode'; n: number; data: string; erasures?: number[] };
type Result = { out?: string; data?: string; full?: string; error?: string };

const dir = available ? tempDir('tv-rs-interop-') : '';
let batch = 0;
function reedsolo(jobs: Job[]): Result[] {
  const file = join(dir, `jobs-${batch++}.json`);
  writeFileSync(file, JSON.stringify(jobs));
  const out = execFileSync(python, [join(__dirname, 'helpers', 'reedsolo_peer.py'), file], {
    maxBuffer: 256 << 20,
  });
  return JSON.parse(out.toString('utf8')) as Result[];
}

function randomBytes(len: number, next: () => number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = next() & 0xff;
  return b;
}

/** Damage each 255-byte codeword of an inline chunk with `errors` errors and `erasures` erasures. */
function damageInline(chunk: Buffer, n: number, errors: number, erasures: number, next: () => number) {
  const out = Buffer.from(chunk);
  const erased: number[] = [];
  for (let start = 0; start < out.length; start += 255) {
    const len = Math.min(255, out.length - start);
    const picked = new Set<number>();
    const want = Math.min(errors + erasures, len);
    while (picked.size < want) picked.add(next() % len);
    let i = 0;
    for (const p of picked) {
      if (i < errors) xorAt(out, start + p, (next() % 255) + 1);
      else {
        out[start + p] = next() & 0xff;
        erased.push(start + p);
      }
      i++;
    }
  }
  expect(2 * errors + erasures).toBeLessThanOrEqual(n);
  return { damaged: out, erased };
}

function split(chunk: Buffer, n: number): { data: Buffer; parity: Buffer } {
  const data: Buffer[] = [];
  const parity: Buffer[] = [];
  for (let s = 0; s < chunk.length; s += 255) {
    const cw = chunk.subarray(s, Math.min(s + 255, chunk.length));
    data.push(cw.subarray(0, cw.length - n));
    parity.push(cw.subarray(cw.length - n));
  }
  return { data: Buffer.concat(data), parity: Buffer.concat(parity) };
}

const CASES = [
  { n: 10, len: 2000 },
  { n: 16, len: 519 },
  { n: 32, len: 5000 },
  { n: 64, len: 1200 },
  { n: 1, len: 700 },
  { n: 200, len: 300 },
  // Enough whole blocks for the interleaved kernels (groups of 64 blocks) plus a remainder.
  { n: 32, len: 223 * 130 + 17 },
  { n: 16, len: 239 * 70 },
];

describe.skipIf(!available)('interop with Python reedsolo', () => {
  it('encodes byte-identically (inline and sidecar) for several N and lengths', async () => {
    const next = rng(42);
    const inputs = CASES.map((c) => ({ ...c, data: randomBytes(c.len, next) }));
    const results = reedsolo(inputs.map((c) => ({ op: 'encode', n: c.n, data: c.data.toString('hex') })));
    for (const [i, c] of inputs.entries()) {
      const theirs = Buffer.from(results[i]?.out ?? '', 'hex');
      const codec = new tv.RsCodec(c.n);
      const ours = await codec.protectChunk(c.data);
      expect(ours.equals(theirs), `rs(${c.n}) inline`).toBe(true);
      expect((await codec.encode(c.data)).equals(split(theirs, c.n).parity), `rs(${c.n}) sidecar`).toBe(true);
    }
  });

  it('reedsolo repairs streams tensorvault encoded, and tensorvault repairs streams reedsolo encoded, identically', async () => {
    const next = rng(7);
    const jobs: Job[] = [];
    const expectations: { n: number; data: Buffer; damaged: Buffer; erased: number[] }[] = [];
    for (const c of CASES) {
      const data = randomBytes(c.len, next);
      const codec = new tv.RsCodec(c.n);
      const ours = await codec.protectChunk(data);
      // errors only, erasures only, and a mix, each at the bound
      const t = Math.floor(c.n / 2);
      for (const [errors, erasures] of [
        [t, c.n - 2 * t],
        [0, c.n],
        [Math.floor(t / 2), c.n - 2 * Math.floor(t / 2)],
      ] as const) {
        const { damaged, erased } = damageInline(ours, c.n, errors, erasures, next);
        jobs.push({ op: 'decode', n: c.n, data: damaged.toString('hex'), erasures: erased });
        expectations.push({ n: c.n, data, damaged, erased });
      }
    }
    // reedsolo encodes too: its own output, damaged the same way, goes to tensorvault below
    const results = reedsolo(jobs);
    for (const [i, e] of expectations.entries()) {
      const r = results[i];
      expect(r?.error, `reedsolo failed on rs(${e.n}) case ${i}`).toBeUndefined();
      expect(
        Buffer.from(r?.data ?? '', 'hex').equals(e.data),
        `reedsolo repaired our rs(${e.n}) stream`,
      ).toBe(true);
      const codec = new tv.RsCodec(e.n);
      const ours = await codec.recoverChunk(e.damaged, { erasures: e.erased });
      expect(ours.data.equals(Buffer.from(r?.data ?? '', 'hex')), `same repair rs(${e.n})`).toBe(true);
      // and through the sidecar layout
      const { data, parity } = split(e.damaged, e.n);
      const erasures: number[] = [];
      const parityErasures: number[] = [];
      for (const p of e.erased) {
        const block = Math.floor(p / 255);
        const cwLen = Math.min(255, e.damaged.length - block * 255);
        const at = p % 255;
        if (at < cwLen - e.n) erasures.push(block * (255 - e.n) + at);
        else parityErasures.push(block * e.n + at - (cwLen - e.n));
      }
      const side = await codec.decode(data, parity, { erasures, parityErasures });
      expect(side.data.equals(e.data), `sidecar repair rs(${e.n})`).toBe(true);
    }
  });

  it('tensorvault repairs damaged streams produced by reedsolo', async () => {
    const next = rng(99);
    const inputs = CASES.map((c) => ({ ...c, data: randomBytes(c.len, next) }));
    const encoded = reedsolo(inputs.map((c) => ({ op: 'encode', n: c.n, data: c.data.toString('hex') })));
    for (const [i, c] of inputs.entries()) {
      const theirs = Buffer.from(encoded[i]?.out ?? '', 'hex');
      const codec = new tv.RsCodec(c.n);
      const { damaged, erased } = damageInline(
        theirs,
        c.n,
        Math.floor(c.n / 4),
        c.n - 2 * Math.floor(c.n / 4),
        next,
      );
      const out = await codec.recoverChunk(damaged, { erasures: erased });
      expect(out.data.equals(c.data), `rs(${c.n})`).toBe(true);
      expect(out.correctedBlocks.length).toBeGreaterThan(0);
      const { data, parity } = split(theirs, c.n);
      const errorsOnly = damageInline(theirs, c.n, Math.floor(c.n / 2), 0, next).damaged;
      const side = split(errorsOnly, c.n);
      expect((await codec.decode(side.data, parity)).data.equals(data)).toBe(true);
    }
  });

  it('both refuse the same hopeless block (rs(16), 9 errors in 200 zero bytes)', async () => {
    const codec = new tv.RsCodec(16);
    const chunk = await codec.protectChunk(Buffer.alloc(200));
    for (let i = 0; i < 9; i++) xorAt(chunk, i * 21 + 1, 0xc3);
    const [r] = reedsolo([{ op: 'decode', n: 16, data: chunk.toString('hex') }]);
    expect(r?.error).toMatch(/Too many|Could not|error/i);
    await expect(codec.recoverChunk(chunk)).rejects.toMatchObject({ code: 'TV_ECC_UNCORRECTABLE' });
  });
});
