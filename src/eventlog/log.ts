/**
 * The segmented, append-only, hash-chained event log. Reads, verifies and appends to legacy Libervia
 * logs bit for bit, and writes new logs in the v2 format of `docs/formats/eventlog.md`.
 *
 * The class owns the tail state, the single-writer lock and the append queue; each on-disk format is a
 * strategy (`legacy.ts`, `v2.ts`) over the files in `store.ts`; verification is `verify.ts` and the
 * read-side queries `queries.ts`.
 */
import { channel } from 'node:diagnostics_channel';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { asyncDisposeSymbol } from '../dispose';
import { ErrorCode, invalidArgument, TensorVaultError } from '../errors';
import { exists, fsyncDir, makeFolder, notAFolder, settleSwap, typedIoError, WriterLock } from '../io/index';
import { checkJobOptions, optionsObject } from '../validate';
import type { EventLogEntry } from './hashing';
import { type EventLogFormat, LAYOUT, LEGACY_SEGMENT_RE } from './layout';
import { LegacyFormat } from './legacy';
import { checkField, checkInt, type ResolvedOptions, resolveOptions } from './options';
import { collect, type EventSource, exportRange, findFirst, replay } from './queries';
import { hmacUnexpected, LogStore, type Segment, type Snapshot } from './store';
import type { LogFormat, PreparedEvent, Tail } from './strategy';
import type {
  EventLogOptions,
  ExportRangeOptions,
  ExportResult,
  RecoveryReport,
  ReplayOptions,
  ReplayResult,
  VerifyResult,
} from './types';
import { V2Format } from './v2';
import { CHECK_SLICE, type VerifyChainOptions, verifyLog } from './verify';

/** An event as given to {@link EventLog.appendMany}. */
export interface NewEvent {
  actor: string;
  evento: string;
  entidade: string;
  entidadeId: string;
  payload?: Record<string, unknown>;
}

/**
 * Telemetry channel of the event log (`docs/formats/eventlog.md`): `{ event: 'snapshot-failed', dataDir,
 * code, message }` when a snapshot after committed events could not be written (retried later).
 */
export const EVENT_LOG_CHANNEL = 'tensorvault:eventlog';

/** A message on {@link EVENT_LOG_CHANNEL} (`tensorvault:eventlog`). */
export type EventLogEvent = {
  /** A snapshot after committed events could not be written (it is retried after the next append). */
  event: 'snapshot-failed';
  dataDir: string;
  code: ErrorCode;
  message: string;
};
const eventLogDiag = channel(EVENT_LOG_CHANNEL);

/** {@link EventLog}'s open with options already resolved (set in its static block). */
let openResolved: (dataDir: string, opts: ResolvedOptions) => Promise<EventLog>;

