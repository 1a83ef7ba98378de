// Prebuilt binaries: which platform package the loader picks (a pure function of platform, CPU and C
// library, like napi-rs's loader), that every package of `napi.targets` is defined the napi-rs way, and
// that each binary built here is what it claims: right format and CPU, the glibc baseline (read from
// the ELF's symbol version needs), the N-API entry point exported, stripped. linux-arm64-gnu also runs,
// under qemu-user with Node for arm64 from npm.
import { spawnSync } from 'node:child_process';
import { createHash, createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { protect, verify } from '../dist/index.js';
import { libcFrom, NATIVE_PATH_VARIABLES, nativeTargets } from '../dist/native/index.js';

const root = join(__dirname, '..');
const GLIBC_BASELINE = '2.17';

const TRIPLES: Record<string, string> = {
  'x86_64-unknown-linux-gnu': 'linux-x64-gnu',
  'aarch64-unknown-linux-gnu': 'linux-arm64-gnu',
  'x86_64-unknown-linux-musl': 'linux-x64-musl',
  'aarch64-apple-darwin': 'darwin-arm64',
  'x86_64-apple-darwin': 'darwin-x64',
  'x86_64-pc-windows-msvc': 'win32-x64-msvc',
};

describe('loader: platform package selection (napi-rs naming)', () => {
  const names = (platform: string, arch: string, libc?: 'glibc' | 'musl') =>
    nativeTargets(platform, arch, libc).map((t) => t.packageName);

  it('Linux picks the package of its CPU and C library', () => {
    expect(names('linux', 'x64', 'glibc')).toEqual(['tensorvault-linux-x64-gnu']);
    expect(names('linux', 'x64', 'musl')).toEqual(['tensorvault-linux-x64-musl']);
    expect(names('linux', 'arm64', 'glibc')).toEqual(['tensorvault-linux-arm64-gnu']);
  });

  it('macOS and Windows pick theirs; the file name is tensorvault.<platform>.node', () => {
    expect(nativeTargets('darwin', 'arm64', undefined)).toEqual([
      {
        platform: 'darwin-arm64',
        packageName: 'tensorvault-darwin-arm64',
        file: 'tensorvault.darwin-arm64.node',
      },
    ]);
    expect(names('darwin', 'x64')).toEqual(['tensorvault-darwin-x64']);
    expect(names('win32', 'x64')).toEqual(['tensorvault-win32-x64-msvc']);
  });

  it('platforms without a prebuilt binary get no candidate', () => {
    expect(names('linux', 'arm64', 'musl')).toEqual([]);
    expect(names('linux', 'ia32', 'glibc')).toEqual([]);
    expect(names('win32', 'arm64')).toEqual([]);
    expect(names('freebsd', 'x64')).toEqual([]);
  });

  it('honours its own override variable first, then napi-rs’s', () => {
    expect(NATIVE_PATH_VARIABLES).toEqual(['TENSORVAULT_NATIVE_PATH', 'NAPI_RS_NATIVE_LIBRARY_PATH']);
  });
});

describe('loader: C library detection (napi-rs order: /usr/bin/ldd, then the process report)', () => {
  it('ldd naming musl means musl, any other ldd means glibc', () => {
    expect(libcFrom({ ldd: '#!/bin/sh\nexec /lib/ld-musl-x86_64.so.1 --list "$@"\n', report: null })).toBe(
      'musl',
    );
    expect(libcFrom({ ldd: '#! /bin/bash\n# ldd (GNU libc) 2.36\n', report: null })).toBe('glibc');
  });

  it('without ldd: a glibc runtime version means glibc, musl’s loader among the objects means musl', () => {
    expect(libcFrom({ ldd: null, report: { header: { glibcVersionRuntime: '2.36' } } })).toBe('glibc');
    expect(
      libcFrom({ ldd: null, report: { header: {}, sharedObjects: ['/lib/ld-musl-aarch64.so.1'] } }),
    ).toBe('musl');
    expect(libcFrom({ ldd: null, report: null })).toBe('glibc');
  });

  it('this machine is glibc', () => {
    if (process.platform !== 'linux') return;
    const report = process.report.getReport() as { header: { glibcVersionRuntime?: string } };
    expect(report.header.glibcVersionRuntime).toBeDefined();
  });
});

describe('platform packages', () => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    napi: { targets: string[] };
    engines: { node: string };
  };

  it('napi.targets lists the six platforms', () => {
    expect([...pkg.napi.targets].sort()).toEqual(Object.keys(TRIPLES).sort());
  });

  for (const [triple, platform] of Object.entries(TRIPLES)) {
    it(`npm/${platform} is the package the loader asks for on ${triple}`, () => {
      const p = JSON.parse(readFileSync(join(root, 'npm', platform, 'package.json'), 'utf8')) as {
        name: string;
        version: string;
        main: string;
        files: string[];
        os: string[];
        cpu: string[];
        libc?: string[];
        engines: { node: string };
      };
      const [os, cpu] = platform.split('-') as [string, string];
      const libc = p.libc?.[0] as 'glibc' | 'musl' | undefined;
      expect(nativeTargets(os, cpu, libc)).toEqual([
        { platform, packageName: p.name, file: `tensorvault.${platform}.node` },
      ]);
      expect(p.main).toBe(`tensorvault.${platform}.node`);
      expect(p.files).toEqual([p.main]);
      expect(p.os).toEqual([os]);
      expect(p.cpu).toEqual([cpu]);
      if (os === 'linux') expect(p.libc).toEqual([platform.endsWith('-musl') ? 'musl' : 'glibc']);
      else expect(p.libc).toBeUndefined();
      expect(p.version).toBe('0.1.0');
      expect(p.engines).toEqual(pkg.engines);
    });
  }
});

