import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { detectAnomalies, type DetectionResult } from '../src/detect/service.js';
import type { TelemetryRecord } from '../src/ingest/records.js';
import { seededNormal, seededRandom } from '../src/stats/random.js';
import { AnomalyStore } from '../src/store/anomalies.js';
import { Store } from '../src/store/store.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir();
const MIN = 60_000;
const HOUR = 60 * MIN;
/** Every synthetic store ends here; detection judges the hour before. */
const END = Date.UTC(2026, 2, 10, 15, 0);

function openStore(records: TelemetryRecord[]): Store {
  const store = new Store(join(tempDir(), 'kiwi.db'));
  for (let i = 0; i < records.length; i += 50_000) store.writeRecords(records.slice(i, i + 50_000));
  return store;
}

const found = (r: DetectionResult) => r.anomalies.map((a) => `${a.type}|${a.component}`);

/** Requests of one component every `everyMs` over `hours`, with a duration and an outcome. */
function requests(
  component: string,
  hours: number,
  everyMs: number,
  shape: (ts: number, i: number) => { duration: number; error: boolean },
): TelemetryRecord[] {
  const out: TelemetryRecord[] = [];
  let i = 0;
  for (let ts = END - hours * HOUR; ts < END; ts += everyMs, i++) {
    const { duration, error } = shape(ts, i);
    out.push({ type: 'span', trace_id: `${component}-${i}`, span_id: 's', parent_id: null, name: 'tools/call x', component, start: ts, duration_ms: duration, status: error ? 'error' : 'ok', attrs: {} });
  }
  return out;
}

function points(name: string, component: string, hours: number, everyMs: number, value: (ts: number, i: number) => number | null): TelemetryRecord[] {
  const out: TelemetryRecord[] = [];
  let i = 0;
  for (let ts = END - hours * HOUR; ts < END; ts += everyMs, i++) {
    const v = value(ts, i);
    if (v !== null) out.push({ type: 'metric', ts, name, value: v, component, labels: {} });
  }
  return out;
}

function event(ts: number, kind: string, component: string, message: string, attrs: Record<string, unknown> = {}): TelemetryRecord {
  return { type: 'event', ts, kind, component, level: kind === 'error' ? 'error' : 'info', message, attrs };
}

describe('latency_spike', () => {
  const noise = seededNormal(1);
  const lognormal = (median: number) => median * Math.exp(0.3 * noise());

  it('fires on a component whose requests slow down, naming the onset and the slow requests', () => {
    const onset = END - 25 * MIN;
    const store = openStore(requests('mcp-search', 8, 10_000, (ts) => ({ duration: lognormal(ts >= onset ? 900 : 200), error: false })));
    const result = detectAnomalies(store, { now: END });
    expect(found(result)).toEqual(['latency_spike|mcp-search']);
    const anomaly = result.anomalies[0]!;
    expect(Math.abs(anomaly.start_ts - onset)).toBeLessThanOrEqual(2 * MIN);
    expect(anomaly.evidence.factor).toBeGreaterThan(3.5);
    expect((anomaly.evidence.affected_requests as { trace_id: string }[]).length).toBe(10);
    // no MCP connection of mcp-search is stored, so there is no server timeout to raise (test/suggestions.test.ts has one)
    expect(anomaly.suggested_action).toBeNull();
    store.close();
  });

  it('stays quiet on steady noisy latency, and on a component with too little history', () => {
    const store = openStore([
      ...requests('steady', 8, 10_000, () => ({ duration: lognormal(200), error: false })),
      ...requests('newcomer', 0.5, 30_000, (_, i) => ({ duration: i > 40 ? 2000 : 100, error: false })),
    ]);
    expect(found(detectAnomalies(store, { now: END }))).toEqual([]);
    store.close();
  });
});

