/**
 * tensorvault: keep machine-learning checkpoints, training logs and event logs safe on disk.
 *
 * The public surface, and nothing else.
 */

import { backupManifestPath } from './backup/index';

/** @deprecated Renamed {@link RsProtectionLevel} (the erasure sidecar's levels are {@link ErasureProtectionLevel}). */
export type ProtectionLevel = import('./ecc/index').RsProtectionLevel;
/** @deprecated Renamed {@link backupManifestPath} (the ECC sidecar's path is {@link eccSidecarPath}). */
export const sidecarPath: (archivePath: string) => string = backupManifestPath;

export {
  type BackupCreateOptions,
  type BackupCreateResult,
  type BackupManifest,
  type BackupReadOptions,
  type BackupVerifyOptions,
  type BackupVerifyResult,
  backupManifestPath,
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
  signManifest,
  verifyBackup,
  verifyManifestSignature,
} from './backup/index';
export { type GzipMembersOptions, gzipMembers } from './compress';
export {
  type ChunkDigestName,
  type EccDecodeOptions,
  type EccDecodeResult,
  type EccInput,
  type EccLayout,
  type EccOptions,
  type EccStatus,
  type EccVerifyResult,
  type ErasureBenchResult,
  ErasureCodec,
  type ErasureProtectionLevel,
  eccFromName,
  eccFromProtection,
  eccKernel,
  eccSidecarPath,
  type ProtectOptions,
  type ProtectResult,
  protect,
  type RepairResult,
  RsCodec,
  type RsProtectionLevel,
  repair,
  type SidecarHealth,
  type SidecarOptions,
  verify,
} from './ecc/index';
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
  sha256Many,
  sha256ManyHex,
} from './hash/index';
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
export {
  byteLengthOf,
  type ChunkOptions,
  DTYPES,
  type Dtype,
  isDtype,
  type OpenSafetensorsOptions,
  openSafetensors,
  openShardedSafetensors,
  type PrefetchResult,
  parseShardIndex,
  SafetensorsFile,
  type SaveSafetensorsOptions,
  type SaveSafetensorsResult,
  type SaveShardedOptions,
  type SaveShardedResult,
  ShardedSafetensors,
  type ShardIndex,
  saveSafetensors,
  saveShardedSafetensors,
  type Tensor,
  type TensorArray,
  type TensorInfo,
  type TensorInput,
  type TensorOptions,
  type TensorSource,
  type TensorsToSave,
} from './safetensors';
