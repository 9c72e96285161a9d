/**
 * Failure-time models for "how long does it stay up": exponential and Weibull fitted by maximum
 * likelihood to observed up-times, some of them right-censored (still up when observation ended).
 */
import { logGamma, normalQuantile } from "./distributions.js";

export interface Lifetime {
  /** Time the unit stayed up (any unit, > 0). */
  duration: number;
  /** True when it failed at the end of `duration`; false when it was still up (censored). */
  failed: boolean;
}

export interface ExponentialFit {
  kind: "exponential";
  /** Failures per unit time. */
  rate: number;
  failures: number;
  exposure: number;
  logLikelihood: number;
}

export interface WeibullFit {
  kind: "weibull";
  /** k: below 1 failures get rarer the longer it stays up, above 1 more likely (wear-out). */
  shape: number;
  /** λ: the time by which 63% have failed. */
  scale: number;
  failures: number;
  logLikelihood: number;
}

export type FailureTimeFit = ExponentialFit | WeibullFit;

function failuresAndExposure(lifetimes: readonly Lifetime[]): { failures: number; exposure: number } {
  let failures = 0;
  let exposure = 0;
  for (const l of lifetimes) {
    if (!(l.duration > 0)) continue;
    exposure += l.duration;
    if (l.failed) failures++;
  }
  return { failures, exposure };
}

/** Exponential MLE with right censoring: rate = failures / total time up. */
export function fitExponential(lifetimes: readonly Lifetime[]): ExponentialFit {
  const { failures, exposure } = failuresAndExposure(lifetimes);
  const rate = exposure > 0 ? failures / exposure : NaN;
  const logLikelihood = failures > 0 ? failures * Math.log(rate) - rate * exposure : 0;
  return { kind: "exponential", rate, failures, exposure, logLikelihood };
}

/**
 * Weibull MLE with right censoring. For a given shape k the scale has a closed form,
 * λ^k = Σ t^k / d; the shape solves the profile score equation
 *   d/k + Σ_failed ln t − d · Σ t^k ln t / Σ t^k = 0,
 * which is decreasing in k, so bisection (on log k) finds it reliably. Needs two distinct failure times.
 */
export function fitWeibull(lifetimes: readonly Lifetime[]): WeibullFit | null {
  const usable = lifetimes.filter((l) => l.duration > 0);
  const failed = usable.filter((l) => l.failed);
  const d = failed.length;
  if (d < 2 || new Set(failed.map((l) => l.duration)).size < 2) return null;
  // Times are scaled by their mean so that t^k stays in range for any shape.
  const unit = usable.reduce((s, l) => s + l.duration, 0) / usable.length;
  const t = usable.map((l) => l.duration / unit);
  const sumLogFailed = failed.reduce((s, l) => s + Math.log(l.duration / unit), 0);
  const score = (k: number): number => {
    let sumTk = 0;
    let sumTkLog = 0;
    for (const x of t) {
      const tk = Math.pow(x, k);
      sumTk += tk;
      sumTkLog += tk * Math.log(x);
    }
    return d / k + sumLogFailed - (d * sumTkLog) / sumTk;
  };
  let low = Math.log(0.02);
  let high = Math.log(50);
  if (score(Math.exp(low)) < 0 || score(Math.exp(high)) > 0) return null;
  for (let i = 0; i < 100; i++) {
    const mid = 0.5 * (low + high);
    if (score(Math.exp(mid)) > 0) low = mid;
    else high = mid;
  }
  const shape = Math.exp(0.5 * (low + high));
  const sumTk = t.reduce((s, x) => s + Math.pow(x, shape), 0);
  const scaleUnit = Math.pow(sumTk / d, 1 / shape);
  // log L = d ln k − d k ln λ + (k − 1) Σ_failed ln t − Σ (t/λ)^k, in the scaled unit, then
  // corrected by −d ln(unit) for the change of variable back to the original unit.
  const logLikelihood =
    d * Math.log(shape) - d * shape * Math.log(scaleUnit) + (shape - 1) * sumLogFailed - sumTk / Math.pow(scaleUnit, shape) - d * Math.log(unit);
  return { kind: "weibull", shape, scale: scaleUnit * unit, failures: d, logLikelihood };
}

/** Survival S(t) = P(still up at t). */
export function survival(fit: FailureTimeFit, t: number): number {
  if (t <= 0) return 1;
  return fit.kind === "exponential" ? Math.exp(-fit.rate * t) : Math.exp(-Math.pow(t / fit.scale, fit.shape));
}

/** P(fails before age + horizon | up at age): 1 − S(age + horizon) / S(age), computed in log space. */
export function conditionalFailureProbability(fit: FailureTimeFit, age: number, horizon: number): number {
  if (fit.kind === "exponential") return -Math.expm1(-fit.rate * horizon);
  const cumulativeHazard = (t: number) => (t <= 0 ? 0 : Math.pow(t / fit.scale, fit.shape));
  return -Math.expm1(-(cumulativeHazard(age + horizon) - cumulativeHazard(age)));
}

