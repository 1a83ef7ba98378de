import { constants as bufferConstants } from 'node:buffer';
import { spawn, spawnSync } from 'node:child_process';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import * as tv from '../dist/index.js';
import { tempDir } from './helpers/tmp';

const dir = tempDir('tv-log-');
let n = 0;
const fresh = (name = 'ring.log') => join(dir, `${n++}`, name);
const msgs = (path: string) => tv.readRingLog(path).records.map((r) => (r.value as { msg: string }).msg);
const rawLines = (path: string) =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0);

function expectCode(fn: () => unknown, code: string): tv.TensorVaultError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(tv.TensorVaultError);
    expect((err as tv.TensorVaultError).code).toBe(code);
    return err as tv.TensorVaultError;
  }
  throw new Error(`expected ${code}, nothing thrown`);
}

afterEach(() => {
  vi.useRealTimers();
});

describe('RingFileLog: PyFolds behaviours', () => {
  it('lazy flush: the first INFO inside the interval leaves no file; the idle timer writes it', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const path = fresh();
    const log = new tv.RingFileLog(path, { capacityLines: 10, flushIntervalMs: 200 });
    log.info('first');
    expect(existsSync(path)).toBe(false);
    expect(log.pending).toBe(1);
    vi.advanceTimersByTime(199);
    expect(existsSync(path)).toBe(false);
    vi.advanceTimersByTime(51); // 0.25 s: the timer (armed at the first record) has written it
    expect(msgs(path)).toEqual(['first']);
    log.info('second'); // inside the new interval: pending
    expect(msgs(path)).toEqual(['first']);
    vi.advanceTimersByTime(200);
    expect(msgs(path)).toEqual(['first', 'second']);
    expect(log.pending).toBe(0);
    log.close();
  });

  it('lazy flush without the timer: a record after the interval writes everything pending (PyFolds check)', () => {
    vi.useFakeTimers({ toFake: ['performance'] }); // setTimeout real but never reached (unref'd, long)
    const path = fresh();
    const log = new tv.RingFileLog(path, { capacityLines: 10, flushIntervalMs: 200 });
    log.info('first');
    expect(existsSync(path)).toBe(false);
    vi.advanceTimersByTime(250);
    log.info('second');
    expect(msgs(path)).toEqual(['first', 'second']);
    log.close();
  });

  it('the timer is armed only while something is pending', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const log = new tv.RingFileLog(fresh(), { capacityLines: 10, flushIntervalMs: 1000 });
    expect(vi.getTimerCount()).toBe(0);
    log.info('a');
    log.info('b');
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(1000);
    expect(vi.getTimerCount()).toBe(0);
    log.error('c'); // written at once: no timer
    expect(vi.getTimerCount()).toBe(0);
    log.close();
  });

  it('writes an ERROR at once even with a 60 s interval, with the records before it', () => {
    const path = fresh();
    const log = new tv.RingFileLog(path, { capacityLines: 10, flushIntervalMs: 60_000 });
    log.info('before');
    expect(existsSync(path)).toBe(false);
    log.error('boom');
    expect(msgs(path)).toEqual(['before', 'boom']);
    log.fatal('worse');
    expect(msgs(path)).toEqual(['before', 'boom', 'worse']);
    log.close();
  });

  it('flushLevel can be lowered (warn) or given as a number', () => {
    const path = fresh();
    const log = new tv.RingFileLog(path, { flushIntervalMs: 60_000, flushLevel: 'warn' });
    log.warn('w');
    expect(msgs(path)).toEqual(['w']);
    log.log(35, 'custom'); // below 40: pending
    expect(msgs(path)).toEqual(['w']);
    log.close();
    const path2 = fresh();
    const log2 = new tv.RingFileLog(path2, { flushIntervalMs: 60_000, flushLevel: 35 });
    log2.log(35, 'custom');
    expect(msgs(path2)).toEqual(['custom']);
    log2.close();
  });

  it('capacity 3, interval 0, five records: exactly the last three', () => {
    const path = fresh();
    const log = new tv.RingFileLog(path, { capacityLines: 3, flushIntervalMs: 0 });
    for (let i = 1; i <= 5; i++) log.info(`m${i}`);
    expect(msgs(path)).toEqual(['m3', 'm4', 'm5']);
    log.close();
    // With compactionSlack 0 the file itself holds exactly the header and three records, like PyFolds.
    const path2 = fresh();
    const log2 = new tv.RingFileLog(path2, { capacityLines: 3, flushIntervalMs: 0, compactionSlack: 0 });
    for (let i = 1; i <= 5; i++) log2.info(`m${i}`);
    const lines = rawLines(path2);
    expect(lines[0]).toBe('{"tvring":1,"capacity":3}');
    expect(lines.slice(1).map((l) => JSON.parse(l).msg)).toEqual(['m3', 'm4', 'm5']);
    log2.close();
  });

  it('the file never holds more than capacity + slack records, and readers always see the last N', () => {
    const path = fresh();
    const log = new tv.RingFileLog(path, { capacityLines: 10, flushIntervalMs: 0, compactionSlack: 5 });
    for (let i = 0; i < 100; i++) {
      log.info(`m${i}`);
      const lines = rawLines(path);
      expect(lines.length - 1).toBeLessThanOrEqual(15);
      const want = Array.from(
        { length: Math.min(10, i + 1) },
        (_, k) => `m${i + 1 - Math.min(10, i + 1) + k}`,
      );
      expect(msgs(path)).toEqual(want);
    }
    log.close();
  });

  it('close() writes pending records; logging afterwards is TV_CLOSED; close is idempotent', () => {
    const path = fresh();
    const log = new tv.RingFileLog(path, { capacityLines: 5, flushIntervalMs: 60_000 });
    log.info('a');
    log.debug('b');
    expect(existsSync(path)).toBe(false);
    log.close();
    expect(msgs(path)).toEqual(['a', 'b']);
    expect(log.closed).toBe(true);
    log.close();
    expectCode(() => log.info('late'), 'TV_CLOSED');
  });

  it('preloads the last N records of an existing file across restarts', () => {
    const path = fresh();
    const a = new tv.RingFileLog(path, { capacityLines: 3, flushIntervalMs: 0 });
    for (let i = 1; i <= 5; i++) a.info(`r${i}`);
    a.close();
    const b = new tv.RingFileLog(path, { capacityLines: 3, flushIntervalMs: 60_000 });
    expect(b.stats().records).toBe(3);
    b.info('r6');
    b.close();
    expect(msgs(path)).toEqual(['r4', 'r5', 'r6']);
    // A smaller capacity at restart keeps the newest records and rewrites the header.
    const c = new tv.RingFileLog(path, { capacityLines: 2, flushIntervalMs: 0 });
    c.info('r7');
    c.close();
    expect(tv.readRingLog(path).capacity).toBe(2);
    expect(msgs(path)).toEqual(['r6', 'r7']);
  });

  it('opening with another capacity and closing without logging leaves the file as it was', () => {
    const path = fresh();
    const a = new tv.RingFileLog(path, { capacityLines: 50, flushIntervalMs: 0 });
    for (let i = 1; i <= 40; i++) a.info(`r${i}`);
    a.close();
    const before = readFileSync(path);
    // A reader that opens it with the default capacity of 1000, or a smaller one: nothing logged.
    for (const capacityLines of [10, 1000]) new tv.RingFileLog(path, { capacityLines }).close();
    expect(readFileSync(path).equals(before)).toBe(true);
    expect(msgs(path)).toHaveLength(40);
  });

  it('loads a PyFolds plain text log and converts it at the first write', () => {
    const path = fresh('pyfolds.log');
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, 'INFO old one\nERROR old two\r\nINFO old three\n');
    const text = tv.readRingLog(path);
    expect(text.format).toBe('text');
    expect(text.records.map((r) => r.value)).toEqual(['INFO old one', 'ERROR old two', 'INFO old three']);
    const log = new tv.RingFileLog(path, { capacityLines: 3, flushIntervalMs: 0 });
    log.info('new');
    log.close();
    const after = tv.readRingLog(path);
    expect(after.format).toBe('tvring1');
    expect(
      after.records.map((r) => (typeof r.value === 'string' ? r.value : (r.value as { msg: string }).msg)),
    ).toEqual(['ERROR old two', 'INFO old three', 'new']);
  });

  it('creates parent folders', () => {
    const path = join(dir, 'deep', 'er', 'still', 'x.log');
    const log = new tv.RingFileLog(path, { flushIntervalMs: 0 });
    log.info('hi');
    log.close();
    expect(msgs(path)).toEqual(['hi']);
  });

  it('rejects invalid options with TV_INVALID_ARGUMENT', () => {
    const p = fresh();
    for (const capacityLines of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 1e12]) {
      const e = expectCode(() => new tv.RingFileLog(p, { capacityLines }), 'TV_INVALID_ARGUMENT');
      expect(e.context.argument).toBe('capacityLines');
    }
    for (const flushIntervalMs of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
      const e = expectCode(() => new tv.RingFileLog(p, { flushIntervalMs }), 'TV_INVALID_ARGUMENT');
      expect(e.context.argument).toBe('flushIntervalMs');
    }
    expectCode(() => new tv.RingFileLog(p, { flushLevel: 'loud' as never }), 'TV_INVALID_ARGUMENT');
    expectCode(() => new tv.RingFileLog(p, { compactionSlack: -1 }), 'TV_INVALID_ARGUMENT');
    expectCode(() => new tv.RingFileLog(p, { fsync: 'yes' as never }), 'TV_INVALID_ARGUMENT');
    expectCode(() => new tv.RingFileLog('', {}), 'TV_INVALID_ARGUMENT');
    expectCode(() => new tv.RingFileLog(p, null as never), 'TV_INVALID_ARGUMENT');
    // Nothing was left behind by the rejected constructions (no lock, no file).
    expect(existsSync(p)).toBe(false);
    expect(existsSync(`${p}.lock`)).toBe(false);
    const log = new tv.RingFileLog(p);
    expectCode(() => log.log('loud' as never, 'x'), 'TV_INVALID_ARGUMENT');
    log.close();
  });

  it('a folder as the path is TV_IS_DIRECTORY', () => {
    const p = fresh();
    mkdirSync(p, { recursive: true });
    expectCode(() => new tv.RingFileLog(p), 'TV_IS_DIRECTORY');
    expect(existsSync(`${p}.lock`)).toBe(false);
  });
});

