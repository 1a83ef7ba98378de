// RemoteCheckpoint.readRange and chunks(): a checkpoint loaded from a URL had neither, although the
// local Checkpoint has both (the accessors for a tensor over 4 GiB, which `tensor()` refuses on Node 20).
// They fetch only the 1 MiB chunks a range covers (ranged GETs, verified as they stream in, then checked
// again by the local lazy load), repair a chunk damaged as stored from the stored parity as `tensor()`
// does, else give TV_REMOTE_DAMAGED naming the tensor and the chunks.
//
// Against the real S3-compatible server of the remote specs (s3s-fs, scripts/setup-s3.mjs), through a
// proxy that records every GET of the weights (its Range header and the body bytes it forwards), and
// against the file:// store (its own request and byte counts, `transfer`).
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import * as tv from '../dist/index.js';
import { flipStored, type S3Server, type SetupS3, s3Available, setupPath } from './helpers/s3';
import { tempDir } from './helpers/tmp';

const dir = tempDir('tv-remote-range-');
const MiB = 1024 * 1024;
const BUCKET = 'tvrange';
type RemoteUrl = `s3://${string}` | `file://${string}`;

/** `big`: 5 MiB of float32 (it straddles six 1 MiB chunks, the header shifts it), and two small ones. */
function tensors(): Record<string, Float32Array> {
  return {
    a: new Float32Array(1000).map((_, j) => j),
    big: new Float32Array((5 * MiB) / 4).map((_, j) => (j * 7) % 1009),
    z: new Float32Array(3000).map((_, j) => -j),
  };
}
const want = tensors();
const bytesOf = (a: ArrayBufferView): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** One GET of the weights object the proxy forwarded: its Range header and the body bytes. */
interface Get {
  range: string;
  bytes: number;
}

/** A proxy in front of the server recording the GETs of `.safetensors` objects. */
async function recorder(upstream: string): Promise<{ endpoint: string; server: Server; gets: Get[] }> {
  const up = new URL(upstream);
  const gets: Get[] = [];
  const server = createServer((req, res) => {
    const weights = req.method === 'GET' && /\.safetensors(\?|$)/.test(req.url ?? '');
    const fwd = request(
      { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 500, r.headers);
        const g: Get = { range: String(req.headers.range ?? ''), bytes: 0 };
        if (weights) gets.push(g);
        r.on('data', (c: Buffer) => {
          g.bytes += c.byteLength;
          res.write(c);
        });
        r.on('end', () => res.end());
      },
    );
    fwd.on('error', () => res.destroy());
    req.pipe(fwd);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, gets };
}

/** The `Range` header of one ranged GET of chunks `first..last` (inclusive) of a file of `size` bytes. */
function rangeOf(first: number, last: number, size: number): string {
  return `bytes=${first * MiB}-${Math.min((last + 1) * MiB, size) - 1}`;
}

/** Collect every piece of `it`, or the error it stopped with (and the pieces before it). */
async function drain(
  it: AsyncIterable<Uint8Array>,
): Promise<{ pieces: Buffer[]; err?: tv.TensorVaultError }> {
  const pieces: Buffer[] = [];
  try {
    for await (const p of it) pieces.push(Buffer.from(p));
  } catch (err) {
    expect(err).toBeInstanceOf(tv.TensorVaultError);
    return { pieces, err: err as tv.TensorVaultError };
  }
  return { pieces };
}

let s: S3Server | undefined;
let opts: Record<string, unknown> = {};
const withParity = join(dir, 'p', 'model.safetensors');
const without = join(dir, 'n', 'model.safetensors');

beforeAll(async () => {
  mkdirSync(join(dir, 'p'), { recursive: true });
  mkdirSync(join(dir, 'n'), { recursive: true });
  await tv.saveCheckpoint(withParity, want, { ecc: 'medium' });
  await tv.saveCheckpoint(without, want, { ecc: 'off' });
  if (s3Available) {
    const setup = (await import(setupPath)) as SetupS3;
    s = await setup.startS3Server({ root: join(dir, 'store') });
    mkdirSync(join(s.root, BUCKET), { recursive: true });
    opts = {
      endpoint: s.endpoint,
      credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey },
      region: 'us-east-1',
    };
  }
});
afterAll(async () => {
  await s?.stop();
});

