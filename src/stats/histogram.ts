/**
 * Quantiles estimated from bucketed distributions (OpenTelemetry explicit-bound and exponential
 * histograms), and the bucket arithmetic needed to turn cumulative histograms into per-interval
 * ones. Pure numbers: no I/O, no metric names.
 *
 * Estimation: the bucket holding the wanted rank is found by cumulative count, and the value is
 * interpolated linearly between that bucket's bounds (as Prometheus' `histogram_quantile` does).
 * Open-ended buckets are closed by the observed min/max when known; otherwise the estimate is the
 * finite bound (the first bucket's upper bound, or the last finite bound for the overflow bucket).
 */

export interface Bucket {
  lower: number;
  upper: number;
  count: number;
}

/** Quantile `q` (0..1) of the bucketed distribution, or null when it holds no observations. */
export function bucketQuantile(buckets: readonly Bucket[], q: number): number | null {
  let total = 0;
  for (const b of buckets) if (b.count > 0) total += b.count;
  if (!(total > 0)) return null;
  const rank = Math.min(Math.max(q, 0), 1) * total;
  let cumulative = 0;
  let last: Bucket | null = null;
  for (const b of buckets) {
    if (!(b.count > 0)) continue;
    last = b;
    if (cumulative + b.count >= rank) {
      const fraction = (rank - cumulative) / b.count;
      return b.lower + (b.upper - b.lower) * fraction;
    }
    cumulative += b.count;
  }
  return last ? last.upper : null;
}

/** Clamps `value` into [min, max] where those are known. */
export function clampToRange(value: number, min?: number | null, max?: number | null): number {
  let v = value;
  if (min !== undefined && min !== null && Number.isFinite(min) && v < min) v = min;
  if (max !== undefined && max !== null && Number.isFinite(max) && v > max) v = max;
  return v;
}

/**
 * Buckets of an explicit-bound histogram: `counts[i]` covers (bounds[i-1], bounds[i]], the first
 * (-inf, bounds[0]] and the last (bounds[n-1], +inf). `counts.length` must be `bounds.length + 1`.
 */
export function explicitBuckets(bounds: readonly number[], counts: readonly number[], min?: number | null, max?: number | null): Bucket[] {
  if (counts.length !== bounds.length + 1) {
    throw new Error(`explicit histogram: ${counts.length} bucket counts for ${bounds.length} bounds (expected ${bounds.length + 1})`);
  }
  const known = (x: number | null | undefined): x is number => x !== undefined && x !== null && Number.isFinite(x);
  const out: Bucket[] = [];
  if (bounds.length === 0) {
    // A single bucket: only min and max, when known, say anything about where values lie.
    if (known(min) && known(max)) out.push({ lower: min, upper: max, count: counts[0]! });
    return out;
  }
  for (let i = 0; i < counts.length; i++) {
    let lower: number;
    let upper: number;
    if (i === 0) {
      upper = bounds[0]!;
      lower = known(min) && min < upper ? min : upper > 0 ? 0 : upper;
    } else if (i === bounds.length) {
      lower = bounds[i - 1]!;
      upper = known(max) && max > lower ? max : lower;
    } else {
      lower = bounds[i - 1]!;
      upper = bounds[i]!;
    }
    out.push({ lower, upper, count: counts[i]! });
  }
  return out;
}

/** Counts of one side of an exponential histogram: `counts[k]` is bucket index `offset + k`. */
export interface ExponentialSide {
  offset: number;
  counts: number[];
}

/**
 * Lower bound of positive bucket `index` at `scale`: base^index with base = 2^(2^-scale). Bucket
 * `index` covers (base^index, base^(index+1)].
 */
export function exponentialLowerBound(index: number, scale: number): number {
  return Math.pow(2, index * Math.pow(2, -scale));
}

/** Buckets of an exponential histogram, ascending: negatives, the zero bucket, positives. */
export function exponentialBuckets(
  scale: number,
  zeroCount: number,
  zeroThreshold: number,
  positive: ExponentialSide,
  negative: ExponentialSide,
  min?: number | null,
  max?: number | null,
): Bucket[] {
  const out: Bucket[] = [];
  for (let k = negative.counts.length - 1; k >= 0; k--) {
    const index = negative.offset + k;
    out.push({ lower: -exponentialLowerBound(index + 1, scale), upper: -exponentialLowerBound(index, scale), count: negative.counts[k]! });
  }
  const zt = Math.abs(zeroThreshold);
  if (zeroCount > 0) out.push({ lower: -zt, upper: zt, count: zeroCount });
  for (let k = 0; k < positive.counts.length; k++) {
    const index = positive.offset + k;
    out.push({ lower: exponentialLowerBound(index, scale), upper: exponentialLowerBound(index + 1, scale), count: positive.counts[k]! });
  }
  if (out.length > 0) {
    // Observed extremes tighten the outermost buckets.
    const first = out.find((b) => b.count > 0);
    const last = [...out].reverse().find((b) => b.count > 0);
    if (first && min !== undefined && min !== null && Number.isFinite(min) && min > first.lower && min <= first.upper) first.lower = min;
    if (last && max !== undefined && max !== null && Number.isFinite(max) && max < last.upper && max >= last.lower) last.upper = max;
  }
  return out;
}

/**
 * The same counts at a coarser scale (`by` ≥ 0 steps): bucket i becomes i >> by, as the
 * OpenTelemetry data model defines downscaling.
 */
export function downscaleSide(side: ExponentialSide, by: number): ExponentialSide {
  if (by <= 0 || side.counts.length === 0) return side;
  const offset = side.offset >> by;
  const last = (side.offset + side.counts.length - 1) >> by;
  const counts = new Array<number>(last - offset + 1).fill(0);
  for (let k = 0; k < side.counts.length; k++) {
    const index = (side.offset + k) >> by;
    counts[index - offset]! += side.counts[k]!;
  }
  return { offset, counts };
}

/** `current - previous` bucket by bucket (same scale), or null when any bucket went down. */
export function subtractSides(current: ExponentialSide, previous: ExponentialSide): ExponentialSide | null {
  if (previous.counts.length === 0) return current;
  const start = Math.min(current.offset, previous.offset);
  const end = Math.max(current.offset + current.counts.length, previous.offset + previous.counts.length);
  // A later cumulative point covers the earlier one's buckets; ranges far apart cannot be told apart from a reset.
  if (end - start > current.counts.length + previous.counts.length) return null;
  const counts = new Array<number>(Math.max(end - start, 0)).fill(0);
  for (let k = 0; k < current.counts.length; k++) counts[current.offset + k - start]! += current.counts[k]!;
  for (let k = 0; k < previous.counts.length; k++) counts[previous.offset + k - start]! -= previous.counts[k]!;
  for (const c of counts) if (c < 0) return null;
  return { offset: start, counts };
}

/** `current - previous` for explicit-bound counts with the same bounds, or null when any went down. */
export function subtractCounts(current: readonly number[], previous: readonly number[]): number[] | null {
  if (current.length !== previous.length) return null;
  const out = new Array<number>(current.length);
  for (let i = 0; i < current.length; i++) {
    const d = current[i]! - previous[i]!;
    if (d < 0) return null;
    out[i] = d;
  }
  return out;
}
