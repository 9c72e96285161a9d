/**
 * Probability distributions needed by the tests and scores in `stats/`.
 * Plain numeric code: no I/O, no dependencies.
 */

const LANCZOS_COEFFICIENTS = [
  676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
  12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

/** Natural logarithm of the gamma function, for x > 0 (Lanczos approximation, ~15 digits). */
export function logGamma(x: number): number {
  if (x < 0.5) {
    // Reflection formula keeps the approximation accurate near zero.
    return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  }
  const shifted = x - 1;
  let sum = 0.99999999999980993;
  for (let i = 0; i < LANCZOS_COEFFICIENTS.length; i++) {
    sum += (LANCZOS_COEFFICIENTS[i] as number) / (shifted + i + 1);
  }
  const t = shifted + LANCZOS_COEFFICIENTS.length - 0.5;
  return 0.5 * Math.log(2 * Math.PI) + (shifted + 0.5) * Math.log(t) - t + Math.log(sum);
}

/** log of the binomial coefficient C(n, k). */
export function logChoose(n: number, k: number): number {
  return logGamma(n + 1) - logGamma(k + 1) - logGamma(n - k + 1);
}

/**
 * Complementary error function with relative error below 1.2e-7 everywhere
 * (Numerical Recipes' Chebyshev fit), which keeps far-tail probabilities meaningful
 * instead of rounding them to zero as `1 - erf(x)` would.
 */
export function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const value =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t *
                  (0.09678418 +
                    t *
                      (-0.18628806 +
                        t *
                          (0.27886807 +
                            t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? value : 2 - value;
}

/** P(Z <= z) for a standard normal Z. */
export function normalCdf(z: number): number {
  return 0.5 * erfc(-z / Math.SQRT2);
}

/** P(Z >= z) for a standard normal Z (upper tail), accurate far into the tail. */
export function normalUpperTail(z: number): number {
  return 0.5 * erfc(z / Math.SQRT2);
}

/** P(|Z| >= |z|) for a standard normal Z. */
export function normalTwoSidedTail(z: number): number {
  return erfc(Math.abs(z) / Math.SQRT2);
}

/**
 * Inverse of the standard normal CDF (Acklam's rational approximation, relative error < 1.2e-9).
 * Returns -Infinity for p <= 0 and +Infinity for p >= 1.
 */
export function normalQuantile(p: number): number {
  if (p <= 0) return -Infinity;
  if (p >= 1) return Infinity;
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const [a0, a1, a2, a3, a4, a5] = a as [number, number, number, number, number, number];
  const [b0, b1, b2, b3, b4] = b as [number, number, number, number, number];
  const [c0, c1, c2, c3, c4, c5] = c as [number, number, number, number, number, number];
  const [d0, d1, d2, d3] = d as [number, number, number, number];
  const lowBreak = 0.02425;
  if (p < lowBreak) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c0 * q + c1) * q + c2) * q + c3) * q + c4) * q + c5) / ((((d0 * q + d1) * q + d2) * q + d3) * q + 1);
  }
  if (p > 1 - lowBreak) {
    const q = Math.sqrt(-2 * Math.log(1 - p));
    return -(((((c0 * q + c1) * q + c2) * q + c3) * q + c4) * q + c5) / ((((d0 * q + d1) * q + d2) * q + d3) * q + 1);
  }
  const q = p - 0.5;
  const r = q * q;
  return ((((((a0 * r + a1) * r + a2) * r + a3) * r + a4) * r + a5) * q) /
    (((((b0 * r + b1) * r + b2) * r + b3) * r + b4) * r + 1);
}

/**
 * Below this many natural-log units under the largest term, a term's exp() is exactly 0 in double
 * precision (the smallest positive double is e^-744.4): adding it changes nothing. The margin
 * covers the rounding error of the terms themselves.
 */
const NEGLIGIBLE_LOG = -800;
/** Reused across calls: the log terms of one tail. */
let termBuffer = new Float64Array(1024);

/**
 * P(X >= k) for X ~ Binomial(n, p), summed exactly in log space (O(n - k) terms).
 * This is the one-sided p-value of "k or more events out of n when the true rate is p".
 *
 * The terms are log-concave in i: past the largest one they only fall, so once a term is
 * NEGLIGIBLE_LOG below the largest so far, every later one would add exactly 0 to the sum and
 * the loop stops there. The answer is bit for bit that of summing every term; on a week of
 * requests it is hundreds of terms instead of tens of thousands.
 */
export function binomialUpperTail(k: number, n: number, p: number): number {
  if (k <= 0) return 1;
  if (k > n) return 0;
  if (p <= 0) return 0;
  if (p >= 1) return 1;
  const logP = Math.log(p);
  const logQ = Math.log1p(-p);
  const logGammaN = logGamma(n + 1);
  if (termBuffer.length < n - k + 1) termBuffer = new Float64Array(Math.max(n - k + 1, 2 * termBuffer.length));
  const terms = termBuffer;
  // Sum from the mode side outwards with a running max to avoid underflow.
  let maxLog = -Infinity;
  let count = 0;
  for (let i = k; i <= n; i++) {
    // logChoose(n, i), with logGamma(n + 1) computed once
    const term = logGammaN - logGamma(i + 1) - logGamma(n - i + 1) + i * logP + (n - i) * logQ;
    terms[count++] = term;
    if (term > maxLog) maxLog = term;
    else if (term - maxLog < NEGLIGIBLE_LOG) break;
  }
  let sum = 0;
  for (let j = 0; j < count; j++) sum += Math.exp(terms[j]! - maxLog);
  return Math.min(1, Math.exp(maxLog) * sum);
}

/** P(X <= k) for X ~ Binomial(n, p): "k or fewer events out of n when the true rate is p". */
export function binomialLowerTail(k: number, n: number, p: number): number {
  if (k >= n) return 1;
  return Math.max(0, 1 - binomialUpperTail(k + 1, n, p));
}

/** P(X <= k) for X ~ Poisson(lambda). */
export function poissonLowerTail(k: number, lambda: number): number {
  return Math.max(0, 1 - poissonUpperTail(k + 1, lambda));
}

/** P(X >= k) for X ~ Poisson(lambda), summed exactly in log space. */
export function poissonUpperTail(k: number, lambda: number): number {
  if (k <= 0) return 1;
  if (lambda <= 0) return 0;
  // P(X >= k) = 1 - P(X <= k - 1); sum the smaller side to keep precision.
  if (k - 1 < lambda) {
    let lower = 0;
    for (let i = 0; i < k; i++) lower += Math.exp(i * Math.log(lambda) - lambda - logGamma(i + 1));
    return Math.max(0, 1 - lower);
  }
  let upper = 0;
  let term = Math.exp(k * Math.log(lambda) - lambda - logGamma(k + 1));
  for (let i = k; term > upper * 1e-17 || i < k + 1; i++) {
    upper += term;
    term *= lambda / (i + 1);
    if (i > k + 100_000) break;
  }
  return Math.min(1, upper);
}
