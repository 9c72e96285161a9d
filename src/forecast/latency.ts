/**
 * Request latency over the next hour: the p95 of each five-minute bucket of a component's spans,
 * forecast by a seasonal median (same time of day over the last week) plus a smoothed level
 * correction, weighed against the smoothed level alone by how much of the daily shape past
 * forecasts bore out (a component whose latency has no daily shape gets a level forecast), with
 * intervals and the spike probability taken from this model's own past errors on the same series
 * (stats/seasonal-forecast.ts).
 */
import { quantileOfSorted } from '../stats/robust.js';
import { SeasonalMedianForecaster } from '../stats/seasonal-forecast.js';
import { iso } from '../time.js';
import { HOUR_MS, insufficient, type ChartSpec, type Confidence, type Forecast, type ForecastWithChart } from './types.js';

const MINUTE_MS = 60_000;

export const LATENCY_MODEL = {
  bucketMs: 5 * MINUTE_MS,
  /** Buckets in a day: the seasonal period. */
  periodBuckets: 288,
  /** Days whose same time of day make the seasonal median. */
  cycles: 7,
  levelAlpha: 0.2,
  /** Buckets of recent one-step changes whose spread scales the learned errors (3 hours). */
  scaleWindow: 36,
  /** History read: the cycles plus one day to learn the errors on. */
  historyMs: 8 * 24 * HOUR_MS,
  minHistoryMs: 12 * HOUR_MS,
  /** A bucket with fewer requests has no p95 (treated as missing). */
  minRequests: 3,
  /** Past forecasts needed for intervals and probabilities. */
  minPaths: 50,
  maxHorizonHours: 6,
} as const;

export const LATENCY_MODEL_NAME =
  'p95 of 5-minute buckets; seasonal median (same time of day, last 7 days) plus smoothed level (α 0.2), ' +
  'shrunk towards the smoothed level alone by the share of the daily shape its past forecasts bore out; ' +
  'intervals and spike probability from the empirical distribution of its own past forecast errors (scaled by the recent spread)';

export interface LatencyBuckets {
  /** Bucket starts, consecutive. */
  ts: number[];
  /** p95 in ms, NaN where the bucket had fewer than `minRequests`. */
  p95: number[];
  counts: number[];
}

/** Complete buckets of width `bucketMs` covering [from, to): the p95 duration of the spans starting in each. */
export function latencyBuckets(
  start: readonly number[],
  durationMs: readonly number[],
  from: number,
  to: number,
  bucketMs: number = LATENCY_MODEL.bucketMs,
  minRequests: number = LATENCY_MODEL.minRequests,
): LatencyBuckets {
  const first = Math.ceil(from / bucketMs) * bucketMs;
  const end = Math.floor(to / bucketMs) * bucketMs;
  const count = Math.max(0, (end - first) / bucketMs);
  const groups: number[][] = Array.from({ length: count }, () => []);
  for (let i = 0; i < start.length; i++) {
    const b = Math.floor(((start[i] as number) - first) / bucketMs);
    if (b >= 0 && b < count) (groups[b] as number[]).push(durationMs[i] as number);
  }
  const ts: number[] = [];
  const p95: number[] = [];
  const counts: number[] = [];
  groups.forEach((g, b) => {
    ts.push(first + b * bucketMs);
    counts.push(g.length);
    if (g.length < minRequests) p95.push(NaN);
    else p95.push(quantileOfSorted(Float64Array.from(g).sort(), 0.95));
  });
  return { ts, p95, counts };
}

export interface LatencyInput {
  component: string;
  buckets: LatencyBuckets;
  horizonHours: number;
  /** Spike = latency above this multiple of the current level (default 1.5). */
  spikeFactor: number;
}

