/**
 * The reads anomaly detection needs: requests, error events, permission decisions, connection
 * changes, points.
 *
 * A long lookback reads a week of rows. Those reads are generators (`Steps`): they read one
 * CHUNK_MS slice of time per statement and yield between slices, so whoever drives them can let
 * other work run in between (detect/service.ts). Slices of one ordered range, concatenated, are
 * the same rows in the same order as one statement over the whole range: rows with equal times
 * fall in one slice, where the index orders them as it would in the whole.
 */
import type { SqliteDatabase } from './database.js';
import { LIMIT_PARAM } from './sql.js';

/** Work that may pause: yields between units of work and returns T. */
export type Steps<T> = Generator<void, T, void>;

/** One statement reads at most this much time of a series, a component's spans or the decisions. */
const CHUNK_MS = 6 * 3_600_000;

/**
 * A component's requests (spans) in time order, as columns. `rowid` finds a request's trace and
 * span ids (`requestIds`), which only the few requests shown in evidence need.
 */
export interface Requests {
  length: number;
  start: Float64Array;
  duration: Float64Array;
  /** 1 where the span's status is `error`. */
  error: Uint8Array;
  rowid: Float64Array;
}

export interface RequestIds {
  trace_id: string;
  span_id: string;
}

export interface MessageRow {
  ts: number;
  message: string;
}

export interface DecisionRow {
  /** The event's id: `decisionDetails` reads who was denied what. */
  id: number;
  component: string;
  ts: number;
  denied: boolean;
}

export interface DecisionDetails {
  principal: string | null;
  tool: string | null;
  permission: string | null;
}

export interface ConnectionRow {
  component: string;
  ts: number;
  state: string | null;
  reason: string | null;
}

export interface Points {
  ts: number[];
  values: number[];
}

/** Consecutive [from, to) slices of at most CHUNK_MS covering [from, to). */
function* slices(from: number, to: number): Generator<[number, number]> {
  for (let start = from; start < to; ) {
    const end = Math.min(start + CHUNK_MS, to);
    yield [start, end];
    start = end;
  }
}

class Columns {
  length = 0;
  start = new Float64Array(256);
  duration = new Float64Array(256);
  error = new Uint8Array(256);
  rowid = new Float64Array(256);

  push(rows: [number, number, number, number][]): void {
    const needed = this.length + rows.length;
    if (needed > this.start.length) {
      const capacity = Math.max(needed, 2 * this.start.length);
      const grow = <A extends Float64Array | Uint8Array>(a: A, make: (n: number) => A): A => {
        const next = make(capacity);
        next.set(a.subarray(0, this.length));
        return next;
      };
      this.start = grow(this.start, (n) => new Float64Array(n));
      this.duration = grow(this.duration, (n) => new Float64Array(n));
      this.error = grow(this.error, (n) => new Uint8Array(n));
      this.rowid = grow(this.rowid, (n) => new Float64Array(n));
    }
    let i = this.length;
    for (const [start, duration, error, rowid] of rows) {
      this.start[i] = start;
      this.duration[i] = duration;
      this.error[i] = error;
      this.rowid[i] = rowid;
      i++;
    }
    this.length = i;
  }

  done(): Requests {
    const n = this.length;
    return { length: n, start: this.start.subarray(0, n), duration: this.duration.subarray(0, n), error: this.error.subarray(0, n), rowid: this.rowid.subarray(0, n) };
  }
}

