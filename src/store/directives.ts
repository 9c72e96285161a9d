/**
 * SQL for directive runs (with the one-run-per-target lock and idempotency keys, both enforced by
 * unique indexes so processes sharing the file agree).
 */
import type { SqliteDatabase } from './database.js';
import { LIMIT_PARAM } from './sql.js';

export const ACTIVE_RUN_STATUSES = ['awaiting_approval', 'approved', 'running'] as const;
export const RUN_STATUSES = [
  'planned',
  'denied',
  'awaiting_approval',
  'approved',
  'running',
  'succeeded',
  'failed',
  'rolled_back',
  'rejected',
  'expired',
] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

export interface DirectiveRunRow {
  id: string;
  directive: string;
  version: string | null;
  mode: 'plan' | 'execute';
  status: RunStatus;
  target: string;
  inputs: Record<string, unknown>;
  plan: unknown;
  steps: unknown[];
  requested_by: string | null;
  approved_by: string | null;
  error: string | null;
  idempotency_key: string | null;
  created_at: number;
  updated_at: number;
  expires_at: number | null;
  finished_at: number | null;
}

interface RawRun extends Omit<DirectiveRunRow, 'inputs' | 'plan' | 'steps'> {
  inputs: string;
  plan: string | null;
  steps: string;
  owner?: string | null;
  undo?: string;
}

/** A run in status running: which process runs it and the undo of what it applied (JSON, newest last). */
export interface RunningRun {
  id: string;
  directive: string;
  owner: string | null;
  requested_by: string | null;
  updated_at: number;
  undo: unknown[];
}

/**
 * The id of the row that holds a nested directive's target lock for run `parent`: `<parent>.<n>`
 * (run ids are UUIDs, which hold no dot). It is a run of the nested directive, in the same table,
 * so the one unique index is the lock for nested and top-level runs alike.
 */
export function nestedRunId(parent: string, n: number): string {
  return `${parent}.${n}`;
}

/** The run a nested directive's lock row belongs to, or null for a run of its own. */
export function parentRunId(id: string): string | null {
  const dot = id.lastIndexOf('.');
  return dot > 0 ? id.slice(0, dot) : null;
}

/** A SQLite unique-index violation: another run holds the lock, or the idempotency key is taken. */
export function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE';
}

// owner and undo are the engine's bookkeeping, not part of a run as it is shown
const fromRaw = ({ owner: _owner, undo: _undo, ...r }: RawRun): DirectiveRunRow => ({
  ...r,
  inputs: JSON.parse(r.inputs) as Record<string, unknown>,
  plan: r.plan === null ? null : (JSON.parse(r.plan) as unknown),
  steps: JSON.parse(r.steps) as unknown[],
});

export class DirectiveRunStore {
  private readonly stmt;

  constructor(private readonly db: SqliteDatabase) {
    this.stmt = {
      insert: db.prepare(
        `INSERT INTO directive_runs (id, directive, version, mode, status, target, inputs, plan, steps, requested_by,
           approved_by, error, idempotency_key, created_at, updated_at, expires_at, finished_at)
         VALUES (@id, @directive, @version, @mode, @status, @target, @inputs, @plan, @steps, @requested_by,
           @approved_by, @error, @idempotency_key, @created_at, @updated_at, @expires_at, @finished_at)`,
      ),
      get: db.prepare('SELECT * FROM directive_runs WHERE id = ?'),
      byKey: db.prepare('SELECT * FROM directive_runs WHERE directive = ? AND idempotency_key = ?'),
      active: db.prepare(
        `SELECT * FROM directive_runs WHERE directive = ? AND target = ?
         AND status IN (${ACTIVE_RUN_STATUSES.map(() => '?').join(', ')})`,
      ),
      countSince: db
        .prepare("SELECT count(*) FROM directive_runs WHERE directive = ? AND mode = 'execute' AND created_at >= ?")
        .pluck(),
      expire: db.prepare(
        `UPDATE directive_runs SET status = 'expired', updated_at = ?, finished_at = ?, error = 'approval expired'
         WHERE status = 'awaiting_approval' AND expires_at IS NOT NULL AND expires_at <= ? RETURNING id, directive, requested_by`,
      ),
      transition: db.prepare(
        `UPDATE directive_runs SET status = @to, updated_at = @now, approved_by = coalesce(@approved_by, approved_by),
           error = coalesce(@error, error), finished_at = @finished_at
         WHERE id = @id AND status = @from`,
      ),
      claim: db.prepare("UPDATE directive_runs SET owner = @owner, updated_at = @now WHERE id = @id AND status = 'running'"),
      takeOver: db.prepare(
        "UPDATE directive_runs SET owner = @to, updated_at = @now WHERE id = @id AND status = 'running' AND owner IS @from AND updated_at = @seen",
      ),
      saveUndo: db.prepare("UPDATE directive_runs SET undo = @undo, updated_at = @now WHERE id = @id AND status = 'running' AND owner = @owner"),
      touch: db.prepare("UPDATE directive_runs SET updated_at = @now WHERE id = @id AND status = 'running' AND owner = @owner"),
      running: db.prepare("SELECT id, directive, owner, requested_by, updated_at, undo FROM directive_runs WHERE status = 'running'"),
      save: db.prepare(
        `UPDATE directive_runs SET status = @status, steps = @steps, plan = coalesce(@plan, plan), error = @error,
           updated_at = @now, finished_at = @finished_at WHERE id = @id`,
      ),
      saveOwned: db.prepare(
        `UPDATE directive_runs SET status = @status, steps = @steps, plan = coalesce(@plan, plan), error = @error,
           updated_at = @now, finished_at = @finished_at WHERE id = @id AND status = 'running' AND owner = @owner`,
      ),
    };
  }

