import { spawnSync } from 'node:child_process';
import { utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { tempDir } from './helpers/tmp.js';

const dist = join(__dirname, '..', 'dist');
const cli = join(dist, 'cli', 'main.js');
const LEVELS = ['portable', 'ssse3', 'avx2', 'avx512'] as const;

/**
 * A child process with `TV_CPU=level`: reports cpuInfo() and SHA-256 digests of erasure parity, a
 * reconstruction and rs(N) parity of fixed inputs (sizes chosen so the interleaved rs kernels see whole
 * groups of 64 blocks plus a remainder, and the erasure kernels a tail that is not a multiple of 64),
 * and of the v2 sidecar (the wide GF(2^16) code, on the engine the level selects) of one file.
 */
const child = `
const tv = require(${JSON.stringify(join(dist, 'index.js'))});
const { createHash } = require('node:crypto');
const sha = (b) => createHash('sha256').update(b).digest('hex');
const bytes = (n, seed) => { const o = Buffer.alloc(n); let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; o[i] = x & 0xff; } return o; };
const out = { info: tv.cpuInfo() };
const codec = new tv.ErasureCodec(10, 4);
out.erasureKernel = codec.kernel;
const data = Array.from({ length: 10 }, (_, i) => bytes(100_003, i + 1));
const parity = codec.encode(data);
out.parity = parity.map(sha);
out.rebuilt = codec.reconstruct([null, null, ...data.slice(2), null, parity[1], parity[2], null]).map(sha);
const stream = bytes(150 * 255 + 17, 77);
out.rs = [2, 10, 16, 32, 64, 200].map((n) => sha(new tv.RsCodec(n).encodeSync(stream)));
(async () => {
  const f = process.env.TV_WIDE_FILE;
  await tv.protect(f, { level: 'medium', format: 'v2' });
  out.wide = sha(require('node:fs').readFileSync(f + '.tvecc'));
  require('node:fs').rmSync(f + '.tvecc');
  process.stdout.write(JSON.stringify(out));
})();
`;

/** The file every child protects with a v2 sidecar (fixed bytes and mtime: the sidecar is deterministic). */
const wideFile = join(tempDir('tv-cpu-'), 'wide.bin');
{
  const b = Buffer.alloc(3_000_123);
  let x = 12345;
  for (let i = 0; i < b.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  writeFileSync(wideFile, b);
  utimesSync(wideFile, 1_767_225_600, 1_767_225_600);
}

function runAt(level: string | undefined): {
  info: tv.CpuInfo;
  erasureKernel: string;
  parity: string[];
  rebuilt: string[];
  rs: string[];
  wide: string;
} {
  const env: NodeJS.ProcessEnv = { ...process.env, TV_WIDE_FILE: wideFile };
  if (level === undefined) delete env.TV_CPU;
  else env.TV_CPU = level;
  const r = spawnSync(process.execPath, ['-e', child], { encoding: 'utf8', env });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

const rank = (l: string): number => LEVELS.indexOf(l as (typeof LEVELS)[number]);

describe('CPU features and the TV_CPU cap', () => {
  it('reports the features found and kernels that fit the level in use', () => {
    const info = tv.cpuInfo();
    expect(LEVELS).toContain(info.detected);
    expect(rank(info.level)).toBeLessThanOrEqual(rank(info.detected));
    expect(['avx512-gfni', 'avx2', 'ssse3', 'portable']).toContain(info.erasureKernel);
    expect(['avx512-gfni', 'avx2', 'ssse3', 'neon', 'portable']).toContain(info.wideEngine);
    expect(['avx512-gfni', 'avx2-interleaved', 'avx2-sliced', 'portable']).toContain(info.rsKernel);
    expect(['sha-ni', 'software']).toContain(info.sha256);
    expect(Array.isArray(info.features)).toBe(true);
    if (info.detected === 'avx512')
      expect(info.features).toEqual(expect.arrayContaining(['avx512f', 'gfni']));
    expect(tv.describeCpu(info)).toContain(`erasure ${info.erasureKernel}`);
    expect(tv.describeCpu(info)).toContain(`wide ${info.wideEngine}`);
  });

  it('every forced level gives the bytes of the portable path', () => {
    const portable = runAt('portable');
    expect(portable.info.level).toBe('portable');
    expect(portable.erasureKernel).toBe('portable');
    expect(portable.info.wideEngine).toBe('portable');
    expect(portable.info.rsKernel).toBe('portable');
    const detected = portable.info.detected;
    for (const level of [...LEVELS, undefined]) {
      const r = runAt(level);
      // The cap never raises the level above the CPU's, and the kernels follow the level.
      const want = level === undefined ? detected : LEVELS[Math.min(rank(level), rank(detected))];
      expect(r.info.level, String(level)).toBe(want);
      expect(r.info.cap).toBe(level ?? null);
      if (want === 'avx2') {
        expect(r.erasureKernel).toBe('avx2');
        expect(['avx2-interleaved', 'avx2-sliced']).toContain(r.info.rsKernel);
      }
      if (want === 'avx2') expect(r.info.wideEngine).toBe('avx2');
      if (want === 'avx512') {
        expect(r.erasureKernel).toBe('avx512-gfni');
        expect(r.info.wideEngine).toBe('avx512-gfni');
      }
      expect({ parity: r.parity, rebuilt: r.rebuilt, rs: r.rs, wide: r.wide }, String(level)).toEqual({
        parity: portable.parity,
        rebuilt: portable.rebuilt,
        rs: portable.rs,
        wide: portable.wide,
      });
    }
    // The reconstruction rebuilt the lost shards (0, 1, 10, 13) to the original bytes.
    expect(portable.rebuilt[10]).toBe(portable.parity[0]);
    expect(portable.rebuilt[13]).toBe(portable.parity[3]);
  });

  it('an unknown TV_CPU value is reported, and refused by the bench command', () => {
    const r = runAt('avx3');
    expect(r.info.capError).toBe('avx3');
    expect(r.info.cap).toBeNull();
    expect(r.info.level).toBe(r.info.detected);
    const bench = spawnSync(process.execPath, [cli, 'bench', 'ecc', '--codes', '2+1', '--shard-size', '4k'], {
      encoding: 'utf8',
      env: { ...process.env, TV_CPU: 'avx3' },
    });
    expect(bench.status).not.toBe(0);
    expect(bench.stderr).toContain('TV_CPU=avx3');
  });

  it('tensorvault bench prints the kernels and CPU features first', () => {
    const r = spawnSync(
      process.execPath,
      [
        cli,
        'bench',
        'ecc',
        '--codes',
        '2+1',
        '--shard-size',
        '4k',
        '--threads',
        '1',
        '--round-ms',
        '1',
        '--no-svg',
      ],
      { encoding: 'utf8', env: { ...process.env, TV_CPU: 'avx2' } },
    );
    expect(r.status, r.stderr).toBe(0);
    const first = r.stdout.split('\n')[0] ?? '';
    expect(first).toMatch(
      /^cpu: level (avx2|ssse3|portable) \(TV_CPU=avx2\); erasure \S+, wide (avx2|ssse3|portable), rs\(32\) \S+/,
    );
    expect(first).toContain('features');
  });
});
