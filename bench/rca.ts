/**
 * `npm run bench:rca`: root-cause analysis quality and speed.
 *
 * 1. Sock Shop (../shared/bench/sockshop, 50 fault cases): each case's normal.csv and
 *    anomalous.csv go through Kiwi's CSV ingest into a fresh store; the analysis gets only the
 *    first timestamp of anomalous.csv as the symptom's start (and normal.csv as the baseline).
 *    Candidates map to services (a `-db` suffix dropped, first occurrence kept); AC@1, AC@3 and
 *    Avg@5 are printed for CPU and memory faults apart, beside the published references.
 * 2. Generated scenarios (src/generate): one store per incident type, analysed from the
 *    incident's start with and without naming the affected agent; the rank of the injected root
 *    cause is printed.
 * 3. Speed: one hour of 100 series (with the default one-day baseline before it), beside a bare
 *    read of the same points measured in the same run.
 *
 * One configuration for every case. Usage: npm run bench:rca [-- --data DIR]
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { analyzeRootCause } from '../src/explain/analyze.js';
import { loadScenario, scenarioTruth, type IncidentType, type ScenarioOptions } from '../src/generate/index.js';
import { ingestText } from '../src/ingest/ingest.js';
import type { TelemetryRecord } from '../src/ingest/records.js';
import { Store } from '../src/store/store.js';
import { reportResult } from './result.js';

function findProjectRoot(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) return resolve(start, '..');
  }
}

function option(name: string, fallback: string): string {
  const at = process.argv.indexOf(name);
  return (at >= 0 ? process.argv[at + 1] : undefined) ?? fallback;
}

const projectRoot = findProjectRoot(dirname(fileURLToPath(import.meta.url)));
const dataRoot = resolve(projectRoot, option('--data', '../shared/bench/sockshop/data'));
const workDir = mkdtempSync(join(tmpdir(), 'kiwi-bench-rca-'));
let storeCount = 0;
const freshStore = () => new Store(join(workDir, `store-${storeCount++}.db`));

// ------------------------------------------------------------------ Sock Shop

interface WideCsv {
  times: number[];
  text: string;
}

/** A wide CSV (time, then <component>_<metric> columns) as Kiwi's long-form CSV. */
function toLongCsv(path: string): WideCsv {
  const [header, ...rows] = readFileSync(path, 'utf8').trim().split(/\r?\n/);
  const columns = header!.split(',');
  const timeColumn = columns.indexOf('time');
  if (timeColumn < 0) throw new Error(`${path}: no time column`);
  const names = columns.map((c) => {
    const cut = c.indexOf('_');
    return cut < 0 ? null : { component: c.slice(0, cut), metric: c.slice(cut + 1) };
  });
  const lines = ['timestamp,component,metric,value'];
  const times: number[] = [];
  for (const row of rows) {
    const cells = row.split(',');
    const t = Number(cells[timeColumn]);
    times.push(t * 1000);
    cells.forEach((cell, i) => {
      const name = names[i];
      if (i === timeColumn || !name || cell === '' || !Number.isFinite(Number(cell))) return;
      lines.push(`${t},${name.component},${name.metric},${cell}`);
    });
  }
  return { times, text: lines.join('\n') };
}

const serviceOf = (component: string) => component.replace(/-db$/, '');

interface CaseResult {
  name: string;
  fault: string;
  rank: number;
  top: string[];
  ms: number;
}

function runSockShop(): CaseResult[] {
  const results: CaseResult[] = [];
  for (const dir of readdirSync(dataRoot).sort()) {
    const [service, fault] = dir.split('-') as [string, string];
    for (const run of readdirSync(join(dataRoot, dir)).sort()) {
      const store = freshStore();
      try {
        const normal = toLongCsv(join(dataRoot, dir, run, 'normal.csv'));
        const anomalous = toLongCsv(join(dataRoot, dir, run, 'anomalous.csv'));
        for (const [file, csv] of [
          ['normal.csv', normal],
          ['anomalous.csv', anomalous],
        ] as const) {
          const summary = ingestText(store, csv.text, file, { format: 'csv' });
          if (summary.rejected > 0) throw new Error(`${dir}/${run}/${file}: ${summary.rejected} rows rejected`);
        }
        const analysis = analyzeRootCause(
          store,
          {
            start: anomalous.times[0]!,
            end: anomalous.times[anomalous.times.length - 1]! + 1000,
            baseline_start: normal.times[0]!,
            baseline_end: normal.times[normal.times.length - 1]! + 1000,
          },
          { limit: 20 },
        );
        const services: string[] = [];
        for (const c of analysis.candidates) if (!services.includes(serviceOf(c.component))) services.push(serviceOf(c.component));
        results.push({ name: `${dir}/${run}`, fault, rank: services.indexOf(service), top: services.slice(0, 3), ms: analysis.elapsed_ms });
      } finally {
        store.close();
      }
    }
  }
  return results;
}

