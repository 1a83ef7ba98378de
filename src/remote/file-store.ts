/** The `file://` store: objects as files under a folder, with the semantics of the S3 store. */
import { randomBytes } from 'node:crypto';
import { type BigIntStats, createReadStream, linkSync, renameSync, statSync } from 'node:fs';
import { open, readdir, readFile, rm, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { abortError, ErrorCode, TensorVaultError } from '../errors';
import { closeQuietly, folderError, fsyncDir, ioError, makeFolder } from '../io/fs';
import { WriterLock } from '../io/lock';
import {
  md5Hex,
  missingAsUndefined,
  type ObjectStat,
  objectChanged,
  objectExists,
  type Store,
  type StoreMetrics,
  type UploadedPart,
  type WriteOptions,
} from './store';

/**
 * The version of an object file: its identity (inode), size and modification time. Every write goes
 * through a new temporary file renamed (or linked) into place, so another write gives another inode;
 * a rename keeps the modification time, so the version read from the temporary file before it is
 * moved is the object's.
 */
function versionOf(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`;
}

/** How long a write waits for another writer of the same key to move its file into place. */
const KEY_LOCK_MS = 30_000;

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
      // A regular file where a folder of the store should be: TV_NOT_A_FILE naming it.
      throw folderError(err, this.#path(key)) ?? ioError(err, this.#path(key));
    }
  }

  head(key: string, signal?: AbortSignal): Promise<number | undefined> {
    return missingAsUndefined(this.#wrap(key, async () => (await stat(this.#path(key))).size, signal));
  }

  stat(key: string, signal?: AbortSignal): Promise<ObjectStat | undefined> {
    return missingAsUndefined(
      this.#wrap(
        key,
        async () => {
          const st = await stat(this.#path(key), { bigint: true });
          return { size: Number(st.size), etag: versionOf(st) };
        },
        signal,
      ),
    );
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
   * Write `parts` (bytes, or the path of a file to copy) to a temporary file and move it to `path`;
   * resolves with the new file's version. With `ifAbsent` the move is a hard link, which the OS refuses
   * atomically when `path` exists (`EEXIST`, also on NFS): then nothing is written and `TV_EXISTS` is
   * thrown. Where the file system has no hard links, a check then a rename (not atomic). With `ifMatch`
   * the file at `path` must be that version, else nothing is written and `TV_FILE_CHANGED` is thrown.
   * The move of an object into place (`write` set) happens under the key's lock (a `flock` on
   * `.tv-uploads/NAME.lock` beside it, which every write of an object takes), so that the comparison
   * of `ifMatch` and the rename are one step for every writer through this store.
   */
  async #writeAtomic(
    path: string,
    parts: readonly (Uint8Array | string)[],
    write?: WriteOptions,
    url = path,
  ): Promise<string> {
    const ifAbsent = write?.ifAbsent === true;
    await makeFolder(dirname(path));
    const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    const fh = await open(tmp, 'w');
    let version: string;
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
      version = versionOf(await fh.stat({ bigint: true }));
    } catch (err) {
      await fh.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      throw err;
    }
    await fh.close();
    // Parts of an upload are not objects: no lock.
    let lock: WriterLock | undefined;
    try {
      if (write !== undefined) {
        const locks = join(dirname(path), '.tv-uploads');
        await makeFolder(locks);
        lock = await WriterLock.acquireAsync(join(locks, `${basename(path)}.lock`), {
          timeoutMs: KEY_LOCK_MS,
        });
      }
      // From here to the rename nothing awaits: the comparison and the move are one step.
      if (write?.ifMatch !== undefined) {
        let now: string | undefined;
        try {
          now = versionOf(statSync(path, { bigint: true }));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
        if (now !== write.ifMatch) throw objectChanged(url);
      }
      if (ifAbsent) {
        try {
          linkSync(tmp, path);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'EEXIST') throw objectExists(url);
          // A file system without hard links (some FUSE, SMB, exFAT mounts): a check, then the rename,
          // which is not atomic for writers outside this store (docs/remote.md).
          if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw err;
          if (statSync(path, { throwIfNoEntry: false }) !== undefined) throw objectExists(url);
          renameSync(tmp, path);
        }
      } else renameSync(tmp, path);
    } finally {
      lock?.release();
      await unlink(tmp).catch(() => {});
    }
    await fsyncDir(dirname(path));
    return version;
  }

  async put(key: string, data: Uint8Array, signal?: AbortSignal, write?: WriteOptions): Promise<string> {
    this.metrics.bytesUp += data.byteLength;
    return this.#wrap(
      key,
      () => this.#writeAtomic(this.#path(key), [data], write ?? {}, this.url(key)),
      signal,
    );
  }

  async createUpload(key: string, signal?: AbortSignal): Promise<string> {
    const id = randomBytes(12).toString('hex');
    await this.#wrap(key, () => makeFolder(this.#uploadDir(key, id)), signal);
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
          await closeQuietly(fh);
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
  ): Promise<string> {
    const dir = this.#uploadDir(key, id);
    return this.#wrap(
      key,
      async () => {
        // Refused (TV_EXISTS, TV_FILE_CHANGED): the upload stays, as an S3 store keeps it after a
        // failed condition.
        const version = await this.#writeAtomic(
          this.#path(key),
          parts.map((p) => join(dir, String(p.part))),
          write ?? {},
          this.url(key),
        );
        await rm(dir, { recursive: true, force: true });
        return version;
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
