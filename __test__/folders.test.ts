// A regular file where a folder should be is TV_NOT_A_FILE naming that file, at every public entry
// point that creates or writes into a folder of the caller's: the same situation, the same code.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import * as tv from '../dist/index.js';
import { tempDir } from './helpers/tmp';

const dir = tempDir('tv-folders-');
let n = 0;
/** A fresh regular file (content 'x'): where the entry point under test wants a folder. */
const regularFile = (): string => {
  const f = join(dir, `file-${++n}`);
  writeFileSync(f, 'x');
  return f;
};
const tensors = () => ({ w: new Float32Array([1, 2, 3, 4]) });

let checkpoint = '';
let pushedUrl = '';
let archive = '';
let big = '';
beforeAll(async () => {
  checkpoint = join(dir, 'ck', 'model.safetensors');
  await tv.saveCheckpoint(checkpoint, tensors());
  pushedUrl = (await tv.push(checkpoint, `file://${join(dir, 'store')}`, { stateDir: join(dir, 'state') }))
    .url;
  const log = await tv.EventLog.open(join(dir, 'log'), { fsync: 'never' });
  await log.append('Bazari', 'E0', 'Situacao', 's0', { i: 0 });
  await log.close();
  // Over one 5 MiB part: pushed in parts, with a state file in stateDir.
  big = join(dir, 'big.bin');
  writeFileSync(big, Buffer.alloc(6 * 1024 * 1024, 7));
  archive = (await tv.createBackup(join(dir, 'log'), join(dir, 'backups'))).archivePath;
});

/** Each entry point, called with `parent` (a regular file) as a folder, or a folder under it. */
const entryPoints: [string, (parent: string) => Promise<unknown>][] = [
  ['saveSafetensors into the file', (f) => tv.saveSafetensors(join(f, 'x.safetensors'), tensors())],
  ['saveSafetensors under the file', (f) => tv.saveSafetensors(join(f, 'sub', 'x.safetensors'), tensors())],
  ['saveShardedSafetensors', (f) => tv.saveShardedSafetensors(f, tensors())],
  ['saveCheckpoint into the file', (f) => tv.saveCheckpoint(join(f, 'x.safetensors'), tensors())],
  ['saveCheckpoint under the file', (f) => tv.saveCheckpoint(join(f, 'sub', 'x.safetensors'), tensors())],
  ['CheckpointManager.save', (f) => new tv.CheckpointManager(join(f, 'run')).save(1, tensors())],
  ['pull into the file', (f) => tv.pull(pushedUrl, f)],
  ['pull under the file', (f) => tv.pull(pushedUrl, join(f, 'dest'))],
  [
    'push with stateDir under the file',
    (f) =>
      tv.push(big, `file://${join(dir, 'store2')}`, {
        partSize: 5 * 1024 * 1024,
        stateDir: join(f, 'state'),
      }),
  ],
  [
    'push to a file:// store under the file',
    (f) => tv.push(checkpoint, `file://${join(f, 'store')}`, { stateDir: join(dir, 'state') }),
  ],
  ['createBackup into a folder under the file', (f) => tv.createBackup(join(dir, 'log'), join(f, 'out'))],
  ['restoreBackup into a folder under the file', (f) => tv.restoreBackup(archive, join(f, 'dest'))],
  ['EventLog.open under the file', (f) => tv.EventLog.open(join(f, 'log'))],
  [
    'RingFileLog under the file',
    async (f) => {
      new tv.RingFileLog(join(f, 'sub', 'ring.log'), { capacityLines: 10 }).close();
    },
  ],
];

describe('a regular file where a folder should be (TV_NOT_A_FILE everywhere)', () => {
  it.each(entryPoints)('%s: TV_NOT_A_FILE naming the file, which is left as it was', async (_name, call) => {
    const f = regularFile();
    await expect(call(f)).rejects.toMatchObject({
      name: 'TensorVaultError',
      code: 'TV_NOT_A_FILE',
      context: { path: f, kind: 'a regular file' },
    });
    expect(readFileSync(f, 'utf8')).toBe('x');
  });
});
