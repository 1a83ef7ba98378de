/** Shared pieces of the remote module: telemetry and the local cache folder. */
import { channel } from 'node:diagnostics_channel';
import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * Telemetry of push, pull, lazy remote loads and remote verify: `diagnostics_channel` channel
 * `tensorvault:remote`, messages `{ event, url, … }` (`pushed`, `pulled`, `fetched`, `verified`,
 * `repaired`, `failed`). Costs nothing when nobody listens.
 */
export const remoteChannel = channel('tensorvault:remote');

/** @internal */
export function publishRemote(message: Record<string, unknown>): void {
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
