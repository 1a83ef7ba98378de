// Repair in place (issue 18, item 2): the default repair writes only the damaged chunks into the file
// itself (same inode, every hard link sees the repair), `mode: 'copy'` / `--copy` keeps the old
// write-a-new-file behaviour, a file that cannot be opened for writing falls back to a copy, and a
// verify report's damaged chunks can be passed in so that only their stripes are checked.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import diagnostics_channel from 'node:diagnostics_channel';
import {
  chmodSync,
  chownSync,
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

// Issue: a repair in a folder where the sidecar cannot be rewritten repaired the file and then threw
// the sidecar's error (TV_PERMISSION_DENIED on its temporary file), as if nothing had been repaired.
// Now the repair resolves with `sidecarError` (the file repaired, the sidecar's damage listed in
// `after`), and the CLI prints the repair and exits with that error's code (6).
describe('a repair whose sidecar cannot be rewritten', () => {
  const asRoot = process.getuid?.() === 0;
  /** Root may write anywhere: the repairs run as an unprivileged user then (nobody). */
  const user = asRoot ? { uid: 65534, gid: 65534 } : {};

  /**
   * A protected file in a folder of its own, damaged in `chunks` and in its sidecar (`sidecarAt`: a
   * byte offset of the sidecar, or `parity` for the middle one), then the folder made read-only and
   * the sidecar too (the file stays writable by the user that repairs it).
   */
  async function readOnlyFolder(
    name: string,
    options: tv.ProtectOptions,
    chunks: readonly number[],
    sidecarAt: number | 'parity',
  ): Promise<{ folder: string; path: string; original: Buffer; damagedSidecar: string }> {
    const folder = join(dir, name);
    mkdirSync(folder);
    chmodSync(dir, 0o755);
    const path = join(folder, 'f.bin');
    const original = bytes(40 * CS - 123, 21);
    writeFileSync(path, original);
    await tv.protect(path, options);
    damage(path, chunks);
    const side = `${path}.tvecc`;
    const s = readFileSync(side);
    const at = sidecarAt === 'parity' ? s.length >> 1 : sidecarAt;
    s[at] = (s[at] as number) ^ 0x40;
    writeFileSync(side, s);
    if (asRoot) chownSync(path, 65534, 65534); // its owner may write it and set its time back
    chmodSync(side, 0o444);
    chmodSync(folder, 0o555);
    return { folder, path, original, damagedSidecar: sha(readFileSync(side)) };
  }

  function repairAsUser(path: string): {
    error?: { code: string };
    r?: tv.RepairResult & {
      sidecarError: { code: string; message: string; context: { path?: string } } | null;
    };
  } {
    const src = `require(${JSON.stringify(dist)}).repair(${JSON.stringify(path)}).then(
      (r) => console.log(JSON.stringify({ r: { ...r, sidecarError: r.sidecarError && { code: r.sidecarError.code, message: r.sidecarError.message, context: r.sidecarError.context } } })),
      (e) => console.log(JSON.stringify({ error: { code: e.code } })))`;
    const out = spawnSync(process.execPath, ['-e', src], { encoding: 'utf8', ...user });
    expect(out.stderr).toBe('');
    return JSON.parse(out.stdout);
  }

  const cases: [string, tv.ProtectOptions, number | 'parity'][] = [
    ['v1, damaged parity', { k: 4, m: 2, chunkSize: CS }, 'parity'],
    ['v1, damaged header copy (mended in place when writable)', { k: 4, m: 2, chunkSize: CS }, 30],
    ['v2, damaged parity', { format: 'v2', k: 40, m: 4, chunkSize: CS }, 'parity'],
  ];
  it.each(cases)(
    '%s: the file is repaired, the result says the sidecar was not (sidecarError)',
    async (what, options, at) => {
      const name = `ro-${what.replace(/[^a-z0-9]+/gi, '-')}`;
      const { folder, path, original, damagedSidecar } = await readOnlyFolder(name, options, [3, 9], at);
      const { r, error } = repairAsUser(path);
      expect(error).toBeUndefined();
      expect(r?.sidecarError?.code).toBe('TV_PERMISSION_DENIED');
      expect(r?.sidecarError?.context.path?.startsWith(folder)).toBe(true);
      expect(r).toMatchObject({
        repairedChunks: [3, 9],
        fileRewritten: true,
        sidecarRewritten: false,
        writeMode: 'in-place',
      });
      // The file holds the protected bytes; the sidecar is as it was, its damage still reported.
      expect(r?.after.damagedChunks).toEqual([]);
      expect(r?.after.status).toBe('repairable');
      if (at === 'parity') expect(r?.after.damagedParity.length).toBe(1);
      else expect(r?.after.sidecar.headerA).toBe(false);
      expect(sha(readFileSync(path))).toBe(sha(original));
      expect(sha(readFileSync(`${path}.tvecc`))).toBe(damagedSidecar);
      const v = await tv.verify(path);
      expect([v.status, v.damagedChunks]).toEqual(['repairable', []]);
      // With only the sidecar left to rewrite, a repair that cannot write it did nothing: it rejects.
      expect(repairAsUser(path).error?.code).toBe('TV_PERMISSION_DENIED');
      // Once the folder is writable, the sidecar is rewritten.
      chmodSync(folder, 0o755);
      const again = await tv.repair(path);
      expect([again.sidecarRewritten, again.sidecarError, again.after.status]).toEqual([
        true,
        null,
        'intact',
      ]);
      expect((await tv.verify(path)).status).toBe('intact');
    },
  );

  it('the CLI prints the repair and exits with the sidecar error code (6), as JSON too', async () => {
    const { folder, path, original } = await readOnlyFolder(
      'ro-cli',
      { k: 4, m: 2, chunkSize: CS },
      [5],
      'parity',
    );
    const cliAsUser = (...args: string[]) =>
      spawnSync(process.execPath, [cli, 'repair', path, ...args], { encoding: 'utf8', ...user });
    let r = cliAsUser();
    expect(r.status).toBe(6);
    expect(r.stdout).toContain(`repaired ${path}: 1 chunk(s) rebuilt, written in place`);
    expect(r.stdout).toContain('the sidecar was NOT rewritten and is still damaged');
    expect(r.stderr).toContain(`${path} is repaired, but its sidecar ${path}.tvecc could not be rewritten`);
    expect(r.stderr).toContain('[TV_PERMISSION_DENIED]');
    expect(sha(readFileSync(path))).toBe(sha(original));
    // Damaged again: --json prints the result with the error, and the error on stderr.
    chmodSync(folder, 0o755);
    damage(path, [5]);
    chmodSync(folder, 0o555);
    r = cliAsUser('--json');
    expect(r.status).toBe(6);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({
      repairedChunks: [5],
      sidecarRewritten: false,
      sidecarError: { code: 'TV_PERMISSION_DENIED' },
    });
    expect(typeof out.sidecarError.message).toBe('string');
    expect(JSON.parse(r.stderr.trim().split('\n').at(-1) as string)).toMatchObject({
      error: { code: 'TV_PERMISSION_DENIED' },
    });
    expect(sha(readFileSync(path))).toBe(sha(original));
    chmodSync(folder, 0o755);
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

  // Regression: `repair FILE --chunks 10,11` on a file damaged only at chunk 4 printed "intact, nothing to
  // repair" and exited 0, though the file is not intact.
  it('--chunks naming only intact chunks of a damaged file: reports the damage elsewhere, exits as verify would', async () => {
    const { path, original } = await protectedFile('f.bin', 8);
    damage(path, [4]);
    const damaged = readFileSync(path);
    let r = runCli('repair', path, '--chunks', '10,11');
    expect(r.status).toBe(1); // verify's exit code for the file: repairable
    expect(r.stdout).not.toContain('intact, nothing to repair');
    expect(r.stdout).toMatch(/listed chunks are intact.*the file is not intact/);
    expect(r.stdout).toMatch(/damaged chunks: 4\b/);
    expect(runCli('verify', path).status).toBe(r.status);
    r = runCli('repair', path, '--chunks', '10', '--json');
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({
      repairedChunks: [],
      wholeFile: { status: 'repairable', damagedChunks: [4] },
    });
    expect(readFileSync(path).equals(damaged)).toBe(true); // nothing written
    // Repaired: the listed chunks and the file are intact, exit 0.
    expect(runCli('repair', path).status).toBe(0);
    r = runCli('repair', path, '--chunks', '10');
    expect([r.status, r.stdout.trim()]).toEqual([0, `${path}: intact, nothing to repair`]);
    expect(sha(readFileSync(path))).toBe(sha(original));
  });
});
