/**
 * Rate tests for counts: is an error or denial rate significantly above its baseline?
 * Exact one-sided tests (binomial for "k of n", Poisson for "k per exposure"), so small counts
 * are judged by their probability, not by a fixed multiplier.
 */
import { binomialUpperTail, poissonUpperTail } from "./distributions.js";

export interface RateTestResult {
  /** Observed rate (events / trials, or events / exposure). */
  rate: number;
  /** Observed rate divided by the baseline rate. */
  ratio: number;
  /** One-sided p-value of "the rate is not above the baseline". */
  pValue: number;
  significant: boolean;
}

/** `events` out of `trials` (e.g. 30 errors in 100 calls) against a baseline probability. */
export function binomialRateTest(events: number, trials: number, baselineRate: number, alpha = 0.01): RateTestResult {
  const rate = trials > 0 ? events / trials : 0;
  const pValue = trials > 0 ? binomialUpperTail(events, trials, baselineRate) : 1;
  return { rate, ratio: baselineRate > 0 ? rate / baselineRate : Infinity, pValue, significant: pValue < alpha };
}

/** `events` seen over `exposure` units (e.g. minutes) against a baseline rate per unit. */
export function poissonRateTest(events: number, exposure: number, baselineRatePerUnit: number, alpha = 0.01): RateTestResult {
  const rate = exposure > 0 ? events / exposure : 0;
  const pValue = poissonUpperTail(events, baselineRatePerUnit * exposure);
  return { rate, ratio: baselineRatePerUnit > 0 ? rate / baselineRatePerUnit : Infinity, pValue, significant: pValue < alpha };
}

export interface RateBaselineOptions {
  /** How many past trials the baseline effectively remembers (exponential forgetting). */
  memoryTrials?: number;
  /** Prior rate used before the baseline has seen anything, and its weight in trials. */
  priorRate?: number;
  priorTrials?: number;
  alpha?: number;
}

/**
 * Streaming baseline of an event rate (errors per request, denials per check). Each period's
 * counts are tested against the rate learned from earlier periods, then folded into it.
 */
export class RateBaseline {
  private events = 0;
  private trials = 0;
  private readonly memoryTrials: number;
  private readonly priorRate: number;
  private readonly priorTrials: number;
  private readonly alpha: number;

  constructor(options: RateBaselineOptions = {}) {
    this.memoryTrials = options.memoryTrials ?? 10_000;
    this.priorRate = options.priorRate ?? 0.01;
    this.priorTrials = options.priorTrials ?? 100;
    this.alpha = options.alpha ?? 0.01;
  }

  /** Baseline rate: smoothed toward the prior while little has been seen. */
  get rate(): number {
    return (this.events + this.priorRate * this.priorTrials) / (this.trials + this.priorTrials);
  }

  /** Tests this period against the baseline, then learns from it. */
  update(events: number, trials: number): RateTestResult {
    const result = binomialRateTest(events, trials, this.rate, this.alpha);
    const total = this.trials + trials;
    const keep = total > this.memoryTrials ? this.memoryTrials / total : 1;
    this.events = (this.events + events) * keep;
    this.trials = total * keep;
    return result;
  }
}
