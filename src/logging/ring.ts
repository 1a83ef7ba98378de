/**
 * {@link RingFileLog}: a file that always holds the most recent N log records, written lazily (at most
 * once per flush interval, by an unref'd timer while something is pending), at once and synchronously for
 * records at or above the flush level, and on exit. Format and crash-safety argument:
 * `docs/formats/ring-log.md`.
 */

import { channel } from 'node:diagnostics_channel';
import { closeSync, fdatasync, fdatasyncSync, fstatSync, ftruncateSync, openSync, unlinkSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { disposeSymbol } from '../dispose';
import { ErrorCode, invalidArgument, TensorVaultError } from '../errors';
import {
  atomicWriteFileSync,
  ioError,
  makeFolderSync,
  readRegularFileSync,
  tempStem,
  WriterLock,
  writableTarget,
  writeAllAt,
} from '../io/index';
import { describeValue, hasLoneSurrogate, optionsObject, requiredInteger } from '../validate';
import { headerLine, LEVELS, type LevelName, linesBuffer, parseRingLog } from './format';
import { type LogFields, Ring, serialise } from './record';

export type { LogFields } from './record';

/** Options of {@link RingFileLog}. */
export interface RingFileLogOptions {
  /** How many records the file keeps (the window). Integer ≥ 1; default 1000. */
  capacityLines?: number;
  /**
   * Lazy-write interval in milliseconds (monotonic clock). Records below the flush level are written at
   * most this long after they were logged. `0` writes on every record. Default 5000.
   */
  flushIntervalMs?: number;
  /** Records at or above this level are written synchronously before the logging call returns. Default `'error'`. */
  flushLevel?: LevelName | number;
  /** fdatasync the file after every write (not only after compactions). Default false. */
  fsync?: boolean;
  /**
   * How many records beyond the capacity the file may hold before it is compacted (atomically rewritten
   * with the last `capacityLines` records). Integer ≥ 0; default `max(capacityLines, 4096)`, so each record
   * is written at most about twice in all whatever the capacity, and small windows do not pay a synced
   * rewrite every few records. `0` rewrites on every write, like PyFolds (a file of exactly N records).
   */
  compactionSlack?: number;
  /**
   * Called with write errors from the timer, the exit hook or a logging call (logging never throws for
   * I/O). Default: `process.emitWarning` (a line on stderr during process exit), once per streak of
   * failures (a full disk: one warning until a write succeeds again). Records that failed to be written
   * stay pending and are retried.
   */
  onError?: (err: TensorVaultError) => void;
}

/** Counters of one {@link RingFileLog}. */
export interface RingFileLogStats {
  /** Records in the memory window (≤ capacity). */
  readonly records: number;
  /** Records logged but not yet written. */
  readonly pending: number;
  /** Complete records in the file (≤ capacity + slack). */
  readonly recordsInFile: number;
  /** Appends done. */
  readonly appends: number;
  /** Atomic rewrites done (the first write of a new file counts as one). */
  readonly compactions: number;
  /** Bytes written (appends and rewrites). */
  readonly bytesWritten: number;
}

/** Fields attached to a record. `Error` values are serialised with name, message, stack and code. */
/**
 * Telemetry (`diagnostics_channel`): `{ event: 'compaction', path, records, bytes, ms }` after each
 * compaction and `{ event: 'error', path, error }` for each write error reported through `onError`.
 */
export const RING_LOG_CHANNEL = 'tensorvault:ring-log';
const diag = channel(RING_LOG_CHANNEL);

/** A message on {@link RING_LOG_CHANNEL} (`tensorvault:ring-log`). */
export type RingLogEvent =
  /** A compaction rewrote the file: `records` kept, `bytes` written. */
  | { event: 'compaction'; path: string; records: number; bytes: number; ms: number }
  /** A write error, as reported through `onError`. */
  | { event: 'error'; path: string; error: TensorVaultError };

function publishRing(event: RingLogEvent): void {
  diag.publish(event);
}

const open = new Set<RingFileLog>();
let exitHookInstalled = false;
/** The process's `exit` event has begun: every record is written as it is logged. */
let exiting = false;
/**
 * In a worker thread, records are written at the end of the event-loop turn that logged them (one
 * `write()` per turn, however many records it logged). `worker.terminate()` (a pool's idle timeout:
 * piscina's `idleTimeout`, a pool's shutdown) stops the worker's JavaScript without its `exit` event,
 * and nothing else runs at that teardown but native cleanup, which does not have the records: records
 * waiting for the lazy write were lost. A worker that has gone back to its event loop (idle, or waiting
 * for its next task) has written everything it logged; only a terminate that lands in the turn that
 * logged them can lose records, as it stops any JavaScript.
 */
const inWorker = !isMainThread;

/**
 * The default `onError`: a process warning, or, during the `exit` event (when warnings, emitted on the
 * next tick, would never appear), a line on stderr.
 */
function defaultOnError(err: TensorVaultError): void {
  if (exiting) process.stderr.write(`tensorvault: ring log: ${err.message} [${err.code}]\n`);
  else process.emitWarning(err);
}

function resolveLevel(level: unknown, argument: string): number {
  if (typeof level === 'number' && Number.isFinite(level)) return level;
  if (typeof level === 'string' && Object.hasOwn(LEVELS, level)) return LEVELS[level as LevelName];
  throw invalidArgument(
    argument,
    `${argument} must be one of ${Object.keys(LEVELS).join(', ')} or a number, got ${describeValue(level)}`,
  );
}

/**
 * `line` as one JSON value: pino's and winston's records (`{…}`) and any other valid JSON as they are;
 * anything else (a pretty-printed or plain text line from a formatter upstream) as a JSON string. It
 * was stored as it came, and the reader then dropped it as a damaged line.
 */
function asJsonLine(raw: string): string {
  // A lone UTF-16 surrogate written raw would be stored as U+FFFD (the file is UTF-8): the record read
  // back would differ. In JSON text one can only stand inside a string, where its `\uXXXX` escape is the
  // same string; a line that is not JSON is escaped by JSON.stringify below anyway.
  const line = hasLoneSurrogate(raw)
    ? raw.replace(/\p{Cs}/gu, (c) => `\\u${c.charCodeAt(0).toString(16)}`)
    : raw;
  if (line.charCodeAt(0) === 0x7b && line.charCodeAt(line.length - 1) === 0x7d) return line;
  try {
    JSON.parse(line);
    return line;
  } catch {
    return JSON.stringify(raw);
  }
}

/** Smallest default compaction slack (records), so small windows are not rewritten every few records. */
const DEFAULT_MIN_SLACK = 4096;

/** Largest accepted capacity (records kept in memory and on disk). */
export const MAX_CAPACITY_LINES = 100_000_000;

/**
 * A circular-buffer log file: the last `capacityLines` records, on disk, crash-safe.
 *
 * - Records below the flush level are written lazily: when `flushIntervalMs` has passed since the last
 *   write (checked at each record, and by an unref'd timer armed only while something is pending).
 * - Records at or above `flushLevel` (default `error`) are on disk (in the page cache; fsync with
 *   `fsync: true`) when the logging call returns, together with everything logged before them.
 * - Pending records are written synchronously at process exit and by {@link close}.
 * - In a worker thread records are written at the end of the event-loop turn that logged them
 *   (`flushIntervalMs` is not used there): a terminated worker (`worker.terminate()`) runs no `exit`
 *   event, and records waiting for a later write were lost.
 * - Writes append; the file is compacted by atomic replacement once it holds `capacityLines +
 *   compactionSlack` records. A crash at any instant leaves a readable file holding every record written
 *   before the last completed write (`docs/formats/ring-log.md`).
 * - One writer per file: a second logger on the same file (in this or another live process) is rejected
 *   with `TV_LOCKED`.
 * - An existing file's last `capacityLines` records are loaded at start (also a PyFolds plain text file,
 *   which is converted at the first write).
 */
export class RingFileLog {
  /** The log file's absolute path. */
  readonly path: string;
  /** The window: records kept. */
  readonly capacityLines: number;
  /** The lazy-write interval in milliseconds. */
  readonly flushIntervalMs: number;
  /** Numeric level at or above which records are written at once. */
  readonly flushLevel: number;

  readonly #fsync: boolean;
  readonly #slack: number;
  readonly #onError: (err: TensorVaultError) => void;
  /** A flush failed and none has succeeded since (the default `onError` has warned already). */
  #failing = false;
  readonly #ring: Ring;
  readonly #lock: WriterLock;
  #pending = 0;
  #fd: number | undefined;
  #size = 0;
  #inFile = 0;
  #needsRewrite = true;
  #lastWrite: number;
  #timer: NodeJS.Timeout | undefined;
  /** In a worker thread: the write at the end of this event-loop turn, when one is scheduled. */
  #turnEnd: NodeJS.Immediate | undefined;
  #closed = false;
  #appends = 0;
  #compactions = 0;
  #bytes = 0;

  /**
   * Open (or create at the first write) the ring log at `path`. Parent folders are created. Throws
   * `TV_INVALID_ARGUMENT` for bad options, `TV_LOCKED` if another logger writes the file, `TV_CORRUPT`
   * for a ring file of an unknown version, and file errors (`TV_PERMISSION_DENIED`, `TV_IS_DIRECTORY`...).
   */
  constructor(path: string, options: RingFileLogOptions = {}) {
    if (typeof path !== 'string' || path.length === 0)
      throw invalidArgument('path', 'path must be a non-empty string');
    optionsObject(options);
    this.capacityLines = requiredInteger(
      options.capacityLines ?? 1000,
      'capacityLines',
      1,
      MAX_CAPACITY_LINES,
    );
    const interval = options.flushIntervalMs ?? 5000;
    if (
      typeof interval !== 'number' ||
      !Number.isFinite(interval) ||
      interval < 0 ||
      interval > 2 ** 31 - 1
    ) {
      throw invalidArgument(
        'flushIntervalMs',
        `flushIntervalMs must be a number in [0, 2^31-1], got ${describeValue(interval)}`,
      );
    }
    this.flushIntervalMs = interval;
    this.flushLevel = resolveLevel(options.flushLevel ?? 'error', 'flushLevel');
    this.#slack = requiredInteger(
      options.compactionSlack ?? Math.max(this.capacityLines, DEFAULT_MIN_SLACK),
      'compactionSlack',
      0,
      MAX_CAPACITY_LINES,
    );
    if (options.fsync !== undefined && typeof options.fsync !== 'boolean') {
      throw invalidArgument('fsync', 'fsync must be a boolean');
    }
    this.#fsync = options.fsync ?? false;
    if (options.onError !== undefined && typeof options.onError !== 'function') {
      throw invalidArgument('onError', 'onError must be a function');
    }
    this.#onError = options.onError ?? defaultOnError;
    this.path = writableTarget(resolve(path));
    this.#ring = new Ring(this.capacityLines);

    makeFolderSync(dirname(this.path));
    this.#lock = WriterLock.acquire(`${this.path}.lock`, {
      // Released by #atExit, after the last records are written, not by the lock's own exit listener
      // (which may run first): in a worker thread by close(); in the main thread by the kernel, when
      // the process has ended.
      releaseAtExit: false,
      describe: (h) =>
        `${this.path} is already open for writing by ${h.pid === process.pid ? 'another logger in this process' : h.pid !== undefined ? `process ${h.pid} on ${h.hostname ?? 'an unknown host'}` : 'another process'} (lock ${this.path}.lock); one writer per file`,
    });
    try {
      this.#load();
    } catch (err) {
      this.#lock.release();
      throw err;
    }
    this.#lastWrite = performance.now();
    open.add(this);
    if (!exitHookInstalled) {
      process.on('exit', () => RingFileLog.#atExit());
      exitHookInstalled = true;
    }
  }

  /**
   * The process's `exit` event: every open log writes its pending records. In the main thread the logs
   * stay open with their locks held (released by the kernel when the process ends, an instant later):
   * a record logged by an `exit` listener that runs after this one is written at once, and no other
   * process can take the file over while this one still writes it. (A lock released here let another
   * process load the file before the last records were written, which then overwrote its own; and a
   * record logged from a later `exit` listener threw `TV_CLOSED`.) A worker thread's logs are closed,
   * since its process goes on.
   */
  static #atExit(): void {
    exiting = true;
    for (const log of [...open]) {
      if (isMainThread) {
        if (log.#pending > 0) log.#flushReporting();
      } else log.close();
    }
  }

  #load(): void {
    const bytes = readRegularFileSync(this.path, true);
    if (bytes === undefined) return; // created at the first write
    const contents = parseRingLog(bytes, this.path, this.capacityLines);
    for (const r of contents.records) this.#ring.push(r.raw);
    // Stale temp file of a writer that died mid-compaction (we hold the lock: it is not in use).
    this.#removeTemp();
    const clean =
      contents.format === 'tvring1' &&
      contents.capacity === this.capacityLines &&
      !contents.tornTail &&
      contents.skipped === 0 &&
      contents.recordsInFile <= this.capacityLines + this.#slack;
    if (clean) {
      try {
        this.#fd = openSync(this.path, 'r+');
        this.#size = fstatSync(this.#fd).size;
      } catch (err) {
        throw ioError(err, this.path);
      }
      this.#inFile = contents.recordsInFile;
      this.#needsRewrite = false;
    }
    // Otherwise the first write rewrites the file: converts plain text, drops a torn tail or damaged
    // lines, applies a new capacity.
  }

  get #tempPath(): string {
    return join(dirname(this.path), `.${tempStem(basename(this.path))}.tmp`);
  }

  #removeTemp(): void {
    try {
      unlinkSync(this.#tempPath);
    } catch {
      // none
    }
  }

  /** Log `msg` at `level` with optional `fields`. Never throws for I/O (see `onError`). */
  log(level: LevelName | number, msg: string, fields?: LogFields): void {
    const value = resolveLevel(level, 'level');
    const label = typeof level === 'string' ? level : value;
    if (typeof msg !== 'string')
      throw invalidArgument('msg', `msg must be a string, got ${describeValue(msg)}`);
    if (fields !== undefined) {
      try {
        optionsObject(fields, 'fields');
      } catch (err) {
        // A revoked proxy throws a TypeError from Array.isArray.
        if (err instanceof TensorVaultError) throw err;
        throw invalidArgument('fields', `fields cannot be read: ${(err as Error)?.message ?? String(err)}`);
      }
    }
    this.#add(serialise(label, msg, fields), value);
  }

  /** Log at `trace`. */
  trace(msg: string, fields?: LogFields): void {
    this.log('trace', msg, fields);
  }
  /** Log at `debug`. */
  debug(msg: string, fields?: LogFields): void {
    this.log('debug', msg, fields);
  }
  /** Log at `info`. */
  info(msg: string, fields?: LogFields): void {
    this.log('info', msg, fields);
  }
  /** Log at `warn`. */
  warn(msg: string, fields?: LogFields): void {
    this.log('warn', msg, fields);
  }
  /** Log at `error`: written before the call returns. */
  error(msg: string, fields?: LogFields): void {
    this.log('error', msg, fields);
  }
  /** Log at `fatal`: written before the call returns. */
  fatal(msg: string, fields?: LogFields): void {
    this.log('fatal', msg, fields);
  }

  /**
   * Add one pre-serialised record: `line` is a single JSON value without newline (pino's and winston's
   * JSON lines are); a line that is not JSON is stored as a JSON string (one shaped `{…}` is taken as
   * JSON unparsed). `level` is its numeric level
   * on the scale of `flushLevel`. Used by the pino destination and the winston transport.
   */
  appendLine(line: string, level: number): void {
    if (typeof line !== 'string' || line.includes('\n')) {
      throw invalidArgument('line', 'line must be a string without newlines');
    }
    if (typeof level !== 'number' || Number.isNaN(level))
      throw invalidArgument('level', `level must be a number, got ${describeValue(level)}`);
    this.#add(asJsonLine(line), level);
  }

  #add(line: string, level: number): void {
    if (this.#closed) {
      throw new TensorVaultError(ErrorCode.CLOSED, `${this.path}: log is closed`, { path: this.path });
    }
    this.#ring.push(line);
    this.#pending++;
    if (level >= this.flushLevel || this.flushIntervalMs === 0 || exiting) {
      this.#flushReporting();
      return;
    }
    if (inWorker) {
      this.#turnEnd ??= setImmediate(() => {
        this.#turnEnd = undefined;
        this.#flushReporting();
      });
      return;
    }
    const due = this.#lastWrite + this.flushIntervalMs;
    const now = performance.now();
    if (now >= due) this.#flushReporting();
    else if (this.#timer === undefined) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#flushReporting();
      }, due - now);
      this.#timer.unref();
    }
  }

  #flushReporting(): void {
    try {
      this.flushSync();
    } catch (err) {
      const e = err instanceof TensorVaultError ? err : ioError(err, this.path);
      if (diag.hasSubscribers) publishRing({ event: 'error', path: this.path, error: e });
      // The default handler warns once per streak of failures (a full disk fails every flush, and an
      // `error` record flushes at once, until there is room again: one warning, not one per record); a
      // caller's `onError` and the channel see every one.
      if (this.#onError !== defaultOnError || !this.#failing) this.#onError(e);
      this.#failing = true;
    }
  }

  /** Records logged and not yet written. */
  get pending(): number {
    return Math.min(this.#pending, this.#ring.count);
  }

  /** Counters (records, pending, records in the file, appends, compactions, bytes). */
  stats(): RingFileLogStats {
    return {
      records: this.#ring.count,
      pending: this.pending,
      recordsInFile: this.#inFile,
      appends: this.#appends,
      compactions: this.#compactions,
      bytesWritten: this.#bytes,
    };
  }

  /**
   * Write pending records now, synchronously (an append; a compaction when the file is full). Throws
   * file errors (the records stay pending). No-op when nothing is pending or the log is closed.
   */
  flushSync(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#turnEnd !== undefined) {
      clearImmediate(this.#turnEnd);
      this.#turnEnd = undefined;
    }
    if (this.#closed) return;
    const pending = this.pending;
    if (pending === 0 && !this.#needsRewrite) return;
    if (
      this.#needsRewrite ||
      this.#fd === undefined ||
      this.#inFile + pending > this.capacityLines + this.#slack
    ) {
      this.#rewrite();
    } else {
      this.#append(pending);
    }
    this.#pending = 0;
    this.#lastWrite = performance.now();
    this.#failing = false;
  }

  /**
   * Write pending records now. The promise settles once they are written and, with `fsync: true`, synced;
   * it rejects with the file error, if any.
   */
  flush(): Promise<void> {
    return new Promise((resolvePromise, reject) => {
      try {
        this.flushSync();
      } catch (err) {
        reject(err);
        return;
      }
      const fd = this.#fd;
      if (!this.#fsync || fd === undefined) {
        resolvePromise();
        return;
      }
      fdatasync(fd, (err) => (err ? reject(ioError(err, this.path)) : resolvePromise()));
    });
  }

  #append(count: number): void {
    const fd = this.#fd as number;
    const buf = linesBuffer(undefined, this.#ring.tail(count));
    try {
      writeAllAt(fd, buf, this.#size);
      if (this.#fsync) fdatasyncSync(fd);
    } catch (err) {
      // Leave no partial line behind: cut the file back to its last complete record.
      try {
        ftruncateSync(fd, this.#size);
      } catch {
        this.#needsRewrite = true;
      }
      throw ioError(err, this.path);
    }
    this.#size += buf.length;
    this.#inFile += count;
    this.#appends++;
    this.#bytes += buf.length;
  }

  #rewrite(): void {
    const started = performance.now();
    const lines = this.#ring.tail(this.capacityLines);
    const buf = linesBuffer(headerLine(this.capacityLines), lines);
    let fd: number | undefined;
    try {
      fd = atomicWriteFileSync(this.path, buf, { keepOpen: true, tmpPath: this.#tempPath });
    } catch (err) {
      this.#removeTemp();
      throw err;
    }
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = fd;
    this.#size = buf.length;
    this.#inFile = lines.length;
    this.#needsRewrite = false;
    this.#compactions++;
    this.#bytes += buf.length;
    if (diag.hasSubscribers) {
      publishRing({
        event: 'compaction',
        path: this.path,
        records: lines.length,
        bytes: buf.length,
        ms: performance.now() - started,
      });
    }
  }

  /**
   * Write pending records, close the file and release the lock. Idempotent. Logging afterwards throws
   * `TV_CLOSED`. A final write error is reported through `onError`. A log that logged nothing leaves
   * the file as it found it (a different capacity or a plain text file is converted at the first
   * write, not by opening and closing).
   */
  close(): void {
    if (this.#closed) return;
    if (this.#pending > 0) this.#flushReporting();
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#turnEnd !== undefined) clearImmediate(this.#turnEnd);
    this.#turnEnd = undefined;
    if (this.#fd !== undefined) {
      try {
        closeSync(this.#fd);
      } catch {
        // already closed
      }
      this.#fd = undefined;
    }
    this.#lock.release();
    open.delete(this);
  }

  /** True once {@link close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** `using log = new RingFileLog(...)`: closes the log (writing what is pending) at the end of the scope. */
  [disposeSymbol](): void {
    this.close();
  }
}
