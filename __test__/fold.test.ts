import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { native } from '../dist/native/index.js';
import { xorAt } from './helpers/bytes';
import { tempDir } from './helpers/tmp';

const FIX = join(__dirname, 'fixtures', 'fold');

interface ChunkExpect {
  chunk_header_hex: string;
  payload_len: number;
  payload_sha256: string;
  json?: unknown;
  tensors?: unknown;
  npz?: Record<string, { dtype: string; shape: number[]; sha256: string; values?: unknown[] }>;
}
interface FileExpect {
  size: number;
  header: { index_off: number; index_len: number };
  read_with: {
    integrity_key: string | null;
    decryption_key_hex: string | null;
    trust_public_key: string | null;
  };
  index: Record<string, unknown>;
  list_chunks: string[];
  is_mind: boolean;
  chunks: Record<string, ChunkExpect>;
  manifest: { manifest_hash: string };
  read_without_keys?: Record<string, string>;
  trust_block?: { verify_header_with_fixture_key: boolean };
}
interface Expected {
  keys: {
    hmac_key_utf8: string;
    aes256_key_hex: string;
    ed25519_public_pem: string;
    ed25519_private_pem: string;
  };
  neuron_state: { tensors: Record<string, [string, number[], string, unknown?]> };
  files: Record<string, FileExpect>;
}
const expected = JSON.parse(readFileSync(join(FIX, 'expected.json'), 'utf8')) as Expected;
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const aesKey = Buffer.from(expected.keys.aes256_key_hex, 'hex');

function optionsFor(f: FileExpect): tv.OpenFoldOptions {
  return {
    ...(f.read_with.integrity_key === null ? {} : { hmacKey: f.read_with.integrity_key }),
    ...(f.read_with.decryption_key_hex === null ? {} : { decryptionKey: aesKey }),
    trustPublicKey: expected.keys.ed25519_public_pem,
  };
}

/** Back to expected.json's tagged form: bigint → {$int}, NaN/±Infinity → {$float}. */
function tagged(v: unknown): unknown {
  if (typeof v === 'bigint') return { $int: v.toString() };
  if (typeof v === 'number' && !Number.isFinite(v))
    return { $float: Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity' };
  if (Array.isArray(v)) return v.map(tagged);
  if (typeof v === 'object' && v !== null)
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, tagged(x)]));
  return v;
}

const files = Object.entries(expected.files);

