/**
 * Backup manifests (docs/formats/backup-manifest.md): Libervia's v1 fields, tensorvault's additions
 * under `tensorvault`, `archive` (sidecar only) and an optional `signature` (Ed25519 or HMAC-SHA256
 * over the RFC 8785 canonical JSON of every other field).
 */
import { createPrivateKey, createPublicKey, KeyObject, sign, timingSafeEqual, verify } from 'node:crypto';
import { ErrorCode, invalidArgument, TensorVaultError } from '../errors';
import { canonicalJson } from '../eventlog/index';
import { hmacSha256 } from '../hash/index';
import { bytesOf, describeSecret, describeValue, optionalString } from '../validate';

/** One archived file. */
export interface ManifestFile {
  /** Relative POSIX path inside the archive (and under the data folder). */
  path: string;
  /** Size in bytes. */
  size: number;
  /** SHA-256 (hex) of exactly the bytes in the archive. */
  sha256: string;
}

/** Summary of the archived event log. */
export interface EventLogSummary {
  total_events: number;
  total_segments: number;
  first_event_id: string | null;
  last_event_id: string | null;
  last_current_hash: string | null;
  snapshot_exists: boolean;
}

/** tensorvault's additions (absent from Libervia manifests). */
export interface ManifestExtension {
  /** Manifest revision of these additions (2). */
  manifest_version: 2;
  /** File name of the archive. */
  archive_name: string;
  /** Format of the archived log. */
  log_format: 'legacy' | 'v2';
  /** seq of the first and last archived events (v2), or null. */
  first_seq: number | null;
  last_seq: number | null;
  /** Why the chain did not verify at backup time, when it did not. */
  chain_problem: string | null;
  /** `gzip` (possibly several members). */
  compression: 'gzip';
  /** Present when the archive file is encrypted. */
  encryption: { algorithm: 'aes-256-gcm'; key_id: string | null } | null;
}

/** The manifest (a superset of Libervia's v1 manifest). */
export interface BackupManifest {
  version: 1;
  created_at: string;
  source_dir: string;
  files: ManifestFile[];
  eventlog_summary: EventLogSummary;
  chain_valid_at_backup: boolean;
  tensorvault?: ManifestExtension;
  /** The archive file's own size and SHA-256 (sidecar manifest only). */
  archive?: { name: string; size: number; sha256: string };
  signature?: ManifestSignature;
}

/** A manifest signature. */
export interface ManifestSignature {
  algorithm: 'ed25519' | 'hmac-sha256';
  key_id: string | null;
  /** base64 signature or MAC. */
  value: string;
}

/** Key material for signing or verifying a manifest. */
export type ManifestKey =
  | { type: 'ed25519'; key: KeyObject | string | Buffer; keyId?: string }
  | { type: 'hmac-sha256'; key: Uint8Array; keyId?: string };

/** The bytes a signature covers: canonical JSON of the manifest without `signature`. */
export function signedBytes(m: BackupManifest): Buffer {
  const { signature: _s, ...rest } = m;
  return Buffer.from(canonicalJson(rest), 'utf8');
}

/**
 * Check the shape of a {@link ManifestKey} argument (`path` names it): an object whose `type` is
 * `ed25519` (a `KeyObject`, PEM string or DER/PEM Buffer, `private` when signing) or `hmac-sha256` (a
 * non-empty Uint8Array). Returns the Ed25519 key as a `KeyObject`, loaded once.
 */
export function checkManifestKey(key: unknown, path: string, signing: boolean): KeyObject | undefined {
  if (typeof key !== 'object' || key === null || Array.isArray(key))
    throw invalidArgument(path, `${path} must be a manifest key object, got ${describeSecret(key)}`);
  const k = key as Record<string, unknown>;
  optionalString(k.keyId, `${path}.keyId`, false);
  if (k.type === 'hmac-sha256') {
    if (!(k.key instanceof Uint8Array) || bytesOf(k.key, `${path}.key`).length === 0)
      throw invalidArgument(
        `${path}.key`,
        `${path}.key must be a non-empty Uint8Array, got ${describeSecret(k.key)}`,
      );
    return undefined;
  }
  if (k.type !== 'ed25519') {
    throw invalidArgument(
      `${path}.type`,
      `${path}.type must be 'ed25519' or 'hmac-sha256', got ${describeValue(k.type)}`,
    );
  }
  const raw = k.key;
  if (raw instanceof KeyObject) return raw;
  if (typeof raw !== 'string' && !(raw instanceof Uint8Array))
    throw invalidArgument(
      `${path}.key`,
      `${path}.key must be a KeyObject, PEM string or Buffer, got ${describeSecret(raw)}`,
    );
  const material = typeof raw === 'string' ? raw : Buffer.from(bytesOf(raw, `${path}.key`));
  try {
    return signing ? createPrivateKey(material) : createPublicKey(material);
  } catch (err) {
    throw new TensorVaultError(
      ErrorCode.INVALID_ARGUMENT,
      `${path}.key is not ${signing ? 'a private' : 'a'} key Node can read (PEM or DER): ${(err as Error).message}`,
      { argument: `${path}.key` },
      { cause: err },
    );
  }
}

