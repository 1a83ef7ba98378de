import { fstatSync, realpathSync } from 'node:fs';
import { dirname, isAbsolute, relative as relativePath, resolve as resolvePath, sep } from 'node:path';
import { ErrorCode, invalidArgument, TensorVaultError, throwIfAborted } from '../errors';
import { settleClosedMappings } from '../io/mappings';
import { type JobOptions, withoutSignal } from '../job';
import type { NativeSafetensors } from '../native/binding';
import { loadRemoteCheckpoint, type RemoteCheckpoint, type RemoteLoadOptions } from '../remote/lazy';
import { isRemoteUrl, type RemoteUrl } from '../remote/url';
import { type SafetensorsFile, wrapNativeFile } from '../safetensors/reader';
import { optionsObject } from '../validate';
import { publish, settleCommit, unlessRaced } from './commit';
import { WeightsFd } from './descriptor';
import { CheckpointMismatchError } from './errors';
import {
  checkSeal,
  checkSealMessage,
  headerMatches,
  mergeReport,
  openPair,
  verifyWhole,
  wrongKey,
} from './integrity';
import { checkpointFiles, type HmacKey, parseStoredHash } from './layout';
import { Checkpoint } from './lazy';
import {
  type CheckpointReport,
  checkKeyPolicy,
  checkOptions,
  closeOpened,
  compareExpect,
  hasMismatch,
  invalid,
  type LoadCheckpointOptions,
  type Parsed,
  parseCheckpoint,
  readJson,
  type VerifyMode,
} from './parse';
import { underLock } from './repair-lock';
import { rsCheck } from './rs';
import { tensorsOverlapping } from './tree-check';
import type { VerifyCheckpointOptions } from './verify';

/** Check the tensors against `expect`: a mismatch throws, or is recorded in the report with `strict: false`. */
function applyExpect(
  file: SafetensorsFile,
  options: Pick<LoadCheckpointOptions, 'expect' | 'strict'>,
  path: string,
  report: CheckpointReport,
): void {
  if (options.expect === undefined) return;
  const m = compareExpect(file.infos(), options.expect);
  if (!hasMismatch(m)) return;
  if (options.strict !== false) throw new CheckpointMismatchError(path, m);
  report.mismatches = m;
}

/**
 * {@link verifyWhole}, merged into `report`. A repair maps the replaced file again; the descriptor is
 * then reopened so that it follows the new file. Returns the file and descriptor to use from now on.
 */
async function verifyAndFollow(
  p: Parsed,
  open: { file: SafetensorsFile; fd: WeightsFd },
  key: HmacKey | undefined,
  repair: boolean,
  options: JobOptions,
  report: CheckpointReport,
  ino?: number,
  checkParity = false,
): Promise<{ file: SafetensorsFile; fd: WeightsFd; why?: string | undefined }> {
  const r = await verifyWhole(p, open.file, key, repair, options, ino, checkParity);
  let fd = open.fd;
  if (r.file !== open.file) {
    fd.close();
    fd = new WeightsFd(r.file);
  }
  mergeReport(report, r.report);
  return { file: r.file, fd, why: r.why };
}

// Over 100 lines on purpose: the checks run in the contract's order (recovery, key policy, version,
// expectations, seal/header, bytes) with one failure-telemetry path; each check is a helper in parse/integrity.
/**
 * Load the checkpoint whose weights are at `path`, detecting its layout (`tensorvault`, `pyfolds`,
 * `pyfolds-ecc`). Checks the key policy (`requireHmac`), the version, the tensors against `expect`
 * (every difference listed), the seal and header (tensorvault layout), then the bytes as `verify`
 * says: `lazy` (default; each tensor when first viewed), `full` (everything now, repairing from parity
 * with `repair`), `none`. An interrupted save is rolled forward (or its leftovers removed) first.
 * An `s3://bucket/prefix/NAME.safetensors` (or `file://`) URL of a pushed checkpoint is loaded lazily
 * with ranged requests instead (a {@link RemoteCheckpoint}; README "Remote").
 */
export function loadCheckpoint(url: RemoteUrl, options?: RemoteLoadOptions): Promise<RemoteCheckpoint>;
export function loadCheckpoint(path: string, options?: LoadCheckpointOptions): Promise<Checkpoint>;
export async function loadCheckpoint(
  path: string,
  options: LoadCheckpointOptions = {},
): Promise<Checkpoint | RemoteCheckpoint> {
  // `s3://…` and `file://…`: a lazy remote load (src/remote/lazy.ts), ranged reads into a local cache.
  if (isRemoteUrl(path)) return loadRemoteCheckpoint(path, options);
  // A full load takes long enough to meet another process's save of the set: retried when it did.
  if (options?.verify === 'full') return unlessRaced(path, () => loadLocal(path, options, false));
  return loadLocal(path, options, false);
}