describe('openFold over the PyFolds fixtures', () => {
  it.each(files)('%s opens with the values expected.json records', async (name, f) => {
    const fold = await tv.openFold(join(FIX, name), { ...optionsFor(f), verify: 'full' });
    expect(fold.layout).toEqual({
      indexOffset: f.header.index_off,
      indexLength: f.header.index_len,
      fileLength: f.size,
    });
    expect(fold.isMind).toBe(f.is_mind);
    expect(fold.chunks.map((c) => c.name)).toEqual(f.list_chunks);
    expect(tagged(fold.index)).toEqual(f.index);
    expect(fold.checks.manifestHash.status).toBe('valid');
    expect(fold.metadata.manifest_hash).toBe(f.manifest.manifest_hash);
    if (f.trust_block) expect(fold.checks.trustBlock.status).toBe('valid');
    for (const c of fold.chunks) {
      const want = f.chunks[c.name] as ChunkExpect;
      const chunk = await fold.chunk(c.name);
      expect(chunk.status).toBe('intact');
      expect(chunk.bytes.length).toBe(want.payload_len);
      expect(sha(chunk.bytes)).toBe(want.payload_sha256);
      // Stored as is, not encrypted: a zero-copy view on the mapping.
      expect(chunk.copied).toBe(c.flags === 1 || c.encrypted);
      if (want.json !== undefined) expect(tagged(await fold.json(c.name))).toEqual(want.json);
      if (want.npz !== undefined) {
        const arrays = await fold.npz(c.name);
        expect(Object.keys(arrays).sort()).toEqual(Object.keys(want.npz).sort());
        for (const [k, a] of Object.entries(want.npz)) {
          const got = arrays[k] as tv.NpzArray;
          expect([got.dtype, got.shape, sha(got.bytes)]).toEqual([a.dtype, a.shape, a.sha256]);
          if (a.values !== undefined) {
            const vals = Array.from(got.data as unknown as ArrayLike<number>);
            expect(a.dtype === 'bool' ? vals.map(Boolean) : vals).toEqual(a.values);
          }
        }
      }
      // Cached: the second read is the same bytes, not a new check.
      expect((await fold.chunk(c.name)).bytes).toBe(chunk.bytes);
    }
    if (f.chunks.torch_state !== undefined) {
      const sd = await fold.stateDict();
      const want = expected.neuron_state.tensors;
      expect([...sd.names].sort()).toEqual(Object.keys(want).sort());
      for (const t of sd.tensors()) {
        const [dtype, shape, digest] = want[t.name] as [string, number[], string];
        expect(t.dtype).toBe(dtype);
        expect(t.shape).toEqual(shape);
        expect(sha(t.bytes)).toBe(digest);
      }
    }
    fold.close();
  });

  // Every error case expected.json records gets a typed error naming the chunk.
  const errorCases = files.flatMap(([name, f]) =>
    Object.entries(f.read_without_keys ?? {}).map(([chunk, what]) => [name, chunk, what] as const),
  );
  it.each(errorCases)('%s chunk %s without keys: %s', async (name, chunk, what) => {
    const fold = await tv.openFold(join(FIX, name));
    const err = await fold.chunk(chunk).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(tv.TensorVaultError);
    const code = what.startsWith('FoldSecurityError') ? 'TV_FOLD_KEY_REQUIRED' : 'TV_FOLD_UNVERIFIABLE';
    expect((err as tv.TensorVaultError).code).toBe(code);
    expect((err as tv.TensorVaultError).context.chunk).toBe(chunk);
  });

  it('wrong keys, downgrades and policies are typed errors', async () => {
    const enc = await tv.openFold(join(FIX, 'encrypted.fold'), { decryptionKey: Buffer.alloc(32, 7) });
    await expect(enc.chunk('torch_state')).rejects.toMatchObject({
      code: 'TV_FOLD_DECRYPT_FAILED',
      context: { chunk: 'torch_state' },
    });
    const plainWithKey = await tv.openFold(join(FIX, 'plain.fold'), { verify: 'none', hmacKey: 'k' });
    expect((await plainWithKey.chunk('metrics')).status).toBe('unchecked');
    await expect(
      tv.openFold(join(FIX, 'plain.fold'), { policy: { requireAuthenticated: true } }),
    ).rejects.toMatchObject({
      code: 'TV_FOLD_POLICY',
      context: { rule: 'require_authenticated' },
    });
    await expect(tv.openFold(join(FIX, 'edge.fold'), { policy: 'strict' })).rejects.toMatchObject({
      code: 'TV_FOLD_POLICY',
    });
    const hmac = await tv.openFold(join(FIX, 'hmac.fold'), {
      hmacKey: expected.keys.hmac_key_utf8,
      policy: { requireAuthenticated: true },
    });
    expect(hmac.checks.authenticated).toBe('hmac');
    await expect(hmac.chunk('nope')).rejects.toMatchObject({ code: 'TV_FOLD_CHUNK_NOT_FOUND' });
    await expect(tv.openFold(join(FIX, 'README.md'))).rejects.toMatchObject({
      code: 'TV_FOLD_INVALID',
      context: { reason: 'bad_magic' },
    });
    await expect(tv.openFold(join(FIX, 'nope.fold'))).rejects.toMatchObject({ code: 'TV_NOT_FOUND' });
  });
});