describe('error_spike', () => {
  it('fires when a new error appears and the error rate passes 10% (critical), with its signature', () => {
    const random = seededRandom(2);
    const onset = END - 30 * MIN;
    const records = requests('agent-coder', 8, 20_000, (ts) => ({ duration: 100, error: random() < (ts >= onset ? 0.3 : 0.01) }));
    for (const r of records) {
      if (r.type !== 'span' || r.status !== 'error') continue;
      const message = r.start >= onset ? `TypeError: reading 'hunks' in apply_patch for PR #${Math.floor(random() * 9000) + 1000}` : `upstream 502 for request ${Math.floor(random() * 1e6)}`;
      records.push(event(r.start, 'error', 'agent-coder', message, { trace_id: r.trace_id }));
    }
    const store = openStore(records);
    const result = detectAnomalies(store, { now: END });
    expect(found(result)).toEqual(['error_spike|agent-coder']);
    const anomaly = result.anomalies[0]!;
    expect(anomaly.severity).toBe('critical');
    expect(anomaly.evidence.error_rate).toBeGreaterThan(0.15);
    const signatures = anomaly.evidence.signatures as { template: string; new: boolean; count: number }[];
    expect(signatures[0]).toMatchObject({ template: "TypeError: reading 'hunks' in apply_patch for PR #<num>", new: true });
    store.close();
  });

  it('stays quiet on low-traffic noise: one failure among a dozen requests', () => {
    const store = openStore(requests('quiet-agent', 8, 5 * MIN, (_, i) => ({ duration: 100, error: i % 80 === 95 % 80 })));
    expect(found(detectAnomalies(store, { now: END }))).toEqual([]);
    store.close();
  });

  it('counts error events of a component that serves no requests', () => {
    const random = seededRandom(3);
    const records: TelemetryRecord[] = [];
    for (let ts = END - 8 * HOUR; ts < END; ts += MIN) {
      if (random() < (ts >= END - 30 * MIN ? 0.8 : 0.02)) records.push(event(ts, 'error', 'worker', `job ${Math.floor(random() * 1e6)} failed: disk full`));
    }
    const store = openStore(records);
    const result = detectAnomalies(store, { now: END });
    expect(found(result)).toEqual(['error_spike|worker']);
    expect(result.anomalies[0]!.evidence.signatures).toEqual([expect.objectContaining({ template: 'job <num> failed: disk full', new: false })]);
    store.close();
  });
});

describe('permission_spike', () => {
  function decisions(deny: (ts: number, principal: string) => boolean): TelemetryRecord[] {
    const out: TelemetryRecord[] = [];
    let i = 0;
    for (let ts = END - 8 * HOUR; ts < END; ts += 15_000, i++) {
      const principal = ['agent-a', 'agent-b', 'agent-c'][i % 3]!;
      const denied = deny(ts, principal);
      out.push(event(ts, 'permission', 'policy', `${denied ? 'deny' : 'allow'} write:repo for ${principal}`, { decision: denied ? 'deny' : 'allow', principal, tool: 'create_pull_request', permission: 'write:repo' }));
    }
    return out;
  }

  it('fires on a burst of denials and names the pattern', () => {
    const random = seededRandom(4);
    const store = openStore(decisions((ts, principal) => (ts >= END - 20 * MIN && principal === 'agent-b' ? random() < 0.9 : random() < 0.002)));
    const result = detectAnomalies(store, { now: END });
    expect(found(result)).toEqual(['permission_spike|policy']);
    expect((result.anomalies[0]!.evidence.patterns as { principal: string }[])[0]).toMatchObject({ principal: 'agent-b', tool: 'create_pull_request', permission: 'write:repo' });
    expect(result.anomalies[0]!.evidence.factor).toBeGreaterThan(10);
    store.close();
  });

  it('stays quiet on the usual trickle of denials', () => {
    const random = seededRandom(5);
    const store = openStore(decisions(() => random() < 0.01));
    expect(found(detectAnomalies(store, { now: END }))).toEqual([]);
    store.close();
  });
});

describe('memory_leak', () => {
  const GIB = 2 ** 30;
  /** Heap that climbs 60 MiB and is collected every 20 minutes, around `base(ts)`. */
  const sawtooth = (base: (ts: number) => number) => (ts: number) => base(ts) + ((ts % (20 * MIN)) / (20 * MIN)) * 60 * 2 ** 20;

  it('fires on steady growth under a GC sawtooth, with its rate per hour', () => {
    const leakStart = END - 10 * HOUR;
    const store = openStore(points('process.memory.usage', 'worker', 12, MIN, sawtooth((ts) => GIB + Math.max(0, ts - leakStart) / HOUR * 40 * 2 ** 20)));
    const result = detectAnomalies(store, { now: END });
    expect(found(result)).toEqual(['memory_leak|worker']);
    const growth = result.anomalies[0]!.evidence.growth_bytes_per_hour as number;
    expect(growth / (40 * 2 ** 20)).toBeGreaterThan(0.9);
    expect(growth / (40 * 2 ** 20)).toBeLessThan(1.1);
    store.close();
  });

  it('stays quiet on a sawtooth, one outlier, a single jump, and a restart', () => {
    const store = openStore([
      ...points('process.memory.usage', 'flat', 12, MIN, sawtooth(() => GIB)),
      ...points('process.memory.usage', 'outlier', 12, MIN, (ts) => (ts === END - 2 * HOUR ? 3 * GIB : sawtooth(() => GIB)(ts))),
      ...points('process.memory.usage', 'jump', 12, MIN, sawtooth((ts) => (ts < END - 3 * HOUR ? GIB : 1.5 * GIB))),
      ...points('process.memory.usage', 'restart', 12, MIN, sawtooth((ts) => (ts < END - 3 * HOUR ? GIB + ((ts - END + 12 * HOUR) / HOUR) * 10 * 2 ** 20 : 0.5 * GIB))),
    ]);
    expect(found(detectAnomalies(store, { now: END }))).toEqual([]);
    store.close();
  });
});

