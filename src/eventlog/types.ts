/** The event log's options and results (the types of its public API). */
import type { EventLogEntry } from './hashing';
import type { EventLogFormat } from './layout';

/** Options of {@link EventLog.open}. */
export interface EventLogOptions {
  /** Events per segment before rotation (default 10,000). */
  segmentSize?: number;
  /** Write a snapshot every this many events (default 1,000), and at each rotation. */
  snapshotEvery?: number;
  /** Segments kept by `prune()` (default 30). */
  retentionSegments?: number;
  /** Format of a NEW log (default `'v2'`). An existing log keeps its format. */
  format?: EventLogFormat;
  /**
   * `'always'` (default): every append is on disk (fsync) before it resolves. `'never'`: leave flushing
   * to the OS (fast; a power loss may lose recent events and make the tail look cut).
   */
  fsync?: 'always' | 'never';
  /** Open read-only: no lock, no recovery, no writes. */
  readOnly?: boolean;
  /** Wait up to this long for another writer's lock (default 0: fail at once with `TV_LOCKED`). */
  lockTimeoutMs?: number;
  /**
   * Key that authenticates the v2 metadata, snapshot and head with HMAC-SHA256 (without it they carry
   * a plain SHA-256 checksum, which detects corruption but not a deliberate rewrite). A log created
   * without a key, and any legacy log, is refused with it (`TV_EVENTLOG_HMAC_UNEXPECTED`).
   */
  hmacKey?: Uint8Array;
}

/** Result of a chain verification (Libervia's shape, plus details). */
export interface VerifyResult {
  /** True when every check passed. */
  valid: boolean;
  /** 0-based index (among the events present) of the first bad event. */
  firstInvalidIndex?: number;
  /** Id of the first bad event. */
  firstInvalidId?: string;
  /** What failed. */
  reason?: string;
  /** Events whose hash and link were checked one by one. */
  totalVerified: number;
  /** `fast` (snapshot and sealed-segment digests, then the tail) or `full` (every event). */
  mode: 'fast' | 'full';
  /** True when a valid snapshot was used. */
  usedSnapshot: boolean;
  /** Events present in the log. */
  totalEvents: number;
  /** Last event's seq (v2) and hash, as found. */
  head: { seq: number | null; hash: string | null };
  /** Things worth knowing that do not make the log invalid (ignored corrupt snapshot, torn tail, ...). */
  warnings: string[];
  /**
   * Known, harmless shapes left by older builds that a valid log was found in, each with a stable
   * `code` (absent when there are none; each also has a line in `warnings`).
   */
  conditions?: KnownCondition[];
}

/**
 * `code` of a {@link KnownCondition}: a v2 segment that builds before a3248bc appended to after the
 * snapshot had sealed it (a log reopened with a larger `segmentSize`). Its sealed bytes still match
 * the snapshot's digest and the events after them chain on; the fast check then checks that segment
 * and the ones after it event by event, as the full check does.
 */
export const SEALED_SEGMENT_APPENDED = 'sealed-segment-appended';

/** A known shape left by an older build, found in a log that verifies (`VerifyResult.conditions`). */
export interface KnownCondition {
  /** Stable name of the condition ({@link SEALED_SEGMENT_APPENDED}). */
  code: typeof SEALED_SEGMENT_APPENDED;
  /** The segment concerned. */
  segment: number;
  /** Bytes after the sealed ones (the appended events' lines). */
  appendedBytes: number;
}

/** What opening for writing had to repair after a crash. */
export interface RecoveryReport {
  /** Bytes of a torn last line that were cut off. */
  truncatedBytes: number;
  /** Leftover temp files removed. */
  removedTempFiles: number;
  /** Segments removed: empty ones from an interrupted rotation, old ones from an interrupted prune. */
  removedSegments: number;
  /** The head record was behind the log and was moved forward. */
  headAdvanced: boolean;
  /**
   * The log holds events but its v2 head record is missing (or no slot of it verifies): a cut tail
   * cannot be ruled out. The head is not rewritten (that would hide the cut) and appends fail with
   * `TV_CHAIN_INVALID`; restore the log from a backup.
   */
  headMissing: boolean;
  /** A corrupt snapshot was ignored (and rewritten). */
  snapshotIgnored: boolean;
  /** The legacy single-file log was migrated into segment 1. */
  migratedLegacySingleFile: boolean;
  /**
   * With an `hmacKey`: events after the authenticated head (never acknowledged, or forged), moved out
   * of the log into {@link RecoveryReport.quarantineFile} instead of being re-signed.
   */
  quarantinedEvents: number;
  /** Where the quarantined events were put (in the log's folder), when there were any. */
  quarantineFile?: string;
}

/** Filters of {@link EventLog.exportRange}. */
export interface ExportRangeOptions {
  /** Only events at or after this ISO time. */
  fromTs?: string;
  /** Only events at or before this ISO time. */
  toTs?: string;
  /** First segment number to read. */
  fromSegment?: number;
  /** Last segment number to read. */
  toSegment?: number;
  /** Most events to return (default and maximum {@link EXPORT_LIMIT}). */
  limit?: number;
}

/** Result of {@link EventLog.exportRange}. */
export interface ExportResult {
  /** The events, in order. */
  entries: EventLogEntry[];
  /** Number of events returned. */
  count: number;
  /** True when more events matched than `limit`. */
  truncated: boolean;
  /** True when the exported events link to each other (each `previous_hash` is the last `current_hash`). */
  linked: boolean;
  /** True when the first exported event is the first of the chain (`previous_hash` null). */
  fromGenesis: boolean;
  /** `current_hash` that the first exported event links to (null from genesis). */
  anchorHash: string | null;
}

/** Filters of {@link EventLog.replay}. */
export interface ReplayOptions {
  /** Only this event type. */
  evento?: string;
  /** Only this entity kind. */
  entidade?: string;
  /** Only this entity id. */
  entidadeId?: string;
  /** Only this actor. */
  actor?: string;
  /** Only events at or after this ISO time. */
  fromTs?: string;
  /** Only events at or before this ISO time. */
  toTs?: string;
  /** Most events to read (default and maximum {@link REPLAY_LIMIT}). */
  limit?: number;
}

/** Result of {@link EventLog.replay}. */
export interface ReplayResult {
  /** Events that matched the filters. */
  totalEvents: number;
  /** Count per event type. */
  byEvento: Record<string, number>;
  /** Count per entity kind. */
  byEntidade: Record<string, number>;
  /** Count per actor. */
  byActor: Record<string, number>;
  /** Distinct entities (`entidade:entidade_id`). */
  uniqueEntities: number;
  /** First and last timestamps seen (null when nothing matched). */
  range: { first: string | null; last: string | null };
  /** Problems seen while reading the whole chain: broken links, bad hashes, time going backwards. */
  inconsistencies: { index: number; id: string; reason: string }[];
  /** True when the limit stopped the replay early. */
  truncated: boolean;
}
