/**
 * {@link saveCheckpoint}: weights, integrity hash, parity and sidecars, replaced as a set.
 */
import { execFile } from 'node:child_process';
import { constants, promises as fsp } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { type ErasureProtectionLevel, protect } from '../ecc/erasure';
import { eccFromName, eccFromProtection, RsCodec } from '../ecc/rs255';
import { ErrorCode, invalidArgument, TensorVaultAbortError, TensorVaultError } from '../errors';
import { hashFile } from '../hash/file';
import { sha256 } from '../hash/index';
import { tempName } from '../io/atomic';
import { ioError } from '../io/fs';
import type { JobOptions, Progress } from '../job';
import { packageVersion } from '../native';
import { openSafetensors, type SafetensorsFile } from '../safetensors/reader';
import { entriesOf, prepare, saveSafetensors, type TensorsToSave } from '../safetensors/writer';
import { commitSet, lockSet, publish, recoverLocked } from './commit';
import {
  CHECKPOINT_CHUNK_SIZE,
  type CheckpointLayout,
  checkpointFiles,
  formatPyfoldsHash,
  type HmacKey,
  type IntegrityBlock,
  LAYOUTS,
  pyfoldsDigest,
  seal,
  sealMessage,
  sidecarFiles,
  torchDtype,
  treeRoot,
} from './layout';

/** The environment variable PyFolds reads its HMAC key from (honoured by save and load). */
export const PYFOLDS_HMAC_ENV = 'PYFOLDS_CHECKPOINT_HMAC_KEY';

/**
 * Parity of a checkpoint. For the `tensorvault` layout: `off` (default), `low`, `medium` (`med`),
 * `high` (the erasure presets of {@link protect}) or a custom `{ k, m, chunkSize }`. For `pyfolds-ecc`:
 * PyFolds's levels exactly as PyFolds reads them (`off`/`none`/`0`/empty, `low` = rs(16), `med` =
 * rs(32), `high` = rs(64), any letter case; `medium` is refused), `rs(N)`, or `{ parity: N }`. The
 * `pyfolds` layout has no parity.
 */
export type CheckpointEcc =
  | string
  | { k: number; m: number; chunkSize: number }
  | { parity: number }
  | null
  | undefined;

/** Options of {@link saveCheckpoint}. */
export interface SaveCheckpointOptions extends JobOptions {
  /** On-disk layout (default `tensorvault`). */
  layout?: CheckpointLayout;
  /** The checkpoint's version label (metadata `version`; default `"1"`). */
  version?: string;
  /** User metadata (JSON values), merged over the standard fields. */
  metadata?: Readonly<Record<string, unknown>>;
  /** The training configuration (metadata `config`; default `{}`). */
  config?: Readonly<Record<string, unknown>>;
  /** Parity (see {@link CheckpointEcc}; default off). */
  ecc?: CheckpointEcc;
  /**
   * Key of the HMAC integrity hash (and of the integrity block's seal). Default: the environment
   * variable `PYFOLDS_CHECKPOINT_HMAC_KEY` when set and not empty, as PyFolds does; `null` ignores it.
   */
  hmacKey?: HmacKey | null;
  /** Metadata `git_hash` (default: `git rev-parse HEAD` in the current folder, or `"unknown"`). */
  gitHash?: string;
  /** How long to wait for another save of the same path (default 30 s; `TV_LOCKED` after). */
  lockTimeoutMs?: number;
}

/** Result of {@link saveCheckpoint}. */
export interface SaveCheckpointResult {
  /** The weights file. */
  path: string;
  /** The layout written. */
  layout: CheckpointLayout;
  /** Every file of the new set. */
  files: string[];
  /** Size of the weights file. */
  byteLength: number;
  /** The PyFolds integrity hash (`sha256:…` or `hmac-sha256:…`). */
  integrityHash: string;
  /** The metadata written. */
  metadata: Record<string, unknown>;
  /** The parity written: `rs(N)`, `tvecc k+m`, or `none`. */
  ecc: string;
  /** The integrity block (tensorvault layout only). */
  integrity?: IntegrityBlock;
}

