// Checkpoint interop with a Python reference of the PyFolds contract written with the real `safetensors`
// and `reedsolo` from PyPI (helpers/pyfolds_ref.py; `.venv` from scripts/setup-python.sh, or TV_PYTHON).
// Both directions: Python writes both PyFolds layouts and tensorvault reads, verifies and repairs them;
// tensorvault writes all three layouts and Python verifies (and repairs) them. Fails, never skips, under CI.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { xorAt } from './helpers/bytes';
import { tempDir } from './helpers/tmp';

const python = process.env.TV_PYTHON || join(__dirname, '..', '.venv', 'bin', 'python');
const available = existsSync(python);
if (!available && process.env.CI)
  throw new Error(`TV_PYTHON (${python}) is missing: interop tests cannot run under CI`);

const script = join(__dirname, 'helpers', 'pyfolds_ref.py');
const dir = available ? tempDir('tv-ckpt-interop-') : '';
let n = 0;
const fresh = (): string => join(dir, `${n++}-model.safetensors`);

interface PyReport {
  ok: boolean;
  layout?: string;
  repaired?: number;
  error?: string;
  integrity_hash: string;
  tensors: Record<string, string>;
  metadata?: Record<string, unknown>;
}

function py(...args: string[]): PyReport {
  return JSON.parse(execFileSync(python, [script, ...args], { encoding: 'utf8' })) as PyReport;
}

const sha = (b: Uint8Array): string => tv.sha256(b).toString('hex');

async function digestsOf(c: tv.Checkpoint): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of c.names) out[name] = sha((await c.tensor(name)).bytes);
  return out;
}

function corrupt(path: string, offset: number, len: number): void {
  const b = readFileSync(path);
  for (let i = 0; i < len; i++) xorAt(b, offset + i, 0x5a);
  writeFileSync(path, b);
}

/** numpy-compatible tensors written by tensorvault. */
function tensors() {
  const w = new Float32Array(40 * 70);
  for (let i = 0; i < w.length; i++) w[i] = Math.sin(i);
  return {
    'enc.w': { dtype: 'F32' as const, shape: [40, 70], data: w },
    'enc.b': { dtype: 'F16' as const, shape: [70], data: new Uint16Array(70).map((_, i) => 0x3c00 + i) },
    step: { dtype: 'I64' as const, shape: [], data: new BigInt64Array([123456789012n]) },
    flags: { dtype: 'BOOL' as const, shape: [3], data: new Uint8Array([1, 0, 1]) },
    ünï: { dtype: 'U8' as const, shape: [2, 2], data: new Uint8Array([1, 2, 3, 4]) },
    lr: { dtype: 'F64' as const, shape: [1], data: new Float64Array([0.001]) },
  };
}