interface ElfFacts {
  machine: string;
  interpreter: boolean;
  maxGlibc: string | undefined;
  exportsRegister: boolean;
  stripped: boolean;
}

/** What readelf (binutils) says about a shared object. */
function elfFacts(file: string): ElfFacts {
  const readelf = (args: string[]) => {
    const r = spawnSync('readelf', ['-W', ...args, file], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    return r.stdout;
  };
  const header = readelf(['-h']);
  const versions = readelf(['-V']);
  // The version needs (.gnu.version_r): every GLIBC_x.y the binary asks the loader for.
  const needs = versions.slice(versions.indexOf('.gnu.version_r'));
  const glibc = [...needs.matchAll(/Name: GLIBC_(\d+(?:\.\d+)+)/g)].map((m) => m[1] as string);
  const dynsyms = readelf(['--dyn-syms']);
  const sections = readelf(['-S']);
  return {
    machine: /Machine:\s+(.+)/.exec(header)?.[1]?.trim() ?? '',
    interpreter: readelf(['-l']).includes('Requesting program interpreter'),
    maxGlibc: glibc.sort(compareVersions).at(-1),
    exportsRegister: /\sFUNC\s+GLOBAL\s+DEFAULT\s+\d+\s+napi_register_module_v1$/m.test(dynsyms),
    stripped: !/\s\.symtab\s/.test(sections),
  };
}

function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

describe('linux-x64-gnu binary (built here and loaded by every other test)', () => {
  const file = join(root, 'native', 'tensorvault.linux-x64-gnu.node');

  it(`needs glibc ${GLIBC_BASELINE} at most (from .gnu.version_r)`, () => {
    const facts = elfFacts(file);
    expect(facts.machine).toBe('Advanced Micro Devices X86-64');
    expect(facts.maxGlibc).toBeDefined();
    const over = compareVersions(facts.maxGlibc as string, GLIBC_BASELINE);
    expect(over, `needs GLIBC_${facts.maxGlibc}`).toBeLessThanOrEqual(0);
  });

  it('exports napi_register_module_v1 and carries no symbol table', () => {
    const facts = elfFacts(file);
    expect(facts.exportsRegister).toBe(true);
    expect(facts.stripped).toBe(true);
  });

  it('is the binary the platform package ships', () => {
    const shipped = join(root, 'npm', 'linux-x64-gnu', 'tensorvault.linux-x64-gnu.node');
    const digest = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
    expect(digest(shipped)).toBe(digest(file));
  });
});

// Built by `node scripts/build.mjs arm64` (a step of `npm test`, which sets TV_REQUIRE_ARM64 so a
// missing binary fails rather than skips).
const arm64File = join(root, 'npm', 'linux-arm64-gnu', 'tensorvault.linux-arm64-gnu.node');
const arm64Node = join(root, '.tv-cache', 'node-arm64', 'bin', 'node');
const haveArm64 = existsSync(arm64File) || process.env.TV_REQUIRE_ARM64 === '1';

describe.skipIf(!haveArm64)('linux-arm64-gnu binary (cross-built here, run under qemu-user)', () => {
  it(`is an AArch64 ELF needing glibc ${GLIBC_BASELINE} at most, exporting napi_register_module_v1, stripped`, () => {
    const facts = elfFacts(arm64File);
    expect(facts.machine).toBe('AArch64');
    expect(facts.interpreter).toBe(false);
    const over = compareVersions(facts.maxGlibc as string, GLIBC_BASELINE);
    expect(over, `needs GLIBC_${facts.maxGlibc}`).toBeLessThanOrEqual(0);
    expect(facts.exportsRegister).toBe(true);
    expect(facts.stripped).toBe(true);
  });

  it('loads in Node for arm64 under qemu-aarch64 and hashes like node:crypto', () => {
    const script = `
      const t = require(${JSON.stringify(arm64File)});
      const data = Buffer.from('tensorvault on arm64');
      const codec = new t.NativeErasureCodec(4, 2);
      const shards = [0, 1, 2, 3].map((i) => Buffer.alloc(64, i + 1));
      const parity = [Buffer.alloc(64), Buffer.alloc(64)];
      codec.encodeInto(shards, parity);
      const back = [Buffer.alloc(64), shards[1], shards[2], shards[3], parity[0], Buffer.alloc(64)];
      codec.reconstructInto(back, [false, true, true, true, true, false]);
      console.log(JSON.stringify({
        arch: process.arch,
        sha256: t.sha256(data).toString('hex'),
        hmac: t.hmacSha256(Buffer.from('k'), data).toString('hex'),
        repaired: back[0].equals(shards[0]),
        cpu: (({ arch, features, wideEngine, blake3 }) => ({ arch, features, wideEngine, blake3 }))(t.cpuInfo()),
      }));`;
    const r = spawnSync('qemu-aarch64', ['-L', '/usr/aarch64-linux-gnu', arm64Node, '-e', script], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const data = Buffer.from('tensorvault on arm64');
    expect(JSON.parse(r.stdout)).toEqual({
      arch: 'arm64',
      sha256: createHash('sha256').update(data).digest('hex'),
      hmac: createHmac('sha256', 'k').update(data).digest('hex'),
      repaired: true,
      // What runs there is reported (it said BLAKE3 "portable" and no features, over Neon code).
      cpu: { arch: 'aarch64', features: ['neon'], wideEngine: 'neon', blake3: 'neon' },
    });
  });

  it('writes the same wide-code (v2) sidecar as this machine, and verifies it', async () => {
    // The wide GF(2^16) code runs on GFNI here (or AVX2) and on the crate's Neon engine on arm64:
    // the sidecar bytes must not depend on the engine. 3 MiB at `medium`: 768 + 96 chunks of 4 KiB,
    // with local parity groups.
    const dir = mkdtempSync(join(tmpdir(), 'tv-arm64-'));
    try {
      const file = join(dir, 'f.bin');
      const data = Buffer.alloc(3 << 20);
      for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
      writeFileSync(file, data);
      const armSidecar = join(dir, 'arm.tvecc');
      const script = `
        const t = require(${JSON.stringify(arm64File)});
        (async () => {
          const p = await t.eccProtect(${JSON.stringify(file)}, { sidecar: ${JSON.stringify(armSidecar)}, level: 'medium', format: 'v2' }, new t.JobControl());
          console.log(JSON.stringify({ version: p.layout.formatVersion, chunks: p.layout.chunks }));
        })().catch((e) => { console.error(e); process.exit(1); });`;
      const r = spawnSync('qemu-aarch64', ['-L', '/usr/aarch64-linux-gnu', arm64Node, '-e', script], {
        encoding: 'utf8',
        timeout: 300_000,
      });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ version: 2 });
      const here = await protect(file, { sidecar: join(dir, 'x64.tvecc'), level: 'medium', format: 'v2' });
      expect(here.layout.formatVersion).toBe(2);
      expect(readFileSync(armSidecar).equals(readFileSync(join(dir, 'x64.tvecc')))).toBe(true);
      expect((await verify(file, { sidecar: armSidecar })).status).toBe('intact');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// Built by `node scripts/build.mjs cross` (not by `npm test`: building the std for three more targets
// costs about 15 minutes here); each spec runs when its binary exists.
const built = (platform: string) => join(root, 'npm', platform, `tensorvault.${platform}.node`);

describe.skipIf(!existsSync(built('linux-x64-musl')))('linux-x64-musl binary (built only)', () => {
  const file = built('linux-x64-musl');

  it('is an x86-64 ELF linked against musl alone, exporting napi_register_module_v1, stripped', () => {
    const facts = elfFacts(file);
    expect(facts.machine).toBe('Advanced Micro Devices X86-64');
    expect(facts.maxGlibc).toBeUndefined();
    expect(facts.exportsRegister).toBe(true);
    expect(facts.stripped).toBe(true);
    const needed = spawnSync('readelf', ['-d', file], { encoding: 'utf8' }).stdout;
    expect([...needed.matchAll(/\(NEEDED\)\s+Shared library: \[(.+)\]/g)].map((m) => m[1])).toEqual([
      'libc.so',
    ]);
  });

  it("musl's loader resolves every symbol it needs except Node's napi_* functions", () => {
    const loader = '/lib/ld-musl-x86_64.so.1'; // Debian's musl, installed by setup-cross.sh --std-src
    const r = spawnSync(loader, ['--list', file], { encoding: 'utf8' });
    const missing = [...r.stderr.matchAll(/Error relocating .*?: (\S+): symbol not found/g)].map((m) => m[1]);
    expect(r.stdout).toContain(`libc.so => ${loader}`);
    expect(missing.length).toBeGreaterThan(0);
    expect(missing.filter((name) => !name?.startsWith('napi_'))).toEqual([]);
  });
});

interface MachOFacts {
  cpu: 'arm64' | 'x86_64' | 'other';
  dylib: boolean;
  exportsRegister: boolean;
  undefinedNapi: number;
  codeSignature: boolean;
}

/** Reads a 64-bit little-endian Mach-O: header, load commands, and the symbol table (nlist_64). */
function machOFacts(file: string): MachOFacts {
  const b = readFileSync(file);
  expect(b.readUInt32LE(0)).toBe(0xfeedfacf); // MH_MAGIC_64
  const cputype = b.readUInt32LE(4);
  const cpu = cputype === 0x0100000c ? 'arm64' : cputype === 0x01000007 ? 'x86_64' : 'other';
  const ncmds = b.readUInt32LE(16);
  let off = 32;
  let exportsRegister = false;
  let undefinedNapi = 0;
  let codeSignature = false;
  for (let i = 0; i < ncmds; i++) {
    const cmd = b.readUInt32LE(off);
    const size = b.readUInt32LE(off + 4);
    if (cmd === 0x1d) codeSignature = true; // LC_CODE_SIGNATURE
    if (cmd === 0x2) {
      // LC_SYMTAB: symoff, nsyms, stroff
      const [symoff, nsyms, stroff] = [
        b.readUInt32LE(off + 8),
        b.readUInt32LE(off + 12),
        b.readUInt32LE(off + 16),
      ];
      for (let s = 0; s < nsyms; s++) {
        const e = symoff + s * 16;
        const strx = b.readUInt32LE(e);
        const type = b.readUInt8(e + 4);
        const name = b.toString('latin1', stroff + strx, b.indexOf(0, stroff + strx));
        const external = (type & 0x01) !== 0;
        const kind = type & 0x0e; // N_UNDF 0x0, N_SECT 0xe
        if (name === '_napi_register_module_v1' && external && kind === 0x0e) exportsRegister = true;
        if (name.startsWith('_napi_') && external && kind === 0) undefinedNapi += 1;
      }
    }
    off += size;
  }
  return { cpu, dylib: b.readUInt32LE(12) === 6, exportsRegister, undefinedNapi, codeSignature };
}

for (const [platform, cpu] of [
  ['darwin-arm64', 'arm64'],
  ['darwin-x64', 'x86_64'],
] as const) {
  describe.skipIf(!existsSync(built(platform)))(`${platform} binary (built only)`, () => {
    it(`is a Mach-O ${cpu} dylib exporting napi_register_module_v1, leaving napi_* to Node`, () => {
      const facts = machOFacts(built(platform));
      expect(facts.cpu).toBe(cpu);
      expect(facts.dylib).toBe(true);
      expect(facts.exportsRegister).toBe(true);
      expect(facts.undefinedNapi).toBeGreaterThan(0);
      // arm64 macOS loads only signed code: Zig's linker signs ad hoc, and nothing may touch it after.
      if (cpu === 'arm64') expect(facts.codeSignature).toBe(true);
    });
  });
}
