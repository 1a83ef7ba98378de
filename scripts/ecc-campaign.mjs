#!/usr/bin/env node
// Long mode of the erasure-sidecar corruption campaigns (the short modes run in `npm test` through
// `cargo test`): release build, many more fixed seeds.
//   node scripts/ecc-campaign.mjs [cases=20000] [first-seed=1]
//   node scripts/ecc-campaign.mjs --bad-sectors [cases=300] [first-seed=1]
// The second is the bad-sector campaign (crates/tensorvault-faultfs/tests/bad_sector_campaign.rs):
// unreadable sectors served by a FUSE file system, so it needs /dev/fuse and the right to mount (root).
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const badSectors = args[0] === '--bad-sectors';
if (badSectors) args.shift();
const cases = args[0] ?? (badSectors ? '300' : '20000');
const seed = args[1] ?? '1';
const [pkg, test, prefix] = badSectors
  ? ['tensorvault-faultfs', 'bad_sector_campaign', 'TV_BADSEC_CAMPAIGN']
  : ['tensorvault-core', 'erasure_campaign', 'TV_ECC_CAMPAIGN'];
execFileSync('cargo', ['test', '--release', '-p', pkg, '--test', test, '--', '--nocapture'], {
  cwd: root,
  stdio: 'inherit',
  env: {
    ...process.env,
    [`${prefix}_CASES`]: cases,
    [`${prefix}_SEED`]: seed,
    ...(badSectors ? { TV_REQUIRE_FAULTFS: '1' } : {}),
  },
});
