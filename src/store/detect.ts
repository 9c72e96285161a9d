/** The reads anomaly detection needs: requests, error events, permission decisions, connection changes. */
import type { SqliteDatabase } from './database.js';
import { LIMIT_PARAM } from './sql.js';

export interface RequestRow {
  start: number;
  duration_ms: number;
  error: boolean;
  trace_id: string;
  span_id: string;
}

export interface MessageRow {
  ts: number;
  message: string;
}

export interface DecisionRow {
  component: string;
  ts: number;
  denied: boolean;
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

export class DetectionReads {
  private readonly stmt: ReturnType<DetectionReads['prepare']>;

  constructor(private readonly db: SqliteDatabase) {
    this.stmt = this.prepare();
  }

  private prepare() {
    const db = this.db;
    return {
      componentsWithSpans: db.prepare('SELECT DISTINCT component FROM spans WHERE start_ts >= ? AND start_ts < ?').pluck(),
      requests: db
        .prepare(
          `SELECT start_ts, duration_ms, status = 'error', trace_id, span_id FROM spans
           WHERE component = ? AND start_ts >= ? AND start_ts < ? ORDER BY start_ts`,
        )
        .raw(),
      errorMessages: db
        .prepare(
          `SELECT ts, message FROM events WHERE kind = 'error' AND component = ? AND ts >= ? AND ts < ? ORDER BY ts ${LIMIT_PARAM}`,
        )
        .raw(),
      errorCounts: db.prepare(
        `SELECT component, count(*) AS n FROM events WHERE kind = 'error' AND ts >= ? AND ts < ? GROUP BY component`,
      ),
      decisions: db
        .prepare(
          `SELECT component, ts, json_extract(attrs, '$.decision') = 'deny', json_extract(attrs, '$.principal'),
                  json_extract(attrs, '$.tool'), json_extract(attrs, '$.permission')
           FROM events WHERE kind = 'permission' AND ts >= ? AND ts < ? ORDER BY ts`,
        )
        .raw(),
      extremes: db.prepare('SELECT min(value) AS min, max(value) AS max, count(*) AS n FROM points WHERE series_id = ? AND ts >= ? AND ts < ?'),
      connections: db
        .prepare(
          `SELECT component, ts, json_extract(attrs, '$.state'), json_extract(attrs, '$.reason')
           FROM events WHERE kind = 'connection' AND ts >= ? AND ts < ? ORDER BY ts`,
        )
        .raw(),
    };
  }

  componentsWithRequests(from: number, to: number): string[] {
    return this.stmt.componentsWithSpans.all(from, to) as string[];
  }

  requests(component: string, from: number, to: number): RequestRow[] {
    return (this.stmt.requests.all(component, from, to) as [number, number, number, string, string][]).map(
      ([start, duration_ms, error, trace_id, span_id]) => ({ start, duration_ms, error: error === 1, trace_id, span_id }),
    );
  }

  errorMessages(component: string, from: number, to: number, limit = 5000): MessageRow[] {
    return (this.stmt.errorMessages.all(component, from, to, limit) as [number, string][]).map(([ts, message]) => ({ ts, message }));
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

  decisions(from: number, to: number): DecisionRow[] {
    return (this.stmt.decisions.all(from, to) as [string, number, number | null, string | null, string | null, string | null][]).map(
      ([component, ts, denied, principal, tool, permission]) => ({ component, ts, denied: denied === 1, principal, tool, permission }),
    );
  }

  connections(from: number, to: number): ConnectionRow[] {
    return (this.stmt.connections.all(from, to) as [string, number, string | null, string | null][]).map(
      ([component, ts, state, reason]) => ({ component, ts, state, reason }),
    );
  }
}