describe('RingFileLog: records', () => {
  it('a multi-line message is one record and one line (JSON escapes newlines)', () => {
    const path = fresh();
    const log = new tv.RingFileLog(path, { capacityLines: 2, flushIntervalMs: 0 });
    log.info('one\ntwo\nthree');
    log.info('x\r\ny');
    log.info('last');
    log.close();
    expect(msgs(path)).toEqual(['x\r\ny', 'last']);
  });

  it('serialises fields: Error (name, message, stack, code), bigint, and survives circular objects', () => {
    const path = fresh();
    const log = new tv.RingFileLog(path, { flushIntervalMs: 0 });
    const err = Object.assign(new Error('disk full'), { code: 'ENOSPC' });
    log.error('save failed', { err, step: 12n, nested: { ok: true } });
    const circ: Record<string, unknown> = { a: 1 };
    circ.self = circ;
    log.warn('circular', { circ });
    log.info('reserved', { time: 'forged', level: 'fatal', msg: 'forged', keep: 1 });
    log.close();
    const [a, b, c] = tv.readRingLog(path).records.map((r) => r.value as Record<string, unknown>);
    expect(a?.level).toBe('error');
    expect(a?.err).toMatchObject({ type: 'Error', message: 'disk full', code: 'ENOSPC' });
    expect(String((a?.err as { stack?: string } | undefined)?.stack)).toContain('disk full');
    expect(a?.step).toBe('12');
    expect(a?.nested).toEqual({ ok: true });
    expect(b?.msg).toBe('circular');
    expect(typeof b?.fieldsError).toBe('string');
    expect(c).toMatchObject({ level: 'info', msg: 'reserved', keep: 1 });
    expect(c?.time).not.toBe('forged');
    expect(Number.isNaN(Date.parse(String(c?.time)))).toBe(false);
    expect(String(c?.time).endsWith('Z')).toBe(true);
  });

  it('appendLine stores pre-serialised lines verbatim and refuses newlines', () => {
    const path = fresh();
    const log = new tv.RingFileLog(path, { flushIntervalMs: 60_000 });
    log.appendLine('{"custom":1}', 30);
    expect(existsSync(path)).toBe(false);
    log.appendLine('"a text record"', 50);
    expect(tv.readRingLog(path).records.map((r) => r.raw)).toEqual(['{"custom":1}', '"a text record"']);
    expectCode(() => log.appendLine('{"a":1}\n{"b":2}', 30), 'TV_INVALID_ARGUMENT');
    log.close();
  });

  it('appendLine keeps a lone UTF-16 surrogate: the record read back is the one appended', () => {
    // Written raw, a lone surrogate became U+FFFD in the UTF-8 file: '\ud800' and '\udfff' read back alike.
    const path = fresh();
    const log = new tv.RingFileLog(path, { flushIntervalMs: 0 });
    log.appendLine('{"msg":"a\ud800b","k":"\udfff"}', 30);
    log.appendLine('"\udc00 text"', 30);
    log.appendLine('plain \ud83d text with a pair \ud83d\ude00', 30);
    log.close();
    expect(tv.readRingLog(path).records.map((r) => r.value)).toEqual([
      { msg: 'a\ud800b', k: '\udfff' },
      '\udc00 text',
      'plain \ud83d text with a pair \ud83d\ude00',
    ]);
  });

  it('appendLine stores a line that is not JSON (a pretty-printed record) as a JSON string, never as damage', () => {
    const path = fresh();
    const dest = tv.ringDestination(path, { flushIntervalMs: 0 });
    const log = dest.log;
    dest.write('[12:00:01] INFO: a pretty-printed line\n');
    log.appendLine('not json either', 30);
    log.appendLine('{"level":30,"msg":"json"}', 30);
    log.appendLine('{broken', 30);
    const r = tv.readRingLog(path);
    expect(r.skipped).toBe(0);
    expect(r.records.map((x) => x.value)).toEqual([
      '[12:00:01] INFO: a pretty-printed line',
      'not json either',
      { level: 30, msg: 'json' },
      '{broken',
    ]);
    log.close();
  });

  it('fields that throw when read, a revoked proxy, a cyclic cause and an AggregateError', () => {
    const path = fresh();
    const log = new tv.RingFileLog(path, { flushIntervalMs: 0 });
    const getter = {
      get boom(): never {
        throw new Error('getter boom');
      },
    };
    log.info('getter', getter);
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    expectCode(() => log.info('revoked', proxy), 'TV_INVALID_ARGUMENT');
    const a = new Error('a');
    const b = new Error('b', { cause: a });
    a.cause = b;
    log.info('cyclic', { err: a });
    log.info('aggregate', { err: new AggregateError([new Error('inner1'), new Error('inner2')], 'outer') });
    log.close();
    const [g, c, ag] = tv.readRingLog(path).records.map((r) => r.value as Record<string, unknown>);
    expect(g).toMatchObject({ msg: 'getter', fieldsError: 'getter boom' });
    expect(c).toMatchObject({
      msg: 'cyclic',
      err: { type: 'Error', message: 'a', cause: { message: 'b', cause: '[Circular]' } },
    });
    expect(c?.fieldsError).toBeUndefined();
    expect(ag).toMatchObject({
      msg: 'aggregate',
      err: {
        type: 'AggregateError',
        message: 'outer',
        errors: [{ message: 'inner1' }, { message: 'inner2' }],
      },
    });
  });
});

