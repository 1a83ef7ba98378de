#!/usr/bin/env node
// Packs the two npm packages the way they are published: the platform package carrying the prebuilt
// addon (npm/linux-x64-gnu) and the root package, whose package.json gains the platform package as an
// optionalDependency at pack time (as `napi prepublish` does), so a development checkout never asks the
// registry for it. Usage: node scripts/pack.mjs <outDir>   (prints the two tarball paths as JSON)
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(fileURLToPath(import.meta.url), '..', '..');
const out = resolve(process.argv[2] ?? join(root, 'target', 'pack'));
mkdirSync(out, { recursive: true });
const pack = (dir) =>
  JSON.parse(
    execFileSync('npm', ['pack', '--json', '--pack-destination', out], { cwd: dir, encoding: 'utf8' }),
  )[0];

const platformDir = join(root, 'npm', 'linux-x64-gnu');
if (!existsSync(join(platformDir, 'tensorvault.linux-x64-gnu.node'))) {
  throw new Error('npm/linux-x64-gnu has no addon: run `npm run build` first');
}
const platform = pack(platformDir);

const rootPkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const platformPkg = JSON.parse(readFileSync(join(platformDir, 'package.json'), 'utf8'));
const stage = mkdtempSync(join(tmpdir(), 'tv-pack-'));
try {
  cpSync(join(root, 'dist'), join(stage, 'dist'), { recursive: true });
  cpSync(join(root, 'README.md'), join(stage, 'README.md'));
  cpSync(join(root, 'LICENSE'), join(stage, 'LICENSE'));
  cpSync(join(root, 'docs'), join(stage, 'docs'), { recursive: true });
  const { devDependencies: _dev, scripts: _scripts, overrides: _overrides, ...published } = rootPkg;
  published.optionalDependencies = { [platformPkg.name]: platformPkg.version };
  writeFileSync(join(stage, 'package.json'), `${JSON.stringify(published, null, 2)}\n`);
  const main = pack(stage);
  const result = {
    root: join(out, main.filename),
    platform: join(out, platform.filename),
    rootFiles: main.files.map((f) => f.path),
    platformFiles: platform.files.map((f) => f.path),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
} finally {
  rmSync(stage, { recursive: true, force: true });
}
