/** The pieces of a checkpoint save: the parity plan, the weights and their digest, the parity, the integrity block and the sidecar. */
import { execFile } from 'node:child_process';
import { constants, promises as fsp, statSync } from 'node:fs';
import { basename } from 'node:path';
import { type ErasureProtectionLevel, protect } from '../ecc/erasure';
import { eccFromName, eccFromProtection, RsCodec } from '../ecc/rs255';
import { ErrorCode, invalidArgument, TensorVaultError } from '../errors';
import { sha256 } from '../hash/index';
import { writableTarget } from '../io/atomic';
import { closeQuietly } from '../io/fs';
import { type JobOptions, type Progress, runJob } from '../job';
import { native } from '../native';
import { openSafetensors } from '../safetensors/reader';
import { entriesOf, prepare, saveSafetensors, type TensorsToSave } from '../safetensors/writer';
import { optionsObject, utf8Exact } from '../validate';
import {
  CHECKPOINT_CHUNK_SIZE,
  type CheckpointLayout,
  checkpointFiles,
  codePointCompare,
  type HmacKey,
  hashDtypeLabel,
  type IntegrityBlock,
  integrityAlgorithm,
  LAYOUTS,
  pyfoldsDigest,
  pyfoldsDigestOfFile,
  pythonShape,
  sealOf,
  type TreeHash,
  type TveccLevel,
  torchDtype,
  treeRoot,
} from './layout';
import type { CheckpointEcc, SaveCheckpointOptions, saveCheckpoint } from './save';

/** The environment variable PyFolds reads its HMAC key from (honoured by save and load). */
export const PYFOLDS_HMAC_ENV = 'PYFOLDS_CHECKPOINT_HMAC_KEY';

export type EccPlan =
  | { kind: 'none' }
  | { kind: 'rs'; codec: RsCodec }
  | { kind: 'tvecc'; level?: ErasureProtectionLevel; k?: number; m?: number; chunkSize?: number };

export function isOff(level: string): boolean {
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

export const gitCache = new Map<string, Promise<string>>();

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
    // A lone surrogate would become U+FFFD in UTF-8: two different keys would sign alike.
    if (typeof option === 'string') utf8Exact('hmacKey', option, 'hmacKey');
    return option;
  }
  const env = process.env[PYFOLDS_HMAC_ENV];
  return env === undefined || env === '' ? undefined : env;
}

export function checkJsonObject(v: unknown, name: string): Record<string, unknown> {
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

/** @internal Write `data` to a fresh temporary file (O_EXCL) and fsync it. */
export async function writeTemp(path: string, data: Uint8Array | string): Promise<void> {
  const fh = await fsp.open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await closeQuietly(fh);
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
    await closeQuietly(src);
    await closeQuietly(dst);
  }
  return total;
}

/** The tree hash of new saves (`blake3-tree-v1`; `sha256-tree-v1` files are still read). */
export const NEW_TREE: TreeHash = 'blake3';

/**
 * Leaves (hex, concatenated) of chunks `[first, first + count)` of `path` at the checkpoint's chunk
 * size, read and hashed in parallel on the pool; a chunk past the end of the file is 64 `-`.
 */
export function fileLeaves(
  path: string,
  tree: TreeHash,
  first: number,
  count: number,
  options: JobOptions = {},
  chunkSize = CHECKPOINT_CHUNK_SIZE,
): Promise<string> {
  return runJob('checkpointLeaves', options, (control) =>
    native().checkpointChunkLeaves(path, chunkSize, first, count, tree, control),
  );
}

export function bytesOf(d: ArrayBufferView | ArrayBuffer): Uint8Array {
  return d instanceof ArrayBuffer ? new Uint8Array(d) : new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

/**
 * Progress over several phases of known sizes (some run at the same time), reported as one count: the
 * sum of each phase's bytes done, so it never goes backwards.
 */
export function phases(onProgress: ((p: Progress) => void) | undefined, total: number) {
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
    await closeQuietly(fh);
  }
}

