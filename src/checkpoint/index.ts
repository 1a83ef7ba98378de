/** Checkpoints: save, load, verify and repair, in the tensorvault and PyFolds layouts. */
export { type CheckpointEvent, checkpointChannel } from './commit';
export {
  CheckpointMismatchError,
  type CheckpointMismatches,
  TensorDamagedError,
  type TensorMismatch,
} from './errors';
export {
  type CheckpointFiles,
  type CheckpointLayout,
  checkpointFiles,
  formatPyfoldsHash,
  type HmacKey,
  type IntegrityBlock,
  pyfoldsDigest,
  pythonShape,
  torchDtype,
} from './layout';
export {
  Checkpoint,
  type CheckpointReport,
  type ExpectedTensor,
  type LoadCheckpointOptions,
  type LoadSecureOptions,
  loadCheckpoint,
  loadSecure,
  repairCheckpoint,
  type VerifyMode,
} from './load';
export {
  CheckpointManager,
  type CheckpointManagerOptions,
  type ManagedCheckpoint,
  type RestoreReport,
} from './manager';
export type { CheckpointChunkOptions, CheckpointReadOptions } from './read-options';
export {
  type CheckpointEcc,
  PYFOLDS_HMAC_ENV,
  type SaveCheckpointOptions,
  type SaveCheckpointResult,
  saveCheckpoint,
} from './save';
export { type VerifyCheckpointOptions, verifyCheckpoint } from './verify';
