// Issue 13 item 13: every public entry point checks its arguments. A table of every exported function,
// constructor and method, called with a corpus of bad values in each argument and each option field:
// every rejection must be a TensorVaultError with a documented code (TV_INVALID_ARGUMENT for the
// argument itself), never a plain TypeError/RangeError, and never a TV_INTERNAL.
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { copyFileSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { RingTransport } from '../dist/logging/winston.js';
import { tempDir } from './helpers/tmp';

const root = tempDir('tv-args-');
let n = 0;
const fresh = (name = 'f'): string => join(root, `${name}-${++n}`);
const freshDir = (name = 'd'): string => {
  const d = fresh(name);
  mkdirSync(d);
  return d;
};

/** A buffer whose memory was transferred away (byteLength 0, unusable). */
function detachedBuffer(): ArrayBuffer {
  const ab = new ArrayBuffer(16);
  structuredClone(ab, { transfer: [ab] });
  return ab;
}
function detachedView(): Uint8Array {
  const ab = new ArrayBuffer(16);
  const v = new Uint8Array(ab);
  structuredClone(ab, { transfer: [ab] });
  return v;
}
function deepArray(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

/** The bad values, made fresh for every call (a detached buffer cannot be reused). */
const CORPUS: [string, () => unknown][] = [
  ['null', () => null],
  ['undefined', () => undefined],
  ['Symbol', () => Symbol('bad')],
  ['Object.create(null)', () => Object.create(null)],
  ['Object.create(null) with fields', () => Object.assign(Object.create(null), { a: 1, path: 'x' })],
  ['detached ArrayBuffer', detachedBuffer],
  ['detached Uint8Array', detachedView],
  ["'false'", () => 'false'],
  ["'true'", () => 'true'],
  ['1', () => 1],
  ['0', () => 0],
  ['-1', () => -1],
  ['1.5', () => 1.5],
  ['NaN', () => Number.NaN],
  ['Infinity', () => Number.POSITIVE_INFINITY],
  ['1e308', () => 1e308],
  ['2**64', () => 2 ** 64],
  ['BigInt', () => 12n],
  ["''", () => ''],
  ["'x'", () => 'x'],
  ['NUL string', () => 'a\0b'],
  ['function', () => () => {}],
  ['[]', () => []],
  ['[Symbol]', () => [Symbol('s')]],
  ['{}', () => ({})],
  ['Date', () => new Date(0)],
  ['true', () => true],
  ['nested 5000 deep', () => deepArray(5000)],
];

type Fn = (...args: unknown[]) => unknown;
interface Spec {
  name: string;
  /** A valid argument list (fresh paths each time for writers). */
  args: () => unknown[];
  call: Fn;
  /** Index of the options argument and its fields. */
  options?: { index: number; fields: string[]; booleans?: string[] };
  /** Argument indexes not to replace (the positional is fine as anything). */
  skip?: number[];
}

const JOB = ['signal', 'onProgress', 'progressIntervalMs'];
const READ = [
  ...JOB,
  'manifestPath',
  'key',
  'requireSignature',
  'encryptionKey',
  'logKey',
  'maxExpandedBytes',
];

let st = '';
let protectedFile = '';
let logDir = '';
let archive = '';
let shardIndex = '';
let ringPath = '';
let manifest: tv.BackupManifest;
let file: tv.SafetensorsFile;
let log: tv.EventLog;
let sharded: tv.ShardedSafetensors;
let ring: tv.RingFileLog;
let ckpt: tv.Checkpoint;
let ckptPath = '';

// Bad values include relative names ('x', 'false'): run in a scratch folder so nothing lands in the checkout.
const cwd = process.cwd();
afterAll(() => process.chdir(cwd));

beforeAll(async () => {
  process.chdir(freshDir('cwd'));
  st = fresh('st');
  await tv.saveSafetensors(st, { w: { dtype: 'F32', shape: [2, 2], data: new Float32Array(4) } });
  protectedFile = fresh('p');
  writeFileSync(protectedFile, Buffer.alloc(10_000, 7));
  await tv.protect(protectedFile);
  logDir = fresh('log');
  const l = await tv.EventLog.open(logDir, { fsync: 'never' });
  await l.append('a', 'E', 'S', '1', { x: 1 });
  await l.close();
  const b = await tv.createBackup(logDir, fresh('out'));
  archive = b.archivePath;
  manifest = b.manifest;
  const sh = await tv.saveShardedSafetensors(freshDir('sh'), {
    a: { dtype: 'U8', shape: [4], data: new Uint8Array(4) },
  });
  shardIndex = sh.indexPath;
  file = await tv.openSafetensors(st);
  log = await tv.EventLog.open(fresh('log2'), { fsync: 'never' });
  await log.append('a', 'E', 'S', '1');
  sharded = await tv.openShardedSafetensors(shardIndex);
  ringPath = fresh('ring');
  ring = new tv.RingFileLog(ringPath, { capacityLines: 100 });
  ckptPath = `${fresh('ck')}.safetensors`;
  await tv.saveCheckpoint(ckptPath, { w: new Float32Array(4) }, { ecc: 'off', hmacKey: null, gitHash: 't' });
  ckpt = await tv.loadCheckpoint(ckptPath);
});

const rs = () => new tv.RsCodec(4);
const hmacKey = (): tv.ManifestKey => ({ type: 'hmac-sha256', key: Buffer.alloc(32, 1) });
const edKey = generateKeyPairSync('ed25519').privateKey;
const er = () => new tv.ErasureCodec(2, 1);
const tensors = () => ({ w: { dtype: 'U8', shape: [2], data: new Uint8Array(2) } });
const SPECS: Spec[] = [
  { name: 'backupManifestPath', args: () => ['a.tar.gz'], call: (p) => tv.backupManifestPath(p as string) },
  {
    name: 'createBackup',
    args: () => [logDir, fresh('out'), {}],
    call: (...a) => tv.createBackup(...(a as Parameters<typeof tv.createBackup>)),
    options: {
      index: 2,
      fields: [...JOB, 'sign', 'encryptionKey', 'encryptionKeyId', 'compressionLevel', 'threads', 'onStep'],
    },
  },
  {
    name: 'verifyBackup',
    args: () => [archive, {}],
    call: (...a) => tv.verifyBackup(...(a as Parameters<typeof tv.verifyBackup>)),
    options: { index: 1, fields: [...READ, 'readData'], booleans: ['readData', 'requireSignature'] },
  },
  {
    name: 'restoreBackup',
    args: () => [archive, fresh('dest'), {}],
    call: (...a) => tv.restoreBackup(...(a as Parameters<typeof tv.restoreBackup>)),
    options: { index: 2, fields: [...READ, 'overwrite'], booleans: ['overwrite', 'requireSignature'] },
  },
  {
    name: 'signManifest',
    args: () => [manifest, hmacKey()],
    call: (...a) => tv.signManifest(...(a as Parameters<typeof tv.signManifest>)),
    options: { index: 1, fields: ['type', 'key', 'keyId'] },
  },
  {
    name: 'signManifest (ed25519)',
    args: () => [manifest, { type: 'ed25519', key: edKey }],
    call: (...a) => tv.signManifest(...(a as Parameters<typeof tv.signManifest>)),
    options: { index: 1, fields: ['key', 'keyId'] },
  },
  {
    name: 'verifyManifestSignature',
    args: () => [tv.signManifest(manifest, hmacKey()), hmacKey()],
    call: (...a) => tv.verifyManifestSignature(...(a as Parameters<typeof tv.verifyManifestSignature>)),
    options: { index: 1, fields: ['type', 'key', 'keyId'] },
  },
  {
    name: 'gzipMembers',
    args: () => [new Uint8Array(10), {}],
    call: (...a) => tv.gzipMembers(...(a as Parameters<typeof tv.gzipMembers>)),
    options: { index: 1, fields: ['level', 'memberSize', 'threads', ...JOB] },
  },
  { name: 'new RsCodec', args: () => [4], call: (p) => new tv.RsCodec(p as number) },
  { name: 'RsCodec.blockCount', args: () => [10], call: (x) => rs().blockCount(x as number) },
  { name: 'RsCodec.eccLength', args: () => [10], call: (x) => rs().eccLength(x as number) },
  {
    name: 'RsCodec.encode',
    args: () => [new Uint8Array(10), {}],
    call: (d, o) => rs().encode(d as Uint8Array, o as tv.EccOptions),
    options: { index: 1, fields: ['threads', ...JOB] },
  },
  {
    name: 'RsCodec.encodeSync',
    args: () => [new Uint8Array(10)],
    call: (d) => rs().encodeSync(d as Uint8Array),
  },
  {
    name: 'RsCodec.decode',
    args: () => [new Uint8Array(10), rs().encodeSync(new Uint8Array(10)), {}],
    call: (d, p, o) => rs().decode(d as Uint8Array, p as Uint8Array, o as tv.EccDecodeOptions),
    options: { index: 2, fields: ['threads', 'erasures', 'parityErasures', ...JOB] },
  },
  {
    name: 'RsCodec.verify',
    args: () => [new Uint8Array(10), rs().encodeSync(new Uint8Array(10)), {}],
    call: (d, p, o) => rs().verify(d as Uint8Array, p as Uint8Array, o as tv.EccOptions),
    options: { index: 2, fields: ['threads', ...JOB] },
  },
  {
    name: 'RsCodec.protectChunk',
    args: () => [new Uint8Array(10), {}],
    call: (d, o) => rs().protectChunk(d as Uint8Array, o as tv.EccOptions),
    options: { index: 1, fields: ['threads', ...JOB] },
  },
  {
    name: 'RsCodec.recoverChunk',
    args: () => [new Uint8Array(14), {}],
    call: (d, o) => rs().recoverChunk(d as Uint8Array, o as tv.EccDecodeOptions),
    options: { index: 1, fields: ['threads', 'erasures', 'parityErasures', ...JOB] },
  },
  { name: 'eccFromProtection', args: () => ['low'], call: (l) => tv.eccFromProtection(l as string) },
  { name: 'eccFromName', args: () => ['rs(4)'], call: (l) => tv.eccFromName(l as string) },
  { name: 'eccSidecarPath', args: () => ['a.bin'], call: (p) => tv.eccSidecarPath(p as string) },
  {
    name: 'protect',
    args: () => {
      const p = fresh('prot');
      writeFileSync(p, Buffer.alloc(1000, 3));
      return [p, {}];
    },
    call: (p, o) => tv.protect(p as string, o as tv.ProtectOptions),
    options: { index: 1, fields: ['sidecar', 'level', 'k', 'm', 'chunkSize', 'digest', 'threads', ...JOB] },
  },
  {
    name: 'verify',
    args: () => [protectedFile, {}],
    call: (p, o) => tv.verify(p as string, o as tv.SidecarOptions),
    options: { index: 1, fields: ['sidecar', 'threads', ...JOB] },
  },
  {
    name: 'repair',
    args: () => [protectedFile, {}],
    call: (p, o) => tv.repair(p as string, o as tv.SidecarOptions),
    options: { index: 1, fields: ['sidecar', 'threads', ...JOB] },
  },
  {
    name: 'new ErasureCodec',
    args: () => [2, 1],
    call: (k, m) => new tv.ErasureCodec(k as number, m as number),
  },
  {
    name: 'ErasureCodec.encode',
    args: () => [[new Uint8Array(8), new Uint8Array(8)]],
    call: (s) => er().encode(s as Uint8Array[]),
  },
  {
    name: 'ErasureCodec.reconstruct',
    args: () => [[new Uint8Array(8), null, new Uint8Array(8)]],
    call: (s) => er().reconstruct(s as Uint8Array[]),
  },
  { name: 'canonicalJson', args: () => [{ a: 1 }], call: (v) => tv.canonicalJson(v) },
  {
    name: 'EventLog.open',
    args: () => [fresh('elog'), {}],
    call: async (d, o) => (await tv.EventLog.open(d as string, o as tv.EventLogOptions)).close(),
    options: {
      index: 1,
      fields: [
        'segmentSize',
        'snapshotEvery',
        'retentionSegments',
        'format',
        'fsync',
        'readOnly',
        'lockTimeoutMs',
        'hmacKey',
      ],
      booleans: ['readOnly'],
    },
  },
  {
    name: 'EventLog.append',
    args: () => ['actor', 'EV', 'Ent', 'id', { a: 1 }],
    call: (...a) => log.append(...(a as Parameters<tv.EventLog['append']>)),
  },
  {
    name: 'EventLog.appendMany',
    args: () => [[{ actor: 'a', evento: 'E', entidade: 'S', entidadeId: '1', payload: {} }]],
    call: (e) => log.appendMany(e as Parameters<tv.EventLog['appendMany']>[0]),
  },
  { name: 'EventLog.prune', args: () => [5], call: (r) => log.prune(r as number) },
  { name: 'EventLog.getById', args: () => ['x'], call: (x) => log.getById(x as string) },
  { name: 'EventLog.getByEvento', args: () => ['E'], call: (x) => log.getByEvento(x as string) },
  {
    name: 'EventLog.getByEntidade',
    args: () => ['S', '1'],
    call: (a, b) => log.getByEntidade(a as string, b as string),
  },
  {
    name: 'EventLog.exportRange',
    args: () => [{}],
    call: (o) => log.exportRange(o as tv.ExportRangeOptions),
    options: { index: 0, fields: ['fromTs', 'toTs', 'fromSegment', 'toSegment', 'limit'] },
  },
  {
    name: 'EventLog.replay',
    args: () => [{}],
    call: (o) => log.replay(o as tv.ReplayOptions),
    options: { index: 0, fields: ['evento', 'entidade', 'entidadeId', 'actor', 'fromTs', 'toTs', 'limit'] },
  },
  {
    name: 'legacyPayloadHash',
    args: () => [{ a: 1 }],
    call: (p) => tv.legacyPayloadHash(p),
  },
  { name: 'v2PayloadHash', args: () => [{ a: 1 }], call: (p) => tv.v2PayloadHash(p) },
  {
    name: 'legacyEntryHash',
    args: () => [
      {
        seq: 1,
        timestamp: '2024-01-01T00:00:00.000Z',
        actor: 'a',
        evento: 'E',
        entidade: 'S',
        entidade_id: '1',
        payload_hash: 'x',
        previous_hash: null,
      },
    ],
    call: (e) => tv.legacyEntryHash(e as Parameters<typeof tv.legacyEntryHash>[0]),
  },
  {
    name: 'v2EntryHash',
    args: () => [
      {
        id: 'i',
        seq: 1,
        timestamp: '2024-01-01T00:00:00.000Z',
        actor: 'a',
        evento: 'E',
        entidade: 'S',
        entidade_id: '1',
        payload_hash: 'x',
        previous_hash: null,
      },
    ],
    call: (e) => tv.v2EntryHash(e as Parameters<typeof tv.v2EntryHash>[0]),
  },
  { name: 'createSha256', args: () => [], call: () => tv.createSha256() },
  {
    name: 'Sha256.update',
    args: () => ['abc', 'utf8'],
    call: (d, e) => tv.createSha256().update(d as string, e as tv.InputEncoding),
  },
  {
    name: 'Sha256.digest',
    args: () => ['hex'],
    call: (e) => tv.createSha256().digest(e as tv.DigestEncoding),
  },
  {
    name: 'hashFile',
    args: () => [st, {}],
    call: (p, o) => tv.hashFile(p as string, o as tv.HashFileOptions),
    options: {
      index: 1,
      fields: ['tree', 'chunkSize', 'leaves', 'threads', ...JOB],
      booleans: ['tree', 'leaves'],
    },
  },
  { name: 'hmacSha256', args: () => ['k', 'd'], call: (k, d) => tv.hmacSha256(k as string, d as string) },
  { name: 'sha256', args: () => ['abc'], call: (d) => tv.sha256(d as string) },
  { name: 'sha256Many', args: () => [['a', 'b']], call: (d) => tv.sha256Many(d as string[]) },
  { name: 'sha256ManyHex', args: () => [['a', 'b']], call: (d) => tv.sha256ManyHex(d as string[]) },
  { name: 'levelName', args: () => [30], call: (v) => tv.levelName(v) },
  {
    name: 'new RingFileLog',
    args: () => [fresh('ring'), {}],
    call: (p, o) => new tv.RingFileLog(p as string, o as tv.RingFileLogOptions).close(),
    options: {
      index: 1,
      fields: ['capacityLines', 'flushIntervalMs', 'flushLevel', 'fsync', 'compactionSlack', 'onError'],
      booleans: ['fsync'],
    },
  },
  {
    name: 'RingFileLog.log',
    args: () => ['info', 'msg', { a: 1 }],
    call: (l, m, f) => ring.log(l as tv.LevelName, m as string, f as tv.LogFields),
  },
  {
    name: 'RingFileLog.info',
    args: () => ['msg', { a: 1 }],
    call: (m, f) => ring.info(m as string, f as tv.LogFields),
  },
  {
    name: 'RingFileLog.appendLine',
    args: () => ['{"msg":"x"}', 30],
    call: (l, v) => ring.appendLine(l as string, v as number),
  },
  { name: 'readRingLog', args: () => [ringPath], call: (p) => tv.readRingLog(p as string) },
  {
    name: 'ringDestination',
    args: () => [fresh('ringd'), {}],
    call: (p, o) => tv.ringDestination(p as string, o as tv.RingDestinationOptions).log.close(),
    options: { index: 1, fields: ['capacityLines', 'flushIntervalMs', 'fsync'], booleans: ['fsync'] },
  },
  {
    name: 'byteLengthOf',
    args: () => ['F32', [2, 3]],
    call: (d, s) => tv.byteLengthOf(d as tv.Dtype, s as number[]),
  },
  { name: 'isDtype', args: () => ['F32'], call: (d) => tv.isDtype(d) },
  {
    name: 'openSafetensors',
    args: () => [st, {}],
    call: async (p, o) => (await tv.openSafetensors(p as string, o as tv.OpenSafetensorsOptions)).close(),
    options: {
      index: 1,
      fields: ['signal', 'copy', 'maxTensorBytes', 'populate', 'regionBytes'],
      booleans: ['copy', 'populate'],
    },
  },
  {
    name: 'openShardedSafetensors',
    args: () => [shardIndex, {}],
    call: async (p, o) =>
      (await tv.openShardedSafetensors(p as string, o as tv.OpenSafetensorsOptions)).close(),
    options: {
      index: 1,
      fields: ['signal', 'copy', 'maxTensorBytes', 'populate'],
      booleans: ['copy', 'populate'],
    },
  },
  {
    name: 'parseShardIndex',
    args: () => ['{"metadata":{},"weight_map":{"a":"x.safetensors"}}', 'i.json'],
    call: (t, p) => tv.parseShardIndex(t as string, p as string),
  },
  { name: 'SafetensorsFile.has', args: () => ['w'], call: (x) => file.has(x as string) },
  { name: 'SafetensorsFile.info', args: () => ['w'], call: (x) => file.info(x as string) },
  {
    name: 'SafetensorsFile.tensor',
    args: () => ['w', {}],
    call: (x, o) => file.tensor(x as string, o as tv.TensorOptions),
    options: { index: 1, fields: ['populate'], booleans: ['populate'] },
  },
  {
    name: 'SafetensorsFile.readRange',
    args: () => ['w', 0, 4],
    call: (x, o, l) => file.readRange(x as string, o as number, l as number),
  },
  {
    name: 'SafetensorsFile.chunks',
    args: () => ['w', {}],
    call: (x, o) => [...file.chunks(x as string, o as tv.ChunkOptions)],
    options: { index: 1, fields: ['chunkBytes', 'populate'], booleans: ['populate'] },
  },
  {
    name: 'SafetensorsFile.prefetch',
    args: () => [['w'], {}],
    call: (x, o) => file.prefetch(x as string[], o as tv.JobOptions),
    options: { index: 1, fields: JOB },
  },
  {
    name: 'Checkpoint.readRange',
    args: () => ['w', 0, 4, {}],
    call: (x, o, l, opts) =>
      ckpt.readRange(x as string, o as number, l as number, opts as tv.CheckpointReadOptions),
    options: { index: 3, fields: ['signal'] },
  },
  {
    name: 'Checkpoint.chunks',
    args: () => ['w', {}],
    call: async (x, o) => {
      const out: Uint8Array[] = [];
      for await (const piece of ckpt.chunks(x as string, o as tv.CheckpointChunkOptions)) out.push(piece);
      return out;
    },
    options: { index: 1, fields: ['chunkBytes', 'signal'] },
  },
  { name: 'ShardedSafetensors.shardOf', args: () => ['a'], call: (x) => sharded.shardOf(x as string) },
  { name: 'ShardedSafetensors.info', args: () => ['a'], call: (x) => sharded.info(x as string) },
  {
    name: 'ShardedSafetensors.tensor',
    args: () => ['a', {}],
    call: (x, o) => sharded.tensor(x as string, o as tv.TensorOptions),
    options: { index: 1, fields: ['populate'], booleans: ['populate'] },
  },
  {
    name: 'saveSafetensors',
    args: () => [fresh('save'), tensors(), {}],
    call: (p, t, o) => tv.saveSafetensors(p as string, t as tv.TensorsToSave, o as tv.SaveSafetensorsOptions),
    options: { index: 2, fields: ['metadata', ...JOB] },
  },
  {
    name: 'saveSafetensors (tensor fields)',
    args: () => [fresh('save'), { w: { dtype: 'U8', shape: [2], data: new Uint8Array(2) } }],
    call: (p, t) => tv.saveSafetensors(p as string, t as tv.TensorsToSave),
    options: { index: 1, fields: ['w'] },
  },
  {
    name: 'saveShardedSafetensors',
    args: () => [freshDir('ssave'), tensors(), {}],
    call: (p, t, o) =>
      tv.saveShardedSafetensors(p as string, t as tv.TensorsToSave, o as tv.SaveShardedOptions),
    options: { index: 2, fields: ['metadata', 'maxShardBytes', 'prefix', ...JOB] },
  },
];

/** Tensor-entry fields are checked one level down: `{ w: { dtype: BAD } }` and so on. */
function tensorFieldCalls(): { label: string; run: () => unknown }[] {
  const out: { label: string; run: () => unknown }[] = [];
  for (const field of ['dtype', 'shape', 'data']) {
    for (const [label, make] of CORPUS) {
      const entry: Record<string, unknown> = { dtype: 'U8', shape: [2], data: new Uint8Array(2) };
      out.push({
        label: `saveSafetensors tensors.w.${field} = ${label}`,
        run: () => {
          entry[field] = make();
          return tv.saveSafetensors(fresh('save'), { w: entry } as unknown as tv.TensorsToSave);
        },
      });
    }
  }
  return out;
}

interface Outcome {
  label: string;
  kind: 'ok' | 'typed' | 'untyped';
  code?: string;
  detail?: string;
}

const CODES = new Set<string>(Object.values(tv.ErrorCode).filter((c) => c !== 'TV_INTERNAL'));

async function settle(label: string, run: () => unknown): Promise<Outcome> {
  try {
    const v = run();
    if (v instanceof Promise) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        v,
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error('did not settle in 20 s')), 20_000);
        }),
      ]).finally(() => clearTimeout(timer));
    }
    return { label, kind: 'ok' };
  } catch (err) {
    if (err instanceof tv.TensorVaultError && CODES.has(err.code))
      return { label, kind: 'typed', code: err.code };
    const e = err as Error;
    let detail: string;
    try {
      detail = `${e?.name}: ${e?.message}`.slice(0, 160);
    } catch {
      detail = 'unprintable';
    }
    return { label, kind: 'untyped', detail };
  }
}