describe('connection_instability', () => {
  function flaps(component: string, times: number[]): TelemetryRecord[] {
    return times.flatMap((ts) => [
      event(ts, 'connection', component, `${component} disconnected`, { state: 'disconnected', reason: 'EPIPE' }),
      event(ts + 20_000, 'connection', component, `${component} connected`, { state: 'connected' }),
    ]);
  }

  it('fires on a server that keeps disconnecting, with MTBF and downtime', () => {
    const store = openStore([event(END - 30 * HOUR, 'connection', 'mcp-github', 'connected', { state: 'connected' }), ...flaps('mcp-github', [50, 40, 30, 20, 10].map((m) => END - m * MIN))]);
    const result = detectAnomalies(store, { now: END });
    expect(found(result)).toEqual(['connection_instability|mcp-github']);
    expect(result.anomalies[0]!.evidence).toMatchObject({ disconnects: 5, mtbf_seconds: 600, downtime_seconds: 100 });
    store.close();
  });

  it('judges hours of flapping before the window too: three disconnects in the last hour after three hours of them', () => {
    const quiet = event(END - 30 * HOUR, 'connection', 'mcp-github', 'connected', { state: 'connected' });
    const lastHour = [45, 25, 5].map((m) => END - m * MIN);
    // alone, three disconnects in an hour of a quiet server are p ~1e-6 at the 0.5 sensitivity: not enough
    const alone = openStore([quiet, ...flaps('mcp-github', lastHour)]);
    expect(found(detectAnomalies(alone, { now: END }))).toEqual([]);
    alone.close();
    const before = [1, 2, 3].flatMap((h) => [50, 35, 20, 5].map((m) => END - h * HOUR - m * MIN));
    const store = openStore([quiet, ...flaps('mcp-github', [...before, ...lastHour])]);
    const result = detectAnomalies(store, { now: END });
    expect(found(result)).toEqual(['connection_instability|mcp-github']);
    expect(result.anomalies[0]!.evidence).toMatchObject({ disconnects: 3, flapping_hours_before_window: 3, disconnects_since_onset: 15 });
    expect(result.anomalies[0]!.start_ts).toBe(END - 3 * HOUR - 50 * MIN);
    store.close();
  });

  it('stays quiet on one disconnect, or on a server that always flaps this often', () => {
    const always = Array.from({ length: 30 }, (_, h) => [END - h * HOUR - 10 * MIN, END - h * HOUR - 30 * MIN, END - h * HOUR - 50 * MIN]).flat();
    const store = openStore([...flaps('once', [END - 20 * MIN]), ...flaps('always', always)]);
    expect(found(detectAnomalies(store, { now: END }))).toEqual([]);
    store.close();
  });
});