/** @internal Build the integrity block of a finished weights file. */
export async function buildIntegrityBlock(
  weights: string,
  headerLength: number,
  metadata: unknown,
  integrityHash: string | Promise<string>,
  ecc: IntegrityBlock['ecc'],
  key: HmacKey | undefined,
  options: JobOptions,
): Promise<IntegrityBlock> {
  const length = statSync(weights).size;
  const leaves = await fileLeaves(weights, NEW_TREE, 0, Math.ceil(length / CHECKPOINT_CHUNK_SIZE), options);
  if (leaves.includes('-')) {
    throw new TensorVaultError(ErrorCode.FILE_CHANGED, `${weights} changed while it was hashed`, {
      path: weights,
    });
  }
  const root = treeRoot(leaves, CHECKPOINT_CHUNK_SIZE, length, NEW_TREE);
  const partial = {
    integrity: 1 as const,
    algorithm: integrityAlgorithm(NEW_TREE, key !== undefined),
    chunk_size: CHECKPOINT_CHUNK_SIZE,
    file_length: length,
    header_length: headerLength,
    header_sha256: await headerDigest(weights, headerLength),
    root,
    ecc,
  };
  return { ...partial, leaves, seal: sealOf(partial, metadata, await integrityHash, key) };
}

/** The checked arguments of {@link saveCheckpoint}. */
export function checkSaveArgs(path: string, tensors: TensorsToSave, options: SaveCheckpointOptions) {
  optionsObject(options);
  const layout = options.layout ?? 'tensorvault';
  if (!LAYOUTS.includes(layout)) {
    throw invalidArgument('layout', `layout must be one of ${LAYOUTS.join(', ')}`, {
      actual: String(layout),
    });
  }
  // A symlink is followed (a dangling one, a folder or a device refused): the set goes beside the file it names.
  const files = checkpointFiles(typeof path === 'string' && path !== '' ? writableTarget(path) : path);
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

export type Prepared = ReturnType<typeof prepare>;

/**
 * Write the weights to `tmpWeights`. Tensors held in memory are hashed (PyFolds framing, on the libuv
 * pool) while the pool writes them; streamed sources are hashed from the written file afterwards:
 * `digest` is then still running when this resolves (on the pool), so that the caller can read the
 * file for the parity and the tree at the same time.
 */
export async function writeWeights(
  tmpWeights: string,
  entries: ReturnType<typeof entriesOf>,
  prepared: Prepared,
  inMemory: boolean,
  ph: ReturnType<typeof phases>,
  dataBytes: number,
  signal: AbortSignal | undefined,
): Promise<{ size: number; headerLength: number; digest: Promise<string> }> {
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
          signal ? { signal } : {},
        )
      : Promise.resolve(undefined),
  ]);
  const file = await openSafetensors(tmpWeights);
  const headerLength = file.dataStart;
  const infos = file.infos();
  file.close();
  if (inputDigest !== undefined) {
    return { size: writeResult.byteLength, headerLength, digest: Promise.resolve(inputDigest) };
  }
  const hashProgress = ph.next(dataBytes);
  const digest = pyfoldsDigestOfFile(tmpWeights, infos, signal ? { signal } : {});
  return {
    size: writeResult.byteLength,
    headerLength,
    digest: digest.then((d) => {
      hashProgress?.({ bytesDone: dataBytes, bytesTotal: dataBytes });
      return d;
    }),
  };
}

/** The files of the new set as they are written: temp → final renames, and the finals. */
export interface NewSet {
  renames: [string, string][];
  finals: Set<string>;
  temp: (final: string) => string;
}

