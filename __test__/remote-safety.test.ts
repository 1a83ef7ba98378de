// Regressions of the object-storage code found by a QA probe: data loss (cache eviction, damaged
// pushes), lazy loads sharing a cache, damaged or missing stored objects, configuration mistakes. Same
// real S3-compatible server as __test__/remote.test.ts (s3s-fs, built by scripts/setup-s3.mjs into a
// cache folder outside the clone), started here on 127.0.0.1 with a random port and fresh credentials.
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { flipStored, type S3Server, type SetupS3, s3Available, setupPath } from './helpers/s3';
import { tempDir } from './helpers/tmp';

const available = s3Available;

const dir = tempDir('tv-remote-safety-');
const MiB = 1024 * 1024;
const BUCKET = 'tvsafe';

/** `n` tensors of `floats` float32 each, values a function of (seed, tensor, index). */
function tensors(n: number, floats: number, seed = 0): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (let i = 0; i < n; i++)
    out[`layer.${i}`] = new Float32Array(floats).map((_, j) => seed + i * 1000 + (j % 997));
  return out;
}

describe.skipIf(!available)('remote safety (S3-compatible server s3s-fs)', () => {
  let s: S3Server;
  let opts: {
    endpoint: string;
    credentials: { accessKeyId: string; secretAccessKey: string };
    region: string;
  };
  const state = join(dir, 'state');

  /** Save a checkpoint of `n` 1 MiB tensors under `dir/src-NAME/` and push it to `s3://BUCKET/NAME`. */
  async function pushed(name: string, n = 3, o: { ecc?: 'medium'; seed?: number } = {}): Promise<string> {
    const f = join(dir, `src-${name}`, 'model.safetensors');
    mkdirSync(join(dir, `src-${name}`), { recursive: true });
    await tv.saveCheckpoint(f, tensors(n, 262_144, o.seed ?? 0), o.ecc === undefined ? {} : { ecc: o.ecc });
    return (await tv.push(f, `s3://${BUCKET}/${name}`, { ...opts, stateDir: state })).url;
  }

  beforeAll(async () => {
    const setup = (await import(setupPath)) as SetupS3;
    s = await setup.startS3Server({ root: join(dir, 'store') });
    mkdirSync(join(s.root, BUCKET), { recursive: true });
    opts = {
      endpoint: s.endpoint,
      credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey },
      region: 'us-east-1',
    };
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('cache eviction removes only cache entries, never other folders inside cacheDir', async () => {
    // Regression: eviction ran rm -rf on every subfolder of cacheDir, cache entry or not.
    const cacheDir = join(dir, 'shared-cache');
    const keepers = {
      'my-dataset/shard-0/data.bin': Buffer.alloc(4 * MiB, 7),
      'my-dataset/README': 'precious',
      // A 32-hex name is not enough: this one holds a subfolder and a foreign file.
      '0123456789abcdef0123456789abcdef/notes/a.txt': 'mine',
      '0123456789abcdef0123456789abcdef/model.safetensors': Buffer.alloc(3 * MiB, 1),
      'fedcba9876543210fedcba9876543210/report.pdf': Buffer.alloc(2 * MiB, 2),
    };
    for (const [p, data] of Object.entries(keepers)) {
      mkdirSync(join(cacheDir, p, '..'), { recursive: true });
      writeFileSync(join(cacheDir, p), data);
    }
    const foreign = Object.fromEntries(readdirSync(cacheDir).map((d) => [d, true]));
    const old = new Date(Date.now() - 86_400_000);
    for (const d of readdirSync(cacheDir)) utimesSync(join(cacheDir, d), old, old);
    const a = await tv.loadCheckpoint((await pushed('evict-a')) as `s3://${string}`, {
      ...opts,
      cacheDir,
      cacheBytes: MiB,
    });
    await a.tensors();
    a.close();
    const aEntry = readdirSync(cacheDir).filter((d) => !(d in foreign));
    expect(aEntry.length).toBe(1);
    utimesSync(join(cacheDir, aEntry[0] as string), old, old);
    const b = await tv.loadCheckpoint((await pushed('evict-b', 3, { seed: 5 })) as `s3://${string}`, {
      ...opts,
      cacheDir,
      cacheBytes: MiB,
    });
    b.close();
    for (const [p, data] of Object.entries(keepers))
      expect(readFileSync(join(cacheDir, p)).equals(Buffer.from(data))).toBe(true);
    // The real cache entry of the first checkpoint is still evicted.
    expect(existsSync(join(cacheDir, aEntry[0] as string))).toBe(false);
  });

  it('a locally damaged checkpoint is not pushed: the stored set and a fresh prefix are unchanged', async () => {
    // Regression: the sealed leaves were compared only after the upload completed, and with overwrite
    // the old manifest was deleted first: the good set was replaced by the damaged weights.
    const url = await pushed('damaged-push', 12, { ecc: 'medium' });
    const key = join(s.root, BUCKET, 'damaged-push');
    const before = Object.fromEntries(readdirSync(key).map((f) => [f, readFileSync(join(key, f))]));
    for (const [n, at] of [
      [12, 9 * MiB + 17], // multipart (12 MiB > 8 MiB parts), damage in the second part
      [3, 2 * MiB + 5], // one PutObject
    ] as const) {
      const bad = join(dir, `src-bad-${n}`, 'model.safetensors');
      mkdirSync(join(dir, `src-bad-${n}`), { recursive: true });
      await tv.saveCheckpoint(bad, tensors(n, 262_144, 9), { ecc: 'medium' });
      const b = readFileSync(bad);
      b[at] = (b[at] as number) ^ 1; // bit rot after the save
      writeFileSync(bad, b);
      for (const [target, o] of [
        ['damaged-push', { overwrite: true }],
        [`damaged-fresh-${n}`, {}],
      ] as const) {
        await expect(
          tv.push(bad, `s3://${BUCKET}/${target}`, { ...opts, ...o, stateDir: state }),
        ).rejects.toMatchObject({ code: 'TV_CHECKPOINT_INTEGRITY' });
      }
      expect(existsSync(join(s.root, BUCKET, `damaged-fresh-${n}`, 'model.safetensors'))).toBe(false);
      expect(await tv.listRemote(`s3://${BUCKET}/damaged-fresh-${n}`, opts)).toEqual([]);
    }
    for (const [f, data] of Object.entries(before))
      expect(readFileSync(join(key, f)).equals(data)).toBe(true);
    expect((await tv.verifyRemote(url, { ...opts, cacheDir: join(dir, 'cache-dp') })).status).toBe('intact');
  });

  it('opening another checkpoint never evicts the entry of one still open (in this or another process)', async () => {
    // Regression: eviction kept only the entry being opened; a RemoteCheckpoint still open then failed
    // for good (TV_NOT_FOUND) on its next tensor().
    const cacheDir = join(dir, 'cache-open');
    const o = { ...opts, cacheDir, cacheBytes: 2 * MiB };
    const urlA = (await pushed('open-a', 4, { seed: 1 })) as `s3://${string}`;
    const urlB = (await pushed('open-b', 4, { seed: 2 })) as `s3://${string}`;
    const a = await tv.loadCheckpoint(urlA, o);
    await a.tensor('layer.0');
    await a.tensor('layer.2');
    const b = await tv.loadCheckpoint(urlB, o);
    await b.tensor('layer.1');
    const b2 = await tv.loadCheckpoint(urlB, o); // an open runs the eviction again
    const want = tensors(4, 262_144, 1);
    for (const n of ['layer.0', 'layer.3']) {
      const t = await a.tensor(n);
      expect(Buffer.from(t.bytes).equals(Buffer.from((want[n] as Float32Array).buffer))).toBe(true);
    }
    const entryA = join(cacheDir, readdirSync(cacheDir).find((d) => a.path.includes(d)) as string);
    a.close();
    b.close();
    b2.close();
    // Marked open by another live process (the parent of this one): kept as well; a dead process's
    // mark does not keep it.
    writeFileSync(join(entryA, `.tv-open-${process.ppid}-abcdef`), '');
    const utime = new Date(Date.now() - 60_000);
    utimesSync(entryA, utime, utime);
    (await tv.loadCheckpoint(urlB, o)).close();
    expect(existsSync(a.path)).toBe(true);
    rmSync(join(entryA, `.tv-open-${process.ppid}-abcdef`));
    writeFileSync(join(entryA, '.tv-open-2147483646-abcdef'), '');
    utimesSync(entryA, utime, utime);
    (await tv.loadCheckpoint(urlB, o)).close();
    expect(existsSync(entryA)).toBe(false);
  });

  it('an open replaces the cached sidecar atomically: a reader of the old file never sees it rewritten', async () => {
    // Regression: each open rewrote meta.json in place (truncate, write): processes lazily loading one
    // URL through a shared cache read it half-written ("sidecar is not valid JSON") at random.
    const cacheDir = join(dir, 'cache-meta');
    const url = (await pushed('meta', 2, { seed: 3 })) as `s3://${string}`;
    (await tv.loadCheckpoint(url, { ...opts, cacheDir })).close();
    const metaPath = join(cacheDir, readdirSync(cacheDir)[0] as string, 'model.safetensors.meta.json');
    const good = readFileSync(metaPath);
    writeFileSync(metaPath, good.subarray(0, 100)); // a stale, torn copy, held open by a "reader"
    const fd = openSync(metaPath, 'r');
    try {
      const ck = await tv.loadCheckpoint(url, { ...opts, cacheDir });
      expect((await ck.tensor('layer.1')).byteLength).toBe(MiB);
      ck.close();
      expect(readFileSync(metaPath).equals(good)).toBe(true);
      // The reader's file was replaced, not written into: it still reads what it opened.
      expect(readFileSync(fd).equals(good.subarray(0, 100))).toBe(true);
    } finally {
      closeSync(fd);
    }
    // No temporary file is left in the entry.
    expect(readdirSync(join(metaPath, '..')).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('pull repairs one flipped byte of a small checkpoint from its parity (it failed: "no usable parity")', async () => {
    // Regression: a chunk whose digest failed was never written to the staging file, so the parity
    // repair saw a whole transfer chunk of zeros, beyond the parity budget of a small file.
    const url = await pushed('flip1', 6, { ecc: 'medium' });
    const obj = join(s.root, BUCKET, 'flip1', 'model.safetensors');
    const original = readFileSync(obj);
    flipStored(obj, original.byteLength - 2 * MiB + 12_345, 0x40);
    const p = await tv.pull(url, join(dir, 'pulled-flip1'), opts);
    expect(p.repairedChunks).toHaveLength(1);
    expect(readFileSync(p.path).equals(original)).toBe(true);
  });

  it('a truncated stored object is damage, repaired from the parity (was TV_REMOTE_UNAVAILABLE, HTTP 416)', async () => {
    // Regression: a ranged GET past the end of a shorter object (HTTP 416 InvalidRange) was taken for an
    // outage: verify, pull and a lazy tensor() failed with TV_REMOTE_UNAVAILABLE, the CLI exited 6.
    const url = await pushed('short', 12, { ecc: 'medium' });
    const obj = join(s.root, BUCKET, 'short', 'model.safetensors');
    const original = readFileSync(obj);
    const cacheDir = join(dir, 'cache-short');
    truncateSync(obj, original.byteLength - 300_000); // the last two chunks (11, 12) missing
    const v = await tv.verifyRemote(url, { ...opts, cacheDir });
    expect(v.status).toBe('repairable');
    expect(v.files[0]).toMatchObject({ storedSize: original.byteLength - 300_000, damagedChunks: [11, 12] });
    const p = await tv.pull(url, join(dir, 'pulled-short'), opts);
    expect(p.repairedChunks).toEqual([11, 12]);
    expect(readFileSync(p.path).equals(original)).toBe(true);
    // A lazy load repairs the missing chunks from the stored parity (__test__/remote-lazy-repair.test.ts);
    // with repair off it names the tensor and the chunks.
    const last = (n: readonly string[]): string => n[n.length - 1] as string;
    const off = await tv.loadCheckpoint(url as `s3://${string}`, {
      ...opts,
      cacheDir: join(dir, 'cache-short-off'),
      repair: false,
    });
    await expect(off.tensor(last(off.names))).rejects.toMatchObject({
      code: 'TV_REMOTE_DAMAGED',
      context: { tensor: last(off.names), chunks: '11,12' },
    });
    off.close();
    const ck = await tv.loadCheckpoint(url as `s3://${string}`, { ...opts, cacheDir });
    const t = await ck.tensor(last(ck.names));
    const at = ck.info(last(ck.names)).fileOffset;
    expect(Buffer.from(t.bytes).equals(original.subarray(at, at + t.byteLength))).toBe(true);
    ck.close();
    const cli = spawnSync(
      process.execPath,
      [join(__dirname, '..', 'dist', 'cli', 'main.js'), 'verify', url],
      {
        encoding: 'utf8',
        env: { ...process.env, ...s.env, TV_REMOTE_CACHE: join(dir, 'cli-cache') },
      },
    );
    expect(cli.status).toBe(1); // repairable
  });

  it('an extended or replaced object, a truncated parity: damage in the report, repair restores the size', async () => {
    // Regression: the stored size was never compared with the manifest's (100 bytes more verified
    // intact); a replaced object failed the verify at the header instead of being reported.
    const url = await pushed('long', 12, { ecc: 'medium' });
    const obj = join(s.root, BUCKET, 'long', 'model.safetensors');
    const original = readFileSync(obj);
    const cacheDir = join(dir, 'cache-long');
    // Longer than recorded: every chunk matches, but the object is not what was pushed.
    writeFileSync(obj, Buffer.concat([original, Buffer.alloc(100)]));
    const w = await tv.verifyRemote(url, { ...opts, cacheDir });
    expect(w.status).toBe('repairable');
    expect(w.files[0]).toMatchObject({ storedSize: original.byteLength + 100, damagedChunks: [] });
    expect((await tv.repairRemote(url, { ...opts, workDir: dir })).status).toBe('repaired');
    expect(readFileSync(obj).equals(original)).toBe(true);
    // Replaced by a file of another size, and a truncated parity: damage, never an outage.
    writeFileSync(obj, readFileSync(`${obj}.tvecc`));
    const r = await tv.verifyRemote(url, { ...opts, cacheDir: join(dir, 'cache-long2') });
    // Beyond the parity (every chunk differs): damaged, as pull then finds (this said repairable).
    expect(r.status).toBe('damaged');
    expect(r.files[0]?.damagedChunks.slice(0, 2)).toEqual([0, 1]);
    await expect(tv.pull(url, join(dir, 'pulled-long2'), opts)).rejects.toMatchObject({
      code: 'TV_REMOTE_DAMAGED',
    });
    writeFileSync(obj, original);
    truncateSync(`${obj}.tvecc`, 1000);
    const e = await tv.verifyRemote(url, { ...opts, cacheDir });
    expect(e.status).toBe('damaged');
    expect(e.files[1]?.damagedChunks.length).toBeGreaterThan(0);
  });

  it('a deleted parity object: verify reports it missing; pull places the intact weights without it', async () => {
    // Regression: verifyRemote threw TV_REMOTE_NOT_FOUND and pull refused intact weights because the
    // optional .tvecc had been deleted from the store.
    const url = await pushed('noecc', 6, { ecc: 'medium' });
    const obj = join(s.root, BUCKET, 'noecc', 'model.safetensors');
    const original = readFileSync(obj);
    rmSync(`${obj}.tvecc`);
    const v = await tv.verifyRemote(url, { ...opts, cacheDir: join(dir, 'cache-noecc') });
    expect(v.status).toBe('damaged');
    expect(v.files.find((f) => f.name === 'model.safetensors.tvecc')).toMatchObject({
      missing: true,
      storedSize: 0,
    });
    expect(v.files.find((f) => f.name === 'model.safetensors')?.damagedChunks).toEqual([]);
    const dest = join(dir, 'pulled-noecc');
    mkdirSync(dest, { recursive: true });
    writeFileSync(join(dest, 'model.safetensors.tvecc'), 'stale parity of an earlier pull');
    const p = await tv.pull(url, dest, { ...opts, overwrite: true });
    expect(p.skippedFiles).toEqual(['model.safetensors.tvecc']);
    expect(readFileSync(p.path).equals(original)).toBe(true);
    expect(existsSync(`${p.path}.tvecc`)).toBe(false); // not placed, and the stale one is gone
    const ck = await tv.loadCheckpoint(p.path, { verify: 'full' });
    expect(Buffer.from((await ck.tensor('layer.2')).bytes).length).toBe(MiB);
    ck.close();
    // Damaged weights need the parity: without it, the pull fails and places nothing.
    const b = Buffer.from(original);
    b[3 * MiB + 9] = (b[3 * MiB + 9] as number) ^ 1;
    writeFileSync(obj, b);
    await expect(tv.pull(url, join(dir, 'pulled-noecc2'), opts)).rejects.toMatchObject({
      code: 'TV_REMOTE_DAMAGED',
      context: { file: 'model.safetensors', chunks: '3' },
    });
    expect(existsSync(join(dir, 'pulled-noecc2', 'model.safetensors'))).toBe(false);
  });

  it('configuration mistakes are TV_INVALID_ARGUMENT, not TV_REMOTE_UNAVAILABLE', async () => {
    // Regression: an endpoint without a scheme, a bad region and a key the store refuses (HTTP 400) were
    // reported as an outage; maxAttempts 0 / -1 and cacheBytes -1 were accepted silently.
    const url = `s3://${BUCKET}/cfg/model.safetensors` as const;
    const bad: [string, Record<string, unknown>][] = [
      ['endpoint', { endpoint: s.endpoint.replace('http://', '') }],
      ['endpoint', { endpoint: 'not a url' }],
      ['region', { region: 'us east 1!' }],
      ['maxAttempts', { maxAttempts: 0 }],
      ['maxAttempts', { maxAttempts: -1 }],
      ['maxAttempts', { maxAttempts: 1.5 }],
      ['cacheBytes', { cacheBytes: -1 }],
      ['concurrency', { concurrency: 0 }],
    ];
    for (const [argument, o] of bad) {
      await expect(
        tv.loadCheckpoint(url, { ...opts, ...o, cacheDir: join(dir, 'cache-cfg') }),
      ).rejects.toMatchObject({
        code: 'TV_INVALID_ARGUMENT',
        context: { argument },
      });
    }
    await expect(tv.listRemote(`s3://${BUCKET}/`, { ...opts, maxAttempts: 0 })).rejects.toMatchObject({
      code: 'TV_INVALID_ARGUMENT',
    });
    // A pull's rangeSize of 0, a fraction or NaN was taken as one chunk per request, without a word.
    for (const rangeSize of [0, 1.5, Number.NaN, 1024]) {
      await expect(tv.pull(url, join(dir, 'pulled-cfg'), { ...opts, rangeSize })).rejects.toMatchObject({
        code: 'TV_INVALID_ARGUMENT',
        context: { argument: 'rangeSize' },
      });
    }
    // A key longer than the store accepts (HTTP 400 KeyTooLongError): refused at once, nothing stored.
    const f = join(dir, 'src-cfg', 'model.safetensors');
    mkdirSync(join(dir, 'src-cfg'), { recursive: true });
    await tv.saveCheckpoint(f, tensors(1, 1000));
    const t0 = performance.now();
    const err = (await tv
      .push(f, `s3://${BUCKET}/${'k'.repeat(2000)}`, { ...opts, stateDir: state })
      .catch((e: unknown) => e)) as tv.TensorVaultError;
    expect(err).toMatchObject({ code: 'TV_INVALID_ARGUMENT', context: { status: 400 } });
    expect(performance.now() - t0).toBeLessThan(2000); // not retried with backoff
    expect(readdirSync(join(s.root, BUCKET)).some((k) => k.startsWith('kkk'))).toBe(false);
  });

  it('a pull refused because the files exist leaves no staging folder behind', async () => {
    // Regression: the staging folder .tv-pull-* was made before the existence check, and left empty.
    const url = await pushed('exists', 1);
    const dest = join(dir, 'pulled-exists');
    await tv.pull(url, dest, opts);
    const before = readdirSync(dest).sort();
    await expect(tv.pull(url, dest, opts)).rejects.toMatchObject({ code: 'TV_EXISTS' });
    expect(readdirSync(dest).sort()).toEqual(before);
    expect(before.some((f) => f.startsWith('.tv-pull-'))).toBe(false);
  });

  it('pull progress reaches the total when chunks are repaired from the parity or the parity is left out', async () => {
    // Regression: the chunks rebuilt from the parity were never counted: the progress stopped short.
    const url = await pushed('progress', 12, { ecc: 'medium' });
    const obj = join(s.root, BUCKET, 'progress', 'model.safetensors');
    flipStored(obj, 2 * MiB + 3);
    const last = async (dest: string): Promise<{ bytesDone: number; bytesTotal: number }> => {
      let at = { bytesDone: 0, bytesTotal: -1 };
      const onProgress = (pr: { bytesDone: number; bytesTotal: number }): void => {
        at = pr;
      };
      const p = await tv.pull(url, join(dir, dest), { ...opts, onProgress });
      expect(p.repairedChunks.length + p.skippedFiles.length).toBeGreaterThan(0);
      return at;
    };
    const r = await last('pulled-progress');
    expect(r.bytesDone).toBe(r.bytesTotal);
    writeFileSync(obj, readFileSync(join(dir, 'pulled-progress', 'model.safetensors')));
    rmSync(`${obj}.tvecc`);
    const q = await last('pulled-progress2');
    expect(q.bytesDone).toBe(q.bytesTotal);
  });

  it('close() stops the fetches in flight: tensor() / tensors() reject with TV_CLOSED', async () => {
    // Regression: closing while a fetch ran gave TV_REMOTE_UNAVAILABLE (ECONNRESET), and closing right
    // after starting tensors() let the whole fetch run to the end.
    const url = (await pushed('close', 16)) as `s3://${string}`;
    // A proxy that sends the first 64 KiB of each ranged GET of the weights, then holds the rest.
    const up = new URL(s.endpoint);
    const held = createServer((req, res) => {
      const fwd = request(
        { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers },
        (r) => {
          res.writeHead(r.statusCode ?? 500, r.headers);
          const hold = req.headers.range !== undefined && Number(r.headers['content-length'] ?? 0) > 65_536;
          let sent = 0;
          r.on('data', (c: Buffer) => {
            if (hold && sent >= 65_536) return void r.pause();
            sent += c.byteLength;
            res.write(c);
          });
          r.on('end', () => res.end());
        },
      );
      fwd.on('error', () => res.destroy());
      req.pipe(fwd);
    });
    await new Promise<void>((r) => held.listen(0, '127.0.0.1', r));
    const endpoint = `http://127.0.0.1:${(held.address() as AddressInfo).port}`;
    try {
      const o = { ...opts, endpoint, cacheDir: join(dir, 'cache-close') };
      // Closed at once: nothing of the weights is fetched.
      const a = await tv.loadCheckpoint(url, o);
      const opened = a.transfer.bytesDown;
      const pa = a.tensors();
      a.close();
      await expect(pa).rejects.toMatchObject({ code: 'TV_CLOSED' });
      expect(a.transfer.bytesDown).toBe(opened);
      // Closed while the bytes stream in.
      const b = await tv.loadCheckpoint(url, o);
      const start = b.transfer.bytesDown;
      const pb = b.tensor('layer.7');
      while (b.transfer.bytesDown === start) await new Promise((r) => setTimeout(r, 5));
      const t0 = performance.now();
      b.close();
      await expect(pb).rejects.toMatchObject({ code: 'TV_CLOSED' });
      expect(performance.now() - t0).toBeLessThan(1000);
      await expect(b.tensor('layer.0')).rejects.toMatchObject({ code: 'TV_CLOSED' });
    } finally {
      held.closeAllConnections();
      held.close();
    }
  }, 10_000); // without the fix, the held fetch never ends

  it('a connection reset in the middle of a response body is retried like a failed request', async () => {
    // Regression: the SDK retries a request that fails, not a body cut off half-way: one reset failed a
    // pull, a lazy tensor() and a verify at once although maxAttempts was 5.
    const url = await pushed('reset', 12, { ecc: 'medium' });
    const original = readFileSync(join(s.root, BUCKET, 'reset', 'model.safetensors'));
    let resets = 0;
    const up = new URL(s.endpoint);
    const cutter = createServer((req, res) => {
      const fwd = request(
        { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers },
        (r) => {
          res.writeHead(r.statusCode ?? 500, r.headers);
          const cut =
            req.headers.range !== undefined && Number(r.headers['content-length'] ?? 0) > 512 * 1024;
          if (!(cut && resets > 0)) return void r.pipe(res);
          resets -= 1;
          let sent = 0;
          r.on('data', (c: Buffer) => {
            sent += c.byteLength;
            res.write(c);
            if (sent > 256 * 1024) {
              r.destroy();
              res.socket?.destroy();
            }
          });
        },
      );
      fwd.on('error', () => res.destroy());
      req.pipe(fwd);
    });
    await new Promise<void>((r) => cutter.listen(0, '127.0.0.1', r));
    const o = { ...opts, endpoint: `http://127.0.0.1:${(cutter.address() as AddressInfo).port}` };
    try {
      resets = 1;
      const p = await tv.pull(url, join(dir, 'pulled-reset'), o);
      expect(readFileSync(p.path).equals(original)).toBe(true);
      expect(resets).toBe(0);
      resets = 1;
      const ck = await tv.loadCheckpoint(url as `s3://${string}`, {
        ...o,
        cacheDir: join(dir, 'cache-reset'),
      });
      expect((await ck.tensor('layer.5')).byteLength).toBe(MiB);
      ck.close();
      expect(resets).toBe(0);
      resets = 1;
      expect((await tv.verifyRemote(url, { ...o, cacheDir: join(dir, 'cache-reset') })).status).toBe(
        'intact',
      );
      expect(resets).toBe(0);
      // Cut off every time: TV_REMOTE_UNAVAILABLE after maxAttempts reads, nothing placed.
      resets = 1000;
      const err = await tv
        .pull(url, join(dir, 'pulled-reset2'), { ...o, maxAttempts: 2 })
        .catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'TV_REMOTE_UNAVAILABLE', context: { attempts: 2 } });
      expect(existsSync(join(dir, 'pulled-reset2', 'model.safetensors'))).toBe(false);
    } finally {
      cutter.closeAllConnections();
      cutter.close();
    }
  }, 10_000);

  it('verify progress reaches the total when chunks are damaged or a file is missing', async () => {
    // Regression: only the chunks that matched were counted: a damaged set's verify stopped short.
    const url = await pushed('vprogress', 12, { ecc: 'medium' });
    const obj = join(s.root, BUCKET, 'vprogress', 'model.safetensors');
    flipStored(obj, 5 * MiB + 3);
    rmSync(`${obj}.tvecc`);
    let at = { bytesDone: 0, bytesTotal: -1 };
    const onProgress = (pr: { bytesDone: number; bytesTotal: number }): void => {
      at = pr;
    };
    const v = await tv.verifyRemote(url, { ...opts, cacheDir: join(dir, 'cache-vprogress'), onProgress });
    expect(v.status).toBe('damaged');
    expect(at.bytesDone).toBe(at.bytesTotal);
  });
});

describe('remote URLs (no server needed)', () => {
  it('a file:// lazy load whose cacheDir cannot be made is a typed error, not the cleanup ENOTDIR (qa22 #2)', async () => {
    const local = join(dir, 'enotdir-src', 'ck.safetensors');
    mkdirSync(join(dir, 'enotdir-src'), { recursive: true });
    await tv.saveCheckpoint(local, tensors(2, 256));
    const r = await tv.push(local, `file://${join(dir, 'enotdir-store')}`, { stateDir: join(dir, 'state') });
    const file = join(dir, 'enotdir-file');
    writeFileSync(file, 'x');
    for (const cacheDir of [join(file, 'cache'), join(file, 'a', 'cache')]) {
      // Before: a bare Error (ENOTDIR, lstat of the open mark) thrown by the cleanup in the catch.
      await expect(tv.loadCheckpoint(r.url as `file://${string}`, { cacheDir })).rejects.toMatchObject({
        name: 'TensorVaultError',
        code: 'TV_NOT_A_FILE',
        context: { path: file, kind: 'a regular file' },
      });
    }
    expect(readFileSync(file, 'utf8')).toBe('x');
  });

  it('a key with a control character or an empty component is refused before any request', async () => {
    // Regression: a NUL or newline in a key was sent to the store, and `a//b` made s3s-fs answer HTTP 500,
    // reported as TV_REMOTE_UNAVAILABLE (an outage) after retries.
    const o = { endpoint: 'http://127.0.0.1:9', region: 'us-east-1', maxAttempts: 1 };
    for (const url of [
      's3://tvsafe/a\u0000b/m.safetensors',
      's3://tvsafe/a\nb/m.safetensors',
      's3://tvsafe/a//m.safetensors',
    ]) {
      await expect(tv.verifyRemote(url as `s3://${string}`, o)).rejects.toMatchObject({
        code: 'TV_INVALID_ARGUMENT',
        context: { argument: 'url' },
      });
    }
  });
});
