// Pushes racing to one key without `overwrite`. The check "is a set already stored there?" was a HEAD
// of the manifest followed, much later, by the writes: two pushes that both passed the HEAD both
// succeeded, the later one's objects replacing the earlier one's under its manifest (a stored set that
// no longer matched its manifest: TV_REMOTE_DAMAGED on pull). Now every object of a push without
// overwrite is made visible with a conditional write (If-None-Match: *, on PutObject and on
// CompleteMultipartUpload; a hard link, which refuses an existing name, in the file:// store): exactly
// one push wins, the other fails with TV_EXISTS, and the stored set is the winner's.
//
// Against the real S3-compatible server of the remote specs (s3s-fs, scripts/setup-s3.mjs), with a small
// HTTP proxy in front of it that holds back one chosen request of one push until the test lets it go:
// the interleavings that lose are made to happen, not hoped for. (Nor could two pushes started together
// be asserted against s3s-fs: it checks If-None-Match before it writes the object, not atomically, so
// two conditional writes that reach it within the same moment both pass. AWS S3 decides atomically;
// the file:// store's hard link does too, and is tested so below.)
//
// Pushes with overwrite write unconditionally, so two racing to one key could leave the weights of
// one under the manifest of the other, and both resolved. Readers refuse such a mix (the manifest binds
// every object's digests); now the push whose manifest is left also reads the set back and fails
// (TV_FILE_CHANGED, reason concurrent_push).
//
// Also a remote repair racing another writer: the repair's final write was unconditional, so weights
// replaced between the repair's read and its write (a push with overwrite) were overwritten with the
// repaired old ones. It is now conditional on the version the repair read (If-Match on the ETag; the
// file:// store compares the file's identity under the key's lock): TV_FILE_CHANGED, nothing written.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import {
  flipStored,
  forwardRequest,
  type S3Server,
  type SetupS3,
  s3Available,
  setupPath,
} from './helpers/s3';
import { tempDir } from './helpers/tmp';

const dir = tempDir('tv-remote-race-');
const MiB = 1024 * 1024;
const BUCKET = 'tvrace';

/** Save a checkpoint of six 1 MiB tensors (values from `seed`) with parity; its weights path. */
async function checkpoint(name: string, seed: number): Promise<string> {
  const d = join(dir, `src-${name}`);
  mkdirSync(d, { recursive: true });
  const t: Record<string, Float32Array> = {};
  for (let i = 0; i < 6; i++)
    t[`layer.${i}`] = new Float32Array(262_144).map((_, j) => seed + i * 1000 + (j % 997));
  const f = join(d, 'model.safetensors');
  await tv.saveCheckpoint(f, t, { ecc: 'medium' });
  return f;
}

/** A request that makes an object visible: PutObject, or CompleteMultipartUpload. */
function commits(req: IncomingMessage): boolean {
  const url = req.url ?? '';
  return (
    (req.method === 'PUT' && !/[?&]partNumber=/.test(url)) ||
    (req.method === 'POST' && /[?&]uploadId=/.test(url))
  );
}

/**
 * A proxy in front of the server that holds back the first request matching `hold` (its response is
 * not sent) until `release()`; `held` resolves when that request has arrived.
 */
