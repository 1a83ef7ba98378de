/**
 * A pino **transport** (`pino.transport({ target: 'tensorvault/pino', options: { path } })`): pino runs
 * this module in its worker thread and writes the serialised records to the stream it returns, so the
 * ring file's writes never touch the application's event loop, the way pino users deploy file
 * destinations in production. Beside it, {@link ringDestination} is the in-thread destination.
 *
 * Across the thread boundary there is no per-record metadata, so each record's level is read from its
 * line (`"level":30`, or a label such as `"level":"error"` when pino's level formatter is used).
 */
import { Writable } from 'node:stream';
import { invalidArgument } from '../errors';
import { optionsObject } from '../validate';
import { LEVELS, type LevelName } from './format';
import { RingFileLog, type RingFileLogOptions } from './ring';

/** Options of the transport: those of {@link RingFileLog} plus the file's `path` (plain values only). */
export interface RingTransportOptions extends RingFileLogOptions {
  /** The ring log file. */
  path: string;
}

const LEVEL_RE = /"level"\s*:\s*(?:(\d+)|"([A-Za-z]+)")/;

/** A record's level from its JSON line; `info` when it has none (or a label pino does not define). */
export function levelOfLine(line: string): number {
  const m = LEVEL_RE.exec(line);
  if (m === null) return LEVELS.info;
  if (m[1] !== undefined) return Number(m[1]);
  const label = (m[2] as string).toLowerCase();
  return Object.hasOwn(LEVELS, label) ? LEVELS[label as LevelName] : LEVELS.info;
}

/** The stream pino's worker writes to: whole lines go to the ring log, a partial line waits. */
class RingStream extends Writable {
  #rest = '';
  constructor(readonly log: RingFileLog) {
    super({ decodeStrings: false, defaultEncoding: 'utf8' });
  }

  override _write(chunk: Buffer | string, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    try {
      const text = this.#rest + (typeof chunk === 'string' ? chunk : chunk.toString('utf8'));
      const lines = text.split('\n');
      this.#rest = lines.pop() ?? '';
      for (const raw of lines) {
        const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
        if (line.length > 0) this.log.appendLine(line, levelOfLine(line));
      }
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _final(cb: (err?: Error | null) => void): void {
    try {
      if (this.#rest.length > 0) this.log.appendLine(this.#rest, levelOfLine(this.#rest));
      this.#rest = '';
      this.log.close();
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.log.closed) this.log.close();
    cb(err);
  }
}

/**
 * The transport's entry point, called by pino in its worker thread with the `options` given to
 * `pino.transport`. Returns the stream pino writes the records to.
 *
 * @example
 * const logger = pino(pino.transport({ target: 'tensorvault/pino', options: { path: 'train.log', capacityLines: 10_000 } }));
 */
export default async function ringTransport(options: RingTransportOptions): Promise<Writable> {
  const { path, ...rest } = optionsObject(options) as RingTransportOptions;
  if (typeof path !== 'string' || path === '')
    throw invalidArgument('path', 'the transport needs options.path');
  return new RingStream(new RingFileLog(path, rest));
}

// Also a named export: the ESM face's declarations (.d.mts) type the default export through it (a default
// re-exported from a CommonJS declaration file is the module object under node16/nodenext).
export { ringTransport };
