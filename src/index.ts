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
  type TensorSource,
  type TensorsToSave,
} from './safetensors';
