/**
 * Loading, verifying and repairing checkpoints of the three layouts; lazy verification per tensor.
 */
import { webcrypto } from 'node:crypto';
import {
  closeSync,
  constants,
  existsSync,
  promises as fsp,
  fstatSync,
  openSync,
  read as readCb,
  readFileSync,
  readSync,
  statSync,
} from 'node:fs';
import {
  basename,
  dirname,
  isAbsolute,
  join,
  relative as relativePath,
  resolve as resolvePath,
} from 'node:path';
import { type EccVerifyResult, repair as eccRepair, verify as eccVerify } from '../ecc/erasure';
import { eccFromName, type RsCodec } from '../ecc/rs255';
import { ErrorCode, invalidArgument, TensorVaultAbortError, TensorVaultError } from '../errors';
import { hashFile } from '../hash/file';
import { sha256 } from '../hash/index';
import { tempName } from '../io/atomic';
import { fsyncDir, ioError } from '../io/fs';
import type { JobOptions } from '../job';
import { type Dtype, isDtype } from '../safetensors/dtype';
import { openSafetensors, type SafetensorsFile, type Tensor, type TensorInfo } from '../safetensors/reader';
import { lockSet, prepareRead, publish } from './commit';
import { CheckpointMismatchError, type CheckpointMismatches, TensorDamagedError } from './errors';
import {
  type CheckpointFiles,
  type CheckpointLayout,
  checkpointFiles,
  equalHex,
  type HmacKey,
  type IntegrityBlock,
  leafAt,
  parseIntegrityBlock,
  parseStoredHash,
  pyfoldsDigest,
  pyfoldsHashMatches,
  type StoredHashKind,
  seal,
  sealMessage,
} from './layout';
import { hashableOf, keyInForce, writeRsParity } from './save';

/** How much of a checkpoint is checked: everything up front, each tensor when first viewed, or nothing. */
export type VerifyMode = 'full' | 'lazy' | 'none';

/** What the caller expects of one tensor (omitted fields are not checked). */
export interface ExpectedTensor {
  dtype?: Dtype;
  shape?: readonly number[];
}

/** Options of {@link loadCheckpoint}. */
export interface LoadCheckpointOptions extends JobOptions {
  /** Expected tensors: name → dtype and shape. Every difference is listed in `TV_CHECKPOINT_MISMATCH`. */
  expect?: Readonly<Record<string, ExpectedTensor>>;
  /** With `expect`: refuse a mismatch (default true); false records it in the report instead. */
  strict?: boolean;
  /** Refuse a checkpoint whose metadata `version` differs (`TV_CHECKPOINT_VERSION`). */
  expectedVersion?: string;
  /** `lazy` (default), `full` or `none` (see {@link VerifyMode}). */
  verify?: VerifyMode;
  /** Repair damage from parity (and re-verify) before returning bytes (default true). */
  repair?: boolean;
  /** Key of a keyed hash (default: `PYFOLDS_CHECKPOINT_HMAC_KEY` when set; `null` ignores it). */
  hmacKey?: HmacKey | null;
  /**
   * Refuse a checkpoint whose hash is not keyed (no downgrade). Default: true when a key is in force
   * (option or environment variable), so a configured key makes a plain `sha256:` file fail.
   */
  requireHmac?: boolean;
}

/** The verification state of a checkpoint. */
export interface CheckpointReport {
  path: string;
  layout: CheckpointLayout;
  verify: VerifyMode;
  /** `intact` (all checked bytes good), `repaired`, `damaged`, `repairable` (verify only) or `unverified`. */
  status: 'intact' | 'repaired' | 'repairable' | 'damaged' | 'unverified';
  /** How the PyFolds hash is stored. */
  hashKind: StoredHashKind;
  /** Whether the hash (and the seal) are keyed and were checked with the key. */
  keyed: boolean;
  /** PyFolds hash over the tensors: `ok`, `mismatch` or `unchecked`. */
  pyfoldsHash: 'ok' | 'mismatch' | 'unchecked';
  /** tensorvault layout: the seal over header, metadata and chunk tree; `none` for the PyFolds layouts. */
  seal: 'ok' | 'none' | 'unchecked';
  /** Tensors whose bytes were verified so far. */
  verifiedTensors: string[];
  /** Tensors found damaged. */
  damagedTensors: string[];
  /** Damaged chunks (tensorvault layout) or rs(N) blocks (pyfolds-ecc) found. */
  damagedChunks: number[];
  /** Chunks or blocks rebuilt from parity. */
  repairedChunks: number[];
  /** Differences from `expect` when `strict: false`. */
  mismatches?: CheckpointMismatches;
}

interface Parsed {
  files: CheckpointFiles;
  layout: CheckpointLayout;
  weights: string;
  metadata: Record<string, unknown>;
  integrityHash: string;
  stored: { kind: StoredHashKind; hex: string };
  block?: IntegrityBlock;
  rs?: { codec: RsCodec; eccLen: number; path: string };
  tvecc?: string;
}

function invalid(path: string, reason: string, message: string): TensorVaultError {
  return new TensorVaultError(ErrorCode.CHECKPOINT_INVALID, `${path}: ${message}`, { path, reason });
}

function readJson(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw ioError(err, path, 'cannot read');
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw invalid(path, 'json', 'sidecar is not valid JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw invalid(path, 'json', 'sidecar is not a JSON object');
  return v as Record<string, unknown>;
}

/** Detect the layout at `path` and parse its sidecar (after recovering an interrupted save). */
function parseCheckpoint(path: string): Parsed {
  const files = checkpointFiles(path);
  const at = prepareRead(files);
  const metaPath = at(files.meta);
  const jsonPath = at(files.json);
  let doc: Record<string, unknown>;
  let layout: CheckpointLayout;
  let weights = at(files.weights);
  if (existsSync(metaPath)) {
    doc = readJson(metaPath);
    layout = 'tensorvault' in doc ? 'tensorvault' : 'pyfolds';
  } else if (
    existsSync(jsonPath) &&
    readJson(jsonPath).format === 'safetensors' &&
    'tensor_file' in readJson(jsonPath)
  ) {
    doc = readJson(jsonPath);
    layout = 'pyfolds-ecc';
    const tf = doc.tensor_file;
    if (typeof tf !== 'string' || tf.length === 0 || /[/\\]/.test(tf) || tf === '.' || tf === '..') {
      throw invalid(jsonPath, 'tensor_file', 'tensor_file must be a file name in the same folder');
    }
    weights = at(join(dirname(files.weights), tf));
  } else if (existsSync(weights)) {
    throw invalid(
      path,
      'no_sidecar',
      `no checkpoint sidecar (${basename(files.meta)} or ${basename(files.json)})`,
    );
  } else {
    throw new TensorVaultError(ErrorCode.NOT_FOUND, `${path}: no such checkpoint`, { path });
  }
  if (doc.format !== undefined && doc.format !== 'safetensors') {
    throw invalid(path, 'format', `unsupported format ${JSON.stringify(doc.format)}`);
  }
  const metadata = doc.metadata ?? {};
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) {
    throw invalid(path, 'metadata', 'metadata is not an object');
  }
  const stored = parseStoredHash(doc.integrity_hash, path);
  const parsed: Parsed = {
    files,
    layout,
    weights,
    metadata: metadata as Record<string, unknown>,
    integrityHash: doc.integrity_hash as string,
    stored,
  };
  if (layout === 'tensorvault') {
    parsed.block = parseIntegrityBlock(doc.tensorvault, metaPath);
    if (parsed.block.ecc !== null) parsed.tvecc = at(join(dirname(files.weights), parsed.block.ecc.file));
  }
  if (layout === 'pyfolds-ecc') {
    const algo = doc.ecc_algo ?? 'none';
    if (typeof algo !== 'string') throw invalid(path, 'ecc_algo', 'ecc_algo is not a string');
    const codec = eccFromName(algo);
    const eccLen = doc.ecc_len ?? 0;
    if (typeof eccLen !== 'number' || !Number.isSafeInteger(eccLen) || eccLen < 0) {
      throw invalid(path, 'ecc_len', 'ecc_len is not a non-negative integer');
    }
    if (codec !== null && eccLen > 0) parsed.rs = { codec, eccLen, path: at(files.rsEcc) };
  }
  return parsed;
}

