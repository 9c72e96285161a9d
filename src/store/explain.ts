/** The reads root-cause analysis needs beyond `Store`: spans with their call links, trace-linked events, change events. */
import type { Attributes, Labels } from '../ingest/records.js';
import type { SqliteDatabase } from './database.js';
import { placeholders, LIMIT_PARAM } from './sql.js';
import type { SeriesRow, Store, StoredEvent, StoredSpan } from './store.js';

/** A stored span with its `error.type` attribute in place of all its attributes. */
export type SpanRow = Omit<StoredSpan, 'attrs'> & {
  /** The span's `error.type` attribute, when it has one. */
  error_type: string | null;
};

/** A warning-or-worse event that names the trace it belongs to (a denial, a tool error). */
export interface TraceEventRow {
  ts: number;
  kind: string;
  component: string;
  level: string;
  trace_id: string;
  message: string;
}

export interface PermissionBucketRow {
  component: string;
  bucket: number;
  decisions: number;
  denied: number;
}

export interface ErrorEventRow {
  ts: number;
  component: string;
  message: string;
  error_type: string | null;
}

export interface DirectiveRunRow {
  id: string;
  directive: string;
  status: string;
  inputs: Attributes;
  requested_by: string | null;
  created_at: number;
}

export interface SettingChangeRow {
  key: string;
  old_value: unknown;
  new_value: unknown;
  ts: number;
  actor: string;
  reason: string | null;
}

type RawSeries = Omit<SeriesRow, 'labels'> & { labels: string };

type EventRow = Omit<StoredEvent, 'attrs'> & { attrs: string };

const toEvent = (r: EventRow): StoredEvent => ({ ...r, attrs: JSON.parse(r.attrs) as Attributes });

export class ExplainQueries {
  private readonly db: SqliteDatabase;
  private readonly stmt: ReturnType<ExplainQueries['prepare']>;

  constructor(store: Store) {
    this.db = store.db;
    this.stmt = this.prepare();
  }

  private prepare() {
    const db = this.db;
    return {
      spans: db.prepare(
        `SELECT trace_id, span_id, parent_id, name, component, start_ts AS start, duration_ms, status,
                json_extract(attrs, '$."error.type"') AS error_type
         FROM spans WHERE start_ts >= ? AND start_ts < ? ORDER BY start_ts ${LIMIT_PARAM}`,
      ),
      traceEvents: db.prepare(
        `SELECT ts, kind, component, level, json_extract(attrs, '$.trace_id') AS trace_id, message FROM events
         WHERE ts >= ? AND ts < ? AND level IN ('warn', 'error', 'fatal') AND json_extract(attrs, '$.trace_id') IS NOT NULL
         ORDER BY ts ${LIMIT_PARAM}`,
      ),
      permissionBuckets: db.prepare(
        `SELECT component, @from + ((ts - @from) / @bucket) * @bucket AS bucket, count(*) AS decisions,
                sum(json_extract(attrs, '$.decision') = 'deny') AS denied
         FROM events WHERE kind = 'permission' AND ts >= @from AND ts < @to GROUP BY component, bucket ORDER BY bucket`,
      ),
      errorEvents: db.prepare(
        `SELECT ts, component, message, json_extract(attrs, '$."error.type"') AS error_type FROM events
         WHERE kind = 'error' AND ts >= ? AND ts < ? ORDER BY ts ${LIMIT_PARAM}`,
      ),
      latestConnections: db.prepare(
        `SELECT e.id, e.ts, e.kind, e.component, e.level, e.message, e.attrs FROM events e
         JOIN (SELECT component, max(ts) AS ts FROM events WHERE kind = 'connection' AND ts < ? GROUP BY component) latest
           ON latest.component = e.component AND latest.ts = e.ts
         WHERE e.kind = 'connection' ORDER BY e.component, e.id DESC`,
      ),
      lastSeen: db.prepare('SELECT max(last_seen) FROM components').pluck(),
      values: db.prepare('SELECT value FROM points WHERE series_id = ? AND ts >= ? AND ts < ?').pluck(),
      seriesById: db.prepare('SELECT id, name, component, labels, unit FROM series WHERE id = ?'),
      allSeries: db.prepare(`SELECT id, name, component, labels, unit FROM series ORDER BY component, name, labels ${LIMIT_PARAM}`),
      directiveRuns: db.prepare(
        `SELECT id, directive, status, inputs, requested_by, created_at FROM directive_runs WHERE created_at >= ? AND created_at < ? ORDER BY created_at ${LIMIT_PARAM}`,
      ),
      settingChanges: db.prepare(
        `SELECT key, old_value, new_value, ts, actor, reason FROM settings_history WHERE ts >= ? AND ts < ? ORDER BY ts ${LIMIT_PARAM}`,
      ),
      traceSpans: db.prepare(
        `SELECT trace_id, span_id, parent_id, name, component, start_ts AS start, duration_ms, status,
                json_extract(attrs, '$."error.type"') AS error_type
         FROM spans WHERE trace_id = ? ORDER BY start_ts ${LIMIT_PARAM}`,
      ),
      traceAllEvents: db.prepare(
        `SELECT id, ts, kind, component, level, message, attrs FROM events
         WHERE ts >= ? AND ts < ? AND json_extract(attrs, '$.trace_id') = ? ORDER BY ts ${LIMIT_PARAM}`,
      ),
    };
  }

