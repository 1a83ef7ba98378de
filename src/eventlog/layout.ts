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
  const steps = parseSegmentSteps(raw, format);
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
  }
}

/** Bytes of a segment parsed between two pauses of {@link parseSegmentSteps}. */
export const PARSE_SLICE_BYTES = 1 << 20;

/**
 * {@link parseSegment} in slices: yields the fraction of the bytes parsed (0 to 1) after about every
 * `sliceBytes`, so a caller can let the event loop run between slices; returns what `parseSegment`
 * returns, the same for the same bytes. v2 lines are decoded and parsed a slice of whole lines at a
 * time; a legacy array is split into runs of elements by a scan of its bytes and each run is parsed
 * on its own. The split is only used when the array, put back together, is exactly what was read
 * (`[`, the elements, `,` between them, `]`, JSON whitespace around): anything else is parsed whole,
 * as before, so a malformed file gets the same verdict.
 */
export function* parseSegmentSteps(
  raw: Buffer,
  format: EventLogFormat,
  sliceBytes = PARSE_SLICE_BYTES,
): Generator<number, SegmentRead, void> {
  if (format === 'legacy') {
    const entries = yield* splitJsonArray(raw, sliceBytes);
    if (entries !== undefined) return { entries, tornBytes: 0, completeBytes: raw.length };
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
  // Lines are decoded a slice at a time, each slice ending at a newline: a newline byte is never part
  // of a multi-byte UTF-8 sequence, so this decodes every line as one decode of the whole would.
  const nl = raw.indexOf(0x0a);
  try {
    out.header = JSON.parse(raw.toString('utf8', 0, nl)) as Record<string, unknown>;
  } catch {
    out.problem = 'header line is not valid JSON';
    return out;
  }
  if (out.header?.tv_eventlog !== 2) {
    out.problem = 'not a v2 segment header';
    return out;
  }
  let pos = nl + 1;
  let line = 2;
  while (pos < end) {
    let stop = raw.lastIndexOf(0x0a, Math.min(end, pos + sliceBytes) - 1) + 1;
    if (stop <= pos) stop = raw.indexOf(0x0a, pos) + 1; // one line longer than a slice
    const lines = raw.toString('utf8', pos, stop - 1).split('\n');
    for (const text of lines) {
      try {
        out.entries.push(JSON.parse(text));
      } catch {
        out.problem = `line ${line} is not valid JSON`;
        return out;
      }
      line++;
    }
    pos = stop;
    if (pos < end) yield pos / end;
  }
  return out;
}

/** JSON whitespace (RFC 8259): space, tab, line feed, carriage return. */
const isWs = (b: number): boolean => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;

/**
 * The elements of the JSON array `raw`, parsed a run of elements at a time, yielding the fraction done
 * after about every `sliceBytes`; `undefined` when `raw` is not `[`, runs separated by `,`, `]` (JSON
 * whitespace around) where each run, put between `[` and `]`, parses to at least one element (to any
 * number when it is the only run): the caller then parses it whole. Such runs joined by `,` are a
 * valid list of the same values, so the elements are exactly those a parse of the whole returns,
 * whichever commas the scan splits at; the scan (bytes, strings skipped, depth counted) only picks
 * commas that usually separate elements. It works on bytes: structural characters are ASCII and the
 * bytes of a multi-byte UTF-8 sequence are 0x80 or more, so each run is decoded as a decode of the
 * whole would decode it (it starts and ends next to an ASCII byte).
 */
function* splitJsonArray(raw: Buffer, sliceBytes: number): Generator<number, unknown[] | undefined, void> {
  const n = raw.length;
  let i = 0;
  while (i < n && isWs(raw[i] as number)) i++;
  if (raw[i] !== 0x5b) return undefined; // '['
  /** Start and end of each run, end excluded: the `,` that follows it or the closing `]`. */
  const runs: number[] = [i + 1];
  let depth = 1;
  let next = i + sliceBytes;
  for (i++; i < n; i++) {
    const b = raw[i] as number;
    if (b === 0x22) {
      // '"': on to the closing quote, one not escaped by an odd number of backslashes.
      let j = i;
      for (;;) {
        j = raw.indexOf(0x22, j + 1);
        if (j < 0) return undefined;
        let k = j - 1;
        while (raw[k] === 0x5c) k--;
        if ((j - 1 - k) % 2 === 0) break;
      }
      i = j;
    } else if (b === 0x5b || b === 0x7b)
      depth++; // '[' '{'
    else if (b === 0x5d || b === 0x7d) {
      depth--; // ']' '}'
      if (depth === 0) {
        if (b !== 0x5d) return undefined;
        runs.push(i);
        break;
      }
    } else if (b === 0x2c && depth === 1 && i >= next) {
      runs.push(i, i + 1); // ','
      next = i + sliceBytes;
      yield i / n / 2;
    }
  }
  if (depth !== 0) return undefined;
  for (i++; i < n; i++) if (!isWs(raw[i] as number)) return undefined;
  const out: unknown[] = [];
  for (let r = 0; r < runs.length; r += 2) {
    const z = runs[r + 1] as number;
    let v: unknown;
    try {
      v = JSON.parse(`[${raw.toString('utf8', runs[r], z)}]`);
    } catch {
      return undefined;
    }
    // A run that holds no element (`[1,]` split after its `,`) is not part of a valid array.
    if (!Array.isArray(v) || (v.length === 0 && runs.length > 2)) return undefined;
    for (const e of v) out.push(e);
    if (z < n) yield 0.5 + z / n / 2;
  }
  return out;
}

/** Where the events after a seq start in a v2 segment (see {@link V2EventsAfterScan}). */
export interface EventsAfter {
  /** Byte offset of the first event line whose `seq` is larger. */
  cut: number;
  /** Event lines from there to the end (a last line without its newline included). */
  events: number;
  /** Length of the header line, its newline included. */
  headerBytes: number;
}

/** The `seq` of an entry line, or undefined when it is not a JSON object with a numeric seq. */
function seqOfLine(line: Buffer): number | undefined {
  try {
    const e = JSON.parse(line.toString('utf8')) as { seq?: unknown } | null;
    return typeof e?.seq === 'number' ? e.seq : undefined;
  } catch {
    return undefined;
  }
}

/**
 * {@link v2EventsAfter} over a segment read as a stream: `push` its bytes in order (chunks of any
 * size), then `finish`. It keeps at most one line (the one being read) until the cut is found, and
 * only counts lines after it, so its memory does not grow with the segment.
 */
export class V2EventsAfterScan {
  #pending: Buffer[] = [];
  #pendingLen = 0;
  /** Byte offset of the start of the pending line. */
  #offset = 0;
  /** Index of the pending line (0: the header). */
  #line = 0;
  #headerBytes = 0;
  #cut: number | undefined;
  #events = 0;
  /** After the cut: the current line holds bytes. */
  #lineHasBytes = false;
  /** An empty line before any event past `seq`: none is. */
  #stopped = false;

  constructor(readonly seq: number) {}

  /** Feed the next bytes of the segment. */
  push(chunk: Buffer): void {
    let from = 0;
    while (!this.#stopped && from < chunk.length) {
      if (this.#cut !== undefined) {
        this.#count(chunk.subarray(from));
        return;
      }
      const nl = chunk.indexOf(0x0a, from);
      if (nl < 0) {
        this.#pending.push(chunk.subarray(from));
        this.#pendingLen += chunk.length - from;
        return;
      }
      this.#takeLine(chunk.subarray(from, nl));
      from = nl + 1;
    }
  }

  /** The answer once every byte was pushed: `undefined` when no event of the segment is past `seq`. */
  finish(): EventsAfter | undefined {
    if (this.#cut === undefined && !this.#stopped && this.#pendingLen > 0) {
      this.#takeLine(Buffer.alloc(0)); // a last line without its newline
    }
    if (this.#cut === undefined) return undefined;
    return {
      cut: this.#cut,
      events: this.#events + (this.#lineHasBytes ? 1 : 0),
      headerBytes: this.#headerBytes,
    };
  }

  /** The pending line, completed by `tail`. */
  #takeLine(tail: Buffer): void {
    const line = this.#pendingLen === 0 ? tail : Buffer.concat([...this.#pending, tail]);
    this.#pending = [];
    this.#pendingLen = 0;
    const start = this.#offset;
    this.#offset += line.length + 1;
    if (this.#line++ === 0) {
      this.#headerBytes = line.length + 1;
      return;
    }
    if (line.length === 0) {
      this.#stopped = true;
      return;
    }
    const seq = seqOfLine(line);
    if (seq !== undefined && seq > this.seq) {
      this.#cut = start;
      this.#events = 1;
    }
  }

  /** After the cut: count the non-empty lines in `bytes`. */
  #count(bytes: Buffer): void {
    let from = 0;
    while (from < bytes.length) {
      const nl = bytes.indexOf(0x0a, from);
      const end = nl < 0 ? bytes.length : nl;
      if (end > from) this.#lineHasBytes = true;
      if (nl < 0) return;
      if (this.#lineHasBytes) this.#events++;
      this.#lineHasBytes = false;
      from = nl + 1;
    }
  }
}

/**
 * In the bytes of a v2 segment, where the events after `seq` start: the byte offset of the first
 * event line whose `seq` is larger, how many event lines follow from there, and the header line's
 * length. `undefined` when no event of the segment is past `seq`.
 */
export function v2EventsAfter(raw: Buffer, seq: number): EventsAfter | undefined {
  const scan = new V2EventsAfterScan(seq);
  scan.push(raw);
  return scan.finish();
}
