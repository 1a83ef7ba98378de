/** The event log: legacy Libervia format and v2 (docs/formats/eventlog.md). */
export { canonicalJson } from './canonical';
export {
  type EventLogEntry,
  legacyEntryHash,
  legacyPayloadHash,
  V2_HASH_ALGORITHM,
  v2EntryHash,
  v2PayloadHash,
} from './hashing';
export {
  DEFAULT_RETENTION_SEGMENTS,
  DEFAULT_SEGMENT_SIZE,
  DEFAULT_SNAPSHOT_EVERY,
  EventLog,
  type EventLogFormat,
  type EventLogOptions,
  EXPORT_LIMIT,
  type ExportRangeOptions,
  type ExportResult,
  REPLAY_LIMIT,
  type RecoveryReport,
  type ReplayOptions,
  type ReplayResult,
  type VerifyResult,
} from './log';
