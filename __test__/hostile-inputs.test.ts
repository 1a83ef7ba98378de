// Property tests (fast-check, fixed seeds) over the files the TypeScript layer parses from disk or a
// store: checkpoint sidecars of the three layouts, event log segments, backup manifests, pushed
// checkpoints' manifests, shard indexes and ring logs. Each run takes a valid file, mutates it (the
// JSON's values replaced by hostile ones, keys dropped, bytes flipped, the text cut), and calls the
// public API on it. Every outcome must be a result or a `TensorVaultError` with a stable code: never a
// `TypeError`, a `RangeError` or a hang. Where the API hands out data, the data must be the original
// (a mutation the integrity checks do not catch must not change what is returned). The Rust parsers of
// untrusted bytes have libFuzzer targets (`scripts/fuzz.sh`); these are the JavaScript side's.
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readNpz } from '../dist/fold/npz.js';
import * as tv from '../dist/index.js';
import { npy, zip } from './helpers/npz';
import { tempDir } from './helpers/tmp';

const root = tempDir('tv-hostile-');
let n = 0;
const fresh = (): string => {
  const d = join(root, `d${++n}`);
  mkdirSync(d, { recursive: true });
  return d;
};

/** Runs per property: enough to reach every field several times, small enough for CI (`TV_HOSTILE_RUNS` for a longer search). */
const RUNS = Number(process.env.TV_HOSTILE_RUNS ?? 120);

/** A value from JSON, and the hostile values mutations put in its place. */
type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
const hostileValue: fc.Arbitrary<Json> = fc.oneof(
  fc.constantFrom<Json>(
    null,
    true,
    false,
    0,
    -1,
    1.5,
    -0.5,
    2 ** 53 + 2,
    1e308,
    -1e308,
    '',
    'x',
    '../../../etc/passwd',
    '/abs/path',
    'sha256:',
    'hmac-sha256:zz',
    '0'.repeat(64),
    'f'.repeat(65),
    '\u0000',
    [],
    {},
    [null],
    { '': null },
  ),
  fc.integer({ min: -3, max: 1 << 20 }),
  fc.string({ maxLength: 12 }),
  fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<Json>,
);

/** Every path (keys and indexes) in `v`, the root excluded. */
function paths(v: Json, at: (string | number)[] = [], out: (string | number)[][] = []) {
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      out.push([...at, i]);
      paths(v[i] as Json, [...at, i], out);
    }
  } else if (v !== null && typeof v === 'object') {
    for (const k of Object.keys(v)) {
      out.push([...at, k]);
      paths(v[k] as Json, [...at, k], out);
    }
  }
  return out;
}

/** One mutation of a JSON document. */
type Mutation =
  | { kind: 'replace'; pick: number; value: Json }
  | { kind: 'delete'; pick: number }
  | { kind: 'add'; pick: number; key: string; value: Json };
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('replace' as const), pick: fc.nat(), value: hostileValue }),
  fc.record({ kind: fc.constant('delete' as const), pick: fc.nat() }),
  fc.record({
    kind: fc.constant('add' as const),
    pick: fc.nat(),
    key: fc.constantFrom('__proto__', 'constructor', 'extra', 'tensorvault', 'hash', 'x'),
    value: hostileValue,
  }),
);

