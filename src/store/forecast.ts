/** The reads forecasting needs that the Store does not offer: request samples, connection history, span coverage. */
import type { SqliteDatabase } from './database.js';

export interface SpanSamples {
  /** Start times (epoch ms), oldest first. */
  start: number[];
  durationMs: number[];
  /** 1 where the span's status is error. */
  error: Uint8Array;
}

/** Every span of a component in [from, to): start, duration and whether it failed, oldest first. */
export function spanSamples(db: SqliteDatabase, component: string, from: number, to: number): SpanSamples {
  const rows = db
    .prepare('SELECT start_ts, duration_ms, status = \'error\' FROM spans WHERE component = ? AND start_ts >= ? AND start_ts < ? ORDER BY start_ts')
    .raw()
    .all(component, from, to) as [number, number, number][];
  const start = new Array<number>(rows.length);
  const durationMs = new Array<number>(rows.length);
  const error = new Uint8Array(rows.length);
  rows.forEach(([s, d, e], i) => {
    start[i] = s;
    durationMs[i] = d;
    error[i] = e;
  });
  return { start, durationMs, error };
}

export interface SpanCoverage {
  component: string;
  count: number;
  first: number;
  last: number;
}

/** Components that have spans, with how many and over what span of time. */
export function spanCoverage(db: SqliteDatabase, component?: string): SpanCoverage[] {
  const where = component === undefined ? '' : 'WHERE component = ?';
  return db
    .prepare(`SELECT component, count(*) AS count, min(start_ts) AS first, max(start_ts) AS last FROM spans ${where} GROUP BY component ORDER BY component`)
    .all(...(component === undefined ? [] : [component])) as SpanCoverage[];
}

/** Requests and failed requests of a component in [from, to). */
export function requestCounts(db: SqliteDatabase, component: string, from: number, to: number): { requests: number; errors: number } {
  const row = db
    .prepare(
      "SELECT count(*) AS requests, coalesce(sum(status = 'error'), 0) AS errors FROM spans WHERE component = ? AND start_ts >= ? AND start_ts < ?",
    )
    .get(component, from, to) as { requests: number; errors: number };
  return row;
}

export interface ConnectionChange {
  ts: number;
  /** `connected` or `disconnected` (attrs.state of a `connection` event). */
  state: string;
}

/** A component's connection events in [from, to), oldest first; events without a known state are left out. */
export function connectionChanges(db: SqliteDatabase, component: string, from: number, to: number): ConnectionChange[] {
  return db
    .prepare(
      `SELECT ts, json_extract(attrs, '$.state') AS state FROM events
       WHERE kind = 'connection' AND component = ? AND ts >= ? AND ts < ? AND json_extract(attrs, '$.state') IN ('connected', 'disconnected')
       ORDER BY ts, id`,
    )
    .all(component, from, to) as ConnectionChange[];
}

/** The latest connection event of a component before `before` with a known state. */
export function connectionStateBefore(db: SqliteDatabase, component: string, before: number): ConnectionChange | null {
  return (
    (db
      .prepare(
        `SELECT ts, json_extract(attrs, '$.state') AS state FROM events
         WHERE kind = 'connection' AND component = ? AND ts < ? AND json_extract(attrs, '$.state') IN ('connected', 'disconnected')
         ORDER BY ts DESC, id DESC LIMIT 1`,
      )
      .get(component, before) as ConnectionChange | undefined) ?? null
  );
}

/** Components that have reported connection events, with the time of their latest one. */
export function connectionComponents(db: SqliteDatabase): { component: string; last: number }[] {
  return db
    .prepare("SELECT component, max(ts) AS last FROM events WHERE kind = 'connection' GROUP BY component ORDER BY component")
    .all() as { component: string; last: number }[];
}
