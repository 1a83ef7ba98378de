/** Read-side queries over the events of a log, in order: filters, export by range, replay. */
import { type EventLogEntry, legacyEntryHash, v2EntryHash } from './hashing';
import { checkInt, checkTs, EXPORT_LIMIT, REPLAY_LIMIT } from './options';
import type { ExportRangeOptions, ExportResult, ReplayOptions, ReplayResult } from './types';

/** Events of a log in order, optionally limited to a segment range. */
export type EventSource = (fromSegment?: number, toSegment?: number) => AsyncIterable<EventLogEntry>;

export async function collect(
  events: AsyncIterable<EventLogEntry>,
  keep: (e: EventLogEntry) => boolean = () => true,
): Promise<EventLogEntry[]> {
  const out: EventLogEntry[] = [];
  for await (const e of events) if (keep(e)) out.push(e);
  return out;
}

export async function findFirst(
  events: AsyncIterable<EventLogEntry>,
  match: (e: EventLogEntry) => boolean,
): Promise<EventLogEntry | undefined> {
  for await (const e of events) if (match(e)) return e;
  return undefined;
}

/** Events by time and/or segment range, at most {@link EXPORT_LIMIT} per call. */
export async function exportRange(source: EventSource, options: ExportRangeOptions): Promise<ExportResult> {
  const from = checkTs('fromTs', options.fromTs);
  const to = checkTs('toTs', options.toTs);
  const limit = checkInt('limit', options.limit ?? EXPORT_LIMIT, 1, EXPORT_LIMIT);
  if (options.fromSegment !== undefined) checkInt('fromSegment', options.fromSegment, 0, 999_999);
  if (options.toSegment !== undefined) checkInt('toSegment', options.toSegment, 0, 999_999);
  const entries: EventLogEntry[] = [];
  let truncated = false;
  for await (const e of source(options.fromSegment, options.toSegment)) {
    const t = Date.parse(e.timestamp);
    if ((from !== undefined && t < from) || (to !== undefined && t > to)) continue;
    if (entries.length >= limit) {
      truncated = true;
      break;
    }
    entries.push(e);
  }
  let linked = true;
  for (let i = 1; i < entries.length; i++) {
    if ((entries[i] as EventLogEntry).previous_hash !== (entries[i - 1] as EventLogEntry).current_hash)
      linked = false;
  }
  const anchorHash = entries[0]?.previous_hash ?? null;
  return {
    entries,
    count: entries.length,
    truncated,
    linked,
    fromGenesis: entries.length > 0 && anchorHash === null,
    anchorHash,
  };
}

/** Replay through filters: counts per type/entity/actor, time range and inconsistencies. */
export async function replay(
  source: EventSource,
  v2: boolean,
  options: ReplayOptions,
): Promise<ReplayResult> {
  const from = checkTs('fromTs', options.fromTs);
  const to = checkTs('toTs', options.toTs);
  const limit = checkInt('limit', options.limit ?? REPLAY_LIMIT, 1, REPLAY_LIMIT);
  const out: ReplayResult = {
    totalEvents: 0,
    byEvento: {},
    byEntidade: {},
    byActor: {},
    uniqueEntities: 0,
    range: { first: null, last: null },
    inconsistencies: [],
    truncated: false,
  };
  const entities = new Set<string>();
  let prev: EventLogEntry | undefined;
  let index = 0;
  for await (const e of source()) {
    if (index >= limit) {
      out.truncated = true;
      break;
    }
    if (prev !== undefined && e.previous_hash !== prev.current_hash) {
      out.inconsistencies.push({ index, id: e.id, reason: 'broken link to the previous event' });
    }
    if ((v2 ? v2EntryHash(e) : legacyEntryHash(e)) !== e.current_hash) {
      out.inconsistencies.push({ index, id: e.id, reason: 'hash mismatch' });
    }
    if (prev !== undefined && e.timestamp < prev.timestamp) {
      out.inconsistencies.push({ index, id: e.id, reason: 'timestamp goes backwards' });
    }
    prev = e;
    index++;
    if (!matches(e, options, from, to)) continue;
    out.totalEvents++;
    out.byEvento[e.evento] = (out.byEvento[e.evento] ?? 0) + 1;
    out.byEntidade[e.entidade] = (out.byEntidade[e.entidade] ?? 0) + 1;
    out.byActor[e.actor] = (out.byActor[e.actor] ?? 0) + 1;
    entities.add(`${e.entidade}:${e.entidade_id}`);
    out.range.first ??= e.timestamp;
    out.range.last = e.timestamp;
  }
  out.uniqueEntities = entities.size;
  return out;
}

function matches(e: EventLogEntry, o: ReplayOptions, from?: number, to?: number): boolean {
  const t = Date.parse(e.timestamp);
  if ((from !== undefined && t < from) || (to !== undefined && t > to)) return false;
  return (
    (o.evento === undefined || e.evento === o.evento) &&
    (o.entidade === undefined || e.entidade === o.entidade) &&
    (o.entidadeId === undefined || e.entidade_id === o.entidadeId) &&
    (o.actor === undefined || e.actor === o.actor)
  );
}