/** `doc` with `muts` applied (a deep copy; `__proto__` is set as an own key, as JSON.parse does). */
function mutate(doc: Json, muts: Mutation[]): Json {
  let d = JSON.parse(JSON.stringify(doc)) as Json;
  for (const m of muts) {
    const all = paths(d);
    if (all.length === 0) return d;
    const p = all[m.pick % all.length] as (string | number)[];
    if (m.kind === 'replace' && p.length === 0) {
      d = m.value;
      continue;
    }
    let parent: Json = d;
    for (const k of p.slice(0, -1)) parent = (parent as Record<string, Json>)[k as string] as Json;
    const last = p[p.length - 1] as string | number;
    if (parent === null || typeof parent !== 'object') continue;
    if (m.kind === 'replace') (parent as Record<string, Json>)[last as string] = m.value;
    else if (m.kind === 'delete') {
      if (Array.isArray(parent)) parent.splice(last as number, 1);
      else delete (parent as Record<string, Json>)[last as string];
    } else {
      const target = (parent as Record<string, Json>)[last as string];
      if (target !== null && typeof target === 'object' && !Array.isArray(target))
        Object.defineProperty(target, m.key, {
          value: m.value,
          enumerable: true,
          writable: true,
          configurable: true,
        });
    }
  }
  return d;
}

/** A raw mutation of a file's bytes: flips, a cut, or bytes inserted. */
type RawMutation =
  | { kind: 'flip'; at: number; value: number }
  | { kind: 'cut'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array };
const rawMutation: fc.Arbitrary<RawMutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.nat(),
    bytes: fc.constantFrom(
      Buffer.from('"'),
      Buffer.from('\n'),
      Buffer.from('{}'),
      Buffer.from(','),
      Buffer.from([0xc3]),
      Buffer.from('\\u0000'),
    ),
  }),
);

function applyRaw(buf: Buffer, muts: RawMutation[]): Buffer {
  let b = Buffer.from(buf);
  for (const m of muts) {
    if (b.length === 0) break;
    const at = m.at % b.length;
    if (m.kind === 'flip') b[at] = m.value;
    else if (m.kind === 'cut') b = b.subarray(0, at);
    else b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
  }
  return b;
}

/** Either mutation of a JSON file's text. */
const jsonFileMutation = fc.oneof(
  fc.record({ json: fc.array(mutation, { minLength: 1, maxLength: 3 }) }),
  fc.record({ raw: fc.array(rawMutation, { minLength: 1, maxLength: 3 }) }),
);
type JsonFileMutation = { json: Mutation[] } | { raw: RawMutation[] };

function mutateText(text: string, m: JsonFileMutation, indent = 0): Buffer {
  if ('raw' in m) return applyRaw(Buffer.from(text), m.raw);
  return Buffer.from(JSON.stringify(mutate(JSON.parse(text) as Json, m.json), null, indent));
}

/** `err` is a TensorVaultError with a stable code (the test fails with the error itself otherwise). */
function typed(err: unknown): void {
  if (!(err instanceof tv.TensorVaultError)) throw err;
  expect(err.code).toMatch(/^TV_[A-Z0-9_]+$/);
}

/** Run `f`; a thrown error must be typed (see {@link typed}). Returns whether it succeeded. */
async function outcome<T>(f: () => Promise<T> | T): Promise<{ ok: true; value: T } | { ok: false }> {
  try {
    return { ok: true, value: await f() };
  } catch (err) {
    typed(err);
    return { ok: false };
  }
}

const params = (seed: number) => ({ numRuns: RUNS, seed, endOnFailure: true });

