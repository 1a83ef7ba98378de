/**
 * Chain verification. One per-event rule ({@link ChainChecker}: shape, link, seq, hash), used here and by
 * backups on the bytes they archive; around it, how each format decides where checking starts (v2:
 * the prune anchor and the digests of sealed segments; legacy: Libervia's snapshot rule) and what is
 * checked at the end (v2: the head record and the snapshot's tail).
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { throwIfAborted } from '../errors';
import { hashFile } from '../hash/index';
import type { JobOptions } from '../job';
import { EntryHashChecker, type EventLogEntry, entryShapeProblem } from './hashing';
import type { Head, LogStore, SealRecord, Segment, Snapshot } from './store';
import { type KnownCondition, SEALED_SEGMENT_APPENDED, type VerifyResult } from './types';

/**
 * The rule every event of a chain must meet, checked in order: its link to the previous event, its
 * seq (v2) and its hash.
 */
export class ChainChecker {
  constructor(
    readonly v2: boolean,
    public prevHash: string | null,
    public prevSeq: number,
  ) {}

  /**
   * Check entry `k` of a segment (already shape-checked with `entryShapeProblem`; hashed through
   * `hasher`); advance on success, else say why.
   */
  check(e: EventLogEntry, k: number, hasher: EntryHashChecker): string | undefined {
    if (e.previous_hash !== this.prevHash) return 'previous_hash does not link to the previous event';
    if (this.v2 && e.seq !== this.prevSeq + 1) return `seq ${e.seq} follows ${this.prevSeq}`;
    if (!hasher.matches(k, e.current_hash)) return 'current_hash does not match the event';
    this.prevHash = e.current_hash;
    this.prevSeq = e.seq ?? this.prevSeq + 1;
    return undefined;
  }
}

class Failed {
  constructor(
    readonly reason: string,
    readonly index?: number,
    readonly id?: string,
  ) {}
}

/** Where event-by-event checking starts, as each format decides it. */
interface Start {
  /** Segments of the log, in order and without gaps. */
  present: Segment[];
  /** Index in `present` of the first segment to read event by event. */
  fromSegment: number;
  /** Events before it (already vouched for). */
  index: number;
  chain: ChainChecker;
  /** Legacy: the snapshot's event, before which events are only counted. */
  snapPoint?: { seg: number; idx: number; id: string | null; hash: string | null } | undefined;
  /** Legacy fast: only count the events before the snapshot's event (Libervia's rule). */
  skipToSnapshot: boolean;
  /**
   * Check the first event as the start of the chain (from null or the prune anchor). False for a
   * legacy log pruned without an anchor: its first kept event's link is taken as given, every kept
   * event is checked, and the snapshot's event must be among them with its recorded hash.
   */
  checkFirst: boolean;
  /** v2: hashes the snapshot vouches for, by seq. */
  vouched: Map<number, string>;
  /**
   * v2: the head record, read before the segments (so every event it vouches for is in the segments
   * as read), and the hash and index of the event at its seq once the walk has seen it.
   */
  head?: { rec: Head; hash?: string | null; index?: number } | undefined;
  /** Known conditions met while choosing the start (reported when the log verifies). */
  conditions?: KnownCondition[];
}

/**
 * Options of a verification: `signal` stops it (checked between slices of a segment); `onProgress`
 * counts the bytes of the segments read event by event (half of a segment's bytes as it is parsed,
 * half as its events are checked).
 */
export type VerifyChainOptions = Pick<JobOptions, 'signal' | 'onProgress'>;

/**
 * Events checked between two turns of the event loop (two native hash calls): a few milliseconds of
 * work, so a segment of any size never holds the event loop for long; parsing is sliced likewise
 * (`PARSE_SLICE_BYTES`).
 */
export const CHECK_SLICE = 2048;

/** Throw the abort error when `signal` has fired. */
function checkAbort(signal: AbortSignal | undefined): void {
  throwIfAborted(signal, 'verification aborted');
}

/**
 * Verify the log in `store`. `fast` uses the snapshot (legacy: Libervia's rule; v2: sealed digests);
 * without a usable one it verifies every event. An aborted `signal` rejects with `TV_ABORTED` at the
 * next pause between two slices of a segment (or before the next segment).
 */