/** Index of the first of `times` (ascending) at or after `t`. */
function lowerBound(times: ArrayLike<number>, t: number): number {
  let lo = 0;
  let hi = times.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (times[mid]! < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Reads for one detection run. One instance per run: it keeps the requests and decisions it read,
 * because the latency and error checks read the same requests, and judging whether an anomaly
 * healed reads the end of a range already read. A range within one already read is cut from it:
 * the same rows in the same order as a statement over that range.
 */
export class DetectionReads {
  private readonly stmt: ReturnType<DetectionReads['prepare']>;
  private readonly requestsRead = new Map<string, { from: number; to: number; rows: Requests }[]>();
  private readonly decisionsRead: { from: number; to: number; rows: DecisionRow[]; times: Float64Array }[] = [];

  constructor(private readonly db: SqliteDatabase) {
    this.stmt = this.prepare();
  }

  private prepare() {
    const db = this.db;
    return {
      spanComponents: db.prepare(distinctComponents('spans')).pluck(),
      eventComponents: db.prepare(distinctComponents('events')).pluck(),
      hasDecisionIn: db
        .prepare(`SELECT 1 FROM events WHERE component = ? AND kind = 'permission' AND ts >= ? AND ts < ? LIMIT 1`)
        .pluck(),
      firstSpanIn: db
        .prepare('SELECT start_ts, rowid FROM spans WHERE component = ? AND start_ts >= ? AND start_ts < ? ORDER BY start_ts, rowid LIMIT 1')
        .raw(),
      requests: db
        .prepare(
          `SELECT start_ts, duration_ms, status = 'error', rowid FROM spans
           WHERE component = ? AND start_ts >= ? AND start_ts < ? ORDER BY start_ts`,
        )
        .raw(),
      requestIds: db.prepare('SELECT trace_id, span_id FROM spans WHERE rowid = ?'),
      errorMessages: db
        .prepare(
          `SELECT ts, message FROM events WHERE kind = 'error' AND component = ? AND ts >= ? AND ts < ? ORDER BY ts ${LIMIT_PARAM}`,
        )
        .raw(),
      errorTimes: db
        .prepare(`SELECT ts FROM events WHERE component = ? AND kind = 'error' AND ts >= ? AND ts < ? ORDER BY ts`)
        .pluck(),
      errorCount: db
        .prepare(`SELECT count(*) FROM events WHERE component = ? AND kind = 'error' AND ts >= ? AND ts < ?`)
        .pluck(),
      errorCounts: db.prepare(
        `SELECT component, count(*) AS n FROM events WHERE kind = 'error' AND ts >= ? AND ts < ? GROUP BY component`,
      ),
      decisions: db
        .prepare(
          `SELECT id, component, ts, json_extract(attrs, '$.decision') = 'deny'
           FROM events WHERE kind = 'permission' AND ts >= ? AND ts < ? ORDER BY ts`,
        )
        .raw(),
      decisionDetails: db
        .prepare(`SELECT json_extract(attrs, '$.principal'), json_extract(attrs, '$.tool'), json_extract(attrs, '$.permission') FROM events WHERE id = ?`)
        .raw(),
      extremes: db.prepare('SELECT min(value) AS min, max(value) AS max, count(*) AS n FROM points WHERE series_id = ? AND ts >= ? AND ts < ?'),
      lastPoint: db.prepare('SELECT ts, value FROM points WHERE series_id = ? AND ts >= ? AND ts < ? ORDER BY ts DESC LIMIT 1'),
      points: db.prepare('SELECT ts, value FROM points WHERE series_id = ? AND ts >= ? AND ts < ? ORDER BY ts').raw(),
      // Where each signal's data begins: what detection judges a baseline by (one index seek each).
      firstSpan: db.prepare('SELECT min(start_ts) FROM spans WHERE component = ?').pluck(),
      firstEvent: db.prepare('SELECT min(ts) FROM events WHERE component = ?').pluck(),
      firstDecision: db.prepare(`SELECT ts FROM events WHERE component = ? AND kind = 'permission' ORDER BY ts LIMIT 1`).pluck(),
      firstPoint: db.prepare('SELECT min(ts) FROM points WHERE series_id = ?').pluck(),
      eventIn: db.prepare('SELECT 1 FROM events WHERE component = ? AND ts >= ? AND ts < ? LIMIT 1').pluck(),
      pointOfComponentIn: db
        .prepare('SELECT 1 FROM series s WHERE s.component = ? AND EXISTS (SELECT 1 FROM points WHERE series_id = s.id AND ts >= ? AND ts < ?) LIMIT 1')
        .pluck(),
      firstPointOfComponent: db
        .prepare('SELECT min((SELECT min(ts) FROM points WHERE series_id = s.id)) FROM series s WHERE s.component = ?')
        .pluck(),
      connections: db
        .prepare(
          `SELECT component, ts, json_extract(attrs, '$.state'), json_extract(attrs, '$.reason')
           FROM events WHERE kind = 'connection' AND ts >= ? AND ts < ? ORDER BY ts`,
        )
        .raw(),
    };
  }

  /**
   * Components with spans in [from, to), in the order of their first span there (time, then
   * rowid): the order `SELECT DISTINCT component` over the spans by time gives.
   */
  componentsWithRequests(from: number, to: number): string[] {
    const firsts: { component: string; start: number; rowid: number }[] = [];
    for (const component of this.stmt.spanComponents.all() as string[]) {
      const first = this.stmt.firstSpanIn.get(component, from, to) as [number, number] | undefined;
      if (first) firsts.push({ component, start: first[0], rowid: first[1] });
    }
    return firsts.sort((a, b) => a.start - b.start || a.rowid - b.rowid).map((f) => f.component);
  }

  /** Components with permission decisions in [from, to), by name. */
  componentsWithDecisions(from: number, to: number): string[] {
    return (this.stmt.eventComponents.all() as string[]).filter((component) => this.stmt.hasDecisionIn.get(component, from, to) !== undefined);
  }

  /** When a component's first request (span) began; null for none. */
  firstRequest(component: string): number | null {
    return (this.stmt.firstSpan.get(component) as number | null) ?? null;
  }

  /** When a component's first permission decision was made; null for none. */
  firstDecision(component: string): number | null {
    return (this.stmt.firstDecision.get(component) as number | undefined) ?? null;
  }

  /** A series' first point; null for none. */
  firstPoint(seriesId: number): number | null {
    return (this.stmt.firstPoint.get(seriesId) as number | null) ?? null;
  }

  /**
   * When a component first sent anything (a span, an event, a point): where the silence of a sparse
   * signal of it (error events, disconnects) begins to mean something. Null for none.
   */
  firstTelemetry(component: string): number | null {
    const firsts = [
      this.stmt.firstSpan.get(component) as number | null,
      this.stmt.firstEvent.get(component) as number | null,
      this.stmt.firstPointOfComponent.get(component) as number | null,
    ].filter((t): t is number => t !== null);
    return firsts.length ? Math.min(...firsts) : null;
  }

  /** Whether a component sent anything (a span, an event, a point) in [from, to). */
  sentAnything(component: string, from: number, to: number): boolean {
    return (
      this.stmt.firstSpanIn.get(component, from, to) !== undefined ||
      this.stmt.eventIn.get(component, from, to) !== undefined ||
      this.stmt.pointOfComponentIn.get(component, from, to) !== undefined
    );
  }

  /** A component's requests in [from, to), oldest first (ties in stored order). */
  *requests(component: string, from: number, to: number): Steps<Requests> {
    let read = this.requestsRead.get(component);
    const known = read?.find((r) => r.from <= from && to <= r.to);
    if (known) {
      const rows = known.rows;
      const first = lowerBound(rows.start, from);
      const end = lowerBound(rows.start, to);
      if (first === 0 && end === rows.length) return rows;
      const cut = (a: Float64Array) => a.subarray(first, end);
      return { length: end - first, start: cut(rows.start), duration: cut(rows.duration), error: rows.error.subarray(first, end), rowid: cut(rows.rowid) };
    }
    const columns = new Columns();
    for (const [start, end] of slices(from, to)) {
      columns.push(this.stmt.requests.all(component, start, end) as [number, number, number, number][]);
      yield;
    }
    const rows = columns.done();
    if (!read) this.requestsRead.set(component, (read = []));
    read.push({ from, to, rows });
    return rows;
  }

  /** Trace and span ids of a request by rowid; null for one that is gone since it was read (pruned). */
  requestIds(rowid: number): RequestIds | null {
    return (this.stmt.requestIds.get(rowid) as RequestIds | undefined) ?? null;
  }

  errorMessages(component: string, from: number, to: number, limit = 5000): MessageRow[] {
    return (this.stmt.errorMessages.all(component, from, to, limit) as [number, string][]).map(([ts, message]) => ({ ts, message }));
  }

  /** When a component's error events in [from, to) happened, oldest first. */
  errorTimes(component: string, from: number, to: number): number[] {
    return this.stmt.errorTimes.all(component, from, to) as number[];
  }

  /** A component's error events in [from, to). */
  errorCount(component: string, from: number, to: number): number {
    return this.stmt.errorCount.get(component, from, to) as number;
  }

  /** Error events per component in [from, to). */
  errorCounts(from: number, to: number): Map<string, number> {
    const rows = this.stmt.errorCounts.all(from, to) as { component: string; n: number }[];
    return new Map(rows.map((r) => [r.component, r.n]));
  }

  /** Lowest and highest value of a series in [from, to), aggregated inside SQLite. */
  extremes(seriesId: number, from: number, to: number): { min: number; max: number; n: number } | null {
    const row = this.stmt.extremes.get(seriesId, from, to) as { min: number | null; max: number | null; n: number };
    return row.n > 0 ? { min: row.min!, max: row.max!, n: row.n } : null;
  }

  /** The last point of a series in [from, to). */
  lastPoint(seriesId: number, from: number, to: number): { ts: number; value: number } | null {
    return (this.stmt.lastPoint.get(seriesId, from, to) as { ts: number; value: number } | undefined) ?? null;
  }

  /** Points of a series in [from, to), oldest first, as two parallel arrays (as Store.readPoints). */
  *points(seriesId: number, from: number, to: number): Steps<Points> {
    const chunks: [number, number][][] = [];
    let n = 0;
    for (const [start, end] of slices(from, to)) {
      const rows = this.stmt.points.all(seriesId, start, end) as [number, number][];
      chunks.push(rows);
      n += rows.length;
      yield;
    }
    const ts = new Array<number>(n);
    const values = new Array<number>(n);
    let i = 0;
    for (const rows of chunks) {
      for (const row of rows) {
        ts[i] = row[0];
        values[i++] = row[1];
      }
    }
    return { ts, values };
  }

  /** Permission decisions of every component in [from, to), oldest first (ties in stored order). */
  *decisions(from: number, to: number): Steps<DecisionRow[]> {
    const known = this.decisionsRead.find((r) => r.from <= from && to <= r.to);
    if (known) return known.rows.slice(lowerBound(known.times, from), lowerBound(known.times, to));
    const rows: DecisionRow[] = [];
    for (const [start, end] of slices(from, to)) {
      for (const [id, component, ts, denied] of this.stmt.decisions.all(start, end) as [number, string, number, number | null][]) {
        rows.push({ id, component, ts, denied: denied === 1 });
      }
      yield;
    }
    this.decisionsRead.push({ from, to, rows, times: Float64Array.from(rows, (r) => r.ts) });
    return rows;
  }

  /** Who was denied what, per decision (by event id). */
  decisionDetails(id: number): DecisionDetails {
    const row = this.stmt.decisionDetails.get(id) as [string | null, string | null, string | null] | undefined;
    return { principal: row?.[0] ?? null, tool: row?.[1] ?? null, permission: row?.[2] ?? null };
  }

  connections(from: number, to: number): ConnectionRow[] {
    return (this.stmt.connections.all(from, to) as [string, number, string | null, string | null][]).map(
      ([component, ts, state, reason]) => ({ component, ts, state, reason }),
    );
  }
}

/**
 * Every component with rows in `table`, by skipping through its (component, ts) index: one seek
 * per component, where DISTINCT over a week of rows reads every one of them.
 */
function distinctComponents(table: 'spans' | 'events'): string {
  return `WITH RECURSIVE c(name) AS (
            SELECT min(component) FROM ${table}
            UNION ALL SELECT (SELECT min(component) FROM ${table} WHERE component > c.name) FROM c WHERE c.name IS NOT NULL
          ) SELECT name FROM c WHERE name IS NOT NULL`;
}