  /** Spans that started in [from, to), oldest first, at most `limit`. */
  spans(from: number, to: number, limit: number): SpanRow[] {
    return this.stmt.spans.all(from, to, limit) as SpanRow[];
  }

  /** Warning-or-worse events in [from, to) that carry a `trace_id` attribute. */
  traceEvents(from: number, to: number, limit: number): TraceEventRow[] {
    return this.stmt.traceEvents.all(from, to, limit) as TraceEventRow[];
  }

  /** Permission decisions and denials per emitting component per bucket (buckets start at `from`). */
  permissionBuckets(from: number, to: number, bucketMs: number): PermissionBucketRow[] {
    return this.stmt.permissionBuckets.all({ from, to, bucket: bucketMs }) as PermissionBucketRow[];
  }

  errorEvents(from: number, to: number, limit: number): ErrorEventRow[] {
    return this.stmt.errorEvents.all(from, to, limit) as ErrorEventRow[];
  }

  /** Events of the given kinds in [from, to), oldest first. */
  eventsOfKinds(kinds: readonly string[], from: number, to: number, limit: number): StoredEvent[] {
    if (kinds.length === 0) return [];
    const rows = this.db
      .prepare(
        `SELECT id, ts, kind, component, level, message, attrs FROM events
         WHERE kind IN (${placeholders(kinds.length)}) AND ts >= ? AND ts < ? ORDER BY ts, id ${LIMIT_PARAM}`,
      )
      .all(...kinds, from, to, limit) as EventRow[];
    return rows.map(toEvent);
  }

  /** The latest connection event of each component before `before`. */
  latestConnections(before: number): StoredEvent[] {
    const seen = new Set<string>();
    const out: StoredEvent[] = [];
    for (const row of this.stmt.latestConnections.all(before) as EventRow[]) {
      if (seen.has(row.component)) continue;
      seen.add(row.component);
      out.push(toEvent(row));
    }
    return out;
  }

  /** The newest time any component was seen, or null for an empty store. */
  lastSeen(): number | null {
    return (this.stmt.lastSeen.get() as number | null) ?? null;
  }

  /** The values of a series' points in [from, to), in no particular order (cheaper than points with their times). */
  values(seriesId: number, from: number, to: number): number[] {
    return this.stmt.values.all(seriesId, from, to) as number[];
  }

  seriesById(id: number): SeriesRow | null {
    const row = this.stmt.seriesById.get(id) as RawSeries | undefined;
    return row ? { ...row, labels: JSON.parse(row.labels) as Labels } : null;
  }

  /** Every series, at most `limit`, ordered by component and name. */
  allSeries(limit: number): SeriesRow[] {
    return (this.stmt.allSeries.all(limit) as RawSeries[]).map((r) => ({ ...r, labels: JSON.parse(r.labels) as Labels }));
  }

  /** Directive runs created in [from, to). */
  directiveRuns(from: number, to: number, limit: number): DirectiveRunRow[] {
    return (this.stmt.directiveRuns.all(from, to, limit) as (Omit<DirectiveRunRow, 'inputs'> & { inputs: string })[]).map((r) => ({
      ...r,
      inputs: JSON.parse(r.inputs) as Attributes,
    }));
  }

  /** Changes of Kiwi's runtime settings in [from, to). */
  settingChanges(from: number, to: number, limit: number): SettingChangeRow[] {
    const rows = this.stmt.settingChanges.all(from, to, limit) as (Omit<SettingChangeRow, 'old_value' | 'new_value'> & {
      old_value: string | null;
      new_value: string | null;
    })[];
    return rows.map((r) => ({
      ...r,
      old_value: r.old_value === null ? null : (JSON.parse(r.old_value) as unknown),
      new_value: r.new_value === null ? null : (JSON.parse(r.new_value) as unknown),
    }));
  }

  traceSpans(traceId: string, limit: number): SpanRow[] {
    return this.stmt.traceSpans.all(traceId, limit) as SpanRow[];
  }

  /** Events of one trace within [from, to). */
  traceEventsOf(traceId: string, from: number, to: number, limit: number): StoredEvent[] {
    return (this.stmt.traceAllEvents.all(from, to, traceId, limit) as EventRow[]).map(toEvent);
  }
}
