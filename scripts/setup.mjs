#!/usr/bin/env node
// Brings a checkout to a runnable state with nothing installed by hand: npm dependencies (npm ci when
// node_modules is missing or older than the lockfile), then the native addon and the TypeScript build.
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
  console.error('setup: installing npm dependencies (npm ci)');
  run('npm', ['ci', '--no-audit', '--no-fund']);
}
if (!process.argv.includes('--deps')) {
  run('node', ['scripts/build.mjs']);
}
