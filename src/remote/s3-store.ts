/** The S3-compatible store (AWS SDK for JavaScript v3, loaded only when an `s3://` URL is used). */
import { createHash } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { abortError, ErrorCode, TensorVaultError } from '../errors';
import {
  endpointOf,
  missingAsUndefined,
  type ObjectStat,
  objectChanged,
  type PartDigests,
  type RemoteOptions,
  regionOf,
  type Store,
  type StoreMetrics,
  storeError,
  type UploadedPart,
  type WriteOptions,
} from './store';

/** Wait before retry `attempt` (1-based): up to 100 ms × 2^(attempt-1), at most 5 s, with full jitter. */
async function backoff(attempt: number, signal: AbortSignal | undefined): Promise<void> {
  const ms = Math.random() * Math.min(5000, 100 * 2 ** (attempt - 1));
  try {
    await delay(ms, undefined, signal ? { signal } : {});
  } catch {
    throw abortError(signal);
  }
}

function stripQuotes(etag: string | undefined): string {
  return (etag ?? '').replace(/^"|"$/g, '').toLowerCase();
}

type S3Module = typeof import('@aws-sdk/client-s3');

/** An S3-compatible store (AWS SDK for JavaScript v3). */
export class S3Store implements Store {
  readonly metrics: StoreMetrics = { requests: 0, bytesDown: 0, bytesUp: 0 };
  readonly bucket: string;
  #sdk: S3Module;
  #attempts: number;
  #client: import('@aws-sdk/client-s3').S3Client;

  constructor(sdk: S3Module, bucket: string, options: RemoteOptions) {
    this.#sdk = sdk;
    this.bucket = bucket;
    this.#attempts = options.maxAttempts ?? 5;
    const endpoint = endpointOf(options);
    this.#client = new sdk.S3Client({
      ...(endpoint === undefined || endpoint === '' ? {} : { endpoint }),
      region: regionOf(options) ?? 'us-east-1',
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
    return (await this.stat(key, signal))?.size;
  }

