/**
 * memory_leak (steady growth of process memory) and the generic check (any other series that
 * leaves its baseline: a spike, a dip or a level shift).
 */
import { normalTwoSidedTail } from '../../stats/distributions.js';
import { hingeStart, levelShifts } from '../../stats/envelope.js';
import { iso } from '../../time.js';
import { toSignificant } from '../../stats/precision.js';
import { MAD_TO_SIGMA, median, quantileOfSorted, sortedCopy } from '../../stats/robust.js';
import { mannKendall, theilSen } from '../../stats/trend.js';
import type { SeriesRow } from '../../store/store.js';
import type { Points } from '../../store/detect.js';
import {
  baselineWindow,
  clock,
  elevatedRun,
  evidenceNumber,
  hoursText,
  judgedPart,
  scoreOfP,
  severityFor,
  windowAfter,
  thinBaseline,
  type Check,
  type CheckFinding,
  type CheckOutput,
  type DetectionContext,
  type JudgedPart,
  type SignalRef,
  type Steps,
} from '../context.js';

export const MEMORY_METRIC = 'process.memory.usage';
/** Series other checks own, or that are per-operation samples rather than a signal over time. */
const NOT_GENERIC = new Set([MEMORY_METRIC, 'mcp.server.operation.duration', 'mcp.server.operation.errors']);

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** A leak is judged over at least this long, whatever the lookback: GC sawtooth hides an hour's growth. */
const LEAK_WINDOW_MS = 6 * HOUR;
const LEAK_BUCKETS = 24;
const MIN_LEAK_BUCKETS = 12;
const MIN_GROWTH_PCT_PER_HOUR = 1;
/** A single jump may make at most this share of the rise: a leak grows steadily. */
const MAX_SHARE_OF_ONE_STEP = 0.5;
/**
 * Over a span longer than LEAK_WINDOW_MS, the trailing segment (after the last restart or level
 * shift, from where growth began) is found from hourly minima, as the memory forecast finds it:
 * an hour holds a garbage collection, a quarter of one need not.
 */
const SEGMENT_BUCKET_MS = HOUR;
/** A floor that drops or jumps by this many robust sigmas, and by this share of it, is a restart or level shift (as the memory forecast). */
const SHIFT_SIGMAS = 8;
const SHIFT_FRACTION = 0.05;

const MIN_BASELINE_POINTS = 30;
const SHIFT_TAIL = 0.01;
const MIN_SHIFT_Z = 3;
/** Without a day of history a daily ramp looks like a shift: then only a large one counts. */
const MIN_SHIFT_Z_WITHOUT_SEASON = 8;
const MIN_SPIKE_Z = 6;
const MIN_SPIKE_Z_WITHOUT_SEASON = 12;
/** A spike must be a new extreme for this long a history, not just for the recent baseline. */
const SPIKE_HISTORY_MS = DAY;

function seriesFor(ctx: DetectionContext, name: string | undefined): SeriesRow[] {
  return ctx.store.findSeries({ ...(name ? { name } : {}), ...(ctx.component ? { component: ctx.component } : {}) }, 100_000).series;
}

/** The lowest point of each of `count` buckets over [from, to), where it has one: the floor left after garbage collection. */
function bucketLows(ctx: DetectionContext, seriesId: number, from: number, to: number, count: number): { x: number; y: number }[] {
  const width = (to - from) / count;
  const lows: { x: number; y: number }[] = [];
  for (let b = 0; b < count; b++) {
    // [from + b * width, from + (b + 1) * width) as it is summed here, and never past `to`
    const low = ctx.reads.extremes(seriesId, from + b * width, Math.min(from + (b + 1) * width, to))?.min;
    if (low !== undefined) lows.push({ x: from + (b + 0.5) * width, y: low });
  }
  return lows;
}

/**
 * Where the trailing segment of a memory floor begins within [from, to): after the last restart or
 * level shift, and from where growth began (a hinge fit), but never less than LEAK_WINDOW_MS
 * before `to`. A leak of the last 12 hours is judged over those 12 hours, not over a week of flat
 * memory before it. `since` is where the last restart or level shift left it (null: none), and
 * `starts` how many hinge points were tried (the test is corrected for them).
 */
