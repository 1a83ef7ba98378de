/**
 * tensorvault: keep machine-learning checkpoints, training logs and event logs safe on disk.
 *
 * The public surface, and nothing else.
 */

export {
  type EccLayout,
  type EccStatus,
  type ErasureBenchResult,
  ErasureCodec,
  type ProtectionLevel,
  type ProtectOptions,
  type ProtectResult,
  protect,
  type RepairResult,
  repair,
  type SidecarHealth,
  type SidecarOptions,
  sidecarPath,
  type VerifyResult,
  verify,
} from './ecc-erasure';
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
