// Live interop with PyFolds's own container code: pyfolds==1.0.2 from PyPI (scripts/setup-pyfolds.sh,
// over Debian's python3-torch; npm test installs both on Debian-like Linux). 1.0.2 writes bare-hex digests under the same container version 1.2.0,
// so tensorvault writes for it with `legacyDigests`. Skips, saying why, when the peer is not installed.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { tempDir } from './helpers/tmp';

const root = join(__dirname, '..');
const peerPath = join(root, '.venv', 'pyfolds-peer');
const python = process.env.TV_PYFOLDS_PYTHON || '/usr/bin/python3';
const helper = join(__dirname, 'helpers', 'pyfolds_peer.py');
const env = { ...process.env, PYTHONPATH: peerPath, PYTHONWARNINGS: 'ignore' };
const probe = spawnSync(python, [helper, 'probe'], { env, encoding: 'utf8' });
const available = probe.status === 0;
// npm test sets the peer up first (step "PyFolds live peer", on Debian-like Linux) and sets
// TV_REQUIRE_PYFOLDS: then a peer that does not run fails here instead of skipping.
if (!available && process.env.TV_REQUIRE_PYFOLDS === '1') {
  throw new Error(`PyFolds live peer unavailable: ${(probe.stderr || probe.error?.message || '').trim()}`);
}
const why = available
  ? ''
  : `pyfolds peer unavailable (${(probe.stderr || probe.error?.message || '').trim().split('\n').pop()}); run scripts/setup-pyfolds.sh`;

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const peer = (args: string[]): Record<string, string> =>
  JSON.parse(execFileSync(python, [helper, ...args], { env, encoding: 'utf8' })) as Record<string, string>;

function payloads(): { name: string; ctype: string; data: Buffer }[] {
  const big = Buffer.alloc(50_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + (i >> 7)) & 0xff;
  return [
    { name: 'torch_state', ctype: 'STEN', data: big },
    {
      name: 'llm_manifest',
      ctype: 'JSON',
      data: Buffer.from('{"format":"fold","hyperparameters":{"n":2},"tags":{"l":"ação"}}'),
    },
    { name: 'small', ctype: 'RAW0', data: Buffer.from('x'.repeat(200)) },
    { name: 'empty', ctype: 'RAW0', data: Buffer.alloc(0) },
  ];
}

describe.skipIf(!available)(`PyFolds 1.0.2 live peer${why ? ` — skipped: ${why}` : ''}`, () => {
  const dir = available ? tempDir('tv-fold-interop-') : '';

  it.each([
    ['zstd', { compress: 'zstd' }],
    ['stored as is', { compress: 'none' }],
  ] as const)('PyFolds reads, verified, what tensorvault writes (%s)', async (_label, opts) => {
    const path = join(dir, `tv-${opts.compress}.fold`);
    await tv.writeFold(path, payloads(), {
      ...opts,
      legacyDigests: true,
      metadata: { model_type: 'X', tags: { k: 'ção' } },
    });
    const got = peer(['read', path]);
    expect(got).toEqual(Object.fromEntries(payloads().map((p) => [p.name, sha(p.data)])));
  });

  it('PyFolds reads rs(16) parity tensorvault writes for single-block chunks', async () => {
    // 1.0.2 cuts parity off reedsolo's interleaved stream, which is only right for one block.
    const path = join(dir, 'tv-ecc.fold');
    const small = payloads().filter((p) => p.data.length <= 239);
    await tv.writeFold(path, small, { compress: 'none', ecc: 'rs(16)', legacyDigests: true });
    expect(peer(['read', path])).toEqual(Object.fromEntries(small.map((p) => [p.name, sha(p.data)])));
  });

  it.each(['zstd', 'none'])(
    'tensorvault reads, fully verified, what PyFolds writes (compress %s)',
    async (compress) => {
      const path = join(dir, `py-${compress}.fold`);
      const spec = join(dir, `spec-${compress}.json`);
      const chunks = payloads();
      writeFileSync(
        spec,
        JSON.stringify({
          compress,
          ecc: 0,
          chunks: chunks.map((c) => ({ name: c.name, ctype: c.ctype, hex: c.data.toString('hex') })),
          metadata: { model_type: 'Y', tags: { emoji: '🧠' }, f: 0.1, big: 2 ** 60 },
        }),
      );
      peer(['write', path, spec]);
      const fold = await tv.openFold(path, { verify: 'full' });
      expect(fold.checks.manifestHash.status).toBe('valid');
      expect(fold.checks.chunkHashes.status).toBe('valid');
      for (const c of chunks) expect(sha(await fold.bytes(c.name))).toBe(sha(c.data));
      expect(await fold.json('llm_manifest')).toEqual({
        format: 'fold',
        hyperparameters: { n: 2 },
        tags: { l: 'ação' },
      });
    },
  );
});
