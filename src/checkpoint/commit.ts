/**
 * Replacing a checkpoint as a set. A save writes every new file under a temporary name (fsynced),
 * then writes the commit record `NAME.safetensors.ckpt-commit` atomically: that write is the commit
 * point. The record lists the renames (temporary → final name) and the files to delete (sidecars of
 * the old set that the new one does not have); applying it is idempotent. Whoever finds a record next
 * (the saver itself, the next save or the next load) applies it, so after a crash the path holds the
 * old complete set (no record was written) or the new complete set (the record is rolled forward).
 * Temporary files of dead writers are removed on the next open. `docs/formats/checkpoint.md`.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { channel } from 'node:diagnostics_channel';
import { existsSync, readFileSync, renameSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ErrorCode, TensorVaultError } from '../errors';
import {
  alive,
  atomicWriteFile,
  forgetTemp,
  removeUnlockedTemp,
  tempStem,
  tempsIn,
  tempUnlocked,
} from '../io/atomic';
import { fsyncDirSync, ioError } from '../io/fs';
import { WriterLock } from '../io/lock';
import { testHooksBuilt } from '../native';
import { type CheckpointFiles, checkpointFiles, sidecarFiles } from './layout';

/**
 * A message on {@link checkpointChannel} (`tensorvault:checkpoint`), as the table in
 * `docs/formats/checkpoint.md#telemetry` lists them. A field that only some of an event's sources carry
 * is optional (a lazy view's `verified` names its `tensor`, a full verification's its `status`).
 */
export type CheckpointEvent =
  | {
      event: 'saved';
      path: string;
      layout: string;
      bytes: number;
      ecc: string;
      keyed: boolean;
      ms: number;
      /** The save's timeline: `{ name, ms }` in the order the phases ended (names may change). */
      phases: readonly { name: string; ms: number }[];
    }
  | {
      event: 'verified' | 'damaged';
      path: string;
      /** A lazy view's tensor (`null`: a whole-file check of a PyFolds layout). */
      tensor?: string | null | undefined;
      tensors?: readonly string[] | undefined;
      /** Tree chunks: damaged ones, or `[first, last)` of a verified view. */
      chunks?: readonly number[] | undefined;
      /** rs(N) blocks (pyfolds-ecc). */
      blocks?: readonly number[] | undefined;
      /** Full verification: the chunks among `chunks` whose read failed (`EIO`). */
      unreadableChunks?: readonly number[] | undefined;
      /** `header`, `parity` (the `.tvecc` sidecar: `parity` slots or `reason`) or, from a prune, `sidecar`. */
      part?: 'header' | 'parity' | 'sidecar' | undefined;
      parity?: readonly number[] | undefined;
      reason?: string | undefined;
      layout?: string | undefined;
      mode?: string | undefined;
      status?: string | undefined;
      bytes?: number | undefined;
      /** From a `CheckpointManager` prune: the checkpoint was `kept`. */
      op?: 'prune' | undefined;
      action?: 'kept' | undefined;
      ms?: number | undefined;
    }
  | {
      event: 'repaired';
      path: string;
      tensor?: string | undefined;
      chunks?: readonly number[] | undefined;
      blocks?: readonly number[] | undefined;
      /** The sidecar's chunks rebuilt. */
      eccChunks?: readonly number[] | undefined;
      part?: 'header' | 'parity' | undefined;
      parity?: readonly number[] | undefined;
      /** The `.tvecc` sidecar was written anew at its recorded level. */
      rebuilt?: true | undefined;
      ms?: number | undefined;
    }
  | {
      event: 'failed';
      op: 'save' | 'load' | 'restore' | 'prune';
      /** The checkpoint (`dir`: the run folder, for a prune). */
      path?: string | undefined;
      dir?: string | undefined;
      code: string | undefined;
      tensor?: string | undefined;
      chunks?: readonly number[] | undefined;
      message?: string | undefined;
      ms?: number | undefined;
    }
  | { event: 'recovered'; path: string; rolledForward: boolean; removedTemps: readonly string[] }
  | { event: 'pruned'; dir: string; steps: readonly number[] };

/**
 * Telemetry channel of checkpoint integrity events, messages {@link CheckpointEvent}
 * (`docs/formats/checkpoint.md#telemetry`).
 */
export const checkpointChannel = channel('tensorvault:checkpoint');

/**
 * The events of the {@link unlessRaced} attempt running in this async context: held back until the
 * attempt is known to stand (not run again because it raced a commit).
 */
const heldEvents = new AsyncLocalStorage<Held>();

/** The events an attempt holds back; `open` until the attempt is settled (then they publish at once). */
interface Held {
  events: Record<string, unknown>[];
  open: boolean;
}

