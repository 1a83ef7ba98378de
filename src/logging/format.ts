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
  /** The capacity recorded in the header (`undefined` for plain text files and a damaged header). */
  readonly capacity: number | undefined;
  /** The last `capacity` records, oldest first (every record for plain text files). */
  readonly records: RingLogRecord[];
  /** Complete records in the file before the window was applied (the file may hold up to N + slack). */
  readonly recordsInFile: number;
  /** True when the file ended in an unterminated line (a write cut short by a crash); it was ignored. */
  readonly tornTail: boolean;
  /** Complete lines that are not valid JSON (damage, a damaged header line included); they were skipped. */
  readonly skipped: number;
}

interface Header {
  capacity: number;
}

/** A first line that starts as a ring header but does not parse as one: a damaged header. */
const DAMAGED = 'damaged';

function parseHeader(line: string, path: string): Header | typeof DAMAGED | undefined {
  if (!line.startsWith('{"tvring"')) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return DAMAGED;
  }
  if (typeof v !== 'object' || v === null) return DAMAGED;
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

/**
 * The lines of a file's bytes, each decoded on its own: a file may be larger than the longest string
 * V8 makes (about 512 MiB; a window of large records with its compaction slack passes it), which the
 * whole-file decode refused with an untyped `ERR_STRING_TOO_LONG`.
 */
function splitLines(data: Buffer | string): string[] {
  if (typeof data === 'string') return data.split('\n');
  const lines: string[] = [];
  let at = 0;
  for (;;) {
    const nl = data.indexOf(0x0a, at);
    if (nl < 0) break;
    lines.push(data.toString('utf8', at, nl));
    at = nl + 1;
  }
  lines.push(data.toString('utf8', at));
  return lines;
}

/**
 * @internal The bytes of `lines`, each followed by a newline, after an optional `header` line: one
 * buffer filled line by line (not one joined string, which a large window would take past V8's string
 * limit).
 */
export function linesBuffer(header: string | undefined, lines: readonly string[]): Buffer {
  let total = header === undefined ? 0 : Buffer.byteLength(header) + 1;
  for (const l of lines) total += Buffer.byteLength(l) + 1;
  const buf = Buffer.allocUnsafe(total);
  let at = 0;
  for (const l of header === undefined ? lines : [header, ...lines]) {
    at += buf.write(l, at, 'utf8');
    buf[at++] = 0x0a;
  }
  return buf;
}

/**
 * @internal Parse a ring log file (its bytes, or its text). `window` overrides the header's capacity. A
 * first line that starts as a ring header (`{"tvring"`) but does not parse is a damaged header: the file
 * is still a ring log (its records are read; the header counts as one skipped line), never taken for
 * plain text.
 */
export function parseRingLog(data: Buffer | string, path: string, window?: number): RingLogContents {
  const lines = splitLines(data);
  // The piece after the last '\n' is '' for a well-terminated file, otherwise a torn tail.
  const last = lines.pop() ?? '';
  const tornTail = last.length > 0;
  let header: Header | typeof DAMAGED | undefined;
  let start = 0;
  let skipped = 0;
  if (lines.length > 0) {
    header = parseHeader(lines[0] as string, path);
    if (header !== undefined) start = 1;
    if (header === DAMAGED) skipped = 1;
  } else if (tornTail && last.startsWith('{"tvring"')) {
    // A header cut short: an empty ring log.
    return { format: 'tvring1', capacity: undefined, records: [], recordsInFile: 0, tornTail, skipped: 0 };
  }
  const records: RingLogRecord[] = [];
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
  const capacity = header === undefined || header === DAMAGED ? undefined : header.capacity;
  const cap = window ?? capacity;
  const recordsInFile = records.length;
  const kept = cap !== undefined && records.length > cap ? records.slice(records.length - cap) : records;
  return {
    format: header === undefined ? 'text' : 'tvring1',
    capacity,
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
  return parseRingLog(readRegularFileSync(path) as Buffer, path);
}

/** The name of a numeric level (`50` → `'error'`), or the number as text for custom levels. */
export function levelName(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return LEVEL_NAME_BY_VALUE.get(value) ?? String(value);
  return '-';
}