function trailingSegment(ctx: DetectionContext, seriesId: number, from: number, to: number): { from: number; since: number | null; starts: number } {
  // Six hours are judged as they always were: a restart in them fails the steadiness rules.
  if (to - from <= LEAK_WINDOW_MS) return { from, since: null, starts: 1 };
  const { xs, ys, width } = hourlyLows(ctx, seriesId, from, to);
  const cut = lastShift(xs, ys, width);
  const since = cut > 0 ? xs[cut]! - width / 2 : null;
  const segXs = xs.slice(cut);
  const segYs = ys.slice(cut);
  // The growth onset, with at least LEAK_WINDOW_MS of minima after it.
  const minAfter = Math.ceil(LEAK_WINDOW_MS / width);
  if (segXs.length <= minAfter) return { from: Math.max(from, since ?? from), since, starts: 1 };
  const knot = hingeStart(segXs, segYs, minAfter);
  return { from: Math.min(to - LEAK_WINDOW_MS, segXs[knot]! - width / 2), since, starts: segXs.length - minAfter + 1 };
}

/** Minima of the hours (SEGMENT_BUCKET_MS) ending at `to` back to `from`, at their buckets' centres. */
function hourlyLows(ctx: DetectionContext, seriesId: number, from: number, to: number): { xs: number[]; ys: number[]; width: number } {
  const count = Math.max(1, Math.floor((to - from) / SEGMENT_BUCKET_MS));
  const lows = bucketLows(ctx, seriesId, to - count * SEGMENT_BUCKET_MS, to, count);
  return { xs: lows.map((l) => l.x), ys: lows.map((l) => l.y), width: SEGMENT_BUCKET_MS };
}

/** Index of the first minimum after the last restart or level shift; 0 for none. */
function lastShift(xs: number[], ys: number[], width: number): number {
  if (xs.length < 3) return 0;
  const shifts = levelShifts(xs, ys, width, SHIFT_SIGMAS, SHIFT_FRACTION * Math.abs(median(ys)));
  return shifts.length ? shifts[shifts.length - 1]! : 0;
}

