// Regressions of remote repair and remote verify found by a QA probe, against the real S3-compatible
// server the remote specs use (s3s-fs, scripts/setup-s3.mjs) and the file:// store:
// - repairRemote took `partSize` unchecked: -5 completed an empty upload over the stored weights, 0 or
//   1000 looped without end, 3 MiB was accepted although push refuses it;
// - a repair sent the pulled copy's bytes without checking them again: a copy changed on the local disk
//   after the pull verified it replaced the stored weights with wrong bytes, and the repair resolved;
// - remote verify said `repairable` for damage far beyond the parity (a local verify of the same bytes
//   says `damaged`), and pull then blamed "no usable parity" although the parity was intact;
// - with no credentials anywhere, the error said the store refused them although no request was sent;
// - `tensorvault repair <url> --concurrency N` was taken and the rewrite still sent one part at a time
//   (N reached only the pull; the read-back used 4);
// - a pyfolds-ecc set never used its stored rs(N) parity (NAME.safetensors.ecc): with one byte of the
//   weights damaged, remote verify said `damaged` (a local verify of the same bytes says `repairable`)
//   and pull and repairRemote failed with "the set has no parity".
// - remote verify ignored a configured key and `requireHmac` for pyfolds-ecc (and pyfolds) sets: an
//   unkeyed set was `intact` where the local verifyCheckpoint says TV_CHECKPOINT_HMAC_REQUIRED.
// - keyed pyfolds-ecc sets were untested remotely; with damaged weights and no key or a wrong one,
//   remote verify's TV_CHECKPOINT_HMAC_REQUIRED / TV_CHECKPOINT_INTEGRITY named the temporary copy
//   (removed before the caller saw the error) instead of the stored weights.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { forwardRequest, type S3Server, type SetupS3, s3Available, setupPath } from './helpers/s3';
import { tempDir } from './helpers/tmp';

const dir = tempDir('tv-remote-rv-');
const cli = join(__dirname, '..', 'dist', 'cli', 'main.js');
const MiB = 1024 * 1024;
const BUCKET = 'tvrv';

/** `n` tensors of `floats` float32 each, values a function of (tensor, index). */
function tensors(n: number, floats: number): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (let i = 0; i < n; i++)
    out[`layer.${i}`] = new Float32Array(floats).map((_, j) => i * 1000 + (j % 997));
  return out;
}

/** XOR `len` bytes of the file at `path` from `at` with 0x5a (damage at rest, or on the local disk). */
function damage(path: string, at: number, len = 1): void {
  const b = readFileSync(path);
  for (let i = at; i < at + len; i++) b[i] = (b[i] as number) ^ 0x5a;
  writeFileSync(path, b);
}

