// Issue 13 item 7: a restore with overwrite killed in the middle of its swap (old log aside, new log in)
// must leave the old log or the new one, never none; the next open or restore finishes or undoes it.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { tempDir } from './helpers/tmp';

const root = tempDir('tv-swap-');
let n = 0;
const fresh = (): string => {
  const d = join(root, `d${++n}`);
  mkdirSync(d, { recursive: true });
  return d;
};
const child = join(__dirname, 'helpers/restore-child.mjs');
const leftovers = (d: string): string[] => readdirSync(d).filter((x) => x.startsWith('.tv-restore'));

async function makeLog(count: number, opts: tv.EventLogOptions = {}): Promise<string> {
  const d = fresh();
  const log = await tv.EventLog.open(d, { fsync: 'never', segmentSize: 3, snapshotEvery: 2, ...opts });
  for (let i = 0; i < count; i++) await log.append('Bazari', `E${i % 3}`, 'Situacao', `s${i}`, { i });
  await log.close();
  return d;
}

function runChild(
  archive: string,
  dest: string,
  env: Record<string, string>,
): { killed: boolean; out: string } {
  const r = spawnSync(process.execPath, [child, archive, dest], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { killed: r.signal === 'SIGKILL', out: r.stdout.trim() };
}

/** Events in the log at `dest` through a read-only open, or the refusal's code. */
async function readOnlyView(dest: string): Promise<number | string> {
  try {
    const log = await tv.EventLog.open(dest, { readOnly: true });
    expect((await log.verifyChainFull()).valid).toBe(true);
    return await log.count();
  } catch (err) {
    return (err as tv.TensorVaultError).code;
  }
}

/** Events after a read-write open (which settles an interrupted swap); the chain must verify. */
async function writerView(dest: string): Promise<number> {
  const log = await tv.EventLog.open(dest);
  try {
    expect((await log.verifyChainFull()).valid).toBe(true);
    return await log.count();
  } finally {
    await log.close();
  }
}

interface Case {
  name: string;
  /** The old log (undefined: the destination holds none). */
  old?: { events: number; format: tv.EventLogFormat };
  /** TV_TEST_SWAP_THROW: fail this step (the restore then rolls back). */
  fail?: string;
}

const CASES: Case[] = [
  { name: 'v2 over v2', old: { events: 4, format: 'v2' } },
  { name: 'v2 over legacy (different names)', old: { events: 5, format: 'legacy' } },
  { name: 'into a folder without a log' },
  { name: 'rollback after a failed check in place', old: { events: 4, format: 'v2' }, fail: 'verified' },
];

describe('restore --overwrite killed at every step of the swap (issue 13 item 7)', () => {
  for (const c of CASES) {
    it(`${c.name}: the log afterwards is the old one or the new one, never empty`, async () => {
      const NEW = 6;
      const src = await makeLog(NEW);
      const r = await tv.createBackup(src, fresh());
      const template = c.old ? await makeLog(c.old.events, { format: c.old.format }) : fresh();
      const allowed = new Set<number>([NEW, ...(c.old ? [c.old.events] : [])]);
      const outcomes = new Set<number>();
      let kills = 0;
      for (let k = 0; k < 60; k++) {
        const dest = join(fresh(), 'dest');
        cpSync(template, dest, { recursive: true });
        const env: Record<string, string> = { TV_TEST_SWAP_KILL: String(k) };
        if (c.fail) env.TV_TEST_SWAP_THROW = c.fail;
        const res = runChild(r.archivePath, dest, env);
        if (!res.killed) {
          // Past the last step: the restore ran to its end.
          expect(res.out).toBe(c.fail ? 'error TV_IO' : 'done');
          const final = await writerView(dest);
          expect(final).toBe(c.fail ? c.old?.events : NEW);
          expect(leftovers(dest)).toEqual([]);
          break;
        }
        kills++;
        // A reader sees the old log or the new one, or is told a restore is unfinished.
        const seen = await readOnlyView(dest);
        if (typeof seen === 'number') expect(allowed.has(seen)).toBe(true);
        else
          expect(c.old ? ['TV_RESTORE_INCOMPLETE'] : ['TV_RESTORE_INCOMPLETE', 'TV_NOT_FOUND']).toContain(
            seen,
          );
        // The next writer or restore settles the swap: old or new, with a valid chain; leftovers gone.
        if (c.old === undefined || k % 2 === 1) {
          // A restore without overwrite: refused when the settled folder holds a log, else it restores.
          try {
            await tv.restoreBackup(r.archivePath, dest);
          } catch (err) {
            expect((err as tv.TensorVaultError).code).toBe('TV_EXISTS');
          }
        }
        const events = await writerView(dest);
        expect(allowed.has(events)).toBe(true);
        outcomes.add(events);
        expect(leftovers(dest)).toEqual([]);
      }
      // Every step of the swap was a kill point (aside folder, journal, each rename, commit).
      expect(kills).toBeGreaterThanOrEqual(c.old ? 8 : 4);
      expect(outcomes.has(NEW)).toBe(true);
      if (c.old) expect(outcomes.has(c.old.events)).toBe(true);
    }, 120_000);
  }

  it('a log set aside by a restore killed before this fix is put back, not replaced by an empty log', async () => {
    const dest = await makeLog(4);
    // What the old restore left after a kill between its renames: the log in .tv-restore-old-*, a staging copy.
    const aside = join(dest, '.tv-restore-old-Ab12Cd');
    mkdirSync(aside);
    for (const name of ['event-log', 'event-log-snapshot.json'])
      renameSync(join(dest, name), join(aside, name));
    mkdirSync(join(dest, '.tv-restore-Zz99Yy', 'event-log'), { recursive: true });
    writeFileSync(join(dest, '.tv-restore-Zz99Yy', 'event-log', 'segment-000001.jsonl'), 'partial');
    expect(await writerView(dest)).toBe(4);
    expect(leftovers(dest)).toEqual([]);
  });

  it('until a writer puts it back, a log set aside by an older restore is TV_RESTORE_INCOMPLETE to readers and backups, not TV_NOT_FOUND', async () => {
    // Regression: read-only opens, `eventlog verify` and `backup create` said there was no event log
    // (TV_NOT_FOUND, exit 6) while a writer's open moved it back.
    const dest = await makeLog(4);
    const aside = join(dest, '.tv-restore-old-Ab12Cd');
    mkdirSync(aside);
    for (const name of ['event-log', 'event-log-snapshot.json'])
      renameSync(join(dest, name), join(aside, name));
    mkdirSync(join(dest, '.tv-restore-Zz99Yy'));
    const before = readdirSync(dest).sort();
    const incomplete = { code: 'TV_RESTORE_INCOMPLETE', context: { path: aside } };
    await expect(tv.EventLog.open(dest, { readOnly: true })).rejects.toMatchObject(incomplete);
    await expect(tv.EventLog.open(dest, { readOnly: true })).rejects.toThrow(/moves it back/);
    await expect(tv.createBackup(dest, fresh())).rejects.toMatchObject(incomplete);
    const cli = spawnSync(
      process.execPath,
      [join(__dirname, '..', 'dist', 'cli', 'main.js'), 'eventlog', 'verify', dest],
      {
        encoding: 'utf8',
      },
    );
    expect(cli.status).toBe(4);
    expect(cli.stderr).toContain('.tv-restore-old-Ab12Cd');
    // Nothing moved; a writer's open puts the log back, and readers see it again.
    expect(readdirSync(dest).sort()).toEqual(before);
    expect(await writerView(dest)).toBe(4);
    const ro = await tv.EventLog.open(dest, { readOnly: true });
    expect(await ro.count()).toBe(4);
    await ro.close();
    // A folder with no log and nothing set aside is still "no event log".
    await expect(tv.EventLog.open(fresh(), { readOnly: true })).rejects.toMatchObject({
      code: 'TV_NOT_FOUND',
    });
  });

  it('a published build (no test exports in the addon) ignores the swap hooks in its environment', async () => {
    // A shim addon: the real one without its test-build exports, loaded through TENSORVAULT_NATIVE_PATH.
    const shim = join(fresh(), 'release-shim.cjs');
    const real = join(__dirname, '..', 'native', 'tensorvault.linux-x64-gnu.node');
    writeFileSync(
      shim,
      `const a = require(${JSON.stringify(real)});\n` +
        'module.exports = Object.fromEntries(Object.entries(a).filter(([k]) => !k.startsWith("__test")));\n',
    );
    const src = await makeLog(3);
    const r = await tv.createBackup(src, fresh());
    const dest = await makeLog(2);
    const res = runChild(r.archivePath, dest, { TV_TEST_SWAP_KILL: '0', TENSORVAULT_NATIVE_PATH: shim });
    expect(res).toEqual({ killed: false, out: 'done' });
    expect(await writerView(dest)).toBe(3);
    // The same hook in a test build does kill: the shim is what made the difference.
    const dest2 = await makeLog(2);
    expect(runChild(r.archivePath, dest2, { TV_TEST_SWAP_KILL: '0' }).killed).toBe(true);
  });

  it('an unreadable journal is refused with TV_CORRUPT and nothing moves', async () => {
    const dest = await makeLog(3);
    writeFileSync(join(dest, '.tv-restore.journal'), '{"version":1,"phase":"placing","staging":"../x"}');
    await expect(tv.EventLog.open(dest)).rejects.toMatchObject({ code: 'TV_CORRUPT' });
    await expect(tv.EventLog.open(dest, { readOnly: true })).rejects.toMatchObject({ code: 'TV_CORRUPT' });
    const r = await tv.createBackup(await makeLog(2), fresh());
    await expect(tv.restoreBackup(r.archivePath, dest, { overwrite: true })).rejects.toMatchObject({
      code: 'TV_CORRUPT',
    });
    expect(readdirSync(join(dest, 'event-log')).length).toBeGreaterThan(0);
  });
});
