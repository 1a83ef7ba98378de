import { type SpawnSyncReturns, spawnSync } from 'node:child_process';

/**
 * Run `node -e script` (or `node file args…`) under a file-size limit of `kib` KiB (`ulimit -f`): a
 * write past it fails with `EFBIG` after writing what fits, as one on a full disk fails with `ENOSPC`
 * (Node ignores `SIGXFSZ`). No privileges needed, unlike a small mounted file system. Returns the
 * child's result, output as text.
 */
export function runUnderFileLimit(
  kib: number,
  script: string | { file: string; args: readonly string[] },
): SpawnSyncReturns<string> {
  const argv = typeof script === 'string' ? ['-e', script] : [script.file, ...script.args];
  // bash: its `ulimit -f` counts 1,024-byte blocks (dash's counts 512-byte ones).
  return spawnSync('bash', ['-c', `ulimit -f ${kib} && exec "$0" "$@"`, process.execPath, ...argv], {
    encoding: 'utf8',
  });
}