/**
 * {@link loadCheckpoint} of a local checkpoint; `checkParity` (repairCheckpoint) also checks, and with
 * `repair` rebuilds, the `.tvecc` parity of a full verification (see `parityCheck`).
 */
async function loadLocal(
  path: string,
  options: LoadCheckpointOptions,
  checkParity: boolean,
): Promise<Checkpoint> {
  const t0 = performance.now();
  const { mode, key, requireHmac } = checkOptions(options);
  const repair = options.repair ?? true;
  throwIfAborted(options.signal, 'The operation was aborted before it started');
  // Closed checkpoints whose views were collected are unmapped on a turn of the event loop (see
  // settleClosedMappings): a loop of loads that never yields gets one every ORPHAN_STEP of them.
  const settling = settleClosedMappings();
  if (settling !== undefined) await settling;
  // A save of this set that has committed and is still applying its renames (this process's own, say,
  // in a CheckpointManager) is waited for without blocking the event loop.
  await settleCommit(checkpointFiles(path), options.signal);
  let p: Parsed;
  let repairedAtOpen = false;
  let rebuiltAtOpen: number[] = [];
  let damagedAtOpen: string[] = [];
  let sealed = false;
  let opened: Parsed['opened'];
  try {
    // lazy and full loads open the weights in the same step when they can (see Parsed.opened).
    p = parseCheckpoint(path, mode === 'none' ? undefined : { keyedOnly: requireHmac, key });
    opened = p.opened;
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
    // The seal now; the header digest and length once the weights are mapped (headerMatches), or, when
    // they differ or the file does not open, by checkSeal below (repair from parity, or the error).
    sealed = p.block !== undefined && (p.sealChecked === true || checkSealMessage(p, key));
  } catch (err) {
    closeOpened(opened);
    publish({
      event: 'failed',
      op: 'load',
      path,
      code: err instanceof TensorVaultError ? err.code : 'TV_INTERNAL',
    });
    throw err;
  }
  let file: SafetensorsFile;
  // The mapped file's own descriptor, for reads beside the views: made here by the step-by-step path
  // and for a full verify; a lazy load on the fast path leaves it to the checkpoint's first read.
  let fd: WeightsFd | undefined;
  // Opened by the fast path: the header (by its digest or the outboard's pieces) and length already
  // matched the block.
  const pre = opened !== undefined && sealed ? openedPair(p, opened.file) : undefined;
  const outboard = pre === undefined ? undefined : (opened?.outboard ?? undefined);
  if (pre === undefined) closeOpened(opened);
  try {
    let pair: { file: SafetensorsFile; fd: WeightsFd | undefined } | undefined;
    try {
      pair = pre ?? (await openPair(p.weights, options.signal));
    } catch (err) {
      if (!sealed || !(err instanceof TensorVaultError) || err.code === ErrorCode.ABORTED) throw err;
    }
    if (sealed && pre === undefined && (pair === undefined || !headerMatches(p, pair.file))) {
      if (pair !== undefined) {
        pair.file.close();
        pair.fd?.close();
      }
      const rebuilt = await checkSeal(p, key, repair && mode !== 'none', options);
      repairedAtOpen = rebuilt !== undefined;
      rebuiltAtOpen = rebuilt?.chunks ?? [];
      pair = await openPair(p.weights, repairedAtOpen ? undefined : options.signal);
      // The repaired header names the tensors again: those in the bytes the parity rebuilt.
      if (rebuilt !== undefined) damagedAtOpen = tensorsOverlapping(pair.file, rebuilt.spans);
    }
    ({ file, fd } = pair as { file: SafetensorsFile; fd: WeightsFd | undefined });
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
    let refused = false;
    const r = await underLock(p, undefined, () => rsCheck(p, key, true, options), options.signal).catch(
      (e: unknown) => {
        refused = e instanceof TensorVaultError && e.code === ErrorCode.ECC_REPAIR_FAILED;
        return undefined;
      },
    );
    if (r === undefined || !r.rewritten) {
      // The repaired copy matched no keyed hash: the key, as verifyCheckpoint reports it.
      if (refused && p.stored.kind === 'hmac-sha256' && key !== undefined) throw wrongKey(p, 'rs', []);
      throw err;
    }
    repairedAtOpen = true;
    publish({ event: 'repaired', path: p.files.weights, part: 'header', blocks: r.badBlocks });
    ({ file, fd } = await openPair(p.weights));
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
    damagedTensors: damagedAtOpen,
    damagedChunks: [...rebuiltAtOpen],
    unreadableChunks: [],
    repairedChunks: [...rebuiltAtOpen],
  };
  // No byte past the header (no tensors, or only zero-size ones): the open matched the header and the
  // length against the sealed block, which is every byte of the file. A lazy load has nothing more to
  // check, and no view would ever mark a chunk verified (it stayed `unverified` forever).
  if (
    mode === 'lazy' &&
    sealed &&
    report.status === 'unverified' &&
    p.block !== undefined &&
    p.block.file_length === p.block.header_length
  ) {
    report.status = 'intact';
  }
  try {
    applyExpect(file, options, p.files.weights, report);
    if (mode === 'full') {
      fd ??= new WeightsFd(file);
      const r = await verifyAndFollow(
        p,
        { file, fd },
        key,
        repair,
        // A header repaired at open has changed the weights: the full check after it runs to its end.
        repairedAtOpen ? withoutSignal(options) : options,
        report,
        fstatSync(fd.fd).ino,
        checkParity,
      );
      ({ file, fd } = r);
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
        bytes: file.fileLength,
        mode,
        ms: performance.now() - t0,
      });
    }
  } catch (err) {
    file.close();
    fd?.close();
    outboard?.close();
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
  // The fast path checked the header through the outboard's pieces: they count as verified while the
  // file is the one it mapped (not after a repair at open replaced it).
  const headerPieces = pre !== undefined && file === pre.file ? (opened?.headerPieces ?? 0) : 0;
  return new Checkpoint(p, file, fd, report, key, repair, outboard, headerPieces);
}

