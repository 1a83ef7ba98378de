#!/usr/bin/env node
// Long mode of the erasure-sidecar corruption campaign (the short mode runs in `npm test` through
// `cargo test`): release build, many more fixed seeds.
//   node scripts/ecc-campaign.mjs [cases=20000] [first-seed=1]
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cases = process.argv[2] ?? '20000';
const seed = process.argv[3] ?? '1';
execFileSync(
  'cargo',
  ['test', '--release', '-p', 'tensorvault-core', '--test', 'erasure_campaign', '--', '--nocapture'],
  {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, TV_ECC_CAMPAIGN_CASES: cases, TV_ECC_CAMPAIGN_SEED: seed },
  },
);