describe('RingFileLog: flush, storms, errors', () => {
  it('flush() resolves once pending records are written; flushSync() writes at once', async () => {
    const path = fresh();
    const log = new tv.RingFileLog(path, { flushIntervalMs: 60_000, fsync: true });
    log.info('a');
    await log.flush();
    expect(msgs(path)).toEqual(['a']);
    log.info('b');
    log.flushSync();
    expect(msgs(path)).toEqual(['a', 'b']);
    await log.flush(); // nothing pending: fine
    log.close();
  });

  it('a storm of errors appends, never rewrites per record: compactions stay ~records/slack', () => {
    const tight = new tv.RingFileLog(fresh(), { capacityLines: 100, compactionSlack: 100 });
    for (let i = 0; i < 3000; i++) tight.error(`e${i}`);
    expect(tight.stats().compactions).toBeLessThanOrEqual(Math.ceil(3000 / 100) + 1);
    expect(tight.stats().recordsInFile).toBeLessThanOrEqual(200);
    tight.close();
    const path = fresh();
    const log = new tv.RingFileLog(path, { capacityLines: 100, flushIntervalMs: 5000 });
    for (let i = 0; i < 3000; i++) log.error(`e${i}`);
    const s = log.stats();
    expect(s.appends + s.compactions).toBe(3000); // one write per error record
    expect(s.compactions).toBeLessThanOrEqual(1); // default slack max(100, 4096): one at the first write
    expect(s.recordsInFile).toBeLessThanOrEqual(100 + 4096);
    log.close();
    const got = msgs(path);
    expect(got).toHaveLength(100);
    expect(got[0]).toBe('e2900');
    expect(got[99]).toBe('e2999');
  });

  it('bytes written per record do not grow with the capacity (at most about twice each record)', () => {
    for (const capacityLines of [100, 5000, 20_000]) {
      const path = fresh();
      const log = new tv.RingFileLog(path, { capacityLines, flushIntervalMs: 0 });
      for (let i = 0; i < 30_000; i++) log.info(`record ${i % 10}`);
      const { bytesWritten, compactions } = log.stats();
      log.close();
      const lineBytes = rawLines(path)[1]!.length + 1;
      // Each record is appended once and copied by at most one compaction (plus tiny headers).
      expect(bytesWritten / 30_000, `capacity ${capacityLines}`).toBeLessThan(lineBytes * 2.05);
      expect(bytesWritten / 30_000).toBeGreaterThanOrEqual(lineBytes);
      expect(compactions).toBeLessThanOrEqual(Math.ceil(30_000 / Math.max(capacityLines, 4096)) + 1);
    }
  });

  it('reports write errors through onError, keeps the records pending and writes them later', () => {
    const base = join(dir, 'vanishing');
    const path = join(base, 'x.log');
    const errors: tv.TensorVaultError[] = [];
    const log = new tv.RingFileLog(path, { flushIntervalMs: 0, onError: (e) => errors.push(e) });
    rmSync(base, { recursive: true, force: true }); // the folder disappears under the logger
    log.error('lost?');
    expect(errors).toHaveLength(1);
    expect(errors[0]?.code).toBe('TV_NOT_FOUND');
    expect(log.pending).toBe(1);
    mkdirSync(base);
    log.info('after');
    expect(errors).toHaveLength(1);
    log.close();
    expect(msgs(path)).toEqual(['lost?', 'after']);
  });
});

