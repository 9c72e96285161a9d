import { createHash } from 'node:crypto';
import type { Statement } from 'better-sqlite3';
import { statfsSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Attributes, EventRecord, Labels, MetricRecord, SpanRecord, TelemetryRecord } from '../ingest/records.js';
import { formatBytes } from '../stats/precision.js';
import { quantileOfSorted } from '../stats/robust.js';
import { aggregateBuckets, type Bucket, type RollupRow } from './buckets.js';
import { openDatabase, type SqliteDatabase } from './database.js';
import { Conditions, escapeLike, placeholders, LIMIT_PARAM, OFFSET_PARAM } from './sql.js';

export interface SeriesRow {
  id: number;
  name: string;
  component: string;
  labels: Labels;
  /** UCUM unit (`ms`, `s`, `By`, `1`, `{request}`): the last non-empty one its points were sent with; null when none was. */
  unit: string | null;
}

export interface SeriesInfo extends SeriesRow {
  first_ts: number | null;
  last_ts: number | null;
  last_value: number | null;
}

export interface SeriesFilter {
  name?: string;
  /** Matches names starting with this text (e.g. `process.`). */
  name_prefix?: string;
  component?: string;
  /** Every given label must be present with this value; other labels may exist. */
  labels?: Labels;
}

export interface StoredEvent {
  id: number;
  ts: number;
  kind: string;
  component: string;
  level: string;
  message: string;
  attrs: Attributes;
}

export interface EventFilter {
  kinds?: string[];
  component?: string;
  /** Lowest level to include, in the order trace < debug < info < warn < error < fatal. */
  min_level?: string;
  /** Case-insensitive substring of the message. */
  text?: string;
  /** Events recorded for one trace (their `trace_id` attribute). */
  trace_id?: string;
  from?: number;
  to?: number;
}

export interface EventPage {
  events: StoredEvent[];
  /** Pass back as `cursor` for the next (older) page; null when there is none. */
  next_cursor: string | null;
}

export interface StoredSpan {
  trace_id: string;
  span_id: string;
  parent_id: string | null;
  name: string;
  component: string;
  start: number;
  duration_ms: number;
  status: string;
  attrs: Attributes;
}

export interface RequestStats {
  count: number;
  errors: number;
  error_rate: number;
  p50_ms: number | null;
  p95_ms: number | null;
}

export interface ComponentRow {
  name: string;
  first_seen: number;
  last_seen: number;
}

/** What a write stored: new or changed points, events and spans, and the records identical to what was already there. */
export interface WriteSummary {
  metrics: number;
  events: number;
  spans: number;
  unchanged: number;
}

export const NOTHING_WRITTEN: Readonly<WriteSummary> = { metrics: 0, events: 0, spans: 0, unchanged: 0 };

/** A batch as the ingest parser produces it: metric points as columns, other records as objects. */
export interface ColumnarBatch {
  /** Per point: an index into `seriesIds`. */
  keyIndex: ArrayLike<number>;
  seriesIds: readonly number[];
  ts: ArrayLike<number>;
  values: ArrayLike<number>;
  records: readonly (EventRecord | SpanRecord)[];
  /** [component, first ts, last ts] */
  components: readonly (readonly [string, number, number])[];
  /** [index into `seriesIds`, unit]: a series' unit as this batch sends it, where it may differ from what it was. */
  units?: readonly (readonly [number, string])[];
}

export interface PruneResult {
  points_rolled_up: number;
  points_deleted: number;
  rollups_deleted: number;
  events_deleted: number;
  spans_deleted: number;
  components_forgotten: number;
  /** Free pages handed back to the filesystem (none in a store made before auto-vacuum: see `Store.vacuum`). */
  pages_reclaimed: number;
  /** How much smaller the database file and its write-ahead log are than before the prune. */
  bytes_freed: number;
}

export type AutoVacuumMode = 'none' | 'full' | 'incremental';
const AUTO_VACUUM_MODES: readonly AutoVacuumMode[] = ['none', 'full', 'incremental'];

/** The file on disk: its size, and how much of it holds nothing. */
export interface StoreSpace {
  file_bytes: number;
  /** The write-ahead log beside it; 0 when there is none. */
  wal_bytes: number;
  page_size: number;
  pages: number;
  /** Pages of the file that hold no data (SQLite's freelist). */
  free_pages: number;
  /**
   * `incremental` (every store Kiwi creates): pruning hands free pages back to the filesystem.
   * `none` (a store made before Kiwi did so): free pages are only reused; `Store.vacuum` converts it.
   */
  auto_vacuum: AutoVacuumMode;
}

export interface VacuumResult {
  /** Database file plus write-ahead log, before and after. */
  bytes_before: number;
  bytes_after: number;
  auto_vacuum_before: AutoVacuumMode;
  auto_vacuum_after: AutoVacuumMode;
}

/** Why `Store.vacuum` did not start; the store is as it was. */
export class StoreMaintenanceError extends Error {
  constructor(
    readonly reason: 'busy' | 'disk_space',
    message: string,
  ) {
    super(message);
    this.name = 'StoreMaintenanceError';
  }
}

/**
 * Pages one reclaiming step hands back (4 MiB at the default 4 KiB page): each step is its own
 * write transaction, so a server or ingest sharing the file waits for one step at most.
 */