describe.skipIf(!available)('checkpoint interop with the Python reference (safetensors + reedsolo)', () => {
  it('the reference gives the contract known answers', () => {
    const code = `
import sys, numpy as np
sys.path.insert(0, ${JSON.stringify(join(__dirname, 'helpers'))})
from pyfolds_ref import integrity_hash
t = {"w": np.array([1.0, 2.0], dtype=np.float32), "b": np.array(0.5, dtype=np.float32)}
print(integrity_hash(t, None)); print(integrity_hash(t, "secret"))`;
    const [plain, keyed] = execFileSync(python, ['-c', code], { encoding: 'utf8' }).trim().split('\n');
    const v = JSON.parse(
      readFileSync(join(__dirname, 'fixtures', 'pyfolds-checkpoint-vectors.json'), 'utf8'),
    );
    expect(plain).toBe(v.plain);
    expect(keyed).toBe(v.hmac);
  });

  for (const key of ['-', 'py-secret']) {
    it(`Python → tensorvault: meta layout (${key === '-' ? 'plain' : 'keyed'})`, async () => {
      const path = fresh();
      const w = py('save', path, 'meta', 'off', key, '7');
      const c = await tv.loadCheckpoint(path, { verify: 'full', hmacKey: key === '-' ? null : key });
      expect(c.layout).toBe('pyfolds');
      expect(c.report.pyfoldsHash).toBe('ok');
      expect(c.version).toBe('py-1');
      expect(c.metadata.pytorch_version).toBe('2.6.0');
      expect(await digestsOf(c)).toEqual(w.tensors);
      c.close();
    });
  }

  for (const level of ['low', 'med', 'HIGH']) {
    it(`Python → tensorvault: ecc layout ${level}, payload damaged, repaired by tensorvault`, async () => {
      const path = fresh();
      const w = py('save', path, 'ecc', level, '-', '11');
      const side = JSON.parse(readFileSync(path.replace(/\.safetensors$/, '.json'), 'utf8'));
      const nPar = { low: 16, med: 32, high: 64 }[level.toLowerCase()] as number;
      expect(side.ecc_algo).toBe(`rs(${nPar})`);
      // damage within the correction budget of several blocks, in the tensor data
      const size = readFileSync(path).length;
      for (const off of [size - 500, size - 3000, Math.floor(size / 2)]) corrupt(path, off, nPar / 2);
      expect((await tv.verifyCheckpoint(path)).status).toBe('repairable');
      const c = await tv.loadCheckpoint(path, { verify: 'full' });
      expect(c.report.status).toBe('repaired');
      expect(await digestsOf(c)).toEqual(w.tensors);
      c.close();
      // and Python agrees with the repaired file and the rewritten parity
      const r = py('load', path, '-');
      expect([r.ok, r.repaired]).toEqual([true, 0]);
    });
  }

  for (const layout of ['tensorvault', 'pyfolds', 'pyfolds-ecc'] as const) {
    for (const key of [undefined, 'ts-secret']) {
      it(`tensorvault → Python: ${layout} layout (${key === undefined ? 'plain' : 'keyed'})`, async () => {
        const path = fresh();
        const src = tensors();
        const r = await tv.saveCheckpoint(path, src, {
          layout,
          hmacKey: key ?? null,
          version: '5',
          // tensorvault: with parity, so that the sidecar's integrity block records the level too.
          ...(layout === 'pyfolds-ecc' ? { ecc: 'med' } : layout === 'tensorvault' ? { ecc: 'medium' } : {}),
        });
        if (layout === 'tensorvault')
          expect(JSON.parse(readFileSync(`${path}.meta.json`, 'utf8')).tensorvault.ecc.level).toBe('medium');
        const p = py('load', path, key ?? '-');
        expect(p.ok).toBe(true);
        expect(p.integrity_hash).toBe(r.integrityHash);
        expect(p.metadata?.version).toBe('5');
        const want: Record<string, string> = {};
        for (const [name, t] of Object.entries(src))
          want[name] = sha(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
        expect(p.tensors).toEqual(want);
        if (key !== undefined) expect(py('load', path, 'wrong').ok).toBe(false);
      });
    }
  }

  it('tensorvault → Python: the rs(N) stream repairs damage in Python (reedsolo)', async () => {
    const path = fresh();
    const src = tensors();
    await tv.saveCheckpoint(path, src, { layout: 'pyfolds-ecc', ecc: 'high' });
    const size = readFileSync(path).length;
    for (const off of [200, Math.floor(size / 3), size - 40]) corrupt(path, off, 30);
    const p = py('load', path, '-');
    expect(p.ok).toBe(true);
    expect(p.repaired).toBeGreaterThanOrEqual(90);
    // Python rewrote the weights: tensorvault reads them intact
    expect((await tv.verifyCheckpoint(path)).status).toBe('intact');
  });

  it('damage beyond the parity: both sides refuse', async () => {
    const path = fresh();
    py('save', path, 'ecc', 'low', '-', '3');
    const size = readFileSync(path).length;
    corrupt(path, size - 200, 40);
    expect((await tv.verifyCheckpoint(path)).status).toBe('damaged');
    const e = await tv.loadCheckpoint(path, { verify: 'full' }).then(
      () => null,
      (err: unknown) => err as tv.TensorVaultError,
    );
    expect(e?.code).toBe('TV_CHECKPOINT_INTEGRITY');
    const p = py('load', path, '-');
    expect(p.ok).toBe(false);
  });
});
