/**
 * A consistent cut of a live log, for backups: every file the log consists of, opened (or read, when
 * small) before any is copied, so a writer appending meanwhile changes nothing that is archived; and
 * the chain check on the exact bytes being archived ({@link CutChainCheck}), under the same rules as
 * `verify.ts`. Backups know the log only through this file.
 */
import { constants, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, TensorVaultError } from '../errors';
import { checkSettled, ioError } from '../io/index';
import { EntryHashChecker, type EventLogEntry, entryShapeProblem } from './hashing';
import { type EventLogFormat, LAYOUT, LEGACY_SEGMENT_RE, parseSegmentSteps, V2_SEGMENT_RE } from './layout';
import { type Head, hmacUnexpected, LogStore, type SealRecord, type Snapshot, sealedWithHmac } from './store';
import { CHECK_SLICE, ChainChecker } from './verify';

/** One file of the cut. `path` is relative to the data folder, with `/` separators. */
export interface CutFile {
  path: string;
  abs: string;
  size: number;
  kind: 'meta' | 'segment' | 'snapshot' | 'anchor';
  segment?: number;
  /** The bytes of a small file, read at the cut. */
  data?: Buffer;
  /** An open handle to a segment (it stays readable even if pruned meanwhile). */
  fh?: fsp.FileHandle;
}

/** What the cut holds. Close it (or `await using`) to release the handles. */
export interface LogCut {
  format: EventLogFormat;
  files: CutFile[];
  /**
   * v2: the head record, read before the segments were listed (so every event it vouches for is in
   * the cut: a head ahead of the cut's last event is a cut tail, as `verifyChainFull` says). Not
   * archived: a restore writes it anew from the events it verified, which a backup whose check found
   * a cut tail is refused.
   */
  headAtStart?: Buffer | undefined;
  /**
   * v2: the head record, read after every segment's size was taken (so it vouches for at least the
   * events in the cut, unless they were never acknowledged).
   */
  head?: Buffer | undefined;
  /** v2: the head record as it is now. */
  rereadHead(): Promise<Buffer | undefined>;
  /** The bytes to archive for `f`: a v2 segment is cut at its last complete event. */
  read(f: CutFile): Promise<Buffer>;
  close(): Promise<void>;
}

async function openNoFollow(path: string): Promise<fsp.FileHandle> {
  try {
    return await fsp.open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    throw ioError(err, path, 'cannot open');
  }
}

async function readAll(fh: fsp.FileHandle, size: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(size);
  let at = 0;
  while (at < size) {
    const { bytesRead } = await fh.read(buf, at, size - at, at);
    if (bytesRead === 0) break;
    at += bytesRead;
  }
  return at === size ? buf : buf.subarray(0, at);
}

/** Whether the first `f.size` bytes of segment `f` hold a complete line (a v2 segment's header). */
async function hasLine(f: CutFile): Promise<boolean> {
  const fh = f.fh as fsp.FileHandle;
  const buf = Buffer.allocUnsafe(Math.min(f.size, 64 * 1024));
  const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
  return buf.subarray(0, bytesRead).includes(0x0a);
}

