/**
 * The restore's swap of a folder's entries, made recoverable. A restore with `overwrite` moves the old
 * log's entries into an aside folder and the new ones in from its staging folder: several renames, so a
 * kill between them could leave no log at all. Before the first rename a journal
 * (`.tv-restore.journal`, written atomically and fsynced) records the staging and aside folders and both
 * lists of names; since every rename is atomic, each entry is in exactly one place and the journal tells
 * which one. The next holder of the folder's writer lock (a read-write open of the event log, or the
 * next restore) finishes the swap when the journal says `placing` (the staged files were fully verified
 * before the journal was written) or undoes it when it says `rollback` (the restore had failed), and then
 * removes the journal. A read-only open refuses a half-done swap with `TV_RESTORE_INCOMPLETE` and never
 * reads (or lets anyone start) an empty log in its place.
 *
 * The commit of a finished swap is one rename: the journal moves into the aside folder as its
 * `.tv-restore-committed` marker; the aside folder is then deleted. Folders a dead restore left behind
 * (`.tv-restore-XXXXXX` staging, committed or empty `.tv-restore-old-XXXXXX`) are removed by the next lock
 * holder; the lock proves no restore is running in the folder.
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, TensorVaultError } from '../errors';
import { testHooksBuilt } from '../native';
import { atomicWriteFile } from './atomic';
import { exists, fsyncDir, ioError, makeFolder, readIfExists } from './fs';

/** The journal of a swap in progress, inside the folder whose entries are swapped. */
export const SWAP_JOURNAL = '.tv-restore.journal';
/** Marker inside an aside folder: the swap that filled it was committed; the folder may go. */
const COMMITTED = '.tv-restore-committed';
const STAGING_RE = /^\.tv-restore-[A-Za-z0-9]{6}$/;
const ASIDE_RE = /^\.tv-restore-old-[A-Za-z0-9]{6}$/;

/** What the journal records. */
export interface SwapJournal {
  version: 1;
  /** `placing`: finish it on recovery; `rollback`: undo it. */
  phase: 'placing' | 'rollback';
  /** Staging folder (a name inside the folder) holding the incoming entries not yet moved in. */
  staging: string;
  /** Aside folder holding the old entries already moved out (null when there were none). */
  aside: string | null;
  /** Names of the old entries (moved into `aside`). */
  present: string[];
  /** Names of the new entries (moved in from `staging`). */
  incoming: string[];
}

/**
 * Test hooks (used by `__test__/backup-swap.test.ts` only): `TV_TEST_SWAP_KILL=N` kills this process
 * with SIGKILL at the N-th step of a swap (counted from 0 in the process), `TV_TEST_SWAP_THROW=LABEL`
 * fails the step of that label as an I/O error would. They are read only when the addon is a test build
 * (`testHooksBuilt()`), so a published build ignores them.
 */
let stepCount = 0;
let hooks: boolean | undefined;
export function swapStep(label: string): void {
  hooks ??= testHooksBuilt();
  if (!hooks) return;
  const kill = process.env.TV_TEST_SWAP_KILL;
  if (kill !== undefined && kill === String(stepCount)) process.kill(process.pid, 'SIGKILL');
  stepCount++;
  if (process.env.TV_TEST_SWAP_THROW === label) {
    throw new TensorVaultError(ErrorCode.IO, `test hook: step ${label} failed`, { step: label });
  }
}

const plainName = (n: unknown): n is string =>
  typeof n === 'string' &&
  n.length > 0 &&
  n !== '.' &&
  n !== '..' &&
  !n.includes('/') &&
  !n.includes('\\') &&
  !n.includes('\0') &&
  !n.startsWith('.tv-restore');

