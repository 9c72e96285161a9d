/**
 * How far a window of values moved from a baseline window, in robust standard units, and when it
 * started to: the numeric core of root-cause analysis. Also two-sample tests of rates and counts
 * that return a signed, unbounded equivalent z (the signed root of the likelihood-ratio
 * statistic), so that a metric shift, an error-rate rise and a burst of events can be ranked on
 * one scale.
 */
import { MAD_TO_SIGMA, quantileOfSorted, sortedCopy } from "./robust.js";

/** IQR of a normal distribution in standard deviations. */
const IQR_TO_SIGMA = 1 / 1.349;

export interface ScaleFloor {
  /** Smallest scale, as a fraction of |baseline median|: a change below it is not a change. */
  relative?: number;
  /** Smallest scale in absolute units (guards a baseline of zeros). */
  absolute?: number;
}

export interface RobustScale {
  median: number;
  /** The larger of the MAD and IQR estimates of sigma, floored. */
  sigma: number;
  /** True when the floor, not the data, set the scale (a flat baseline). */
  floored: boolean;
}

export const DEFAULT_SCALE_FLOOR: Required<ScaleFloor> = { relative: 0.01, absolute: 1e-9 };

/**
 * Location and scale of a baseline. The larger of the two robust estimates is used, so that a
 * baseline that sits on two levels (a sawtooth, an on/off load) is not judged by its tighter half.
 */
export function robustScale(baseline: ArrayLike<number>, floor: ScaleFloor = {}): RobustScale {
  const sorted = sortedCopy(baseline);
  const center = quantileOfSorted(sorted, 0.5);
  const iqrSigma = (quantileOfSorted(sorted, 0.75) - quantileOfSorted(sorted, 0.25)) * IQR_TO_SIGMA;
  const madSigma = MAD_TO_SIGMA * madOfSorted(sorted, center);
  const dataSigma = Math.max(iqrSigma, madSigma);
  const minimum = Math.max(
    (floor.relative ?? DEFAULT_SCALE_FLOOR.relative) * Math.abs(center),
    floor.absolute ?? DEFAULT_SCALE_FLOOR.absolute,
  );
  return { median: center, sigma: Math.max(dataSigma, minimum), floored: !(dataSigma >= minimum) };
}

/**
 * The MAD of already-sorted values around `center`, without sorting again: the absolute
 * deviations grow monotonically outwards from the center on each side, so merging the two
 * sides reaches the middle one in O(n). Same interpolation as `median` (type 7).
 */
export function madOfSorted(sorted: ArrayLike<number>, center: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const position = (n - 1) / 2;
  const lowRank = Math.floor(position);
  const highRank = Math.ceil(position);
  let right = 0;
  while (right < n && (sorted[right] as number) < center) right++;
  let left = right - 1;
  let atLow = 0;
  let atHigh = 0;
  for (let rank = 0; rank <= highRank; rank++) {
    let deviation: number;
    if (left >= 0 && (right >= n || center - (sorted[left] as number) <= (sorted[right] as number) - center)) {
      deviation = center - (sorted[left] as number);
      left--;
    } else {
      deviation = (sorted[right] as number) - center;
      right++;
    }
    if (rank === lowRank) atLow = deviation;
    if (rank === highRank) atHigh = deviation;
  }
  return atLow + (atHigh - atLow) * (position - lowRank);
}

export interface WindowShift {
  baseline: RobustScale;
  /** Median of the window. */
  windowMedian: number;
  /**
   * Signed standardised deviation of the window's persistent extreme: the k-th largest |z| of
   * the window (k = `persistence` share of its points, at least `minPersistentPoints`), so a
   * single outlier does not count as a move.
   */
  z: number;
  /** Standardised deviation of the window median. */
  medianZ: number;
  /** Index of the first point of the first persistent run beyond `onsetZ`, or -1. */
  onsetIndex: number;
}

export interface WindowShiftOptions {
  floor?: ScaleFloor;
  /** Share of the window's points that must be at least as extreme as the reported z (default 0.05). */
  persistence?: number;
  minPersistentPoints?: number;
  /** |z| that counts as having moved, for the onset (default 3). */
  onsetZ?: number;
  /** Of the `onsetRun` points starting at the onset, this many must be beyond `onsetZ` (default 2 of 3). */
  onsetRun?: number;
  onsetHits?: number;
}

