/** What every forecast answers, whatever it forecasts. */

export const FORECAST_TARGETS = ['memory', 'latency', 'connection', 'error_budget'] as const;
export type ForecastTarget = (typeof FORECAST_TARGETS)[number];

export type { SuggestedAction } from '../remedies.js';
import type { SuggestedAction } from '../remedies.js';

export type Confidence = 'high' | 'medium' | 'low';

export interface Span {
  from: string;
  to: string;
  /** Observations the model used (points, buckets, up-times, requests). */
  points: number;
}

/** A value with its interval, in the unit the field's name says. */
export interface Estimate {
  estimate: number;
  lower: number | null;
  upper: number | null;
}

export interface MemoryDetail {
  will_oom: boolean;
  /** Null when memory is not growing significantly. */
  hours_to_oom: Estimate | null;
  current_memory_mb: number;
  /** Memory that survives collection now (the floor the trend is fitted to). */
  baseline_memory_mb: number;
  growth_mb_per_hour: Estimate;
  /** Mann–Kendall p-value of "no trend" in the floor. */
  trend_p_value: number;
  limit_mb: number;
  limit_source: 'setting' | 'host_total_memory';
  /** The floor predicted at the horizon, with its interval. */
  memory_at_horizon_mb: Estimate;
  /** Start of the segment the trend was fitted on (growth start, or the last restart). */
  fitted_from: string;
  restarts_seen: number;
}

export interface LatencyDetail {
  statistic: 'p95';
  bucket_minutes: number;
  current_ms: number;
  threshold_ms: number;
  /** Highest point forecast over the horizon, and the bucket forecasts themselves. */
  predicted_latency: Estimate;
  predicted: { at: string; ms: number; lower: number | null; upper: number | null }[];
  spike_probability: number;
  seasonal: boolean;
}

export interface ConnectionDetail {
  connected: boolean;
  current_uptime_hours: number;
  mtbf_hours: number | null;
  failures_seen: number;
  probability: Estimate | null;
  may_fail_soon: boolean;
  /** Weibull shape (k > 1: drops get likelier the longer it stays up); null for the exponential. */
  weibull_shape: number | null;
}

export interface ErrorBudgetDetail {
  objective_error_rate: number;
  window_days: number;
  requests_in_window: number;
  errors_in_window: number;
  budget_errors: number;
  budget_remaining_fraction: number;
  current_error_rate: Estimate;
  burn_rate: Estimate;
  hours_to_exhaustion: Estimate | null;
  will_exhaust: boolean;
}

export interface Forecast {
  target: ForecastTarget;
  component: string;
  status: 'ok' | 'insufficient_history';
  /** The model, in words, with its parameters. */
  model: string;
  data_span: Span | null;
  horizon_hours: number;
  confidence: Confidence | null;
  confidence_basis: string;
  /** Hours until the failure this target forecasts, when one is forecast (absent otherwise). */
  hours_to_failure?: number;
  summary: string;
  suggested_action: SuggestedAction | null;
  /** With too little history: what is needed and what there is. */
  needs?: { need: string; have: string };
  memory?: MemoryDetail;
  latency?: LatencyDetail;
  connection?: ConnectionDetail;
  error_budget?: ErrorBudgetDetail;
}

/** What a chart shows, in data units; `chart.ts` turns it into pixels. */
export interface ChartSpec {
  title: string;
  unit: 'bytes' | 'ms' | 'probability' | 'fraction';
  actual: { xs: number[]; ys: number[]; label: string };
  /** Points the model was fitted to, drawn as dots (e.g. memory minima). */
  markers?: { xs: number[]; ys: number[]; label: string };
  fitted?: { xs: number[]; ys: number[] };
  forecast: { xs: number[]; ys: number[]; label: string };
  band?: { xs: number[]; lower: number[]; upper: number[]; label: string };
  threshold?: { value: number; label: string };
  now: number;
}

export interface ForecastWithChart {
  forecast: Forecast;
  chart: ChartSpec | null;
}

export function insufficient(
  target: ForecastTarget,
  component: string,
  horizonHours: number,
  model: string,
  need: string,
  have: string,
  span: Span | null,
): Forecast {
  return {
    target,
    component,
    status: 'insufficient_history',
    model,
    data_span: span,
    horizon_hours: horizonHours,
    confidence: null,
    confidence_basis: 'no forecast: too little history',
    summary: `${component}: not enough history for ${target === 'error_budget' ? 'an error budget' : `a ${target}`} forecast — need ${need}, have ${have}`,
    suggested_action: null,
    needs: { need, have },
  };
}

export const HOUR_MS = 3_600_000;
export const MIB = 1_048_576;

export function hoursText(hours: number): string {
  if (!Number.isFinite(hours)) return 'never';
  if (hours < 1) return `${Math.round(hours * 60)} min`;
  if (hours < 48) return `${hours.toFixed(1)} h`;
  return `${(hours / 24).toFixed(1)} d`;
}
