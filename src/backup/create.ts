/**
 * `createBackup`: a consistent cut of a (possibly live) event log packed into a tar.gz, with a
 * manifest inside and beside it. Each file is read once; the bytes hashed are the bytes archived.
 */
import { type CipherGCM, createCipheriv, randomBytes } from 'node:crypto';
import { constants, promises as fsp } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { ErrorCode, fromNative, invalidArgument, TensorVaultAbortError, TensorVaultError } from '../errors';
import {
  canonicalJson,
  EntryHashChecker,
  type EventLogEntry,
  entryShapeProblem,
  LAYOUT,
  LEGACY_SEGMENT_RE,
  parseSegment,
  V2_SEGMENT_RE,
} from '../eventlog/index';
import { Sha256, sha256 } from '../hash/index';
import { atomicWriteFile, fsyncDir, ioError } from '../io/index';
import type { JobOptions } from '../job';
import { type NativeJobControl, native } from '../native';
import { bytesOf, checkJobOptions, optionalFunction, optionalString, optionsObject } from '../validate';
import {
  type BackupManifest,
  checkManifestKey,
  type ManifestFile,
  type ManifestKey,
  signManifest,
} from './manifest';
import { tarEnd, tarHeader, tarPadding } from './tar';

/** Magic at the start of an encrypted archive (then a 12-byte IV, the ciphertext, a 16-byte tag). */
export const ENCRYPTED_MAGIC = Buffer.from('TVAEGCM1', 'latin1');

/** Options of {@link createBackup}. */
export interface BackupCreateOptions extends JobOptions {
  /** Sign both manifests (Ed25519 private key, or an HMAC key). */
  sign?: ManifestKey;
  /** Encrypt the archive with AES-256-GCM under this 32-byte key. */
  encryptionKey?: Uint8Array;
  /** Label of the encryption key recorded in the manifest (never the key). */
  encryptionKeyId?: string;
  /**
   * gzip level 1–9 (default 6), compressed by the native core with libdeflate at the level of the same
   * number (libdeflate's levels 1–9 are designed to match zlib's; on event-log JSON it compresses
   * better than zlib at 6 and 9, and faster).
   */
  compressionLevel?: number;
  /**
   * 1 MiB gzip members in flight at once, each compressed on a libuv pool thread (default: available
   * cores + 1, so a core is not left idle while a finished member is written; at most 8). The pool
   * has `UV_THREADPOOL_SIZE` threads (4 unless set), which caps how many run at the same time.
   */
  threads?: number;
  /** Receives the step-by-step summary lines. */
  onStep?: (line: string) => void;
}

/** Result of {@link createBackup}. */
export interface BackupCreateResult {
  /** Path of the archive. */
  archivePath: string;
  /** Path of the sidecar manifest. */
  manifestPath: string;
  /** The sidecar manifest. */
  manifest: BackupManifest;
  /** Bytes of event-log files archived. */
  bytesIn: number;
  /** Size of the archive file. */
  bytesOut: number;
}

interface CutFile {
  path: string;
  abs: string;
  fh?: fsp.FileHandle;
  data?: Buffer;
  size: number;
  kind: 'meta' | 'segment' | 'snapshot' | 'anchor';
  segment?: number;
}

/**
 * gzip in independent members of `blockSize` input bytes, each compressed by the native core
 * (libdeflate) as its own job on the libuv pool, at most `concurrency` at a time, and written in
 * order. Input buffers are referenced, not copied, until their member is compressed: callers must
 * not change a buffer after writing it.
 */
class ParallelGzip {
  #pieces: Buffer[] = [];
  #len = 0;
  readonly #inflight: Promise<Buffer>[] = [];
  #submitted = 0;
  constructor(
    readonly level: number,
    readonly blockSize: number,
    readonly concurrency: number,
    readonly control: NativeJobControl,
    readonly out: (b: Buffer) => Promise<void>,
  ) {}

