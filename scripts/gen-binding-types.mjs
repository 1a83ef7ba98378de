#!/usr/bin/env node
// Turns the types `napi build --dts` generates from the binding (native/index.d.ts) into
// src/native/binding.ts, the only statement of the addon's boundary the TypeScript uses. It is a
// declarations-only .ts module (not a .d.ts) so that tsc ships its types in dist/ with the rest.
// Test-only exports (cargo feature `test-hooks`, `__test…`) are left out, so the file is the same for
// a test build and a published one. `npm test` fails when the committed file differs from a fresh one.
//   node scripts/gen-binding-types.mjs [native/index.d.ts] [src/native/binding.ts]
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const from = process.argv[2] ?? join(root, 'native', 'index.d.ts');
const to = process.argv[3] ?? join(root, 'src', 'native', 'binding.ts');

/** The declarations of a generated .d.ts, each with its doc comment, split at top-level boundaries. */
function blocks(text) {
  const out = [];
  let cur = [];
  let depth = 0;
  for (const line of text.split('\n')) {
    if (depth === 0 && line.trim() === '' && cur.length > 0) {
      out.push(cur.join('\n'));
      cur = [];
      continue;
    }
    if (depth === 0 && line.trim() === '') continue;
    cur.push(line);
    depth += (line.match(/{/g) ?? []).length - (line.match(/}/g) ?? []).length;
  }
  if (cur.length > 0) out.push(cur.join('\n'));
  return out;
}

const src = readFileSync(from, 'utf8');
const kept = blocks(src).filter(
  (b) => !/^\/\* (auto-generated|eslint-disable)/.test(b) && !/export declare function __test/.test(b),
);
const header = `// GENERATED from the binding (crates/tensorvault-node) by \`napi build --dts\` and
// scripts/gen-binding-types.mjs: do not edit. \`node scripts/build.mjs native\` regenerates it.
/* eslint-disable */
`;
const body = `${header}\n${kept.join('\n\n')}\n`;
let old = '';
try {
  old = readFileSync(to, 'utf8');
} catch {}
if (old !== body) writeFileSync(to, body);
