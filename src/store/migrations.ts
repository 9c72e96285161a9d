/**
 * Schema migrations, applied in order; `PRAGMA user_version` records how many have run.
 * Append new migrations; never edit one that has shipped.
 */
export const MIGRATIONS: readonly string[] = [
  /* 1: the telemetry store */ `
  CREATE TABLE series (
    id        INTEGER PRIMARY KEY,
    name      TEXT NOT NULL,
    component TEXT NOT NULL,
    labels    TEXT NOT NULL,            -- canonical JSON object, keys sorted
    UNIQUE (name, component, labels)
  );

  CREATE TABLE points (
    series_id INTEGER NOT NULL,
    ts        INTEGER NOT NULL,         -- epoch milliseconds
    value     REAL NOT NULL,
    PRIMARY KEY (series_id, ts)
  ) WITHOUT ROWID;

  -- 1-minute roll-ups of raw points older than the raw retention
  CREATE TABLE rollups_1m (
    series_id INTEGER NOT NULL,
    ts        INTEGER NOT NULL,         -- start of the minute
    count     INTEGER NOT NULL,
    sum       REAL NOT NULL,
    min       REAL NOT NULL,
    max       REAL NOT NULL,
    PRIMARY KEY (series_id, ts)
  ) WITHOUT ROWID;

  CREATE TABLE events (
    id        INTEGER PRIMARY KEY,
    ts        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    component TEXT NOT NULL,
    level     TEXT NOT NULL,
    message   TEXT NOT NULL,
    attrs     TEXT NOT NULL DEFAULT '{}',
    -- hash of all the fields: ingesting the same event twice (a re-run after a crash) stores it once
    fingerprint INTEGER NOT NULL UNIQUE
  );
  CREATE INDEX events_by_ts ON events (ts);
  CREATE INDEX events_by_kind ON events (kind, ts);
  CREATE INDEX events_by_component ON events (component, ts);

  CREATE TABLE spans (
    trace_id    TEXT NOT NULL,
    span_id     TEXT NOT NULL,
    parent_id   TEXT,
    name        TEXT NOT NULL,
    component   TEXT NOT NULL,
    start_ts    INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    status      TEXT NOT NULL,
    attrs       TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (trace_id, span_id)
  );
  CREATE INDEX spans_by_start ON spans (start_ts);
  CREATE INDEX spans_by_component ON spans (component, start_ts);

  CREATE TABLE components (
    name       TEXT PRIMARY KEY,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL
  );

  CREATE TABLE anomalies (
    id               TEXT PRIMARY KEY,
    fingerprint      TEXT NOT NULL,    -- type + component + series: an ongoing anomaly is updated, not duplicated
    type             TEXT NOT NULL,
    severity         TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'open',
    component        TEXT NOT NULL,
    series_id        INTEGER,
    description      TEXT NOT NULL,
    start_ts         INTEGER NOT NULL,
    end_ts           INTEGER,
    score            REAL NOT NULL,
    evidence         TEXT NOT NULL DEFAULT '{}',
    suggested_action TEXT,
    note             TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
  );
  CREATE INDEX anomalies_by_status ON anomalies (status, updated_at);
  CREATE INDEX anomalies_by_fingerprint ON anomalies (fingerprint, status);

  CREATE TABLE directive_runs (
    id           TEXT PRIMARY KEY,
    directive    TEXT NOT NULL,
    version      TEXT,
    mode         TEXT NOT NULL,
    status       TEXT NOT NULL,
    inputs       TEXT NOT NULL DEFAULT '{}',
    plan         TEXT,
    steps        TEXT NOT NULL DEFAULT '[]',
    requested_by TEXT,
    approved_by  TEXT,
    error        TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
  );
  CREATE INDEX directive_runs_by_created ON directive_runs (created_at);

  CREATE TABLE audit (
    id      INTEGER PRIMARY KEY,
    ts      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT,
    details TEXT NOT NULL DEFAULT '{}'
  );
  CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
  CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;

  CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,           -- JSON
    updated_at INTEGER NOT NULL,
    updated_by TEXT NOT NULL
  );
  CREATE TABLE settings_history (
    id        INTEGER PRIMARY KEY,
    key       TEXT NOT NULL,
    old_value TEXT,                     -- JSON, NULL when the key had its default
    new_value TEXT,                     -- JSON, NULL when reset to the default
    ts        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    reason    TEXT
  );
  CREATE INDEX settings_history_by_key ON settings_history (key, ts);
  `,

  /* 2: directive runs: target lock, idempotency keys, approval expiry, nested runs */ `
  ALTER TABLE directive_runs ADD COLUMN target TEXT NOT NULL DEFAULT '';
  ALTER TABLE directive_runs ADD COLUMN idempotency_key TEXT;
  ALTER TABLE directive_runs ADD COLUMN expires_at INTEGER;
  ALTER TABLE directive_runs ADD COLUMN finished_at INTEGER;
  -- one run per (directive, target) at a time: the lock is this index, so two processes sharing the file agree
  CREATE UNIQUE INDEX directive_runs_active_target ON directive_runs (directive, target)
    WHERE status IN ('awaiting_approval', 'approved', 'running');
  CREATE UNIQUE INDEX directive_runs_idempotency ON directive_runs (directive, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
  CREATE INDEX directive_runs_by_directive ON directive_runs (directive, created_at);
  CREATE INDEX directive_runs_by_status ON directive_runs (status, expires_at);
  `,

  /* 3: interrupted runs: which process runs a run, and the undo of each change it applied so far */ `
  ALTER TABLE directive_runs ADD COLUMN owner TEXT;
  ALTER TABLE directive_runs ADD COLUMN undo TEXT NOT NULL DEFAULT '[]';
  `,

  /* 4: the unit of each series (UCUM, as OTLP sends it: ms, s, By, 1, {request}); NULL when none was sent */ `
  ALTER TABLE series ADD COLUMN unit TEXT;
  `,
];