export async function verifyLog(
  store: LogStore,
  fast: boolean,
  o: VerifyChainOptions = {},
): Promise<VerifyResult> {
  checkAbort(o.signal);
  const v2 = store.format === 'v2';
  const res: VerifyResult = {
    valid: true,
    totalVerified: 0,
    mode: fast ? 'fast' : 'full',
    usedSnapshot: false,
    totalEvents: 0,
    head: { seq: null, hash: null },
    warnings: [],
  };
  try {
    const snapR = await store.readSnapshot();
    if (snapR.corrupt) res.warnings.push(`${snapR.problem ?? 'snapshot unusable'}: ignored`);
    const snap = snapR.snap;
    // v2: the head record is read before any segment. A writer appends the event, then moves the
    // head; read after the segments, a head moved on meanwhile would look like a cut tail.
    const head = v2 ? await store.readHead() : undefined;
    const start = v2
      ? await startV2(store, snap, fast, res, o.signal)
      : await startLegacy(store, snap, fast, res);
    if (head !== undefined) start.head = { rec: head };
    if (fast && !res.usedSnapshot) res.mode = 'full';
    const index = await walkEvents(store, start, res, o);
    res.totalEvents = index;
    res.head = { seq: v2 ? start.chain.prevSeq : null, hash: start.chain.prevHash };
    if (v2) await endV2(store, snap, start, index, res);
    else endLegacy(snap, start, index, res);
    if (start.conditions !== undefined && start.conditions.length > 0) res.conditions = start.conditions;
    return res;
  } catch (err) {
    if (!(err instanceof Failed)) throw err;
    res.valid = false;
    res.reason = err.reason;
    if (err.index !== undefined) res.firstInvalidIndex = err.index;
    if (err.id !== undefined) res.firstInvalidId = err.id;
    return res;
  }
}

/** The segments from `first` on, failing on a gap. */
function contiguous(segs: Segment[], first: number | undefined): Segment[] {
  const present = segs.filter((s) => first === undefined || s.n >= first);
  const s0 = present[0];
  if (first !== undefined && s0 !== undefined && s0.n !== first) {
    throw new Failed(`segment ${first} is missing (the log starts at segment ${s0.n})`, 0);
  }
  for (let i = 1; i < present.length; i++) {
    const a = present[i - 1] as Segment;
    const b = present[i] as Segment;
    if (b.n !== a.n + 1) throw new Failed(`segment ${a.n + 1} is missing (between ${a.n} and ${b.n})`);
  }
  return present;
}

async function startV2(
  store: LogStore,
  snap: Snapshot | undefined,
  fast: boolean,
  res: VerifyResult,
  signal: AbortSignal | undefined,
): Promise<Start> {
  let anchor: Awaited<ReturnType<LogStore['readMeta']>>['anchor'];
  try {
    anchor = (await store.readMeta()).anchor;
  } catch (err) {
    throw new Failed(err instanceof Error ? err.message : String(err));
  }
  const segs = await store.listSegments();
  const present = contiguous(segs, anchor.segment);
  if (segs.length > present.length) res.warnings.push('segments before the prune anchor are ignored');
  const chain = new ChainChecker(true, anchor.prev_hash ?? null, anchor.seq - 1);
  let fromSegment = 0;
  let index = 0;
  const conditions: KnownCondition[] = [];
  if (fast && snap !== undefined) {
    // Sealed segments are checked by their bytes against the (checked) snapshot's digests.
    const sealed = new Map((snap.sealed ?? []).map((r) => [r.segment, r]));
    for (const s of present) {
      const rec = sealed.get(s.n);
      if (rec === undefined) break;
      checkAbort(signal);
      const h = await store.readSegmentHeader(s);
      if (h?.first_seq !== rec.first_seq || h?.prev_hash !== chain.prevHash || h?.segment !== s.n) {
        throw new Failed(`segment ${s.n}: header does not link to the previous segment`, index);
      }
      const d = await hashFile(s.file, signal !== undefined ? { signal } : {});
      if (d.digest !== rec.sha256 || d.length !== rec.size) {
        if (d.length > rec.size && (await sealedPrefixIntact(s, rec))) {
          // An older build's bug (before a3248bc): events appended to this segment after the snapshot
          // sealed it. Its sealed bytes are intact; this segment and the ones after it are checked
          // event by event below (as the full check does), so the appended events must chain on.
          const appended = d.length - rec.size;
          conditions.push({ code: SEALED_SEGMENT_APPENDED, segment: s.n, appendedBytes: appended });
          res.warnings.push(
            `${SEALED_SEGMENT_APPENDED}: segment ${s.n} was appended to after the snapshot sealed it (${appended} bytes after its sealed ${rec.size}; a bug of builds before a3248bc): its sealed bytes match their digest, and it and the segments after it were checked event by event`,
          );
          break;
        }
        throw new Failed(`segment ${s.n} differs from its sealed digest (history was rewritten)`, index);
      }
      index += rec.last_seq - rec.first_seq + 1;
      chain.prevHash = rec.last_hash;
      chain.prevSeq = rec.last_seq;
      fromSegment++;
      res.usedSnapshot = true;
    }
  }
  const vouched = new Map<number, string>();
  if (snap !== undefined) {
    for (const r of snap.sealed ?? []) vouched.set(r.last_seq, r.last_hash);
    if (snap.last_seq !== undefined && snap.last_current_hash !== null) {
      vouched.set(snap.last_seq, snap.last_current_hash);
    }
  }
  return {
    present,
    fromSegment,
    index,
    chain,
    skipToSnapshot: false,
    checkFirst: true,
    vouched,
    conditions,
  };
}

