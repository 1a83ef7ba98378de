#!/usr/bin/env node
// Builds everything: the Rust addon (→ native/), the TypeScript (tsc → dist/, CommonJS) and the ESM
// wrapper. The addon is also copied into npm/<platform>/ so the platform package can be packed.
//
// On Linux x64 the addon is built as the published binary is: against glibc 2.17 with cargo-zigbuild
// and Zig (both from PyPI, installed into .tv-cache/zig by scripts/setup-cross.sh), stripped by the
// release profile. So `npm test` and `npm run demo` exercise the binary that ships.
//   node scripts/build.mjs [native|ts]
//   node scripts/build.mjs arm64     the linux-arm64-gnu addon (Debian's rustc-web + Zig, see setup-cross.sh)
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'node_modules', '.bin');
const run = (cmd, args, env = {}) =>
  execFileSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
const only = process.argv[2];

/** The glibc that linux-*-gnu addons are linked against (the oldest the binary runs on). */
export const GLIBC_BASELINE = '2.17';

const zigEnv = () => ({
  // cargo-zigbuild, and `python3 -m ziglang` through which it finds zig.
  PATH: `${join(root, '.tv-cache', 'zig', 'bin')}:${process.env.PATH}`,
  // Zig passes clang an explicit CPU feature list that turns `evex512` off, so libdeflate's AVX-512
  // functions (compiled for their own target attribute, picked at run time) fail to compile without it.
  // It enables no instruction by itself: only code already marked avx512 uses it.
  CFLAGS_x86_64_unknown_linux_gnu: '-mevex512',
});

function napiBuild({ target, platform, outDir, env, extra = [] }) {
  mkdirSync(outDir, { recursive: true });
  run(
    join(bin, 'napi'),
    [
      'build',
      '--platform',
      '--release',
      '--manifest-path',
      'crates/tensorvault-node/Cargo.toml',
      '--output-dir',
      outDir,
      '--no-js',
      ...(target ? ['--target', target, '--cross-compile'] : []),
      ...extra,
    ],
    env,
  );
  const file = `tensorvault.${platform}.node`;
  copyFileSync(join(outDir, file), join(root, 'npm', platform, file));
  return join(outDir, file);
}

if (only === 'arm64') {
  run('bash', ['scripts/setup-cross.sh', '--arm64']);
  const deb = join(root, '.tv-cache', 'deb-rust', 'usr');
  napiBuild({
    target: `aarch64-unknown-linux-gnu.${GLIBC_BASELINE}`,
    platform: 'linux-arm64-gnu',
    outDir: join(root, 'target', 'prebuilt', 'linux-arm64-gnu'),
    env: {
      ...zigEnv(),
      // rustup cannot add the aarch64 std here; Debian's rustc-web ships one (its own compiler only).
      RUSTC: join(deb, 'bin', 'rustc'),
      LD_LIBRARY_PATH: join(deb, 'lib', 'x86_64-linux-gnu'),
      CARGO_TARGET_DIR: join(root, 'target', 'deb-rust'),
    },
  });
} else if (only !== 'ts') {
  if (process.platform === 'linux' && process.arch === 'x64') {
    run('bash', ['scripts/setup-cross.sh']);
    napiBuild({
      target: `x86_64-unknown-linux-gnu.${GLIBC_BASELINE}`,
      platform: 'linux-x64-gnu',
      outDir: join(root, 'native'),
      env: zigEnv(),
      extra: ['--dts', 'index.d.ts'],
    });
  } else {
    run(join(bin, 'napi'), [
      'build',
      '--platform',
      '--release',
      '--manifest-path',
      'crates/tensorvault-node/Cargo.toml',
      '--output-dir',
      'native',
      '--no-js',
      '--dts',
      'index.d.ts',
    ]);
  }
}
if (only !== 'native' && only !== 'arm64') {
  run(join(bin, 'tsc'), ['-p', 'tsconfig.build.json']);
  run('node', ['scripts/esm-wrapper.mjs']);
  chmodSync(join(root, 'dist', 'cli', 'main.js'), 0o755);
}
