/**
 * tensorvault: keep machine-learning checkpoints, training logs and event logs safe on disk.
 *
 * The public surface, and nothing else.
 */

export {
  type BackupCreateOptions,
  type BackupCreateResult,
  type BackupManifest,
  type BackupReadOptions,
  type BackupVerifyOptions,
  type BackupVerifyResult,
  createBackup,
  type EntryCheck,
  type EventLogSummary,
  type ManifestExtension,
  type ManifestFile,
  type ManifestKey,
  type ManifestSignature,
  type RestoreOptions,
  type RestoreResult,
  restoreBackup,
  sidecarPath,
  signManifest,
  verifyBackup,
  verifyManifestSignature,
} from './backup/index';
export {
  ErrorCode,
  type ErrorContext,
  TensorVaultAbortError,
  TensorVaultError,
} from './errors';
export {
  canonicalJson,
  DEFAULT_RETENTION_SEGMENTS,
  DEFAULT_SEGMENT_SIZE,
  DEFAULT_SNAPSHOT_EVERY,
  EventLog,
  type EventLogEntry,
  type EventLogFormat,
  type EventLogOptions,
  EXPORT_LIMIT,
  type ExportRangeOptions,
  type ExportResult,
  legacyEntryHash,
  legacyPayloadHash,
  REPLAY_LIMIT,
  type RecoveryReport,
  type ReplayOptions,
  type ReplayResult,
  V2_HASH_ALGORITHM,
  type VerifyResult,
  v2EntryHash,
  v2PayloadHash,
} from './eventlog/index';
export {
  type BinaryInput,
  createSha256,
  DEFAULT_CHUNK_SIZE,
  type DigestEncoding,
  type HashFileOptions,
  type HashFileResult,
  hashFile,
  hmacSha256,
  type InputEncoding,
  Sha256,
  sha256,
} from './hash';
export type { JobOptions, Progress } from './job';
export {
  LEVELS,
  type LevelName,
  type LogFields,
  levelName,
  MAX_CAPACITY_LINES,
  RING_LOG_CHANNEL,
  type RingDestination,
  type RingDestinationOptions,
  RingFileLog,
  type RingFileLogOptions,
  type RingFileLogStats,
  type RingLogContents,
  type RingLogRecord,
  readRingLog,
  ringDestination,
} from './logging';
export { nativePath, packageVersion as version } from './native';