export const memoryLeak: Check = {
  name: 'memory_leak',
  types: ['memory_leak'],
  *run(ctx): Steps<CheckOutput> {
    const findings: CheckFinding[] = [];
    const examined: string[] = [];
    const spanFrom = ctx.now - Math.max(LEAK_WINDOW_MS, ctx.now - ctx.windowStart);
    for (const series of seriesFor(ctx, MEMORY_METRIC)) {
      yield;
      const last = ctx.reads.lastPoint(series.id, spanFrom, ctx.now);
      if (!last) continue;
      const fingerprint = `memory_leak|${series.component}`;
      const signal: SignalRef = { check: 'memory_leak', fingerprint, component: series.component, series_id: series.id, signal: describeSeries(series) };
      // Examined whenever it has data: an open leak not found again is judged by `healed`, which
      // leaves it open while too little memory since it was last seen shows it over.
      examined.push(fingerprint);
      const segment = trailingSegment(ctx, series.id, spanFrom, ctx.now);
      const from = segment.from;
      const span = ctx.now - from;
      // Judged as ever: the post-GC lows of LEAK_BUCKETS buckets over the trailing segment.
      const lows = bucketLows(ctx, series.id, from, ctx.now, LEAK_BUCKETS).map((l) => ({ x: (l.x - from) / HOUR, y: l.y }));
      if (span < LEAK_WINDOW_MS - 1 || lows.length < MIN_LEAK_BUCKETS) {
        ctx.notJudged.push({
          ...signal,
          from: ctx.windowStart,
          to: ctx.now,
          reason: 'short_segment',
          detail:
            (segment.since !== null ? `${hoursText(ctx.now - segment.since)} of memory since the restart or level shift at ${iso(segment.since)}` : `too little memory data`) +
            `; a trend needs ${hoursText(LEAK_WINDOW_MS)}`,
        });
        continue;
      }
      const ys = lows.map((l) => l.y);
      const trend = mannKendall(ys);
      if (trend.trend !== 'increasing') continue;
      const fit = theilSen(ys, lows.map((l) => l.x));
      const startLevel = fit.intercept + fit.slope * lows[0]!.x;
      const growthPct = startLevel > 0 ? (fit.slope / startLevel) * 100 : 0;
      const rise = fit.slope * (lows[lows.length - 1]!.x - lows[0]!.x);
      let largestStep = 0;
      for (let k = 1; k < ys.length; k++) largestStep = Math.max(largestStep, ys[k]! - ys[k - 1]!);
      const steady = rise > 0 && largestStep <= MAX_SHARE_OF_ONE_STEP * rise && growsInEachThird(lows);
      // one-sided (growth only), and corrected for the segment starts the hinge chose among
      const p = Math.min(1, (trend.pValue / 2) * segment.starts);
      const score = scoreOfP(p);
      if (!steady || growthPct < MIN_GROWTH_PCT_PER_HOUR || score < ctx.minScore) continue;
      const current = last.value;
      findings.push({
        fingerprint,
        type: 'memory_leak',
        severity: severityFor(score, growthPct >= 10),
        component: series.component,
        series_id: series.id,
        description:
          `${series.component} memory grows steadily, ${growthPct.toFixed(1)}%/h (${(fit.slope / 2 ** 20).toFixed(1)} MiB/h) ` +
          `over the last ${Math.round(span / HOUR)} h; now ${(current / 2 ** 20).toFixed(0)} MiB`,
        start_ts: from,
        end_ts: last.ts,
        score,
        magnitude: growthPct,
        evidence: {
          growth_pct_per_hour: toSignificant(growthPct, 4),
          growth_bytes_per_hour: Math.round(fit.slope),
          current_bytes: current,
          window_hours: toSignificant(span / HOUR, 3),
          trend_test: { test: 'Mann-Kendall on post-GC lows', tau: toSignificant(trend.tau, 3), p_value: p, buckets: lows.length, starts_tried: segment.starts },
          largest_single_step_share: toSignificant(largestStep / rise, 3),
          ...(segment.since !== null ? { since_restart: iso(segment.since) } : {}),
        },
      });
    }
    return { findings, examined };
  },
  /**
   * The floor since `after`, after any restart (a restart frees the memory, not the leak): a leak
   * is over when it grows significantly slower than half its rate, and back when it grows
   * significantly faster than half, over at least MIN_FLOOR_LOWS hourly minima (see healedBy).
   */
  *since(ctx, anomaly, after) {
    const growth = evidenceNumber(anomaly, 'growth_bytes_per_hour');
    if (growth === null || anomaly.series_id === null) return null;
    if (!(growth > 0)) return { test: 'floor', hours: [], lows: [], growthPerHour: growth };
    const spanFrom = ctx.now - Math.max(LEAK_WINDOW_MS, ctx.now - ctx.windowStart);
    const { xs, ys, width } = hourlyLows(ctx, anomaly.series_id, spanFrom, ctx.now);
    const cut = lastShift(xs, ys, width);
    const hours: number[] = [];
    const lows: number[] = [];
    for (let i = cut; i < xs.length; i++) {
      if (xs[i]! <= after) continue;
      hours.push(xs[i]! / HOUR);
      lows.push(ys[i]!);
    }
    return { test: 'floor', hours, lows, growthPerHour: growth };
  },
};

/** Growth spread over the window, not one step: each third's own slope is positive. */
function growsInEachThird(points: { x: number; y: number }[]): boolean {
  const third = Math.floor(points.length / 3);
  for (let k = 0; k < 3; k++) {
    const part = points.slice(k * third, k === 2 ? points.length : (k + 1) * third);
    if (part.length < 3 || theilSen(part.map((p) => p.y), part.map((p) => p.x)).slope <= 0) return false;
  }
  return true;
}

interface Baseline {
  median: number;
  sigma: number;
  low: number;
  high: number;
  qLow: number;
  qHigh: number;
}

function baselineOf(values: number[]): Baseline | null {
  if (values.length < MIN_BASELINE_POINTS) return null;
  const sorted = sortedCopy(values);
  const center = quantileOfSorted(sorted, 0.5);
  const deviations = new Float64Array(sorted.length);
  let meanAbs = 0;
  for (let i = 0; i < sorted.length; i++) {
    deviations[i] = Math.abs(sorted[i]! - center);
    meanAbs += deviations[i]!;
  }
  meanAbs /= sorted.length;
  const madValue = quantileOfSorted(deviations.sort(), 0.5);
  // MAD is zero on quantised or mostly-flat data; the mean deviation and a relative floor keep the scale honest.
  const sigma = Math.max(MAD_TO_SIGMA * madValue, 1.2533 * meanAbs, Math.abs(center) * 1e-3, 1e-12);
  return {
    median: center,
    sigma,
    low: sorted[0]!,
    high: sorted[sorted.length - 1]!,
    qLow: quantileOfSorted(sorted, SHIFT_TAIL),
    qHigh: quantileOfSorted(sorted, 1 - SHIFT_TAIL),
  };
}

