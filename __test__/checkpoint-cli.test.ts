// `tensorvault checkpoint …`: inspect, verify (exit 0/1/2), repair, convert --layout, ls, --json.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { xorAt } from './helpers/bytes';
import { tempDir } from './helpers/tmp';

const cli = join(__dirname, '..', 'dist', 'cli', 'main.js');
const dir = tempDir('tv-ckpt-cli-');

function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, 'checkpoint', ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function damage(path: string, offset: number, len: number): void {
  const b = readFileSync(path);
  for (let i = 0; i < len; i++) xorAt(b, offset + i, 0xff);
  writeFileSync(path, b);
}

const tensors = () => ({ w: new Float32Array(300_000).fill(1.5), b: new Int32Array([1, 2, 3]) });

describe('tensorvault checkpoint', () => {
  it('inspect and verify an intact checkpoint', async () => {
    const path = join(dir, 'a.safetensors');
    await tv.saveCheckpoint(path, tensors(), { version: '7', ecc: 'medium' });
    const i = run('inspect', path, '--json');
    expect(i.status).toBe(0);
    const info = JSON.parse(i.stdout);
    expect([info.layout, info.version]).toEqual(['tensorvault', '7']);
    expect(info.tensors.map((t: { name: string }) => t.name).sort()).toEqual(['b', 'w']);
    const v = run('verify', path);
    expect(v.status).toBe(0);
    expect(v.stdout).toContain('INTACT');
  });

  it('verify exits 1 on repairable damage, repair fixes it, 2 beyond the parity', async () => {
    const path = join(dir, 'b.safetensors');
    await tv.saveCheckpoint(path, tensors(), { ecc: 'medium' });
    damage(path, 600_000, 16);
    const v = run('verify', path, '--json');
    expect(v.status).toBe(1);
    expect(JSON.parse(v.stdout).status).toBe('repairable');
    const r = run('repair', path);
    expect(r.status).toBe(0);
    expect(run('verify', path).status).toBe(0);
    const bare = join(dir, 'c.safetensors');
    await tv.saveCheckpoint(bare, tensors());
    damage(bare, 600_000, 16);
    expect(run('verify', bare).status).toBe(2);
    const r2 = run('repair', bare);
    expect(r2.status).toBe(2);
    expect(r2.stderr).toContain('TV_CHECKPOINT_INTEGRITY');
  });

  it('verify exits 1 on damaged .tvecc parity and names it; repair rebuilds it', async () => {
    const path = join(dir, 'p.safetensors');
    await tv.saveCheckpoint(path, tensors(), { ecc: 'medium' });
    const parity = readFileSync(`${path}.tvecc`);
    damage(`${path}.tvecc`, parity.length - 60_000, 2048);
    const v = run('verify', path);
    expect(v.status).toBe(1);
    expect(v.stdout).toMatch(/REPAIRABLE[\s\S]*\.tvecc parity: repairable \(damaged parity slots: \d/);
    const j = JSON.parse(run('verify', path, '--json').stdout);
    expect([j.status, j.parity]).toEqual(['repairable', 'repairable']);
    const r = run('repair', path);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('REPAIRED');
    expect(readFileSync(`${path}.tvecc`).equals(parity)).toBe(true);
    expect(run('verify', path).status).toBe(0);
  });

  it('verify exits 1 on a damaged header the parity repairs, 2 without parity (not 5)', async () => {
    for (const layout of ['tensorvault', 'pyfolds-ecc'] as const) {
      const path = join(dir, `h-${layout}.safetensors`);
      await tv.saveCheckpoint(path, tensors(), { layout, ecc: layout === 'tensorvault' ? 'medium' : 'med' });
      damage(path, 20, 4);
      const v = run('verify', path, '--json');
      expect([layout, v.status, JSON.parse(v.stdout).status]).toEqual([layout, 1, 'repairable']);
      expect(run('repair', path).status).toBe(0);
      expect(run('verify', path).status).toBe(0);
    }
    const bare = join(dir, 'h-bare.safetensors');
    await tv.saveCheckpoint(bare, tensors());
    damage(bare, 20, 4);
    expect(run('verify', bare).status).toBe(2);
  });

  it('convert --layout writes another layout that verifies; ls lists a run', async () => {
    const path = join(dir, 'd.safetensors');
    await tv.saveCheckpoint(path, tensors(), { layout: 'pyfolds', metadata: { keep: 'me' } });
    const out = join(dir, 'e.safetensors');
    const c = run('convert', path, '--layout', 'pyfolds-ecc', '--ecc', 'high', '--out', out);
    expect(c.status).toBe(0);
    expect(existsSync(join(dir, 'e.json'))).toBe(true);
    const loaded = await tv.loadCheckpoint(out, { verify: 'full' });
    expect([loaded.layout, loaded.metadata.keep]).toEqual(['pyfolds-ecc', 'me']);
    loaded.close();
    expect(run('convert', path).status).toBe(3);
    const runDir = join(dir, 'run');
    const m = new tv.CheckpointManager(runDir);
    await m.save(1, tensors(), { metrics: { loss: 2 } });
    await m.save(2, tensors(), { metrics: { loss: 1 } });
    const ls = run('ls', runDir, '--json');
    expect(ls.status).toBe(0);
    expect(
      JSON.parse(ls.stdout).map((e: { step: number; metrics: object; sidecar: string }) => [
        e.step,
        e.metrics,
        e.sidecar,
      ]),
    ).toEqual([
      [1, { loss: 2 }, 'sealed'],
      [2, { loss: 1 }, 'sealed'],
    ]);
    writeFileSync(`${m.pathOf(1)}.meta.json`, '{ not json');
    expect(run('ls', runDir).stdout).toMatch(/step +1 .*\(sidecar damaged\)/);
    expect(run('frobnicate').status).toBe(3);
  });

  it("convert without --ecc keeps the source's parity level (never drops it silently); --ecc medium for pyfolds-ecc is a usage error", async () => {
    const src = join(dir, 'par.safetensors');
    await tv.saveCheckpoint(src, tensors(), { ecc: 'high' });
    // What `high` gives these tensors, for comparison.
    const ref = await tv.saveCheckpoint(join(dir, 'ref.safetensors'), tensors(), { ecc: 'high' });
    expect(ref.ecc).toMatch(/^tvecc \d+\+\d+$/);
    // In place, same layout: the .tvecc stays, at the same level.
    const same = run('convert', src, '--layout', 'tensorvault', '--json');
    expect(same.status).toBe(0);
    // The level the save recorded decides (not a guess from the sidecar's k and m).
    expect(JSON.parse(same.stdout)).toMatchObject({ ecc: ref.ecc, sourceParity: 'tvecc high (recorded)' });
    expect(existsSync(`${src}.tvecc`)).toBe(true);
    expect((await tv.verifyCheckpoint(src)).parity).toBe('intact');
    // Custom parameters the save recorded are kept as they are (they match no preset: refused before).
    const custom = join(dir, 'custom.safetensors');
    await tv.saveCheckpoint(custom, tensors(), { ecc: { k: 6, m: 3, chunkSize: 65536 } });
    const kept = run(
      'convert',
      custom,
      '--layout',
      'tensorvault',
      '--out',
      join(dir, 'custom2.safetensors'),
      '--json',
    );
    expect([kept.status, JSON.parse(kept.stdout || '{}').ecc]).toEqual([0, 'tvecc 6+3']);
    // To pyfolds-ecc: PyFolds's level of the same name (high = rs(64)); and back: tensorvault's high.
    const py = join(dir, 'par-py.safetensors');
    const toPy = run('convert', src, '--layout', 'pyfolds-ecc', '--out', py, '--json');
    expect([toPy.status, JSON.parse(toPy.stdout).ecc]).toEqual([0, 'rs(64)']);
    const back = run(
      'convert',
      py,
      '--layout',
      'tensorvault',
      '--out',
      join(dir, 'back.safetensors'),
      '--json',
    );
    expect([back.status, JSON.parse(back.stdout).ecc]).toEqual([0, ref.ecc]);
    // The pyfolds layout has no parity: refused unless --ecc off says to drop it.
    const plain = join(dir, 'par-plain.safetensors');
    const drop = run('convert', py, '--layout', 'pyfolds', '--out', plain);
    expect(drop.status).toBe(3);
    expect(drop.stderr).toMatch(/--ecc off/);
    expect(existsSync(plain)).toBe(false);
    expect(run('convert', py, '--layout', 'pyfolds', '--out', plain, '--ecc', 'off').status).toBe(0);
    // medium is tensorvault's name; PyFolds's is med.
    const bad = run(
      'convert',
      src,
      '--layout',
      'pyfolds-ecc',
      '--ecc',
      'medium',
      '--out',
      join(dir, 'bad.safetensors'),
    );
    expect(bad.status).toBe(3);
  });

  it('ls of a missing path, a file or a folder it cannot read is an error (exit 6), not "(no checkpoints)"', async () => {
    const err = (r: { stderr: string }) => JSON.parse(r.stderr).error;
    const missing = run('ls', join(dir, 'no-such-run'), '--json');
    expect([missing.status, missing.stdout, err(missing).code]).toEqual([6, '', 'TV_NOT_FOUND']);
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    const notDir = run('ls', file, '--json');
    expect([notDir.status, notDir.stdout, err(notDir).code]).toEqual([6, '', 'TV_NOT_A_FILE']);
    expect(run('ls', file).stderr).toMatch(/is a regular file, not a run folder/);
    // The API: a run folder not created yet lists nothing (before the first save); a file is refused.
    expect(new tv.CheckpointManager(join(dir, 'not-yet')).list()).toEqual([]);
    expect(() => new tv.CheckpointManager(file).list()).toThrow(
      expect.objectContaining({ code: 'TV_NOT_A_FILE' }),
    );
    // A folder that exists but cannot be listed (as an unprivileged user: root reads any folder).
    const locked = join(dir, 'locked-run');
    await new tv.CheckpointManager(locked).save(1, tensors());
    chmodSync(dir, 0o711);
    chmodSync(locked, 0o700);
    const asNobody = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    if (process.getuid?.() !== 0) chmodSync(locked, 0o000);
    const r = spawnSync(process.execPath, [cli, 'checkpoint', 'ls', locked, '--json'], {
      encoding: 'utf8',
      ...asNobody,
    });
    chmodSync(locked, 0o700);
    expect([r.status, r.stdout, JSON.parse(r.stderr).error.code]).toEqual([6, '', 'TV_PERMISSION_DENIED']);
  });
});
