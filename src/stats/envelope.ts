/**
 * Trends of the floor of a series: memory that a garbage collector cannot free shows in the
 * minima between collections, not in the sawtooth on top. Window minima give that floor, level
 * shifts (a restart) cut it into segments, a hinge fit finds where growth began, and Sen's
 * confidence interval says how sure the slope is.
 */
import { normalQuantile } from "./distributions.js";
import { MAD_TO_SIGMA, median } from "./robust.js";
import { mannKendall } from "./trend.js";

export interface XY {
  xs: number[];
  ys: number[];
}

/**
 * The lowest point of each window of width `windowMs` (aligned to multiples of it), at the time
 * it occurred. Windows holding less than `minCoverage` of their width of data are left out.
 */
export function windowMinima(ts: ArrayLike<number>, values: ArrayLike<number>, windowMs: number, minCoverage = 0.5): XY {
  const xs: number[] = [];
  const ys: number[] = [];
  let i = 0;
  const n = ts.length;
  while (i < n) {
    const window = Math.floor((ts[i] as number) / windowMs);
    let bestAt = i;
    const first = ts[i] as number;
    let last = first;
    let j = i;
    for (; j < n && Math.floor((ts[j] as number) / windowMs) === window; j++) {
      if ((values[j] as number) < (values[bestAt] as number)) bestAt = j;
      last = ts[j] as number;
    }
    // A window's coverage is judged by the span its points cover, plus one typical step.
    const step = j - i > 1 ? (last - first) / (j - i - 1) : 0;
    if (last - first + step >= minCoverage * windowMs) {
      xs.push(ts[bestAt] as number);
      ys.push(values[bestAt] as number);
    }
    i = j;
  }
  return { xs, ys };
}

export interface SlopeInterval {
  slope: number;
  intercept: number;
  /** Sen's distribution-free confidence bounds on the slope. */
  lower: number;
  upper: number;
  /** Mann–Kendall two-sided p-value of "no monotone trend". */
  pValue: number;
  n: number;
}

/**
 * Theil–Sen slope with Sen's (1968) confidence interval: the pairwise slopes ranked, and the
 * bounds read at ranks (N ∓ z·√Var(S)) / 2, where Var(S) is the Mann–Kendall variance.
 */
export function theilSenInterval(xs: readonly number[], ys: readonly number[], level = 0.95): SlopeInterval {
  const n = ys.length;
  const slopes: number[] = [];
  for (let i = 0; i < n - 1; i++) {
    for (let j = i + 1; j < n; j++) {
      const dx = (xs[j] as number) - (xs[i] as number);
      if (dx !== 0) slopes.push(((ys[j] as number) - (ys[i] as number)) / dx);
    }
  }
  if (slopes.length === 0) return { slope: NaN, intercept: NaN, lower: NaN, upper: NaN, pValue: 1, n };
  slopes.sort((a, b) => a - b);
  const slope = median(slopes);
  const intercept = median(ys.map((y, i) => y - slope * (xs[i] as number)));
  const mk = mannKendall(ys);
  const c = normalQuantile(1 - (1 - level) / 2) * Math.sqrt(mk.variance);
  const count = slopes.length;
  const lowerRank = Math.max(0, Math.floor((count - c) / 2) - 1);
  const upperRank = Math.min(count - 1, Math.ceil((count + c) / 2));
  return { slope, intercept, lower: slopes[lowerRank] as number, upper: slopes[upperRank] as number, pValue: mk.pValue, n };
}

/** A robust line through some window minima: Theil–Sen over the pairs at least a window apart. */
interface SideTrend {
  slope: number;
  /** Half the range of the pairwise slopes: how far the slope could be off. */
  slopeSlack: number;
  /** Median of y − slope · x. */
  intercept: number;
  /** The side's x nearest the step (the trend is extrapolated from there). */
  edge: number;
}

/**
 * Indices i where the floor shifts between minima i − 1 and i (a restart), for `xs`, `ys` the
 * minima of windows `windowMs` wide. A shift is a step between the trend of the (up to four)
 * points before it, since the last shift, and that of the (up to four) points after it: the first
 * point after sits off the trend before, and the trend after, taken back, sits off the last point
 * before, both the same way, by more than the tolerance: `k` robust sigmas (of how far points sit
 * off the trend before them, within the segments) or `minJump`, whichever is more, plus the trend's growth over one
 * window, plus how far the trend could be off where it is extrapolated to.
 *
 * The trends are Theil–Sen lines on the points' own times, each side its own, so the onset of a
 * leak is no shift (the two trends meet there: the departures have opposite signs). The growth
 * allowance is there because a window's minimum is where the floor was lowest in it, which under a
 * rising floor can be its first point, up to one window's growth above where a collection later in
 * the window would put it: a step that large between minima is what a leak does. Slopes come from
 * pairs at least a window apart: closer minima sit in neighbouring windows, and their slope is
 * mostly where in its window each was read.
 *
 * The new level must hold: when the points after have no trend of their own (too few or too close
 * in time), each of them, at least two, must sit off the trend before the same way. A single last
 * point is not enough, with one exception: a last point below the trend before it is a shift on
 * its own. A window's minimum can read high (a short last window, a collection not run yet) but
 * not low, so a floor under its trend is memory that was freed, while one above it waits for a
 * later point. A restart inside a window can leave that window's minimum between the two levels
 * (garbage not yet collected at the new level, or collected at the old one), so a shift is also
 * looked for over one point; a shifting point that sits off the trend after it as well is such a
 * mix, and the shift is then reported at the next point.
 */
