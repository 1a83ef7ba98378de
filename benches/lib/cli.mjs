// Shared by the benches: the project root, `--name value` options, and loading a build's dist.
import { createRequire } from 'node:module';
import { join } from 'node:path';

/** The project root (benches/..). */
export const root = join(import.meta.dirname, '..', '..');

/** The value after `--name` on the command line, or `dflt`. */
export function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : process.argv[i + 1];
}

/** Whether `--name` is on the command line. */
export function flag(name) {
  return process.argv.includes(`--${name}`);
}

/** A build's API: this project's `dist/index.js`, or another build's (a path). */
export function loadBuild(path = join(root, 'dist', 'index.js')) {
  return createRequire(import.meta.url)(path);
}