function shapeText(s: readonly number[]): string {
  return `[${s.join(',')}]`;
}

/** Every difference between the file's tensors and `expect`. */
function compareExpect(
  infos: readonly TensorInfo[],
  expect: Readonly<Record<string, ExpectedTensor>>,
): CheckpointMismatches {
  const have = new Map(infos.map((t) => [t.name, t]));
  const m: CheckpointMismatches = { missing: [], unexpected: [], wrongShape: [], wrongDtype: [] };
  for (const [name, want] of Object.entries(expect)) {
    const t = have.get(name);
    if (t === undefined) {
      m.missing.push(name);
      continue;
    }
    if (want.shape !== undefined && shapeText(want.shape) !== shapeText(t.shape)) {
      m.wrongShape.push({ name, expected: shapeText(want.shape), actual: shapeText(t.shape) });
    }
    if (want.dtype !== undefined && want.dtype !== t.dtype)
      m.wrongDtype.push({ name, expected: want.dtype, actual: t.dtype });
  }
  for (const name of have.keys()) if (!(name in expect)) m.unexpected.push(name);
  return m;
}

function hasMismatch(m: CheckpointMismatches): boolean {
  return m.missing.length + m.unexpected.length + m.wrongShape.length + m.wrongDtype.length > 0;
}

