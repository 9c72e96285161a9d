/**
 * Forecasting backtest, rolling origin, one configuration for every series (the shipped one):
 *
 * 1. latency: the p95-latency model (seasonal median + level, 5-minute steps, 1-hour horizon)
 *    on generated scenarios and on the real series of the NAB dev set: MASE against the
 *    seasonal-naive forecast (MAE of the model / MAE of "same time yesterday" over the same
 *    targets; target < 0.9) and coverage of the 95% interval (target 90–98%);
 * 2. spikes: P(above 1.5× the current level within the hour) against a climatology baseline
 *    (each series' own rate of such spikes), by Brier score (target: lower than the baseline);
 * 3. time to out-of-memory on generated leaks of several growth rates once 6 h of leak are
 *    visible (target within ±20% of the truth), and no out-of-memory forecast on leak-free
 *    memory (GC sawtooth, a restart to a higher or lower floor);
 * 4. connection drops: P(a drop within 10 minutes) on generated flaky connections against
 *    climatology, by Brier score.
 *
 * Usage: npx tsx bench/forecast.ts [--nab DIR] [--quick]
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectionDropProbability, connectionHistory } from '../src/forecast/connection.js';
import { latencyBuckets, LATENCY_MODEL, SpikeForecaster } from '../src/forecast/latency.js';
import { forecastMemory } from '../src/forecast/memory.js';
import { generatedSeries, generateRecords, parseIncidentList, scenarioTruth, WORKER_MEMORY_LIMIT_BYTES, type ScenarioOptions } from '../src/generate/index.js';
import type { EventRecord } from '../src/ingest/records.js';
import { quantile } from '../src/stats/robust.js';
import { seasonalNaiveForecast } from '../src/stats/seasonal-forecast.js';
import type { ConnectionChange } from '../src/store/forecast.js';
import { reportResult } from './result.js';

function findProjectRoot(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) return resolve(start, '..');
  }
}

const projectRoot = findProjectRoot(dirname(fileURLToPath(import.meta.url)));
const option = (name: string, fallback: string) => {
  const at = process.argv.indexOf(name);
  return (at >= 0 ? process.argv[at + 1] : undefined) ?? fallback;
};
const quick = process.argv.includes('--quick');
const nabData = join(resolve(projectRoot, option('--nab', '../shared/bench/nab')), 'data');

const HOUR = 3_600_000;
const END = Date.UTC(2025, 5, 10, 16);
const HORIZON = 12; // five-minute steps: the next hour
const PERIOD = LATENCY_MODEL.periodBuckets;
const SPIKE_FACTOR = 1.5;

// ------------------------------------------------------------------ latency backtest

interface SeriesScore {
  name: string;
  origins: number;
  maeModel: number;
  maeNaive: number;
  covered: number;
  coverageTrials: number;
  /** Per origin with a probability: forecast p and outcome (0/1). */
  spikes: { p: number; outcome: number }[];
}

/**
 * Rolling origin over one series: an origin every hour once two days (the seasonal naive's
 * and the model's first season) and 50 resolved forecasts (for the interval) are behind it.
 */
function backtestSeries(name: string, values: readonly number[]): SeriesScore {
  const spikes = new SpikeForecaster(HORIZON, SPIKE_FACTOR);
  const model = spikes.model;
  const score: SeriesScore = { name, origins: 0, maeModel: 0, maeNaive: 0, covered: 0, coverageTrials: 0, spikes: [] };
  let errorsModel = 0;
  let errorsNaive = 0;
  let count = 0;
  for (let t = 0; t < values.length; t++) {
    spikes.update(values[t] as number);
    const origin = t + 1;
    if (origin < 2 * PERIOD || origin + HORIZON > values.length || (origin - 2 * PERIOD) % HORIZON !== 0) continue;
    const forecast = model.forecast();
    const interval = model.interval(0.95, LATENCY_MODEL.minPaths);
    const naive = seasonalNaiveForecast(values.slice(0, origin), PERIOD, HORIZON);
    const future = values.slice(origin, origin + HORIZON);
    if (!future.some((v) => Number.isFinite(v)) || forecast.length === 0) continue;
    score.origins++;
    for (let h = 0; h < HORIZON; h++) {
      const actual = future[h] as number;
      // Missing buckets (too few requests) and missing seasonal-naive values are not scored.
      if (!Number.isFinite(actual) || !Number.isFinite(naive[h] as number)) continue;
      errorsModel += Math.abs(actual - (forecast[h] as number));
      errorsNaive += Math.abs(actual - (naive[h] as number));
      count++;
      if (interval) {
        score.coverageTrials++;
        if (actual >= interval[h]!.lower && actual <= interval[h]!.upper) score.covered++;
      }
    }
    const threshold = spikes.threshold();
    const p = threshold === null ? null : spikes.probability(threshold);
    if (p !== null && threshold !== null) score.spikes.push({ p, outcome: future.some((v) => v > threshold) ? 1 : 0 });
  }
  score.maeModel = count ? errorsModel / count : NaN;
  score.maeNaive = count ? errorsNaive / count : NaN;
  return score;
}

