/** Shared pieces of the remote module: telemetry and the local cache folder. */
import { channel } from 'node:diagnostics_channel';
import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * A message on {@link remoteChannel} (`tensorvault:remote`). `bytes` are the bytes of the set (`pushed`,
 * `pulled`) or received from the store (`opened`: the manifest, sidecar and header; `fetched`: these
 * chunks); `ms` the time the operation took.
 *
 * @example
 * import { subscribe } from 'node:diagnostics_channel';
 * subscribe('tensorvault:remote', (m) => { const e = m as RemoteEvent; if (e.event === 'fetched') console.log(e.bytes); });
 */
export type RemoteEvent =
  /** A push completed: `sent` bytes uploaded by this call (a resumed push sends less than `bytes`). */
  | { event: 'pushed'; url: string; bytes: number; sent: number; ms: number }
  /** A pull completed: `received` bytes downloaded by this call. */
  | { event: 'pulled'; url: string; bytes: number; received: number; ms: number }
  /** A lazy remote load opened (manifest, sidecar and header read and checked). */
  | { event: 'opened'; url: string; bytes: number; ms: number }
  /** A lazy remote load fetched `chunks` chunks. */
  | { event: 'fetched'; url: string; chunks: number; bytes: number; ms: number }
  /** A remote verify finished. */
  | { event: 'verified'; url: string; status: 'intact' | 'repairable' | 'damaged'; ms: number }
  /**
   * Damage found: chunks of the weights (`chunks`, a pull or a lazy load), or a whole file of the set
   * that a pull leaves out (`file`, `missing`: it was not in the store, `skipped`).
   */
  | { event: 'damaged'; url: string; chunks: number[] }
  | { event: 'damaged'; url: string; file: string; missing: boolean; skipped: true }
  /** Chunks rebuilt from the stored parity (by a pull, a lazy load, or `repairRemote`, with its `ms`). */
  | { event: 'repaired'; url: string; chunks: number[]; ms?: number }
  /** A push or pull failed with the error `code`. */
  | { event: 'failed'; op: 'push' | 'pull'; url: string; code: string };

/**
 * Telemetry of push, pull, lazy remote loads and remote verify: `diagnostics_channel` channel
 * `tensorvault:remote`, messages {@link RemoteEvent} (`pushed`, `pulled`, `opened`, `fetched`,
 * `verified`, `damaged`, `repaired`, `failed`). Costs nothing when nobody listens.
 */
export const remoteChannel = channel('tensorvault:remote');

/** @internal */
export function publishRemote(message: RemoteEvent): void {
  if (remoteChannel.hasSubscribers) remoteChannel.publish(message);
}

/**
 * The local cache folder of remote work (lazy-load chunks, push resume state): `TV_REMOTE_CACHE`, else
 * `$XDG_CACHE_HOME/tensorvault`, else `~/.cache/tensorvault`.
 */
export function remoteCacheDir(): string {
  const env = process.env;
  if (env.TV_REMOTE_CACHE) return env.TV_REMOTE_CACHE;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'tensorvault');
}
