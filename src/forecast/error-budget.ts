/**
 * Error budget: with an objective error rate over a window (settings), the budget is the errors
 * the window may hold; what is left, spent at the rate of the last hour, lasts this long.
 * The burn rate's interval is the Wilson 95% interval of the last hour's error rate.
 */
import { normalQuantile } from '../stats/distributions.js';
import { iso } from '../time.js';
import { HOUR_MS, hoursText, insufficient, type ChartSpec, type Confidence, type ForecastWithChart } from './types.js';

export const ERROR_BUDGET_MODEL = {
  /** The burn rate is the error rate over the last hour, widened (up to a day) to hold enough requests. */
  burnWindowMs: HOUR_MS,
  maxBurnWindowMs: 24 * HOUR_MS,
  minRecentRequests: 30,
  minHistoryMs: HOUR_MS,
} as const;

export const ERROR_BUDGET_MODEL_NAME =
  'error budget = objective × requests expected in the window; burn at the error rate of the last hour (or of the last 30 requests when the hour holds fewer, up to a day), Wilson 95% interval';

export interface ErrorBudgetInput {
  component: string;
  /** Spans of the component over the window, oldest first. */
  start: readonly number[];
  error: ArrayLike<number>;
  now: number;
  objective: number;
  windowDays: number;
  horizonHours: number;
}

/** Wilson score interval of a binomial proportion. */
export function wilsonInterval(successes: number, trials: number, level = 0.95): { lower: number; upper: number } {
  if (trials === 0) return { lower: 0, upper: 1 };
  const z = normalQuantile(1 - (1 - level) / 2);
  const p = successes / trials;
  const denominator = 1 + (z * z) / trials;
  const center = (p + (z * z) / (2 * trials)) / denominator;
  const half = (z * Math.sqrt((p * (1 - p)) / trials + (z * z) / (4 * trials * trials))) / denominator;
  return { lower: Math.max(0, center - half), upper: Math.min(1, center + half) };
}

