// The cheap verified open (issue 14, opening targets): the header digest from the mapping, and the
// outboard (`NAME.safetensors.tvob`) that lets a first view check only the 64 KiB pieces it covers.

import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import {
  closeSync,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sealOf } from '../dist/checkpoint/layout.js';
import { parseCheckpoint } from '../dist/checkpoint/parse.js';
import * as tv from '../dist/index.js';
import { native } from '../dist/native/index.js';
import { xorAt } from './helpers/bytes';
import { rng } from './helpers/random';
import { tempDir } from './helpers/tmp';

const dir = tempDir('tv-ckpt-open-');
let n = 0;
const fresh = (): string => join(dir, `${n++}-model.safetensors`);
const MiB = 1024 * 1024;
const PIECE = 64 * 1024;

/** `a.bias` (4 KiB, first in the file, in chunk 0's first piece) and `b.weight` (2 MiB + 4 KiB). */
function tensors() {
  const a = new Uint8Array(4096);
  for (let i = 0; i < a.length; i++) a[i] = (i * 13) & 255;
  const b = new Uint8Array(2 * MiB + 4096);
  for (let i = 0; i < b.length; i++) b[i] = (i * 7 + (i >> 11)) & 255;
  return { 'a.bias': a, 'b.weight': b };
}

function corrupt(path: string, offset: number): void {
  const buf = readFileSync(path);
  xorAt(buf, offset, 0xff);
  writeFileSync(path, buf);
}

async function rejects(p: Promise<unknown>): Promise<tv.TensorVaultError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(tv.TensorVaultError);
    return err as tv.TensorVaultError;
  }
  throw new Error('expected a rejection');
}

async function saved(options: tv.SaveCheckpointOptions = {}) {
  const path = fresh();
  await tv.saveCheckpoint(path, tensors(), options);
  const c = await tv.loadCheckpoint(path, { verify: 'none', hmacKey: options.hmacKey ?? null });
  const a = c.info('a.bias');
  const b = c.info('b.weight');
  c.close();
  // The layout the tests rely on: a.bias in chunk 0's first piece, b.weight from there over chunk 1.
  expect(a.fileOffset + a.byteLength).toBeLessThanOrEqual(PIECE);
  expect(b.fileOffset).toBeLessThan(PIECE);
  return { path, a, b };
}

