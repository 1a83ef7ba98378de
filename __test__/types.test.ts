// The published declarations as a TypeScript user compiles against them: the consumer files in
// fixtures/types (each `@ts-expect-error` line must be an error, everything else must compile) are
// type-checked strictly, against dist/'s .d.ts and .d.mts through package.json's exports, under the
// module settings users have: node16, nodenext, bundler (module preserve) and commonjs (node10
// resolution). Each fixture's first comment names the defect it guards against.
import { copyFileSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
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

  it('use no generic Buffer or typed array (TypeScript before 5.7 rejects `Buffer<ArrayBuffer>`)', () => {
    // Regression: two inferred types were emitted as Buffer<ArrayBuffer> and Uint8Array<ArrayBufferLike>
    // (TS2315 "Type 'Buffer' is not generic" under TypeScript 5.4 to 5.6).
    const generic =
      /\b(?:Buffer|Uint8Array|Uint8ClampedArray|Int8Array|Uint16Array|Int16Array|Uint32Array|Int32Array|Float16Array|Float32Array|Float64Array|BigInt64Array|BigUint64Array|DataView)</;
    const found: string[] = [];
    const walk = (d: string): void => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (/\.d\.m?ts$/.test(e.name)) {
          readFileSync(p, 'utf8')
            .split('\n')
            .forEach((line, i) => {
              if (generic.test(line)) found.push(`${relative(root, p)}:${i + 1}: ${line.trim()}`);
            });
        }
      }
    };
    walk(join(root, 'dist'));
    expect(found).toEqual([]);
  });
});
