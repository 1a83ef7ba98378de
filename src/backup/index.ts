/** Cold backups of the event log: create, verify, restore (docs/formats/backup-manifest.md). */
export { type BackupCreateOptions, type BackupCreateResult, createBackup } from './create';
export type { EntryCheck } from './extract';
export {
  type BackupManifest,
  type EventLogSummary,
  type ManifestExtension,
  type ManifestFile,
  type ManifestKey,
  type ManifestSignature,
  signManifest,
  verifyManifestSignature,
} from './manifest';
export {
  type BackupPhase,
  type BackupReadOptions,
  type BackupVerifyOptions,
  type BackupVerifyResult,
  backupManifestPath,
  type RestoreOptions,
  type RestoreResult,
  restoreBackup,
  verifyBackup,
} from './restore';
