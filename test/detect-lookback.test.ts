/**
 * Detection over long lookbacks: a week-long look finds what a short one finds, closes nothing
 * still under way, judges no signal against a baseline that holds none of its data, and says what
 * it could not judge.
 */
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { describe, expect, it } from 'vitest';
import { detectAnomalies, type DetectionResult } from '../src/detect/service.js';
import { EXPECTED_ANOMALY, generateRecords, INCIDENT_TYPES, offsetPlacing } from '../src/generate/index.js';
import type { TelemetryRecord } from '../src/ingest/records.js';
import { seededNormal, seededRandom } from '../src/stats/random.js';
import { AnomalyStore } from '../src/store/anomalies.js';
import { Store } from '../src/store/store.js';
import { CLI, assertBuilt } from './helpers/cli.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir('kiwi-detect-lookback-');
const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const END = Date.UTC(2026, 10, 18, 16, 0);
const LOOKBACKS = { '1h': HOUR, '6h': 6 * HOUR, '1d': DAY, '7d': 7 * DAY } as const;

function openStore(records: Iterable<TelemetryRecord>): Store {
  const store = new Store(join(tempDir(), 'kiwi.db'));
  let batch: TelemetryRecord[] = [];
  for (const record of records) {
    batch.push(record);
    if (batch.length === 20_000) {
      store.writeRecords(batch);
      batch = [];
    }
  }
  store.writeRecords(batch);
  return store;
}

const found = (r: DetectionResult) => r.anomalies.map((a) => `${a.type}|${a.component}`);

/** When a component first sent anything. */
function firstTelemetry(store: Store, component: string): number {
  const first = (sql: string) => (store.db.prepare(sql).pluck().get(component) as number | null) ?? Infinity;
  return Math.min(
    first('SELECT min(start_ts) FROM spans WHERE component = ?'),
    first('SELECT min(ts) FROM events WHERE component = ?'),
    first('SELECT min(p.ts) FROM points p JOIN series s ON s.id = p.series_id WHERE s.component = ?'),
  );
}

function span(component: string, i: number, start: number, duration: number, error = false): TelemetryRecord {
  return { type: 'span', trace_id: `${component}-${i}`, span_id: 's', parent_id: null, name: 'tools/call x', component, start, duration_ms: duration, status: error ? 'error' : 'ok', attrs: {} };
}

function event(ts: number, kind: string, component: string, message: string, attrs: Record<string, unknown> = {}): TelemetryRecord {
  return { type: 'event', ts, kind, component, level: kind === 'error' ? 'error' : 'info', message, attrs };
}

function metric(ts: number, name: string, component: string, value: number): TelemetryRecord {
  return { type: 'metric', ts, name, value, component, labels: {} };
}

describe('a generated week with all five incidents under way at its end', () => {
  it('is found whole at every lookback from 1h to 7d, nothing of it resolved, and no finding judged against an empty baseline', () => {
    const store = openStore(
      generateRecords({ days: 7, seed: 1, end: END, stepMs: 60_000, utcOffsetHours: offsetPlacing(END, 15), incidents: INCIDENT_TYPES.map((type) => ({ type })) }),
    );
    const expected = INCIDENT_TYPES.map((type) => `${EXPECTED_ANOMALY[type].type}|${EXPECTED_ANOMALY[type].component}`);
    // one agent asking again and again, with longer and longer looks, and a short one at the end
    const results: [string, DetectionResult][] = [];
    for (const lookback of ['1h', '6h', '1d', '7d', '1h'] as const) {
      const result = detectAnomalies(store, { now: END, lookbackMs: LOOKBACKS[lookback] });
      expect(found(result), lookback).toEqual(expect.arrayContaining(expected));
      expect(result.resolved.map((a) => `${a.type}|${a.component}`).filter((f) => expected.includes(f)), lookback).toEqual([]);
      results.push([lookback, result]);
    }
    for (const [lookback, result] of results) {
      for (const a of result.anomalies) {
        // memory is judged by its own trend; every other finding names the baseline it was judged against
        if (a.type === 'memory_leak') continue;
        const baseline = a.evidence.baseline_window as { from: string; to: string } | undefined;
        expect(baseline, `${lookback} ${a.type} ${a.component}`).toBeDefined();
        const from = Date.parse(baseline!.from);
        const to = Date.parse(baseline!.to);
        // the component was sending from (about) the start of that baseline on
        expect(firstTelemetry(store, a.component), `${lookback} ${a.type} ${a.component}`).toBeLessThanOrEqual(from + 0.1 * (to - from));
      }
    }
    // the week-long look says that its first six hours had no baseline before them
    const week = detectAnomalies(store, { now: END, lookbackMs: 7 * DAY });
    const unjudged = week.not_judged.filter((n) => n.reason === 'no_baseline' && n.check === 'latency_spike');
    expect(unjudged.map((n) => n.component)).toEqual(expect.arrayContaining(['mcp-search', 'agent-coder']));
    for (const n of unjudged) {
      expect(n.from).toBe(END - 7 * DAY);
      expect(n.to - n.from).toBeGreaterThanOrEqual(6 * HOUR);
      expect(n.to - n.from).toBeLessThan(6 * HOUR + MIN);
    }
    store.close();
  });
});

