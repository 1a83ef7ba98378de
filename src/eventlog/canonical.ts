/**
 * Canonical JSON (RFC 8785, JCS) for the v2 event log: object keys sorted by UTF-16 code units, no
 * whitespace, numbers in ECMAScript shortest form, strings as `JSON.stringify` writes them. Values that
 * JSON cannot represent exactly (functions, symbols, bigint, NaN, ±Infinity, cycles) are rejected
 * rather than silently dropped or changed; `undefined` object members are omitted and `undefined`
 * array elements and holes are `null`, as in JSON.
 */
import { ErrorCode, invalidArgument, TensorVaultError } from '../errors';
import { describeValue } from '../validate';

const MAX_DEPTH = 256;

/**
 * Canonical JSON text of `value` (RFC 8785). Throws `TV_INVALID_ARGUMENT` for non-JSON values, and
 * for any error thrown while reading the value (a getter, a Proxy trap, a `toJSON`), with it as `cause`,
 * as the legacy payload hash does.
 */
export function canonicalJson(value: unknown): string {
  try {
    return write(value, 0, new Set());
  } catch (err) {
    if (err instanceof TensorVaultError) throw err;
    throw new TensorVaultError(
      ErrorCode.INVALID_ARGUMENT,
      `payload cannot be hashed as JSON: ${err instanceof Error ? err.message : String(err)}`,
      { argument: 'payload' },
      { cause: err },
    );
  }
}

function write(value: unknown, depth: number, seen: Set<object>): string {
  if (depth > MAX_DEPTH) throw invalidArgument('payload', `payload nests deeper than ${MAX_DEPTH} levels`);
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'string':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) {
        throw invalidArgument('payload', `payload holds a non-finite number (${describeValue(value)})`);
      }
      return JSON.stringify(value);
    case 'object':
      break;
    default:
      throw invalidArgument('payload', `payload holds a ${typeof value}, which JSON cannot represent`);
  }
  const obj = value as object;
  const withJson = obj as { toJSON?: unknown };
  if (typeof withJson.toJSON === 'function') {
    return write((withJson.toJSON as () => unknown).call(obj), depth + 1, seen);
  }
  if (seen.has(obj)) throw invalidArgument('payload', 'payload contains a cycle');
  seen.add(obj);
  let out: string;
  if (Array.isArray(obj)) {
    // Every index, holes included (`map` skips holes, which gave `[,1]`): a hole, like `undefined`, is
    // `null`, as JSON.stringify writes it.
    const parts: string[] = new Array(obj.length);
    for (let i = 0; i < obj.length; i++) {
      const v: unknown = obj[i];
      parts[i] = v === undefined ? 'null' : write(v, depth + 1, seen);
    }
    out = `[${parts.join(',')}]`;
  } else {
    const rec = obj as Record<string, unknown>;
    const keys = Object.keys(rec)
      .filter((k) => rec[k] !== undefined)
      .sort();
    out = `{${keys.map((k) => `${JSON.stringify(k)}:${write(rec[k], depth + 1, seen)}`).join(',')}}`;
  }
  seen.delete(obj);
  return out;
}
