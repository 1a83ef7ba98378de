/**
 * Object stores behind one small interface: {@link S3Store} (AWS SDK for JavaScript v3, any
 * S3-compatible endpoint) and {@link FileStore} (`file://`, for tests and NFS). Every request is counted
 * in {@link StoreMetrics}; every store error becomes a typed {@link TensorVaultError}.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ErrorCode, TensorVaultAbortError, TensorVaultError } from '../errors';
import { fsyncDir, ioError } from '../io/fs';
import { parseRemoteUrl, type RemoteTarget } from './url';

/** Bytes and requests a store has moved (read them to see what a lazy load transferred). */
export interface StoreMetrics {
  /** Requests sent (retries by the client count once). */
  requests: number;
  /** Body bytes received (GET). */
  bytesDown: number;
  /** Body bytes sent (PUT, UploadPart). */
  bytesUp: number;
}

/** Digests of a part already computed by the caller (so that they are not computed twice). */
export interface PartDigests {
  md5: Buffer;
  sha256: Buffer;
}

/** One uploaded part of a multipart upload. */
export interface UploadedPart {
  part: number;
  etag: string;
  size: number;
}

/** Connection options of a remote target (each falls back to the standard environment variables). */
export interface RemoteOptions {
  /** Endpoint URL (default `AWS_ENDPOINT_URL_S3`, then `AWS_ENDPOINT_URL`, else AWS). */
  endpoint?: string;
  /** Region (default `AWS_REGION`, then `AWS_DEFAULT_REGION`, then `us-east-1`). */
  region?: string;
  /** Credentials (default: the SDK's chain: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, profiles, …). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Path-style requests (`endpoint/bucket/key`); default true when an endpoint is set, as self-hosted stores need. */
  forcePathStyle?: boolean;
  /** Attempts per request, retries included, with exponential backoff and jitter (default 5). */
  maxAttempts?: number;
}