async function gate(
  upstream: string,
  hold: (req: IncomingMessage) => boolean,
): Promise<{ endpoint: string; server: Server; held: Promise<void>; release: () => void }> {
  const up = new URL(upstream);
  let arrived!: () => void;
  const held = new Promise<void>((r) => {
    arrived = r;
  });
  let open!: () => void;
  const released = new Promise<void>((r) => {
    open = r;
  });
  let taken = false;
  const server = createServer((req, res) => {
    const forward = (): void => forwardRequest(up, req, res);
    if (!taken && hold(req)) {
      taken = true;
      req.pause();
      arrived();
      void released.then(forward);
    } else forward();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    server,
    held,
    release: open,
  };
}

/** Exactly one of two settled pushes won and the other failed with TV_EXISTS; the winner's index. */
function oneWinner(r: PromiseSettledResult<tv.PushResult>[]): number {
  expect(r.map((x) => x.status).sort()).toEqual(['fulfilled', 'rejected']);
  const lost = r.find((x) => x.status === 'rejected') as PromiseRejectedResult;
  expect(lost.reason).toMatchObject({ code: 'TV_EXISTS' });
  return r.findIndex((x) => x.status === 'fulfilled');
}

describe.skipIf(!s3Available)('pushes racing to one key (S3-compatible server s3s-fs)', () => {
  let s: S3Server;
  let opts: {
    endpoint: string;
    credentials: { accessKeyId: string; secretAccessKey: string };
    region: string;
    partSize: number;
    stateDir: string;
  };
  let a: string;
  let b: string;

  beforeAll(async () => {
    const setup = (await import(setupPath)) as SetupS3;
    s = await setup.startS3Server({ root: join(dir, 'store') });
    mkdirSync(join(s.root, BUCKET), { recursive: true });
    opts = {
      endpoint: s.endpoint,
      credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey },
      region: 'us-east-1',
      // The weights (6 MiB) go up as a multipart upload: its CompleteMultipartUpload is conditional too.
      partSize: 5 * MiB,
      stateDir: join(dir, 'state'),
    };
    a = await checkpoint('a', 0);
    b = await checkpoint('b', 7);
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('the later push is refused at its first object: the earlier one keeps its whole set (both won before)', async () => {
    const url = `s3://${BUCKET}/late`;
    // B passes its HEAD (no set yet) and sends everything; its first commit is held back while A pushes
    // the whole set. Before: B's objects replaced A's, then B's manifest replaced A's too (both pushes
    // succeeded) or, with only the manifest conditional, A's manifest described B's weights.
    const g = await gate(s.endpoint, commits);
    try {
      const pb = tv.push(b, url, { ...opts, endpoint: g.endpoint });
      const settled = Promise.allSettled([pb]);
      await g.held;
      const ra = await tv.push(a, url, opts);
      g.release();
      const [rb] = await settled;
      expect(oneWinner([{ status: 'fulfilled', value: ra }, rb as PromiseSettledResult<tv.PushResult>])).toBe(
        0,
      );
      expect((rb as PromiseRejectedResult).reason).toMatchObject({
        code: 'TV_EXISTS',
        context: { reason: 'object_exists' },
      });
    } finally {
      g.server.close();
    }
    const p = await tv.pull(`${url}/model.safetensors`, join(dir, 'pulled-late'), opts);
    expect(readFileSync(p.path).equals(readFileSync(a))).toBe(true);
    expect((await tv.verifyRemote(`${url}/model.safetensors`, opts)).status).toBe('intact');
  });

  it('the manifest (the commit point) is written only if none exists: a manifest written meanwhile stays', async () => {
    const url = `s3://${BUCKET}/commit`;
    const manifestKey = 'commit/model.safetensors.tvremote.json';
    // A's objects are visible; its manifest PUT is held back while another writer's manifest appears.
    const g = await gate(
      s.endpoint,
      (req) =>
        req.method === 'PUT' && ((req.url ?? '').split('?')[0] ?? '').endsWith(`/${BUCKET}/${manifestKey}`),
    );
    const other = `${JSON.stringify({ written: 'by another push' })}\n`;
    try {
      const pa = Promise.allSettled([tv.push(a, url, { ...opts, endpoint: g.endpoint })]);
      await g.held;
      writeFileSync(join(s.root, BUCKET, manifestKey), other);
      g.release();
      const [ra] = await pa;
      expect(ra).toMatchObject({ status: 'rejected', reason: { code: 'TV_EXISTS' } });
    } finally {
      g.server.close();
    }
    expect(readFileSync(join(s.root, BUCKET, manifestKey), 'utf8')).toBe(other);
  });

  it('overwrite: of two pushes whose objects interleave, the one whose manifest is left sees the mix and fails', async () => {
    const url = `s3://${BUCKET}/overwrite`;
    const manifestKey = 'overwrite/model.safetensors.tvremote.json';
    await tv.push(a, url, opts);
    // B (overwrite) makes its objects visible; its manifest PUT is held back while A (overwrite) pushes
    // its whole set; then B's manifest lands over A's objects: B's manifest, A's weights and sidecars.
    // Before: both pushes resolved and the set was a mix of the two.
    const g = await gate(
      s.endpoint,
      (req) =>
        req.method === 'PUT' && ((req.url ?? '').split('?')[0] ?? '').endsWith(`/${BUCKET}/${manifestKey}`),
    );
    try {
      const pb = Promise.allSettled([tv.push(b, url, { ...opts, endpoint: g.endpoint, overwrite: true })]);
      await g.held;
      // A's push saw no set (B deleted the manifest) and wrote every object over B's: its own set.
      await tv.push(a, url, { ...opts, overwrite: true });
      g.release();
      const [rb] = await pb;
      expect(rb).toMatchObject({
        status: 'rejected',
        reason: {
          code: 'TV_FILE_CHANGED',
          context: { reason: 'concurrent_push', file: 'model.safetensors' },
        },
      });
    } finally {
      g.server.close();
    }
    // The mix is never loaded as a set: the manifest (B's) binds B's digests, the objects are A's.
    const weights = `${url}/model.safetensors`;
    await expect(tv.pull(weights, join(dir, 'pulled-overwrite'), opts)).rejects.toMatchObject({
      code: 'TV_REMOTE_DAMAGED',
    });
    const v = await tv.verifyRemote(weights, opts).catch((e: unknown) => e);
    expect(v).toMatchObject({ code: 'TV_REMOTE_DAMAGED' });
    await expect(tv.loadCheckpoint(weights, { ...opts, cacheDir: join(dir, 'cache') })).rejects.toMatchObject(
      {
        code: 'TV_REMOTE_DAMAGED',
      },
    );
  });

  it('a remote repair never overwrites weights another writer replaced after the repair read them', async () => {
    const url = `s3://${BUCKET}/repair-race`;
    const weightsKey = 'repair-race/model.safetensors';
    await tv.push(a, url, opts);
    flipStored(join(s.root, BUCKET, weightsKey), 2 * MiB + 100); // chunk 2: within the parity
    // The repair pulls and rebuilds A; its CompleteMultipartUpload of the repaired weights is held back
    // while another writer pushes B over the set. Before: the repair then wrote A's repaired weights
    // over B's under B's manifest (and resolved `repaired`): a set no reader could load.
    const g = await gate(
      s.endpoint,
      (req) => commits(req) && ((req.url ?? '').split('?')[0] ?? '').endsWith(`/${BUCKET}/${weightsKey}`),
    );
    try {
      const rep = Promise.allSettled([
        tv.repairRemote(`${url}/model.safetensors`, {
          ...opts,
          endpoint: g.endpoint,
          workDir: dir,
        }),
      ]);
      await g.held;
      await tv.push(b, url, { ...opts, overwrite: true });
      g.release();
      const [r] = await rep;
      expect(r).toMatchObject({
        status: 'rejected',
        reason: { code: 'TV_FILE_CHANGED', context: { reason: 'object_changed' } },
      });
    } finally {
      g.server.close();
    }
    // The stored set is B's, whole.
    expect((await tv.verifyRemote(`${url}/model.safetensors`, opts)).status).toBe('intact');
    const p = await tv.pull(`${url}/model.safetensors`, join(dir, 'pulled-repair-race'), opts);
    expect(readFileSync(p.path).equals(readFileSync(b))).toBe(true);
  });
});

describe('pushes racing to one key (file:// store)', () => {
  it('file:// store: two pushes started together, exactly one wins and the stored set is its own', async () => {
    const a = await checkpoint('fa', 0);
    const b = await checkpoint('fb', 7);
    const fopts = { partSize: 5 * MiB, stateDir: join(dir, 'state') };
    const url = `file://${join(dir, 'file-store')}`;
    const r = await Promise.allSettled([tv.push(a, url, fopts), tv.push(b, url, fopts)]);
    const won = oneWinner(r);
    const p = await tv.pull(`${url}/model.safetensors`, join(dir, 'pulled-file'));
    expect(readFileSync(p.path).equals(readFileSync(won === 0 ? a : b))).toBe(true);
    // The loser left nothing visible of its own: a further push is still refused by the plain check.
    await expect(tv.push(b, url, fopts)).rejects.toMatchObject({ code: 'TV_EXISTS' });
  });

  it('file:// store: a remote repair never overwrites weights another writer replaced after the repair read them', async () => {
    const a = await checkpoint('ra', 0);
    const b = await checkpoint('rb', 7);
    const root = join(dir, 'file-repair');
    const url = `file://${root}`;
    await tv.push(a, url, { stateDir: join(dir, 'state') });
    const obj = join(root, 'model.safetensors');
    flipStored(obj, 2 * MiB + 100); // chunk 2: within the parity
    // When the repair has pulled (and rebuilt) A, another writer replaces the stored weights (a new
    // file renamed into place, as the store writes). Before: the repair renamed A's repaired weights
    // over them and resolved `repaired`.
    const replaced = readFileSync(b);
    const onPulled = (m: unknown): void => {
      if ((m as { event?: string }).event !== 'pulled') return;
      writeFileSync(`${obj}.other`, replaced);
      renameSync(`${obj}.other`, obj);
    };
    tv.remoteChannel.subscribe(onPulled);
    let err: unknown;
    try {
      err = await tv.repairRemote(`${url}/model.safetensors`, { workDir: dir }).catch((e: unknown) => e);
    } finally {
      tv.remoteChannel.unsubscribe(onPulled);
    }
    expect(err).toMatchObject({ code: 'TV_FILE_CHANGED', context: { reason: 'object_changed' } });
    expect(readFileSync(obj).equals(replaced)).toBe(true);
  });
});
