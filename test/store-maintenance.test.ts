/**
 * The store file tracks what it holds: pruning hands freed pages back to the filesystem and
 * empties the write-ahead log, and a store made before Kiwi did so is converted once by a VACUUM.
 * Real SQLite files throughout; the CLI runs as a child process (the build must be current).
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import type { TelemetryRecord } from '../src/ingest/records.js';
import { MIGRATIONS } from '../src/store/migrations.js';
import { Store } from '../src/store/store.js';
import { killedAfterEachTest, runCli, startCli, waitForExit } from './helpers/cli.js';
import { pollUntil } from './helpers/poll.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir();
const children = killedAfterEachTest();
const MINUTE = 60_000;
const DAY = 86_400_000;
const SERIES = 20;
const POINTS = 5_000; // per series, one a second
const EVENTS = 20_000; // four a second

const size = (path: string) => (existsSync(path) ? statSync(path).size : 0);
/** Bytes on disk: the database file and its write-ahead log. */
const onDisk = (db: string) => size(db) + size(`${db}-wal`);
const autoVacuum = (store: Store) => store.db.pragma('auto_vacuum', { simple: true }) as number;
const freePages = (store: Store) => store.db.pragma('freelist_count', { simple: true }) as number;

/** Several MB of points, events and spans from `t0` on: one point a second per series for POINTS seconds. */
function fill(store: Store, t0: number): void {
  let batch: TelemetryRecord[] = [];
  const push = (r: TelemetryRecord) => {
    batch.push(r);
    if (batch.length === 20_000) {
      store.writeRecords(batch);
      batch = [];
    }
  };
  for (let i = 0; i < POINTS; i++) {
    for (let s = 0; s < SERIES; s++) {
      push({ type: 'metric', ts: t0 + i * 1000, name: `m${s}`, component: `c${s % 4}`, value: (i * 7 + s) % 101, labels: {} });
    }
  }
  for (let i = 0; i < EVENTS; i++) {
    push({
      type: 'event',
      ts: t0 + i * 250,
      kind: 'log',
      component: `c${i % 4}`,
      level: i % 10 === 0 ? 'error' : 'info',
      message: `request ${i} finished after some work, with a message as long as a real one`,
      attrs: { trace_id: `t${i}`, n: i },
    });
    if (i % 10 === 0) {
      push({
        type: 'span',
        trace_id: `t${i}`,
        span_id: `s${i}`,
        parent_id: null,
        name: 'tools/call',
        component: `c${i % 4}`,
        start: t0 + i * 250,
        duration_ms: 5 + (i % 50),
        status: 'ok',
        attrs: {},
      });
    }
  }
  store.writeRecords(batch);
}

/** Everything a query would show of the store: kept raw points, per-minute buckets, events, spans. */
function snapshot(store: Store, t0: number, cutoff: number) {
  const end = t0 + POINTS * 1000;
  return store.findSeries({}).series.map((s) => ({
    series: s.name,
    raw: store.readPoints(s.id, cutoff, end),
    // before a prune these come from raw points, after it from roll-ups: the same counts and sums
    minutes: store.queryBuckets(s.id, t0, end, MINUTE).map(({ start, count, sum, min, max }) => ({ start, count, sum, min, max })),
  }));
}

function keptRecords(store: Store, cutoff: number) {
  return {
    events: store.countEvents({ from: cutoff }),
    errors: store.countEvents({ from: cutoff, min_level: 'error' }),
    traced: store.searchEvents({ trace_id: `t${EVENTS - 1}` }, 5).events.length,
    spans: store.listSpans({ from: cutoff }, 100_000).length,
  };
}

/** A store as Kiwi made them before it enabled auto-vacuum: WAL switched on first, then the schema. */
function legacyStore(path: string): void {
  const raw = new Database(path);
  raw.pragma('journal_mode = WAL');
  raw.transaction(() => {
    for (const migration of MIGRATIONS) raw.exec(migration);
    raw.pragma(`user_version = ${MIGRATIONS.length}`);
  })();
  raw.close();
}

