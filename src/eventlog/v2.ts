/**
 * The v2 format (`docs/formats/eventlog.md`): append-only JSON-lines segments with a header line,
 * sealed metadata with the prune anchor, a two-slot head record of the last acknowledged event, and a
 * snapshot carrying the digest of every sealed segment. With a key, everything sealed is HMAC'd and
 * events the head does not vouch for are never accepted.
 */
import { randomUUID } from 'node:crypto';
import {
  constants,
  createReadStream,
  fdatasyncSync,
  promises as fsp,
  ftruncateSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { ErrorCode, TensorVaultError } from '../errors';
import { hashFile } from '../hash/index';
import {
  atomicWriteFile,
  closeQuietly,
  createLockedTemp,
  exists,
  fsyncDir,
  ioError,
  removeQuietly,
} from '../io/index';
import { testHooksBuilt } from '../native';
import {
  type EventLogEntry,
  entryShapeProblem,
  V2_HASH_ALGORITHM,
  v2EntryHash,
  v2PayloadHash,
} from './hashing';
import { type EventsAfter, LAYOUT, segName, V2EventsAfterScan } from './layout';
import { HEAD_SLOT, type Head, type SealRecord, type Segment, type Snapshot, type V2Anchor } from './store';
import type { FormatContext, LogFormat, PreparedEvent } from './strategy';

function writeAll(fd: number, buf: Buffer, position: number | null, path: string): void {
  let at = 0;
  try {
    while (at < buf.length) {
      at += writeSync(fd, buf, at, buf.length - at, position === null ? null : position + at);
    }
  } catch (err) {
    throw ioError(err, path, 'cannot write');
  }
}

/**
 * Test hook (`__test__/eventlog.test.ts` only): `TV_TEST_EVENTLOG_FAIL=LABEL` fails the step of that
 * label as a full disk would (a system error shaped like Node's: `ENOSPC`, `syscall: 'write'`), and
 * `LABEL-bug` throws a `TypeError` there, as a programming error would. Read only when the addon is a
 * test build (`testHooksBuilt()`), so a published build ignores it.
 */
let hooks: boolean | undefined;
function failpoint(label: string): void {
  hooks ??= testHooksBuilt();
  if (!hooks) return;
  const want = process.env.TV_TEST_EVENTLOG_FAIL;
  if (want === label) {
    throw Object.assign(new Error(`ENOSPC: no space left on device, write (test hook: ${label})`), {
      code: 'ENOSPC',
      errno: -28,
      syscall: 'write',
    });
  }
  if (want === `${label}-bug`) throw new TypeError(`test hook: a bug in ${label}`);
}

/**
 * Where the events after `seq` start in the segment `file` ({@link V2EventsAfterScan}), read as a
 * stream, and how many bytes were read (the end of what the answer covers).
 */
async function scanEventsAfter(
  file: string,
  seq: number,
): Promise<{ after: EventsAfter | undefined; end: number }> {
  const scan = new V2EventsAfterScan(seq);
  let end = 0;
  try {
    for await (const chunk of createReadStream(file)) {
      const b = chunk as Buffer;
      scan.push(b);
      end += b.length;
    }
  } catch (err) {
    throw ioError(err, file, 'cannot read segment');
  }
  return { after: scan.finish(), end };
}

/**
 * Write the bytes `[cut, end)` of each file, in order, to a new file `dest`, atomically (a locked
 * temporary file, fsync, rename, folder fsync) and as streams.
 */
async function copyRangesAtomically(
  dest: string,
  ranges: readonly { s: Segment; cut: number; end: number }[],
): Promise<void> {
  let tmp: string | undefined;
  let fh: fsp.FileHandle | undefined;
  try {
    ({ fh, tmp } = await createLockedTemp(dest, 0o644));
    for (const r of ranges) {
      if (r.end <= r.cut) continue;
      for await (const chunk of createReadStream(r.s.file, { start: r.cut, end: r.end - 1 })) {
        await fh.write(chunk as Buffer);
      }
    }
    await fh.sync();
    await fsp.rename(tmp, dest);
    await fh.close();
    fh = undefined;
  } catch (err) {
    await closeQuietly(fh);
    if (tmp !== undefined) await removeQuietly(tmp);
    throw ioError(err, dest, 'cannot write', tmp);
  }
  await fsyncDir(dirname(dest));
}

export class V2Format implements LogFormat {
  readonly name = 'v2' as const;
  #anchor: V2Anchor = { segment: 1, seq: 1, prev_hash: null, pruned_events: 0 };
  #appendFh: fsp.FileHandle | undefined;
  /** Length of the append file after the last complete batch (the lines the log holds). */
  #appendEnd = 0;
  /** Set when a failed batch's partial lines could not be cut off yet: the length to cut back to. */
  #tornEnd: number | undefined;
  #headFh: fsp.FileHandle | undefined;
  /** Segments whose digest the last snapshot read or written records (never appended to again). */
  #sealed = new Set<number>();
  constructor(
    readonly ctx: FormatContext,
    readonly hasMeta: boolean,
  ) {}

  /** The seq before the first kept event. */
  get #seqBefore(): number {
    return this.#anchor.seq - 1;
  }

  async open(): Promise<void> {
    const { store, tail, recovery, readOnly, headFromEvents } = this.ctx;
    if (!this.hasMeta) {
      if (readOnly) throw new TensorVaultError(ErrorCode.NOT_FOUND, `no event log in ${store.dataDir}`);
      await store.writeMeta({
        format: 'tensorvault-eventlog',
        version: 2,
        hash_algorithm: V2_HASH_ALGORITHM,
        created_at: new Date().toISOString(),
        anchor: { segment: 1, seq: 1, prev_hash: null, pruned_events: 0 },
      });
    }
    const meta = await store.readMeta();
    this.#anchor = meta.anchor;
    if (!readOnly) recovery.removedTempFiles += await store.removeTemps();
    let segs = await store.listSegments();
    if (!readOnly) {
      // Finish an interrupted prune: segments before the anchor are no longer part of the log.
      for (const s of segs.filter((x) => x.n < meta.anchor.segment)) {
        await fsp.rm(s.file, { force: true });
        recovery.removedSegments++;
      }
      segs = segs.filter((x) => x.n >= meta.anchor.segment);
    }
    tail.segments = segs.map((s) => s.n);
    let lastSeq = await this.#loadTail(segs);
    let head = await store.readHead();
    if (!readOnly && head === undefined && lastSeq >= meta.anchor.seq && !headFromEvents) {
      // Events and no head (deleted, or no slot verifies): the head is what shows a cut tail, and a
      // crash never leaves a log with events without one. Writing a new one from the events would
      // erase that evidence (the log would verify again), so it is not written and the log is not
      // extended. (A restore's staged log has no head: the restore vouches for its events and writes
      // it, `writeRestoredHead`.)
      recovery.headMissing = true;
      tail.chainBroken ??=
        store.key !== undefined
          ? 'the head record is missing: the events cannot be authenticated'
          : 'the head record is missing: a cut tail cannot be ruled out';
    }
    if (!readOnly && store.key !== undefined && tail.chainBroken === undefined) {
      // With a key, only what the authenticated head vouches for is the log. Events after it were
      // never acknowledged (append() returns after the head update) and carry no MAC: they may be a
      // crash's leftovers or forgeries, and must never be re-signed. They are moved aside.
      if (head !== undefined && head.seq < lastSeq) {
        lastSeq = await this.#quarantineAfter(head.seq);
        head = await store.readHead();
      }
    }
    tail.total = Math.max(0, lastSeq - meta.anchor.seq + 1);
    if (readOnly) return;
    const snapRead = await store.readSnapshot();
    // A segment the snapshot sealed is full, whatever `segmentSize` this open was given (it is not
    // kept in the log): the next append starts a new segment instead of changing its bytes.
    this.#sealed = new Set((snapRead.snap?.sealed ?? []).map((r) => r.segment));
    if (head !== undefined && head.seq > lastSeq) {
      tail.chainBroken = `tail cut: the head records seq ${head.seq} but the log ends at seq ${lastSeq}`;
    } else if (tail.chainBroken === undefined && (head === undefined || head.seq < lastSeq)) {
      if (head !== undefined || lastSeq >= meta.anchor.seq) recovery.headAdvanced = head !== undefined;
      await this.acknowledge();
    }
    if (snapRead.corrupt) recovery.snapshotIgnored = true;
  }

  /** Read the last segment (cutting a torn write, removing a header-less one); returns the last seq. */
  async #loadTail(segs: Segment[]): Promise<number> {
    const { store, tail, recovery, readOnly } = this.ctx;
    const lastSeg = segs[segs.length - 1];
    if (lastSeg === undefined) return this.#seqBefore;
    let r = await store.readSegment(lastSeg);
    if (!readOnly && r.tornBytes > 0) {
      await store.truncate(lastSeg.file, r.completeBytes);
      recovery.truncatedBytes += r.tornBytes;
      r = await store.readSegment(lastSeg);
    }
    if (!readOnly && r.completeBytes === 0) {
      // Rotation crashed before the header was written.
      await fsp.rm(lastSeg.file, { force: true });
      await fsyncDir(store.dir);
      recovery.removedSegments++;
      tail.segments.pop();
      const prev = segs[segs.length - 2];
      r =
        prev === undefined ? { entries: [], tornBytes: 0, completeBytes: 0 } : await store.readSegment(prev);
    }
    if (r.problem !== undefined) tail.chainBroken = `last segment: ${r.problem}`;
    const entries = r.entries as EventLogEntry[];
    tail.last = entries[entries.length - 1];
    if (tail.last === undefined && tail.segments.length > 1) {
      const prev = segs.find((s) => s.n === tail.segments[tail.segments.length - 2]);
      if (prev !== undefined) {
        const pe = await store.entries(prev);
        tail.last = pe[pe.length - 1];
      }
    }
    const curSeg = tail.segments[tail.segments.length - 1];
    if (curSeg !== undefined) tail.segCounts.set(curSeg, curSeg === lastSeg.n ? entries.length : 0);
    if (tail.last === undefined) return this.#seqBefore;
    if (entryShapeProblem(tail.last, true) !== undefined) {
      tail.chainBroken = 'last entry is malformed';
      return this.#seqBefore;
    }
    return tail.last.seq as number;
  }

  /**
   * Move every event after `seq` out of the log, into `unauthenticated-<time>.jsonl` in the log's
   * folder (never deleted: a person decides), and return the new last seq (`seq`). Whole segments after
   * it are moved; the segment holding `seq` is cut after that event's line. Segments are read as
   * streams (memory does not grow with their size), and the aside file is complete and synced before
   * the log is cut, so a failure or a crash part-way loses no event.
   */
  async #quarantineAfter(seq: number): Promise<number> {
    const { store, tail, recovery } = this.ctx;
    const aside = join(store.dir, `unauthenticated-${new Date().toISOString().replace(/[:.]/g, '-')}.jsonl`);
    const moves: { s: Segment; whole: boolean; cut: number; end: number }[] = [];
    let moved = 0;
    const segs = await store.listSegments();
    for (let i = segs.length - 1; i >= 0; i--) {
      const s = segs[i] as Segment;
      const { after, end } = await scanEventsAfter(s.file, seq);
      if (after === undefined) break; // this segment ends at or before `seq`: done
      moved += after.events;
      // Every event of this segment is past `seq`: the whole segment goes (the first one is kept,
      // cut back to its header).
      const whole = after.cut === after.headerBytes && i > 0;
      moves.unshift({ s, whole, cut: after.cut, end });
      if (!whole) break;
    }
    if (moved > 0) {
      await copyRangesAtomically(aside, moves);
      recovery.quarantinedEvents += moved;
      recovery.quarantineFile = aside;
    }
    for (const m of moves.reverse()) {
      if (m.whole) {
        await fsp.rm(m.s.file, { force: true });
        tail.segments = tail.segments.filter((n) => n !== m.s.n);
      } else await store.truncate(m.s.file, m.cut);
    }
    // Re-read the new tail.
    const last = tail.segments[tail.segments.length - 1];
    const seg = (await store.listSegments()).find((x) => x.n === last);
    if (seg !== undefined) {
      const entries = await store.entries(seg);
      tail.last = entries[entries.length - 1] ?? tail.last;
      tail.segCounts.set(seg.n, entries.length);
    }
    return seq;
  }

  payloadHash(payload: Record<string, unknown>): string {
    return v2PayloadHash(payload);
  }

  entry(prev: EventLogEntry | undefined, p: PreparedEvent, timestamp: string): EventLogEntry {
    const base = {
      v: 2 as const,
      seq: (prev?.seq ?? this.#seqBefore) + 1,
      id: randomUUID(),
      timestamp,
      ...p,
      previous_hash: prev?.current_hash ?? this.#anchor.prev_hash,
    };
    return { ...base, current_hash: v2EntryHash(base) };
  }

  firstSegment(): number {
    return this.#anchor.segment;
  }

  async liveSegments(): Promise<Segment[]> {
    const a = this.#anchor.segment;
    return (await this.ctx.store.listSegments()).filter((s) => s.n >= a);
  }

  async write(seg: number, entries: EventLogEntry[]): Promise<void> {
    const file = join(this.ctx.store.dir, segName(seg, 'v2'));
    if (this.#appendFh === undefined) {
      this.#appendFh = await fsp.open(file, 'a');
      this.#appendEnd = (await this.#appendFh.stat()).size;
    }
    const fh = this.#appendFh;
    // A write that failed earlier and could not be cut back then: cut it now, or refuse.
    if (this.#tornEnd !== undefined) this.#cutBack(fh.fd, file, this.#tornEnd);
    const before = this.#appendEnd;
    const buf = Buffer.from(entries.map((e) => `${JSON.stringify(e)}\n`).join(''));
    try {
      // The lines are small and go to the page cache: write them synchronously (no thread-pool hop);
      // the fsync, which can take milliseconds, stays off the JS thread.
      writeAll(fh.fd, buf, null, file);
      if (this.ctx.fsync) await fh.datasync();
    } catch (err) {
      // A full disk, a failed fsync: the batch is not in the log. Its lines (or the part of them that
      // reached the file) are cut off now, so that the next append does not land after a torn line and
      // break the chain (the caller saw the error and may retry). When even the cut fails, the next
      // write tries it again first.
      this.#tornEnd = before;
      try {
        this.#cutBack(fh.fd, file, before);
      } catch {
        // kept in #tornEnd
      }
      throw err;
    }
    this.#appendEnd = before + buf.length;
  }

  /** Cut the append file back to `end` bytes (after a failed write), or throw `TV_IO`. */
  #cutBack(fd: number, file: string, end: number): void {
    try {
      ftruncateSync(fd, end);
      if (this.ctx.fsync) fdatasyncSync(fd);
    } catch (err) {
      throw ioError(
        err,
        file,
        'an earlier append failed and its partial lines cannot be cut off; nothing was written',
      );
    }
    this.#tornEnd = undefined;
  }

  sealed(seg: number): boolean {
    return this.#sealed.has(seg);
  }

  async rotate(n: number): Promise<void> {
    const { store, tail } = this.ctx;
    await this.#appendFh?.close();
    this.#appendFh = undefined;
    const file = join(store.dir, segName(n, 'v2'));
    const header = {
      tv_eventlog: 2,
      hash_algorithm: V2_HASH_ALGORITHM,
      segment: n,
      first_seq: (tail.last?.seq ?? this.#seqBefore) + 1,
      prev_hash: tail.last?.current_hash ?? this.#anchor.prev_hash,
    };
    let fh: fsp.FileHandle | undefined;
    const line = Buffer.from(`${JSON.stringify(header)}\n`);
    try {
      fh = await fsp.open(
        file,
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_APPEND,
      );
      failpoint('rotate');
      await fh.write(line);
      if (this.ctx.fsync) await fh.sync();
    } catch (err) {
      await fh?.close().catch(() => {});
      // The segment this call created (a full disk can leave it empty or with part of its header) is
      // removed, so that the next append creates it again instead of failing on it.
      if (fh !== undefined) {
        try {
          unlinkSync(file);
        } catch {
          // the next open cuts a torn header
        }
      }
      throw ioError(err, file, 'cannot create segment');
    }
    this.#appendFh = fh;
    this.#appendEnd = line.length;
    this.#tornEnd = undefined;
    if (this.ctx.fsync) await fsyncDir(store.dir);
  }

  /** Write the head record (alternate slots, so a torn write leaves the other one). */
  async acknowledge(): Promise<void> {
    const { store, tail } = this.ctx;
    const head: Head = {
      seq: tail.last?.seq ?? this.#seqBefore,
      hash: tail.last?.current_hash ?? this.#anchor.prev_hash,
      segment: tail.segments[tail.segments.length - 1] ?? this.#anchor.segment,
    };
    const buf = Buffer.alloc(HEAD_SLOT, 0x20);
    buf.write(JSON.stringify(store.seal(head)), 0, 'utf8');
    buf[HEAD_SLOT - 1] = 0x0a;
    const path = join(store.dir, LAYOUT.v2Head);
    if (this.#headFh === undefined) {
      const existed = await exists(path);
      this.#headFh = await fsp.open(path, existed ? 'r+' : 'w+');
      if (!existed) {
        // Both slots start with this record, so that a torn write of either one later always leaves
        // a valid slot (a head with no valid slot is a missing head, which stops the writer).
        await this.#headFh.write(Buffer.concat([buf, buf]), 0, 2 * HEAD_SLOT, 0);
        await this.#headFh.sync();
        await fsyncDir(store.dir);
      }
    }
    writeAll(this.#headFh.fd, buf, (head.seq % 2) * HEAD_SLOT, path);
    if (this.ctx.fsync) await this.#headFh.datasync();
  }

  /** The snapshot carries the digests of every sealed segment (sealing the current one when full). */
  async snapshot(base: Snapshot): Promise<void> {
    failpoint('snapshot');
    const { store, tail } = this.ctx;
    const seg = base.last_segment;
    const prev = await store.readSnapshot();
    const sealed = (prev.snap?.sealed ?? []).filter(
      (r) => r.segment >= this.#anchor.segment && tail.segments.includes(r.segment),
    );
    const have = new Set(sealed.map((r) => r.segment));
    for (const n of tail.segments) {
      const current = n === seg;
      const full = current && (tail.segCounts.get(n) ?? 0) >= this.ctx.segmentSize;
      if (have.has(n) || (current && !full)) continue;
      const rec = await this.#sealRecord(n);
      if (rec !== undefined) sealed.push(rec);
    }
    sealed.sort((a, b) => a.segment - b.segment);
    this.#sealed = new Set(sealed.map((r) => r.segment));
    const snap: Snapshot = {
      ...base,
      last_seq: tail.last?.seq ?? this.#seqBefore,
      first_seq: this.#anchor.seq,
      sealed,
    };
    await atomicWriteFile(
      join(store.dataDir, LAYOUT.snapshot),
      `${JSON.stringify(store.seal(snap), null, 2)}\n`,
      {
        sync: this.ctx.fsync,
      },
    );
  }

  async #sealRecord(n: number): Promise<SealRecord | undefined> {
    const file = join(this.ctx.store.dir, segName(n, 'v2'));
    const r = await this.ctx.store.readSegment({ n, file });
    const entries = r.entries as EventLogEntry[];
    const first = entries[0];
    const last = entries[entries.length - 1];
    if (r.problem !== undefined || first === undefined || last === undefined || r.tornBytes > 0)
      return undefined;
    const h = await hashFile(file);
    return {
      segment: n,
      first_seq: first.seq as number,
      last_seq: last.seq as number,
      last_hash: last.current_hash,
      size: h.length,
      sha256: h.digest,
    };
  }

  async pruneAnchor(firstKept: Segment, _drop: Segment[]): Promise<number> {
    const { store } = this.ctx;
    const header = await store.readSegmentHeader(firstKept);
    const firstSeq = header?.first_seq;
    if (typeof firstSeq !== 'number') {
      throw new TensorVaultError(ErrorCode.CORRUPT, `segment ${firstKept.n} has no valid header`, {
        path: firstKept.file,
      });
    }
    const meta = await store.readMeta();
    const removed = firstSeq - meta.anchor.seq;
    const anchor: V2Anchor = {
      segment: firstKept.n,
      seq: firstSeq,
      prev_hash: (header?.prev_hash as string | null | undefined) ?? null,
      pruned_events: meta.anchor.pruned_events + removed,
    };
    await store.writeMeta({ ...meta, anchor });
    this.#anchor = anchor;
    return removed;
  }

  async close(): Promise<void> {
    await this.#appendFh?.close();
    await this.#headFh?.close();
    this.#appendFh = undefined;
    this.#headFh = undefined;
  }
}