/** `fs.read` on the libuv pool, resolving with the bytes read. */
function readAsync(
  fd: number,
  buf: Buffer,
  offset: number,
  length: number,
  position: number,
): Promise<number> {
  return new Promise((resolve, reject) => {
    readCb(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

/** SHA-256 of the first `length` bytes of `path` and its size (read on this thread: a header is small). */
async function headerSha(path: string, length: number): Promise<{ hex: string; size: number }> {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw ioError(err, path, 'cannot open');
  }
  try {
    const size = statSync(path).size;
    const buf = Buffer.alloc(Math.min(length, size));
    const got =
      length > 1024 * 1024 ? await readAsync(fd, buf, 0, buf.length, 0) : readSync(fd, buf, 0, buf.length, 0);
    return { hex: sha256(buf.subarray(0, got)).toString('hex'), size };
  } finally {
    closeSync(fd);
  }
}

/** Chunk indices `[first, last)` covering file bytes `[start, end)`. */
function chunkSpan(start: number, end: number, chunk: number): [number, number] {
  if (end <= start) return [0, 0];
  return [Math.floor(start / chunk), Math.ceil(end / chunk)];
}

/** Result of a repair of a pyfolds-ecc weights file from its rs(N) stream. */
interface RsRepair {
  badBlocks: number[];
  uncorrectable: number[];
  rewritten: boolean;
}

/**
 * Check (and with `write`, repair) the weights against their rs(N) parity stream, in block-aligned
 * pieces. A repaired copy is checked against the PyFolds hash before it replaces the weights.
 */
async function rsCheck(
  p: Parsed,
  key: HmacKey | undefined,
  write: boolean,
  options: JobOptions,
): Promise<RsRepair> {
  const rs = p.rs as NonNullable<Parsed['rs']>;
  const codec = rs.codec;
  const per = codec.blockDataLength;
  const blocksPerPiece = Math.floor((32 * 1024 * 1024) / per);
  const piece = blocksPerPiece * per;
  const fh = await fsp.open(p.weights, 'r');
  const ph = await fsp.open(rs.path, 'r');
  const badBlocks: number[] = [];
  const uncorrectable: number[] = [];
  const fixed = new Map<number, Buffer>();
  let size: number;
  let paritySize: number;
  try {
    size = (await fh.stat()).size;
    paritySize = (await ph.stat()).size;
    if (paritySize !== codec.eccLength(size) || rs.eccLen !== paritySize) {
      throw new TensorVaultError(
        ErrorCode.ECC_PARITY_LENGTH,
        `${rs.path}: parity length ${paritySize} does not fit ${size} bytes of weights (ecc_len ${rs.eccLen})`,
        {
          path: rs.path,
          expected: codec.eccLength(size),
          actual: paritySize,
        },
      );
    }
    const buf = Buffer.allocUnsafe(Math.min(piece, Math.max(1, size)));
    const pbuf = Buffer.allocUnsafe(blocksPerPiece * codec.parity);
    for (let at = 0, k = 0; at < size; at += piece, k++) {
      if (options.signal?.aborted)
        throw new TensorVaultAbortError('The operation was aborted', options.signal.reason);
      const len = Math.min(piece, size - at);
      const plen = codec.eccLength(len);
      await fh.read(buf, 0, len, at);
      await ph.read(pbuf, 0, plen, (at / per) * codec.parity);
      const data = buf.subarray(0, len);
      const par = pbuf.subarray(0, plen);
      const bad = await codec.verify(data, par);
      if (bad.length === 0) continue;
      const first = k * blocksPerPiece;
      for (const b of bad) badBlocks.push(first + b);
      try {
        const r = await codec.decode(data, par);
        if (!r.data.equals(data)) fixed.set(at, r.data);
      } catch (err) {
        if (!(err instanceof TensorVaultError) || err.code !== ErrorCode.ECC_UNCORRECTABLE) throw err;
        const blk = typeof err.context.block === 'number' ? err.context.block : 0;
        uncorrectable.push(first + blk);
      }
      options.onProgress?.({ bytesDone: at + len, bytesTotal: size });
    }
  } finally {
    await fh.close();
    await ph.close();
  }
  if (!write || badBlocks.length === 0 || uncorrectable.length > 0)
    return { badBlocks, uncorrectable, rewritten: false };
  let rewritten = false;
  if (fixed.size > 0) {
    const tmp = tempName(p.weights);
    try {
      await fsp.copyFile(p.weights, tmp, constants.COPYFILE_EXCL);
      const out = await fsp.open(tmp, 'r+');
      try {
        for (const [at, data] of fixed) await out.write(data, 0, data.length, at);
        await out.sync();
      } finally {
        await out.close();
      }
      // A mis-correction must not replace the weights: check the PyFolds hash on the repaired copy.
      const f = await openSafetensors(tmp);
      let digest: string;
      try {
        digest = await pyfoldsDigest(hashableOf(f));
      } finally {
        f.close();
      }
      if (!pyfoldsHashMatches(p.stored, digest, key)) {
        throw new TensorVaultError(
          ErrorCode.ECC_REPAIR_FAILED,
          `${p.weights}: the rs(N) repair does not match the integrity hash (mis-correction); nothing was replaced`,
          {
            path: p.weights,
          },
        );
      }
      await fsp.rename(tmp, p.weights);
      await fsyncDir(dirname(p.weights));
      rewritten = true;
    } finally {
      await fsp.rm(tmp, { force: true }).catch(() => {});
    }
  }
  // Damaged parity (or parity of repaired data): rewrite the stream from the good data.
  const tmpEcc = tempName(rs.path);
  try {
    await writeRsParity(p.weights, tmpEcc, codec, {});
    await fsp.rename(tmpEcc, rs.path);
    await fsyncDir(dirname(rs.path));
  } finally {
    await fsp.rm(tmpEcc, { force: true }).catch(() => {});
  }
  return { badBlocks, uncorrectable, rewritten };
}

/**
 * Open the weights twice: a descriptor (for the chunk reads of lazy verification) and the mapping,
 * and make sure both are the same file (not replaced in between).
 */
async function openPair(path: string, signal?: AbortSignal): Promise<{ file: SafetensorsFile; fd: number }> {
  for (let attempt = 0; ; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      throw ioError(err, path, 'cannot open');
    }
    let file: SafetensorsFile;
    try {
      file = await openSafetensors(path, signal ? { signal } : {});
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    const a = fstatSync(fd);
    let same = false;
    try {
      const b = statSync(path);
      same = a.ino === b.ino && a.dev === b.dev;
    } catch {
      same = false;
    }
    if (same) return { file, fd };
    file.close();
    closeSync(fd);
    if (attempt >= 2) {
      throw new TensorVaultError(ErrorCode.FILE_CHANGED, `${path} was replaced while it was opened`, {
        path,
      });
    }
  }
}

/** A path that names the open descriptor's file even if the path was replaced since (Linux). */
function fdPath(fd: number, path: string): string {
  return process.platform === 'linux' ? `/proc/self/fd/${fd}` : path;
}

/**
 * A loaded checkpoint: metadata, version, verified tensor views and the verification report. Views are
 * zero-copy windows on the mapped weights (see {@link SafetensorsFile}); {@link Checkpoint.tensor}
 * checks the bytes first according to the verify mode.
 */
export class Checkpoint {
  /** The weights file. */
  readonly path: string;
  /** The layout detected. */
  readonly layout: CheckpointLayout;
  /** The checkpoint's metadata (from its sidecar). */
  readonly metadata: Readonly<Record<string, unknown>>;
  /** Metadata `version` as a string (or undefined). */
  readonly version: string | undefined;
  /** The verification state (updated as tensors are verified). */
  readonly report: CheckpointReport;
  #p: Parsed;
  #file: SafetensorsFile;
  #key: HmacKey | undefined;
  #repair: boolean;
  #verifiedChunks = new Set<number>();
  #allVerified = false;
  #queue: Promise<unknown> = Promise.resolve();
  #fd: number | undefined;

  /** @internal Use {@link loadCheckpoint}. */
  constructor(
    p: Parsed,
    file: SafetensorsFile,
    fd: number,
    report: CheckpointReport,
    key: HmacKey | undefined,
    repair: boolean,
  ) {
    this.#fd = fd;
    this.path = p.files.weights;
    this.layout = p.layout;
    this.metadata = p.metadata;
    const v = p.metadata.version;
    this.version = typeof v === 'string' ? v : v === undefined ? undefined : String(v);
    this.report = report;
    this.#p = p;
    this.#file = file;
    this.#key = key;
    this.#repair = repair;
    if (report.verify === 'full' && report.status !== 'damaged') this.#allVerified = true;
  }

  /** Tensor names in file order. */
  get names(): readonly string[] {
    return this.#file.names;
  }

  /** Dtype, shape, size and offset of tensor `name`. */
  info(name: string): TensorInfo {
    return this.#file.info(name);
  }

  /**
   * Tensor `name` as a zero-copy typed view, after its bytes were checked (verify `lazy`: its chunks
   * against their digests, the first time it is viewed; PyFolds layouts: the whole hash on the first
   * view). Damage is repaired from parity when the checkpoint has some and `repair` is on; otherwise
   * rejects with {@link TensorDamagedError} (`TV_CHECKPOINT_TENSOR_DAMAGED`) naming the tensor and chunks.
   */
  async tensor(name: string): Promise<Tensor> {
    const info = this.#file.info(name);
    if (this.report.verify !== 'none' && !this.#allVerified) {
      const run = this.#queue.then(() => this.#ensure(info));
      this.#queue = run.catch(() => {});
      await run;
    }
    return this.#file.tensor(name);
  }

  /** Every tensor, verified as {@link Checkpoint.tensor} does, by name. */
  async tensors(): Promise<Map<string, Tensor>> {
    if (
      this.report.verify === 'lazy' &&
      !this.#allVerified &&
      this.#p.block !== undefined &&
      this.#fd !== undefined
    ) {
      // All of them: hash the whole file's chunks at once (all cores), then only damage is handled
      // per tensor below.
      const block = this.#p.block;
      const fd = this.#fd;
      const run = this.#queue.then(async () => {
        const bad = new Set(await treeDamage(this.#p, block, {}, fdPath(fd, this.#p.weights)));
        const n = Math.ceil(block.file_length / block.chunk_size);
        for (let i = 0; i < n; i++) if (!bad.has(i)) this.#verifiedChunks.add(i);
      });
      this.#queue = run.catch(() => {});
      await run;
    }
    const out = new Map<string, Tensor>();
    for (const n of this.names) out.set(n, await this.tensor(n));
    return out;
  }

  /** Release the mapping (views handed out stay valid until collected). */
  close(): void {
    this.#file.close();
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }

  async #ensure(info: TensorInfo): Promise<void> {
    const t0 = performance.now();
    if (this.#p.layout !== 'tensorvault') {
      await this.#verifyWhole(info.name);
      return;
    }
    const block = this.#p.block as IntegrityBlock;
    let bad = await this.#checkChunks(info);
    if (bad.length > 0) {
      this.#damaged(info.name, bad);
      if (!this.#repair || this.#p.tvecc === undefined) {
        const why = this.#p.tvecc === undefined ? 'the checkpoint has no parity' : 'repair is off';
        this.#fail(info.name, bad, why);
      }
      await this.#repairTvecc(info.name, bad);
      bad = await this.#checkChunks(info);
      if (bad.length > 0) this.#fail(info.name, bad, 'bytes still differ after repair');
    }
    if (!this.report.verifiedTensors.includes(info.name)) this.report.verifiedTensors.push(info.name);
    if (
      this.report.status === 'unverified' &&
      this.#verifiedChunks.size === Math.ceil(block.file_length / block.chunk_size)
    ) {
      this.report.status = 'intact'; // every byte of the file has been checked
    }
    publish({
      event: 'verified',
      path: this.path,
      tensor: info.name,
      bytes: info.byteLength,
      chunks: chunkSpan(info.fileOffset, info.fileOffset + info.byteLength, block.chunk_size),
      ms: performance.now() - t0,
    });
  }

  #damaged(tensor: string, chunks: number[]): void {
    for (const c of chunks) if (!this.report.damagedChunks.includes(c)) this.report.damagedChunks.push(c);
    if (!this.report.damagedTensors.includes(tensor)) this.report.damagedTensors.push(tensor);
    publish({ event: 'damaged', path: this.path, tensor, chunks });
  }

  #fail(tensor: string, chunks: number[], why: string): never {
    this.report.status = 'damaged';
    const err = new TensorDamagedError(this.path, tensor, chunks, why);
    publish({ event: 'failed', op: 'load', path: this.path, tensor, chunks, code: err.code });
    throw err;
  }

  /** The tensor's chunks not yet verified that do not match their leaves. */
  async #checkChunks(info: TensorInfo): Promise<number[]> {
    const block = this.#p.block as IntegrityBlock;
    const cs = block.chunk_size;
    const [first, last] = chunkSpan(info.fileOffset, info.fileOffset + info.byteLength, cs);
    const todo: number[] = [];
    for (let c = first; c < last; c++) if (!this.#verifiedChunks.has(c)) todo.push(c);
    if (todo.length === 0) return [];
    // The chunks are read with pread from the mapped file's own descriptor: the same page-cache pages
    // the views map (this process never writes to the mapping before a view is handed out), read in
    // one call per chunk instead of a view per overlapping tensor.
    if (this.#fd === undefined) this.#fd = openSync(this.#p.weights, 'r');
    const fd = this.#fd;
    // One chunk (≤ 1 MiB, from the page cache in the common case) is read and hashed on this thread:
    // a pool round trip costs more than the work. Several are read and hashed on the libuv pool.
    const readChunk = async (c: number, sync: boolean): Promise<Buffer | null> => {
      const start = c * cs;
      const len = Math.min(block.file_length, start + cs) - start;
      const buf = Buffer.allocUnsafe(len);
      const got = sync ? readSync(fd, buf, 0, len, start) : await readAsync(fd, buf, 0, len, start);
      return got === len ? buf : null;
    };
    const digestOf = async (c: number, sync: boolean): Promise<string> => {
      const b = await readChunk(c, sync);
      if (b === null) return '';
      // One chunk (≤ 1 MiB) is hashed here; several go to the libuv pool in parallel.
      return sync
        ? sha256(b).toString('hex')
        : Buffer.from(await webcrypto.subtle.digest('SHA-256', b)).toString('hex');
    };
    const bad: number[] = [];
    const PARALLEL = 8;
    for (let i = 0; i < todo.length; i += PARALLEL) {
      const batch = todo.slice(i, i + PARALLEL);
      const digests = await Promise.all(batch.map((c) => digestOf(c, todo.length === 1)));
      batch.forEach((c, j) => {
        if (equalHex(digests[j] as string, leafAt(block, c))) this.#verifiedChunks.add(c);
        else bad.push(c);
      });
    }
    return bad;
  }

  async #repairTvecc(tensor: string, chunks: number[]): Promise<void> {
    const t0 = performance.now();
    try {
      const ino = this.#fd === undefined ? undefined : fstatSync(this.#fd).ino;
      const sidecar = this.#p.tvecc as string;
      // force: the sealed integrity block already proved these bytes are damage, not an edit after the
      // save, so rolling back to the protected bytes is right even when the sidecar's hints call it stale.
      const r = await underLock(this.#p, ino, () => eccRepair(this.#p.weights, { sidecar, force: true }));
      for (const c of chunks) if (!this.report.repairedChunks.includes(c)) this.report.repairedChunks.push(c);
      publish({
        event: 'repaired',
        path: this.path,
        tensor,
        chunks,
        eccChunks: r.repairedChunks,
        ms: performance.now() - t0,
      });
    } catch (err) {
      if (
        err instanceof TensorVaultError &&
        err.code !== ErrorCode.ABORTED &&
        err.code !== ErrorCode.INTERNAL
      ) {
        this.#fail(tensor, chunks, `parity cannot repair it (${err.code})`);
      }
      throw err;
    }
    // The repaired file is a new inode: map it again and verify from scratch.
    this.#file.close();
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
    const pair = await openPair(this.#p.weights);
    this.#file = pair.file;
    this.#fd = pair.fd;
    this.#verifiedChunks.clear();
    this.report.status = 'repaired';
  }

  async #verifyWhole(tensor: string): Promise<void> {
    const t0 = performance.now();
    const ino = this.#fd === undefined ? undefined : fstatSync(this.#fd).ino;
    const r = await verifyWhole(this.#p, this.#file, this.#key, this.#repair, {}, ino);
    if (r.file !== this.#file && this.#fd !== undefined) {
      closeSync(this.#fd);
      this.#fd = openSync(this.#p.weights, 'r');
    }
    if (r.file !== this.#file) this.#file = r.file;
    mergeReport(this.report, r.report);
    if (r.report.status === 'damaged') {
      this.#fail(tensor, r.report.damagedChunks ?? [], r.why ?? 'the integrity hash does not match');
    }
    this.#allVerified = true;
    this.report.verifiedTensors = [...this.#file.names];
    publish({ event: 'verified', path: this.path, tensor: null, bytes: 0, ms: performance.now() - t0 });
  }
}

/**
 * Merge a later check's findings into a report. Chunk and tensor lists accumulate (a repair at open
 * stays listed after the full check that follows finds everything intact), and a `repaired` status
 * is not downgraded to `intact`.
 */
function mergeReport(into: CheckpointReport, from: Partial<CheckpointReport>): void {
  const repairedBefore = into.status === 'repaired';
  const union = (a: readonly number[], b: readonly number[] | undefined) => [
    ...new Set([...a, ...(b ?? [])]),
  ];
  const damagedChunks = union(into.damagedChunks, from.damagedChunks);
  const repairedChunks = union(into.repairedChunks, from.repairedChunks);
  Object.assign(into, from, { damagedChunks, repairedChunks });
  if (repairedBefore && into.status === 'intact') into.status = 'repaired';
}

/**
 * Run a repair (which replaces files) under the set's writer lock, after checking that the weights on
 * disk are still the file that was verified (`ino`): a newer save may have replaced them meanwhile, and
 * a repaired old file must never be renamed over a newer set.
 */
async function underLock<T>(p: Parsed, ino: number | undefined, fn: () => Promise<T>): Promise<T> {
  const lock = lockSet(p.files, 30_000);
  try {
    if (ino !== undefined) {
      let now: number | undefined;
      try {
        now = statSync(p.weights).ino;
      } catch {
        now = undefined;
      }
      if (now !== ino) {
        throw new TensorVaultError(
          ErrorCode.FILE_CHANGED,
          `${p.files.weights} was replaced (by a newer save?) since it was opened; not repaired`,
          { path: p.files.weights },
        );
      }
    }
    return await fn();
  } finally {
    lock.release();
  }
}

/**
 * Full verification of an open checkpoint (every layout): the chunk tree (tensorvault) or the rs(N)
 * blocks (pyfolds-ecc), then the PyFolds hash; with `repair`, damage is repaired from parity and the
 * file re-opened and re-checked. Never throws for damage: the report says `damaged` (with `why`).
 */
async function verifyWhole(
  p: Parsed,
  file: SafetensorsFile,
  key: HmacKey | undefined,
  repair: boolean,
  options: JobOptions,
  ino?: number,
): Promise<{ file: SafetensorsFile; report: Partial<CheckpointReport>; why?: string }> {
  const report: Partial<CheckpointReport> = { damagedChunks: [], repairedChunks: [], damagedTensors: [] };
  let status: CheckpointReport['status'] = 'intact';
  let parityDamaged = false;
  let f = file;
  if (p.layout === 'tensorvault') {
    const block = p.block as IntegrityBlock;
    let bad = await treeDamage(p, block, options);
    if (bad.length > 0) {
      report.damagedChunks = bad;
      report.damagedTensors = tensorsIn(f, bad, block.chunk_size);
      publish({ event: 'damaged', path: p.files.weights, chunks: bad, tensors: report.damagedTensors });
      if (!repair || p.tvecc === undefined) {
        return {
          file: f,
          report: { ...report, status: 'damaged' },
          why: p.tvecc === undefined ? 'no parity' : 'repair is off',
        };
      }
      try {
        const t0 = performance.now();
        const sidecar = p.tvecc;
        const r = await underLock(p, ino, () => eccRepair(p.weights, { sidecar, ...options, force: true }));
        publish({
          event: 'repaired',
          path: p.files.weights,
          chunks: bad,
          eccChunks: r.repairedChunks,
          ms: performance.now() - t0,
        });
      } catch (err) {
        if (err instanceof TensorVaultError && err.code === ErrorCode.ABORTED) throw err;
        return {
          file: f,
          report: { ...report, status: 'damaged' },
          why: `parity cannot repair it (${(err as TensorVaultError).code ?? 'error'})`,
        };
      }
      f.close();
      f = await openSafetensors(p.weights);
      bad = await treeDamage(p, block, options);
      if (bad.length > 0)
        return { file: f, report: { ...report, status: 'damaged' }, why: 'bytes still differ after repair' };
      report.repairedChunks = [...(report.damagedChunks ?? [])];
      status = 'repaired';
    }
  } else if (p.rs !== undefined) {
    // The parity may be unusable (wrong length: a truncated weights file or parity stream) or beyond
    // its budget; the data are then judged by the hash alone (intact data with damaged parity load).
    let r: RsRepair | undefined;
    try {
      r = await rsCheck(p, key, false, options);
    } catch (err) {
      if (!(err instanceof TensorVaultError) || err.code !== ErrorCode.ECC_PARITY_LENGTH) throw err;
      parityDamaged = true;
      publish({ event: 'damaged', path: p.files.weights, part: 'parity', reason: err.code });
    }
    if (r !== undefined && r.badBlocks.length > 0) {
      report.damagedChunks = r.badBlocks;
      publish({ event: 'damaged', path: p.files.weights, blocks: r.badBlocks });
      if (r.uncorrectable.length > 0) parityDamaged = true;
      else if (repair) {
        try {
          const t0 = performance.now();
          const w = await underLock(p, ino, () => rsCheck(p, key, true, options));
          publish({
            event: 'repaired',
            path: p.files.weights,
            blocks: w.badBlocks,
            ms: performance.now() - t0,
          });
          f.close();
          f = await openSafetensors(p.weights);
          report.repairedChunks = r.badBlocks;
          status = 'repaired';
        } catch (err) {
          if (err instanceof TensorVaultError && err.code === ErrorCode.ABORTED) throw err;
          parityDamaged = true;
        }
      } else parityDamaged = true;
    }
  }
  const digest = await pyfoldsDigest(hashableOf(f));
  const ok = pyfoldsHashMatches(p.stored, digest, key);
  report.pyfoldsHash = ok ? 'ok' : 'mismatch';
  if (!ok) {
    if (p.layout !== 'tensorvault') report.damagedTensors = [...f.names];
    const why = parityDamaged
      ? 'the integrity hash does not match and the rs(N) parity cannot repair it'
      : 'the integrity hash does not match';
    return { file: f, report: { ...report, status: 'damaged' }, why };
  }
  if (parityDamaged && p.rs !== undefined) {
    // The data verify; only the parity is damaged: rewrite it from the data, or say it can be.
    if (repair) {
      const rs = p.rs;
      await underLock(p, ino, async () => {
        const tmp = tempName(rs.path);
        try {
          await writeRsParity(p.weights, tmp, rs.codec, {});
          await fsp.rename(tmp, rs.path);
          await fsyncDir(dirname(rs.path));
        } finally {
          await fsp.rm(tmp, { force: true }).catch(() => {});
        }
      });
      publish({ event: 'repaired', path: p.files.weights, part: 'parity' });
      status = 'repaired';
    } else status = 'repairable';
  }
  report.status = status;
  report.verifiedTensors = [...f.names];
  return { file: f, report };
}

/** Chunks whose digest differs from the block's leaves (hashing the whole file on the pool). */
async function treeDamage(
  p: Parsed,
  block: IntegrityBlock,
  options: JobOptions,
  path: string = p.weights,
): Promise<number[]> {
  const size = statSync(path).size;
  const tree = await hashFile(path, { chunkSize: block.chunk_size, leaves: true, ...options });
  const n = Math.ceil(block.file_length / block.chunk_size);
  const bad: number[] = [];
  for (let i = 0; i < n; i++) {
    const got = tree.leaves?.[i];
    if (got === undefined || !equalHex(got, leafAt(block, i))) bad.push(i);
  }
  if (size !== block.file_length && bad.length === 0) bad.push(Math.max(0, n - 1));
  return bad;
}

function tensorsIn(f: SafetensorsFile, chunks: readonly number[], cs: number): string[] {
  const set = new Set(chunks);
  return f
    .infos()
    .filter((t) => {
      const [a, b] = chunkSpan(t.fileOffset, t.fileOffset + t.byteLength, cs);
      for (let c = a; c < b; c++) if (set.has(c)) return true;
      return false;
    })
    .map((t) => t.name);
}

function checkOptions(options: LoadCheckpointOptions): {
  mode: VerifyMode;
  key: HmacKey | undefined;
  requireHmac: boolean;
} {
  if (typeof options !== 'object' || options === null)
    throw invalidArgument('options', 'options must be an object');
  const mode = options.verify ?? 'lazy';
  if (mode !== 'full' && mode !== 'lazy' && mode !== 'none') {
    throw invalidArgument('verify', `verify must be full, lazy or none, got ${String(mode)}`);
  }
  const key = keyInForce(options.hmacKey);
  const requireHmac = options.requireHmac ?? key !== undefined;
  if (requireHmac && key === undefined) {
    throw invalidArgument('requireHmac', 'requireHmac needs a key (hmacKey or PYFOLDS_CHECKPOINT_HMAC_KEY)');
  }
  if (options.expect !== undefined) {
    if (typeof options.expect !== 'object' || options.expect === null || Array.isArray(options.expect)) {
      throw invalidArgument('expect', 'expect must map tensor names to { dtype, shape }');
    }
    for (const [name, want] of Object.entries(options.expect)) {
      if (typeof want !== 'object' || want === null) {
        throw invalidArgument(`expect.${name}`, `expect[${JSON.stringify(name)}] must be { dtype?, shape? }`);
      }
      if (want.dtype !== undefined && !isDtype(want.dtype)) {
        throw invalidArgument(
          `expect.${name}.dtype`,
          `expect[${JSON.stringify(name)}].dtype is not a safetensors dtype`,
        );
      }
      if (
        want.shape !== undefined &&
        (!Array.isArray(want.shape) || !want.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      ) {
        throw invalidArgument(
          `expect.${name}.shape`,
          `expect[${JSON.stringify(name)}].shape must be an array of non-negative integers`,
        );
      }
    }
  }
  for (const k of ['strict', 'repair', 'requireHmac'] as const) {
    if (options[k] !== undefined && typeof options[k] !== 'boolean') {
      throw invalidArgument(k, `${k} must be a boolean`);
    }
  }
  if (options.expectedVersion !== undefined && typeof options.expectedVersion !== 'string') {
    throw invalidArgument('expectedVersion', 'expectedVersion must be a string');
  }
  return { mode, key, requireHmac };
}

/** The key policy: no downgrade, and a keyed hash needs its key. */
function checkKeyPolicy(p: Parsed, key: HmacKey | undefined, requireHmac: boolean, mode: VerifyMode): void {
  const keyed = p.stored.kind === 'hmac-sha256';
  if (requireHmac && !keyed) {
    throw new TensorVaultError(
      ErrorCode.CHECKPOINT_HMAC_REQUIRED,
      `${p.files.weights}: a keyed (hmac-sha256) integrity hash is required, the checkpoint has ${p.stored.kind}`,
      { path: p.files.weights, actual: p.stored.kind },
    );
  }
  if (requireHmac && p.block !== undefined && p.block.algorithm !== 'sha256-tree-v1+hmac-sha256') {
    throw new TensorVaultError(
      ErrorCode.CHECKPOINT_HMAC_REQUIRED,
      `${p.files.weights}: the integrity block is not keyed`,
      {
        path: p.files.weights,
        actual: p.block.algorithm,
      },
    );
  }
  if (keyed && key === undefined && mode !== 'none') {
    throw new TensorVaultError(
      ErrorCode.CHECKPOINT_HMAC_REQUIRED,
      `${p.files.weights}: the integrity hash is keyed; pass hmacKey (or set PYFOLDS_CHECKPOINT_HMAC_KEY) to verify it`,
      { path: p.files.weights, actual: p.stored.kind },
    );
  }
}

/** Check the seal and the header (tensorvault layout); repair a damaged header from parity. */
/**
 * Check the integrity block's seal and the header digest; with `repair`, rebuild a damaged header from
 * the parity. Returns the chunks the repair rebuilt (`undefined` when nothing was repaired).
 */
async function checkSeal(
  p: Parsed,
  key: HmacKey | undefined,
  repair: boolean,
): Promise<number[] | undefined> {
  const block = p.block as IntegrityBlock;
  const keyed = block.algorithm === 'sha256-tree-v1+hmac-sha256';
  if (keyed && key === undefined) return undefined; // only with verify: 'none' (checked by the key policy)
  const { seal: stored, leaves: _l, ...rest } = block;
  const want = seal(sealMessage(rest, p.metadata, p.integrityHash), keyed ? key : undefined);
  if (!equalHex(want, stored)) {
    throw new TensorVaultError(
      ErrorCode.CHECKPOINT_INTEGRITY,
      `${p.files.weights}: the integrity block's seal does not match its metadata, hash or header digest (tampered or wrong key)`,
      { path: p.files.weights, reason: 'seal' },
    );
  }
  let h = await headerSha(p.weights, block.header_length);
  if (h.hex !== block.header_sha256 || h.size !== block.file_length) {
    publish({ event: 'damaged', path: p.files.weights, part: 'header', chunks: [0] });
    let rebuilt: number[] = [];
    if (repair && p.tvecc !== undefined) {
      try {
        const sidecar = p.tvecc;
        // force: the seal proved this is damage, not an edit after the save.
        const r = await underLock(p, undefined, () => eccRepair(p.weights, { sidecar, force: true }));
        rebuilt = r.repairedChunks;
        publish({ event: 'repaired', path: p.files.weights, part: 'header', chunks: rebuilt });
      } catch {
        // reported below
      }
      h = await headerSha(p.weights, block.header_length);
    }
    if (h.hex !== block.header_sha256 || h.size !== block.file_length) {
      throw new TensorVaultError(
        ErrorCode.CHECKPOINT_INTEGRITY,
        `${p.files.weights}: the safetensors header or the file length differs from the integrity block${p.tvecc === undefined ? ' (no parity to repair it)' : ''}`,
        { path: p.files.weights, reason: 'header', expected: block.file_length, actual: h.size },
      );
    }
    return rebuilt;
  }
  return undefined;
}

/**
 * Load the checkpoint whose weights are at `path`, detecting its layout (`tensorvault`, `pyfolds`,
 * `pyfolds-ecc`). Checks the key policy (`requireHmac`), the version, the tensors against `expect`
 * (every difference listed), the seal and header (tensorvault layout), then the bytes as `verify`
 * says: `lazy` (default; each tensor when first viewed), `full` (everything now, repairing from parity
 * with `repair`), `none`. An interrupted save is rolled forward (or its leftovers removed) first.
 */
export async function loadCheckpoint(path: string, options: LoadCheckpointOptions = {}): Promise<Checkpoint> {
  const t0 = performance.now();
  const { mode, key, requireHmac } = checkOptions(options);
  const repair = options.repair ?? true;
  if (options.signal?.aborted)
    throw new TensorVaultAbortError('The operation was aborted before it started', options.signal.reason);
  let p: Parsed;
  let repairedAtOpen = false;
  let rebuiltAtOpen: number[] = [];
  try {
    p = parseCheckpoint(path);
    checkKeyPolicy(p, key, requireHmac, mode);
    if (options.expectedVersion !== undefined) {
      const v = p.metadata.version;
      if (String(v) !== options.expectedVersion) {
        throw new TensorVaultError(
          ErrorCode.CHECKPOINT_VERSION,
          `${path}: version ${JSON.stringify(v)}, expected ${JSON.stringify(options.expectedVersion)}`,
          {
            path,
            expected: options.expectedVersion,
            actual: v === undefined ? null : String(v),
          },
        );
      }
    }
    const rebuilt = p.block === undefined ? undefined : await checkSeal(p, key, repair && mode !== 'none');
    repairedAtOpen = rebuilt !== undefined;
    rebuiltAtOpen = rebuilt ?? [];
  } catch (err) {
    publish({
      event: 'failed',
      op: 'load',
      path,
      code: err instanceof TensorVaultError ? err.code : 'TV_INTERNAL',
    });
    throw err;
  }
  let file: SafetensorsFile;
  let fd = -1;
  try {
    ({ file, fd } = await openPair(p.weights, options.signal));
  } catch (err) {
    // A damaged header of a pyfolds-ecc checkpoint: repair from the rs(N) parity, then open again.
    if (
      !(err instanceof TensorVaultError) ||
      err.code !== ErrorCode.SAFETENSORS_INVALID ||
      p.rs === undefined ||
      !repair ||
      mode === 'none'
    ) {
      publish({
        event: 'failed',
        op: 'load',
        path,
        code: err instanceof TensorVaultError ? err.code : 'TV_INTERNAL',
      });
      throw err;
    }
    publish({ event: 'damaged', path: p.files.weights, part: 'header' });
    const r = await underLock(p, undefined, () => rsCheck(p, key, true, options)).catch(() => undefined);
    if (r === undefined || !r.rewritten) throw err;
    repairedAtOpen = true;
    publish({ event: 'repaired', path: p.files.weights, part: 'header', blocks: r.badBlocks });
    ({ file, fd } = await openPair(p.weights, options.signal));
  }
  const report: CheckpointReport = {
    path: p.files.weights,
    layout: p.layout,
    verify: mode,
    status: repairedAtOpen ? 'repaired' : 'unverified',
    hashKind: p.stored.kind,
    keyed: p.stored.kind === 'hmac-sha256' && key !== undefined,
    pyfoldsHash: 'unchecked',
    seal:
      p.block === undefined
        ? 'none'
        : p.block.algorithm.endsWith('hmac-sha256') && key === undefined
          ? 'unchecked'
          : 'ok',
    verifiedTensors: [],
    damagedTensors: [],
    damagedChunks: [...rebuiltAtOpen],
    repairedChunks: [...rebuiltAtOpen],
  };
  try {
    if (options.expect !== undefined) {
      const m = compareExpect(file.infos(), options.expect);
      if (hasMismatch(m)) {
        if (options.strict !== false) throw new CheckpointMismatchError(p.files.weights, m);
        report.mismatches = m;
      }
    }
    if (mode === 'full') {
      const r = await verifyWhole(p, file, key, repair, options, fstatSync(fd).ino);
      if (r.file !== file) {
        // repaired and mapped again: the descriptor follows the new file
        closeSync(fd);
        fd = openSync(p.weights, 'r');
      }
      file = r.file;
      mergeReport(report, r.report);
      if (report.status === 'damaged') {
        const err = new TensorVaultError(
          ErrorCode.CHECKPOINT_INTEGRITY,
          `${p.files.weights}: ${r.why ?? 'damaged'}${report.damagedTensors.length > 0 ? ` (tensors ${report.damagedTensors.join(', ')})` : ''}`,
          {
            path: p.files.weights,
            reason: r.why ?? 'damaged',
            chunks: report.damagedChunks.join(','),
            tensors: report.damagedTensors.join(','),
          },
        );
        throw err;
      }
      publish({
        event: 'verified',
        path: p.files.weights,
        layout: p.layout,
        bytes: statSync(p.weights).size,
        mode,
        ms: performance.now() - t0,
      });
    }
  } catch (err) {
    file.close();
    closeSync(fd);
    if (!(err instanceof CheckpointMismatchError)) {
      publish({
        event: 'failed',
        op: 'load',
        path,
        code: err instanceof TensorVaultError ? err.code : 'TV_INTERNAL',
      });
    }
    throw err;
  }
  return new Checkpoint(p, file, fd, report, key, repair);
}

/** Options of {@link verifyCheckpoint}. */
export type VerifyCheckpointOptions = Pick<
  LoadCheckpointOptions,
  'hmacKey' | 'requireHmac' | 'signal' | 'onProgress'
>;

/**
 * Verify every byte of the checkpoint at `path`, read-only. Resolves with the report: `intact`,
 * `repairable` (damage that its parity can repair; see `damagedChunks`) or `damaged`. Rejects for a
 * checkpoint that cannot be read at all (missing, malformed sidecar, key policy, tampered seal).
 */
export async function verifyCheckpoint(
  path: string,
  options: VerifyCheckpointOptions = {},
): Promise<CheckpointReport> {
  const t0 = performance.now();
  const { key, requireHmac } = checkOptions({ ...options, verify: 'full' });
  const p = parseCheckpoint(path);
  checkKeyPolicy(p, key, requireHmac, 'full');
  if (p.block !== undefined) await checkSeal(p, key, false);
  const file = await openSafetensors(p.weights);
  try {
    const r = await verifyWhole(p, file, key, false, options);
    const report: CheckpointReport = {
      path: p.files.weights,
      layout: p.layout,
      verify: 'full',
      status: 'intact',
      hashKind: p.stored.kind,
      keyed: p.stored.kind === 'hmac-sha256',
      pyfoldsHash: 'unchecked',
      seal: p.block === undefined ? 'none' : 'ok',
      verifiedTensors: [],
      damagedTensors: [],
      damagedChunks: [],
      repairedChunks: [],
    };
    mergeReport(report, r.report);
    if (report.status === 'damaged') {
      // Would the parity repair it? Ask the parity without changing anything.
      if (p.tvecc !== undefined) {
        const v: EccVerifyResult = await eccVerify(p.weights, { sidecar: p.tvecc });
        if (v.status === 'repairable') report.status = 'repairable';
      } else if (p.rs !== undefined && report.damagedChunks.length > 0) {
        const rs = await rsCheck(p, key, false, {}).catch(() => undefined);
        if (rs !== undefined && rs.uncorrectable.length === 0) report.status = 'repairable';
      }
    }
    publish({
      event: report.status === 'intact' ? 'verified' : 'damaged',
      path: p.files.weights,
      layout: p.layout,
      status: report.status,
      chunks: report.damagedChunks,
      tensors: report.damagedTensors,
      ms: performance.now() - t0,
    });
    return report;
  } finally {
    file.close();
  }
}

/**
 * Repair the checkpoint at `path` from its parity (tvecc sidecar or rs(N) stream), replacing damaged
 * files atomically and re-verifying. Resolves with the report (`intact`, `repaired`); rejects with
 * `TV_CHECKPOINT_INTEGRITY` when the damage is beyond the parity or there is none.
 */
export async function repairCheckpoint(
  path: string,
  options: VerifyCheckpointOptions = {},
): Promise<CheckpointReport> {
  const ckpt = await loadCheckpoint(path, { ...options, verify: 'full', repair: true });
  ckpt.close();
  return ckpt.report;
}

/** Options of {@link loadSecure}. */
export interface LoadSecureOptions
  extends Pick<LoadCheckpointOptions, 'hmacKey' | 'requireHmac' | 'signal' | 'expect' | 'strict'> {
  /** Accept a `weight_file` outside the manifest's folder (refused by default: `TV_CHECKPOINT_UNSAFE_MANIFEST`). */
  allowOutsideFolder?: boolean;
  /** Accept a manifest without `integrity_hash` (refused by default); the weights are then not verified. */
  allowMissingHash?: boolean;
}

/**
 * PyFolds's `load_secure`: read the manifest `{ weight_file, integrity_hash?, metadata? }`, resolve
 * `weight_file` against the manifest's folder, and load the weights fully verified against the hash.
 * Unlike PyFolds, a `weight_file` that leaves the folder and a missing hash are refused
 * (`TV_CHECKPOINT_UNSAFE_MANIFEST`) unless `allowOutsideFolder` / `allowMissingHash` say otherwise.
 */
export async function loadSecure(manifestPath: string, options: LoadSecureOptions = {}): Promise<Checkpoint> {
  if (typeof manifestPath !== 'string' || manifestPath.length === 0) {
    throw invalidArgument('manifestPath', 'manifestPath must be a non-empty string');
  }
  if (typeof options !== 'object' || options === null)
    throw invalidArgument('options', 'options must be an object');
  const { key, requireHmac } = checkOptions({ ...options, verify: 'full' });
  const doc = readJson(manifestPath);
  const wf = doc.weight_file;
  if (typeof wf !== 'string' || wf.length === 0)
    throw invalid(manifestPath, 'weight_file', 'weight_file must be a non-empty string');
  const dir = resolvePath(dirname(manifestPath));
  const weights = resolvePath(dir, wf);
  const rel = relativePath(dir, weights);
  if (
    options.allowOutsideFolder !== true &&
    (isAbsolute(wf) || rel === '' || rel.startsWith('..') || isAbsolute(rel))
  ) {
    throw new TensorVaultError(
      ErrorCode.CHECKPOINT_UNSAFE_MANIFEST,
      `${manifestPath}: weight_file ${JSON.stringify(wf)} is outside the manifest's folder (pass allowOutsideFolder to accept it)`,
      { path: manifestPath, reason: 'outside_folder', weightFile: wf },
    );
  }
  const metadata = doc.metadata ?? {};
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata))
    throw invalid(manifestPath, 'metadata', 'metadata is not an object');
  const hasHash = doc.integrity_hash !== undefined && doc.integrity_hash !== null;
  if (!hasHash && options.allowMissingHash !== true) {
    throw new TensorVaultError(
      ErrorCode.CHECKPOINT_UNSAFE_MANIFEST,
      `${manifestPath}: the manifest has no integrity_hash (pass allowMissingHash to load unverified weights)`,
      { path: manifestPath, reason: 'missing_hash' },
    );
  }
  const stored = hasHash
    ? parseStoredHash(doc.integrity_hash, manifestPath)
    : { kind: 'sha256' as const, hex: '' };
  const p: Parsed = {
    files: checkpointFiles(weights),
    layout: 'pyfolds',
    weights,
    metadata: metadata as Record<string, unknown>,
    integrityHash: hasHash ? (doc.integrity_hash as string) : '',
    stored,
  };
  const mode: VerifyMode = hasHash ? 'full' : 'none';
  if (hasHash || requireHmac) checkKeyPolicy(p, key, requireHmac, mode);
  const pair = await openPair(weights, options.signal);
  let file = pair.file;
  let fd = pair.fd;
  const report: CheckpointReport = {
    path: weights,
    layout: 'pyfolds',
    verify: mode,
    status: 'unverified',
    hashKind: stored.kind,
    keyed: stored.kind === 'hmac-sha256',
    pyfoldsHash: 'unchecked',
    seal: 'none',
    verifiedTensors: [],
    damagedTensors: [],
    damagedChunks: [],
    repairedChunks: [],
  };
  try {
    if (options.expect !== undefined) {
      const m = compareExpect(file.infos(), options.expect);
      if (hasMismatch(m)) {
        if (options.strict !== false) throw new CheckpointMismatchError(weights, m);
        report.mismatches = m;
      }
    }
    if (hasHash) {
      const r = await verifyWhole(p, file, key, false, options);
      if (r.file !== file) {
        // repaired and mapped again: the descriptor follows the new file
        closeSync(fd);
        fd = openSync(p.weights, 'r');
      }
      file = r.file;
      mergeReport(report, r.report);
      if (report.status === 'damaged') {
        throw new TensorVaultError(
          ErrorCode.CHECKPOINT_INTEGRITY,
          `${weights}: the weights do not match the manifest's integrity_hash`,
          {
            path: weights,
            reason: 'hash',
          },
        );
      }
    }
  } catch (err) {
    file.close();
    closeSync(fd);
    throw err;
  }
  return new Checkpoint(p, file, fd, report, key, false);
}
