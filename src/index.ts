/**
 * tensorvault: keep machine-learning checkpoints, training logs and event logs safe on disk.
 *
 * The public surface, and nothing else.
 */
export {
  ErrorCode,
  type ErrorContext,
  TensorVaultAbortError,
  TensorVaultError,
} from './errors';
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