/** Take the consistent cut of the log in `dataDir`. */
export async function takeCut(dataDir: string): Promise<LogCut> {
  const dir = join(dataDir, LAYOUT.dir);
  let names: string[];
  try {
    const st = await fsp.lstat(dir);
    if (!st.isDirectory()) throw new Error('not a folder');
    names = await fsp.readdir(dir);
  } catch (err) {
    // A log a restore set aside and has not put back (an interrupted restore) is not a missing log.
    await checkSettled(dataDir);
    throw new TensorVaultError(
      ErrorCode.NOT_FOUND,
      `no event-log folder in ${dataDir}`,
      { path: dir },
      { cause: err },
    );
  }
  const format: EventLogFormat = names.includes(LAYOUT.v2Meta) ? 'v2' : 'legacy';
  for (let attempt = 0; ; attempt++) {
    const files: CutFile[] = [];
    const close = async () => {
      for (const f of files) await f.fh?.close().catch(() => {});
    };
    // 1. Small state first (the snapshot is never ahead of the segments read after it).
    const snapPath = join(dataDir, LAYOUT.snapshot);
    const snap = await fsp.readFile(snapPath).catch(() => undefined);
    const metaPath = join(dir, LAYOUT.v2Meta);
    const meta = format === 'v2' ? await fsp.readFile(metaPath) : undefined;
    const anchorPath = join(dataDir, LAYOUT.legacyAnchor);
    const anchor = format === 'legacy' ? await fsp.readFile(anchorPath).catch(() => undefined) : undefined;
    // The head before the segments: a writer appends an event, then moves the head.
    const headAtStart =
      format === 'v2' ? await fsp.readFile(join(dir, LAYOUT.v2Head)).catch(() => undefined) : undefined;
    // 2. Segments: list, then open them all (an open handle keeps a file readable even if pruned).
    const re = format === 'v2' ? V2_SEGMENT_RE : LEGACY_SEGMENT_RE;
    const segs = (await fsp.readdir(dir))
      .map((name) => ({ name, m: re.exec(name) }))
      .filter((x) => x.m !== null)
      .map((x) => ({ name: x.name, n: Number(x.m?.[1]) }))
      .sort((a, b) => a.n - b.n);
    if (meta !== undefined) {
      files.push({
        path: `${LAYOUT.dir}/${LAYOUT.v2Meta}`,
        abs: metaPath,
        data: meta,
        size: meta.length,
        kind: 'meta',
      });
    }
    try {
      for (const s of segs) {
        const abs = join(dir, s.name);
        const fh = await openNoFollow(abs);
        const st = await fh.stat();
        if (!st.isFile()) {
          await fh.close();
          throw new TensorVaultError(ErrorCode.NOT_A_FILE, `not a regular file: ${abs}`, { path: abs });
        }
        files.push({
          path: `${LAYOUT.dir}/${s.name}`,
          abs,
          fh,
          size: st.size,
          kind: 'segment',
          segment: s.n,
        });
      }
      // The newest v2 segment may be one the writer is creating: its file exists, its header line is
      // not written yet, and it holds no event. It is left out, so the cut ends with the segment
      // before it (archived, it would be a segment without a header, which no check accepts).
      const newest = files.at(-1);
      if (format === 'v2' && newest?.kind === 'segment' && !(await hasLine(newest))) {
        await newest.fh?.close();
        files.pop();
      }
    } catch (err) {
      await close();
      throw err;
    }
    if (snap !== undefined) {
      files.push({ path: LAYOUT.snapshot, abs: snapPath, data: snap, size: snap.length, kind: 'snapshot' });
    }
    if (anchor !== undefined) {
      files.push({
        path: LAYOUT.legacyAnchor,
        abs: anchorPath,
        data: anchor,
        size: anchor.length,
        kind: 'anchor',
      });
    }
    const head =
      format === 'v2' ? await fsp.readFile(join(dir, LAYOUT.v2Head)).catch(() => undefined) : undefined;
    // 3. A prune that ran meanwhile moves the v2 anchor: take the cut again.
    if (meta !== undefined && attempt < 5) {
      const again = await fsp.readFile(metaPath).catch(() => undefined);
      if (again === undefined || !again.equals(meta)) {
        await close();
        continue;
      }
    }
    return {
      format,
      files,
      headAtStart,
      head,
      rereadHead: () => fsp.readFile(join(dir, LAYOUT.v2Head)).catch(() => undefined),
      async read(f: CutFile): Promise<Buffer> {
        const data = f.data ?? (await readAll(f.fh as fsp.FileHandle, f.size));
        return format === 'v2' && f.kind === 'segment' ? data.subarray(0, data.lastIndexOf(0x0a) + 1) : data;
      },
      close,
    };
  }
}

/**
 * The chain check on the bytes of a cut, as they stream past, with the verdict `verifyChainFull` gives
 * for the same files (`verify.ts`): from the v2 anchor (sealed segments whose bytes match the snapshot's
 * digest are checked by their links only) or the legacy anchor; a legacy log pruned by Libervia (no
 * anchor) is chained from its first kept event and must hold the snapshot's event with its recorded
 * hash (contract `libervia.md` §2). At the end, as `verifyChainFull`: v2, the head record (read before
 * the segments: a head ahead of the last event is a cut tail, a missing one hides it, its hash must be
 * the event's at its seq) and the snapshot's tail; legacy, a snapshot past the last segment. With the
 * log's key, the v2 metadata, snapshot and head must carry its HMAC and no event may follow the head;
 * without it, the records of a keyed log are read as they are (unauthenticated).
 */
