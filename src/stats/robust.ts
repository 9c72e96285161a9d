/**
 * Robust summaries of a batch of numbers (median, quantiles, MAD).
 * The streaming counterparts live in `rolling.ts`.
 */

/** Scale factor that turns a MAD into a standard deviation for normally distributed data. */
export const MAD_TO_SIGMA = 1.4826;

/** Ascending copy of the input. */
export function sortedCopy(values: ArrayLike<number>): Float64Array {
  return Float64Array.from(values).sort();
}

/** Quantile of already-sorted values with linear interpolation (type 7, as R and numpy). */
export function quantileOfSorted(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const position = Math.min(Math.max(q, 0), 1) * (n - 1);
  const below = Math.floor(position);
  const above = Math.min(below + 1, n - 1);
  const fraction = position - below;
  const low = sorted[below] as number;
  const high = sorted[above] as number;
  return low + (high - low) * fraction;
}

export function quantile(values: ArrayLike<number>, q: number): number {
  return quantileOfSorted(sortedCopy(values), q);
}

export function median(values: ArrayLike<number>): number {
  return quantile(values, 0.5);
}

/** Median absolute deviation around `center` (default: the median), unscaled. */
export function mad(values: ArrayLike<number>, center?: number): number {
  if (values.length === 0) return NaN;
  const middle = center ?? median(values);
  const deviations = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) deviations[i] = Math.abs((values[i] as number) - middle);
  return median(deviations);
}

export interface RobustLocationScale {
  median: number;
  /** MAD scaled to estimate a standard deviation (MAD * 1.4826). */
  sigma: number;
}

export function robustLocationScale(values: ArrayLike<number>): RobustLocationScale {
  const center = median(values);
  return { median: center, sigma: MAD_TO_SIGMA * mad(values, center) };
}

/**
 * Robust z-score of `value` against a median/sigma baseline. `minSigma` guards against a zero
 * scale on constant data (where any change is then infinitely surprising).
 */
export function robustZ(value: number, baseline: RobustLocationScale, minSigma = 1e-9): number {
  return (value - baseline.median) / Math.max(baseline.sigma, minSigma);
}

export function mean(values: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i] as number;
  return values.length === 0 ? NaN : sum / values.length;
}

/** Sample variance (n - 1 denominator). */
export function variance(values: ArrayLike<number>): number {
  const n = values.length;
  if (n < 2) return NaN;
  const average = mean(values);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const d = (values[i] as number) - average;
    sum += d * d;
  }
  return sum / (n - 1);
}
