#!/usr/bin/env node
// Builds everything: the Rust addon (napi build --platform --release → native/), the TypeScript
// (tsc → dist/, CommonJS) and the ESM wrapper. The addon is also copied into npm/linux-x64-gnu so the
// platform package can be packed.
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'node_modules', '.bin');
const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });
const only = process.argv[2];

if (only !== 'ts') {
  run(join(bin, 'napi'), [
    'build',
    '--platform',
    '--release',
    '--manifest-path',
    'crates/tensorvault-node/Cargo.toml',
    '--output-dir',
    'native',
    '--no-js',
    '--dts',
    'index.d.ts',
  ]);
  const built = join(root, 'native', 'tensorvault.linux-x64-gnu.node');
  if (existsSync(built))
    copyFileSync(built, join(root, 'npm', 'linux-x64-gnu', 'tensorvault.linux-x64-gnu.node'));
}
if (only !== 'native') {
  run(join(bin, 'tsc'), ['-p', 'tsconfig.build.json']);
  run('node', ['scripts/esm-wrapper.mjs']);
  chmodSync(join(root, 'dist', 'cli', 'main.js'), 0o755);
}