export function levelShifts(xs: readonly number[], ys: readonly number[], windowMs: number, k = 8, minJump = 0): number[] {
  const n = ys.length;
  const sidePoints = 4;
  const trendOf = (from: number, to: number, edge: number, minPairs: number): SideTrend | null => {
    const slopes: number[] = [];
    for (let a = from; a < to; a++) {
      for (let b = a + 1; b < to; b++) {
        const dx = (xs[b] as number) - (xs[a] as number);
        if (dx >= windowMs) slopes.push(((ys[b] as number) - (ys[a] as number)) / dx);
      }
    }
    // One pair is a slope without any sign of how far off it may be: not enough to extrapolate far.
    if (slopes.length < minPairs) return null;
    const slope = median(slopes);
    const intercept = median(ys.slice(from, to).map((y, j) => y - slope * (xs[from + j] as number)));
    return { slope, slopeSlack: (Math.max(...slopes) - Math.min(...slopes)) / 2, intercept, edge: xs[edge] as number };
  };
  // How far point `at` sits off a trend, and what of that a leak and the trend's own error allow.
  const offTrend = (trend: SideTrend, at: number): { by: number; allowed: number } => {
    const x = xs[at] as number;
    return {
      by: (ys[at] as number) - (trend.intercept + trend.slope * x),
      allowed: Math.abs(trend.slope) * windowMs + trend.slopeSlack * Math.abs(x - trend.edge),
    };
  };
  let threshold = minJump;
  const beyond = (d: { by: number; allowed: number }): number => (Math.abs(d.by) > threshold + d.allowed ? Math.sign(d.by) : 0);

  /**
   * The sign of a shift at i (0 for none) with the trend before ending at point `last` (i − 1,
   * or i − 2 to step over a mixed point) and starting at `segmentStart`.
   */
  const shiftAt = (i: number, last: number, segmentStart: number): number => {
    const beforeFrom = Math.max(segmentStart, last + 1 - sidePoints);
    if (last + 1 - beforeFrom < 2) return 0;
    const before = trendOf(beforeFrom, last + 1, last, 2);
    if (!before) return 0;
    const forward = beyond(offTrend(before, i));
    if (forward === 0) return 0;
    const afterTo = Math.min(n, i + sidePoints);
    if (afterTo - i < 2) return i === n - 1 && forward < 0 ? forward : 0;
    const after = trendOf(i, afterTo, i, 1);
    if (after) return beyond(offTrend(after, last)) === -forward ? forward : 0;
    for (let j = i + 1; j < afterTo; j++) if (beyond(offTrend(before, j)) !== forward) return 0;
    return forward;
  };

  const find = (): number[] => {
    const out: number[] = [];
    let segmentStart = 0;
    for (let i = 1; i < n; i++) {
      let shift = shiftAt(i, i - 1, segmentStart);
      if (shift === 0 && i - 2 >= segmentStart) shift = shiftAt(i, i - 2, segmentStart);
      if (shift === 0) continue;
      const afterNext = i + 1 < n ? trendOf(i + 1, Math.min(n, i + 1 + sidePoints), i + 1, 1) : null;
      if (afterNext && beyond(offTrend(afterNext, i)) === -shift) i++;
      out.push(i);
      segmentStart = i;
    }
    return out;
  };
  // The noise is how far points sit off the trend before them within the segments that `minJump`
  // alone finds; when k of its sigmas are more than `minJump`, the shifts are found again with that.
  const shifts = find();
  const departures: number[] = [];
  for (let s = 0; s <= shifts.length; s++) {
    const from = s === 0 ? 0 : (shifts[s - 1] as number);
    const to = s === shifts.length ? n : (shifts[s] as number);
    for (let i = from + 2; i < to; i++) {
      const before = trendOf(Math.max(from, i - sidePoints), i, i - 1, 2);
      if (before) departures.push(Math.abs(offTrend(before, i).by));
    }
  }
  const noise = departures.length ? k * MAD_TO_SIGMA * median(departures) : 0;
  if (noise <= minJump) return shifts;
  threshold = noise;
  return find();
}

/**
 * Where growth began: the least-squares "hinge" y = a + b·max(0, x − τ) over candidate knots τ
 * at the data's own x, keeping at least `minAfter` points after the knot. Returns the index of
 * the best knot (0 when a straight line from the start fits best).
 */
export function hingeStart(xs: readonly number[], ys: readonly number[], minAfter: number): number {
  const n = ys.length;
  let bestIndex = 0;
  let bestSse = Infinity;
  for (let knot = 0; knot <= n - minAfter; knot++) {
    const tau = xs[knot] as number;
    // Ordinary least squares of y on z = max(0, x − τ).
    let sz = 0;
    let sy = 0;
    let szz = 0;
    let szy = 0;
    for (let i = 0; i < n; i++) {
      const z = Math.max(0, (xs[i] as number) - tau);
      const y = ys[i] as number;
      sz += z;
      sy += y;
      szz += z * z;
      szy += z * y;
    }
    const denominator = n * szz - sz * sz;
    const b = denominator > 0 ? (n * szy - sz * sy) / denominator : 0;
    const a = (sy - b * sz) / n;
    let sse = 0;
    for (let i = 0; i < n; i++) {
      const r = (ys[i] as number) - a - b * Math.max(0, (xs[i] as number) - tau);
      sse += r * r;
    }
    // Ties go to the earlier knot: the longer segment estimates the slope better.
    if (sse < bestSse * (1 - 1e-9)) {
      bestSse = sse;
      bestIndex = knot;
    }
  }
  return bestIndex;
}
