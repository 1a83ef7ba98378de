/** The `file://` store: objects as files under a folder, with the semantics of the S3 store. */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ErrorCode, TensorVaultError } from '../errors';
import { fsyncDir, ioError } from '../io/fs';
import {
  abortError,
  md5Hex,
  missingAsUndefined,
  objectExists,
  type Store,
  type StoreMetrics,
  type UploadedPart,
  type WriteOptions,
} from './store';

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

  head(key: string, signal?: AbortSignal): Promise<number | undefined> {
    return missingAsUndefined(this.#wrap(key, async () => (await stat(this.#path(key))).size, signal));
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

  /**
   * Write `parts` (bytes, or the path of a file to copy) to a temporary file and move it to `path`.
   * With `ifAbsent` the move is a hard link, which the OS refuses atomically when `path` exists
   * (`EEXIST`, also on NFS): then nothing is written and `TV_EXISTS` is thrown. Where the file system
   * has no hard links, a check then a rename (not atomic).
   */
  async #writeAtomic(
    path: string,
    parts: readonly (Uint8Array | string)[],
    ifAbsent = false,
    url = path,
  ): Promise<void> {
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
    if (ifAbsent) {
      try {
        await link(tmp, path);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') throw objectExists(url);
        // A file system without hard links (some FUSE, SMB, exFAT mounts): a check, then the rename,
        // which is not atomic (two writers within the same moment may both pass: docs/remote.md).
        if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw err;
        if ((await stat(path).catch(() => undefined)) !== undefined) throw objectExists(url);
        await rename(tmp, path);
      } finally {
        await unlink(tmp).catch(() => {});
      }
    } else await rename(tmp, path);
    await fsyncDir(dirname(path));
  }

  async put(key: string, data: Uint8Array, signal?: AbortSignal, write?: WriteOptions): Promise<void> {
    this.metrics.bytesUp += data.byteLength;
    await this.#wrap(
      key,
      () => this.#writeAtomic(this.#path(key), [data], write?.ifAbsent === true, this.url(key)),
      signal,
    );
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
    const names = await missingAsUndefined(this.#wrap(key, () => readdir(dir), signal));
    if (names === undefined) return undefined;
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
    write?: WriteOptions,
  ): Promise<void> {
    const dir = this.#uploadDir(key, id);
    await this.#wrap(
      key,
      async () => {
        // Refused (TV_EXISTS): the upload stays, as an S3 store keeps it after a failed condition.
        await this.#writeAtomic(
          this.#path(key),
          parts.map((p) => join(dir, String(p.part))),
          write?.ifAbsent === true,
          this.url(key),
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
