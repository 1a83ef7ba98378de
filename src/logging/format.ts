import { ErrorCode, TensorVaultError } from '../errors';
import { readRegularFileSync } from '../io/index';

/** Format version written in the header line. */
export const RING_FORMAT_VERSION = 1;

/** The header line (without its newline) for a ring of `capacity` records. */
export function headerLine(capacity: number): string {
  return `{"tvring":${RING_FORMAT_VERSION},"capacity":${capacity}}`;
}

/** Standard level names and their numeric values (pino's numbering). */
export const LEVELS = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
} as const;

/** A standard level name. */
export type LevelName = keyof typeof LEVELS;

const LEVEL_NAME_BY_VALUE = new Map<number, string>(Object.entries(LEVELS).map(([k, v]) => [v, k]));

/** One record read back from a ring log. */
export interface RingLogRecord {
  /** The line as stored (one JSON value, no newline). */
  readonly raw: string;
  /** The parsed JSON value (an object for structured records, a string for text records). */
  readonly value: unknown;
}

/** What {@link readRingLog} found in a file. */
export interface RingLogContents {
  /** `'tvring1'` for a file with the ring header; `'text'` for a plain text file (PyFolds's format). */
  readonly format: 'tvring1' | 'text';
  /** The capacity recorded in the header (`undefined` for plain text files). */
  readonly capacity: number | undefined;
  /** The last `capacity` records, oldest first (every record for plain text files). */
  readonly records: RingLogRecord[];
  /** Complete records in the file before the window was applied (the file may hold up to N + slack). */
  readonly recordsInFile: number;
  /** True when the file ended in an unterminated line (a write cut short by a crash); it was ignored. */
  readonly tornTail: boolean;
  /** Complete lines that are not valid JSON (damage); they were skipped. */
  readonly skipped: number;
}

interface Header {
  capacity: number;
}

function parseHeader(line: string, path: string): Header | undefined {
  if (!line.startsWith('{"tvring"')) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const h = v as { tvring?: unknown; capacity?: unknown };
  if (h.tvring !== RING_FORMAT_VERSION) {
    throw new TensorVaultError(
      ErrorCode.CORRUPT,
      `${path}: unsupported ring log format version ${String(h.tvring)} (this version reads ${RING_FORMAT_VERSION})`,
      { path, expected: RING_FORMAT_VERSION, actual: String(h.tvring) },
    );
  }
  if (typeof h.capacity !== 'number' || !Number.isSafeInteger(h.capacity) || h.capacity < 1) {
    throw new TensorVaultError(ErrorCode.CORRUPT, `${path}: ring log header has an invalid capacity`, {
      path,
      actual: String(h.capacity),
    });
  }
  return { capacity: h.capacity };
}

/** @internal Parse the text of a ring log file. `window` overrides the header's capacity. */
export function parseRingLog(text: string, path: string, window?: number): RingLogContents {
  const lines = text.split('\n');
  // The piece after the last '\n' is '' for a well-terminated file, otherwise a torn tail.
  const last = lines.pop() ?? '';
  const tornTail = last.length > 0;
  let header: Header | undefined;
  let start = 0;
  if (lines.length > 0) {
    header = parseHeader(lines[0] as string, path);
    if (header !== undefined) start = 1;
  } else if (tornTail && last.startsWith('{"tvring"')) {
    // A header cut short: an empty ring log.
    return { format: 'tvring1', capacity: undefined, records: [], recordsInFile: 0, tornTail, skipped: 0 };
  }
  const records: RingLogRecord[] = [];
  let skipped = 0;
  for (let i = start; i < lines.length; i++) {
    const raw = lines[i] as string;
    if (header === undefined) {
      // Plain text (PyFolds): every line is a text record; a trailing '\r' is a CRLF line ending.
      const t = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
      records.push({ raw: JSON.stringify(t), value: t });
      continue;
    }
    try {
      records.push({ raw, value: JSON.parse(raw) as unknown });
    } catch {
      skipped++;
    }
  }
  const cap = window ?? header?.capacity;
  const recordsInFile = records.length;
  const kept = cap !== undefined && records.length > cap ? records.slice(records.length - cap) : records;
  return {
    format: header === undefined ? 'text' : 'tvring1',
    capacity: header?.capacity,
    records: kept,
    recordsInFile,
    tornTail,
    skipped,
  };
}

/**
 * Read a ring log file written by {@link RingFileLog} (or a plain text log such as PyFolds's
 * `CircularBufferFileHandler` writes). Safe while a logger is writing the file. Returns the last
 * `capacity` records in order; torn or damaged lines are counted, never returned.
 */
export function readRingLog(path: string): RingLogContents {
  if (typeof path !== 'string' || path.length === 0) {
    throw new TensorVaultError(ErrorCode.INVALID_ARGUMENT, 'path must be a non-empty string', {
      argument: 'path',
    });
  }
  const text = (readRegularFileSync(path) as Buffer).toString('utf8');
  return parseRingLog(text, path);
}

/** The name of a numeric level (`50` → `'error'`), or the number as text for custom levels. */
export function levelName(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return LEVEL_NAME_BY_VALUE.get(value) ?? String(value);
  return '-';
}