describe('the outboard (NAME.safetensors.tvob)', () => {
  it('is written by a save of the tensorvault layout, with the format its header says', async () => {
    const { path } = await saved();
    const ob = readFileSync(`${path}.tvob`);
    const len = statSync(path).size;
    expect(ob.subarray(0, 8).toString('latin1')).toBe('TVOUTBD\x01');
    expect(ob[8]).toBe(2);
    expect(Number(ob.readBigUInt64LE(16))).toBe(MiB);
    expect(Number(ob.readBigUInt64LE(24))).toBe(len);
    expect(Number(ob.readBigUInt64LE(32))).toBe(PIECE);
    expect(ob.length).toBe(40 + Math.floor(len / MiB) * 16 * 32);
    const h = native().checkpointOutboardOpen(`${path}.tvob`, MiB, len);
    expect(h?.pieces()).toBe(16);
    h?.close();
    // Another file's length or chunk size, a missing file, a truncated outboard: not usable.
    expect(native().checkpointOutboardOpen(`${path}.tvob`, MiB, len + 1)).toBeNull();
    expect(native().checkpointOutboardOpen(`${path}.tvob`, 2 * MiB, len)).toBeNull();
    expect(native().checkpointOutboardOpen(`${path}.nope`, MiB, len)).toBeNull();
    const cut = `${path}.cut.tvob`;
    writeFileSync(cut, ob.subarray(0, ob.length - 1));
    expect(native().checkpointOutboardOpen(cut, MiB, len)).toBeNull();
  });

  it("the addon's piece check reads the values and the pieces itself: ok, damaged, truncated, unusable", async () => {
    const { path } = await saved();
    const len = statSync(path).size;
    const leaves = JSON.parse(readFileSync(`${path}.meta.json`, 'utf8')).tensorvault.leaves as string;
    const leaf0 = leaves.slice(0, 64);
    const h = native().checkpointOutboardOpen(`${path}.tvob`, MiB, len);
    if (h === null) throw new Error('no outboard');
    let fd = openSync(path, 'r');
    try {
      expect(h.verify(0, leaf0, 0, 16, fd)).toBe(0);
      expect(h.verify(0, leaf0, 3, 5, fd)).toBe(0);
      // Values that do not merge to the sealed leaf (a stale outboard): unusable.
      expect(h.verify(0, leaves.slice(64, 128), 0, 1, fd)).toBe(2);
      // A chunk without values (past the full chunks) and bad ranges.
      expect(h.verify(Math.floor(len / MiB), leaf0, 0, 1, fd)).toBe(2);
      expect(() => h.verify(0, leaf0, 2, 2, fd)).toThrow(/range/);
      expect(() => h.verify(0, leaf0, 0, 17, fd)).toThrow(/range/);
      corrupt(path, 4 * PIECE + 9);
      closeSync(fd);
      fd = openSync(path, 'r');
      expect(h.verify(0, leaf0, 2, 4, fd)).toBe(0);
      expect(h.verify(0, leaf0, 5, 16, fd)).toBe(0);
      expect(h.verify(0, leaf0, 4, 5, fd)).toBe(1);
      expect(h.verify(0, leaf0, 0, 16, fd)).toBe(1);
      // The descriptor is borrowed, not closed: it still reads.
      expect(readSync(fd, Buffer.alloc(8), 0, 8, 0)).toBe(8);
      truncateSync(path, 2 * PIECE);
      expect(h.verify(0, leaf0, 0, 4, fd)).toBe(1);
      h.close();
      expect(h.verify(0, leaf0, 0, 1, fd)).toBe(2);
    } finally {
      closeSync(fd);
    }
  });

  it('is removed when the set is saved again in a PyFolds layout', async () => {
    const { path } = await saved();
    expect(existsSync(`${path}.tvob`)).toBe(true);
    await tv.saveCheckpoint(path, tensors(), { layout: 'pyfolds' });
    expect(existsSync(`${path}.tvob`)).toBe(false);
  });

  it('a first view checks only its pieces: damage elsewhere in the same chunk does not refuse it', async () => {
    const { path, a } = await saved();
    corrupt(path, 8 * PIECE + 5); // chunk 0, piece 8: inside b.weight
    const c = await tv.loadCheckpoint(path);
    const t = await c.tensor('a.bias');
    expect(Buffer.from(t.data as Uint8Array)).toEqual(Buffer.from(tensors()['a.bias']));
    expect(c.report.verifiedTensors).toEqual(['a.bias']);
    const e = await rejects(c.tensor('b.weight'));
    expect(e.code).toBe('TV_CHECKPOINT_TENSOR_DAMAGED');
    expect((e as tv.TensorDamagedError).chunks).toEqual([0]);
    c.close();
    // Without the outboard the whole chunk is hashed: the same damage refuses a.bias too.
    rmSync(`${path}.tvob`);
    const c2 = await tv.loadCheckpoint(path);
    expect((await rejects(c2.tensor('a.bias'))).code).toBe('TV_CHECKPOINT_TENSOR_DAMAGED');
    c2.close();
    expect(a.byteLength).toBe(4096);
  });

  it('damage inside the viewed pieces is refused, or repaired from parity', async () => {
    for (const ecc of ['off', 'medium'] as const) {
      const { path, a } = await saved({ ecc });
      corrupt(path, a.fileOffset + 100);
      const c = await tv.loadCheckpoint(path);
      if (ecc === 'off') {
        const e = await rejects(c.tensor('a.bias'));
        expect(e.code).toBe('TV_CHECKPOINT_TENSOR_DAMAGED');
        expect((e as tv.TensorDamagedError).chunks).toEqual([0]);
      } else {
        const t = await c.tensor('a.bias');
        expect(Buffer.from(t.data as Uint8Array)).toEqual(Buffer.from(tensors()['a.bias']));
        expect(c.report.status).toBe('repaired');
        expect(c.report.repairedChunks).toEqual([0]);
      }
      c.close();
    }
  });

  it('an outboard rebuilt from tampered weights does not vouch for them (values must merge to the sealed leaf)', async () => {
    const { path, a } = await saved();
    corrupt(path, a.fileOffset + 7);
    // A consistent outboard of the changed file: every value matches the changed bytes.
    await native().checkpointWriteOutboard(path, `${path}.tvob`, MiB, new (native().JobControl)());
    const c = await tv.loadCheckpoint(path);
    const e = await rejects(c.tensor('a.bias'));
    expect(e.code).toBe('TV_CHECKPOINT_TENSOR_DAMAGED');
    expect((e as tv.TensorDamagedError).chunks).toEqual([0]);
    c.close();
  });

  it('a damaged, truncated, stale or foreign outboard only makes the loader hash whole chunks', async () => {
    const { path } = await saved();
    const good = readFileSync(`${path}.tvob`);
    const other = await saved();
    const foreign = readFileSync(`${other.path}.tvob`);
    corrupt(other.path, 3 * PIECE); // the other set's outboard is now stale for its own weights
    const cases: [string, Buffer][] = [
      ['a flipped value', Buffer.from(good).fill(0x55, 40 + 32, 40 + 64)],
      [
        'swapped values',
        Buffer.concat([
          good.subarray(0, 40),
          good.subarray(72, 104),
          good.subarray(40, 72),
          good.subarray(104),
        ]),
      ],
      ['truncated', good.subarray(0, good.length - 1)],
      ['header only', good.subarray(0, 40)],
      ['empty', Buffer.alloc(0)],
      ['bad magic', Buffer.concat([Buffer.from('XXXXXXXX'), good.subarray(8)])],
      ['garbage', Buffer.alloc(good.length, 0xa5)],
      ['another file of the same length', foreign],
    ];
    for (const [what, bytes] of cases) {
      writeFileSync(`${path}.tvob`, bytes);
      const c = await tv.loadCheckpoint(path);
      const t = await c.tensor('a.bias');
      expect(Buffer.from(t.data as Uint8Array), what).toEqual(Buffer.from(tensors()['a.bias']));
      const w = await c.tensor('b.weight');
      expect(Buffer.from(w.data as Uint8Array).equals(Buffer.from(tensors()['b.weight'])), what).toBe(true);
      c.close();
    }
    // The stale one still refuses the damaged bytes of its own set.
    const c = await tv.loadCheckpoint(other.path);
    expect((await rejects(c.tensor('b.weight'))).code).toBe('TV_CHECKPOINT_TENSOR_DAMAGED');
    c.close();
  });

  it('a view of pieces the open already checked is recorded and published like any verified view', async () => {
    const { path } = await saved();
    const events: Record<string, unknown>[] = [];
    const on = (e: unknown) => events.push(e as Record<string, unknown>);
    subscribe('tensorvault:checkpoint', on);
    try {
      const c = await tv.loadCheckpoint(path);
      // a.bias lies in the pieces of chunk 0 that the open checked with the header: no check is queued.
      const t = await c.tensor('a.bias');
      expect(Buffer.from(t.data as Uint8Array)).toEqual(Buffer.from(tensors()['a.bias']));
      expect(c.report.verifiedTensors).toEqual(['a.bias']);
      expect(events.filter((e) => e.event === 'verified').map((e) => e.tensor)).toEqual(['a.bias']);
      // Two views at once, one of them needing a check: both verified, each recorded once.
      await Promise.all([c.tensor('b.weight'), c.tensor('a.bias')]);
      expect([...c.report.verifiedTensors].sort()).toEqual(['a.bias', 'b.weight']);
      c.close();
    } finally {
      unsubscribe('tensorvault:checkpoint', on);
    }
  });

  it('pieces verified by earlier views are not hashed again; the chunk counts once every piece is', async () => {
    const { path } = await saved();
    const c = await tv.loadCheckpoint(path);
    await c.tensor('a.bias');
    expect(c.report.status).toBe('unverified');
    await c.tensors();
    expect(c.report.status).toBe('intact');
    c.close();
  });
});