const stores = [
  { kind: 's3', skip: !s3Available, prefix: (n: string) => `s3://${BUCKET}/${n}` },
  { kind: 'file', skip: false, prefix: (n: string) => `file://${join(dir, 'file-store', n)}` },
] as const;

/** Push `local` under `name`: its URL and the stored weights' path. */
async function pushed(
  local: string,
  store: (typeof stores)[number],
  name: string,
): Promise<{ url: RemoteUrl; obj: string }> {
  const r = await tv.push(local, store.prefix(name), { ...opts, stateDir: join(dir, 'state') });
  const obj =
    store.kind === 'file'
      ? join(dir, 'file-store', name, 'model.safetensors')
      : join((s as S3Server).root, BUCKET, name, 'model.safetensors');
  return { url: r.url as RemoteUrl, obj };
}

for (const store of stores) {
  describe.skipIf(store.skip)(`RemoteCheckpoint.readRange and chunks() (${store.kind})`, () => {
    it(`${store.kind}: ranges at chunk edges return the bytes; only the chunks they cover are fetched, one GET per run`, async () => {
      const { url } = await pushed(without, store, 'edges');
      const proxy = store.kind === 's3' ? await recorder((s as S3Server).endpoint) : undefined;
      const ck = await tv.loadCheckpoint(url, {
        ...opts,
        ...(proxy === undefined ? {} : { endpoint: proxy.endpoint }),
        cacheDir: join(dir, `cache-edges-${store.kind}`),
      });
      try {
        const big = ck.info('big');
        // The end of the weights (the last tensor's end): the last chunk is shorter than 1 MiB.
        const weightsEnd = Math.max(...ck.names.map((n) => ck.info(n).fileOffset + ck.info(n).byteLength));
        const chunkLen = (c: number): number => Math.min(MiB, weightsEnd - c * MiB);
        const w = bytesOf(want.big as Float32Array);
        /** The tensor offset of the start of file chunk `c`. */
        const edge = (c: number): number => c * MiB - big.fileOffset;
        const first = Math.floor(big.fileOffset / MiB);
        // [offset, length, the file chunks it covers]: across an edge, starting at one, ending at one,
        // inside one chunk, the tensor's last bytes.
        const cases: [number, number, number[]][] = [
          [edge(first + 1) - 1, 2, [first, first + 1]],
          [edge(first + 3), 1, [first + 3]],
          [edge(first + 3) - 10, 10, [first + 2]],
          [edge(first + 4) + 5, 100, [first + 4]],
          [big.byteLength - 7, 7, [first + 5]],
        ];
        for (const [i, [offset, length, chunks]] of cases.entries()) {
          const down = ck.transfer.bytesDown;
          const reqs = ck.transfer.requests;
          const gets = proxy?.gets.length ?? 0;
          const got = await ck.readRange('big', offset, length);
          expect(got.equals(w.subarray(offset, offset + length)), `${offset}+${length}`).toBe(true);
          // New chunks only (a chunk an earlier case fetched is cached): whole chunks, one GET per run.
          const fresh = chunks.filter((c) => !cases.slice(0, i).some(([, , cs]) => cs.includes(c)));
          const expected = fresh.reduce((a, c) => a + chunkLen(c), 0);
          expect(ck.transfer.bytesDown - down, `${offset}+${length}`).toBe(expected);
          expect(ck.transfer.requests - reqs).toBe(fresh.length === 0 ? 0 : 1);
          if (proxy !== undefined) {
            const seen = proxy.gets.slice(gets);
            expect(seen.map((g) => g.range)).toEqual(
              fresh.length === 0
                ? []
                : [rangeOf(fresh[0] as number, fresh[fresh.length - 1] as number, weightsEnd)],
            );
            expect(seen.reduce((a, g) => a + g.bytes, 0)).toBe(expected);
          }
        }
        // A zero-length range fetches nothing; a second read of cached bytes fetches nothing either.
        const reqs = ck.transfer.requests;
        expect((await ck.readRange('big', edge(first + 3), 0)).length).toBe(0);
        expect(
          (await ck.readRange('big', edge(first + 1) - 1, 2)).equals(
            w.subarray(edge(first + 1) - 1, edge(first + 1) + 1),
          ),
        ).toBe(true);
        expect(ck.transfer.requests).toBe(reqs);
        // chunks(): lazily, piece by piece. Stopped after the first 1.5 MiB piece: only its chunks.
        const ck2 = await tv.loadCheckpoint(url, {
          ...opts,
          ...(proxy === undefined ? {} : { endpoint: proxy.endpoint }),
          cacheDir: join(dir, `cache-pieces-${store.kind}`),
        });
        try {
          const before = ck2.transfer.bytesDown;
          const it = ck2.chunks('big', { chunkBytes: 1.5 * MiB });
          const one = await it.next();
          expect(Buffer.from(one.value as Uint8Array).equals(w.subarray(0, 1.5 * MiB))).toBe(true);
          const covers = Math.floor((big.fileOffset + 1.5 * MiB - 1) / MiB) - first + 1;
          let firstPiece = 0;
          for (let c = first; c < first + covers; c++) firstPiece += chunkLen(c);
          expect(ck2.transfer.bytesDown - before).toBe(firstPiece);
          await it.return(undefined);
          // All of it: the pieces are the tensor, every chunk fetched once.
          const { pieces, err } = await drain(ck2.chunks('big', { chunkBytes: 1.5 * MiB }));
          expect(err).toBeUndefined();
          expect(pieces.map((p) => p.length)).toEqual([1.5 * MiB, 1.5 * MiB, 1.5 * MiB, 0.5 * MiB]);
          expect(Buffer.concat(pieces).equals(w)).toBe(true);
          const lastChunk = Math.floor((big.fileOffset + big.byteLength - 1) / MiB);
          let all = 0;
          for (let c = first; c <= lastChunk; c++) all += chunkLen(c);
          expect(ck2.transfer.bytesDown - before).toBe(all);
          // The small tensors too (zero-copy views agree).
          const za = Buffer.concat((await drain(ck2.chunks('z'))).pieces);
          expect(za.equals(bytesOf(want.z as Float32Array))).toBe(true);
        } finally {
          ck2.close();
        }
      } finally {
        ck.close();
        proxy?.server.close();
      }
    });

    it(`${store.kind}: bad arguments, a closed checkpoint and an aborted signal are typed errors`, async () => {
      const { url } = await pushed(without, store, 'args');
      const ck = await tv.loadCheckpoint(url, { ...opts, cacheDir: join(dir, `cache-args-${store.kind}`) });
      const reqs = ck.transfer.requests;
      const big = ck.info('big');
      for (const [offset, length] of [
        [-1, 1],
        [0, big.byteLength + 1],
        [big.byteLength, 1],
        [1.5, 1],
      ] as const) {
        await expect(ck.readRange('big', offset, length)).rejects.toMatchObject({
          code: 'TV_INVALID_ARGUMENT',
        });
      }
      await expect(ck.readRange('nope', 0, 1)).rejects.toMatchObject({ code: 'TV_TENSOR_NOT_FOUND' });
      expect(() => ck.chunks('nope')).toThrow(expect.objectContaining({ code: 'TV_TENSOR_NOT_FOUND' }));
      for (const chunkBytes of [0, -1, 1.5])
        expect(() => ck.chunks('big', { chunkBytes })).toThrow(
          expect.objectContaining({
            code: 'TV_INVALID_ARGUMENT',
            context: expect.objectContaining({ argument: 'chunkBytes' }),
          }),
        );
      await expect(
        ck.readRange('big', 0, 1, { signal: 'x' as unknown as AbortSignal }),
      ).rejects.toMatchObject({
        code: 'TV_INVALID_ARGUMENT',
      });
      await expect(ck.readRange('big', 0, 1, { signal: AbortSignal.abort() })).rejects.toMatchObject({
        code: 'TV_ABORTED',
        name: 'AbortError',
      });
      const { err } = await drain(ck.chunks('big', { signal: AbortSignal.abort() }));
      expect(err).toMatchObject({ code: 'TV_ABORTED' });
      expect(ck.transfer.requests).toBe(reqs);
      // Aborted while it waits behind another read's fetch: it stops at once; the other read completes,
      // and the same range reads later.
      const w = bytesOf(want.big as Float32Array);
      const down = ck.transfer.bytesDown;
      const first = ck.readRange('big', 0, 3 * MiB);
      const ac = new AbortController();
      const second = ck.readRange('big', 4 * MiB, 1000, { signal: ac.signal });
      ac.abort();
      await expect(second).rejects.toMatchObject({ code: 'TV_ABORTED', name: 'AbortError' });
      // It did not wait for the fetch ahead of it: that one had not received its 3 MiB yet.
      expect(ck.transfer.bytesDown - down).toBeLessThan(3 * MiB);
      expect((await first).equals(w.subarray(0, 3 * MiB))).toBe(true);
      expect((await ck.readRange('big', 4 * MiB, 1000)).equals(w.subarray(4 * MiB, 4 * MiB + 1000))).toBe(
        true,
      );
      // Closed while a read fetches (a chunk not cached yet): TV_CLOSED, as any call after.
      const pending = ck.readRange('big', big.byteLength - 100, 100);
      ck.close();
      await expect(pending).rejects.toMatchObject({ code: 'TV_CLOSED' });
      await expect(ck.readRange('big', 0, 1)).rejects.toMatchObject({ code: 'TV_CLOSED' });
      expect(() => ck.chunks('big')).toThrow(expect.objectContaining({ code: 'TV_CLOSED' }));
    });

    it(`${store.kind}: a damaged chunk inside the range: TV_REMOTE_DAMAGED naming the tensor and chunk without parity; repaired with it`, async () => {
      const none = await pushed(without, store, 'dmg-none');
      const par = await pushed(withParity, store, 'dmg-parity');
      const probe = await tv.loadCheckpoint(none.url, {
        ...opts,
        cacheDir: join(dir, `probe-${store.kind}`),
      });
      const big = probe.info('big');
      probe.close();
      // One byte of `big`'s third chunk damaged at rest in both stored sets.
      const at = 2 * MiB + 100;
      const chunk = Math.floor((big.fileOffset + at) / MiB);
      flipStored(none.obj, big.fileOffset + at, 0xff);
      const p0 = await tv.loadCheckpoint(par.url, { ...opts, cacheDir: join(dir, `probe2-${store.kind}`) });
      const pbig = p0.info('big');
      p0.close();
      flipStored(par.obj, pbig.fileOffset + at, 0xff);
      const pchunk = Math.floor((pbig.fileOffset + at) / MiB);
      const w = bytesOf(want.big as Float32Array);

      // No parity: the range holding it is refused (named), ranges beside it read.
      const ck = await tv.loadCheckpoint(none.url, {
        ...opts,
        cacheDir: join(dir, `cache-dmg-${store.kind}`),
      });
      try {
        expect((await ck.readRange('big', 0, 1000)).equals(w.subarray(0, 1000))).toBe(true);
        const err = await ck.readRange('big', at - 10, 20).catch((e: unknown) => e);
        expect(err).toMatchObject({
          code: 'TV_REMOTE_DAMAGED',
          context: { tensor: 'big', chunks: String(chunk), reason: 'chunk_digest' },
        });
        expect((err as Error).message).toMatch(/the set has no parity/);
        const { pieces, err: e2 } = await drain(ck.chunks('big', { chunkBytes: MiB }));
        expect(e2).toMatchObject({
          code: 'TV_REMOTE_DAMAGED',
          context: { tensor: 'big', chunks: String(chunk) },
        });
        const got = Buffer.concat(pieces);
        expect(got.length).toBeLessThanOrEqual(at);
        expect(got.equals(w.subarray(0, got.length))).toBe(true);
        expect((await ck.readRange('big', at + MiB, 100)).equals(w.subarray(at + MiB, at + MiB + 100))).toBe(
          true,
        );
      } finally {
        ck.close();
      }
      // With parity, repair off: the same refusal, saying why.
      const off = await tv.loadCheckpoint(par.url, {
        ...opts,
        repair: false,
        cacheDir: join(dir, `cache-off-${store.kind}`),
      });
      try {
        const err = await off.readRange('big', at - 10, 20).catch((e: unknown) => e);
        expect(err).toMatchObject({
          code: 'TV_REMOTE_DAMAGED',
          context: { tensor: 'big', chunks: String(pchunk) },
        });
        expect((err as Error).message).toMatch(/repair is off/);
      } finally {
        off.close();
      }
      // With parity (repair on, the default): rebuilt from the stored parity, the right bytes.
      const rep = await tv.loadCheckpoint(par.url, {
        ...opts,
        cacheDir: join(dir, `cache-rep-${store.kind}`),
      });
      try {
        expect((await rep.readRange('big', at - 10, 20)).equals(w.subarray(at - 10, at + 10))).toBe(true);
        const { pieces, err } = await drain(rep.chunks('big', { chunkBytes: MiB }));
        expect(err).toBeUndefined();
        expect(Buffer.concat(pieces).equals(w)).toBe(true);
      } finally {
        rep.close();
      }
    });
  });
}