/**
 * Whether the first `rec.size` bytes of segment `s` are the bytes the snapshot sealed (their SHA-256
 * is `rec.sha256`) and end with a complete line: the shape an append to a sealed segment left (the
 * bytes after them must then be further events, which the event-by-event check establishes). Read as a
 * stream, so memory does not grow with the segment.
 */
async function sealedPrefixIntact(s: Segment, rec: SealRecord): Promise<boolean> {
  if (!Number.isSafeInteger(rec.size) || rec.size <= 0) return false;
  const h = createHash('sha256');
  let last = -1;
  try {
    for await (const chunk of createReadStream(s.file, { start: 0, end: rec.size - 1 })) {
      const b = chunk as Buffer;
      h.update(b);
      if (b.length > 0) last = b[b.length - 1] as number;
    }
  } catch {
    return false; // unreadable: the digest mismatch stands
  }
  return last === 0x0a && h.digest('hex') === rec.sha256;
}

/**
 * Legacy start. A tensorvault prune leaves an anchor (first segment, first previous hash); Libervia's
 * own prune leaves none. Fast mode follows Libervia's rule (contract `libervia.md` §2): from the
 * snapshot's event on, which must be present with the recorded id and hash; an unpruned or anchored
 * log also has its first event checked. A log pruned without an anchor is accepted in fast mode when
 * the snapshot's event is kept: every kept event is checked (more than Libervia does), chained from
 * the first kept one. Without a usable snapshot it cannot be verified (full mode reports it as
 * pruned, not as corrupt).
 */
async function startLegacy(
  store: LogStore,
  snap: Snapshot | undefined,
  fast: boolean,
  res: VerifyResult,
): Promise<Start> {
  const anchor = await store.readLegacyAnchor(res.warnings);
  const present = contiguous(await store.listSegments(), anchor?.first_segment);
  const first = present[0];
  const unanchoredPrune = anchor === undefined && first !== undefined && first.n !== 1;
  let snapPoint: Start['snapPoint'];
  if (fast && snap !== undefined) {
    if (present.some((s) => s.n === snap.last_segment)) {
      snapPoint = {
        seg: snap.last_segment,
        idx: snap.last_index_in_segment,
        id: snap.last_event_id,
        hash: snap.last_current_hash,
      };
      res.usedSnapshot = true;
    } else res.warnings.push('snapshot points outside the log: full verification');
  }
  if (unanchoredPrune) {
    if (snapPoint === undefined) {
      throw new Failed(
        `the log starts at segment ${first.n}: earlier segments were deleted (pruned without an anchor?)`,
        0,
      );
    }
    res.warnings.push(
      `legacy log pruned without an anchor (segments before ${first.n} deleted, as Libervia prunes): verified from its snapshot on`,
    );
  }
  return {
    present,
    fromSegment: 0,
    index: 0,
    chain: new ChainChecker(false, anchor?.first_previous_hash ?? null, 0),
    snapPoint,
    skipToSnapshot: !unanchoredPrune,
    checkFirst: !unanchoredPrune,
    vouched: new Map(),
  };
}

/** The size of each segment (0 when it cannot be read: its read reports why). */
async function sizesOf(segs: Segment[]): Promise<number[]> {
  return Promise.all(segs.map(async (s) => (await fsp.stat(s.file).catch(() => ({ size: 0 }))).size));
}