/**
 * Publish `event` on `tensorvault:checkpoint` when someone listens; inside an attempt of
 * {@link unlessRaced}, once that attempt is known to stand.
 */
export function publish(event: CheckpointEvent): void {
  if (!checkpointChannel.hasSubscribers) return;
  const held = heldEvents.getStore();
  // Work the attempt started and that outlives it (its context is inherited) publishes at once.
  if (held?.open === true) held.events.push(event);
  else checkpointChannel.publish(event);
}

/** Events that record a change made to the set's files (a repair, a roll-forward): never withdrawn. */
const WROTE_EVENTS = new Set(['repaired', 'recovered']);

/**
 * Publish the held events of an attempt of {@link unlessRaced}: all of them when it stands, or when it
 * changed the files (its `repaired`/`recovered` events say what was done, and what it found led to
 * that); none when it was a torn read run again.
 */
function release(held: Held, stands: boolean): void {
  held.open = false;
  if (!stands && !held.events.some((e) => WROTE_EVENTS.has(e.event as string))) return;
  for (const e of held.events) if (checkpointChannel.hasSubscribers) checkpointChannel.publish(e);
}

/**
 * A commit record: renames and deletions of the set's own files (base names only). A rename moves a
 * temporary of one of the set's files (`.F.PID.X.tmp`) onto that file `F`; a deletion removes one of
 * them (the weights, or a sidecar of another layout). Nothing else in the folder can be named.
 */
export interface CommitRecord {
  tensorvault_commit: 1;
  renames: [string, string][];
  deletes: string[];
}

/** The base names of the set's own files (the weights and every sidecar). */
function setNames(files: CheckpointFiles): Set<string> {
  return new Set([files.weights, ...sidecarFiles(files)].map((p) => basename(p)));
}

/** Whether `from` is a temporary of `to` (`.TO.PID.X.tmp`, as `tempName` makes them). */
function isTempOf(from: unknown, to: string): boolean {
  const stem = tempStem(to);
  if (typeof from !== 'string' || !from.startsWith(`.${stem}.`)) return false;
  return /^\d+\.[0-9a-z]+\.tmp$/.test(from.slice(stem.length + 2));
}

/**
 * Parse the commit record of the set `files`; throws `TV_CHECKPOINT_INVALID` when it is malformed or
 * names anything but the set's own files and their temporaries (a damaged or planted record of one
 * checkpoint must not rename over or delete another's files in a shared run folder).
 */
export function parseCommitRecord(text: string, path: string, files: CheckpointFiles): CommitRecord {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    v = undefined;
  }
  const r = v as Partial<CommitRecord> | undefined;
  const own = setNames(files);
  const isOwn = (s: unknown): s is string => typeof s === 'string' && own.has(s);
  if (
    typeof r !== 'object' ||
    r === null ||
    r.tensorvault_commit !== 1 ||
    !Array.isArray(r.renames) ||
    !Array.isArray(r.deletes) ||
    !r.renames.every((p) => Array.isArray(p) && p.length === 2 && isOwn(p[1]) && isTempOf(p[0], p[1])) ||
    !r.deletes.every(isOwn)
  ) {
    throw new TensorVaultError(
      ErrorCode.CHECKPOINT_INVALID,
      `${path}: the commit record of an interrupted save is damaged; the checkpoint needs manual attention (docs/runbooks/checkpoint-corruption.md)`,
      { path, reason: 'commit_record' },
    );
  }
  return r as CommitRecord;
}

/**
 * Apply a commit record: renames whose source still exists, then deletions, then drop the record.
 * `mark` names the steps as they end (the save's timeline).
 */
export function applyCommit(
  files: CheckpointFiles,
  record: CommitRecord,
  mark: (step: string) => void = () => {},
): void {
  const dir = dirname(files.weights);
  try {
    for (const [from, to] of record.renames) {
      const src = join(dir, from);
      if (existsSync(src)) renameSync(src, join(dir, to));
    }
    for (const name of record.deletes) rmSync(join(dir, name), { force: true });
    mark('commit.renames');
    fsyncDirSync(dir);
    mark('commit.renames.fsync');
    rmSync(files.journal, { force: true });
    fsyncDirSync(dir);
  } catch (err) {
    throw err instanceof TensorVaultError ? err : ioError(err, files.weights, 'cannot commit checkpoint');
  }
}

