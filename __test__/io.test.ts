// File plumbing shared by every reader and writer (src/io, core io/): special files are refused with
// a typed error at once, never waited on (issue 13: a FIFO hung the libuv pool forever), and never
// replaced (issue 17: a writer renamed a regular file over /dev/null).
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { atomicWriteFile, atomicWriteFileSync, tempStem } from '../dist/io/atomic.js';
import { native } from '../dist/native/index.js';
import { holdLocks } from './helpers/lock-holder';
import { tempDir } from './helpers/tmp';

const dir = tempDir('tv-io-');
let seq = 0;
const fresh = (name: string) => join(dir, `${seq++}-${name}`);

function fifo(name: string): string {
  const p = fresh(name);
  const r = spawnSync('mkfifo', [p]);
  if (r.status !== 0) throw new Error(`mkfifo failed: ${r.stderr}`);
  return p;
}

/** A private character device like /dev/null (1, 3), or undefined when mknod is not permitted. */
function privateNull(name: string): string | undefined {
  const p = fresh(name);
  const r = spawnSync('mknod', [p, 'c', '1', '3']);
  return r.status === 0 ? p : undefined;
}
const isRoot = process.getuid?.() === 0;

/** The promise's rejection code, or a failure if it takes more than `ms` (a hang). */
async function codeOf(p: Promise<unknown> | (() => unknown), ms = 5_000): Promise<string> {
  const run = typeof p === 'function' ? Promise.resolve().then(p) : p;
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve('HUNG'), ms);
  });
  const outcome = run.then(
    () => 'RESOLVED',
    (e: unknown) => (e instanceof tv.TensorVaultError ? e.code : `untyped: ${String(e)}`),
  );
  const got = await Promise.race([outcome, hang]);
  clearTimeout(timer);
  return got;
}

describe('readers refuse what is not a regular file, at once', () => {
  it('a FIFO with no writer: every reader says TV_NOT_A_FILE instead of hanging', async () => {
    const f = fifo('in.fifo');
    expect(await codeOf(tv.hashFile(f))).toBe('TV_NOT_A_FILE');
    expect(await codeOf(tv.openSafetensors(f))).toBe('TV_NOT_A_FILE');
    expect(await codeOf(tv.protect(f))).toBe('TV_NOT_A_FILE');
    // verify looks for the sidecar first: a typed answer at once is what matters here.
    expect(await codeOf(tv.verify(f))).toMatch(/^TV_NOT_(A_FILE|FOUND)$/);
    expect(await codeOf(() => tv.readRingLog(f))).toBe('TV_NOT_A_FILE');
    expect(await codeOf(tv.verifyBackup(f))).toBe('TV_NOT_A_FILE');
    expect(await codeOf(tv.restoreBackup(f, fresh('restore-dest')))).toBe('TV_NOT_A_FILE');
    expect(await codeOf(tv.openShardedSafetensors(f))).toBe('TV_NOT_A_FILE');
  });

  it('a sharded index naming a FIFO shard fails on that shard with TV_NOT_A_FILE', async () => {
    const d = fresh('sharded');
    mkdirSync(d);
    spawnSync('mkfifo', [join(d, 'model-00001-of-00001.safetensors')]);
    writeFileSync(
      join(d, 'model.safetensors.index.json'),
      JSON.stringify({ metadata: {}, weight_map: { a: 'model-00001-of-00001.safetensors' } }),
    );
    const s = await tv.openShardedSafetensors(join(d, 'model.safetensors.index.json'));
    expect(await codeOf(s.tensor('a'))).toBe('TV_NOT_A_FILE');
  });

  it('/dev/zero is refused by the ring log (it was read forever)', async () => {
    expect(await codeOf(() => tv.readRingLog('/dev/zero'))).toBe('TV_NOT_A_FILE');
    expect(await codeOf(() => new tv.RingFileLog('/dev/zero'))).toBe('TV_NOT_A_FILE');
  });

  it('the CLI says so with the I/O exit code and a typed message, without waiting', () => {
    const f = fifo('cli.fifo');
    const cli = join(__dirname, '..', 'dist', 'cli', 'main.js');
    for (const args of [
      ['hash', f],
      ['inspect', f],
      ['log', 'tail', f],
    ]) {
      const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 20_000 });
      expect(r.signal, args.join(' ')).toBeNull();
      expect(r.status, args.join(' ')).toBe(6);
      expect(r.stderr, args.join(' ')).toContain('TV_NOT_A_FILE');
    }
  });
});