describe('pruning a store Kiwi creates', () => {
  it('shrinks the file and its -wal by what the pruned rows held, and keeps the rest queryable', () => {
    const db = join(tempDir(), 'kiwi.db');
    const store = new Store(db);
    const t0 = Date.UTC(2026, 0, 1);
    const cutoff = t0 + POINTS * 900; // the last tenth stays raw
    fill(store, t0);
    const before = onDisk(db);
    expect(before).toBeGreaterThan(5_000_000);
    const expected = snapshot(store, t0, cutoff);
    const expectedRecords = keptRecords(store, cutoff);

    const result = store.prune(cutoff, 0);
    expect(result).toMatchObject({ points_deleted: (SERIES * POINTS * 9) / 10, events_deleted: (EVENTS * 9) / 10, spans_deleted: (EVENTS * 9) / 100 });

    // the file holds about what is left, the log is emptied, and no page stands free
    expect(size(`${db}-wal`)).toBe(0);
    expect(onDisk(db)).toBeLessThan(before * 0.3);
    expect(freePages(store)).toBe(0);
    expect(result.pages_reclaimed).toBeGreaterThan(0);
    expect(result.bytes_freed).toBe(before - onDisk(db));

    // nothing that should remain is lost: kept points as written, older minutes as roll-ups, records after the cut
    expect(snapshot(store, t0, cutoff)).toEqual(expected);
    expect(keptRecords(store, cutoff)).toEqual(expectedRecords);
    expect(expectedRecords.events).toBe(EVENTS / 10);
    expect(store.integrityCheck()).toBe('ok');

    // a prune with nothing to delete changes nothing on disk
    const settled = onDisk(db);
    expect(store.prune(cutoff, 0)).toMatchObject({ points_deleted: 0, pages_reclaimed: 0, bytes_freed: 0 });
    expect(onDisk(db)).toBe(settled);
    store.close();
  });
});

describe('a store made before Kiwi enabled auto-vacuum', () => {
  it('opens and prunes as before, and a vacuum converts it so that later prunes shrink it', () => {
    const db = join(tempDir(), 'kiwi.db');
    legacyStore(db);
    const store = new Store(db);
    expect(autoVacuum(store)).toBe(0); // opening does not (cannot) change it
    const t0 = Date.UTC(2026, 0, 1);
    const cutoff = t0 + POINTS * 900;
    fill(store, t0);
    store.checkpoint();
    const full = size(db);
    const expected = snapshot(store, t0, cutoff);
    const expectedRecords = keptRecords(store, cutoff);

    // pruning works; the pages it frees stay in the file, for reuse only
    expect(store.prune(cutoff, 0)).toMatchObject({ points_deleted: (SERIES * POINTS * 9) / 10, pages_reclaimed: 0 });
    expect(size(db)).toBe(full);
    expect(freePages(store) * 4096).toBeGreaterThan(full * 0.6);
    expect(store.space()).toMatchObject({ auto_vacuum: 'none', free_pages: freePages(store) });

    const vacuumed = store.vacuum();
    expect(vacuumed).toMatchObject({ auto_vacuum_before: 'none', auto_vacuum_after: 'incremental' });
    expect(autoVacuum(store)).toBe(2);
    expect(onDisk(db)).toBeLessThan(full * 0.3);
    expect(vacuumed.bytes_after).toBe(onDisk(db));
    expect(snapshot(store, t0, cutoff)).toEqual(expected);
    expect(keptRecords(store, cutoff)).toEqual(expectedRecords);
    expect(store.integrityCheck()).toBe('ok');

    // converted: the next burst and its prune leave the file about as small as before the burst
    const small = onDisk(db);
    const t1 = t0 + DAY;
    fill(store, t1);
    expect(onDisk(db)).toBeGreaterThan(small + 5_000_000);
    store.prune(t1 + POINTS * 1000, 0);
    expect(onDisk(db)).toBeLessThan(small * 1.5);
    store.close();
  });

  it('is not vacuumed while another connection has it open, and is left as it was', () => {
    const db = join(tempDir(), 'kiwi.db');
    legacyStore(db);
    const store = new Store(db);
    fill(store, Date.UTC(2026, 0, 1));
    store.prune(Date.UTC(2026, 0, 1) + POINTS * 900, 0);
    store.checkpoint();
    const other = new Store(db); // as a running kiwi serve would
    const sizeBefore = size(db);
    expect(() => store.vacuum(100)).toThrow(/another process has .*kiwi\.db open .*stop it and try again/);
    expect(autoVacuum(store)).toBe(0);
    expect(size(db)).toBe(sizeBefore);
    // both connections still read and write: the refusal let go of every lock it took
    other.writeRecords([{ type: 'metric', ts: Date.UTC(2026, 1, 1), name: 'after', component: 'c0', value: 1, labels: {} }]);
    expect(store.findSeries({ name: 'after' }).total).toBe(1);
    store.writeRecords([{ type: 'metric', ts: Date.UTC(2026, 1, 1), name: 'after2', component: 'c0', value: 1, labels: {} }]);
    other.close();
    expect(store.vacuum(100).auto_vacuum_after).toBe('incremental');
    expect(size(db)).toBeLessThan(sizeBefore * 0.3);
    store.close();
  });
});

