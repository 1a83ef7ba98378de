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
