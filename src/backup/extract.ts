/**
 * Reading backup archives safely: optional AES-256-GCM decryption, gunzip under a byte budget, the
 * strict tar reader, a whitelist of names, and per-file SHA-256. Used by verify (nothing written, or
 * a private temp folder for `--read-data`) and restore (a private staging folder).
 */
import { createDecipheriv } from 'node:crypto';
import { constants, createReadStream, promises as fsp } from 'node:fs';
import { dirname, join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { ErrorCode, invalidArgument, TensorVaultError, throwIfAborted } from '../errors';
import { LAYOUT } from '../eventlog/index';
import { Sha256 } from '../hash/index';
import { closeQuietly, ioError, makeFolder } from '../io/index';
import type { Progress } from '../job';
import { ENCRYPTED_MAGIC } from './create';
import type { BackupManifest, ManifestFile } from './manifest';
import { type TarEntry, TarReader } from './tar';

/** Status of one archived file after a walk. */
export interface EntryCheck {
  path: string;
  status: 'ok' | 'missing' | 'extra' | 'size-mismatch' | 'sha256-mismatch' | 'unchecked';
  expectedSize?: number;
  actualSize?: number;
  expectedSha256?: string;
  actualSha256?: string;
}

/** Options of {@link walkArchive}. */
export interface WalkOptions {
  /** The trusted manifest (sidecar). Without it, names must fit the event-log layout. */
  manifest?: BackupManifest;
  /** Write listed files into this (fresh, private) folder. */
  extractTo?: string;
  /** Throw at a file the manifest does not list (restore) instead of reporting it (verify). */
  rejectExtra?: boolean;
  /** Compute each file's SHA-256 (always on when extracting). */
  hash: boolean;
  /** Key of an encrypted archive. */
  encryptionKey?: Uint8Array;
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  /**
   * Budget of decompressed bytes when there is no manifest (default: {@link DEFAULT_EXPANSION} times
   * the archive's size, at least {@link MIN_BUDGET}).
   */
  maxBytes?: number;
}

/** Result of {@link walkArchive}. */
export interface WalkResult {
  entries: EntryCheck[];
  /** `manifest.json` found inside the archive (bytes), if any. */
  innerManifest?: Buffer;
  /** Files seen, with their size and SHA-256 (when hashed). */
  seen: Map<string, { size: number; sha256?: string }>;
}

const LAYOUT_NAME =
  /^(event-log\/segment-\d{6}\.jsonl?|event-log\/log\.json|event-log-snapshot\.json|event-log-anchor\.json|manifest\.json)$/;
const MAX_INNER_MANIFEST = 16 * 1024 * 1024;
/**
 * Without a manifest, an archive may expand to this many times its own size. Event-log segments
 * compress about 4× (random ids and hashes in every entry); gzip's own limit is about 1,032×, which is
 * what a bomb uses.
 */
export const DEFAULT_EXPANSION = 100;
/** The smallest budget without a manifest, so that tiny archives are never refused. */
export const MIN_BUDGET = 16 * 1024 * 1024;
const ceil512 = (n: number): number => Math.ceil(n / 512) * 512;

/** True when the file starts with the encrypted-archive magic. */
export async function isEncrypted(path: string): Promise<boolean> {
  const fh = await fsp.open(path, 'r').catch((err: unknown) => {
    throw ioError(err, path, 'cannot open archive');
  });
  try {
    const b = Buffer.alloc(ENCRYPTED_MAGIC.length);
    const { bytesRead } = await fh.read(b, 0, b.length, 0);
    return bytesRead === b.length && b.equals(ENCRYPTED_MAGIC);
  } finally {
    await closeQuietly(fh);
  }
}

/**
 * The archive's bytes, decrypted when it is encrypted. `read.bytes` counts the archive file's bytes
 * read so far (for progress: the decompressed size is not known in advance).
 */
async function* decryptedChunks(
  path: string,
  key: Uint8Array | undefined,
  read: { bytes: number },
): AsyncGenerator<Buffer> {
  const st = await fsp.stat(path);
  if (!(await isEncrypted(path))) {
    for await (const c of createReadStream(path, { highWaterMark: 1 << 20 })) {
      read.bytes += (c as Buffer).length;
      yield c as Buffer;
    }
    return;
  }
  if (key === undefined) {
    throw new TensorVaultError(
      ErrorCode.INVALID_ARGUMENT,
      'the archive is encrypted: an encryption key is needed',
      {
        path,
      },
    );
  }
  const head = ENCRYPTED_MAGIC.length + 12;
  if (st.size < head + 16)
    throw new TensorVaultError(ErrorCode.CORRUPT, 'encrypted archive is truncated', { path });
  const fh = await fsp.open(path, 'r');
  const iv = Buffer.alloc(12);
  const tag = Buffer.alloc(16);
  try {
    await fh.read(iv, 0, 12, ENCRYPTED_MAGIC.length);
    await fh.read(tag, 0, 16, st.size - 16);
  } finally {
    await closeQuietly(fh);
  }
  const d = createDecipheriv('aes-256-gcm', key, iv);
  d.setAAD(ENCRYPTED_MAGIC);
  d.setAuthTag(tag);
  read.bytes = head;
  for await (const c of createReadStream(path, { start: head, end: st.size - 17, highWaterMark: 1 << 20 })) {
    read.bytes += (c as Buffer).length;
    yield d.update(c as Buffer);
  }
  read.bytes = st.size;
  try {
    yield d.final();
  } catch {
    throw new TensorVaultError(
      ErrorCode.CHECKSUM_MISMATCH,
      'encrypted archive failed authentication (wrong key or altered)',
      { path },
    );
  }
}

async function* gunzipped(source: AsyncGenerator<Buffer>, path: string): AsyncGenerator<Buffer> {
  const gz = createGunzip({ chunkSize: 1 << 16 });
  const feed = (async () => {
    try {
      for await (const c of source) {
        if (gz.destroyed) break;
        if (!gz.write(c)) {
          // Wait for 'drain' or 'close', then remove both listeners (one of them never fires: left
          // behind, one per wait, they passed the limit of 10 on a multi-MB archive with a warning).
          await new Promise<void>((r) => {
            const done = (): void => {
              gz.off('drain', done);
              gz.off('close', done);
              r();
            };
            gz.on('drain', done);
            gz.on('close', done);
          });
        }
      }
      if (!gz.destroyed) gz.end();
    } catch (err) {
      gz.destroy(err as Error);
    }
  })();
  try {
    for await (const c of gz) yield c as Buffer;
  } catch (err) {
    if (err instanceof TensorVaultError) throw err;
    throw new TensorVaultError(ErrorCode.CORRUPT, `archive is not valid gzip: ${(err as Error).message}`, {
      path,
    });
  } finally {
    gz.destroy();
    await feed;
  }
}

/** How many bytes the archive may expand to, and the largest entry it may hold. */
async function budgetOf(
  archivePath: string,
  o: WalkOptions,
  listed: Map<string, ManifestFile>,
  dirs: Set<string>,
): Promise<{ budget: number; maxEntry: number }> {
  if (o.manifest !== undefined) {
    const sizes = [...listed.values()].map((f) => f.size);
    return {
      budget:
        sizes.reduce((a, n) => a + ceil512(n) + 3 * 512, 0) +
        dirs.size * 1536 +
        ceil512(MAX_INNER_MANIFEST) +
        64 * 1024,
      maxEntry: Math.max(MAX_INNER_MANIFEST, ...sizes),
    };
  }
  const st = await fsp.stat(archivePath).catch((err: unknown) => {
    throw ioError(err, archivePath, 'cannot open archive');
  });
  const budget = o.maxBytes ?? Math.max(MIN_BUDGET, DEFAULT_EXPANSION * st.size);
  return { budget, maxEntry: budget };
}

/** The entry being read. */
interface Current {
  e: TarEntry;
  hash?: Sha256;
  fh?: fsp.FileHandle;
  skip: boolean;
}

/**
 * What one pass over the tar checks, entry by entry: no entry twice, folders and files only where the
 * manifest (or the layout) vouches for them, each file hashed and, when extracting, written with
 * `O_EXCL | O_NOFOLLOW` into the staging folder.
 */
class EntryChecks {
  readonly seen = new Map<string, { size: number; sha256?: string }>();
  readonly entries: EntryCheck[] = [];
  inner: Buffer[] | undefined;
  innerLen = 0;
  cur: Current | undefined;
  readonly #hashing: boolean;

  constructor(
    readonly o: WalkOptions,
    readonly listed: Map<string, ManifestFile>,
    readonly dirs: Set<string>,
  ) {
    this.#hashing = o.hash || o.extractTo !== undefined;
  }

  async onEntry(e: TarEntry): Promise<void> {
    const o = this.o;
    if (this.seen.has(e.name)) {
      throw new TensorVaultError(ErrorCode.UNSAFE_ARCHIVE, `archive lists ${e.name} twice`, { name: e.name });
    }
    if (e.type === 'dir') {
      if (!this.dirs.has(e.name)) {
        throw new TensorVaultError(
          ErrorCode.UNSAFE_ARCHIVE,
          `archive holds an unexpected folder: ${e.name}`,
          {
            name: e.name,
          },
        );
      }
      this.seen.set(e.name, { size: 0 });
      if (o.extractTo !== undefined) {
        // The mode the archive recorded, less the umask (as tar does), never without the owner's rwx;
        // the staging folder around it is private until the log is placed.
        await makeFolder(join(o.extractTo, ...e.name.split('/')), 'a folder', {
          mode: (e.mode & 0o777) | 0o700,
        });
      }
      this.cur = { e, skip: true };
      return;
    }
    if (e.name === 'manifest.json') {
      if (e.size > MAX_INNER_MANIFEST) {
        throw new TensorVaultError(
          ErrorCode.BUDGET_EXCEEDED,
          'manifest.json inside the archive is too large',
        );
      }
      this.inner = [];
      this.cur = { e, skip: true };
      return;
    }
    const want = this.listed.get(e.name);
    if (o.manifest !== undefined ? want === undefined : !LAYOUT_NAME.test(e.name)) {
      // A file nobody vouches for: never written; reported (verify) or fatal (restore).
      if (o.rejectExtra) {
        throw new TensorVaultError(
          ErrorCode.UNSAFE_ARCHIVE,
          `archive holds a file the manifest does not list: ${e.name}`,
          { name: e.name },
        );
      }
      this.entries.push({ path: e.name, status: 'extra', actualSize: e.size });
      this.seen.set(e.name, { size: e.size });
      this.cur = { e, skip: true };
      return;
    }
    const c: Current = { e, skip: false };
    if (this.#hashing) c.hash = new Sha256();
    if (o.extractTo !== undefined) {
      const target = join(o.extractTo, ...e.name.split('/'));
      await makeFolder(dirname(target), 'a folder', { mode: 0o755 });
      // The mode the archive recorded, less the umask (as tar does); never set-id, always owner rw.
      c.fh = await fsp
        .open(
          target,
          constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
          (e.mode & 0o777) | 0o600,
        )
        .catch((err: unknown) => {
          throw ioError(err, target, 'cannot create');
        });
    }
    this.cur = c;
  }

  async onData(chunk: Uint8Array): Promise<void> {
    const c = this.cur as Current;
    if (this.inner !== undefined && c.e.name === 'manifest.json') {
      this.inner.push(Buffer.from(chunk));
      this.innerLen += chunk.length;
      return;
    }
    if (c.skip) return;
    c.hash?.update(chunk);
    if (c.fh !== undefined) await c.fh.write(chunk);
  }

  async onEntryEnd(): Promise<void> {
    const c = this.cur as Current;
    this.cur = undefined;
    if (c.skip || (c.e.name === 'manifest.json' && this.inner !== undefined)) return;
    if (c.fh !== undefined) {
      await c.fh.sync();
      await c.fh.close();
    }
    const sha = c.hash?.digest('hex');
    this.seen.set(c.e.name, { size: c.e.size, ...(sha !== undefined ? { sha256: sha } : {}) });
    const want = this.listed.get(c.e.name);
    if (want === undefined) return;
    const rec: EntryCheck = {
      path: c.e.name,
      status: 'ok',
      expectedSize: want.size,
      actualSize: c.e.size,
      expectedSha256: want.sha256,
    };
    if (sha !== undefined) rec.actualSha256 = sha;
    if (want.size !== c.e.size) rec.status = 'size-mismatch';
    else if (sha === undefined) rec.status = 'unchecked';
    else if (sha !== want.sha256) rec.status = 'sha256-mismatch';
    this.entries.push(rec);
  }
}

/**
 * Stream the archive once, checking everything against the manifest (or the layout whitelist). Throws
 * `TV_UNSAFE_ARCHIVE` or `TV_BUDGET_EXCEEDED` at the first hostile entry; reports missing, extra and
 * mismatching files in `entries`.
 */
export async function walkArchive(archivePath: string, o: WalkOptions): Promise<WalkResult> {
  if (o.maxBytes !== undefined && (!Number.isSafeInteger(o.maxBytes) || o.maxBytes < 1)) {
    throw invalidArgument('maxExpandedBytes', 'maxExpandedBytes must be a positive integer');
  }
  const listed = new Map((o.manifest?.files ?? []).map((f) => [f.path, f]));
  const dirs = new Set<string>();
  for (const p of listed.keys()) {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  dirs.add(LAYOUT.dir);
  const { budget, maxEntry } = await budgetOf(archivePath, o, listed, dirs);
  const checks = new EntryChecks(o, listed, dirs);
  const reader = new TarReader(
    {
      onEntry: (e) => checks.onEntry(e),
      onData: (chunk) => checks.onData(chunk),
      onEntryEnd: () => checks.onEntryEnd(),
    },
    {
      maxEntries: o.manifest !== undefined ? listed.size + dirs.size + 1 : 1_000_000,
      maxEntryBytes: maxEntry,
      maxDepth: 4,
    },
  );
  let total = 0;
  // Progress counts the archive's own bytes read: its size is known, its decompressed size is not.
  const read = { bytes: 0 };
  const archiveSize = (
    await fsp.stat(archivePath).catch((err: unknown) => {
      throw ioError(err, archivePath, 'cannot open archive');
    })
  ).size;
  o.onProgress?.({ bytesDone: 0, bytesTotal: archiveSize });
  try {
    for await (const chunk of gunzipped(decryptedChunks(archivePath, o.encryptionKey, read), archivePath)) {
      throwIfAborted(o.signal, 'aborted');
      total += chunk.length;
      if (total > budget) {
        throw new TensorVaultError(
          ErrorCode.BUDGET_EXCEEDED,
          `archive expands beyond its budget of ${budget} bytes (decompression bomb?)`,
          { path: archivePath, limit: budget },
        );
      }
      await reader.push(chunk);
      o.onProgress?.({ bytesDone: Math.min(read.bytes, archiveSize), bytesTotal: archiveSize });
    }
    reader.end();
    o.onProgress?.({ bytesDone: archiveSize, bytesTotal: archiveSize });
  } finally {
    await checks.cur?.fh?.close().catch(() => {});
  }
  const { entries, seen, inner, innerLen } = checks;
  for (const [p, f] of listed) {
    if (!seen.has(p))
      entries.push({ path: p, status: 'missing', expectedSize: f.size, expectedSha256: f.sha256 });
  }
  const out: WalkResult = { entries, seen };
  if (inner !== undefined) out.innerManifest = Buffer.concat(inner, innerLen);
  return out;
}