/**
 * Read the segments from `start` on, event by event; returns the number of events present. Each
 * segment is parsed and checked in slices: between two, the event loop runs, progress is reported
 * and the signal is checked (and before each segment).
 */
async function walkEvents(
  store: LogStore,
  start: Start,
  res: VerifyResult,
  o: VerifyChainOptions,
): Promise<number> {
  const { present, chain, vouched, head } = start;
  const sizes = o.onProgress !== undefined ? await sizesOf(present.slice(start.fromSegment)) : [];
  const bytesTotal = sizes.reduce((a, n) => a + n, 0);
  let bytesDone = 0;
  // Nothing to read event by event (every segment vouched for by its sealed digest): no progress.
  const report = bytesTotal > 0 ? o.onProgress : undefined;
  report?.({ bytesDone, bytesTotal });
  const v2 = chain.v2;
  let { index, snapPoint } = start;
  if (head !== undefined && head.rec.seq === chain.prevSeq) {
    head.hash = chain.prevHash; // the head is at the anchor or at the end of the sealed segments
    head.index = index - 1;
  }
  let prevTs = '';
  let tornWarned = false;
  for (let si = start.fromSegment; si < present.length; si++) {
    const s = present[si] as Segment;
    checkAbort(o.signal);
    const size = sizes[si - start.fromSegment] ?? 0;
    /** Between two slices of this segment: a turn of the event loop, progress, the signal. */
    const pause = async (fraction: number): Promise<void> => {
      await nextTurn();
      report?.({ bytesDone: bytesDone + Math.floor(size * fraction), bytesTotal });
      checkAbort(o.signal);
    };
    const r = await store.readSegmentInSlices(s, (f) => pause(f / 2));
    if (r.problem !== undefined) throw new Failed(`segment ${s.n}: ${r.problem}`, index);
    if (r.tornBytes > 0 && !tornWarned) {
      res.warnings.push(
        `segment ${s.n} ends with ${r.tornBytes} bytes of a torn write (not part of the log)`,
      );
      tornWarned = true;
    }
    const h = r.header;
    if (v2 && h === undefined && r.entries.length === 0 && si === present.length - 1) {
      // The newest segment without its header line: a writer is creating it (between its open and its
      // header write). It holds no event yet, so the log ends with the segment before it.
      res.warnings.push(`segment ${s.n} has no header yet (being created by a writer): not part of the log`);
      break;
    }
    if (
      v2 &&
      (h?.segment !== s.n || h?.first_seq !== chain.prevSeq + 1 || (h?.prev_hash ?? null) !== chain.prevHash)
    ) {
      throw new Failed(`segment ${s.n}: header does not link to the previous segment`, index);
    }
    const entries = r.entries;
    const hasher = new EntryHashChecker(entries, v2);
    for (let k = 0; k < entries.length; k++) {
      if (k > 0 && k % CHECK_SLICE === 0) await pause(0.5 + k / entries.length / 2);
      const e = entries[k] as EventLogEntry;
      const shape = entryShapeProblem(e, v2);
      if (shape !== undefined) throw new Failed(`segment ${s.n} entry ${k}: ${shape}`, index);
      if (snapPoint !== undefined) {
        const before = s.n < snapPoint.seg || (s.n === snapPoint.seg && k < snapPoint.idx);
        if (before && start.skipToSnapshot && !(index === 0 && start.checkFirst)) {
          index++; // before the snapshot's event: vouched for by the snapshot (Libervia's fast rule)
          continue;
        }
        if (s.n === snapPoint.seg && k === snapPoint.idx) {
          if (e.current_hash !== snapPoint.hash || e.id !== snapPoint.id) {
            throw new Failed(
              'the snapshot does not match the log (history before it was rewritten)',
              index,
              e.id,
            );
          }
          snapPoint = undefined;
          // Resume from the snapshot: this entry's own hash is still checked below.
          if (start.skipToSnapshot && index > 0) chain.prevHash = e.previous_hash;
        } else if (before && start.skipToSnapshot) {
          // The first event, checked as the start of the chain; then on to the snapshot's event.
          const problem = chain.check(e, k, hasher);
          if (problem !== undefined) throw new Failed(`first event is invalid: ${problem}`, 0, e.id);
          res.totalVerified++;
          index++;
          continue;
        }
      }
      // A log pruned without an anchor starts wherever its first kept event says.
      if (index === 0 && !start.checkFirst) chain.prevHash = e.previous_hash;
      const genesis = index === 0 && chain.prevHash === null;
      const problem = chain.check(e, k, hasher);
      if (problem !== undefined) {
        const nonNull = genesis && e.previous_hash !== null;
        throw new Failed(nonNull ? 'first event has a non-null previous_hash' : problem, index, e.id);
      }
      const vouchedHash = v2 ? vouched.get(e.seq as number) : undefined;
      if (vouchedHash !== undefined && vouchedHash !== e.current_hash) {
        throw new Failed(
          'the event differs from the snapshot (history before it was rewritten)',
          index,
          e.id,
        );
      }
      if (head !== undefined && e.seq === head.rec.seq) {
        head.hash = e.current_hash;
        head.index = index;
      }
      if (v2 && prevTs !== '' && e.timestamp < prevTs)
        res.warnings.push(`time goes backwards at seq ${e.seq}`);
      prevTs = e.timestamp;
      res.totalVerified++;
      index++;
    }
    if (report !== undefined) {
      bytesDone += size;
      report({ bytesDone, bytesTotal });
    }
  }
  if (snapPoint !== undefined) throw new Failed('the snapshot points past the end of the log (tail cut)');
  return index;
}