export const genericSeries: Check = {
  name: 'generic',
  types: ['spike', 'dip', 'level_shift'],
  *run(ctx): Steps<CheckOutput> {
    const findings: CheckFinding[] = [];
    const examined: string[] = [];
    for (const series of seriesFor(ctx, undefined)) {
      if (NOT_GENERIC.has(series.name)) continue;
      yield;
      // A series with nothing in the window has nothing to judge.
      if (!ctx.reads.extremes(series.id, ctx.windowStart, ctx.now)) continue;
      const fingerprint = `generic|${series.id}`;
      const signal: SignalRef = { check: 'generic', fingerprint, component: series.component, series_id: series.id, signal: describeSeries(series) };
      const part = judgedPart(ctx, signal, ctx.reads.firstPoint(series.id), ctx.windowStart - ctx.baselineStart);
      if (!part) continue;
      // The baseline first: without one, the window (a week of points, with a long lookback) need not be read.
      const basePoints = yield* ctx.reads.points(series.id, part.baselineFrom, part.from);
      const recent = baselineOf(basePoints.values);
      if (!recent) {
        thinBaseline(ctx, signal, part.from, `its baseline from ${iso(part.baselineFrom)} holds ${basePoints.values.length} points, ${MIN_BASELINE_POINTS} needed`);
        continue;
      }
      const window = yield* ctx.reads.points(series.id, part.from, ctx.now);
      if (window.ts.length < 3) continue;
      examined.push(fingerprint);
      // The same hours a day earlier, when they exist: a daily rise is not a shift.
      const seasonal = baselineOf((yield* ctx.reads.points(series.id, part.from - DAY - HOUR / 2, ctx.now - DAY + HOUR / 2)).values);
      const finding = levelShift(series, window, recent, seasonal, ctx, part) ?? spike(series, window, recent, seasonal, ctx, part);
      if (finding) findings.push(finding);
    }
    return { findings, examined };
  },
  /**
   * The points since `after` against halfway between the anomaly's level and the usual one: the
   * share beyond halfway is at least half while it lasts (its level is the median of the shifted
   * run). It is over when that share is significantly (p < HEALED_P) below a half (five points back
   * to usual close it), and back when it is significantly above.
   */
  *since(ctx, anomaly, after) {
    const usual = evidenceNumber(anomaly, 'baseline_median');
    const level = evidenceNumber(anomaly, 'level') ?? evidenceNumber(anomaly, 'value');
    if (usual === null || level === null || anomaly.series_id === null) return null;
    // as a rate test: hits beyond halfway, the anomaly's rate 1 and the usual 0, so its halfway is a half
    if (level === usual) return { test: 'rate', hits: 0, trials: 0, rate: 0, usual: 0 };
    const since = (yield* ctx.reads.points(anomaly.series_id, windowAfter(ctx, after), ctx.now)).values;
    const halfway = (level + usual) / 2;
    let beyond = 0;
    for (const v of since) if (level > usual ? v > halfway : v < halfway) beyond++;
    return { test: 'rate', hits: beyond, trials: since.length, rate: 1, usual: 0 };
  },
};

function describeSeries(series: SeriesRow): string {
  const labels = Object.entries(series.labels).map(([k, v]) => `${k}=${v}`);
  return `${series.name}{${[series.component, ...labels].join(', ')}}`;
}

