/**
 * `npm run bench:ingest`: 1,000,000 metric points over 100 series through Kiwi's real ingest
 * path (a JSONL file read, parsed, validated and written in batches), beside a baseline measured
 * in the same run: the same rows inserted by one bare better-sqlite3 prepared statement in one
 * transaction. Then the time to query 24 hours of one series bucketed by minute at that size.
 */
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ingestFile } from '../src/ingest/ingest.js';
import { openDatabase } from '../src/store/database.js';
import { Store } from '../src/store/store.js';
import { reportResult } from './result.js';

const POINTS = Number(process.env.BENCH_POINTS ?? 1_000_000);
const SERIES = 100;
const STEP_MS = 10_000;
const START = Date.UTC(2026, 0, 1);
const QUERY_REPEATS = 50;

const dir = mkdtempSync(join(tmpdir(), 'kiwi-bench-ingest-'));
const perSeries = Math.ceil(POINTS / SERIES);

function seriesName(s: number): { name: string; component: string } {
  return { name: `bench.metric.${s % 10}`, component: `component-${Math.floor(s / 10)}` };
}

function pointValue(s: number, i: number): number {
  return Math.round((100 + 10 * Math.sin(i / 360 + s)) * 1000) / 1000;
}

function writeInput(path: string): void {
  const lines: string[] = [];
  for (let i = 0; i < perSeries; i++) {
    for (let s = 0; s < SERIES && lines.length < POINTS; s++) {
      const { name, component } = seriesName(s);
      lines.push(
        `{"type":"metric","ts":${START + i * STEP_MS},"name":"${name}","component":"${component}","value":${pointValue(s, i)}}`,
      );
    }
  }
  writeFileSync(path, lines.join('\n') + '\n');
}

function baseline(path: string): number {
  const db = openDatabase(path);
  const insertSeries = db.prepare('INSERT INTO series (name, component, labels) VALUES (?, ?, ?)');
  for (let s = 0; s < SERIES; s++) insertSeries.run(seriesName(s).name, seriesName(s).component, '{}');
  const rows: [number, number, number][] = [];
  for (let i = 0; i < perSeries; i++) {
    for (let s = 0; s < SERIES && rows.length < POINTS; s++) rows.push([s + 1, START + i * STEP_MS, pointValue(s, i)]);
  }
  const insert = db.prepare('INSERT INTO points (series_id, ts, value) VALUES (?, ?, ?)');
  const started = performance.now();
  db.transaction(() => {
    for (const row of rows) insert.run(row[0], row[1], row[2]);
  })();
  const seconds = (performance.now() - started) / 1000;
  db.close();
  return rows.length / seconds;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function main(): Promise<void> {
  const input = join(dir, 'points.jsonl');
  writeInput(input);
  console.log(`input: ${POINTS.toLocaleString('en')} points, ${SERIES} series, ${(statSync(input).size / 1e6).toFixed(0)} MB of JSONL`);

  const bareRate = baseline(join(dir, 'baseline.db'));

  const store = new Store(join(dir, 'kiwi.db'));
  const started = performance.now();
  const summary = await ingestFile(store, input);
  const kiwiRate = summary.accepted / ((performance.now() - started) / 1000);
  if (summary.rejected > 0) throw new Error(`bench input had ${summary.rejected} rejected lines`);

  const { series } = store.findSeries({ name: 'bench.metric.3', component: 'component-4' });
  const id = series[0]!.id;
  const from = START;
  const to = START + 24 * 3600_000;
  const timings: number[] = [];
  let buckets = 0;
  for (let r = 0; r < QUERY_REPEATS; r++) {
    const t = performance.now();
    buckets = store.queryBuckets(id, from, to, 60_000).length;
    timings.push(performance.now() - t);
  }
  store.close();

  const ratio = kiwiRate / bareRate;
  const queryMs = median(timings);
  console.log('');
  console.log('| measure | value | target |');
  console.log('| --- | --- | --- |');
  console.log(`| bare better-sqlite3 insert (baseline) | ${Math.round(bareRate).toLocaleString('en')} points/s | |`);
  console.log(`| kiwi ingest (JSONL file, validated, batched) | ${Math.round(kiwiRate).toLocaleString('en')} points/s | |`);
  console.log(`| kiwi / baseline | ${ratio.toFixed(2)}x | >= 0.5x ${ratio >= 0.5 ? 'ok' : 'MISSED'} |`);
  console.log(`| query 24 h of one series by minute (${buckets} buckets, median of ${QUERY_REPEATS}) | ${queryMs.toFixed(2)} ms | < 20 ms ${queryMs < 20 ? 'ok' : 'MISSED'} |`);
  reportResult({
    bench: 'ingest',
    measure: `JSONL file ingest, ${POINTS.toLocaleString('en')} points`,
    value: `${Math.round(kiwiRate).toLocaleString('en')} points/s`,
    baseline: `${Math.round(bareRate).toLocaleString('en')} points/s (bare better-sqlite3 insert)`,
    ratio: `${ratio.toFixed(2)}x`,
    target: '>= 0.5x',
    ok: ratio >= 0.5,
  });
  reportResult({
    bench: 'ingest',
    measure: `query 24 h of one series by minute (median of ${QUERY_REPEATS})`,
    value: `${queryMs.toFixed(2)} ms`,
    target: '< 20 ms',
    ok: queryMs < 20,
  });
  rmSync(dir, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  rmSync(dir, { recursive: true, force: true });
  console.error(err);
  process.exit(1);
});
