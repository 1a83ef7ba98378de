/**
 * `createBackup`: a consistent cut of a (possibly live) event log packed into a tar.gz, with a
 * manifest inside and beside it. Each file is read once; the bytes hashed are the bytes archived.
 */
import { type CipherGCM, createCipheriv, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { fromNative, invalidArgument, TensorVaultError, throwIfAborted } from '../errors';
import { CutChainCheck, LAYOUT, type LogCut, takeCut } from '../eventlog/index';
import { Sha256, sha256 } from '../hash/index';
import {
  atomicWriteFile,
  closeQuietly,
  createLockedTemp,
  fsyncDir,
  ioError,
  makeFolder,
  removeDeadTempsMatching,
  typedIoError,
} from '../io/index';
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
// (typed `Buffer`: inferred, it is `Buffer<ArrayBuffer>`, which TypeScript before 5.7 rejects)
export const ENCRYPTED_MAGIC: Buffer = Buffer.from('TVAEGCM1', 'latin1');

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
  /**
   * The HMAC key of a v2 log (`EventLogOptions.hmacKey`). With it, the chain check at backup also
   * requires the metadata's HMAC and refuses events the authenticated head does not vouch for, so
   * `chain_valid_at_backup` means the log is the key holder's; without it, forged events appended
   * after the head by someone without the key cannot be told apart.
   */
  logKey?: Uint8Array;
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

function stamp(d: Date): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}-${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
}

/** The checked numbers of {@link BackupCreateOptions}. */
function checkOptions(dataDir: string, outDir: string, options: BackupCreateOptions) {
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
  return { level, threads, encKey };
}

/**
 * The archive being written: tar entries → parallel gzip → (AES-256-GCM) → a temp file in the output
 * folder, hashed as written; published with a no-clobber `link()`, or removed on failure.
 */
class ArchiveSink {
  readonly hash = new Sha256();
  bytesOut = 0;
  readonly #gz: ParallelGzip;
  #cipher: CipherGCM | undefined;
  readonly #mtime: number;

  private constructor(
    readonly tmp: string,
    readonly out: fsp.FileHandle,
    level: number,
    threads: number,
    createdAt: Date,
  ) {
    this.#mtime = Math.floor(createdAt.getTime() / 1000);
    this.#gz = new ParallelGzip(level, 1 << 20, threads, new (native().JobControl)(), async (b) =>
      this.#emit(this.#cipher ? this.#cipher.update(b) : b),
    );
  }

  /**
   * A sink writing to a new temp beside `archivePath` (`tempName`'s name, mode 0600), locked as a live
   * writer's temp (`createLockedTemp`) until the archive is published or abandoned.
   */
  static async open(
    archivePath: string,
    o: { level: number; threads: number; encKey?: Uint8Array | undefined; createdAt: Date },
  ) {
    const { fh: out, tmp } = await createLockedTemp(archivePath, 0o600, 'cannot create');
    const sink = new ArchiveSink(tmp, out, o.level, o.threads, o.createdAt);
    if (o.encKey !== undefined) {
      const iv = randomBytes(12);
      sink.#cipher = createCipheriv('aes-256-gcm', o.encKey, iv);
      sink.#cipher.setAAD(ENCRYPTED_MAGIC);
      await sink.#emit(Buffer.concat([ENCRYPTED_MAGIC, iv]));
    }
    await sink.#gz.write(
      tarHeader({ name: `${LAYOUT.dir}/`, size: 0, mtime: sink.#mtime, mode: 0o755, type: 'dir' }),
    );
    return sink;
  }

  async #emit(b: Buffer): Promise<void> {
    if (b.length === 0) return;
    this.hash.update(b);
    this.bytesOut += b.length;
    await this.out.write(b);
  }

  /** One tar entry. */
  async file(name: string, data: Buffer): Promise<void> {
    await this.#gz.write(
      tarHeader({ name, size: data.length, mtime: this.#mtime, mode: 0o644, type: 'file' }),
    );
    await this.#gz.write(data);
    await this.#gz.write(tarPadding(data.length));
  }

  /** End the tar and the gzip, make it durable and publish it at `archivePath` (never over a file). */
  async publish(archivePath: string, outDir: string): Promise<void> {
    await this.#gz.write(tarEnd());
    await this.#gz.end();
    if (this.#cipher !== undefined) {
      await this.#emit(this.#cipher.final());
      await this.#emit(this.#cipher.getAuthTag());
    }
    await this.out.sync();
    await fsp.link(this.tmp, archivePath); // fails if the name exists
    await fsp.rm(this.tmp, { force: true });
    await this.out.close(); // the temp's lock, held until its name is gone
    await fsyncDir(outDir);
  }

  async abort(): Promise<void> {
    this.#gz.cancel();
    await this.out.close().catch(() => {});
    await fsp.rm(this.tmp, { force: true }).catch(() => {});
  }
}

