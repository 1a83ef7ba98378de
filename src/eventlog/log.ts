/**
 * The segmented, append-only, hash-chained event log. Reads, verifies and appends to legacy Libervia
 * logs bit for bit, and writes new logs in the v2 format of `docs/formats/eventlog.md`.
 */
import { randomUUID } from 'node:crypto';
import { constants, promises as fsp, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, invalidArgument, TensorVaultError } from '../errors';
import { hashFile, hmacSha256, sha256 } from '../hash/index';
import {
  atomicWriteFile,
  exists,
  fsyncDir,
  ioError,
  readIfExists,
  settleSwap,
  WriterLock,
} from '../io/index';
import { describeValue, optionalBoolean, optionsObject } from '../validate';
import { canonicalJson } from './canonical';
import {
  EntryHashChecker,
  type EventLogEntry,
  entryShapeProblem,
  legacyEntryHash,
  legacyPayloadHash,
  V2_HASH_ALGORITHM,
  v2EntryHash,
  v2PayloadHash,
} from './hashing';
import {
  type EventLogFormat,
  LAYOUT,
  LEGACY_SEGMENT_RE,
  parseSegment,
  type SegmentRead,
  segName,
  V2_SEGMENT_RE,
  v2EventsAfter,
} from './layout';
import type {
  EventLogOptions,
  ExportRangeOptions,
  ExportResult,
  RecoveryReport,
  ReplayOptions,
  ReplayResult,
  VerifyResult,
} from './types';

/** Default events per segment (as in Libervia). */
export const DEFAULT_SEGMENT_SIZE = 10_000;
/** Default snapshot period in events (as in Libervia). */
export const DEFAULT_SNAPSHOT_EVERY = 1_000;
/** Default number of segments kept by `prune()` (as in Libervia). */
export const DEFAULT_RETENTION_SEGMENTS = 30;
/** Most events one `exportRange()` call returns. */
export const EXPORT_LIMIT = 10_000;
/** Most events one `replay()` call reads. */
export const REPLAY_LIMIT = 50_000;

interface Segment {
  n: number;
  file: string;
}

interface V2Anchor {
  segment: number;
  seq: number;
  prev_hash: string | null;
  pruned_events: number;
}

interface V2Meta {
  format: 'tensorvault-eventlog';
  version: 2;
  hash_algorithm: string;
  created_at: string;
  anchor: V2Anchor;
}

interface SealRecord {
  segment: number;
  first_seq: number;
  last_seq: number;
  last_hash: string;
  size: number;
  sha256: string;
}

interface Snapshot {
  version: number;
  last_segment: number;
  last_index_in_segment: number;
  last_event_id: string | null;
  last_current_hash: string | null;
  last_timestamp: string | null;
  total_events: number;
  last_seq?: number;
  first_seq?: number;
  sealed?: SealRecord[];
}

interface Head {
  seq: number;
  hash: string | null;
  segment: number;
}

const SLOT = 256;
const MAX_FIELD = 4096;

function writeAll(fd: number, buf: Buffer, position: number | null, path: string): void {
  let at = 0;
  try {
    while (at < buf.length) {
      at += writeSync(fd, buf, at, buf.length - at, position === null ? null : position + at);
    }
  } catch (err) {
    throw ioError(err, path, 'cannot write');
  }
}

function checkInt(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw invalidArgument(name, `${name} must be an integer from ${min} to ${max}, got ${describeValue(v)}`);
  }
  return v;
}

function checkField(name: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_FIELD) {
    throw invalidArgument(name, `${name} must be a non-empty string of at most ${MAX_FIELD} characters`);
  }
  return v;
}

function checkTs(name: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const t = typeof v === 'string' ? Date.parse(v) : Number.NaN;
  if (Number.isNaN(t))
    throw invalidArgument(name, `${name} must be an ISO-8601 time, got ${describeValue(v)}`);
  return t;
}

