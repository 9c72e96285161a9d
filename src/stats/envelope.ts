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

/**
 * Indices i where the step from point i − 1 to i is a level shift: it departs, by more than `k`
 * robust sigmas and by more than `minJump`, from the median of the (up to three) steps before it
 * and from that of the steps after it, where there are any. A steady rise matches its
 * neighbours, so the onset of a leak is not a shift; a restart's drop, or a step, is. Two
 * shifting steps in a row are one shift, reported at the second.
 */
export function levelShifts(ys: readonly number[], k = 8, minJump = 0): number[] {
  const steps: number[] = [];
  for (let i = 1; i < ys.length; i++) steps.push((ys[i] as number) - (ys[i - 1] as number));
  if (steps.length < 2) return [];
  const neighbourMedian = (i: number) => median(steps.slice(Math.max(0, i - 3), i + 4));
  const sigma = MAD_TO_SIGMA * median(steps.map((s, i) => Math.abs(s - neighbourMedian(i))));
  const threshold = Math.max(k * sigma, minJump);
  const out: number[] = [];
  steps.forEach((s, i) => {
    const before = steps.slice(Math.max(0, i - 3), i);
    const after = steps.slice(i + 1, i + 4);
    const departsBefore = before.length === 0 || Math.abs(s - median(before)) > threshold;
    const departsAfter = after.length === 0 || Math.abs(s - median(after)) > threshold;
    if (!(departsBefore && departsAfter)) return;
    // A shift that falls inside a window spreads over two steps (the window's point is a mix): one shift.
    if (out[out.length - 1] === i) out[out.length - 1] = i + 1;
    else out.push(i + 1);
  });
  return out;
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
