/**
 * An independent reference of Libervia's event log (node:crypto, plain fs), used to produce legacy
 * data folders the way Libervia writes them and to check tensorvault's legacy output against it.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const sha = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');

export interface RefEntry {
  id: string;
  timestamp: string;
  actor: string;
  evento: string;
  entidade: string;
  entidade_id: string;
  payload_hash: string;
  previous_hash: string | null;
  current_hash: string;
}

export const refPayloadHash = (p: Record<string, unknown>) => sha(JSON.stringify(p, Object.keys(p).sort()));

export function refHash(e: Omit<RefEntry, 'id' | 'current_hash'>): string {
  return sha(
    [e.previous_hash ?? '', e.timestamp, e.actor, e.evento, e.entidade, e.entidade_id, e.payload_hash].join(
      '|',
    ),
  );
}

/** Build `n` chained entries (timestamps one second apart from `start`). */
export function refChain(n: number, start = Date.parse('2025-12-24T02:29:02.950Z')): RefEntry[] {
  const out: RefEntry[] = [];
  let prev: string | null = null;
  for (let i = 0; i < n; i++) {
    const base = {
      timestamp: new Date(start + i * 1000).toISOString(),
      actor: i % 2 ? 'Libervia' : 'Bazari',
      evento: i % 3 ? 'DECISAO_REGISTRADA' : 'SITUACAO_CRIADA',
      entidade: 'SituacaoDecisoria',
      entidade_id: `ent-${i % 4}`,
      payload_hash: refPayloadHash({ index: i, data: `Evento ${i}` }),
      previous_hash: prev,
    };
    const e: RefEntry = { id: randomUUID(), ...base, current_hash: refHash(base) };
    out.push(e);
    prev = e.current_hash;
  }
  return out;
}

/** Write entries as Libervia does: segments of `segmentSize` (pretty JSON arrays) and a snapshot. */
export function writeLiberviaLog(
  dataDir: string,
  entries: RefEntry[],
  segmentSize: number,
  snapshot = true,
): void {
  const dir = join(dataDir, 'event-log');
  mkdirSync(dir, { recursive: true });
  let seg = 0;
  for (let i = 0; i < entries.length; i += segmentSize) {
    seg++;
    writeFileSync(
      join(dir, `segment-${String(seg).padStart(6, '0')}.json`),
      JSON.stringify(entries.slice(i, i + segmentSize), null, 2),
    );
  }
  const last = entries[entries.length - 1];
  if (snapshot && last) {
    writeFileSync(
      join(dataDir, 'event-log-snapshot.json'),
      JSON.stringify(
        {
          version: 1,
          last_segment: seg,
          last_index_in_segment: (entries.length - 1) % segmentSize,
          last_event_id: last.id,
          last_current_hash: last.current_hash,
          last_timestamp: last.timestamp,
          total_events: entries.length,
        },
        null,
        2,
      ),
    );
  }
}

/** Verify a chain with Libervia's rule (reference). Returns the index of the first bad entry or -1. */
export function refVerify(entries: RefEntry[]): number {
  let prev: string | null = null;
  for (const [i, e] of entries.entries()) {
    if (e.previous_hash !== prev || refHash(e) !== e.current_hash) return i;
    prev = e.current_hash;
  }
  return -1;
}

/**
 * A folder as Libervia leaves it after its own `prune()` (contract `libervia.md` §2): `n` events in
 * segments of `segmentSize`, a snapshot written every `snapshotEvery` events (so it names the last
 * multiple of `snapshotEvery`), then every segment but the newest `retention` deleted, with no anchor.
 * Returns the kept entries.
 */
export function writeLiberviaPrunedLog(
  dataDir: string,
  o: { n: number; segmentSize: number; snapshotEvery: number; retention: number },
): RefEntry[] {
  const entries = refChain(o.n);
  writeLiberviaLog(dataDir, entries, o.segmentSize, false);
  const snapAt = Math.floor(o.n / o.snapshotEvery) * o.snapshotEvery - 1;
  const snapEvent = entries[snapAt] as RefEntry;
  writeFileSync(
    join(dataDir, 'event-log-snapshot.json'),
    JSON.stringify(
      {
        version: 1,
        last_segment: Math.floor(snapAt / o.segmentSize) + 1,
        last_index_in_segment: snapAt % o.segmentSize,
        last_event_id: snapEvent.id,
        last_current_hash: snapEvent.current_hash,
        last_timestamp: snapEvent.timestamp,
        total_events: snapAt + 1,
      },
      null,
      2,
    ),
  );
  const segments = Math.ceil(o.n / o.segmentSize);
  for (let s = 1; s <= segments - o.retention; s++) {
    rmSync(join(dataDir, 'event-log', `segment-${String(s).padStart(6, '0')}.json`));
  }
  return entries.slice((segments - o.retention) * o.segmentSize);
}