/** The operations push, pull, lazy load and verify need from a store. */
export interface Store {
  /** The URL of `key` (for messages and results). */
  url(key: string): string;
  readonly metrics: StoreMetrics;
  /** Size of `key`, or undefined when it does not exist. */
  head(key: string, signal?: AbortSignal): Promise<number | undefined>;
  /** Bytes `[start, end)` of `key` as a stream (the whole object without a range). */
  read(key: string, range?: [number, number], signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>>;
  /** Put a small object in one request, with its SHA-256 for the store to check. */
  put(key: string, data: Uint8Array, signal?: AbortSignal): Promise<void>;
  createUpload(key: string, signal?: AbortSignal): Promise<string>;
  /** Upload part `part` (1-based); resolves with the ETag the store computed. */
  uploadPart(
    key: string,
    id: string,
    part: number,
    data: Uint8Array,
    signal?: AbortSignal,
    digests?: PartDigests,
  ): Promise<string>;
  /** Part `part` copied by the store from bytes `[start, end)` of the object `key` (no transfer); its ETag. */
  uploadPartCopy(
    key: string,
    id: string,
    part: number,
    range: [number, number],
    signal?: AbortSignal,
  ): Promise<string>;
  /** The parts stored so far, or undefined when the upload no longer exists. */
  listParts(key: string, id: string, signal?: AbortSignal): Promise<UploadedPart[] | undefined>;
  complete(key: string, id: string, parts: readonly UploadedPart[], signal?: AbortSignal): Promise<void>;
  abort(key: string, id: string): Promise<void>;
  /** Every key under `prefix` with its size. */
  list(prefix: string, signal?: AbortSignal): Promise<{ key: string; size: number }[]>;
  delete(key: string, signal?: AbortSignal): Promise<void>;
  /** Release connections. */
  close(): void;
}

/** The MD5 ETag of `data` as an S3 store computes it for a part or a single-request object. */
export function md5Hex(data: Uint8Array): string {
  return createHash('md5').update(data).digest('hex');
}

function stripQuotes(etag: string | undefined): string {
  return (etag ?? '').replace(/^"|"$/g, '').toLowerCase();
}

function abortError(signal: AbortSignal | undefined): TensorVaultAbortError {
  return new TensorVaultAbortError('The operation was aborted', signal?.reason);
}

/**
 * Map an SDK or network error to a typed error. Nothing from the request (keys, signatures, the string
 * to sign) goes into the message: only the URL, the HTTP status and the store's error name.
 */
export function storeError(err: unknown, url: string, signal?: AbortSignal): TensorVaultError {
  if (err instanceof TensorVaultError) return err;
  if (signal?.aborted) return abortError(signal);
  const e = err as {
    name?: string;
    code?: string;
    $metadata?: { httpStatusCode?: number; attempts?: number };
    $retryable?: unknown;
  };
  const name = typeof e?.name === 'string' ? e.name : 'Error';
  if (name === 'AbortError') return abortError(signal);
  const status = e?.$metadata?.httpStatusCode;
  const attempts = e?.$metadata?.attempts ?? 1;
  const authNames = [
    'InvalidAccessKeyId',
    'SignatureDoesNotMatch',
    'AccessDenied',
    'InvalidToken',
    'ExpiredToken',
    'CredentialsProviderError',
  ];
  if (status === 401 || status === 403 || authNames.includes(name)) {
    return new TensorVaultError(
      ErrorCode.REMOTE_AUTH,
      `${url}: the store refused the credentials (${name}${status === undefined ? '' : `, HTTP ${status}`})`,
      { url, status: status ?? null, reason: name },
    );
  }
  if (status === 404 || name === 'NoSuchKey' || name === 'NotFound' || name === 'NoSuchBucket') {
    return new TensorVaultError(ErrorCode.REMOTE_NOT_FOUND, `${url}: not found in the store (${name})`, {
      url,
      reason: name,
    });
  }
  if (name === 'NoSuchUpload') {
    return new TensorVaultError(ErrorCode.REMOTE_NOT_FOUND, `${url}: the multipart upload no longer exists`, {
      url,
      reason: name,
    });
  }
  if (name === 'BadDigest' || name === 'InvalidDigest' || name === 'XAmzContentSHA256Mismatch') {
    return new TensorVaultError(
      ErrorCode.REMOTE_DAMAGED,
      `${url}: the store received bytes that do not match their checksum (${name})`,
      { url, reason: 'bad_digest' },
    );
  }
  const netCode = typeof e?.code === 'string' ? e.code : undefined;
  const why = netCode ?? name;
  return new TensorVaultError(
    ErrorCode.REMOTE_UNAVAILABLE,
    `${url}: the store did not answer successfully after ${attempts} attempt${attempts === 1 ? '' : 's'} (${why}${status === undefined ? '' : `, HTTP ${status}`})`,
    { url, attempts, status: status ?? null, reason: why },
    { cause: err },
  );
}

// ---------------------------------------------------------------------------------------------

type S3Module = typeof import('@aws-sdk/client-s3');

/** An S3-compatible store (AWS SDK for JavaScript v3). */
export class S3Store implements Store {
  readonly metrics: StoreMetrics = { requests: 0, bytesDown: 0, bytesUp: 0 };
  readonly bucket: string;
  #sdk: S3Module;
  #client: import('@aws-sdk/client-s3').S3Client;