describe('writers never replace what is not a regular file', () => {
  const tensors = { a: new Float32Array([1, 2, 3, 4]) };

  /** Each writer, aimed at `target`. */
  const writers: [string, (target: string) => Promise<unknown> | unknown][] = [
    ['saveSafetensors', (t) => tv.saveSafetensors(t, tensors)],
    [
      'protect (sidecar)',
      async (t) => {
        const src = fresh('src.bin');
        writeFileSync(src, Buffer.alloc(100_000, 7));
        return tv.protect(src, { sidecar: t });
      },
    ],
    ['RingFileLog', (t) => new tv.RingFileLog(t).close()],
  ];

  it('a FIFO, a folder and a dangling symlink are refused and left as they were', async () => {
    for (const [name, write] of writers) {
      const f = fifo(`${name}.fifo`);
      expect(await codeOf(() => write(f)), name).toBe('TV_NOT_A_FILE');
      expect(lstatSync(f).isFIFO(), name).toBe(true);
      const d = fresh(`${name}.dir`);
      mkdirSync(d);
      expect(await codeOf(() => write(d)), name).toBe('TV_IS_DIRECTORY');
      expect(lstatSync(d).isDirectory(), name).toBe(true);
      const dangling = fresh(`${name}.dangling`);
      symlinkSync(fresh('nowhere'), dangling);
      expect(await codeOf(() => write(dangling)), name).toBe('TV_NOT_A_FILE');
      expect(lstatSync(dangling).isSymbolicLink(), name).toBe(true);
    }
  });

  it('a symlink to a regular file is followed: its target is replaced, the link stays', async () => {
    const real = fresh('real.safetensors');
    writeFileSync(real, 'old');
    const link = fresh('link.safetensors');
    symlinkSync(real, link);
    await tv.saveSafetensors(link, tensors);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect((await tv.openSafetensors(real)).tensor('a').data).toEqual(new Float32Array([1, 2, 3, 4]));
  });

  it.skipIf(!isRoot)('a private /dev/null (mknod c 1 3) stays a device for every writer', async () => {
    for (const [name, write] of writers) {
      const dev = privateNull(`${name}.nul`);
      if (dev === undefined) throw new Error('mknod failed although running as root');
      expect(await codeOf(() => write(dev)), name).toBe('TV_NOT_A_FILE');
      expect(lstatSync(dev).isCharacterDevice(), name).toBe(true);
    }
    // The reproduction from issue 17, and the sharded writer's index through the same guard.
    const dev = privateNull('repro.nul') as string;
    await expect(tv.saveSafetensors(dev, { a: new Float32Array(4) })).rejects.toMatchObject({
      code: 'TV_NOT_A_FILE',
    });
    expect(lstatSync(dev).isCharacterDevice()).toBe(true);
    const out = fresh('shards');
    mkdirSync(out);
    spawnSync('mknod', [join(out, 'model.safetensors.index.json'), 'c', '1', '3']);
    expect(await codeOf(tv.saveShardedSafetensors(out, tensors))).toBe('TV_NOT_A_FILE');
    expect(lstatSync(join(out, 'model.safetensors.index.json')).isCharacterDevice()).toBe(true);
    expect(readFileSync('/dev/null').length).toBe(0);
  });
});

describe('replacing a file keeps what protects it (issue 13)', () => {
  it('protect refuses a sidecar that is the protected file itself (same name, hard link, symlink)', async () => {
    const data = fresh('data.bin');
    const bytes = Buffer.alloc(200_000, 9);
    writeFileSync(data, bytes);
    const hard = fresh('hard.bin');
    linkSync(data, hard);
    const soft = fresh('soft.bin');
    symlinkSync(data, soft);
    for (const sidecar of [data, hard, soft]) {
      await expect(tv.protect(data, { sidecar })).rejects.toMatchObject({
        code: 'TV_INVALID_ARGUMENT',
        context: { argument: 'sidecar' },
      });
    }
    expect(readFileSync(data).equals(bytes)).toBe(true);
  });

  it('a replaced file keeps its mode; a sidecar takes the mode of the file it protects', async () => {
    const ckpt = fresh('secret.safetensors');
    writeFileSync(ckpt, 'old');
    chmodSync(ckpt, 0o600);
    await tv.saveSafetensors(ckpt, { a: new Float32Array(4) });
    expect(statSync(ckpt).mode & 0o777).toBe(0o600);
    const r = await tv.protect(ckpt, { k: 1, m: 1, chunkSize: 4096 });
    expect(statSync(r.sidecarPath).mode & 0o777).toBe(0o600);
    // The ring log's compaction (the TypeScript atomic write) keeps the mode too.
    const log = fresh('secret.log');
    writeFileSync(log, '');
    chmodSync(log, 0o600);
    const ring = new tv.RingFileLog(log, { capacityLines: 2, compactionSlack: 0, flushIntervalMs: 0 });
    for (let i = 0; i < 5; i++) ring.info(`line ${i}`);
    ring.close();
    expect(statSync(log).mode & 0o777).toBe(0o600);
    expect(tv.readRingLog(log).records.length).toBe(2);
  });
});