/** A call, and whether its value must be refused with TV_INVALID_ARGUMENT (a boolean or a job field). */
type Call = { label: string; run: () => unknown; boolean?: boolean; refused?: boolean };

/** Values of the corpus that are a valid `progressIntervalMs` (an integer from 1 to 2**31 - 1), or none. */
const VALID_INTERVALS = new Set(['undefined', '1']);

function calls(): Call[] {
  const out: Call[] = [];
  for (const s of SPECS) {
    const arity = s.args().length;
    for (let i = 0; i < arity; i++) {
      if (s.skip?.includes(i)) continue;
      for (const [label, make] of CORPUS) {
        out.push({
          label: `${s.name} arg ${i} = ${label}`,
          run: () => {
            const a = s.args();
            a[i] = make();
            return s.call(...a);
          },
        });
      }
    }
    if (s.options === undefined) continue;
    const { index, fields, booleans = [] } = s.options;
    for (const f of fields) {
      for (const [label, make] of CORPUS) {
        out.push({
          label: `${s.name} options.${f} = ${label}`,
          boolean: booleans.includes(f) && label !== 'undefined' && label !== 'true' && label !== 'false',
          // Checked by every job, whether or not it has an onProgress (runJob accepted -5 before).
          refused: f === 'progressIntervalMs' && !VALID_INTERVALS.has(label),
          run: () => {
            const a = s.args();
            const o = (a[index] ?? {}) as Record<string, unknown>;
            a[index] = { ...o, [f]: make() };
            return s.call(...a);
          },
        });
      }
    }
  }
  return [...out, ...tensorFieldCalls()];
}

