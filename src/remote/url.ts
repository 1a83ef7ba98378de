/** Remote targets: `s3://bucket/prefix` and `file:///folder` URLs. */
import { isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import { invalidArgument } from '../errors';

/** A parsed remote URL: the store and the key (or key prefix) inside it. */
export type RemoteTarget =
  | { kind: 's3'; bucket: string; key: string }
  | { kind: 'file'; root: string; key: string };

/**
 * An `s3://` or `file://` URL (the type that selects the remote overload of `loadCheckpoint`). The scheme
 * is matched without regard to case, as {@link isRemoteUrl} and the loaders match it (`S3://`, `File://`).
 */
export type RemoteUrl =
  | `${'s' | 'S'}3://${string}`
  | `${'f' | 'F'}${'i' | 'I'}${'l' | 'L'}${'e' | 'E'}://${string}`;

/**
 * True when `text` names a remote target (`s3://…` or `file://…`, any case) rather than a local path.
 * Narrows `text` to {@link RemoteUrl}, so `loadCheckpoint(text)` is typed as the remote load it is.
 */
export function isRemoteUrl(text: unknown): text is RemoteUrl {
  return typeof text === 'string' && /^(s3|file):\/\//i.test(text);
}

/**
 * Parse `s3://bucket/key…` (the key is everything after the bucket, without a leading slash) or
 * `file:///abs/path` (root `/`, the key is the path without its leading slash).
 */
export function parseRemoteUrl(url: string): RemoteTarget {
  if (!isRemoteUrl(url)) throw invalidArgument('url', `not an s3:// or file:// URL: ${JSON.stringify(url)}`);
  if (/^s3:/i.test(url)) {
    const rest = url.slice(5);
    const slash = rest.indexOf('/');
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    const key = slash < 0 ? '' : rest.slice(slash + 1);
    // S3 bucket names: 3–63 characters of lower-case letters, digits, dots and hyphens.
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
      throw invalidArgument('url', `not a valid bucket name in ${JSON.stringify(url)}`);
    }
    if (key.split('/').some((p) => p === '.' || p === '..')) {
      throw invalidArgument('url', `a key may not contain . or .. components: ${JSON.stringify(url)}`);
    }
    // Control characters (NUL, newline) and empty components (`a//b`) were sent to the store, which
    // refused them with an error taken for an outage (s3s-fs: HTTP 500 for `//`).
    if ([...key].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)) {
      throw invalidArgument('url', `a key may not contain control characters: ${JSON.stringify(url)}`);
    }
    if (key.includes('//')) {
      throw invalidArgument('url', `a key may not contain an empty component (//): ${JSON.stringify(url)}`);
    }
    return { kind: 's3', bucket, key };
  }
  let path: string;
  try {
    path = fileURLToPath(url);
  } catch {
    throw invalidArgument('url', `not a valid file:// URL: ${JSON.stringify(url)}`);
  }
  if (!isAbsolute(path))
    throw invalidArgument('url', `a file:// URL must be absolute: ${JSON.stringify(url)}`);
  // One store for the whole file system: the key is the absolute path without its leading slash.
  return { kind: 'file', root: '/', key: path.replace(/^\/+/, '') };
}

/** `prefix` joined with `name` by one slash (an empty prefix gives `name`). */
export function joinKey(prefix: string, name: string): string {
  const p = prefix.replace(/\/+$/, '');
  return p.length === 0 ? name : `${p}/${name}`;
}