function brier(spikes: readonly { p: number; outcome: number }[]): { model: number; climatology: number; n: number; rate: number } {
  const n = spikes.length;
  const rate = spikes.reduce((s, x) => s + x.outcome, 0) / n;
  const model = spikes.reduce((s, x) => s + (x.p - x.outcome) ** 2, 0) / n;
  const climatology = spikes.reduce((s, x) => s + (rate - x.outcome) ** 2, 0) / n;
  return { model, climatology, n, rate };
}

function listCsv(root: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(root)) {
    const path = join(root, entry);
    if (statSync(path).isDirectory()) out.push(...listCsv(path));
    else if (entry.endsWith('.csv')) out.push(path);
  }
  return out.sort();
}

function nabSeries(): { name: string; values: number[] }[] {
  if (!existsSync(nabData)) throw new Error(`NAB data not found at ${nabData} (pass --nab DIR)`);
  return listCsv(nabData).map((path) => {
    const lines = readFileSync(path, 'utf8').trim().split('\n').slice(1);
    return { name: relative(nabData, path), values: lines.map((l) => Number(l.slice(l.lastIndexOf(',') + 1))) };
  });
}

/** p95 per five-minute bucket of every span component of a generated scenario. */
function generatedLatencySeries(options: ScenarioOptions, label: string): { name: string; values: number[] }[] {
  const spans = new Map<string, { start: number[]; duration: number[] }>();
  for (const r of generateRecords(options)) {
    if (r.type !== 'span') continue;
    let s = spans.get(r.component);
    if (!s) spans.set(r.component, (s = { start: [], duration: [] }));
    s.start.push(r.start);
    s.duration.push(r.duration_ms);
  }
  const from = options.end - options.days * 24 * HOUR;
  return [...spans].sort(([a], [b]) => a.localeCompare(b)).map(([component, s]) => ({
    name: `${label} ${component}`,
    values: latencyBuckets(s.start, s.duration, from, options.end).p95,
  }));
}

