// Child process for the restore swap tests: `node restore-child.mjs <archive> <dest>` restores with
// overwrite and prints `done`, or `error CODE` (exit 3). The tests set TV_TEST_SWAP_KILL /
// TV_TEST_SWAP_THROW (src/io/swap.ts) to stop it at a named step of the swap.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const tv = require('../../dist/index.js');
const [archive, dest] = process.argv.slice(2);
try {
  await tv.restoreBackup(archive, dest, { overwrite: true });
  process.stdout.write('done\n');
} catch (err) {
  process.stdout.write(`error ${err.code}\n`);
  process.exitCode = 3;
}