export class CutChainCheck {
  problem: string | null = null;
  count = 0;
  first: EventLogEntry | undefined;
  last: EventLogEntry | undefined;
  /** Notes that do not make the chain invalid (a head that lags: a crash before its update). */
  readonly warnings: string[] = [];
  readonly #v2: boolean;
  readonly #chain: ChainChecker;
  #unanchored = false;
  #sealed = new Map<number, SealRecord>();
  #snapPoint: { seg: number; idx: number; id: string | null; hash: string | null } | undefined;
  #snapMatched = false;
  /** The (checked) snapshot, when usable. */
  #snap: Snapshot | undefined;
  /** v2: hashes the snapshot vouches for, by seq. */
  #vouched = new Map<number, string>();
  /** v2: segments before the prune anchor (an interrupted prune) are not part of the log. */
  #anchorSegment = 0;
  /** v2: the head read before the segments, and the hash of the event at its seq once seen. */
  #head: { rec: Head; hash?: string | null } | undefined;
  /** Segment numbers checked, in order. */
  #segments: number[] = [];
  /** A keyed log checked without its key: its head is read unauthenticated. */
  readonly #unverifiedHmac: boolean;
  readonly #cut: LogCut;
  readonly #store: LogStore;

  get #lastSeq(): number {
    return this.#chain.prevSeq;
  }

  constructor(cut: LogCut, key?: Uint8Array) {
    this.#v2 = cut.format === 'v2';
    this.#chain = new ChainChecker(this.#v2, null, 0);
    const store = new LogStore('', cut.format, key);
    this.#cut = cut;
    this.#store = store;
    const data = (kind: CutFile['kind']): Buffer | undefined => cut.files.find((f) => f.kind === kind)?.data;
    const json = (kind: CutFile['kind']): unknown => {
      const d = data(kind);
      if (d === undefined) return undefined;
      try {
        return JSON.parse(d.toString('utf8'));
      } catch {
        return null;
      }
    };
    const snapRaw = data('snapshot');
    this.#snap = snapRaw === undefined ? undefined : store.parseSnapshot(snapRaw).snap;
    const firstSeg = cut.files.find((f) => f.kind === 'segment')?.segment;
    if (this.#v2) {
      // Checked as `verifyChainFull` checks it, but without the key an HMAC cannot be verified: the
      // metadata (and head) of a keyed log are then read as they are.
      this.#unverifiedHmac = key === undefined && sealedWithHmac(json('meta'));
      const metaFile = cut.files.find((f) => f.kind === 'meta');
      try {
        if (metaFile?.data === undefined) throw new Error('the log metadata is missing');
        const a = store.parseMeta(metaFile.data, metaFile.path, this.#unverifiedHmac).anchor;
        this.#chain.prevHash = a.prev_hash ?? null;
        this.#chain.prevSeq = a.seq - 1;
        this.#anchorSegment = a.segment;
      } catch (err) {
        // A key for a log that has none is the caller's mistake (or a downgrade), not the log's damage.
        if (err instanceof TensorVaultError && err.code === ErrorCode.EVENTLOG_HMAC_UNEXPECTED) throw err;
        this.problem = err instanceof Error ? err.message : String(err);
      }
      // A snapshot whose own check verifies vouches for the sealed segments' digests and hashes.
      for (const r of this.#snap?.sealed ?? []) {
        this.#sealed.set(r.segment, r);
        this.#vouched.set(r.last_seq, r.last_hash);
      }
      const snap = this.#snap;
      if (snap?.last_seq !== undefined && snap.last_current_hash !== null) {
        this.#vouched.set(snap.last_seq, snap.last_current_hash);
      }
      const rec = this.#parseHead(cut.headAtStart);
      if (rec !== undefined) {
        this.#head = { rec };
        // The head at the anchor (no event since the prune).
        if (rec.seq === this.#chain.prevSeq) this.#head.hash = this.#chain.prevHash;
      }
      return;
    }
    if (key !== undefined) throw hmacUnexpected(LAYOUT.dir, 'the legacy (Libervia) format carries no HMAC');
    this.#unverifiedHmac = false;
    const anchor = json('anchor') as { first_previous_hash?: string | null } | null | undefined;
    if (anchor === null) this.problem = 'the prune anchor is unreadable';
    else if (anchor !== undefined) this.#chain.prevHash = anchor.first_previous_hash ?? null;
    else if (firstSeg !== undefined && firstSeg !== 1) {
      this.#unanchored = true;
      const s = this.#snap;
      if (s !== undefined) {
        this.#snapPoint = {
          seg: s.last_segment,
          idx: s.last_index_in_segment,
          id: s.last_event_id,
          hash: s.last_current_hash,
        };
      }
    }
  }

  #parseHead(raw: Buffer | undefined): Head | undefined {
    return raw === undefined ? undefined : this.#store.parseHead(raw, this.#unverifiedHmac);
  }

  /**
   * Check the archived bytes of segment `n` (with their SHA-256 `digest`), in slices as `verify.ts`
   * does: about 1 MiB of lines (or of a legacy array's elements) parsed, then {@link CHECK_SLICE}
   * events checked at a time, with `between(fraction)` awaited between two slices (the fraction of
   * the segment done: half for the parse, half for the checks), so a caller lets the event loop turn,
   * reports progress and stops on its signal there. A sealed segment whose digest matches is checked
   * by its links at once.
   */
  async segment(
    n: number,
    data: Buffer,
    digest: string,
    between: (fraction: number) => Promise<void> = async () => {},
  ): Promise<void> {
    if (this.problem !== null) return;
    if (this.#v2 && n < this.#anchorSegment) return; // before the prune anchor: not part of the log
    this.#segments.push(n);
    if (this.#v2 && this.#sealedLinks(n, data, digest)) return;
    const steps = parseSegmentSteps(data, this.#v2 ? 'v2' : 'legacy');
    let step = steps.next();
    while (step.done !== true) {
      await between(step.value / 2);
      step = steps.next();
    }
    const r = step.value;
    if (r.problem !== undefined) {
      this.problem = `segment ${n}: ${r.problem}`;
      return;
    }
    const chain = this.#chain;
    if (this.#v2 && (r.header?.segment !== n || (r.header?.prev_hash ?? null) !== chain.prevHash)) {
      this.problem = `segment ${n}: header does not link to the previous segment`;
      return;
    }
    const hasher = new EntryHashChecker(r.entries, this.#v2);
    const head = this.#head;
    for (let k = 0; k < r.entries.length; k++) {
      if (k > 0 && k % CHECK_SLICE === 0) await between(0.5 + k / r.entries.length / 2);
      const e = r.entries[k] as EventLogEntry;
      const shape = entryShapeProblem(e, this.#v2);
      const at = `event ${this.count}`;
      if (shape !== undefined) {
        this.problem = `${at}: ${shape}`;
        return;
      }
      if (this.#unanchored && this.count === 0) chain.prevHash = e.previous_hash;
      const p = this.#snapPoint;
      if (p !== undefined && p.seg === n && p.idx === k) {
        if (e.id !== p.id || e.current_hash !== p.hash) {
          this.problem = `${at} (${e.id}): the snapshot does not match the log`;
          return;
        }
        this.#snapPoint = undefined;
        this.#snapMatched = true;
      }
      const problem = chain.check(e, k, hasher);
      if (problem !== undefined) {
        this.problem = `${at} (${e.id}): ${problem}`;
        return;
      }
      if (this.#v2) {
        const vouched = this.#vouched.get(e.seq as number);
        if (vouched !== undefined && vouched !== e.current_hash) {
          this.problem = `${at} (${e.id}): the event differs from the snapshot (history before it was rewritten)`;
          return;
        }
        if (head !== undefined && e.seq === head.rec.seq) head.hash = e.current_hash;
      }
      this.first ??= e;
      this.last = e;
      this.count++;
    }
  }

  /**
   * After the last segment, the end checks of `verifyChainFull`: a log pruned without an anchor must
   * have held the snapshot's event; v2, the head (see the class) and the snapshot's tail; legacy, a
   * snapshot that names a segment past the last one is a cut tail.
   */
  async finish(): Promise<void> {
    if (this.problem !== null) return;
    if (this.#unanchored && !this.#snapMatched) {
      this.problem =
        'legacy log pruned without an anchor, and the snapshot event it could be verified from is not kept';
      return;
    }
    if (!this.#v2) {
      const snap = this.#snap;
      const lastSeg = this.#segments.at(-1) ?? 0;
      if (
        !this.#unanchored &&
        snap !== undefined &&
        this.count > 0 &&
        snap.last_event_id !== null &&
        !this.#segments.includes(snap.last_segment) &&
        snap.last_segment > lastSeg
      ) {
        this.problem = 'the snapshot points past the end of the log (tail cut)';
      }
      return;
    }
    const last = this.#lastSeq;
    const before = this.#head;
    if (before === undefined) {
      // No head before the segments: a log with events had none, unless a writer created it meanwhile.
      const now = this.#parseHead(await this.#cut.rereadHead());
      if (now === undefined) {
        if (this.count > 0) this.problem = 'the head record is missing: a cut tail could not be detected';
      } else if (now.seq < last) await this.#headBehind(now, last);
    } else if (before.rec.seq > last) {
      this.problem = `tail cut: the head records seq ${before.rec.seq} but the log ends at seq ${last}`;
    } else if (before.hash !== undefined && before.hash !== before.rec.hash) {
      this.problem =
        before.rec.seq === last
          ? 'the head hash does not match the last event'
          : `the head hash does not match the event at seq ${before.rec.seq}`;
    } else if (before.rec.seq < last) await this.#headBehind(before.rec, last);
    const snap = this.#snap;
    if (this.problem === null && snap?.last_seq !== undefined && snap.last_seq > last) {
      this.problem = `tail cut: the snapshot records seq ${snap.last_seq} but the log ends at seq ${last}`;
    }
  }

  /**
   * Events after the head read before the segments: a live writer appended them meanwhile and moves
   * the head just after each append, so the head is read again (with a key, a few times over ~0.3 s:
   * a forged event never gets a head that covers it). Still behind: with a key, the events carry no
   * authentication (invalid); without, the head lags (a crash before its update; a warning).
   */
  async #headBehind(head: Head, last: number): Promise<void> {
    let seq = Math.max(head.seq, this.#parseHead(this.#cut.head)?.seq ?? head.seq);
    const tries = this.#store.key !== undefined ? 5 : 1;
    for (let i = 0; i < tries && seq < last; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 20 * i));
      const now = this.#parseHead(await this.#cut.rereadHead());
      if (now !== undefined && now.seq > seq) seq = now.seq;
    }
    if (seq >= last) return;
    if (this.#store.key !== undefined) {
      this.problem = `${last - seq} event(s) after the authenticated head (seq ${seq}) carry no authentication`;
    } else this.warnings.push(`the head lags the log by ${last - seq} events (crash before the head update)`);
  }

  /** A sealed v2 segment with the same bytes as when it was sealed: check only its links. */
  #sealedLinks(n: number, data: Buffer, digest: string): boolean {
    const seal = this.#sealed.get(n);
    const chain = this.#chain;
    if (seal === undefined || seal.sha256 !== digest) return false;
    // A hash to match inside the segment (the head's, the snapshot's): read it event by event.
    const inside = (seq: number): boolean => seq >= seal.first_seq && seq < seal.last_seq;
    if (this.#head !== undefined && inside(this.#head.rec.seq)) return false;
    for (const seq of this.#vouched.keys()) if (inside(seq)) return false;
    const nl1 = data.indexOf(0x0a);
    const nl2 = data.indexOf(0x0a, nl1 + 1);
    const lastStart = data.lastIndexOf(0x0a, data.length - 2) + 1;
    try {
      const header = JSON.parse(data.subarray(0, nl1).toString('utf8')) as Record<string, unknown>;
      const first = JSON.parse(data.subarray(nl1 + 1, nl2).toString('utf8')) as EventLogEntry;
      const last = JSON.parse(data.subarray(lastStart, data.length - 1).toString('utf8')) as EventLogEntry;
      const vouched = this.#vouched.get(seal.last_seq);
      if (
        header.segment !== n ||
        (header.prev_hash ?? null) !== chain.prevHash ||
        seal.first_seq !== chain.prevSeq + 1 ||
        first.seq !== seal.first_seq ||
        last.seq !== seal.last_seq ||
        last.current_hash !== seal.last_hash ||
        (vouched !== undefined && vouched !== seal.last_hash)
      ) {
        return false;
      }
      this.first ??= first;
      this.last = last;
      chain.prevHash = seal.last_hash;
      chain.prevSeq = seal.last_seq;
      if (this.#head?.rec.seq === seal.last_seq) this.#head.hash = seal.last_hash;
      this.count += seal.last_seq - seal.first_seq + 1;
      return true;
    } catch {
      return false; // fall back to the event-by-event check
    }
  }
}