/** The log's segmented, hash-chained store. Create with {@link EventLog.open}. */
export class EventLog {
  /** The data folder. */
  readonly dataDir: string;
  /** On-disk format. */
  readonly format: EventLogFormat;
  /** What opening had to repair (all zero/false for a clean log or a read-only open). */
  /** A snapshot after committed events could not be written: retried after the next append. */
  #snapshotDue = false;
  readonly recovery: RecoveryReport = {
    truncatedBytes: 0,
    removedTempFiles: 0,
    removedSegments: 0,
    headAdvanced: false,
    headMissing: false,
    snapshotIgnored: false,
    migratedLegacySingleFile: false,
    quarantinedEvents: 0,
  };
  readonly #store: LogStore;
  readonly #fmt: LogFormat;
  readonly #tail: Tail = {
    segments: [],
    segCounts: new Map(),
    last: undefined,
    total: 0,
    chainBroken: undefined,
  };
  readonly #opts: ResolvedOptions;
  #lock: WriterLock | undefined;
  #closed = false;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(dataDir: string, format: EventLogFormat, opts: ResolvedOptions, hasMeta: boolean) {
    this.dataDir = dataDir;
    this.format = format;
    this.#opts = opts;
    this.#store = new LogStore(dataDir, format, opts.hmacKey.length > 0 ? opts.hmacKey : undefined);
    const ctx = {
      store: this.#store,
      tail: this.#tail,
      recovery: this.recovery,
      readOnly: opts.readOnly,
      fsync: opts.fsync === 'always',
      segmentSize: opts.segmentSize,
      headFromEvents: opts.headFromEvents,
    };
    this.#fmt = format === 'v2' ? new V2Format(ctx, hasMeta) : new LegacyFormat(ctx);
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
    return await EventLog.#open(dataDir, resolveOptions(options));
  }

  static {
    openResolved = (dataDir, opts) => EventLog.#open(dataDir, opts);
  }

  static async #open(dataDir: string, opts: ResolvedOptions): Promise<EventLog> {
    // A writer locks first, then finishes or undoes a restore that was killed mid-swap (io/swap.ts) before
    // it looks for a log: never an empty log where a restore was placing one. A reader refuses a half swap.
    let lock: WriterLock | undefined;
    // A file where the folder should be: said so (it failed as an I/O error on a path inside it).
    const st = await fsp.stat(dataDir).catch(() => undefined);
    if (st !== undefined && !st.isDirectory()) throw notAFolder(dataDir, st, 'an event-log folder');
    if (!opts.readOnly) {
      await makeFolder(dataDir, 'an event-log folder');
      lock = await WriterLock.acquireAsync(join(dataDir, LAYOUT.lock), {
        timeoutMs: opts.lockTimeoutMs,
        describe: (h) =>
          `event log is locked by ${h.pid !== undefined ? `pid ${h.pid} on ${h.hostname ?? 'an unknown host'}` : 'another process'}: ${join(dataDir, LAYOUT.lock)}`,
      });
    }
    try {
      return await EventLog.#openLocked(dataDir, opts, lock);
    } catch (err) {
      lock?.release();
      throw err;
    }
  }

  static async #openLocked(
    dataDir: string,
    opts: ResolvedOptions,
    lock: WriterLock | undefined,
  ): Promise<EventLog> {
    await settleSwap(dataDir, opts.readOnly);
    const dir = join(dataDir, LAYOUT.dir);
    const hasMeta = await exists(join(dir, LAYOUT.v2Meta));
    let format = hasMeta ? 'v2' : await detectLegacy(dataDir, opts.format);
    if (opts.readOnly && !hasMeta && format === 'v2') {
      if (!(await exists(dir))) {
        throw new TensorVaultError(ErrorCode.NOT_FOUND, `no event log in ${dataDir}`, { path: dir });
      }
      format = 'legacy'; // an event-log folder without v2 metadata or segments: an empty legacy log
    }
    if (format === 'legacy' && opts.hmacKey.length > 0) {
      // The legacy (Libervia) format authenticates nothing: a key for it is a key for an unkeyed log.
      throw hmacUnexpected(dir, 'the legacy (Libervia) format carries no HMAC');
    }
    const log = new EventLog(dataDir, format, opts, hasMeta);
    if (!opts.readOnly) {
      await makeFolder(dir);
      log.#lock = lock;
    }
    await log.#fmt.open();
    return log;
  }

  /**
   * Every present event in order (segments that cannot be parsed are skipped). Each segment is parsed
   * in slices and its events handed out {@link CHECK_SLICE} at a time, with a turn of the event loop
   * between two slices: a query (and what it does with each event, as `replay` hashing it) never holds
   * the loop for a whole segment.
   */
  async *#iterate(fromSegment?: number, toSegment?: number): AsyncGenerator<EventLogEntry> {
    for (const s of await this.#fmt.liveSegments()) {
      if (fromSegment !== undefined && s.n < fromSegment) continue;
      if (toSegment !== undefined && s.n > toSegment) break;
      const entries = await this.#store.entries(s);
      for (let k = 0; k < entries.length; k++) {
        if (k > 0 && k % CHECK_SLICE === 0) await nextTurn();
        yield entries[k] as EventLogEntry;
      }
    }
  }

  readonly #events: EventSource = (from, to) => this.#iterate(from, to);

  // ---------------------------------------------------------------- appending

  #writable(): void {
    if (this.#closed) throw new TensorVaultError(ErrorCode.INVALID_ARGUMENT, 'the event log is closed');
    if (this.#opts.readOnly)
      throw new TensorVaultError(ErrorCode.INVALID_ARGUMENT, 'the event log is read-only');
    const broken = this.#tail.chainBroken;
    if (broken !== undefined) {
      throw new TensorVaultError(
        ErrorCode.CHAIN_INVALID,
        `refusing to extend a damaged event log (${broken}); restore it from a backup`,
        { path: this.dataDir, reason: broken },
      );
    }
  }

  /** Run `work` after every queued append or prune (they are serialised). */
  #enqueue<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(work);
    this.#queue = run.catch(() => {});
    return run;
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
  async appendMany(events: readonly NewEvent[]): Promise<EventLogEntry[]> {
    if (!Array.isArray(events)) throw invalidArgument('events', 'events must be an array');
    const prepared: PreparedEvent[] = events.map((ev: unknown, i) => {
      if (typeof ev !== 'object' || ev === null)
        throw invalidArgument(`events[${i}]`, `events[${i}] is not an object`);
      const e = ev as Partial<NewEvent>;
      return {
        actor: checkField('actor', e.actor),
        evento: checkField('evento', e.evento),
        entidade: checkField('entidade', e.entidade),
        entidade_id: checkField('entidadeId', e.entidadeId),
        payload_hash: this.#fmt.payloadHash(e.payload ?? {}),
      };
    });
    return this.#enqueue(() => this.#appendPrepared(prepared));
  }

  #timestamp(): string {
    const now = Date.now();
    const prev = this.#tail.last === undefined ? 0 : Date.parse(this.#tail.last.timestamp);
    return new Date(Math.max(now, Number.isNaN(prev) ? 0 : prev)).toISOString();
  }

  async #appendPrepared(prepared: PreparedEvent[]): Promise<EventLogEntry[]> {
    this.#writable();
    const tail = this.#tail;
    const size = this.#opts.segmentSize;
    const out: EventLogEntry[] = [];
    let i = 0;
    while (i < prepared.length) {
      let seg = tail.segments[tail.segments.length - 1];
      // A sealed segment is never appended to: a log reopened with a larger segmentSize whose last
      // segment the snapshot sealed (full under the old size) goes on in a new segment.
      if (seg === undefined || (tail.segCounts.get(seg) ?? 0) >= size || this.#fmt.sealed(seg)) {
        seg = await this.#rotate();
      }
      const batch = prepared.slice(i, i + size - (tail.segCounts.get(seg) ?? 0));
      i += batch.length;
      const entries: EventLogEntry[] = [];
      let prev = tail.last;
      for (const p of batch) {
        prev = this.#fmt.entry(prev, p, this.#timestamp());
        entries.push(prev);
      }
      await this.#fmt.write(seg, entries);
      const before = tail.total;
      tail.total += entries.length;
      tail.segCounts.set(seg, (tail.segCounts.get(seg) ?? 0) + entries.length);
      tail.last = prev;
      out.push(...entries);
      await this.#fmt.acknowledge();
      const full = (tail.segCounts.get(seg) ?? 0) >= size;
      const every = this.#opts.snapshotEvery;
      if (full || Math.floor(tail.total / every) > Math.floor(before / every) || this.#snapshotDue) {
        await this.#snapshotAfterCommit();
      }
    }
    return out;
  }

  async #rotate(): Promise<number> {
    const cur = this.#tail.segments[this.#tail.segments.length - 1];
    const n = cur === undefined ? this.#fmt.firstSegment() : cur + 1;
    await this.#fmt.rotate(n);
    this.#tail.segments.push(n);
    this.#tail.segCounts.set(n, 0);
    return n;
  }

  /**
   * The snapshot after events are committed (written, synced, acknowledged). One that cannot be written
   * (a full disk: it is a new file) must not fail the append: the caller would take the events as not
   * written and write them again. It is retried after the next append, reported on the channel (and,
   * once per streak, as a process warning); verification works without it, from the previous snapshot
   * or in full. A programming error (not a system error) is thrown, not deferred.
   */
  async #snapshotAfterCommit(): Promise<void> {
    try {
      await this.#writeSnapshot();
      this.#snapshotDue = false;
    } catch (err) {
      // Only a failure of the file system (a typed error, or a Node system error made one) is deferred;
      // anything else is a bug, and hiding it behind a warning would let it recur at every append.
      const e = typedIoError(err, this.dataDir);
      if (!(e instanceof TensorVaultError)) throw e;
      if (eventLogDiag.hasSubscribers) {
        const message: EventLogEvent = {
          event: 'snapshot-failed',
          dataDir: this.dataDir,
          code: e.code,
          message: e.message,
        };
        eventLogDiag.publish(message);
      }
      if (!this.#snapshotDue) process.emitWarning(e);
      this.#snapshotDue = true;
    }
  }

  async #writeSnapshot(): Promise<void> {
    const { last, segments, segCounts, total } = this.#tail;
    const seg = segments[segments.length - 1] ?? 1;
    const base: Snapshot = {
      version: this.format === 'v2' ? 2 : 1,
      last_segment: seg,
      last_index_in_segment: (segCounts.get(seg) ?? 1) - 1,
      last_event_id: last?.id ?? null,
      last_current_hash: last?.current_hash ?? null,
      last_timestamp: last?.timestamp ?? null,
      total_events: total,
    };
    await this.#fmt.snapshot(base);
  }

  // ---------------------------------------------------------------- verification

  /**
   * Fast verification. v2: the metadata anchor, the segment sequence (no gaps), every sealed segment's
   * bytes against the SHA-256 recorded in the (checked) snapshot, then every event of the unsealed
   * tail one by one, and the head record (a cut tail fails). Legacy: Libervia's rule (from the
   * snapshot's event on; contract `libervia.md` §2) plus the first event when the log was not pruned
   * by Libervia. Without a usable snapshot it falls back to {@link verifyChainFull}.
   * Segments are parsed and checked in slices, letting the event loop turn between two:
   * `options.signal` stops it there (rejects with `TV_ABORTED`); `options.onProgress` counts the bytes
   * of the segments read event by event.
   */
  async verifyChain(options: VerifyChainOptions = {}): Promise<VerifyResult> {
    optionsObject(options);
    checkJobOptions(options);
    return verifyLog(this.#store, true, options);
  }

  /**
   * Full verification: every event's hash and link from the first kept event (or the prune anchor).
   * A legacy log pruned by Libervia (no anchor) fails it as pruned, not corrupt: use {@link verifyChain}.
   * Segments are parsed and checked in slices, letting the event loop turn between two:
   * `options.signal` stops it there (rejects with `TV_ABORTED`); `options.onProgress` counts the
   * segment bytes read.
   */
  async verifyChainFull(options: VerifyChainOptions = {}): Promise<VerifyResult> {
    optionsObject(options);
    checkJobOptions(options);
    return verifyLog(this.#store, false, options);
  }

  // ---------------------------------------------------------------- prune

  /**
   * Delete the oldest segments beyond the retention count. v2 (and tensorvault-written legacy logs)
   * record a prune anchor first, so {@link verifyChainFull} still passes afterwards; the snapshot's
   * total is adjusted. Returns what was removed.
   */
  async prune(
    retentionSegments = this.#opts.retentionSegments,
  ): Promise<{ segmentsRemoved: number; eventsRemoved: number }> {
    checkInt('retentionSegments', retentionSegments, 1, 1_000_000);
    return this.#enqueue(() => this.#prune(retentionSegments));
  }

  async #prune(keep: number): Promise<{ segmentsRemoved: number; eventsRemoved: number }> {
    this.#writable();
    const segs = await this.#fmt.liveSegments();
    if (segs.length <= keep) return { segmentsRemoved: 0, eventsRemoved: 0 };
    const drop = segs.slice(0, segs.length - keep);
    const firstKept = segs[segs.length - keep] as Segment;
    // The anchor is durable before anything is deleted: a crash in between is finished on open.
    const eventsRemoved = await this.#fmt.pruneAnchor(firstKept, drop);
    for (const s of drop) {
      await fsp.rm(s.file, { force: true });
      this.#tail.segCounts.delete(s.n);
    }
    await fsyncDir(this.#store.dir);
    this.#tail.segments = this.#tail.segments.filter((n) => n >= firstKept.n);
    this.#tail.total -= eventsRemoved;
    // The segments are gone (the anchor recorded first): as after an append, a snapshot that cannot be
    // written is retried later rather than reported as a failed prune.
    await this.#snapshotAfterCommit();
    return { segmentsRemoved: drop.length, eventsRemoved };
  }

  // ---------------------------------------------------------------- queries

  /** Every present event, in order. */
  async getAll(): Promise<EventLogEntry[]> {
    return collect(this.#events());
  }

  /** The event with this id, or `undefined`. */
  async getById(id: string): Promise<EventLogEntry | undefined> {
    return findFirst(this.#events(), (e) => e.id === id);
  }

  /** Every event of this type, in order. */
  async getByEvento(evento: string): Promise<EventLogEntry[]> {
    return collect(this.#events(), (e) => e.evento === evento);
  }

  /** Every event about this entity kind (and id, when given), in order. */
  async getByEntidade(entidade: string, entidadeId?: string): Promise<EventLogEntry[]> {
    return collect(
      this.#events(),
      (e) => e.entidade === entidade && (entidadeId === undefined || e.entidade_id === entidadeId),
    );
  }

  /** The last event, or `undefined` for an empty log. */
  async getLastEntry(): Promise<EventLogEntry | undefined> {
    return this.#tail.last;
  }

  /** Number of events present (after pruning: the kept ones). */
  async count(): Promise<number> {
    return this.#tail.total;
  }

  /** Segment numbers present, in order. */
  get segments(): readonly number[] {
    return [...this.#tail.segments];
  }

  /** Export events by time and/or segment range, at most {@link EXPORT_LIMIT} per call. */
  async exportRange(options: ExportRangeOptions = {}): Promise<ExportResult> {
    optionsObject(options);
    return exportRange(this.#events, options);
  }

  /** Replay the log through filters: counts per type/entity/actor, time range and inconsistencies. */
  async replay(options: ReplayOptions = {}): Promise<ReplayResult> {
    optionsObject(options);
    return replay(this.#events, this.format === 'v2', options);
  }

  /** Wait for pending appends, close files and release the writer lock. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#queue;
    this.#closed = true;
    await this.#fmt.close();
    this.#lock?.release();
  }

  /** `await using log = await EventLog.open(...)` support. */
  async [asyncDisposeSymbol](): Promise<void> {
    await this.close();
  }
}

/** The format of a folder without v2 metadata: legacy when it holds legacy segments or the single file. */
async function detectLegacy(dataDir: string, wanted: EventLogFormat): Promise<EventLogFormat> {
  const names = await fsp.readdir(join(dataDir, LAYOUT.dir)).catch(() => [] as string[]);
  if (names.some((n) => LEGACY_SEGMENT_RE.test(n))) return 'legacy';
  return (await exists(join(dataDir, LAYOUT.legacySingle))) ? 'legacy' : wanted;
}

/**
 * For restores (not re-exported at the package root): write the head record of a v2 log that was just
 * extracted from a backup. The head is not archived; the restore vouches for the events instead (every
 * file's SHA-256, the full chain, the manifest's event count and last hash), so the head is written
 * from them, under `hmacKey` when the log has one. An ordinary writer's open refuses a log whose head
 * is missing instead (`recovery.headMissing`).
 */
export async function writeRestoredHead(dataDir: string, hmacKey: Uint8Array | undefined): Promise<void> {
  const opts = resolveOptions({ fsync: 'always', ...(hmacKey !== undefined ? { hmacKey } : {}) });
  const log = await openResolved(dataDir, { ...opts, headFromEvents: true });
  await log.close();
}
