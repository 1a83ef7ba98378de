/**
 * The two hash rules of the event log.
 *
 * - **legacy** (Libervia, reproduced bit for bit): `payload_hash = sha256_hex(JSON.stringify(payload,
 *   Object.keys(payload).sort()))` (the replacer array is a key whitelist applied at every depth, so
 *   nested keys that are not also top-level keys are dropped) and `current_hash = sha256_hex(utf8(
 *   [previous_hash ?? "", timestamp, actor, evento, entidade, entidade_id, payload_hash].join("|")))`.
 * - **v2** (`tv-eventlog-v2`, docs/formats/eventlog.md): `payload_hash = sha256_hex(JCS(payload))` and
 *   `current_hash = sha256_hex("tv-eventlog-v2\n" + JCS(entry without current_hash))`, where the
 *   entry includes `v`, `seq` and `id`. JCS is RFC 8785 canonical JSON: unambiguous and length-safe.
 */
import { ErrorCode, invalidArgument, TensorVaultError } from '../errors';
import { sha256Lossy, sha256ManyHexLossy } from '../hash/sha256';
import { describeValue } from '../validate';
import { canonicalJson } from './canonical';

/** Name of the v2 hash algorithm, recorded in the log's metadata and segment headers. */
export const V2_HASH_ALGORITHM = 'tv-eventlog-v2';

/** One stored event. `v` and `seq` are present in v2 logs only. */
export interface EventLogEntry {
  /** Format marker of v2 entries (absent in legacy entries). */
  v?: 2;
  /** Sequence number, 1 for the first event ever appended (v2 only; survives pruning). */
  seq?: number;
  /** Unique id (UUID v4). Hashed in v2, not in legacy. */
  id: string;
  /** ISO-8601 time with milliseconds and `Z`. */
  timestamp: string;
  /** Who did it. */
  actor: string;
  /** What happened (event type). */
  evento: string;
  /** Kind of entity concerned. */
  entidade: string;
  /** Id of the entity concerned. */
  entidade_id: string;
  /** SHA-256 (hex) of the payload under the log's rule. */
  payload_hash: string;
  /** `current_hash` of the previous event, `null` for the first one. */
  previous_hash: string | null;
  /** This event's hash under the log's rule. */
  current_hash: string;
}

function checkPayload(payload: unknown): Record<string, unknown> {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    throw invalidArgument('payload', 'payload must be a plain object');
  }
  return payload as Record<string, unknown>;
}

// Strings converted as Libervia's node:crypto converted them (a lone UTF-16 surrogate becomes U+FFFD):
// the legacy preimage joins raw fields, and its hashes must be reproduced bit for bit (the public
// sha256() refuses such strings). v2 preimages are JSON text, where JSON.stringify escapes a lone
// surrogate (`\ud800`): they never hold one, and convert exactly either way.
const hex = (data: string): string => sha256Lossy(data).toString('hex');

/** Legacy (Libervia) payload hash, quirk included. */
export function legacyPayloadHash(payload: unknown): string {
  const p = checkPayload(payload);
  let text: string;
  try {
    text = JSON.stringify(p, Object.keys(p).sort());
  } catch (err) {
    // Nesting too deep for the stack (RangeError), a cycle or a bigint (TypeError): a typed refusal.
    throw new TensorVaultError(
      ErrorCode.INVALID_ARGUMENT,
      `payload cannot be hashed as JSON: ${(err as Error).message}`,
      { argument: 'payload' },
      { cause: err },
    );
  }
  return hex(text);
}

function checkEntry(e: unknown): void {
  if (typeof e !== 'object' || e === null || Array.isArray(e))
    throw invalidArgument('entry', `entry must be an object, got ${describeValue(e)}`);
}

/** The legacy (Libervia) hash preimage of an entry: seven fields joined with `|`. */
export function legacyPreimage(e: Omit<EventLogEntry, 'current_hash' | 'id'>): string {
  return [
    e.previous_hash ?? '',
    e.timestamp,
    e.actor,
    e.evento,
    e.entidade,
    e.entidade_id,
    e.payload_hash,
  ].join('|');
}

/** Legacy (Libervia) `current_hash` of an entry (the id is not hashed). */
export function legacyEntryHash(e: Omit<EventLogEntry, 'current_hash' | 'id'>): string {
  checkEntry(e);
  return hex(legacyPreimage(e));
}

/** v2 payload hash: SHA-256 of the RFC 8785 canonical JSON of the whole payload. */
export function v2PayloadHash(payload: unknown): string {
  return hex(canonicalJson(checkPayload(payload)));
}

const str = JSON.stringify;

/**
 * The v2 hash preimage's canonical JSON. For a well-typed entry it is written directly (keys in RFC
 * 8785 order: actor, entidade, entidade_id, evento, id, payload_hash, previous_hash, seq, timestamp, v),
 * which is byte-identical to {@link canonicalJson} and several times faster; anything else goes
 * through {@link canonicalJson}.
 */