function levelShift(
  series: SeriesRow,
  window: Points,
  recent: Baseline,
  seasonal: Baseline | null,
  ctx: DetectionContext,
  part: JudgedPart,
): CheckFinding | null {
  const minTrials = Math.max(5, Math.floor(window.values.length / 12));
  const high = Math.max(recent.qHigh, seasonal?.qHigh ?? -Infinity);
  const low = Math.min(recent.qLow, seasonal?.qLow ?? Infinity);
  const up = elevatedRun(window.values.map((v) => v > high), SHIFT_TAIL, minTrials);
  const down = elevatedRun(window.values.map((v) => v < low), SHIFT_TAIL, minTrials);
  const run = !down || (up && up.pValue <= down.pValue) ? up : down;
  if (!run) return null;
  const direction = run === up ? 'up' : 'down';
  const level = median(window.values.slice(run.index));
  const z = (level - recent.median) / recent.sigma;
  const seasonalZ = seasonal ? (level - seasonal.median) / seasonal.sigma : z;
  const score = scoreOfP(run.pValue);
  const minZ = seasonal ? MIN_SHIFT_Z : MIN_SHIFT_Z_WITHOUT_SEASON;
  if (Math.abs(z) < minZ || Math.abs(seasonalZ) < minZ || Math.sign(z) !== Math.sign(seasonalZ) || score < ctx.minScore) {
    return null;
  }
  const onset = window.ts[run.index]!;
  return {
    fingerprint: `generic|${series.id}`,
    type: 'level_shift',
    severity: severityFor(score, Math.abs(z) >= 20),
    component: series.component,
    series_id: series.id,
    description:
      `${describeSeries(series)} shifted ${direction} since ${clock(onset)} UTC: ${toSignificant(level, 4)} against ` +
      `${toSignificant(recent.median, 4)} usually (${toSignificant(Math.abs(z), 3)} sigma)`,
    start_ts: onset,
    end_ts: window.ts[window.ts.length - 1]!,
    score,
    magnitude: Math.abs(z),
    evidence: {
      series: { id: series.id, name: series.name, labels: series.labels },
      direction,
      level: toSignificant(level, 6),
      baseline_median: toSignificant(recent.median, 6),
      baseline_sigma: toSignificant(recent.sigma, 4),
      z: toSignificant(z, 4),
      seasonal_baseline_median: seasonal ? toSignificant(seasonal.median, 6) : null,
      points_beyond_baseline: run.hits,
      points: run.trials,
      p_value: run.pValue,
      baseline_window: baselineWindow(part),
    },
  };
}

function spike(
  series: SeriesRow,
  window: Points,
  recent: Baseline,
  seasonal: Baseline | null,
  ctx: DetectionContext,
  part: JudgedPart,
): CheckFinding | null {
  let worst = -1;
  let worstZ = 0;
  const minZ = seasonal ? MIN_SPIKE_Z : MIN_SPIKE_Z_WITHOUT_SEASON;
  window.values.forEach((v, i) => {
    const z = (v - recent.median) / recent.sigma;
    // Only a new extreme counts: beyond everything the baselines saw, by a margin of one sigma.
    const beyond =
      (z > 0 && v > recent.high + recent.sigma && (!seasonal || v > seasonal.high + seasonal.sigma)) ||
      (z < 0 && v < recent.low - recent.sigma && (!seasonal || v < seasonal.low - seasonal.sigma));
    if (beyond && Math.abs(z) >= minZ && Math.abs(z) > Math.abs(worstZ)) {
      worst = i;
      worstZ = z;
    }
  });
  if (worst < 0) return null;
  const history = ctx.reads.extremes(series.id, part.from - SPIKE_HISTORY_MS, part.from);
  const value = window.values[worst]!;
  if (history && value <= history.max + recent.sigma && value >= history.min - recent.sigma) return null;
  const p = Math.min(1, normalTwoSidedTail(worstZ) * window.values.length);
  const score = scoreOfP(p);
  if (score < ctx.minScore) return null;
  const at = window.ts[worst]!;
  const type = worstZ > 0 ? 'spike' : 'dip';
  return {
    fingerprint: `generic|${series.id}`,
    type,
    severity: severityFor(score, Math.abs(worstZ) >= 20),
    component: series.component,
    series_id: series.id,
    description:
      `${describeSeries(series)} ${type === 'spike' ? 'spiked to' : 'dipped to'} ${toSignificant(window.values[worst]!, 4)} at ${clock(at)} UTC ` +
      `(usually ${toSignificant(recent.median, 4)}, ${toSignificant(Math.abs(worstZ), 3)} sigma)`,
    start_ts: at,
    end_ts: at,
    score,
    magnitude: Math.abs(worstZ),
    evidence: {
      series: { id: series.id, name: series.name, labels: series.labels },
      value: window.values[worst],
      baseline_median: toSignificant(recent.median, 6),
      baseline_sigma: toSignificant(recent.sigma, 4),
      baseline_range: [recent.low, recent.high],
      z: toSignificant(worstZ, 4),
      p_value: p,
      baseline_window: baselineWindow(part),
    },
  };
}

