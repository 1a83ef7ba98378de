/**
 * Verifying a checkpoint read-only (`verifyCheckpoint`): every byte against the integrity block or the
 * PyFolds hash, the parity's own state, and what a repair could do, without writing anything.
 */
import { ErrorCode, TensorVaultError } from '../errors';
import { openSafetensors, type SafetensorsFile } from '../safetensors/reader';
import { optionsObject } from '../validate';
import { publish, settleCommit, unlessRaced } from './commit';
import { checkSeal, mergeReport, verifyWhole, wrongKey } from './integrity';
import { checkpointFiles, type HmacKey } from './layout';
import { askParity } from './parity';
import {
  type CheckpointReport,
  checkKeyPolicy,
  checkOptions,
  type LoadCheckpointOptions,
  type Parsed,
  parseCheckpoint,
} from './parse';
import { rethrownByParity } from './repair-lock';
import { correctionVerifies, rsCheck } from './rs';
import { headerDamage } from './tree-check';

export type VerifyCheckpointOptions = Pick<
  LoadCheckpointOptions,
  'hmacKey' | 'requireHmac' | 'signal' | 'onProgress'
>;

/**
 * Verify every byte of the checkpoint at `path`, read-only. Resolves with the report: `intact`,
 * `repairable` (damage that its parity can repair; see `damagedChunks`, and `parity`/`damagedParity`
 * for the `.tvecc` sidecar's own state, checked too) or `damaged`. Rejects for a checkpoint that cannot
 * be read at all (missing, malformed sidecar, key policy, tampered seal).
 */
export async function verifyCheckpoint(
  path: string,
  options: VerifyCheckpointOptions = {},
): Promise<CheckpointReport> {
  optionsObject(options);
  if (typeof path === 'string' && path.length > 0) return unlessRaced(path, () => verifyOnce(path, options));
  return verifyOnce(path, options);
}

async function verifyOnce(path: string, options: VerifyCheckpointOptions): Promise<CheckpointReport> {
  const t0 = performance.now();
  const { key, requireHmac } = checkOptions({ ...options, verify: 'full' });
  await settleCommit(checkpointFiles(path), options.signal);
  const p = parseCheckpoint(path);
  checkKeyPolicy(p, key, requireHmac, 'full');
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
    unreadableChunks: [],
    repairedChunks: [],
  };
  let file: SafetensorsFile;
  try {
    // The seal (a tampered one rejects), then the header digest and length against the block.
    if (p.block !== undefined) await checkSeal(p, key, false);
    file = await openSafetensors(p.weights);
  } catch (err) {
    if (!damagedHeader(p, err)) throw err;
    await verifyDamagedHeader(p, key, options, report);
    publish({
      event: 'damaged',
      path: p.files.weights,
      layout: p.layout,
      part: 'header',
      status: report.status,
      chunks: report.damagedChunks,
      unreadableChunks: report.unreadableChunks,
      ms: performance.now() - t0,
    });
    return report;
  }
  try {
    const r = await verifyWhole(p, file, key, false, options, undefined, true);
    mergeReport(report, r.report);
    if (report.status === 'damaged' && report.parity !== 'unusable') {
      // Would the parity repair it? Ask the parity without changing anything.
      if (p.tvecc !== undefined) {
        try {
          await askParity(p.weights, p.tvecc, report, {});
        } catch (err) {
          // A missing or unreadable sidecar cannot repair the damage: the report says so (it rejected
          // with the sidecar's error, TV_NOT_FOUND for a deleted one).
          if (rethrownByParity(err)) throw err;
          report.parity = 'unusable';
          report.damagedParity = [];
        }
      } else if (p.rs !== undefined && r.repairable === true) {
        // The rs(N) parity corrects every damaged block, and the correction matches the hash (judged
        // by verifyWhole as the repair judges its repaired copy).
        report.status = 'repairable';
      }
    }
    publish({
      event: report.status === 'intact' ? 'verified' : 'damaged',
      path: p.files.weights,
      layout: p.layout,
      status: report.status,
      chunks: report.damagedChunks,
      tensors: report.damagedTensors,
      unreadableChunks: report.unreadableChunks,
      ms: performance.now() - t0,
    });
    return report;
  } finally {
    file.close();
  }
}

/**
 * Whether `err`, from the seal-and-header check or the open of {@link verifyCheckpoint}, is damage to
 * the weights' header or length (not a tampered seal, a missing file or an I/O error): the header or
 * length differs from the sealed block (tensorvault), or the header does not parse (PyFolds layouts,
 * whose header nothing seals).
 */
function damagedHeader(p: Parsed, err: unknown): boolean {
  if (!(err instanceof TensorVaultError)) return false;
  if (p.block !== undefined)
    return err.code === ErrorCode.CHECKPOINT_INTEGRITY && err.context.reason === 'header';
  return err.code === ErrorCode.SAFETENSORS_INVALID;
}

/**
 * {@link verifyCheckpoint} of weights whose header is damaged (see {@link damagedHeader}), read-only:
 * `repairable` when the parity can restore the header and length (what `repairCheckpoint` then does),
 * `damaged` otherwise. tensorvault layout: the chunk tree lists every damaged chunk, the `.tvecc`
 * sidecar says whether it repairs them all; pyfolds-ecc: the rs(N) blocks. The tensors cannot be named
 * (their offsets are in the damaged header).
 */
async function verifyDamagedHeader(
  p: Parsed,
  key: HmacKey | undefined,
  options: VerifyCheckpointOptions,
  report: CheckpointReport,
): Promise<void> {
  report.status = 'damaged';
  const job = options.signal ? { signal: options.signal } : {};
  // Errors about the machine or the call (I/O, abort) reject; any other error of the parity means it
  // cannot repair the damage.
  if (p.block !== undefined) {
    const unreadable: number[] = [];
    report.damagedChunks = await headerDamage(p, p.block, options, unreadable);
    report.unreadableChunks = unreadable;
    if (p.tvecc === undefined) return;
    try {
      await askParity(p.weights, p.tvecc, report, job);
    } catch (err) {
      if (rethrownByParity(err)) throw err;
      report.parity = 'unusable';
      report.damagedParity = [];
    }
  } else if (p.rs !== undefined) {
    let refused: number[] | undefined;
    try {
      const rs = await rsCheck(p, key, false, job);
      report.damagedChunks = rs.badBlocks;
      if (rs.badBlocks.length > 0 && rs.uncorrectable.length === 0 && rs.dataChanged) {
        // `repairable` only for a correction the repair accepts (it matches the hash).
        if (await correctionVerifies(p, key, rs, job)) report.status = 'repairable';
        else refused = rs.badBlocks;
      }
    } catch (err) {
      if (rethrownByParity(err)) throw err;
    }
    // A keyed hash that matches neither the bytes nor their correction: the key, as verifyWhole says.
    if (refused !== undefined && p.stored.kind === 'hmac-sha256' && key !== undefined)
      throw wrongKey(p, 'rs', refused);
  }
}
