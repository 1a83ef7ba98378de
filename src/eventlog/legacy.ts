/**
 * The legacy format, as Libervia writes it: each segment a pretty-printed JSON array, rewritten
 * (atomically) on every append; a plain snapshot; tensorvault's own prune leaves an anchor file.
 */
import { randomUUID } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, TensorVaultError } from '../errors';
import { atomicWriteFile, fsyncDir, readIfExists } from '../io/index';
import { type EventLogEntry, legacyEntryHash, legacyPayloadHash } from './hashing';
import { LAYOUT, segName } from './layout';
import type { Segment, Snapshot } from './store';
import type { FormatContext, LogFormat, PreparedEvent } from './strategy';

export class LegacyFormat implements LogFormat {
  readonly name = 'legacy' as const;
  /** The current segment's entries (the whole file is rewritten on append). */
  #current: EventLogEntry[] = [];
  constructor(readonly ctx: FormatContext) {}

  async open(): Promise<void> {
    const { store, tail, recovery, readOnly } = this.ctx;
    if (!readOnly) {
      recovery.removedTempFiles += await store.removeTemps();
      await this.#migrateSingleFile();
    }
    const segs = await store.listSegments();
    tail.segments = segs.map((s) => s.n);
    for (const s of segs) {
      const r = await store.readSegment(s);
      if (r.problem !== undefined) {
        tail.chainBroken ??= `segment ${s.n}: ${r.problem}`;
        tail.segCounts.set(s.n, 0);
        continue;
      }
      tail.segCounts.set(s.n, r.entries.length);
      tail.total += r.entries.length;
      if (s.n === segs[segs.length - 1]?.n) {
        this.#current = r.entries as EventLogEntry[];
        tail.last = this.#current[this.#current.length - 1];
      }
    }
    // Last segment empty: an earlier one holds the tail.
    for (let i = segs.length - 2; i >= 0 && tail.last === undefined; i--) {
      const e = await store.entries(segs[i] as Segment);
      tail.last = e[e.length - 1];
    }
    if (!readOnly && (await store.readSnapshot()).corrupt) recovery.snapshotIgnored = true;
  }

  /** Migrate Libervia's older single-file `event-log.json` into segment 1. */
  async #migrateSingleFile(): Promise<void> {
    const { store, recovery } = this.ctx;
    const single = join(store.dataDir, LAYOUT.legacySingle);
    const raw = await readIfExists(single);
    if (raw === undefined) return;
    if ((await store.listSegments()).length > 0) return; // already migrated: never overwrite segments
    let entries: unknown;
    try {
      entries = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new TensorVaultError(ErrorCode.CORRUPT, `legacy event log is not valid JSON: ${single}`, {
        path: single,
      });
    }
    if (!Array.isArray(entries)) {
      throw new TensorVaultError(ErrorCode.CORRUPT, `legacy event log is not a JSON array: ${single}`, {
        path: single,
      });
    }
    await atomicWriteFile(join(store.dir, segName(1, 'legacy')), JSON.stringify(entries, null, 2));
    await fsp.rename(single, join(store.dataDir, LAYOUT.legacyMigrated));
    await fsyncDir(store.dataDir);
    recovery.migratedLegacySingleFile = true;
  }

  payloadHash(payload: Record<string, unknown>): string {
    return legacyPayloadHash(payload);
  }

  entry(prev: EventLogEntry | undefined, p: PreparedEvent, timestamp: string): EventLogEntry {
    const base = { timestamp, ...p, previous_hash: prev?.current_hash ?? null };
    return { id: randomUUID(), ...base, current_hash: legacyEntryHash(base) };
  }

  firstSegment(): number {
    return 1;
  }

  liveSegments(): Promise<Segment[]> {
    return this.ctx.store.listSegments();
  }

  async write(seg: number, entries: EventLogEntry[]): Promise<void> {
    const next = [...this.#current, ...entries];
    await atomicWriteFile(join(this.ctx.store.dir, segName(seg, 'legacy')), JSON.stringify(next, null, 2), {
      sync: this.ctx.fsync,
    });
    this.#current = next;
  }

  sealed(_seg: number): boolean {
    return false; // the legacy format records no segment digests
  }

  async rotate(_n: number): Promise<void> {
    this.#current = [];
  }

  async acknowledge(): Promise<void> {}

  async snapshot(base: Snapshot): Promise<void> {
    await atomicWriteFile(join(this.ctx.store.dataDir, LAYOUT.snapshot), JSON.stringify(base, null, 2), {
      sync: this.ctx.fsync,
    });
  }

  async pruneAnchor(firstKept: Segment, drop: Segment[]): Promise<number> {
    const { store, tail } = this.ctx;
    const firstEntry = (await store.entries(firstKept))[0];
    let removed = 0;
    for (const s of drop) removed += tail.segCounts.get(s.n) ?? 0;
    await atomicWriteFile(
      join(store.dataDir, LAYOUT.legacyAnchor),
      JSON.stringify(
        {
          version: 1,
          first_segment: firstKept.n,
          first_event_id: firstEntry?.id ?? null,
          first_previous_hash: firstEntry?.previous_hash ?? null,
          pruned_at: new Date().toISOString(),
        },
        null,
        2,
      ),
    );
    return removed;
  }

  async close(): Promise<void> {}
}
