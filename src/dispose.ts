/**
 * The symbols of explicit resource management (`using` / `await using`). Node 20.4+ defines them (as
 * `Symbol.for('nodejs.dispose')` and `Symbol.for('nodejs.asyncDispose')`); where a runtime lacks them the
 * same registered symbols are used, so `using` transpiled by TypeScript or esbuild (which look the
 * symbols up the same way) still finds the methods.
 */
export const disposeSymbol: typeof Symbol.dispose =
  (Symbol as { dispose?: typeof Symbol.dispose }).dispose ??
  (Symbol.for('nodejs.dispose') as typeof Symbol.dispose);

export const asyncDisposeSymbol: typeof Symbol.asyncDispose =
  (Symbol as { asyncDispose?: typeof Symbol.asyncDispose }).asyncDispose ??
  (Symbol.for('nodejs.asyncDispose') as typeof Symbol.asyncDispose);
