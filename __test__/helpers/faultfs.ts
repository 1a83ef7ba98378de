import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface, type Interface } from 'node:readline';

const root = join(__dirname, '..', '..');
const binary = join(root, 'target', 'debug', 'tensorvault-faultfs');

/**
 * The fault file system of `crates/tensorvault-faultfs` in a child process: `backing` served at
 * `mount`, where reads that touch a range made bad answer `EIO` (a `SIGBUS` through a mapping), as a
 * disk with bad sectors does, and a write over the range clears it.
 */
export class FaultFs {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #lines: Interface;
  readonly #waiting: ((line: string) => void)[] = [];

  private constructor(
    readonly backing: string,
    readonly mount: string,
    child: ChildProcessWithoutNullStreams,
  ) {
    this.#child = child;
    this.#lines = createInterface({ input: child.stdout });
    this.#lines.on('line', (line) => this.#waiting.shift()?.(line));
  }

  /**
   * Mount one under `dir` (folders `backing` and `mount`), or say why it cannot be: no `/dev/fuse`,
   * no right to mount, no binary that builds. `TV_REQUIRE_FAULTFS=1` (set by `npm test` where FUSE can
   * be mounted) makes the caller fail instead of skipping.
   */
  static async open(dir: string): Promise<FaultFs | string> {
    if (!existsSync('/dev/fuse')) return 'no /dev/fuse';
    if (!existsSync(binary)) {
      const b = spawnSync('cargo', ['build', '-q', '-p', 'tensorvault-faultfs'], {
        cwd: root,
        encoding: 'utf8',
      });
      if (b.status !== 0) return `cargo build -p tensorvault-faultfs failed: ${b.stderr}`;
    }
    const backing = join(dir, 'backing');
    const mount = join(dir, 'mnt');
    mkdirSync(backing, { recursive: true });
    mkdirSync(mount, { recursive: true });
    const child = spawn(binary, [backing, mount], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const fs = new FaultFs(backing, mount, child);
    const first = await Promise.race([
      fs.#next(),
      new Promise<string>((resolve) => child.once('exit', (code) => resolve(`exit ${code}`))),
    ]);
    if (first !== 'ready') return `tensorvault-faultfs did not mount (${first}): ${stderr.trim()}`;
    return fs;
  }

  #next(): Promise<string> {
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  async #ask(command: string): Promise<string> {
    const answer = this.#next();
    this.#child.stdin.write(`${command}\n`);
    const a = await answer;
    if (a.startsWith('error:')) throw new Error(`faultfs ${command}: ${a}`);
    return a;
  }

  /** Make bytes `[start, start + len)` of `name` (a file of the backing folder) unreadable. */
  async bad(name: string, start: number, len: number): Promise<void> {
    await this.#ask(`bad ${name} ${start} ${len}`);
  }

  /** The unreadable ranges of `name` no write has cleared, as `[start, end)` pairs. */
  async ranges(name: string): Promise<[number, number][]> {
    const a = await this.#ask(`ranges ${name}`);
    if (a === '-') return [];
    return a.split(' ').map((r) => r.split('-').map(Number) as [number, number]);
  }

  /** How many reads were answered with `EIO`. */
  async eio(): Promise<number> {
    return Number(await this.#ask('eio'));
  }

  /** Unmount (the child exits when its input ends). */
  async close(): Promise<void> {
    const exited = new Promise((resolve) => this.#child.once('exit', resolve));
    this.#child.stdin.end();
    await exited;
  }
}

/** Whether a spec that cannot mount must fail rather than skip. */
export const requireFaultFs = process.env.TV_REQUIRE_FAULTFS === '1';