/**
 * The fast path's weights as the loader's pair, without a descriptor yet (the checkpoint duplicates
 * the mapped file's own when it first reads beside the views); undefined when they cannot be wrapped.
 */
function openedPair(
  p: Parsed,
  handle: NativeSafetensors,
): { file: SafetensorsFile; fd: WeightsFd | undefined } | undefined {
  try {
    return { file: wrapNativeFile(p.weights, handle), fd: undefined };
  } catch {
    return undefined;
  }
}

/** Options of {@link verifyCheckpoint}. */
/**
 * Repair the checkpoint at `path` from its parity (tvecc sidecar or rs(N) stream), replacing damaged
 * files atomically and re-verifying; damaged parity (of either) is rebuilt from the verified weights.
 * Resolves with the report (`intact`, `repaired`); rejects with `TV_CHECKPOINT_INTEGRITY` when the
 * damage is beyond the parity or there is none (or the `.tvecc` sidecar is unusable: `parity`).
 */
export async function repairCheckpoint(
  path: string,
  options: VerifyCheckpointOptions = {},
): Promise<CheckpointReport> {
  optionsObject(options);
  const full = { ...options, verify: 'full' as const, repair: true };
  const ckpt = isRemoteUrl(path)
    ? await loadCheckpoint(path, full)
    : await unlessRaced(path, () => loadLocal(path, full, true));
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
  optionsObject(options);
  const { key, requireHmac } = checkOptions({ ...options, verify: 'full' });
  const doc = readJson(manifestPath);
  const wf = doc.weight_file;
  if (typeof wf !== 'string' || wf.length === 0)
    throw invalid(manifestPath, 'weight_file', 'weight_file must be a non-empty string');
  const dir = resolvePath(dirname(manifestPath));
  const weights = resolvePath(dir, wf);
  // Outside: a path that climbs out (`..` as a whole component: `..in.safetensors` is a name in the
  // folder), checked on the names as written and again on the real paths, so that a symbolic link
  // in the folder cannot lead out of it.
  const outside = (from: string, to: string): boolean => {
    const rel = relativePath(from, to);
    return rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel);
  };
  const real = (p: string): string | undefined => {
    try {
      return realpathSync(p);
    } catch {
      return undefined; // a missing file fails when it is opened
    }
  };
  const realDir = real(dir);
  const realWeights = real(weights);
  if (
    options.allowOutsideFolder !== true &&
    (isAbsolute(wf) ||
      outside(dir, weights) ||
      (realDir !== undefined && realWeights !== undefined && outside(realDir, realWeights)))
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
    unreadableChunks: [],
    repairedChunks: [],
  };
  try {
    applyExpect(file, options, weights, report);
    if (hasHash) {
      ({ file, fd } = await verifyAndFollow(p, { file, fd }, key, false, options, report));
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
    fd.close();
    throw err;
  }
  return new Checkpoint(p, file, fd, report, key, false);
}

export { Checkpoint } from './lazy';
export type { CheckpointReport, ExpectedTensor, LoadCheckpointOptions, VerifyMode } from './parse';
