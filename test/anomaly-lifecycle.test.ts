/**
 * What detection does with anomalies across calls: a closed anomaly (resolved, or marked a false
 * positive) that a later window still holds is that anomaly, seen again, and stays closed; only a
 * signal abnormal after the closing is a recurrence, a new anomaly that names the closed one. And
 * an error spike of a component without requests ends when its errors stop while it sends
 * anything else.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { detectAnomalies, type DetectionResult } from '../src/detect/service.js';
import type { TelemetryRecord } from '../src/ingest/records.js';
import { seededRandom } from '../src/stats/random.js';
import { AnomalyStore } from '../src/store/anomalies.js';
import { Store } from '../src/store/store.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir();
const MIN = 60_000;
const HOUR = 60 * MIN;
const END = Date.UTC(2026, 2, 10, 15, 0);

function openStore(records: TelemetryRecord[]): Store {
  const store = new Store(join(tempDir(), 'kiwi.db'));
  store.writeRecords(records);
  return store;
}

const found = (r: DetectionResult) => r.anomalies.map((a) => `${a.type}|${a.component}`);

/** Requests of `api` every 5 s from 8 h before END to an hour after, failing at `errorRate(ts)`. */
function api(errorRate: (ts: number) => number): TelemetryRecord[] {
  const random = seededRandom(4);
  const out: TelemetryRecord[] = [];
  for (let ts = END - 8 * HOUR, i = 0; ts < END + HOUR; ts += 5_000, i++) {
    const error = random() < errorRate(ts);
    out.push({ type: 'span', trace_id: `t${i}`, span_id: 's', parent_id: null, name: 'x', component: 'api', start: ts, duration_ms: 100, status: error ? 'error' : 'ok', attrs: {} });
  }
  return out;
}

/** 30% of requests fail from 40 minutes before END until END; 1% otherwise. */
const spikeUntilEnd = (ts: number) => (ts >= END - 40 * MIN && ts < END ? 0.3 : 0.01);

function allOf(store: Store) {
  return new AnomalyStore(store).list({}, 100).anomalies;
}

describe('a closed anomaly a later window still holds', () => {
  it('stays resolved, and is not recorded again, when the signal is normal since it was resolved', () => {
    const store = openStore(api(spikeUntilEnd));
    const live = detectAnomalies(store, { now: END - 10 * MIN });
    expect(found(live)).toEqual(['error_spike|api']);
    const id = live.anomalies[0]!.id;
    // resolved by a person five minutes after the spike ended
    new AnomalyStore(store).setStatus(id, 'resolved', 'cli:alice', 'fixed', {}, END + 5 * MIN);
    // the next hour's look still holds the whole spike, and 20 healthy minutes after it
    const again = detectAnomalies(store, { now: END + 20 * MIN });
    expect(again.anomalies).toEqual([]);
    expect(again.already_closed.map((a) => [a.id, a.status])).toEqual([[id, 'resolved']]);
    expect(again.checks.find((c) => c.name === 'error_spike')!.found).toBe(0);
    expect(allOf(store).map((a) => [a.id, a.status])).toEqual([[id, 'resolved']]);
    store.close();
  });

  it('stays resolved when detection itself resolved it and a longer look finds the spike again', () => {
    const store = openStore(api(spikeUntilEnd));
    const id = detectAnomalies(store, { now: END }).anomalies[0]!.id;
    // ten minutes, thirty healthy minutes after the spike: over
    expect(detectAnomalies(store, { now: END + 40 * MIN, lookbackMs: 10 * MIN }).resolved.map((a) => a.id)).toEqual([id]);
    const longer = detectAnomalies(store, { now: END + 40 * MIN, lookbackMs: 90 * MIN });
    expect(longer.anomalies).toEqual([]);
    expect(longer.already_closed.map((a) => a.id)).toEqual([id]);
    expect(allOf(store)).toHaveLength(1);
    store.close();
  });

  it('stays a false positive even when seen larger than when it was marked', () => {
    // 20% of requests fail for 15 minutes, then 80% for 25: marked a false positive after it ended,
    // as it was first seen (20%)
    const store = openStore(api((ts) => (ts >= END - 40 * MIN && ts < END - 25 * MIN ? 0.2 : ts >= END - 25 * MIN && ts < END ? 0.8 : 0.01)));
    const early = detectAnomalies(store, { now: END - 30 * MIN });
    expect(found(early)).toEqual(['error_spike|api']);
    const id = early.anomalies[0]!.id;
    new AnomalyStore(store).setStatus(id, 'false_positive', 'cli:alice', 'load test', {}, END + 5 * MIN);
    const again = detectAnomalies(store, { now: END + 20 * MIN });
    // larger than 1.5x the marked one, so not held back as a like one: it is that one
    expect(again.suppressed).toEqual([]);
    expect(again.anomalies).toEqual([]);
    expect(again.already_closed.map((a) => [a.id, a.status])).toEqual([[id, 'false_positive']]);
    expect(allOf(store).map((a) => a.status)).toEqual(['false_positive']);
    store.close();
  });

  it('is a recurrence when the signal is still abnormal after the closing: a new anomaly naming the closed one', () => {
    const store = openStore(api(spikeUntilEnd));
    const live = detectAnomalies(store, { now: END - 20 * MIN });
    const id = live.anomalies[0]!.id;
    // resolved while the spike went on for twenty more minutes
    new AnomalyStore(store).setStatus(id, 'resolved', 'cli:alice', 'restarted it', {}, END - 20 * MIN);
    const again = detectAnomalies(store, { now: END });
    expect(found(again)).toEqual(['error_spike|api']);
    const recurrence = again.anomalies[0]!;
    expect(recurrence.new).toBe(true);
    expect(recurrence.id).not.toBe(id);
    expect(recurrence.evidence.recurrence_of).toEqual({ id, status: 'resolved', closed_at: new Date(END - 20 * MIN).toISOString() });
    expect(again.already_closed).toEqual([]);
    expect(new AnomalyStore(store).get(id)!.status).toBe('resolved');
    // updated while it lasts, still naming the closed one
    const later = detectAnomalies(store, { now: END + 5 * MIN });
    expect(later.anomalies.map((a) => [a.id, a.new])).toEqual([[recurrence.id, false]]);
    expect(later.anomalies[0]!.evidence.recurrence_of).toEqual(recurrence.evidence.recurrence_of);
    store.close();
  });

  it('leaves a look at the past, ending before the closing, with nothing to report again', () => {
    const store = openStore(api(spikeUntilEnd));
    const id = detectAnomalies(store, { now: END }).anomalies[0]!.id;
    new AnomalyStore(store).setStatus(id, 'resolved', 'cli:alice', undefined, {}, END + 5 * MIN);
    const past = detectAnomalies(store, { now: END - 5 * MIN });
    expect(past.anomalies).toEqual([]);
    expect(past.already_closed.map((a) => a.id)).toEqual([id]);
    store.close();
  });
});