describe('kiwi prune', () => {
  /** A store whose first POINTS seconds are 40 days old (past the 30-day raw retention) and the rest recent. */
  function agedStore(db: string, legacy: boolean): { old: number; recent: number } {
    if (legacy) legacyStore(db);
    const store = new Store(db);
    const old = Math.floor((Date.now() - 40 * DAY) / MINUTE) * MINUTE; // whole minutes: POINTS seconds roll up into a known count
    const recent = Date.now() - 2 * 3_600_000;
    fill(store, old);
    store.writeRecords(
      Array.from({ length: 600 }, (_, i): TelemetryRecord => ({ type: 'metric', ts: recent + i * 1000, name: 'm0', component: 'c0', value: i, labels: {} })),
    );
    store.close();
    return { old, recent };
  }

  it('reports the rows deleted and the file before and after, and the file on disk is smaller', async () => {
    const db = join(tempDir(), 'kiwi.db');
    const { recent } = agedStore(db, false);
    const before = onDisk(db);
    expect(before).toBeGreaterThan(5_000_000);

    const pruned = await runCli(['prune', '--db', db]);
    expect(pruned.code).toBe(0);
    expect(onDisk(db)).toBeLessThan(before * 0.3);
    expect(pruned.stdout).toMatch(
      new RegExp(`^rolled up ${SERIES * Math.ceil(POINTS / 60)} minutes, deleted ${SERIES * POINTS} points, ${EVENTS} events, ${EVENTS / 10} spans, 0 roll-ups\n` +
        'file: [\\d.]+ MiB -> [\\d.]+ (KiB|MiB) \\(database and -wal\\)\n$'),
    );
    const store = new Store(db);
    const m0 = store.findSeries({ name: 'm0' }).series[0]!;
    expect(store.readPoints(m0.id, recent, Date.now()).values).toEqual(Array.from({ length: 600 }, (_, i) => i));
    store.close();
  });

  it('on a store made before auto-vacuum: says what only a vacuum gives back, and --vacuum converts it', async () => {
    const db = join(tempDir(), 'kiwi.db');
    agedStore(db, true);
    const before = onDisk(db);

    const pruned = await runCli(['prune', '--db', db]);
    expect(pruned.code).toBe(0);
    expect(pruned.stdout).toMatch(/\n[\d.]+ MiB of it holds no data, and only a VACUUM gives it back: .* run kiwi prune --vacuum once/);
    expect(onDisk(db)).toBeGreaterThan(before * 0.6);

    const vacuumed = await runCli(['prune', '--vacuum', '--db', db]);
    expect(vacuumed.code).toBe(0);
    expect(vacuumed.stdout).toMatch(/\nvacuumed: [\d.]+ MiB -> [\d.]+ (KiB|MiB); converted: from now on each prune gives freed space back to the filesystem\n$/);
    expect(onDisk(db)).toBeLessThan(before * 0.3);
    const store = new Store(db);
    expect(autoVacuum(store)).toBe(2);
    expect(store.integrityCheck()).toBe('ok');
    store.close();
  });

  it('--vacuum refuses while kiwi serve has the store open, and works once it has stopped', async () => {
    const db = join(tempDir(), 'kiwi.db');
    agedStore(db, true);
    const serve = startCli(['serve', '--db', db, '--no-self-telemetry'], { KIWI_LOG_LEVEL: 'info' });
    children.push(serve);
    let serveLog = '';
    serve.stderr!.on('data', (d: Buffer) => (serveLog += d.toString()));
    expect(await pollUntil(() => serveLog, (log) => log.includes('MCP over stdio'), { timeoutMs: 15_000 })).toContain('MCP over stdio');

    const refused = await runCli(['prune', '--vacuum', '--db', db]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`kiwi prune: pruned, but not vacuumed: another process has ${db} open (kiwi serve, otlp or ingest?)`);
    const check = new Store(db);
    expect(autoVacuum(check)).toBe(0);
    check.close();

    serve.stdin!.end();
    expect((await waitForExit(serve)).code).toBe(0);
    const vacuumed = await runCli(['prune', '--vacuum', '--db', db]);
    expect(vacuumed.code).toBe(0);
    expect(vacuumed.stdout).toContain('converted');
  });
});
