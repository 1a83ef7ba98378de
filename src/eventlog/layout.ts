/** File names inside a data folder. */
export const LAYOUT = {
  dir: 'event-log',
  snapshot: 'event-log-snapshot.json',
  legacySingle: 'event-log.json',
  legacyMigrated: 'event-log.legacy.json',
  legacyAnchor: 'event-log-anchor.json',
  lock: 'event-log.lock',
  v2Meta: 'log.json',
  v2Head: 'HEAD',
} as const;

/** Legacy segment file name pattern. */
export const LEGACY_SEGMENT_RE = /^segment-(\d{6})\.json$/;
/** v2 segment file name pattern. */
export const V2_SEGMENT_RE = /^segment-(\d{6})\.jsonl$/;

/** On-disk format of a log. */
export type EventLogFormat = 'legacy' | 'v2';

/** The file name of segment `n` in `format`. */
export function segName(n: number, format: EventLogFormat): string {
  return `segment-${String(n).padStart(6, '0')}.${format === 'v2' ? 'jsonl' : 'json'}`;
}

export interface SegmentRead {
  entries: unknown[];
  /** v2 header (first line), when parseable. */
  header?: Record<string, unknown>;
  /** Bytes after the last newline (torn tail), v2 only. */
  tornBytes: number;
  /** Byte length of the complete part. */
  completeBytes: number;
  /** Why the file could not be parsed at all. */
  problem?: string;
}

/**
 * Parse the bytes of one segment file. Legacy: a JSON array. v2: a header line then one entry per
 * line; bytes after the last newline are a torn write and are reported, not parsed.
 */
export function parseSegment(raw: Buffer, format: EventLogFormat): SegmentRead {
  if (format === 'legacy') {
    try {
      const v: unknown = JSON.parse(raw.toString('utf8'));
      if (!Array.isArray(v))
        return { entries: [], tornBytes: 0, completeBytes: raw.length, problem: 'not a JSON array' };
      return { entries: v, tornBytes: 0, completeBytes: raw.length };
    } catch {
      return { entries: [], tornBytes: 0, completeBytes: raw.length, problem: 'not valid JSON' };
    }
  }
  const end = raw.lastIndexOf(0x0a) + 1;
  const tornBytes = raw.length - end;
  const out: SegmentRead = { entries: [], tornBytes, completeBytes: end };
  if (end === 0) return out;
  const lines = raw
    .subarray(0, end - 1)
    .toString('utf8')
    .split('\n');
  try {
    out.header = JSON.parse(lines[0] as string) as Record<string, unknown>;
  } catch {
    out.problem = 'header line is not valid JSON';
    return out;
  }
  if (out.header?.tv_eventlog !== 2) {
    out.problem = 'not a v2 segment header';
    return out;
  }
  for (let i = 1; i < lines.length; i++) {
    try {
      out.entries.push(JSON.parse(lines[i] as string));
    } catch {
      out.problem = `line ${i + 1} is not valid JSON`;
      return out;
    }
  }
  return out;
}

/**
 * In the bytes of a v2 segment, where the events after `seq` start: the byte offset of the first
 * event line whose `seq` is larger, how many event lines follow from there, and the header line's
 * length. `undefined` when no event of the segment is past `seq`.
 */
export function v2EventsAfter(
  raw: Buffer,
  seq: number,
): { cut: number; events: number; headerBytes: number } | undefined {
  const lines = raw.toString('utf8').split('\n');
  const headerBytes = Buffer.byteLength(lines[0] ?? '') + 1;
  let offset = headerBytes;
  for (let j = 1; j < lines.length; j++) {
    const line = lines[j] as string;
    if (line === '') break;
    let e: { seq?: unknown } | undefined;
    try {
      e = JSON.parse(line) as { seq?: unknown };
    } catch {
      e = undefined;
    }
    if (typeof e?.seq === 'number' && e.seq > seq) {
      return { cut: offset, events: lines.slice(j).filter((l) => l !== '').length, headerBytes };
    }
    offset += Buffer.byteLength(line) + 1;
  }
  return undefined;
}