describe('RingFileLog: telemetry', () => {
  it('publishes compactions and write errors on the tensorvault:ring-log diagnostics channel', () => {
    const events: Array<Record<string, unknown>> = [];
    const onMessage = (m: unknown) => events.push(m as Record<string, unknown>);
    subscribe(tv.RING_LOG_CHANNEL, onMessage);
    try {
      const base = join(dir, 'telemetry');
      const path = join(base, 'x.log');
      const log = new tv.RingFileLog(path, {
        capacityLines: 2,
        compactionSlack: 1,
        flushIntervalMs: 0,
        onError: () => {},
      });
      log.info('a'); // first write: compaction
      log.info('b'); // append (2 in file ≤ capacity + slack = 3)
      log.info('c'); // append (3)
      log.info('d'); // 3 + 1 > 3: compaction to the last 2
      expect(events.map((e) => [e.event, e.records])).toEqual([
        ['compaction', 1],
        ['compaction', 2],
      ]);
      expect(events[1]?.path).toBe(path);
      expect(events[1]?.bytes).toBe(readFileSync(path).length);
      rmSync(base, { recursive: true });
      log.info('e'); // an append to the unlinked file still works (3 in file)...
      log.info('f'); // ...but the next compaction cannot create its temp file
      expect(events.at(-1)?.event).toBe('error');
      expect((events.at(-1)?.error as tv.TensorVaultError | undefined)?.code).toBe('TV_NOT_FOUND');
      log.close();
    } finally {
      unsubscribe(tv.RING_LOG_CHANNEL, onMessage);
    }
  });
});

