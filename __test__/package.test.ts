// The published shape: pack the root and platform packages with `npm pack`, install the tarballs into an
// empty project with no Rust toolchain on the PATH, and use the package from require, import and its CLI.
// Also: an isolated node_modules (npm --install-strategy=linked, as pnpm lays it out) with winston, the
// declarations as a TypeScript consumer compiles them, and bundles of an application (CommonJS and ESM).
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from './helpers/tmp';
import { type ModuleSetting, typecheck } from './helpers/typecheck';

const root = join(__dirname, '..');
const work = tempDir('tv-pack-');
const project = join(work, 'consumer');
const bare = join(work, 'bare');
// npm's isolated layout: each package sees only its own dependencies and peers.
const linked = join(work, 'linked');
/** The winston of the dev dependencies (npm's cache has it). */
const winstonVersion = JSON.parse(readFileSync(join(root, 'node_modules', 'winston', 'package.json'), 'utf8'))
  .version as string;
// Only node's own folder and the system folders: no ~/.cargo/bin, so no cargo or rustc.
const PATH = [dirname(process.execPath), '/usr/bin', '/bin'].join(':');
const env = { ...process.env, PATH, TENSORVAULT_NATIVE_PATH: '' };
delete (env as Record<string, string | undefined>).TENSORVAULT_NATIVE_PATH;
let packed: {
  root: string;
  platform: string;
  rootFiles: string[];
  platformFiles: string[];
  optionalDependencies: Record<string, string>;
};

const node = (cwd: string, args: string[]) =>
  spawnSync(process.execPath, args, { cwd, env, encoding: 'utf8', timeout: 60_000 });

beforeAll(() => {
  packed = JSON.parse(
    execFileSync(
      process.execPath,
      [join(root, 'scripts', 'pack.mjs'), join(work, 'tarballs'), '--test-build'],
      {
        encoding: 'utf8',
      },
    ),
  );
  for (const [dir, tarballs, extra] of [
    [project, [packed.platform, packed.root], []],
    [bare, [packed.root], ['--omit=optional']],
    [linked, [packed.platform, packed.root, `winston@${winstonVersion}`], ['--install-strategy=linked']],
  ] as const) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'package.json'), '{"name":"consumer","private":true}\n');
    execFileSync(
      'npm',
      ['install', '--no-audit', '--no-fund', '--ignore-scripts', '--prefer-offline', ...extra, ...tarballs],
      {
        cwd: dir,
        env,
        stdio: 'pipe',
      },
    );
  }
});

