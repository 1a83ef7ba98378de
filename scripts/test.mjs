#!/usr/bin/env node
// `npm test`: everything, in order, on a fresh clone with nothing installed by hand.
// Sets up npm and Python dependencies, then runs Rust lints and tests, the addon build, the TypeScript
// type check and lint, and vitest (which includes the interop and packaging tests). Every step runs
// even if an earlier one failed (a failed build skips the steps that need it), and the last line is
// `N passed, N failed`: each cargo and vitest test counts once, each check step counts once.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name) => join(root, 'node_modules', '.bin', name);
let passed = 0;
let failed = 0;
const failures = [];

function step(name, cmd, args, { parse, env } = {}) {
  const t0 = performance.now();
  process.stdout.write(`\n=== ${name}: ${[cmd, ...args].join(' ')}\n`);
  const r = spawnSync(cmd, args, {
    cwd: root,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    stdio: parse ? ['ignore', 'pipe', 'pipe'] : 'inherit',
    maxBuffer: 256 * 1024 * 1024,
  });
  if (parse) {
    process.stdout.write(r.stdout ?? '');
    process.stderr.write(r.stderr ?? '');
  }
  const ok = r.status === 0;
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
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

const vitestJson = join(root, 'target', 'vitest-results.json');
function vitestCounts() {
  try {
    const j = JSON.parse(readFileSync(vitestJson, 'utf8'));
    // Suites that failed to load count as failures too.
    const brokenSuites = (j.testResults ?? []).filter(
      (s) => s.status === 'failed' && s.assertionResults.length === 0,
    ).length;
    return { passed: j.numPassedTests ?? 0, failed: (j.numFailedTests ?? 0) + brokenSuites };
  } catch {
    return { passed: 0, failed: 0 };
  }
}

const depsOk = step('npm dependencies', 'node', ['scripts/setup.mjs', '--deps']);
const pyOk = step('python interop peers (.venv)', 'bash', ['scripts/setup-python.sh']);
step('cargo fmt --check', 'cargo', ['fmt', '--all', '--check']);
step('cargo clippy', 'cargo', ['clippy', '--workspace', '--all-targets', '--', '-D', 'warnings']);
step('cargo test', 'cargo', ['test', '--workspace'], { parse: cargoCounts });
const buildOk = depsOk && step('build (addon + TypeScript)', 'node', ['scripts/build.mjs']);
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
if (buildOk) {
  mkdirSync(join(root, 'target'), { recursive: true });
  rmSync(vitestJson, { force: true });
  step(
    'vitest',
    bin('vitest'),
    ['run', '--reporter=default', '--reporter=json', `--outputFile.json=${vitestJson}`],
    {
      parse: vitestCounts,
      env: {
        TV_PYTHON: pyOk ? join(root, '.venv', 'bin', 'python') : '',
        TV_REQUIRE_ARM64: arm64 ? '1' : '',
      },
    },
  );
} else {
  failed += 1;
  failures.push('vitest (not run: build failed)');
}
if (!existsSync(vitestJson) && buildOk) failures.push('vitest wrote no results');

if (failures.length) process.stdout.write(`\nFailed: ${failures.join(', ')}\n`);
process.stdout.write(`\n${passed} passed, ${failed} failed\n`);
process.exitCode = failed === 0 && failures.length === 0 ? 0 : 1;