/**
 * `worker` serves no requests: a metric every minute (until `metricsUntil`), an error event an
 * hour, and a burst of 40 errors over the half hour before END; none after END.
 */
function worker(metricsUntil: number): TelemetryRecord[] {
  const out: TelemetryRecord[] = [];
  for (let ts = END - 10 * HOUR; ts < metricsUntil; ts += MIN) out.push({ type: 'metric', ts, name: 'jobs.done', value: 40, component: 'worker', labels: {} });
  const error = (ts: number, i: number): TelemetryRecord => ({ type: 'event', ts, kind: 'error', component: 'worker', level: 'error', message: `job ${i} failed: timeout`, attrs: {} });
  for (let ts = END - 10 * HOUR + 17 * MIN, i = 0; ts < END - 30 * MIN; ts += HOUR, i++) out.push(error(ts, i));
  for (let ts = END - 30 * MIN, i = 100; ts < END; ts += 45_000, i++) out.push(error(ts, i));
  return out;
}

describe('an error spike of a component without requests whose errors stop', () => {
  it('is resolved when the component sends other telemetry and no errors any more', () => {
    const store = openStore(worker(END + 3 * HOUR));
    const live = detectAnomalies(store, { now: END });
    expect(found(live)).toEqual(['error_spike|worker']);
    const id = live.anomalies[0]!.id;
    const later = detectAnomalies(store, { now: END + 2 * HOUR });
    expect(later.anomalies).toEqual([]);
    expect(later.resolved.map((a) => a.id)).toEqual([id]);
    expect(new AnomalyStore(store).get(id)!.status).toBe('resolved');
    store.close();
  });

  it('stays open, listed as unconfirmed, while the component sends nothing at all', () => {
    const store = openStore(worker(END));
    const id = detectAnomalies(store, { now: END }).anomalies[0]!.id;
    const later = detectAnomalies(store, { now: END + 2 * HOUR });
    expect(later.resolved).toEqual([]);
    expect(later.unconfirmed.map((a) => a.id)).toEqual([id]);
    expect(new AnomalyStore(store).get(id)!.status).toBe('open');
    // and a window that still holds the end of the burst, then silence, does not resolve it either
    const tail = detectAnomalies(store, { now: END + 50 * MIN, lookbackMs: 60 * MIN });
    expect(tail.resolved).toEqual([]);
    expect(new AnomalyStore(store).get(id)!.status).toBe('open');
    store.close();
  });
});
