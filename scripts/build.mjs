#!/usr/bin/env node
// Builds everything: the Rust addon (→ native/), the TypeScript (tsc → dist/, CommonJS) and the ESM
// wrapper. The addon is also copied into npm/<platform>/ so the platform package can be packed.
//
// On Linux x64 the addon is built as the published binary is: against glibc 2.17 with cargo-zigbuild
// and Zig (both from PyPI, installed into .tv-cache/zig by scripts/setup-cross.sh), stripped by the
// release profile. So `npm test` and `npm run demo` exercise the binary that ships.
//   node scripts/build.mjs [native|ts]
//   node scripts/build.mjs <platform>|cross   a cross-built addon (linux-arm64-gnu, linux-x64-musl,
//                                   darwin-arm64, darwin-x64) or all of them, into npm/<platform>/
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

/** The test build (`npm test` sets TV_TEST_HOOKS=1) adds the panic hooks; a published build has none. */
const testHooks = process.env.TV_TEST_HOOKS === '1' ? ['--features', 'test-hooks'] : [];

/** `napi build` of the addon into `outDir` (release, no JS glue). */
const napiArgs = (outDir, extra = []) => [
  'build',
  '--platform',
  '--release',
  '--manifest-path',
  'crates/tensorvault-node/Cargo.toml',
  '--output-dir',
  outDir,
  '--no-js',
  ...extra,
];

function napiBuild({ target, platform, outDir, env, extra = [] }) {
  mkdirSync(outDir, { recursive: true });
  run(
    join(bin, 'napi'),
    napiArgs(outDir, [...(target ? ['--target', target, '--cross-compile'] : []), ...extra]),
    env,
  );
  const file = `tensorvault.${platform}.node`;
  copyFileSync(join(outDir, file), join(root, 'npm', platform, file));
  return join(outDir, file);
}

/**
 * The addons cross-built here besides the host's. None can use rustup's toolchain (rustup can only add a
 * target's std from the Rust project's own server, out of reach here): linux-arm64-gnu uses Debian's
 * rustc-web and the arm64 std Debian ships for it; the others build the std from Debian's rust-web-src
 * with `-Z build-std` (RUSTC_BOOTSTRAP, the same compiler's own sources). Zig links all of them.
 */
const CROSS = {
  'linux-arm64-gnu': { target: `aarch64-unknown-linux-gnu.${GLIBC_BASELINE}`, setup: '--arm64' },
  'linux-x64-musl': {
    target: 'x86_64-unknown-linux-musl',
    setup: '--std-src',
    buildStd: true,
    // musl targets link libc statically by default, which rules out a cdylib.
    env: {
      CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS: '-C target-feature=-crt-static',
      CFLAGS_x86_64_unknown_linux_musl: '-mevex512',
    },
  },
  // Not stripped: rustc strips Mach-O with rust-objcopy, which Debian's rustc-web lacks, and stripping
  // after the link would have to redo Zig's ad-hoc code signature (arm64 macOS loads only signed code).
  'darwin-arm64': {
    target: 'aarch64-apple-darwin',
    setup: '--std-src',
    buildStd: true,
    env: { CARGO_PROFILE_RELEASE_STRIP: 'none' },
  },
  'darwin-x64': {
    target: 'x86_64-apple-darwin',
    setup: '--std-src',
    buildStd: true,
    env: { CARGO_PROFILE_RELEASE_STRIP: 'none', CFLAGS_x86_64_apple_darwin: '-mevex512' },
  },
};

if (only !== undefined && (only in CROSS || only === 'cross')) {
  const deb = join(root, '.tv-cache', 'deb-rust', 'usr');
  for (const platform of only === 'cross' ? Object.keys(CROSS) : [only]) {
    const spec = CROSS[platform];
    run('bash', ['scripts/setup-cross.sh', spec.setup]);
    napiBuild({
      target: spec.target,
      platform,
      outDir: join(root, 'target', 'prebuilt', platform),
      env: {
        ...zigEnv(),
        RUSTC: join(deb, 'bin', 'rustc'),
        LD_LIBRARY_PATH: join(deb, 'lib', 'x86_64-linux-gnu'),
        CARGO_TARGET_DIR: join(root, 'target', spec.buildStd ? 'build-std' : 'deb-rust'),
        ...(spec.buildStd ? { RUSTC_BOOTSTRAP: '1' } : {}),
        ...spec.env,
      },
      extra: spec.buildStd ? ['--', '-Zbuild-std=std,panic_unwind'] : [],
    });
  }
} else if (only !== 'ts') {
  if (process.platform === 'linux' && process.arch === 'x64') {
    run('bash', ['scripts/setup-cross.sh']);
    napiBuild({
      target: `x86_64-unknown-linux-gnu.${GLIBC_BASELINE}`,
      platform: 'linux-x64-gnu',
      outDir: join(root, 'native'),
      env: zigEnv(),
      extra: ['--dts', 'index.d.ts', ...testHooks],
    });
  } else {
    run(join(bin, 'napi'), napiArgs('native', ['--dts', 'index.d.ts', ...testHooks]));
  }
  // The TypeScript's view of the boundary: src/native/binding.ts, from the types napi just generated.
  run('node', ['scripts/gen-binding-types.mjs']);
}
if (only === undefined || only === 'ts') {
  run(join(bin, 'tsc'), ['-p', 'tsconfig.build.json']);
  run('node', ['scripts/esm-wrapper.mjs']);
  chmodSync(join(root, 'dist', 'cli', 'main.js'), 0o755);
}
