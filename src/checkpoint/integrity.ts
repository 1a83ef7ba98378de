/** Whole-file checks and repairs of a checkpoint set: the seal and header, the chunk tree, the rs(N) stream and the PyFolds hash (the `.tvecc` parity: parity.ts). */
import { promises as fsp } from 'node:fs';
import { dirname } from 'node:path';
import { repair as eccRepair, verify as eccVerify } from '../ecc/erasure';
import { ErrorCode, TensorVaultError } from '../errors';
import { keepAttributesOf, tempName } from '../io/atomic';
import { fsyncDir } from '../io/fs';
import { type JobOptions, withoutSignal } from '../job';
import { openSafetensors, type SafetensorsFile } from '../safetensors/reader';
import { publish } from './commit';
import { WeightsFd } from './descriptor';
import {
  equalHex,
  type HmacKey,
  type IntegrityBlock,
  isKeyedAlgorithm,
  pyfoldsDigestOfFile,
  pyfoldsHashMatches,
  sealOf,
} from './layout';
import { parityCheck, tveccSays } from './parity';
import type { CheckpointReport, Parsed } from './parse';
import { notAboutParity, rethrownByParity, underLock } from './repair-lock';
import { correctionVerifies, headerSha, type RsRepair, rsCheck } from './rs';
import { writeRsParity } from './save';
import { headerDamage, tensorsIn, tensorsOutside, treeChunksHolding, treeDamage } from './tree-check';

/**
 * Open the weights: the mapping, and a descriptor of the same file (for the chunk reads of lazy
 * verification), duplicated from the mapping's own so that both are the same file by construction.
 */
export async function openPair(
  path: string,
  signal?: AbortSignal,
): Promise<{ file: SafetensorsFile; fd: WeightsFd }> {
  return pairOf(await openSafetensors(path, signal ? { signal } : {}));
}