describe('generic check', () => {
  const noise = seededNormal(6);
  const daily = (ts: number) => 50 + 30 * Math.sin((2 * Math.PI * (ts % (24 * HOUR))) / (24 * HOUR) - Math.PI / 2);

  it('finds a level shift, a spike and a dip, each on its own series', () => {
    const store = openStore([
      ...points('queue.depth', 'svc', 30, MIN, (ts) => (ts >= END - 20 * MIN ? 80 : 40) + noise()),
      ...points('cache.hits', 'svc', 30, MIN, (ts) => (ts === END - 10 * MIN ? 400 : 100 + 2 * noise())),
      ...points('free.slots', 'svc', 30, MIN, (ts) => (ts === END - 12 * MIN ? 2 : 100 + 2 * noise())),
    ]);
    const result = detectAnomalies(store, { now: END });
    const byName = Object.fromEntries(result.anomalies.map((a) => [(a.evidence.series as { name: string }).name, a]));
    expect(byName['queue.depth']).toMatchObject({ type: 'level_shift', evidence: { direction: 'up' } });
    expect(Math.abs(byName['queue.depth']!.start_ts - (END - 20 * MIN))).toBeLessThanOrEqual(3 * MIN);
    expect(byName['cache.hits']).toMatchObject({ type: 'spike', start_ts: END - 10 * MIN });
    expect(byName['free.slots']).toMatchObject({ type: 'dip', start_ts: END - 12 * MIN });
    expect(result.anomalies).toHaveLength(3);
    store.close();
  });

  it('stays quiet on daily seasonality, a gap, and a constant series', () => {
    const store = openStore([
      ...points('requests.rate', 'svc', 3 * 24, MIN, (ts) => daily(ts) + noise()),
      ...points('with.gap', 'svc', 30, MIN, (ts) => (ts > END - 40 * MIN && ts < END - 10 * MIN ? null : 100 + noise())),
      ...points('constant', 'svc', 30, MIN, () => 7),
    ]);
    // 09:00 UTC is on the morning ramp of the daily cycle: rising fast against the night, normal against yesterday
    const morning = Date.UTC(2026, 2, 10, 9, 0);
    expect(found(detectAnomalies(store, { now: morning }))).toEqual([]);
    expect(found(detectAnomalies(store, { now: END }))).toEqual([]);
    store.close();
  });

  it('finds a constant series that changes', () => {
    const store = openStore(points('pool.size', 'svc', 30, MIN, (ts) => (ts >= END - 15 * MIN ? 9 : 7)));
    expect(detectAnomalies(store, { now: END }).anomalies.map((a) => a.type)).toEqual(['level_shift']);
    store.close();
  });
});