/** How far `window` moved from `baseline`. Both must be non-empty. */
export function windowShift(baseline: ArrayLike<number>, window: ArrayLike<number>, options: WindowShiftOptions = {}): WindowShift {
  if (baseline.length === 0 || window.length === 0) throw new RangeError("windowShift needs a non-empty baseline and window");
  const scale = robustScale(baseline, options.floor);
  const zs = new Float64Array(window.length);
  for (let i = 0; i < window.length; i++) zs[i] = ((window[i] as number) - scale.median) / scale.sigma;
  const k = Math.min(
    window.length,
    Math.max(options.minPersistentPoints ?? 3, Math.ceil((options.persistence ?? 0.05) * window.length)),
  );
  const byMagnitude = Array.from(zs).sort((a, b) => Math.abs(b) - Math.abs(a));
  const windowMedian = quantileOfSorted(sortedCopy(window), 0.5);
  return {
    baseline: scale,
    windowMedian,
    z: byMagnitude[k - 1] as number,
    medianZ: (windowMedian - scale.median) / scale.sigma,
    onsetIndex: firstPersistentRun(zs, options.onsetZ ?? 3, options.onsetRun ?? 3, options.onsetHits ?? 2),
  };
}

/**
 * Index of the first point beyond `threshold` (in magnitude) such that at least `hits` of the
 * `run` points starting there are beyond it too; -1 when there is none. A run cut short by the
 * end of the data counts when all its points are beyond.
 */
export function firstPersistentRun(zs: ArrayLike<number>, threshold: number, run = 3, hits = 2): number {
  for (let i = 0; i < zs.length; i++) {
    if (!(Math.abs(zs[i] as number) >= threshold)) continue;
    const end = Math.min(zs.length, i + run);
    let count = 0;
    for (let j = i; j < end; j++) if (Math.abs(zs[j] as number) >= threshold) count++;
    if (count >= Math.min(hits, end - i)) return i;
  }
  return -1;
}

/** Pearson correlation of two equally long arrays, skipping pairs where either is NaN; null when undefined. */
export function pearson(x: ArrayLike<number>, y: ArrayLike<number>, minPairs = 3): number | null {
  const n = Math.min(x.length, y.length);
  let count = 0;
  let sx = 0;
  let sy = 0;
  for (let i = 0; i < n; i++) {
    const a = x[i] as number;
    const b = y[i] as number;
    if (Number.isNaN(a) || Number.isNaN(b)) continue;
    count++;
    sx += a;
    sy += b;
  }
  if (count < minPairs) return null;
  const mx = sx / count;
  const my = sy / count;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const a = x[i] as number;
    const b = y[i] as number;
    if (Number.isNaN(a) || Number.isNaN(b)) continue;
    sxy += (a - mx) * (b - my);
    sxx += (a - mx) * (a - mx);
    syy += (b - my) * (b - my);
  }
  if (sxx <= 0 || syy <= 0) return null;
  return sxy / Math.sqrt(sxx * syy);
}

const xLogXOverY = (x: number, y: number): number => (x > 0 ? x * Math.log(x / y) : 0);

/**
 * Did the rate `events / trials` in the window differ from the baseline's? Signed root of the
 * G statistic of the 2×2 table (window / baseline × event / no event): about N(0, 1) when the
 * rates are equal, positive when the window's is higher. The baseline's own uncertainty counts,
 * so a short baseline proves less than a long one.
 */
export function rateShiftZ(windowEvents: number, windowTrials: number, baselineEvents: number, baselineTrials: number): number {
  if (windowTrials <= 0 || baselineTrials <= 0) return 0;
  const total = windowTrials + baselineTrials;
  const events = windowEvents + baselineEvents;
  const nonEvents = total - events;
  if (events <= 0 || nonEvents <= 0) return 0;
  const cells: [number, number][] = [
    [windowEvents, (windowTrials * events) / total],
    [windowTrials - windowEvents, (windowTrials * nonEvents) / total],
    [baselineEvents, (baselineTrials * events) / total],
    [baselineTrials - baselineEvents, (baselineTrials * nonEvents) / total],
  ];
  const g = 2 * cells.reduce((sum, [observed, expected]) => sum + xLogXOverY(observed, expected), 0);
  const direction = Math.sign(windowEvents / windowTrials - baselineEvents / baselineTrials);
  return direction * Math.sqrt(Math.max(g, 0));
}

/**
 * Did events arrive faster in the window than in the baseline? `windowCount` over
 * `windowExposure` (e.g. minutes) against `baselineCount` over `baselineExposure`: the signed
 * root of the conditional likelihood-ratio statistic. A count with no baseline events at all is
 * judged against half an event, so "new" is strong evidence only when it happens more than once.
 */
export function countShiftZ(windowCount: number, windowExposure: number, baselineCount: number, baselineExposure: number): number {
  if (windowExposure <= 0 || baselineExposure <= 0) return 0;
  const base = Math.max(baselineCount, 0.5);
  const total = windowCount + base;
  const expectedWindow = (total * windowExposure) / (windowExposure + baselineExposure);
  const expectedBaseline = total - expectedWindow;
  const g = 2 * (xLogXOverY(windowCount, expectedWindow) + xLogXOverY(base, expectedBaseline));
  const direction = Math.sign(windowCount / windowExposure - base / baselineExposure);
  return direction * Math.sqrt(Math.max(g, 0));
}