/** Write the parity the plan asks for next to the weights; returns its name and (rs) length. */
export async function writeParity(
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

/**
 * The protection level a `.tvecc` plan records in the integrity block's `ecc` member (outside the seal;
 * see {@link TveccLevel}), so that a repair can write a lost sidecar anew: the preset, or the custom
 * parameters (the sidecar `protect` then writes is byte-identical to the save's).
 */
export function tveccLevelOf(plan: EccPlan): TveccLevel | undefined {
  if (plan.kind !== 'tvecc') return undefined;
  if (plan.k !== undefined) return { k: plan.k, m: plan.m as number, chunk_size: plan.chunkSize as number };
  return plan.level ?? 'medium';
}

/**
 * The metadata sidecar of the layout: PyFolds's fields, plus the integrity block (tensorvault layout),
 * whose `ecc` member also gets the parity's `level` (unsealed) when there is one.
 */
export function sidecarOf(
  layout: CheckpointLayout,
  files: ReturnType<typeof checkpointFiles>,
  fields: { metadata: Record<string, unknown>; integrityHash: string; eccName: string; eccLen: number },
  block: IntegrityBlock | undefined,
  level?: TveccLevel,
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
  if (block !== undefined) {
    doc.tensorvault =
      block.ecc !== null && level !== undefined ? { ...block, ecc: { ...block.ecc, level } } : block;
  }
  return { path: files.meta, text: JSON.stringify(doc, null, 2) };
}

/** What the native save pass returns (see `crates/tensorvault-core/src/checkpoint.rs`). */
export interface NativeSaveResult {
  fileLength: number;
  headerLength: number;
  headerSha256: string;
  pyfoldsDigest: string;
  leaves: string;
  root: string;
  ecc?: { k: number; m: number; chunkSize: number } | null;
  /** Whether the outboard asked for was written (`outboard` of {@link saveNative}). */
  outboard: boolean;
  /** When each phase of the native pass ended, ms since it started. */
  phases?: { name: string; ms: number }[];
}

/** Progress of a native job rescaled to `units` (the caller's count for the passes it covers). */
function scaled(
  onProgress: ((p: Progress) => void) | undefined,
  units: number,
): ((p: Progress) => void) | undefined {
  if (onProgress === undefined) return undefined;
  return (p) =>
    onProgress({
      bytesDone: p.bytesTotal > 0 ? Math.min(units, Math.floor((p.bytesDone * units) / p.bytesTotal)) : 0,
      bytesTotal: units,
    });
}

/**
 * The single save pass (tensors in memory): the addon writes `tmpWeights` (O_EXCL) and, over the same
 * bytes and at the same time, computes the PyFolds digest (one SHA-256 in PyFolds's order and framing),
 * the chunk tree (`tree`) and the `.tvecc` parity (`tvecc`: the wide code is encoded from the buffers
 * while the file is written, its sidecar finished once the write ends; the striped code of small files
 * reads the written file while it is fsynced), and with `outboard` (a BLAKE3 tree) the outboard from
 * the same hashing as the leaves (`outboard.ts`). Progress is reported as `units` over the whole job.
 */
export async function saveNative(
  tmpWeights: string,
  prepared: Prepared,
  tree: TreeHash | 'none',
  tvecc: { sidecar: string; plan: Extract<EccPlan, { kind: 'tvecc' }> } | undefined,
  units: number,
  options: JobOptions,
  outboard?: string,
): Promise<NativeSaveResult> {
  const order = prepared.map((_, i) => i);
  order.sort((a, b) =>
    codePointCompare((prepared[a] as Prepared[number]).name, (prepared[b] as Prepared[number]).name),
  );
  const onProgress = scaled(options.onProgress, units);
  const ecc =
    tvecc === undefined
      ? undefined
      : {
          sidecar: tvecc.sidecar,
          ...(tvecc.plan.k !== undefined
            ? { k: tvecc.plan.k, m: tvecc.plan.m as number, chunkSize: tvecc.plan.chunkSize as number }
            : { level: tvecc.plan.level ?? 'medium' }),
        };
  return runJob(
    'checkpointSave',
    { ...(options.signal ? { signal: options.signal } : {}), ...(onProgress ? { onProgress } : {}) },
    (control) =>
      native().checkpointSaveWeights(
        tmpWeights,
        prepared.map((t) => t.name),
        prepared.map((t) => t.dtype),
        prepared.map((t) => t.shape),
        prepared.map((t) => bytesOf(t.data as ArrayBufferView | ArrayBuffer)),
        prepared.map((t) => `${t.name}${hashDtypeLabel(t.dtype)}${pythonShape(t.shape)}`),
        {
          chunkSize: CHECKPOINT_CHUNK_SIZE,
          tree,
          hashOrder: order,
          ...(ecc ? { ecc } : {}),
          ...(outboard !== undefined && tree === 'blake3' ? { outboard } : {}),
        },
        control,
      ),
  );
}

/** The integrity block of a weights file from the native pass's digests (no re-read of the file). */
export function integrityBlockOf(
  r: NativeSaveResult,
  metadata: unknown,
  integrityHash: string,
  ecc: IntegrityBlock['ecc'],
  key: HmacKey | undefined,
): IntegrityBlock {
  // The root is recomputed from the leaves here: the format's own check, done before anything is written.
  const root = treeRoot(r.leaves, CHECKPOINT_CHUNK_SIZE, r.fileLength, NEW_TREE);
  if (root !== r.root) {
    throw new TensorVaultError(ErrorCode.INTERNAL, 'chunk-tree root does not match its leaves', {});
  }
  const partial = {
    integrity: 1 as const,
    algorithm: integrityAlgorithm(NEW_TREE, key !== undefined),
    chunk_size: CHECKPOINT_CHUNK_SIZE,
    file_length: r.fileLength,
    header_length: r.headerLength,
    header_sha256: r.headerSha256,
    root,
    ecc,
  };
  return { ...partial, leaves: r.leaves, seal: sealOf(partial, metadata, integrityHash, key) };
}