describe('writeFold', () => {
  const dir = tempDir('tv-fold-');

  it('a string hmacKey with a lone UTF-16 surrogate is refused by writeFold and openFold (two keys never act as one)', async () => {
    // UTF-8 cannot encode a lone surrogate: '\ud800' and '\udfff' were both used as U+FFFD's bytes.
    const path = join(dir, 'lone-surrogate-key.mind');
    const e = await tv
      .writeFold(path, [{ name: 'a', ctype: 'raw', data: Buffer.from('x') }], { hmacKey: 'k\ud800' })
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    expect(e).toMatchObject({ code: 'TV_INVALID_ARGUMENT', context: { argument: 'hmacKey', position: 1 } });
    expect(existsSync(path)).toBe(false);
    const o = await tv.openFold(join(FIX, 'plain.fold'), { verify: 'none', hmacKey: '\udfff' }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(o).toMatchObject({ code: 'TV_INVALID_ARGUMENT', context: { argument: 'hmacKey', position: 0 } });
  });

  it('round-trips every option and re-opens with full verification', async () => {
    const src = await tv.openFold(join(FIX, 'sample.mind'));
    const chunks: tv.FoldChunkInput[] = [];
    for (const c of src.chunks) chunks.push({ name: c.name, ctype: c.ctype, data: await src.bytes(c.name) });
    chunks.push({
      name: 'notes',
      json: { big: 2n ** 64n - 1n, nan: Number.NaN, f: 0.1, s: 'ação 🧠', neg0: -0 },
    });
    const cases: tv.WriteFoldOptions[] = [
      { compress: 'none' },
      { protection: 'med' },
      { ecc: 'rs(8)', hmacKey: expected.keys.hmac_key_utf8, level: 'standard' },
      {
        protection: 'high',
        level: 'high',
        encryptionKey: aesKey,
        signingKey: expected.keys.ed25519_private_pem,
      },
    ];
    for (const [i, opts] of cases.entries()) {
      const path = join(dir, `rt${i}.mind`);
      const res = await tv.writeFold(path, chunks, {
        ...opts,
        metadata: { model_type: 'T', tags: { k: 'v' } },
        createdAt: 1.5,
      });
      expect(res.fileLength).toBe(readFileSync(path).length);
      const back = await tv.openFold(path, {
        verify: 'full',
        trustPublicKey: expected.keys.ed25519_public_pem,
        ...(opts.hmacKey === undefined ? {} : { hmacKey: opts.hmacKey }),
        ...(opts.encryptionKey === undefined ? {} : { decryptionKey: aesKey }),
        policy: 'strict',
      });
      expect(back.isMind).toBe(true);
      expect(back.index.created_at_unix).toBe(1.5);
      expect(back.checks.trustBlock.status).toBe(opts.signingKey === undefined ? 'absent' : 'valid');
      for (const c of chunks) {
        if ('data' in c) expect(sha(await back.bytes(c.name))).toBe(sha(c.data));
      }
      expect(await back.json('notes')).toEqual({
        big: 2n ** 64n - 1n,
        nan: Number.NaN,
        f: 0.1,
        s: 'ação 🧠',
        neg0: -0,
      });
      const sd = await back.stateDict();
      expect(sd.names.length).toBe(116);
    }
    // The JSON chunk is Python's text: exact integer, NaN token, -0.0.
    const plain = await tv.openFold(join(dir, 'rt0.mind'));
    expect(Buffer.from(await plain.bytes('notes')).toString('utf8')).toBe(
      '{"big":18446744073709551615,"nan":NaN,"f":0.1,"s":"ação 🧠","neg0":-0.0}',
    );
    expect(readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  // Regression: security_features followed the level alone, so level high or paranoid without an
  // encryption key (the README's writeFold, with a signing key only) claimed encryption, and without a
  // signing key a trust block: the writer's own files were refused by policy 'strict' (TV_FOLD_POLICY).
  it('claims in security_features only what it wrote: its files open under policy strict', async () => {
    const chunks: tv.FoldChunkInput[] = [{ name: 'llm_manifest', json: { hyperparameters: { n: 2 } } }];
    const cases: [string, tv.WriteFoldOptions][] = [
      [
        'high, signing key only (the README)',
        { level: 'high', signingKey: expected.keys.ed25519_private_pem },
      ],
      ['high, no key', { level: 'high' }],
      ['paranoid, no key', { level: 'paranoid' }],
      ['paranoid, encryption only', { level: 'paranoid', encryptionKey: aesKey }],
    ];
    for (const [i, [what, opts]] of cases.entries()) {
      const path = join(dir, `claims${i}.fold`);
      await tv.writeFold(path, chunks, opts);
      const f = await tv.openFold(path, {
        policy: 'strict',
        trustPublicKey: expected.keys.ed25519_public_pem,
        ...(opts.encryptionKey === undefined ? {} : { decryptionKey: aesKey }),
      });
      const claims = f.metadata.security_features as Record<string, unknown>;
      expect([what, claims.encryption, claims.trust_block, claims.merkle]).toEqual([
        what,
        opts.encryptionKey !== undefined,
        opts.signingKey !== undefined,
        true,
      ]);
    }
  });

  it('a state dict written from typed arrays reads back as the same tensors', async () => {
    const path = join(dir, 'sd.fold');
    const w = new Float32Array([1.5, -2, 3.25, 4]);
    const b = new BigInt64Array([1n, -1n]);
    await tv.writeFold(
      path,
      [
        {
          name: 'torch_state',
          stateDict: {
            w: { dtype: 'F32', shape: [2, 2], data: w },
            b: { dtype: 'I64', shape: [2], data: b },
          },
        },
      ],
      {
        compress: 'none',
      },
    );
    const sd = await (await tv.openFold(path)).stateDict();
    expect(Array.from(sd.tensor('w').data as Float32Array)).toEqual([1.5, -2, 3.25, 4]);
    expect(Array.from(sd.tensor('b').data as BigInt64Array)).toEqual([1n, -1n]);
    expect(() => sd.tensor('x')).toThrow(expect.objectContaining({ code: 'TV_TENSOR_NOT_FOUND' }));
  });

  it('a STEN tensor with a dimension above 2^53 has its exact shape, as the safetensors reader gives it', async () => {
    // Only a zero-size tensor can have one (torch.empty(2**53 + 1, 0)); JSON.parse rounded it to 2^53.
    const big = '9007199254740993';
    const header = Buffer.from(
      `{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"z":{"dtype":"F32","shape":[${big},0],"data_offsets":[8,8]}}`,
    );
    const padded = Buffer.concat([header, Buffer.alloc((8 - (header.length % 8)) % 8, 0x20)]);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(padded.length));
    const payload = Buffer.concat([len, padded, Buffer.from(new Float32Array([1, 2]).buffer)]);
    for (const compress of ['none', 'zstd'] as const) {
      const path = join(dir, `exact-shape-${compress}.fold`);
      await tv.writeFold(path, [{ name: 'torch_state', ctype: 'STEN', data: payload }], { compress });
      const sd = await (await tv.openFold(path)).stateDict();
      const z = sd.tensor('z');
      expect(z.exactShape).toEqual([big, '0']);
      expect(BigInt(z.exactShape?.[0] ?? 0)).toBe(2n ** 53n + 1n);
      expect(z.data.length).toBe(0);
      const w = sd.tensor('w');
      expect([...w.data]).toEqual([1, 2]);
      // Below 2^53 every dimension is exact as a number, and no exactShape is given.
      expect('exactShape' in w).toBe(false);
      expect(sd.tensors().map((t) => t.exactShape)).toEqual([undefined, [big, '0']]);
    }
  });

  it('refuses what PyFolds would silently accept', async () => {
    const path = join(dir, 'bad.fold');
    const data = new Uint8Array([1, 2, 3]);
    const bad: [tv.FoldChunkInput[], tv.WriteFoldOptions][] = [
      [
        [
          { name: 'a', data },
          { name: 'a', data },
        ],
        {},
      ],
      [[{ name: 'a', data }], { encryptionKey: aesKey }],
      [[{ name: 'a', data }], { metadata: { chunk_hashes: {} } }],
      [[{ name: 'a', ctype: 'TOOLONG', data }], {}],
      [[{ name: 'a', json: { d: new Date(0) } }], {}],
    ];
    for (const [chunks, opts] of bad) {
      await expect(tv.writeFold(path, chunks, opts)).rejects.toMatchObject({ code: 'TV_INVALID_ARGUMENT' });
    }
    await expect(tv.writeFold(path, [{ name: 'a', data }], { protection: 'medium' })).rejects.toMatchObject({
      code: 'TV_ECC_UNKNOWN_PROTECTION',
    });
    expect(readdirSync(dir).filter((n) => n.startsWith('bad') || n.includes('.bad.'))).toEqual([]);
  });

  it('refuses names and state dicts its own reader would refuse (they were written, then unreadable)', async () => {
    const path = join(dir, 'names.fold');
    const f32 = (n: number) => ({ dtype: 'F32' as const, shape: [n], data: new Float32Array(n) });
    const bad: unknown[] = [
      [{ name: 'x'.repeat(5000), data: new Uint8Array(1) }],
      [{ name: 'a\uD800', data: new Uint8Array(1) }],
      [{ name: 'torch_state', stateDict: { __metadata__: f32(1) } }],
      [{ name: 'torch_state', stateDict: { 'b\uDC00': f32(1) } }],
      [{ name: 'torch_state', stateDict: { w: { dtype: 'F32', shape: [1] } } }],
      [{ name: 'torch_state', stateDict: { w: { dtype: 'F32', shape: [-1], data: new Float32Array(1) } } }],
      [{ name: 'torch_state', stateDict: { w: null } }],
      [{ name: 'torch_state', stateDict: null }],
    ];
    for (const chunks of bad) {
      await expect(tv.writeFold(path, chunks as tv.FoldChunkInput[])).rejects.toMatchObject({
        code: 'TV_INVALID_ARGUMENT',
      });
    }
    // A tensor named __proto__ is a tensor like any other, and a 4,096-byte name is accepted.
    const sd = JSON.parse('{"__proto__": 0}') as Record<string, unknown>;
    Object.defineProperty(sd, '__proto__', { value: f32(2), enumerable: true });
    await tv.writeFold(path, [
      { name: 'torch_state', stateDict: sd as Record<string, tv.FoldTensorInput> },
      { name: 'n'.repeat(4096), data: new Uint8Array([7]) },
    ]);
    const f = await tv.openFold(path);
    const state = await f.stateDict();
    expect(state.names).toEqual(['__proto__']);
    expect(state.tensor('__proto__').shape).toEqual([2]);
    expect(Array.from(await f.bytes('n'.repeat(4096)))).toEqual([7]);
    f.close();
  });
});

describe('FoldFile.close()', () => {
  it('while a chunk read is in flight: the read completes, the handle is released after it, later calls are TV_CLOSED', async () => {
    for (const name of ['sample.fold', 'plain.fold']) {
      const f = await tv.openFold(join(FIX, name));
      const pending = f.bytes('torch_state');
      expect(() => f.close()).not.toThrow();
      expect((await pending).length).toBe(expected.files[name]?.chunks.torch_state?.payload_len);
      await expect(f.bytes('llm_manifest')).rejects.toMatchObject({ code: 'TV_CLOSED' });
      f.close();
    }
  });

  it('the native handle itself: close() during readChunk() returns (no untyped InvalidArg), the read completes', async () => {
    // Regression: NativeFold.close took `&mut self`, which napi-rs refuses while a readChunk() task it
    // returned holds the handle ("cannot be borrowed mutably while another borrow is active").
    const n = native();
    const control = new n.JobControl();
    const handle = await n.foldOpen(join(FIX, 'sample.fold'), {}, control);
    const info = JSON.parse(handle.infoJson()) as { chunks: { name: string }[] };
    const i = info.chunks.findIndex((c) => c.name === 'torch_state');
    const read = handle.readChunk(i, new n.JobControl());
    expect(() => handle.close()).not.toThrow();
    expect((await read).length).toBe(expected.files['sample.fold']?.chunks.torch_state?.payload_len);
    expect(() => handle.infoJson()).toThrow(/TV_CLOSED/);
    expect(() => handle.close()).not.toThrow();
  });
});

describe('verifyFold / repairFold', () => {
  const dir = tempDir('tv-fold-repair-');

  it('a keyed file with an rs-repairable flip, checked without the key, is unverifiable, not damaged', async () => {
    const key = expected.keys.hmac_key_utf8;
    const f = await tv.openFold(join(FIX, 'hmac.fold'), { hmacKey: key });
    const first = f.chunks[0] as tv.FoldChunkInfo;
    f.close();
    const raw = readFileSync(join(FIX, 'hmac.fold'));
    xorAt(raw, first.dataOffset + 2, 0x11);
    const path = join(dir, 'hmac-flip.fold');
    writeFileSync(path, raw);
    const blind = await tv.verifyFold(path);
    expect(blind.status).toBe('unverifiable');
    expect(blind.chunks.find((c) => c.name === first.name)?.status).toBe('unverifiable');
    const keyed = await tv.verifyFold(path, { hmacKey: key });
    expect(keyed.status).toBe('repairable');
    expect(keyed.chunks.find((c) => c.name === first.name)?.status).toBe('repaired');
  });

  it('repairFold of an intact file into an output writes the output (it was left absent)', async () => {
    const src = join(FIX, 'sample.fold');
    const out = join(dir, 'intact-out.fold');
    const r = await tv.repairFold(src, { output: out });
    expect([r.before.status, r.rewritten]).toEqual(['intact', []]);
    expect(sha(readFileSync(out))).toBe(sha(readFileSync(src)));
    expect(readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('reports intact fixtures and repairs damage within the parity budget atomically', async () => {
    const ok = await tv.verifyFold(join(FIX, 'sample.fold'));
    expect(ok.status).toBe('intact');
    expect(ok.chunks.every((c) => c.status === 'intact')).toBe(true);

    const path = join(dir, 'sample.fold');
    copyFileSync(join(FIX, 'sample.fold'), path);
    const raw = readFileSync(path);
    const ts = (await tv.openFold(path)).info('torch_state');
    for (let k = 0; k < 12; k++) xorAt(raw, ts.dataOffset + k * 5, 0xff); // 12 errors in one rs(32) block
    writeFileSync(path, raw);
    const fold = await tv.openFold(path);
    const read = await fold.chunk('torch_state');
    expect(read.status).toBe('repaired');
    expect(read.correctedBytes).toBe(12);
    expect(sha(read.bytes)).toBe(expected.files['sample.fold']?.chunks.torch_state?.payload_sha256);
    const report = await tv.verifyFold(path);
    expect(report.status).toBe('repairable');
    expect(report.chunks[0]).toMatchObject({ name: 'torch_state', status: 'repaired', correctedBytes: 12 });
    const fixed = await tv.repairFold(path);
    expect(fixed.rewritten).toEqual(['torch_state']);
    expect(fixed.after.status).toBe('intact');
    expect(sha(readFileSync(path))).toBe(sha(readFileSync(join(FIX, 'sample.fold'))));
  });

  it('degraded mode names damaged chunks and keeps reading the rest', async () => {
    const path = join(dir, 'plain.fold');
    copyFileSync(join(FIX, 'plain.fold'), path);
    const raw = readFileSync(path);
    const m = (await tv.openFold(path)).info('metrics');
    xorAt(raw, m.dataOffset + 10, 1);
    writeFileSync(path, raw);
    const report = await tv.verifyFold(path);
    expect(report.status).toBe('damaged');
    const bad = report.chunks.find((c) => c.name === 'metrics');
    expect(bad?.status).toBe('damaged');
    expect(bad?.error).toMatchObject({
      code: 'TV_FOLD_CORRUPT',
      context: { chunk: 'metrics', check: 'crc32c' },
    });
    expect(report.chunks.filter((c) => c.status === 'intact').length).toBe(4);
    const fold = await tv.openFold(path);
    await expect(fold.chunk('metrics')).rejects.toMatchObject({
      code: 'TV_FOLD_CORRUPT',
      context: { chunk: 'metrics' },
    });
    expect((await fold.chunk('telemetry')).status).toBe('intact');
  });
});

describe('tensorvault fold (CLI)', () => {
  const dir = tempDir('tv-fold-cli-');
  const cli = join(__dirname, '..', 'dist', 'cli', 'main.js');
  const run = (...args: string[]) =>
    spawnSync(process.execPath, [cli, 'fold', ...args], { encoding: 'utf8' });

  it('inspect, verify, repair and extract with the verify/repair exit codes', () => {
    const ins = run('inspect', join(FIX, 'sample.mind'), '--json');
    expect(ins.status).toBe(0);
    expect(JSON.parse(ins.stdout)).toMatchObject({ isMind: true, version: '1.2.0' });
    expect(run('verify', join(FIX, 'sample.fold')).status).toBe(0);
    // hmac.fold without its key: not verifiable → 2; with the key → 0.
    expect(run('verify', join(FIX, 'hmac.fold')).status).toBe(2);
    expect(run('verify', join(FIX, 'hmac.fold'), '--hmac-key', expected.keys.hmac_key_utf8).status).toBe(0);
    const path = join(dir, 's.fold');
    const raw = readFileSync(join(FIX, 'sample.fold'));
    xorAt(raw, 28 + 32 + 3, 0x55);
    writeFileSync(path, raw);
    const v = run('verify', path, '--json');
    expect(v.status).toBe(1);
    expect(JSON.parse(v.stdout).chunks[0]).toMatchObject({ name: 'torch_state', status: 'repaired' });
    expect(run('repair', path).status).toBe(0);
    expect(sha(readFileSync(path))).toBe(sha(readFileSync(join(FIX, 'sample.fold'))));
    const out = join(dir, 'manifest.json');
    expect(run('extract', path, '--chunk', 'llm_manifest', '--out', out).status).toBe(0);
    expect(sha(readFileSync(out))).toBe(expected.files['sample.fold']?.chunks.llm_manifest?.payload_sha256);
    // Beyond parity: a plain (no ECC) chunk damaged → 2; a bad command line → 3.
    const plain = join(dir, 'p.fold');
    const p = readFileSync(join(FIX, 'plain.fold'));
    xorAt(p, 100, 1);
    writeFileSync(plain, p);
    expect(run('verify', plain).status).toBe(2);
    expect(run('repair', plain).status).toBe(2);
    expect(run('verify').status).toBe(3);
    expect(run('verify', join(FIX, 'README.md')).status).toBe(5); // not a container: invalid input
    // A file that verifies but breaks the policy: refused, exit 2.
    const strict = run('verify', join(FIX, 'edge.fold'), '--policy', 'strict', '--json');
    expect(strict.status).toBe(2);
    expect(JSON.parse(strict.stdout).status).toBe('refused');
  });
});

describe('tensorvault fold errors (CLI)', () => {
  const cli = join(__dirname, '..', 'dist', 'cli', 'main.js');
  const run = (...args: string[]) =>
    spawnSync(process.execPath, [cli, 'fold', ...args], { encoding: 'utf8' });
  const dir = tempDir('tv-fold-err-');

  it('errors follow --json and the shared exit-code table, as the usage text says; a missing key file is exit 6', () => {
    const junk = join(dir, 'junk.fold');
    writeFileSync(junk, Buffer.alloc(3000, 7));
    const cases: [string[], number, string][] = [
      [['verify', junk], 5, 'TV_FOLD_INVALID'],
      [['inspect', junk], 5, 'TV_FOLD_INVALID'],
      [['extract', join(FIX, 'encrypted.fold'), '--chunk', 'torch_state'], 3, 'TV_FOLD_KEY_REQUIRED'],
      [['verify', join(FIX, 'sample.fold'), '--trust-key', join(dir, 'nope.pem')], 6, 'TV_NOT_FOUND'],
      [
        ['verify', join(FIX, 'sample.fold'), '--decryption-key-file', join(dir, 'nope.key')],
        6,
        'TV_NOT_FOUND',
      ],
    ];
    for (const [args, exit, code] of cases) {
      const j = run(...args, '--json');
      expect([j.status, j.stdout], args.join(' ')).toEqual([exit, '']);
      expect(JSON.parse(j.stderr).error.code, args.join(' ')).toBe(code);
      const t = run(...args);
      expect(t.status).toBe(exit);
      expect(t.stderr, args.join(' ')).toMatch(new RegExp(`^tensorvault: .*\\[${code}\\]\\n$`));
    }
    // The usage text states these codes.
    const usage = run('--help').stdout.replace(/\s+/g, ' ');
    expect(usage).toMatch(/3 bad command line \(also: an encrypted chunk and no key given\)/);
    expect(usage).toMatch(/5 invalid input \(not a valid container/);
    expect(usage).toMatch(/6 I\/O error \(a missing file, a key file included\)/);
  });
});

describe('openFold cancellation and progress', () => {
  it('a full verification reports progress and an aborted signal rejects with AbortError', async () => {
    const seen: number[] = [];
    const f = await tv.openFold(join(FIX, 'plain.fold'), {
      verify: 'full',
      onProgress: (p) => seen.push(p.bytesDone),
    });
    expect(f.chunks.length).toBe(5);
    expect(seen.at(-1)).toBe(f.chunks.reduce((a, c) => a + c.storedLength, 0));
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    await expect(
      tv.openFold(join(FIX, 'plain.fold'), { verify: 'full', signal: ac.signal }),
    ).rejects.toMatchObject({
      name: 'AbortError',
      code: 'TV_ABORTED',
    });
  });
});

// Regression (QA probe qa21-upgrade): files written by tensorvault before 15f42fd at level high carry
// security_features claiming a trust block and encryption they lack; under policy strict they were
// refused with messages that read like tampering, and nothing said why or how to rewrite them.
// old-tensorvault-high.mind: writeFold of build dc54eac, level high, protection med, zstd, no keys.
describe('.fold files of tensorvault before 15f42fd (over-claiming security_features)', () => {
  const dir = tempDir('tv-fold-old-');
  const old = join(FIX, 'old-tensorvault-high.mind');
  const root = join(__dirname, '..');

  it('strict refuses the claim and the message says an older writer over-claims and how to rewrite', async () => {
    // Compatible: the file verifies.
    const f = await tv.openFold(old, { verify: 'full' });
    expect((f.metadata.security_features as Record<string, unknown>).trust_block).toBe(true);
    expect(f.checks.trustBlock.status).toBe('absent');
    f.close();
    const err = (await tv
      .openFold(old, { policy: 'strict' })
      .catch((e: unknown) => e)) as tv.TensorVaultError;
    expect(err).toMatchObject({ code: 'TV_FOLD_POLICY', context: { rule: 'strict' } });
    expect(err.message).toMatch(/security_features claims a trust block the file lacks/);
    expect(err.message).toMatch(/before commit 15f42fd/);
    expect(err.message).toMatch(
      /rewrite it with a current writeFold \(docs\/formats\/fold\.md, "Files that over-claim"\)/,
    );
  });

  it('the rewrite sample of docs/formats/fold.md, run verbatim, gives a file that opens under strict', async () => {
    const doc = readFileSync(join(root, 'docs', 'formats', 'fold.md'), 'utf8');
    const from = doc.indexOf('\n## Files that over-claim');
    expect(from).toBeGreaterThanOrEqual(0);
    const m = /```js\n([\s\S]*?)```/.exec(doc.slice(from));
    expect(m).not.toBeNull();
    const app = join(dir, 'app');
    mkdirSync(join(app, 'node_modules'), { recursive: true });
    symlinkSync(root, join(app, 'node_modules', 'tensorvault'), 'dir');
    writeFileSync(join(app, 'rewrite-fold.mjs'), (m as RegExpExecArray)[1] as string);
    const copy = join(dir, 'model.mind');
    copyFileSync(old, copy);
    // NEW is OLD itself, as the doc allows.
    const r = spawnSync(process.execPath, ['rewrite-fold.mjs', copy, copy], { cwd: app, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const a = await tv.openFold(old, { verify: 'full' });
    const b = await tv.openFold(copy, { verify: 'full', policy: 'strict' });
    expect(b.metadata.security_level).toBe('high');
    const claims = b.metadata.security_features as Record<string, unknown>;
    expect([claims.trust_block, claims.encryption, claims.merkle, claims.ecc]).toEqual([
      false,
      false,
      true,
      true,
    ]);
    expect(b.chunks.map((c) => [c.name, c.ctype, c.ecc, c.flags])).toEqual(
      a.chunks.map((c) => [c.name, c.ctype, c.ecc, c.flags]),
    );
    for (const c of a.chunks) {
      const x = Buffer.from((await a.chunk(c.name)).bytes);
      expect(Buffer.from((await b.chunk(c.name)).bytes).equals(x), c.name).toBe(true);
    }
    a.close();
    b.close();
  });
});