describe('a signal is judged only against a baseline of its own data', () => {
  const noise = seededNormal(11);
  /** mcp-search serving a request every 20 s for `hours` before END, five times slower over the last 25 minutes. */
  const slowing = (hours: number) => {
    const out: TelemetryRecord[] = [];
    let i = 0;
    for (let ts = END - hours * HOUR; ts < END; ts += 20_000, i++) out.push(span('mcp-search', i, ts, (ts >= END - 25 * MIN ? 1000 : 200) * Math.exp(0.3 * noise())));
    return out;
  };

  it('a component whose data begins inside a week-long window is judged from its first 6 hours on, and the rest is listed as not judged', () => {
    const store = openStore(slowing(10));
    const result = detectAnomalies(store, { now: END, lookbackMs: 7 * DAY });
    expect(found(result)).toEqual(['latency_spike|mcp-search']);
    const anomaly = result.anomalies[0]!;
    expect(Math.abs(anomaly.start_ts - (END - 25 * MIN))).toBeLessThanOrEqual(2 * MIN);
    expect(anomaly.evidence.baseline_window).toEqual({ from: new Date(END - 10 * HOUR).toISOString(), to: new Date(END - 4 * HOUR).toISOString() });
    const latency = result.not_judged.filter((n) => n.check === 'latency_spike');
    expect(latency).toEqual([
      expect.objectContaining({ component: 'mcp-search', reason: 'no_baseline', from: END - 7 * DAY, to: END - 4 * HOUR, signal: 'requests' }),
    ]);
    store.close();
  });

  it('one with less than a baseline of data is not judged at all, says so, and leaves its open anomaly open', () => {
    const store = openStore(slowing(3));
    // an anomaly someone's earlier look recorded on it
    const { anomaly } = new AnomalyStore(store).record({
      fingerprint: 'latency_spike|mcp-search',
      type: 'latency_spike',
      severity: 'warning',
      component: 'mcp-search',
      series_id: null,
      description: 'mcp-search requests take 5x their usual time',
      start_ts: END - 2 * HOUR,
      end_ts: END - 90 * MIN,
      score: 0.7,
      evidence: { factor: 5 },
      suggested_action: null,
    });
    const result = detectAnomalies(store, { now: END, lookbackMs: DAY });
    expect(result.anomalies).toEqual([]);
    expect(result.not_judged.map((n) => [n.check, n.component, n.reason, n.from, n.to])).toEqual([
      ['latency_spike', 'mcp-search', 'no_baseline', END - DAY, END],
      ['error_spike', 'mcp-search', 'no_baseline', END - DAY, END],
    ]);
    expect(result.resolved).toEqual([]);
    expect(result.unconfirmed.map((a) => a.id)).toEqual([anomaly.id]);
    store.close();
  });

  it('detect_anomalies over stdio says in its answer what it could not judge, in words and in its structured content', async () => {
    assertBuilt();
    const dir = tempDir();
    const store = new Store(join(dir, 'kiwi.db'));
    store.writeRecords(slowing(3));
    store.close();
    const client = new Client({ name: 'e2e', version: '1' });
    await client.connect(new StdioClientTransport({ command: process.execPath, args: [CLI, 'serve', '--db', join(dir, 'kiwi.db')], stderr: 'ignore' }));
    try {
      const answer = await client.callTool({ name: 'detect_anomalies', arguments: { at: new Date(END).toISOString(), lookback: '7d' } });
      const body = answer.structuredContent as { anomalies: unknown[]; not_judged: Record<string, unknown>[]; not_judged_total: number };
      expect(body.anomalies).toEqual([]);
      expect(body.not_judged_total).toBe(2);
      expect(body.not_judged[0]).toEqual({
        check: 'latency_spike',
        component: 'mcp-search',
        series_id: null,
        signal: 'requests',
        from: new Date(END - 7 * DAY).toISOString(),
        to: new Date(END).toISOString(),
        reason: 'no_baseline',
        detail: `its data begins at ${new Date(END - 3 * HOUR).toISOString()}, and judging it needs 6 h of it before`,
      });
      const text = (answer.content as { text: string }[])[0]!.text;
      expect(text).toContain('0 anomalies in ');
      expect(text).toContain(
        'not judged 2026-11-11T16:00Z .. 2026-11-18T16:00Z (no baseline of their own before it: their data begins later): latency_spike mcp-search, error_spike mcp-search',
      );
    } finally {
      await client.close();
    }
  });

  it('error events of a component without requests: a week of its usual errors is no spike against a baseline with none', () => {
    const random = seededRandom(12);
    const records: TelemetryRecord[] = [];
    // a worker reporting its memory every minute for two days, and failing a job about every 2 hours
    for (let ts = END - 2 * DAY; ts < END; ts += MIN) {
      records.push(metric(ts, 'process.memory.usage', 'worker', 2 ** 30 + 2 ** 20 * noise()));
      if (random() < 1 / 120) records.push(event(ts, 'error', 'worker', `job ${Math.floor(random() * 1e6)} failed: timeout`));
    }
    const store = openStore(records);
    for (const lookbackMs of [7 * DAY, DAY, 6 * HOUR, HOUR]) {
      expect(found(detectAnomalies(store, { now: END, lookbackMs })), `${lookbackMs / HOUR} h`).toEqual([]);
    }
    store.close();
  });
});