/** Write the commit record (the commit point) and apply it; `mark` as in {@link applyCommit}. */
export async function commitSet(
  files: CheckpointFiles,
  record: CommitRecord,
  mark?: (step: string) => void,
): Promise<void> {
  const text = JSON.stringify(record);
  // The rules a later open applies to it (a record it would refuse must not become the commit point).
  parseCommitRecord(text, files.journal, files);
  await atomicWriteFile(files.journal, text);
  mark?.('commit.record');
  applyCommit(files, record, mark);
}

/**
 * Temporary files of the set's writers that are dead: `.F.PID.X.tmp` (and the nested
 * `..F.PID.X.tmp.PID.N.tmp` of a native writer given such a name) for each file name F of the set,
 * whose PIDs do not run here, or are this process's own and no writer holds the temp's lock: a save
 * whose worker thread was terminated left them for the life of the process (some as large as the
 * weights). A live writer of this process, in any thread, holds its temp's lock (flock is per open
 * file description); and the set's writers all hold the set's lock, under which they are removed.
 */
export function deadTemps(files: CheckpointFiles): string[] {
  return scanTemps(files).dead;
}

/** A temporary of a set's file: `.F.PID.X.tmp`, or `..F.PID.X.tmp.PID.N.tmp` (F, PID, X, PID, N). */
const TEMP = /^\.{1,2}(.+?)\.(\d+)\.([0-9a-z]+)\.tmp(?:\.(\d+)\.(\d+)\.tmp)?$/;

/**
 * {@link deadTemps}, and whether the folder holds any temporary of the set (live writers' too). The
 * folder's listing may be a recent costly one (`tempsIn`: a large folder is not listed on every save);
 * `fresh` lists it now.
 */
function scanTemps(
  files: CheckpointFiles,
  fresh = false,
  listing: string[] = tempsIn(dirname(files.weights), fresh),
): { dead: string[]; any: boolean } {
  const dir = dirname(files.weights);
  const names = new Set(
    [files.weights, files.journal, ...sidecarFiles(files)].map((p) => tempStem(basename(p))),
  );
  const out: string[] = [];
  let any = false;
  for (const e of listing) {
    const m = TEMP.exec(e);
    if (m === null || !names.has(m[1] as string)) continue;
    any = true;
    const pids = [Number(m[2]), ...(m[4] === undefined ? [] : [Number(m[4])])];
    if (!pids.every((p) => p > 0 && (p === process.pid || !alive(p)))) continue;
    if (pids.includes(process.pid) && !tempUnlocked(join(dir, e))) continue;
    out.push(join(dir, e));
  }
  return { dead: out, any };
}

/** Whether the temporary `path` (found by {@link scanTemps}) names this process's own PID. */
function ownTemp(path: string): boolean {
  const m = TEMP.exec(basename(path));
  return m !== null && (Number(m[2]) === process.pid || Number(m[4]) === process.pid);
}

/** Sets found with nothing to recover by {@link prepareRead}: weights path → the folder's `dev:ino:mtimeNs` then. */
const cleanFolders = new Map<string, string>();
/** Bound of {@link cleanFolders} (it is cleared when full). */
const CLEAN_FOLDERS_MAX = 4096;
/**
 * The temporaries a quiet folder held when {@link prepareRead} listed it, with its `dev:ino:mtimeNs`:
 * the next set read from that folder while the stamp is the same needs no listing (any entry made or
 * removed since changes the mtime; the folder was quiet, so that change cannot hide in the same clock
 * tick). Loading 60 checkpoints of a folder of 50,000 files took 29 ms each, one listing per set.
 */
const quietListings = new Map<string, { stamp: string; temps: string[] }>();
/** How long a folder must have been unchanged before a clean scan of it is remembered (2 s, in ns). */
const QUIET_NS = 2_000_000_000n;

/** Whether the set needs recovery: a commit record or temporaries of dead writers. */
export function needsRecovery(files: CheckpointFiles): boolean {
  return existsSync(files.journal) || deadTemps(files).length > 0;
}

/**
 * @internal Test hook (`__test__/checkpoint-crash.test.ts` only): `afterScan` is called by
 * {@link recoverLocked} with the temporaries it found dead, before it removes them (a writer may lock
 * one in between). Called only when the addon is a test build (`testHooksBuilt()`).
 */
export const sweepHooks: { afterScan?: (dead: readonly string[]) => void } = {};

/**
 * Finish or undo an interrupted save, holding the set's lock (the caller may already hold it): roll a
 * commit record forward, remove dead writers' temporaries. Returns what was done.
 */