describe("a re-saved checkpoint set keeps its files' modes and owners (QA qa22-ident 1)", () => {
  const ecc = { tensorvault: 'medium', pyfolds: 'off', 'pyfolds-ecc': 'med' } as const;
  for (const layout of ['tensorvault', 'pyfolds', 'pyfolds-ecc'] as const) {
    it(`${layout}: every file of a private set stays 0600 (and its owner, as root) after a save over it`, async () => {
      const d = fresh(`resave-${layout}`);
      mkdirSync(d);
      const p = join(d, 'm.safetensors');
      const old = process.umask(0o022);
      try {
        await tv.saveCheckpoint(
          p,
          { w: new Float32Array(70_000).fill(1) },
          { layout, ecc: ecc[layout], hmacKey: null },
        );
        const names = readdirSync(d).filter((f) => !f.startsWith('.'));
        expect(names.length).toBeGreaterThan(1);
        for (const f of names) {
          chmodSync(join(d, f), 0o600);
          if (isRoot) chownSync(join(d, f), 65534, 65534);
        }
        await tv.saveCheckpoint(
          p,
          { w: new Float32Array(70_000).fill(2) },
          { layout, ecc: ecc[layout], hmacKey: null },
        );
        const after = readdirSync(d).filter((f) => !f.startsWith('.'));
        expect(after.sort()).toEqual(names.sort());
        for (const f of after) {
          const st = statSync(join(d, f));
          expect((st.mode & 0o777).toString(8), f).toBe('600');
          if (isRoot) expect([st.uid, st.gid], f).toEqual([65534, 65534]);
        }
      } finally {
        process.umask(old);
      }
      expect((await (await tv.loadCheckpoint(p, { hmacKey: null })).tensor('w')).data[0]).toBe(2);
    });
  }

  it("a sidecar new to the set takes the old weights' mode (a private checkpoint stays private)", async () => {
    const d = fresh('resave-new-sidecar');
    mkdirSync(d);
    const p = join(d, 'm.safetensors');
    const old = process.umask(0o022);
    try {
      await tv.saveCheckpoint(p, { w: new Float32Array(70_000) }, { hmacKey: null });
      chmodSync(p, 0o640);
      await tv.saveCheckpoint(p, { w: new Float32Array(70_000) }, { ecc: 'medium', hmacKey: null });
    } finally {
      process.umask(old);
    }
    expect(statSync(`${p}.tvecc`).mode & 0o777).toBe(0o640);
    expect(statSync(p).mode & 0o777).toBe(0o640);
  });
});

/** The test build's xattr hooks (`__testSetXattr` returns 0 or the errno). */
const xattrHooks = (() => {
  type Hooked = {
    __testSetXattr?: (path: string, name: string, value: Buffer) => number;
    __testGetXattr?: (path: string, name: string) => Buffer | null;
  };
  const h = native() as unknown as Hooked;
  const set = h.__testSetXattr;
  const get = h.__testGetXattr;
  if (set === undefined || get === undefined) throw new Error('the addon was built without TV_TEST_HOOKS=1');
  return { set, get };
})();
const setX = (path: string, name: string, value: string | Buffer): number =>
  xattrHooks.set(path, name, Buffer.from(value));
const getX = (path: string, name: string): string | undefined => xattrHooks.get(path, name)?.toString();
/** Whether this folder's file system takes user xattrs (checked once; the tests below skip if not). */
const userXattrs = (() => {
  const p = fresh('xattr-probe');
  writeFileSync(p, '');
  return setX(p, 'user.tv.probe', '1') === 0;
})();

/**
 * A POSIX access ACL as the kernel stores it in `system.posix_acl_access` (version 2, entries of tag,
 * permission and id): user::rw-, user:4242:r--, group::r--, mask::r--, other::--- (mode 0640).
 */
function aclBytes(): Buffer {
  const none = 0xffffffff;
  const entries: [number, number, number][] = [
    [0x01, 6, none], // ACL_USER_OBJ
    [0x02, 4, 4242], // ACL_USER
    [0x04, 4, none], // ACL_GROUP_OBJ
    [0x10, 4, none], // ACL_MASK
    [0x20, 0, none], // ACL_OTHER
  ];
  const b = Buffer.alloc(4 + entries.length * 8);
  b.writeUInt32LE(2, 0);
  entries.forEach(([tag, perm, id], i) => {
    b.writeUInt16LE(tag, 4 + i * 8);
    b.writeUInt16LE(perm, 6 + i * 8);
    b.writeUInt32LE(id, 8 + i * 8);
  });
  return b;
}

