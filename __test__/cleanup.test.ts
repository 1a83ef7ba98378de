// A clean-up in a `finally` or a `catch` (removing a work folder, closing a handle) is best effort: when
// it fails, the error the caller sees is still the one that made the call fail, typed, never the
// clean-up's bare Node error. The removal is made to fail by replacing `fs.promises.rm` (the library
// calls it through the module object at call time) for the work folders only.
import { promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { tempDir } from './helpers/tmp';

const dir = tempDir('tv-cleanup-');
const KEY = 'cleanup-key-0123456789abcdef-0000';
const MiB = 1024 * 1024;
const realRm = fsp.rm;

/** `fs.promises.rm` of a path whose name contains `marker` fails with EBUSY (as a mount point's would). */
function failRemovalOf(marker: string): string[] {
  const tried: string[] = [];
  fsp.rm = (async (path: Parameters<typeof realRm>[0], options?: Parameters<typeof realRm>[1]) => {
    if (String(path).includes(marker)) {
      tried.push(String(path));
      throw Object.assign(new Error(`EBUSY: resource busy or locked, rm '${String(path)}'`), {
        code: 'EBUSY',
        errno: -16,
        syscall: 'rm',
        path: String(path),
      });
    }
    return realRm(path, options);
  }) as typeof realRm;
  return tried;
}

afterEach(() => {
  fsp.rm = realRm;
});

let url = '';
beforeAll(async () => {
  // A keyed pyfolds-ecc set: verifying or repairing damage without the key fails with a typed error
  // after the work folder was made.
  const ckpt = join(dir, 'src', 'pfek.safetensors');
  const tensors: Record<string, Float32Array> = {};
  for (let i = 0; i < 4; i++)
    tensors[`t${i}`] = new Float32Array(262_144).map((_, j) => i * 1000 + (j % 997));
  await tv.saveCheckpoint(ckpt, tensors, { layout: 'pyfolds-ecc', ecc: 'med', hmacKey: KEY });
  url = (await tv.push(ckpt, `file://${join(dir, 'store')}`, { stateDir: join(dir, 'state') })).url;
  // One damaged byte in chunk 2 of the stored weights.
  const obj = join(dir, 'store', 'pfek.safetensors');
  const b = readFileSync(obj);
  b[2 * MiB + 100] = (b[2 * MiB + 100] as number) ^ 0xff;
  writeFileSync(obj, b);
});

describe('a clean-up that fails never replaces the error (remote work folders)', () => {
  it('verifyRemote: the typed error comes out when its work folder cannot be removed', async () => {
    const tried = failRemovalOf('tv-remote-verify-');
    const err = await tv.verifyRemote(url, { workDir: dir }).catch((e: unknown) => e);
    expect(tried.length).toBeGreaterThan(0); // the removal was tried, and failed
    expect(err).toMatchObject({ name: 'TensorVaultError', code: 'TV_CHECKPOINT_HMAC_REQUIRED' });
  });

  it('repairRemote: the typed error comes out when its work folder cannot be removed', async () => {
    const tried = failRemovalOf('tv-remote-repair-');
    const err = await tv.repairRemote(url, { workDir: dir }).catch((e: unknown) => e);
    expect(tried.length).toBeGreaterThan(0);
    expect(err).toMatchObject({
      name: 'TensorVaultError',
      code: 'TV_REMOTE_DAMAGED',
      context: { chunks: '2' },
    });
  });

  it('verifyRemote still succeeds when only the clean-up fails', async () => {
    failRemovalOf('tv-remote-');
    expect((await tv.verifyRemote(url, { workDir: dir, hmacKey: KEY })).status).toBe('repairable');
  });
});