/** Run the CLI without blocking this process (a proxy in it must answer): exit code and output. */
function run(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, args, { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    c.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    c.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * A proxy in front of the server that counts the multipart part requests (UploadPart, UploadPartCopy)
 * in flight at once. The first part request is held until a second one arrives, so that a client with
 * two in flight is seen to have two; a client sending one part at a time would wait for ever, so after
 * 20 s the held request goes on and the count (1) fails the test instead of a hang.
 */
async function partCounter(
  upstream: string,
): Promise<{ endpoint: string; server: Server; most: () => number }> {
  const up = new URL(upstream);
  let inFlight = 0;
  let most = 0;
  let first: (() => void) | undefined;
  let held = false;
  const server = createServer((req, res) => {
    const forward = (): void => forwardRequest(up, req, res);
    if (!(req.method === 'PUT' && /[?&]partNumber=/.test(req.url ?? ''))) {
      forward();
      return;
    }
    inFlight += 1;
    most = Math.max(most, inFlight);
    res.on('close', () => {
      inFlight -= 1;
    });
    if (!held) {
      held = true;
      req.pause();
      const deadline = setTimeout(() => first?.(), 20_000);
      first = () => {
        clearTimeout(deadline);
        first = undefined;
        forward();
      };
    } else {
      first?.();
      forward();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, most: () => most };
}

/** Where a set is stored: its URL prefix, the folder holding its objects, the options and CLI env. */
interface Target {
  prefix(name: string): string;
  folder(name: string): string;
  opts: tv.RemoteOptions;
  env: Record<string, string>;
}

const ckpt = join(dir, 'src', 'model.safetensors'); // 12 tensors of 1 MiB, `medium` parity
const pfe = join(dir, 'src', 'pfe.safetensors'); // the same tensors, layout pyfolds-ecc, rs(N) `med`
const KEY = 'remote-verify-key-0123456789abcdef';
const WRONG = 'not-the-key-0123456789abcdef-0000';
const pfeKeyed = join(dir, 'src', 'pfek.safetensors'); // as pfe, its hash keyed with KEY (hmac-sha256)

beforeAll(async () => {
  mkdirSync(join(dir, 'src'), { recursive: true });
  await tv.saveCheckpoint(ckpt, tensors(12, 262_144), { ecc: 'medium' });
  await tv.saveCheckpoint(pfe, tensors(12, 262_144), { layout: 'pyfolds-ecc', ecc: 'med' });
  await tv.saveCheckpoint(pfeKeyed, tensors(12, 262_144), {
    layout: 'pyfolds-ecc',
    ecc: 'med',
    hmacKey: KEY,
  });
});

function suite(kind: 's3' | 'file', target: () => Target): void {
  const work = join(dir, `work-${kind}`);
  mkdirSync(work, { recursive: true });

  /** Push the checkpoint under NAME; returns the URL of its weights and their stored path. */
  async function pushed(name: string): Promise<{ url: string; obj: string }> {
    const t = target();
    const r = await tv.push(ckpt, t.prefix(name), { ...t.opts, stateDir: join(dir, 'state') });
    return { url: r.url, obj: join(t.folder(name), 'model.safetensors') };
  }

  const leftovers = (): string[] => readdirSync(work).filter((f) => f.startsWith('tv-remote-'));

  it(`${kind}: repairRemote refuses a bad partSize before any request; the stored weights are untouched`, async () => {
    const t = target();
    const { url, obj } = await pushed('partsize');
    const original = readFileSync(obj);
    damage(obj, 9 * MiB + 100); // one damaged chunk: well within the parity
    const damaged = readFileSync(obj);
    // -5 completed an empty upload (the weights became 0 bytes); 0 and 1000 never ended; 3 MiB and
    // 5 MiB + 1 were taken although push refuses them.
    const bad: unknown[] = [
      -5,
      0,
      1000,
      3 * MiB,
      5 * MiB + 1,
      5.5 * MiB,
      Number.NaN,
      Infinity,
      6 * 1024 * MiB,
    ];
    for (const partSize of [...bad, '8M']) {
      const err = await tv
        .repairRemote(url, { ...t.opts, workDir: work, partSize: partSize as number })
        .catch((e: unknown) => e);
      expect(err, String(partSize)).toMatchObject({
        code: 'TV_INVALID_ARGUMENT',
        context: { argument: 'partSize' },
      });
      expect(readFileSync(obj).equals(damaged), String(partSize)).toBe(true);
      expect(leftovers()).toEqual([]);
    }
    // The same rule as push (one validator).
    await expect(
      tv.push(ckpt, t.prefix('partsize-push'), {
        ...t.opts,
        stateDir: join(dir, 'state'),
        partSize: 3 * MiB,
      }),
    ).rejects.toMatchObject({ code: 'TV_INVALID_ARGUMENT', context: { argument: 'partSize' } });
    // CLI: a usage error (exit 3), nothing written.
    for (const ps of ['3M', '1k', '0']) {
      const c = spawnSync(process.execPath, [cli, 'repair', url, '--part-size', ps, '--json'], {
        encoding: 'utf8',
        env: { ...process.env, ...t.env },
        timeout: 60_000,
      });
      expect(c.status, `${ps}: ${c.stderr}`).toBe(3);
      expect(readFileSync(obj).equals(damaged)).toBe(true);
    }
    // A valid part size repairs.
    const rep = await tv.repairRemote(url, { ...t.opts, workDir: work, partSize: 5 * MiB });
    expect(rep).toMatchObject({ status: 'repaired', repairedChunks: [9] });
    expect(readFileSync(obj).equals(original)).toBe(true);
  });

  it(`${kind}: a pulled copy changed before the rewrite is never made the stored object`, async () => {
    const t = target();
    const { url, obj } = await pushed('changed');
    const original = readFileSync(obj);
    damage(obj, 11 * MiB + 3); // chunk 11, in the second 8 MiB part (which is therefore sent)
    const damaged = readFileSync(obj);
    // Between the pull (which verified and repaired the local copy) and the rewrite, the local copy
    // changes in chunk 9: in the part that is sent, but not a chunk the read-back checks.
    const onPulled = (m: unknown): void => {
      if ((m as { event?: string }).event !== 'pulled') return;
      const [folder] = leftovers();
      damage(join(work, folder as string, 'model.safetensors'), 9 * MiB + 5);
    };
    tv.remoteChannel.subscribe(onPulled);
    let err: unknown;
    try {
      err = await tv.repairRemote(url, { ...t.opts, workDir: work }).catch((e: unknown) => e);
    } finally {
      tv.remoteChannel.unsubscribe(onPulled);
    }
    // It resolved `repaired` with chunk 9 of the stored weights wrong.
    expect(err).toMatchObject({ code: 'TV_FILE_CHANGED', context: { reason: 'chunk_digest' } });
    expect(readFileSync(obj).equals(damaged)).toBe(true);
    expect(leftovers()).toEqual([]);
    // Nothing half-done stays in the way: the next repair rebuilds the recorded bytes.
    expect((await tv.repairRemote(url, { ...t.opts, workDir: work })).status).toBe('repaired');
    expect(readFileSync(obj).equals(original)).toBe(true);
  });

  it(`${kind}: remote verify gives the local verdict for damage beyond the parity; pull says it exceeds it`, async () => {
    const t = target();
    const { url, obj } = await pushed('budget');
    const local = join(dir, `local-${kind}`);
    mkdirSync(local, { recursive: true });
    /** The verdict of a local verify of the stored set's bytes. */
    const localVerdict = async (): Promise<string> => {
      for (const f of ['model.safetensors', 'model.safetensors.meta.json', 'model.safetensors.tvecc'])
        copyFileSync(join(t.folder('budget'), f), join(local, f));
      return (await tv.verifyCheckpoint(join(local, 'model.safetensors'))).status;
    };
    // Within the parity: both say repairable.
    damage(obj, 2 * MiB + 77);
    expect(await localVerdict()).toBe('repairable');
    expect((await tv.verifyRemote(url, { ...t.opts, workDir: work })).status).toBe('repairable');
    // 8 MiB of 12 damaged: far beyond the parity. Remote verify said `repairable` (CLI exit 1).
    damage(obj, MiB, 8 * MiB);
    expect(await localVerdict()).toBe('damaged');
    const v = await tv.verifyRemote(url, { ...t.opts, workDir: work });
    expect(v.status).toBe('damaged');
    expect(v.files.find((f) => f.name === 'model.safetensors.tvecc')?.damagedChunks).toEqual([]);
    expect(leftovers()).toEqual([]);
    const c = spawnSync(process.execPath, [cli, 'verify', url, '--json'], {
      encoding: 'utf8',
      env: { ...process.env, ...t.env, TV_REMOTE_CACHE: join(dir, `cli-cache-${kind}`) },
    });
    expect(c.status).toBe(2);
    expect(JSON.parse(c.stdout).status).toBe('damaged');
    // The parity arrived intact: the message says the damage exceeds it ("no usable parity" before).
    const err = (await tv
      .pull(url, join(dir, `pulled-budget-${kind}`), t.opts)
      .catch((e: unknown) => e)) as tv.TensorVaultError;
    expect(err).toMatchObject({ code: 'TV_REMOTE_DAMAGED', context: { file: 'model.safetensors' } });
    expect(err.message).toMatch(/the damage exceeds what the parity can rebuild/);
    expect(err.message).not.toMatch(/no usable parity/);
  });

  it(`${kind}: a pyfolds-ecc set is verified, pulled and repaired with its stored rs(N) parity (.ecc)`, async () => {
    const t = target();
    const url = (await tv.push(pfe, t.prefix('pfe'), { ...t.opts, stateDir: join(dir, 'state') })).url;
    const folder = t.folder('pfe');
    const obj = join(folder, 'pfe.safetensors');
    expect(readdirSync(folder)).toContain('pfe.safetensors.ecc');
    const original = readFileSync(obj);
    const local = join(dir, `local-pfe-${kind}`);
    mkdirSync(local, { recursive: true });
    /** The verdict of a local verify of the stored set's bytes. */
    const localVerdict = async (): Promise<string> => {
      for (const f of ['pfe.safetensors', 'pfe.safetensors.ecc', 'pfe.json'])
        copyFileSync(join(folder, f), join(local, f));
      return (await tv.verifyCheckpoint(join(local, 'pfe.safetensors'))).status;
    };
    // One byte in chunk 9 (part 2 of 2 with 8 MiB parts): the rs(N) parity corrects it.
    damage(obj, 9 * MiB + 100);
    expect(await localVerdict()).toBe('repairable');
    const v = await tv.verifyRemote(url, { ...t.opts, workDir: work });
    expect(v.layout).toBe('pyfolds-ecc');
    expect(v.files.find((f) => f.name === 'pfe.safetensors')?.damagedChunks).toEqual([9]);
    expect(v.status).toBe('repairable'); // was `damaged`
    expect(leftovers()).toEqual([]);
    // pull rebuilds the chunk (it failed with "the set has no parity").
    const dest = join(dir, `pulled-pfe-${kind}`);
    const pulled = await tv.pull(url, dest, t.opts);
    expect(pulled.repairedChunks).toEqual([9]);
    expect(readFileSync(join(dest, 'pfe.safetensors')).equals(original)).toBe(true);
    expect((await tv.verifyCheckpoint(join(dest, 'pfe.safetensors'))).status).toBe('intact');
    // repairRemote rewrites the part that holds it; the other part is copied by the store.
    const r = await tv.repairRemote(url, { ...t.opts, workDir: work });
    expect(r).toMatchObject({ status: 'repaired', repairedChunks: [9], partsRewritten: 1, partsCopied: 1 });
    expect(readFileSync(obj).equals(original)).toBe(true);
    expect((await tv.verifyRemote(url, { ...t.opts, workDir: work })).status).toBe('intact');
    // Beyond the rs(N) parity (every block of 64 KiB hit): both verdicts `damaged`; pull says why.
    damage(obj, 2 * MiB, 64 * 1024);
    expect(await localVerdict()).toBe('damaged');
    expect((await tv.verifyRemote(url, { ...t.opts, workDir: work })).status).toBe('damaged');
    const err = (await tv
      .pull(url, join(dir, `pulled-pfe-bad-${kind}`), t.opts)
      .catch((e: unknown) => e)) as tv.TensorVaultError;
    expect(err).toMatchObject({ code: 'TV_REMOTE_DAMAGED', context: { file: 'pfe.safetensors' } });
    expect(err.message).toMatch(/the damage exceeds what the parity can rebuild/);
    expect(err.message).not.toMatch(/no parity/);
    expect(leftovers()).toEqual([]);
  });

  it(`${kind}: a configured key or requireHmac refuses an unkeyed pyfolds-ecc (or pyfolds) set as the local verify does`, async () => {
    const t = target();
    const url = (await tv.push(pfe, t.prefix('pfe-policy'), { ...t.opts, stateDir: join(dir, 'state') })).url;
    const plain = join(dir, 'src', 'plain.safetensors'); // layout pyfolds: NAME.safetensors.meta.json
    await tv.saveCheckpoint(plain, tensors(2, 1024), { layout: 'pyfolds' });
    const plainUrl = (
      await tv.push(plain, t.prefix('pf-policy'), { ...t.opts, stateDir: join(dir, 'state') })
    ).url;
    for (const [path, at, policy] of [
      [pfe, url, { hmacKey: KEY }],
      [pfe, url, { hmacKey: KEY, requireHmac: true }],
      [plain, plainUrl, { hmacKey: KEY }],
    ] as const) {
      const local = (await tv.verifyCheckpoint(path, policy).catch((e: unknown) => e)) as tv.TensorVaultError;
      expect(local).toMatchObject({ code: 'TV_CHECKPOINT_HMAC_REQUIRED', context: { actual: 'sha256' } });
      // It said `intact`: the key policy was never applied to a PyFolds set.
      const remote = (await tv
        .verifyRemote(at, { ...t.opts, workDir: work, ...policy })
        .catch((e: unknown) => e)) as tv.TensorVaultError;
      expect(remote).toBeInstanceOf(tv.TensorVaultError);
      expect(remote.code).toBe(local.code);
      expect(remote.context).toEqual({ ...local.context, path: at });
      expect(remote.message).toBe(local.message.replace(path, at));
    }
    // requireHmac without a key is the local argument error; without either, the set verifies.
    await expect(tv.verifyRemote(url, { ...t.opts, requireHmac: true })).rejects.toMatchObject({
      code: 'TV_INVALID_ARGUMENT',
      context: { argument: 'requireHmac' },
    });
    expect((await tv.verifyRemote(url, { ...t.opts, workDir: work })).status).toBe('intact');
    expect(leftovers()).toEqual([]);
  });

  it(`${kind}: a keyed pyfolds-ecc set: verify, pull, lazy load and repairRemote with the right key, a wrong key, no key`, async () => {
    const t = target();
    const url = (await tv.push(pfeKeyed, t.prefix('pfek'), { ...t.opts, stateDir: join(dir, 'state') })).url;
    const obj = join(t.folder('pfek'), 'pfek.safetensors');
    const original = readFileSync(obj);
    // Intact: the key (and requireHmac) are accepted; a lazy load is refused for the layout, as documented.
    expect((await tv.verifyRemote(url, { ...t.opts, workDir: work, hmacKey: KEY })).status).toBe('intact');
    expect(
      (await tv.verifyRemote(url, { ...t.opts, workDir: work, hmacKey: KEY, requireHmac: true })).status,
    ).toBe('intact');
    await expect(
      tv.loadCheckpoint(url as tv.RemoteUrl, {
        ...t.opts,
        hmacKey: KEY,
        cacheDir: join(dir, `cache-pfek-${kind}`),
      }),
    ).rejects.toMatchObject({ code: 'TV_CHECKPOINT_INVALID', context: { reason: 'remote_layout' } });
    const dest = join(dir, `pulled-pfek-${kind}`);
    await tv.pull(url, dest, { ...t.opts, hmacKey: KEY });
    expect(readFileSync(join(dest, 'pfek.safetensors')).equals(original)).toBe(true);
    const pulled = await tv.verifyCheckpoint(join(dest, 'pfek.safetensors'), { hmacKey: KEY });
    expect(pulled).toMatchObject({ status: 'intact', keyed: true });

    // One damaged byte (chunk 9): the rs(N) correction is judged against the keyed hash.
    damage(obj, 9 * MiB + 100);
    const damaged = readFileSync(obj);
    const v = await tv.verifyRemote(url, { ...t.opts, workDir: work, hmacKey: KEY });
    expect(v).toMatchObject({ status: 'repairable', layout: 'pyfolds-ecc' });
    // No key, a wrong key: the local verify's errors, naming the stored weights (they named the
    // temporary copy, removed by the time the caller read the error).
    const noKey = (await tv
      .verifyRemote(url, { ...t.opts, workDir: work })
      .catch((e: unknown) => e)) as tv.TensorVaultError;
    expect(noKey).toMatchObject({
      code: 'TV_CHECKPOINT_HMAC_REQUIRED',
      context: { path: url, actual: 'hmac-sha256' },
    });
    expect(noKey.message).toContain(url);
    expect(noKey.message).not.toContain(work);
    const wrong = (await tv
      .verifyRemote(url, { ...t.opts, workDir: work, hmacKey: WRONG })
      .catch((e: unknown) => e)) as tv.TensorVaultError;
    expect(wrong).toMatchObject({ code: 'TV_CHECKPOINT_INTEGRITY', context: { path: url, reason: 'key' } });
    expect(wrong.message).not.toContain(work);
    expect(leftovers()).toEqual([]);
    // pull and repairRemote without the key or with a wrong one: refused with the reason, nothing placed
    // or written.
    for (const [opts, why] of [
      [{}, /pass hmacKey/],
      [{ hmacKey: WRONG }, /the HMAC key is probably wrong/],
    ] as const) {
      const to = join(dir, `pulled-pfek-bad-${kind}`);
      const p = (await tv
        .pull(url, to, { ...t.opts, ...opts })
        .catch((e: unknown) => e)) as tv.TensorVaultError;
      expect(p).toMatchObject({
        code: 'TV_REMOTE_DAMAGED',
        context: { file: 'pfek.safetensors', chunks: '9' },
      });
      expect(p.message).toMatch(why);
      expect(existsSync(join(to, 'pfek.safetensors'))).toBe(false);
      const r = (await tv
        .repairRemote(url, { ...t.opts, workDir: work, ...opts })
        .catch((e: unknown) => e)) as tv.TensorVaultError;
      expect(r).toMatchObject({
        code: 'TV_REMOTE_DAMAGED',
        context: { file: 'pfek.safetensors', chunks: '9' },
      });
      expect(r.message).toMatch(why);
      expect(readFileSync(obj).equals(damaged)).toBe(true);
      expect(leftovers()).toEqual([]);
    }
    // The right key: repaired in place, only the part holding chunk 9 sent.
    const r = await tv.repairRemote(url, { ...t.opts, workDir: work, hmacKey: KEY });
    expect(r).toMatchObject({ status: 'repaired', repairedChunks: [9], partsRewritten: 1, partsCopied: 1 });
    expect(readFileSync(obj).equals(original)).toBe(true);
    expect((await tv.verifyRemote(url, { ...t.opts, workDir: work, hmacKey: KEY })).status).toBe('intact');
  });
}

describe.skipIf(!s3Available)('remote repair and verify (S3-compatible server s3s-fs)', () => {
  let s: S3Server;
  let t: Target;
  beforeAll(async () => {
    const setup = (await import(setupPath)) as SetupS3;
    s = await setup.startS3Server({ root: join(dir, 'store') });
    mkdirSync(join(s.root, BUCKET), { recursive: true });
    t = {
      prefix: (name) => `s3://${BUCKET}/${name}`,
      folder: (name) => join(s.root, BUCKET, name),
      opts: {
        endpoint: s.endpoint,
        credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey },
        region: 'us-east-1',
      },
      env: s.env,
    };
  });
  afterAll(async () => {
    await s?.stop();
  });
  suite('s3', () => t);

  it('s3: repair --concurrency N has N parts of the rewrite in flight (it was taken and the rewrite sent one part at a time)', async () => {
    const url = (await tv.push(ckpt, t.prefix('concurrency'), { ...t.opts, stateDir: join(dir, 'state') }))
      .url;
    const obj = join(s.root, BUCKET, 'concurrency', 'model.safetensors');
    const original = readFileSync(obj);
    damage(obj, 9 * MiB + 100); // chunk 9: part 2 of 3 (5 MiB parts) is sent, parts 1 and 3 copied
    const proxy = await partCounter(s.endpoint);
    try {
      const c = await run(
        [
          cli,
          'repair',
          url,
          '--endpoint',
          proxy.endpoint,
          '--part-size',
          '5M',
          '--concurrency',
          '2',
          '--json',
        ],
        s.env,
      );
      expect(c.code, c.stderr).toBe(0);
      expect(JSON.parse(c.stdout)).toMatchObject({ status: 'repaired', partsRewritten: 1, partsCopied: 2 });
      // The first part was held until a second one arrived: two in flight.
      expect(proxy.most()).toBe(2);
    } finally {
      proxy.server.close();
    }
    expect(readFileSync(obj).equals(original)).toBe(true);
    // Out of range: a usage error, nothing written.
    damage(obj, 9 * MiB + 100);
    const damaged = readFileSync(obj);
    for (const n of ['0', '65', 'x']) {
      const c = await run([cli, 'repair', url, '--concurrency', n, '--json'], s.env);
      expect(c.code, `${n}: ${c.stderr}`).toBe(3);
      expect(readFileSync(obj).equals(damaged)).toBe(true);
    }
  });

  it('s3: a bad concurrency is refused before any request (no store listening)', async () => {
    for (const concurrency of [0, 65, 1.5]) {
      const err = await tv
        .repairRemote(`s3://${BUCKET}/x/model.safetensors`, {
          endpoint: 'http://127.0.0.1:1',
          credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
          maxAttempts: 1,
          concurrency,
        })
        .catch((e: unknown) => e);
      expect(err, String(concurrency)).toMatchObject({
        code: 'TV_INVALID_ARGUMENT',
        context: { argument: 'concurrency' },
      });
    }
  });

  it('s3: a bad partSize is refused before any request (no store listening)', async () => {
    const err = await tv
      .repairRemote(`s3://${BUCKET}/x/model.safetensors`, {
        endpoint: 'http://127.0.0.1:1',
        credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
        maxAttempts: 1,
        partSize: -5,
      })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'TV_INVALID_ARGUMENT', context: { argument: 'partSize' } });
  });
});

describe('remote repair and verify (file:// store)', () => {
  const root = join(dir, 'fs-store');
  suite('file', () => ({
    prefix: (name) => `file://${join(root, name)}`,
    folder: (name) => join(root, name),
    opts: {},
    env: {},
  }));
});

describe('no credentials anywhere (no server needed)', () => {
  it('TV_REMOTE_AUTH says none were found and where they are looked up, not that the store refused them', () => {
    const home = join(dir, 'empty-home');
    mkdirSync(home, { recursive: true });
    // Only what the CLI needs: no AWS_* credentials, an empty home (no ~/.aws), no instance metadata.
    const c = spawnSync(process.execPath, [cli, 'ls', `s3://${BUCKET}/`, '--json'], {
      encoding: 'utf8',
      env: {
        PATH: process.env.PATH ?? '',
        HOME: home,
        AWS_EC2_METADATA_DISABLED: 'true',
        AWS_ENDPOINT_URL: 'http://127.0.0.1:1',
        AWS_MAX_ATTEMPTS: '1',
      },
      timeout: 60_000,
    });
    expect(c.status, c.stderr).toBe(6);
    const e = JSON.parse(c.stderr.trim().split('\n').pop() as string).error;
    expect(e.code).toBe('TV_REMOTE_AUTH');
    expect(e.message).toMatch(/no usable credentials were found, so no request was sent/);
    expect(e.message).toContain('AWS_ACCESS_KEY_ID');
    expect(e.message).toContain('~/.aws/credentials');
    expect(e.message).not.toMatch(/refused/);
  });
});
