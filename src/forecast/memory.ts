/**
 * Time to out-of-memory. A process's memory floor (what survives garbage collection) is what a
 * leak raises; the sawtooth of allocation above it is freed at each collection. So the trend is
 * fitted to the hourly minima, after the last restart or level shift, from where growth began
 * (a hinge fit), with Theil–Sen and Sen's 95% interval on the slope. Out-of-memory is the floor
 * reaching the component's limit.
 */
import { hingeStart, levelShifts, theilSenInterval, windowMinima } from '../stats/envelope.js';
import { median } from '../stats/robust.js';
import { respondToMemoryLeak, scaleBeforeFailure } from '../remedies.js';
import { iso } from '../time.js';
import {
  HOUR_MS,
  hoursText,
  insufficient,
  MIB,
  type ChartSpec,
  type Confidence,
  type Forecast,
  type ForecastWithChart,
  type SuggestedAction,
} from './types.js';

export const MEMORY_MODEL = {
  /** Width of the windows whose minima trace the floor. Longer than a GC cycle. */
  windowMs: HOUR_MS,
  /** History read before the last point (two days, so a daily rise can be told from a leak). */
  lookbackMs: 48 * HOUR_MS,
  /** Minima needed after the last restart (one per window). */
  minMinima: 4,
  /** A level shift departs from the neighbouring hourly steps by this many robust sigmas… */
  shiftSigmas: 8,
  /** …and by this share of the floor. */
  shiftFraction: 0.05,
  /** Mann–Kendall significance a growing floor must reach. */
  significance: 0.05,
  /**
   * When the floor of a day ago (same segment) is known, a leak must have raised the floor since
   * by at least this share of what the slope says; a rise that repeats daily (load) does not.
   */
  dayOverDayShare: 0.5,
} as const;

export const MEMORY_MODEL_NAME =
  'Theil–Sen trend of hourly memory minima (the post-GC floor) since the last restart and the onset of growth (hinge fit), Sen 95% interval on the slope';

export interface MemoryInput {
  component: string;
  ts: readonly number[];
  values: readonly number[];
  limitBytes: number;
  limitSource: 'setting' | 'host_total_memory';
  horizonHours: number;
}

