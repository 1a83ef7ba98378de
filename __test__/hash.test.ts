import { createHash, createHmac, randomBytes } from 'node:crypto';
import { getEventListeners } from 'node:events';
import {
  chmodSync,
  closeSync,
  createReadStream,
  existsSync,
  ftruncateSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { tempDir } from './helpers/tmp';

const dir = tempDir();
const nodeSha = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

describe('sha256 / hmacSha256 / Sha256', () => {
  it('match node:crypto for random sizes and split points (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 5000 }), fc.array(fc.nat(), { maxLength: 6 }), (data, cuts) => {
        const want = nodeSha(data);
        expect(tv.sha256(data).toString('hex')).toBe(want);
        const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
        const h = tv.createSha256();
        let at = 0;
        for (const p of [...points, data.length]) {
          h.update(data.subarray(at, p));
          at = p;
        }
        expect(h.digest('hex')).toBe(want);
      }),
      { numRuns: 300 },
    );
  });

  it('HMAC matches node:crypto for random keys (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ maxLength: 3000 }), (key, data) => {
        expect(tv.hmacSha256(key, data).toString('hex')).toBe(
          createHmac('sha256', key).update(data).digest('hex'),
        );
      }),
      { numRuns: 200 },
    );
  });

  it('accepts strings, typed arrays, DataViews and ArrayBuffers; views respect their offsets', () => {
    const buf = Buffer.from('0123456789abcdef');
    const f32 = new Float32Array([1, 2, 3]);
    expect(tv.sha256('héllo').toString('hex')).toBe(nodeSha('héllo'));
    expect(tv.sha256(buf.subarray(3, 9)).toString('hex')).toBe(nodeSha(buf.subarray(3, 9)));
    expect(tv.sha256(f32).toString('hex')).toBe(nodeSha(Buffer.from(f32.buffer)));
    expect(tv.sha256(new DataView(buf.buffer, buf.byteOffset + 2, 4)).toString('hex')).toBe(
      nodeSha(buf.subarray(2, 6)),
    );
    expect(tv.sha256(f32.buffer).toString('hex')).toBe(nodeSha(Buffer.from(f32.buffer)));
  });

  it('Sha256 behaves like a Node Hash: chaining, encodings, copy, finalisation', () => {
    const h = tv.createSha256().update('ab');
    const fork = h.copy();
    h.update('c');
    fork.update('x');
    expect(h.digest('hex')).toBe(nodeSha('abc'));
    expect(fork.digest('base64')).toBe(createHash('sha256').update('abx').digest('base64'));
    expect(
      tv
        .createSha256()
        .update('ff00', 'hex')
        .digest()
        .equals(createHash('sha256').update('ff00', 'hex').digest()),
    ).toBe(true);
    expect(() => h.digest()).toThrowError(expect.objectContaining({ code: 'TV_HASH_FINALIZED' }));
    expect(() => h.update('more')).toThrowError(expect.objectContaining({ code: 'TV_HASH_FINALIZED' }));
  });

  it('Sha256 works as a stream where a Node Hash is piped into', async () => {
    const file = join(dir, 'stream.bin');
    const data = randomBytes(3 * 65536 + 17);
    writeFileSync(file, data);
    const h = new tv.Sha256();
    await pipeline(createReadStream(file), h);
    const out = h.read() as Buffer;
    expect(out.toString('hex')).toBe(nodeSha(data));
  });

  it('rejects wrong argument types with TV_INVALID_ARGUMENT', () => {
    for (const bad of [123, null, undefined, {}, [1, 2]]) {
      expect(() => tv.sha256(bad as never)).toThrowError(
        expect.objectContaining({ name: 'TensorVaultError', code: 'TV_INVALID_ARGUMENT' }),
      );
      expect(() => tv.hmacSha256(bad as never, 'x')).toThrowError(
        expect.objectContaining({ code: 'TV_INVALID_ARGUMENT' }),
      );
    }
  });
});

