// The published declarations as a TypeScript user compiles against them: the consumer files in
// fixtures/types (each `@ts-expect-error` line must be an error, everything else must compile) are
// type-checked strictly, against dist/'s .d.ts and .d.mts through package.json's exports, under the
// module settings users have: node16, nodenext, bundler (module preserve) and commonjs (node10
// resolution). Each fixture's first comment names the defect it guards against.
import { copyFileSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from './helpers/tmp';
import { type ModuleSetting, typecheck } from './helpers/typecheck';

const root = join(__dirname, '..');
const fixtures = join(__dirname, 'fixtures', 'types');
const app = join(tempDir('tv-types-'), 'app');

beforeAll(() => {
  mkdirSync(join(app, 'node_modules'), { recursive: true });
  symlinkSync(root, join(app, 'node_modules', 'tensorvault'), 'dir');
  writeFileSync(join(app, 'package.json'), '{"name":"consumer","private":true}\n');
  for (const f of readdirSync(fixtures)) copyFileSync(join(fixtures, f), join(app, f));
});

const files = (ext: string) => readdirSync(fixtures).filter((f) => f.endsWith(ext));

describe('declarations as a TypeScript consumer sees them', () => {
  for (const setting of ['node16', 'nodenext', 'bundler'] as ModuleSetting[]) {
    it(`compile as expected under module ${setting}`, () => {
      const all = [...files('.mts'), ...(setting === 'bundler' ? [] : files('.cts'))];
      expect(all.length).toBeGreaterThan(0);
      expect(typecheck(app, all, setting)).toEqual([]);
    });
  }

  it('compile as expected under module commonjs (node10 resolution: no exports)', () => {
    expect(typecheck(app, ['commonjs-subpaths.ts'], 'commonjs')).toEqual([]);
  });
});
