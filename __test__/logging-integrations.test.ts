// The pino destination and the winston transport with the real packages, and `tensorvault log tail`.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import winston from 'winston';
import * as tv from '../dist/index.js';
import ringTransport from '../dist/logging/pino-transport.js';
import { RingTransport } from '../dist/logging/winston.js';
import { tempDir } from './helpers/tmp';

const dir = tempDir('tv-logint-');
let n = 0;
const fresh = () => join(dir, `${n++}.log`);
const values = (path: string) => tv.readRingLog(path).records.map((r) => r.value as Record<string, unknown>);
const raws = (path: string) => tv.readRingLog(path).records.map((r) => r.raw);
const child = join(__dirname, 'fixtures', 'ring-child.cjs');
const cli = join(__dirname, '..', 'dist', 'cli', 'main.js');
const tick = () => new Promise((r) => setImmediate(r));

describe('pino destination', () => {
  it('stores pino lines verbatim; an error is on disk when logger.error returns', () => {
    const path = fresh();
    const dest = tv.ringDestination(path, { capacityLines: 10, flushIntervalMs: 60_000 });
    const logger = pino({ base: null, timestamp: false }, dest);
    logger.info({ step: 1 }, 'first');
    logger.warn('second');
    expect(existsSync(path)).toBe(false);
    logger.error('bad');
    expect(raws(path)).toEqual([
      '{"level":30,"step":1,"msg":"first"}',
      '{"level":40,"msg":"second"}',
      '{"level":50,"msg":"bad"}',
    ]);
    dest.end();
  });

  it('takes the level from pino metadata, not from the line (level key renamed to a label)', () => {
    const path = fresh();
    const dest = tv.ringDestination(path, { flushIntervalMs: 60_000 });
    const logger = pino(
      { base: null, timestamp: false, formatters: { level: (label) => ({ severity: label.toUpperCase() }) } },
      dest,
    );
    logger.info('quiet');
    expect(existsSync(path)).toBe(false);
    logger.fatal('loud');
    expect(values(path)).toEqual([
      { severity: 'INFO', msg: 'quiet' },
      { severity: 'FATAL', msg: 'loud' },
    ]);
    dest.end();
  });

  it('custom levels and child loggers; flushLevel as a pino number', () => {
    const path = fresh();
    const dest = tv.ringDestination(path, { flushIntervalMs: 60_000, flushLevel: 45 });
    const logger = pino({ base: null, timestamp: false, customLevels: { audit: 45 } }, dest);
    const kid = logger.child({ module: 'trainer' });
    kid.warn('below'); // 40 < 45: pending
    expect(existsSync(path)).toBe(false);
    (kid as unknown as { audit: (m: string) => void }).audit('checkpoint saved');
    expect(values(path)).toEqual([
      { level: 40, module: 'trainer', msg: 'below' },
      { level: 45, module: 'trainer', msg: 'checkpoint saved' },
    ]);
    dest.end();
  });

  it('pino(destination) alone, logger.flush(cb), crlf lines, the capacity window', async () => {
    const path = fresh();
    const dest = tv.ringDestination(path, { capacityLines: 3, flushIntervalMs: 60_000 });
    const logger = pino(dest);
    for (let i = 0; i < 5; i++) logger.info({ i }, 'n');
    await new Promise<void>((resolve, reject) => logger.flush((err) => (err ? reject(err) : resolve())));
    expect(values(path).map((v) => v.i)).toEqual([2, 3, 4]);
    dest.end();
    const path2 = fresh();
    const dest2 = tv.ringDestination(path2, { flushIntervalMs: 0 });
    pino({ crlf: true, base: null, timestamp: false }, dest2).info('crlf');
    expect(raws(path2)).toEqual(['{"level":30,"msg":"crlf"}']);
    dest2.end();
  });

  it('a child that logs through pino and calls process.exit(1) leaves its records on disk', () => {
    const path = fresh();
    const r = spawnSync(process.execPath, [child, 'pino-exit', path], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(1);
    expect(values(path).map((v) => [v.level, v.msg])).toEqual([
      [30, 'pino pending'],
      [50, 'pino error'],
      [30, 'pino after'],
    ]);
  });
});

describe("pino transport (tensorvault/pino, in pino's worker thread)", () => {
  const target = join(__dirname, '..', 'dist', 'logging', 'pino-transport.js');
  const closed = (stream: { on: (e: string, f: () => void) => void; end: () => void }) =>
    new Promise<void>((resolve) => {
      stream.on('close', resolve);
      stream.end();
    });

  it('package.json exports ./pino for CommonJS and ESM, with a default export pino can call', async () => {
    const pkg = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8'));
    expect(pkg.exports['./pino'].require.default).toBe('./dist/logging/pino-transport.js');
    expect(pkg.exports['./pino'].import.default).toBe('./dist/logging/pino-transport.mjs');
    const esm = await import('../dist/logging/pino-transport.mjs');
    expect(typeof esm.default).toBe('function');
  });

  it('records reach the ring file through the worker; levels come from the lines; the window holds', async () => {
    const path = fresh();
    const transport = pino.transport({
      target,
      options: { path, capacityLines: 4, flushIntervalMs: 60_000 },
    });
    const logger = pino({ base: null }, transport);
    for (let i = 0; i < 6; i++) logger.info({ i }, 'step');
    logger.error({ i: 6 }, 'boom');
    await closed(transport);
    const v = values(path);
    expect(v.map((r) => r.i)).toEqual([3, 4, 5, 6]);
    expect(v.map((r) => r.level)).toEqual([30, 30, 30, 50]);
    // Labels (pino's level formatter) are read too.
    const path2 = fresh();
    const t2 = pino.transport({ target, options: { path: path2 } });
    const l2 = pino({ base: null, formatters: { level: (label) => ({ level: label }) } }, t2);
    l2.warn('w');
    l2.fatal('f');
    await closed(t2);
    expect(values(path2).map((r) => r.level)).toEqual(['warn', 'fatal']);
  });

  it('levelOfLine reads numbers and labels and defaults to info', async () => {
    const { levelOfLine } = await import('../dist/logging/pino-transport.js');
    expect(levelOfLine('{"level":50,"msg":"x"}')).toBe(50);
    expect(levelOfLine('{"msg":"x","level":"error"}')).toBe(50);
    expect(levelOfLine('{"msg":"no level"}')).toBe(30);
    expect(levelOfLine('plain text')).toBe(30);
  });

  it('a missing path is a typed error', async () => {
    await expect(ringTransport({} as never)).rejects.toMatchObject({ code: 'TV_INVALID_ARGUMENT' });
  });
});

describe('winston transport (tensorvault/winston)', () => {
  it('json format stored as is; errors written before the transport calls back; close() writes the rest', async () => {
    const path = fresh();
    const transport = new RingTransport({ path, capacityLines: 10, flushIntervalMs: 60_000 });
    const logger = winston.createLogger({ format: winston.format.json(), transports: [transport] });
    logger.info('hello', { step: 3 });
    await tick();
    expect(existsSync(path)).toBe(false);
    logger.error('bad');
    await tick();
    expect(values(path)).toEqual([
      { level: 'info', message: 'hello', step: 3 },
      { level: 'error', message: 'bad' },
    ]);
    logger.warn('late');
    await tick();
    expect(values(path)).toHaveLength(2);
    logger.close(); // unpipes the transport → transport.close()
    expect(transport.ring.closed).toBe(true);
    expect(values(path).map((v) => v.message)).toEqual(['hello', 'bad', 'late']);
  });

  it('text formats become JSON strings (one record per line, even multi-line text)', async () => {
    const path = fresh();
    const transport = new RingTransport({ path, flushIntervalMs: 0 });
    const logger = winston.createLogger({
      format: winston.format.printf((info) => `${info.level}: ${String(info.message)}`),
      transports: [transport],
    });
    logger.info('plain');
    logger.warn('two\nlines');
    logger.info('{not json');
    await tick();
    expect(values(path)).toEqual(['info: plain', 'warn: two\nlines', 'info: {not json']);
    logger.close();
  });

  it("uses the logger's levels (syslog) for flushLevel", async () => {
    const path = fresh();
    const transport = new RingTransport({ path, flushIntervalMs: 60_000, flushLevel: 'crit' });
    const logger = winston.createLogger({
      levels: winston.config.syslog.levels,
      format: winston.format.json(),
      transports: [transport],
    });
    logger.error('error is below crit in syslog');
    await tick();
    expect(existsSync(path)).toBe(false);
    logger.crit('crit');
    await tick();
    expect(values(path).map((v) => v.message)).toEqual(['error is below crit in syslog', 'crit']);
    logger.close();
  });

  it("a flushLevel that is not one of the logger's levels is refused at set-up, and the file let go", () => {
    const path = fresh();
    expect(() =>
      winston.createLogger({
        format: winston.format.json(),
        transports: [new RingTransport({ path, flushIntervalMs: 60_000, flushLevel: 'eror' })],
      }),
    ).toThrow(expect.objectContaining({ code: 'TV_INVALID_ARGUMENT', context: { argument: 'flushLevel' } }));
    // A transport with the name right opens the same file at once: the refused one closed it.
    const ok = new RingTransport({ path, flushLevel: 'error' });
    ok.close();
    // With syslog levels, 'crit' is one of them (and 'fatal' is not).
    expect(() =>
      winston.createLogger({
        levels: winston.config.syslog.levels,
        transports: [new RingTransport({ path, flushLevel: 'fatal' })],
      }),
    ).toThrow(expect.objectContaining({ code: 'TV_INVALID_ARGUMENT' }));
  });

  it('honours the transport level filter and silent (standard transport options)', async () => {
    const path = fresh();
    const transport = new RingTransport({ path, flushIntervalMs: 0, level: 'warn' });
    const logger = winston.createLogger({ format: winston.format.json(), transports: [transport] });
    logger.info('filtered out');
    logger.warn('kept');
    await tick();
    expect(values(path).map((v) => v.message)).toEqual(['kept']);
    logger.close();
  });

  it('a child that logs through winston and calls process.exit(1) leaves its records on disk', () => {
    const path = fresh();
    const r = spawnSync(process.execPath, [child, 'winston-exit', path], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status).toBe(1);
    expect(values(path).map((v) => [v.level, v.message])).toEqual([
      ['info', 'winston pending'],
      ['error', 'winston error'],
      ['info', 'winston after'],
    ]);
  });

  it('without winston installed, loading tensorvault/winston is TV_MISSING_PEER naming winston', () => {
    const r = spawnSync(process.execPath, [child, 'missing-winston', fresh()], { encoding: 'utf8' });
    expect(JSON.parse(r.stdout)).toMatchObject({ code: 'TV_MISSING_PEER' });
    expect(JSON.parse(r.stdout).message).toContain('npm install winston');
  });
});

describe('entry points', () => {
  it('ESM import of tensorvault and tensorvault/winston gives the same classes as require', () => {
    const root = join(__dirname, '..', 'dist');
    const script = `
      import { createRequire } from 'node:module';
      import { RingFileLog, ringDestination, readRingLog } from '${join(root, 'index.mjs')}';
      import { RingTransport } from '${join(root, 'logging', 'winston.mjs')}';
      const require = createRequire(import.meta.url);
      const cjs = require('${join(root, 'index.js')}');
      const w = require('${join(root, 'logging', 'winston.js')}');
      process.stdout.write(JSON.stringify([RingFileLog === cjs.RingFileLog, ringDestination === cjs.ringDestination,
        readRingLog === cjs.readRingLog, RingTransport === w.RingTransport, typeof RingTransport]));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual([true, true, true, true, 'function']);
  });
});

describe('optional peers', () => {
  it('tensorvault (ring log + pino destination) loads neither pino nor winston', () => {
    const r = spawnSync(process.execPath, [child, 'no-peers', fresh()], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([]);
  });
});

describe('tensorvault log tail', () => {
  const tail = (...args: string[]) =>
    spawnSync(process.execPath, [cli, 'log', ...args], { encoding: 'utf8' });

  it('prints the last N records in order, human-readable or --json, and --lines', () => {
    const path = fresh();
    const log = new tv.RingFileLog(path, { capacityLines: 3, flushIntervalMs: 0 });
    for (let i = 1; i <= 5; i++) log.info(`m${i}`, { i });
    log.error('failed', { err: new Error('boom') });
    log.close();
    const human = tail('tail', path);
    expect(human.status).toBe(0);
    const lines = human.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z INFO {2}m4 \{"i":4\}$/);
    expect(lines[1]).toMatch(/INFO {2}m5 \{"i":5\}$/);
    expect(lines[2]).toMatch(/ERROR failed \{"err":\{"type":"Error","message":"boom"\}\}$/);
    expect(lines[3]).toBe('    Error: boom');
    const json = tail('tail', path, '--json');
    expect(json.stdout.trimEnd().split('\n')).toEqual(raws(path));
    const last = tail('tail', path, '--json', '--lines', '1');
    expect(JSON.parse(last.stdout).msg).toBe('failed');
  });

  it('prints pino records (numeric levels, epoch times) and plain text logs', () => {
    const path = fresh();
    const dest = tv.ringDestination(path, { flushIntervalMs: 0 });
    pino({ base: null }, dest).warn('from pino');
    dest.end();
    const out = tail('tail', path).stdout;
    expect(out).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z WARN {2}from pino\n$/);
    const text = fresh();
    writeFileSync(text, 'INFO a\nERROR b\n');
    expect(tail('tail', text).stdout).toBe('INFO a\nERROR b\n');
  });

  it('exit codes: damaged lines 1, missing file 6, bad usage 3; a torn tail is only noted', () => {
    const damaged = fresh();
    writeFileSync(damaged, '{"tvring":1,"capacity":5}\n{"msg":"ok"}\ngarbage\n{"msg":"cut');
    const r = tail('tail', damaged, '--json');
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('{"msg":"ok"}\n');
    expect(r.stderr).toContain('skipped 1 damaged line');
    expect(r.stderr).toContain('unterminated last line');
    const torn = fresh();
    writeFileSync(torn, '{"tvring":1,"capacity":5}\n{"msg":"ok"}\n{"msg":"cut');
    expect(tail('tail', torn).status).toBe(0);
    expect(tail('tail', join(dir, 'missing.log')).status).toBe(6);
    expect(tail('tail').status).toBe(3);
    expect(tail('follow', damaged).status).toBe(3);
    expect(tail('tail', damaged, '--lines', 'x').status).toBe(3);
    mkdirSync(join(dir, 'adir'));
    expect(tail('tail', join(dir, 'adir')).status).toBe(6);
  });
});
