/** Options of the backup readers (verify, restore) and their up-front checks. */
import type { JobOptions } from '../job';
import {
  bytesOf,
  checkJobOptions,
  optionalBoolean,
  optionalFunction,
  optionalInteger,
  optionalString,
  optionsObject,
} from '../validate';
import { checkManifestKey, type ManifestKey } from './manifest';

/** Options shared by verify and restore. */
export interface BackupReadOptions extends JobOptions {
  /** Sidecar manifest path (default: next to the archive, `…manifest.json`). */
  manifestPath?: string;
  /** Verify the manifest signature with this key (a public Ed25519 key, or the HMAC key). */
  key?: ManifestKey;
  /** Fail when the manifest is not signed (implied by `key`). */
  requireSignature?: boolean;
  /** Key of an encrypted archive (32 bytes). */
  encryptionKey?: Uint8Array;
  /** HMAC key of a v2 log that authenticates its metadata (see `EventLogOptions.hmacKey`). */
  logKey?: Uint8Array;
  /**
   * Most bytes the archive may expand to when there is no sidecar manifest to size it exactly
   * (default: 100 times the archive's size, at least 16 MiB). A decompression bomb stops there.
   */
  maxExpandedBytes?: number;
  /**
   * Called as each step starts: `checksum` (the archive's SHA-256 against its sidecar), `archive`
   * (reading the archive, each file checked or extracted: `onProgress` counts the archive bytes read),
   * `chain` (the full chain check of the staged log: `onProgress` counts its segment bytes), and for a
   * restore `place` (the log moved in and checked in place). `onProgress` starts from 0 at each step.
   */
  onPhase?: (phase: BackupPhase) => void;
}

/** A step of a backup verify or restore (see {@link BackupReadOptions.onPhase}). */
export type BackupPhase = 'checksum' | 'archive' | 'chain' | 'place';

/** Options of `verifyBackup`. */
export interface BackupVerifyOptions extends BackupReadOptions {
  /** Also check every file's SHA-256 and verify the whole chain (in a private temp folder). */
  readData?: boolean;
}

/** Options of `restoreBackup`. */
export interface RestoreOptions extends BackupReadOptions {
  /** Replace an existing event log in `destDir` (kept until the new one is verified in place). */
  overwrite?: boolean;
  /**
   * Restore a backup whose manifest says the source chain was invalid at backup time
   * (`chain_valid_at_backup: false`), which is refused by default (`TV_CHAIN_INVALID`): the archive is
   * evidence of a damaged log. Every file's size and SHA-256 is still checked against the manifest
   * before anything is placed; the log is then placed as archived (a v2 log without a head record, so
   * it keeps failing verification and a writer refuses to extend it), and the result says the chain was
   * invalid at backup (`chainValidAtBackup`, `chainProblemAtBackup`, a warning, and `restored-invalid-chain`
   * on `diagnostics_channel` `tensorvault:eventlog`). No effect on a backup valid at backup time.
   */
  allowInvalidChain?: boolean;
}

/** Refuse bad options up front (`TV_INVALID_ARGUMENT` naming the field): booleans are booleans. */
export function checkReadOptions(o: RestoreOptions & BackupVerifyOptions): void {
  optionsObject(o);
  checkJobOptions(o);
  optionalString(o.manifestPath, 'manifestPath');
  optionalFunction(o.onPhase, 'onPhase');
  if (o.key !== undefined) checkManifestKey(o.key, 'key', false);
  for (const f of ['requireSignature', 'readData', 'overwrite', 'allowInvalidChain'] as const)
    optionalBoolean(o[f], f);
  for (const f of ['encryptionKey', 'logKey'] as const) if (o[f] !== undefined) bytesOf(o[f], f);
  optionalInteger(o.maxExpandedBytes, 'maxExpandedBytes', 0, Number.MAX_SAFE_INTEGER);
}