export function recoverLocked(
  files: CheckpointFiles,
  listing?: string[],
): { rolledForward: boolean; removed: string[] } {
  let rolledForward = false;
  if (existsSync(files.journal)) {
    let text: string;
    try {
      text = readFileSync(files.journal, 'utf8');
    } catch (err) {
      throw ioError(err, files.journal, 'cannot read');
    }
    applyCommit(files, parseCommitRecord(text, files.journal, files));
    rolledForward = true;
  }
  const removed: string[] = [];
  // `listing`: the folder's listing the caller has just taken (prepareRead), so that a big folder is
  // not listed twice by one open when the lock took long to get (the reuse window of tempsIn is short).
  const dead =
    rolledForward || listing === undefined ? deadTemps(files) : scanTemps(files, false, listing).dead;
  if (sweepHooks.afterScan !== undefined && testHooksBuilt()) sweepHooks.afterScan(dead);
  for (const t of dead) {
    if (ownTemp(t)) {
      // Taken again and held across the unlink: a writer that locked it since the scan keeps it.
      if (removeUnlockedTemp(t, false)) removed.push(t);
      continue;
    }
    forgetTemp(dirname(t), basename(t));
    try {
      unlinkSync(t);
      removed.push(t);
    } catch {
      // gone already
    }
  }
  if (rolledForward || removed.length > 0) {
    publish({
      event: 'recovered',
      path: files.weights,
      rolledForward,
      removedTemps: removed.map((p) => basename(p)),
    });
  }
  return { rolledForward, removed };
}

const describeHolder =
  (files: CheckpointFiles) =>
  (h: { pid?: number }): string =>
    `${files.weights} is being saved by ${h.pid === undefined ? 'another writer' : `process ${h.pid}`}`;

/** Take the set's writer lock (waiting up to `timeoutMs` for a live writer, blocking this thread). */
export function lockSet(files: CheckpointFiles, timeoutMs: number): WriterLock {
  return WriterLock.acquire(files.lock, { timeoutMs, describe: describeHolder(files) });
}

/**
 * {@link lockSet} for async callers (saves, repairs, prunes): the wait for a live writer keeps the
 * event loop running and honours `signal`.
 */
export function lockSetAsync(
  files: CheckpointFiles,
  timeoutMs: number,
  signal?: AbortSignal | undefined,
): Promise<WriterLock> {
  return WriterLock.acquireAsync(files.lock, { timeoutMs, describe: describeHolder(files), signal });
}

/**
 * Before an async read of a set: a commit record means a save has committed and is applying its
 * renames; wait for its writer on timers (`lockSetAsync`), then finish whatever is left, so that the
 * synchronous {@link prepareRead} after it finds nothing to wait for. A save in this same process can
 * then finish while the reader waits: the synchronous wait blocked the event loop the save needed, for
 * the whole timeout, and then failed with `TV_LOCKED`. A read-only folder is left to `prepareRead`.
 */
export async function settleCommit(files: CheckpointFiles, signal?: AbortSignal | undefined): Promise<void> {
  if (!existsSync(files.journal)) return;
  let lock: WriterLock;
  try {
    lock = await lockSetAsync(files, 10_000, signal);
  } catch (err) {
    const code = err instanceof TensorVaultError ? err.code : undefined;
    if (code === ErrorCode.PERMISSION_DENIED || code === ErrorCode.IO) return;
    throw err;
  }
  try {
    if (needsRecovery(files)) recoverLocked(files);
  } finally {
    lock.release();
  }
}

/**
 * Before reading a set: recover it when needed. Takes the lock (waiting for a live saver to finish);
 * when the folder is read-only, nothing is changed and the paths to read are resolved through the
 * commit record instead. Returns the path each final file name should be read from.
 */