// Opt-in (about 8 GiB of disk, a few minutes): a tensor above 4 GiB on Node 20, through file://.
// TV_BIG_CHECKPOINT=1 npx vitest run __test__/remote-range.test.ts -t "above 4 GiB"
it.runIf(process.env.TV_BIG_CHECKPOINT === '1')(
  'a remote tensor above 4 GiB: tensor() refuses before fetching; readRange and chunks() read it verified, fetching only what they cover',
  async () => {
    // Removed at the end of this test (8 GiB), not with the file's other folders.
    const big = mkdtempSync(join(tmpdir(), 'tv-remote-range-big-'));
    onTestFinished(() => rmSync(big, { recursive: true, force: true }));
    const path = join(big, 'src', 'huge.safetensors');
    mkdirSync(join(big, 'src'), { recursive: true });
    const PIECE = 64 * MiB;
    const n = 2 ** 32 + 3 * MiB + 5;
    // Every 64 MiB piece is `pattern` with its index in its first 8 bytes.
    const pattern = Buffer.alloc(PIECE);
    for (let i = 0; i < PIECE; i += 4) pattern.writeUInt32LE((i * 2654435761) >>> 0, i);
    const pieceAt = (p: number): Buffer => {
      const b = Buffer.from(pattern);
      b.writeDoubleLE(p, 0);
      return b.subarray(0, Math.min(PIECE, n - p * PIECE));
    };
    const expected = (offset: number, length: number): Buffer => {
      const out = Buffer.alloc(length);
      for (let at = offset; at < offset + length; ) {
        const p = Math.floor(at / PIECE);
        const piece = pieceAt(p);
        const from = at - p * PIECE;
        const take = Math.min(piece.length - from, offset + length - at);
        piece.copy(out, at - offset, from, from + take);
        at += take;
      }
      return out;
    };
    async function* source(): AsyncGenerator<Buffer> {
      for (let p = 0; p * PIECE < n; p++) yield pieceAt(p);
    }
    await tv.saveCheckpoint(
      path,
      { huge: { dtype: 'U8', shape: [n], data: source() }, small: new Float32Array([1, 2]) },
      { ecc: 'off', hmacKey: null },
    );
    const r = await tv.push(path, `file://${join(big, 'store')}`, { stateDir: join(big, 'state') });
    const ck = await tv.loadCheckpoint(r.url as RemoteUrl, { cacheDir: join(big, 'cache') });
    try {
      const opened = ck.transfer.bytesDown;
      // Refused at once: it fetched the whole 4 GiB first, then refused.
      await expect(ck.tensor('huge')).rejects.toMatchObject({ code: 'TV_TENSOR_TOO_LARGE' });
      expect(ck.transfer.bytesDown).toBe(opened);
      // Across the 4 GiB mark and at the very end: the bytes, about the range fetched.
      for (const [offset, length] of [
        [2 ** 32 - 10, 20],
        [n - 100, 100],
      ] as const) {
        const down = ck.transfer.bytesDown;
        expect((await ck.readRange('huge', offset, length)).equals(expected(offset, length))).toBe(true);
        expect(ck.transfer.bytesDown - down).toBeLessThanOrEqual(2 * MiB);
      }
      // chunks(): the first pieces, fetched only as the iteration reaches them.
      const down = ck.transfer.bytesDown;
      let at = 0;
      for await (const p of ck.chunks('huge', { chunkBytes: PIECE })) {
        expect(Buffer.from(p).equals(expected(at, p.length))).toBe(true);
        at += p.length;
        if (at >= 2 * PIECE) break;
      }
      expect(ck.transfer.bytesDown - down).toBeLessThanOrEqual(2 * PIECE + 2 * MiB);
    } finally {
      ck.close();
    }
  },
  900_000,
);