describe('error events of a component without requests over a long lookback', () => {
  it('find a burst of the last half hour in a week of its usual errors, from where it began, and keep it open while it lasts', () => {
    const random = seededRandom(15);
    const noise = seededNormal(15);
    const burst = END - 30 * MIN;
    const records: TelemetryRecord[] = [];
    // a worker reporting its memory every minute for three days, failing a job about every 2 hours, then most jobs
    for (let ts = END - 3 * DAY; ts < END; ts += MIN) {
      records.push(metric(ts, 'process.memory.usage', 'worker', 2 ** 30 + 2 ** 20 * noise()));
      if (random() < (ts >= burst ? 0.7 : 1 / 120)) records.push(event(ts, 'error', 'worker', `job ${Math.floor(random() * 1e6)} failed: disk full`));
    }
    const store = openStore(records);
    const id = detectAnomalies(store, { now: END }).anomalies[0]?.id;
    expect(id).toBeDefined();
    for (const lookbackMs of [DAY, 7 * DAY]) {
      const result = detectAnomalies(store, { now: END, lookbackMs });
      expect(found(result), `${lookbackMs / HOUR} h`).toEqual(['error_spike|worker']);
      expect(result.anomalies[0]!.id).toBe(id);
      expect(Math.abs(result.anomalies[0]!.start_ts - burst), `${lookbackMs / HOUR} h`).toBeLessThanOrEqual(3 * MIN);
      expect(result.anomalies[0]!.description).toMatch(/^worker logged \d+ errors since 15:3\d UTC, against /);
    }
    store.close();
  });
});

