/**
 * Stored anomalies. An anomaly is identified by its fingerprint (type, component and what it is
 * about, e.g. a series) and its onset: while it stays open, later detections update the same
 * record instead of adding another, and its id never changes. Once closed (resolved, or marked a
 * false positive) it is never made active by detection: a finding that holds it again is it, and
 * one abnormal after it was closed is a new anomaly naming it (`evidence.recurrence_of`).
 */
import { createHash } from 'node:crypto';
import type { SqliteDatabase } from './database.js';
import { Conditions, placeholders, LIMIT_PARAM, OFFSET_PARAM } from './sql.js';
import type { Store } from './store.js';

export const ANOMALY_STATUSES = ['open', 'acknowledged', 'resolved', 'false_positive'] as const;
export type AnomalyStatus = (typeof ANOMALY_STATUSES)[number];
export const SEVERITIES = ['info', 'warning', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

export interface Anomaly {
  id: string;
  fingerprint: string;
  type: string;
  severity: Severity;
  status: AnomalyStatus;
  component: string;
  series_id: number | null;
  description: string;
  /** Onset, epoch ms. */
  start_ts: number;
  /** When it was last seen, epoch ms. */
  end_ts: number | null;
  score: number;
  evidence: Record<string, unknown>;
  suggested_action: string | null;
  note: string | null;
  created_at: number;
  updated_at: number;
}

/** What a check reports; the store decides whether it is new or an update of an open one. */
export type AnomalyFinding = Pick<
  Anomaly,
  'fingerprint' | 'type' | 'severity' | 'component' | 'series_id' | 'description' | 'start_ts' | 'end_ts' | 'score' | 'evidence' | 'suggested_action'
>;

export interface AnomalyFilter {
  statuses?: AnomalyStatus[];
  component?: string;
  types?: string[];
  /** Anomalies last seen at or after this time. */
  since?: number;
}

type Row = Omit<Anomaly, 'evidence' | 'severity' | 'status'> & { evidence: string; severity: string; status: string };

const SEVERITY_RANK: Record<Severity, number> = { info: 0, warning: 1, critical: 2 };

function fromRow(row: Row): Anomaly {
  return { ...row, severity: row.severity as Severity, status: row.status as AnomalyStatus, evidence: JSON.parse(row.evidence) as Record<string, unknown> };
}

export function anomalyId(fingerprint: string, start: number, occurrence = 1): string {
  const key = occurrence === 1 ? `${fingerprint}\u0000${start}` : `${fingerprint}\u0000${start}\u0000${occurrence}`;
  return `an_${createHash('sha1').update(key).digest('hex').slice(0, 12)}`;
}

/** Re-activating a closed anomaly while another one on the same signal is active (it would make two). */
export class AnomalyConflictError extends Error {
  constructor(
    readonly anomaly: Anomaly,
    readonly active: Anomaly,
    status: AnomalyStatus,
  ) {
    super(
      `cannot ${status === 'open' ? 'reopen' : 'acknowledge'} ${anomaly.id} (${anomaly.status}): ${active.id} is already ${active.status} ` +
        `on the same signal (${active.type} on ${active.component}); act on ${active.id} instead`,
    );
  }
}

const ACTIVE: readonly AnomalyStatus[] = ['open', 'acknowledged'];

/** The evidence field of an anomaly that recurs after a closed one: which one, its status, and when it was closed. */
export const RECURRENCE_OF = 'recurrence_of';

/**
 * When a closed anomaly was closed: its last change (detection stamps its own with the time of the
 * data it judged, a person's is the clock), and never before it was last seen.
 */
export function closedAt(anomaly: Anomaly): number {
  return Math.max(anomaly.updated_at, anomaly.end_ts ?? anomaly.start_ts);
}

export class AnomalyStore {
  private readonly db: SqliteDatabase;
  private readonly stmt: ReturnType<AnomalyStore['prepare']>;

  constructor(private readonly store: Store) {
    this.db = store.db;
    this.stmt = this.prepare();
  }

  private prepare() {
    return {
      get: this.db.prepare('SELECT * FROM anomalies WHERE id = ?'),
      ongoing: this.db.prepare(
        "SELECT * FROM anomalies WHERE fingerprint = ? AND status IN ('open', 'acknowledged') ORDER BY start_ts DESC LIMIT 1",
      ),
      insert: this.db.prepare(
        `INSERT INTO anomalies (id, fingerprint, type, severity, status, component, series_id, description, start_ts, end_ts,
                                score, evidence, suggested_action, note, created_at, updated_at)
         VALUES (@id, @fingerprint, @type, @severity, 'open', @component, @series_id, @description, @start_ts, @end_ts,
                 @score, @evidence, @suggested_action, NULL, @now, @now)`,
      ),
      refresh: this.db.prepare(
        `UPDATE anomalies SET severity = @severity, description = @description, start_ts = @start_ts, end_ts = @end_ts, score = @score,
                              evidence = @evidence, suggested_action = @suggested_action, updated_at = @now
         WHERE id = @id`,
      ),
      otherActive: this.db.prepare(
        "SELECT * FROM anomalies WHERE fingerprint = ? AND id != ? AND status IN ('open', 'acknowledged') ORDER BY start_ts DESC LIMIT 1",
      ),
      widenOnset: this.db.prepare('UPDATE anomalies SET start_ts = @start_ts, updated_at = @now WHERE id = @id'),
      setStatus: this.db.prepare('UPDATE anomalies SET status = ?, note = ?, updated_at = ? WHERE id = ?'),
      closedOverlapping: this.db.prepare(
        `SELECT * FROM anomalies WHERE fingerprint = @fingerprint AND status IN ('resolved', 'false_positive')
           AND start_ts <= @end AND coalesce(end_ts, start_ts) >= @start
         ORDER BY updated_at DESC, id LIMIT 1`,
      ),
      falsePositives: this.db.prepare(
        `SELECT * FROM anomalies WHERE status = 'false_positive' AND fingerprint = ? ORDER BY updated_at DESC ${LIMIT_PARAM}`,
      ),
    };
  }

  /**
   * Records a finding: an open anomaly with the same fingerprint is updated (its id kept, its onset
   * moved only earlier, severity never lowered while it lasts); otherwise a new one is opened.
   *
   * A finding that ends before the anomaly was last seen comes from a look at the past (a window
   * ending earlier): it does not replace the newer description, evidence, severity, score or
   * suggested action, and its end is not the anomaly's. It only moves the onset earlier, when it
   * saw the anomaly earlier and its span reaches the stored one (so it is the same episode); one
   * that ended before the stored onset may have healed in between, and leaves the record as it is.
   */
  record(finding: AnomalyFinding, now: number = Date.now()): { anomaly: Anomaly; created: boolean } {
    return this.store.inTransaction(() => {
      const current = this.stmt.ongoing.get(finding.fingerprint) as Row | undefined;
      const evidence = JSON.stringify(finding.evidence);
      if (current) {
        const currentEnd = current.end_ts ?? current.start_ts;
        const findingEnd = finding.end_ts ?? finding.start_ts;
        if (findingEnd < currentEnd) {
          if (finding.start_ts < current.start_ts && findingEnd >= current.start_ts) {
            this.stmt.widenOnset.run({ id: current.id, start_ts: finding.start_ts, now });
          }
          return { anomaly: this.get(current.id)!, created: false };
        }
        // a recurrence keeps naming the closed anomaly it follows
        const link = current.evidence.includes(`"${RECURRENCE_OF}"`) ? (JSON.parse(current.evidence) as Record<string, unknown>)[RECURRENCE_OF] : undefined;
        const refreshed = link !== undefined && !(RECURRENCE_OF in finding.evidence) ? JSON.stringify({ ...finding.evidence, [RECURRENCE_OF]: link }) : evidence;
        const severity =
          SEVERITY_RANK[finding.severity] >= SEVERITY_RANK[current.severity as Severity] ? finding.severity : (current.severity as Severity);
        this.stmt.refresh.run({
          id: current.id,
          severity,
          description: finding.description,
          start_ts: Math.min(finding.start_ts, current.start_ts),
          end_ts: findingEnd,
          score: Math.max(finding.score, current.score),
          evidence: refreshed,
          suggested_action: finding.suggested_action,
          now,
        });
        return { anomaly: this.get(current.id)!, created: false };
      }
      // A closed anomaly with the same onset keeps its id (and its false-positive mark): take the next one.
      let id = anomalyId(finding.fingerprint, finding.start_ts);
      for (let n = 2; this.stmt.get.get(id); n++) id = anomalyId(finding.fingerprint, finding.start_ts, n);
      this.stmt.insert.run({ ...finding, id, evidence, now });
      return { anomaly: this.get(id)!, created: true };
    });
  }

  /** Whether an anomaly with this fingerprint is open or acknowledged: what detection updates. */
  hasActive(fingerprint: string): boolean {
    return this.stmt.ongoing.get(fingerprint) !== undefined;
  }

  /**
   * The closed anomaly (resolved or false positive) with this fingerprint whose span, from onset to
   * last seen, overlaps [start, end]: a finding there is that incident seen again. The last closed
   * when several do.
   */
  closedOverlapping(fingerprint: string, start: number, end: number): Anomaly | null {
    const row = this.stmt.closedOverlapping.get({ fingerprint, start, end }) as Row | undefined;
    return row ? fromRow(row) : null;
  }

  get(id: string): Anomaly | null {
    const row = this.stmt.get.get(id) as Row | undefined;
    return row ? fromRow(row) : null;
  }

  list(filter: AnomalyFilter, limit: number, offset = 0): { anomalies: Anomaly[]; total: number } {
    const where = new Conditions();
    if (filter.statuses?.length) where.add(`status IN (${placeholders(filter.statuses.length)})`, ...filter.statuses);
    if (filter.types?.length) where.add(`type IN (${placeholders(filter.types.length)})`, ...filter.types);
    if (filter.component !== undefined) where.add('component = ?', filter.component);
    if (filter.since !== undefined) where.add('coalesce(end_ts, start_ts) >= ?', filter.since);
    const total = this.db.prepare(`SELECT count(*) FROM anomalies ${where.clause()}`).pluck().get(...where.params) as number;
    const rows = this.db
      .prepare(`SELECT * FROM anomalies ${where.clause()} ORDER BY coalesce(end_ts, start_ts) DESC, id ${LIMIT_PARAM} ${OFFSET_PARAM}`)
      .all(...where.params, limit, offset) as Row[];
    return { anomalies: rows.map(fromRow), total };
  }

  /**
   * Acknowledges, resolves, reopens or marks a false positive; audited. `note` undefined keeps the
   * current note, null clears it; `auditDetails` are added to the audit entry (e.g. a run id).
   *
   * At most one anomaly per fingerprint is active (open or acknowledged): detection updates that
   * one. Re-activating a resolved or false-positive anomaly while another with its fingerprint is
   * active throws an AnomalyConflictError naming the active one. Any anomaly may be closed.
   *
   * `at` is when the change takes effect, its `updated_at` (what `closedAt` reads): the clock for a
   * person, the end of the window it judged for detection. The audit entry has the clock.
   */
  setStatus(
    id: string,
    status: AnomalyStatus,
    actor: string,
    note?: string | null,
    auditDetails: Record<string, unknown> = {},
    at: number = Date.now(),
  ): Anomaly {
    return this.store.inTransaction(() => {
      const before = this.get(id);
      if (!before) throw new Error(`id: no anomaly "${id}"`);
      const now = Date.now();
      if (ACTIVE.includes(status) && !ACTIVE.includes(before.status)) {
        const active = this.stmt.otherActive.get(before.fingerprint, id) as Row | undefined;
        if (active) throw new AnomalyConflictError(before, fromRow(active), status);
      }
      const nextNote = note === undefined ? before.note : note;
      this.stmt.setStatus.run(status, nextNote, at, id);
      this.store.appendAudit({
        ts: now,
        actor,
        action: 'anomaly.update',
        target: id,
        details: { ...auditDetails, from: before.status, to: status, note: nextNote },
      });
      return this.get(id)!;
    });
  }

  /** Past anomalies with this fingerprint that a person marked as false positives, newest first. */
  falsePositives(fingerprint: string, limit = 20): Anomaly[] {
    return (this.stmt.falsePositives.all(fingerprint, limit) as Row[]).map(fromRow);
  }
}