/** The manifest of an archive from its files and the chain check of their bytes. */
function manifestOf(
  o: { createdAt: Date; source: string; archiveName: string; options: BackupCreateOptions },
  cut: LogCut,
  files: ManifestFile[],
  chain: CutChainCheck,
): BackupManifest {
  return {
    version: 1,
    created_at: o.createdAt.toISOString(),
    source_dir: o.source,
    files,
    eventlog_summary: {
      total_events: chain.count,
      total_segments: cut.files.filter((f) => f.kind === 'segment').length,
      first_event_id: chain.first?.id ?? null,
      last_event_id: chain.last?.id ?? null,
      last_current_hash: chain.last?.current_hash ?? null,
      snapshot_exists: cut.files.some((f) => f.kind === 'snapshot'),
    },
    chain_valid_at_backup: chain.problem === null,
    tensorvault: {
      manifest_version: 2,
      archive_name: o.archiveName,
      log_format: cut.format,
      first_seq: chain.first?.seq ?? null,
      last_seq: chain.last?.seq ?? null,
      chain_problem: chain.problem,
      compression: 'gzip',
      encryption: o.options.encryptionKey
        ? { algorithm: 'aes-256-gcm', key_id: o.options.encryptionKeyId ?? null }
        : null,
    },
  };
}

/**
 * The temporaries of a backup create in its output folder (the archive's and the manifest's, named by
 * `tempName`: `.backup-eventlog-STAMP-ID.tar.gz[.enc].PID.RANDOM.tmp`), with the writer's PID.
 */
