/**
 * Calibrating a surprise statistic against its own past: how rare is this value of a
 * nonnegative feature (a deviation, a step, a residual) compared with the values the same
 * feature took before? The answer is a p-value, so features on different scales and series
 * with different noise become comparable.
 */
import { RollingSortedWindow } from "./rolling.js";

export interface TailRarityOptions {
  /** Past values kept (the reference distribution). */
  window: number;
  /** Upper fraction of the reference modelled by an exponential tail. */
  tailFraction?: number;
  /** Values needed before p-values below 1 are produced. */
  minPoints?: number;
}

/**
 * Empirical upper-tail probability of a value against the window of earlier values, with an
 * exponential (peaks-over-threshold) extrapolation beyond the top `tailFraction`: above the
 * threshold u, p = P(X > u) * exp(-(x - u) / meanExcess). So a value far beyond anything seen
 * gets a p-value well below 1 / window instead of saturating at it.
 */
export class TailRarity {
  private readonly history: RollingSortedWindow;
  private readonly tailFraction: number;
  private readonly minPoints: number;

  constructor(options: TailRarityOptions) {
    this.history = new RollingSortedWindow(options.window);
    this.tailFraction = options.tailFraction ?? 0.02;
    this.minPoints = options.minPoints ?? 50;
  }

  get length(): number {
    return this.history.length;
  }

  /** p-value of `value` against the values seen so far, then learns it. */
  update(value: number): number {
    const p = this.pValue(value);
    // Right after pValue's countBelow(value): the push reuses that count as value's place.
    this.history.push(value);
    return p;
  }

  /** P(a past-like value >= `value`), without learning it. */
  pValue(value: number): number {
    const n = this.history.length;
    if (n < this.minPoints) return 1;
    const tailCount = Math.max(5, Math.floor(n * this.tailFraction));
    const tailStart = n - tailCount;
    const threshold = this.history.quantile(tailStart / (n - 1));
    if (value <= threshold) {
      const atLeast = n - this.history.countBelow(value);
      return (atLeast + 1) / (n + 1);
    }
    let excess = 0;
    for (let i = tailStart; i < n; i++) excess += this.history.quantile(i / (n - 1)) - threshold;
    const meanExcess = Math.max(excess / tailCount, 1e-12);
    return ((tailCount + 1) / (n + 1)) * Math.exp(-(value - threshold) / meanExcess);
  }
}