/** Legacy end check of a full verification: the snapshot must not name a segment past the end. */
function endLegacy(snap: Snapshot | undefined, start: Start, index: number, res: VerifyResult): void {
  if (snap === undefined || index === 0 || res.usedSnapshot || snap.last_event_id === null) return;
  const lastSeg = start.present[start.present.length - 1]?.n ?? 0;
  if (!start.present.some((s) => s.n === snap.last_segment) && snap.last_segment > lastSeg) {
    throw new Failed('the snapshot points past the end of the log (tail cut)');
  }
}

/**
 * v2 end checks: the head record (a cut tail, a rewritten last event, unauthenticated events). The head
 * was read before the segments: every event it vouches for must be in them (else the tail was cut),
 * and the event at its seq must have its hash. Events after it were appended while the segments were
 * read, or were never acknowledged (a crash before the head update); the head as it is now tells which.
 */
async function endV2(
  store: LogStore,
  snap: Snapshot | undefined,
  start: Start,
  index: number,
  res: VerifyResult,
): Promise<void> {
  const chain = start.chain;
  const last = chain.prevSeq;
  const before = start.head;
  if (before === undefined) {
    // No head before the walk: a log with events had none, unless a writer created the log meanwhile.
    const now = await store.readHead();
    if (now === undefined) {
      if (index > 0) throw new Failed('the head record is missing: a cut tail could not be detected');
    } else if (now.seq < last) await headBehind(store, now, last, index, res);
  } else if (before.rec.seq > last) {
    throw new Failed(
      `tail cut: the head records seq ${before.rec.seq} but the log ends at seq ${last}`,
      index,
    );
  } else {
    if (before.hash !== undefined && before.hash !== before.rec.hash) {
      throw new Failed(
        before.rec.seq === last
          ? 'the head hash does not match the last event'
          : `the head hash does not match the event at seq ${before.rec.seq}`,
        before.index ?? index - 1,
      );
    }
    if (before.rec.seq < last) await headBehind(store, before.rec, last, index, res);
  }
  if (snap?.last_seq !== undefined && snap.last_seq > last) {
    throw new Failed(`tail cut: the snapshot records seq ${snap.last_seq} but the log ends at seq ${last}`);
  }
}

/**
 * Events after `head` (read before the segments): a live writer appended them meanwhile and moves the
 * head just after each append, so the head is read again (with a key, a few times over ~0.3 s, as the
 * backup's check does: an event after the authenticated head is refused). Still behind: without a key
 * the head lags (a crash before its update); with one, the events are unauthenticated.
 */
async function headBehind(
  store: LogStore,
  head: Head,
  last: number,
  index: number,
  res: VerifyResult,
): Promise<void> {
  let seq = head.seq;
  const tries = store.key !== undefined ? 5 : 1;
  for (let i = 0; i < tries && seq < last; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 20 * i));
    const now = await store.readHead();
    if (now !== undefined && now.seq > seq) seq = now.seq;
  }
  if (seq >= last) return;
  if (store.key !== undefined) {
    // With a key, events past the authenticated head are unauthenticated: never accepted.
    throw new Failed(
      `${last - seq} event(s) after the authenticated head (seq ${seq}) carry no authentication`,
      index - (last - seq),
    );
  }
  res.warnings.push(`the head lags the log by ${last - seq} events (crash before the head update)`);
}