const BACKUP_TEMP =
  /^\.backup-eventlog-[0-9A-Za-z-]+\.(?:tar\.gz(?:\.enc)?|manifest\.json)\.(?<pid>\d+)\.[0-9a-z]+\.tmp$/;

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
  const { level, threads, encKey } = checkOptions(dataDir, outDir, options);
  const signal = options.signal;
  const checkAbort = (): void => throwIfAborted(signal, 'backup aborted');
  checkAbort();
  const step = options.onStep ?? (() => {});
  const source = resolve(dataDir);
  step(`[1/5] Source: ${source}`);
  const cut = await takeCut(source);
  const segCount = cut.files.filter((f) => f.kind === 'segment').length;
  const hasSnapshot = cut.files.some((f) => f.kind === 'snapshot');
  const bytesTotal = cut.files.reduce((a, f) => a + f.size, 0);
  step(
    `[2/5] Consistent cut: ${cut.format} log, ${segCount} segment(s), snapshot ${hasSnapshot ? 'present' : 'absent'}`,
  );
  let sink: ArchiveSink | undefined;
  let done = false;
  /** The archive once published (removed again when a later step fails: no archive without manifest). */
  let published: string | undefined;
  /** The archive being written and its temporary (named by a write error: not `outDir`). */
  let archive: { path: string; tmp: string } | undefined;
  try {
    // First, before anything is written: a key for a log that has none is refused here
    // (TV_EVENTLOG_HMAC_UNEXPECTED), not archived as a chain that is invalid.
    const chain = new CutChainCheck(cut, options.logKey);
    await makeFolder(outDir, 'an output folder');
    const createdAt = new Date();
    const base = `backup-eventlog-${stamp(createdAt)}-${randomBytes(3).toString('hex')}`;
    const archiveName = `${base}.tar.gz${encKey ? '.enc' : ''}`;
    const archivePath = join(outDir, archiveName);
    const manifestPath = join(outDir, `${base}.manifest.json`);
    // `.NAME.PID.RANDOM.tmp`: a create killed mid-write leaves its partial archive (or manifest) under
    // a name of its own, which no later create would replace; the next create in `outDir` removes
    // those whose writer is dead.
    removeDeadTempsMatching(outDir, BACKUP_TEMP);
    sink = await ArchiveSink.open(archivePath, { level, threads, encKey, createdAt });
    archive = { path: archivePath, tmp: sink.tmp };
    const files: ManifestFile[] = [];
    let bytesDone = 0;
    for (const f of cut.files) {
      checkAbort();
      const data = await cut.read(f);
      const digest = sha256(data).toString('hex');
      if (f.kind === 'segment') {
        // Checked in slices: between two, the event loop turns, progress moves within the segment (its
        // bytes as the check goes) and the signal is honoured.
        const before = bytesDone;
        await chain.segment(f.segment as number, data, digest, async (fraction) => {
          await nextTurn();
          checkAbort();
          options.onProgress?.({ bytesDone: before + Math.floor(f.size * fraction), bytesTotal });
        });
      }
      files.push({ path: f.path, size: data.length, sha256: digest });
      await sink.file(f.path, data);
      bytesDone += f.size;
      options.onProgress?.({ bytesDone, bytesTotal });
    }
    step(`[3/5] Archived and hashed ${files.length} file(s), ${bytesDone} bytes`);
    await chain.finish();
    step(
      chain.problem === null
        ? `[4/5] Chain at backup: valid (${chain.count} events${chain.warnings.map((w) => `; note: ${w}`).join('')})`
        : `[4/5] Chain at backup: INVALID (${chain.problem})`,
    );
    let manifest = manifestOf({ createdAt, source, archiveName, options }, cut, files, chain);
    const inner = options.sign ? signManifest(manifest, options.sign) : manifest;
    await sink.file('manifest.json', Buffer.from(`${JSON.stringify(inner, null, 2)}\n`));
    await sink.publish(archivePath, outDir);
    published = archivePath;
    manifest = {
      ...manifest,
      archive: { name: archiveName, size: sink.bytesOut, sha256: sink.hash.digest('hex') },
    };
    if (options.sign) manifest = signManifest(manifest, options.sign);
    await atomicWriteFile(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
    step(
      `[5/5] Archive ${archivePath} (${sink.bytesOut} bytes, sha256 ${manifest.archive?.sha256}); manifest ${basename(manifestPath)}`,
    );
    done = true;
    return { archivePath, manifestPath, manifest, bytesIn: bytesDone, bytesOut: sink.bytesOut };
  } catch (err) {
    // A full disk, a failed fsync…: a typed error, and nothing left in `outDir` (an archive published
    // before its manifest could be written is removed with the temp file).
    if (published !== undefined) await fsp.rm(published, { force: true }).catch(() => {});
    // A write error of the archive (a stream's has no path, or names the temporary): the archive's,
    // with its temporary in `context.tempPath`, as every writer reports it. Errors reading the log
    // name their own file.
    const e = err as NodeJS.ErrnoException | undefined;
    if (
      archive !== undefined &&
      published === undefined &&
      !(err instanceof TensorVaultError) &&
      typeof e?.code === 'string' &&
      typeof e?.syscall === 'string' &&
      (e.path === undefined || e.path === archive.tmp)
    )
      throw ioError(err, archive.path, undefined, archive.tmp);
    throw typedIoError(err, outDir);
  } finally {
    await closeQuietly(cut);
    if (!done) await sink?.abort();
  }
}
