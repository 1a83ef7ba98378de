// The README's code samples run as written: each is saved verbatim as an ES module in an empty folder
// whose node_modules/tensorvault is this checkout (its package.json exports and dist/), and run by node.
// Regression: the first sample ("Checkpoints in four lines") mixed require() with top-level await
// (ERR_AMBIGUOUS_MODULE_SYNTAX), used tensors it never defined and expected only one of the two
// tensors it saved (TV_CHECKPOINT_MISMATCH); the EventLog sample had the same module problem.
// The same samples also compile as TypeScript (strict, nodenext) against the built declarations.
// Regression: the first sample's `const weights = { dtype: 'F32', … }` widened dtype to string (TS2322).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from './helpers/tmp';
import { typecheck } from './helpers/typecheck';

const root = join(__dirname, '..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');

/** The first ```js block after the heading `heading` (the whole README when undefined). */
function sample(heading?: string): string {
  let from = 0;
  if (heading !== undefined) {
    from = readme.indexOf(`\n${heading}\n`);
    expect(from, heading).toBeGreaterThanOrEqual(0);
  }
  const m = /```js\n([\s\S]*?)```/.exec(readme.slice(from));
  expect(m, `a js block after ${heading ?? 'the start'}`).not.toBeNull();
  return (m as RegExpExecArray)[1] as string;
}

/** Run `code` verbatim as `name` (an .mjs) in a fresh folder that has tensorvault installed. */
function run(name: string, code: string): { dir: string; status: number | null; stderr: string } {
  const dir = join(tempDir('tv-readme-'), 'app');
  mkdirSync(join(dir, 'node_modules'), { recursive: true });
  symlinkSync(root, join(dir, 'node_modules', 'tensorvault'), 'dir');
  writeFileSync(join(dir, name), code);
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.CKPT_KEY;
  delete env.PYFOLDS_CHECKPOINT_HMAC_KEY;
  const r = spawnSync(process.execPath, [name], { cwd: dir, env, encoding: 'utf8', timeout: 120_000 });
  return { dir, status: r.status, stderr: r.stderr };
}

describe('README samples run verbatim', () => {
  it('the first sample (Checkpoints in four lines) saves and loads its checkpoint', () => {
    const r = run('model.mjs', sample());
    expect([r.status, r.stderr]).toEqual([0, '']);
    expect(existsSync(join(r.dir, 'run', 'model.safetensors'))).toBe(true);
    expect(existsSync(join(r.dir, 'run', 'model.safetensors.tvecc'))).toBe(true);
  });

  it('the EventLog sample appends, verifies, queries and closes its log', () => {
    const r = run('events.mjs', sample('## Event log and cold backups'));
    expect([r.status, r.stderr]).toEqual([0, '']);
  });

  it('both samples type-check as TypeScript modules (strict, nodenext)', () => {
    const dir = join(tempDir('tv-readme-ts-'), 'app');
    mkdirSync(join(dir, 'node_modules'), { recursive: true });
    symlinkSync(root, join(dir, 'node_modules', 'tensorvault'), 'dir');
    writeFileSync(join(dir, 'package.json'), '{"name":"readme","private":true}\n');
    writeFileSync(join(dir, 'model.mts'), sample());
    writeFileSync(join(dir, 'events.mts'), sample('## Event log and cold backups'));
    // Plain `strict`, as most users compile (process.env.X is string | undefined for an optional key).
    expect(
      typecheck(dir, ['model.mts', 'events.mts'], 'nodenext', { exactOptionalPropertyTypes: false }),
    ).toEqual([]);
  });
});