describe('RingFileLog: damaged files', () => {
  const ringFile = (body: string) => {
    const p = fresh();
    mkdirSync(join(p, '..'), { recursive: true });
    writeFileSync(p, body);
    return p;
  };
  const rec = (m: string) => JSON.stringify({ time: '2026-01-01T00:00:00.000Z', level: 'info', msg: m });

  it('an unterminated last line (torn write) is ignored by readers and removed at the next write', () => {
    const p = ringFile(`{"tvring":1,"capacity":5}\n${rec('a')}\n${rec('b')}\n{"time":"2026-01-01T00:0`);
    const r = tv.readRingLog(p);
    expect(r.tornTail).toBe(true);
    expect(r.skipped).toBe(0);
    expect(msgs(p)).toEqual(['a', 'b']);
    const log = new tv.RingFileLog(p, { capacityLines: 5, flushIntervalMs: 0 });
    log.info('c');
    log.close();
    const after = tv.readRingLog(p);
    expect(after.tornTail).toBe(false);
    expect(msgs(p)).toEqual(['a', 'b', 'c']);
  });

  it('damaged lines (garbage, NUL runs) are counted, skipped, and dropped at the next write', () => {
    const p = ringFile(`{"tvring":1,"capacity":5}\n${rec('a')}\n\0\0\0\0\n{"x":\n${rec('b')}\n`);
    const r = tv.readRingLog(p);
    expect(r.skipped).toBe(2);
    expect(msgs(p)).toEqual(['a', 'b']);
    const log = new tv.RingFileLog(p, { capacityLines: 5, flushIntervalMs: 0 });
    log.info('c');
    log.close();
    expect(tv.readRingLog(p).skipped).toBe(0);
    expect(msgs(p)).toEqual(['a', 'b', 'c']);
  });

  it('an unknown format version or a bad capacity in the header is TV_CORRUPT', () => {
    const p = ringFile(`{"tvring":2,"capacity":5}\n${rec('a')}\n`);
    expectCode(() => tv.readRingLog(p), 'TV_CORRUPT');
    expectCode(() => new tv.RingFileLog(p), 'TV_CORRUPT');
    expect(existsSync(`${p}.lock`)).toBe(false);
    const q = ringFile(`{"tvring":1,"capacity":-4}\n`);
    expectCode(() => tv.readRingLog(q), 'TV_CORRUPT');
  });

  it('a file larger than the longest string V8 makes is read and reopened (it threw ERR_STRING_TOO_LONG)', () => {
    // 2 MiB records: a window of 200 with the default slack of 4,096 lets the file grow past 512 MiB.
    const p = ringFile(`${JSON.stringify({ tvring: 1, capacity: 200 })}\n`);
    const line = Buffer.from(`${JSON.stringify({ level: 'info', msg: 'big', pad: 'x'.repeat(2 << 20) })}\n`);
    const fd = openSync(p, 'a');
    const count = Math.ceil((bufferConstants.MAX_STRING_LENGTH + 1) / line.length) + 1;
    for (let i = 0; i < count; i++) writeSync(fd, line);
    closeSync(fd);
    try {
      const r = tv.readRingLog(p);
      expect(r).toMatchObject({ format: 'tvring1', capacity: 200, recordsInFile: count, skipped: 0 });
      expect(r.records).toHaveLength(200);
      const log = new tv.RingFileLog(p, { capacityLines: 200 });
      expect(log.stats()).toMatchObject({ records: 200, recordsInFile: count });
      log.close();
    } finally {
      rmSync(p, { force: true });
    }
  }, 120_000);

  it('a damaged header line is a damaged ring log, not plain text: records stay records', () => {
    const body = `${rec('one')}\n${rec('two')}\n`;
    for (const header of ['{"tvring":1,"capac\u0001ty":10}', '{"tvring":1,"capacity":1', '{"tvring"]']) {
      const p = ringFile(`${header}\n${body}`);
      const r = tv.readRingLog(p);
      expect(r).toMatchObject({ format: 'tvring1', capacity: undefined, skipped: 1 });
      expect(r.records.map((x) => (x.value as { msg: string }).msg)).toEqual(['one', 'two']);
      // The next writer keeps them as records and writes a good header.
      const log = new tv.RingFileLog(p, { capacityLines: 10, flushIntervalMs: 0 });
      log.info('three');
      log.close();
      expect(tv.readRingLog(p)).toMatchObject({ format: 'tvring1', capacity: 10, skipped: 0 });
      expect(msgs(p)).toEqual(['one', 'two', 'three']);
    }
  });

  it('readRingLog: missing file TV_NOT_FOUND, empty file, a torn header', () => {
    expectCode(() => tv.readRingLog(join(dir, 'missing.log')), 'TV_NOT_FOUND');
    expect(tv.readRingLog(ringFile('')).records).toEqual([]);
    const torn = tv.readRingLog(ringFile('{"tvring":1,"capa'));
    expect(torn.records).toEqual([]);
    expect(torn.tornTail).toBe(true);
  });

  it('random damage never makes the reader throw or return an unparsed record (property)', () => {
    const good = `{"tvring":1,"capacity":50}\n${Array.from({ length: 40 }, (_, i) => rec(`m${i}`)).join('\n')}\n`;
    const p = fresh();
    mkdirSync(join(p, '..'), { recursive: true });
    let seed = 12345;
    const rnd = (k: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % k;
    };
    for (let t = 0; t < 300; t++) {
      const b = Buffer.from(good);
      const cut = rnd(b.length + 1);
      const flips = rnd(4);
      for (let f = 0; f < flips; f++) b[rnd(b.length)] = rnd(256);
      writeFileSync(p, b.subarray(0, cut));
      let r: tv.RingLogContents;
      try {
        r = tv.readRingLog(p);
      } catch (err) {
        // Only a damaged header may be refused, and only with TV_CORRUPT.
        expect((err as tv.TensorVaultError).code).toBe('TV_CORRUPT');
        continue;
      }
      for (const x of r.records) {
        if (r.format === 'tvring1') expect(JSON.parse(x.raw)).toEqual(x.value);
        expect(x.raw.includes('\n')).toBe(false);
      }
    }
  });
});

