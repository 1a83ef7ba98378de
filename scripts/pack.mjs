#!/usr/bin/env node
// Packs the npm packages the way they are published: each platform package that carries a built addon
// (npm/<platform>/, linux-x64-gnu at least) and the root package, whose package.json gains every
// platform package of `napi.targets` as an optionalDependency at pack time (as `napi prepublish`
// does), so a development checkout never asks the registry for them. npm installs only the one whose
// os/cpu/libc fit the machine.
// A test build's addon (TV_TEST_HOOKS=1, as `npm test` builds it) carries panic hooks for the test
// suite and is refused unless --test-build is given (the packaging test passes it): publish what
// `npm run build` makes.
// Usage: node scripts/pack.mjs <outDir> [--test-build]   (prints the tarball paths as JSON)
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

/** napi-rs's platform name of a Rust target triple (the suffix of npm/<platform> and of the .node). */
export function napiPlatform(triple) {
  const known = {
    'x86_64-unknown-linux-gnu': 'linux-x64-gnu',
    'aarch64-unknown-linux-gnu': 'linux-arm64-gnu',
    'x86_64-unknown-linux-musl': 'linux-x64-musl',
    'aarch64-apple-darwin': 'darwin-arm64',
    'x86_64-apple-darwin': 'darwin-x64',
    'x86_64-pc-windows-msvc': 'win32-x64-msvc',
  };
  const name = known[triple];
  if (name === undefined) throw new Error(`pack: no napi platform name for target ${triple}`);
  return name;
}

const rootPkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const optional = {};
const platforms = {};
for (const triple of rootPkg.napi.targets) {
  const name = napiPlatform(triple);
  const dir = join(root, 'npm', name);
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  optional[pkg.name] = pkg.version;
  if (existsSync(join(dir, pkg.main))) {
    const packed = pack(dir);
    platforms[name] = { tarball: join(out, packed.filename), files: packed.files.map((f) => f.path) };
  }
}
for (const triple of rootPkg.napi.targets) {
  const name = napiPlatform(triple);
  const file = join(root, 'npm', name, `tensorvault.${name}.node`);
  if (
    existsSync(file) &&
    readFileSync(file).includes('__testPanicSync') &&
    !process.argv.includes('--test-build')
  ) {
    throw new Error(`pack: ${file} is a test build (panic hooks); rebuild with \`npm run build\``);
  }
}
if (platforms['linux-x64-gnu'] === undefined) {
  throw new Error('npm/linux-x64-gnu has no addon: run `npm run build` first');
}

const stage = mkdtempSync(join(tmpdir(), 'tv-pack-'));
try {
  cpSync(join(root, 'dist'), join(stage, 'dist'), { recursive: true });
  cpSync(join(root, 'README.md'), join(stage, 'README.md'));
  cpSync(join(root, 'LICENSE'), join(stage, 'LICENSE'));
  cpSync(join(root, 'docs'), join(stage, 'docs'), { recursive: true });
  const { devDependencies: _dev, scripts: _scripts, overrides: _overrides, ...published } = rootPkg;
  published.optionalDependencies = optional;
  writeFileSync(join(stage, 'package.json'), `${JSON.stringify(published, null, 2)}\n`);
  const main = pack(stage);
  const result = {
    root: join(out, main.filename),
    platform: platforms['linux-x64-gnu'].tarball,
    rootFiles: main.files.map((f) => f.path),
    platformFiles: platforms['linux-x64-gnu'].files,
    optionalDependencies: optional,
    platforms,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
} finally {
  rmSync(stage, { recursive: true, force: true });
}
