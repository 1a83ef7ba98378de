import { spawn } from 'node:child_process';

/** A child process that holds locks for a test (as a live writer in another process would). */
export interface LockHolder {
  /** Kill it (SIGKILL) and wait until it has exited: the kernel has dropped its locks. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Spawn a Node child that runs `setup` (CommonJS source that takes the locks), then prints `ready` and
 * stays alive. Resolves once it printed `ready`; rejects when it exits before (its stderr is the
 * test's). Stop it in a `finally`.
 */
export async function holdLocks(setup: string): Promise<LockHolder> {
  const child = spawn(
    process.execPath,
    ['-e', `${setup}\nprocess.stdout.write('ready\\n'); setInterval(() => {}, 1000);`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let exited = false;
  const gone = new Promise<void>((resolve) =>
    child.on('exit', () => {
      exited = true;
      resolve();
    }),
  );
  const stop = async (): Promise<void> => {
    if (!exited) child.kill('SIGKILL');
    await gone;
  };
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout?.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('ready')) resolve();
      });
      child.on('exit', () => reject(new Error('the lock holder died')));
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return { stop };
}
