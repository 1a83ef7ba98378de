#!/usr/bin/env node
// Erasure-ECC demo: build a synthetic safetensors checkpoint (default 2 GiB), protect it, damage it in
// several places (bursts, bit flips, the safetensors header, the sidecar's own header), verify, repair,
// confirm the SHA-256 matches the original, then open it lazily (header + one tensor read in place).
//   node scripts/demo-ecc.mjs [--size 2G] [--dir demo-data] [--keep]
import { closeSync, mkdirSync, openSync, readSync, rmSync, statSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const tv = require(join(root, 'dist', 'index.js'));

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : process.argv[i + 1];
};
const parseSize = (t) => {
  const m = /^(\d+)([kmg]?)$/i.exec(t);
  if (!m) throw new Error(`bad --size ${t}`);
  return Number(m[1]) * { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase()];
};
const size = parseSize(arg('size', '2G'));
const dir = resolve(root, arg('dir', 'demo-data'));
const file = join(dir, 'checkpoint.safetensors');
mkdirSync(dir, { recursive: true });
const gib = (n) => `${(n / 1024 ** 3).toFixed(2)} GiB`;
const rate = (n, s) => `${(n / s / 1e9).toFixed(2)} GB/s`;
const time = async (label, fn) => {
  const t0 = performance.now();
  const r = await fn();
  const s = (performance.now() - t0) / 1000;
  return { r, s, label };
};

// 1. A synthetic checkpoint: tensors of 64 MiB (F32, [4096, 4096]) until `size`.
const tensorBytes = 64 * 1024 * 1024;
const count = Math.max(1, Math.floor(size / tensorBytes));
const header = { __metadata__: { format: 'pt', demo: 'tensorvault erasure ECC' } };
for (let i = 0; i < count; i++) {
  header[`layers.${i}.weight`] = {
    dtype: 'F32',
    shape: [4096, 4096],
    data_offsets: [i * tensorBytes, (i + 1) * tensorBytes],
  };
}
let json = Buffer.from(JSON.stringify(header));
json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
const prefix = Buffer.alloc(8);
prefix.writeBigUInt64LE(BigInt(json.length));
const t0 = performance.now();
const fd = openSync(file, 'w');
writeSync(fd, prefix);
writeSync(fd, json);
const block = Buffer.alloc(tensorBytes);
for (let i = 0; i < count; i++) {
  const f = new Float32Array(block.buffer, block.byteOffset, tensorBytes / 4);
  for (let j = 0; j < f.length; j += 1024) f[j] = Math.sin(i * 7919 + j); // sparse but distinct per tensor
  writeSync(fd, block);
}
closeSync(fd);
const total = statSync(file).size;
console.log(
  `built ${file}: ${count} tensors, ${gib(total)} in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
);

const original = await time('sha256', () => tv.hashFile(file));
console.log(`original SHA-256 ${original.r.digest} (${rate(total, original.s)})`);

// 2. Protect.
const p = await time('protect', () => tv.protect(file, { level: 'high' }));
const l = p.r.layout;
console.log(
  `protect: ${l.k}+${l.m}, ${l.chunkSize / 1024} KiB chunks, ${l.chunks} chunks in ${l.stripes} stripes, sidecar ${gib(l.sidecarLength)} (${((l.sidecarLength / total) * 100).toFixed(1)} %) in ${p.s.toFixed(2)} s (${rate(total, p.s)})`,
);

// 3. Damage: the safetensors header, two bursts, scattered bit flips, the sidecar's header A.
const fdw = openSync(file, 'r+');
const garbage = (n, seed) => {
  const b = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
};
const damage = [];
writeSync(fdw, garbage(4096, 1), 0, 4096, 0);
damage.push('4 KiB over the safetensors header');
const burst = Math.min(Math.floor(total / 40), 24 * 1024 * 1024);
for (const at of [0.3, 0.71]) {
  const off = Math.floor(total * at);
  writeSync(fdw, garbage(burst, off), 0, burst, off);
  damage.push(`${(burst / 1024 ** 2).toFixed(1)} MiB burst at ${gib(off)}`);
}
for (let i = 0; i < 6; i++) {
  const off = Math.floor(total * (0.05 + i * 0.15)) + 12345;
  const b = Buffer.alloc(1);
  readSync(fdw, b, 0, 1, off);
  b[0] ^= 1 << (i % 8);
  writeSync(fdw, b, 0, 1, off);
}
damage.push('6 single-bit flips');
closeSync(fdw);
const fds = openSync(p.r.sidecarPath, 'r+');
writeSync(fds, garbage(64, 9), 0, 64, 16);
closeSync(fds);
damage.push("64 bytes over the sidecar's header A");
console.log(`damaged: ${damage.join('; ')}`);

// 4. Verify, repair, confirm.
const v = await time('verify', () => tv.verify(file));
console.log(
  `verify: ${v.r.status.toUpperCase()}, ${v.r.damagedChunks.length} damaged chunks, sidecar header A ${v.r.sidecar.headerA ? 'ok' : 'damaged'}, in ${v.s.toFixed(2)} s (${rate(total, v.s)})`,
);
const r = await time('repair', () => tv.repair(file));
console.log(
  `repair: ${r.r.repairedChunks.length} chunks rebuilt, file ${r.r.fileRewritten ? 'replaced' : 'kept'}, sidecar ${r.r.sidecarRewritten ? 'rewritten' : 'kept'}, re-verified ${r.r.after.status}, in ${r.s.toFixed(2)} s`,
);
const after = await tv.hashFile(file);
const same = after.digest === original.r.digest;
console.log(`SHA-256 after repair ${after.digest}: ${same ? 'MATCHES the original' : 'DIFFERS (bug)'}`);

// 5. Open lazily: read the header and one tensor in place, without loading the file.
const fdr = openSync(file, 'r');
const lenBuf = Buffer.alloc(8);
readSync(fdr, lenBuf, 0, 8, 0);
const hlen = Number(lenBuf.readBigUInt64LE());
const hbuf = Buffer.alloc(hlen);
readSync(fdr, hbuf, 0, hlen, 8);
const parsed = JSON.parse(hbuf.toString('utf8'));
const name = `layers.${count - 1}.weight`;
const [start] = parsed[name].data_offsets;
const sample = Buffer.alloc(16);
readSync(fdr, sample, 0, 16, 8 + hlen + start);
closeSync(fdr);
console.log(
  `opened lazily: ${Object.keys(parsed).length - 1} tensors in the header; ${name}[0..4] = ${Array.from(
    new Float32Array(sample.buffer, sample.byteOffset, 4),
  )
    .map((x) => x.toFixed(4))
    .join(', ')}`,
);
if (!process.argv.includes('--keep')) rmSync(dir, { recursive: true, force: true });
process.exitCode = same ? 0 : 1;