/** Mean time to failure of the fitted model. */
export function meanLifetime(fit: FailureTimeFit): number {
  return fit.kind === "exponential" ? 1 / fit.rate : fit.scale * Math.exp(logGamma(1 + 1 / fit.shape));
}

/** Age at which, having survived to `age`, the conditional failure probability reaches `p`. */
export function conditionalQuantile(fit: FailureTimeFit, age: number, p: number): number {
  const target = -Math.log1p(-p);
  if (fit.kind === "exponential") return target / fit.rate;
  const base = Math.pow(Math.max(age, 0) / fit.scale, fit.shape);
  return fit.scale * Math.pow(base + target, 1 / fit.shape) - age;
}

/** Chi-square quantile (Wilson–Hilferty approximation; good to a few per cent for df ≥ 2). */
export function chiSquareQuantile(p: number, df: number): number {
  const z = normalQuantile(p);
  const a = 2 / (9 * df);
  return Math.max(0, df * Math.pow(1 - a + z * Math.sqrt(a), 3));
}

/**
 * Exact-style confidence bounds on a Poisson failure rate observed as `failures` in `exposure`
 * (chi-square limits, Garwood): [χ²(α/2, 2d) / 2T, χ²(1 − α/2, 2d + 2) / 2T].
 */
export function rateInterval(failures: number, exposure: number, level = 0.95): { lower: number; upper: number } {
  const alpha = 1 - level;
  const lower = failures === 0 ? 0 : chiSquareQuantile(alpha / 2, 2 * failures) / (2 * exposure);
  const upper = chiSquareQuantile(1 - alpha / 2, 2 * failures + 2) / (2 * exposure);
  return { lower, upper };
}

/**
 * Chooses between the exponential and the Weibull fit by AIC (the Weibull's extra parameter must
 * buy at least one unit of log-likelihood) and needs `minFailures` to try the Weibull at all.
 */
export function fitFailureTimes(lifetimes: readonly Lifetime[], minFailuresForWeibull = 5): FailureTimeFit {
  const exponential = fitExponential(lifetimes);
  if (exponential.failures < minFailuresForWeibull) return exponential;
  const weibull = fitWeibull(lifetimes);
  if (weibull && 2 * 2 - 2 * weibull.logLikelihood < 2 * 1 - 2 * exponential.logLikelihood) return weibull;
  return exponential;
}

/**
 * Bounds on the conditional failure probability from the uncertainty of the rate: the failure
 * count is treated as Poisson in the model's own time scale (t^k for a Weibull, conditional on
 * the fitted shape), and the chi-square limits of its rate are carried through.
 */
export function conditionalFailureInterval(
  fit: FailureTimeFit,
  lifetimes: readonly Lifetime[],
  age: number,
  horizon: number,
  level = 0.95,
): { lower: number; upper: number } {
  if (fit.kind === "exponential") {
    const { lower, upper } = rateInterval(fit.failures, fit.exposure, level);
    return { lower: -Math.expm1(-lower * horizon), upper: -Math.expm1(-upper * horizon) };
  }
  const k = fit.shape;
  const exposure = lifetimes.reduce((s, l) => s + (l.duration > 0 ? Math.pow(l.duration, k) : 0), 0);
  const { lower, upper } = rateInterval(fit.failures, exposure, level);
  const hazardGain = Math.pow(age + horizon, k) - Math.pow(Math.max(age, 0), k);
  return { lower: -Math.expm1(-lower * hazardGain), upper: -Math.expm1(-upper * hazardGain) };
}

/**
 * Where the failure rate last changed: the split of a time-ordered list of lifetimes into an
 * earlier and a recent part (at a failure) that most raises the likelihood of an exponential
 * model with one rate per part over one rate for all. Returns the index of the first lifetime
 * of the recent part, or 0 when no split gains at least `minGain` in 2·log-likelihood (a
 * likelihood-ratio test; 10 keeps the false-split rate low over a search of many positions) or
 * leaves fewer than `minRecentFailures` in the recent part.
 */
export function recentRegimeStart(lifetimes: readonly Lifetime[], minRecentFailures = 3, minGain = 10): number {
  const ll = (failures: number, exposure: number) => (failures > 0 && exposure > 0 ? failures * Math.log(failures / exposure) - failures : 0);
  const total = failuresAndExposure(lifetimes);
  const whole = ll(total.failures, total.exposure);
  let best = 0;
  let bestGain = minGain;
  let failures = 0;
  let exposure = 0;
  for (let i = 0; i < lifetimes.length - 1; i++) {
    const l = lifetimes[i] as Lifetime;
    if (l.duration > 0) exposure += l.duration;
    if (!l.failed) continue;
    failures++;
    const recentFailures = total.failures - failures;
    if (recentFailures < minRecentFailures) break;
    const gain = 2 * (ll(failures, exposure) + ll(recentFailures, total.exposure - exposure) - whole);
    if (gain > bestGain) {
      bestGain = gain;
      best = i + 1;
    }
  }
  return best;
}