describe('memory_leak over a long lookback', () => {
  const GIB = 2 ** 30;
  const MIB = 2 ** 20;
  /** Heap that climbs 60 MiB and is collected every 20 minutes, around `base(ts)`. */
  const sawtooth = (base: (ts: number) => number) => (ts: number) => base(ts) + ((ts % (20 * MIN)) / (20 * MIN)) * 60 * MIB;
  function memory(from: number, to: number, value: (ts: number) => number): TelemetryRecord[] {
    const out: TelemetryRecord[] = [];
    for (let ts = from; ts < to; ts += MIN) out.push(metric(ts, 'process.memory.usage', 'worker', value(ts)));
    return out;
  }
  const leakStart = END - 12 * HOUR;
  /** Flat for six and a half days, then 50 MiB/h from leakStart. */
  const leaking = sawtooth((ts) => GIB + (Math.max(0, ts - leakStart) / HOUR) * 50 * MIB);

  it('judges the trailing segment where the growth is, not a week of flat memory before it', () => {
    const store = openStore(memory(END - 7 * DAY, END, leaking));
    for (const lookbackMs of [HOUR, DAY, 7 * DAY]) {
      const result = detectAnomalies(store, { now: END, lookbackMs });
      expect(found(result), `${lookbackMs / HOUR} h`).toEqual(['memory_leak|worker']);
      expect(result.resolved).toEqual([]);
      const evidence = result.anomalies[0]!.evidence;
      expect((evidence.growth_bytes_per_hour as number) / (50 * MIB), `${lookbackMs / HOUR} h`).toBeGreaterThan(0.9);
      expect((evidence.growth_bytes_per_hour as number) / (50 * MIB), `${lookbackMs / HOUR} h`).toBeLessThan(1.1);
    }
    // the long looks find where it began
    const week = detectAnomalies(store, { now: END, lookbackMs: 7 * DAY }).anomalies[0]!;
    expect(Math.abs(week.start_ts - leakStart)).toBeLessThanOrEqual(2 * HOUR);
    store.close();
  });

  it('a restart frees the memory, not the leak: it stays open until hours of flat memory show it over', () => {
    const restart = END + HOUR;
    const store = openStore([
      ...memory(END - 2 * DAY, restart, leaking),
      // restarted at its usual level; the leak goes on for two hours, then a fix keeps it flat
      ...memory(restart, END + 10 * HOUR, sawtooth((ts) => GIB + (Math.min(ts - restart, 2 * HOUR) / HOUR) * 50 * MIB)),
    ]);
    const id = detectAnomalies(store, { now: END }).anomalies[0]!.id;
    for (const now of [restart + 30 * MIN, restart + 2 * HOUR]) {
      const after = detectAnomalies(store, { now });
      expect(after.resolved, `${(now - restart) / MIN} min after the restart`).toEqual([]);
      expect(after.unconfirmed.map((a) => a.id)).toEqual([id]);
    }
    expect(new AnomalyStore(store).get(id)!.status).toBe('open');
    // seven hours of flat memory after the growth stopped: over
    const healed = detectAnomalies(store, { now: END + 10 * HOUR });
    expect(healed.anomalies).toEqual([]);
    expect(healed.resolved.map((a) => a.id)).toEqual([id]);
    store.close();
  });
});

describe('connection_instability over a long lookback', () => {
  it('finds flapping of the last three hours in a week of a quiet server, from where it began', () => {
    const records: TelemetryRecord[] = [event(END - 7 * DAY, 'connection', 'mcp-github', 'mcp-github connected', { state: 'connected' })];
    // the server answers a request every 10 minutes all week
    for (let ts = END - 7 * DAY, i = 0; ts < END; ts += 10 * MIN, i++) records.push(span('mcp-github', i, ts, 100));
    const onset = END - 3 * HOUR + 5 * MIN;
    for (let ts = onset; ts < END; ts += 15 * MIN) {
      records.push(event(ts, 'connection', 'mcp-github', 'mcp-github disconnected', { state: 'disconnected', reason: 'ECONNRESET' }));
      records.push(event(ts + 30_000, 'connection', 'mcp-github', 'mcp-github connected', { state: 'connected' }));
    }
    const store = openStore(records);
    for (const lookbackMs of [HOUR, DAY, 7 * DAY]) {
      const result = detectAnomalies(store, { now: END, lookbackMs });
      expect(found(result), `${lookbackMs / HOUR} h`).toEqual(['connection_instability|mcp-github']);
      expect(result.anomalies[0]!.start_ts, `${lookbackMs / HOUR} h`).toBe(onset);
    }
    expect(detectAnomalies(store, { now: END, lookbackMs: 7 * DAY }).anomalies[0]!.evidence).toMatchObject({ mtbf_seconds: 900, disconnects_since_onset: 12 });
    store.close();
  });
});

