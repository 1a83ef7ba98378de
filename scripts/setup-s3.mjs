#!/usr/bin/env node
// The S3-compatible server of the remote tests and benchmarks: s3s-fs (Apache-2.0, crates.io), a real
// S3 HTTP server (SigV4, multipart, ranged GET, ListObjectsV2) that stores each object as a plain file
// under its root folder. Built once with `cargo install` into a cache folder OUTSIDE the clone and reused:
//   $TV_S3_CACHE, else $XDG_CACHE_HOME/tensorvault, else ~/.cache/tensorvault   →   s3s-fs-<version>/bin/s3s-fs
// Why s3s-fs rather than SeaweedFS or MinIO: docs/remote.md ("The test server").
//
//   node scripts/setup-s3.mjs            build if missing, print the binary's path and the time taken
//   node scripts/setup-s3.mjs --serve D  build if missing, then serve folder D on 127.0.0.1 (random port)
//                                        until SIGINT/SIGTERM; prints the endpoint as JSON on one line
//
// Imported by __test__/remote*.test.ts and benches/remote*.bench.mjs: ensureS3Server(), startS3Server().
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The pinned server version: 0.14.1 is the newest whose MSRV (1.92) the toolchain here meets. */
export const S3S_FS_VERSION = '0.14.1';

/** The cache folder (outside the clone). */
export function cacheDir() {
  if (process.env.TV_S3_CACHE) return process.env.TV_S3_CACHE;
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'tensorvault');
}

/** Where the server binary lives once built. */
export function serverBinary() {
  return join(cacheDir(), `s3s-fs-${S3S_FS_VERSION}`, 'bin', 's3s-fs');
}

/**
 * Build the server once (cargo install from crates.io, `--locked`) unless it is cached. Installs into a
 * temporary root first and renames it into place, so an interrupted build never leaves a half binary.
 * Returns `{ path, built, seconds }`.
 */
export function ensureS3Server({ quiet = false } = {}) {
  const bin = serverBinary();
  if (existsSync(bin)) return { path: bin, built: false, seconds: 0 };
  const t0 = performance.now();
  const cache = cacheDir();
  mkdirSync(cache, { recursive: true });
  const tmpRoot = mkdtempSync(join(cache, '.s3s-fs-build-'));
  const r = spawnSync(
    'cargo',
    [
      'install',
      's3s-fs',
      '--version',
      S3S_FS_VERSION,
      '--features',
      'binary',
      '--locked',
      '--root',
      tmpRoot,
      '--target-dir',
      join(tmpRoot, 'target'),
    ],
    { stdio: quiet ? ['ignore', 'ignore', 'pipe'] : 'inherit', encoding: 'utf8' },
  );
  if (r.status !== 0) {
    rmSync(tmpRoot, { recursive: true, force: true });
    throw new Error(
      `cargo install s3s-fs ${S3S_FS_VERSION} failed (${r.status ?? r.signal})\n${r.stderr ?? ''}`,
    );
  }
  rmSync(join(tmpRoot, 'target'), { recursive: true, force: true });
  const final = join(cache, `s3s-fs-${S3S_FS_VERSION}`);
  rmSync(final, { recursive: true, force: true });
  renameSync(tmpRoot, final);
  return { path: bin, built: true, seconds: (performance.now() - t0) / 1000 };
}

/**
 * Start the server on 127.0.0.1 serving `root` (created if missing; a fresh temp folder by default),
 * with SigV4 credentials (random unless given). `port` 0 (default) lets the OS choose a free port; pass
 * the port of a stopped server to restart it at the same endpoint. Resolves once it accepts requests:
 * `{ endpoint, port, root, accessKeyId, secretAccessKey, region, env, stop(), kill() }`.
 */
export async function startS3Server({ root, port = 0, accessKeyId, secretAccessKey } = {}) {
  const bin = ensureS3Server({ quiet: true }).path;
  const dir = root ?? mkdtempSync(join(tmpdir(), 'tv-s3-'));
  mkdirSync(dir, { recursive: true });
  const ak = accessKeyId ?? `TV${randomBytes(8).toString('hex').toUpperCase()}`;
  const sk = secretAccessKey ?? randomBytes(20).toString('base64url');
  const child = spawn(
    bin,
    // `--name=value`: a base64url key may start with '-', which the server's argument parser would
    // take for an option (`a value is required for '--secret-key'`, one start in 64).
    ['--host', '127.0.0.1', '--port', String(port), `--access-key=${ak}`, `--secret-key=${sk}`, dir],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 's3s_fs=info', NO_COLOR: '1' } },
  );
  // The server never outlives the process that started it (a crashed test worker, an interrupted bench).
  const reap = () => child.kill('SIGKILL');
  process.once('exit', reap);
  child.once('exit', () => process.removeListener('exit', reap));
  let out = '';
  const bound = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`s3s-fs did not start within 30 s:\n${out}`));
    }, 30_000);
    const onData = (d) => {
      out += d.toString();
      // biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI colour codes in the log
      const m = /server is running at http:\/\/127\.0\.0\.1:(\d+)/.exec(out.replace(/\x1b\[[0-9;]*m/g, ''));
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`s3s-fs exited (${code ?? sig}) before listening:\n${out}`));
    });
  });
  child.stdout.resume();
  child.stderr.resume();
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const endpoint = `http://127.0.0.1:${bound}`;
  const region = 'us-east-1';
  return {
    endpoint,
    port: bound,
    root: dir,
    accessKeyId: ak,
    secretAccessKey: sk,
    region,
    pid: child.pid,
    /** The standard variables a client reads (AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, ...). */
    env: {
      AWS_ENDPOINT_URL_S3: endpoint,
      AWS_ACCESS_KEY_ID: ak,
      AWS_SECRET_ACCESS_KEY: sk,
      AWS_REGION: region,
    },
    /** Stop the server (SIGTERM, then SIGKILL after 5 s); a data folder it made itself is removed. */
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      if (root === undefined) rmSync(dir, { recursive: true, force: true });
    },
    /** Kill the server at once (SIGKILL), as a crash would; resolves when it has exited. */
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = ensureS3Server();
  process.stdout.write(
    `s3s-fs ${S3S_FS_VERSION}: ${r.path} (${r.built ? `built in ${r.seconds.toFixed(1)} s` : 'cached'})\n`,
  );
  const i = process.argv.indexOf('--serve');
  if (i >= 0) {
    const s = await startS3Server({ root: process.argv[i + 1] });
    process.stdout.write(`${JSON.stringify({ endpoint: s.endpoint, root: s.root, ...s.env })}\n`);
    const stop = () => s.stop().then(() => process.exit(0));
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  }
}