  constructor(sdk: S3Module, bucket: string, options: RemoteOptions) {
    this.#sdk = sdk;
    this.bucket = bucket;
    const env = process.env;
    const endpoint = options.endpoint ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
    this.#client = new sdk.S3Client({
      ...(endpoint === undefined || endpoint === '' ? {} : { endpoint }),
      region: options.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1',
      forcePathStyle: options.forcePathStyle ?? (endpoint !== undefined && endpoint !== ''),
      maxAttempts: options.maxAttempts ?? 5,
      retryMode: 'standard',
      // The checksums that matter are sent explicitly (SHA-256 per part) and every byte read is checked
      // against the chunk digests, so the SDK's default CRC32 on every request is not added.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
    });
  }

  url(key: string): string {
    return `s3://${this.bucket}/${key}`;
  }

  async #send<T>(key: string, command: object, signal?: AbortSignal): Promise<T> {
    if (signal?.aborted) throw abortError(signal);
    this.metrics.requests += 1;
    try {
      return (await this.#client.send(
        command as Parameters<import('@aws-sdk/client-s3').S3Client['send']>[0],
        signal === undefined ? {} : { abortSignal: signal },
      )) as T;
    } catch (err) {
      throw storeError(err, this.url(key), signal);
    }
  }

  async head(key: string, signal?: AbortSignal): Promise<number | undefined> {
    try {
      const r = await this.#send<{ ContentLength?: number }>(
        key,
        new this.#sdk.HeadObjectCommand({ Bucket: this.bucket, Key: key }),
        signal,
      );
      return r.ContentLength ?? 0;
    } catch (err) {
      if (err instanceof TensorVaultError && err.code === ErrorCode.REMOTE_NOT_FOUND) return undefined;
      throw err;
    }
  }

  async read(
    key: string,
    range?: [number, number],
    signal?: AbortSignal,
  ): Promise<AsyncIterable<Uint8Array>> {
    if (range !== undefined && range[1] <= range[0]) return (async function* () {})();
    const r = await this.#send<{ Body?: AsyncIterable<Uint8Array> }>(
      key,
      new this.#sdk.GetObjectCommand({
        Bucket: this.bucket,
        Key: key,
        ...(range === undefined ? {} : { Range: `bytes=${range[0]}-${range[1] - 1}` }),
      }),
      signal,
    );
    const body = r.Body;
    if (body === undefined) return (async function* () {})();
    const metrics = this.metrics;
    const url = this.url(key);
    return (async function* () {
      try {
        for await (const c of body) {
          metrics.bytesDown += c.byteLength;
          yield c;
        }
      } catch (err) {
        throw storeError(err, url, signal);
      }
    })();
  }

  async put(key: string, data: Uint8Array, signal?: AbortSignal): Promise<void> {
    this.metrics.bytesUp += data.byteLength;
    await this.#send(
      key,
      new this.#sdk.PutObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Body: data,
        ContentLength: data.byteLength,
        ChecksumSHA256: createHash('sha256').update(data).digest('base64'),
        ContentMD5: createHash('md5').update(data).digest('base64'),
      }),
      signal,
    );
  }

  async createUpload(key: string, signal?: AbortSignal): Promise<string> {
    const r = await this.#send<{ UploadId?: string }>(
      key,
      new this.#sdk.CreateMultipartUploadCommand({
        Bucket: this.bucket,
        Key: key,
        ChecksumAlgorithm: 'SHA256',
      }),
      signal,
    );
    if (r.UploadId === undefined) throw storeError(new Error('no UploadId'), this.url(key));
    return r.UploadId;
  }

  async uploadPart(
    key: string,
    id: string,
    part: number,
    data: Uint8Array,
    signal?: AbortSignal,
    digests?: PartDigests,
  ): Promise<string> {
    this.metrics.bytesUp += data.byteLength;
    const r = await this.#send<{ ETag?: string }>(
      key,
      new this.#sdk.UploadPartCommand({
        Bucket: this.bucket,
        Key: key,
        UploadId: id,
        PartNumber: part,
        Body: data,
        ContentLength: data.byteLength,
        ChecksumSHA256: (digests?.sha256 ?? createHash('sha256').update(data).digest()).toString('base64'),
        ContentMD5: (digests?.md5 ?? createHash('md5').update(data).digest()).toString('base64'),
      }),
      signal,
    );
    return stripQuotes(r.ETag);
  }

  async uploadPartCopy(
    key: string,
    id: string,
    part: number,
    range: [number, number],
    signal?: AbortSignal,
  ): Promise<string> {
    const r = await this.#send<{ CopyPartResult?: { ETag?: string } }>(
      key,
      new this.#sdk.UploadPartCopyCommand({
        Bucket: this.bucket,
        Key: key,
        UploadId: id,
        PartNumber: part,
        CopySource: `${this.bucket}/${key.split('/').map(encodeURIComponent).join('/')}`,
        CopySourceRange: `bytes=${range[0]}-${range[1] - 1}`,
      }),
      signal,
    );
    return stripQuotes(r.CopyPartResult?.ETag);
  }

  async listParts(key: string, id: string, signal?: AbortSignal): Promise<UploadedPart[] | undefined> {
    const out: UploadedPart[] = [];
    let marker: string | undefined;
    try {
      for (;;) {
        const r = await this.#send<{
          Parts?: { PartNumber?: number; ETag?: string; Size?: number }[];
          IsTruncated?: boolean;
          NextPartNumberMarker?: string;
        }>(
          key,
          new this.#sdk.ListPartsCommand({
            Bucket: this.bucket,
            Key: key,
            UploadId: id,
            ...(marker === undefined ? {} : { PartNumberMarker: marker }),
          }),
          signal,
        );
        for (const p of r.Parts ?? []) {
          out.push({ part: p.PartNumber ?? 0, etag: stripQuotes(p.ETag), size: p.Size ?? 0 });
        }
        if (r.IsTruncated !== true || r.NextPartNumberMarker === undefined) break;
        marker = r.NextPartNumberMarker;
      }
    } catch (err) {
      if (err instanceof TensorVaultError && err.code === ErrorCode.REMOTE_NOT_FOUND) return undefined;
      throw err;
    }
    return out;
  }

  async complete(
    key: string,
    id: string,
    parts: readonly UploadedPart[],
    signal?: AbortSignal,
  ): Promise<void> {
    await this.#send(
      key,
      new this.#sdk.CompleteMultipartUploadCommand({
        Bucket: this.bucket,
        Key: key,
        UploadId: id,
        MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.part, ETag: `"${p.etag}"` })) },
      }),
      signal,
    );
  }

  async abort(key: string, id: string): Promise<void> {
    await this.#send(
      key,
      new this.#sdk.AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: id }),
    ).catch(() => {});
  }

  async list(prefix: string, signal?: AbortSignal): Promise<{ key: string; size: number }[]> {
    const out: { key: string; size: number }[] = [];
    let token: string | undefined;
    for (;;) {
      const r = await this.#send<{
        Contents?: { Key?: string; Size?: number }[];
        IsTruncated?: boolean;
        NextContinuationToken?: string;
      }>(
        prefix,
        new this.#sdk.ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: prefix,
          ...(token === undefined ? {} : { ContinuationToken: token }),
        }),
        signal,
      );
      for (const o of r.Contents ?? []) if (o.Key !== undefined) out.push({ key: o.Key, size: o.Size ?? 0 });
      if (r.IsTruncated !== true || r.NextContinuationToken === undefined) break;
      token = r.NextContinuationToken;
    }
    return out;
  }

  async delete(key: string, signal?: AbortSignal): Promise<void> {
    await this.#send(key, new this.#sdk.DeleteObjectCommand({ Bucket: this.bucket, Key: key }), signal);
  }

  close(): void {
    this.#client.destroy();
  }
}