/** An open file and a duplicate of its descriptor (see {@link openPair}); the file is closed if that fails. */
export function pairOf(file: SafetensorsFile): { file: SafetensorsFile; fd: WeightsFd } {
  try {
    return { file, fd: new WeightsFd(file) };
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
  const damagedTensors = [...new Set([...into.damagedTensors, ...(from.damagedTensors ?? [])])];
  const damagedChunks = union(into.damagedChunks, from.damagedChunks);
  const unreadableChunks = union(into.unreadableChunks, from.unreadableChunks);
  const repairedChunks = union(into.repairedChunks, from.repairedChunks);
  Object.assign(into, from, { damagedTensors, damagedChunks, unreadableChunks, repairedChunks });
  if (repairedBefore && into.status === 'intact') into.status = 'repaired';
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
 * Without `repair`, an rs(N) correction of damaged data is judged as a repair would judge it
 * ({@link correctionVerifies}): `repairable` in the result says the repair would be accepted.
 * `readFrom`: where the checks read the bytes of `file` (a lazy checkpoint's own descriptor,
 * {@link fdPath}: the bytes it opened, even if a newer save has replaced the path since); a repair, and
 * the checks after it, read `p.weights` under the set's lock.
 */
export async function verifyWhole(
  p: Parsed,
  file: SafetensorsFile,
  key: HmacKey | undefined,
  repair: boolean,
  options: JobOptions,
  ino?: number,
  checkParity = false,
  readFrom: string = p.weights,
): Promise<{
  file: SafetensorsFile;
  report: Partial<CheckpointReport>;
  why?: string;
  repairable?: boolean;
}> {
  const report: Partial<CheckpointReport> = {
    damagedChunks: [],
    unreadableChunks: [],
    repairedChunks: [],
    damagedTensors: [],
  };
  let status: CheckpointReport['status'] = 'intact';
  let parityDamaged = false;
  let rsSays: 'intact' | 'damage' | undefined;
  // The rs(N) parity corrects every damaged block of the data: whether the corrected bytes match the
  // hash (undefined: not judged, or nothing to correct).
  let correction: 'verifies' | 'refused' | undefined;
  let f = file;
  // The options of each step: `options` until a repair has changed the files, then without the signal
  // (an abort after that point no longer rejects: the re-check runs to its end; see withoutSignal).
  let job: JobOptions = options;
  // The PyFolds hash of the file as it is now runs on the pool beside the tree check of the tensorvault
  // layout (two hashes over the same cached bytes at once: the sequential SHA-256 on one thread, the
  // tree's chunks on the others); it is dropped when the tree finds damage, and started again beside
  // the second tree check after a repair.
  let pending = p.layout === 'tensorvault' ? pyfoldsBeside(readFrom, f, options.signal) : undefined;
  try {
    if (p.layout === 'tensorvault') {
      const block = p.block as IntegrityBlock;
      const unreadable: number[] = [];
      let bad = await treeDamage(p, block, options, readFrom, unreadable);
      if (bad.length > 0) {
        pending?.drop();
        pending = undefined;
        report.damagedChunks = bad;
        report.unreadableChunks = unreadable;
        report.damagedTensors = tensorsIn(f, bad, block.chunk_size);
        // The tree read every chunk: the tensors outside the damaged ones verified.
        report.verifiedTensors = tensorsOutside(f, bad, block.chunk_size);
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
            report: {
              ...report,
              status: 'damaged',
              verifiedTensors: tensorsOutside(f, bad, block.chunk_size),
            },
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
        r = await rsCheck(p, key, false, options, readFrom);
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
            // The repaired copy does not match the hash (a mis-correction, or a wrong key): refused.
            if (err instanceof TensorVaultError && err.code === ErrorCode.ECC_REPAIR_FAILED)
              correction = 'refused';
            parityDamaged = true;
          }
        } else {
          parityDamaged = true;
          // Read-only: judge the correction as the repair judges its repaired copy, so that a verify
          // never calls `repairable` what the repair then refuses.
          correction = (await correctionVerifies(p, key, r, options, readFrom)) ? 'verifies' : 'refused';
        }
      }
    }
    const digest =
      pending !== undefined
        ? await pending.digest
        : await pyfoldsDigestOfFile(
            f === file ? readFrom : p.weights,
            f.infos(),
            job.signal ? { signal: job.signal } : {},
          );
    const ok = pyfoldsHashMatches(p.stored, digest, key);
    report.pyfoldsHash = ok ? 'ok' : 'mismatch';
    if (!ok) {
      let why =
        correction === 'refused'
          ? "the integrity hash does not match, nor does the rs(N) parity's correction of the damaged blocks (a mis-correction: damage beyond the parity)"
          : parityDamaged
            ? 'the integrity hash does not match and the rs(N) parity cannot repair it'
            : 'the integrity hash does not match';
      if (p.layout !== 'tensorvault') {
        report.damagedTensors = [...f.names];
        report.hashMismatch = 'damage';
        if (p.stored.kind === 'hmac-sha256' && key !== undefined && status !== 'repaired') {
          // A keyed hash: a wrong key looks exactly like damage, unless something else vouches for
          // the bytes. Nothing has been written (see rsCheck and the parity rewrite below).
          if (rsSays === 'intact') throw wrongKey(p, 'rs');
          // Damaged data the parity corrects, and the keyed hash matches neither the data nor their
          // correction: with the right key the correction would match (unless it is a mis-correction).
          if (correction === 'refused') throw wrongKey(p, 'rs', report.damagedChunks);
          const tvecc = await tveccSays(p, job);
          if (tvecc === 'intact') throw wrongKey(p, 'tvecc');
          if (rsSays === undefined && tvecc === undefined) {
            report.hashMismatch = 'damage-or-wrong-key';
            why = `${why}: damage and a wrong HMAC key cannot be told apart (the ${p.layout} layout keeps no other record of the bytes)`;
          }
        }
      }
      return {
        file: f,
        report: { ...report, status: 'damaged' },
        why,
        repairable: correction === 'verifies',
      };
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
              await keepAttributesOf(tmp, rs.path, p.weights);
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
          // The weights verified; only their parity is unusable.
          report: { ...report, status: 'damaged', verifiedTensors: [...f.names] },
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
          const block = p.block as IntegrityBlock;
          const still = await treeDamage(p, block, job);
          if (still.length > 0)
            return {
              file: f,
              report: {
                ...report,
                status: 'damaged',
                verifiedTensors: tensorsOutside(f, still, block.chunk_size),
              },
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
 * code, `reason: 'seal'`). `evidence`: `rs` (the rs(N) stream finds no damage in the data or, with
 * `damagedBlocks`, corrects the damaged blocks to bytes that the keyed hash does not match either) or
 * `tvecc` (a `.tvecc` sidecar's chunk digests all match).
 */
export function wrongKey(
  p: Parsed,
  evidence: 'rs' | 'tvecc',
  damagedBlocks?: readonly number[],
): TensorVaultError {
  if (damagedBlocks !== undefined) {
    return new TensorVaultError(
      ErrorCode.CHECKPOINT_INTEGRITY,
      `${p.files.weights}: the keyed integrity hash matches neither the weights nor the rs(N) parity's correction of their damaged blocks: the HMAC key is probably wrong (or the correction is: damage beyond the parity); nothing was repaired or written. Verify again with the right key`,
      {
        path: p.files.weights,
        reason: 'key',
        evidence,
        ...(damagedBlocks.length > 0 ? { blocks: damagedBlocks.join(',') } : {}),
      },
    );
  }
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

/** What a repair of a damaged header or length rebuilt (see {@link checkSeal}). */
export interface HeaderRepair {
  /** The chunk tree's chunks that differed, as `verifyCheckpoint` reports them ({@link headerDamage}). */
  chunks: number[];
  /** The byte ranges (`[start, end)`) the `.tvecc` parity rebuilt: the tensors in them were damaged. */
  spans: [number, number][];
}

/**
 * Check the integrity block's seal and the header digest; with `repair`, rebuild a damaged header from
 * the parity. Returns what the repair rebuilt (`undefined` when nothing was repaired), in the chunk
 * tree's own chunks (never the sidecar's: those are the `repaired` event's `eccChunks`).
 */
export async function checkSeal(
  p: Parsed,
  key: HmacKey | undefined,
  repair: boolean,
  options: JobOptions = {},
): Promise<HeaderRepair | undefined> {
  const block = p.block as IntegrityBlock;
  if (!checkSealMessage(p, key)) return undefined;
  let h = await headerSha(p.weights, block.header_length);
  if (h.hex !== block.header_sha256 || h.size !== block.file_length) {
    let rebuilt: HeaderRepair | undefined;
    // The chunk 0 alone unless the repair's tree check finds (and publishes) them all.
    let told = false;
    const tell = (chunks: number[]) => {
      told = true;
      publish({ event: 'damaged', path: p.files.weights, part: 'header', chunks });
    };
    if (repair && p.tvecc !== undefined) {
      try {
        const sidecar = p.tvecc;
        const t0 = performance.now();
        // force: the seal proved this is damage, not an edit after the save. The tree's chunks that
        // differ are found first (under the lock, on the bytes the repair then rewrites): the report
        // and the events name them, not the sidecar's own chunks (`eccChunks`).
        // `options` (signal, progress) for both steps: the tree check stops at an abort, and the
        // repair until it has changed the file (the core ignores an abort after that, as for every
        // repair).
        // One read of the file: the parity's verify reads it all and names its damaged chunks; the
        // tree then hashes only its chunks holding them (the rest are intact), and the repair checks
        // only their stripes. (The tree's whole-file check first, then the repair's own whole-file
        // verify, read the file twice.)
        const r = await underLock(
          p,
          undefined,
          async () => {
            const v = await eccVerify(p.weights, { sidecar, ...options });
            const n = Math.ceil(block.file_length / block.chunk_size);
            const suspects = treeChunksHolding(
              v.damagedChunks,
              v.layout.chunkSize,
              block.chunk_size,
              n,
              v.actualLength !== block.file_length,
            );
            // (Its progress is not reported: a few chunks after the whole pass.)
            const signal = options.signal === undefined ? {} : { signal: options.signal };
            const found = await headerDamage(p, block, signal, undefined, suspects);
            tell(found);
            const chunks = v.damagedChunks;
            return { found, ecc: await eccRepair(p.weights, { sidecar, ...options, force: true, chunks }) };
          },
          options.signal,
        );
        const ecs = r.ecc.before.layout.chunkSize;
        rebuilt = {
          chunks: r.found,
          spans: r.ecc.repairedChunks.map((c) => [c * ecs, (c + 1) * ecs] as [number, number]),
        };
        publish({
          event: 'repaired',
          path: p.files.weights,
          part: 'header',
          chunks: r.found,
          eccChunks: r.ecc.repairedChunks,
          ms: performance.now() - t0,
        });
      } catch (err) {
        // An abort, or a repair that could not run for the machine (a full disk, a read error, a
        // lock, permissions): said as such, never as damage beyond the parity. The rest is reported
        // below from the bytes as they are.
        if (rethrownByParity(err)) throw err;
      }
      h = await headerSha(p.weights, block.header_length);
    }
    if (!told) tell([0]);
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
