// The S3-compatible test server (s3s-fs, scripts/setup-s3.mjs) as the remote specs use it.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { type IncomingMessage, request, type ServerResponse } from 'node:http';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** A running server (`startS3Server`). */
export interface S3Server {
  endpoint: string;
  port: number;
  root: string;
  accessKeyId: string;
  secretAccessKey: string;
  env: Record<string, string>;
  stop(): Promise<void>;
  kill(): Promise<void>;
}

/** What the specs use of scripts/setup-s3.mjs (an ES module, imported in beforeAll). */
export interface SetupS3 {
  serverBinary(): string;
  startS3Server(o?: {
    root?: string;
    port?: number;
    accessKeyId?: string;
    secretAccessKey?: string;
  }): Promise<S3Server>;
}

export const setupPath = join(__dirname, '..', '..', 'scripts', 'setup-s3.mjs');
// The binary's place, as scripts/setup-s3.mjs computes it (cacheDir()/s3s-fs-VERSION/bin/s3s-fs).
const version = /S3S_FS_VERSION = '([^']+)'/.exec(readFileSync(setupPath, 'utf8'))?.[1] ?? '';
const cache =
  process.env.TV_S3_CACHE || join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'tensorvault');
export const s3Binary = join(cache, `s3s-fs-${version}`, 'bin', 's3s-fs');
// npm test builds the server first (step "S3 test server") and sets TV_REQUIRE_S3: then a missing
// server fails here instead of skipping.
export const s3Available = existsSync(s3Binary);
if (!s3Available && process.env.TV_REQUIRE_S3 === '1') throw new Error(`S3 test server missing: ${s3Binary}`);

/** Flip bits of one byte of a stored object (the server keeps each object as a plain file). */
export function flipStored(path: string, at: number, mask = 1): Buffer {
  const b = readFileSync(path);
  b[at] = (b[at] as number) ^ mask;
  writeFileSync(path, b);
  return b;
}

/**
 * Forward one request of a test proxy to the server at `upstream` and pipe its answer back: what the
 * proxies of the race tests do with every request they do not hold.
 */
export function forwardRequest(upstream: URL, req: IncomingMessage, res: ServerResponse): void {
  const fwd = request(
    { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
    (r) => {
      res.writeHead(r.statusCode ?? 500, r.headers);
      r.pipe(res);
    },
  );
  fwd.on('error', () => res.destroy());
  req.pipe(fwd);
}
