// Repair in place (issue 18, item 2): the default repair writes only the damaged chunks into the file
// itself (same inode, every hard link sees the repair), `mode: 'copy'` / `--copy` keeps the old
// write-a-new-file behaviour, a file that cannot be opened for writing falls back to a copy, and a
// verify report's damaged chunks can be passed in so that only their stripes are checked.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import diagnostics_channel from 'node:diagnostics_channel';
import {
  chmodSync,
  linkSync,
  mkdirSync,
  readFileSync,
  statSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { tempDir } from './helpers/tmp';

const dir = tempDir('tv-ecc-inplace-');
const cli = join(__dirname, '..', 'dist', 'cli', 'main.js');
const dist = join(__dirname, '..', 'dist', 'index.js');
const CS = 4096;

function bytes(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Flip one byte in each of `chunks`, keeping the modification time (media damage). */
function damage(path: string, chunks: readonly number[]): void {
  const st = statSync(path);
  const b = readFileSync(path);
  for (const c of chunks) b[c * CS + 33] = (b[c * CS + 33] as number) ^ 0x81;
  writeFileSync(path, b);
  utimesSync(path, st.atime, st.mtime);
}

/** A protected file of 40 chunks of 4 KiB, 4 + 2 per stripe (10 stripes: chunk i in stripe i % 10). */
async function protectedFile(name: string, seed: number): Promise<{ path: string; original: Buffer }> {
  const path = join(dir, name);
  const original = bytes(40 * CS - 123, seed);
  writeFileSync(path, original);
  await tv.protect(path, { k: 4, m: 2, chunkSize: CS });
  return { path, original };
}

function runCli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function code(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe('repair in place', () => {
  it('writes into the same inode, restores length and modification time, and re-checks what it wrote', async () => {
    const { path, original } = await protectedFile('a.bin', 1);
    const link = join(dir, 'a-link.bin');
    linkSync(path, link);
    const { ino, mtimeMs } = statSync(path);
    damage(path, [0, 11, 27]);
    truncateSync(path, 38 * CS + 7); // chunks 38 (partly) and 39 lost
    utimesSync(path, new Date(), new Date(mtimeMs));
    const progress: { bytesDone: number; bytesTotal: number }[] = [];
    const r = await tv.repair(path, { onProgress: (p) => progress.push(p) });
    expect(r.writeMode).toBe('in-place');
    expect(r.repairedChunks).toEqual([0, 11, 27, 38, 39]);
    // The count covers every pass (verify, rebuild, re-check) and ends at its total.
    expect(progress.every((p) => p.bytesDone <= p.bytesTotal)).toBe(true);
    expect(progress.at(-1)?.bytesDone).toBe(progress.at(-1)?.bytesTotal);
    expect([r.checkedBefore, r.checkedAfter]).toEqual(['file', 'written']);
    expect(r.after.status).toBe('intact');
    expect(statSync(path).ino).toBe(ino);
    expect(statSync(path).mtimeMs).toBe(mtimeMs);
    expect(sha(readFileSync(path))).toBe(sha(original));
    expect(sha(readFileSync(link))).toBe(sha(original)); // one inode: the link is repaired too
    expect((await tv.verify(path)).status).toBe('intact');
  });

  it("mode 'copy' replaces the path with a new file and leaves another hard link as it was", async () => {
    const { path, original } = await protectedFile('b.bin', 2);
    damage(path, [5]);
    const link = join(dir, 'b-link.bin');
    linkSync(path, link);
    const { ino } = statSync(path);
    const events: { writeMode?: string }[] = [];
    const listen = (m: unknown): void => {
      events.push(m as { writeMode?: string });
    };
    diagnostics_channel.subscribe(tv.ECC_CHANNEL, listen);
    const r = await tv
      .repair(path, { mode: 'copy' })
      .finally(() => diagnostics_channel.unsubscribe(tv.ECC_CHANNEL, listen));
    expect([r.writeMode, r.checkedAfter]).toEqual(['copy', 'file']);
    expect(events.at(-1)).toMatchObject({ event: 'repaired', op: 'repair', writeMode: 'copy' });
    expect(statSync(path).ino).not.toBe(ino);
    expect(sha(readFileSync(path))).toBe(sha(original));
    expect(sha(readFileSync(link))).not.toBe(sha(original));
  });

  it('with the damaged chunks passed in, only their stripes are checked and repaired', async () => {
    const { path, original } = await protectedFile('c.bin', 3);
    damage(path, [2, 12, 33]); // 2 and 12 share stripe 2; 33 is in stripe 3
    const r = await tv.repair(path, { chunks: [2] });
    expect(r.checkedBefore).toBe('listed');
    expect(r.repairedChunks).toEqual([2, 12]);
    expect((await tv.verify(path)).damagedChunks).toEqual([33]);
    const v = await tv.verify(path);
    await tv.repair(path, { chunks: v.damagedChunks });
    expect(sha(readFileSync(path))).toBe(sha(original));
  });

  it('damaged byte ranges (from another check) select their chunks as a list does', async () => {
    const { path, original } = await protectedFile('r.bin', 5);
    damage(path, [2, 12, 33]);
    const cs = (await tv.verify(path)).layout.chunkSize;
    // The bytes of chunk 2 (its stripe holds 12 too) and a range across the end of 32 into 33.
    const r = await tv.repair(path, {
      ranges: [
        [2 * cs + 10, 5],
        [33 * cs - 1, 2],
      ],
    });
    expect(r.checkedBefore).toBe('listed');
    expect(r.repairedChunks).toEqual([2, 12, 33]);
    expect(sha(readFileSync(path))).toBe(sha(original));
  });

  it('bad options are TV_INVALID_ARGUMENT and change nothing', async () => {
    const { path } = await protectedFile('d.bin', 4);
    damage(path, [1]);
    const damaged = sha(readFileSync(path));
    // biome-ignore lint/suspicious/noExplicitAny: a wrong value on purpose
    expect(await code(tv.repair(path, { mode: 'sideways' as any }))).toBe('TV_INVALID_ARGUMENT');
    expect(await code(tv.repair(path, { chunks: [40] }))).toBe('TV_INVALID_ARGUMENT');
    expect(await code(tv.repair(path, { chunks: [-1] }))).toBe('TV_INVALID_ARGUMENT');
    expect(await code(tv.repair(path, { chunks: [1.5] }))).toBe('TV_INVALID_ARGUMENT');
    // biome-ignore lint/suspicious/noExplicitAny: a wrong value on purpose
    expect(await code(tv.repair(path, { chunks: 1 as any }))).toBe('TV_INVALID_ARGUMENT');
    // biome-ignore lint/suspicious/noExplicitAny: a wrong value on purpose
    expect(await code(tv.repair(path, { ranges: [[1, 2, 3]] as any }))).toBe('TV_INVALID_ARGUMENT');
    expect(await code(tv.repair(path, { ranges: [[-1, 2]] }))).toBe('TV_INVALID_ARGUMENT');
    expect(await code(tv.repair(path, { ranges: [[0, 0.5]] }))).toBe('TV_INVALID_ARGUMENT');
    expect(sha(readFileSync(path))).toBe(damaged);
  });

  it('a file that cannot be opened for writing is repaired through a copy; in-place mode refuses it', async () => {
    const sub = join(dir, 'ro');
    mkdirSync(sub);
    chmodSync(dir, 0o755); // reachable by the unprivileged user below
    chmodSync(sub, 0o777); // a folder it may write (the copy is created there)
    const path = join(sub, 'ro.bin');
    const original = bytes(40 * CS, 6);
    writeFileSync(path, original);
    await tv.protect(path, { k: 4, m: 2, chunkSize: CS });
    damage(path, [9]);
    chmodSync(path, 0o444);
    const damaged = sha(readFileSync(path));
    // Root may write any file: run the repairs as an unprivileged user then.
    const asRoot = process.getuid?.() === 0;
    const run = (options: string): { code?: string; writeMode?: string } => {
      const src = `require(${JSON.stringify(dist)}).repair(${JSON.stringify(path)}, ${options}).then(
        (r) => console.log(JSON.stringify({ writeMode: r.writeMode })),
        (e) => console.log(JSON.stringify({ code: e.code })))`;
      const r = spawnSync(process.execPath, ['-e', src], {
        encoding: 'utf8',
        ...(asRoot ? { uid: 65534, gid: 65534 } : {}),
      });
      return JSON.parse(r.stdout);
    };
    expect(run("{ mode: 'in-place' }")).toEqual({ code: 'TV_PERMISSION_DENIED' });
    expect(sha(readFileSync(path))).toBe(damaged);
    expect(run('{}')).toEqual({ writeMode: 'copy' });
    expect(sha(readFileSync(path))).toBe(sha(original));
    expect(statSync(path).mode & 0o777).toBe(0o444);
  });
});

describe('CLI repair --copy / --chunks / --report', () => {
  it('repairs in place by default, through a copy with --copy, and only the listed stripes with --chunks', async () => {
    const { path, original } = await protectedFile('e.bin', 7);
    damage(path, [4]);
    let { ino } = statSync(path);
    let r = runCli('repair', path);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('written in place');
    expect(statSync(path).ino).toBe(ino);
    damage(path, [4]);
    r = runCli('repair', path, '--copy', '--json');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ writeMode: 'copy', repairedChunks: [4] });
    expect(statSync(path).ino).not.toBe(ino);
    ({ ino } = statSync(path));
    damage(path, [6, 17]);
    r = runCli('repair', path, '--chunks', '6', '--json');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ checkedBefore: 'listed', repairedChunks: [6] });
    const report = join(dir, 'verify.json');
    writeFileSync(report, runCli('verify', path, '--json').stdout);
    r = runCli('repair', path, '--report', report, '--json');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ checkedBefore: 'listed', repairedChunks: [17] });
    expect(statSync(path).ino).toBe(ino);
    expect(sha(readFileSync(path))).toBe(sha(original));
    expect(runCli('repair', path, '--copy', '--in-place').status).toBe(3);
    expect(runCli('repair', path, '--chunks', '1,x').status).toBe(3);
  });
});