describe('outboard campaign (verify: lazy)', () => {
  it('80 trials of damage to the weights and/or the outboard: zero tensors returned with wrong bytes', async () => {
    let seed = 20261203;
    const int = (k: number): number => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return Math.floor((seed / 2 ** 32) * k);
    };
    const want = tensors();
    const stats = { returned: 0, refused: 0, wrong: 0 };
    for (let i = 0; i < 80; i++) {
      const { path } = await saved();
      const kind = i % 4;
      const size = statSync(path).size;
      if (kind !== 1) corrupt(path, kind === 3 ? int(PIECE) : int(size)); // weights (kind 3: chunk 0, piece 0)
      if (kind === 1 || kind === 2) {
        const ob = readFileSync(`${path}.tvob`);
        for (let k = 0, m = 1 + int(4); k < m; k++) xorAt(ob, int(ob.length), 1 << int(8));
        writeFileSync(`${path}.tvob`, ob);
      }
      if (kind === 3) {
        // the attacker's outboard: consistent with the changed weights
        await native().checkpointWriteOutboard(path, `${path}.tvob`, MiB, new (native().JobControl)());
      }
      let c: tv.Checkpoint | undefined;
      try {
        c = await tv.loadCheckpoint(path);
        const order = int(2) === 0 ? ['a.bias', 'b.weight'] : ['b.weight', 'a.bias'];
        for (const name of order) {
          try {
            const t = await c.tensor(name);
            const ok = Buffer.from(t.bytes).equals(Buffer.from(want[name as keyof typeof want]));
            if (ok) stats.returned++;
            else stats.wrong++;
          } catch (err) {
            expect(err).toBeInstanceOf(tv.TensorVaultError);
            stats.refused++;
          }
        }
      } catch (err) {
        expect(err).toBeInstanceOf(tv.TensorVaultError);
        stats.refused++;
      } finally {
        c?.close();
      }
    }
    expect(stats.wrong).toBe(0);
    expect(stats.returned).toBeGreaterThan(20);
    expect(stats.refused).toBeGreaterThan(20);
  });
});