  async stat(key: string, signal?: AbortSignal): Promise<ObjectStat | undefined> {
    const r = await missingAsUndefined(
      this.#send<{ ContentLength?: number; ETag?: string }>(
        key,
        new this.#sdk.HeadObjectCommand({ Bucket: this.bucket, Key: key }),
        signal,
      ),
    );
    return r === undefined ? undefined : { size: r.ContentLength ?? 0, etag: r.ETag ?? '' };
  }

  /**
   * A write that makes an object visible, with its conditions; resolves with the new object's ETag. A
   * write with `ifMatch` refused because the stored object is another one (412; 404: none is stored)
   * or because another conditional write to the key was in flight (409) is `TV_FILE_CHANGED`.
   */
  async #write(
    key: string,
    command: object,
    write: WriteOptions | undefined,
    signal?: AbortSignal,
  ): Promise<string> {
    try {
      return (await this.#send<{ ETag?: string }>(key, command, signal)).ETag ?? '';
    } catch (err) {
      if (write?.ifMatch === undefined || !(err instanceof TensorVaultError)) throw err;
      if (err.code === ErrorCode.EXISTS)
        throw objectChanged(
          this.url(key),
          err.context.reason === 'write_conflict' ? 'write_conflict' : 'object_changed',
        );
      if (err.code === ErrorCode.REMOTE_NOT_FOUND && err.context.reason !== 'NoSuchUpload')
        throw objectChanged(this.url(key));
      throw err;
    }
  }

  /** The conditional headers of `write`. */
  static #conditions(write: WriteOptions | undefined): { IfNoneMatch?: string; IfMatch?: string } {
    return {
      ...(write?.ifAbsent === true ? { IfNoneMatch: '*' } : {}),
      ...(write?.ifMatch === undefined ? {} : { IfMatch: write.ifMatch }),
    };
  }

  #get(
    key: string,
    from: number,
    end: number | undefined,
    signal: AbortSignal | undefined,
  ): Promise<{ Body?: AsyncIterable<Uint8Array> }> {
    const whole = from === 0 && end === undefined;
    return this.#send<{ Body?: AsyncIterable<Uint8Array> }>(
      key,
      new this.#sdk.GetObjectCommand({
        Bucket: this.bucket,
        Key: key,
        ...(whole ? {} : { Range: `bytes=${from}-${end === undefined ? '' : end - 1}` }),
      }),
      signal,
    );
  }

  /**
   * Bytes `[start, end)` of `key`. The SDK retries a request that fails, but not a response body cut
   * off half-way (a connection reset): that is retried here too, with the same attempts and a backoff,
   * by asking for the bytes not yet received (each caller verifies what it reads against its digests).
   */
  async read(
    key: string,
    range?: [number, number],
    signal?: AbortSignal,
  ): Promise<AsyncIterable<Uint8Array>> {
    if (range !== undefined && range[1] <= range[0]) return (async function* () {})();
    const end = range?.[1];
    let pos = range?.[0] ?? 0;
    const first = await this.#get(key, pos, end, signal);
    const metrics = this.metrics;
    const url = this.url(key);
    const attempts = this.#attempts;
    const get = (from: number): Promise<{ Body?: AsyncIterable<Uint8Array> }> =>
      this.#get(key, from, end, signal);
    return (async function* () {
      let body = first.Body;
      for (let attempt = 1; ; attempt++) {
        if (body === undefined) return;
        try {
          for await (const c of body) {
            metrics.bytesDown += c.byteLength;
            pos += c.byteLength;
            yield c;
          }
          return;
        } catch (err) {
          const e = storeError(err, url, signal);
          if (e.code !== ErrorCode.REMOTE_UNAVAILABLE) throw e;
          if (attempt >= attempts) {
            throw new TensorVaultError(
              ErrorCode.REMOTE_UNAVAILABLE,
              `${url}: the response was cut off ${attempt} time${attempt === 1 ? '' : 's'} (${e.context.reason})`,
              { ...e.context, attempts: attempt },
              { cause: err },
            );
          }
        }
        // Exponential backoff with jitter (as the SDK's standard mode), then the rest of the range.
        await backoff(attempt, signal);
        if (end !== undefined && pos >= end) return;
        body = (await get(pos)).Body;
      }
    })();
  }

  async put(key: string, data: Uint8Array, signal?: AbortSignal, write?: WriteOptions): Promise<string> {
    this.metrics.bytesUp += data.byteLength;
    return this.#write(
      key,
      new this.#sdk.PutObjectCommand({
        Bucket: this.bucket,
        Key: key,
        ...S3Store.#conditions(write),
        Body: data,
        ContentLength: data.byteLength,
        ChecksumSHA256: createHash('sha256').update(data).digest('base64'),
        ContentMD5: createHash('md5').update(data).digest('base64'),
      }),
      write,
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

  listParts(key: string, id: string, signal?: AbortSignal): Promise<UploadedPart[] | undefined> {
    return missingAsUndefined(this.#allParts(key, id, signal));
  }

  async #allParts(key: string, id: string, signal?: AbortSignal): Promise<UploadedPart[]> {
    const out: UploadedPart[] = [];
    let marker: string | undefined;
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
      if (r.IsTruncated !== true || r.NextPartNumberMarker === undefined) return out;
      marker = r.NextPartNumberMarker;
    }
  }

  async complete(
    key: string,
    id: string,
    parts: readonly UploadedPart[],
    signal?: AbortSignal,
    write?: WriteOptions,
  ): Promise<string> {
    return this.#write(
      key,
      new this.#sdk.CompleteMultipartUploadCommand({
        Bucket: this.bucket,
        Key: key,
        UploadId: id,
        ...S3Store.#conditions(write),
        MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.part, ETag: `"${p.etag}"` })) },
      }),
      write,
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