const RECLAIM_STEP_PAGES = 1024;
/** Longest the checkpoint after a prune waits for other connections; it then does what it can without them. */
const CHECKPOINT_WAIT_MS = 1000;
/** Longest `vacuum` waits for other connections to let go of the file before refusing. */
const VACUUM_WAIT_MS = 2000;
const MIB = 1024 * 1024;

/**
 * Free disk space VACUUM needs beside the file: it writes every page it keeps into the
 * write-ahead log before copying them back, so the size of the data kept, with a tenth and
 * 16 MiB to spare. (Its working copy is built in memory: the store runs with temp_store = MEMORY.)
 */
function vacuumDiskNeed(space: Pick<StoreSpace, 'pages' | 'free_pages' | 'page_size'>): number {
  return Math.ceil((space.pages - space.free_pages) * space.page_size * 1.1) + 16 * MIB;
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0; // the WAL may not exist (yet, or after a checkpoint on close); :memory: has no file
  }
}

function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'));
}

export interface AuditEntry {
  id: number;
  ts: number;
  actor: string;
  action: string;
  target: string | null;
  details: Attributes;
}

export interface SettingRow {
  key: string;
  value: unknown;
  updated_at: number;
  updated_by: string;
}

export interface SettingChange {
  id: number;
  key: string;
  old_value: unknown;
  new_value: unknown;
  ts: number;
  actor: string;
  reason: string | null;
}

export interface AnomalySummary {
  id: string;
  type: string;
  severity: string;
  status: string;
  component: string;
  description: string;
  start_ts: number;
  updated_at: number;
}

const LEVEL_ORDER = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];
const OPEN_ANOMALY_STATUSES = ['open', 'acknowledged'];

const parseJson = <T>(text: string | null): T => (text === null ? (null as T) : (JSON.parse(text) as T));

function eventFingerprint(e: EventRecord, attrsJson: string): bigint {
  const digest = createHash('sha1')
    .update(`${e.ts}\u0000${e.kind}\u0000${e.component}\u0000${e.level}\u0000${e.message}\u0000${attrsJson}`)
    .digest();
  return digest.readBigInt64BE(0);
}

function encodeCursor(ts: number, id: number): string {
  return Buffer.from(`${ts}:${id}`).toString('base64url');
}

function decodeCursor(cursor: string): { ts: number; id: number } {
  const [ts, id] = Buffer.from(cursor, 'base64url').toString().split(':').map(Number);
  if (!Number.isSafeInteger(ts) || !Number.isSafeInteger(id)) throw new Error('cursor is not one this server issued');
  return { ts: ts!, id: id! };
}

/**
 * First and last time and last value of series `s`. Roll-ups hold the older minutes, so the first
 * time is the first roll-up's when there is one; the last value is the last raw point's, or the
 * last minute's average once only roll-ups remain.
 */
const SERIES_SPAN_COLUMNS = `
  coalesce((SELECT ts FROM rollups_1m WHERE series_id = s.id ORDER BY ts ASC LIMIT 1),
           (SELECT ts FROM points WHERE series_id = s.id ORDER BY ts ASC LIMIT 1)) AS first_ts,
  coalesce((SELECT ts FROM points WHERE series_id = s.id ORDER BY ts DESC LIMIT 1),
           (SELECT ts FROM rollups_1m WHERE series_id = s.id ORDER BY ts DESC LIMIT 1)) AS last_ts,
  coalesce((SELECT value FROM points WHERE series_id = s.id ORDER BY ts DESC LIMIT 1),
           (SELECT sum / count FROM rollups_1m WHERE series_id = s.id ORDER BY ts DESC LIMIT 1)) AS last_value`;

function seriesConditions(filter: SeriesFilter): Conditions {
  const where = new Conditions();
  if (filter.name !== undefined) where.add('name = ?', filter.name);
  if (filter.name_prefix !== undefined) where.add("name LIKE ? ESCAPE '\\'", `${escapeLike(filter.name_prefix)}%`);
  if (filter.component !== undefined) where.add('component = ?', filter.component);
  for (const [key, value] of Object.entries(filter.labels ?? {})) {
    where.add('json_extract(labels, ?) = ?', `$.${JSON.stringify(key)}`, value);
  }
  return where;
}

/**
 * The one place that speaks SQL. Every write goes through a transaction; a `Store` is meant to
 * be long-lived (its statements are prepared once).
 */
export class Store {
  readonly db: SqliteDatabase;
  readonly path: string;
  private readonly seriesIds = new Map<string, number>();
  /**
   * The unit of each series as this write transaction left it, so that the points of a series after
   * its first cost a map lookup, not a statement. Emptied after every write: between two, another
   * process sharing the file may have changed a unit.
   */
  private readonly seriesUnits = new Map<number, string | null>();
  /** Statements built from filters are prepared once per distinct SQL text. */
  private readonly dynamic = new Map<string, Statement>();
  private readonly stmt: ReturnType<Store['prepareStatements']>;

  constructor(path: string) {
    this.path = path;
    this.db = openDatabase(path);
    this.stmt = this.prepareStatements();
  }