describe('the verified open', () => {
  it('a header changed on disk (still a valid header) is refused without parity, repaired with it', async () => {
    for (const ecc of ['off', 'medium'] as const) {
      const path = fresh();
      await tv.saveCheckpoint(path, tensors(), { ecc, metadata: {} });
      const buf = readFileSync(path);
      const at = buf.indexOf('"a.bias"');
      buf[at + 1] = 'A'.charCodeAt(0); // "A.bias": a valid header naming another tensor
      writeFileSync(path, buf);
      if (ecc === 'off') {
        const e = await rejects(tv.loadCheckpoint(path));
        expect(e.code).toBe('TV_CHECKPOINT_INTEGRITY');
        expect(e.context.reason).toBe('header');
      } else {
        const c = await tv.loadCheckpoint(path);
        expect(c.names).toContain('a.bias');
        expect(c.report.status).toBe('repaired');
        c.close();
      }
    }
  });

  it('a truncated file is refused (the length is part of the check)', async () => {
    const path = fresh();
    await tv.saveCheckpoint(path, tensors());
    const buf = readFileSync(path);
    writeFileSync(path, buf.subarray(0, buf.length - 4096));
    const e = await rejects(tv.loadCheckpoint(path));
    expect(['TV_CHECKPOINT_INTEGRITY', 'TV_SAFETENSORS_INVALID']).toContain(e.code);
  });

  it('a keyed checkpoint: no key fails, the key opens it, a tampered sidecar fails with the key', async () => {
    const { path } = await saved({ hmacKey: 'k1' });
    expect((await rejects(tv.loadCheckpoint(path, { hmacKey: null }))).code).toBe(
      'TV_CHECKPOINT_HMAC_REQUIRED',
    );
    const c = await tv.loadCheckpoint(path, { hmacKey: 'k1' });
    expect(c.report.seal).toBe('ok');
    await c.tensor('a.bias');
    c.close();
    const side = JSON.parse(readFileSync(`${path}.meta.json`, 'utf8'));
    side.tensorvault.header_sha256 = '0'.repeat(64);
    writeFileSync(`${path}.meta.json`, JSON.stringify(side));
    const e = await rejects(tv.loadCheckpoint(path, { hmacKey: 'k1' }));
    expect(e.code).toBe('TV_CHECKPOINT_INTEGRITY');
    expect(e.context.reason).toBe('seal');
  });

  it('a string hmacKey with a lone UTF-16 surrogate is refused on save and on open (two keys never act as one)', async () => {
    // Converted to UTF-8, '\ud800' and '\udfff' were the same key (U+FFFD): a checkpoint saved with one
    // opened with the other.
    const path = fresh();
    const e = await rejects(tv.saveCheckpoint(path, tensors(), { hmacKey: 'k\ud800' }));
    expect(e).toMatchObject({ code: 'TV_INVALID_ARGUMENT', context: { argument: 'hmacKey', position: 1 } });
    expect(e.message).not.toContain('k\ud800');
    expect(existsSync(path)).toBe(false);
    const { path: keyed } = await saved({ hmacKey: 'k1' });
    const o = await rejects(tv.loadCheckpoint(keyed, { hmacKey: 'k\udfff' }));
    expect(o).toMatchObject({ code: 'TV_INVALID_ARGUMENT', context: { argument: 'hmacKey', position: 1 } });
  });

  it('the sidecar fast path and the full parser agree (escapes, duplicate keys, upper case, tampered leaves)', async () => {
    const { path } = await saved();
    const text = readFileSync(`${path}.meta.json`, 'utf8');
    const side = JSON.parse(text);
    const leaves: string = side.tensorvault.leaves;
    const variants: [string, string, string | null][] = [
      // [what, sidecar text, expected error code or null (loads)]
      ['as saved', text, null],
      [
        'an escaped digit (the full parser decodes it)',
        text.replace(`"leaves": "${leaves[0]}`, `"leaves": "\\u00${leaves.charCodeAt(0).toString(16)}`),
        null,
      ],
      [
        'a duplicate leaves key, the last one valid',
        text.replace('"leaves": "', '"leaves": "zz", "leaves": "'),
        null,
      ],
      ['upper-case leaves', text.replace(leaves, leaves.toUpperCase()), 'TV_CHECKPOINT_INVALID'],
      [
        'a changed leaf',
        text.replace(leaves, (leaves[0] === 'a' ? 'b' : 'a') + leaves.slice(1)),
        'TV_CHECKPOINT_INVALID',
      ],
      ['a leaf too few', text.replace(leaves, leaves.slice(64)), 'TV_CHECKPOINT_INVALID'],
      ['not JSON', `${text}}`, 'TV_CHECKPOINT_INVALID'],
    ];
    for (const [what, t, code] of variants) {
      if (what !== 'as saved') expect(t, what).not.toBe(text);
      writeFileSync(`${path}.meta.json`, t);
      if (code === null) {
        const c = await tv.loadCheckpoint(path);
        const a = await c.tensor('a.bias');
        expect(Buffer.from(a.data as Uint8Array), what).toEqual(Buffer.from(tensors()['a.bias']));
        c.close();
      } else {
        const e = await rejects(tv.loadCheckpoint(path));
        expect(e.code, what).toBe(code);
      }
    }
  });

  it('the fast path opens the weights with the sidecar, and steps aside for what it cannot vouch for', async () => {
    const taken = (path: string, keyedOnly = false): boolean => {
      const p = parseCheckpoint(path, { keyedOnly });
      const o = p.opened;
      if (o !== undefined) {
        expect(o.file.fileLength()).toBe(statSync(path).size);
        o.file.close();
        o.outboard?.close();
      }
      return o !== undefined;
    };
    const { path } = await saved();
    expect(taken(path)).toBe(true);
    const p = parseCheckpoint(path, { keyedOnly: false });
    expect(p.opened?.outboard).not.toBeNull(); // the outboard comes with it
    // The header (under 64 KiB) was checked through the outboard: chunk 0's first piece, not its SHA-256.
    expect(p.opened?.headerPieces).toBe(1);
    p.opened?.file.close();
    p.opened?.outboard?.close();
    expect(parseCheckpoint(path).opened).toBeUndefined(); // only when asked
    expect(taken(path, true)).toBe(false); // a key is required: nothing is mapped for a plain one
    const keyed = (await saved({ hmacKey: 'k2' })).path;
    expect(taken(keyed, true)).toBe(true);
    // Without an outboard: still taken, the outboard null.
    rmSync(`${path}.tvob`);
    const q = parseCheckpoint(path, { keyedOnly: false });
    expect(q.opened?.outboard).toBeNull();
    expect(q.opened?.headerPieces).toBe(0); // the header checked by its digest
    q.opened?.file.close();
    // A valid header changed on disk: not taken (the loader repairs it or fails, as above).
    const buf = readFileSync(path);
    const at = buf.indexOf('"a.bias"');
    buf[at + 1] = 'A'.charCodeAt(0);
    writeFileSync(path, buf);
    expect(taken(path)).toBe(false);
    // The PyFolds layout has no block to check against: not taken.
    const plain = fresh();
    await tv.saveCheckpoint(plain, tensors(), { layout: 'pyfolds' });
    expect(taken(plain)).toBe(false);
    // Tampered leaves: not taken, and the full parser's error as before.
    const other = (await saved()).path;
    const side = readFileSync(`${other}.meta.json`, 'utf8');
    const leaves: string = JSON.parse(side).tensorvault.leaves;
    writeFileSync(
      `${other}.meta.json`,
      side.replace(leaves, (leaves[0] === 'a' ? 'b' : 'a') + leaves.slice(1)),
    );
    expect(() => parseCheckpoint(other, { keyedOnly: false })).toThrow(/leaves do not match the root/);
  });

  it.skipIf(!existsSync('/proc/self/fd'))(
    'a lazy open duplicates no descriptor until it reads beside its views, then reads the mapped file even after a new save',
    async () => {
      const { path } = await saved();
      // Descriptors of this process on the weights at `path`: the live file, and the file a new save
      // replaced (the link then ends in " (deleted)").
      const weightFds = () => {
        const out = { live: 0, replaced: 0 };
        for (const fd of readdirSync('/proc/self/fd')) {
          let link: string;
          try {
            link = readlinkSync(`/proc/self/fd/${fd}`);
          } catch {
            continue;
          }
          if (link === path) out.live++;
          else if (link === `${path} (deleted)`) out.replaced++;
        }
        return out;
      };
      // Past the file clock's tick since the save: what the open checked is then trusted while the
      // file's stat is unchanged (a fresher file is checked again at its first views, through a
      // duplicate; docs/formats/checkpoint.md).
      await new Promise((r) => setTimeout(r, 250));
      const c = await tv.loadCheckpoint(path);
      // The mapping's file only (the session's first build also held a duplicate from the open on).
      expect(weightFds()).toEqual({ live: 1, replaced: 0 });
      await c.tensor('a.bias'); // inside the pieces the open checked: nothing read beside the view
      expect(weightFds()).toEqual({ live: 1, replaced: 0 });
      // A new save replaces the set at the path; b.weight's first view reads its chunks for the check
      // from the file the checkpoint mapped (not the path), so the old bytes verify against the old block.
      const other = tensors();
      other['b.weight'].fill(7);
      await tv.saveCheckpoint(path, other);
      const b = await c.tensor('b.weight');
      expect(Buffer.from(b.bytes).equals(Buffer.from(tensors()['b.weight']))).toBe(true);
      expect(c.report.verifiedTensors).toEqual(['a.bias', 'b.weight']);
      expect(c.report.damagedChunks).toEqual([]);
      // The mapping's own descriptor only: the reads beside the views borrow it (a third descriptor per
      // lazy load, a duplicate, before qa22 #3).
      expect(weightFds()).toEqual({ live: 0, replaced: 1 });
      c.close();
      expect(weightFds()).toEqual({ live: 0, replaced: 0 });
      const d = await tv.loadCheckpoint(path);
      expect(Buffer.from((await d.tensor('b.weight')).bytes).every((x) => x === 7)).toBe(true);
      d.close();
    },
  );

  it("the header checked through the outboard at open: its piece's damage, a stale outboard, a short file", async () => {
    const opened = (path: string) => {
      const o = parseCheckpoint(path, { keyedOnly: false }).opened;
      o?.file.close();
      o?.outboard?.close();
      return o === undefined ? 'not taken' : o.headerPieces;
    };
    // Damage in the header's piece but outside the header (a.bias's bytes): the open steps aside (its
    // header digest still matches), and the first view finds the damage and repairs it from parity.
    const { path, a } = await saved({ ecc: 'medium' });
    expect(opened(path)).toBe(1);
    corrupt(path, a.fileOffset + 7);
    expect(opened(path)).toBe('not taken');
    const c = await tv.loadCheckpoint(path);
    expect(c.report.status).toBe('unverified');
    const t = await c.tensor('a.bias');
    expect(Buffer.from(t.data as Uint8Array)).toEqual(Buffer.from(tensors()['a.bias']));
    expect(c.report.repairedChunks).toEqual([0]);
    c.close();
    expect(opened(path)).toBe(1); // repaired: the fast path takes it again
    // A value of chunk 0 flipped in the outboard: the values no longer merge to the sealed leaf, so the
    // header is checked by its digest (taken, 0 pieces), and views hash whole chunks as before.
    const ob = readFileSync(`${path}.tvob`);
    writeFileSync(`${path}.tvob`, Buffer.from(ob).fill(0x55, 40, 72));
    expect(opened(path)).toBe(0);
    const c2 = await tv.loadCheckpoint(path);
    expect(Buffer.from((await c2.tensor('a.bias')).data as Uint8Array)).toEqual(
      Buffer.from(tensors()['a.bias']),
    );
    c2.close();
    writeFileSync(`${path}.tvob`, ob);
    // A checkpoint smaller than one chunk (chunk 0 not full): no pieces, the digest.
    const small = fresh();
    await tv.saveCheckpoint(small, { x: new Uint8Array(1000).fill(3) });
    expect(opened(small)).toBe(0);
  });

  it('a header changed between its read and its check is not handed out: the header checked is the one parsed', async () => {
    // Defect: the open parsed the header from a read of the file, then checked the header's bytes
    // where they were mapped. A writer that put the genuine header back in between (the test hook
    // writes it right after the read) had a forged header accepted: here `a.bias` read as I8.
    type Hooked = { __testAfterHeaderRead?: (path: string, nth: number, bytes: Buffer) => void };
    const hook = (native() as unknown as Hooked).__testAfterHeaderRead;
    if (hook === undefined) throw new Error('the addon was built without TV_TEST_HOOKS=1');
    const cases = [
      { what: 'fast path, through the outboard', nth: 1, outboard: true },
      { what: 'fast path, by the header digest', nth: 1, outboard: false },
      { what: 'step-by-step path', nth: 2, outboard: true },
    ];
    for (const c of cases) {
      const path = fresh();
      await tv.saveCheckpoint(path, tensors(), { ecc: 'off', metadata: {} });
      if (!c.outboard) rmSync(`${path}.tvob`);
      const genuine = readFileSync(path);
      const headerEnd = 8 + Number(genuine.readBigUInt64LE(0));
      const forged = Buffer.from(genuine);
      const at = forged.indexOf('"U8"', forged.indexOf('"a.bias"'));
      expect(at).toBeGreaterThan(0);
      expect(at).toBeLessThan(headerEnd);
      forged[at + 1] = 'I'.charCodeAt(0); // "I8": the same size, another dtype
      writeFileSync(path, forged);
      hook(path, c.nth, genuine.subarray(0, headerEnd));
      const k = await tv.loadCheckpoint(path);
      expect(readFileSync(path).equals(genuine), c.what).toBe(true); // the hook wrote
      expect(k.info('a.bias').dtype, c.what).toBe('U8');
      expect(
        Buffer.from((await k.tensor('a.bias')).data as Uint8Array).equals(Buffer.from(tensors()['a.bias'])),
        c.what,
      ).toBe(true);
      k.close();
    }
  });

  it('a plain checkpoint with requireHmac is refused before anything is mapped', async () => {
    const { path } = await saved();
    const e = await rejects(tv.loadCheckpoint(path, { hmacKey: 'k', requireHmac: true }));
    expect(e.code).toBe('TV_CHECKPOINT_HMAC_REQUIRED');
  });
});

