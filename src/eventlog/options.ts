/** Option defaults, limits and the argument checks of the event log. */
import { invalidArgument } from '../errors';
import { describeValue, optionalBoolean, optionsObject, requiredInteger } from '../validate';
import type { EventLogFormat } from './layout';
import type { EventLogOptions } from './types';

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

const MAX_FIELD = 4096;

export function checkInt(name: string, v: unknown, min: number, max: number): number {
  return requiredInteger(v, name, min, max);
}

export function checkField(name: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_FIELD) {
    throw invalidArgument(name, `${name} must be a non-empty string of at most ${MAX_FIELD} characters`);
  }
  return v;
}

/** An optional ISO-8601 time, as milliseconds. */
export function checkTs(name: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const t = typeof v === 'string' ? Date.parse(v) : Number.NaN;
  if (Number.isNaN(t))
    throw invalidArgument(name, `${name} must be an ISO-8601 time, got ${describeValue(v)}`);
  return t;
}

export interface ResolvedOptions {
  segmentSize: number;
  snapshotEvery: number;
  retentionSegments: number;
  format: EventLogFormat;
  fsync: 'always' | 'never';
  readOnly: boolean;
  lockTimeoutMs: number;
  hmacKey: Uint8Array;
  /**
   * Restores only (`writeRestoredHead`): the head record is not archived, so a missing one is written
   * from the events (with a key too) instead of refusing them. Never set by `EventLog.open`.
   */
  headFromEvents: boolean;
}

/** Checks `EventLog.open`'s options and fills in the defaults. */
export function resolveOptions(o: EventLogOptions): ResolvedOptions {
  optionsObject(o);
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
    headFromEvents: false,
  };
}
