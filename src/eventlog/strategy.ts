/**
 * What the two on-disk formats have in common, as seen by the log: the tail state they share with it
 * and the operations each format implements its own way (`legacy.ts`, `v2.ts`).
 */
import type { EventLogEntry } from './hashing';
import type { EventLogFormat } from './layout';
import type { LogStore, Segment, Snapshot } from './store';
import type { RecoveryReport } from './types';

/** What the log knows about its end; owned by the log, updated by the format on open and prune. */
export interface Tail {
  /** Segment numbers present, in order. */
  segments: number[];
  /** Events per segment (only the current one is needed for appends). */
  segCounts: Map<number, number>;
  last: EventLogEntry | undefined;
  total: number;
  /** Why appends are refused, when the log is damaged. */
  chainBroken: string | undefined;
}

/** An event's fields once checked, before it gets its place in the chain. */
export interface PreparedEvent {
  actor: string;
  evento: string;
  entidade: string;
  entidade_id: string;
  payload_hash: string;
}

export interface FormatContext {
  store: LogStore;
  tail: Tail;
  recovery: RecoveryReport;
  readOnly: boolean;
  /** fsync each write (`fsync: 'always'`). */
  fsync: boolean;
  /** Events per segment. */
  segmentSize: number;
  /** Write a missing v2 head record from the events (a restore's staged log; see `writeRestoredHead`). */
  headFromEvents: boolean;
}

/** One on-disk format. */
export interface LogFormat {
  readonly name: EventLogFormat;
  /** Load the tail; a writer also repairs what a crash left (see {@link RecoveryReport}). */
  open(): Promise<void>;
  payloadHash(payload: Record<string, unknown>): string;
  /** The entry that follows `prev`. */
  entry(prev: EventLogEntry | undefined, p: PreparedEvent, timestamp: string): EventLogEntry;
  /** The number of the first segment of an empty log. */
  firstSegment(): number;
  /** The segments that belong to the log, in order. */
  liveSegments(): Promise<Segment[]>;
  /** Write entries at the end of segment `seg` (all or none on a crash). */
  write(seg: number, entries: EventLogEntry[]): Promise<void>;
  /**
   * Whether segment `seg` is sealed: its digest is recorded (v2 snapshot), so it must never be
   * appended to again, whatever `segmentSize` this open was given.
   */
  sealed(seg: number): boolean;
  /** Start segment `n` after the current one. */
  rotate(n: number): Promise<void>;
  /** After a write: record what was acknowledged (the v2 head). */
  acknowledge(): Promise<void>;
  /** Write the snapshot from its common fields. */
  snapshot(base: Snapshot): Promise<void>;
  /** Record where the log now starts (before `drop` is deleted); returns how many events go. */
  pruneAnchor(firstKept: Segment, drop: Segment[]): Promise<number>;
  close(): Promise<void>;
}