describe('checkpoint sidecars with hostile contents', () => {
  const tensors = () => ({
    w: new Float32Array([1, 2, 3, 4]),
    b: { dtype: 'F32' as const, shape: [2], data: new Float32Array([0.5, -0.5]) },
    big: new Uint8Array(300_000).map((_, i) => (i * 7) & 0xff),
  });
  const expected = new Map(
    Object.entries(tensors()).map(([k, v]) => {
      const a = 'data' in v ? v.data : v;
      return [k, Buffer.from(a.buffer, a.byteOffset, a.byteLength)];
    }),
  );

  for (const layout of ['tensorvault', 'pyfolds', 'pyfolds-ecc'] as const) {
    it(`${layout}: a mutated sidecar loads the original bytes or fails with a code`, async () => {
      const pristine = fresh();
      const saved = await tv.saveCheckpoint(join(pristine, 'model.safetensors'), tensors(), {
        layout,
        ecc: layout === 'pyfolds' ? 'off' : 'low',
      });
      const sidecars = saved.files.filter((f) => f.endsWith('.json'));
      expect(sidecars.length).toBeGreaterThan(0);
      let loaded = 0;
      await fc.assert(
        fc.asyncProperty(fc.nat(), jsonFileMutation, async (which, m) => {
          const d = fresh();
          cpSync(pristine, d, { recursive: true });
          const target = join(d, (sidecars[which % sidecars.length] as string).split('/').pop() as string);
          writeFileSync(target, mutateText(readFileSync(target, 'utf8'), m as JsonFileMutation, 2));
          const weights = join(d, 'model.safetensors');
          for (const verify of ['lazy', 'full'] as const) {
            const r = await outcome(() => tv.loadCheckpoint(weights, { verify }));
            if (!r.ok) continue;
            const ck = r.value;
            try {
              for (const [name, bytes] of expected) {
                const t = await outcome(() => ck.tensor(name));
                if (!t.ok) continue;
                expect(Buffer.from(t.value.bytes).equals(bytes)).toBe(true);
                loaded++;
              }
            } finally {
              ck.close();
            }
          }
          await outcome(() => tv.verifyCheckpoint(weights));
          rmSync(d, { recursive: true, force: true });
        }),
        params(0x5eed + layout.length),
      );
      // Some mutations (of fields the checks do not cover, or that break nothing) still load.
      expect(loaded).toBeGreaterThan(0);
    });
  }
});

/** The fields of an entry that the chain's hash covers in `format`. */
const covered =
  (format: 'v2' | 'legacy') =>
  (e: object): object => {
    if (format === 'v2') return e;
    const r = e as Record<string, unknown>;
    return Object.fromEntries(
      [
        'timestamp',
        'actor',
        'evento',
        'entidade',
        'entidade_id',
        'payload_hash',
        'previous_hash',
        'current_hash',
      ].map((k) => [k, r[k]]),
    );
  };

describe('event log segments with hostile contents', () => {
  for (const format of ['v2', 'legacy'] as const) {
    it(`${format}: a mutated segment opens and verifies, or fails with a code`, async () => {
      const pristine = fresh();
      const log = await tv.EventLog.open(pristine, { format, fsync: 'never', segmentSize: 8 });
      for (let i = 0; i < 20; i++) {
        await log.append('a', 'e', 'x', String(i), { i, s: 'p'.repeat(i) });
      }
      const want = await log.getAll();
      await log.close();
      const segs = readdirSync(join(pristine, 'event-log')).filter((f) => f.startsWith('segment-'));
      expect(segs.length).toBeGreaterThan(1);
      await fc.assert(
        fc.asyncProperty(fc.nat(), fc.nat(), jsonFileMutation, async (which, line, m) => {
          const d = fresh();
          cpSync(pristine, d, { recursive: true });
          const target = join(d, 'event-log', segs[which % segs.length] as string);
          const text = readFileSync(target, 'utf8');
          let out: Buffer;
          if (format === 'v2' && 'json' in m) {
            // One line of the JSON Lines segment (header or entry), mutated as JSON.
            const lines = text.split('\n');
            const i = line % Math.max(1, lines.length - 1);
            lines[i] = mutateText(lines[i] as string, m as JsonFileMutation).toString();
            out = Buffer.from(lines.join('\n'));
          } else out = mutateText(text, m as JsonFileMutation, 2);
          writeFileSync(target, out);
          const opened = await outcome(() => tv.EventLog.open(d, { format, fsync: 'never' }));
          if (opened.ok) {
            try {
              await outcome(() => opened.value.verifyChain());
              const full = await outcome(() => opened.value.verifyChainFull());
              // A log that verifies in full holds the events written, no other: every field the
              // format's hash covers (all of them in v2; in the legacy format, per the Libervia
              // contract, not the id, and no field beside the eight it hashes).
              if (full.ok && full.value.valid) {
                const got = await outcome(() => opened.value.getAll());
                if (got.ok) expect(got.value.map(covered(format))).toEqual(want.map(covered(format)));
              }
            } finally {
              await outcome(() => opened.value.close());
            }
          }
          rmSync(d, { recursive: true, force: true });
        }),
        params(0x10c + format.length),
      );
    });
  }
});

