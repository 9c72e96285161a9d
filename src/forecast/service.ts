/**
 * forecast_failure's one entry point (the MCP tool and `kiwi forecast` both call it): reads the
 * store, runs the model of each target for each component that has the data, ranks the answers
 * by urgency and renders the charts of the most urgent ones.
 */
import { totalmem } from 'node:os';
import { readSetting } from '../settings.js';
import { connectionChanges, connectionComponents, connectionStateBefore, spanCoverage, spanSamples } from '../store/forecast.js';
import type { Store } from '../store/store.js';
import { iso } from '../time.js';
import { renderChart } from './chart.js';
import { CONNECTION_MODEL, forecastConnection } from './connection.js';
import { forecastErrorBudget } from './error-budget.js';
import { forecastLatency, LATENCY_MODEL, latencyBuckets } from './latency.js';
import { forecastMemory, MEMORY_MODEL } from './memory.js';
import { FORECAST_TARGETS, HOUR_MS, type Forecast, type ForecastTarget, type ForecastWithChart } from './types.js';

export const MEMORY_METRIC = 'process.memory.usage';

/** Default horizon per target: a day for memory and the error budget, the next hour for latency and connections. */
export const DEFAULT_HORIZON_HOURS: Record<ForecastTarget, number> = { memory: 24, latency: 1, connection: 1, error_budget: 24 };

export const FORECAST_LIMITS = { perTarget: 20, charts: 4, maxHorizonHours: 24 * 30 } as const;

export interface ForecastRequest {
  target: ForecastTarget | 'all';
  component?: string;
  /** Applies to every target asked for; default per target (DEFAULT_HORIZON_HOURS). */
  horizonHours?: number;
  /** Forecast as of this time (epoch ms); default the latest telemetry in the store. */
  now?: number;
  /** Charts to render, the most urgent forecast of each target first (default 1 per target, at most 4). */
  charts?: number;
}

export interface RenderedChart {
  target: ForecastTarget;
  component: string;
  png: Buffer;
}

export interface ForecastResult {
  as_of: string;
  forecasts: Forecast[];
  /** Forecasts left out by the per-target limit. */
  omitted: number;
  charts: RenderedChart[];
}

export function forecastFailure(store: Store, request: ForecastRequest): ForecastResult {
  const targets = request.target === 'all' ? [...FORECAST_TARGETS] : [request.target];
  if (request.horizonHours !== undefined && !(request.horizonHours > 0 && request.horizonHours <= FORECAST_LIMITS.maxHorizonHours)) {
    throw new Error(`horizon: must be more than 0 and at most ${FORECAST_LIMITS.maxHorizonHours} hours`);
  }
  // Each component is forecast from its own latest data (a store may hold a replayed incident
  // next to live self-telemetry), unless a time is given.
  const lastSeen = new Map(store.listComponents().map((c) => [c.name, c.last_seen]));
  const asOf = (component: string, last: number) => request.now ?? Math.min(lastSeen.get(component) ?? last, Date.now());
  const results: { target: ForecastTarget; items: ForecastWithChart[] }[] = [];
  for (const target of targets) {
    const horizonHours = request.horizonHours ?? DEFAULT_HORIZON_HOURS[target];
    const items = runTarget(store, target, request.component, horizonHours, asOf);
    results.push({ target, items: items.sort(byUrgency) });
  }
  if (request.component !== undefined && results.every((r) => r.items.length === 0)) {
    const what = request.target === 'all' ? 'telemetry to forecast from' : dataNeeded(request.target);
    throw new Error(`component: no ${what} for "${request.component}"`);
  }
  let omitted = 0;
  const forecasts: Forecast[] = [];
  const charts: RenderedChart[] = [];
  const chartBudget = Math.min(request.charts ?? targets.length, FORECAST_LIMITS.charts);
  for (const { target, items } of results) {
    omitted += Math.max(0, items.length - FORECAST_LIMITS.perTarget);
    const kept = items.slice(0, FORECAST_LIMITS.perTarget);
    forecasts.push(...kept.map((i) => i.forecast));
    const first = kept.find((i) => i.chart !== null);
    if (first && charts.length < chartBudget) charts.push({ target, component: first.forecast.component, png: renderChart(first.chart!) });
  }
  const times = forecasts.map((f) => f.data_span?.to).filter((t): t is string => t !== undefined).sort();
  return { as_of: times[times.length - 1] ?? iso(request.now ?? Date.now()), forecasts, omitted, charts };
}

function dataNeeded(target: ForecastTarget): string {
  switch (target) {
    case 'memory':
      return `${MEMORY_METRIC} series`;
    case 'latency':
    case 'error_budget':
      return 'requests (spans)';
    case 'connection':
      return 'connection events';
  }
}

