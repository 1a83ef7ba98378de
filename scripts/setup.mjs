#!/usr/bin/env node
// Brings a checkout to a runnable state with nothing installed by hand: npm dependencies (when
// node_modules is missing or older than the lockfile), then the native addon and the TypeScript build.
// It runs `npm install` against the committed lockfile rather than `npm ci`: the lockfile lacks the
// other platforms' optional binaries of some tools (biome, @napi-rs/lzma) because the registry here does
// not serve them, and `npm ci` refuses such a lockfile while `npm install` installs the pinned versions.
//   node scripts/setup.mjs          deps + build
//   node scripts/setup.mjs --deps   deps only
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });

const stamp = join(root, 'node_modules', '.package-lock.json');
const lock = join(root, 'package-lock.json');
if (!existsSync(stamp) || statSync(stamp).mtimeMs < statSync(lock).mtimeMs) {
  console.error('setup: installing npm dependencies (npm install from package-lock.json)');
  run('npm', ['install', '--no-audit', '--no-fund', '--no-save']);
}
if (!process.argv.includes('--deps')) {
  run('node', ['scripts/build.mjs']);
}
