/**
 * Interop with the real peer: Python `safetensors` + `numpy` from `.venv` (installed by
 * `scripts/setup-python.sh`; `TV_PYTHON` overrides the interpreter). Fails, never skips, under CI.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { tempDir } from './helpers/tmp';

const python = process.env.TV_PYTHON ?? join(__dirname, '..', '.venv', 'bin', 'python');
const havePython = existsSync(python);
if (!havePython && process.env.CI) throw new Error(`TV_PYTHON / .venv python missing: ${python}`);
const dir = tempDir('tv-st-py-');

function py(script: string, ...args: string[]): string {
  const r = spawnSync(python, ['-c', script, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** Deterministic test tensors built identically on both sides. */
const PY_TENSORS = `
import numpy as np
def tensors():
    rng = np.random.default_rng(1234)
    t = {}
    for dt in ['float64','float32','float16','int64','uint64','int32','uint32','int16','uint16','int8','uint8']:
        a = rng.integers(0, 256, size=(3, 5, 2), dtype=np.uint8).view(np.uint8)
        raw = rng.bytes(30 * np.dtype(dt).itemsize)
        t['t_' + dt] = np.frombuffer(raw, dtype=dt).reshape(3, 5, 2).copy()
    t['t_bool'] = rng.integers(0, 2, size=(7,)).astype(bool)
    t['t_complex64'] = (rng.standard_normal(4) + 1j * rng.standard_normal(4)).astype(np.complex64)
    t['scalar'] = np.array(3.5, dtype=np.float32)
    t['empty'] = np.zeros((0, 4), dtype=np.float32)
    t['ünï/cøde.name'] = np.arange(3, dtype=np.int32)
    return t
`;
/** One metadata key (Python's order for several keys is its HashMap's, random per process). */
const META1 = { format: 'pt' };
const META = {
  format: 'np',
  z: 'last',
  a: 'first',
  é: 'ü "quoted" \\ \n\t\u0001 <tag>',
  '10': 'x',
  '9': 'y',
};

const DTYPE_OF: Record<string, tv.Dtype> = {
  float64: 'F64',
  float32: 'F32',
  float16: 'F16',
  int64: 'I64',
  uint64: 'U64',
  int32: 'I32',
  uint32: 'U32',
  int16: 'I16',
  uint16: 'U16',
  int8: 'I8',
  uint8: 'U8',
};

