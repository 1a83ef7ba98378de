// Closing a file releases its descriptor even while views on it are alive: the views keep the mapped
// pages, not the file. A loop that opens, views and closes (a model server reloading, an evaluation
// loop) must not run out of descriptors before the garbage collector runs (regression: every view kept
// its file's descriptor open until collected, and 1,000 iterations failed with EMFILE under the common
// `ulimit -n 1024`).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { tempDir } from './helpers/tmp';

const dir = tempDir('tv-fds-');

describe('descriptors', () => {
  it('open, view, close 600 times under `ulimit -n 200`, every view kept: no EMFILE, the views intact', async () => {
    const plain = join(dir, 'plain.safetensors');
    const ckpt = join(dir, 'ckpt.safetensors');
    const w = new Float32Array(4096).map((_, i) => i * 0.5);
    await tv.saveSafetensors(plain, { w });
    await tv.saveCheckpoint(ckpt, { w }, { ecc: 'medium' });
    const dist = join(__dirname, '..', 'dist', 'index.js');
    const script = `
      const tv = require(${JSON.stringify(dist)});
      const { readdirSync } = require('node:fs');
      (async () => {
        const keep = [];
        for (let i = 0; i < 600; i++) {
          const f = await tv.openSafetensors(${JSON.stringify(plain)});
          keep.push(f.tensor('w'));
          f.close();
        }
        for (let i = 0; i < 600; i++) {
          const c = await tv.loadCheckpoint(${JSON.stringify(ckpt)});
          keep.push(await c.tensor('w'));
          c.close();
        }
        const bad = keep.filter((t) => t.data[4095] !== 4095 * 0.5 || t.data[1] !== 0.5).length;
        console.log(JSON.stringify({ views: keep.length, bad, fds: readdirSync('/proc/self/fd').length }));
      })().catch((e) => { console.error(e.code, e.message); process.exit(3); });
    `;
    const r = spawnSync('sh', ['-c', 'ulimit -n 200 && exec "$0" -e "$1"', process.execPath, script], {
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { views: number; bad: number; fds: number };
    expect(out.views).toBe(1200);
    expect(out.bad).toBe(0);
    expect(out.fds).toBeLessThan(100);
  });
});
