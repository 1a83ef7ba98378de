/**
 * JSON values of `.fold` files in JavaScript. PyFolds's JSON keeps integers exact at any size and has
 * `NaN` / `Infinity` tokens; the addon hands JSON over in a tagged standard form, turned back here:
 * integers beyond ±2^53 become `bigint`, non-finite floats become `NaN` / `±Infinity`. Writing goes
 * the other way: {@link toFoldJson} produces text the core re-emits in Python's exact forms.
 */
import { invalidArgument } from '../errors';

/** A JSON value as read from a `.fold` file. */
export type FoldJson = null | boolean | number | bigint | string | FoldJson[] | { [key: string]: FoldJson };

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Turn the addon's tagged JSON (`{"$int"}`, `{"$float"}`, `{"$obj"}`) into JavaScript values. */
export function revive(v: unknown): FoldJson {
  if (Array.isArray(v)) return v.map(revive);
  if (!isRecord(v)) return v as FoldJson;
  const keys = Object.keys(v);
  if (keys.length === 1) {
    const [k] = keys;
    if (k === '$int' && typeof v.$int === 'string') return BigInt(v.$int);
    if (k === '$float' && typeof v.$float === 'string') {
      return v.$float === 'NaN' ? Number.NaN : v.$float === 'Infinity' ? Infinity : -Infinity;
    }
    if (k === '$obj' && isRecord(v.$obj)) return reviveMembers(v.$obj);
  }
  return reviveMembers(v);
}

function reviveMembers(v: Record<string, unknown>): { [key: string]: FoldJson } {
  const out: { [key: string]: FoldJson } = {};
  for (const [k, x] of Object.entries(v)) {
    Object.defineProperty(out, k, { value: revive(x), enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** Parse the addon's tagged JSON text. */
export function parseTagged(text: string): FoldJson {
  return revive(JSON.parse(text));
}

/**
 * JSON text for a value the writer stores: `bigint` as exact integers, non-finite numbers as
 * `NaN` / `Infinity` tokens, `-0` as `-0.0`. Only plain objects, arrays, strings, numbers, bigints,
 * booleans and null are accepted (a JS number that is an integer is written as an integer: JavaScript
 * cannot tell `1.0` from `1`).
 */
export function toFoldJson(value: unknown, argument: string, depth = 0): string {
  if (depth > 100) throw invalidArgument(argument, `${argument} is nested more than 100 levels deep`);
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'bigint':
      return value.toString();
    case 'number':
      if (Number.isNaN(value)) return 'NaN';
      if (value === Infinity) return 'Infinity';
      if (value === -Infinity) return '-Infinity';
      if (Object.is(value, -0)) return '-0.0';
      return String(value);
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) return `[${value.map((x) => toFoldJson(x, argument, depth + 1)).join(',')}]`;
      const proto = Object.getPrototypeOf(value) as unknown;
      if (proto !== Object.prototype && proto !== null) {
        throw invalidArgument(
          argument,
          `${argument} holds a value that is not plain JSON (${Object.prototype.toString.call(value)})`,
        );
      }
      const parts = Object.entries(value as Record<string, unknown>).map(
        ([k, x]) => `${JSON.stringify(k)}:${toFoldJson(x, argument, depth + 1)}`,
      );
      return `{${parts.join(',')}}`;
    }
    default:
      throw invalidArgument(argument, `${argument} holds a ${typeof value}, which JSON cannot store`);
  }
}
