/** A store for a URL: `s3://` (the AWS SDK is imported only then) or `file://`. */
import { FileStore } from './file-store';
import { S3Store } from './s3-store';
import { checkRemoteOptions, type RemoteOptions, type Store } from './store';
import { parseRemoteUrl, type RemoteTarget } from './url';

/** The store of a parsed target and the key inside it. */
export async function openStore(
  target: RemoteTarget | string,
  options: RemoteOptions = {},
): Promise<{ store: Store; key: string }> {
  const t = typeof target === 'string' ? parseRemoteUrl(target) : target;
  checkRemoteOptions(options);
  if (t.kind === 'file') return { store: new FileStore(t.root), key: t.key };
  const sdk = await import('@aws-sdk/client-s3');
  return { store: new S3Store(sdk, t.bucket, options), key: t.key };
}