function parseJournal(raw: Buffer, path: string): SwapJournal {
  const bad = (why: string): TensorVaultError =>
    new TensorVaultError(
      ErrorCode.CORRUPT,
      `restore journal ${path} is unusable (${why}); nothing was moved`,
      {
        path,
      },
    );
  let v: unknown;
  try {
    v = JSON.parse(raw.toString('utf8'));
  } catch {
    throw bad('not JSON');
  }
  if (typeof v !== 'object' || v === null) throw bad('not an object');
  const j = v as Record<string, unknown>;
  if (j.version !== 1) throw bad('unknown version');
  if (j.phase !== 'placing' && j.phase !== 'rollback') throw bad('unknown phase');
  if (typeof j.staging !== 'string' || !STAGING_RE.test(j.staging)) throw bad('bad staging name');
  if (j.aside !== null && (typeof j.aside !== 'string' || !ASIDE_RE.test(j.aside)))
    throw bad('bad aside name');
  for (const k of ['present', 'incoming'] as const) {
    const list = j[k];
    if (!Array.isArray(list) || !list.every(plainName)) throw bad(`bad ${k} list`);
  }
  if (j.aside === null && (j.present as string[]).length > 0) throw bad('old entries but no aside folder');
  return j as unknown as SwapJournal;
}

async function readJournal(dir: string): Promise<SwapJournal | undefined> {
  const path = join(dir, SWAP_JOURNAL);
  const raw = await readIfExists(path);
  return raw === undefined ? undefined : parseJournal(raw, path);
}

async function move(from: string, to: string): Promise<void> {
  await fsp.rename(from, to).catch((err: unknown) => {
    throw ioError(err, from, `cannot move to ${to}:`);
  });
}

/** Where each entry of a swap is now (every rename is atomic, so each is in exactly one place). */
interface SwapState {
  /** Old entries still in the folder. */
  oldIn: string[];
  /** Old entries in the aside folder. */
  oldAside: string[];
  /** New entries still in staging. */
  newStaged: string[];
  /** New entries in the folder. */
  newIn: string[];
  /** New entries found nowhere (the staging folder was tampered with). */
  newLost: string[];
}

async function state(dir: string, j: SwapJournal): Promise<SwapState> {
  const s: SwapState = { oldIn: [], oldAside: [], newStaged: [], newIn: [], newLost: [] };
  for (const n of j.present) {
    if (j.aside !== null && (await exists(join(dir, j.aside, n)))) s.oldAside.push(n);
    else if (await exists(join(dir, n))) s.oldIn.push(n);
  }
  for (const n of j.incoming) {
    if (await exists(join(dir, j.staging, n))) s.newStaged.push(n);
    // The old entries leave before any new one comes in: a name still held by an old entry is old.
    else if (!s.oldIn.includes(n) && (await exists(join(dir, n)))) s.newIn.push(n);
    else s.newLost.push(n);
  }
  return s;
}

/** True when every old entry is aside and every new one is in place (what a finished swap leaves). */
const complete = (s: SwapState): boolean =>
  s.oldIn.length === 0 && s.newStaged.length === 0 && s.newLost.length === 0;

/**
 * Record the swap: create the aside folder (when there are old entries) and write the journal, fsynced,
 * before anything moves. The caller holds the folder's writer lock and has verified `staging`.
 */
export async function beginSwap(
  dir: string,
  staging: string,
  present: string[],
  incoming: string[],
): Promise<SwapJournal> {
  let aside: string | null = null;
  if (present.length > 0) {
    const path = await fsp.mkdtemp(join(dir, '.tv-restore-old-'));
    aside = path.slice(dir.length + 1);
    swapStep('aside-created');
  }
  const j: SwapJournal = { version: 1, phase: 'placing', staging, aside, present, incoming };
  await atomicWriteFile(join(dir, SWAP_JOURNAL), `${JSON.stringify(j)}\n`, { mode: 0o600 });
  swapStep('journal-written');
  return j;
}

