#!/usr/bin/env node
// Checks that package.json `engines.node` says exactly what `npm test` tests, and that no contributor on a
// Node version it admits gets an EBADENGINE warning from `npm install`:
//   1. every tested version (the Node running this script, and each line in scripts/node-matrix.json)
//      satisfies engines.node, and engines.node admits no version of any other major;
//   2. the lowest version of each `||` branch of engines.node, and every tested version, satisfy the
//      `engines.node` of every package that package-lock.json installs on this machine (what npm checks).
// Offline: it reads package.json, package-lock.json and scripts/node-matrix.json only.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import semver from 'semver';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const read = (f) => JSON.parse(readFileSync(join(root, f), 'utf8'));
const pkg = read('package.json');
const lock = read('package-lock.json');
const matrix = read('scripts/node-matrix.json');

const problems = [];
const range = pkg.engines?.node;
if (!range || !semver.validRange(range)) {
  console.error(`check-engines: package.json engines.node is missing or invalid: ${range}`);
  process.exit(1);
}
const tested = [process.versions.node, ...Object.values(matrix.lines).map((l) => l.version)];
const testedMajors = new Set(tested.map((v) => semver.major(v)));
for (const v of tested) {
  if (!semver.satisfies(v, range)) problems.push(`engines.node "${range}" does not admit tested Node ${v}`);
}
const highest = Math.max(...testedMajors);
for (let major = 0; major <= highest + 1; major++) {
  if (testedMajors.has(major)) continue;
  const other = major > highest ? `>=${major}.0.0-0` : `>=${major}.0.0-0 <${major + 1}.0.0-0`;
  if (semver.intersects(range, other, { includePrerelease: true })) {
    problems.push(
      `engines.node "${range}" admits Node ${major > highest ? `>=${major}` : major}, which is not tested`,
    );
  }
}

// The versions a contributor may have: each branch's lowest version and the tested ones.
const floors = new semver.Range(range).set.map(
  (comparators) => semver.minVersion(comparators.map((c) => c.value).join(' ')).version,
);
const contributors = [...new Set([...floors, ...tested])];
const platformOk = (meta) => {
  const fits = (list, value) =>
    !list || list.includes(value) || (list.every((x) => x.startsWith('!')) && !list.includes(`!${value}`));
  return fits(meta.os, process.platform) && fits(meta.cpu, process.arch);
};
let checked = 0;
for (const [path, meta] of Object.entries(lock.packages ?? {})) {
  if (path === '' || !platformOk(meta)) continue;
  const need = typeof meta.engines === 'object' ? meta.engines.node : undefined;
  if (!need) continue;
  if (meta.optional && !existsSync(join(root, path))) continue; // an optional package npm skips here
  checked++;
  for (const v of contributors) {
    if (!semver.satisfies(v, need)) {
      problems.push(
        `${path.replace(/^.*node_modules\//, '')}@${meta.version} wants node "${need}": Node ${v} would get EBADENGINE`,
      );
    }
  }
}

if (problems.length) {
  for (const p of problems) console.error(`check-engines: ${p}`);
  process.exit(1);
}
console.log(
  `check-engines: engines.node "${range}" admits exactly the tested majors (${[...testedMajors].sort((a, b) => a - b).join(', ')}); ` +
    `${checked} locked packages accept Node ${contributors.join(', ')}`,
);