describe.skipIf(!userXattrs)(
  'replacing a file keeps its extended attributes and ACLs (QA qa22-ident 7)',
  () => {
    // Defect: every replacing writer copied only the owner and mode onto its temporary, so a file's
    // xattrs, and with them its POSIX ACL and SELinux label, were gone after the rename.
    it('a re-protected sidecar keeps its user xattrs', async () => {
      const data = fresh('x-protected.bin');
      writeFileSync(data, Buffer.alloc(40 * 4096 - 99, 7));
      const opts = { k: 4, m: 2, chunkSize: 4096 };
      const { sidecarPath } = await tv.protect(data, opts);
      expect(setX(sidecarPath, 'user.tv.sidecar', 'kept')).toBe(0);
      await tv.protect(data, opts);
      expect(getX(sidecarPath, 'user.tv.sidecar')).toBe('kept');
    });

    it('a re-saved safetensors file keeps its user xattrs', async () => {
      const st = fresh('x.safetensors');
      await tv.saveSafetensors(st, { a: new Float32Array(4) });
      expect(setX(st, 'user.tv.st', 'kept')).toBe(0);
      const { size } = statSync(st);
      await tv.saveSafetensors(st, { a: new Float32Array(8) });
      expect(statSync(st).size).toBe(size + 16); // the new content
      expect(getX(st, 'user.tv.st')).toBe('kept');
    });

    it("a file repaired with mode 'copy' keeps its user xattrs", async () => {
      const data = fresh('x-repaired.bin');
      const original = Buffer.alloc(40 * 4096 - 99, 7);
      writeFileSync(data, original);
      await tv.protect(data, { k: 4, m: 2, chunkSize: 4096 });
      expect(setX(data, 'user.tv.data', 'kept')).toBe(0);
      const { ino, mtime, atime } = statSync(data);
      const b = readFileSync(data);
      b[5 * 4096 + 33] = (b[5 * 4096 + 33] as number) ^ 0x81;
      writeFileSync(data, b);
      utimesSync(data, atime, mtime);
      const r = await tv.repair(data, { mode: 'copy' });
      expect(r.writeMode).toBe('copy');
      expect(statSync(data).ino).not.toBe(ino); // a new file, renamed over the damaged one
      expect(readFileSync(data).equals(original)).toBe(true);
      expect(getX(data, 'user.tv.data')).toBe('kept');
    });

    const ecc = { tensorvault: 'medium', pyfolds: 'off', 'pyfolds-ecc': 'med' } as const;
    for (const layout of ['tensorvault', 'pyfolds', 'pyfolds-ecc'] as const) {
      it(`${layout}: every file of a re-saved checkpoint set keeps its user xattrs`, async () => {
        const d = fresh(`x-ckpt-${layout}`);
        mkdirSync(d);
        const p = join(d, 'm.safetensors');
        const opts = { layout, ecc: ecc[layout], hmacKey: null };
        await tv.saveCheckpoint(p, { w: new Float32Array(70_000).fill(1) }, opts);
        const names = readdirSync(d).filter((f) => !f.startsWith('.'));
        expect(names.length).toBeGreaterThan(1);
        for (const f of names) expect(setX(join(d, f), 'user.tv.name', f)).toBe(0);
        await tv.saveCheckpoint(p, { w: new Float32Array(70_000).fill(2) }, opts);
        for (const f of names) expect(getX(join(d, f), 'user.tv.name'), f).toBe(f);
        expect((await (await tv.loadCheckpoint(p, { hmacKey: null })).tensor('w')).data[0]).toBe(2);
      });
    }

    it("the ring log's compaction and the event log's writer (TypeScript atomic writes) keep user xattrs", async () => {
      const log = fresh('x-ring.log');
      writeFileSync(log, '');
      expect(setX(log, 'user.tv.ring', 'kept')).toBe(0);
      const held = openSync(log, 'r'); // the old inode stays allocated: its number is not reused
      const { ino } = statSync(log);
      const ring = new tv.RingFileLog(log, { capacityLines: 2, compactionSlack: 0, flushIntervalMs: 0 });
      for (let i = 0; i < 5; i++) ring.info(`line ${i}`);
      ring.close();
      closeSync(held);
      expect(statSync(log).ino).not.toBe(ino); // compacted: a new file renamed over it
      expect(tv.readRingLog(log).records.length).toBe(2);
      expect(getX(log, 'user.tv.ring')).toBe('kept');

      // atomicWriteFile: the event log's metadata and segments, manifests, journals.
      const meta = fresh('x-meta.json');
      writeFileSync(meta, '{}');
      expect(setX(meta, 'user.tv.meta', 'kept')).toBe(0);
      await atomicWriteFile(meta, '{"a":1}');
      expect(readFileSync(meta, 'utf8')).toBe('{"a":1}');
      expect(getX(meta, 'user.tv.meta')).toBe('kept');
      const sync = fresh('x-sync.bin');
      writeFileSync(sync, 'old');
      expect(setX(sync, 'user.tv.sync', 'kept')).toBe(0);
      atomicWriteFileSync(sync, Buffer.from('new'));
      expect(getX(sync, 'user.tv.sync')).toBe('kept');
    });

    it('a POSIX ACL is kept across a re-save (core writer) and an atomic write (TypeScript writer)', async (ctx) => {
      const st = fresh('x-acl.safetensors');
      await tv.saveSafetensors(st, { a: new Float32Array(4) });
      const json = fresh('x-acl.json');
      writeFileSync(json, '{}');
      const acl = aclBytes();
      const rc = setX(st, 'system.posix_acl_access', acl);
      if (rc !== 0) ctx.skip(`this file system takes no POSIX ACLs (errno ${rc})`);
      expect(setX(json, 'system.posix_acl_access', acl)).toBe(0);
      expect(statSync(st).mode & 0o777).toBe(0o640); // the ACL set the mode
      await tv.saveSafetensors(st, { a: new Float32Array(8) });
      await atomicWriteFile(json, '{"b":2}');
      for (const p of [st, json]) {
        expect(xattrHooks.get(p, 'system.posix_acl_access')?.equals(acl), p).toBe(true);
        expect(statSync(p).mode & 0o777, p).toBe(0o640);
      }
    });
  },
);