/** Move the old entries aside and the new ones in (idempotent: skips what already moved). */
export async function placeSwap(dir: string, j: SwapJournal): Promise<void> {
  const s = await state(dir, j);
  if (s.newLost.length > 0) {
    throw new TensorVaultError(
      ErrorCode.CORRUPT,
      `cannot finish the restore in ${dir}: staged entries are missing (${s.newLost.join(', ')})`,
      { path: dir },
    );
  }
  for (const n of s.oldIn) {
    swapStep(`aside:${n}`);
    await move(join(dir, n), join(dir, j.aside as string, n));
  }
  for (const n of s.newStaged) {
    swapStep(`in:${n}`);
    await move(join(dir, j.staging, n), join(dir, n));
  }
  swapStep('placed');
  await fsyncDir(dir);
  if (j.aside !== null) await fsyncDir(join(dir, j.aside));
}

/**
 * Undo the swap: the journal is first switched to `rollback` (so a kill during the undo is undone
 * too), then the new entries go back to staging and the old ones back in place.
 */
export async function rollBackSwap(dir: string, j: SwapJournal): Promise<void> {
  if (j.phase !== 'rollback') {
    j.phase = 'rollback';
    await atomicWriteFile(join(dir, SWAP_JOURNAL), `${JSON.stringify(j)}\n`, { mode: 0o600 });
  }
  const s = await state(dir, j);
  if (s.newIn.length > 0) await makeFolder(join(dir, j.staging), 'a folder', { mode: 0o700 });
  for (const n of s.newIn) {
    swapStep(`out:${n}`);
    await move(join(dir, n), join(dir, j.staging, n));
  }
  for (const n of s.oldAside) {
    swapStep(`back:${n}`);
    await move(join(dir, j.aside as string, n), join(dir, n));
  }
  await fsyncDir(dir);
  swapStep('rolled-back');
  await fsp.rm(join(dir, SWAP_JOURNAL), { force: true });
  await fsyncDir(dir);
  await fsp.rm(join(dir, j.staging), { recursive: true, force: true });
  if (j.aside !== null) await fsp.rmdir(join(dir, j.aside)).catch(() => {});
}

/**
 * Commit a placed swap: one rename moves the journal into the aside folder as its committed marker
 * (or removes it when nothing was set aside); then the aside and staging folders are deleted.
 */
export async function commitSwap(dir: string, j: SwapJournal): Promise<void> {
  swapStep('commit');
  if (j.aside !== null) await move(join(dir, SWAP_JOURNAL), join(dir, j.aside, COMMITTED));
  else await fsp.rm(join(dir, SWAP_JOURNAL), { force: true });
  await fsyncDir(dir);
  swapStep('committed');
  if (j.aside !== null) await fsp.rm(join(dir, j.aside), { recursive: true, force: true });
  await fsp.rm(join(dir, j.staging), { recursive: true, force: true });
}

/** What {@link settleSwap} did. */
export interface SettleReport {
  /** An interrupted swap was finished (`finished`) or undone (`rolledBack`). */
  interrupted?: 'finished' | 'rolledBack';
  /** Leftover `.tv-restore-*` folders of dead restores that were removed. */
  removedFolders: number;
}

/**
 * Bring `dir` to a settled state before its event log is used. With `readOnly`, only check: a swap
 * journal whose swap is not complete is refused with `TV_RESTORE_INCOMPLETE` (never read a half-placed
 * or missing log). Otherwise the caller holds the folder's writer lock: finish (`placing`) or undo
 * (`rollback`) an interrupted swap, then remove the folders dead restores left.
 */
export async function settleSwap(dir: string, readOnly: boolean): Promise<SettleReport> {
  const report: SettleReport = { removedFolders: 0 };
  const j = await readJournal(dir);
  if (readOnly) {
    await checkSettled(dir, j);
    return report;
  }
  if (j !== undefined) {
    const s = await state(dir, j);
    if (j.phase === 'placing' && s.newLost.length === 0) {
      await placeSwap(dir, j);
      await commitSwap(dir, j);
      report.interrupted = 'finished';
    } else {
      await rollBackSwap(dir, j);
      report.interrupted = 'rolledBack';
    }
  }
  report.removedFolders = await removeDeadRestoreFolders(dir);
  return report;
}