  insert(run: DirectiveRunRow): void {
    this.stmt.insert.run({
      ...run,
      inputs: JSON.stringify(run.inputs),
      plan: run.plan === null ? null : JSON.stringify(run.plan),
      steps: JSON.stringify(run.steps),
    });
  }

  get(id: string): DirectiveRunRow | null {
    const row = this.stmt.get.get(id) as RawRun | undefined;
    return row ? fromRaw(row) : null;
  }

  byIdempotencyKey(directive: string, key: string): DirectiveRunRow | null {
    const row = this.stmt.byKey.get(directive, key) as RawRun | undefined;
    return row ? fromRaw(row) : null;
  }

  activeFor(directive: string, target: string): DirectiveRunRow | null {
    const row = this.stmt.active.get(directive, target, ...ACTIVE_RUN_STATUSES) as RawRun | undefined;
    return row ? fromRaw(row) : null;
  }

  executionsSince(directive: string, since: number): number {
    return this.stmt.countSince.get(directive, since) as number;
  }

  /** Marks undecided runs past their deadline as expired; returns them. */
  expireDue(now: number): { id: string; directive: string; requested_by: string | null }[] {
    return this.stmt.expire.all(now, now, now) as { id: string; directive: string; requested_by: string | null }[];
  }

  /** Marks a running run as run by `owner` (a process). */
  claim(id: string, owner: string, now: number): void {
    this.stmt.claim.run({ id, owner, now });
  }

  /** Takes over a running run whose owner stopped; false when another process moved first. */
  takeOver(run: RunningRun, to: string, now: number): boolean {
    return this.stmt.takeOver.run({ id: run.id, from: run.owner, to, now, seen: run.updated_at }).changes === 1;
  }

  /**
   * Keeps the undo of every change the run has applied so far, so another process can undo them if
   * this one stops. False when `owner` no longer runs it (another process took it over, or closed it).
   */
  saveUndo(id: string, undo: readonly unknown[], now: number, owner: string): boolean {
    return this.stmt.saveUndo.run({ id, undo: JSON.stringify(undo), now, owner }).changes === 1;
  }

  running(): RunningRun[] {
    return (this.stmt.running.all() as (Omit<RunningRun, 'undo'> & { undo: string })[]).map((r) => ({ ...r, undo: JSON.parse(r.undo) as unknown[] }));
  }

  /** Moves a run from one status to another; false when it was not in `from` (someone else decided first). */
  transition(id: string, from: RunStatus, to: RunStatus, now: number, extra: { approved_by?: string; error?: string; finished?: boolean } = {}): boolean {
    return (
      this.stmt.transition.run({
        id,
        from,
        to,
        now,
        approved_by: extra.approved_by ?? null,
        error: extra.error ?? null,
        finished_at: extra.finished ? now : null,
      }).changes === 1
    );
  }

  /** Marks a running run alive (its heartbeat); false when `owner` no longer runs it. */
  touch(id: string, owner: string, now: number): boolean {
    return this.stmt.touch.run({ id, owner, now }).changes === 1;
  }

  /**
   * Saves a run's progress or outcome. With `owner`, only while that process still runs it: false
   * when another process took it over (and closed it), which the old owner must not overwrite.
   */
  save(id: string, update: { status: RunStatus; steps: unknown[]; plan?: unknown; error: string | null; finished: boolean }, now: number, owner?: string): boolean {
    const statement = owner === undefined ? this.stmt.save : this.stmt.saveOwned;
    return statement.run({
      ...(owner === undefined ? {} : { owner }),
      id,
      status: update.status,
      steps: JSON.stringify(update.steps),
      plan: update.plan === undefined ? null : JSON.stringify(update.plan),
      error: update.error,
      now,
      finished_at: update.finished ? now : null,
    }).changes === 1;
  }

  list(filter: { directive?: string; status?: string }, limit: number, beforeCreated = Number.MAX_SAFE_INTEGER): DirectiveRunRow[] {
    const where: string[] = ['created_at < ?'];
    const params: unknown[] = [beforeCreated];
    if (filter.directive !== undefined) {
      where.push('directive = ?');
      params.push(filter.directive);
    }
    if (filter.status !== undefined) {
      where.push('status = ?');
      params.push(filter.status);
    }
    const rows = this.db
      .prepare(`SELECT * FROM directive_runs WHERE ${where.join(' AND ')} ORDER BY created_at DESC, id DESC ${LIMIT_PARAM}`)
      .all(...params, limit) as RawRun[];
    return rows.map(fromRaw);
  }
}
