/**
 * Metric units end to end below the MCP layer: a unit per series in the store (first sight, a
 * later different unit, no unit, a write that fails), a store made before units, Kiwi's own
 * series, and root-cause analysis reading the stored unit before guessing one from the name.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { analyzeRootCause } from '../src/explain/analyze.js';
import { formatValue } from '../src/explain/strength.js';
import type { TelemetryRecord } from '../src/ingest/records.js';
import { SELF_COMPONENT, SELF_METRICS, SelfTelemetry } from '../src/ingest/self.js';
import { schemaVersion } from '../src/store/database.js';
import { MIGRATIONS } from '../src/store/migrations.js';
import { Store } from '../src/store/store.js';
import { runCli } from './helpers/cli.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir('kiwi-units-');
const T0 = Date.UTC(2026, 0, 1);
const MINUTE = 60_000;

function metric(ts: number, value: number, unit?: string, name = 'http.server.request.duration', component = 'api'): TelemetryRecord {
  return { type: 'metric', ts, name, value, component, labels: {}, ...(unit === undefined ? {} : { unit }) };
}

const unitOf = (store: Store, name: string, component = 'api') => store.findSeries({ name, component }).series[0]?.unit;

describe('the unit of a series', () => {
  it('is set at first sight, kept by points without one, and replaced by a later different one', () => {
    const store = new Store(join(tempDir(), 'kiwi.db'));
    store.writeRecords([metric(T0, 1, 'ms')]);
    expect(unitOf(store, 'http.server.request.duration')).toBe('ms');
    store.writeRecords([metric(T0 + 1, 2)]);
    expect(unitOf(store, 'http.server.request.duration')).toBe('ms');
    store.writeRecords([metric(T0 + 2, 0.003, 's')]);
    expect(unitOf(store, 'http.server.request.duration')).toBe('s');
    // the last one sent wins, whatever the points' own times; stored values are not converted
    store.writeRecords([metric(T0 - MINUTE, 4, 'ms')]);
    expect(unitOf(store, 'http.server.request.duration')).toBe('ms');
    expect(store.readPoints(store.findSeries({ name: 'http.server.request.duration' }).series[0]!.id, 0, 2e12).values).toEqual([4, 1, 2, 0.003]);

    store.writeRecords([metric(T0, 5, undefined, 'queue.depth')]);
    expect(unitOf(store, 'queue.depth')).toBeNull();
    const listed = store.listSeries({ component: 'api' }, 10, 0).series.map((s) => [s.name, s.unit]);
    expect(listed).toEqual([
      ['http.server.request.duration', 'ms'],
      ['queue.depth', null],
    ]);
    store.close();

    // a second process sees what the first stored, and its own change lands
    const reopened = new Store(store.path);
    expect(unitOf(reopened, 'http.server.request.duration')).toBe('ms');
    reopened.writeRecords([metric(T0 + 3, 1, 'us')]);
    expect(unitOf(reopened, 'http.server.request.duration')).toBe('us');
    reopened.close();
  });

  it('is the last one sent when two processes write the series by turns', () => {
    const path = join(tempDir(), 'kiwi.db');
    const serve = new Store(path);
    const ingest = new Store(path);
    serve.writeRecords([metric(T0, 1, 'ms')]);
    ingest.writeRecords([metric(T0 + 1, 0.002, 's')]);
    expect(unitOf(serve, 'http.server.request.duration')).toBe('s');
    // the unit serve sent before is sent again after the other's: it is the last one sent
    serve.writeRecords([metric(T0 + 2, 3, 'ms')]);
    expect(unitOf(ingest, 'http.server.request.duration')).toBe('ms');
    serve.close();
    ingest.close();
  });

  it('rolls back with a write that fails: neither a series nor a unit of it is remembered', () => {
    const store = new Store(join(tempDir(), 'kiwi.db'));
    store.writeRecords([metric(T0, 1, 's')]);
    store.db.exec("CREATE TEMP TRIGGER refuse BEFORE INSERT ON points WHEN NEW.value = 666 BEGIN SELECT RAISE(ABORT, 'refused'); END");
    expect(() => store.writeRecords([metric(T0 + 1, 1, 'ms'), metric(T0, 1, undefined, 'new.series'), metric(T0 + 2, 666)])).toThrow(/refused/);
    expect(unitOf(store, 'http.server.request.duration')).toBe('s');
    expect(store.findSeries({ name: 'new.series' }).total).toBe(0);
    store.db.exec('DROP TRIGGER refuse');
    // sent again, both land: the failed write left nothing behind in what the store remembers
    store.writeRecords([metric(T0 + 1, 1, 'ms'), metric(T0, 1, undefined, 'new.series')]);
    expect(unitOf(store, 'http.server.request.duration')).toBe('ms');
    const created = store.findSeries({ name: 'new.series' }).series;
    expect(created).toHaveLength(1);
    expect(store.readPoints(created[0]!.id, 0, 2e12).values).toEqual([1]);
    store.close();
  });
});

describe('a store made before units', () => {
  it('migrates, keeps its series and points, and gives them a null unit until one is sent', () => {
    const path = join(tempDir(), 'old.db');
    const old = new Database(path);
    const beforeUnits = MIGRATIONS.findIndex((sql) => sql.includes('ADD COLUMN unit'));
    expect(beforeUnits).toBeGreaterThan(0);
    for (const sql of MIGRATIONS.slice(0, beforeUnits)) old.exec(sql);
    old.pragma(`user_version = ${beforeUnits}`);
    old.prepare("INSERT INTO series (id, name, component, labels) VALUES (7, 'process.memory.usage', 'worker', '{\"host\":\"a\"}')").run();
    const insert = old.prepare('INSERT INTO points (series_id, ts, value) VALUES (7, ?, ?)');
    for (let i = 0; i < 3; i++) insert.run(T0 + i * MINUTE, 100 + i);
    old.close();

    const store = new Store(path);
    expect(schemaVersion(store.db)).toBe(MIGRATIONS.length);
    const [series] = store.listSeries({}, 10, 0).series;
    expect(series).toMatchObject({ id: 7, name: 'process.memory.usage', component: 'worker', labels: { host: 'a' }, unit: null, last_value: 102 });
    expect(store.readPoints(7, 0, 2e12).values).toEqual([100, 101, 102]);
    store.writeRecords([{ type: 'metric', ts: T0 + 3 * MINUTE, name: 'process.memory.usage', value: 103, component: 'worker', labels: { host: 'a' }, unit: 'By' }]);
    expect(store.findSeries({}).series).toMatchObject([{ id: 7, unit: 'By' }]);
    store.close();
  });
});

describe("Kiwi's own series", () => {
  it('carry their units: seconds for durations and delays, bytes for memory and the store, 1 for error counts', () => {
    const store = new Store(join(tempDir(), 'kiwi.db'));
    const telemetry = new SelfTelemetry(store, 60_000, 0);
    telemetry.recordOperation({ method: 'tools/call', tool: 'list_series', start: Date.now(), durationMs: 3, outcome: 'error', errorType: 'tool_error' });
    telemetry.sample();
    telemetry.stop();
    const units = Object.fromEntries(store.findSeries({ component: SELF_COMPONENT }).series.map((s) => [s.name, s.unit]));
    expect(units).toMatchObject({
      [SELF_METRICS.operationDuration]: 's',
      [SELF_METRICS.operationErrors]: '1',
      [SELF_METRICS.memoryRss]: 'By',
      [SELF_METRICS.heapUsed]: 'By',
      [SELF_METRICS.storeSize]: 'By',
    });
    for (const name of [SELF_METRICS.eventLoopDelayMean, SELF_METRICS.eventLoopDelayP99]) if (name in units) expect(units[name]).toBe('s');
    store.close();
  });
});

describe('root-cause analysis', () => {
  it('reads the stored unit, and guesses from the name only for a series stored without one', () => {
    const store = new Store(join(tempDir(), 'kiwi.db'));
    const start = T0 + 24 * 60 * MINUTE;
    const records: TelemetryRecord[] = [];
    // A duration in milliseconds (the name alone would say seconds), and a memory series sent without a unit.
    for (let ts = T0; ts < start + 30 * MINUTE; ts += MINUTE) {
      const inWindow = ts >= start;
      const wobble = (ts / MINUTE) % 3;
      records.push(metric(ts, (inWindow ? 900 : 100) + wobble, 'ms', 'checkout.request.duration', 'checkout'));
      records.push(metric(ts, (inWindow ? 900e6 : 100e6) + wobble * 1e6, undefined, 'process.memory.usage', 'worker'));
    }
    store.writeRecords(records);
    const analysis = analyzeRootCause(store, { start, end: start + 30 * MINUTE });
    const deviation = (component: string) => analysis.candidates.find((c) => c.component === component)?.evidence.deviation;
    expect(deviation('checkout')).toMatchObject({ signal: 'checkout.request.duration', direction: 'up', unit: 'ms' });
    expect(analysis.candidates.find((c) => c.component === 'checkout')!.evidence.summary).toMatch(/rose from 101 ms to \d+ ms/);
    expect(deviation('worker')).toMatchObject({ signal: 'process.memory.usage', unit: 'By' });
    store.close();
  });

  it('writes values in their UCUM units', () => {
    expect(formatValue(1536, 'By')).toBe('1.5 KiB');
    expect(formatValue(12.5, 'ms')).toBe('12.5 ms');
    expect(formatValue(45, '%')).toBe('45%');
    expect(formatValue(0.25, '1')).toBe('0.25');
    expect(formatValue(3, '{request}/s')).toBe('3 request/s');
    expect(formatValue(3, null)).toBe('3');
  });
});

describe('kiwi ingest', () => {
  it('stores the unit of a file\'s metrics, and names the file and line of a bad unit', async () => {
    const dir = tempDir();
    const file = join(dir, 'latency.jsonl');
    const line = (ts: number, value: number, unit?: unknown) =>
      JSON.stringify({ type: 'metric', ts, name: 'http.server.request.duration', value, component: 'api', ...(unit === undefined ? {} : { unit }) });
    writeFileSync(file, [line(T0, 120, 'ms'), line(T0 + 1000, 130), line(T0 + 2000, 140, 'milli seconds'), line(T0 + 3000, 150, 42)].join('\n') + '\n');
    const db = join(dir, 'kiwi.db');
    const result = await runCli(['ingest', file, '--db', db]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${file}:3: unit: must be printable ASCII without spaces, a UCUM unit such as ms, s, By, 1 or {request}`);
    expect(result.stderr).toContain(`${file}:4: unit: must be a string such as "ms", "By" or "{request}"`);
    const store = new Store(db);
    expect(store.findSeries({ name: 'http.server.request.duration' }).series).toMatchObject([{ component: 'api', unit: 'ms' }]);
    store.close();
  });
});