export function prepareRead(files: CheckpointFiles, timeoutMs = 10_000): (final: string) => string {
  const identity = (p: string): string => p;
  // A folder unchanged since an earlier open found nothing to recover holds nothing to recover: every
  // commit record, lock and temporary is a new entry, which changes the folder's mtime. One stat then
  // replaces two lookups and a scan of the folder (which grows with a training run's checkpoints).
  const dir = dirname(files.weights);
  let stamp: string | undefined;
  let quiet = false;
  try {
    const st = statSync(dir, { bigint: true });
    stamp = `${st.dev}:${st.ino}:${st.mtimeNs}`;
    // Trusted only when the folder had been quiet for a while before this scan: an entry made during
    // the scan, in the same clock tick as the last change, would leave the mtime as it is.
    quiet = BigInt(Date.now()) * 1_000_000n - st.mtimeNs > QUIET_NS;
  } catch {
    stamp = undefined;
  }
  if (stamp !== undefined && cleanFolders.get(files.weights) === stamp) return identity;
  const pending = existsSync(files.journal);
  let listed: string[] | undefined;
  if (!pending && !existsSync(files.lock)) {
    const known = quietListings.get(dir);
    const listing = quiet && stamp !== undefined && known?.stamp === stamp ? known.temps : tempsIn(dir, true);
    listed = listing;
    if (quiet && stamp !== undefined) {
      if (quietListings.size >= CLEAN_FOLDERS_MAX) quietListings.clear();
      quietListings.set(dir, { stamp, temps: listing });
    }
    const temps = scanTemps(files, true, listing);
    if (temps.dead.length === 0) {
      if (stamp !== undefined && quiet && !temps.any) {
        if (cleanFolders.size >= CLEAN_FOLDERS_MAX) cleanFolders.clear();
        cleanFolders.set(files.weights, stamp);
      }
      return identity;
    }
  }
  cleanFolders.delete(files.weights);
  let lock: WriterLock | undefined;
  try {
    // Wait only for a committed save being applied; a live save that has not committed yet leaves
    // the old set complete, so the reader goes ahead (cleanup, if any, is left to a later open).
    lock = lockSet(files, pending ? timeoutMs : 0);
  } catch (err) {
    const code = err instanceof TensorVaultError ? err.code : undefined;
    if (code === ErrorCode.LOCKED && !pending) return identity;
    if (code !== ErrorCode.PERMISSION_DENIED && code !== ErrorCode.IO) throw err;
    // Read-only folder: read the new set through the record without changing anything.
    if (!existsSync(files.journal)) return identity;
    const record = parseCommitRecord(readFileSync(files.journal, 'utf8'), files.journal, files);
    const dir = dirname(files.weights);
    const map = new Map<string, string>();
    for (const [from, to] of record.renames) {
      if (existsSync(join(dir, from))) map.set(join(dir, to), join(dir, from));
    }
    const gone = new Set(record.deletes.map((d) => join(dir, d)));
    return (p) => map.get(p) ?? (gone.has(p) ? join(dir, `.deleted-by-commit.${basename(p)}`) : p);
  }
  try {
    recoverLocked(files, listed);
  } finally {
    lock.release();
  }
  return identity;
}

/**
 * The set's files as they are on disk: each one's inode and modification time, and whether a commit
 * record is there. Two equal stamps around a read mean no save replaced any file of the set meanwhile.
 */
function setStamp(files: CheckpointFiles): string {
  const one = (f: string): string => {
    try {
      const st = statSync(f, { bigint: true });
      return `${st.ino}:${st.mtimeNs}`;
    } catch {
      return '-';
    }
  };
  return [files.weights, files.meta, files.json, files.tvecc, files.rsEcc, files.journal].map(one).join('|');
}

/** Errors and outcomes that a read of a set replaced meanwhile (old sidecar, new weights) can give. */
const RACED_CODES = new Set<string>([
  ErrorCode.CHECKPOINT_INTEGRITY,
  ErrorCode.CHECKPOINT_TENSOR_DAMAGED,
  ErrorCode.CHECKPOINT_INVALID,
  ErrorCode.FILE_CHANGED,
  ErrorCode.NOT_FOUND,
]);

/**
 * Whether `err` is one that a read of a set replaced meanwhile can give (damage, a changed or missing
 * file): worth asking whether the set was replaced before reporting it.
 */
export function racedError(err: unknown): boolean {
  return err instanceof TensorVaultError && RACED_CODES.has(err.code);
}

/**
 * Run a whole-set check (`verifyCheckpoint`, `repairCheckpoint`, a full load) and, when it found damage
 * or failed as a torn read does while another process's save replaced the set between the reads of its
 * files, run it again on the set now there (up to 3 more times). Without this a monitor's verify
 * during a save reported a healthy checkpoint `damaged` in every chunk. Damage that is really there
 * is reported as before: the set did not change around that read.
 */
export async function unlessRaced<T>(path: string, run: () => Promise<T>): Promise<T> {
  const files = checkpointFiles(path);
  for (let attempt = 0; ; attempt++) {
    const before = setStamp(files);
    // The attempt's telemetry is held until it is known to stand: a torn attempt run again must not
    // publish `damaged` (or `failed`) for a healthy set (only the result that stands is published).
    const held: Held = { events: [], open: true };
    let result: T;
    try {
      result = await heldEvents.run(held, run);
    } catch (err) {
      const again = attempt < 3 && racedError(err) && setStamp(files) !== before;
      release(held, !again);
      if (again) continue;
      throw err;
    }
    // A report (verifyCheckpoint); a load throws on damage instead, so it has no status to read here.
    const status = (result as { status?: unknown }).status;
    const again = attempt < 3 && status === 'damaged' && setStamp(files) !== before;
    release(held, !again);
    if (again) continue;
    return result;
  }
}