export function forecastErrorBudget(input: ErrorBudgetInput): ForecastWithChart {
  const { component, start, error, now, objective, windowDays, horizonHours } = input;
  const windowMs = windowDays * 24 * HOUR_MS;
  const n = start.length;
  const first = n > 0 ? (start[0] as number) : now;
  const span = n > 0 ? { from: iso(first), to: iso(now), points: n } : null;
  const coveredMs = Math.min(windowMs, now - first);
  // The burn window: the last hour, or back to the 30th latest request when the hour is quiet.
  const nthLatest = n >= ERROR_BUDGET_MODEL.minRecentRequests ? (start[n - ERROR_BUDGET_MODEL.minRecentRequests] as number) : -Infinity;
  const burnWindowMs = Math.min(Math.max(ERROR_BUDGET_MODEL.burnWindowMs, now - nthLatest), ERROR_BUDGET_MODEL.maxBurnWindowMs);
  const recentFrom = now - burnWindowMs;
  let recent = 0;
  let recentErrors = 0;
  let errors = 0;
  for (let i = 0; i < n; i++) {
    errors += error[i] as number;
    if ((start[i] as number) >= recentFrom) {
      recent++;
      recentErrors += error[i] as number;
    }
  }
  if (coveredMs < ERROR_BUDGET_MODEL.minHistoryMs || recent < ERROR_BUDGET_MODEL.minRecentRequests) {
    return {
      forecast: insufficient(
        'error_budget',
        component,
        horizonHours,
        ERROR_BUDGET_MODEL_NAME,
        `${ERROR_BUDGET_MODEL.minHistoryMs / HOUR_MS} h of requests and ${ERROR_BUDGET_MODEL.minRecentRequests} in the last day`,
        `${hoursText(Math.max(0, coveredMs) / HOUR_MS)}, ${recent} in the last ${hoursText(burnWindowMs / HOUR_MS)}`,
        span,
      ),
      chart: null,
    };
  }
  // With less history than the window, the window's requests are extrapolated at the rate seen.
  const expectedRequests = (n * windowMs) / coveredMs;
  const budget = objective * expectedRequests;
  const remaining = budget - errors;
  const rate = recentErrors / recent;
  const rateBounds = wilsonInterval(recentErrors, recent);
  const requestsPerHour = (recent * HOUR_MS) / burnWindowMs;
  const hoursAt = (r: number): number => (remaining <= 0 ? 0 : r > 0 ? remaining / (r * requestsPerHour) : Infinity);
  const estimate = hoursAt(rate);
  const exhausted = remaining <= 0;
  const hoursToExhaustion = exhausted
    ? { estimate: 0, lower: 0, upper: 0 }
    : Number.isFinite(estimate)
      ? {
          estimate: round(estimate),
          lower: round(hoursAt(rateBounds.upper)),
          upper: Number.isFinite(hoursAt(rateBounds.lower)) ? round(hoursAt(rateBounds.lower)) : null,
        }
      : null;
  const willExhaust = exhausted || estimate <= horizonHours;
  const confidence: Confidence = coveredMs >= windowMs / 2 && recent >= 200 ? 'high' : coveredMs >= 24 * HOUR_MS && recent >= 50 ? 'medium' : 'low';
  const burn = { estimate: round(rate / objective), lower: round(rateBounds.lower / objective), upper: round(rateBounds.upper / objective) };

  // Chart: budget left over the window (hourly), and its path at the current burn.
  const hourly = Math.max(1, Math.ceil(coveredMs / HOUR_MS));
  const xs: number[] = [];
  const left: number[] = [];
  let spent = 0;
  let i = 0;
  const chartFrom = now - hourly * HOUR_MS;
  while (i < n && (start[i] as number) < chartFrom) spent += error[i++] as number;
  for (let h = 1; h <= hourly; h++) {
    const until = chartFrom + h * HOUR_MS;
    while (i < n && (start[i] as number) < until) spent += error[i++] as number;
    xs.push(until);
    left.push(1 - spent / budget);
  }
  const remainingFraction = remaining / budget;
  const fx: number[] = [];
  const fy: number[] = [];
  const lo: number[] = [];
  const hi: number[] = [];
  const perHour = (r: number) => (r * requestsPerHour) / budget;
  for (let s = 0; s <= 24; s++) {
    const h = (horizonHours * s) / 24;
    fx.push(now + h * HOUR_MS);
    fy.push(remainingFraction - perHour(rate) * h);
    lo.push(remainingFraction - perHour(rateBounds.upper) * h);
    hi.push(remainingFraction - perHour(rateBounds.lower) * h);
  }
  const chart: ChartSpec = {
    title: `${component} error budget: ${exhausted ? 'exhausted' : Number.isFinite(estimate) ? `spent in ${hoursText(estimate)}` : 'not burning'}`,
    unit: 'fraction',
    actual: { xs, ys: left, label: 'BUDGET LEFT' },
    forecast: { xs: fx, ys: fy, label: 'AT CURRENT BURN' },
    band: { xs: fx, lower: lo, upper: hi, label: '95% INTERVAL' },
    threshold: { value: 0, label: 'EXHAUSTED' },
    now,
  };
  const budgetText = exhausted ? 'already spent' : Number.isFinite(estimate) ? `spent in ${hoursText(estimate)}` : 'not being spent (no recent errors)';
  return {
    forecast: {
      target: 'error_budget',
      component,
      status: 'ok',
      model: ERROR_BUDGET_MODEL_NAME,
      data_span: span,
      horizon_hours: horizonHours,
      confidence,
      confidence_basis: `${n} requests over ${hoursText(coveredMs / HOUR_MS)} of the ${windowDays}-day window, ${recent} in the burn window (last ${hoursText(burnWindowMs / HOUR_MS)})`,
      ...(Number.isFinite(estimate) ? { hours_to_failure: round(estimate) } : {}),
      summary:
        `${component}: error rate ${(rate * 100).toFixed(2)}% in the last ${hoursText(burnWindowMs / HOUR_MS)} (objective ${(objective * 100).toPrecision(3)}%, burn ${burnText(burn.estimate)}×); ` +
        `${Math.max(0, Math.round(remainingFraction * 100))}% of the ${windowDays}-day budget left, ${budgetText}` +
        (willExhaust ? ` — BUDGET SPENT within ${horizonHours} h` : ''),
      // no directive fixes errors by itself: analyze_root_cause finds what a person must revert
      suggested_action: null,
      error_budget: {
        objective_error_rate: objective,
        window_days: windowDays,
        requests_in_window: n,
        errors_in_window: errors,
        budget_errors: round(budget),
        budget_remaining_fraction: round(remainingFraction),
        current_error_rate: { estimate: round(rate), lower: round(rateBounds.lower), upper: round(rateBounds.upper) },
        burn_rate: burn,
        hours_to_exhaustion: hoursToExhaustion,
        will_exhaust: willExhaust,
      },
    },
    chart,
  };
}

function round(v: number): number {
  return Number(v.toPrecision(4));
}

/** A burn rate to three figures, and a whole number from 100 on (toPrecision would write 1.00e+3). */
function burnText(burn: number): string {
  return burn >= 100 ? String(Math.round(burn)) : burn.toPrecision(3);
}
