/** One log record as a JSON line, and the in-memory ring of the last N lines. */

/** Extra fields of a record (`time`, `level` and `msg` are reserved and dropped). */
export type LogFields = Readonly<Record<string, unknown>>;

const RESERVED = new Set(['time', 'level', 'msg']);

/**
 * The JSON replacer of one record. An `Error` becomes `{ type, message, stack, code?, errors?, cause? }`
 * (`errors`: an `AggregateError`'s). Each is a new object, so JSON's own cycle check never sees an error
 * again: an error met a second time in the same record (a `cause` that leads back to it) is written as
 * `"[Circular]"`, where the record used to lose all its fields to a stack overflow.
 */
function replacerFor(): (key: string, value: unknown) => unknown {
  const seen = new WeakSet<Error>();
  return (_key, value) => {
    if (typeof value === 'bigint') return value.toString();
    if (value instanceof Error) {
      if (seen.has(value)) return '[Circular]';
      seen.add(value);
      const e = value as Error & { code?: unknown; errors?: unknown };
      return {
        type: e.name,
        message: e.message,
        stack: e.stack,
        ...(e.code !== undefined ? { code: e.code } : {}),
        ...(value instanceof AggregateError && Array.isArray(e.errors) ? { errors: e.errors } : {}),
        ...(e.cause !== undefined ? { cause: e.cause } : {}),
      };
    }
    return value;
  };
}

/** Serialise one record as a single JSON line (newlines inside strings are escaped by JSON). */
export function serialise(level: string | number, msg: string, fields: LogFields | undefined): string {
  const rec: Record<string, unknown> = { time: new Date().toISOString(), level, msg };
  try {
    // Inside the try: a field's getter (or a revoked proxy) may throw, like a toJSON() can.
    if (fields !== undefined) {
      for (const k of Object.keys(fields)) if (!RESERVED.has(k)) rec[k] = fields[k];
    }
    return JSON.stringify(rec, replacerFor());
  } catch (err) {
    // Circular structures, throwing getters and toJSON(): keep the record, say why the fields are missing.
    return JSON.stringify({
      time: rec.time,
      level,
      msg,
      fieldsError: err instanceof Error ? err.message : String(err),
    });
  }
}

/** Circular buffer of the last N lines. */
export class Ring {
  readonly #lines: string[];
  #start = 0;
  #count = 0;

  constructor(readonly capacity: number) {
    this.#lines = new Array<string>(Math.min(capacity, 1024));
  }

  get count(): number {
    return this.#count;
  }

  push(line: string): void {
    const cap = this.capacity;
    if (this.#count < cap) {
      const i = (this.#start + this.#count) % cap;
      if (i >= this.#lines.length) this.#lines.push(line);
      else this.#lines[i] = line;
      this.#count++;
    } else {
      this.#lines[this.#start] = line;
      this.#start = (this.#start + 1) % cap;
    }
  }

  /** The newest `k` lines, oldest first. */
  tail(k: number): string[] {
    const n = Math.min(k, this.#count);
    const out = new Array<string>(n);
    const cap = this.capacity;
    const first = this.#start + this.#count - n;
    for (let j = 0; j < n; j++) out[j] = this.#lines[(first + j) % cap] as string;
    return out;
  }
}
