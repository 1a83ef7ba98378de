/**
 * {@link saveCheckpoint}: weights, integrity hash, parity and sidecars, replaced as a set. The pieces
 * of a save are in `write.ts`.
 */
export { PYFOLDS_HMAC_ENV } from './write';

import { close, constants, promises as fsp, openSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { protect } from '../ecc/erasure';
import { TensorVaultError, throwIfAborted } from '../errors';
import { keepAttributesOf, tempName } from '../io/atomic';
import { ioError, makeFolder, namingDestination } from '../io/fs';
import type { JobOptions, Progress } from '../job';
import { packageVersion } from '../native';
import type { TensorsToSave } from '../safetensors/writer';
import { commitSet, lockSetAsync, publish, recoverLocked } from './commit';
import {
  type CheckpointLayout,
  formatPyfoldsHash,
  type HmacKey,
  type IntegrityBlock,
  sidecarFiles,
} from './layout';
import { syncOutboard } from './outboard';
import {
  buildIntegrityBlock,
  checkSaveArgs,
  gitHash,
  integrityBlockOf,
  NEW_TREE,
  type NewSet,
  phases,
  saveNative,
  sidecarOf,
  tveccLevelOf,
  writeParity,
  writeTemp,
  writeWeights,
} from './write';

export {
  buildIntegrityBlock,
  eccPlan,
  gitHash,
  headerDigest,
  keyInForce,
  writeRsParity,
  writeTemp,
} from './write';

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
  /**
   * How long to wait for another save of the same path (default 30 s; `TV_LOCKED` after). The wait
   * does not block the event loop.
   */
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

/**
 * Descriptors on the files of the old set that a commit replaces or deletes (those that exist), opened
 * before it, so that its renames and deletions only drop names: the old files' blocks are freed when
 * these descriptors are closed, on the libuv pool after the commit ({@link releaseOld}), instead of
 * inside `rename` on this thread (0.3–0.45 s for a 1 GiB weights file and its sidecar, measured).
 */
function holdOld(paths: Iterable<string>): number[] {
  const fds: number[] = [];
  // Windows refuses to rename over an open file: nothing is held there.
  if (process.platform === 'win32') return fds;
  for (const p of paths) {
    try {
      // O_NONBLOCK: never wait on a FIFO someone put there.
      fds.push(openSync(p, constants.O_RDONLY | constants.O_NONBLOCK));
    } catch {
      // absent (or unreadable): nothing to hold
    }
  }
  return fds;
}

/** Close what {@link holdOld} opened, on the libuv pool, without waiting. */
function releaseOld(fds: number[]): void {
  for (const fd of fds) close(fd, () => {});
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
 * path, in this process or another, waits (`lockTimeoutMs`, on timers: the event loop keeps running,
 * and `signal` stops the wait); saves of one path thus complete in turn, the last one's files kept. Honours `signal` (nothing changes) and reports `onProgress` over all
 * passes (write, hashes, parity). Tensor buffers are read while the promise is pending (the write, the
 * hashes and the parity read them at different times): do not change them until it settles. A change
 * meanwhile leaves a checkpoint whose bytes and hashes may disagree: it is reported at load or verify
 * (`TV_CHECKPOINT_INTEGRITY`), never loaded with bytes its hash does not cover (when only the `.tvecc`
 * parity is of other bytes, {@link repairCheckpoint} writes it anew from the verified weights); a change
 * after the promise settles does not reach the checkpoint.
 */
export async function saveCheckpoint(
  path: string,
  tensors: TensorsToSave,
  options: SaveCheckpointOptions = {},
): Promise<SaveCheckpointResult> {
  const t0 = performance.now();
  // The save's timeline (ms since the call), published with the `saved` event.
  const timeline: { name: string; ms: number }[] = [];
  const mark = (name: string) => timeline.push({ name, ms: performance.now() - t0 });
  const { layout, files, plan, entries, prepared, key, user, config } = checkSaveArgs(path, tensors, options);
  const { signal } = options;
  throwIfAborted(signal, 'The operation was aborted before it started');
  const metadata: Record<string, unknown> = {
    created_at: new Date().toISOString(),
    version: options.version ?? '1',
    git_hash: options.gitHash ?? (await gitHash()),
    config,
    runtime: `node ${process.version}; tensorvault ${packageVersion()}`,
    ...user,
  };
  // A regular file where a parent folder should be: TV_NOT_A_FILE (a bare EEXIST / ENOTDIR before).
  await makeFolder(dirname(resolve(path)));
  const lock = await lockSetAsync(files, options.lockTimeoutMs ?? 30_000, signal);
  const temps: string[] = [];
  /** Each temporary's final file, so that an error about a temporary names the file asked for. */
  const finalOf = new Map<string, string>();
  const set: NewSet = {
    renames: [],
    finals: new Set<string>([files.weights]),
    temp: (final) => {
      const t = tempName(final);
      temps.push(t);
      finalOf.set(t, final);
      return t;
    },
  };
  const checkAbort = () => throwIfAborted(signal);
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
    const jobOpts = (p: ((x: Progress) => void) | undefined): JobOptions => ({
      ...(signal ? { signal } : {}),
      ...(p ? { onProgress: p } : {}),
    });
    const tveccRef: IntegrityBlock['ecc'] =
      plan.kind === 'tvecc' ? { kind: 'tvecc', file: basename(files.tvecc) } : null;
    let integrityHash: string;
    let ecc: { eccName: string; eccLen: number };
    let block: IntegrityBlock | undefined;
    let size: number;
    if (inMemory) {
      // One native pass: the weights, the PyFolds digest, the chunk tree and the .tvecc parity.
      const tree = layout === 'tensorvault';
      const tvecc = plan.kind === 'tvecc' ? { sidecar: set.temp(files.tvecc), plan } : undefined;
      // The outboard comes from the same hashing as the leaves and is committed with the set.
      const tmpOutboard = tree ? set.temp(files.tvob) : undefined;
      const units = dataBytes * (1 + (tree ? 1 : 0) + (tvecc ? 1 : 0));
      const tNative = performance.now() - t0;
      const r = await saveNative(
        tmpWeights,
        prepared,
        tree ? NEW_TREE : 'none',
        tvecc,
        units,
        jobOpts(ph.next(units)),
        tmpOutboard,
      );
      if (tmpOutboard !== undefined && r.outboard) {
        set.renames.push([basename(tmpOutboard), basename(files.tvob)]);
        set.finals.add(files.tvob);
      }
      for (const p of r.phases ?? []) timeline.push({ name: p.name, ms: tNative + p.ms });
      mark('native');
      size = r.fileLength;
      integrityHash = formatPyfoldsHash(r.pyfoldsDigest, key);
      checkAbort();
      if (tvecc !== undefined && r.ecc) {
        set.renames.push([basename(tvecc.sidecar), basename(files.tvecc)]);
        set.finals.add(files.tvecc);
        ecc = { eccName: `tvecc ${r.ecc.k}+${r.ecc.m}`, eccLen: 0 };
      } else {
        ecc = await writeParity(
          plan,
          files,
          tmpWeights,
          set,
          jobOpts(plan.kind === 'none' ? undefined : ph.next(dataBytes)),
        );
      }
      block = tree ? integrityBlockOf(r, metadata, integrityHash, tveccRef, key) : undefined;
    } else {
      const w = await writeWeights(tmpWeights, entries, prepared, inMemory, ph, dataBytes, signal);
      mark('weights');
      size = w.size;
      // The PyFolds hash, the parity and the chunk tree (three jobs on the pool) read the written file
      // (from the page cache) at the same time; the tree's seal waits for the hash. All settle before
      // anything is decided, so that no part still writes a temporary file when the save fails.
      const hash = w.digest.then((d) => formatPyfoldsHash(d, key));
      hash.catch(() => {}); // awaited below; an abort right here must not leave it unhandled
      checkAbort();
      const settled = await Promise.allSettled([
        hash,
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
              hash,
              tveccRef,
              key,
              jobOpts(ph.next(dataBytes)),
            )
          : Promise.resolve(undefined),
      ] as const);
      const failed = settled.find((r) => r.status === 'rejected');
      if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
      [integrityHash, ecc, block] = settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as [
        string,
        { eccName: string; eccLen: number },
        IntegrityBlock | undefined,
      ];
      mark('parity+tree');
    }
    const sidecar = sidecarOf(layout, files, { metadata, integrityHash, ...ecc }, block, tveccLevelOf(plan));
    const tmpSidecar = set.temp(sidecar.path);
    await writeTemp(tmpSidecar, sidecar.text);
    set.renames.push([basename(tmpSidecar), basename(sidecar.path)]);
    set.finals.add(sidecar.path);
    mark('sidecar');
    checkAbort();
    const deletes = sidecarFiles(files)
      .filter((f) => !set.finals.has(f))
      .map((f) => basename(f));
    // Each file replaced keeps its mode and owner; a file new to the set takes the old weights'.
    const dir = dirname(files.weights);
    for (const [from, to] of set.renames)
      await keepAttributesOf(join(dir, from), join(dir, to), files.weights);
    const old = holdOld([...set.finals, ...deletes.map((d) => join(dirname(files.weights), d))]);
    try {
      await commitSet(files, { tensorvault_commit: 1, renames: set.renames, deletes }, mark);
    } finally {
      releaseOld(old);
    }
    // Saves that did not write the outboard in their pass (sources read as streams) write it now.
    if (!set.finals.has(files.tvob)) await syncOutboard(files, layout === 'tensorvault' ? block : undefined);
    temps.length = 0;
    mark('commit');
    options.onProgress?.({ bytesDone: dataBytes * passes, bytesTotal: dataBytes * passes });
    publish({
      event: 'saved',
      path: files.weights,
      layout,
      bytes: size,
      ecc: ecc.eccName,
      keyed: key !== undefined,
      ms: performance.now() - t0,
      phases: timeline,
    });
    return {
      path: files.weights,
      layout,
      files: [...set.finals],
      byteLength: size,
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
    if (err instanceof TensorVaultError) {
      const temp = err.context.path;
      const final = typeof temp === 'string' ? finalOf.get(temp) : undefined;
      throw typeof temp === 'string' && final !== undefined ? namingDestination(err, temp, final) : err;
    }
    throw ioError(err, path, 'cannot save checkpoint');
  } finally {
    lock.release();
  }
}
