/**
 * Detection over a long lookback lets other work run (it yields between units of work), and what
 * it answers is exactly what it answered when it held the event loop to the end.
 *
 * Behaviour only, never timing: the orderings checked here are decided by where detection yields,
 * not by how fast anything runs.
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { detectAnomalies, detectAnomaliesAsync, type DetectOptions } from '../src/detect/service.js';
import { generateRecords, INCIDENT_TYPES } from '../src/generate/index.js';
import type { TelemetryRecord } from '../src/ingest/records.js';
import { createKiwi, type Kiwi } from '../src/index.js';
import { binomialLowerTail, binomialUpperTail, logChoose } from '../src/stats/distributions.js';
import { seededRandom } from '../src/stats/random.js';
import { Store } from '../src/store/store.js';
import { connectInProcess } from './helpers/mcp.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const END = Date.UTC(2026, 2, 10, 15, 0);

let dir: string;
/** Two generated days of an agent platform with every kind of incident, as a SQLite file. */
let seeded: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kiwi-detect-perf-'));
  seeded = join(dir, 'seeded.db');
  const store = new Store(seeded);
  let batch: TelemetryRecord[] = [];
  for (const record of generateRecords({ days: 2, seed: 4, end: END, stepMs: 60_000, incidents: INCIDENT_TYPES.map((type) => ({ type })) })) {
    batch.push(record);
    if (batch.length === 20_000) {
      store.writeRecords(batch);
      batch = [];
    }
  }
  store.writeRecords(batch);
  store.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let copies = 0;
/** A fresh copy of the seeded store: detection records what it finds. */
function copyOfStore(): string {
  const path = join(dir, `copy-${++copies}.db`);
  copyFileSync(seeded, path);
  return path;
}

const opened: (Kiwi | Store)[] = [];
afterEach(async () => {
  for (const open of opened.splice(0)) await open.close();
});

function openStore(): Store {
  const store = new Store(copyOfStore());
  opened.push(store);
  return store;
}

/** A result without what differs from run to run: check times, and the clock of status changes. */
function comparable(result: unknown): string {
  return JSON.stringify(result, (key, value: unknown) => (key === 'ms' || key === 'updated_at' || key === 'created_at' ? 0 : value));
}

describe('detect_anomalies over a long lookback', () => {
  it('answers a request sent after it first, rather than holding everything else until it is done', async () => {
    const kiwi = createKiwi({ db: copyOfStore(), selfTelemetry: false });
    opened.push(kiwi);
    const client = await connectInProcess(kiwi.server);
    const answered: string[] = [];
    const detect = client.callTool({ name: 'detect_anomalies', arguments: { lookback: '2d', at: new Date(END).toISOString() } }).then((r) => {
      answered.push('detect_anomalies');
      return r;
    });
    const list = client.callTool({ name: 'list_anomalies', arguments: {} }).then((r) => {
      answered.push('list_anomalies');
      return r;
    });
    const [detected, listed] = await Promise.all([detect, list]);
    expect(detected.isError).toBeFalsy();
    expect(listed.isError).toBeFalsy();
    expect((detected.structuredContent as { total: number }).total).toBeGreaterThan(0);
    expect(answered).toEqual(['list_anomalies', 'detect_anomalies']);
  });

  it('lets work queued before it run before it answers', async () => {
    const kiwi = createKiwi({ db: copyOfStore(), selfTelemetry: false });
    opened.push(kiwi);
    const client = await connectInProcess(kiwi.server);
    const order: string[] = [];
    setImmediate(() => order.push('other work'));
    await client.callTool({ name: 'detect_anomalies', arguments: { lookback: '2d', at: new Date(END).toISOString() } });
    order.push('detect_anomalies answered');
    expect(order).toEqual(['other work', 'detect_anomalies answered']);
  });
});

describe('detectAnomaliesAsync', () => {
  /** Calls that find anomalies, update them, resolve some and leave others unconfirmed. */
  const sequence: DetectOptions[] = [
    { now: END - 3 * HOUR },
    { now: END },
    { now: END, lookbackMs: 2 * DAY },
    { now: END + HOUR, lookbackMs: 2 * DAY },
    { now: END + 2 * HOUR, lookbackMs: 10 * 60_000 },
    { now: END + 5 * HOUR, lookbackMs: 3 * HOUR },
    { now: END, lookbackMs: DAY, component: 'policy' },
  ];

  it('answers exactly what detectAnomalies answers, call after call', async () => {
    const straight = openStore();
    const yielding = openStore();
    for (const options of sequence) {
      const expected = detectAnomalies(straight, options);
      const actual = await detectAnomaliesAsync(yielding, options);
      expect(comparable(actual)).toEqual(comparable(expected));
    }
    const all = (store: Store) => store.db.prepare('SELECT * FROM anomalies ORDER BY id').all();
    expect(comparable(all(yielding))).toEqual(comparable(all(straight)));
    expect(all(straight).length).toBeGreaterThan(0);
  });

  it('runs detections on one store one after another, in the order they were asked', async () => {
    const serial = openStore();
    const concurrent = openStore();
    const expected = sequence.map((options) => detectAnomalies(serial, options));
    const actual = await Promise.all(sequence.map((options) => detectAnomaliesAsync(concurrent, options)));
    expect(comparable(actual)).toEqual(comparable(expected));
  });

  it('refuses an unknown component as detectAnomalies does', async () => {
    const store = openStore();
    await expect(detectAnomaliesAsync(store, { now: END, component: 'nobody' })).rejects.toThrow('component: no telemetry from "nobody"');
    // and the next one on the store still runs
    expect((await detectAnomaliesAsync(store, { now: END })).window.to).toBe(END);
  });
});

/** The tail as it was summed before it stopped at negligible terms: every term, in order. */
function everyTermUpperTail(k: number, n: number, p: number): number {
  if (k <= 0) return 1;
  if (k > n) return 0;
  if (p <= 0) return 0;
  if (p >= 1) return 1;
  const logP = Math.log(p);
  const logQ = Math.log1p(-p);
  let maxLog = -Infinity;
  const terms: number[] = [];
  for (let i = k; i <= n; i++) {
    const term = logChoose(n, i) + i * logP + (n - i) * logQ;
    terms.push(term);
    if (term > maxLog) maxLog = term;
  }
  let sum = 0;
  for (const term of terms) sum += Math.exp(term - maxLog);
  return Math.min(1, Math.exp(maxLog) * sum);
}

describe('binomialUpperTail', () => {
  it('is bit for bit the sum of every term, below, around and above the mean', () => {
    const random = seededRandom(9);
    for (let i = 0; i < 2000; i++) {
      const n = 1 + Math.floor(random() ** 2 * 20_000);
      const p = [random(), 0.05 * random(), 0.001 + 0.01 * random(), 0.5][i % 4]!;
      const spread = Math.sqrt(n * p * (1 - p)) + 1;
      const k = [Math.floor(random() * (n + 1)), Math.round(n * p + (random() - 0.5) * 8 * spread), Math.floor(random() * 4), n][i % 4]!;
      expect(Object.is(binomialUpperTail(k, n, p), everyTermUpperTail(k, n, p)), `k ${k}, n ${n}, p ${p}`).toBe(true);
      expect(Object.is(binomialLowerTail(k, n, p), Math.max(0, k >= n ? 1 : 1 - everyTermUpperTail(k + 1, n, p))), `lower: k ${k}, n ${n}, p ${p}`).toBe(true);
    }
  });
});
