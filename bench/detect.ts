/**
 * `npm run bench:detect`: speed and quality of anomaly detection.
 *
 * Speed: a store of 7 days x 100 series at 10-second resolution (~6M points) plus a generated
 * week of an agent platform (spans, events); the time of one detect_anomalies call with a
 * 60-minute lookback, beside a bare read of the points that call reads. Then `kiwi detect --csv`
 * rows per second, beside a pass-through that reads and writes the same CSV without scoring.
 *
 * Quality: on generated scenarios, whether each injected incident is found with the right type
 * and component (several seeds), and false alarms per series-day on quiet weeks judged hourly.
 */
import { createReadStream, createWriteStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { scoreCsvFile } from '../src/detect/csv.js';
import { detectAnomalies } from '../src/detect/service.js';
import { EXPECTED_ANOMALY, INCIDENT_TYPES, type IncidentType, writeScenario } from '../src/generate/index.js';
import { ingestFile } from '../src/ingest/ingest.js';
import { seededNormal } from '../src/stats/random.js';
import { Store } from '../src/store/store.js';
import { reportResult } from './result.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const END = Date.UTC(2026, 10, 18, 16, 0);
const SERIES = 100;
const STEP = 10_000;
const dir = mkdtempSync(join(tmpdir(), 'kiwi-bench-detect-'));

/** `type|component` of the anomaly an injected incident must raise. */
const expected = (incident: IncidentType): string => `${EXPECTED_ANOMALY[incident].type}|${EXPECTED_ANOMALY[incident].component}`;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function buildLargeStore(): Promise<Store> {
  const store = new Store(join(dir, 'large.db'));
  await writeScenario({ days: 7, seed: 21, end: END, stepMs: 60_000, incidents: [] }, join(dir, 'platform.jsonl'));
  await ingestFile(store, join(dir, 'platform.jsonl'));
  const noise = seededNormal(3);
  const perSeries = (7 * DAY) / STEP;
  for (let s = 0; s < SERIES; s++) {
    const id = store.seriesIdFor(`bench.metric.${s % 10}`, `service-${Math.floor(s / 10)}`, {});
    const ts = new Float64Array(perSeries);
    const values = new Float64Array(perSeries);
    for (let i = 0; i < perSeries; i++) {
      ts[i] = END - 7 * DAY + i * STEP;
      values[i] = 100 + 20 * Math.sin((2 * Math.PI * (ts[i]! % DAY)) / DAY + s) + 3 * noise();
    }
    store.writeColumnar({ keyIndex: new Int32Array(perSeries), seriesIds: [id], ts, values, records: [], components: [[`service-${Math.floor(s / 10)}`, ts[0]!, ts[perSeries - 1]!]] });
  }
  return store;
}

/** What a detection call reads of the metric series, read bare: the floor of its cost. */
function bareRead(store: Store): number {
  const windowStart = END - HOUR;
  let rows = 0;
  for (const series of store.findSeries({}, 100_000).series) {
    rows += store.readPoints(series.id, windowStart - 6 * HOUR, END).ts.length;
    rows += store.readPoints(series.id, windowStart - DAY - HOUR / 2, END - DAY + HOUR / 2).ts.length;
  }
  return rows;
}

function timeIt(fn: () => void, repeats: number): number {
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t = performance.now();
    fn();
    times.push(performance.now() - t);
  }
  return median(times);
}

