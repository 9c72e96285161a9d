/**
 * Exponentially weighted moving mean and variance: O(1) memory baselines that forget slowly.
 */

/** Smoothing factor whose weights have the given half-life in points. */
export function alphaForHalfLife(halfLifePoints: number): number {
  return 1 - Math.pow(0.5, 1 / halfLifePoints);
}

export class Ewma {
  private value = NaN;
  private varianceEstimate = 0;
  private observations = 0;

  /** @param alpha weight of the newest point, in (0, 1]. */
  constructor(readonly alpha: number) {
    if (!(alpha > 0 && alpha <= 1)) throw new RangeError("alpha must be in (0, 1]");
  }

  get count(): number {
    return this.observations;
  }

  get mean(): number {
    return this.value;
  }

  /** Exponentially weighted variance of the values around the moving mean. */
  get variance(): number {
    return this.varianceEstimate;
  }

  get standardDeviation(): number {
    return Math.sqrt(this.varianceEstimate);
  }

  push(x: number): void {
    this.observations++;
    if (this.observations === 1) {
      this.value = x;
      return;
    }
    // West's incremental form: the variance update uses the deviation from the previous mean.
    const deviation = x - this.value;
    const increment = this.alpha * deviation;
    this.value += increment;
    this.varianceEstimate = (1 - this.alpha) * (this.varianceEstimate + deviation * increment);
  }

  reset(): void {
    this.value = NaN;
    this.varianceEstimate = 0;
    this.observations = 0;
  }
}