function summariseLatency(title: string, scores: SeriesScore[]): { ratio: number; coverage: number; brier: ReturnType<typeof brier> } {
  console.log(`\n### ${title}\n`);
  console.log('| series | origins | MAE model | MAE seasonal-naive | MASE | 95% coverage |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
  const ratios: number[] = [];
  let covered = 0;
  let trials = 0;
  for (const s of scores) {
    const exact = s.maeNaive === 0;
    const ratio = exact ? NaN : s.maeModel / s.maeNaive;
    if (!exact) ratios.push(ratio);
    covered += s.covered;
    trials += s.coverageTrials;
    console.log(
      `| ${s.name} | ${s.origins} | ${fmt(s.maeModel)} | ${fmt(s.maeNaive)} | ${exact ? (s.maeModel === 0 ? 'exact (both 0)' : 'naive exact') : ratio.toFixed(3)} | ${s.coverageTrials ? ((100 * s.covered) / s.coverageTrials).toFixed(1) + '%' : '-'} |`,
    );
  }
  const ratio = ratios.reduce((a, b) => a + b, 0) / ratios.length;
  const coverage = trials ? covered / trials : NaN;
  const b = brier(scores.flatMap((s) => s.spikes));
  console.log(`\nmean MASE ${ratio.toFixed(3)} over ${ratios.length} series (max ${Math.max(...ratios).toFixed(3)}); 95% interval coverage ${(coverage * 100).toFixed(1)}% of ${trials} forecasts`);
  return { ratio, coverage, brier: b };
}

// ------------------------------------------------------------------ out-of-memory backtest

interface OomCase {
  label: string;
  truthHours: number | null;
  predicted: number | null;
  lower: number | null;
  upper: number | null;
  willOom: boolean;
  status: string;
}

function workerMemory(options: ScenarioOptions): { ts: number[]; values: number[] } {
  return generatedSeries(options, 'process.memory.usage', 'worker');
}

function oomCase(label: string, series: { ts: number[]; values: number[] }, truthHours: number | null): OomCase {
  const { forecast } = forecastMemory({
    component: 'worker',
    ts: series.ts,
    values: series.values,
    limitBytes: WORKER_MEMORY_LIMIT_BYTES,
    limitSource: 'setting',
    horizonHours: 24,
  });
  const m = forecast.memory;
  return {
    label,
    truthHours,
    predicted: m?.hours_to_oom?.estimate ?? null,
    lower: m?.hours_to_oom?.lower ?? null,
    upper: m?.hours_to_oom?.upper ?? null,
    willOom: m?.will_oom ?? false,
    status: forecast.status,
  };
}

// ------------------------------------------------------------------ connection backtest

function connectionBrier(seeds: number[], horizonMs: number): { spikes: { p: number; outcome: number }[]; perSeed: string[] } {
  const spikes: { p: number; outcome: number }[] = [];
  const perSeed: string[] = [];
  for (const seed of seeds) {
    const options: ScenarioOptions = { days: 1, seed, end: END, incidents: parseIncidentList('flaky_connection@-12h') };
    const changes: ConnectionChange[] = [];
    for (const r of generateRecords(options)) {
      if (r.type === 'event' && r.kind === 'connection' && r.component === 'mcp-github') {
        changes.push({ ts: r.ts, state: String((r as EventRecord).attrs.state) });
      }
    }
    const disconnects = changes.filter((c) => c.state === 'disconnected').map((c) => c.ts);
    let answered = 0;
    const start = changes[0]?.ts ?? END;
    for (let now = start + 60_000; now + horizonMs <= END; now += 60_000) {
      const history = connectionHistory(
        changes.filter((c) => c.ts <= now),
        null,
        now,
      );
      const p = connectionDropProbability(history, now, horizonMs);
      if (p === null) continue;
      answered++;
      spikes.push({ p, outcome: disconnects.some((d) => d > now && d <= now + horizonMs) ? 1 : 0 });
    }
    perSeed.push(`seed ${seed}: ${disconnects.length} disconnects, ${answered} origins`);
  }
  return { spikes, perSeed };
}

// ------------------------------------------------------------------ main

function fmt(v: number): string {
  return Number.isFinite(v) ? Number(v.toPrecision(4)).toString() : '-';
}

function verdict(ok: boolean): string {
  return ok ? 'met' : 'NOT met';
}

const started = performance.now();
console.log('# Kiwi forecasting backtest (rolling origin, one configuration for every series)');

const generatedScores = [
  ...generatedLatencySeries({ days: quick ? 4 : 9, seed: 11, end: END, incidents: [] }, 'gen seed 11'),
  ...generatedLatencySeries({ days: quick ? 4 : 9, seed: 12, end: END, incidents: parseIncidentList('latency_spike@-30h') }, 'gen seed 12 (spike at -30h)'),
].map((s) => backtestSeries(s.name, s.values));
const generated = summariseLatency('Latency (p95 per 5 min) on generated scenarios', generatedScores);

const nabScores = (quick ? nabSeries().slice(0, 6) : nabSeries()).map((s) => backtestSeries(s.name, s.values));
const nab = summariseLatency('Latency model on the NAB dev set (real series, 5-minute steps)', nabScores);

console.log('\n### Time to out-of-memory (worker, limit 2 GiB, 6 h of leak visible; horizon 24 h)\n');
console.log('| case | truth h | forecast h | 95% bounds h | error | will_oom |');
console.log('| --- | ---: | ---: | ---: | ---: | --- |');
const seeds = quick ? [1, 2, 3] : [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
const leakCases: OomCase[] = [];
for (const seed of seeds) {
  const options: ScenarioOptions = { days: 2, seed, end: END, incidents: parseIncidentList('memory_leak@-6h') };
  const truth = scenarioTruth(options).incidents.find((i) => i.type === 'memory_leak')!.details as { hours_to_oom_after_end: number; growth_bytes_per_hour: number };
  const c = oomCase(`leak seed ${seed} (${(truth.growth_bytes_per_hour / 1048576).toFixed(0)} MiB/h)`, workerMemory(options), truth.hours_to_oom_after_end);
  leakCases.push(c);
}
const freeCases: OomCase[] = [];
for (const seed of seeds) {
  const options: ScenarioOptions = { days: 2, seed, end: END, incidents: [] };
  const base = workerMemory(options);
  freeCases.push(oomCase(`leak-free seed ${seed}`, base, null));
  for (const [what, jump] of [['restart to a floor 300 MiB higher 8 h ago', 300], ['restart to a floor 200 MiB lower 8 h ago', -200]] as const) {
    const cut = END - 8 * HOUR;
    const values = base.values.map((v, i) => ((base.ts[i] as number) >= cut ? v + jump * 1048576 : v));
    freeCases.push(oomCase(`leak-free seed ${seed}, ${what}`, { ts: base.ts, values }, null));
  }
}
const errors: number[] = [];
for (const c of [...leakCases, ...freeCases]) {
  const error = c.truthHours !== null && c.predicted !== null ? (c.predicted - c.truthHours) / c.truthHours : null;
  if (c.truthHours !== null) errors.push(error ?? Infinity);
  console.log(
    `| ${c.label} | ${c.truthHours === null ? 'none' : c.truthHours.toFixed(2)} | ${c.predicted === null ? (c.status === 'ok' ? 'none' : c.status) : c.predicted.toFixed(2)} | ` +
      `${c.lower === null && c.upper === null ? '-' : `${c.lower?.toFixed(1) ?? '?'}–${c.upper?.toFixed(1) ?? '∞'}`} | ${error === null ? '-' : `${(error * 100).toFixed(1)}%`} | ${c.willOom} |`,
  );
}
const withinTarget = errors.filter((e) => Math.abs(e) <= 0.2).length;
const falseOom = freeCases.filter((c) => c.willOom).length;

console.log('\n### Connection drops within 10 minutes (generated flaky mcp-github, 12 h of outages, an origin every minute)\n');
const connection = connectionBrier(quick ? [1, 2] : [1, 2, 3, 4, 5, 6], 10 * 60_000);
for (const line of connection.perSeed) console.log(`- ${line}`);
const connectionScore = brier(connection.spikes);

console.log('\n## Summary\n');
console.log('| measure | Kiwi | baseline | target | verdict |');
console.log('| --- | ---: | ---: | --- | --- |');
console.log(`| latency MASE, generated (${generatedScores.length} series) | ${generated.ratio.toFixed(3)} | 1 (seasonal naive) | < 0.9 | ${verdict(generated.ratio < 0.9)} |`);
console.log(`| latency MASE, NAB (${nabScores.length} series) | ${nab.ratio.toFixed(3)} | 1 (seasonal naive) | < 0.9 | ${verdict(nab.ratio < 0.9)} |`);
console.log(`| 95% interval coverage, generated | ${(generated.coverage * 100).toFixed(1)}% | - | 90–98% | ${verdict(generated.coverage >= 0.9 && generated.coverage <= 0.98)} |`);
console.log(`| 95% interval coverage, NAB | ${(nab.coverage * 100).toFixed(1)}% | - | 90–98% | ${verdict(nab.coverage >= 0.9 && nab.coverage <= 0.98)} |`);
for (const [label, b] of [
  ['spike Brier, generated', generated.brier],
  ['spike Brier, NAB', nab.brier],
  ['connection-drop Brier (10 min)', connectionScore],
] as const) {
  console.log(`| ${label} (${b.n} forecasts, event rate ${(b.rate * 100).toFixed(1)}%) | ${b.model.toFixed(4)} | ${b.climatology.toFixed(4)} (climatology) | lower than baseline | ${verdict(b.model < b.climatology)} |`);
}
console.log(`| hours_to_oom within ±20% after 6 h of leak | ${withinTarget}/${errors.length} (median |error| ${(quantile(errors.map(Math.abs), 0.5) * 100).toFixed(1)}%, worst ${(Math.max(...errors.map(Math.abs)) * 100).toFixed(1)}%) | - | all | ${verdict(withinTarget === errors.length)} |`);
console.log(`| out-of-memory forecast on leak-free memory | ${falseOom}/${freeCases.length} | - | 0 | ${verdict(falseOom === 0)} |`);
for (const [label, scores, result] of [
  ['generated', generatedScores, generated],
  ['NAB', nabScores, nab],
] as const) {
  reportResult({
    bench: 'forecast',
    measure: `latency MASE, ${label} (${scores.length} series)`,
    value: result.ratio.toFixed(3),
    baseline: '1 (seasonal naive)',
    target: '< 0.9',
    ok: result.ratio < 0.9,
  });
  reportResult({
    bench: 'forecast',
    measure: `95% interval coverage, ${label}`,
    value: `${(result.coverage * 100).toFixed(1)}%`,
    target: '90–98%',
    ok: result.coverage >= 0.9 && result.coverage <= 0.98,
  });
}
for (const [label, b] of [
  ['spike Brier, generated', generated.brier],
  ['spike Brier, NAB', nab.brier],
  ['connection-drop Brier (10 min)', connectionScore],
] as const) {
  reportResult({
    bench: 'forecast',
    measure: label,
    value: b.model.toFixed(4),
    baseline: `${b.climatology.toFixed(4)} (climatology)`,
    ratio: `${(b.model / b.climatology).toFixed(2)}x`,
    target: 'lower than baseline',
    ok: b.model < b.climatology,
  });
}
reportResult({
  bench: 'forecast',
  measure: 'hours_to_oom within ±20% after 6 h of leak',
  value: `${withinTarget}/${errors.length} (median error ${(quantile(errors.map(Math.abs), 0.5) * 100).toFixed(1)}%, worst ${(Math.max(...errors.map(Math.abs)) * 100).toFixed(1)}%)`,
  target: 'all',
  ok: withinTarget === errors.length,
});
reportResult({
  bench: 'forecast',
  measure: 'out-of-memory forecast on leak-free memory',
  value: `${falseOom}/${freeCases.length}`,
  target: '0',
  ok: falseOom === 0,
});
console.log(`\n(${((performance.now() - started) / 1000).toFixed(1)} s)`);