/** The log's segmented, hash-chained store. Create with {@link EventLog.open}. */
export class EventLog {
  /** The data folder. */
  readonly dataDir: string;
  /** On-disk format. */
  readonly format: EventLogFormat;
  /** What opening had to repair (all zero/false for a clean log or a read-only open). */
  readonly recovery: RecoveryReport;
  readonly #dir: string;
  readonly #segmentSize: number;
  readonly #snapshotEvery: number;
  readonly #retention: number;
  readonly #fsync: boolean;
  readonly #readOnly: boolean;
  readonly #key: Uint8Array | undefined;
  #lock: WriterLock | undefined;
  #closed = false;
  // tail state
  #segments: number[] = [];
  #segCounts = new Map<number, number>();
  #last: EventLogEntry | undefined;
  #total = 0;
  #legacyCurrent: EventLogEntry[] = [];
  #anchor: V2Anchor | undefined;
  #appendFh: fsp.FileHandle | undefined;
  #headFh: fsp.FileHandle | undefined;
  #chainBroken: string | undefined;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(dataDir: string, format: EventLogFormat, options: Required<ResolvedOptions>) {
    this.dataDir = dataDir;
    this.format = format;
    this.#dir = join(dataDir, LAYOUT.dir);
    this.#segmentSize = options.segmentSize;
    this.#snapshotEvery = options.snapshotEvery;
    this.#retention = options.retentionSegments;
    this.#fsync = options.fsync === 'always';
    this.#readOnly = options.readOnly;
    this.#key = options.hmacKey.length > 0 ? options.hmacKey : undefined;
    this.recovery = {
      truncatedBytes: 0,
      removedTempFiles: 0,
      removedSegments: 0,
      headAdvanced: false,
      snapshotIgnored: false,
      migratedLegacySingleFile: false,
      quarantinedEvents: 0,
    };
  }

  /**
   * Open (or create) the event log in `dataDir` (`DATA/event-log/…`, `DATA/event-log-snapshot.json`).
   * An existing legacy Libervia log opens in legacy mode (and a legacy single-file `event-log.json` is
   * migrated into segment 1 first); anything else opens or creates a v2 log. A writer takes the
   * single-writer lock and repairs a torn tail left by a crash (see {@link recovery}).
   */
  static async open(dataDir: string, options: EventLogOptions = {}): Promise<EventLog> {
    if (typeof dataDir !== 'string' || dataDir.length === 0) {
      throw invalidArgument('dataDir', 'dataDir must be a non-empty string');
    }
    const opts = resolveOptions(options);
    const dir = join(dataDir, LAYOUT.dir);
    // A writer locks first, then finishes or undoes a restore that was killed mid-swap (io/swap.ts) before
    // it looks for a log: never an empty log where a restore was placing one. A reader refuses a half swap.
    let lock: WriterLock | undefined;
    if (!opts.readOnly) {
      await fsp.mkdir(dataDir, { recursive: true }).catch((err: unknown) => {
        throw ioError(err, dataDir, 'cannot create');
      });
      lock = WriterLock.acquire(join(dataDir, LAYOUT.lock), {
        timeoutMs: opts.lockTimeoutMs,
        describe: (h) =>
          `event log is locked by ${h.pid !== undefined ? `pid ${h.pid} on ${h.hostname ?? 'an unknown host'}` : 'another process'}: ${join(dataDir, LAYOUT.lock)}`,
      });
    }
    try {
      return await EventLog.#openLocked(dataDir, dir, opts, lock);
    } catch (err) {
      lock?.release();
      throw err;
    }
  }

  static async #openLocked(
    dataDir: string,
    dir: string,
    opts: Required<ResolvedOptions>,
    lock: WriterLock | undefined,
  ): Promise<EventLog> {
    await settleSwap(dataDir, opts.readOnly);
    let format: EventLogFormat;
    const hasMeta = await exists(join(dir, LAYOUT.v2Meta));
    if (hasMeta) format = 'v2';
    else {
      const names = await fsp.readdir(dir).catch(() => [] as string[]);
      const legacySegs = names.some((n) => LEGACY_SEGMENT_RE.test(n));
      const single = await exists(join(dataDir, LAYOUT.legacySingle));
      format = legacySegs || single ? 'legacy' : opts.format;
    }
    if (opts.readOnly && !hasMeta && format === 'v2') {
      if (!(await exists(dir))) {
        throw new TensorVaultError(ErrorCode.NOT_FOUND, `no event log in ${dataDir}`, { path: dir });
      }
      format = 'legacy'; // an event-log folder without v2 metadata or segments: an empty legacy log
    }
    const log = new EventLog(dataDir, format, opts);
    if (!opts.readOnly) {
      await fsp.mkdir(dir, { recursive: true }).catch((err: unknown) => {
        throw ioError(err, dir, 'cannot create');
      });
      log.#lock = lock;
    }
    if (format === 'legacy') await log.#openLegacy();
    else await log.#openV2(hasMeta);
    return log;
  }

  // ---------------------------------------------------------------- opening

  async #listSegments(): Promise<Segment[]> {
    const re = this.format === 'v2' ? V2_SEGMENT_RE : LEGACY_SEGMENT_RE;
    let names: string[];
    try {
      names = await fsp.readdir(this.#dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw ioError(err, this.#dir, 'cannot list');
    }
    const out: Segment[] = [];
    for (const name of names) {
      const m = re.exec(name);
      if (m) out.push({ n: Number(m[1]), file: join(this.#dir, name) });
    }
    return out.sort((a, b) => a.n - b.n);
  }

  async #removeTemps(): Promise<void> {
    for (const d of [this.#dir, this.dataDir]) {
      const names = await fsp.readdir(d).catch(() => [] as string[]);
      for (const name of names) {
        if (/^\..*\.[0-9a-f]{12}\.tmp$/.test(name)) {
          await fsp.rm(join(d, name), { force: true });
          this.recovery.removedTempFiles++;
        }
      }
    }
  }

  async #openLegacy(): Promise<void> {
    if (!this.#readOnly) {
      await this.#removeTemps();
      await this.#migrateSingleFile();
    }
    const segs = await this.#listSegments();
    this.#segments = segs.map((s) => s.n);
    for (const s of segs) {
      const r = await this.#readSegment(s);
      if (r.problem !== undefined) {
        this.#chainBroken ??= `segment ${s.n}: ${r.problem}`;
        this.#segCounts.set(s.n, 0);
        continue;
      }
      this.#segCounts.set(s.n, r.entries.length);
      this.#total += r.entries.length;
      if (s.n === segs[segs.length - 1]?.n) {
        this.#legacyCurrent = r.entries as EventLogEntry[];
        this.#last = this.#legacyCurrent[this.#legacyCurrent.length - 1];
      }
    }
    if (this.#last === undefined && segs.length > 1) {
      // Last segment empty: the previous one holds the tail.
      for (let i = segs.length - 2; i >= 0 && this.#last === undefined; i--) {
        const s = segs[i] as Segment;
        const r = await this.#readSegment(s);
        const e = r.entries as EventLogEntry[];
        this.#last = e[e.length - 1];
      }
    }
    if (!this.#readOnly && (await this.#readSnapshot()).corrupt) this.recovery.snapshotIgnored = true;
  }

  async #migrateSingleFile(): Promise<void> {
    const single = join(this.dataDir, LAYOUT.legacySingle);
    const raw = await readIfExists(single);
    if (raw === undefined) return;
    const segs = await this.#listSegments();
    if (segs.length > 0) return; // already migrated (or both exist: never overwrite segments)
    let entries: unknown;
    try {
      entries = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new TensorVaultError(ErrorCode.CORRUPT, `legacy event log is not valid JSON: ${single}`, {
        path: single,
      });
    }
    if (!Array.isArray(entries)) {
      throw new TensorVaultError(ErrorCode.CORRUPT, `legacy event log is not a JSON array: ${single}`, {
        path: single,
      });
    }
    await atomicWriteFile(join(this.#dir, segName(1, 'legacy')), JSON.stringify(entries, null, 2));
    await fsp.rename(single, join(this.dataDir, LAYOUT.legacyMigrated));
    await fsyncDir(this.dataDir);
    this.recovery.migratedLegacySingleFile = true;
  }

  async #openV2(hasMeta: boolean): Promise<void> {
    if (!hasMeta) {
      if (this.#readOnly) throw new TensorVaultError(ErrorCode.NOT_FOUND, `no event log in ${this.dataDir}`);
      const meta: V2Meta = {
        format: 'tensorvault-eventlog',
        version: 2,
        hash_algorithm: V2_HASH_ALGORITHM,
        created_at: new Date().toISOString(),
        anchor: { segment: 1, seq: 1, prev_hash: null, pruned_events: 0 },
      };
      await atomicWriteFile(join(this.#dir, LAYOUT.v2Meta), `${JSON.stringify(this.#seal(meta), null, 2)}\n`);
    }
    const meta = await this.#readMeta();
    this.#anchor = meta.anchor;
    if (!this.#readOnly) await this.#removeTemps();
    let segs = await this.#listSegments();
    if (!this.#readOnly) {
      // Finish an interrupted prune: segments before the anchor are no longer part of the log.
      for (const s of segs.filter((x) => x.n < meta.anchor.segment)) {
        await fsp.rm(s.file, { force: true });
        this.recovery.removedSegments++;
      }
      segs = segs.filter((x) => x.n >= meta.anchor.segment);
    }
    this.#segments = segs.map((s) => s.n);
    const lastSeg = segs[segs.length - 1];
    let lastSeq = meta.anchor.seq - 1;
    if (lastSeg !== undefined) {
      let r = await this.#readSegment(lastSeg);
      if (!this.#readOnly && r.tornBytes > 0) {
        await this.#truncate(lastSeg.file, r.completeBytes);
        this.recovery.truncatedBytes += r.tornBytes;
        r = await this.#readSegment(lastSeg);
      }
      if (!this.#readOnly && r.completeBytes === 0 && segs.length > 0) {
        // Rotation crashed before the header was written.
        await fsp.rm(lastSeg.file, { force: true });
        await fsyncDir(this.#dir);
        this.recovery.removedSegments++;
        this.#segments.pop();
        const prev = segs[segs.length - 2];
        r =
          prev === undefined
            ? { entries: [], tornBytes: 0, completeBytes: 0 }
            : await this.#readSegment(prev);
      }
      if (r.problem !== undefined) this.#chainBroken = `last segment: ${r.problem}`;
      const entries = r.entries as EventLogEntry[];
      this.#last = entries[entries.length - 1];
      if (this.#last === undefined && this.#segments.length > 1) {
        const prev = segs.find((s) => s.n === this.#segments[this.#segments.length - 2]);
        if (prev !== undefined) {
          const pe = (await this.#readSegment(prev)).entries as EventLogEntry[];
          this.#last = pe[pe.length - 1];
        }
      }
      if (this.#last !== undefined) {
        if (entryShapeProblem(this.#last, true) !== undefined) this.#chainBroken = 'last entry is malformed';
        else lastSeq = this.#last.seq as number;
      }
      const curSeg = this.#segments[this.#segments.length - 1];
      if (curSeg !== undefined) {
        this.#segCounts.set(curSeg, curSeg === lastSeg.n ? entries.length : 0);
      }
    }
    let head = await this.#readHead();
    if (!this.#readOnly && this.#key !== undefined && this.#chainBroken === undefined) {
      // With a key, only what the authenticated head vouches for is the log. Events after it were
      // never acknowledged (append() returns after the head update) and carry no MAC: they may be a
      // crash's leftovers or forgeries, and must never be re-signed. They are moved aside.
      if (head === undefined && lastSeq >= meta.anchor.seq) {
        this.#chainBroken = 'the head record is missing: the events cannot be authenticated';
      } else if (head !== undefined && head.seq < lastSeq) {
        lastSeq = await this.#quarantineAfter(head.seq);
        head = await this.#readHead();
      }
    }
    this.#total = Math.max(0, lastSeq - meta.anchor.seq + 1);
    if (!this.#readOnly) {
      if (head !== undefined && head.seq > lastSeq) {
        this.#chainBroken = `tail cut: the head records seq ${head.seq} but the log ends at seq ${lastSeq}`;
      } else if (this.#chainBroken === undefined && (head === undefined || head.seq < lastSeq)) {
        if (head !== undefined || lastSeq >= meta.anchor.seq) this.recovery.headAdvanced = head !== undefined;
        await this.#writeHead();
      }
      if ((await this.#readSnapshot()).corrupt) this.recovery.snapshotIgnored = true;
    }
  }

  /**
   * Move every v2 event after `seq` out of the log, into `unauthenticated-<time>.jsonl` in the log's
   * folder (never deleted: a person decides), and return the new last seq (`seq`). Whole segments after
   * it are moved; the segment holding `seq` is cut after that event's line.
   */
  async #quarantineAfter(seq: number): Promise<number> {
    const aside = join(this.#dir, `unauthenticated-${new Date().toISOString().replace(/[:.]/g, '-')}.jsonl`);
    const parts: Buffer[] = [];
    let moved = 0;
    const segs = await this.#listSegments();
    for (let i = segs.length - 1; i >= 0; i--) {
      const s = segs[i] as Segment;
      const raw = await fsp.readFile(s.file).catch((err: unknown) => {
        throw ioError(err, s.file, 'cannot read segment');
      });
      const after = v2EventsAfter(raw, seq);
      if (after === undefined) break; // this segment ends at or before `seq`: done
      const { cut, headerBytes } = after;
      moved += after.events;
      parts.unshift(raw.subarray(cut));
      // Every event of this segment is past `seq`: the whole segment goes (the first one is kept,
      // cut back to its header).
      if (cut === headerBytes && i > 0) {
        await fsp.rm(s.file, { force: true });
        this.#segments = this.#segments.filter((n) => n !== s.n);
      } else {
        await this.#truncate(s.file, cut);
        break;
      }
    }
    if (moved > 0) {
      await atomicWriteFile(aside, Buffer.concat(parts));
      await fsyncDir(this.#dir);
      this.recovery.quarantinedEvents += moved;
      this.recovery.quarantineFile = aside;
    }
    // Re-read the new tail.
    const last = this.#segments[this.#segments.length - 1];
    const seg = (await this.#listSegments()).find((x) => x.n === last);
    if (seg !== undefined) {
      const entries = (await this.#readSegment(seg)).entries as EventLogEntry[];
      this.#last = entries[entries.length - 1] ?? this.#last;
      this.#segCounts.set(seg.n, entries.length);
    }
    return seq;
  }

  async #truncate(file: string, length: number): Promise<void> {
    const fh = await fsp.open(file, 'r+');
    try {
      await fh.truncate(length);
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  // ---------------------------------------------------------------- authenticated records

  #check(obj: object): { alg: string; value: string } {
    const text = canonicalJson(obj);
    return this.#key === undefined
      ? { alg: 'sha256', value: sha256(text).toString('hex') }
      : { alg: 'hmac-sha256', value: hmacSha256(this.#key, text).toString('hex') };
  }

  #seal<T extends object>(obj: T): T & { check: { alg: string; value: string } } {
    return { ...obj, check: this.#check(obj) };
  }

  /** Returns the object without `check` when its check verifies, else a reason. */
  #unseal(v: unknown): { ok: Record<string, unknown> } | { problem: string } {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return { problem: 'not an object' };
    const { check, ...rest } = v as Record<string, unknown>;
    const c = check as { alg?: unknown; value?: unknown } | undefined;
    if (c === undefined || typeof c.value !== 'string') return { problem: 'no check field' };
    const want = this.#check(rest);
    if (c.alg !== want.alg) {
      return {
        problem:
          want.alg === 'hmac-sha256' ? 'not authenticated (no HMAC)' : 'authenticated with a key (HMAC)',
      };
    }
    if (c.value !== want.value) return { problem: `${want.alg} check does not match` };
    return { ok: rest };
  }

  async #readMeta(): Promise<V2Meta> {
    const path = join(this.#dir, LAYOUT.v2Meta);
    const raw = await readIfExists(path);
    if (raw === undefined) throw new TensorVaultError(ErrorCode.CORRUPT, `missing ${path}`, { path });
    let v: unknown;
    try {
      v = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new TensorVaultError(ErrorCode.CORRUPT, `event log metadata is not JSON: ${path}`, { path });
    }
    const r = this.#unseal(v);
    if ('problem' in r) {
      throw new TensorVaultError(ErrorCode.CORRUPT, `event log metadata rejected (${r.problem}): ${path}`, {
        path,
        reason: r.problem,
      });
    }
    const m = r.ok as unknown as V2Meta;
    const a = m.anchor as V2Anchor | undefined;
    if (
      m.format !== 'tensorvault-eventlog' ||
      m.version !== 2 ||
      typeof a !== 'object' ||
      a === null ||
      !Number.isSafeInteger(a.segment) ||
      !Number.isSafeInteger(a.seq) ||
      a.seq < 1 ||
      a.segment < 1
    ) {
      throw new TensorVaultError(ErrorCode.CORRUPT, `unsupported event log metadata: ${path}`, { path });
    }
    if (m.hash_algorithm !== V2_HASH_ALGORITHM) {
      throw new TensorVaultError(ErrorCode.CORRUPT, `unknown hash algorithm ${String(m.hash_algorithm)}`, {
        path,
      });
    }
    return m;
  }

  async #readSnapshot(): Promise<{ snap?: Snapshot; corrupt: boolean; problem?: string }> {
    const path = join(this.dataDir, LAYOUT.snapshot);
    const raw = await readIfExists(path);
    if (raw === undefined) return { corrupt: false };
    let v: unknown;
    try {
      v = JSON.parse(raw.toString('utf8'));
    } catch {
      return { corrupt: true, problem: 'snapshot is not valid JSON' };
    }
    if (this.format === 'v2') {
      const r = this.#unseal(v);
      if ('problem' in r) return { corrupt: true, problem: `snapshot rejected: ${r.problem}` };
      v = r.ok;
    }
    const s = v as Snapshot;
    if (
      typeof s !== 'object' ||
      s === null ||
      !Number.isSafeInteger(s.last_segment) ||
      !Number.isSafeInteger(s.last_index_in_segment) ||
      !Number.isSafeInteger(s.total_events)
    ) {
      return { corrupt: true, problem: 'snapshot has missing or malformed fields' };
    }
    if (this.format === 'v2' && (s.version !== 2 || !Array.isArray(s.sealed))) {
      return { corrupt: true, problem: 'snapshot is not a v2 snapshot' };
    }
    return { snap: s, corrupt: false };
  }

  async #readHead(): Promise<Head | undefined> {
    const raw = await readIfExists(join(this.#dir, LAYOUT.v2Head));
    if (raw === undefined) return undefined;
    let best: Head | undefined;
    for (let slot = 0; slot < 2; slot++) {
      const text = raw.subarray(slot * SLOT, (slot + 1) * SLOT).toString('utf8');
      try {
        const r = this.#unseal(JSON.parse(text));
        if ('ok' in r) {
          const h = r.ok as unknown as Head;
          if (Number.isSafeInteger(h.seq) && (best === undefined || h.seq > best.seq)) best = h;
        }
      } catch {
        // torn or empty slot
      }
    }
    return best;
  }

  async #writeHead(): Promise<void> {
    const last = this.#last;
    const head: Head = {
      seq: last?.seq ?? (this.#anchor?.seq ?? 1) - 1,
      hash: last?.current_hash ?? this.#anchor?.prev_hash ?? null,
      segment: this.#segments[this.#segments.length - 1] ?? this.#anchor?.segment ?? 1,
    };
    const text = JSON.stringify(this.#seal(head));
    const buf = Buffer.alloc(SLOT, 0x20);
    buf.write(text, 0, 'utf8');
    buf[SLOT - 1] = 0x0a;
    if (this.#headFh === undefined) {
      const path = join(this.#dir, LAYOUT.v2Head);
      const existed = await exists(path);
      this.#headFh = await fsp.open(path, existed ? 'r+' : 'w+');
      if (!existed) {
        await this.#headFh.write(Buffer.alloc(2 * SLOT, 0x20), 0, 2 * SLOT, 0);
        await this.#headFh.sync();
        await fsyncDir(this.#dir);
      }
    }
    writeAll(this.#headFh.fd, buf, (head.seq % 2) * SLOT, join(this.#dir, LAYOUT.v2Head));
    if (this.#fsync) await this.#headFh.datasync();
  }

  // ---------------------------------------------------------------- reading segments

  async #readSegment(s: Segment): Promise<SegmentRead> {
    let raw: Buffer;
    try {
      raw = await fsp.readFile(s.file);
    } catch (err) {
      throw ioError(err, s.file, 'cannot read segment');
    }
    return parseSegment(raw, this.format);
  }

  async #segmentList(): Promise<Segment[]> {
    const segs = await this.#listSegments();
    if (this.format === 'v2' && this.#anchor !== undefined) {
      const a = this.#anchor.segment;
      return segs.filter((s) => s.n >= a);
    }
    return segs;
  }

  /** Iterate every present event in order (malformed segments are skipped). */
  async *#iterate(fromSegment?: number, toSegment?: number): AsyncGenerator<EventLogEntry> {
    for (const s of await this.#segmentList()) {
      if (fromSegment !== undefined && s.n < fromSegment) continue;
      if (toSegment !== undefined && s.n > toSegment) break;
      const r = await this.#readSegment(s);
      for (const e of r.entries) yield e as EventLogEntry;
    }
  }

  // ---------------------------------------------------------------- appending

  #writable(): void {
    if (this.#closed) throw new TensorVaultError(ErrorCode.INVALID_ARGUMENT, 'the event log is closed');
    if (this.#readOnly) throw new TensorVaultError(ErrorCode.INVALID_ARGUMENT, 'the event log is read-only');
    if (this.#chainBroken !== undefined) {
      throw new TensorVaultError(
        ErrorCode.CHAIN_INVALID,
        `refusing to extend a damaged event log (${this.#chainBroken}); restore it from a backup`,
        { path: this.dataDir, reason: this.#chainBroken },
      );
    }
  }

  /**
   * Append one event and return the stored entry. The payload itself is not stored, only its hash
   * (as in Libervia). Appends are serialised; with `fsync: 'always'` the event is durable on return.
   */
  async append(
    actor: string,
    evento: string,
    entidade: string,
    entidadeId: string,
    payload: Record<string, unknown> = {},
  ): Promise<EventLogEntry> {
    const [e] = await this.appendMany([{ actor, evento, entidade, entidadeId, payload }]);
    return e as EventLogEntry;
  }

  /**
   * Append several events with one write and one fsync per segment (group commit). All or none of a
   * batch's lines within one segment reach the disk; a torn batch is cut back on the next open.
   */
  async appendMany(
    events: readonly {
      actor: string;
      evento: string;
      entidade: string;
      entidadeId: string;
      payload?: Record<string, unknown>;
    }[],
  ): Promise<EventLogEntry[]> {
    if (!Array.isArray(events)) throw invalidArgument('events', 'events must be an array');
    const prepared = events.map((ev, i) => {
      if (typeof ev !== 'object' || ev === null)
        throw invalidArgument('events', `events[${i}] is not an object`);
      const payload = ev.payload ?? {};
      return {
        actor: checkField('actor', ev.actor),
        evento: checkField('evento', ev.evento),
        entidade: checkField('entidade', ev.entidade),
        entidade_id: checkField('entidadeId', ev.entidadeId),
        payload_hash: this.format === 'v2' ? v2PayloadHash(payload) : legacyPayloadHash(payload),
      };
    });
    const run = this.#queue.then(() => this.#appendPrepared(prepared));
    this.#queue = run.catch(() => {});
    return run;
  }

  #timestamp(): string {
    const now = Date.now();
    const prev = this.#last === undefined ? 0 : Date.parse(this.#last.timestamp);
    return new Date(Math.max(now, Number.isNaN(prev) ? 0 : prev)).toISOString();
  }

  async #appendPrepared(
    prepared: {
      actor: string;
      evento: string;
      entidade: string;
      entidade_id: string;
      payload_hash: string;
    }[],
  ): Promise<EventLogEntry[]> {
    this.#writable();
    const out: EventLogEntry[] = [];
    let i = 0;
    while (i < prepared.length) {
      let seg = this.#segments[this.#segments.length - 1];
      if (seg === undefined || (this.#segCounts.get(seg) ?? 0) >= this.#segmentSize) {
        seg = await this.#rotate();
      }
      const room = this.#segmentSize - (this.#segCounts.get(seg) ?? 0);
      const batch = prepared.slice(i, i + room);
      i += batch.length;
      const entries: EventLogEntry[] = [];
      let prev = this.#last;
      for (const p of batch) {
        const previous_hash =
          prev?.current_hash ?? (this.format === 'v2' ? (this.#anchor?.prev_hash ?? null) : null);
        let e: EventLogEntry;
        if (this.format === 'v2') {
          const seq = (prev?.seq ?? (this.#anchor?.seq ?? 1) - 1) + 1;
          const base = {
            v: 2 as const,
            seq,
            id: randomUUID(),
            timestamp: this.#timestamp(),
            ...p,
            previous_hash,
          };
          e = { ...base, current_hash: v2EntryHash(base) };
        } else {
          const base = { timestamp: this.#timestamp(), ...p, previous_hash };
          e = { id: randomUUID(), ...base, current_hash: legacyEntryHash(base) };
        }
        entries.push(e);
        prev = e;
      }
      if (this.format === 'v2') await this.#writeV2(seg, entries);
      else await this.#writeLegacy(seg, entries);
      const before = this.#total;
      this.#total += entries.length;
      this.#segCounts.set(seg, (this.#segCounts.get(seg) ?? 0) + entries.length);
      this.#last = prev;
      out.push(...entries);
      if (this.format === 'v2') await this.#writeHead();
      const full = (this.#segCounts.get(seg) ?? 0) >= this.#segmentSize;
      const periodic =
        Math.floor(this.#total / this.#snapshotEvery) > Math.floor(before / this.#snapshotEvery);
      if (full || periodic) await this.#writeSnapshot();
    }
    return out;
  }

  async #writeLegacy(seg: number, entries: EventLogEntry[]): Promise<void> {
    const next = [...this.#legacyCurrent, ...entries];
    await atomicWriteFile(join(this.#dir, segName(seg, 'legacy')), JSON.stringify(next, null, 2), {
      sync: this.#fsync,
    });
    this.#legacyCurrent = next;
  }

  async #writeV2(seg: number, entries: EventLogEntry[]): Promise<void> {
    if (this.#appendFh === undefined) {
      this.#appendFh = await fsp.open(join(this.#dir, segName(seg, 'v2')), 'a');
    }
    // The line is small and goes to the page cache: write it synchronously (no thread-pool hop);
    // the fsync, which can take milliseconds, stays off the JS thread.
    writeAll(
      this.#appendFh.fd,
      Buffer.from(entries.map((e) => `${JSON.stringify(e)}\n`).join('')),
      null,
      join(this.#dir, segName(seg, 'v2')),
    );
    if (this.#fsync) await this.#appendFh.datasync();
  }

  async #rotate(): Promise<number> {
    const cur = this.#segments[this.#segments.length - 1];
    const n = cur === undefined ? (this.format === 'v2' ? (this.#anchor?.segment ?? 1) : 1) : cur + 1;
    if (this.format === 'v2') {
      await this.#appendFh?.close();
      this.#appendFh = undefined;
      const file = join(this.#dir, segName(n, 'v2'));
      const header = {
        tv_eventlog: 2,
        hash_algorithm: V2_HASH_ALGORITHM,
        segment: n,
        first_seq: (this.#last?.seq ?? (this.#anchor?.seq ?? 1) - 1) + 1,
        prev_hash: this.#last?.current_hash ?? this.#anchor?.prev_hash ?? null,
      };
      let fh: fsp.FileHandle | undefined;
      try {
        fh = await fsp.open(
          file,
          constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_APPEND,
        );
        await fh.write(`${JSON.stringify(header)}\n`);
        if (this.#fsync) await fh.sync();
      } catch (err) {
        await fh?.close();
        throw ioError(err, file, 'cannot create segment');
      }
      this.#appendFh = fh;
      if (this.#fsync) await fsyncDir(this.#dir);
    } else {
      this.#legacyCurrent = [];
    }
    this.#segments.push(n);
    this.#segCounts.set(n, 0);
    return n;
  }

  async #writeSnapshot(): Promise<void> {
    const last = this.#last;
    const seg = this.#segments[this.#segments.length - 1] ?? 1;
    const base: Snapshot = {
      version: this.format === 'v2' ? 2 : 1,
      last_segment: seg,
      last_index_in_segment: (this.#segCounts.get(seg) ?? 1) - 1,
      last_event_id: last?.id ?? null,
      last_current_hash: last?.current_hash ?? null,
      last_timestamp: last?.timestamp ?? null,
      total_events: this.#total,
    };
    const path = join(this.dataDir, LAYOUT.snapshot);
    if (this.format === 'legacy') {
      await atomicWriteFile(path, JSON.stringify(base, null, 2), { sync: this.#fsync });
      return;
    }
    // v2: carry the digests of every sealed segment (sealing the current one when it is full).
    const prev = await this.#readSnapshot();
    const sealed = (prev.snap?.sealed ?? []).filter(
      (r) => r.segment >= (this.#anchor?.segment ?? 1) && this.#segments.includes(r.segment),
    );
    const have = new Set(sealed.map((r) => r.segment));
    for (const n of this.#segments) {
      const isFullCurrent = n === seg && (this.#segCounts.get(n) ?? 0) >= this.#segmentSize;
      if (have.has(n) || (n === seg && !isFullCurrent)) continue;
      const rec = await this.#sealRecord(n);
      if (rec !== undefined) sealed.push(rec);
    }
    sealed.sort((a, b) => a.segment - b.segment);
    const snap: Snapshot = {
      ...base,
      last_seq: last?.seq ?? (this.#anchor?.seq ?? 1) - 1,
      first_seq: this.#anchor?.seq ?? 1,
      sealed,
    };
    await atomicWriteFile(path, `${JSON.stringify(this.#seal(snap), null, 2)}\n`, { sync: this.#fsync });
  }

  async #sealRecord(n: number): Promise<SealRecord | undefined> {
    const file = join(this.#dir, segName(n, 'v2'));
    const r = await this.#readSegment({ n, file });
    const entries = r.entries as EventLogEntry[];
    const first = entries[0];
    const last = entries[entries.length - 1];
    if (r.problem !== undefined || first === undefined || last === undefined || r.tornBytes > 0)
      return undefined;
    const h = await hashFile(file);
    return {
      segment: n,
      first_seq: first.seq as number,
      last_seq: last.seq as number,
      last_hash: last.current_hash,
      size: h.length,
      sha256: h.digest,
    };
  }

  // ---------------------------------------------------------------- verification

  /**
   * Fast verification. v2: the metadata anchor, the segment sequence (no gaps), every sealed segment's
   * bytes against the SHA-256 recorded in the (checked) snapshot, then every event of the unsealed
   * tail one by one, and the head record (a cut tail fails). Legacy: Libervia's rule (from the
   * snapshot on) plus the first event and the segment sequence. Without a usable snapshot it falls
   * back to {@link verifyChainFull}.
   */
  async verifyChain(): Promise<VerifyResult> {
    return this.#verify(true);
  }

  /** Full verification: every event's hash and link from the first kept event (or the prune anchor). */
  async verifyChainFull(): Promise<VerifyResult> {
    return this.#verify(false);
  }

  async #verify(fast: boolean): Promise<VerifyResult> {
    const warnings: string[] = [];
    const v2 = this.format === 'v2';
    const res: VerifyResult = {
      valid: true,
      totalVerified: 0,
      mode: fast ? 'fast' : 'full',
      usedSnapshot: false,
      totalEvents: 0,
      head: { seq: null, hash: null },
      warnings,
    };
    const fail = (reason: string, index?: number, id?: string): VerifyResult => {
      res.valid = false;
      res.reason = reason;
      if (index !== undefined) res.firstInvalidIndex = index;
      if (id !== undefined) res.firstInvalidId = id;
      return res;
    };
    let anchor: V2Anchor | undefined;
    if (v2) {
      try {
        anchor = (await this.#readMeta()).anchor;
      } catch (err) {
        return fail(err instanceof Error ? err.message : String(err));
      }
    }
    const segs = await this.#listSegments();
    const snapR = await this.#readSnapshot();
    if (snapR.corrupt) warnings.push(`${snapR.problem ?? 'snapshot unusable'}: ignored`);
    const snap = snapR.snap;
    // Segment sequence.
    let expectSeg: number | undefined = anchor?.segment;
    let legacyAnchor: { first_segment: number; first_previous_hash: string | null } | undefined;
    if (!v2) legacyAnchor = await this.#readLegacyAnchor(warnings);
    if (!v2 && legacyAnchor !== undefined) expectSeg = legacyAnchor.first_segment;
    const present = segs.filter((s) => (expectSeg === undefined ? true : s.n >= expectSeg));
    if (v2 && segs.length > present.length) warnings.push('segments before the prune anchor are ignored');
    if (!v2 && expectSeg === undefined && present.length > 0 && (present[0] as Segment).n !== 1) {
      if (!fast) {
        return fail(
          `the log starts at segment ${(present[0] as Segment).n}: earlier segments were deleted (pruned without an anchor?)`,
          0,
        );
      }
    }
    if (expectSeg !== undefined && present.length > 0 && (present[0] as Segment).n !== expectSeg) {
      return fail(
        `segment ${expectSeg} is missing (the log starts at segment ${(present[0] as Segment).n})`,
        0,
      );
    }
    for (let i = 1; i < present.length; i++) {
      const a = present[i - 1] as Segment;
      const b = present[i] as Segment;
      if (b.n !== a.n + 1) return fail(`segment ${a.n + 1} is missing (between ${a.n} and ${b.n})`);
    }
    // Which segments can be checked by digest (v2 fast) or skipped up to the snapshot (legacy fast)?
    let startSeg = 0;
    let index = 0;
    let prevHash: string | null = v2
      ? (anchor?.prev_hash ?? null)
      : (legacyAnchor?.first_previous_hash ?? null);
    let prevSeq = v2 ? (anchor?.seq ?? 1) - 1 : 0;
    let prevTs = '';
    if (fast && snap !== undefined && v2) {
      const sealed = new Map((snap.sealed ?? []).map((r) => [r.segment, r]));
      for (const s of present) {
        const rec = sealed.get(s.n);
        if (rec === undefined) break;
        const r = await this.#readSegmentHeader(s);
        if (r?.first_seq !== rec.first_seq || r?.prev_hash !== prevHash || r?.segment !== s.n) {
          return fail(`segment ${s.n}: header does not link to the previous segment`, index);
        }
        const h = await hashFile(s.file);
        if (h.digest !== rec.sha256 || h.length !== rec.size) {
          return fail(`segment ${s.n} differs from its sealed digest (history was rewritten)`, index);
        }
        index += rec.last_seq - rec.first_seq + 1;
        prevHash = rec.last_hash;
        prevSeq = rec.last_seq;
        startSeg++;
        res.usedSnapshot = true;
      }
    }
    let legacySkipUntil: { seg: number; idx: number; id: string | null; hash: string | null } | undefined;
    if (fast && snap !== undefined && !v2) {
      const inLog = present.some((s) => s.n === snap.last_segment);
      if (inLog) {
        legacySkipUntil = {
          seg: snap.last_segment,
          idx: snap.last_index_in_segment,
          id: snap.last_event_id,
          hash: snap.last_current_hash,
        };
        res.usedSnapshot = true;
      } else warnings.push('snapshot points outside the log: full verification');
    }
    if (fast && !res.usedSnapshot) res.mode = 'full';
    // v2: hashes the snapshot vouches for (its head and each sealed segment's last event).
    const vouched = new Map<number, string>();
    if (v2 && snap !== undefined) {
      for (const r of snap.sealed ?? []) vouched.set(r.last_seq, r.last_hash);
      if (snap.last_seq !== undefined && snap.last_current_hash !== null) {
        vouched.set(snap.last_seq, snap.last_current_hash);
      }
    }
    let tornWarned = false;
    for (let si = startSeg; si < present.length; si++) {
      const s = present[si] as Segment;
      const r = await this.#readSegment(s);
      if (r.problem !== undefined) return fail(`segment ${s.n}: ${r.problem}`, index);
      if (r.tornBytes > 0 && !tornWarned) {
        warnings.push(`segment ${s.n} ends with ${r.tornBytes} bytes of a torn write (not part of the log)`);
        tornWarned = true;
      }
      if (v2) {
        const h = r.header;
        if (h?.segment !== s.n || h?.first_seq !== prevSeq + 1 || (h?.prev_hash ?? null) !== prevHash) {
          return fail(`segment ${s.n}: header does not link to the previous segment`, index);
        }
      }
      const entries = r.entries;
      const hasher = new EntryHashChecker(entries, v2);
      for (let k = 0; k < entries.length; k++) {
        const e = entries[k] as EventLogEntry;
        const problem = entryShapeProblem(e, v2);
        if (problem !== undefined) return fail(`segment ${s.n} entry ${k}: ${problem}`, index);
        const skipping =
          legacySkipUntil !== undefined &&
          (s.n < legacySkipUntil.seg || (s.n === legacySkipUntil.seg && k < legacySkipUntil.idx));
        const isSnapPoint =
          legacySkipUntil !== undefined && s.n === legacySkipUntil.seg && k === legacySkipUntil.idx;
        const isFirst = index === 0;
        if (skipping && !isFirst) {
          index++;
          continue;
        }
        if (isSnapPoint && legacySkipUntil !== undefined) {
          if (e.current_hash !== legacySkipUntil.hash || e.id !== legacySkipUntil.id) {
            return fail('the snapshot does not match the log (history before it was rewritten)', index, e.id);
          }
          legacySkipUntil = undefined;
          // Resume from the snapshot: this entry's own hash is still recomputed below.
          if (index > 0) prevHash = e.previous_hash;
        }
        if (skipping && isFirst) {
          // Libervia fast path plus a check of the first event.
          if (!this.#entryValid(e, legacyAnchor?.first_previous_hash ?? null, v2 ? prevSeq : 0)) {
            return fail('first event is invalid', 0, e.id);
          }
          prevHash = e.current_hash;
          res.totalVerified++;
          index++;
          continue;
        }
        if (e.previous_hash !== prevHash) {
          return fail(
            index === 0 && prevHash === null
              ? 'first event has a non-null previous_hash'
              : 'previous_hash does not link to the previous event',
            index,
            e.id,
          );
        }
        if (v2 && e.seq !== prevSeq + 1) return fail(`seq ${e.seq} follows ${prevSeq}`, index, e.id);
        if (!hasher.matches(k, e.current_hash))
          return fail('current_hash does not match the event', index, e.id);
        const vouchedHash = v2 ? vouched.get(e.seq as number) : undefined;
        if (vouchedHash !== undefined && vouchedHash !== e.current_hash) {
          return fail('the event differs from the snapshot (history before it was rewritten)', index, e.id);
        }
        if (v2 && prevTs !== '' && e.timestamp < prevTs) warnings.push(`time goes backwards at seq ${e.seq}`);
        prevTs = e.timestamp;
        prevHash = e.current_hash;
        prevSeq = e.seq ?? prevSeq + 1;
        res.totalVerified++;
        index++;
      }
    }
    if (legacySkipUntil !== undefined) return fail('the snapshot points past the end of the log (tail cut)');
    res.totalEvents = index;
    res.head = { seq: v2 ? prevSeq : null, hash: prevHash };
    if (v2) {
      const head = await this.#readHead();
      if (head === undefined) {
        if (index > 0) return fail('the head record is missing: a cut tail could not be detected');
      } else if (head.seq > prevSeq) {
        return fail(`tail cut: the head records seq ${head.seq} but the log ends at seq ${prevSeq}`, index);
      } else if (head.seq === prevSeq && head.hash !== prevHash) {
        return fail('the head hash does not match the last event', index - 1);
      } else if (head.seq < prevSeq && this.#key !== undefined) {
        // With a key, events past the authenticated head are unauthenticated: never accepted.
        return fail(
          `${prevSeq - head.seq} event(s) after the authenticated head (seq ${head.seq}) carry no authentication`,
          index - (prevSeq - head.seq),
        );
      } else if (head.seq < prevSeq) {
        warnings.push(`the head lags the log by ${prevSeq - head.seq} events (crash before the head update)`);
      }
      if (snap !== undefined && snap.last_seq !== undefined && snap.last_seq > prevSeq) {
        return fail(`tail cut: the snapshot records seq ${snap.last_seq} but the log ends at seq ${prevSeq}`);
      }
    } else if (snap !== undefined && index > 0 && !res.usedSnapshot && snap.last_event_id !== null) {
      // Legacy full verification: the snapshot must name an event that is present.
      const seg = present.find((s) => s.n === snap.last_segment);
      if (
        seg === undefined &&
        snap.last_segment > ((present[present.length - 1] as Segment | undefined)?.n ?? 0)
      ) {
        return fail('the snapshot points past the end of the log (tail cut)');
      }
    }
    return res;
  }

  #entryValid(e: EventLogEntry, prevHash: string | null, prevSeq: number): boolean {
    if (e.previous_hash !== prevHash) return false;
    if (this.format === 'v2') return e.seq === prevSeq + 1 && v2EntryHash(e) === e.current_hash;
    return legacyEntryHash(e) === e.current_hash;
  }

  async #readSegmentHeader(s: Segment): Promise<Record<string, unknown> | undefined> {
    const fh = await fsp.open(s.file, 'r');
    try {
      const buf = Buffer.alloc(1024);
      const { bytesRead } = await fh.read(buf, 0, 1024, 0);
      const nl = buf.subarray(0, bytesRead).indexOf(0x0a);
      if (nl < 0) return undefined;
      return JSON.parse(buf.subarray(0, nl).toString('utf8')) as Record<string, unknown>;
    } catch {
      return undefined;
    } finally {
      await fh.close();
    }
  }

  async #readLegacyAnchor(
    warnings: string[],
  ): Promise<{ first_segment: number; first_previous_hash: string | null } | undefined> {
    const raw = await readIfExists(join(this.dataDir, LAYOUT.legacyAnchor));
    if (raw === undefined) return undefined;
    try {
      const v = JSON.parse(raw.toString('utf8')) as {
        first_segment?: unknown;
        first_previous_hash?: unknown;
      };
      if (
        Number.isSafeInteger(v.first_segment) &&
        (v.first_previous_hash === null || typeof v.first_previous_hash === 'string')
      ) {
        return { first_segment: v.first_segment as number, first_previous_hash: v.first_previous_hash };
      }
    } catch {
      // fall through
    }
    warnings.push('prune anchor is unreadable: ignored');
    return undefined;
  }

  // ---------------------------------------------------------------- prune

  /**
   * Delete the oldest segments beyond the retention count. v2 (and tensorvault-written legacy logs)
   * record a prune anchor first, so {@link verifyChainFull} still passes afterwards; the snapshot's
   * total is adjusted. Returns what was removed.
   */
  async prune(
    retentionSegments = this.#retention,
  ): Promise<{ segmentsRemoved: number; eventsRemoved: number }> {
    checkInt('retentionSegments', retentionSegments, 1, 1_000_000);
    const run = this.#queue.then(() => this.#prune(retentionSegments));
    this.#queue = run.catch(() => {});
    return run;
  }

  async #prune(keep: number): Promise<{ segmentsRemoved: number; eventsRemoved: number }> {
    this.#writable();
    const segs = await this.#segmentList();
    if (segs.length <= keep) return { segmentsRemoved: 0, eventsRemoved: 0 };
    const drop = segs.slice(0, segs.length - keep);
    const firstKept = segs[segs.length - keep] as Segment;
    const kept = (await this.#readSegment(firstKept)).entries as EventLogEntry[];
    const firstEntry = kept[0];
    let eventsRemoved = 0;
    if (this.format === 'v2') {
      const header = await this.#readSegmentHeader(firstKept);
      const firstSeq = header?.first_seq;
      if (typeof firstSeq !== 'number') {
        throw new TensorVaultError(ErrorCode.CORRUPT, `segment ${firstKept.n} has no valid header`, {
          path: firstKept.file,
        });
      }
      const meta = await this.#readMeta();
      eventsRemoved = firstSeq - meta.anchor.seq;
      const anchor: V2Anchor = {
        segment: firstKept.n,
        seq: firstSeq,
        prev_hash: (header?.prev_hash as string | null | undefined) ?? null,
        pruned_events: meta.anchor.pruned_events + eventsRemoved,
      };
      const { check: _c, ...plain } = { ...meta, anchor, check: undefined };
      await atomicWriteFile(
        join(this.#dir, LAYOUT.v2Meta),
        `${JSON.stringify(this.#seal(plain), null, 2)}\n`,
      );
      this.#anchor = anchor;
    } else {
      for (const s of drop) eventsRemoved += this.#segCounts.get(s.n) ?? 0;
      await atomicWriteFile(
        join(this.dataDir, LAYOUT.legacyAnchor),
        JSON.stringify(
          {
            version: 1,
            first_segment: firstKept.n,
            first_event_id: firstEntry?.id ?? null,
            first_previous_hash: firstEntry?.previous_hash ?? null,
            pruned_at: new Date().toISOString(),
          },
          null,
          2,
        ),
      );
    }
    for (const s of drop) {
      await fsp.rm(s.file, { force: true });
      this.#segCounts.delete(s.n);
    }
    await fsyncDir(this.#dir);
    this.#segments = this.#segments.filter((n) => n >= firstKept.n);
    this.#total -= eventsRemoved;
    await this.#writeSnapshot();
    return { segmentsRemoved: drop.length, eventsRemoved };
  }

  // ---------------------------------------------------------------- queries

  /** Every present event, in order. */
  async getAll(): Promise<EventLogEntry[]> {
    const out: EventLogEntry[] = [];
    for await (const e of this.#iterate()) out.push(e);
    return out;
  }

  /** The event with this id, or `undefined`. */
  async getById(id: string): Promise<EventLogEntry | undefined> {
    for await (const e of this.#iterate()) if (e.id === id) return e;
    return undefined;
  }

  /** Every event of this type, in order. */
  async getByEvento(evento: string): Promise<EventLogEntry[]> {
    const out: EventLogEntry[] = [];
    for await (const e of this.#iterate()) if (e.evento === evento) out.push(e);
    return out;
  }

  /** Every event about this entity kind (and id, when given), in order. */
  async getByEntidade(entidade: string, entidadeId?: string): Promise<EventLogEntry[]> {
    const out: EventLogEntry[] = [];
    for await (const e of this.#iterate()) {
      if (e.entidade === entidade && (entidadeId === undefined || e.entidade_id === entidadeId)) out.push(e);
    }
    return out;
  }

  /** The last event, or `undefined` for an empty log. */
  async getLastEntry(): Promise<EventLogEntry | undefined> {
    return this.#last;
  }

  /** Number of events present (after pruning: the kept ones). */
  async count(): Promise<number> {
    return this.#total;
  }

  /** Segment numbers present, in order. */
  get segments(): readonly number[] {
    return [...this.#segments];
  }

  /** Export events by time and/or segment range, at most {@link EXPORT_LIMIT} per call. */
  async exportRange(options: ExportRangeOptions = {}): Promise<ExportResult> {
    optionsObject(options);
    const from = checkTs('fromTs', options.fromTs);
    const to = checkTs('toTs', options.toTs);
    const limit = checkInt('limit', options.limit ?? EXPORT_LIMIT, 1, EXPORT_LIMIT);
    if (options.fromSegment !== undefined) checkInt('fromSegment', options.fromSegment, 0, 999_999);
    if (options.toSegment !== undefined) checkInt('toSegment', options.toSegment, 0, 999_999);
    const entries: EventLogEntry[] = [];
    let truncated = false;
    for await (const e of this.#iterate(options.fromSegment, options.toSegment)) {
      const t = Date.parse(e.timestamp);
      if ((from !== undefined && t < from) || (to !== undefined && t > to)) continue;
      if (entries.length >= limit) {
        truncated = true;
        break;
      }
      entries.push(e);
    }
    let linked = true;
    for (let i = 1; i < entries.length; i++) {
      if ((entries[i] as EventLogEntry).previous_hash !== (entries[i - 1] as EventLogEntry).current_hash)
        linked = false;
    }
    const anchorHash = entries[0]?.previous_hash ?? null;
    return {
      entries,
      count: entries.length,
      truncated,
      linked,
      fromGenesis: entries.length > 0 && anchorHash === null,
      anchorHash,
    };
  }

  /** Replay the log through filters: counts per type/entity/actor, time range and inconsistencies. */
  async replay(options: ReplayOptions = {}): Promise<ReplayResult> {
    optionsObject(options);
    const from = checkTs('fromTs', options.fromTs);
    const to = checkTs('toTs', options.toTs);
    const limit = checkInt('limit', options.limit ?? REPLAY_LIMIT, 1, REPLAY_LIMIT);
    const out: ReplayResult = {
      totalEvents: 0,
      byEvento: {},
      byEntidade: {},
      byActor: {},
      uniqueEntities: 0,
      range: { first: null, last: null },
      inconsistencies: [],
      truncated: false,
    };
    const entities = new Set<string>();
    let prev: EventLogEntry | undefined;
    let index = 0;
    let read = 0;
    for await (const e of this.#iterate()) {
      if (read >= limit) {
        out.truncated = true;
        break;
      }
      read++;
      if (prev !== undefined && e.previous_hash !== prev.current_hash) {
        out.inconsistencies.push({ index, id: e.id, reason: 'broken link to the previous event' });
      }
      const want = this.format === 'v2' ? v2EntryHash(e) : legacyEntryHash(e);
      if (want !== e.current_hash) out.inconsistencies.push({ index, id: e.id, reason: 'hash mismatch' });
      if (prev !== undefined && e.timestamp < prev.timestamp) {
        out.inconsistencies.push({ index, id: e.id, reason: 'timestamp goes backwards' });
      }
      prev = e;
      index++;
      const t = Date.parse(e.timestamp);
      if ((from !== undefined && t < from) || (to !== undefined && t > to)) continue;
      if (options.evento !== undefined && e.evento !== options.evento) continue;
      if (options.entidade !== undefined && e.entidade !== options.entidade) continue;
      if (options.entidadeId !== undefined && e.entidade_id !== options.entidadeId) continue;
      if (options.actor !== undefined && e.actor !== options.actor) continue;
      out.totalEvents++;
      out.byEvento[e.evento] = (out.byEvento[e.evento] ?? 0) + 1;
      out.byEntidade[e.entidade] = (out.byEntidade[e.entidade] ?? 0) + 1;
      out.byActor[e.actor] = (out.byActor[e.actor] ?? 0) + 1;
      entities.add(`${e.entidade}:${e.entidade_id}`);
      out.range.first ??= e.timestamp;
      out.range.last = e.timestamp;
    }
    out.uniqueEntities = entities.size;
    return out;
  }

  /** Wait for pending appends, close files and release the writer lock. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#queue;
    this.#closed = true;
    await this.#appendFh?.close();
    await this.#headFh?.close();
    this.#appendFh = undefined;
    this.#headFh = undefined;
    this.#lock?.release();
  }

  /** `await using log = await EventLog.open(...)` support. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

interface ResolvedOptions {
  segmentSize: number;
  snapshotEvery: number;
  retentionSegments: number;
  format: EventLogFormat;
  fsync: 'always' | 'never';
  readOnly: boolean;
  lockTimeoutMs: number;
  hmacKey: Uint8Array;
}

function resolveOptions(o: EventLogOptions): Required<ResolvedOptions> {
  if (typeof o !== 'object' || o === null) throw invalidArgument('options', 'options must be an object');
  const format = o.format ?? 'v2';
  if (format !== 'v2' && format !== 'legacy')
    throw invalidArgument('format', "format must be 'v2' or 'legacy'");
  const fsync = o.fsync ?? 'always';
  if (fsync !== 'always' && fsync !== 'never')
    throw invalidArgument('fsync', "fsync must be 'always' or 'never'");
  if (o.hmacKey !== undefined && !(o.hmacKey instanceof Uint8Array)) {
    throw invalidArgument('hmacKey', 'hmacKey must be a Uint8Array');
  }
  return {
    segmentSize: checkInt('segmentSize', o.segmentSize ?? DEFAULT_SEGMENT_SIZE, 1, 10_000_000),
    snapshotEvery: checkInt('snapshotEvery', o.snapshotEvery ?? DEFAULT_SNAPSHOT_EVERY, 1, 100_000_000),
    retentionSegments: checkInt(
      'retentionSegments',
      o.retentionSegments ?? DEFAULT_RETENTION_SEGMENTS,
      1,
      1_000_000,
    ),
    format,
    fsync,
    readOnly: optionalBoolean(o.readOnly, 'readOnly') === true,
    lockTimeoutMs: checkInt('lockTimeoutMs', o.lockTimeoutMs ?? 0, 0, 24 * 3600 * 1000),
    hmacKey: o.hmacKey ?? new Uint8Array(0),
  };
}