describe('a checkpoint through a symlink is the set beside its target (QA qa22-ident 2)', () => {
  it("a save through a link replaces the target's set and the link stays; load, verify and repair follow it", async () => {
    const d = fresh('ckpt-link');
    mkdirSync(join(d, 'store'), { recursive: true });
    mkdirSync(join(d, 'run'));
    const real = join(d, 'store', 'model.safetensors');
    const link = join(d, 'run', 'model.safetensors');
    await tv.saveCheckpoint(real, { w: new Float32Array(300_000) }, { ecc: 'medium', hmacKey: null });
    symlinkSync(real, link);
    await tv.saveCheckpoint(
      link,
      { w: new Float32Array(300_000).fill(42) },
      { ecc: 'medium', hmacKey: null },
    );
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readdirSync(join(d, 'run'))).toEqual(['model.safetensors']);
    expect((await tv.openSafetensors(real)).tensor('w').data[0]).toBe(42);
    expect(
      (await (await tv.loadCheckpoint(link, { hmacKey: null, verify: 'full' })).tensor('w')).data[7],
    ).toBe(42);
    expect((await tv.verifyCheckpoint(link, { hmacKey: null })).status).toBe('intact');
    // Damage the target's bytes: a repair through the link finds the target's parity and fixes it in place.
    const fd = openSync(real, 'r+');
    writeSync(fd, Buffer.alloc(64, 0xee), 0, 64, 200_000);
    closeSync(fd);
    expect((await tv.repairCheckpoint(link, { hmacKey: null })).status).toBe('repaired');
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect((await tv.verifyCheckpoint(real, { hmacKey: null })).status).toBe('intact');
  });

  it('a save through a dangling link is refused and nothing is written', async () => {
    const d = fresh('ckpt-dangling');
    mkdirSync(d);
    const link = join(d, 'model.safetensors');
    symlinkSync(join(d, 'nowhere.safetensors'), link);
    await expect(
      tv.saveCheckpoint(link, { w: new Float32Array(4) }, { hmacKey: null }),
    ).rejects.toMatchObject({
      code: 'TV_NOT_A_FILE',
    });
    expect(readdirSync(d)).toEqual(['model.safetensors']);
  });
});

