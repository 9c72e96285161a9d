/**
 * Trend tests and robust slopes: Mann–Kendall (is there a monotone trend?) and Theil–Sen
 * (how steep is it?). Both are O(n^2) in the number of points; feed them a window or a
 * downsampled series, not a year of raw points.
 */
import { normalTwoSidedTail } from "./distributions.js";
import { median } from "./robust.js";

export interface MannKendallResult {
  /** Sum of signs over all ordered pairs. */
  s: number;
  /** Variance of S under "no trend", corrected for ties. */
  variance: number;
  /** Continuity-corrected normal score of S. */
  z: number;
  /** Two-sided p-value of "no monotone trend". */
  pValue: number;
  /** Kendall's tau-a, S divided by the number of pairs, in [-1, 1]. */
  tau: number;
  trend: "increasing" | "decreasing" | "none";
}

export function mannKendall(values: ArrayLike<number>, alpha = 0.05): MannKendallResult {
  const n = values.length;
  let s = 0;
  for (let i = 0; i < n - 1; i++) {
    const vi = values[i] as number;
    for (let j = i + 1; j < n; j++) s += Math.sign((values[j] as number) - vi);
  }
  const tieCounts = new Map<number, number>();
  for (let i = 0; i < n; i++) tieCounts.set(values[i] as number, (tieCounts.get(values[i] as number) ?? 0) + 1);
  let tieCorrection = 0;
  for (const t of tieCounts.values()) if (t > 1) tieCorrection += t * (t - 1) * (2 * t + 5);
  const variance = (n * (n - 1) * (2 * n + 5) - tieCorrection) / 18;
  let z = 0;
  if (variance > 0) {
    if (s > 0) z = (s - 1) / Math.sqrt(variance);
    else if (s < 0) z = (s + 1) / Math.sqrt(variance);
  }
  const pValue = variance > 0 ? normalTwoSidedTail(z) : 1;
  const pairs = (n * (n - 1)) / 2;
  const trend = pValue < alpha ? (s > 0 ? "increasing" : "decreasing") : "none";
  return { s, variance, z, pValue, tau: pairs > 0 ? s / pairs : 0, trend };
}

export interface TheilSenResult {
  /** Median of the slopes of all pairs with distinct x. */
  slope: number;
  /** Median of y - slope * x. */
  intercept: number;
}

/**
 * Theil–Sen line through (xs[i], ys[i]); xs defaults to 0, 1, 2, ...
 * Robust to up to ~29% arbitrary outliers.
 */
export function theilSen(ys: ArrayLike<number>, xs?: ArrayLike<number>): TheilSenResult {
  const n = ys.length;
  if (xs && xs.length !== n) throw new RangeError("xs and ys must have the same length");
  const x = (i: number): number => (xs ? (xs[i] as number) : i);
  const slopes: number[] = [];
  for (let i = 0; i < n - 1; i++) {
    for (let j = i + 1; j < n; j++) {
      const dx = x(j) - x(i);
      if (dx !== 0) slopes.push(((ys[j] as number) - (ys[i] as number)) / dx);
    }
  }
  if (slopes.length === 0) return { slope: NaN, intercept: NaN };
  const slope = median(slopes);
  const residuals = new Float64Array(n);
  for (let i = 0; i < n; i++) residuals[i] = (ys[i] as number) - slope * x(i);
  return { slope, intercept: median(residuals) };
}