describe('strings that are not well-formed Unicode (a lone UTF-16 surrogate)', () => {
  const refused = (fn: () => unknown, context: Record<string, unknown>) => {
    let err: unknown;
    try {
      fn();
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ name: 'TensorVaultError', code: 'TV_INVALID_ARGUMENT', context });
    return err as Error;
  };

  it('sha256, hmacSha256 and sha256Many/Hex refuse them: two different strings never share a digest', () => {
    // UTF-8 cannot encode a lone surrogate: converted, '\ud800' and '\udfff' both became U+FFFD.
    refused(() => tv.sha256('a\ud800'), { argument: 'data', position: 1 });
    refused(() => tv.sha256('\udfff'), { argument: 'data', position: 0 });
    refused(() => tv.sha256('\udc00\ud800'), { argument: 'data', position: 0 });
    const keyErr = refused(() => tv.hmacSha256('secret\ud800', 'x'), { argument: 'key', position: 6 });
    expect(keyErr.message).not.toContain('secret');
    refused(() => tv.hmacSha256('k', 'x\udc00'), { argument: 'data', position: 1 });
    refused(() => tv.sha256Many(['ok', 'b\ud800']), { argument: 'items', index: 1, position: 1 });
    refused(() => tv.sha256ManyHex([Buffer.from('x'), 'ok', '\udbff!']), {
      argument: 'items',
      index: 2,
      position: 0,
    });
    // A surrogate pair is one well-formed character, hashed as node:crypto hashes it.
    const emoji = 'a\ud83d\ude00b';
    expect(tv.sha256(emoji).toString('hex')).toBe(nodeSha(emoji));
    expect(tv.sha256ManyHex([emoji, 'x'])).toBe(nodeSha(emoji) + nodeSha('x'));
    expect(tv.hmacSha256(emoji, emoji).toString('hex')).toBe(
      createHmac('sha256', emoji).update(emoji).digest('hex'),
    );
  });

  it('Sha256.update converts them as crypto.Hash.update does (documented node:crypto compatibility)', () => {
    for (const s of ['\ud800', 'x\udfff']) {
      expect(tv.createSha256().update(s).digest('hex')).toBe(nodeSha(s));
    }
  });
});

describe('sha256Many / sha256ManyHex (batched native hash)', () => {
  const one = (x: string | Uint8Array) => createHash('sha256').update(x).digest('hex');

  it('matches one sha256 per item for mixed strings (ASCII and not) and byte views (property)', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.string({ unit: 'binary', maxLength: 200 }),
            fc.string({ maxLength: 400 }),
            fc.uint8Array({ maxLength: 300 }),
          ),
          { maxLength: 60 },
        ),
        (items) => {
          const want = items.map((x) => one(x));
          expect(tv.sha256Many(items).map((b) => b.toString('hex'))).toEqual(want);
          expect(tv.sha256ManyHex(items)).toBe(want.join(''));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('handles thousands of event-sized strings and views with offsets, like per-item sha256', () => {
    const items: (string | Uint8Array)[] = [];
    for (let i = 0; i < 5000; i++) items.push(`tv-eventlog-v2\n{"seq":${i},"actor":"a${i % 7}"}`);
    items.push('é∑😀', '', new Uint8Array(Buffer.from('xxabcxx')).subarray(2, 5));
    const hex = tv.sha256ManyHex(items);
    expect(hex.length).toBe(64 * items.length);
    items.forEach((x, i) => {
      expect(hex.slice(i * 64, i * 64 + 64)).toBe(tv.sha256(x).toString('hex'));
    });
    expect(hex.slice(-64)).toBe(one('abc'));
  });

  it('an empty list gives no digests', () => {
    expect(tv.sha256Many([])).toEqual([]);
    expect(tv.sha256ManyHex([])).toBe('');
    expect(tv.sha256ManyHex([''])).toBe(one(''));
  });

  it('bad arguments are typed errors', async () => {
    for (const bad of [undefined, null, 'abc', 5, {}]) {
      expect(() => tv.sha256Many(bad as never)).toThrow(
        expect.objectContaining({ code: 'TV_INVALID_ARGUMENT', context: { argument: 'items' } }),
      );
    }
    for (const item of [5, null, undefined, {}, [1]]) {
      expect(() => tv.sha256ManyHex(['ok', item as never])).toThrow(
        expect.objectContaining({ code: 'TV_INVALID_ARGUMENT', context: { argument: 'items', index: 1 } }),
      );
    }
    // The native batch checks the item bounds it is given.
    const { native } = await import('../dist/native/index.js');
    const { callNative } = await import('../dist/errors.js');
    const data = Buffer.from('0123456789');
    for (const ends of [[5, 3, 10], [11], [5], [], [10, 12]]) {
      let err: unknown;
      try {
        callNative(() => native().sha256Many(data, new Uint32Array(ends)));
      } catch (e) {
        err = e;
      }
      expect(err, String(ends)).toMatchObject({
        code: 'TV_INVALID_ARGUMENT',
        context: { argument: 'ends', length: 10 },
      });
    }
  });
});

