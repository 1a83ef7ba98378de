#!/usr/bin/env node
// Installs the benchmark anchors the issues name, so a benchmark run compares against them in the same
// run: Debian `libisal-dev` (Intel ISA-L), `pigz` and `libdeflate-tools` (when apt-get is usable, i.e.
// as root), and the npm packages `@ronomon/reed-solomon`, `tar` (node-tar) and `archiver` (without
// touching package.json or the lockfile). Anything that cannot be installed is reported and its bench
// row says "not available"; nothing here is needed by the library or by `npm test`.
//   node scripts/bench-anchors.mjs [--apt-only | --npm-only]
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = (cmd, args) => spawnSync(cmd, args, { cwd: root, stdio: 'inherit' }).status === 0;
const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;

if (!process.argv.includes('--npm-only')) {
  const want = [];
  if (!existsSync('/usr/include/isa-l.h') && !existsSync('/usr/include/isa-l/erasure_code.h'))
    want.push('libisal-dev');
  if (!has('pigz')) want.push('pigz');
  if (!has('libdeflate-gzip')) want.push('libdeflate-tools');
  if (want.length > 0) {
    const root_ = typeof process.getuid === 'function' && process.getuid() === 0;
    if (!root_ || !has('apt-get')) {
      console.error(
        `bench-anchors: cannot install ${want.join(', ')} (needs apt-get as root); those rows will be skipped`,
      );
    } else {
      console.error(`bench-anchors: apt-get install ${want.join(' ')}`);
      const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
      const apt = (args) => spawnSync('apt-get', args, { stdio: 'inherit', env }).status === 0;
      if (!apt(['install', '-y', '-q', ...want])) {
        apt(['update', '-q']);
        if (!apt(['install', '-y', '-q', ...want]))
          console.error('bench-anchors: apt-get failed; rows skipped');
      }
    }
  }
}
if (!process.argv.includes('--apt-only')) {
  const pkgs = ['@ronomon/reed-solomon@6', 'tar@7', 'archiver@7'].filter(
    (p) => !existsSync(join(root, 'node_modules', p.slice(0, p.lastIndexOf('@')), 'package.json')),
  );
  if (pkgs.length > 0) {
    console.error(`bench-anchors: npm install --no-save ${pkgs.join(' ')}`);
    if (!run('npm', ['install', '--no-save', '--no-audit', '--no-fund', ...pkgs])) {
      console.error('bench-anchors: npm install failed; those rows will be skipped');
    }
  }
}