describe('RingFileLog: one writer per file', () => {
  it('a second logger on the same file in this process is TV_LOCKED; after close it may open', () => {
    const path = fresh();
    const a = new tv.RingFileLog(path);
    const e = expectCode(() => new tv.RingFileLog(path), 'TV_LOCKED');
    expect(e.context.pid).toBe(process.pid);
    expect(e.message).toContain('one writer per file');
    // The same file through another spelling of its path is the same lock.
    expectCode(() => new tv.RingFileLog(join(path, '..', '.', 'ring.log')), 'TV_LOCKED');
    a.info('from a');
    a.close();
    const b = new tv.RingFileLog(path, { flushIntervalMs: 0 });
    b.info('from b');
    b.close();
    expect(msgs(path)).toEqual(['from a', 'from b']);
    expect(existsSync(`${path}.lock`)).toBe(false);
  });

  it('many logs open at once add no exit listener each (no MaxListenersExceededWarning)', () => {
    const before = process.listenerCount('exit');
    const logs = Array.from({ length: 12 }, (_, i) => new tv.RingFileLog(fresh(`many-${i}.log`)));
    expect(process.listenerCount('exit') - before).toBeLessThanOrEqual(1);
    for (const l of logs) l.close();
  });

  it('a lock file nobody holds is taken over whatever it says (dead pid, reused pid 1, our own pid, torn)', () => {
    // The lock is the kernel's (flock), not the file's text: a file left by a killed writer, a pid
    // reused after a container restart, or a torn file locks nothing (issue 13).
    const path = fresh();
    mkdirSync(join(path, '..'), { recursive: true });
    for (const text of [
      JSON.stringify({ pid: 2 ** 22 + 12345, hostname: hostname() }),
      JSON.stringify({ pid: 1, hostname: hostname(), since: '2026-01-01T00:00:00Z' }),
      JSON.stringify({ pid: process.pid, hostname: hostname(), start: '1' }),
      '{"pid":',
      '',
    ]) {
      writeFileSync(`${path}.lock`, text);
      const log = new tv.RingFileLog(path);
      const lock = JSON.parse(readFileSync(`${path}.lock`, 'utf8'));
      expect(lock).toMatchObject({ pid: process.pid, hostname: hostname() });
      // While it is held, a second writer is refused and told who holds it.
      const e = expectCode(() => new tv.RingFileLog(path), 'TV_LOCKED');
      expect(e.context).toMatchObject({ pid: process.pid, hostname: hostname() });
      log.close();
      expect(existsSync(`${path}.lock`)).toBe(false);
    }
  });

  it('the lock note of an older build (before the flock lock) naming a live process here refuses the ring log; a dead one is taken over', async () => {
    // Regression: builds before f236a3e locked `<file>.lock` by its note alone ({pid, hostname,
    // since, start}, no flock); today's logger took the free flock and both wrote the file (records lost).
    const path = fresh();
    mkdirSync(join(path, '..'), { recursive: true });
    const old = spawn('sleep', ['30'], { stdio: 'ignore' });
    const pid = old.pid as number;
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[22 - 3];
    const since = new Date().toISOString();
    const notes = [
      `${JSON.stringify({ pid, hostname: hostname(), since, start })}\n`,
      // Written where that build could not read /proc: no `start`, today's keys, but its newline.
      `${JSON.stringify({ pid, hostname: hostname(), since })}\n`,
    ];
    try {
      for (const note of notes) {
        writeFileSync(`${path}.lock`, note);
        const e = expectCode(() => new tv.RingFileLog(path), 'TV_LOCKED');
        expect(e.message).toContain(`older tensorvault (pid ${pid}`);
        expect(e.context).toMatchObject({ pid, hostname: hostname(), olderBuild: 'note-lock' });
        // The older writer's note is left as it was, and nothing was written.
        expect(readFileSync(`${path}.lock`, 'utf8')).toBe(note);
        expect(existsSync(path)).toBe(false);
      }
      // Today's note (no newline) naming that live pid: its writer is gone (the flock was free).
      writeFileSync(`${path}.lock`, JSON.stringify({ pid, hostname: hostname(), since }));
      new tv.RingFileLog(path, { flushIntervalMs: 0 }).close();
    } finally {
      old.kill('SIGKILL');
      await new Promise((r) => old.once('exit', r));
    }
    // Its process is gone: the note is stale and taken over.
    const log = new tv.RingFileLog(path, { flushIntervalMs: 0 });
    log.info('after');
    expect(JSON.parse(readFileSync(`${path}.lock`, 'utf8'))).toMatchObject({ pid: process.pid });
    log.close();
    expect(msgs(path)).toEqual(['after']);
  });

  it('a lock path that is a folder or a FIFO is refused with a typed error, not waited on', () => {
    const path = fresh();
    mkdirSync(`${path}.lock`, { recursive: true });
    expectCode(() => new tv.RingFileLog(path), 'TV_IS_DIRECTORY');
    const other = fresh();
    mkdirSync(join(other, '..'), { recursive: true });
    spawnSync('mkfifo', [`${other}.lock`]);
    expectCode(() => new tv.RingFileLog(other), 'TV_NOT_A_FILE');
  });
});

