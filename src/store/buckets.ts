/** Aggregation of raw points and roll-ups into time buckets (no SQL here: the rows come from the store). */
import { quantileOfSorted } from '../stats/robust.js';

export interface Bucket {
  /** Bucket start, epoch ms, aligned to a multiple of the bucket width since the epoch. */
  start: number;
  count: number;
  sum: number;
  avg: number;
  min: number;
  max: number;
  /** Percentiles over the raw points; null where the bucket holds only roll-ups (raw data pruned). */
  p50: number | null;
  p95: number | null;
  p99: number | null;
  /** Sum of values per second of bucket width: the rate of a delta counter. */
  rate: number;
}

export interface RollupRow {
  ts: number;
  count: number;
  sum: number;
  min: number;
  max: number;
}

/**
 * Buckets raw points (ts ascending, as parallel arrays) and roll-up rows into sparse buckets:
 * a bucket with no data is left out.
 */
export function aggregateBuckets(
  timestamps: ArrayLike<number>,
  values: ArrayLike<number>,
  rollups: readonly RollupRow[],
  bucketMs: number,
): Bucket[] {
  const byStart = new Map<number, { raw: number[]; count: number; sum: number; min: number; max: number }>();
  const slot = (start: number) => {
    let b = byStart.get(start);
    if (!b) {
      b = { raw: [], count: 0, sum: 0, min: Infinity, max: -Infinity };
      byStart.set(start, b);
    }
    return b;
  };
  for (const r of rollups) {
    const b = slot(Math.floor(r.ts / bucketMs) * bucketMs);
    b.count += r.count;
    b.sum += r.sum;
    if (r.min < b.min) b.min = r.min;
    if (r.max > b.max) b.max = r.max;
  }
  for (let i = 0; i < timestamps.length; i++) {
    const v = values[i]!;
    const b = slot(Math.floor(timestamps[i]! / bucketMs) * bucketMs);
    b.raw.push(v);
    b.count += 1;
    b.sum += v;
    if (v < b.min) b.min = v;
    if (v > b.max) b.max = v;
  }
  const seconds = bucketMs / 1000;
  return [...byStart.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([start, b]) => {
      const sorted = Float64Array.from(b.raw).sort();
      const pct = (q: number) => (sorted.length ? quantileOfSorted(sorted, q) : null);
      return {
        start,
        count: b.count,
        sum: b.sum,
        avg: b.sum / b.count,
        min: b.min,
        max: b.max,
        p50: pct(0.5),
        p95: pct(0.95),
        p99: pct(0.99),
        rate: b.sum / seconds,
      };
    });
}
