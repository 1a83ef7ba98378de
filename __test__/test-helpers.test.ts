import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { tempDir } from './helpers/tmp.js';

const root = join(__dirname, '..');

// Regression: `tempDir()` registered its clean-up hook when it was called, and a hook registered inside a
// running test is ignored: every folder helpers made inside tests stayed in /tmp (about 50 GB after a few
// dozen runs of the suite on this machine).
it('tempDir() folders are removed after the spec file, also when made inside a running test', () => {
  const record = join(tempDir(), 'dirs.json');
  const r = spawnSync(
    process.execPath,
    [
      join(root, 'node_modules', 'vitest', 'vitest.mjs'),
      'run',
      '--root',
      join(__dirname, 'fixtures', 'tmp-helper'),
    ],
    { encoding: 'utf8', env: { ...process.env, TV_TMP_RECORD: record, CI: 'true' }, timeout: 60_000 },
  );
  expect(r.status, r.stdout + r.stderr).toBe(0);
  const dirs = JSON.parse(readFileSync(record, 'utf8')) as string[];
  expect(dirs).toHaveLength(2);
  for (const dir of dirs) expect(existsSync(dir), dir).toBe(false);
});