export function forecastLatency(input: LatencyInput): ForecastWithChart {
  const { component, buckets, spikeFactor } = input;
  const horizonHours = Math.min(input.horizonHours, LATENCY_MODEL.maxHorizonHours);
  const bucketMs = LATENCY_MODEL.bucketMs;
  const n = buckets.ts.length;
  const valid = buckets.p95.filter((v) => !Number.isNaN(v)).length;
  const span = n > 0 ? { from: iso(buckets.ts[0] as number), to: iso((buckets.ts[n - 1] as number) + bucketMs), points: valid } : null;
  const haveMs = n * bucketMs;
  if (haveMs < LATENCY_MODEL.minHistoryMs || valid < LATENCY_MODEL.minPaths + 12) {
    return {
      forecast: insufficient(
        'latency',
        component,
        horizonHours,
        LATENCY_MODEL_NAME,
        `${LATENCY_MODEL.minHistoryMs / HOUR_MS} h of requests (spans), at least ${LATENCY_MODEL.minPaths + 12} five-minute buckets with ${LATENCY_MODEL.minRequests}+ requests`,
        `${(haveMs / HOUR_MS).toFixed(1)} h, ${valid} such buckets`,
        span,
      ),
      chart: null,
    };
  }
  const steps = Math.max(1, Math.ceil((horizonHours * HOUR_MS) / bucketMs));
  const spikes = new SpikeForecaster(steps, spikeFactor);
  const model = spikes.model;
  for (const v of buckets.p95) spikes.update(v);

  const lastHour = buckets.p95.slice(-Math.round(HOUR_MS / bucketMs)).filter((v) => !Number.isNaN(v));
  if (lastHour.length === 0) {
    return {
      forecast: insufficient('latency', component, horizonHours, LATENCY_MODEL_NAME, `requests in the last hour`, 'none', span),
      chart: null,
    };
  }
  const current = quantileOfSorted(Float64Array.from(lastHour).sort(), 0.5);
  const threshold = current * spikeFactor;
  const forecast = model.forecast();
  const interval = model.interval(0.95, LATENCY_MODEL.minPaths);
  const probability = spikes.probability(threshold);
  if (interval === null || probability === null) {
    return {
      forecast: insufficient(
        'latency',
        component,
        horizonHours,
        LATENCY_MODEL_NAME,
        `${LATENCY_MODEL.minPaths} past forecasts of the model to learn its errors from`,
        `${model.resolvedOrigins}`,
        span,
      ),
      chart: null,
    };
  }
  const origin = (buckets.ts[n - 1] as number) + bucketMs;
  let peak = 0;
  forecast.forEach((f, h) => {
    if (f > (forecast[peak] as number)) peak = h;
  });
  const predicted = forecast.map((f, h) => ({
    at: iso(origin + h * bucketMs),
    ms: round(f),
    lower: round(Math.max(0, interval[h]!.lower)),
    upper: round(interval[h]!.upper),
  }));
  const paths = model.resolvedOrigins;
  const confidence: Confidence = model.seasonal && paths >= 500 ? 'high' : paths >= 200 ? 'medium' : 'low';
  const basis =
    `${model.seasonal ? `seasonal (daily) model, season weight ${model.seasonalWeight.toFixed(2)}` : 'level model (no daily season yet: needs 2 days)'}; ` +
    `errors learned from ${Math.min(paths, 1000)} past forecasts over ${valid} buckets`;
  const result: Forecast = {
    target: 'latency',
    component,
    status: 'ok',
    model: LATENCY_MODEL_NAME,
    data_span: span,
    horizon_hours: horizonHours,
    confidence,
    confidence_basis: basis,
    summary:
      `${component}: p95 latency now ${round(current)} ms, forecast peak ${round(forecast[peak] as number)} ms ` +
      `(95% ${round(Math.max(0, interval[peak]!.lower))}–${round(interval[peak]!.upper)}) in the next ${horizonHours} h; ` +
      `P(above ${round(threshold)} ms = ${spikeFactor}× now) = ${(probability * 100).toFixed(1)}%`,
    // auto_heal_anomaly acts on a spike detection confirms; a forecast one has not happened yet
    suggested_action: null,
    latency: {
      statistic: 'p95',
      bucket_minutes: bucketMs / MINUTE_MS,
      current_ms: round(current),
      threshold_ms: round(threshold),
      predicted_latency: { estimate: round(forecast[peak] as number), lower: round(Math.max(0, interval[peak]!.lower)), upper: round(interval[peak]!.upper) },
      predicted,
      spike_probability: Number(probability.toPrecision(3)),
      seasonal: model.seasonal,
    },
  };
  const shown = Math.min(n, Math.round((12 * HOUR_MS) / bucketMs));
  const mid = (t: number) => t + bucketMs / 2;
  const fxs = forecast.map((_, h) => mid(origin + h * bucketMs));
  const chart: ChartSpec = {
    title: `${component} p95 latency: ${(probability * 100).toFixed(0)}% chance above ${round(threshold)} ms in ${horizonHours} h`,
    unit: 'ms',
    actual: { xs: buckets.ts.slice(-shown).map(mid), ys: buckets.p95.slice(-shown), label: 'P95 (5 MIN)' },
    forecast: { xs: fxs, ys: forecast, label: 'FORECAST' },
    band: { xs: fxs, lower: interval.map((b) => Math.max(0, b.lower)), upper: interval.map((b) => b.upper), label: '95% INTERVAL' },
    threshold: { value: threshold, label: `SPIKE ${spikeFactor}X NOW = ${round(threshold)} MS` },
    now: origin,
  };
  return { forecast: result, chart };
}

function round(v: number): number {
  return Number(v.toPrecision(4));
}

/**
 * The latency model and the spike question asked of it: the threshold is `spikeFactor` × the
 * median p95 of the last hour; the probability is the model's exceedance over the next `steps`
 * buckets. The bench and the service run this same procedure.
 */
export class SpikeForecaster {
  readonly model: SeasonalMedianForecaster;
  private readonly values: number[] = [];

  constructor(
    readonly steps: number,
    readonly spikeFactor: number,
  ) {
    this.model = new SeasonalMedianForecaster({
      period: LATENCY_MODEL.periodBuckets,
      horizon: steps,
      cycles: LATENCY_MODEL.cycles,
      levelAlpha: LATENCY_MODEL.levelAlpha,
      scaleWindow: LATENCY_MODEL.scaleWindow,
    });
  }

  update(value: number): void {
    this.model.update(value);
    this.values.push(value);
    if (this.values.length > 2 * LATENCY_MODEL.periodBuckets) this.values.splice(0, LATENCY_MODEL.periodBuckets);
  }

  /** The spike threshold now: `spikeFactor` × the median of the last hour (null without data). */
  threshold(): number | null {
    const recent = this.values.slice(-Math.round(HOUR_MS / LATENCY_MODEL.bucketMs)).filter(Number.isFinite);
    if (recent.length === 0) return null;
    const current = quantileOfSorted(Float64Array.from(recent).sort(), 0.5);
    return current + (this.spikeFactor - 1) * Math.abs(current);
  }

  /** P(above `threshold` at least once within the next `steps` buckets), or null without enough past forecasts. */
  probability(threshold: number): number | null {
    return this.model.exceedanceProbability(threshold, this.steps, LATENCY_MODEL.minPaths);
  }
}
