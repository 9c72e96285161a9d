/**
 * `npm run bench:detect-loop`: how long detection holds the event loop on a week-long lookback.
 *
 * A generated week of an agent platform with five incidents (as `kiwi demo` seeds) is judged with
 * a 7-day lookback, 15 minutes after its last record. The baseline, measured in the same run, is
 * `detectAnomalies`, which holds the event loop from start to end; against it, the longest single
 * block of the loop during `detectAnomaliesAsync` (what the MCP tool calls: it yields between
 * units of work), seen by a 1 ms interval timer, and its total time. Each figure is the median of
 * ROUNDS, each on a fresh copy of the store (detection records what it finds).
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectAnomalies, detectAnomaliesAsync, type DetectOptions } from '../src/detect/service.js';
import { INCIDENT_TYPES, writeScenario } from '../src/generate/index.js';
import { ingestFile } from '../src/ingest/ingest.js';
import { Store } from '../src/store/store.js';
import { reportResult } from './result.js';

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;
const END = Date.UTC(2026, 10, 18, 16, 0);
const ROUNDS = 5;
const dir = mkdtempSync(join(tmpdir(), 'kiwi-bench-detect-loop-'));

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** Runs `work` under a 1 ms interval timer: its total time and the longest gap between the timer's ticks. */
async function probed(work: () => Promise<unknown>): Promise<{ total: number; longestBlock: number }> {
  let last = performance.now();
  let longest = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
  }, 1);
  await new Promise((resolve) => setTimeout(resolve, 10));
  last = performance.now();
  longest = 0;
  const started = performance.now();
  await work();
  const total = performance.now() - started;
  await new Promise((resolve) => setTimeout(resolve, 5));
  clearInterval(timer);
  return { total, longestBlock: longest };
}

async function main(): Promise<void> {
  console.log('generating and ingesting a week of an agent platform with five incidents ...');
  const file = join(dir, 'week.jsonl');
  await writeScenario({ days: 7, seed: 7, end: END, stepMs: MINUTE, incidents: INCIDENT_TYPES.map((type) => ({ type })) }, file);
  const seeded = join(dir, 'seeded.db');
  const store = new Store(seeded);
  await ingestFile(store, file);
  store.close();
  rmSync(file);

  const options: DetectOptions = { now: END + 15 * MINUTE, lookbackMs: 7 * DAY };
  const straight: { total: number; longestBlock: number }[] = [];
  const yielding: { total: number; longestBlock: number }[] = [];
  let found = 0;
  for (let round = 0; round < ROUNDS; round++) {
    // alternate which goes first, so neither always runs on a warmer process
    for (const mode of round % 2 === 0 ? (['straight', 'yielding'] as const) : (['yielding', 'straight'] as const)) {
      const copy = join(dir, `${mode}-${round}.db`);
      copyFileSync(seeded, copy);
      const s = new Store(copy);
      const figures = await probed(async () => {
        // setImmediate first, so the timer ticks before the work starts in both modes
        await new Promise((resolve) => setImmediate(resolve));
        found = mode === 'straight' ? detectAnomalies(s, options).anomalies.length : (await detectAnomaliesAsync(s, options)).anomalies.length;
      });
      (mode === 'straight' ? straight : yielding).push(figures);
      s.close();
      rmSync(copy, { force: true });
    }
  }
  const baseline = median(straight.map((f) => f.total));
  const block = median(yielding.map((f) => f.longestBlock));
  const total = median(yielding.map((f) => f.total));
  console.log('');
  console.log(`| detect, 7-day lookback, generated week (${found} found), median of ${ROUNDS} | value | baseline (same run) | ratio |`);
  console.log('| --- | --- | --- | --- |');
  console.log(`| longest event-loop block, detectAnomaliesAsync | ${block.toFixed(0)} ms | detectAnomalies holds it ${baseline.toFixed(0)} ms | ${(block / baseline).toFixed(3)}x |`);
  console.log(`| total time, detectAnomaliesAsync | ${total.toFixed(0)} ms | detectAnomalies ${baseline.toFixed(0)} ms | ${(total / baseline).toFixed(2)}x |`);
  reportResult({
    bench: 'detect-loop',
    measure: 'longest event-loop block during a 7-day detect_anomalies',
    value: `${block.toFixed(0)} ms`,
    baseline: `${baseline.toFixed(0)} ms (detectAnomalies, start to end)`,
    ratio: `${(block / baseline).toFixed(3)}x`,
  });
  reportResult({
    bench: 'detect-loop',
    measure: 'total time of a 7-day detect_anomalies that yields',
    value: `${total.toFixed(0)} ms`,
    baseline: `${baseline.toFixed(0)} ms (detectAnomalies, start to end)`,
    ratio: `${(total / baseline).toFixed(2)}x`,
  });
  rmSync(dir, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  rmSync(dir, { recursive: true, force: true });
  console.error(err);
  process.exit(1);
});
