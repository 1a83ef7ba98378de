/**
 * `tensorvault/winston`: {@link RingTransport}, a winston transport that keeps the last N records in a
 * ring log file ({@link RingFileLog}). A separate entry point so that `tensorvault` itself never needs
 * winston: this module loads winston's transport base class (`winston.Transport`, winston's own
 * `winston-transport` dependency) when it is imported, and throws `TV_MISSING_PEER` if winston is not
 * installed. It is reached through winston, a declared peer, never required by name: with an isolated
 * node_modules (pnpm, `npm --install-strategy=linked`) tensorvault sees only its own dependencies and
 * peers, and `winston-transport` is neither.
 */
import type * as winston from 'winston';
import { ErrorCode, invalidArgument, TensorVaultError } from '../errors';
import { optionsObject } from '../validate';
import { RingFileLog, type RingFileLogOptions } from './ring';

/** winston's transport base class (the `winston-transport` package, as winston exports it). */
type TransportClass = new (options?: winston.transport.TransportStreamOptions) => winston.transport;

function loadTransportStream(): TransportClass {
  let Transport: unknown;
  try {
    Transport = (require('winston') as { Transport?: unknown }).Transport;
  } catch (err) {
    throw new TensorVaultError(
      ErrorCode.MISSING_PEER,
      "tensorvault/winston needs the 'winston' package (3.x): npm install winston",
      { package: 'winston' },
      { cause: err },
    );
  }
  if (typeof Transport !== 'function') {
    throw new TensorVaultError(
      ErrorCode.MISSING_PEER,
      "tensorvault/winston needs the 'winston' package 3.x, whose winston.Transport is the transport base class: npm install winston@3",
      { package: 'winston' },
    );
  }
  return Transport as TransportClass;
}

const Base = loadTransportStream();
const LEVEL = Symbol.for('level');
const MESSAGE = Symbol.for('message');
/** winston's default (npm) levels, used until the transport is added to a logger. */
const NPM_LEVELS: Readonly<Record<string, number>> = {
  error: 0,
  warn: 1,
  info: 2,
  http: 3,
  verbose: 4,
  debug: 5,
  silly: 6,
};

/** Options of {@link RingTransport}: winston's transport options plus those of {@link RingFileLog}. */
export interface RingTransportOptions
  extends winston.transport.TransportStreamOptions,
    Omit<RingFileLogOptions, 'flushLevel'> {
  /** The ring log file. */
  path: string;
  /**
   * Records at this winston level or more severe are written before `log()` calls back. A level name of
   * the logger's levels; default `'error'`.
   */
  flushLevel?: string;
}

/** Turn winston's formatted message into one JSON line: JSON output is kept as is, text is JSON-quoted. */
function toLine(message: unknown, info: Record<string | symbol, unknown>): string {
  if (typeof message === 'string') {
    if (message.charCodeAt(0) === 123 /* { */ && !message.includes('\n')) {
      try {
        JSON.parse(message);
        return message;
      } catch {
        // text that merely starts with '{'
      }
    }
    return JSON.stringify(message);
  }
  // No format set: store the info object's own fields.
  try {
    return JSON.stringify({ ...info });
  } catch {
    return JSON.stringify({ level: String(info.level), message: String(info.message) });
  }
}

/**
 * A winston transport writing to a ring log file: the last `capacityLines` records, lazy writes every
 * `flushIntervalMs`, records at `flushLevel` or worse on disk before the transport calls back. Written on
 * `close()` (winston calls it when the transport is removed or the logger closed), on stream end and at
 * process exit. Stores winston's formatted message (`info[Symbol.for('message')]`): JSON formats are kept
 * as is, other formats become JSON strings, so each record is one line.
 *
 * @example
 * import { RingTransport } from 'tensorvault/winston';
 * const logger = winston.createLogger({ format: winston.format.json(),
 *   transports: [new RingTransport({ path: 'train.log', capacityLines: 10_000 })] });
 */
export class RingTransport extends Base {
  /** The ring log the transport writes to. */
  readonly ring: RingFileLog;
  readonly #flushLevel: string;

  constructor(options: RingTransportOptions) {
    const { path, flushLevel, capacityLines, flushIntervalMs, fsync, compactionSlack, onError, ...rest } =
      optionsObject(options);
    super(rest);
    this.#flushLevel = flushLevel ?? 'error';
    if (typeof this.#flushLevel !== 'string')
      throw invalidArgument('flushLevel', 'flushLevel must be a level name');
    const ringOptions: RingFileLogOptions = {
      flushLevel: 1,
      ...(capacityLines !== undefined ? { capacityLines } : {}),
      ...(flushIntervalMs !== undefined ? { flushIntervalMs } : {}),
      ...(fsync !== undefined ? { fsync } : {}),
      ...(compactionSlack !== undefined ? { compactionSlack } : {}),
      ...(onError !== undefined ? { onError } : {}),
    };
    this.ring = new RingFileLog(path, ringOptions);
    // The logger's levels are known once it pipes into the transport (`logger.add`, `createLogger`): a
    // `flushLevel` that is not one of them (a typo such as 'eror') would never match, and errors would
    // then be written lazily. Refuse it there, at set-up, and let go of the file.
    this.once('pipe', (logger: { levels?: Record<string, number> } | undefined) => {
      const levels = logger?.levels;
      if (levels !== undefined && !Object.hasOwn(levels, this.#flushLevel)) {
        this.ring.close();
        throw invalidArgument(
          'flushLevel',
          `flushLevel ${JSON.stringify(this.#flushLevel)} is not one of the logger's levels (${Object.keys(levels).join(', ')})`,
        );
      }
    });
  }

  #isUrgent(level: unknown): boolean {
    const levels = ((this as unknown as { levels?: Record<string, number> }).levels ?? NPM_LEVELS) as Record<
      string,
      number
    >;
    const threshold = levels[this.#flushLevel];
    const sev = typeof level === 'string' ? levels[level] : undefined;
    return threshold !== undefined && sev !== undefined && sev <= threshold;
  }

  /** winston's transport contract: store one record, then call `next`. */
  override log(info: Record<string | symbol, unknown>, next: () => void): void {
    const line = toLine(info[MESSAGE], info);
    try {
      this.ring.appendLine(line, this.#isUrgent(info[LEVEL] ?? info.level) ? 1 : 0);
    } catch (err) {
      this.emit('error', err);
    }
    setImmediate(() => this.emit('logged', info));
    next();
  }

  /** Write pending records and close the file (winston calls this when the transport is removed). */
  override close(): void {
    this.ring.close();
    this.emit('closed');
  }

  /** Writes pending records when the stream ends. */
  override _final(callback: (error?: Error | null) => void): void {
    this.ring.close();
    callback();
  }
}
