/** API habits users bring (issue 16): `using` on every handle that holds a mapping or a lock. */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { tempDir } from './helpers/tmp';

const dir = tempDir('tv-ergo-');
let n = 0;
const fresh = (): string => {
  const d = join(dir, `d${++n}`);
  mkdirSync(d, { recursive: true });
  return d;
};

describe('explicit resource management (using / await using)', () => {
  it('RingFileLog: `using` writes pending records and releases its lock at scope end', () => {
    const path = join(fresh(), 'r.log');
    {
      using log = new tv.RingFileLog(path, { flushIntervalMs: 60_000 });
      log.info('pending');
      expect(log.closed).toBe(false);
    }
    expect(tv.readRingLog(path).records.map((r) => (r.value as { msg: string }).msg)).toEqual(['pending']);
    // The lock was released: another writer can open the same file at once.
    const again = new tv.RingFileLog(path);
    again.close();
  });

  it('EventLog and sharded sets: `await using` closes them (the writer lock is free afterwards)', async () => {
    const d = fresh();
    {
      await using log = await tv.EventLog.open(d, { fsync: 'never' });
      await log.append('a', 'E', 'X', '1');
    }
    const second = await tv.EventLog.open(d, { fsync: 'never' });
    expect(await second.count()).toBe(1);
    await second.close();
  });

  it('the dispose methods are the runtime symbols (Symbol.dispose / Symbol.asyncDispose)', () => {
    expect(typeof (tv.RingFileLog.prototype as unknown as Record<symbol, unknown>)[Symbol.dispose]).toBe(
      'function',
    );
    expect(typeof (tv.EventLog.prototype as unknown as Record<symbol, unknown>)[Symbol.asyncDispose]).toBe(
      'function',
    );
    expect(existsSync(dir)).toBe(true);
  });
});

describe('safetensors: using, slices and typed access', () => {
  const make = async () => {
    const path = join(fresh(), 'm.safetensors');
    const w = new Float32Array(6 * 4).map((_, i) => i); // 6 rows of 4
    await tv.saveSafetensors(path, {
      w: { dtype: 'F32', shape: [6, 4], data: w },
      ids: { dtype: 'I64', shape: [3], data: new BigInt64Array([1n, 2n, 3n]) },
      s: { dtype: 'F32', shape: [], data: new Float32Array([7]) },
    });
    return path;
  };

  it('`using` closes the file at scope end; views made inside stay valid', async () => {
    const path = await make();
    let kept: Float32Array | undefined;
    let handle: tv.SafetensorsFile | undefined;
    {
      using f = await tv.openSafetensors(path);
      handle = f;
      kept = f.tensor('w', 'F32').data;
    }
    expect(handle?.closed).toBe(true);
    expect(kept?.[5]).toBe(5);
  });

  it('slice(name, a, b) is rows a..b of the first dimension, zero-copy, like get_slice(name)[a:b]', async () => {
    const f = await tv.openSafetensors(await make());
    const whole = f.tensor('w');
    const s = f.slice('w', 2, 4);
    expect(s.shape).toEqual([2, 4]);
    expect([...(s.data as Float32Array)]).toEqual([8, 9, 10, 11, 12, 13, 14, 15]);
    expect(s.byteLength).toBe(32);
    expect(s.fileOffset).toBe(whole.fileOffset + 32);
    expect(s.copied).toBe(false);
    // Zero-copy: the slice shares memory with the whole-tensor view.
    expect(s.data.buffer).toBe(whole.data.buffer);
    // Python's conventions: negative indices, open end, clamping.
    expect([...(f.slice('w', -1).data as Float32Array)]).toEqual([20, 21, 22, 23]);
    expect(f.slice('w', 4, 100).shape).toEqual([2, 4]);
    expect(f.slice('w', 5, 2).shape).toEqual([0, 4]);
    expect(() => f.slice('s', 0, 1)).toThrow(expect.objectContaining({ code: 'TV_INVALID_ARGUMENT' }));
    expect(() => f.slice('w', 0.5)).toThrow(expect.objectContaining({ code: 'TV_INVALID_ARGUMENT' }));
    expect(() => f.slice('nope', 0)).toThrow(expect.objectContaining({ code: 'TV_TENSOR_NOT_FOUND' }));
    f.close();
  });

  it("tensor(name, 'F32') is typed at compile time and throws TV_TENSOR_DTYPE_MISMATCH on another dtype", async () => {
    const f = await tv.openSafetensors(await make());
    const w = f.tensor('w', 'F32');
    const data: Float32Array = w.data; // compile-time: Float32Array, not the TensorArray union
    expect(data).toBeInstanceOf(Float32Array);
    const ids: BigInt64Array = f.tensor('ids', 'I64').data;
    expect(ids[2]).toBe(3n);
    // @ts-expect-error: an F32 tensor's data is not a BigInt64Array
    const wrong: BigInt64Array = f.tensor('w', 'F32').data;
    expect(wrong).toBeInstanceOf(Float32Array);
    expect(() => f.tensor('ids', 'F32')).toThrow(
      expect.objectContaining({
        code: 'TV_TENSOR_DTYPE_MISMATCH',
        context: { name: 'ids', expected: 'F32', actual: 'I64' },
      }),
    );
    expect(() => f.tensor('w', 'F33' as never)).toThrow(
      expect.objectContaining({ code: 'TV_INVALID_ARGUMENT' }),
    );
    // The options form still works.
    expect(f.tensor('w', { populate: true }).shape).toEqual([6, 4]);
    f.close();
  });
});