describe('backup manifests with hostile contents', () => {
  it('a mutated manifest verifies or fails with a code, and a failed restore writes nothing', async () => {
    const src = fresh();
    const log = await tv.EventLog.open(src, { fsync: 'never', segmentSize: 8 });
    for (let i = 0; i < 20; i++) await log.append('a', 'e', 'x', String(i), { i });
    await log.close();
    const original = new Map(
      readdirSync(join(src, 'event-log')).map((f) => [f, readFileSync(join(src, 'event-log', f))]),
    );
    const made = await tv.createBackup(src, fresh());
    const manifest = tv.backupManifestPath(made.archivePath);
    const pristine = readFileSync(manifest, 'utf8');
    let restored = 0;
    await fc.assert(
      fc.asyncProperty(jsonFileMutation, async (m) => {
        writeFileSync(manifest, mutateText(pristine, m as JsonFileMutation, 2));
        await outcome(() => tv.verifyBackup(made.archivePath, { readData: true }));
        const dest = join(fresh(), 'restore');
        const r = await outcome(() => tv.restoreBackup(made.archivePath, dest));
        if (r.ok) {
          // A restore that went through wrote the original segments.
          for (const [f, bytes] of original) {
            if (f.startsWith('segment-'))
              expect(readFileSync(join(dest, 'event-log', f)).equals(bytes)).toBe(true);
          }
          restored++;
        } else {
          let left: string[] = [];
          try {
            left = readdirSync(dest, { recursive: true }).map(String);
          } catch {
            left = [];
          }
          expect(left).toEqual([]);
        }
      }),
      params(0xbac),
    );
    writeFileSync(manifest, pristine);
    expect(restored).toBeGreaterThan(0);
  });
});

describe('pushed checkpoints with a hostile manifest in the store', () => {
  it('verifyRemote, pull and a lazy remote load: the original bytes or a code', async () => {
    const local = fresh();
    const weights = join(local, 'model.safetensors');
    const data = new Uint8Array(200_000).map((_, i) => (i * 13) & 0xff);
    await tv.saveCheckpoint(weights, { data }, { ecc: 'low' });
    const storeDir = fresh();
    const url = `file://${storeDir}`;
    const pushed = await tv.push(weights, url, { stateDir: join(fresh(), 'state') });
    const manifestFile = readdirSync(storeDir, { recursive: true })
      .map(String)
      .find((f) => f.endsWith(tv.MANIFEST_SUFFIX));
    expect(manifestFile).toBeDefined();
    const manifestPath = join(storeDir, manifestFile as string);
    const pristine = readFileSync(manifestPath, 'utf8');
    const want = Buffer.from(data);
    await fc.assert(
      fc.asyncProperty(jsonFileMutation, async (m) => {
        writeFileSync(manifestPath, mutateText(pristine, m as JsonFileMutation, 2));
        await outcome(() => tv.verifyRemote(pushed.url));
        const p = await outcome(() => tv.pull(pushed.url, fresh()));
        if (p.ok) {
          const got = await tv.loadCheckpoint(p.value.path, { verify: 'full' });
          try {
            expect(Buffer.from((await got.tensor('data')).bytes).equals(want)).toBe(true);
          } finally {
            got.close();
          }
        }
        const lazy = await outcome(() =>
          tv.loadCheckpoint(pushed.url as `file://${string}`, { cacheDir: fresh() }),
        );
        if (lazy.ok) {
          try {
            const t = await outcome(() => lazy.value.tensor('data'));
            if (t.ok) expect(Buffer.from(t.value.bytes).equals(want)).toBe(true);
          } finally {
            await outcome(() => lazy.value.close());
          }
        }
      }),
      { ...params(0x5e3), numRuns: Math.ceil(RUNS / 2) },
    );
    writeFileSync(manifestPath, pristine);
  });
});

