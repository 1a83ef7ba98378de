#!/usr/bin/env node
// `npm run demo`: the main job on built-in data. Installs and builds what it needs, then:
//   1. writes a 2 GiB file of deterministic data,
//   2. hashes it with tensorvault (plain SHA-256 and the parallel chunk tree) and with node:crypto,
//   3. checks the digests agree and prints what happened and how fast.
// Options: --size-gib G (default 2), --keep (keep the data file in demo-data/).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
execFileSync('node', [join(root, 'scripts', 'setup.mjs')], { stdio: 'inherit' });

const require = createRequire(import.meta.url);
const tv = require('../dist/index.js');
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : process.argv[i + 1];
};
const size = Math.round(Number(arg('size-gib', 2)) * 1024 ** 3);
const dir = join(root, 'demo-data');
mkdirSync(dir, { recursive: true });
const file = join(dir, 'demo.bin');
const gb = (bytes, ms) => `${(bytes / 1e9 / (ms / 1000)).toFixed(2)} GB/s`;
const time = async (fn) => {
  const t0 = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - t0 };
};
const bar = (label) =>
  process.stderr.isTTY
    ? (p) => {
        const f = p.bytesTotal ? p.bytesDone / p.bytesTotal : 0;
        process.stderr.write(
          `\r  ${label} [${'#'.repeat(Math.round(f * 30)).padEnd(30, '.')}] ${(f * 100).toFixed(0)}%`,
        );
        if (f >= 1) process.stderr.write('\r\x1b[K');
      }
    : undefined;

console.log(`\ntensorvault ${tv.version()} demo — Node ${process.version}`);
console.log(`\n1. Writing ${(size / 1024 ** 3).toFixed(1)} GiB of deterministic data to ${file}`);
const written = await time(() => {
  const fd = openSync(file, 'w');
  // One pseudo-random 16 MiB block, with every 4 KiB page stamped with its file offset so that no two
  // pages of the file are equal.
  const block = Buffer.alloc(16 << 20);
  for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i);
  for (let off = 0; off < size; off += block.length) {
    for (let p = 0; p < block.length; p += 4096) block.writeDoubleLE(off + p, p);
    writeSync(fd, block, 0, Math.min(block.length, size - off), off);
  }
  closeSync(fd);
});
console.log(`   written in ${(written.ms / 1000).toFixed(1)} s (${gb(size, written.ms)})`);

console.log('\n2. Hashing (the file is now in the page cache; each run reads all of it)');
const plain = await time(() => tv.hashFile(file, { onProgress: bar('plain') }));
console.log(`   tensorvault  sha256 (1 stream)        ${plain.value.digest}  ${gb(size, plain.ms)}`);
const tree = await time(() => tv.hashFile(file, { tree: true, onProgress: bar('tree') }));
console.log(
  `   tensorvault  chunk tree root (${tree.value.chunkCount} × 4 MiB) ${tree.value.digest}  ${gb(size, tree.ms)}`,
);
const node = await time(async () => {
  const h = createHash('sha256');
  await pipeline(createReadStream(file), h);
  return h.digest('hex');
});
console.log(`   node:crypto  sha256 (createReadStream) ${node.value}  ${gb(size, node.ms)}`);
console.log(`   loaded native addon: ${tv.nativePath()}`);

console.log('\n3. Result');
const same = node.value === plain.value.digest;
console.log(`   tensorvault and node:crypto agree: ${same ? 'yes' : 'NO'}`);
console.log(`   plain hash: ${(node.ms / plain.ms).toFixed(2)}× node:crypto's stream`);
console.log(
  `   chunk tree: ${(node.ms / tree.ms).toFixed(2)}× node:crypto's stream (parallel over all cores)`,
);
if (!process.argv.includes('--keep')) rmSync(file, { force: true });
if (!same) process.exitCode = 1;
