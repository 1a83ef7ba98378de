/**
 * The local cache of lazy remote loads (`cacheDir`): what a cache entry is (a folder named by the
 * weights' SHA-256 holding one checkpoint's files), and its eviction down to `cacheBytes`. Only provable
 * entries are ever counted or removed.
 */
import { lstat, readdir, rm, rmdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { alive } from '../io/atomic';

/** A cache entry's folder name: the first 32 hex digits of the weights' SHA-256. */
const ENTRY_NAME = /^[0-9a-f]{32}$/;
/**
 * The files a cache entry holds: `NAME.safetensors` and its `.meta.json`, `.chunks` hint, `.tvob`, and
 * `.remote.tvecc`, the stored parity, fetched only to repair damaged chunks (not named `.tvecc`, so
 * that the local load never takes it for the set's own parity).
 */
const ENTRY_FILE = /^(.+\.safetensors)(\.meta\.json|\.chunks|\.tvob|\.remote\.tvecc)?$/;
/** Temporary files of an atomic write into an entry. */
const ENTRY_TEMP = /^\..+\.tmp$/;
/** The mark of an open `RemoteCheckpoint` on its entry: `.tv-open-PID-RANDOM` (removed by `close`). */
const ENTRY_MARK = /^\.tv-open-(\d+)-[0-9a-f]+$/;

/**
 * The files of `dir` when it is provably a cache entry (a 32-hex name, a real folder holding only
 * regular files of one checkpoint: its weights, sidecar, chunk hint, outboard, and temporaries of their
 * atomic writes), else undefined: anything else in the cache folder is not ours and is never removed.
 */
async function entryFiles(
  dir: string,
  name: string,
): Promise<{ files: string[]; used: number; open: boolean } | undefined> {
  if (!ENTRY_NAME.test(name)) return undefined;
  const st = await lstat(dir).catch(() => undefined);
  if (st === undefined || !st.isDirectory()) return undefined;
  const names = await readdir(dir).catch(() => undefined);
  if (names === undefined) return undefined;
  let base: string | undefined;
  let used = 0;
  let isOpen = false;
  for (const n of names) {
    const fst = await lstat(join(dir, n)).catch(() => undefined);
    if (fst === undefined || !fst.isFile()) return undefined;
    used += fst.blocks * 512;
    const mark = ENTRY_MARK.exec(n);
    if (mark !== null) {
      // Open in a live process (this one or another sharing the cache); a dead one's mark is stale.
      if (alive(Number(mark[1]))) isOpen = true;
      continue;
    }
    if (ENTRY_TEMP.test(n)) continue;
    const m = ENTRY_FILE.exec(n);
    if (m === null || (base !== undefined && base !== m[1])) return undefined;
    base = m[1];
  }
  return { files: names, used, open: isOpen };
}

/**
 * Remove other cache entries, least recently used first, until the entries hold at most `limit` bytes
 * (allocated blocks, sparse holes not counted). Only provable cache entries are counted or removed
 * (see {@link entryFiles}): a `cacheDir` shared with other data loses none of it. Entries marked open
 * by a live process are kept (the bound is then exceeded until they close). An entry is removed
 * file by file, then its folder (which fails, leaving it, if something new appeared in it).
 */
export async function evict(root: string, keep: string, limit: number): Promise<void> {
  const entries: { dir: string; files: string[]; used: number; open: boolean; at: number }[] = [];
  for (const e of await readdir(root).catch(() => [] as string[])) {
    const dir = join(root, e);
    const found = await entryFiles(dir, e);
    if (found === undefined) continue;
    const s = await stat(dir).catch(() => undefined);
    if (s !== undefined) entries.push({ dir, ...found, at: s.mtimeMs });
  }
  let total = entries.reduce((a, e) => a + e.used, 0);
  for (const e of entries.sort((a, b) => a.at - b.at)) {
    if (total <= limit) break;
    // Never the entry being opened, nor one a live RemoteCheckpoint (of any process) still reads.
    if (e.dir === keep || e.open) continue;
    for (const f of e.files) await rm(join(e.dir, f), { force: true });
    await rmdir(e.dir).catch(() => {});
    total -= e.used;
  }
}