describe('shard indexes and ring logs with hostile contents', () => {
  it('parseShardIndex: an index or a code', async () => {
    const index = JSON.stringify({
      metadata: { total_size: 24 },
      weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' },
    });
    await fc.assert(
      fc.asyncProperty(jsonFileMutation, async (m) => {
        await outcome(() => tv.parseShardIndex(mutateText(index, m as JsonFileMutation).toString()));
      }),
      params(0x5a4d),
    );
  });

  it('readRingLog: the records or a code', async () => {
    const d = fresh();
    const path = join(d, 'ring.log');
    const log = new tv.RingFileLog(path, { capacityLines: 8, flushIntervalMs: 60_000 });
    for (let i = 0; i < 12; i++) log.info(`m${i}`, { i });
    log.close();
    const pristine = readFileSync(path, 'utf8');
    await fc.assert(
      fc.asyncProperty(fc.array(rawMutation, { minLength: 1, maxLength: 4 }), async (m) => {
        writeFileSync(path, applyRaw(Buffer.from(pristine), m));
        await outcome(() => tv.readRingLog(path));
      }),
      params(0x4109),
    );
  });
});

describe('.npz chunks (PyFolds NPZ0) with hostile contents', () => {
  const f32 = new Uint8Array(new Float32Array([1, 2, 3, 4, 5, 6]).buffer);
  const i64 = new Uint8Array(new BigInt64Array([1n, -2n, 3n, -4n]).buffer);
  const archives = [1, 2, 3].map((major) =>
    zip([
      ['w.npy', npy('<f4', [2, 3], f32, major)],
      ['idx.npy', npy('<i8', [4], i64, major), true],
      ['flag.npy', npy('|b1', [], new Uint8Array([1]), major)],
    ]),
  );
  const original = readNpz('c', archives[0] as Uint8Array, 1 << 20);

  // Regressions (2026-12-04): a format 2/3 member shorter than its 12-byte preamble threw a
  // RangeError, and two members of one name a TypeError ("Cannot redefine property").
  it('a short member and a repeated name are refused with TV_FOLD_INVALID', () => {
    for (const z of [
      zip([['a.npy', Buffer.from('\x93NUMPY\x02\x00\x00\x00\x00', 'latin1')]]),
      zip([['a.npy', Buffer.from('\x93NUMPY\x07\x00\x10\x00\x00\x00\x00\x00', 'latin1')]]),
      zip([
        ['a.npy', npy('<f4', [1], new Uint8Array(4))],
        ['a.npy', npy('<f4', [1], new Uint8Array(4))],
      ]),
    ]) {
      expect(() => readNpz('c', z, 1 << 20)).toThrow(
        expect.objectContaining({
          code: 'TV_FOLD_INVALID',
          context: expect.objectContaining({ reason: 'npz_invalid' }),
        }),
      );
    }
    expect(Object.keys(original)).toEqual(['w', 'idx', 'flag']);
  });

  /** A little-endian field written anywhere: zip sizes, offsets, counts and the .npy header length. */
  const field = fc.record({
    at: fc.nat(),
    width: fc.constantFrom(1, 2, 4),
    value: fc.oneof(
      fc.constantFrom(0, 1, 0xff, 0xffff, 0xfffe, 0xffffffff, 0x7fffffff, 22, 30, 46),
      fc.nat({ max: 0xffffffff }),
    ),
  });

  it('a mutated archive gives the original arrays or TV_FOLD_INVALID, never a TypeError or RangeError', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: 2 }),
        fc.array(
          fc.oneof(
            rawMutation.map((r) => ({ r })),
            field.map((f) => ({ f })),
          ),
          {
            minLength: 1,
            maxLength: 4,
          },
        ),
        async (which, muts) => {
          let b: Buffer = Buffer.from(archives[which] as Buffer);
          for (const m of muts) {
            if ('r' in m) b = applyRaw(b, [m.r]);
            else if (b.length > 0) {
              const at = m.f.at % b.length;
              const max = m.f.width === 1 ? 0xff : m.f.width === 2 ? 0xffff : 0xffffffff;
              if (at + m.f.width <= b.length) b.writeUIntLE(m.f.value % (max + 1), at, m.f.width);
            }
          }
          const r = await outcome(() => readNpz('c', b, 1 << 20));
          if (!r.ok) return;
          // What is handed out is one of the archive's arrays, whole (each member is CRC-checked).
          for (const a of Object.values(r.value)) {
            const same = Object.values(original).find(
              (o) => o.dtype === a.dtype && Buffer.from(o.bytes).equals(Buffer.from(a.bytes)),
            );
            expect(same).toBeDefined();
            expect(a.shape).toEqual(same?.shape);
            expect(a.data.byteLength).toBe(a.bytes.byteLength);
          }
        },
      ),
      { ...params(0x4e50), numRuns: RUNS * 4 },
    );
  });

  /** Hostile `.npy` headers: what a writer of a consistent (CRC-correct) archive can put there. */
  const header = fc.record({
    descr: fc.constantFrom('<f4', '<i8', '|b1', '|O', '<c16', '>f4', "<f4', 'x': '", ''),
    shape: fc.oneof(
      fc.constantFrom(
        '2, 3',
        '',
        '6,',
        '-1,',
        '2**60, 2**60',
        '9007199254740993,',
        '1e3,',
        'True,',
        '3, 0',
        '0,',
      ),
      fc
        .array(fc.nat({ max: 2 ** 31 }), { maxLength: 4 })
        .map((d) => d.join(', ') + (d.length === 1 ? ',' : '')),
    ),
    fortran: fc.constantFrom('False', 'True', 'false', ''),
    major: fc.constantFrom(1, 2, 3, 0, 4, 255),
  });

  it('archives with hostile but CRC-correct members give a consistent array or TV_FOLD_INVALID', async () => {
    await fc.assert(
      fc.asyncProperty(
        header,
        fc.array(rawMutation, { maxLength: 2 }),
        fc.boolean(),
        fc.boolean(),
        async (h, raw, deflate, twice) => {
          const text = `{'descr': '${h.descr}', 'fortran_order': ${h.fortran}, 'shape': (${h.shape}), }`;
          const pre = h.major === 1 ? 10 : 12;
          const body = Buffer.alloc(pre + text.length + 1 + f32.length);
          body.write('\x93NUMPY', 0, 'latin1');
          body[6] = h.major;
          if (h.major === 1) body.writeUInt16LE(text.length + 1, 8);
          else body.writeUInt32LE(text.length + 1, 8);
          body.write(`${text}\n`, pre, 'latin1');
          Buffer.from(f32).copy(body, pre + text.length + 1);
          const member = applyRaw(body, raw);
          const members: [string, Buffer, boolean][] = [['m.npy', member, deflate]];
          if (twice) members.push(['m.npy', member, !deflate]);
          const r = await outcome(() => readNpz('c', zip(members), 1 << 20));
          if (!r.ok) return;
          expect(Object.keys(r.value)).toEqual(['m']);
          const a = r.value.m as tv.NpzArray;
          const per = (a.data as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT;
          expect(a.bytes.byteLength).toBe(a.shape.reduce((x, d) => x * d, 1) * per);
          expect(a.data.byteLength).toBe(a.bytes.byteLength);
        },
      ),
      { ...params(0x4e51), numRuns: RUNS * 4 },
    );
  });
});