type EccPlan =
  | { kind: 'none' }
  | { kind: 'rs'; codec: RsCodec }
  | { kind: 'tvecc'; level?: ErasureProtectionLevel; k?: number; m?: number; chunkSize?: number };

function isOff(level: string): boolean {
  const l = level.toLowerCase();
  return l === '' || l === 'off' || l === 'none' || l === '0';
}

/** @internal The parity a layout writes for `ecc`. */
export function eccPlan(layout: CheckpointLayout, ecc: CheckpointEcc): EccPlan {
  if (ecc === undefined || ecc === null) return { kind: 'none' };
  if (layout === 'pyfolds') {
    if (typeof ecc === 'string' && isOff(ecc)) return { kind: 'none' };
    throw invalidArgument(
      'ecc',
      'the pyfolds layout has no parity; use layout "pyfolds-ecc" or "tensorvault"',
    );
  }
  if (layout === 'pyfolds-ecc') {
    if (typeof ecc === 'string') {
      const codec = /^rs\(/i.test(ecc) ? eccFromName(ecc) : eccFromProtection(ecc);
      return codec === null ? { kind: 'none' } : { kind: 'rs', codec };
    }
    if (typeof ecc === 'object' && 'parity' in ecc) return { kind: 'rs', codec: new RsCodec(ecc.parity) };
    throw invalidArgument(
      'ecc',
      'pyfolds-ecc takes a PyFolds level (off, low, med, high), rs(N) or { parity }',
    );
  }
  if (typeof ecc === 'string') {
    if (isOff(ecc)) return { kind: 'none' };
    const l = ecc.toLowerCase();
    if (l === 'low' || l === 'high') return { kind: 'tvecc', level: l };
    if (l === 'medium' || l === 'med') return { kind: 'tvecc', level: 'medium' };
    throw invalidArgument(
      'ecc',
      `unknown ecc level ${JSON.stringify(ecc)}: off, low, medium, high or { k, m, chunkSize }`,
      {
        actual: ecc,
      },
    );
  }
  if (typeof ecc === 'object' && 'k' in ecc && 'm' in ecc && 'chunkSize' in ecc) {
    return { kind: 'tvecc', k: ecc.k, m: ecc.m, chunkSize: ecc.chunkSize };
  }
  throw invalidArgument('ecc', 'ecc must be a level or { k, m, chunkSize } for the tensorvault layout');
}

const gitCache = new Map<string, Promise<string>>();

/** `git rev-parse HEAD` in `cwd`, or `"unknown"` (cached per folder). */
export function gitHash(cwd = process.cwd()): Promise<string> {
  let p = gitCache.get(cwd);
  if (p === undefined) {
    p = new Promise<string>((resolveHash) => {
      try {
        execFile('git', ['rev-parse', 'HEAD'], { cwd, timeout: 5000, windowsHide: true }, (err, stdout) => {
          const h = String(stdout).trim();
          resolveHash(err === null && /^[0-9a-f]{40,64}$/.test(h) ? h : 'unknown');
        });
      } catch {
        resolveHash('unknown');
      }
    });
    gitCache.set(cwd, p);
  }
  return p;
}

/** @internal The key in force: the option, else PyFolds's environment variable (unless `null`). */
export function keyInForce(option: HmacKey | null | undefined): HmacKey | undefined {
  if (option === null) return undefined;
  if (option !== undefined) {
    if (typeof option !== 'string' && !(option instanceof Uint8Array)) {
      throw invalidArgument('hmacKey', 'hmacKey must be a string or a Uint8Array');
    }
    if (option.length === 0) throw invalidArgument('hmacKey', 'hmacKey must not be empty');
    return option;
  }
  const env = process.env[PYFOLDS_HMAC_ENV];
  return env === undefined || env === '' ? undefined : env;
}

function checkJsonObject(v: unknown, name: string): Record<string, unknown> {
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw invalidArgument(name, `${name} must be a plain object`);
  }
  try {
    return JSON.parse(JSON.stringify(v)) as Record<string, unknown>;
  } catch (err) {
    throw invalidArgument(name, `${name} must be JSON-serialisable: ${(err as Error).message}`);
  }
}

