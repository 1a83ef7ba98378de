/** The event log: legacy Libervia format and v2 (docs/formats/eventlog.md). */
export { canonicalJson } from './canonical';
/** For backups (not re-exported at the package root): the file names, a consistent cut and its check. */
export { CutChainCheck, type CutFile, type LogCut, takeCut } from './cut';
/** Entry checks shared with backups (not re-exported at the package root). */
export {
  EntryHashChecker,
  type EventLogEntry,
  entryShapeProblem,
  legacyEntryHash,
  legacyPayloadHash,
  V2_HASH_ALGORITHM,
  v2EntryHash,
  v2PayloadHash,
} from './hashing';
export { type EventLogFormat, LAYOUT } from './layout';
/** For restores (not re-exported at the package root): write a staged log's head record. */
export { EVENT_LOG_CHANNEL, EventLog, type EventLogEvent, type NewEvent, writeRestoredHead } from './log';
export {
  DEFAULT_RETENTION_SEGMENTS,
  DEFAULT_SEGMENT_SIZE,
  DEFAULT_SNAPSHOT_EVERY,
  EXPORT_LIMIT,
  REPLAY_LIMIT,
} from './options';
export type {
  EventLogOptions,
  ExportRangeOptions,
  ExportResult,
  KnownCondition,
  RecoveryReport,
  ReplayOptions,
  ReplayResult,
  VerifyResult,
} from './types';
export type { VerifyChainOptions } from './verify';