  private prepareStatements() {
    const db = this.db;
    return {
      seriesInsert: db.prepare('INSERT OR IGNORE INTO series (name, component, labels, unit) VALUES (?, ?, ?, ?)'),
      seriesId: db.prepare('SELECT id, unit FROM series WHERE name = ? AND component = ? AND labels = ?'),
      seriesUnit: db.prepare('UPDATE series SET unit = ? WHERE id = ? AND unit IS NOT ?'),
      pointUpsert: db.prepare(
        // a point sent again replaces the stored value; the same value again writes nothing (changes 0)
        'INSERT INTO points (series_id, ts, value) VALUES (?, ?, ?) ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value WHERE value IS NOT excluded.value',
      ),
      eventInsert: db.prepare(
        'INSERT OR IGNORE INTO events (ts, kind, component, level, message, attrs, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      spanUpsert: db.prepare(
        `INSERT INTO spans (trace_id, span_id, parent_id, name, component, start_ts, duration_ms, status, attrs)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (trace_id, span_id) DO UPDATE SET
           parent_id = excluded.parent_id, name = excluded.name, component = excluded.component, start_ts = excluded.start_ts,
           duration_ms = excluded.duration_ms, status = excluded.status, attrs = excluded.attrs
         WHERE (parent_id, name, component, start_ts, duration_ms, status, attrs) IS NOT
               (excluded.parent_id, excluded.name, excluded.component, excluded.start_ts, excluded.duration_ms, excluded.status, excluded.attrs)`,
      ),
      componentSeen: db.prepare(
        `INSERT INTO components (name, first_seen, last_seen) VALUES (?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET first_seen = min(first_seen, excluded.first_seen),
                                          last_seen = max(last_seen, excluded.last_seen)`,
      ),
      seriesSpan: db.prepare(`SELECT ${SERIES_SPAN_COLUMNS} FROM series s WHERE s.id = ?`),
      seriesLast: db.prepare('SELECT ts, value FROM points WHERE series_id = ? ORDER BY ts DESC LIMIT 1'),
      pointsInRange: db.prepare('SELECT ts, value FROM points WHERE series_id = ? AND ts >= ? AND ts < ? ORDER BY ts').raw(),
      rollupsInRange: db.prepare(
        'SELECT ts, count, sum, min, max FROM rollups_1m WHERE series_id = ? AND ts >= ? AND ts < ? ORDER BY ts',
      ),
      allSeriesIds: db.prepare('SELECT id FROM series ORDER BY id').pluck(),
      rollUp: db.prepare(
        `INSERT INTO rollups_1m (series_id, ts, count, sum, min, max)
         SELECT series_id, (ts / 60000) * 60000, count(*), sum(value), min(value), max(value)
         FROM points WHERE series_id = ? AND ts < ?
         GROUP BY ts / 60000
         ON CONFLICT (series_id, ts) DO UPDATE SET count = count + excluded.count, sum = sum + excluded.sum,
           min = min(min, excluded.min), max = max(max, excluded.max)`,
      ),
      deletePoints: db.prepare('DELETE FROM points WHERE series_id = ? AND ts < ?'),
      deleteRollups: db.prepare('DELETE FROM rollups_1m WHERE series_id = ? AND ts < ?'),
      deleteEvents: db.prepare('DELETE FROM events WHERE ts < ?'),
      deleteSpans: db.prepare('DELETE FROM spans WHERE start_ts < ?'),
      deleteComponents: db.prepare('DELETE FROM components WHERE last_seen < ?'),
      components: db.prepare('SELECT name, first_seen, last_seen FROM components ORDER BY name'),
      componentKnown: db.prepare('SELECT 1 FROM components WHERE name = ?').pluck(),
      requestSpans: db.prepare(
        'SELECT duration_ms, status FROM spans WHERE component = ? AND start_ts >= ? AND start_ts < ?',
      ).raw(),
      auditInsert: db.prepare('INSERT INTO audit (ts, actor, action, target, details) VALUES (?, ?, ?, ?, ?)'),
      auditFiltered: db.prepare(
        `SELECT * FROM audit WHERE id < @before
           AND (@action IS NULL OR action = @action OR substr(action, 1, length(@prefix)) = @prefix)
           AND (@target IS NULL OR target = @target) AND (@actor IS NULL OR actor = @actor) AND ts >= @since
         ORDER BY id DESC LIMIT @limit`,
      ),
      settingGet: db.prepare('SELECT key, value, updated_at, updated_by FROM settings WHERE key = ?'),
      settingAll: db.prepare('SELECT key, value, updated_at, updated_by FROM settings ORDER BY key'),
      settingUpsert: db.prepare(
        `INSERT INTO settings (key, value, updated_at, updated_by) VALUES (?, ?, ?, ?)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at,
                                         updated_by = excluded.updated_by`,
      ),
      settingDelete: db.prepare('DELETE FROM settings WHERE key = ?'),
      settingHistoryInsert: db.prepare(
        'INSERT INTO settings_history (key, old_value, new_value, ts, actor, reason) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      settingHistory: db.prepare(`SELECT * FROM settings_history WHERE key = ? ORDER BY id DESC ${LIMIT_PARAM}`),
      // busy = 1 when another connection kept it from finishing: what it could do is done
      checkpointTruncate: db.prepare('PRAGMA wal_checkpoint(TRUNCATE)'),
      pageSize: db.prepare('PRAGMA page_size').pluck(),
      pageCount: db.prepare('PRAGMA page_count').pluck(),
      freelistCount: db.prepare('PRAGMA freelist_count').pluck(),
      autoVacuum: db.prepare('PRAGMA auto_vacuum').pluck(),
      openAnomalies: db.prepare(
        `SELECT id, type, severity, status, component, description, start_ts, updated_at FROM anomalies
         WHERE status IN (${OPEN_ANOMALY_STATUSES.map(() => '?').join(', ')}) ORDER BY updated_at DESC ${LIMIT_PARAM}`,
      ),
    };
  }

  /** The statement for `sql`, prepared once; with `build`, `sql` is a short key and `build()` the text. */
  private prepared(sql: string, build?: () => string): Statement {
    let statement = this.dynamic.get(sql);
    if (!statement) {
      statement = this.db.prepare(build ? build() : sql);
      this.dynamic.set(sql, statement);
    }
    return statement;
  }

  // ---------------------------------------------------------------- writes

  /** Writes a batch in one transaction: all of it lands, or none of it. */
  writeRecords(records: readonly TelemetryRecord[]): WriteSummary {
    const summary: WriteSummary = { ...NOTHING_WRITTEN };
    if (records.length === 0) return summary;
    const seen = new Map<string, { first: number; last: number }>();
    const note = (component: string, ts: number) => {
      const s = seen.get(component);
      if (!s) seen.set(component, { first: ts, last: ts });
      else {
        if (ts < s.first) s.first = ts;
        if (ts > s.last) s.last = ts;
      }
    };
    this.forgettingSeriesOnFailure(() => this.db
      .transaction(() => {
        for (const r of records) {
          switch (r.type) {
            case 'metric':
              count(summary, 'metrics', this.writePoint(r));
              note(r.component, r.ts);
              break;
            case 'event':
              count(summary, 'events', this.writeEvent(r));
              note(r.component, r.ts);
              break;
            case 'span':
              count(summary, 'spans', this.writeSpan(r));
              note(r.component, r.start);
              break;
          }
        }
        for (const [name, s] of seen) this.stmt.componentSeen.run(name, s.first, s.last);
      })
      .immediate());
    return summary;
  }

  /** Writes a parsed batch in one transaction (the file-ingest path). */
  writeColumnar(batch: ColumnarBatch): WriteSummary {
    const summary: WriteSummary = { ...NOTHING_WRITTEN };
    const { keyIndex, seriesIds, ts, values } = batch;
    this.forgettingSeriesOnFailure(() => this.db
      .transaction(() => {
        for (const [index, unit] of batch.units ?? []) this.noteUnit(seriesIds[index]!, unit);
        const upsert = this.stmt.pointUpsert;
        let changed = 0;
        for (let i = 0; i < ts.length; i++) changed += upsert.run(seriesIds[keyIndex[i]!], ts[i], values[i]).changes;
        summary.metrics = changed;
        summary.unchanged = ts.length - changed;
        for (const r of batch.records) {
          if (r.type === 'event') count(summary, 'events', this.writeEvent(r));
          else count(summary, 'spans', this.writeSpan(r));
        }
        for (const [name, first, last] of batch.components) this.stmt.componentSeen.run(name, first, last);
      })
      .immediate());
    return summary;
  }

  /** Runs `fn` in one transaction; writes inside it join that transaction. */
  inTransaction<T>(fn: () => T): T {
    return this.forgettingSeriesOnFailure(() => this.db.transaction(fn).immediate());
  }

  /**
   * Runs a write. When it fails, its transaction is rolled back, and with it any series it created:
   * the cache of series ids is emptied, to be read again. The units it noted hold for it alone.
   */
  private forgettingSeriesOnFailure<T>(write: () => T): T {
    try {
      return write();
    } catch (err) {
      this.seriesIds.clear();
      throw err;
    } finally {
      this.seriesUnits.clear();
    }
  }

  /** Each write returns how many rows it changed: 0 when the record was already stored as it is. */
  private writePoint(r: MetricRecord): number {
    return this.stmt.pointUpsert.run(this.seriesIdFor(r.name, r.component, r.labels, r.unit), r.ts, r.value).changes;
  }

  private writeEvent(r: EventRecord): number {
    const attrs = JSON.stringify(r.attrs);
    return this.stmt.eventInsert.run(r.ts, r.kind, r.component, r.level, r.message, attrs, eventFingerprint(r, attrs)).changes;
  }

  private writeSpan(r: SpanRecord): number {
    return this.stmt.spanUpsert.run(
      r.trace_id,
      r.span_id,
      r.parent_id,
      r.name,
      r.component,
      r.start,
      r.duration_ms,
      r.status,
      JSON.stringify(r.attrs),
    ).changes;
  }

  /**
   * The id of a series, created when new. Labels must already be canonical (keys sorted), as
   * `normaliseRecord` leaves them. A non-empty `unit` becomes the series' unit: set when the series
   * is created, and replaced when it differs from the stored one (the last unit sent wins; stored
   * values are not converted). No unit leaves the stored one as it is.
   */
  seriesIdFor(name: string, component: string, labels: Labels, unit?: string): number {
    let labelsJson = '{}';
    for (const _ in labels) {
      labelsJson = JSON.stringify(labels);
      break;
    }
    const key = `${name}\u0000${component}\u0000${labelsJson}`;
    let id = this.seriesIds.get(key);
    if (id === undefined) {
      this.stmt.seriesInsert.run(name, component, labelsJson, unit || null);
      const row = this.stmt.seriesId.get(name, component, labelsJson) as { id: number; unit: string | null };
      id = row.id;
      this.seriesIds.set(key, id);
      this.seriesUnits.set(id, row.unit);
    }
    if (unit) this.noteUnit(id, unit);
    return id;
  }

  /** Makes `unit` the unit of series `id`; the row is written only when it holds another. */
  private noteUnit(id: number, unit: string): void {
    if (this.seriesUnits.get(id) === unit) return;
    this.stmt.seriesUnit.run(unit, id, unit);
    this.seriesUnits.set(id, unit);
  }

  // ---------------------------------------------------------------- series and points

  findSeries(filter: SeriesFilter, limit = 1000, offset = 0): { series: SeriesRow[]; total: number } {
    const where = seriesConditions(filter);
    const total = this.prepared(`SELECT count(*) FROM series ${where.clause()}`).pluck().get(...where.params) as number;
    const rows = this
      .prepared(`SELECT id, name, component, labels, unit FROM series ${where.clause()} ORDER BY name, component, labels ${LIMIT_PARAM} ${OFFSET_PARAM}`)
      .all(...where.params, limit, offset) as { id: number; name: string; component: string; labels: string; unit: string | null }[];
    return { series: rows.map((r) => ({ ...r, labels: JSON.parse(r.labels) as Labels })), total };
  }

  /**
   * A page of series with their first and last times and last value, and how many match, in one
   * statement (one snapshot): `list_series` is a cheap read, and a statement per series and per
   * bound cost more than the rest of the call.
   */
  listSeries(filter: SeriesFilter, limit: number, offset: number): { series: SeriesInfo[]; total: number } {
    const where = seriesConditions(filter);
    const clause = where.clause();
    const rows = this
      .prepared(
        `listSeries ${clause}`,
        () => `SELECT s.id, s.name, s.component, s.labels, s.unit, (SELECT count(*) FROM series ${clause}) AS total, ${SERIES_SPAN_COLUMNS}
               FROM series s ${clause} ORDER BY s.name, s.component, s.labels ${LIMIT_PARAM} ${OFFSET_PARAM}`,
      )
      .all(...where.params, ...where.params, limit, offset) as (Omit<SeriesInfo, 'labels'> & { labels: string; total: number })[];
    // A page past the end has no row to carry the count.
    const total = rows[0]?.total ?? this.findSeries(filter, 0).total;
    return {
      // Written out rather than rest-and-spread: V8 copies a rest pattern property by property, a
      // third of this read's JavaScript time.
      series: rows.map((row) => ({
        id: row.id,
        name: row.name,
        component: row.component,
        labels: JSON.parse(row.labels) as Labels,
        unit: row.unit,
        first_ts: row.first_ts,
        last_ts: row.last_ts,
        last_value: row.last_value,
      })),
      total,
    };
  }

  /** First and last time, and the last value: the last raw point, or the last minute's average once only roll-ups remain. */
  describeSeries(series: SeriesRow): SeriesInfo {
    const span = this.stmt.seriesSpan.get(series.id) as Pick<SeriesInfo, 'first_ts' | 'last_ts' | 'last_value'> | undefined;
    return { ...series, first_ts: span?.first_ts ?? null, last_ts: span?.last_ts ?? null, last_value: span?.last_value ?? null };
  }

  /** Points in [from, to), oldest first, as two parallel arrays. */
  readPoints(seriesId: number, from: number, to: number): { ts: number[]; values: number[] } {
    const rows = this.stmt.pointsInRange.all(seriesId, from, to) as [number, number][];
    const ts = new Array<number>(rows.length);
    const values = new Array<number>(rows.length);
    for (let i = 0; i < rows.length; i++) {
      ts[i] = rows[i]![0];
      values[i] = rows[i]![1];
    }
    return { ts, values };
  }

  /** Buckets of width `bucketMs` over [from, to), raw points and roll-ups together; empty buckets left out. */
  queryBuckets(seriesId: number, from: number, to: number, bucketMs: number): Bucket[] {
    const { ts, values } = this.readPoints(seriesId, from, to);
    const rollups = this.stmt.rollupsInRange.all(seriesId, from, to) as RollupRow[];
    return aggregateBuckets(ts, values, rollups, bucketMs);
  }

  latestValue(name: string, component: string): { ts: number; value: number } | null {
    const { series } = this.findSeries({ name, component }, 1);
    const first = series[0];
    if (!first) return null;
    return (this.stmt.seriesLast.get(first.id) as { ts: number; value: number } | undefined) ?? null;
  }

  // ---------------------------------------------------------------- events

  searchEvents(filter: EventFilter, limit: number, cursor?: string): EventPage {
    const where = eventConditions(filter);
    if (cursor !== undefined) {
      const c = decodeCursor(cursor);
      where.add('(ts < ? OR (ts = ? AND id < ?))', c.ts, c.ts, c.id);
    }
    const rows = this
      .prepared(
        `SELECT id, ts, kind, component, level, message, attrs FROM events ${where.clause()} ORDER BY ts DESC, id DESC ${LIMIT_PARAM}`,
      )
      .all(...where.params, limit + 1) as (Omit<StoredEvent, 'attrs'> & { attrs: string })[];
    const page = rows.slice(0, limit).map((r) => ({ ...r, attrs: JSON.parse(r.attrs) as Attributes }));
    const last = page[page.length - 1];
    return { events: page, next_cursor: rows.length > limit && last ? encodeCursor(last.ts, last.id) : null };
  }

  /** The latest event of a kind for a component, e.g. its current connection state. */
  latestEvent(kind: string, component: string): StoredEvent | null {
    return this.searchEvents({ kinds: [kind], component }, 1).events[0] ?? null;
  }

  /** Counts events; `attr` narrows to those whose attribute `key` equals `value` (e.g. decision = deny). */
  countEvents(filter: EventFilter & { attr?: { key: string; value: string } }): number {
    const where = eventConditions(filter);
    if (filter.attr) where.add('json_extract(attrs, ?) = ?', `$.${JSON.stringify(filter.attr.key)}`, filter.attr.value);
    return this.prepared(`SELECT count(*) FROM events ${where.clause()}`).pluck().get(...where.params) as number;
  }

  // ---------------------------------------------------------------- spans

  requestStats(component: string, from: number, to: number): RequestStats {
    const rows = this.stmt.requestSpans.all(component, from, to) as [number, string][];
    const durations = new Float64Array(rows.length);
    let errors = 0;
    rows.forEach(([duration, status], i) => {
      durations[i] = duration;
      if (status === 'error') errors++;
    });
    durations.sort();
    return {
      count: rows.length,
      errors,
      error_rate: rows.length ? errors / rows.length : 0,
      p50_ms: rows.length ? quantileOfSorted(durations, 0.5) : null,
      p95_ms: rows.length ? quantileOfSorted(durations, 0.95) : null,
    };
  }

  listSpans(filter: { component?: string; trace_id?: string; from?: number; to?: number }, limit: number): StoredSpan[] {
    const where = new Conditions();
    if (filter.trace_id !== undefined) where.add('trace_id = ?', filter.trace_id);
    if (filter.component !== undefined) where.add('component = ?', filter.component);
    if (filter.from !== undefined) where.add('start_ts >= ?', filter.from);
    if (filter.to !== undefined) where.add('start_ts < ?', filter.to);
    const rows = this
      .prepared(
        `SELECT trace_id, span_id, parent_id, name, component, start_ts AS start, duration_ms, status, attrs
         FROM spans ${where.clause()} ORDER BY start_ts DESC ${LIMIT_PARAM}`,
      )
      .all(...where.params, limit) as (Omit<StoredSpan, 'attrs'> & { attrs: string })[];
    return rows.map((r) => ({ ...r, attrs: JSON.parse(r.attrs) as Attributes }));
  }

  // ---------------------------------------------------------------- components and anomalies

  listComponents(): ComponentRow[] {
    return this.stmt.components.all() as ComponentRow[];
  }

  /** Whether any telemetry from `name` was ever stored. */
  hasComponent(name: string): boolean {
    return this.stmt.componentKnown.get(name) !== undefined;
  }

  openAnomalies(limit: number): AnomalySummary[] {
    return this.stmt.openAnomalies.all(...OPEN_ANOMALY_STATUSES, limit) as AnomalySummary[];
  }

  // ---------------------------------------------------------------- audit (append-only)

  appendAudit(entry: { actor: string; action: string; target?: string; details?: Attributes; ts?: number }): number {
    const info = this.stmt.auditInsert.run(
      entry.ts ?? Date.now(),
      entry.actor,
      entry.action,
      entry.target ?? null,
      JSON.stringify(entry.details ?? {}),
    );
    return Number(info.lastInsertRowid);
  }

  /** Who last did `action` to `target`, and when; null when nobody has. */
  latestAudit(action: string, target: string): { actor: string; ts: number } | null {
    const [latest] = this.searchAudit({ action, target }, 1);
    return latest ? { actor: latest.actor, ts: latest.ts } : null;
  }

  listAudit(limit: number, beforeId = Number.MAX_SAFE_INTEGER): AuditEntry[] {
    return this.searchAudit({}, limit, beforeId);
  }

  /**
   * Audit entries newest first, filtered: `action` exactly, or every action under a prefix ending
   * in a dot (`directive.`); `target` and `actor` exactly; at or after `since` (epoch ms).
   */
  searchAudit(filter: { action?: string; target?: string; actor?: string; since?: number }, limit: number, beforeId = Number.MAX_SAFE_INTEGER): AuditEntry[] {
    const rows = this.stmt.auditFiltered.all({
      before: beforeId,
      action: filter.action ?? null,
      prefix: filter.action?.endsWith('.') ? filter.action : null,
      target: filter.target ?? null,
      actor: filter.actor ?? null,
      since: filter.since ?? 0,
      limit,
    }) as (Omit<AuditEntry, 'details'> & { details: string })[];
    return rows.map((r) => ({ ...r, details: JSON.parse(r.details) as Attributes }));
  }

  // ---------------------------------------------------------------- settings (with history)

  getSetting(key: string): SettingRow | null {
    const row = this.stmt.settingGet.get(key) as (Omit<SettingRow, 'value'> & { value: string }) | undefined;
    return row ? { ...row, value: JSON.parse(row.value) as unknown } : null;
  }

  listSettings(): SettingRow[] {
    return (this.stmt.settingAll.all() as (Omit<SettingRow, 'value'> & { value: string })[]).map((r) => ({
      ...r,
      value: JSON.parse(r.value) as unknown,
    }));
  }

  /** Sets (or, with `value === undefined`, resets to its default) a setting, recording the change and auditing it. */
  changeSetting(key: string, value: unknown, actor: string, reason?: string): SettingChange {
    const now = Date.now();
    return this.db
      .transaction(() => {
        const before = this.stmt.settingGet.get(key) as { value: string } | undefined;
        const oldJson = before?.value ?? null;
        const newJson = value === undefined ? null : JSON.stringify(value);
        if (newJson === null) this.stmt.settingDelete.run(key);
        else this.stmt.settingUpsert.run(key, newJson, now, actor);
        const info = this.stmt.settingHistoryInsert.run(key, oldJson, newJson, now, actor, reason ?? null);
        this.appendAudit({ ts: now, actor, action: 'settings.change', target: key, details: { old_value: parseJson(oldJson), new_value: parseJson(newJson), reason: reason ?? null } });
        return {
          id: Number(info.lastInsertRowid),
          key,
          old_value: parseJson(oldJson),
          new_value: parseJson(newJson),
          ts: now,
          actor,
          reason: reason ?? null,
        };
      })
      .immediate();
  }

  settingHistory(key: string, limit = 50): SettingChange[] {
    const rows = this.stmt.settingHistory.all(key, limit) as (Omit<SettingChange, 'old_value' | 'new_value'> & {
      old_value: string | null;
      new_value: string | null;
    })[];
    return rows.map((r) => ({ ...r, old_value: parseJson(r.old_value), new_value: parseJson(r.new_value) }));
  }

  // ---------------------------------------------------------------- retention

  /**
   * Rolls raw points older than `rawBefore` into 1-minute roll-ups and deletes them; deletes
   * events and spans older than `rawBefore` and roll-ups older than `rollupBefore`. One
   * transaction per series, so a server sharing the file is never blocked for long. Then the
   * file shrinks: free pages go back to the filesystem (`reclaimFreePages`) and, when anything
   * changed, the write-ahead log is checkpointed and truncated.
   */
  prune(rawBefore: number, rollupBefore: number): PruneResult {
    const bytesBefore = this.sizeBytes();
    const result: PruneResult = {
      points_rolled_up: 0,
      points_deleted: 0,
      rollups_deleted: 0,
      events_deleted: 0,
      spans_deleted: 0,
      components_forgotten: 0,
      pages_reclaimed: 0,
      bytes_freed: 0,
    };
    const perSeries = this.db.transaction((seriesId: number) => {
      result.points_rolled_up += this.stmt.rollUp.run(seriesId, rawBefore).changes;
      result.points_deleted += this.stmt.deletePoints.run(seriesId, rawBefore).changes;
      result.rollups_deleted += this.stmt.deleteRollups.run(seriesId, rollupBefore).changes;
    });
    for (const id of this.stmt.allSeriesIds.all() as number[]) perSeries.immediate(id);
    this.db
      .transaction(() => {
        result.events_deleted = this.stmt.deleteEvents.run(rawBefore).changes;
        result.spans_deleted = this.stmt.deleteSpans.run(rawBefore).changes;
        // a component with nothing newer than the raw retention has no raw data left to report on
        result.components_forgotten = this.stmt.deleteComponents.run(rawBefore).changes;
      })
      .immediate();
    const deleted = result.points_deleted + result.rollups_deleted + result.events_deleted + result.spans_deleted + result.components_forgotten;
    result.pages_reclaimed = this.reclaimFreePages();
    // the deletes and the moved pages went through the log: empty it, and the file's end goes with it
    if (deleted > 0 || result.pages_reclaimed > 0) this.checkpoint();
    result.bytes_freed = Math.max(0, bytesBefore - this.sizeBytes());
    return result;
  }

  // ---------------------------------------------------------------- housekeeping

  /**
   * Hands the file's free pages back to the filesystem (incremental auto-vacuum), at most
   * RECLAIM_STEP_PAGES per write transaction, until none is left: what pruning freed, and any
   * other. A store made before Kiwi created stores this way has no page links to do it with and
   * hands back nothing (see `vacuum`). When another writer holds the file past the busy timeout
   * it stops, and the next prune takes up the rest. Returns the pages handed back.
   */
  reclaimFreePages(): number {
    if (AUTO_VACUUM_MODES[this.stmt.autoVacuum.get() as number] !== 'incremental') return 0;
    let reclaimed = 0;
    while ((this.stmt.freelistCount.get() as number) > 0) {
      let step: number;
      try {
        // one row per page handed back. Through db.pragma: a prepared statement refuses all() (the
        // pragma names no column), and stepped once (run, get) it hands back a single page.
        step = (this.db.pragma(`incremental_vacuum(${RECLAIM_STEP_PAGES})`) as unknown[]).length;
      } catch (err) {
        if (isBusy(err)) break;
        throw err;
      }
      if (step === 0) break;
      reclaimed += step;
    }
    return reclaimed;
  }

  /**
   * Copies the write-ahead log into the file and truncates it to nothing. Waits at most `waitMs`
   * for other connections' transactions and readers, then does what it can without them; true
   * when the log was emptied.
   */
  checkpoint(waitMs = CHECKPOINT_WAIT_MS): boolean {
    const row = this.withBusyTimeout(waitMs, () => this.stmt.checkpointTruncate.get()) as { busy: number } | undefined;
    return (row?.busy ?? 0) === 0;
  }

  /** The file's size and pages, and whether pruning can shrink it. */
  space(): StoreSpace {
    return {
      file_bytes: this.path === ':memory:' ? 0 : fileSize(this.path),
      wal_bytes: this.path === ':memory:' ? 0 : fileSize(`${this.path}-wal`),
      page_size: this.stmt.pageSize.get() as number,
      pages: this.stmt.pageCount.get() as number,
      free_pages: this.stmt.freelistCount.get() as number,
      auto_vacuum: AUTO_VACUUM_MODES[this.stmt.autoVacuum.get() as number] ?? 'none',
    };
  }

  /**
   * Rewrites the whole file (VACUUM): every free page goes back to the filesystem, half-empty
   * pages are packed, and a store made before Kiwi enabled auto-vacuum is converted, so that from
   * then on each prune shrinks it. The rewrite holds the write lock throughout, so it needs the
   * file to itself: it refuses (StoreMaintenanceError 'busy') when another connection has the file
   * open after `waitMs`, and keeps any other from opening it until done. It refuses ('disk_space')
   * when the free disk space beside the file is below `vacuumDiskNeed`. Its working copy is built in
   * memory (temp_store = MEMORY): it needs about as much free memory as the data kept.
   */
  vacuum(waitMs = VACUUM_WAIT_MS): VacuumResult {
    const bytesBefore = this.sizeBytes();
    const autoVacuumBefore = this.space().auto_vacuum;
    this.db.pragma('locking_mode = EXCLUSIVE');
    try {
      try {
        // in exclusive locking mode the lock taken here is kept after the commit
        this.withBusyTimeout(waitMs, () => this.db.exec('BEGIN IMMEDIATE; COMMIT'));
      } catch (err) {
        if (!isBusy(err)) throw err;
        throw new StoreMaintenanceError(
          'busy',
          `another process has ${this.path} open (kiwi serve, otlp or ingest?): a VACUUM needs the file to itself; stop it and try again`,
        );
      }
      this.checkpoint(); // empties the log, which the rewrite then fills with every page it keeps
      const need = vacuumDiskNeed(this.space());
      const free = freeDiskBytes(this.path);
      if (free < need) {
        throw new StoreMaintenanceError(
          'disk_space',
          `a VACUUM of ${this.path} needs about ${formatBytes(need)} of free disk space beside it (the data kept is written to the -wal first), ` +
            `and ${formatBytes(free)} is free`,
        );
      }
      // read by the VACUUM that follows: the rewritten file keeps the page links incremental vacuum needs
      this.db.pragma('auto_vacuum = INCREMENTAL');
      this.db.exec('VACUUM');
      this.checkpoint();
    } finally {
      this.db.pragma('locking_mode = NORMAL');
      this.stmt.pageCount.get(); // the next access lets go of the exclusive lock
    }
    return {
      bytes_before: bytesBefore,
      bytes_after: this.sizeBytes(),
      auto_vacuum_before: autoVacuumBefore,
      auto_vacuum_after: this.space().auto_vacuum,
    };
  }

  /** Bytes on disk: the database file and its write-ahead log. */
  sizeBytes(): number {
    return this.path === ':memory:' ? 0 : fileSize(this.path) + fileSize(`${this.path}-wal`);
  }

  /** Runs `fn` with the busy timeout set to `ms`, then puts the connection's own back. */
  private withBusyTimeout<T>(ms: number, fn: () => T): T {
    const saved = this.db.pragma('busy_timeout', { simple: true }) as number;
    this.db.pragma(`busy_timeout = ${Math.max(0, Math.floor(ms))}`);
    try {
      return fn();
    } finally {
      this.db.pragma(`busy_timeout = ${saved}`);
    }
  }

  integrityCheck(): string {
    return this.db.pragma('integrity_check', { simple: true }) as string;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

/** Bytes an unprivileged process may still write on the filesystem holding `path`. */
function freeDiskBytes(path: string): number {
  const fs = statfsSync(dirname(path));
  return fs.bavail * fs.bsize;
}

function eventConditions(filter: EventFilter): Conditions {
  const where = new Conditions();
  if (filter.kinds?.length) where.add(`kind IN (${placeholders(filter.kinds.length)})`, ...filter.kinds);
  if (filter.component !== undefined) where.add('component = ?', filter.component);
  if (filter.min_level !== undefined) {
    const index = LEVEL_ORDER.indexOf(filter.min_level);
    if (index < 0) throw new Error(`min_level must be one of ${LEVEL_ORDER.join(', ')}`);
    const levels = LEVEL_ORDER.slice(index);
    where.add(`level IN (${placeholders(levels.length)})`, ...levels);
  }
  if (filter.text !== undefined && filter.text !== '') where.add("message LIKE ? ESCAPE '\\'", `%${escapeLike(filter.text)}%`);
  if (filter.trace_id !== undefined) where.add("json_extract(attrs, '$.trace_id') = ?", filter.trace_id);
  if (filter.from !== undefined) where.add('ts >= ?', filter.from);
  if (filter.to !== undefined) where.add('ts < ?', filter.to);
  return where;
}


export type { Bucket };

function count(summary: WriteSummary, kind: 'metrics' | 'events' | 'spans', changes: number): void {
  if (changes > 0) summary[kind]++;
  else summary.unchanged++;
}
