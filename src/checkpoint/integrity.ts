/** Whole-file checks and repairs of a checkpoint set: the seal and header, the chunk tree, the parity, all under the set's lock. */
import { existsSync, promises as fsp, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { type EccVerifyResult, repair as eccRepair, verify as eccVerify, protect } from '../ecc/erasure';
import { ErrorCode, TensorVaultError } from '../errors';
import { tempName } from '../io/atomic';
import { fsyncDir, ioError } from '../io/fs';
import { type JobOptions, withoutSignal } from '../job';
import { openSafetensors, type SafetensorsFile } from '../safetensors/reader';
import { lockSetAsync, publish } from './commit';
import {
  equalHex,
  type HmacKey,
  type IntegrityBlock,
  isKeyedAlgorithm,
  leafAt,
  pyfoldsDigestOfFile,
  pyfoldsHashMatches,
  recordedTveccLevel,
  sealOf,
  type TveccLevel,
  treeHashOf,
} from './layout';
import { type CheckpointReport, type Parsed, readJson } from './parse';
import { chunkSpan, headerSha, type RsRepair, rsCheck } from './rs';
import { writeRsParity } from './save';
import { fileLeaves } from './write';

/**
 * Open the weights: the mapping, and a descriptor of the same file (for the chunk reads of lazy
 * verification), duplicated from the mapping's own so that both are the same file by construction.
 */

/**
 * Whether a repair's error is about the machine rather than the parity: the disk (full, failing
 * reads: `TV_IO`), permissions, a lock held by another writer. The damage may still be repairable,
 * so the error is reported as it is, not as damage beyond the parity.
 */
export function notAboutParity(err: unknown): boolean {
  return (
    err instanceof TensorVaultError &&
    (err.code === ErrorCode.IO ||
      err.code === ErrorCode.PERMISSION_DENIED ||
      err.code === ErrorCode.LOCKED ||
      replacedMeanwhile(err))
  );
}

/**
 * The refusal of {@link underLock}: the weights were replaced by a newer save since they were opened,
 * so nothing was repaired. It says nothing of the parity (the newer set is another checkpoint).
 */
export function replacedMeanwhile(err: unknown): boolean {
  return (
    err instanceof TensorVaultError &&
    err.code === ErrorCode.FILE_CHANGED &&
    (err.context as { reason?: unknown }).reason === 'replaced'
  );
}

/**
 * An error of a parity check to rethrow: about the machine or the call (not typed, an abort,
 * {@link notAboutParity}). Any other error of the parity means it cannot repair the damage.
 */
export function rethrownByParity(err: unknown): boolean {
  return !(err instanceof TensorVaultError) || err.code === ErrorCode.ABORTED || notAboutParity(err);
}
export async function openPair(
  path: string,
  signal?: AbortSignal,
): Promise<{ file: SafetensorsFile; fd: number }> {
  return pairOf(await openSafetensors(path, signal ? { signal } : {}));
}

/** An open file and a duplicate of its descriptor (see {@link openPair}); the file is closed if that fails. */
export function pairOf(file: SafetensorsFile): { file: SafetensorsFile; fd: number } {
  try {
    return { file, fd: file.dupFd() };
  } catch (err) {
    file.close();
    throw err;
  }
}

/** A path that names the open descriptor's file even if the path was replaced since (Linux). */
export function fdPath(fd: number, path: string): string {
  return process.platform === 'linux' ? `/proc/self/fd/${fd}` : path;
}

/**
 * Merge a later check's findings into a report. Chunk and tensor lists accumulate (a repair at open
 * stays listed after the full check that follows finds everything intact), and a `repaired` status
 * is not downgraded to `intact`.
 */
export function mergeReport(into: CheckpointReport, from: Partial<CheckpointReport>): void {
  const repairedBefore = into.status === 'repaired';
  const union = (a: readonly number[], b: readonly number[] | undefined) => [
    ...new Set([...a, ...(b ?? [])]),
  ];
  const damagedChunks = union(into.damagedChunks, from.damagedChunks);
  const unreadableChunks = union(into.unreadableChunks, from.unreadableChunks);
  const repairedChunks = union(into.repairedChunks, from.repairedChunks);
  Object.assign(into, from, { damagedChunks, unreadableChunks, repairedChunks });
  if (repairedBefore && into.status === 'intact') into.status = 'repaired';
}

/**
 * Run a repair (which replaces files) under the set's writer lock, after checking that the weights on
 * disk are still the file that was verified (`ino`): a newer save may have replaced them meanwhile, and
 * a repaired old file must never be renamed over a newer set (`TV_FILE_CHANGED`, `reason: 'replaced'`).
 * `signal` stops the wait for the lock.
 */
export async function underLock<T>(
  p: Parsed,
  ino: number | undefined,
  fn: () => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  const lock = await lockSetAsync(p.files, 30_000, signal);
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
          { path: p.files.weights, reason: 'replaced' },
        );
      }
    }
    return await fn();
  } finally {
    lock.release();
  }
}