describe('hashFile', () => {
  const sizes = [0, 1, 4095, 4096, 4097, 1 << 20, (1 << 20) + 1, 5 * (1 << 20) + 12345];

  it('plain digest equals node:crypto for sizes around every block edge', async () => {
    for (const n of sizes) {
      const file = join(dir, `f${n}.bin`);
      const data = randomBytes(n);
      writeFileSync(file, data);
      const r = await tv.hashFile(file);
      expect(r).toEqual({ algorithm: 'sha256', digest: nodeSha(data), length: n });
    }
  });

  it("tree leaves are each chunk's SHA-256 and the root follows docs/formats/chunk-tree.md", async () => {
    const n = 5 * 65536 + 999;
    const data = randomBytes(n);
    const file = join(dir, 'tree.bin');
    writeFileSync(file, data);
    const r = await tv.hashFile(file, { chunkSize: 65536, leaves: true });
    expect(r.chunkCount).toBe(6);
    const leaves = [];
    for (let i = 0; i < n; i += 65536) leaves.push(nodeSha(data.subarray(i, i + 65536)));
    expect(r.leaves).toEqual(leaves);
    const header = Buffer.alloc(32);
    header.write('TVCTREE\x01', 0, 'latin1');
    header[8] = 1;
    header.writeBigUInt64LE(65536n, 16);
    header.writeBigUInt64LE(BigInt(n), 24);
    const root = createHash('sha256').update(header);
    for (const l of leaves) root.update(Buffer.from(l, 'hex'));
    expect(r.digest).toBe(root.digest('hex'));
  });

  it('tree is deterministic and independent of the thread count', async () => {
    const file = join(dir, 'threads.bin');
    writeFileSync(file, randomBytes(3 * (1 << 20) + 5));
    const roots = new Set<string>();
    for (const threads of [1, 2, 3, 8]) {
      for (let rep = 0; rep < 2; rep++)
        roots.add((await tv.hashFile(file, { chunkSize: 65536, threads })).digest);
    }
    expect(roots.size).toBe(1);
  });

  it('empty file: plain is the empty SHA-256, tree has no leaves', async () => {
    const file = join(dir, 'empty.bin');
    writeFileSync(file, '');
    expect((await tv.hashFile(file)).digest).toBe(nodeSha(''));
    const t = await tv.hashFile(file, { tree: true, leaves: true });
    expect(t.leaves).toEqual([]);
    expect(t.chunkCount).toBe(0);
  });

  it('a file whose stat length is a placeholder (procfs 0, sysfs 4096) is hashed as read, like sha256sum', async () => {
    // Regression (QA): /proc/version has stat size 0 and was hashed as the empty string; a sysfs
    // attribute (size 4096, a few bytes) failed as TV_FILE_CHANGED.
    const files = ['/proc/version', '/sys/kernel/mm/transparent_hugepage/enabled'].filter((f) =>
      existsSync(f),
    );
    expect(files).toContain('/proc/version');
    for (const f of files) {
      const data = readFileSync(f);
      expect(data.length, f).toBeGreaterThan(0);
      expect(await tv.hashFile(f), f).toEqual({
        algorithm: 'sha256',
        digest: nodeSha(data),
        length: data.length,
      });
      const t = await tv.hashFile(f, { chunkSize: 4096, leaves: true });
      const leaves: string[] = [];
      for (let i = 0; i < data.length; i += 4096) leaves.push(nodeSha(data.subarray(i, i + 4096)));
      expect(t.leaves, f).toEqual(leaves);
      expect(t.length, f).toBe(data.length);
    }
  });

  it('typed errors: missing file, folder, no permission, bad arguments', async () => {
    await expect(tv.hashFile(join(dir, 'missing'))).rejects.toMatchObject({
      name: 'TensorVaultError',
      code: 'TV_NOT_FOUND',
      context: { path: join(dir, 'missing'), errno: 2 },
    });
    await expect(tv.hashFile(dir)).rejects.toMatchObject({ code: 'TV_IS_DIRECTORY', context: { path: dir } });
    const secret = join(dir, 'secret.bin');
    writeFileSync(secret, 'x');
    chmodSync(secret, 0o000);
    if (process.getuid?.() === 0) {
      // root ignores file modes; drop privileges in a child to exercise EACCES for real.
      const { spawnSync } = await import('node:child_process');
      const r = spawnSync(
        process.execPath,
        [
          '-e',
          `process.setgid(65534); process.setuid(65534);
         require(${JSON.stringify(require.resolve('../dist/index.js'))}).hashFile(${JSON.stringify(secret)})
           .then(() => console.log('resolved'), (e) => console.log(e.code, e.context.errno))`,
        ],
        { encoding: 'utf8' },
      );
      expect(r.stdout.trim()).toBe('TV_PERMISSION_DENIED 13');
    } else {
      await expect(tv.hashFile(secret)).rejects.toMatchObject({
        code: 'TV_PERMISSION_DENIED',
        context: { errno: 13 },
      });
    }
    await expect(tv.hashFile(123 as never)).rejects.toMatchObject({ code: 'TV_INVALID_ARGUMENT' });
    await expect(tv.hashFile('')).rejects.toMatchObject({ code: 'TV_INVALID_ARGUMENT' });
    await expect(tv.hashFile(secret, { chunkSize: 1000 })).rejects.toMatchObject({
      code: 'TV_INVALID_ARGUMENT',
      context: { argument: 'chunkSize', actual: 1000 },
    });
    await expect(tv.hashFile(secret, { threads: 0 })).rejects.toMatchObject({ code: 'TV_INVALID_ARGUMENT' });
    await expect(tv.hashFile(secret, { signal: 'x' as never })).rejects.toMatchObject({
      code: 'TV_INVALID_ARGUMENT',
    });
  });

  // Multi-GiB files: the native hasher on the libuv pool, the same on every Node line, so the extra
  // lines of the Node matrix skip these two (TV_MATRIX_EXTRA, set by scripts/test.mjs).
  it.skipIf(process.env.TV_MATRIX_EXTRA === '1')(
    'hashes a sparse file over 4 GiB (plain and tree) like node:crypto',
    async () => {
      const file = join(dir, 'sparse.bin');
      const size = 4 * 1024 ** 3 + 12345;
      const fd = openSync(file, 'w');
      ftruncateSync(fd, size);
      writeSync(fd, Buffer.from('tail'), 0, 4, size - 4);
      closeSync(fd);
      const h = createHash('sha256');
      await pipeline(createReadStream(file, { highWaterMark: 1 << 20 }), h);
      const plain = await tv.hashFile(file);
      expect(plain.length).toBe(size);
      expect(plain.digest).toBe(h.digest('hex'));
      const tree = await tv.hashFile(file, { leaves: true });
      expect(tree.chunkCount).toBe(Math.ceil(size / (4 << 20)));
      const zeroLeaf = nodeSha(Buffer.alloc(4 << 20));
      expect(tree.leaves?.slice(0, -1).every((l) => l === zeroLeaf)).toBe(true);
      rmSync(file);
    },
  );

  it.skipIf(process.env.TV_MATRIX_EXTRA === '1')(
    'equals node:crypto on a 2 GiB file (plain and tree leaves)',
    async () => {
      const file = join(dir, 'two-gib.bin');
      const size = 2 * 1024 ** 3;
      const block = randomBytes(16 << 20);
      const fd = openSync(file, 'w');
      for (let off = 0; off < size; off += block.length) {
        block.writeDoubleLE(off, 0); // every block differs
        writeSync(fd, block, 0, block.length, off);
      }
      closeSync(fd);
      const h = createHash('sha256');
      await pipeline(createReadStream(file, { highWaterMark: 1 << 20 }), h);
      expect((await tv.hashFile(file)).digest).toBe(h.digest('hex'));
      const tree = await tv.hashFile(file, { chunkSize: 16 << 20, leaves: true });
      expect(tree.chunkCount).toBe(128);
      block.writeDoubleLE(size - block.length, 0);
      expect(tree.leaves?.[127]).toBe(nodeSha(block));
      rmSync(file);
    },
  );

  it('AbortSignal: rejects with AbortError and the native work stops early', async () => {
    const file = join(dir, 'big.bin');
    const size = 1024 ** 3;
    const fd = openSync(file, 'w');
    ftruncateSync(fd, size);
    closeSync(fd);
    for (const tree of [false, true]) {
      const ac = new AbortController();
      let last = { bytesDone: 0, bytesTotal: 0 };
      const p = tv.hashFile(file, {
        tree,
        signal: ac.signal,
        progressIntervalMs: 5,
        onProgress: (pr) => {
          last = pr;
          if (pr.bytesDone > 0 && !ac.signal.aborted) ac.abort(new Error('stop'));
        },
      });
      const err = await p.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ name: 'AbortError', code: 'TV_ABORTED' });
      expect((err as Error).cause).toEqual(new Error('stop'));
      // `last` is the report made after the native worker returned: it stopped well short of the end.
      expect(last.bytesTotal).toBe(size);
      expect(last.bytesDone).toBeGreaterThan(0);
      expect(last.bytesDone).toBeLessThan(size / 2);
    }
    const ac = new AbortController();
    ac.abort();
    await expect(tv.hashFile(file, { signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('one AbortSignal shared by 40 concurrent calls: no MaxListenersExceededWarning, no listener left (qa22 #5)', async () => {
    const file = join(dir, 'shared-signal.bin');
    writeFileSync(file, randomBytes(64 << 10));
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => {
      warnings.push(w);
    };
    process.on('warning', onWarning);
    try {
      const ac = new AbortController();
      const { signal } = ac;
      // runJob (hashFile) and abortable (a streamed save waits on its source through it).
      const hashes = Array.from({ length: 40 }, () => tv.hashFile(file, { signal }));
      const saves = Array.from({ length: 40 }, (_, i) => {
        async function* src() {
          yield new Uint8Array(8).fill(i);
        }
        return tv.saveSafetensors(
          join(dir, `shared-signal-${i}.safetensors`),
          {
            a: { dtype: 'U8', shape: [8], data: src() },
          },
          { signal },
        );
      });
      const done = await Promise.all([...hashes, ...saves]);
      expect(done).toHaveLength(80);
      // A warning is emitted on the next tick.
      await new Promise((r) => setImmediate(r));
      expect(getEventListeners(signal, 'abort')).toHaveLength(0);
      // Still honoured: an abort ends every call waiting on the signal (saves whose sources stalled),
      // and a call made after it.
      const stalledSaves = Array.from({ length: 15 }, (_, i) => {
        async function* stalled(): AsyncGenerator<Uint8Array> {
          await new Promise(() => {});
        }
        return tv.saveSafetensors(
          join(dir, `shared-signal-stalled-${i}.safetensors`),
          {
            a: { dtype: 'U8', shape: [8], data: stalled() },
          },
          { signal },
        );
      });
      await new Promise((r) => setImmediate(r));
      ac.abort();
      const outcomes = await Promise.allSettled(stalledSaves);
      expect(outcomes.map((o) => (o.status === 'rejected' ? (o.reason as Error).name : o.status))).toEqual(
        Array(15).fill('AbortError'),
      );
      expect(getEventListeners(signal, 'abort')).toHaveLength(0);
      await expect(tv.hashFile(file, { signal })).rejects.toMatchObject({ name: 'AbortError' });
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
  });

  it('reports progress up to the full length', async () => {
    const file = join(dir, 'progress.bin');
    writeFileSync(file, randomBytes(8 << 20));
    const seen: number[] = [];
    await tv.hashFile(file, { onProgress: (p) => seen.push(p.bytesDone) });
    expect(seen.at(-1)).toBe(8 << 20);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
  });
});

describe('native safety', () => {
  it('a Rust panic becomes TV_INTERNAL on the JS thread and on the libuv pool', async () => {
    const { native } = await import('../dist/native/index.js');
    // The hooks exist only in test builds (npm test builds with TV_TEST_HOOKS=1); the generated
    // boundary types leave them out on purpose.
    const n = native() as unknown as {
      __testPanicSync?: () => void;
      __testPanicAsync?: () => Promise<unknown>;
    };
    if (n.__testPanicSync === undefined || n.__testPanicAsync === undefined) {
      throw new Error('the addon has no test hooks: build it with TV_TEST_HOOKS=1 node scripts/build.mjs');
    }
    let caught: unknown;
    try {
      n.__testPanicSync();
    } catch (e) {
      caught = e;
    }
    expect(tv.TensorVaultError.prototype).toBeDefined();
    const { fromNative } = await import('../dist/errors.js');
    expect(fromNative(caught)).toMatchObject({ code: 'TV_INTERNAL' });
    expect(String((caught as Error).message)).toContain('test panic (sync)');
    const asyncErr = await n.__testPanicAsync().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(fromNative(asyncErr)).toMatchObject({ code: 'TV_INTERNAL' });
    expect(String((asyncErr as Error).message)).toContain('test panic (libuv pool)');
  });

  it('the loaded addon exports every name the TypeScript layer expects', async () => {
    const { native, NATIVE_EXPORTS } = await import('../dist/native/index.js');
    const n = native() as unknown as Record<string, unknown>;
    for (const name of NATIVE_EXPORTS) expect(typeof n[name], name).toBe('function');
  });
});

describe('telemetry', () => {
  it('publishes each job on the tensorvault:job diagnostics channel', async () => {
    const { subscribe, unsubscribe } = await import('node:diagnostics_channel');
    const seen: unknown[] = [];
    const fn = (m: unknown) => seen.push(m);
    subscribe('tensorvault:job', fn);
    try {
      const file = join(dir, 'telemetry.bin');
      writeFileSync(file, randomBytes(1000));
      await tv.hashFile(file);
      await tv.hashFile(join(dir, 'nothing-here')).catch(() => {});
    } finally {
      unsubscribe('tensorvault:job', fn);
    }
    expect(seen).toMatchObject([
      { op: 'hashFile', bytes: 1000, outcome: 'ok' },
      { op: 'hashFile', outcome: 'TV_NOT_FOUND' },
    ]);
  });
});