describe('latency and errors over a long lookback', () => {
  it('place the onset of a 20-minute-old incident in a week of requests to the minute, and measure it undiluted', () => {
    const noise = seededNormal(13);
    const random = seededRandom(13);
    const onset = END - 20 * MIN;
    const records: TelemetryRecord[] = [];
    for (let ts = END - 8 * DAY, i = 0; ts < END; ts += 30_000, i++) {
      const during = ts >= onset;
      records.push(span('agent-coder', i, ts, (during ? 1000 : 200) * Math.exp(0.3 * noise()), random() < (during ? 0.3 : 0.01)));
    }
    const store = openStore(records);
    const result = detectAnomalies(store, { now: END, lookbackMs: 7 * DAY });
    expect(found(result).sort()).toEqual(['error_spike|agent-coder', 'latency_spike|agent-coder']);
    const latency = result.anomalies.find((a) => a.type === 'latency_spike')!;
    expect(Math.abs(latency.start_ts - onset)).toBeLessThanOrEqual(2 * MIN);
    expect(latency.evidence.factor).toBeGreaterThan(4);
    const errors = result.anomalies.find((a) => a.type === 'error_spike')!;
    expect(Math.abs(errors.start_ts - onset)).toBeLessThanOrEqual(5 * MIN);
    expect(errors.evidence.error_rate).toBeGreaterThan(0.2);
    store.close();
  });
});

describe('the generic check closes a shift or a spike only once the points since show it over', () => {
  const noise = seededNormal(14);
  it('a level shift is not closed by a week-long look too coarse to see it, nor a spike by three points after it', () => {
    const records: TelemetryRecord[] = [];
    for (let ts = END - 3 * DAY; ts < END + 2 * HOUR; ts += MIN) {
      // queue.depth is 80 instead of 40 for the 40 minutes before END; cache.hits spikes once, 10 minutes before END
      records.push(metric(ts, 'queue.depth', 'svc', (ts >= END - 40 * MIN && ts < END ? 80 : 40) + noise()));
      records.push(metric(ts, 'cache.hits', 'svc', ts === END - 10 * MIN ? 400 : 100 + 2 * noise()));
    }
    const store = openStore(records);
    const live = detectAnomalies(store, { now: END });
    const ids = Object.fromEntries(live.anomalies.map((a) => [a.type, a.id]));
    expect(Object.keys(ids).sort()).toEqual(['level_shift', 'spike']);
    // a week-long look does not see a 40-minute shift (a run must fill a twelfth of it): no evidence it is over
    const week = detectAnomalies(store, { now: END, lookbackMs: 7 * DAY, types: ['level_shift'] });
    expect(week.resolved).toEqual([]);
    expect(week.unconfirmed.map((a) => a.id)).toEqual([ids.level_shift]);
    // three usual points after the spike are too few to call it over
    const soon = detectAnomalies(store, { now: END - 6 * MIN, lookbackMs: 3 * MIN, types: ['spike'] });
    expect(soon.resolved).toEqual([]);
    expect(soon.unconfirmed.map((a) => a.id)).toEqual([ids.spike]);
    // an hour of usual points after both: over
    const later = detectAnomalies(store, { now: END + 70 * MIN });
    expect(later.anomalies).toEqual([]);
    expect(later.resolved.map((a) => a.id).sort()).toEqual([ids.level_shift, ids.spike].sort());
    store.close();
  });
});