function checkManifest(m: unknown): asserts m is BackupManifest {
  if (typeof m !== 'object' || m === null || Array.isArray(m))
    throw invalidArgument('manifest', `manifest must be an object, got ${describeValue(m)}`);
}

/** Return a copy of `m` signed with `key`. */
export function signManifest(m: BackupManifest, key: ManifestKey): BackupManifest {
  checkManifest(m);
  const loaded = checkManifestKey(key, 'key', true);
  const { signature: _s, ...rest } = m;
  const data = signedBytes(rest as BackupManifest);
  if (key.type === 'hmac-sha256') {
    return {
      ...rest,
      signature: {
        algorithm: 'hmac-sha256',
        key_id: key.keyId ?? null,
        value: hmacSha256(key.key, data).toString('base64'),
      },
    } as BackupManifest;
  }
  const priv = loaded as KeyObject;
  if (priv.type !== 'private' || priv.asymmetricKeyType !== 'ed25519')
    throw invalidArgument('key', 'the signing key is not an Ed25519 key');
  return {
    ...rest,
    signature: {
      algorithm: 'ed25519',
      key_id: key.keyId ?? null,
      value: sign(null, data, priv).toString('base64'),
    },
  } as BackupManifest;
}

/**
 * Check `m`'s signature with `key`. Throws `TV_SIGNATURE_INVALID` when the manifest is unsigned,
 * signed with another algorithm, or the signature does not verify.
 */
export function verifyManifestSignature(m: BackupManifest, key: ManifestKey): void {
  checkManifest(m);
  const loaded = checkManifestKey(key, 'key', false);
  const sig = m.signature;
  if (sig === undefined)
    throw new TensorVaultError(ErrorCode.SIGNATURE_INVALID, 'the manifest is not signed');
  if (sig.algorithm !== key.type) {
    throw new TensorVaultError(
      ErrorCode.SIGNATURE_INVALID,
      `the manifest is signed with ${String(sig.algorithm)}, not ${key.type}`,
      { expected: key.type, actual: String(sig.algorithm) },
    );
  }
  const value = typeof sig.value === 'string' ? Buffer.from(sig.value, 'base64') : Buffer.alloc(0);
  const data = signedBytes(m);
  let ok: boolean;
  if (key.type === 'hmac-sha256') {
    const want = hmacSha256(key.key, data);
    ok = value.length === want.length && timingSafeEqual(value, want);
  } else {
    const k = loaded as KeyObject;
    const pub = k.type === 'private' ? createPublicKey(k) : k;
    ok = value.length === 64 && verify(null, data, pub, value);
  }
  if (!ok) throw new TensorVaultError(ErrorCode.SIGNATURE_INVALID, 'the manifest signature does not verify');
}

const HEX64 = /^[0-9a-f]{64}$/;

/** Parse and shape-check a manifest (untrusted JSON). Throws `TV_CORRUPT` with the reason. */
export function parseManifest(text: string, path: string): BackupManifest {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new TensorVaultError(ErrorCode.CORRUPT, `manifest is not valid JSON: ${path}`, { path });
  }
  const bad = (why: string): TensorVaultError =>
    new TensorVaultError(ErrorCode.CORRUPT, `manifest ${path}: ${why}`, { path, reason: why });
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('not an object');
  const m = v as Record<string, unknown>;
  if (m.version !== 1) throw bad(`unsupported version ${String(m.version)}`);
  if (!Array.isArray(m.files)) throw bad('files is not an array');
  const seen = new Set<string>();
  for (const f of m.files as unknown[]) {
    const r = f as Record<string, unknown>;
    if (
      typeof r !== 'object' ||
      r === null ||
      typeof r.path !== 'string' ||
      !Number.isSafeInteger(r.size) ||
      (r.size as number) < 0 ||
      typeof r.sha256 !== 'string' ||
      !HEX64.test(r.sha256)
    ) {
      throw bad('a files[] record is malformed');
    }
    if (seen.has(r.path)) throw bad(`file listed twice: ${r.path}`);
    seen.add(r.path);
  }
  const a = m.archive as Record<string, unknown> | undefined;
  if (
    a !== undefined &&
    (typeof a !== 'object' ||
      a === null ||
      typeof a.sha256 !== 'string' ||
      !HEX64.test(a.sha256) ||
      !Number.isSafeInteger(a.size))
  ) {
    throw bad('archive record is malformed');
  }
  if (typeof m.eventlog_summary !== 'object' || m.eventlog_summary === null)
    throw bad('eventlog_summary is missing');
  return v as BackupManifest;
}