// ---------------------------------------------------------------------------------------------

/** Objects as files under a folder (`file://`): the same semantics, for tests and NFS. */
export class FileStore implements Store {
  readonly metrics: StoreMetrics = { requests: 0, bytesDown: 0, bytesUp: 0 };
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  url(key: string): string {
    return `file://${join(this.root, key)}`;
  }

  #path(key: string): string {
    return join(this.root, key);
  }

  #uploadDir(key: string, id: string): string {
    return join(dirname(this.#path(key)), '.tv-uploads', id);
  }

  async #wrap<T>(key: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (signal?.aborted) throw abortError(signal);
    this.metrics.requests += 1;
    try {
      return await fn();
    } catch (err) {
      if (err instanceof TensorVaultError) throw err;
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new TensorVaultError(ErrorCode.REMOTE_NOT_FOUND, `${this.url(key)}: not found`, {
          url: this.url(key),
          reason: 'NoSuchKey',
        });
      }
      throw ioError(err, this.#path(key));
    }
  }

  async head(key: string, signal?: AbortSignal): Promise<number | undefined> {
    try {
      return await this.#wrap(key, async () => (await stat(this.#path(key))).size, signal);
    } catch (err) {
      if (err instanceof TensorVaultError && err.code === ErrorCode.REMOTE_NOT_FOUND) return undefined;
      throw err;
    }
  }

  async read(
    key: string,
    range?: [number, number],
    signal?: AbortSignal,
  ): Promise<AsyncIterable<Uint8Array>> {
    const path = this.#path(key);
    await this.#wrap(key, () => stat(path), signal);
    if (range !== undefined && range[1] <= range[0]) return (async function* () {})();
    const s = createReadStream(path, range === undefined ? {} : { start: range[0], end: range[1] - 1 });
    const metrics = this.metrics;
    return (async function* () {
      for await (const c of s as AsyncIterable<Buffer>) {
        metrics.bytesDown += c.byteLength;
        yield c;
      }
    })();
  }

  async #writeAtomic(path: string, parts: readonly (Uint8Array | string)[]): Promise<void> {
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    const fh = await open(tmp, 'w');
    try {
      for (const p of parts) {
        if (typeof p === 'string') {
          const src = await open(p, 'r');
          try {
            for await (const c of src.createReadStream()) await fh.write(c as Buffer);
          } finally {
            await src.close().catch(() => {});
          }
        } else await fh.write(p);
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    await fsyncDir(dirname(path));
  }

  async put(key: string, data: Uint8Array, signal?: AbortSignal): Promise<void> {
    this.metrics.bytesUp += data.byteLength;
    await this.#wrap(key, () => this.#writeAtomic(this.#path(key), [data]), signal);
  }

  async createUpload(key: string, signal?: AbortSignal): Promise<string> {
    const id = randomBytes(12).toString('hex');
    await this.#wrap(key, () => mkdir(this.#uploadDir(key, id), { recursive: true }), signal);
    return id;
  }

  async uploadPart(
    key: string,
    id: string,
    part: number,
    data: Uint8Array,
    signal?: AbortSignal,
  ): Promise<string> {
    this.metrics.bytesUp += data.byteLength;
    await this.#wrap(
      key,
      async () => {
        await stat(this.#uploadDir(key, id));
        await this.#writeAtomic(join(this.#uploadDir(key, id), String(part)), [data]);
      },
      signal,
    );
    return md5Hex(data);
  }

  async uploadPartCopy(
    key: string,
    id: string,
    part: number,
    range: [number, number],
    signal?: AbortSignal,
  ): Promise<string> {
    return this.#wrap(
      key,
      async () => {
        const fh = await open(this.#path(key), 'r');
        try {
          const buf = Buffer.alloc(range[1] - range[0]);
          const { bytesRead } = await fh.read(buf, 0, buf.byteLength, range[0]);
          await stat(this.#uploadDir(key, id));
          await this.#writeAtomic(join(this.#uploadDir(key, id), String(part)), [buf.subarray(0, bytesRead)]);
          return md5Hex(buf.subarray(0, bytesRead));
        } finally {
          await fh.close();
        }
      },
      signal,
    );
  }

  async listParts(key: string, id: string, signal?: AbortSignal): Promise<UploadedPart[] | undefined> {
    const dir = this.#uploadDir(key, id);
    let names: string[];
    try {
      names = await this.#wrap(key, () => readdir(dir), signal);
    } catch (err) {
      if (err instanceof TensorVaultError && err.code === ErrorCode.REMOTE_NOT_FOUND) return undefined;
      throw err;
    }
    const out: UploadedPart[] = [];
    for (const n of names) {
      if (!/^\d+$/.test(n)) continue;
      const data = await readFile(join(dir, n));
      out.push({ part: Number(n), etag: md5Hex(data), size: data.byteLength });
    }
    return out.sort((a, b) => a.part - b.part);
  }

  async complete(
    key: string,
    id: string,
    parts: readonly UploadedPart[],
    signal?: AbortSignal,
  ): Promise<void> {
    const dir = this.#uploadDir(key, id);
    await this.#wrap(
      key,
      async () => {
        await this.#writeAtomic(
          this.#path(key),
          parts.map((p) => join(dir, String(p.part))),
        );
        await rm(dir, { recursive: true, force: true });
      },
      signal,
    );
  }

  async abort(key: string, id: string): Promise<void> {
    await rm(this.#uploadDir(key, id), { recursive: true, force: true }).catch(() => {});
  }

  async list(prefix: string, signal?: AbortSignal): Promise<{ key: string; size: number }[]> {
    // The folder part of the prefix, listed recursively; keys filtered by the whole prefix.
    const base = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    const out: { key: string; size: number }[] = [];
    const walk = async (rel: string): Promise<void> => {
      let entries: import('node:fs').Dirent[];
      try {
        entries = await readdir(join(this.root, rel), { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const k = rel === '' ? e.name : `${rel}/${e.name}`;
        if (e.name === '.tv-uploads') continue;
        if (e.isDirectory()) {
          if (k.startsWith(prefix) || prefix.startsWith(`${k}/`)) await walk(k);
        } else if (e.isFile() && k.startsWith(prefix)) {
          out.push({ key: k, size: (await stat(join(this.root, k))).size });
        }
      }
    };
    await this.#wrap(prefix, () => walk(base), signal);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string, signal?: AbortSignal): Promise<void> {
    await this.#wrap(key, () => unlink(this.#path(key)).catch(() => {}), signal);
  }

  close(): void {}
}

/** The store of a parsed target and the key inside it. */
export async function openStore(
  target: RemoteTarget | string,
  options: RemoteOptions = {},
): Promise<{ store: Store; key: string }> {
  const t = typeof target === 'string' ? parseRemoteUrl(target) : target;
  if (t.kind === 'file') return { store: new FileStore(t.root), key: t.key };
  const sdk = await import('@aws-sdk/client-s3');
  return { store: new S3Store(sdk, t.bucket, options), key: t.key };
}

/** Read a whole (small) object into memory. */
export async function readAll(store: Store, key: string, signal?: AbortSignal): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of await store.read(key, undefined, signal)) parts.push(c);
  return Buffer.concat(parts);
}
