/**
 * The log's files, read and sealed: segment listing and parsing, the v2 metadata, snapshot and head
 * records (each carries a SHA-256 or HMAC `check`), the legacy prune anchor. Shared by the two format
 * strategies, verification and queries; it holds no tail state.
 */
import { timingSafeEqual } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { ErrorCode, TensorVaultError } from '../errors';
import { hmacSha256, sha256 } from '../hash/index';
import { atomicWriteFile, closeQuietly, ioError, readIfExists } from '../io/index';
import { canonicalJson } from './canonical';
import type { EventLogEntry } from './hashing';
import { V2_HASH_ALGORITHM } from './hashing';
import {
  type EventLogFormat,
  LAYOUT,
  LEGACY_SEGMENT_RE,
  parseSegmentSteps,
  type SegmentRead,
  V2_SEGMENT_RE,
} from './layout';

export interface Segment {
  n: number;
  file: string;
}

/** Where a pruned v2 log starts. */
export interface V2Anchor {
  segment: number;
  seq: number;
  prev_hash: string | null;
  pruned_events: number;
}

export interface V2Meta {
  format: 'tensorvault-eventlog';
  version: 2;
  hash_algorithm: string;
  created_at: string;
  anchor: V2Anchor;
}

/** A sealed (full) v2 segment's digest, carried by the snapshot. */
export interface SealRecord {
  segment: number;
  first_seq: number;
  last_seq: number;
  last_hash: string;
  size: number;
  sha256: string;
}

export interface Snapshot {
  version: number;
  last_segment: number;
  last_index_in_segment: number;
  last_event_id: string | null;
  last_current_hash: string | null;
  last_timestamp: string | null;
  total_events: number;
  last_seq?: number;
  first_seq?: number;
  sealed?: SealRecord[];
}

/** The v2 head record: the last acknowledged event. */
export interface Head {
  seq: number;
  hash: string | null;
  segment: number;
}

/** The anchor tensorvault writes when it prunes a legacy log (Libervia writes none). */
export interface LegacyAnchor {
  first_segment: number;
  first_previous_hash: string | null;
}

/** A snapshot file read: the snapshot when it is usable, else whether it was there but unusable, and why. */
export interface SnapshotRead {
  snap?: Snapshot;
  corrupt: boolean;
  problem?: string;
}

/** Whether a parsed record carries an HMAC check (a record of a log created with `hmacKey`). */
export function sealedWithHmac(v: unknown): boolean {
  if (typeof v !== 'object' || v === null) return false;
  const c = (v as { check?: { alg?: unknown; value?: unknown } }).check;
  return typeof c === 'object' && c !== null && c.alg === 'hmac-sha256' && typeof c.value === 'string';
}

/**
 * `TV_EVENTLOG_HMAC_UNEXPECTED`: a key was given for the log at `path`, which is not keyed (`why`). It
 * is refused, never read as authenticated (no downgrade): created without a key, or rewritten by
 * someone without it.
 */
export function hmacUnexpected(path: string, why: string): TensorVaultError {
  return new TensorVaultError(
    ErrorCode.EVENTLOG_HMAC_UNEXPECTED,
    `this event log is not keyed (${why}) but a key was given: open it without the key (no hmacKey / logKey; CLI: no --log-key-env), or, if it was created with one, it was rewritten without the key: restore it from a backup: ${path}`,
    { path, reason: 'log_not_keyed' },
  );
}

/** Whether a parsed record carries a plain SHA-256 check that verifies (a record of an unkeyed log). */
function unkeyedCheckVerifies(v: unknown): boolean {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const { check, ...rest } = v as Record<string, unknown>;
  const c = check as { alg?: unknown; value?: unknown } | undefined;
  return c?.alg === 'sha256' && c.value === sha256(canonicalJson(rest)).toString('hex');
}

/** Bytes per head slot; the head file holds two, written alternately. */
export const HEAD_SLOT = 256;

/**
 * Whether a stored check equals the one computed, in time that does not depend on where they differ
 * (an HMAC compared with `!==` stops at the first differing character, which lets a forger learn a
 * valid MAC for chosen bytes one character at a time).
 */