describe('every public entry point refuses bad arguments with a typed error (issue 13 item 13)', () => {
  it('the corpus over every exported function, constructor, method and option field', async () => {
    const results: Outcome[] = [];
    const booleanMisses: string[] = [];
    const refusedMisses: string[] = [];
    for (const c of calls()) {
      const r = await settle(c.label, c.run);
      results.push(r);
      if (c.boolean && r.code !== 'TV_INVALID_ARGUMENT') booleanMisses.push(`${c.label}: ${r.kind}`);
      if (c.refused && r.code !== 'TV_INVALID_ARGUMENT') refusedMisses.push(`${c.label}: ${r.kind}`);
    }
    const untyped = results.filter((r) => r.kind === 'untyped');
    const summary = `${results.length} calls, ${untyped.length} untyped`;
    // TV_ARGS_REPORT=FILE writes every outcome there (to count before/after a change).
    if (process.env.TV_ARGS_REPORT)
      writeFileSync(process.env.TV_ARGS_REPORT, JSON.stringify(results, null, 1));
    expect({ summary, untyped: untyped.map((u) => `${u.label} → ${u.detail}`) }).toEqual({
      summary: `${results.length} calls, 0 untyped`,
      untyped: [],
    });
    // Booleans are booleans: { overwrite: 'false' } and friends are refused, not read as true.
    expect(booleanMisses).toEqual([]);
    // progressIntervalMs out of range or not an integer is refused by every job that takes it.
    expect(refusedMisses).toEqual([]);
  }, 600_000);

  it('hashFile(p, { progressIntervalMs: -5 }) is TV_INVALID_ARGUMENT, as checkJobOptions says it', async () => {
    await expect(tv.hashFile(st, { progressIntervalMs: -5 })).rejects.toMatchObject({
      code: 'TV_INVALID_ARGUMENT',
      context: { argument: 'progressIntervalMs' },
      message: expect.stringMatching(/progressIntervalMs/),
    });
  });

  // These never checked options at all: an array (or a string) was read as empty options, and null
  // threw a TypeError reading its first field (repairCheckpoint spread it away; FoldFile's reads
  // never looked at it for a chunk already read).
  const uncheckedOptions = (): [string, (o: never) => unknown][] => {
    const fold = join(__dirname, 'fixtures', 'fold', 'plain.fold');
    const remote = (): string => `file://${freshDir('remote')}/c.safetensors`;
    return [
      ['verifyCheckpoint', (o) => tv.verifyCheckpoint(ckptPath, o)],
      ['repairCheckpoint', (o) => tv.repairCheckpoint(ckptPath, o)],
      ['verifyFold', (o) => tv.verifyFold(fold, o)],
      [
        'repairFold',
        (o) => {
          const copy = fresh('fold');
          copyFileSync(fold, copy);
          return tv.repairFold(copy, o);
        },
      ],
      ['writeFold', (o) => tv.writeFold(fresh('fold'), [], o)],
      ['push', (o) => tv.push(ckptPath, remote(), o)],
      ['pull', (o) => tv.pull(remote(), fresh('pull'), o)],
      ['verifyRemote', (o) => tv.verifyRemote(remote(), o)],
      ['listRemote', (o) => tv.listRemote(remote(), o)],
      ['repairRemote', (o) => tv.repairRemote(remote(), o)],
      ['loadRemoteCheckpoint', (o) => tv.loadRemoteCheckpoint(remote(), o)],
      ['loadCheckpoint (remote URL)', (o) => tv.loadCheckpoint(remote() as tv.RemoteUrl, o)],
      ...(['chunk', 'bytes', 'json', 'npz', 'stateDict'] as const).map(
        (method): [string, (o: never) => unknown] => [
          `FoldFile.${method}`,
          async (o) => {
            const f = await tv.openFold(fold);
            const name = {
              chunk: 'torch_state',
              bytes: 'torch_state',
              json: 'metrics',
              npz: 'nuclear_arrays',
            };
            try {
              return method === 'stateDict'
                ? await f.stateDict(undefined, o)
                : await f[method](name[method], o);
            } finally {
              f.close();
            }
          },
        ],
      ),
    ];
  };

  it.each(uncheckedOptions())(
    'null as options is TV_INVALID_ARGUMENT naming options, not a TypeError: %s',
    async (_name, call) => {
      await expect((async () => call(null as never))()).rejects.toMatchObject({
        code: 'TV_INVALID_ARGUMENT',
        context: { argument: 'options' },
      });
    },
  );

  it('null as options is refused with TV_INVALID_ARGUMENT naming options (verify(p, null))', async () => {
    await expect(tv.verify(protectedFile, null as never)).rejects.toMatchObject({
      code: 'TV_INVALID_ARGUMENT',
      context: { argument: 'options' },
    });
  });

  it.each<[string, () => unknown]>([
    ['openSafetensors', () => tv.openSafetensors(st, [] as never)],
    ['SafetensorsFile.tensor', () => file.tensor('w', [] as never)],
    ['SafetensorsFile.slice', () => file.slice('w', 0, 1, [] as never)],
    ['SafetensorsFile.chunks', () => [...file.chunks('w', [] as never)]],
    ['SafetensorsFile.prefetch', () => file.prefetch(undefined, [] as never)],
    ['saveSafetensors', () => tv.saveSafetensors(fresh('arr'), tensors() as tv.TensorsToSave, [] as never)],
    [
      'saveShardedSafetensors',
      () => tv.saveShardedSafetensors(freshDir('arr'), tensors() as tv.TensorsToSave, [] as never),
    ],
    ['openShardedSafetensors', () => tv.openShardedSafetensors(shardIndex, [] as never)],
    ['Checkpoint.readRange', () => ckpt.readRange('w', 0, 4, [] as never)],
    ['Checkpoint.chunks', () => ckpt.chunks('w', [] as never).next()],
    // Hand-written `typeof options !== 'object' || options === null` checks let an array through too.
    ['hashFile', () => tv.hashFile(st, [] as never)],
    ['EventLog.open', async () => (await tv.EventLog.open(fresh('arr'), [] as never)).close()],
    ['new RingFileLog', () => new tv.RingFileLog(fresh('arr'), [] as never).close()],
    ['ringDestination', () => tv.ringDestination(fresh('arr'), [] as never).log.close()],
    ['new RingTransport (winston)', () => new RingTransport([] as never).ring.close()],
    [
      'openFold',
      async () => (await tv.openFold(join(__dirname, 'fixtures', 'fold', 'plain.fold'), [] as never)).close(),
    ],
    ['loadCheckpoint', async () => (await tv.loadCheckpoint(ckptPath, [] as never)).close()],
    ['loadSecure', () => tv.loadSecure(fresh('manifest.json'), [] as never)],
    [
      'saveCheckpoint',
      () => tv.saveCheckpoint(`${fresh('arr')}.safetensors`, { w: new Float32Array(4) }, [] as never),
    ],
    ['new CheckpointManager', () => new tv.CheckpointManager(fresh('arr'), [] as never)],
    [
      'CheckpointManager.save',
      () => new tv.CheckpointManager(fresh('arr')).save(1, { w: new Float32Array(4) }, [] as never),
    ],
    ...uncheckedOptions().map(([name, call]): [string, () => unknown] => [name, () => call([] as never)]),
  ])('an array as options is TV_INVALID_ARGUMENT naming options: %s', async (_name, call) => {
    // checkOptionsObject (the safetensors and checkpoint readers, the writers) took an array, and so
    // did the hand-written checks (hashFile, the event log, the ring logs, folds, checkpoints).
    await expect((async () => call())()).rejects.toMatchObject({
      code: 'TV_INVALID_ARGUMENT',
      context: { argument: 'options' },
    });
  });

  it('{ overwrite: "false" } is refused and the destination keeps its log', async () => {
    await expect(tv.restoreBackup(archive, logDir, { overwrite: 'false' as never })).rejects.toMatchObject({
      code: 'TV_INVALID_ARGUMENT',
      context: { argument: 'overwrite' },
    });
  });

  it('a legacy payload nested 5,000 deep is a typed error, not a RangeError', () => {
    let payload: unknown = 1;
    for (let i = 0; i < 5000; i++) payload = { a: payload };
    expect(() => tv.legacyPayloadHash(payload)).toThrow(tv.TensorVaultError);
    expect(() => tv.canonicalJson(payload)).toThrow(tv.TensorVaultError);
  });

  it('a streamed source that throws is passed on as the cause', async () => {
    const boom = new Error('source failed');
    const err = await tv
      .saveSafetensors(fresh('save'), {
        w: {
          dtype: 'U8',
          shape: [4],
          data: (async function* () {
            yield new Uint8Array(2);
            throw boom;
          })(),
        },
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(tv.TensorVaultError);
    expect((err as tv.TensorVaultError).code).not.toBe('TV_INTERNAL');
    expect((err as Error).cause).toBe(boom);
  });

  it('the CLI: backup create --sign-key with a file that is not a key exits with a typed error and no stack', () => {
    const cli = join(__dirname, '..', 'dist', 'cli', 'main.js');
    const r = spawnSync(
      process.execPath,
      [cli, 'backup', 'create', logDir, fresh('cliout'), '--sign-key', join(__dirname, '..', 'README.md')],
      { encoding: 'utf8' },
    );
    expect(r.stderr).toMatch(/\[TV_[A-Z_]+\]/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.status).not.toBe(7);
  });
});

// Issue 21, items 2 and 5: strings the addon cannot take as they are, and writer argument errors that
// reached the native writer and came back as a damaged header.
describe('names, metadata and shapes the writers refuse before the addon (issue 21)', () => {
  // The file or folder the last call wrote to.
  let last = '';
  const at = (p: string): string => {
    last = p;
    return p;
  };
  const writers = [
    [
      'saveSafetensors',
      (t: tv.TensorsToSave, o = {}) => tv.saveSafetensors(at(`${fresh('w')}.safetensors`), t, o),
    ],
    [
      'saveCheckpoint',
      (t: tv.TensorsToSave) => tv.saveCheckpoint(at(`${fresh('c')}.safetensors`), t, { gitHash: 'x' }),
    ],
    [
      'saveShardedSafetensors',
      (t: tv.TensorsToSave, o = {}) => tv.saveShardedSafetensors(at(freshDir()), t, o),
    ],
  ] as const;
  /** Nothing was written: an empty folder (sharded), or no file at all starting with that path. */
  const nothingWritten = (): boolean =>
    statSync(last, { throwIfNoEntry: false })?.isDirectory()
      ? readdirSync(last).length === 0
      : readdirSync(root).every((f) => !join(root, f).startsWith(last));

  // N-API's UTF-8 conversion turned a lone UTF-16 surrogate into U+FFFD: saveCheckpoint wrote a tensor
  // named "\ufffd" (two different lone surrogates collapsed into a duplicate), saveSafetensors failed with
  // TV_TENSOR_SIZE_MISMATCH ("got 0"), and lookups found the U+FFFD tensor.
  it('a tensor name with a lone surrogate is TV_INVALID_ARGUMENT, and nothing is written', async () => {
    for (const [fn, save] of writers) {
      for (const name of ['\ud800', 'a\udfffb', '\udbff']) {
        const e = await save({ [name]: new Uint8Array([1]) }).then(
          () => undefined,
          (err: unknown) => err as tv.TensorVaultError,
        );
        expect([fn, name, e?.code, e?.context.argument]).toEqual([
          fn,
          name,
          'TV_INVALID_ARGUMENT',
          'tensors',
        ]);
        expect(e?.message).toContain('lone UTF-16 surrogate');
        expect([fn, name, nothingWritten()]).toEqual([fn, name, true]);
      }
    }
    // A surrogate pair (an emoji) is well-formed and kept.
    const p = `${fresh('emoji')}.safetensors`;
    await tv.saveSafetensors(p, { '\ud83d\ude00': new Uint8Array([7]) });
    const f = await tv.openSafetensors(p);
    expect(f.names).toEqual(['😀']);
    expect([...f.tensor('😀').data]).toEqual([7]);
    f.close();
  });

  it('metadata keys and values with a lone surrogate are TV_INVALID_ARGUMENT (not rewritten)', async () => {
    for (const metadata of [{ k: 'x\ud800y' }, { 'k\udc00': 'v' }]) {
      for (const [, save] of [writers[0], writers[2]]) {
        await expect(save({ a: new Uint8Array([1]) }, { metadata })).rejects.toMatchObject({
          code: 'TV_INVALID_ARGUMENT',
          context: { argument: 'metadata' },
        });
      }
    }
  });

  it('lookups with a lone surrogate do not find the U+FFFD tensor', async () => {
    const p = `${fresh('fffd')}.safetensors`;
    await tv.saveSafetensors(p, { '\ufffd': new Uint8Array([42]) });
    const f = await tv.openSafetensors(p);
    expect(f.has('\ufffd')).toBe(true);
    expect(f.has('\ud800')).toBe(false);
    expect(() => f.tensor('\ud800')).toThrow(expect.objectContaining({ code: 'TV_INVALID_ARGUMENT' }));
    expect(() => f.info('\udfff')).toThrow(expect.objectContaining({ code: 'TV_INVALID_ARGUMENT' }));
    f.close();
    const ck = `${fresh('ck')}.safetensors`;
    await tv.saveCheckpoint(ck, { '\ufffd': new Uint8Array([42]) }, { gitHash: 'x' });
    const c = await tv.loadCheckpoint(ck);
    await expect(c.tensor('\ud800')).rejects.toMatchObject({ code: 'TV_INVALID_ARGUMENT' });
    expect([...(await c.tensor('\ufffd')).data]).toEqual([42]);
    c.close();
  });

  // saveSafetensors and saveCheckpoint reported these as TV_SAFETENSORS_INVALID (a damaged header),
  // saveShardedSafetensors as TV_INVALID_ARGUMENT (duplicates) or TV_SAFETENSORS_INVALID (overflow).
  it('duplicate names from an iterable and a shape overflowing 64 bits are TV_INVALID_ARGUMENT in every writer', async () => {
    for (const [fn, save] of writers) {
      await expect(
        save([
          ['a', new Uint8Array([1])],
          ['a', new Uint8Array([2])],
        ]),
      ).rejects.toMatchObject({ code: 'TV_INVALID_ARGUMENT', context: { argument: 'tensors', name: 'a' } });
      const big = { a: { dtype: 'F32' as const, shape: [2 ** 33, 2 ** 33, 0], data: new Float32Array(0) } };
      const e = await save(big).then(
        () => undefined,
        (err: unknown) => err as tv.TensorVaultError,
      );
      expect([fn, e?.code, e?.context.argument, e?.context.name]).toEqual([
        fn,
        'TV_INVALID_ARGUMENT',
        'shape',
        'a',
      ]);
      expect([fn, nothingWritten()]).toEqual([fn, true]);
      // The same dimensions with the zero first: the product stays 0 at every step, and is written.
      await save({ a: { dtype: 'F32', shape: [0, 2 ** 33, 2 ** 33], data: new Float32Array(0) } });
    }
  });
});

describe('a key refused as an argument is never printed (QA qa22-ident 3)', () => {
  // A natural mistake: the CLI takes keys "as hex or text", so a caller passes the text where bytes are taken.
  const KEY = 'prod-hmac-secret-42';
  it('logKey, encryptionKey and manifest keys given as a string: type and length only, in every part of the error', async () => {
    const calls: [string, () => Promise<unknown>][] = [
      ['verifyBackup logKey', () => tv.verifyBackup(archive, { readData: true, logKey: KEY as never })],
      ['restoreBackup logKey', () => tv.restoreBackup(archive, fresh('r'), { logKey: KEY as never })],
      [
        'restoreBackup encryptionKey',
        () => tv.restoreBackup(archive, fresh('r'), { encryptionKey: KEY as never }),
      ],
      ['verifyBackup key', () => tv.verifyBackup(archive, { key: KEY as never })],
      [
        'verifyBackup key.key',
        () => tv.verifyBackup(archive, { key: { type: 'hmac-sha256', key: KEY as never } }),
      ],
    ];
    for (const [name, call] of calls) {
      const e = await call().then(
        () => undefined,
        (err: unknown) => err as tv.TensorVaultError,
      );
      expect([name, e?.code]).toEqual([name, 'TV_INVALID_ARGUMENT']);
      const all = [e?.message, e?.stack, JSON.stringify(e?.context), inspect(e)].join('\n');
      expect([name, all.includes(KEY)]).toEqual([name, false]);
      expect([name, e?.message.includes(`a string of ${KEY.length} characters`)]).toEqual([name, true]);
    }
  });
});