export function forecastMemory(input: MemoryInput): ForecastWithChart {
  const { component, ts, values, horizonHours } = input;
  const n = ts.length;
  const minHours = MEMORY_MODEL.minMinima * (MEMORY_MODEL.windowMs / HOUR_MS);
  const span = n > 0 ? { from: iso(ts[0] as number), to: iso(ts[n - 1] as number), points: n } : null;
  const haveHours = n > 1 ? ((ts[n - 1] as number) - (ts[0] as number)) / HOUR_MS : 0;
  if (n < 2 || haveHours < minHours - 0.5) {
    return {
      forecast: insufficient('memory', component, horizonHours, MEMORY_MODEL_NAME, `${minHours} h of process.memory.usage`, `${haveHours.toFixed(1)} h (${n} points)`, span),
      chart: null,
    };
  }
  const now = ts[n - 1] as number;
  const minima = windowMinima(ts, values, MEMORY_MODEL.windowMs);
  const floor = median(minima.ys);
  const shifts = levelShifts(minima.xs, minima.ys, MEMORY_MODEL.windowMs, MEMORY_MODEL.shiftSigmas, MEMORY_MODEL.shiftFraction * Math.abs(floor));
  const segmentStart = shifts.length ? (shifts[shifts.length - 1] as number) : 0;
  const segmentXs = minima.xs.slice(segmentStart);
  const segmentYs = minima.ys.slice(segmentStart);
  if (segmentXs.length < MEMORY_MODEL.minMinima) {
    const since = minima.xs[segmentStart] ?? now;
    return {
      forecast: insufficient(
        'memory',
        component,
        horizonHours,
        MEMORY_MODEL_NAME,
        `${minHours} h of memory since the last restart or level shift (at ${iso(since)})`,
        `${((now - since) / HOUR_MS).toFixed(1)} h since it`,
        span,
      ),
      chart: null,
    };
  }
  const onset = hingeStart(segmentXs, segmentYs, MEMORY_MODEL.minMinima);
  const fitXs = segmentXs.slice(onset);
  const fitYs = segmentYs.slice(onset);
  const fitFrom = fitXs[0] as number;
  // Fit in hours since the fit start and MiB, so the slope reads as MiB per hour.
  const hours = fitXs.map((x) => (x - fitFrom) / HOUR_MS);
  const mib = fitYs.map((y) => y / MIB);
  const trend = theilSenInterval(hours, mib);
  const nowHours = (now - fitFrom) / HOUR_MS;
  const baselineMib = trend.intercept + trend.slope * nowHours;
  const limitMib = input.limitBytes / MIB;
  const dayOverDay = dayOverDayRise(segmentXs, segmentYs, now);
  const expectedRise = trend.slope * Math.min(24, nowHours) * MIB;
  const daily = dayOverDay !== null && trend.slope > 0 && dayOverDay < MEMORY_MODEL.dayOverDayShare * expectedRise;
  const growing = trend.pValue < MEMORY_MODEL.significance && trend.slope > 0 && trend.lower > 0 && !daily;
  const headroom = limitMib - baselineMib;

  let hoursToOom: { estimate: number; lower: number | null; upper: number | null } | null = null;
  if (growing) {
    if (headroom <= 0) hoursToOom = { estimate: 0, lower: 0, upper: 0 };
    else {
      hoursToOom = {
        estimate: headroom / trend.slope,
        lower: headroom / trend.upper,
        upper: trend.lower > 0 ? headroom / trend.lower : null,
      };
    }
  }
  const willOom = hoursToOom !== null && hoursToOom.estimate <= horizonHours;
  const mayOom = hoursToOom !== null && hoursToOom.lower !== null && hoursToOom.lower <= horizonHours;
  const currentMib = (values[n - 1] as number) / MIB;
  const atHorizon = {
    estimate: baselineMib + Math.max(trend.slope, growing ? trend.slope : 0) * horizonHours,
    lower: baselineMib + trend.lower * horizonHours,
    upper: baselineMib + trend.upper * horizonHours,
  };

  const relativeWidth = trend.slope !== 0 ? (trend.upper - trend.lower) / (2 * Math.abs(trend.slope)) : Infinity;
  let confidence: Confidence;
  let basis: string;
  if (growing) {
    confidence = relativeWidth < 0.25 && fitXs.length >= 6 ? 'high' : relativeWidth < 0.5 ? 'medium' : 'low';
    basis = `growth ${round(trend.slope)} MiB/h, 95% interval ±${Math.round(relativeWidth * 100)}% from ${fitXs.length} hourly minima`;
  } else {
    const worstHours = trend.upper > 0 ? headroom / trend.upper : Infinity;
    confidence = worstHours > 2 * horizonHours ? 'high' : worstHours > horizonHours ? 'medium' : 'low';
    basis =
      (daily
        ? `the recent rise of ${round(trend.slope)} MiB/h repeats daily (the floor is ${Math.round(dayOverDay! / MIB)} MiB above a day ago), so it is load, not a leak; `
        : `no significant growth (Mann–Kendall p = ${trend.pValue.toPrecision(2)} over ${fitXs.length} hourly minima); `) +
      `at the upper slope bound ${round(trend.upper)} MiB/h the limit is ${Number.isFinite(worstHours) ? hoursText(worstHours) : 'never'} away`;
  }

  let action: SuggestedAction | null = null;
  if (willOom) {
    action = respondToMemoryLeak(component, null, `out of memory forecast in ${hoursText(hoursToOom!.estimate)}`, Math.max(1, Math.ceil(horizonHours)));
  } else if (mayOom) {
    action = scaleBeforeFailure(component, horizonHours, `out of memory possible within ${horizonHours} h at the upper growth bound`);
  }

  const limitText = `${Math.round(limitMib)} MiB (${input.limitSource === 'setting' ? 'setting forecast.memory_limit_bytes' : "host's total memory"})`;
  const summary = growing
    ? `${component}: memory floor ${Math.round(baselineMib)} MiB growing ${round(trend.slope)} MiB/h (${round(trend.lower)}–${round(trend.upper)}); ` +
      `limit ${limitText} reached in ${hoursText(hoursToOom!.estimate)} (${hoursToOom!.lower === null ? '?' : hoursText(hoursToOom!.lower)}–${hoursToOom!.upper === null ? 'never' : hoursText(hoursToOom!.upper)})` +
      (willOom ? ` — OUT OF MEMORY within ${horizonHours} h` : '')
    : `${component}: memory ${Math.round(currentMib)} MiB, floor ${Math.round(baselineMib)} MiB, no significant growth; no out-of-memory forecast within ${horizonHours} h (limit ${limitText})`;

  const forecast: Forecast = {
    target: 'memory',
    component,
    status: 'ok',
    model: MEMORY_MODEL_NAME,
    data_span: span,
    horizon_hours: horizonHours,
    confidence,
    confidence_basis: basis,
    ...(hoursToOom ? { hours_to_failure: round(hoursToOom.estimate) } : {}),
    summary,
    suggested_action: action,
    memory: {
      will_oom: willOom,
      hours_to_oom: hoursToOom && { estimate: round(hoursToOom.estimate), lower: roundOrNull(hoursToOom.lower), upper: roundOrNull(hoursToOom.upper) },
      current_memory_mb: round(currentMib),
      baseline_memory_mb: round(baselineMib),
      growth_mb_per_hour: { estimate: round(trend.slope), lower: round(trend.lower), upper: round(trend.upper) },
      trend_p_value: Number(trend.pValue.toPrecision(3)),
      limit_mb: round(limitMib),
      limit_source: input.limitSource,
      memory_at_horizon_mb: { estimate: round(atHorizon.estimate), lower: round(atHorizon.lower), upper: round(atHorizon.upper) },
      fitted_from: iso(fitFrom),
      restarts_seen: shifts.length,
    },
  };

  // The chart runs to the horizon, or a little past the forecast out-of-memory when that is sooner.
  const endHours = hoursToOom && hoursToOom.estimate < horizonHours ? Math.max(hoursToOom.estimate * 1.15, 1) : horizonHours;
  const steps = 24;
  const fxs: number[] = [];
  const fys: number[] = [];
  const lower: number[] = [];
  const upper: number[] = [];
  for (let i = 0; i <= steps; i++) {
    const h = (endHours * i) / steps;
    fxs.push(now + h * HOUR_MS);
    fys.push((baselineMib + (growing ? trend.slope : Math.max(0, trend.slope)) * h) * MIB);
    lower.push((baselineMib + trend.lower * h) * MIB);
    upper.push((baselineMib + trend.upper * h) * MIB);
  }
  const chart: ChartSpec = {
    title: `${component} memory: ${willOom ? `out of memory in ${hoursText(hoursToOom!.estimate)}` : growing ? `growing ${round(trend.slope)} MiB/h` : 'no growth'}`,
    unit: 'bytes',
    actual: { xs: [...ts], ys: [...values], label: 'MEMORY' },
    markers: { xs: fitXs, ys: fitYs, label: 'FLOOR (HOURLY MIN)' },
    fitted: { xs: [fitFrom, now], ys: [trend.intercept * MIB, baselineMib * MIB] },
    forecast: { xs: fxs, ys: fys, label: 'FORECAST' },
    band: { xs: fxs, lower, upper, label: '95% INTERVAL' },
    threshold: { value: input.limitBytes, label: `LIMIT ${Math.round(limitMib)} MIB` },
    now,
  };
  return { forecast, chart };
}

/**
 * How much the floor rose over the last day: the median of the minima of the last two hours
 * minus that of the two hours a day earlier; null when the segment does not reach back a day.
 */
function dayOverDayRise(xs: readonly number[], ys: readonly number[], now: number): number | null {
  const around = (from: number, to: number) => ys.filter((_, i) => (xs[i] as number) >= from && (xs[i] as number) <= to);
  const recent = around(now - 2 * HOUR_MS, now);
  const dayAgo = around(now - 26 * HOUR_MS, now - 22 * HOUR_MS);
  if (recent.length === 0 || dayAgo.length === 0) return null;
  return median(recent) - median(dayAgo);
}

function round(v: number): number {
  return Number(v.toPrecision(4));
}

function roundOrNull(v: number | null): number | null {
  return v === null ? null : round(v);
}
