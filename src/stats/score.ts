/**
 * Turning surprise into a per-point anomaly score in [0, 1].
 */
import { normalCdf, normalTwoSidedTail, normalUpperTail } from "./distributions.js";
import { RingBuffer, RollingMoments } from "./rolling.js";

/**
 * Log-scaled surprise of a tail probability: 0 for p = 1, 1 for p <= `saturationP`,
 * log(p) / log(saturationP) in between. With the default 1e-6, p = 1e-3 scores 0.5.
 */
export function pValueToScore(pValue: number, saturationP = 1e-6): number {
  if (!(pValue < 1)) return 0;
  if (pValue <= saturationP) return 1;
  return Math.log(pValue) / Math.log(saturationP);
}

/** Score of a z-score under a normal reference, two-sided by default. */
export function zToScore(z: number, options: { oneSided?: boolean; saturationP?: number } = {}): number {
  const p = options.oneSided ? normalUpperTail(z) : normalTwoSidedTail(z);
  return pValueToScore(p, options.saturationP);
}

export interface AnomalyLikelihoodOptions {
  /** Points of raw-score history used as the reference distribution. */
  historyWindow?: number;
  /** Points averaged for the "recent" raw score. */
  recentWindow?: number;
  /** History needed before a likelihood is produced (0 before that). */
  minHistory?: number;
  /** Floor on the reference sigma, so a perfectly quiet history does not divide by zero. */
  minSigma?: number;
}

/**
 * Anomaly likelihood in the manner of Numenta's HTM detector: how unusual is the recent
 * average of a raw anomaly score compared with its longer history? Returns the tail
 * probability turned into a [0, 1] score, so that a series whose raw scores are always noisy
 * gets used to them, and a series that is usually quiet alarms on a small rise.
 */
export class AnomalyLikelihood {
  private readonly history: RollingMoments;
  private readonly recent: RingBuffer;
  private recentSum = 0;
  private readonly minHistory: number;
  private readonly minSigma: number;
  private seen = 0;

  constructor(options: AnomalyLikelihoodOptions = {}) {
    this.history = new RollingMoments(options.historyWindow ?? 2000);
    this.recent = new RingBuffer(options.recentWindow ?? 10);
    this.minHistory = options.minHistory ?? 300;
    this.minSigma = options.minSigma ?? 0.01;
  }

  /** Returns P(recent average is this high) as 1 - tail, i.e. close to 1 when unusual. */
  update(rawScore: number): number {
    const evicted = this.recent.push(rawScore);
    this.recentSum += rawScore - (evicted ?? 0);
    const recentMean = this.recentSum / this.recent.length;
    let likelihood = 0;
    if (this.seen >= this.minHistory) {
      const sigma = Math.max(this.history.standardDeviation, this.minSigma);
      likelihood = normalCdf((recentMean - this.history.mean) / sigma);
    }
    this.history.push(recentMean);
    this.seen++;
    return likelihood;
  }
}
