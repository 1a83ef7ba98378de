/**
 * A pino destination that writes into a {@link RingFileLog}. pino serialises each record once; the
 * destination stores the line as is and takes the record's level from pino's per-record metadata
 * (`destination[Symbol.for('pino.metadata')]`: pino sets `lastLevel` before each `write`), so nothing is
 * parsed again. pino is not needed to import tensorvault.
 */
import { invalidArgument } from '../errors';
import { LEVELS, type LevelName } from './format';
import { RingFileLog, type RingFileLogOptions } from './ring';

const METADATA = Symbol.for('pino.metadata');

/** A pino destination backed by a {@link RingFileLog} (see {@link ringDestination}). */
export interface RingDestination {
  /** Tells pino to set `lastLevel` (and friends) before each write. */
  readonly [METADATA]: true;
  /** Marks the object as a writable stream, so `pino(destination)` accepts it as its only argument. */
  readonly writable: true;
  /** Set by pino before each `write`: the record's numeric level. */
  lastLevel: number | string | undefined;
  /** Set by pino before each `write`: the logger, whose `levels.values` maps custom level names. */
  lastLogger: unknown;
  /** The ring log the destination writes to. */
  readonly log: RingFileLog;
  /** Called by pino with one serialised record (a JSON line). */
  write(chunk: string): boolean;
  /** pino's `logger.flush(cb)` lands here: writes pending records. */
  flush(cb?: (err?: Error | null) => void): void;
  /** Writes pending records synchronously. */
  flushSync(): void;
  /** Writes pending records and closes the log. */
  end(): void;
}

/** Options of {@link ringDestination}: those of {@link RingFileLog}, with pino's numeric levels. */
export type RingDestinationOptions = RingFileLogOptions;

function levelOf(dest: RingDestination): number {
  const l = dest.lastLevel;
  if (typeof l === 'number') return l;
  if (typeof l === 'string') {
    // A relayed label: the logger's own level map first (custom levels), then the standard names.
    const values = (dest.lastLogger as { levels?: { values?: Record<string, number> } } | undefined)?.levels
      ?.values;
    const v = values?.[l] ?? (Object.hasOwn(LEVELS, l) ? LEVELS[l as LevelName] : undefined);
    if (v !== undefined) return v;
  }
  return LEVELS.info; // written without pino metadata: treat as info
}

/**
 * A destination for `pino(options, destination)` that keeps the last `capacityLines` records in the ring
 * file at `path`: lazy writes every `flushIntervalMs`, synchronous writes for records at or above
 * `flushLevel` (pino levels: `'error'` = 50), writes on `logger.flush()`, on `end()` and at exit.
 *
 * @example
 * const logger = pino(ringDestination('train.log', { capacityLines: 10_000 }));
 */
export function ringDestination(path: string, options: RingDestinationOptions = {}): RingDestination {
  const log = new RingFileLog(path, options);
  const dest: RingDestination = {
    [METADATA]: true,
    writable: true,
    lastLevel: undefined,
    lastLogger: undefined,
    log,
    write(chunk: string): boolean {
      if (typeof chunk !== 'string') throw invalidArgument('chunk', 'pino destinations receive strings');
      const level = levelOf(this);
      let end = chunk.length;
      if (chunk.charCodeAt(end - 1) === 10) end--;
      if (chunk.charCodeAt(end - 1) === 13) end--; // pino's crlf option
      const line = chunk.slice(0, end);
      if (line.includes('\n')) {
        // Several records in one chunk (not what pino does, but accept it).
        for (const part of line.split('\n')) {
          const p = part.endsWith('\r') ? part.slice(0, -1) : part;
          if (p.length > 0) log.appendLine(p, level);
        }
      } else if (line.length > 0) log.appendLine(line, level);
      return true;
    },
    flush(cb?: (err?: Error | null) => void): void {
      log.flush().then(
        () => cb?.(null),
        (err: Error) => cb?.(err),
      );
    },
    flushSync(): void {
      log.flushSync();
    },
    end(): void {
      log.close();
    },
  };
  return dest;
}