describe('packed package', () => {
  it('refuses to pack a test build (panic hooks) unless told it is one', () => {
    // npm test builds the addon with its test hooks; a published package must never carry them.
    const r = spawnSync(process.execPath, [join(root, 'scripts', 'pack.mjs'), join(work, 'refused')], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/is a test build \(panic hooks\)/);
  });

  it('has no Rust toolchain on the PATH used for installing and running', () => {
    for (const tool of ['cargo', 'rustc']) {
      expect(spawnSync('sh', ['-c', `command -v ${tool}`], { env, encoding: 'utf8' }).status).not.toBe(0);
    }
  });

  it('ships the addon only in the platform package, and types with the root', () => {
    expect(packed.platformFiles).toContain('tensorvault.linux-x64-gnu.node');
    expect(packed.rootFiles.some((f) => f.endsWith('.node'))).toBe(false);
    for (const f of [
      'dist/index.js',
      'dist/index.mjs',
      'dist/index.d.ts',
      'dist/index.d.mts',
      'dist/cli/main.js',
    ]) {
      expect(packed.rootFiles).toContain(f);
    }
  });

  it('names every platform package as an optional dependency; npm installs only the one for this machine', () => {
    expect(Object.keys(packed.optionalDependencies).sort()).toEqual([
      'tensorvault-darwin-arm64',
      'tensorvault-darwin-x64',
      'tensorvault-linux-arm64-gnu',
      'tensorvault-linux-x64-gnu',
      'tensorvault-linux-x64-musl',
      'tensorvault-win32-x64-msvc',
    ]);
    const installed = readdirSync(join(project, 'node_modules')).filter((n) => n.startsWith('tensorvault-'));
    expect(installed).toEqual(['tensorvault-linux-x64-gnu']);
  });

  it('ships the licence and the docs the README points to, and declares where it comes from', () => {
    expect(packed.rootFiles).toContain('LICENSE');
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const docs = new Set([...readme.matchAll(/\bdocs\/[\w./-]+\.(?:md|svg)\b/g)].map((m) => m[0]));
    expect(docs.size).toBeGreaterThan(0);
    for (const d of docs) expect(packed.rootFiles).toContain(d);
    // Relative links (as npm's page resolves them against `repository`) name shipped files too.
    for (const m of readme.matchAll(/\]\((?!https?:|#)([^)\s]+)\)/g)) {
      expect(packed.rootFiles).toContain(m[1]!.replace(/#.*$/, ''));
    }
    const published = JSON.parse(
      execFileSync('tar', ['-xzOf', packed.root, 'package/package.json'], { encoding: 'utf8' }),
    );
    expect(published.license).toBe('MIT');
    expect(published.repository?.url).toMatch(/^git\+https:\/\//);
    expect(published.homepage).toBeTruthy();
    expect(published.bugs?.url).toBeTruthy();
    expect(published.peerDependenciesMeta).toEqual({ pino: { optional: true }, winston: { optional: true } });
    expect(published.devDependencies).toBeUndefined();
    expect(published.overrides).toBeUndefined();
  });

  it('works from require, loading the addon from the platform package', () => {
    const r = node(project, [
      '-e',
      "const t = require('tensorvault'); console.log(t.sha256('abc').toString('hex')); console.log(t.nativePath());",
    ]);
    expect(r.stderr).toBe('');
    const [digest, from] = r.stdout.trim().split('\n');
    expect(digest).toBe(createHash('sha256').update('abc').digest('hex'));
    expect(from).toBe(
      join(project, 'node_modules', 'tensorvault-linux-x64-gnu', 'tensorvault.linux-x64-gnu.node'),
    );
  });

  it('works from import, sharing one module instance with require', () => {
    writeFileSync(
      join(project, 'esm.mjs'),
      `import * as t from 'tensorvault';
       import { createRequire } from 'node:module';
       const cjs = createRequire(import.meta.url)('tensorvault');
       const r = await t.hashFile(new URL('./package.json', import.meta.url).pathname, { tree: true });
       console.log(JSON.stringify({ alg: r.algorithm, same: t.TensorVaultError === cjs.TensorVaultError, names: Object.keys(t).length === Object.keys(cjs).length }));`,
    );
    const r = node(project, ['esm.mjs']);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ alg: 'sha256-tree-v1', same: true, names: true });
  });

  it('runs the tensorvault command', () => {
    const bin = join(project, 'node_modules', '.bin', 'tensorvault');
    const v = spawnSync(bin, ['--version'], { env, encoding: 'utf8' });
    expect(v.status).toBe(0);
    expect(v.stdout.trim()).toBe('0.1.0');
    const h = spawnSync(bin, ['hash', '--json', 'package.json'], { cwd: project, env, encoding: 'utf8' });
    expect(h.status).toBe(0);
    expect(JSON.parse(h.stdout).digest).toBe(
      createHash('sha256')
        .update(readFileSync(join(project, 'package.json')))
        .digest('hex'),
    );
    const missing = spawnSync(bin, ['hash', 'nope'], { cwd: project, env, encoding: 'utf8' });
    expect(missing.status).toBe(6);
    expect(missing.stderr).toContain('TV_NOT_FOUND');
  });

  it('without the platform package: importing works, the first native call fails with TV_NATIVE_UNAVAILABLE', () => {
    const r = node(bare, [
      '-e',
      "const t = require('tensorvault'); try { t.sha256('x'); } catch (e) { console.log(e.code); console.log(e.message); }",
    ]);
    const [code, message] = r.stdout.trim().split('\n');
    expect(code).toBe('TV_NATIVE_UNAVAILABLE');
    expect(message).toContain('tensorvault-linux-x64-gnu (not installed)');
  });

  it('without winston, an optional ESM import of tensorvault/winston is caught as TV_MISSING_PEER and the process lives on', () => {
    // Regression (Node 20): the ESM face imported the throwing CommonJS module with `import cjs from`,
    // and Node 20 reported its error twice: after the caller caught TV_MISSING_PEER, an uncaught copy
    // ended the process with exit 1.
    writeFileSync(
      join(bare, 'optional-winston.mjs'),
      `try {
         await import('tensorvault/winston');
         console.log('imported');
       } catch (e) {
         console.log('caught', e.code);
       }
       await new Promise((r) => setTimeout(r, 100));
       console.log('alive');`,
    );
    const r = node(bare, ['optional-winston.mjs']);
    expect([r.status, r.stdout.trim().split('\n')]).toEqual([0, ['caught TV_MISSING_PEER', 'alive']]);
    expect(r.stderr).toBe('');
  });

  it('tensorvault/winston works with an isolated node_modules (npm --install-strategy=linked), from require and import', () => {
    // Regression: tensorvault/winston required 'winston-transport', neither a dependency nor a peer of
    // tensorvault, so it resolved only when hoisted: TV_MISSING_PEER with winston installed.
    const script = (kind: 'cjs' | 'mjs', file: string) => `
      ${kind === 'cjs' ? "const winston = require('winston'); const { RingTransport } = require('tensorvault/winston'); const { readRingLog } = require('tensorvault');" : "import winston from 'winston'; import { RingTransport } from 'tensorvault/winston'; import { readRingLog } from 'tensorvault';"}
      const logger = winston.createLogger({ format: winston.format.json(), transports: [new RingTransport({ path: ${JSON.stringify(file)} })] });
      logger.error('stored');
      logger.on('finish', () => console.log(JSON.stringify(readRingLog(${JSON.stringify(file)}).records.map((r) => r.value.message))));
      logger.end();`;
    for (const kind of ['cjs', 'mjs'] as const) {
      writeFileSync(join(linked, `ring.${kind}`), script(kind, join(linked, `ring-${kind}.log`)));
      const r = node(linked, [`ring.${kind}`]);
      expect([r.status, r.stderr], kind).toEqual([0, '']);
      expect(JSON.parse(r.stdout.trim()), kind).toEqual(['stored']);
    }
  });

  it('its declarations type-check for a consumer (isolated node_modules, every module setting)', () => {
    const fixtures = join(__dirname, 'fixtures', 'types');
    const checks: [string, ModuleSetting][] = [
      // Regression: winston.d.ts imported 'winston-transport', not resolvable from tensorvault's folder.
      ['require.cts', 'node16'],
      ['require.cts', 'nodenext'],
      // Regression: the ESM default of tensorvault/pino was typed as the module object (not callable).
      ['pino-default.mts', 'node16'],
      ['pino-default.mts', 'nodenext'],
      ['pino-default.mts', 'bundler'],
      // Regression: no types for the subpath entry points under node10 resolution (module commonjs).
      ['commonjs-subpaths.ts', 'commonjs'],
    ];
    for (const [file, setting] of checks) {
      copyFileSync(join(fixtures, file), join(linked, file));
      expect(typecheck(linked, [file], setting), `${file} under ${setting}`).toEqual([]);
    }
  });

  it('bundled into an application (CommonJS and ESM), reports its own version and finds the addon', () => {
    // Regression: version() and every saved checkpoint's metadata read <bundle>/../../package.json:
    // an untyped ENOENT without one, the application's version with its own; an ESM bundle failed on
    // __dirname. The addon is found as the README says: the platform package resolvable from the
    // bundle's folder, or TENSORVAULT_NATIVE_PATH.
    const appDir = join(project, 'my-service');
    mkdirSync(join(appDir, 'dist', 'js'), { recursive: true });
    writeFileSync(join(appDir, 'package.json'), '{"name":"my-service","version":"9.9.9"}\n');
    writeFileSync(
      join(project, 'app-src.mjs'),
      `import { saveCheckpoint, loadCheckpoint, version } from 'tensorvault';
       import { mkdtempSync } from 'node:fs';
       import { join } from 'node:path';
       (async () => {
         const dir = mkdtempSync(join(process.argv[2], 'ck-'));
         await saveCheckpoint(join(dir, 'm.safetensors'), { w: new Float32Array(10) });
         const ck = await loadCheckpoint(join(dir, 'm.safetensors'));
         console.log(JSON.stringify({ version: version(), runtime: ck.metadata.runtime }));
         ck.close();
       })();`,
    );
    writeFileSync(
      join(project, 'bundle.mjs'),
      `import { rolldown } from ${JSON.stringify(join(root, 'node_modules', 'rolldown', 'dist', 'index.mjs'))};
       for (const [format, file] of [['cjs', 'app.cjs'], ['esm', 'app.mjs']]) {
         const b = await rolldown({ input: 'app-src.mjs', platform: 'node', logLevel: 'silent' });
         await b.write({ file: ${JSON.stringify(join(appDir, 'dist', 'js'))} + '/' + file, format, codeSplitting: false });
       }`,
    );
    const b = node(project, ['bundle.mjs']);
    expect([b.status, b.stderr]).toEqual([0, '']);
    const lone = join(work, 'lone');
    mkdirSync(lone, { recursive: true });
    const published = JSON.parse(
      execFileSync('tar', ['-xzOf', packed.root, 'package/package.json'], { encoding: 'utf8' }),
    ).version as string;
    const addon = join(
      project,
      'node_modules',
      'tensorvault-linux-x64-gnu',
      'tensorvault.linux-x64-gnu.node',
    );
    for (const file of ['app.cjs', 'app.mjs']) {
      // Beside the application's own package.json; the platform package resolves from node_modules above.
      const bundle = join(appDir, 'dist', 'js', file);
      let r = node(appDir, [bundle, work]);
      expect([r.status, r.stderr], file).toEqual([0, '']);
      expect(JSON.parse(r.stdout), file).toEqual({
        version: published,
        runtime: `node ${process.version}; tensorvault ${published}`,
      });
      // Alone in a folder with no package.json or node_modules: the addon through TENSORVAULT_NATIVE_PATH.
      copyFileSync(bundle, join(lone, file));
      r = spawnSync(process.execPath, [join(lone, file), work], {
        cwd: lone,
        env: { ...env, TENSORVAULT_NATIVE_PATH: addon },
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect([r.status, r.stderr], `${file} alone`).toEqual([0, '']);
      expect(JSON.parse(r.stdout).version, `${file} alone`).toBe(published);
    }
  });
});