describe.runIf(havePython)('interop with Python safetensors + numpy', () => {
  it('files written by Python open with identical bytes and values for every numpy dtype', async () => {
    const p = join(dir, 'py.safetensors');
    const out = py(
      `${PY_TENSORS}
import sys, json
from safetensors.numpy import save_file
t = tensors()
save_file(t, sys.argv[1], metadata=json.loads(sys.argv[2]))
print(json.dumps({k: {'hex': v.tobytes().hex(), 'shape': list(v.shape), 'dtype': str(v.dtype)} for k, v in t.items()}))`,
      p,
      JSON.stringify(META),
    );
    const want = JSON.parse(out) as Record<string, { hex: string; shape: number[]; dtype: string }>;
    const f = await tv.openSafetensors(p);
    expect(f.metadata).toEqual(META);
    expect([...f.names].sort()).toEqual(Object.keys(want).sort());
    for (const [name, w] of Object.entries(want)) {
      const t = f.tensor(name);
      expect(t.shape, name).toEqual(w.shape);
      expect(Buffer.from(t.bytes).toString('hex'), name).toBe(w.hex);
      expect(t.copied, name).toBe(false);
      const expectDtype =
        DTYPE_OF[w.dtype] ?? (w.dtype === 'bool' ? 'BOOL' : w.dtype === 'complex64' ? 'C64' : '?');
      expect(t.dtype, name).toBe(expectDtype);
    }
    // Typed values, not just bytes: float32 through the Float32Array view.
    const f32 = f.tensor('t_float32').data as Float32Array;
    const ref = new Float32Array(Uint8Array.from(Buffer.from(want.t_float32?.hex ?? '', 'hex')).buffer);
    expect(Object.is(f32[7], ref[7]) || (Number.isNaN(f32[7]) && Number.isNaN(ref[7]))).toBe(true);
    f.close();
  });

  it('files written by tensorvault load in Python, and are byte-identical to Python save_file', async () => {
    // Byte-identical with one metadata key; with several, see the next test.
    const pyPath = join(dir, 'ref.safetensors');
    const tvPath = join(dir, 'ours.safetensors');
    const out = py(
      `${PY_TENSORS}
import sys, json
from safetensors.numpy import save_file
t = tensors()
save_file(t, sys.argv[1], metadata=json.loads(sys.argv[2]))
print(json.dumps({k: {'hex': v.tobytes().hex(), 'shape': list(v.shape), 'dtype': str(v.dtype)} for k, v in t.items()}))`,
      pyPath,
      JSON.stringify(META1),
    );
    const spec = JSON.parse(out) as Record<string, { hex: string; shape: number[]; dtype: string }>;
    // Insert in a scrambled order: the layout must not depend on it.
    const names = Object.keys(spec).reverse();
    const tensors = new Map<string, tv.TensorInput>();
    for (const name of names) {
      const s = spec[name] as { hex: string; shape: number[]; dtype: string };
      const dtype = DTYPE_OF[s.dtype] ?? (s.dtype === 'bool' ? 'BOOL' : 'C64');
      tensors.set(name, { dtype, shape: s.shape, data: Buffer.from(s.hex, 'hex') });
    }
    await tv.saveSafetensors(tvPath, tensors, { metadata: META1 });
    expect(readFileSync(tvPath).equals(readFileSync(pyPath))).toBe(true);
    const check = py(
      `${PY_TENSORS}
import sys
import numpy as np
from safetensors.numpy import load_file
from safetensors import safe_open
got = load_file(sys.argv[1])
want = tensors()
assert set(got) == set(want), (set(got) ^ set(want))
for k in want:
    assert got[k].dtype == want[k].dtype, k
    assert got[k].shape == want[k].shape, k
    assert got[k].tobytes() == want[k].tobytes(), k
with safe_open(sys.argv[1], framework='np') as f:
    print(len(f.keys()), f.metadata()['format'] == sys.argv[2])`,
      tvPath,
      'pt',
    );
    expect(check.trim()).toBe(`${Object.keys(spec).length} True`);
  });

  it("with several metadata keys: same bytes except the metadata key order (Python's is random)", async () => {
    const pyPath = join(dir, 'ref-multi.safetensors');
    const tvPath = join(dir, 'ours-multi.safetensors');
    py(
      `import sys, json
import numpy as np
from safetensors.numpy import save_file
save_file({'w': np.arange(6, dtype=np.float32).reshape(2, 3), 'ids': np.arange(4, dtype=np.int64)}, sys.argv[1], metadata=json.loads(sys.argv[2]))`,
      pyPath,
      JSON.stringify(META),
    );
    await tv.saveSafetensors(
      tvPath,
      {
        w: { dtype: 'F32', shape: [2, 3], data: new Float32Array([0, 1, 2, 3, 4, 5]) },
        ids: new BigInt64Array([0n, 1n, 2n, 3n]),
      },
      { metadata: META },
    );
    const a = readFileSync(pyPath);
    const b = readFileSync(tvPath);
    expect(b.length).toBe(a.length);
    const n = Number(a.readBigUInt64LE(0));
    expect(Number(b.readBigUInt64LE(0))).toBe(n);
    expect(JSON.parse(b.subarray(8, 8 + n).toString('utf8'))).toEqual(
      JSON.parse(a.subarray(8, 8 + n).toString('utf8')),
    );
    expect(b.subarray(8 + n).equals(a.subarray(8 + n))).toBe(true);
    // Ours is deterministic: keys sorted by UTF-8 bytes.
    expect(b.subarray(8, 8 + n).toString('utf8')).toContain(
      '{"__metadata__":{"10":"x","9":"y","a":"first","format":"np","z":"last","é":',
    );
  });

  it("accepts exactly the reference's dtypes, in the reference's order (F8_E4M3FNUZ and F8_E5M2FNUZ were refused)", () => {
    // The reference names every dtype it knows when it refuses an unknown one (serde's variant list,
    // in declaration order: the order the writer sorts by).
    const out = py(
      `import sys, json, struct
from safetensors import safe_open
h = json.dumps({'t': {'dtype': 'NOT_A_DTYPE', 'shape': [1], 'data_offsets': [0, 1]}}).encode()
open(sys.argv[1], 'wb').write(struct.pack('<Q', len(h)) + h + b'\\0')
try:
    safe_open(sys.argv[1], 'np')
except Exception as e:
    print(str(e))`,
      join(dir, 'unknown-dtype.safetensors'),
    );
    const list = /expected one of (.*?) at line/.exec(out)?.[1];
    expect(list, out).toBeDefined();
    const reference = [...(list as string).matchAll(/`([^`]+)`/g)].map((m) => m[1]);
    expect(reference).toContain('F8_E4M3FNUZ');
    expect([...tv.DTYPES]).toEqual(reference);
  });

  it('every dtype both ways: Python-written files read with their bytes, ours byte-identical and readable by Python', async () => {
    // Raw bytes through the reference's TensorSpec (its torch-style names); F6 has none there.
    const cases: [tv.Dtype, string, number[], number[]][] = [
      ['BOOL', 'bool', [3], [1, 0, 1]],
      ['F4', 'float4_e2m1fn_x2', [4], [0x21, 0x43]],
      ['U8', 'uint8', [2], [0, 255]],
      ['I8', 'int8', [2], [0x80, 0x7f]],
      ['F8_E5M2', 'float8_e5m2', [2], [0x3c, 0xbc]],
      ['F8_E4M3', 'float8_e4m3fn', [2], [0x38, 0xb8]],
      ['F8_E8M0', 'float8_e8m0fnu', [2], [0x7f, 0x80]],
      ['F8_E4M3FNUZ', 'float8_e4m3fnuz', [3], [0x40, 0xc0, 0x80]],
      ['F8_E5M2FNUZ', 'float8_e5m2fnuz', [2, 2], [0x40, 0xc0, 0x80, 0x01]],
      ['I16', 'int16', [1], [0x34, 0x12]],
      ['U16', 'uint16', [1], [0xff, 0xff]],
      ['F16', 'float16', [1], [0x00, 0x3c]],
      ['BF16', 'bfloat16', [1], [0x80, 0x3f]],
      ['I32', 'int32', [1], [1, 2, 3, 4]],
      ['U32', 'uint32', [1], [4, 3, 2, 1]],
      ['F32', 'float32', [1], [0, 0, 0x80, 0x3f]],
      ['C64', 'complex64', [1], [0, 0, 0x80, 0x3f, 0, 0, 0x80, 0xbf]],
      ['F64', 'float64', [1], [0, 0, 0, 0, 0, 0, 0xf0, 0x3f]],
      ['I64', 'int64', [1], [1, 0, 0, 0, 0, 0, 0, 0x80]],
      ['U64', 'uint64', [1], [8, 7, 6, 5, 4, 3, 2, 1]],
    ];
    const spec: Record<string, [string, number[], string]> = {};
    const ours = new Map<string, tv.TensorInput>();
    for (const [dtype, torchName, shape, bytes] of cases) {
      const name = `t_${dtype}`;
      // The reference takes F4's storage shape (bytes) and doubles the last dimension.
      spec[name] = [torchName, dtype === 'F4' ? [bytes.length] : shape, Buffer.from(bytes).toString('hex')];
      ours.set(name, { dtype, shape, data: new Uint8Array(bytes) });
    }
    const pyPath = join(dir, 'dtypes-py.safetensors');
    py(
      `import sys, json, ctypes
from safetensors import TensorSpec, serialize_file
keep, d = [], {}
for k, (dt, shape, hx) in json.loads(sys.argv[2]).items():
    b = bytes.fromhex(hx)
    buf = ctypes.create_string_buffer(b, len(b))
    keep.append(buf)
    d[k] = TensorSpec(dtype=dt, shape=shape, data_ptr=ctypes.addressof(buf), data_len=len(b))
serialize_file(d, sys.argv[1], None)`,
      pyPath,
      JSON.stringify(spec),
    );
    // Python → tensorvault: every tensor with its dtype, shape and bytes (the 8-bit floats as bytes).
    const f = await tv.openSafetensors(pyPath);
    for (const [dtype, , shape, bytes] of cases) {
      const t = f.tensor(`t_${dtype}`);
      expect([t.dtype, t.shape], dtype).toEqual([dtype, shape]);
      expect([...t.bytes], dtype).toEqual(bytes);
    }
    expect(f.tensor('t_F8_E4M3FNUZ').data).toBeInstanceOf(Uint8Array);
    f.close();
    // tensorvault → Python: the same tensors give the same file, byte for byte (the layout sorts by the
    // dtype order, so the new dtypes must sit where the reference has them).
    const tvPath = join(dir, 'dtypes-tv.safetensors');
    await tv.saveSafetensors(tvPath, ours);
    expect(readFileSync(tvPath).equals(readFileSync(pyPath))).toBe(true);
    // And a file of all the dtypes we write (F6 too) opens in Python with each one's dtype and shape.
    const all = join(dir, 'dtypes-all.safetensors');
    const f6 = { dtype: 'F6_E2M3', shape: [4], data: new Uint8Array(3) } as const;
    await tv.saveSafetensors(
      all,
      new Map([...ours, ['t_F6_E2M3', f6], ['t_F6_E3M2', { ...f6, dtype: 'F6_E3M2' }]]),
    );
    const seen = JSON.parse(
      py(
        `import sys, json
from safetensors import safe_open
with safe_open(sys.argv[1], 'np') as f:
    print(json.dumps({k: [f.get_slice(k).get_dtype(), f.get_slice(k).get_shape()] for k in f.keys()}))`,
        all,
      ),
    ) as Record<string, [string, number[]]>;
    expect(Object.keys(seen).sort()).toEqual(tv.DTYPES.map((d) => `t_${d}`).sort());
    const shapeOf = new Map<string, number[]>(cases.map(([d, , shape]) => [d, shape]));
    for (const [name, [dtype, shape]] of Object.entries(seen)) {
      expect(`t_${dtype}`).toBe(name);
      expect(shape, name).toEqual(shapeOf.get(dtype) ?? [4]);
    }
    expect(seen.t_F8_E5M2FNUZ).toEqual(['F8_E5M2FNUZ', [2, 2]]);
  });

  it('__metadata__ shapes: accepted and refused as the reference does (null is no metadata)', async () => {
    // Regression (QA): `"__metadata__": null` was refused; the reference reads it as no metadata.
    const cases = [
      'null',
      '{}',
      '{"a":"b","é":"\\u00e9 \\n"}',
      '{"a":1}',
      '{"a":null}',
      '{"a":true}',
      '{"a":{}}',
      '{"a":[]}',
      '"x"',
      '[]',
      '1',
      'true',
    ];
    const tensor = '"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}';
    const paths: string[] = [];
    for (const [i, m] of cases.entries()) {
      for (const [j, header] of [
        `{"__metadata__":${m},${tensor}}`,
        `{${tensor},"__metadata__":${m}}`,
      ].entries()) {
        const h = Buffer.from(header);
        const len = Buffer.alloc(8);
        len.writeBigUInt64LE(BigInt(h.length));
        const p = join(dir, `meta-${i}-${j}.safetensors`);
        writeFileSync(p, Buffer.concat([len, h, Buffer.from([7])]));
        paths.push(p);
      }
    }
    const reference = JSON.parse(
      py(
        `import sys, json
from safetensors import safe_open
out = []
for p in sys.argv[1:]:
    try:
        with safe_open(p, 'np') as f:
            out.append(['ok', f.metadata(), list(f.keys())])
    except Exception:
        out.append(['refused'])
print(json.dumps(out))`,
        ...paths,
      ),
    ) as unknown[][];
    const ours: unknown[][] = [];
    for (const p of paths) {
      try {
        const f = await tv.openSafetensors(p);
        ours.push(['ok', f.metadata, [...f.names]]);
        f.close();
      } catch (e) {
        expect(e, p).toMatchObject({
          code: 'TV_SAFETENSORS_INVALID',
          context: { reason: 'metadata_not_string_map' },
        });
        ours.push(['refused']);
      }
    }
    expect(ours).toEqual(reference);
    expect(reference.slice(0, 4)).toEqual([
      ['ok', null, ['t']],
      ['ok', null, ['t']],
      ['ok', {}, ['t']],
      ['ok', {}, ['t']],
    ]);
    expect(reference.filter((r) => r[0] === 'refused')).toHaveLength(2 * (cases.length - 3));
  });

  it('byte-identical without metadata, with empty metadata, and for BF16/F8 tensors (via raw bytes)', async () => {
    for (const [label, meta] of [
      ['none', null],
      ['empty', {}],
    ] as const) {
      const pyPath = join(dir, `ref-${label}.safetensors`);
      const tvPath = join(dir, `ours-${label}.safetensors`);
      py(
        `import sys, json
import numpy as np
from safetensors.numpy import save_file
m = json.loads(sys.argv[2])
save_file({'b': np.arange(5, dtype=np.int16), 'a': np.ones((2, 2), dtype=np.float64)}, sys.argv[1], metadata=m)`,
        pyPath,
        JSON.stringify(meta),
      );
      await tv.saveSafetensors(
        tvPath,
        {
          b: new Int16Array([0, 1, 2, 3, 4]),
          a: { dtype: 'F64', shape: [2, 2], data: new Float64Array(4).fill(1) },
        },
        { metadata: meta },
      );
      expect(readFileSync(tvPath).equals(readFileSync(pyPath)), label).toBe(true);
    }
    // BF16 and F8 are not numpy dtypes: Python's safe_open still reads their header entries.
    const p = join(dir, 'bf16.safetensors');
    await tv.saveSafetensors(p, {
      w: { dtype: 'BF16', shape: [2], data: new Uint16Array([0x3f80, 0x4000]) },
      q: { dtype: 'F8_E4M3', shape: [3], data: new Uint8Array([1, 2, 3]) },
    });
    const out = py(
      `import sys, json, struct
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8+n])
print(json.dumps({k: [v['dtype'], v['data_offsets']] for k, v in h.items()}))`,
      p,
    );
    expect(JSON.parse(out)).toEqual({ w: ['BF16', [0, 4]], q: ['F8_E4M3', [4, 7]] });
  });
});
