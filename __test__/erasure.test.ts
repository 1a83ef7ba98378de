import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import diagnostics_channel from 'node:diagnostics_channel';
import {
  copyFileSync,
  existsSync,
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

const dir = tempDir('tv-ecc-');
const cli = join(__dirname, '..', 'dist', 'cli', 'main.js');

/** Deterministic bytes (xorshift) so failures reproduce. */
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

/**
 * Flip bytes of `path` in place, as a failing medium would: the modification time is kept (an edit
 * through the file system, which changes it, is what a stale sidecar is; see the `stale` tests).
 */
function damage(path: string, at: number, len: number, seed: number): void {
  const st = statSync(path);
  const b = readFileSync(path);
  const g = bytes(len, seed);
  for (let i = 0; i < len && at + i < b.length; i++)
    b[at + i] = (b[at + i] as number) ^ ((g[i] as number) | 1);
  writeFileSync(path, b);
  utimesSync(path, st.atime, st.mtime);
}

/** Set both header copies' flags to `flags` and fix their checksums (a well-formed header from a "future" writer). */
function setHeaderFlags(sidecar: string, flags: number): void {
  const b = readFileSync(sidecar);
  for (const at of [0, b.length - 256]) {
    b.writeUInt32LE(flags, at + 12);
    createHash('sha256')
      .update(b.subarray(at, at + 224))
      .digest()
      .copy(b, at + 224);
  }
  writeFileSync(sidecar, b);
}

function runCli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('ErasureCodec (in memory)', () => {
  it('rebuilds any m lost shards byte-exactly', () => {
    const codec = new tv.ErasureCodec(10, 4);
    expect(['avx512-gfni', 'avx2', 'ssse3', 'portable']).toContain(codec.kernel);
    const data = Array.from({ length: 10 }, (_, i) => bytes(100_003, i + 1));
    const parity = codec.encode(data);
    expect(parity).toHaveLength(4);
    const all = [...data, ...parity];
    for (const lost of [[0], [3, 7], [0, 1, 2, 3], [9, 10, 11, 13], [2, 5, 12, 13]]) {
      const shards = all.map((s, i) => (lost.includes(i) ? null : s));
      const out = codec.reconstruct(shards);
      expect(out.map(sha)).toEqual(all.map(sha));
    }
  });

  it('a lost shard may be a hole in the array (never assigned), like null', () => {
    const codec = new tv.ErasureCodec(4, 2);
    const data = Array.from({ length: 4 }, (_, i) => bytes(1001, i + 40));
    const all = [...data, ...codec.encode(data)];
    const shards: (Uint8Array | null)[] = new Array(6);
    for (const i of [1, 2, 3, 4]) shards[i] = all[i] as Uint8Array;
    expect(codec.reconstruct(shards).map(sha)).toEqual(all.map(sha));
  });

  it('encodes into and rebuilds in caller buffers without copying the present shards', () => {
    const codec = new tv.ErasureCodec(5, 3);
    const data = Array.from({ length: 5 }, (_, i) => bytes(70_001, i + 21));
    const want = codec.encode(data);
    // One backing buffer for all parity shards (disjoint ranges), as a caller reusing memory would.
    const block = Buffer.alloc(3 * 70_001, 0xee);
    const parity = [0, 1, 2].map((i) => block.subarray(i * 70_001, (i + 1) * 70_001));
    codec.encodeInto(data, parity);
    expect(parity.map(sha)).toEqual(want.map(sha));
    const all = [...data, ...parity].map((s) => Buffer.from(s));
    const present = all.map((_, i) => ![1, 5, 7].includes(i));
    for (const [i, s] of all.entries()) if (!present[i]) s.fill(0);
    codec.reconstructInto(all, present);
    expect(all.map(sha)).toEqual([...data, ...want].map(sha));
    // reconstruct(): present shards come back as the same memory, lost ones freshly rebuilt.
    const out = codec.reconstruct([data[0], null, data[2], data[3], data[4], null, want[1], want[2]]);
    expect(out[0]?.buffer).toBe(data[0]?.buffer);
    expect(out.map(sha)).toEqual([...data, ...want].map(sha));
    // Outputs overlapping an input or each other are refused before anything is written.
    const overlapping = [block.subarray(0, 70_001), block.subarray(10, 70_011), parity[2] as Buffer];
    expect(() => codec.encodeInto(data, overlapping)).toThrow(
      expect.objectContaining({ code: 'TV_INVALID_ARGUMENT' }),
    );
    expect(() =>
      codec.encodeInto(data, [data[0] as Buffer, parity[1] as Buffer, parity[2] as Buffer]),
    ).toThrow(expect.objectContaining({ code: 'TV_INVALID_ARGUMENT' }));
    const before = sha(data[0] as Buffer);
    expect(() =>
      codec.reconstructInto(
        [all[0] as Buffer, all[0] as Buffer, ...all.slice(2)],
        [true, false, ...present.slice(2)],
      ),
    ).toThrow(expect.objectContaining({ code: 'TV_INVALID_ARGUMENT' }));
    expect(sha(data[0] as Buffer)).toBe(before);
    expect(() => codec.reconstructInto(all, present.slice(1))).toThrow(
      expect.objectContaining({ code: 'TV_INVALID_ARGUMENT' }),
    );
  });

  it('refuses too many losses and bad arguments with typed errors', () => {
    const codec = new tv.ErasureCodec(4, 2);
    const data = Array.from({ length: 4 }, (_, i) => bytes(64, i + 9));
    const all = [...data, ...codec.encode(data)];
    expect(() => codec.reconstruct([null, null, null, ...all.slice(3)])).toThrow(
      expect.objectContaining({ code: 'TV_ECC_UNREPAIRABLE', context: { lost: 3, budget: 2 } }),
    );
    expect(() => codec.encode(data.slice(1))).toThrow(
      expect.objectContaining({ code: 'TV_INVALID_ARGUMENT' }),
    );
    expect(() => codec.encode([...data.slice(1), Buffer.alloc(3)])).toThrow(
      expect.objectContaining({ code: 'TV_INVALID_ARGUMENT' }),
    );
    expect(() => new tv.ErasureCodec(0, 2)).toThrow(expect.objectContaining({ code: 'TV_INVALID_ARGUMENT' }));
    expect(() => new tv.ErasureCodec(200, 57)).toThrow(
      expect.objectContaining({ code: 'TV_INVALID_ARGUMENT' }),
    );
  });
});

describe('protect / verify / repair', () => {
  it('locates a burst, repairs it byte-exactly and reports progress', async () => {
    const file = join(dir, 'burst.bin');
    const original = bytes(3_000_000, 42);
    writeFileSync(file, original);
    const progress: number[] = [];
    const p = await tv.protect(file, { level: 'high', onProgress: (x) => progress.push(x.bytesDone) });
    expect(p.sidecarPath).toBe(`${file}.tvecc`);
    // Issue 18: a file that fits one GF(2^8) stripe gets one stripe of k + m ≤ 255 (format v1, any m
    // chunks): 3 MB at `high` → 46 chunks of 64 KiB + 19 parity.
    expect(p.layout).toMatchObject({ k: 46, m: 19, stripes: 1, formatVersion: 1, fileLength: 3_000_000 });
    expect(progress.at(-1)).toBe(3_000_000);
    expect((await tv.verify(file)).status).toBe('intact');

    damage(file, 1_000_000, 200_000, 7); // a burst over several consecutive chunks
    const v = await tv.verify(file);
    expect(v.status).toBe('repairable');
    expect(v.damagedChunks.length).toBeGreaterThan(1);
    const cs = v.layout.chunkSize;
    expect(v.damagedChunks[0]).toBe(Math.floor(1_000_000 / cs));
    expect(v.damagedChunks.at(-1)).toBe(Math.floor((1_200_000 - 1) / cs));

    const r = await tv.repair(file);
    expect(r.before.status).toBe('repairable');
    expect(r.after.status).toBe('intact');
    expect(r.repairedChunks).toEqual(v.damagedChunks);
    expect(r.fileRewritten).toBe(true);
    expect(sha(readFileSync(file))).toBe(sha(original));
  });

  it('records its chunk digest: blake3 by default, sha256 on request (root = the chunk tree root)', async () => {
    const file = join(dir, 'digest.bin');
    const original = bytes(1_500_000, 5);
    writeFileSync(file, original);
    const b = await tv.protect(file, { level: 'medium' });
    expect(b.layout.digest).toBe('blake3');
    const s = await tv.protect(file, { level: 'medium', digest: 'sha256' });
    expect(s.layout.digest).toBe('sha256');
    // With SHA-256 leaves the sidecar's root is the file's chunk-tree root at the sidecar's chunk size.
    const tree = await tv.hashFile(file, { chunkSize: s.layout.chunkSize });
    expect(s.root).toBe(tree.digest);
    expect(b.root).not.toBe(tree.digest);
    for (const digest of ['blake3', 'sha256'] as const) {
      writeFileSync(file, original);
      await tv.protect(file, { k: 4, m: 2, chunkSize: 65536, digest });
      damage(file, 200_000, 70_000, 11);
      const v = await tv.verify(file);
      expect(v.layout.digest).toBe(digest);
      expect(v.damagedChunks).toEqual([3, 4]);
      expect((await tv.repair(file)).after.status).toBe('intact');
      expect(sha(readFileSync(file))).toBe(sha(original));
    }
    await expect(tv.protect(file, { digest: 'md5' as never })).rejects.toMatchObject({
      code: 'TV_INVALID_ARGUMENT',
    });
  });

  it('repairs truncation, appended garbage and a damaged sidecar header', async () => {
    const file = join(dir, 'trunc.bin');
    const original = bytes(1_500_000, 5);
    writeFileSync(file, original);
    await tv.protect(file, { k: 8, m: 3, chunkSize: 16384 });
    const sidecar = `${file}.tvecc`;
    const goodSidecar = readFileSync(sidecar);

    truncateSync(file, 1_500_000 - 40_000);
    damage(sidecar, 10, 4, 3); // header A
    const v = await tv.verify(file);
    expect(v.status).toBe('repairable');
    expect(v.actualLength).toBe(1_460_000);
    expect(v.sidecar.headerA).toBe(false);
    expect(v.sidecar.headerB).toBe(true);
    const r = await tv.repair(file);
    expect(r.sidecarRewritten).toBe(true);
    expect(sha(readFileSync(file))).toBe(sha(original));
    expect(readFileSync(sidecar).equals(goodSidecar)).toBe(true);

    writeFileSync(file, Buffer.concat([original, Buffer.from('trailing garbage')]));
    expect((await tv.verify(file)).status).toBe('repairable');
    await tv.repair(file);
    expect(sha(readFileSync(file))).toBe(sha(original));
  });

  it('reports damage beyond the budget as unrepairable and changes nothing', async () => {
    const file = join(dir, 'beyond.bin');
    writeFileSync(file, bytes(400_000, 11));
    await tv.protect(file, { k: 4, m: 1, chunkSize: 4096 });
    const { layout } = await tv.verify(file);
    // Two chunks of the same stripe: chunk 0 and chunk `stripes`.
    damage(file, 0, 10, 1);
    damage(file, layout.stripes * 4096, 10, 2);
    const damaged = readFileSync(file);
    const v = await tv.verify(file);
    expect(v.status).toBe('unrepairable');
    expect(v.unrepairableStripes).toEqual([0]);
    expect(v.unrepairableChunks).toEqual([0, layout.stripes]);
    await expect(tv.repair(file)).rejects.toMatchObject({
      code: 'TV_ECC_UNREPAIRABLE',
      context: { chunks: `0,${layout.stripes}` },
    });
    expect(readFileSync(file).equals(damaged)).toBe(true);
  });

  it('gives typed errors for a missing or unusable sidecar, bad options and abort', async () => {
    const file = join(dir, 'errors.bin');
    writeFileSync(file, bytes(50_000, 3));
    await expect(tv.verify(file)).rejects.toMatchObject({ code: 'TV_NOT_FOUND' });
    // A mistyped path names the file, not its sidecar (it said "no such file: PATH.tvecc").
    const typo = join(dir, 'no-such-file.bin');
    for (const op of [tv.verify, tv.repair]) {
      const e = await op(typo).then(
        () => undefined,
        (err: unknown) => err as tv.TensorVaultError,
      );
      expect([e?.code, e?.message, e?.context.path]).toEqual(['TV_NOT_FOUND', `no such file: ${typo}`, typo]);
    }
    writeFileSync(`${file}.tvecc`, 'definitely not a sidecar');
    await expect(tv.verify(file)).rejects.toMatchObject({ code: 'TV_ECC_SIDECAR_CORRUPT' });
    await expect(tv.protect(file, { k: 4, m: 2, chunkSize: 5000 })).rejects.toMatchObject({
      code: 'TV_INVALID_ARGUMENT',
      context: { argument: 'chunkSize' },
    });
    await expect(tv.protect(file, { k: 4 })).rejects.toMatchObject({ code: 'TV_INVALID_ARGUMENT' });
    await expect(tv.protect(file, { level: 'extreme' as never })).rejects.toMatchObject({
      code: 'TV_INVALID_ARGUMENT',
    });
    const ac = new AbortController();
    ac.abort();
    await expect(tv.protect(file, { signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('stops a running protect when the signal fires and leaves no sidecar', async () => {
    const file = join(dir, 'abort.bin');
    writeFileSync(file, Buffer.alloc(96 * 1024 * 1024, 1));
    const ac = new AbortController();
    const job = tv.protect(file, {
      k: 4,
      m: 1,
      chunkSize: 4096,
      signal: ac.signal,
      onProgress: (p) => {
        if (p.bytesDone > 0) ac.abort();
      },
      progressIntervalMs: 1,
    });
    setTimeout(() => ac.abort(), 5);
    await expect(job).rejects.toMatchObject({ name: 'AbortError', code: 'TV_ABORTED' });
    expect(existsSync(`${file}.tvecc`)).toBe(false);
  });

  it('survives a fixed-seed corruption campaign with zero silent wrong results', async () => {
    const counts = { repaired: 0, unrepairable: 0, sidecarUnusable: 0 };
    for (let seed = 1; seed <= 30; seed++) {
      const file = join(dir, `campaign-${seed}.bin`);
      const original = bytes(20_000 + seed * 7919, seed);
      writeFileSync(file, original);
      await tv.protect(file, { k: 2 + (seed % 6), m: 1 + (seed % 3), chunkSize: 4096 });
      const g = bytes(8, seed * 31);
      const hits = 1 + ((g[0] as number) % 4);
      for (let h = 0; h < hits; h++) {
        const target = (g[h + 1] as number) % 5 === 0 ? `${file}.tvecc` : file;
        const size = readFileSync(target).length;
        damage(target, ((g[h + 4] as number) * 997 * seed) % size, 1 + ((g[h] as number) % 9000), seed + h);
      }
      const before = readFileSync(file);
      try {
        await tv.repair(file);
        expect(sha(readFileSync(file))).toBe(sha(original)); // never a silent wrong result
        expect((await tv.verify(file)).status).toBe('intact');
        counts.repaired++;
      } catch (err) {
        const code = (err as { code?: string }).code;
        expect(['TV_ECC_UNREPAIRABLE', 'TV_ECC_SIDECAR_CORRUPT']).toContain(code);
        expect(readFileSync(file).equals(before)).toBe(true);
        if (code === 'TV_ECC_UNREPAIRABLE') counts.unrepairable++;
        else counts.sidecarUnusable++;
      }
    }
    expect(counts.repaired + counts.unrepairable + counts.sidecarUnusable).toBe(30);
    expect(counts.repaired).toBeGreaterThan(10);
  });
});

describe('telemetry of protected files (tensorvault:ecc, issue 14 item 6)', () => {
  it('verify publishes damage (not "ok"), repair publishes the rebuilt chunks, an unrepairable repair publishes failed', async () => {
    const events: Record<string, unknown>[] = [];
    const onMessage = (m: unknown) => events.push(m as Record<string, unknown>);
    diagnostics_channel.subscribe(tv.ECC_CHANNEL, onMessage);
    try {
      const file = join(dir, 'telemetry.bin');
      writeFileSync(file, bytes(600_000, 3));
      await tv.protect(file, { k: 4, m: 2, chunkSize: 4096 });
      await tv.verify(file);
      damage(file, 10_000, 100, 1);
      await tv.verify(file);
      await tv.repair(file);
      const layout = (await tv.verify(file)).layout;
      // Enough damage in one stripe to exceed its parity: chunks s, s + S, s + 2S.
      for (let j = 0; j < 3; j++) damage(file, j * layout.stripes * 4096 + 5, 10, 9);
      await tv.repair(file).catch(() => undefined);
      const summary = events.map((e) => `${e.op}:${e.event}`);
      expect(summary.slice(0, 3)).toEqual(['verify:verified', 'verify:damaged', 'repair:repaired']);
      expect(events[1]).toMatchObject({ status: 'repairable', damagedChunks: [2] });
      expect(events[2]).toMatchObject({ status: 'intact', repairedChunks: [2] });
      expect(events.at(-1)).toMatchObject({ op: 'repair', event: 'failed', code: 'TV_ECC_UNREPAIRABLE' });
      expect(typeof events[0]?.ms).toBe('number');
    } finally {
      diagnostics_channel.unsubscribe(tv.ECC_CHANNEL, onMessage);
    }
  });
});

describe('stale sidecars: edits made after protect (issue 13, item 16)', () => {
  it('a file edited after protect is reported stale, and repair does not roll it back unless forced', async () => {
    const file = join(dir, 'edited.bin');
    const original = bytes(20_000, 21);
    writeFileSync(file, original);
    // 5 chunks of 4 KiB, 3 + 2 per stripe: an edit of 3 chunks is within the parity budget, so the old
    // repair "fixed" it, silently rolling the edit back.
    await tv.protect(file, { k: 3, m: 2, chunkSize: 4096 });
    const protectedMtime = statSync(file).mtimeMs;
    const edited = Buffer.from(original);
    for (let i = 0; i < 12_288; i++) edited[i] = ((edited[i] as number) + 1) & 0xff;
    writeFileSync(file, edited);
    const later = new Date(protectedMtime + 60_000);
    utimesSync(file, later, later);

    const v = await tv.verify(file);
    expect(v.status).toBe('stale');
    expect(v.damageStatus).toBe('repairable');
    expect(v.modifiedSinceProtect).toBe(true);
    expect(v.differingBytes).toBe(12_288);
    await expect(tv.repair(file)).rejects.toMatchObject({
      code: 'TV_ECC_STALE_SIDECAR',
      context: { path: file, differingBytes: 12_288, fileLength: 20_000 },
    });
    expect(readFileSync(file).equals(edited)).toBe(true);
    await expect(tv.repair(file, { force: 'yes' as never })).rejects.toMatchObject({
      code: 'TV_INVALID_ARGUMENT',
      context: { argument: 'force' },
    });

    const cliVerify = runCli('verify', file);
    expect(cliVerify.status).toBe(2);
    expect(cliVerify.stdout).toContain('STALE');
    const cliRepair = runCli('repair', file);
    expect(cliRepair.status).toBe(2);
    expect(cliRepair.stderr).toContain('TV_ECC_STALE_SIDECAR');
    expect(readFileSync(file).equals(edited)).toBe(true);

    // Forced: rolled back to the protected bytes, which get their protected modification time back.
    const r = await tv.repair(file, { force: true });
    expect(r.before.status).toBe('stale');
    expect(r.after.status).toBe('intact');
    expect(sha(readFileSync(file))).toBe(sha(original));
    expect(statSync(file).mtimeMs).toBe(protectedMtime);

    // The CLI's --force does the same.
    writeFileSync(file, edited);
    utimesSync(file, later, later);
    expect(runCli('repair', file, '--force').status).toBe(0);
    expect(sha(readFileSync(file))).toBe(sha(original));
  });

  // Issue 21, item 1: in a file of one or two chunks, one changed byte damages a chunk that is most of
  // the file, so a stray write (new modification time) was reported stale and repair refused it, saying
  // "80 of its 80 bytes differ". The damaged chunks are now rebuilt and compared byte by byte.
  it('a small file with one byte changed and a new modification time is repairable, not stale', async () => {
    for (const size of [80, 4072, 8072]) {
      const file = join(dir, `small-${size}.bin`);
      const original = bytes(size, size);
      writeFileSync(file, original);
      await tv.protect(file);
      const later = new Date(statSync(file).mtimeMs + 60_000);
      const changed = Buffer.from(original);
      changed[9] = ((changed[9] as number) ^ 0x5a) & 0xff;
      writeFileSync(file, changed);
      utimesSync(file, later, later);
      const v = await tv.verify(file);
      expect([size, v.status, v.modifiedSinceProtect, v.differingBytes, v.differingExact]).toEqual([
        size,
        'repairable',
        true,
        1,
        true,
      ]);
      const cli = runCli('verify', file);
      expect([size, cli.status]).toEqual([size, 1]);
      expect(runCli('repair', file).status).toBe(0);
      expect(sha(readFileSync(file))).toBe(sha(original));
      // Its first chunk rewritten (most of the file): an edit, stale, the bytes that differ counted exactly.
      const n = Math.min(size, 4096);
      const edited = Buffer.from(original.map((b, i) => (i < n ? (b + 1) & 0xff : b)));
      writeFileSync(file, edited);
      utimesSync(file, later, later);
      const e = await tv.verify(file);
      expect([e.status, e.differingBytes, e.differingExact]).toEqual(['stale', n, true]);
      expect(runCli('verify', file).stdout).toContain(`and ${n} of its bytes differ`);
    }
  });

  it('appended bytes (new modification time) are cut by repair; an append longer than the file is stale', async () => {
    const file = join(dir, 'appended.bin');
    const original = bytes(20_000, 23);
    writeFileSync(file, original);
    await tv.protect(file, { k: 3, m: 2, chunkSize: 4096 });
    const protectedMtime = statSync(file).mtimeMs;
    const later = new Date(protectedMtime + 60_000);
    // An append shorter than the file: differing bytes, not most of the file; repair cuts it in place.
    writeFileSync(file, Buffer.concat([original, bytes(9_000, 24)]));
    utimesSync(file, later, later);
    const v = await tv.verify(file);
    expect([v.status, v.modifiedSinceProtect, v.differingBytes, v.damagedChunks]).toEqual([
      'repairable',
      true,
      9_000,
      [],
    ]);
    const r = await tv.repair(file);
    expect([r.writeMode, r.repairedChunks]).toEqual(['in-place', []]);
    expect(readFileSync(file).equals(original)).toBe(true);
    expect(statSync(file).mtimeMs).toBe(protectedMtime);
    // An append longer than the file: most of its bytes differ, so it is an edit (stale), kept unless forced.
    const longer = Buffer.concat([original, bytes(20_001, 25)]);
    writeFileSync(file, longer);
    utimesSync(file, later, later);
    expect((await tv.verify(file)).status).toBe('stale');
    await expect(tv.repair(file)).rejects.toMatchObject({ code: 'TV_ECC_STALE_SIDECAR' });
    expect(readFileSync(file).equals(longer)).toBe(true);
    await tv.repair(file, { force: true });
    expect(readFileSync(file).equals(original)).toBe(true);
  });

  it('the same bytes changed with the modification time kept are damage, repaired as before', async () => {
    const file = join(dir, 'rotted.bin');
    const original = bytes(20_000, 22);
    writeFileSync(file, original);
    await tv.protect(file, { k: 3, m: 2, chunkSize: 4096 });
    damage(file, 0, 12_288, 7);
    const v = await tv.verify(file);
    expect(v.status).toBe('repairable');
    expect(v.modifiedSinceProtect).toBe(false);
    await tv.repair(file);
    expect(sha(readFileSync(file))).toBe(sha(original));
    // A small change with a new modification time is still repaired, and the report says so.
    const small = Buffer.from(original);
    small[5] = (small[5] as number) ^ 1;
    writeFileSync(file, small);
    const later = new Date(statSync(file).mtimeMs + 60_000);
    utimesSync(file, later, later);
    const w = await tv.verify(file);
    expect([w.status, w.modifiedSinceProtect, w.differingBytes]).toEqual(['repairable', true, 4096]);
    await tv.repair(file);
    expect(sha(readFileSync(file))).toBe(sha(original));
  });

  it('reads sidecars written before the hints existed (never stale) and refuses unknown flags', async () => {
    // Written by the version before this change (flags 0, no modification time recorded).
    const fixture = join(__dirname, 'fixtures', 'ecc-v1', 'old.bin');
    const file = join(dir, 'old.bin');
    copyFileSync(fixture, file);
    copyFileSync(`${fixture}.tvecc`, `${file}.tvecc`);
    const original = readFileSync(file);
    const v = await tv.verify(file);
    expect(v.status).toBe('intact');
    expect(v.modifiedSinceProtect).toBeNull();
    expect(v.layout).toMatchObject({ k: 3, m: 2, chunkSize: 4096, fileLength: 20_000 });
    // Without a recorded modification time a rewrite cannot be told from damage: repaired as before.
    const edited = Buffer.from(original);
    for (let i = 0; i < 12_288; i++) edited[i] = ((edited[i] as number) + 1) & 0xff;
    writeFileSync(file, edited);
    expect((await tv.verify(file)).status).toBe('repairable');
    await tv.repair(file);
    expect(readFileSync(file).equals(original)).toBe(true);

    // A header with a flag this reader does not know (valid checksum) is refused, not guessed at.
    const fresh = join(dir, 'flags.bin');
    writeFileSync(fresh, original);
    await tv.protect(fresh, { k: 3, m: 2, chunkSize: 4096 });
    setHeaderFlags(`${fresh}.tvecc`, 1 | 2);
    await expect(tv.verify(fresh)).rejects.toMatchObject({ code: 'TV_ECC_SIDECAR_CORRUPT' });
    setHeaderFlags(`${fresh}.tvecc`, 1);
    expect((await tv.verify(fresh)).status).toBe('intact');
  });
});

describe('CLI', () => {
  it('protect / verify / repair with par2-style exit codes and --json', () => {
    const file = join(dir, 'cli.bin');
    const original = bytes(700_000, 99);
    writeFileSync(file, original);
    const p = runCli('protect', file, '--level', 'medium', '--json');
    expect(p.status).toBe(0);
    expect(JSON.parse(p.stdout)).toMatchObject({
      file,
      layout: { k: 22, m: 3, stripes: 1, formatVersion: 1 },
    });
    expect(runCli('verify', file).status).toBe(0);
    damage(file, 300_000, 100, 4);
    const v = runCli('verify', file, '--json');
    expect(v.status).toBe(1);
    expect(JSON.parse(v.stdout).status).toBe('repairable');
    const r = runCli('repair', file);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('re-verified intact');
    expect(sha(readFileSync(file))).toBe(sha(original));
    // Beyond the budget: the whole file zeroed by a write (a new modification time): it looks like an
    // edit, so the sidecar is reported stale and repair refuses; forced, the damage is unrepairable.
    writeFileSync(file, Buffer.alloc(original.length));
    const st = runCli('verify', file);
    expect(st.status).toBe(2);
    expect(st.stdout).toContain('STALE');
    const stale = runCli('repair', file);
    expect(stale.status).toBe(2);
    expect(stale.stderr).toContain('TV_ECC_STALE_SIDECAR');
    const bad = runCli('repair', file, '--force');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('TV_ECC_UNREPAIRABLE');
    expect(runCli('protect', file, '--k', '4').status).toBe(3);
    expect(runCli('protect', file, '--digest', 'md5').status).toBe(3);
    const sp = runCli('protect', file, '--digest', 'sha256', '--json');
    expect(sp.status).toBe(0);
    expect(JSON.parse(sp.stdout).layout.digest).toBe('sha256');
    expect(runCli('verify', join(dir, 'nope.bin')).status).toBe(6);
  });

  it('bench ecc prints a table, JSON and an SVG chart', () => {
    const svg = join(dir, 'bench.svg');
    // The smallest possible run of one code: 4 KiB shards, one thread, 1 ms rounds.
    const bench = (code: string, ...rest: string[]) =>
      runCli(
        'bench',
        'ecc',
        '--codes',
        code,
        '--shard-size',
        '4k',
        '--threads',
        '1',
        '--round-ms',
        '1',
        '--file-size',
        '1M',
        ...rest,
      );
    const r = bench('4+2', '--svg', svg, '--json');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.rows).toHaveLength(1);
    expect(out.rows[0].encode).toBeGreaterThan(0);
    expect(readFileSync(svg, 'utf8')).toContain('<svg');
    expect(out.rows[0].verifyBlake3).toBeGreaterThan(0);
    // Issue 18: the file comparison shows sidecar format v2 beside v1.
    expect(out.files.map((f: { formatVersion: number }) => f.formatVersion)).toEqual([1, 2]);
    expect(out.files[1].protect).toBeGreaterThan(0);
    expect(runCli('bench', 'nope').status).toBe(3);
    // A named kernel is measured (portable runs everywhere); an unknown one is a usage error.
    const p = bench('2+1', '--kernel', 'portable', '--no-svg', '--json');
    expect(p.status).toBe(0);
    expect(JSON.parse(p.stdout).kernel).toBe('portable');
    // The sidecar rows run the process's kernels whatever --kernel says, and say so; the first line
    // names the --kernel of the codec rows (it named only the process's kernels).
    const cpu = tv.cpuInfo();
    expect(JSON.parse(p.stdout).files.map((f: { kernel: string }) => f.kernel)).toEqual([
      cpu.erasureKernel,
      cpu.wideEngine,
    ]);
    const text = bench('2+1', '--kernel', 'portable', '--no-svg', '-q');
    expect(text.status).toBe(0);
    expect(text.stdout.split('\n')[0]).toMatch(/^cpu: .*; codec rows: --kernel portable$/);
    expect(text.stdout).toContain(`v1 ${cpu.erasureKernel}, v2 ${cpu.wideEngine}; --kernel does not apply`);
    const bad = runCli('bench', 'ecc', '--kernel', 'nope', '--no-svg');
    expect(bad.status).toBe(3);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toContain('TV_INVALID_ARGUMENT');
  });
});

describe('local parity groups (format v2, issue 18)', () => {
  const CS = 4096;

  it('repairs one damaged chunk per group beyond m, and a listed chunk from its group alone', async () => {
    const file = join(dir, 'lrc.bin');
    const original = bytes(256 * CS - 700, 1801);
    writeFileSync(file, original);
    const { layout } = await tv.protect(file, { format: 'v2', k: 256, m: 8, chunkSize: CS });
    // 16 groups of 16 chunks; the 16 local parity chunks come after the 8 global ones.
    expect([layout.formatVersion, layout.m, layout.localGroup, layout.localGroups]).toEqual([2, 8, 16, 16]);
    const entries = 256 + 8 + 16;
    expect(layout.sidecarLength).toBe(512 + 2 * Math.ceil(entries / 127) * 4096 + (8 + 16) * CS);
    // One flipped chunk in each group: 16 damaged chunks, twice m.
    const set = Array.from({ length: 16 }, (_, q) => q * 16 + ((q * 5) % 16));
    for (const c of set) damage(file, c * CS + 11, 1, c);
    const v = await tv.verify(file);
    expect(v.status).toBe('repairable');
    expect(v.damagedChunks).toEqual(set);
    const r = await tv.repair(file);
    expect(r.repairedChunks).toEqual(set);
    expect(sha(readFileSync(file))).toBe(sha(original));
    // A chunk known from a verify report: repaired from its group (the whole file is not checked).
    damage(file, 40 * CS + 3, 1, 9);
    const listed = (await tv.verify(file)).damagedChunks;
    expect(listed).toEqual([40]);
    const k = await tv.repair(file, { chunks: listed });
    expect([k.checkedBefore, k.repairedChunks]).toEqual(['listed', [40]]);
    expect(sha(readFileSync(file))).toBe(sha(original));
    // Three damaged chunks in each of three groups (9 > m, none alone): unrepairable, named as such.
    for (const c of [0, 1, 2, 16, 17, 18, 32, 33, 34]) damage(file, c * CS + 7, 1, c);
    expect((await tv.verify(file)).status).toBe('unrepairable');
    const err = await tv.repair(file).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'TV_ECC_UNREPAIRABLE' });
    expect(String((err as Error).message)).toContain(
      '9 damaged data chunk(s) need the global parity but only 8',
    );
  });

  it('reads and repairs v2 sidecars written before local parity existed', async () => {
    // Written by the build before local parity (flags = 1: file hints only).
    const fixture = join(__dirname, 'fixtures', 'ecc-v2', 'old.bin');
    const file = join(dir, 'old-v2.bin');
    copyFileSync(fixture, file);
    copyFileSync(`${fixture}.tvecc`, `${file}.tvecc`);
    utimesSync(file, 1767225600, 1767225600);
    const original = readFileSync(file);
    const v = await tv.verify(file);
    expect(v.status).toBe('intact');
    expect(v.layout).toMatchObject({ formatVersion: 2, k: 64, m: 8, localGroup: 0, localGroups: 0 });
    const set = [0, 9, 17, 30, 31, 32, 50, 63];
    for (const c of set) damage(file, c * CS + 1, 1, c);
    expect((await tv.verify(file)).damagedChunks).toEqual(set);
    await tv.repair(file);
    expect(sha(readFileSync(file))).toBe(sha(original));
    // m + 1 without local parity: unrepairable.
    for (const c of [...set, 40]) damage(file, c * CS + 1, 1, c);
    expect((await tv.verify(file)).status).toBe('unrepairable');
  });
});
