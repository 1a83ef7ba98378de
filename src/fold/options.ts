/**
 * Options shared by {@link openFold}, {@link verifyFold} and {@link repairFold}, and their conversion
 * into the addon's form (keys to bytes, PEM keys to raw Ed25519 keys, the policy preset).
 */
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { invalidArgument } from '../errors';
import type { JobOptions } from '../job';
import type { FoldOpenOptions } from '../native/binding';
import { optionsObject, utf8Exact } from '../validate';

/**
 * What to refuse beyond what PyFolds refuses. Every rule is off by default, so that every file PyFolds
 * reads opens; `'strict'` turns on {@link FoldPolicy.strict}.
 */
export interface FoldPolicy {
  /**
   * Refuse "integrity only" files: neither the HMAC key nor a verified trust block bound to the file
   * authenticates them (CRC, SHA-256, manifest and Merkle root can be recomputed by anyone).
   */
  requireAuthenticated?: boolean;
  /** Refuse files without a Merkle root. */
  requireMerkle?: boolean;
  /** Refuse files without a trust block that verifies with `trustPublicKey` and is bound to the file. */
  requireSignature?: boolean;
  /**
   * Refuse what PyFolds's writer never produces: gaps or out-of-order chunks, bytes after the index,
   * unknown minor versions, index entries without the duplicated header fields, and
   * `security_features` that claim a Merkle root, trust block or encryption the file does not have.
   */
  strict?: boolean;
}

/** Options of {@link openFold}. */
export interface OpenFoldOptions extends JobOptions {
  /**
   * The integrity key (PyFolds's `PYFOLDS_INTEGRITY_KEY`; a string is taken as UTF-8). Needed to
   * verify files whose digests are `hmac-sha256:`; with a key, plain `sha256:` files are refused
   * (`TV_FOLD_UNVERIFIABLE`, a downgrade) and the manifest and chunk list become mandatory.
   */
  hmacKey?: string | Uint8Array;
  /** AES-256 key (32 bytes) for encrypted chunks. */
  decryptionKey?: Uint8Array;
  /**
   * Ed25519 public key for the trust block and `metadata.signature`: an SPKI PEM, a `KeyObject` or
   * the raw 32 bytes.
   */
  trustPublicKey?: string | KeyObject | Uint8Array;
  /**
   * `'lazy'` (default): each chunk is verified the first time it is read, once; `'full'`: every chunk
   * at open; `'none'`: no digests (structure, GCM tags, lengths and decompression limits are still
   * checked, and a CRC-32C mismatch still triggers the rs(N) repair).
   */
  verify?: 'full' | 'lazy' | 'none';
  /** `'compatible'` (default), `'strict'`, or individual rules. */
  policy?: 'compatible' | 'strict' | FoldPolicy;
  /** Largest chunk payload handed out (default and ceiling: 2 GiB). */
  maxPayloadBytes?: number;
}

function bytes(v: string | Uint8Array | undefined, argument: string): Uint8Array | undefined {
  if (v === undefined) return undefined;
  // A lone surrogate would become U+FFFD in UTF-8: two different keys would act as one.
  if (typeof v === 'string') return utf8Exact(argument, v, argument);
  if (v instanceof Uint8Array) return v;
  throw invalidArgument(argument, `${argument} must be a string or a Uint8Array`);
}

/** A raw 32-byte Ed25519 public key from PEM, a KeyObject or raw bytes. */
export function rawPublicKey(v: string | KeyObject | Uint8Array, argument = 'trustPublicKey'): Uint8Array {
  if (v instanceof Uint8Array) {
    if (v.length !== 32)
      throw invalidArgument(argument, `${argument} must be 32 raw bytes, an SPKI PEM or a KeyObject`);
    return v;
  }
  try {
    const key = typeof v === 'string' ? createPublicKey(v) : v.type === 'private' ? createPublicKey(v) : v;
    if (key.asymmetricKeyType !== 'ed25519') throw new Error('not an Ed25519 key');
    const jwk = key.export({ format: 'jwk' });
    return Buffer.from(String(jwk.x), 'base64url');
  } catch (err) {
    throw invalidArgument(argument, `${argument} is not an Ed25519 public key: ${(err as Error).message}`);
  }
}

/** The 32-byte Ed25519 seed from a PKCS#8 PEM, a KeyObject or raw bytes. */
export function rawSigningSeed(v: string | KeyObject | Uint8Array, argument = 'signingKey'): Uint8Array {
  if (v instanceof Uint8Array) {
    if (v.length !== 32)
      throw invalidArgument(argument, `${argument} must be a 32-byte seed, a PKCS#8 PEM or a KeyObject`);
    return v;
  }
  try {
    const key = typeof v === 'string' ? createPrivateKey(v) : v;
    if (key.type !== 'private' || key.asymmetricKeyType !== 'ed25519')
      throw new Error('not an Ed25519 private key');
    const jwk = key.export({ format: 'jwk' });
    return Buffer.from(String(jwk.d), 'base64url');
  } catch (err) {
    throw invalidArgument(argument, `${argument} is not an Ed25519 private key: ${(err as Error).message}`);
  }
}

/** `o` without its undefined members (the addon's option objects have exact optional types). */
export function compact<T extends Record<string, unknown>>(
  o: T,
): { [K in keyof T]?: Exclude<T[K], undefined> } {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out as { [K in keyof T]?: Exclude<T[K], undefined> };
}

/** The addon's open options. */
export function nativeOpenOptions(o: OpenFoldOptions): FoldOpenOptions {
  optionsObject(o);
  const verify = o.verify ?? 'lazy';
  if (verify !== 'full' && verify !== 'lazy' && verify !== 'none') {
    throw invalidArgument('verify', "verify must be 'full', 'lazy' or 'none'");
  }
  const policy: FoldPolicy =
    o.policy === undefined || o.policy === 'compatible'
      ? {}
      : o.policy === 'strict'
        ? { strict: true }
        : typeof o.policy === 'object' && o.policy !== null
          ? o.policy
          : (() => {
              throw invalidArgument('policy', "policy must be 'compatible', 'strict' or an object of rules");
            })();
  if (
    o.maxPayloadBytes !== undefined &&
    (!Number.isSafeInteger(o.maxPayloadBytes) || o.maxPayloadBytes < 0)
  ) {
    throw invalidArgument('maxPayloadBytes', 'maxPayloadBytes must be a non-negative safe integer');
  }
  return compact({
    hmacKey: bytes(o.hmacKey, 'hmacKey'),
    decryptionKey: bytes(o.decryptionKey, 'decryptionKey'),
    trustKey: o.trustPublicKey === undefined ? undefined : rawPublicKey(o.trustPublicKey),
    verify,
    requireAuthenticated: policy.requireAuthenticated === true,
    requireMerkle: policy.requireMerkle === true,
    requireSignature: policy.requireSignature === true,
    strict: policy.strict === true,
    maxPayload: o.maxPayloadBytes,
  });
}