export function v2Preimage(e: Omit<EventLogEntry, 'current_hash'>): string {
  const { v, seq, id, timestamp, actor, evento, entidade, entidade_id, payload_hash, previous_hash } = e;
  if (
    v === 2 &&
    Number.isSafeInteger(seq) &&
    typeof id === 'string' &&
    typeof timestamp === 'string' &&
    typeof actor === 'string' &&
    typeof evento === 'string' &&
    typeof entidade === 'string' &&
    typeof entidade_id === 'string' &&
    typeof payload_hash === 'string' &&
    (previous_hash === null || typeof previous_hash === 'string')
  ) {
    return `${V2_HASH_ALGORITHM}\n{"actor":${str(actor)},"entidade":${str(entidade)},"entidade_id":${str(entidade_id)},"evento":${str(evento)},"id":${str(id)},"payload_hash":${str(payload_hash)},"previous_hash":${previous_hash === null ? 'null' : str(previous_hash)},"seq":${seq},"timestamp":${str(timestamp)},"v":2}`;
  }
  return `${V2_HASH_ALGORITHM}\n${canonicalJson({ v, seq, id, timestamp, actor, evento, entidade, entidade_id, payload_hash, previous_hash })}`;
}

/** v2 `current_hash`: domain-separated SHA-256 of the canonical JSON of every other field. */
export function v2EntryHash(e: Omit<EventLogEntry, 'current_hash'>): string {
  checkEntry(e);
  return hex(v2Preimage(e));
}

/** Entries hashed per native call: enough to make the call's cost vanish, few enough to die young. */
const HASH_CHUNK = 1024;

function preimageOf(e: unknown, v2: boolean): string {
  // A malformed entry fails its shape check before its hash is compared; it only must not throw here.
  if (typeof e !== 'object' || e === null) return '';
  try {
    const entry = e as Omit<EventLogEntry, 'current_hash'>;
    return v2 ? v2Preimage(entry) : legacyPreimage(entry);
  } catch {
    return '';
  }
}

/**
 * Checks entries' `current_hash` under the legacy or v2 rule, hashing them in chunks of consecutive
 * entries with one native call each (`sha256ManyHex`, strings converted as {@link hex} does) instead of
 * one call per entry.
 * Bit-identical to comparing with {@link v2EntryHash} / {@link legacyEntryHash}.
 */
export class EntryHashChecker {
  #hex = '';
  #from = 0;
  #to = 0;

  /** Check `entries` (as parsed from a segment) under the v2 rule, or the legacy one. */
  constructor(
    readonly entries: readonly unknown[],
    readonly v2: boolean,
  ) {}

  /** Whether entry `k` (already shape-checked) hashes to `expected` (64 lower-case hex digits). */
  matches(k: number, expected: string): boolean {
    if (k < this.#from || k >= this.#to) {
      const end = Math.min(this.entries.length, k + HASH_CHUNK);
      const pre: string[] = new Array(Math.max(0, end - k));
      for (let i = k; i < end; i++) pre[i - k] = preimageOf(this.entries[i], this.v2);
      this.#hex = sha256ManyHexLossy(pre);
      this.#from = k;
      this.#to = end;
    }
    return expected.length === 64 && this.#hex.startsWith(expected, (k - this.#from) * 64);
  }
}

/** The generic (slow) form of {@link v2Preimage}, kept for tests. */
export function v2PreimageGeneric(e: Omit<EventLogEntry, 'current_hash'>): string {
  const { v, seq, id, timestamp, actor, evento, entidade, entidade_id, payload_hash, previous_hash } = e;
  return `${V2_HASH_ALGORITHM}\n${canonicalJson({ v, seq, id, timestamp, actor, evento, entidade, entidade_id, payload_hash, previous_hash })}`;
}

const HEX64 = /^[0-9a-f]{64}$/;

/** The keys of a v2 entry line (docs/formats/eventlog.md), and no others. */
const V2_ENTRY_KEYS = new Set([
  'v',
  'seq',
  'id',
  'timestamp',
  'actor',
  'evento',
  'entidade',
  'entidade_id',
  'payload_hash',
  'previous_hash',
  'current_hash',
]);

/**
 * Shape check of an entry read from disk: returns a reason when it is malformed. A v2 entry has
 * exactly its eleven keys: any other is not covered by its hash, so it would be returned by queries
 * unauthenticated. A legacy entry may carry others, as Libervia accepts them (they are not hashed).
 */
export function entryShapeProblem(e: unknown, v2: boolean): string | undefined {
  if (typeof e !== 'object' || e === null || Array.isArray(e)) return 'entry is not an object';
  const r = e as Record<string, unknown>;
  for (const k of ['id', 'timestamp', 'actor', 'evento', 'entidade', 'entidade_id'] as const) {
    if (typeof r[k] !== 'string') return `field ${k} is not a string`;
  }
  if (typeof r.payload_hash !== 'string' || !HEX64.test(r.payload_hash)) return 'payload_hash is malformed';
  if (typeof r.current_hash !== 'string' || !HEX64.test(r.current_hash)) return 'current_hash is malformed';
  if (r.previous_hash !== null && (typeof r.previous_hash !== 'string' || !HEX64.test(r.previous_hash))) {
    return 'previous_hash is malformed';
  }
  if (v2) {
    if (r.v !== 2) return 'entry is not a v2 entry';
    if (typeof r.seq !== 'number' || !Number.isSafeInteger(r.seq) || r.seq < 1) return 'seq is malformed';
    for (const k in r) {
      if (!V2_ENTRY_KEYS.has(k)) return `unexpected field ${JSON.stringify(k)} (not covered by the hash)`;
    }
  }
  return undefined;
}