function sameCheck(stored: string, computed: string): boolean {
  const a = Buffer.from(stored, 'utf8');
  const b = Buffer.from(computed, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

export class LogStore {
  /** `DATA/event-log`. */
  readonly dir: string;
  constructor(
    readonly dataDir: string,
    readonly format: EventLogFormat,
    readonly key: Uint8Array | undefined,
  ) {
    this.dir = join(dataDir, LAYOUT.dir);
  }

  /** Every segment file of this format, in order. */
  async listSegments(): Promise<Segment[]> {
    const re = this.format === 'v2' ? V2_SEGMENT_RE : LEGACY_SEGMENT_RE;
    let names: string[];
    try {
      names = await fsp.readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw ioError(err, this.dir, 'cannot list');
    }
    const out: Segment[] = [];
    for (const name of names) {
      const m = re.exec(name);
      if (m) out.push({ n: Number(m[1]), file: join(this.dir, name) });
    }
    return out.sort((a, b) => a.n - b.n);
  }

  /**
   * The segment parsed ({@link parseSegment}'s result), in slices with a turn of the event loop between
   * two, so that opening a log or querying it never holds the loop for a whole segment.
   */
  async readSegment(s: Segment): Promise<SegmentRead> {
    return this.readSegmentInSlices(s, () => nextTurn());
  }

  async #segmentBytes(s: Segment): Promise<Buffer> {
    try {
      return await fsp.readFile(s.file);
    } catch (err) {
      throw ioError(err, s.file, 'cannot read segment');
    }
  }

  /**
   * {@link readSegment}, parsed in slices ({@link parseSegmentSteps}): `between(fraction)` is awaited
   * between two slices with the fraction of the bytes parsed, so a caller can let the event loop run,
   * report progress and stop. Same result as `readSegment`.
   */
  async readSegmentInSlices(s: Segment, between: (fraction: number) => Promise<void>): Promise<SegmentRead> {
    const steps = parseSegmentSteps(await this.#segmentBytes(s), this.format);
    for (;;) {
      const r = steps.next();
      if (r.done === true) return r.value;
      await between(r.value);
    }
  }

  /** The entries of a segment (empty when it cannot be parsed), parsed in slices as {@link readSegment}. */
  async entries(s: Segment): Promise<EventLogEntry[]> {
    return (await this.readSegment(s)).entries as EventLogEntry[];
  }

  /** A v2 segment's header line, without reading the whole file. */
  async readSegmentHeader(s: Segment): Promise<Record<string, unknown> | undefined> {
    const fh = await fsp.open(s.file, 'r');
    try {
      const buf = Buffer.alloc(1024);
      const { bytesRead } = await fh.read(buf, 0, 1024, 0);
      const nl = buf.subarray(0, bytesRead).indexOf(0x0a);
      if (nl < 0) return undefined;
      return JSON.parse(buf.subarray(0, nl).toString('utf8')) as Record<string, unknown>;
    } catch {
      return undefined;
    } finally {
      await closeQuietly(fh);
    }
  }

  /** Cut a file to `length` bytes, durably. */
  async truncate(file: string, length: number): Promise<void> {
    const fh = await fsp.open(file, 'r+');
    try {
      await fh.truncate(length);
      await fh.sync();
    } finally {
      await closeQuietly(fh);
    }
  }

  // ---------------------------------------------------------------- sealed records

  #check(obj: object): { alg: string; value: string } {
    const text = canonicalJson(obj);
    return this.key === undefined
      ? { alg: 'sha256', value: sha256(text).toString('hex') }
      : { alg: 'hmac-sha256', value: hmacSha256(this.key, text).toString('hex') };
  }

  /** `obj` with its `check` (SHA-256, or HMAC-SHA256 with a key) added. */
  seal<T extends object>(obj: T): T & { check: { alg: string; value: string } } {
    return { ...obj, check: this.#check(obj) };
  }

  /** The object without `check` when its check verifies, else a reason. */
  unseal(v: unknown): { ok: Record<string, unknown> } | { problem: string } {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return { problem: 'not an object' };
    const { check, ...rest } = v as Record<string, unknown>;
    const c = check as { alg?: unknown; value?: unknown } | undefined;
    if (c === undefined || typeof c.value !== 'string') return { problem: 'no check field' };
    const want = this.#check(rest);
    if (c.alg !== want.alg) {
      return {
        problem:
          want.alg === 'hmac-sha256' ? 'not authenticated (no HMAC)' : 'authenticated with a key (HMAC)',
      };
    }
    if (!sameCheck(c.value, want.value)) return { problem: `${want.alg} check does not match` };
    return { ok: rest };
  }

  async readMeta(): Promise<V2Meta> {
    const path = join(this.dir, LAYOUT.v2Meta);
    const raw = await readIfExists(path);
    if (raw === undefined) throw new TensorVaultError(ErrorCode.CORRUPT, `missing ${path}`, { path });
    return this.parseMeta(raw, path);
  }

  /**
   * The metadata in the bytes of `path`, checked (its seal, format, anchor). `unverifiedHmac`: a store
   * without the key takes metadata sealed with an HMAC as it is (unauthenticated: a backup of a keyed
   * log taken without its key).
   */
  parseMeta(raw: Buffer, path: string, unverifiedHmac = false): V2Meta {
    let v: unknown;
    try {
      v = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new TensorVaultError(ErrorCode.CORRUPT, `event log metadata is not JSON: ${path}`, { path });
    }
    let r = this.unseal(v);
    if ('problem' in r && unverifiedHmac && this.key === undefined && sealedWithHmac(v)) {
      const { check: _check, ...rest } = v as Record<string, unknown>;
      r = { ok: rest };
    }
    if ('problem' in r && this.key === undefined && sealedWithHmac(v)) {
      // Not damage: the log was created with a key, and none was given.
      throw new TensorVaultError(
        ErrorCode.EVENTLOG_HMAC_REQUIRED,
        `this event log is keyed (created with hmacKey): give its key to read it (hmacKey, logKey; CLI: --log-key-env NAME): ${path}`,
        { path, reason: 'key_missing' },
      );
    }
    if ('problem' in r && this.key !== undefined && !sealedWithHmac(v) && unkeyedCheckVerifies(v)) {
      // Not damage either: the metadata's plain SHA-256 check verifies, so the log was created without
      // a key (or rewritten by someone without it). Refused (no downgrade), and said as it is.
      throw hmacUnexpected(path, 'created without hmacKey: its metadata carries a SHA-256 check, no HMAC');
    }
    if ('problem' in r) {
      const why = this.key !== undefined && sealedWithHmac(v) ? ': a wrong key, or the file was changed' : '';
      throw new TensorVaultError(
        ErrorCode.CORRUPT,
        `event log metadata rejected (${r.problem}${why}): ${path}`,
        {
          path,
          reason: r.problem,
        },
      );
    }
    const m = r.ok as unknown as V2Meta;
    const a = m.anchor as V2Anchor | undefined;
    if (
      m.format !== 'tensorvault-eventlog' ||
      m.version !== 2 ||
      typeof a !== 'object' ||
      a === null ||
      !Number.isSafeInteger(a.segment) ||
      !Number.isSafeInteger(a.seq) ||
      a.seq < 1 ||
      a.segment < 1
    ) {
      throw new TensorVaultError(ErrorCode.CORRUPT, `unsupported event log metadata: ${path}`, { path });
    }
    if (m.hash_algorithm !== V2_HASH_ALGORITHM) {
      throw new TensorVaultError(ErrorCode.CORRUPT, `unknown hash algorithm ${String(m.hash_algorithm)}`, {
        path,
      });
    }
    return m;
  }

  async writeMeta(meta: V2Meta): Promise<void> {
    await atomicWriteFile(join(this.dir, LAYOUT.v2Meta), `${JSON.stringify(this.seal(meta), null, 2)}\n`);
  }

  async readSnapshot(): Promise<SnapshotRead> {
    const raw = await readIfExists(join(this.dataDir, LAYOUT.snapshot));
    return raw === undefined ? { corrupt: false } : this.parseSnapshot(raw);
  }

  /** The snapshot in a snapshot file's bytes, when its check verifies and its fields are sound. */
  parseSnapshot(raw: Buffer): SnapshotRead {
    let v: unknown;
    try {
      v = JSON.parse(raw.toString('utf8'));
    } catch {
      return { corrupt: true, problem: 'snapshot is not valid JSON' };
    }
    if (this.format === 'v2') {
      const r = this.unseal(v);
      if ('problem' in r) return { corrupt: true, problem: `snapshot rejected: ${r.problem}` };
      v = r.ok;
    }
    const s = v as Snapshot;
    if (
      typeof s !== 'object' ||
      s === null ||
      !Number.isSafeInteger(s.last_segment) ||
      !Number.isSafeInteger(s.last_index_in_segment) ||
      !Number.isSafeInteger(s.total_events)
    ) {
      return { corrupt: true, problem: 'snapshot has missing or malformed fields' };
    }
    if (this.format === 'v2' && (s.version !== 2 || !Array.isArray(s.sealed))) {
      return { corrupt: true, problem: 'snapshot is not a v2 snapshot' };
    }
    return { snap: s, corrupt: false };
  }

  /** The newest head slot whose check verifies. */
  async readHead(): Promise<Head | undefined> {
    const raw = await readIfExists(join(this.dir, LAYOUT.v2Head));
    return raw === undefined ? undefined : this.parseHead(raw);
  }

  /**
   * The newest slot of a head file's bytes whose check verifies. `unverifiedHmac`: a store without the
   * key also takes a slot sealed with an HMAC as it is (the check cannot be verified without the key; a
   * backup of a keyed log taken without it still sees where the head is, unauthenticated).
   */
  parseHead(raw: Buffer, unverifiedHmac = false): Head | undefined {
    let best: Head | undefined;
    for (let slot = 0; slot < 2; slot++) {
      const text = raw.subarray(slot * HEAD_SLOT, (slot + 1) * HEAD_SLOT).toString('utf8');
      try {
        const v: unknown = JSON.parse(text);
        const r = this.unseal(v);
        let h: Head | undefined;
        if ('ok' in r) h = r.ok as unknown as Head;
        else if (unverifiedHmac && this.key === undefined && sealedWithHmac(v)) h = v as Head;
        if (h !== undefined && Number.isSafeInteger(h.seq) && (best === undefined || h.seq > best.seq))
          best = h;
      } catch {
        // torn or empty slot
      }
    }
    return best;
  }

  /** The legacy prune anchor (written by tensorvault's prune), when present and readable. */
  async readLegacyAnchor(warnings: string[]): Promise<LegacyAnchor | undefined> {
    const raw = await readIfExists(join(this.dataDir, LAYOUT.legacyAnchor));
    if (raw === undefined) return undefined;
    try {
      const v = JSON.parse(raw.toString('utf8')) as {
        first_segment?: unknown;
        first_previous_hash?: unknown;
      };
      if (
        Number.isSafeInteger(v.first_segment) &&
        (v.first_previous_hash === null || typeof v.first_previous_hash === 'string')
      ) {
        return { first_segment: v.first_segment as number, first_previous_hash: v.first_previous_hash };
      }
    } catch {
      // fall through
    }
    warnings.push('prune anchor is unreadable: ignored');
    return undefined;
  }

  /** Remove temp files left by a crashed atomic write in the log's folders; returns how many. */
  async removeTemps(): Promise<number> {
    let removed = 0;
    for (const d of [this.dir, this.dataDir]) {
      const names = await fsp.readdir(d).catch(() => [] as string[]);
      for (const name of names) {
        if (/^\..*\.[0-9a-f]{12}\.tmp$/.test(name)) {
          await fsp.rm(join(d, name), { force: true });
          removed++;
        }
      }
    }
    return removed;
  }
}