describe('detection over time', () => {
  // Each test draws the same noise from the start, whatever ran before it (or was filtered out).
  let noise = seededNormal(7);
  beforeEach(() => {
    noise = seededNormal(7);
  });
  const shifted = (from: number, size: number) => points('queue.depth', 'svc', 30, MIN, (ts) => (ts >= from ? 40 + size : 40) + noise());

  it('updates an ongoing anomaly instead of duplicating it, and resolves it once healed', () => {
    const store = openStore(points('queue.depth', 'svc', 30, MIN, (ts) => (ts >= END - 90 * MIN && ts < END - 30 * MIN ? 80 : 40) + noise()));
    const first = detectAnomalies(store, { now: END - 60 * MIN });
    const second = detectAnomalies(store, { now: END - 40 * MIN });
    expect(first.anomalies).toHaveLength(1);
    expect(second.anomalies[0]!.id).toBe(first.anomalies[0]!.id);
    expect(second.anomalies[0]!.new).toBe(false);
    // the shift ended 30 minutes before END; an hour after its end the window is clean again
    const healed = detectAnomalies(store, { now: END + 35 * MIN });
    expect(healed.anomalies).toEqual([]);
    expect(healed.resolved.map((a) => a.id)).toEqual([first.anomalies[0]!.id]);
    expect(new AnomalyStore(store).get(first.anomalies[0]!.id)!.status).toBe('resolved');
    store.close();
  });

  it('a short window closes an error spike only once the requests since it was last seen show it over', () => {
    const random = seededRandom(4);
    // 30% of requests fail from 40 minutes before END until END, then 1% again, as before
    const failing = (ts: number) => ts >= END - 40 * MIN && ts < END;
    const records: TelemetryRecord[] = [];
    for (let ts = END - 8 * HOUR, i = 0; ts < END + 30 * MIN; ts += 20_000, i++) {
      const error = random() < (failing(ts) ? 0.3 : 0.01);
      records.push({ type: 'span', trace_id: `t${i}`, span_id: 's', parent_id: null, name: 'x', component: 'api', start: ts, duration_ms: 100, status: error ? 'error' : 'ok', attrs: {} });
    }
    const store = openStore(records);
    const live = detectAnomalies(store, { now: END });
    expect(found(live)).toEqual(['error_spike|api']);
    const id = live.anomalies[0]!.id;
    // ten minutes holding the spike's own end: too few requests since it was last seen to call it over
    const during = detectAnomalies(store, { now: END, lookbackMs: 10 * MIN });
    expect(during.resolved).toEqual([]);
    expect(during.unconfirmed.map((a) => a.id)).toEqual([id]);
    // three healthy minutes (9 requests) are still too few; thirty are enough
    const early = detectAnomalies(store, { now: END + 3 * MIN, lookbackMs: 10 * MIN });
    expect(early.unconfirmed.map((a) => a.id)).toEqual([id]);
    expect(new AnomalyStore(store).get(id)!.status).toBe('open');
    const later = detectAnomalies(store, { now: END + 30 * MIN, lookbackMs: 10 * MIN });
    expect(later.unconfirmed).toEqual([]);
    expect(later.resolved.map((a) => a.id)).toEqual([id]);
    store.close();
  });

  it('refuses a component it has no telemetry from rather than finding it healthy', () => {
    // constant, so as not to draw from the shared noise the tests after it were tuned on
    const store = openStore(points('queue.depth', 'svc', 30, MIN, () => 40));
    expect(() => detectAnomalies(store, { now: END, component: 'svx' })).toThrow('component: no telemetry from "svx"');
    expect(detectAnomalies(store, { now: END, component: 'svc' }).anomalies).toEqual([]);
    store.close();
  });

  it('a look at a past window leaves anomalies seen after it open, acknowledged ones included', () => {
    const store = openStore(points('queue.depth', 'svc', 30, MIN, (ts) => (ts >= END - 40 * MIN ? 80 : 40) + noise()));
    const live = detectAnomalies(store, { now: END });
    expect(live.anomalies).toHaveLength(1);
    const id = live.anomalies[0]!.id;
    new AnomalyStore(store).setStatus(id, 'acknowledged', 'cli:alice');
    // two hours back the series was quiet: that window says nothing about what came after it
    const past = detectAnomalies(store, { now: END - 120 * MIN });
    expect(past.anomalies).toEqual([]);
    expect(past.resolved).toEqual([]);
    expect(new AnomalyStore(store).get(id)!.status).toBe('acknowledged');
    const again = detectAnomalies(store, { now: END });
    expect(again.anomalies.map((a) => [a.id, a.new])).toEqual([[id, false]]);
    store.close();
  });

  it('learns from a false-positive mark: the same shift again is held back, a much larger one is not', () => {
    const store = openStore(shifted(END - 20 * MIN, 10));
    const anomalies = new AnomalyStore(store);
    const first = detectAnomalies(store, { now: END });
    expect(first.anomalies).toHaveLength(1);
    anomalies.setStatus(first.anomalies[0]!.id, 'false_positive', 'alice', 'batch job every afternoon');
    const again = detectAnomalies(store, { now: END });
    expect(again.anomalies).toEqual([]);
    expect(again.suppressed).toEqual([expect.objectContaining({ type: 'level_shift', false_positive: first.anomalies[0]!.id })]);
    store.close();

    // the same mark on the day before (not this shift: a false positive a finding overlaps is that finding)
    const bigger = openStore(shifted(END - 20 * MIN, 40));
    const biggerAnomalies = new AnomalyStore(bigger);
    const dayBefore = { start_ts: first.anomalies[0]!.start_ts - 24 * HOUR, end_ts: first.anomalies[0]!.end_ts! - 24 * HOUR };
    const marked = biggerAnomalies.record({ ...first.anomalies[0]!, ...dayBefore, series_id: 1 }).anomaly;
    biggerAnomalies.setStatus(marked.id, 'false_positive', 'alice');
    expect(detectAnomalies(bigger, { now: END }).anomalies.map((a) => a.type)).toEqual(['level_shift']);
    bigger.close();
  });

  it('reports less at a lower sensitivity', () => {
    // a shift of 4 sigma seen in only the last five points: p about 1e-8 from the run's length,
    // between what sensitivity 0 and 0.5 ask (and short of a spike's 6 sigma); the same points judged three times
    const data = shifted(END - 5 * MIN, 4);
    const counts = [1, 0.5, 0].map((sensitivity) => {
      const store = openStore(data);
      const n = detectAnomalies(store, { now: END, sensitivity }).anomalies.length;
      store.close();
      return n;
    });
    expect(counts).toEqual([1, 1, 0]);
  });

  it('filters by component and type', () => {
    const store = openStore([...shifted(END - 20 * MIN, 40), ...points('other', 'db', 30, MIN, (ts) => (ts >= END - 20 * MIN ? 500 : 100) + noise())]);
    expect(found(detectAnomalies(store, { now: END, component: 'db' }))).toEqual(['level_shift|db']);
    expect(found(detectAnomalies(store, { now: END, types: ['memory_leak'] }))).toEqual([]);
    store.close();
  });
});