type AsOf = (component: string, lastData: number) => number;

function runTarget(store: Store, target: ForecastTarget, component: string | undefined, horizonHours: number, asOf: AsOf): ForecastWithChart[] {
  switch (target) {
    case 'memory':
      return memoryForecasts(store, component, horizonHours, asOf);
    case 'latency':
      return spanCoverage(store.db, component)
        .filter((c) => component !== undefined || c.last >= asOf(c.component, c.last) - LATENCY_MODEL.historyMs)
        .map((c) => {
          const now = asOf(c.component, c.last);
          const from = now - LATENCY_MODEL.historyMs;
          const samples = spanSamples(store.db, c.component, from, now + 1);
          return forecastLatency({
            component: c.component,
            buckets: latencyBuckets(samples.start, samples.durationMs, Math.max(from, c.first), Math.min(now, c.last + 1)),
            horizonHours,
            spikeFactor: readSetting(store, 'forecast.latency_spike_factor'),
          });
        });
    case 'connection':
      return connectionComponents(store.db)
        .filter((c) => component === undefined || c.component === component)
        .map((c) => {
          const now = asOf(c.component, c.last);
          const from = now - CONNECTION_MODEL.lookbackMs;
          return forecastConnection({
            component: c.component,
            changes: connectionChanges(store.db, c.component, from, now + 1),
            before: connectionStateBefore(store.db, c.component, from),
            now,
            from,
            horizonHours,
            alertProbability: readSetting(store, 'forecast.connection_alert_probability'),
          });
        });
    case 'error_budget': {
      const windowMs = readSetting(store, 'forecast.error_budget_window_days') * 24 * HOUR_MS;
      const windowDays = windowMs / (24 * HOUR_MS);
      return spanCoverage(store.db, component)
        .filter((c) => component !== undefined || c.last >= asOf(c.component, c.last) - windowMs)
        .map((c) => {
          const now = asOf(c.component, c.last + 1);
          const from = now - windowMs;
          const samples = spanSamples(store.db, c.component, from, now + 1);
          return forecastErrorBudget({
            component: c.component,
            start: samples.start,
            error: samples.error,
            now,
            objective: readSetting(store, 'forecast.error_rate_objective'),
            windowDays,
            horizonHours,
          });
        });
    }
  }
}

function memoryForecasts(store: Store, component: string | undefined, horizonHours: number, asOf: AsOf): ForecastWithChart[] {
  const limits = readSetting(store, 'forecast.memory_limit_bytes');
  const { series } = store.findSeries({ name: MEMORY_METRIC, component }, 1000);
  // One series per component: the one with the latest data (a component may report several label sets).
  const latest = new Map<string, { id: number; last: number }>();
  for (const s of series) {
    const info = store.describeSeries(s);
    const last = info.last_ts ?? -Infinity;
    const seen = latest.get(s.component);
    if (!seen || last > seen.last) latest.set(s.component, { id: s.id, last });
  }
  const out: ForecastWithChart[] = [];
  for (const [name, { id, last }] of latest) {
    const now = asOf(name, last);
    const from = now - MEMORY_MODEL.lookbackMs;
    if (component === undefined && last < from) continue;
    const { ts, values } = store.readPoints(id, from, now + 1);
    const configured = limits[name];
    out.push(
      forecastMemory({
        component: name,
        ts,
        values,
        limitBytes: configured ?? totalmem(),
        limitSource: configured !== undefined ? 'setting' : 'host_total_memory',
        horizonHours,
      }),
    );
  }
  return out;
}

/** Most urgent first: answered before refused, then the nearest failure, then the likeliest. */
function byUrgency(a: ForecastWithChart, b: ForecastWithChart): number {
  const fa = a.forecast;
  const fb = b.forecast;
  if (fa.status !== fb.status) return fa.status === 'ok' ? -1 : 1;
  const actionA = fa.suggested_action ? 0 : 1;
  const actionB = fb.suggested_action ? 0 : 1;
  if (actionA !== actionB) return actionA - actionB;
  const ha = fa.hours_to_failure ?? Infinity;
  const hb = fb.hours_to_failure ?? Infinity;
  if (ha !== hb) return ha - hb;
  const pa = fa.latency?.spike_probability ?? fa.connection?.probability?.estimate ?? 0;
  const pb = fb.latency?.spike_probability ?? fb.connection?.probability?.estimate ?? 0;
  if (pa !== pb) return pb - pa;
  return fa.component.localeCompare(fb.component);
}