/**
 * Refuse (`TV_RESTORE_INCOMPLETE`) a folder whose restore was interrupted (or is running) before its
 * log was in place, without changing anything: a swap journal whose swap is not complete, or, without a
 * journal, an aside folder left by a restore older than the journal that a writer's open would move
 * back (see {@link removeDeadRestoreFolders}). Read-only opens and backups call it: they never read a
 * half-placed log, nor report a log that is only set aside as missing.
 */
export async function checkSettled(dir: string, journal?: SwapJournal): Promise<void> {
  const j = journal ?? (await readJournal(dir));
  if (j !== undefined) {
    if (j.phase === 'placing' && complete(await state(dir, j))) return;
    throw new TensorVaultError(
      ErrorCode.RESTORE_INCOMPLETE,
      `a restore into ${dir} was interrupted (or is running) before its log was in place; ` +
        'a read-write open or the next restore finishes or undoes it',
      { path: join(dir, SWAP_JOURNAL), phase: j.phase },
    );
  }
  const aside = await oldAsideToMoveBack(dir);
  if (aside !== undefined) {
    throw new TensorVaultError(
      ErrorCode.RESTORE_INCOMPLETE,
      `a restore into ${dir} by an older tensorvault (without the restore journal) was interrupted (or ` +
        `is running): the log was moved aside into ${aside} and nothing replaced it; make sure no restore ` +
        'is running, then a read-write open (EventLog.open) or the next restore moves it back',
      { path: aside, phase: 'aside' },
    );
  }
}

/**
 * The first aside folder (`.tv-restore-old-XXXXXX`) a restore older than the journal left, which a
 * writer's open would move back: not committed, not empty, and none of its names taken in `dir`.
 */
async function oldAsideToMoveBack(dir: string): Promise<string | undefined> {
  const names = await fsp.readdir(dir).catch(() => [] as string[]);
  for (const name of names.sort()) {
    if (!ASIDE_RE.test(name)) continue;
    const path = join(dir, name);
    const st = await fsp.lstat(path).catch(() => undefined);
    if (st === undefined || !st.isDirectory() || (await exists(join(path, COMMITTED)))) continue;
    const inside = await fsp.readdir(path).catch(() => [] as string[]);
    if (inside.length === 0) continue;
    let taken = false;
    for (const n of inside) if (await exists(join(dir, n))) taken = true;
    if (!taken) return path;
  }
  return undefined;
}

/**
 * Remove the `.tv-restore-*` folders of restores that died (the caller holds the writer lock, so none
 * is running here and no journal names them): staging folders (copies of an archive), and aside folders
 * that are empty or marked committed. An aside folder without the marker holds a log set aside by a
 * restore older than the journal: it is moved back when none of its names is taken, and otherwise kept.
 */
async function removeDeadRestoreFolders(dir: string): Promise<number> {
  let removed = 0;
  const names = await fsp.readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    const path = join(dir, name);
    const isStaging = STAGING_RE.test(name);
    if (!isStaging && !ASIDE_RE.test(name)) continue;
    const st = await fsp.lstat(path).catch(() => undefined);
    if (st === undefined || !st.isDirectory()) continue;
    if (isStaging || (await exists(join(path, COMMITTED)))) {
      await fsp.rm(path, { recursive: true, force: true });
      removed++;
      continue;
    }
    const inside = await fsp.readdir(path);
    const taken: string[] = [];
    for (const n of inside) if (await exists(join(dir, n))) taken.push(n);
    if (taken.length > 0) continue;
    for (const n of inside) await move(join(path, n), join(dir, n));
    await fsyncDir(dir);
    await fsp.rmdir(path);
    removed++;
  }
  return removed;
}