describe('the open checks the sidecar and its seal in the addon (one call)', () => {
  // Characters where JSON writers and sorters differ: escapes, controls, DEL, U+2028, a private-use
  // BMP character (sorts after surrogate pairs in UTF-16, before them by code point), astral ones.
  const CHARS = [
    'a',
    'Z',
    '0',
    ' ',
    '"',
    '\\',
    '/',
    '\u0000',
    '\u0008',
    '\u001f',
    '\u007f',
    '\u2028',
    'é',
    '\ue000',
    '\uffff',
    '😀',
    '𝄞',
    '\n',
    '\t',
  ];
  function value(r: () => number, depth: number): unknown {
    const k = r();
    const str = (): string => {
      let s = '';
      const n = Math.floor(r() * 6);
      for (let i = 0; i < n; i++) s += CHARS[Math.floor(r() * CHARS.length)];
      return s;
    };
    if (depth > 3 || k < 0.3) {
      const t = Math.floor(r() * 8);
      if (t === 0) return null;
      if (t === 1) return r() < 0.5;
      if (t === 2) return str();
      if (t === 3) return Math.floor(r() * 2 ** 31) - 2 ** 30;
      if (t === 4)
        return (Math.floor(r() * 2 ** 21) * 2 ** 32 + Math.floor(r() * 2 ** 32)) * 2 ** Math.floor(r() * 40); // beyond 2^53
      if (t === 5) {
        // A double from random bits (finite only).
        const b = Buffer.alloc(8);
        b.writeUInt32LE(Math.floor(r() * 2 ** 32), 0);
        b.writeUInt32LE(Math.floor(r() * 2 ** 32), 4);
        const x = b.readDoubleLE(0);
        return Number.isFinite(x) ? x : 0.5;
      }
      if (t === 6)
        return [0.1, 1e21, 1e-7, 5e-324, 1.7976931348623157e308, 123e-20, 0.30000000000000004, 2 ** 53 + 2][
          Math.floor(r() * 8)
        ];
      return r() * 1000 - 500;
    }
    if (k < 0.6) return Array.from({ length: Math.floor(r() * 4) }, () => value(r, depth + 1));
    const o: Record<string, unknown> = {};
    const n = Math.floor(r() * 5);
    for (let i = 0; i < n; i++) {
      const key = r() < 0.1 ? ['__proto__', 'toJSON', '', 'constructor'][Math.floor(r() * 4)] : str();
      Object.defineProperty(o, key as string, {
        value: value(r, depth + 1),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return o;
  }

  /** The sidecar with `metadataText` as its metadata, sealed as the writer seals it (JavaScript's canonical form). */
  type Side = { integrity_hash: string; tensorvault: tv.IntegrityBlock; metadata: Record<string, unknown> };
  function reseal(side: Side, metadataText: string, key?: string): string {
    const metadata = JSON.parse(metadataText);
    const { leaves: _l, seal: _s, ...rest } = side.tensorvault;
    const seal = sealOf(rest, metadata, side.integrity_hash, key);
    const body = JSON.stringify(
      { ...side, metadata: '@@META@@', tensorvault: { ...side.tensorvault, seal } },
      null,
      2,
    );
    return body.replace('"@@META@@"', metadataText);
  }

  it("the metadata it hands out is the sidecar's as JSON.parse reads it, for random metadata (200 cases)", async () => {
    const { path } = await saved();
    const side = JSON.parse(readFileSync(`${path}.meta.json`, 'utf8'));
    const r = rng(20261204);
    for (let i = 0; i < 200; i++) {
      const m = value(r, 1);
      const meta = m !== null && typeof m === 'object' && !Array.isArray(m) ? m : { v: m };
      const text = JSON.stringify(meta);
      writeFileSync(`${path}.meta.json`, reseal(side, text));
      const p = parseCheckpoint(path, { keyedOnly: false });
      const taken = p.opened !== undefined;
      p.opened?.file.close();
      p.opened?.outboard?.close();
      // Taken means the addon's canonical form matched JavaScript's (the seal was made by JavaScript).
      expect(taken && p.sealChecked === true, text).toBe(true);
      expect(JSON.stringify(p.metadata), text).toBe(text);
      expect(p.metadata, text).toEqual(JSON.parse(text));
    }
  });

  it('repeated keys keep their first place, -0 keeps its sign, a lone surrogate steps aside (and still loads)', async () => {
    const { path } = await saved();
    const side = JSON.parse(readFileSync(`${path}.meta.json`, 'utf8'));
    const cases: [string, boolean][] = [
      ['{"b": 1, "x": -0, "a": 2.50, "b": 3, "n": 1E21, "big": 123456789012345678901}', true],
      ['{"s": "\\ud83d\\ude00\\u00e9\\u2028", "t": "\\/"}', true],
      ['{"s": "\\ud800"}', false],
    ];
    for (const [text, fast] of cases) {
      writeFileSync(`${path}.meta.json`, reseal(side, text));
      const p = parseCheckpoint(path, { keyedOnly: false });
      expect(p.opened !== undefined, text).toBe(fast);
      p.opened?.file.close();
      p.opened?.outboard?.close();
      const want = JSON.parse(text);
      expect(Object.keys(p.metadata), text).toEqual(Object.keys(want));
      for (const k of Object.keys(want))
        expect(Object.is(p.metadata[k], want[k]) || p.metadata[k] === want[k], `${text} ${k}`).toBe(true);
      const c = await tv.loadCheckpoint(path);
      expect(c.metadata, text).toEqual(want);
      expect(c.report.seal).toBe('ok');
      c.close();
    }
    expect(Object.is(JSON.parse(cases[0]?.[0] ?? '').x, -0)).toBe(true);
  });

  it('a metadata change the seal does not cover is refused on the fast path and reported by the loader', async () => {
    for (const key of [undefined, 'k3']) {
      const { path } = await saved(key === undefined ? {} : { hmacKey: key });
      const text = readFileSync(`${path}.meta.json`, 'utf8');
      const side = JSON.parse(text);
      side.metadata.version = 'tampered';
      writeFileSync(`${path}.meta.json`, JSON.stringify(side, null, 2));
      const p = parseCheckpoint(path, { keyedOnly: false, key });
      expect(p.opened, String(key)).toBeUndefined();
      const e = await rejects(tv.loadCheckpoint(path, { hmacKey: key ?? null }));
      expect(e.code).toBe('TV_CHECKPOINT_INTEGRITY');
      expect(e.context.reason).toBe('seal');
      // Resealed with the wrong key: the same.
      if (key !== undefined) {
        writeFileSync(`${path}.meta.json`, reseal(side, JSON.stringify(side.metadata), 'other'));
        expect(parseCheckpoint(path, { keyedOnly: true, key }).opened).toBeUndefined();
        expect((await rejects(tv.loadCheckpoint(path, { hmacKey: key }))).context.reason).toBe('seal');
        // With the right key the fast path takes it and checks the seal there.
        writeFileSync(`${path}.meta.json`, reseal(side, JSON.stringify(side.metadata), key));
        const q = parseCheckpoint(path, { keyedOnly: true, key });
        expect(q.opened).toBeDefined();
        expect(q.sealChecked).toBe(true);
        q.opened?.file.close();
        q.opened?.outboard?.close();
        // Without the key: opened, but the seal left unchecked (the key policy decides).
        const u = parseCheckpoint(path, { keyedOnly: false });
        expect(u.opened).toBeDefined();
        expect(u.sealChecked).toBe(false);
        u.opened?.file.close();
        u.opened?.outboard?.close();
      }
    }
  });
});