async function passThrough(input: string, output: string): Promise<number> {
  const out = createWriteStream(output);
  let rest = '';
  let rows = 0;
  for await (const chunk of createReadStream(input, { encoding: 'utf8', highWaterMark: 1 << 20 }) as AsyncIterable<string>) {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop()!;
    const copied = lines.map((line) => {
      const [ts, value] = line.split(',');
      return `${ts},${value},0,0`;
    });
    rows += lines.length;
    if (!out.write(`${copied.join('\n')}\n`)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return rows;
}

async function csvSpeed(): Promise<{ kiwi: number; baseline: number }> {
  const input = join(dir, 'series.csv');
  const noise = seededNormal(9);
  const rows = ['timestamp,value'];
  for (let i = 0; i < 1_000_000; i++) rows.push(`${new Date(END - 1_000_000 * STEP + i * STEP).toISOString()},${(100 + 10 * Math.sin(i / 500) + noise()).toFixed(3)}`);
  writeFileSync(input, rows.join('\n'));
  let t = performance.now();
  const copied = await passThrough(input, join(dir, 'copy.csv'));
  const baseline = copied / ((performance.now() - t) / 1000);
  t = performance.now();
  const summary = await scoreCsvFile(input, join(dir, 'scored.csv'));
  const kiwi = summary.rows / ((performance.now() - t) / 1000);
  return { kiwi, baseline };
}

async function scenarioStore(name: string, days: number, seed: number, incidents: boolean): Promise<Store> {
  const file = join(dir, `${name}.jsonl`);
  await writeScenario({ days, seed, end: END, stepMs: 60_000, incidents: incidents ? INCIDENT_TYPES.map((type) => ({ type })) : [] }, file);
  const store = new Store(join(dir, `${name}.db`));
  await ingestFile(store, file);
  return store;
}

/**
 * BENCH_DETECT_PARTS=csv runs only the `kiwi detect --csv` speed line, =speed both speed lines,
 * =quality only the quality lines, unset everything.
 */
const parts = process.env.BENCH_DETECT_PARTS ?? 'all';

/** Times detect_anomalies on a large store; returns its table row. */
async function storeSpeed(): Promise<string> {
  console.log('building a store of 7 days x 100 series at 10 s, plus a generated week of an agent platform ...');
  const large = await buildLargeStore();
  const points = large.db.prepare('SELECT count(*) FROM points').pluck().get() as number;
  const bareMs = timeIt(() => bareRead(large), 5);
  let anomalies = 0;
  let perCheck = '';
  const detectMs = timeIt(() => {
    const result = detectAnomalies(large, { now: END });
    anomalies = result.anomalies.length;
    perCheck = result.checks.map((c) => `${c.name} ${c.ms} ms`).join(', ');
  }, 5);
  large.close();
  console.log(`(last detect_anomalies call by check: ${perCheck})`);
  reportResult({
    bench: 'detect',
    measure: `detect_anomalies, 60 min lookback, ${(points / 1e6).toFixed(1)}M points`,
    value: `${detectMs.toFixed(0)} ms`,
    baseline: `${bareMs.toFixed(0)} ms (bare read of its points)`,
    ratio: `${(detectMs / bareMs).toFixed(2)}x`,
    target: '< 500 ms',
    ok: detectMs < 500,
  });
  return `| detect_anomalies, 60 min lookback, ${(points / 1e6).toFixed(1)}M points (${anomalies} found) | ${detectMs.toFixed(0)} ms | bare read of its points ${bareMs.toFixed(0)} ms | ${(detectMs / bareMs).toFixed(2)}x | < 500 ms ${detectMs < 500 ? 'ok' : 'MISSED'} |`;
}

async function main(): Promise<void> {
  if (parts !== 'quality') await speed();
  if (parts !== 'all' && parts !== 'quality') return rmSync(dir, { recursive: true, force: true });
  await quality();
  rmSync(dir, { recursive: true, force: true });
}

async function speed(): Promise<void> {
  const storeRow = parts === 'csv' ? undefined : await storeSpeed();
  const csv = await csvSpeed();
  console.log('');
  console.log('| speed | value | baseline (same run) | ratio | target |');
  console.log('| --- | --- | --- | --- | --- |');
  if (storeRow) console.log(storeRow);
  console.log(
    `| kiwi detect --csv, 1M rows | ${Math.round(csv.kiwi).toLocaleString('en')} rows/s | read+write without scoring ${Math.round(csv.baseline).toLocaleString('en')} rows/s | ${(csv.kiwi / csv.baseline).toFixed(2)}x | >= 200,000 rows/s ${csv.kiwi >= 200_000 ? 'ok' : 'MISSED'} |`,
  );
  reportResult({
    bench: 'detect',
    measure: 'kiwi detect --csv, 1M rows',
    value: `${Math.round(csv.kiwi).toLocaleString('en')} rows/s`,
    baseline: `${Math.round(csv.baseline).toLocaleString('en')} rows/s (read+write without scoring)`,
    ratio: `${(csv.kiwi / csv.baseline).toFixed(2)}x`,
    target: '>= 200,000 rows/s',
    ok: csv.kiwi >= 200_000,
  });
}

async function quality(): Promise<void> {
  console.log('');
  console.log('| scenario quality | result | target |');
  console.log('| --- | --- | --- |');
  const seeds = [5, 6, 7, 8];
  let hits = 0;
  const misses: string[] = [];
  for (const seed of seeds) {
    const store = await scenarioStore(`incidents-${seed}`, 2, seed, true);
    const found = new Set(detectAnomalies(store, { now: END }).anomalies.map((a) => `${a.type}|${a.component}`));
    for (const type of INCIDENT_TYPES) {
      if (found.has(expected(type))) hits++;
      else misses.push(`${type} (seed ${seed})`);
    }
    store.close();
  }
  const total = seeds.length * INCIDENT_TYPES.length;
  console.log(`| incidents found with the right type and component, seeds ${seeds.join(', ')} | ${hits}/${total}${misses.length ? ` (missed: ${misses.join(', ')})` : ''} | ${total}/${total} |`);
  reportResult({
    bench: 'detect',
    measure: `incidents found with the right type and component, seeds ${seeds.join(', ')}`,
    value: `${hits}/${total}${misses.length ? ` (missed: ${misses.join(', ')})` : ''}`,
    target: `${total}/${total}`,
    ok: hits === total,
  });
  for (const seed of [11, 12]) {
    const store = await scenarioStore(`quiet-${seed}`, 7, seed, false);
    const from = END - 7 * DAY + 7 * HOUR;
    let created = 0;
    for (let now = from; now <= END; now += HOUR) created += detectAnomalies(store, { now }).anomalies.filter((a) => a.new).length;
    const seriesDays = store.findSeries({}).total * ((END - from) / DAY);
    const rate = created / seriesDays;
    console.log(`| false alarms per series-day, quiet week, seed ${seed}, judged hourly (${created} over ${seriesDays.toFixed(0)} series-days) | ${rate.toFixed(3)} | <= 0.05 ${rate <= 0.05 ? 'ok' : 'MISSED'} |`);
    reportResult({
      bench: 'detect',
      measure: `false alarms per series-day, quiet week, seed ${seed}`,
      value: rate.toFixed(3),
      target: '<= 0.05',
      ok: rate <= 0.05,
    });
    store.close();
  }
  // A week with the five incidents under way at its end, asked about with ever longer looks, as an
  // agent asking what went wrong this week: each look must find all five and resolve none of them.
  const lookbacks = [['1h', HOUR], ['6h', 6 * HOUR], ['1d', DAY], ['7d', 7 * DAY]] as const;
  const weekSeeds = [1, 2];
  let weekHits = 0;
  let resolved = 0;
  const weekMisses: string[] = [];
  for (const seed of weekSeeds) {
    const store = await scenarioStore(`week-${seed}`, 7, seed, true);
    for (const [name, lookbackMs] of lookbacks) {
      const result = detectAnomalies(store, { now: END, lookbackMs });
      const found = new Set(result.anomalies.map((a) => `${a.type}|${a.component}`));
      const closed = new Set(result.resolved.map((a) => `${a.type}|${a.component}`));
      for (const type of INCIDENT_TYPES) {
        if (found.has(expected(type))) weekHits++;
        else weekMisses.push(`${type} at ${name} (seed ${seed})`);
        if (closed.has(expected(type))) resolved++;
      }
    }
    store.close();
  }
  const weekTotal = weekSeeds.length * lookbacks.length * INCIDENT_TYPES.length;
  const weekMeasure = `ongoing incidents found at lookbacks ${lookbacks.map(([name]) => name).join(', ')} on generated weeks, seeds ${weekSeeds.join(', ')}`;
  const weekValue = `${weekHits}/${weekTotal}, ${resolved} resolved${weekMisses.length ? ` (missed: ${weekMisses.join(', ')})` : ''}`;
  console.log(`| ${weekMeasure} | ${weekValue} | ${weekTotal}/${weekTotal}, 0 resolved |`);
  reportResult({ bench: 'detect', measure: weekMeasure, value: weekValue, target: `${weekTotal}/${weekTotal}, 0 resolved`, ok: weekHits === weekTotal && resolved === 0 });
}

main().catch((err: unknown) => {
  rmSync(dir, { recursive: true, force: true });
  console.error(err);
  process.exit(1);
});