// Over 100 lines on purpose: one pass per layout (tree, rs(N), PyFolds hash) sharing the report and the
// repair-then-recheck step; splitting it would pass half a dozen values between the pieces.
/**
 * Full verification of an open checkpoint (every layout): the chunk tree (tensorvault) or the rs(N)
 * blocks (pyfolds-ecc), then the PyFolds hash; with `repair`, damage is repaired from parity and the
 * file re-opened and re-checked. With `checkParity` (verifyCheckpoint, repairCheckpoint), the `.tvecc`
 * sidecar of verified tensorvault weights is checked too ({@link parityCheck}). Never throws for damage:
 * the report says `damaged` (with `why`). `options.signal` stops it only until a repair has changed
 * the weights or their parity: the re-checks after that run to their end (see {@link withoutSignal}).
 */
export async function verifyWhole(
  p: Parsed,
  file: SafetensorsFile,
  key: HmacKey | undefined,
  repair: boolean,
  options: JobOptions,
  ino?: number,
  checkParity = false,
): Promise<{ file: SafetensorsFile; report: Partial<CheckpointReport>; why?: string }> {
  const report: Partial<CheckpointReport> = {
    damagedChunks: [],
    unreadableChunks: [],
    repairedChunks: [],
    damagedTensors: [],
  };
  let status: CheckpointReport['status'] = 'intact';
  let parityDamaged = false;
  let rsSays: 'intact' | 'damage' | undefined;
  let f = file;
  // The options of each step: `options` until a repair has changed the files, then without the signal
  // (an abort after that point no longer rejects: the re-check runs to its end; see withoutSignal).
  let job: JobOptions = options;
  // The PyFolds hash of the file as it is now runs on the pool beside the tree check of the tensorvault
  // layout (two hashes over the same cached bytes at once: the sequential SHA-256 on one thread, the
  // tree's chunks on the others); it is dropped when the tree finds damage, and started again beside
  // the second tree check after a repair.
  let pending = p.layout === 'tensorvault' ? pyfoldsBeside(p.weights, f, options.signal) : undefined;
  try {
    if (p.layout === 'tensorvault') {
      const block = p.block as IntegrityBlock;
      const unreadable: number[] = [];
      let bad = await treeDamage(p, block, options, p.weights, unreadable);
      if (bad.length > 0) {
        pending?.drop();
        pending = undefined;
        report.damagedChunks = bad;
        report.unreadableChunks = unreadable;
        report.damagedTensors = tensorsIn(f, bad, block.chunk_size);
        publish({
          event: 'damaged',
          path: p.files.weights,
          chunks: bad,
          tensors: report.damagedTensors,
          unreadableChunks: unreadable,
        });
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
          const r = await underLock(
            p,
            ino,
            () =>
              eccRepair(p.weights, {
                sidecar,
                ...options,
                force: true,
                // The tree has just checked every byte: the parity needs to look only where it differed.
                ranges: bad.map((c) => [c * block.chunk_size, block.chunk_size] as const),
              }),
            options.signal,
          );
          job = withoutSignal(options);
          publish({
            event: 'repaired',
            path: p.files.weights,
            chunks: bad,
            eccChunks: r.repairedChunks,
            ms: performance.now() - t0,
          });
        } catch (err) {
          if (err instanceof TensorVaultError && err.code === ErrorCode.ABORTED) throw err;
          // A full disk, a read error, a lock: the repair could not run, which says nothing of the parity.
          if (notAboutParity(err)) throw err;
          return {
            file: f,
            report: { ...report, status: 'damaged' },
            why: `parity cannot repair it (${(err as TensorVaultError).code ?? 'error'})`,
          };
        }
        f.close();
        f = await openSafetensors(p.weights);
        pending = pyfoldsBeside(p.weights, f, job.signal);
        bad = await treeDamage(p, block, job);
        if (bad.length > 0)
          return {
            file: f,
            report: { ...report, status: 'damaged' },
            why: 'bytes still differ after repair',
          };
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
      // All syndromes zero, or only parity bytes differ: the rs(N) stream vouches for the data as they
      // are (evidence that a keyed hash which does not match has the wrong key; see below).
      if (r !== undefined) rsSays = r.uncorrectable.length === 0 && !r.dataChanged ? 'intact' : 'damage';
      if (r !== undefined && r.badBlocks.length > 0) {
        report.damagedChunks = r.badBlocks;
        publish({ event: 'damaged', path: p.files.weights, blocks: r.badBlocks });
        // Damage confined to the parity: rewritten below, once the data verify against the hash.
        if (r.uncorrectable.length > 0 || !r.dataChanged) parityDamaged = true;
        else if (repair) {
          try {
            const t0 = performance.now();
            const w = await underLock(p, ino, () => rsCheck(p, key, true, options), options.signal);
            job = withoutSignal(options);
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
    const digest =
      pending !== undefined
        ? await pending.digest
        : await pyfoldsDigestOfFile(p.weights, f.infos(), job.signal ? { signal: job.signal } : {});
    const ok = pyfoldsHashMatches(p.stored, digest, key);
    report.pyfoldsHash = ok ? 'ok' : 'mismatch';
    if (!ok) {
      let why = parityDamaged
        ? 'the integrity hash does not match and the rs(N) parity cannot repair it'
        : 'the integrity hash does not match';
      if (p.layout !== 'tensorvault') {
        report.damagedTensors = [...f.names];
        report.hashMismatch = 'damage';
        if (p.stored.kind === 'hmac-sha256' && key !== undefined && status !== 'repaired') {
          // A keyed hash: a wrong key looks exactly like damage, unless something else vouches for
          // the bytes. Nothing has been written (see rsCheck and the parity rewrite below).
          if (rsSays === 'intact') throw wrongKey(p, 'rs');
          const tvecc = await tveccSays(p, job);
          if (tvecc === 'intact') throw wrongKey(p, 'tvecc');
          if (rsSays === undefined && tvecc === undefined) {
            report.hashMismatch = 'damage-or-wrong-key';
            why = `${why}: damage and a wrong HMAC key cannot be told apart (the ${p.layout} layout keeps no other record of the bytes)`;
          }
        }
      }
      return { file: f, report: { ...report, status: 'damaged' }, why };
    }
    if (parityDamaged && p.rs !== undefined) {
      // The data verify; only the parity is damaged: rewrite it from the data, or say it can be.
      if (repair) {
        const rs = p.rs;
        await underLock(
          p,
          ino,
          async () => {
            const tmp = tempName(rs.path);
            try {
              await writeRsParity(p.weights, tmp, rs.codec, {});
              await fsp.rename(tmp, rs.path);
              await fsyncDir(dirname(rs.path));
            } finally {
              await fsp.rm(tmp, { force: true }).catch(() => {});
            }
          },
          options.signal,
        );
        job = withoutSignal(options);
        publish({ event: 'repaired', path: p.files.weights, part: 'parity' });
        report.repairedChunks = [...(report.damagedChunks ?? [])];
        status = 'repaired';
      } else status = 'repairable';
    }
    if (checkParity && p.layout === 'tensorvault' && p.tvecc !== undefined) {
      // The weights verify: now their parity, so that later damage stays repairable.
      const c = await parityCheck(p, repair, job, ino);
      report.parity = c.parity;
      report.damagedParity = c.damagedParity;
      if (c.rebuild === true) report.parityRebuild = true;
      if (c.parity === 'unusable')
        return {
          file: f,
          report: { ...report, status: 'damaged' },
          why: c.why ?? 'the .tvecc parity is unusable',
        };
      if (c.parity === 'repairable') status = 'repairable';
      if (c.parity === 'repaired') {
        status = 'repaired';
        job = withoutSignal(options);
        if (c.fileRewritten) {
          // The parity repair also rebuilt weights chunks (damaged since the tree check): check again.
          f.close();
          f = await openSafetensors(p.weights);
          if ((await treeDamage(p, p.block as IntegrityBlock, job)).length > 0)
            return {
              file: f,
              report: { ...report, status: 'damaged' },
              why: 'bytes still differ after repair',
            };
        }
      }
    }
    report.status = status;
    report.verifiedTensors = [...f.names];
    return { file: f, report };
  } finally {
    pending?.drop();
  }
}

/**
 * A PyFolds layout's keyed hash does not match, yet independent evidence says the bytes are intact:
 * `TV_CHECKPOINT_INTEGRITY` with `reason: 'key'` (the tensorvault layout reports a wrong key as the same
 * code, `reason: 'seal'`). `evidence`: `rs` (the rs(N) stream finds no damage in the data) or `tvecc`
 * (a `.tvecc` sidecar's chunk digests all match).
 */
function wrongKey(p: Parsed, evidence: 'rs' | 'tvecc'): TensorVaultError {
  const by =
    evidence === 'rs'
      ? 'the rs(N) parity finds no damage in the data'
      : 'every chunk digest of the .tvecc sidecar matches';
  return new TensorVaultError(
    ErrorCode.CHECKPOINT_INTEGRITY,
    `${p.files.weights}: the keyed integrity hash does not match, but the bytes are intact (${by}): the HMAC key is probably wrong (or the sidecar's integrity_hash was changed); nothing was repaired or written`,
    { path: p.files.weights, reason: 'key', evidence },
  );
}

/**
 * What a `.tvecc` sidecar next to PyFolds weights (`tensorvault protect`; a PyFolds save deletes an
 * older one) says of them, read-only: `intact` (every chunk digest matches, the length is the one
 * protected), `damage`, or undefined (no sidecar, or one that cannot be read: no evidence; an abort
 * or a machine error is rethrown).
 */
async function tveccSays(p: Parsed, options: JobOptions): Promise<'intact' | 'damage' | undefined> {
  const sidecar = `${p.weights}.tvecc`;
  if (!existsSync(sidecar)) return undefined;
  try {
    const v = await eccVerify(p.weights, { sidecar, ...(options.signal ? { signal: options.signal } : {}) });
    return v.damagedChunks.length === 0 && v.actualLength === v.layout.fileLength ? 'intact' : 'damage';
  } catch (err) {
    if (rethrownByParity(err)) throw err;
    return undefined;
  }
}

/** The `.tvecc` sidecar's own state in an erasure verify (its parity slots, header and table copies). */
export function sidecarState(v: EccVerifyResult): 'intact' | 'repairable' {
  const s = v.sidecar;
  const whole =
    s.headerA &&
    s.headerB &&
    s.tableABadBlocks.length === 0 &&
    s.tableBBadBlocks.length === 0 &&
    s.actualLength === s.expectedLength;
  return whole && v.damagedParity.length === 0 ? 'intact' : 'repairable';
}

/**
 * The `.tvecc` parity of tensorvault weights that have just verified against the sealed tree: an
 * erasure verify of the pair (it reads the weights again, hashing their chunks with the sidecar's
 * digest, and the whole sidecar). Damage confined to the sidecar (parity slots, header or table copies)
 * is `repairable`, and with `repair` rebuilt from the weights by the erasure repair (every data chunk
 * checked against its digest first) under the set's lock. A sidecar that is missing or unreadable, or
 * that finds damage in weights the tree found intact (not their parity), is `unusable`: it is never
 * used to write the weights.
 */
export async function parityCheck(
  p: Parsed,
  repair: boolean,
  options: JobOptions,
  ino: number | undefined,
): Promise<ParityOutcome> {
  const sidecar = p.tvecc as string;
  // Not options.onProgress: the tree check's progress already reached its total.
  const job = options.signal ? { signal: options.signal } : {};
  let v: EccVerifyResult;
  try {
    v = await eccVerify(p.weights, { sidecar, ...job });
  } catch (err) {
    if (rethrownByParity(err)) throw err;
    const code = (err as TensorVaultError).code;
    publish({ event: 'damaged', path: p.files.weights, part: 'parity', reason: code });
    // Missing, or unreadable (both header copies, or a table block in both copies, damaged).
    return rebuildOrUnusable(p, repair, job, ino, `the .tvecc parity cannot be read (${code})`);
  }
  const damagedParity = [...v.damagedParity];
  if (v.status === 'intact') return { parity: 'intact', damagedParity };
  publish({ event: 'damaged', path: p.files.weights, part: 'parity', parity: damagedParity });
  if (v.status !== 'repairable' || v.damagedChunks.length > 0 || v.actualLength !== v.layout.fileLength) {
    // The parity of other bytes (a save whose buffers changed while it was pending, a foreign sidecar):
    // never used to write these weights; rebuilt from them at the recorded level.
    return rebuildOrUnusable(
      p,
      repair,
      job,
      ino,
      'the .tvecc parity does not match the verified weights',
      damagedParity,
    );
  }
  if (!repair) return { parity: 'repairable', damagedParity };
  const t0 = performance.now();
  try {
    // No force: the data chunks matched their digests a moment ago; anything else is refused.
    const r = await underLock(p, ino, () => eccRepair(p.weights, { sidecar, ...job }), job.signal);
    publish({
      event: 'repaired',
      path: p.files.weights,
      part: 'parity',
      parity: damagedParity,
      ms: performance.now() - t0,
    });
    return { parity: 'repaired', damagedParity, fileRewritten: r.fileRewritten };
  } catch (err) {
    if (rethrownByParity(err)) throw err;
    const code = (err as TensorVaultError).code;
    if (code === ErrorCode.FILE_CHANGED) throw err;
    return { parity: 'unusable', damagedParity, why: `the .tvecc parity cannot be repaired (${code})` };
  }
}

/** What {@link parityCheck} found and did. */
interface ParityOutcome {
  parity: 'intact' | 'repairable' | 'repaired' | 'unusable';
  damagedParity: number[];
  fileRewritten?: boolean;
  /** The sidecar is (to be) written anew from the weights at its recorded level (report `parityRebuild`). */
  rebuild?: boolean;
  why?: string;
}

/**
 * A `.tvecc` sidecar that cannot serve the verified weights (`why`: missing, unreadable, or the parity
 * of other bytes): with the protection level the
 * `.meta.json` records (`tensorvault.ecc.level`, saves since it is written), `repairable`, and with
 * `repair` written anew from the weights ({@link rebuildTvecc}); without it, `unusable` (nothing tells
 * which parity to build; the runbook says how to protect the weights again by hand).
 */
async function rebuildOrUnusable(
  p: Parsed,
  repair: boolean,
  job: { signal?: AbortSignal },
  ino: number | undefined,
  why: string,
  damagedParity: number[] = [],
): Promise<ParityOutcome> {
  const level = levelInSidecar(p);
  if (level === undefined) {
    return {
      parity: 'unusable',
      damagedParity,
      why: `${why}; its protection level is not recorded (saved before the level was), so a repair cannot rebuild it: protect the weights again`,
    };
  }
  if (!repair) return { parity: 'repairable', damagedParity, rebuild: true };
  const t0 = performance.now();
  try {
    await rebuildTvecc(p, level, ino, job);
  } catch (err) {
    if (rethrownByParity(err)) throw err;
    const code = (err as TensorVaultError).code;
    if (code === ErrorCode.FILE_CHANGED) throw err;
    return { parity: 'unusable', damagedParity, why: `${why}; rebuilding it failed (${code})` };
  }
  publish({
    event: 'repaired',
    path: p.files.weights,
    part: 'parity',
    parity: damagedParity,
    rebuilt: true,
    ms: performance.now() - t0,
  });
  return { parity: 'repaired', damagedParity, rebuild: true };
}

/**
 * The `.tvecc` level recorded next to the sealed `ecc` member of the set's `.meta.json` (read again
 * here: the loader's fast path hands out only the sealed members), when it names this set's sidecar.
 */
export function levelInSidecar(p: Parsed): TveccLevel | undefined {
  let ecc: unknown;
  try {
    const block = readJson(p.files.meta).tensorvault as Record<string, unknown> | undefined;
    ecc = block?.ecc;
  } catch {
    return undefined;
  }
  const file = (ecc as { file?: unknown } | null | undefined)?.file;
  return file === p.block?.ecc?.file ? recordedTveccLevel(ecc) : undefined;
}

/**
 * Write the `.tvecc` sidecar anew from weights that have just verified against the sealed tree and the
 * PyFolds hash, at `level`, under the set's lock and only while the weights are still the verified file
 * (`ino`). The sidecar is made under a temporary name; it replaces the old one only once it verifies
 * against the weights and the weights verify against the sealed tree again, so the parity is never
 * built from bytes that did not verify (before and after it read them).
 */
async function rebuildTvecc(
  p: Parsed,
  level: TveccLevel,
  ino: number | undefined,
  job: { signal?: AbortSignal },
): Promise<void> {
  const sidecar = p.tvecc as string;
  const block = p.block as IntegrityBlock;
  await underLock(
    p,
    ino,
    async () => {
      const tmp = tempName(sidecar);
      try {
        await protect(p.weights, {
          sidecar: tmp,
          ...job,
          ...(typeof level === 'string'
            ? { level }
            : { k: level.k, m: level.m, chunkSize: level.chunk_size }),
        });
        const v = await eccVerify(p.weights, { sidecar: tmp, ...job });
        if (v.status !== 'intact' || (await treeDamage(p, block, job)).length > 0) {
          throw new TensorVaultError(
            ErrorCode.FILE_CHANGED,
            `${p.files.weights} changed while its .tvecc parity was rebuilt; the parity was not replaced`,
            { path: p.files.weights },
          );
        }
        await fsp.rename(tmp, sidecar);
        await fsyncDir(dirname(sidecar));
      } finally {
        await fsp.rm(tmp, { force: true }).catch(() => {});
      }
    },
    job.signal,
  );
}

/**
 * The PyFolds hash of the weights at `path` (the tensors `file` lists) started on the pool now; `drop`
 * cancels it (its result is then never read). Follows `signal` too.
 */
function pyfoldsBeside(
  path: string,
  file: SafetensorsFile,
  signal: AbortSignal | undefined,
): { digest: Promise<string>; drop: () => void } {
  const own = new AbortController();
  const digest = pyfoldsDigestOfFile(path, file.infos(), {
    signal: signal === undefined ? own.signal : AbortSignal.any([signal, own.signal]),
  });
  // Read by the caller when the file did not change, dropped otherwise: never an unhandled rejection.
  digest.catch(() => {});
  return { digest, drop: () => own.abort() };
}

/** The native leaves' mark for a chunk that could not be read (`EIO`). */
const UNREADABLE_LEAF = '!'.repeat(64);

/**
 * Chunks whose digest differs from the block's leaves (hashing the whole file on the pool); those
 * among them that could not be read at all (`EIO`) are also pushed to `unreadable`.
 */
export async function treeDamage(
  p: Parsed,
  block: IntegrityBlock,
  options: JobOptions,
  path: string = p.weights,
  unreadable?: number[],
): Promise<number[]> {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (err) {
    throw ioError(err, path); // pruned meanwhile: TV_NOT_FOUND
  }
  const n = Math.ceil(block.file_length / block.chunk_size);
  const leaves = await fileLeaves(path, treeHashOf(block.algorithm), 0, n, options, block.chunk_size);
  const bad: number[] = [];
  for (let i = 0; i < n; i++) {
    const leaf = leaves.slice(i * 64, i * 64 + 64);
    if (!equalHex(leaf, leafAt(block, i))) {
      bad.push(i);
      if (leaf === UNREADABLE_LEAF) unreadable?.push(i);
    }
  }
  if (size !== block.file_length && bad.length === 0) bad.push(Math.max(0, n - 1));
  return bad;
}

export function tensorsIn(f: SafetensorsFile, chunks: readonly number[], cs: number): string[] {
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

/**
 * The seal alone (no file access): throws `TV_CHECKPOINT_INTEGRITY` (`reason: seal`) when it does not
 * match. Returns false when nothing was checked: a keyed block without its key, which the key policy
 * allows only with `verify: 'none'`.
 */
export function checkSealMessage(p: Parsed, key: HmacKey | undefined): boolean {
  const block = p.block as IntegrityBlock;
  const keyed = isKeyedAlgorithm(block.algorithm);
  if (keyed && key === undefined) return false;
  // Field by field: reading `leaves` would build its hex (see parseIntegrityBlock's fast path).
  const rest = {
    integrity: block.integrity,
    algorithm: block.algorithm,
    chunk_size: block.chunk_size,
    file_length: block.file_length,
    header_length: block.header_length,
    header_sha256: block.header_sha256,
    root: block.root,
    ecc: block.ecc,
  };
  const want = sealOf(rest, p.metadata, p.integrityHash, keyed ? key : undefined);
  if (!equalHex(want, block.seal)) {
    throw new TensorVaultError(
      ErrorCode.CHECKPOINT_INTEGRITY,
      `${p.files.weights}: the integrity block's seal does not match its metadata, hash or header digest (tampered or wrong key)`,
      { path: p.files.weights, reason: 'seal' },
    );
  }
  return true;
}

/**
 * Whether the open weights' header bytes and length match the block's `header_sha256` and
 * `file_length`, hashed from the mapping (no second open or read). A mismatch is handled by
 * {@link checkSeal} (repair from parity, or the typed error).
 */
export function headerMatches(p: Parsed, file: SafetensorsFile): boolean {
  const block = p.block as IntegrityBlock;
  if (file.fileLength !== block.file_length) return false;
  let h: string | null;
  try {
    h = file.headerSha256(block.header_length);
  } catch {
    return false; // truncated since the open: checkSeal reports it
  }
  return h !== null && equalHex(h, block.header_sha256);
}

/**
 * Check the integrity block's seal and the header digest; with `repair`, rebuild a damaged header from
 * the parity. Returns the chunks the repair rebuilt (`undefined` when nothing was repaired).
 */
export async function checkSeal(
  p: Parsed,
  key: HmacKey | undefined,
  repair: boolean,
): Promise<number[] | undefined> {
  const block = p.block as IntegrityBlock;
  if (!checkSealMessage(p, key)) return undefined;
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
