/** The `.tvecc` parity of a checkpoint set: checked, repaired, or written anew from verified weights at its recorded level. */
import { existsSync, promises as fsp } from 'node:fs';
import { dirname } from 'node:path';
import { type EccVerifyResult, repair as eccRepair, verify as eccVerify, protect } from '../ecc/erasure';
import { ErrorCode, TensorVaultError } from '../errors';
import { keepAttributesOf, tempName } from '../io/atomic';
import { fsyncDir } from '../io/fs';
import type { JobOptions } from '../job';
import { publish } from './commit';
import { type IntegrityBlock, recordedTveccLevel, type TveccLevel } from './layout';
import { type CheckpointReport, type Parsed, readJson } from './parse';
import { rethrownByParity, underLock } from './repair-lock';
import { treeDamage } from './tree-check';

/**
 * What a `.tvecc` sidecar next to PyFolds weights (`tensorvault protect`; a PyFolds save deletes an
 * older one) says of them, read-only: `intact` (every chunk digest matches, the length is the one
 * protected), `damage`, or undefined (no sidecar, or one that cannot be read: no evidence; an abort
 * or a machine error is rethrown).
 */
export async function tveccSays(p: Parsed, options: JobOptions): Promise<'intact' | 'damage' | undefined> {
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
        await keepAttributesOf(tmp, sidecar, p.weights);
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
 * Ask the `.tvecc` parity of `weights`, read-only, what it would do: the report gets the sidecar's own
 * state and its damaged slots, and `repairable` when the parity repairs the damage. A sidecar that looks
 * `stale` (the weights' modification time changed and the damaged chunks cover most of them) counts by
 * what its damage amounts to: the sealed integrity block (only the tensorvault layout has a `.tvecc`)
 * already proved these bytes are damage, not an edit, and repairCheckpoint forces that repair.
 */
export async function askParity(
  weights: string,
  sidecar: string,
  report: CheckpointReport,
  job: { signal?: AbortSignal },
): Promise<void> {
  const v: EccVerifyResult = await eccVerify(weights, { sidecar, ...job });
  report.parity = sidecarState(v);
  report.damagedParity = [...v.damagedParity];
  const damage = v.status === 'stale' ? v.damageStatus : v.status;
  if (damage === 'repairable') report.status = 'repairable';
}
