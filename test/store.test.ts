import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import type { TelemetryRecord } from '../src/ingest/records.js';
import { pruneByRetention, readSetting, writeSetting } from '../src/settings.js';
import { openDatabase, schemaVersion } from '../src/store/database.js';
import { MIGRATIONS } from '../src/store/migrations.js';
import { Store } from '../src/store/store.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir();
const T0 = Date.UTC(2026, 0, 1);
const MINUTE = 60_000;

function metric(ts: number, value: number, name = 'latency', component = 'api', labels: Record<string, string> = {}): TelemetryRecord {
  return { type: 'metric', ts, name, value, component, labels };
}

function openStore(): Store {
  return new Store(join(tempDir(), 'nested', 'dir', 'kiwi.db'));
}

describe('database', () => {
  it('creates the file and its folders, in WAL mode, at the latest schema version', () => {
    const path = join(tempDir(), 'a', 'b', 'kiwi.db');
    const store = new Store(path);
    expect(store.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(schemaVersion(store.db)).toBe(MIGRATIONS.length);
    store.close();
    // reopening does not migrate again or lose anything
    const again = new Store(path);
    expect(schemaVersion(again.db)).toBe(MIGRATIONS.length);
    again.close();
  });

  it('refuses a database from a newer Kiwi', () => {
    const path = join(tempDir(), 'kiwi.db');
    const raw = new Database(path);
    raw.pragma(`user_version = ${MIGRATIONS.length + 1}`);
    raw.close();
    expect(() => openDatabase(path)).toThrow(/newer than this Kiwi understands/);
  });
});

describe('points and buckets', () => {
  it('buckets raw points with count, avg, min, max, percentiles and rate', () => {
    const store = openStore();
    const records: TelemetryRecord[] = [];
    // minute 0: values 1..10 ; minute 1: values 100, 200
    for (let i = 1; i <= 10; i++) records.push(metric(T0 + i * 1000, i));
    records.push(metric(T0 + MINUTE + 1000, 100), metric(T0 + MINUTE + 2000, 200));
    store.writeRecords(records);
    const id = store.findSeries({ name: 'latency' }).series[0]!.id;
    const [first, second, ...rest] = store.queryBuckets(id, T0, T0 + 10 * MINUTE, MINUTE);
    expect(rest).toEqual([]);
    expect(first).toMatchObject({ start: T0, count: 10, sum: 55, avg: 5.5, min: 1, max: 10, p50: 5.5 });
    expect(first!.p95).toBeCloseTo(9.55, 10);
    expect(first!.p99).toBeCloseTo(9.91, 10);
    expect(first!.rate).toBeCloseTo(55 / 60, 10);
    expect(second).toMatchObject({ start: T0 + MINUTE, count: 2, avg: 150, p50: 150 });
    // the range end is exclusive
    expect(store.queryBuckets(id, T0, T0 + MINUTE, MINUTE)).toHaveLength(1);
    store.close();
  });

  it('keeps one value per series and millisecond (a re-sent point replaces, never duplicates)', () => {
    const store = openStore();
    store.writeRecords([metric(T0, 1), metric(T0, 2), metric(T0 + 1, 3)]);
    store.writeRecords([metric(T0, 5)]);
    const id = store.findSeries({}).series[0]!.id;
    expect(store.readPoints(id, T0, T0 + 10)).toEqual({ ts: [T0, T0 + 1], values: [5, 3] });
    store.close();
  });

  it('tells series apart by name, component and labels, and filters by each', () => {
    const store = openStore();
    store.writeRecords([
      metric(T0, 1, 'process.memory.usage', 'worker'),
      metric(T0, 1, 'process.memory.usage', 'api'),
      metric(T0, 1, 'process.cpu.utilization', 'api'),
      metric(T0, 1, 'gen_ai.client.token.usage', 'agent', { 'gen_ai.token.type': 'input' }),
      metric(T0, 1, 'gen_ai.client.token.usage', 'agent', { 'gen_ai.token.type': 'output' }),
    ]);
    expect(store.findSeries({}).total).toBe(5);
    expect(store.findSeries({ name_prefix: 'process.' }).total).toBe(3);
    expect(store.findSeries({ name_prefix: 'process_' }).total).toBe(0); // _ is literal, not a wildcard
    expect(store.findSeries({ component: 'api' }).total).toBe(2);
    expect(store.findSeries({ labels: { 'gen_ai.token.type': 'output' } }).series.map((s) => s.labels)).toEqual([
      { 'gen_ai.token.type': 'output' },
    ]);
    const page = store.findSeries({}, 2, 4);
    expect(page.series).toHaveLength(1);
    const worker = store.findSeries({ component: 'worker' }).series[0]!;
    expect(store.describeSeries(worker)).toMatchObject({ first_ts: T0, last_ts: T0, last_value: 1 });
    // listSeries: the same pages and count in one statement, each series described as describeSeries does
    for (const [filter, limit, offset] of [[{}, 2, 0], [{}, 2, 4], [{ name_prefix: 'process.' }, 10, 1], [{ component: 'api' }, 1, 1]] as const) {
      const expected = store.findSeries(filter, limit, offset);
      expect(store.listSeries(filter, limit, offset)).toEqual({ series: expected.series.map((s) => store.describeSeries(s)), total: expected.total });
    }
    expect(store.listSeries({ component: 'api' }, 5, 10)).toEqual({ series: [], total: 2 }); // past the end: still the count
    store.close();
  });

  it('rolls old points up by minute on prune, and queries read the roll-ups', () => {
    const store = openStore();
    const records: TelemetryRecord[] = [];
    for (let i = 0; i < 6; i++) records.push(metric(T0 + i * 20_000, i)); // 0..5 over two minutes
    records.push(metric(T0 + 10 * MINUTE, 99));
    records.push({ type: 'event', ts: T0, kind: 'log', component: 'api', level: 'info', message: 'old', attrs: {} });
    records.push({ type: 'event', ts: T0 + 10 * MINUTE, kind: 'log', component: 'api', level: 'info', message: 'new', attrs: {} });
    store.writeRecords(records);
    const id = store.findSeries({}).series[0]!.id;
    const before = store.queryBuckets(id, T0, T0 + 20 * MINUTE, 5 * MINUTE);

    const result = store.prune(T0 + 5 * MINUTE, 0);
    expect(result).toMatchObject({ points_deleted: 6, points_rolled_up: 2, events_deleted: 1, components_forgotten: 0 });
    expect(store.readPoints(id, T0, T0 + 5 * MINUTE).ts).toEqual([]);
    const after = store.queryBuckets(id, T0, T0 + 20 * MINUTE, 5 * MINUTE);
    expect(after.map(({ start, count, sum, min, max }) => ({ start, count, sum, min, max }))).toEqual(
      before.map(({ start, count, sum, min, max }) => ({ start, count, sum, min, max })),
    );
    expect(after[0]!.p50).toBeNull(); // percentiles need raw points
    expect(after[1]!.p50).toBe(99);
    expect(store.describeSeries(store.findSeries({}).series[0]!).first_ts).toBe(T0);
    // pruning again does not count the same minutes twice
    store.prune(T0 + 5 * MINUTE, 0);
    expect(store.queryBuckets(id, T0, T0 + 5 * MINUTE, 5 * MINUTE)[0]!.count).toBe(6);
    // roll-ups past their own retention go too
    expect(store.prune(T0 + 5 * MINUTE, T0 + 5 * MINUTE).rollups_deleted).toBe(2);
    // a series whose raw points are all pruned still has a last value: its last minute's average
    store.writeRecords([metric(T0, 4, 'old.only'), metric(T0 + 30_000, 6, 'old.only')]);
    store.prune(T0 + 5 * MINUTE, 0);
    expect(store.describeSeries(store.findSeries({ name: 'old.only' }).series[0]!)).toMatchObject({ first_ts: T0, last_ts: T0, last_value: 5 });
    expect(store.listSeries({ name: 'old.only' }, 1, 0).series[0]).toMatchObject({ first_ts: T0, last_ts: T0, last_value: 5 });

    store.close();
  });

  it('applies the retention settings', () => {
    const store = openStore();
    const now = T0 + 40 * 86_400_000;
    store.writeRecords([metric(T0, 1), metric(now - 1000, 2)]);
    store.writeRecords([metric(T0, 1, 'gone', 'retired-component')]);
    expect(pruneByRetention(store, now)).toMatchObject({ points_deleted: 2, components_forgotten: 1 }); // default 30 days
    expect(store.listComponents().map((c) => c.name)).toEqual(['api']);
    writeSetting(store, 'retention.raw_days', 0.5, 'test');
    store.writeRecords([metric(now - 86_400_000, 3)]);
    expect(pruneByRetention(store, now).points_deleted).toBe(1);
    store.close();
  });
});

describe('events', () => {
  function seedEvents(store: Store, n: number) {
    const records: TelemetryRecord[] = [];
    for (let i = 0; i < n; i++) {
      records.push({
        type: 'event',
        ts: T0 + Math.floor(i / 2) * 1000, // two events per timestamp, to exercise the cursor's tie-break
        kind: i % 3 === 0 ? 'error' : 'log',
        component: i % 2 ? 'api' : 'worker',
        level: i % 3 === 0 ? 'error' : 'info',
        message: `message ${i} 100%_done`,
        attrs: { i },
      });
    }
    store.writeRecords(records);
  }

  it('pages newest first with a cursor, without gaps or repeats', () => {
    const store = openStore();
    seedEvents(store, 25);
    const seen: number[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = store.searchEvents({}, 7, cursor);
      seen.push(...page.events.map((e) => e.attrs.i as number));
      cursor = page.next_cursor ?? undefined;
      pages++;
    } while (cursor);
    expect(pages).toBe(4);
    expect([...seen].sort((a, b) => a - b)).toEqual([...Array(25).keys()]);
    expect(new Set(seen).size).toBe(25);
    expect(() => store.searchEvents({}, 5, 'garbage!')).toThrow(/cursor/);
    store.close();
  });

  it('filters by kind, component, level, text and time', () => {
    const store = openStore();
    seedEvents(store, 30);
    expect(store.searchEvents({ kinds: ['error'] }, 100).events).toHaveLength(10);
    expect(store.searchEvents({ component: 'api' }, 100).events).toHaveLength(15);
    expect(store.searchEvents({ min_level: 'warn' }, 100).events.every((e) => e.level === 'error')).toBe(true);
    expect(store.searchEvents({ text: 'MESSAGE 1' }, 100).events).toHaveLength(11); // 1, 10..19
    expect(store.searchEvents({ text: '%_' }, 100).events).toHaveLength(30); // literal, not wildcards
    expect(store.searchEvents({ text: 'x%' }, 100).events).toHaveLength(0);
    expect(store.searchEvents({ from: T0 + 5000, to: T0 + 6000 }, 100).events).toHaveLength(2);
    expect(() => store.searchEvents({ min_level: 'loud' }, 1)).toThrow(/min_level/);
    expect(store.countEvents({ kinds: ['log'], attr: { key: 'i', value: '4' } })).toBe(0); // numbers are not strings
    store.close();
  });

  it('stores an identical event once (re-ingesting after a crash duplicates nothing)', () => {
    const store = openStore();
    const event: TelemetryRecord = { type: 'event', ts: T0, kind: 'deploy', component: 'api', level: 'info', message: 'v2', attrs: { v: 2 } };
    store.writeRecords([event, event]);
    store.writeRecords([event, { ...event, attrs: { v: 3 } }]);
    expect(store.searchEvents({}, 10).events.map((e) => e.attrs.v)).toEqual([3, 2]);
    store.close();
  });
});

describe('spans, components, audit and settings', () => {
  it('summarises requests per component', () => {
    const store = openStore();
    const spans: TelemetryRecord[] = [10, 20, 30, 40, 1000].map((d, i) => ({
      type: 'span',
      trace_id: `t${i}`,
      span_id: 's',
      parent_id: null,
      name: 'tools/call x',
      component: 'mcp-a',
      start: T0 + i * 1000,
      duration_ms: d,
      status: i === 4 ? 'error' : 'ok',
      attrs: {},
    }));
    store.writeRecords(spans);
    expect(store.requestStats('mcp-a', T0, T0 + MINUTE)).toMatchObject({ count: 5, errors: 1, error_rate: 0.2, p50_ms: 30 });
    expect(store.requestStats('mcp-a', T0 + 10 * MINUTE, T0 + 11 * MINUTE)).toMatchObject({ count: 0, p95_ms: null });
    expect(store.listComponents()).toEqual([{ name: 'mcp-a', first_seen: T0, last_seen: T0 + 4000 }]);
    expect(store.listSpans({ trace_id: 't4' }, 10)[0]).toMatchObject({ status: 'error', duration_ms: 1000 });
    store.close();
  });

  it('keeps the audit trail append-only', () => {
    const store = openStore();
    const id = store.appendAudit({ actor: 'test', action: 'thing.done', target: 'x', details: { a: 1 } });
    expect(store.listAudit(10)).toMatchObject([{ id, actor: 'test', action: 'thing.done', details: { a: 1 } }]);
    expect(() => store.db.prepare('UPDATE audit SET actor = ?').run('mallory')).toThrow(/append-only/);
    expect(() => store.db.prepare('DELETE FROM audit').run()).toThrow(/append-only/);
    store.close();
  });

  it('changes settings with history and audit, validating known keys', () => {
    const store = openStore();
    expect(readSetting(store, 'retention.raw_days')).toBe(30);
    writeSetting(store, 'retention.raw_days', 7, 'alice', 'disk is small');
    writeSetting(store, 'retention.raw_days', 14, 'bob');
    expect(readSetting(store, 'retention.raw_days')).toBe(14);
    expect(() => writeSetting(store, 'retention.raw_days', -1, 'eve')).toThrow(/retention.raw_days/);
    expect(() => writeSetting(store, 'no.such.key', 1, 'eve')).toThrow(/unknown setting/);
    writeSetting(store, 'retention.raw_days', undefined, 'carol'); // back to the default
    expect(readSetting(store, 'retention.raw_days')).toBe(30);
    expect(store.settingHistory('retention.raw_days').map((h) => [h.old_value, h.new_value, h.actor])).toEqual([
      [14, null, 'carol'],
      [7, 14, 'bob'],
      [null, 7, 'alice'],
    ]);
    expect(store.listAudit(10).filter((a) => a.action === 'settings.change')).toHaveLength(3);
    store.close();
  });

  it('lets two connections to one file write and read concurrently', () => {
    const path = join(tempDir(), 'shared.db');
    const a = new Store(path);
    const b = new Store(path);
    a.writeRecords([metric(T0, 1)]);
    b.writeRecords([metric(T0 + 1, 2)]);
    const id = a.findSeries({}).series[0]!.id;
    expect(b.readPoints(id, T0, T0 + 10).values).toEqual([1, 2]);
    expect(a.integrityCheck()).toBe('ok');
    a.close();
    b.close();
  });
});