/** @internal The tensors' bytes of an open file, for the PyFolds hash. */
export function hashableOf(file: SafetensorsFile) {
  return file.infos().map((t) => ({
    name: t.name,
    dtype: t.dtype,
    shape: t.shape,
    bytes: () => file.chunks(t.name, { chunkBytes: 16 * 1024 * 1024 }),
  }));
}

/** @internal Write `data` to a fresh temporary file (O_EXCL) and fsync it. */
export async function writeTemp(path: string, data: Uint8Array | string): Promise<void> {
  const fh = await fsp.open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** @internal The rs(N) parity stream of a file, computed in block-aligned pieces, written to `out`. */
export async function writeRsParity(
  file: string,
  out: string,
  codec: RsCodec,
  options: JobOptions,
): Promise<number> {
  const piece = Math.floor((32 * 1024 * 1024) / codec.blockDataLength) * codec.blockDataLength;
  const src = await fsp.open(file, 'r');
  const dst = await fsp.open(out, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
  let total = 0;
  try {
    const size = (await src.stat()).size;
    const buf = Buffer.allocUnsafe(Math.min(piece, Math.max(size, 1)));
    for (let at = 0; at < size; at += piece) {
      const len = Math.min(piece, size - at);
      const { bytesRead } = await src.read(buf, 0, len, at);
      if (bytesRead !== len)
        throw new TensorVaultError(ErrorCode.FILE_CHANGED, `${file} changed while it was read`, {
          path: file,
        });
      const parity = await codec.encode(buf.subarray(0, len), {
        ...(options.signal ? { signal: options.signal } : {}),
      });
      await dst.write(parity, 0, parity.length, total);
      total += parity.length;
      options.onProgress?.({ bytesDone: at + len, bytesTotal: size });
    }
    await dst.sync();
  } finally {
    await src.close();
    await dst.close();
  }
  return total;
}

function bytesOf(d: ArrayBufferView | ArrayBuffer): Uint8Array {
  return d instanceof ArrayBuffer ? new Uint8Array(d) : new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

/**
 * Progress over several phases of known sizes (some run at the same time), reported as one count: the
 * sum of each phase's bytes done, so it never goes backwards.
 */
function phases(onProgress: ((p: Progress) => void) | undefined, total: number) {
  const done: number[] = [];
  let last = 0;
  return {
    next(size: number): ((p: Progress) => void) | undefined {
      const k = done.push(0) - 1;
      if (onProgress === undefined) return undefined;
      return (p) => {
        done[k] = Math.max(done[k] ?? 0, Math.min(p.bytesDone, size));
        const sum = done.reduce((a, b) => a + b, 0);
        if (sum < last) return;
        last = sum;
        onProgress({ bytesDone: sum, bytesTotal: total });
      };
    },
  };
}

/** @internal The header bytes' SHA-256 and length of a safetensors file. */
export async function headerDigest(path: string, headerLength: number): Promise<string> {
  const fh = await fsp.open(path, 'r');
  try {
    const buf = Buffer.alloc(headerLength);
    const { bytesRead } = await fh.read(buf, 0, headerLength, 0);
    if (bytesRead !== headerLength)
      throw new TensorVaultError(ErrorCode.FILE_CHANGED, `${path} is shorter than its header`, { path });
    return sha256(buf).toString('hex');
  } finally {
    await fh.close();
  }
}

/** @internal Build the integrity block of a finished weights file. */
export async function buildIntegrityBlock(
  weights: string,
  headerLength: number,
  metadata: unknown,
  integrityHash: string,
  ecc: IntegrityBlock['ecc'],
  key: HmacKey | undefined,
  options: JobOptions,
): Promise<IntegrityBlock> {
  const tree = await hashFile(weights, { chunkSize: CHECKPOINT_CHUNK_SIZE, leaves: true, ...options });
  const leaves = (tree.leaves ?? []).join('');
  const root = treeRoot(leaves, CHECKPOINT_CHUNK_SIZE, tree.length);
  if (root !== tree.digest) {
    throw new TensorVaultError(ErrorCode.INTERNAL, 'chunk-tree root does not match its leaves', {
      path: weights,
    });
  }
  const partial = {
    integrity: 1 as const,
    algorithm:
      key === undefined ? ('sha256-tree-v1+sha256' as const) : ('sha256-tree-v1+hmac-sha256' as const),
    chunk_size: CHECKPOINT_CHUNK_SIZE,
    file_length: tree.length,
    header_length: headerLength,
    header_sha256: await headerDigest(weights, headerLength),
    root,
    ecc,
  };
  return { ...partial, leaves, seal: seal(sealMessage(partial, metadata, integrityHash), key) };
}

/** The checked arguments of {@link saveCheckpoint}. */
function checkSaveArgs(path: string, tensors: TensorsToSave, options: SaveCheckpointOptions) {
  if (typeof options !== 'object' || options === null)
    throw invalidArgument('options', 'options must be an object');
  const layout = options.layout ?? 'tensorvault';
  if (!LAYOUTS.includes(layout)) {
    throw invalidArgument('layout', `layout must be one of ${LAYOUTS.join(', ')}`, {
      actual: String(layout),
    });
  }
  const files = checkpointFiles(path);
  const plan = eccPlan(layout, options.ecc);
  // Read the tensors argument once (it may be a one-shot iterable) and check it before anything.
  const entries = entriesOf(tensors);
  const prepared = prepare(entries);
  if (layout !== 'tensorvault') {
    const unsupported = prepared.find((t) => torchDtype(t.dtype) === undefined);
    if (unsupported !== undefined) {
      throw invalidArgument(
        'dtype',
        `tensor ${JSON.stringify(unsupported.name)}: PyFolds has no dtype for ${unsupported.dtype}`,
        { name: unsupported.name },
      );
    }
  }
  const key = keyInForce(options.hmacKey);
  if (options.version !== undefined && typeof options.version !== 'string') {
    throw invalidArgument('version', 'version must be a string');
  }
  if (options.gitHash !== undefined && typeof options.gitHash !== 'string') {
    throw invalidArgument('gitHash', 'gitHash must be a string');
  }
  const user = checkJsonObject(options.metadata, 'metadata');
  const config = checkJsonObject(options.config, 'config');
  return { layout, files, plan, entries, prepared, key, user, config };
}

type Prepared = ReturnType<typeof prepare>;

/**
 * Write the weights to `tmpWeights`. Tensors held in memory are hashed (PyFolds framing, on this
 * thread) while the pool writes them; streamed sources are hashed from the written file afterwards.
 */
async function writeWeights(
  tmpWeights: string,
  entries: ReturnType<typeof entriesOf>,
  prepared: Prepared,
  inMemory: boolean,
  ph: ReturnType<typeof phases>,
  dataBytes: number,
  signal: AbortSignal | undefined,
): Promise<{ size: number; headerLength: number; digest: Awaited<ReturnType<typeof pyfoldsDigest>> }> {
  const writeProgress = ph.next(dataBytes);
  const [writeResult, inputDigest] = await Promise.all([
    saveSafetensors(tmpWeights, entries, {
      ...(signal ? { signal } : {}),
      ...(writeProgress ? { onProgress: writeProgress } : {}),
    }),
    inMemory
      ? pyfoldsDigest(
          prepared.map((t) => ({
            name: t.name,
            dtype: t.dtype,
            shape: t.shape,
            bytes: () => [bytesOf(t.data as ArrayBufferView | ArrayBuffer)],
          })),
        )
      : Promise.resolve(undefined),
  ]);
  const file = await openSafetensors(tmpWeights);
  try {
    let digest = inputDigest;
    if (digest === undefined) {
      const hashProgress = ph.next(dataBytes);
      digest = await pyfoldsDigest(hashableOf(file));
      hashProgress?.({ bytesDone: dataBytes, bytesTotal: dataBytes });
    }
    return { size: writeResult.byteLength, headerLength: file.dataStart, digest };
  } finally {
    file.close();
  }
}

/** The files of the new set as they are written: temp → final renames, and the finals. */
interface NewSet {
  renames: [string, string][];
  finals: Set<string>;
  temp: (final: string) => string;
}

/** Write the parity the plan asks for next to the weights; returns its name and (rs) length. */
async function writeParity(
  plan: ReturnType<typeof eccPlan>,
  files: ReturnType<typeof checkpointFiles>,
  tmpWeights: string,
  set: NewSet,
  jobOpts: JobOptions,
): Promise<{ eccName: string; eccLen: number }> {
  if (plan.kind === 'rs') {
    const tmp = set.temp(files.rsEcc);
    const eccLen = await writeRsParity(tmpWeights, tmp, plan.codec, jobOpts);
    if (eccLen > 0) {
      set.renames.push([basename(tmp), basename(files.rsEcc)]);
      set.finals.add(files.rsEcc);
    }
    return { eccName: plan.codec.name, eccLen };
  }
  if (plan.kind === 'tvecc') {
    const tmp = set.temp(files.tvecc);
    const r = await protect(tmpWeights, {
      sidecar: tmp,
      ...jobOpts,
      ...(plan.level !== undefined ? { level: plan.level } : {}),
      ...(plan.k !== undefined
        ? { k: plan.k, m: plan.m as number, chunkSize: plan.chunkSize as number }
        : {}),
    });
    set.renames.push([basename(tmp), basename(files.tvecc)]);
    set.finals.add(files.tvecc);
    return { eccName: `tvecc ${r.layout.k}+${r.layout.m}`, eccLen: 0 };
  }
  return { eccName: 'none', eccLen: 0 };
}

/** The metadata sidecar of the layout: PyFolds's fields, plus the integrity block (tensorvault layout). */
function sidecarOf(
  layout: CheckpointLayout,
  files: ReturnType<typeof checkpointFiles>,
  fields: { metadata: Record<string, unknown>; integrityHash: string; eccName: string; eccLen: number },
  block: IntegrityBlock | undefined,
): { path: string; text: string } {
  const { metadata, integrityHash, eccName, eccLen } = fields;
  if (layout === 'pyfolds-ecc') {
    const doc = {
      format: 'safetensors',
      tensor_file: basename(files.weights),
      metadata,
      integrity_hash: integrityHash,
      ecc_algo: eccName,
      ecc_len: eccLen,
    };
    return { path: files.json, text: JSON.stringify(doc, null, 2) };
  }
  const doc: Record<string, unknown> = { metadata, integrity_hash: integrityHash, format: 'safetensors' };
  if (block !== undefined) doc.tensorvault = block;
  return { path: files.meta, text: JSON.stringify(doc, null, 2) };
}

// Over 100 lines on purpose: one ordered sequence (lock, recover, write, hash, parity + tree, sidecar,
// commit) inside one try whose catch removes every temp it made; the steps themselves are the helpers above.
/**
 * Save `tensors` as a checkpoint at `path` (the weights file, normally `NAME.safetensors`), in one of
 * three layouts (see {@link CheckpointLayout}). The metadata holds `created_at` (UTC, ending in `Z`),
 * `version`, `git_hash`, `config`, `runtime`, then the user's `metadata` merged over them. The PyFolds
 * integrity hash is keyed with `hmacKey` when there is one. The files are written under temporary
 * names and replaced as a set (`commit.ts`): a crash at any instant leaves the previous complete
 * checkpoint or the new one; leftovers are cleaned by the next save or load. Another save of the same
 * path waits (`lockTimeoutMs`). Honours `signal` (nothing changes) and reports `onProgress` over all
 * passes (write, hashes, parity). Tensor buffers are read while the promise is pending: do not change
 * them until it settles.
 */
export async function saveCheckpoint(
  path: string,
  tensors: TensorsToSave,
  options: SaveCheckpointOptions = {},
): Promise<SaveCheckpointResult> {
  const t0 = performance.now();
  const { layout, files, plan, entries, prepared, key, user, config } = checkSaveArgs(path, tensors, options);
  const { signal } = options;
  if (signal?.aborted)
    throw new TensorVaultAbortError('The operation was aborted before it started', signal.reason);
  const metadata: Record<string, unknown> = {
    created_at: new Date().toISOString(),
    version: options.version ?? '1',
    git_hash: options.gitHash ?? (await gitHash()),
    config,
    runtime: `node ${process.version}; tensorvault ${packageVersion()}`,
    ...user,
  };
  await fsp.mkdir(dirname(resolve(path)), { recursive: true });
  const lock = lockSet(files, options.lockTimeoutMs ?? 30_000);
  const temps: string[] = [];
  const set: NewSet = {
    renames: [],
    finals: new Set<string>([files.weights]),
    temp: (final) => {
      const t = tempName(final);
      temps.push(t);
      return t;
    },
  };
  const checkAbort = () => {
    if (signal?.aborted) throw new TensorVaultAbortError('The operation was aborted', signal.reason);
  };
  try {
    recoverLocked(files);
    const tmpWeights = set.temp(files.weights);
    set.renames.push([basename(tmpWeights), basename(files.weights)]);
    const inMemory = prepared.every((t) => ArrayBuffer.isView(t.data) || t.data instanceof ArrayBuffer);
    // One progress count over every pass: the write, the PyFolds hash when it needs its own pass, the
    // chunk tree, the parity; each pass counts the tensor bytes once.
    const dataBytes = prepared.reduce((n, t) => n + t.byteLength, 0);
    const passes =
      1 + (inMemory ? 0 : 1) + (layout === 'tensorvault' ? 1 : 0) + (plan.kind === 'none' ? 0 : 1);
    const ph = phases(options.onProgress, dataBytes * passes);
    const w = await writeWeights(tmpWeights, entries, prepared, inMemory, ph, dataBytes, signal);
    const integrityHash = formatPyfoldsHash(w.digest, key);
    checkAbort();
    const jobOpts = (p: ((x: Progress) => void) | undefined): JobOptions => ({
      ...(signal ? { signal } : {}),
      ...(p ? { onProgress: p } : {}),
    });
    const tveccRef: IntegrityBlock['ecc'] =
      plan.kind === 'tvecc' ? { kind: 'tvecc', file: basename(files.tvecc) } : null;
    // Parity and the chunk tree read the written file (from the page cache) at the same time.
    const [ecc, block] = await Promise.all([
      writeParity(
        plan,
        files,
        tmpWeights,
        set,
        jobOpts(plan.kind === 'none' ? undefined : ph.next(dataBytes)),
      ),
      layout === 'tensorvault'
        ? buildIntegrityBlock(
            tmpWeights,
            w.headerLength,
            metadata,
            integrityHash,
            tveccRef,
            key,
            jobOpts(ph.next(dataBytes)),
          )
        : Promise.resolve(undefined),
    ]);
    const sidecar = sidecarOf(layout, files, { metadata, integrityHash, ...ecc }, block);
    const tmpSidecar = set.temp(sidecar.path);
    await writeTemp(tmpSidecar, sidecar.text);
    set.renames.push([basename(tmpSidecar), basename(sidecar.path)]);
    set.finals.add(sidecar.path);
    checkAbort();
    const deletes = sidecarFiles(files)
      .filter((f) => !set.finals.has(f))
      .map((f) => basename(f));
    await commitSet(files, { tensorvault_commit: 1, renames: set.renames, deletes });
    temps.length = 0;
    options.onProgress?.({ bytesDone: dataBytes * passes, bytesTotal: dataBytes * passes });
    publish({
      event: 'saved',
      path: files.weights,
      layout,
      bytes: w.size,
      ecc: ecc.eccName,
      keyed: key !== undefined,
      ms: performance.now() - t0,
    });
    return {
      path: files.weights,
      layout,
      files: [...set.finals],
      byteLength: w.size,
      integrityHash,
      metadata,
      ecc: ecc.eccName,
      ...(block !== undefined && layout !== 'pyfolds-ecc' ? { integrity: block } : {}),
    };
  } catch (err) {
    for (const t of temps) await fsp.rm(t, { force: true }).catch(() => {});
    publish({
      event: 'failed',
      op: 'save',
      path: files.weights,
      code: err instanceof TensorVaultError ? err.code : 'TV_INTERNAL',
      ms: performance.now() - t0,
    });
    if (err instanceof TensorVaultError) throw err;
    throw ioError(err, path, 'cannot save checkpoint');
  } finally {
    lock.release();
  }
}