  async write(b: Buffer): Promise<void> {
    let at = 0;
    while (at < b.length) {
      const take = Math.min(this.blockSize - this.#len, b.length - at);
      this.#pieces.push(at === 0 && take === b.length ? b : b.subarray(at, at + take));
      this.#len += take;
      at += take;
      if (this.#len === this.blockSize) await this.#flush();
    }
  }

  async #flush(): Promise<void> {
    const pieces = this.#pieces;
    const block = pieces.length === 1 ? (pieces[0] as Buffer) : Buffer.concat(pieces, this.#len);
    this.#pieces = [];
    this.#len = 0;
    this.#submitted++;
    let job: Promise<Buffer>;
    try {
      job = native().gzipMembers(block, this.level, this.blockSize, 1, this.control);
    } catch (err) {
      throw fromNative(err);
    }
    // A rejection is handled when the job is awaited in order; this only keeps it from being reported
    // as unhandled while earlier members are still being written.
    job.catch(() => {});
    this.#inflight.push(job);
    if (this.#inflight.length >= this.concurrency) await this.#drainOne();
  }

  async #drainOne(): Promise<void> {
    let member: Buffer;
    try {
      member = await (this.#inflight.shift() as Promise<Buffer>);
    } catch (err) {
      throw fromNative(err);
    }
    await this.out(member);
  }

  async end(): Promise<void> {
    if (this.#len > 0 || this.#submitted === 0) await this.#flush();
    while (this.#inflight.length > 0) await this.#drainOne();
  }

  /** Stop the members still being compressed (after a failure or an abort). */
  cancel(): void {
    this.control.cancel();
  }
}

/** Checks a chain as its segments stream past (used on the exact bytes being archived). */
class ChainWalker {
  problem: string | null = null;
  count = 0;
  first: EventLogEntry | undefined;
  last: EventLogEntry | undefined;
  #prev: string | null;
  #prevSeq: number;
  #unanchored: boolean;
  constructor(
    readonly v2: boolean,
    start: { prevHash: string | null; prevSeq: number; unanchored: boolean },
  ) {
    this.#prev = start.prevHash;
    this.#prevSeq = start.prevSeq;
    this.#unanchored = start.unanchored;
  }

  /** Digests of sealed segments from a checked snapshot: such a segment is checked by its bytes. */
  sealed = new Map<number, { sha256: string; first_seq: number; last_seq: number; last_hash: string }>();

  segment(n: number, data: Buffer, digest: string): void {
    if (this.problem !== null) return;
    const seal = this.sealed.get(n);
    if (this.v2 && seal !== undefined && seal.sha256 === digest && !this.#unanchored) {
      // Same bytes as when the segment was sealed: check only its links, not every event again.
      const nl1 = data.indexOf(0x0a);
      const nl2 = data.indexOf(0x0a, nl1 + 1);
      const lastStart = data.lastIndexOf(0x0a, data.length - 2) + 1;
      try {
        const header = JSON.parse(data.subarray(0, nl1).toString('utf8')) as Record<string, unknown>;
        const first = JSON.parse(data.subarray(nl1 + 1, nl2).toString('utf8')) as EventLogEntry;
        const last = JSON.parse(data.subarray(lastStart, data.length - 1).toString('utf8')) as EventLogEntry;
        if (
          header.segment === n &&
          (header.prev_hash ?? null) === this.#prev &&
          seal.first_seq === this.#prevSeq + 1 &&
          first.seq === seal.first_seq &&
          last.seq === seal.last_seq &&
          last.current_hash === seal.last_hash
        ) {
          this.first ??= first;
          this.last = last;
          this.#prev = seal.last_hash;
          this.#prevSeq = seal.last_seq;
          this.count += seal.last_seq - seal.first_seq + 1;
          return;
        }
      } catch {
        // fall through to the event-by-event check
      }
    }
    const r = parseSegment(data, this.v2 ? 'v2' : 'legacy');
    if (r.problem !== undefined) {
      this.problem = `segment ${n}: ${r.problem}`;
      return;
    }
    if (this.v2 && (r.header?.segment !== n || (r.header?.prev_hash ?? null) !== this.#prev)) {
      this.problem = `segment ${n}: header does not link to the previous segment`;
      return;
    }
    const hasher = new EntryHashChecker(r.entries, this.v2);
    for (let k = 0; k < r.entries.length; k++) {
      const e = r.entries[k] as EventLogEntry;
      const shape = entryShapeProblem(e, this.v2);
      if (shape !== undefined) {
        this.problem = `event ${this.count}: ${shape}`;
        return;
      }
      if (this.#unanchored && this.count === 0) this.#prev = e.previous_hash;
      if (e.previous_hash !== this.#prev) {
        this.problem = `event ${this.count} (${e.id}): previous_hash does not link`;
        return;
      }
      if (this.v2 && e.seq !== this.#prevSeq + 1) {
        this.problem = `event ${this.count} (${e.id}): seq ${e.seq} follows ${this.#prevSeq}`;
        return;
      }
      if (!hasher.matches(k, e.current_hash)) {
        this.problem = `event ${this.count} (${e.id}): current_hash does not match`;
        return;
      }
      this.first ??= e;
      this.last = e;
      this.#prev = e.current_hash;
      this.#prevSeq = e.seq ?? this.#prevSeq + 1;
      this.count++;
    }
  }
}

function stamp(d: Date): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}-${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
}

async function openNoFollow(path: string): Promise<fsp.FileHandle> {
  try {
    return await fsp.open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    throw ioError(err, path, 'cannot open');
  }
}

async function readAll(fh: fsp.FileHandle, size: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(size);
  let at = 0;
  while (at < size) {
    const { bytesRead } = await fh.read(buf, at, size - at, at);
    if (bytesRead === 0) break;
    at += bytesRead;
  }
  return at === size ? buf : buf.subarray(0, at);
}

/** Take the consistent cut: every file opened (or read, when small) before any is archived. */
async function takeCut(dataDir: string): Promise<{ format: 'legacy' | 'v2'; files: CutFile[] }> {
  const dir = join(dataDir, LAYOUT.dir);
  let names: string[];
  try {
    const st = await fsp.lstat(dir);
    if (!st.isDirectory()) throw new Error('not a folder');
    names = await fsp.readdir(dir);
  } catch (err) {
    throw new TensorVaultError(
      ErrorCode.NOT_FOUND,
      `no event-log folder in ${dataDir}`,
      { path: dir },
      { cause: err },
    );
  }
  const format = names.includes(LAYOUT.v2Meta) ? 'v2' : 'legacy';
  for (let attempt = 0; ; attempt++) {
    const files: CutFile[] = [];
    // 1. Small state first (the snapshot is never ahead of the segments read after it).
    const snapPath = join(dataDir, LAYOUT.snapshot);
    const snap = await fsp.readFile(snapPath).catch(() => undefined);
    const metaPath = join(dir, LAYOUT.v2Meta);
    const meta = format === 'v2' ? await fsp.readFile(metaPath) : undefined;
    const anchorPath = join(dataDir, LAYOUT.legacyAnchor);
    const anchor = format === 'legacy' ? await fsp.readFile(anchorPath).catch(() => undefined) : undefined;
    // 2. Segments: list, then open them all (an open handle keeps a file readable even if pruned).
    const re = format === 'v2' ? V2_SEGMENT_RE : LEGACY_SEGMENT_RE;
    const segs = (await fsp.readdir(dir))
      .map((name) => ({ name, m: re.exec(name) }))
      .filter((x) => x.m !== null)
      .map((x) => ({ name: x.name, n: Number(x.m?.[1]) }))
      .sort((a, b) => a.n - b.n);
    if (meta !== undefined)
      files.push({
        path: `${LAYOUT.dir}/${LAYOUT.v2Meta}`,
        abs: metaPath,
        data: meta,
        size: meta.length,
        kind: 'meta',
      });
    for (const s of segs) {
      const abs = join(dir, s.name);
      const fh = await openNoFollow(abs);
      const st = await fh.stat();
      if (!st.isFile()) {
        await fh.close();
        throw new TensorVaultError(ErrorCode.NOT_A_FILE, `not a regular file: ${abs}`, { path: abs });
      }
      files.push({ path: `${LAYOUT.dir}/${s.name}`, abs, fh, size: st.size, kind: 'segment', segment: s.n });
    }
    if (snap !== undefined)
      files.push({ path: LAYOUT.snapshot, abs: snapPath, data: snap, size: snap.length, kind: 'snapshot' });
    if (anchor !== undefined)
      files.push({
        path: LAYOUT.legacyAnchor,
        abs: anchorPath,
        data: anchor,
        size: anchor.length,
        kind: 'anchor',
      });
    // 3. A prune that ran meanwhile moves the v2 anchor: take the cut again.
    if (meta !== undefined && attempt < 5) {
      const again = await fsp.readFile(metaPath).catch(() => undefined);
      if (again === undefined || !again.equals(meta)) {
        for (const f of files) await f.fh?.close();
        continue;
      }
    }
    return { format, files };
  }
}

/**
 * Back up the event log of `dataDir` into `outDir`: `backup-eventlog-YYYYMMDD-HHMMSS-xxxxxx.tar.gz`
 * (`.tar.gz.enc` when encrypted) holding the segments, the snapshot and `manifest.json`, plus the
 * sidecar manifest `…manifest.json` that also records the archive's own size and SHA-256. The writer
 * is never blocked and the source never changed; the live segment is cut at its last complete event.
 */
export async function createBackup(
  dataDir: string,
  outDir: string,
  options: BackupCreateOptions = {},
): Promise<BackupCreateResult> {
  if (typeof dataDir !== 'string' || dataDir === '')
    throw invalidArgument('dataDir', 'dataDir must be a path');
  if (typeof outDir !== 'string' || outDir === '') throw invalidArgument('outDir', 'outDir must be a path');
  optionsObject(options);
  checkJobOptions(options);
  optionalFunction(options.onStep, 'onStep');
  optionalString(options.encryptionKeyId, 'encryptionKeyId', false);
  if (options.sign !== undefined) checkManifestKey(options.sign, 'sign', true);
  const level = options.compressionLevel ?? 6;
  if (!Number.isInteger(level) || level < 1 || level > 9)
    throw invalidArgument('compressionLevel', 'compressionLevel must be 1–9');
  const threads = options.threads ?? Math.min(8, Math.max(2, availableParallelism()) + 1);
  if (!Number.isInteger(threads) || threads < 1 || threads > 64)
    throw invalidArgument('threads', 'threads must be 1–64');
  const encKey = options.encryptionKey;
  if (
    encKey !== undefined &&
    (!(encKey instanceof Uint8Array) || bytesOf(encKey, 'encryptionKey').length !== 32)
  ) {
    throw invalidArgument('encryptionKey', 'encryptionKey must be 32 bytes');
  }
  const signal = options.signal;
  const checkAbort = (): void => {
    if (signal?.aborted) throw new TensorVaultAbortError('backup aborted', signal.reason);
  };
  checkAbort();
  const step = options.onStep ?? (() => {});
  const source = resolve(dataDir);
  step(`[1/5] Source: ${source}`);
  const cut = await takeCut(source);
  const v2 = cut.format === 'v2';
  const segCount = cut.files.filter((f) => f.kind === 'segment').length;
  const hasSnapshot = cut.files.some((f) => f.kind === 'snapshot');
  const bytesTotal = cut.files.reduce((a, f) => a + f.size, 0);
  step(
    `[2/5] Consistent cut: ${cut.format} log, ${segCount} segment(s), snapshot ${hasSnapshot ? 'present' : 'absent'}`,
  );

  await fsp.mkdir(outDir, { recursive: true }).catch((err: unknown) => {
    throw ioError(err, outDir, 'cannot create');
  });
  const createdAt = new Date();
  const base = `backup-eventlog-${stamp(createdAt)}-${randomBytes(3).toString('hex')}`;
  const archiveName = `${base}.tar.gz${encKey ? '.enc' : ''}`;
  const archivePath = join(outDir, archiveName);
  const manifestPath = join(outDir, `${base}.manifest.json`);
  const tmp = join(outDir, `.${archiveName}.${randomBytes(6).toString('hex')}.tmp`);

  // Chain start for the check on the archived bytes.
  let start = { prevHash: null as string | null, prevSeq: 0, unanchored: false };
  const metaFile = cut.files.find((f) => f.kind === 'meta');
  const firstSeg = cut.files.find((f) => f.kind === 'segment');
  if (v2 && metaFile?.data) {
    try {
      const a = JSON.parse(metaFile.data.toString('utf8')).anchor;
      start = { prevHash: a.prev_hash ?? null, prevSeq: a.seq - 1, unanchored: false };
    } catch {
      start.unanchored = true;
    }
  } else if (!v2) {
    const anchorFile = cut.files.find((f) => f.kind === 'anchor');
    if (anchorFile?.data) {
      try {
        start.prevHash = JSON.parse(anchorFile.data.toString('utf8')).first_previous_hash ?? null;
      } catch {
        start.unanchored = true;
      }
    } else if (firstSeg !== undefined && firstSeg.segment !== 1) start.unanchored = true;
  }
  const walker = new ChainWalker(v2, start);
  const snapFile = cut.files.find((f) => f.kind === 'snapshot');
  if (v2 && snapFile?.data) {
    // A snapshot whose own checksum verifies vouches for the sealed segments' digests.
    try {
      const { check, ...rest } = JSON.parse(snapFile.data.toString('utf8')) as Record<string, unknown>;
      const c = check as { alg?: unknown; value?: unknown } | undefined;
      if (c?.alg === 'sha256' && c.value === sha256(canonicalJson(rest)).toString('hex')) {
        for (const r of (rest.sealed as {
          segment: number;
          sha256: string;
          first_seq: number;
          last_seq: number;
          last_hash: string;
        }[]) ?? []) {
          walker.sealed.set(r.segment, r);
        }
      }
    } catch {
      // unusable snapshot: every event is checked
    }
  }

  const out = await fsp
    .open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600)
    .catch((err: unknown) => {
      throw ioError(err, tmp, 'cannot create');
    });
  const archiveHash = new Sha256();
  let bytesOut = 0;
  let bytesDone = 0;
  const emit = async (b: Buffer): Promise<void> => {
    if (b.length === 0) return;
    archiveHash.update(b);
    bytesOut += b.length;
    await out.write(b);
  };
  let cipher: CipherGCM | undefined;
  if (encKey !== undefined) {
    const iv = randomBytes(12);
    cipher = createCipheriv('aes-256-gcm', encKey, iv);
    cipher.setAAD(ENCRYPTED_MAGIC);
    await emit(Buffer.concat([ENCRYPTED_MAGIC, iv]));
  }
  const gz = new ParallelGzip(level, 1 << 20, threads, new (native().JobControl)(), async (b) =>
    emit(cipher ? cipher.update(b) : b),
  );
  const files: ManifestFile[] = [];
  const mtime = Math.floor(createdAt.getTime() / 1000);
  let lastSeq: number | null = null;
  let done = false;
  try {
    await gz.write(tarHeader({ name: `${LAYOUT.dir}/`, size: 0, mtime, mode: 0o755, type: 'dir' }));
    for (const f of cut.files) {
      checkAbort();
      let data = f.data ?? (await readAll(f.fh as fsp.FileHandle, f.size));
      if (v2 && f.kind === 'segment') data = data.subarray(0, data.lastIndexOf(0x0a) + 1); // complete events only
      const digest = sha256(data).toString('hex');
      if (f.kind === 'segment') walker.segment(f.segment as number, data, digest);
      files.push({ path: f.path, size: data.length, sha256: digest });
      await gz.write(tarHeader({ name: f.path, size: data.length, mtime, mode: 0o644, type: 'file' }));
      await gz.write(data);
      await gz.write(tarPadding(data.length));
      bytesDone += f.size;
      options.onProgress?.({ bytesDone, bytesTotal });
    }
    step(`[3/5] Archived and hashed ${files.length} file(s), ${bytesDone} bytes`);
    const chainValid = walker.problem === null;
    lastSeq = walker.last?.seq ?? null;
    step(
      chainValid
        ? `[4/5] Chain at backup: valid (${walker.count} events)`
        : `[4/5] Chain at backup: INVALID (${walker.problem})`,
    );
    let manifest: BackupManifest = {
      version: 1,
      created_at: createdAt.toISOString(),
      source_dir: source,
      files,
      eventlog_summary: {
        total_events: walker.count,
        total_segments: segCount,
        first_event_id: walker.first?.id ?? null,
        last_event_id: walker.last?.id ?? null,
        last_current_hash: walker.last?.current_hash ?? null,
        snapshot_exists: hasSnapshot,
      },
      chain_valid_at_backup: chainValid,
      tensorvault: {
        manifest_version: 2,
        archive_name: archiveName,
        log_format: cut.format,
        first_seq: walker.first?.seq ?? null,
        last_seq: lastSeq,
        chain_problem: walker.problem,
        compression: 'gzip',
        encryption: encKey ? { algorithm: 'aes-256-gcm', key_id: options.encryptionKeyId ?? null } : null,
      },
    };
    const inner = options.sign ? signManifest(manifest, options.sign) : manifest;
    const innerBytes = Buffer.from(`${JSON.stringify(inner, null, 2)}\n`);
    await gz.write(
      tarHeader({ name: 'manifest.json', size: innerBytes.length, mtime, mode: 0o644, type: 'file' }),
    );
    await gz.write(innerBytes);
    await gz.write(tarPadding(innerBytes.length));
    await gz.write(tarEnd());
    await gz.end();
    if (cipher !== undefined) {
      await emit(cipher.final());
      await emit(cipher.getAuthTag());
    }
    await out.sync();
    await out.close();
    // No-clobber publish: link() fails if the name exists.
    await fsp.link(tmp, archivePath);
    await fsp.rm(tmp, { force: true });
    await fsyncDir(outDir);
    manifest = {
      ...manifest,
      archive: { name: archiveName, size: bytesOut, sha256: archiveHash.digest('hex') },
    };
    if (options.sign) manifest = signManifest(manifest, options.sign);
    await atomicWriteFile(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
    step(
      `[5/5] Archive ${archivePath} (${bytesOut} bytes, sha256 ${manifest.archive?.sha256}); manifest ${basename(manifestPath)}`,
    );
    done = true;
    return { archivePath, manifestPath, manifest, bytesIn: bytesDone, bytesOut };
  } finally {
    for (const f of cut.files) await f.fh?.close().catch(() => {});
    if (!done) {
      gz.cancel();
      await out.close().catch(() => {});
      await fsp.rm(tmp, { force: true }).catch(() => {});
    }
  }
}