describe('a ring log that cannot write (full disk, folder gone)', () => {
  it('the default onError warns once per streak of failures, not once per record', async () => {
    // Regression: every failed flush was a process warning, and an `error` record flushes at once, so
    // a full disk printed one warning per error logged (16 for the 20 records below).
    const folder = join(dir, `streak-${n++}`);
    mkdirSync(folder);
    const warnings: Error[] = [];
    const on = (w: Error) => {
      if (/^TV_/.test(String((w as { code?: string }).code))) warnings.push(w);
    };
    const seen: unknown[] = [];
    const diag = (m: unknown) => {
      if ((m as { event?: string }).event === 'error') seen.push(m);
    };
    process.on('warning', on);
    subscribe(tv.RING_LOG_CHANNEL, diag);
    const log = new tv.RingFileLog(join(folder, 'x.log'), {
      capacityLines: 4,
      compactionSlack: 1,
      flushIntervalMs: 0,
    });
    try {
      log.info('written');
      rmSync(folder, { recursive: true });
      for (let i = 0; i < 20; i++) log.error(`cannot be written ${i}`);
      await new Promise((r) => setTimeout(r, 20)); // warnings are emitted on a later tick
      expect(warnings).toHaveLength(1);
      const failures = seen.length;
      expect(failures).toBeGreaterThan(1); // the channel still sees every failure
      // Room again: the next write succeeds, and a new streak warns again (once).
      mkdirSync(folder);
      log.error('written again');
      rmSync(folder, { recursive: true });
      for (let i = 0; i < 20; i++) log.error(`cannot be written either ${i}`);
      await new Promise((r) => setTimeout(r, 20));
      expect(warnings).toHaveLength(2);
    } finally {
      process.off('warning', on);
      unsubscribe(tv.RING_LOG_CHANNEL, diag);
      mkdirSync(folder, { recursive: true });
      log.close();
    }
  });
});