function accuracy(results: CaseResult[]): { ac1: number; ac3: number; avg5: number } {
  const ac = (k: number) => results.filter((r) => r.rank >= 0 && r.rank < k).length / results.length;
  return { ac1: ac(1), ac3: ac(3), avg5: [1, 2, 3, 4, 5].reduce((sum, k) => sum + ac(k), 0) / 5 };
}

// ------------------------------------------------------------------ generated scenarios

const SCENARIO_END = Date.UTC(2025, 5, 10, 16);
/** The agent whose threads an operator would notice first, per incident. */
const NOTICED_BY: Record<IncidentType, { component: string; metric: string }> = {
  latency_spike: { component: 'agent-planner', metric: 'latency' },
  error_spike: { component: 'agent-coder', metric: 'errors' },
  permission_spike: { component: 'agent-reviewer', metric: 'errors' },
  memory_leak: { component: 'worker', metric: 'process.memory.usage' },
  flaky_connection: { component: 'agent-reviewer', metric: 'errors' },
};

function runScenarios(seeds: number[]): { lines: string[]; firsts: number; total: number } {
  const lines: string[] = [];
  let firsts = 0;
  let total = 0;
  for (const type of Object.keys(NOTICED_BY) as IncidentType[]) {
    for (const seed of seeds) {
      const options: ScenarioOptions = { days: 2, seed, end: SCENARIO_END, incidents: [{ type }] as ScenarioOptions['incidents'] };
      const truth = scenarioTruth(options);
      const incident = truth.incidents[0]!;
      const store = freshStore();
      try {
        loadScenario(store, options);
        const ranks: string[] = [];
        for (const symptom of [{ ...NOTICED_BY[type] }, {}]) {
          const analysis = analyzeRootCause(store, { start: incident.start_ms, ...symptom });
          const rank = analysis.candidates.findIndex((c) => c.component === incident.root_cause.component);
          total++;
          if (rank === 0) firsts++;
          ranks.push(`${rank < 0 ? 'absent' : `#${rank + 1}`} (${analysis.candidates[0]?.component ?? '-'} ${analysis.candidates[0]?.score ?? ''})`);
        }
        lines.push(`  ${type.padEnd(17)} seed ${String(seed).padEnd(3)} root cause ${incident.root_cause.component.padEnd(12)} named symptom: ${ranks[0]}   start only: ${ranks[1]}`);
      } finally {
        store.close();
      }
    }
  }
  return { lines, firsts, total };
}

// ------------------------------------------------------------------ speed

function runSpeed(): { analysisMs: number; bareMs: number; points: number } {
  const store = freshStore();
  const SERIES = 100;
  const STEP = 10_000;
  const WINDOW = 3_600_000;
  const BASELINE = 24 * 3_600_000;
  const start = Date.UTC(2026, 0, 2, 12);
  let points = 0;
  let batch: TelemetryRecord[] = [];
  for (let ts = start - BASELINE; ts < start + WINDOW; ts += STEP) {
    for (let s = 0; s < SERIES; s++) {
      const shifted = s === 7 && ts >= start + 600_000 ? 40 : 0;
      const value = 100 + 10 * Math.sin(ts / 3_600_000 + s) + ((ts / STEP) * (s + 1) * 7919 % 13) / 4 + shifted;
      batch.push({ type: 'metric', ts, name: `bench.metric.${s % 10}`, component: `service-${Math.floor(s / 10)}`, labels: {}, value });
      points++;
    }
    if (batch.length >= 20_000) {
      store.writeRecords(batch);
      batch = [];
    }
  }
  store.writeRecords(batch);
  const repeats = 5;
  const analysisTimes: number[] = [];
  const bareTimes: number[] = [];
  const bare = store.db.prepare('SELECT ts, value FROM points WHERE series_id = ? AND ts >= ? AND ts < ? ORDER BY ts').raw();
  const ids = store.db.prepare('SELECT id FROM series').pluck().all() as number[];
  for (let r = 0; r < repeats; r++) {
    let t = performance.now();
    let read = 0;
    for (const id of ids) read += bare.all(id, start - BASELINE, start + WINDOW).length;
    bareTimes.push(performance.now() - t);
    if (read !== points) throw new Error(`bare read found ${read} points, expected ${points}`);
    t = performance.now();
    const analysis = analyzeRootCause(store, { start, end: start + WINDOW });
    analysisTimes.push(performance.now() - t);
    if (analysis.candidates[0]?.component !== 'service-0') throw new Error('speed bench: the shifted series was not found first');
  }
  store.close();
  const medianOf = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  return { analysisMs: medianOf(analysisTimes), bareMs: medianOf(bareTimes), points };
}

// ------------------------------------------------------------------ main

const PUBLISHED = [
  ['BARO', '0.99', '0.99'],
  ['NSigma', '0.98', '0.99'],
  ['CIRCA', '0.70', '0.80'],
  ['RCD', '0.63', '0.66'],
  ['random', '0.36', '0.33'],
];

try {
  const f2 = (x: number) => x.toFixed(2);
  const sock = runSockShop();
  const cpu = accuracy(sock.filter((r) => r.fault === 'cpu'));
  const mem = accuracy(sock.filter((r) => r.fault === 'mem'));
  console.log(`Sock Shop RCA (${sock.length} cases, service level, one configuration; symptom = start time only)`);
  console.log('method           CPU AC@1  AC@3  Avg@5 | MEM AC@1  AC@3  Avg@5');
  console.log(`Kiwi                  ${f2(cpu.ac1)}  ${f2(cpu.ac3)}   ${f2(cpu.avg5)} |     ${f2(mem.ac1)}  ${f2(mem.ac3)}   ${f2(mem.avg5)}`);
  for (const [name, c, m] of PUBLISHED) console.log(`${name!.padEnd(16)} (published Avg@5)     ${c} |                  ${m}`);
  const missed = sock.filter((r) => r.rank !== 0);
  for (const r of missed) console.log(`  not first: ${r.name} rank ${r.rank < 0 ? 'absent' : r.rank + 1}, top ${r.top.join(', ')}`);
  const caseMs = sock.map((r) => r.ms).sort((a, b) => a - b);
  console.log(`  analysis time per case: median ${caseMs[Math.floor(caseMs.length / 2)]!.toFixed(1)} ms, max ${caseMs[caseMs.length - 1]!.toFixed(1)} ms`);
  const targetsMet = cpu.avg5 >= 0.95 && mem.avg5 >= 0.95 && cpu.ac1 >= 0.9 && mem.ac1 >= 0.9;
  console.log(`  targets (Avg@5 >= 0.95, AC@1 >= 0.9, both): ${targetsMet ? 'met' : 'NOT met'}`);
  for (const [fault, acc, baro] of [
    ['CPU', cpu, '0.99'],
    ['MEM', mem, '0.99'],
  ] as const) {
    reportResult({
      bench: 'rca',
      measure: `Sock Shop ${fault} faults, AC@1 / AC@3 / Avg@5 (${sock.filter((r) => r.fault === fault.toLowerCase()).length} cases)`,
      value: `${f2(acc.ac1)} / ${f2(acc.ac3)} / ${f2(acc.avg5)}`,
      baseline: `Avg@5 ${baro} (BARO, published)`,
      target: 'AC@1 >= 0.9, Avg@5 >= 0.95',
      ok: acc.ac1 >= 0.9 && acc.avg5 >= 0.95,
    });
  }

  console.log('\nGenerated scenarios (2 days ending 16:00 UTC; rank of the injected root cause)');
  const scenarios = runScenarios([1, 2, 3]);
  for (const line of scenarios.lines) console.log(line);
  console.log(`  root cause first in ${scenarios.firsts} of ${scenarios.total} analyses`);
  reportResult({
    bench: 'rca',
    measure: 'generated scenarios, injected root cause ranked first',
    value: `${scenarios.firsts}/${scenarios.total}`,
    target: 'all',
    ok: scenarios.firsts === scenarios.total,
  });

  const speed = runSpeed();
  console.log(
    `\nSpeed: analysis of 1 h of 100 series (10 s step, default 24 h baseline: ${speed.points.toLocaleString('en')} points) ` +
      `${speed.analysisMs.toFixed(0)} ms (target < 1000 ms); bare read of the same points ${speed.bareMs.toFixed(0)} ms ` +
      `(analysis / bare read = ${(speed.analysisMs / speed.bareMs).toFixed(2)}x)`,
  );
  reportResult({
    bench: 'rca',
    measure: 'analysis of 1 h of 100 series at 10 s, default 24 h baseline',
    value: `${speed.analysisMs.toFixed(0)} ms`,
    baseline: `${speed.bareMs.toFixed(0)} ms (bare read of the same points)`,
    ratio: `${(speed.analysisMs / speed.bareMs).toFixed(2)}x`,
    target: '< 1000 ms',
    ok: speed.analysisMs < 1000,
  });
} finally {
  rmSync(workDir, { recursive: true, force: true });
}