describe('names near NAME_MAX (255 bytes) can be written (QA qa22-ident 5)', () => {
  it('a 252-byte safetensors name, a 245-byte protected file, a 240-byte checkpoint and a 250-byte ring log', async () => {
    const d = fresh('name-max');
    mkdirSync(d);
    // 252 bytes with a two-byte character across the 190-byte cut of a temporary's name.
    const st = join(d, `${'a'.repeat(187)}é${'b'.repeat(51)}.safetensors`);
    expect(Buffer.byteLength(basename(st))).toBe(252);
    // A dead writer's temporary of that name, named as the TypeScript side names them: the core's
    // writer (saveSafetensors) sweeps it, so both sides cut and hash a long name the same way.
    const dead = join(d, `.${tempStem(basename(st))}.4194999.0.tmp`);
    writeFileSync(dead, 'leftover');
    await tv.saveSafetensors(st, { a: new Float32Array([1, 2, 3, 4]) });
    expect((await tv.openSafetensors(st)).tensor('a').data).toEqual(new Float32Array([1, 2, 3, 4]));
    expect(existsSync(dead)).toBe(false);
    const data = join(d, 'c'.repeat(245));
    writeFileSync(data, Buffer.alloc(100_000, 1));
    const r = await tv.protect(data);
    expect(Buffer.byteLength(basename(r.sidecarPath))).toBe(251);
    expect((await tv.verify(data)).status).toBe('intact');
    const ck = join(d, `${'e'.repeat(228)}.safetensors`);
    await tv.saveCheckpoint(ck, { w: new Float32Array(1000).fill(3) }, { hmacKey: null, ecc: 'medium' });
    expect((await tv.verifyCheckpoint(ck, { hmacKey: null })).status).toBe('intact');
    const ringPath = join(d, 'r'.repeat(250));
    const ring = new tv.RingFileLog(ringPath, { capacityLines: 1, compactionSlack: 0, flushIntervalMs: 0 });
    for (let i = 0; i < 3; i++) ring.info(`line ${i}`);
    ring.close();
    expect(tv.readRingLog(ringPath).records.length).toBe(1);
    expect(readdirSync(d).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    // A short name's temporary holds it whole, as before.
    expect(tempStem('m.safetensors')).toBe('m.safetensors');
  });
});

describe('temporary files of dead writers (issue 13)', () => {
  // Regression (2026-12-04): every write listed its whole folder, so writing N files into one folder
  // cost O(N²): protect and saveSafetensors took 17 ms per file at 50,000 entries (0.6 ms in a small
  // folder), saveCheckpoint 62 ms. A large folder's listing is now reused for a time proportional to
  // its size; a small folder is listed on every write.
  it('a large folder is not listed on every write (TypeScript writers and checkpoint saves)', async () => {
    const { atomicWriteFile, lastListing } = await import('../dist/io/atomic.js');
    const big = fresh('big');
    mkdirSync(big);
    for (let i = 0; i < 2100; i++) writeFileSync(join(big, `f${i}`), '');
    const dead = join(big, `.a.json.4194999.0123456789ab.tmp`);
    writeFileSync(dead, 'x');
    await atomicWriteFile(join(big, 'a.json'), '{}');
    expect(existsSync(dead)).toBe(false); // present at the listing: removed
    const last = lastListing(big);
    expect(last?.entries).toBeGreaterThan(2100);
    const at = last?.at;
    (last as { entries: number }).entries = 2 ** 30; // a long window, whatever this machine's speed
    for (let i = 0; i < 10; i++) await atomicWriteFile(join(big, `b${i}.json`), '{}');
    for (let i = 0; i < 3; i++)
      await tv.saveCheckpoint(join(big, 'c.safetensors'), { w: new Float32Array([i]) });
    expect(lastListing(big)?.at).toBe(at);
    // Once the window is over, the next write lists the folder again and removes a new dead temp.
    Object.assign(lastListing(big) as object, { entries: 2048, at: performance.now() - 60_000 });
    const dead2 = join(big, `.d.json.4194999.0123456789ab.tmp`);
    writeFileSync(dead2, 'x');
    await atomicWriteFile(join(big, 'd.json'), '{}');
    expect(lastListing(big)?.at).toBeGreaterThan(at as number);
    expect(existsSync(dead2)).toBe(false);
  });

  it('the next write to the same target removes a dead writer’s temp and keeps a live one’s', async () => {
    const ckpt = fresh('model.safetensors');
    const base = ckpt.slice(0, ckpt.lastIndexOf('/'));
    const name = ckpt.slice(ckpt.lastIndexOf('/') + 1);
    // pid 4194999 is above the kernel's pid_max (2^22): it cannot be running.
    const deadRust = join(base, `.${name}.4194999.0.tmp`);
    const liveRust = join(base, `.${name}.${process.pid}.9.tmp`);
    writeFileSync(deadRust, 'x'.repeat(1000));
    writeFileSync(liveRust, 'y');
    await tv.saveSafetensors(ckpt, { a: new Float32Array(2) });
    expect(existsSync(deadRust)).toBe(false);
    expect(existsSync(liveRust)).toBe(true);
    // The TypeScript writers (manifests, the event log's files) use the same rule.
    const { atomicWriteFile } = await import('../dist/io/index.js');
    const json = fresh('state.json');
    const jb = json.slice(json.lastIndexOf('/') + 1);
    const deadTs = join(base, `.${jb}.4194999.0123456789ab.tmp`);
    const liveTs = join(base, `.${jb}.${process.pid}.0123456789ab.tmp`);
    writeFileSync(deadTs, 'x');
    writeFileSync(liveTs, 'y');
    // A live writer holds its temp's lock (its own open file description).
    const fd = openSync(liveTs, 'r');
    try {
      expect(native().tryLockFd(fd, liveTs)).toBe(true);
      await atomicWriteFile(json, '{}');
      expect(existsSync(deadTs)).toBe(false);
      expect(existsSync(liveTs)).toBe(true);
    } finally {
      closeSync(fd);
    }
  });

  it("a temp of this process's own PID whose lock is free (a write stopped in this process) goes at the next write of its target", async () => {
    // Regression: the TypeScript writers' sweep kept every temp whose PID was alive, and this
    // process's own always is: a write stopped inside this process (a worker thread terminated
    // mid-write) left its temp, as large as the file, until the process exited. A live writer of this
    // process, in any thread, holds its temp's flock; one whose lock is free has no writer left.
    const { atomicWriteFile, atomicWriteFileSync } = await import('../dist/io/index.js');
    const json = fresh('own.json');
    const base = dirname(json);
    const stopped = join(base, `.${basename(json)}.${process.pid}.0a0b0c0d0e0f.tmp`);
    const live = join(base, `.${basename(json)}.${process.pid}.0f0e0d0c0b0a.tmp`);
    const other = join(base, `.other.json.${process.pid}.0a0b0c0d0e0f.tmp`);
    for (const p of [stopped, live, other]) writeFileSync(p, 'partial');
    const fd = openSync(live, 'r');
    try {
      expect(native().tryLockFd(fd, live)).toBe(true);
      await atomicWriteFile(json, '{}');
      expect([existsSync(stopped), existsSync(live), existsSync(other)]).toEqual([false, true, true]);
    } finally {
      closeSync(fd); // the live writer ends
    }
    // The synchronous writer sweeps the same way; another target's temp is left to that target's writes.
    atomicWriteFileSync(json, Buffer.from('{}'));
    expect([existsSync(live), existsSync(other)]).toEqual([false, true]);
    expect(readFileSync(json, 'utf8')).toBe('{}');
  });
});

describe('temporary files of live writers in another PID namespace', () => {
  // Defect: the sweeps (TypeScript and core) removed `.NAME.PID.X.tmp` whenever PID did not run here. A
  // folder shared by two PID namespaces (two containers) holds live writers' temps whose PID is free
  // or someone else's here: the sweep removed them and those writers' renames failed. A writer now
  // holds a `flock` on its temp until after the rename; a sweep removes only temps it can lock.
  it('a temp whose PID is not running here is kept while its lock is held, removed once it is not', async () => {
    const { atomicWriteFile } = await import('../dist/io/index.js');
    const json = fresh('state.json');
    const base = dirname(json);
    const ckpt = fresh('model.safetensors');
    // 4194999 is above the kernel's pid_max (2^22): not running here, as in another namespace.
    const rustTemp = join(base, `.${basename(ckpt)}.4194999.0.tmp`);
    const tsTemp = join(base, `.${basename(json)}.4194999.0123456789ab.tmp`);
    writeFileSync(rustTemp, 'x'.repeat(1000));
    writeFileSync(tsTemp, 'y');
    // The "other container's" writers: a child holding both temps' locks, as a writer does.
    const native = join(__dirname, '..', 'dist', 'native', 'index.js');
    const holder = await holdLocks(
      `const fs = require('node:fs'); const { native } = require(${JSON.stringify(native)});
       for (const p of ${JSON.stringify([rustTemp, tsTemp])})
         if (!native().tryLockFd(fs.openSync(p, 'r'), p)) throw new Error('not locked');`,
    );
    try {
      await tv.saveSafetensors(ckpt, { a: new Float32Array(2) }); // the core's sweep
      await atomicWriteFile(json, '{}'); // the TypeScript sweep
      expect(existsSync(rustTemp)).toBe(true);
      expect(existsSync(tsTemp)).toBe(true);
      await holder.stop();
      await tv.saveSafetensors(ckpt, { a: new Float32Array(2) });
      await atomicWriteFile(json, '{}');
      expect(existsSync(rustTemp)).toBe(false);
      expect(existsSync(tsTemp)).toBe(false);
    } finally {
      await holder.stop();
    }
  });

  it("a TypeScript writer's temp is locked while it is written (a sweep in another process cannot take it)", async () => {
    const { createLockedTemp } = await import('../dist/io/index.js');
    const target = fresh('locked.json');
    const { fh, tmp } = await createLockedTemp(target, 0o644);
    try {
      expect(basename(tmp).startsWith(`.${basename(target)}.${process.pid}.`)).toBe(true);
      const script = `const fs = require('node:fs'); const { native } = require(${JSON.stringify(join(__dirname, '..', 'dist', 'native', 'index.js'))});
        process.stdout.write(String(native().tryLockFd(fs.openSync(${JSON.stringify(tmp)}, 'r'), 'x')));`;
      const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
      expect(r.stdout).toBe('false');
    } finally {
      await fh.close();
    }
  });
});

describe('write errors name the destination, not the temporary file (QA)', () => {
  // Regression: a write that failed on its temporary file (`.NAME.PID.X.tmp`) reported that file:
  // the native writers in the message and `context.path`, the TS writers in the message.
  type Reported = { code: string; message: string; context: Record<string, unknown> };
  /** The error is about `dest`; the temporary beside it is in `tempPath` only. */
  function aboutDestination(err: Reported, dest: string, code: string): void {
    expect(err.code, err.message).toBe(code);
    expect(err.context.path).toBe(dest);
    const temp = err.context.tempPath;
    expect(typeof temp, err.message).toBe('string');
    expect(temp as string).toMatch(/\/\.[^/]+\.tmp$/);
    expect(dirname(temp as string)).toBe(dirname(dest));
    expect(err.message).toContain(dest);
    expect(err.message).not.toContain(basename(temp as string));
  }
  const rejection = (p: Promise<unknown> | (() => unknown)) =>
    Promise.resolve()
      .then(typeof p === 'function' ? p : () => p)
      .then(
        () => undefined,
        (e: unknown) => e,
      );

  it('a destination whose folder does not exist: TV_NOT_FOUND about the destination', async () => {
    const { atomicWriteFile, atomicWriteFileSync, atomicCopyFile } = await import('../dist/io/atomic.js');
    const missing = join(fresh('gone'), 'sub');
    const src = fresh('src.bin');
    writeFileSync(src, Buffer.alloc(70_000, 3));
    const cases: [string, () => Promise<unknown> | unknown][] = [
      ['atomicWriteFile', () => atomicWriteFile(join(missing, 'a.json'), '{}')],
      ['atomicWriteFileSync', () => atomicWriteFileSync(join(missing, 'b.json'), Buffer.from('{}'))],
      ['atomicCopyFile', () => atomicCopyFile(src, join(missing, 'c.bin'))],
      [
        'saveSafetensors',
        () => tv.saveSafetensors(join(missing, 'd.safetensors'), { x: new Float32Array(4) }),
      ],
      ['protect', () => tv.protect(src, { sidecar: join(missing, 'e.tvecc') })],
    ];
    const dests = ['a.json', 'b.json', 'c.bin', 'd.safetensors', 'e.tvecc'];
    for (const [i, [label, run]] of cases.entries()) {
      const e = await rejection(run as () => unknown);
      expect(e, label).toBeInstanceOf(tv.TensorVaultError);
      aboutDestination(e as Reported, join(missing, dests[i] as string), 'TV_NOT_FOUND');
    }
  });

  it('a write that fails midway (file-size limit, EFBIG): TV_IO about the destination, nothing left behind', () => {
    // `ulimit -f` makes every write past 64 KiB fail with EFBIG (SIGXFSZ ignored), as a full disk
    // fails with ENOSPC, in a child so that the limit stays there.
    const d = fresh('efbig');
    mkdirSync(d);
    const script = `
process.on('SIGXFSZ', () => {});
const tv = require(${JSON.stringify(join(__dirname, '..', 'dist', 'index.js'))});
const io = require(${JSON.stringify(join(__dirname, '..', 'dist', 'io', 'atomic.js'))});
const d = ${JSON.stringify(d)};
const big = new Float32Array(1 << 18);
const runs = {
  saveSafetensors: () => tv.saveSafetensors(d + '/a.safetensors', { x: big }),
  atomicWriteFile: () => io.atomicWriteFile(d + '/b.json', Buffer.alloc(1 << 20)),
  saveCheckpoint: () => tv.saveCheckpoint(d + '/c.safetensors', { x: big }),
};
(async () => {
  const out = {};
  for (const [k, run] of Object.entries(runs)) {
    try { await run(); out[k] = 'resolved'; } catch (e) { out[k] = { code: e.code, message: e.message, context: e.context }; }
  }
  out.left = require('node:fs').readdirSync(d);
  process.stdout.write(JSON.stringify(out));
})();`;
    const r = spawnSync('bash', ['-c', `ulimit -f 64 && exec "${process.execPath}" -e "$0"`, script], {
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    const dests: Record<string, string> = {
      saveSafetensors: join(d, 'a.safetensors'),
      atomicWriteFile: join(d, 'b.json'),
      saveCheckpoint: join(d, 'c.safetensors'),
    };
    for (const [k, dest] of Object.entries(dests)) {
      const e = out[k] as Reported;
      expect(e, k).not.toBe('resolved');
      aboutDestination(e, dest, 'TV_IO');
      expect(e.context.errno === 27 || e.context.errno === -27, k).toBe(true);
    }
    expect((out.left as string[]).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });
});
