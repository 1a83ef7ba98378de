import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

// Every folder made for the current spec file. The hook is registered once, when a spec file first imports
// this module (its collection phase), so it also removes the folders that helpers make inside a running test,
// where a hook registered then would be ignored and the folder left behind (gigabytes per run).
const made: string[] = [];
afterAll(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A fresh temporary folder for the current spec file, removed after its tests. */
export function tempDir(prefix = 'tv-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}
