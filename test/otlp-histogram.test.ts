/** Quantile estimation from OpenTelemetry histogram buckets (src/stats/histogram.ts). */
import { describe, expect, it } from 'vitest';
import {
  bucketQuantile,
  downscaleSide,
  explicitBuckets,
  exponentialBuckets,
  exponentialLowerBound,
  subtractCounts,
  subtractSides,
} from '../src/stats/histogram.js';
import { quantile } from '../src/stats/robust.js';

/** A deterministic lognormal sample (median 0.2 s, log-sigma 0.6). */
function lognormalSample(n: number): number[] {
  let seed = 12345;
  const uniform = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return (seed + 0.5) / 2147483648;
  };
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const z = Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
    out.push(0.2 * Math.exp(0.6 * z));
  }
  return out;
}

function explicitCounts(values: number[], bounds: number[]): number[] {
  const counts = new Array<number>(bounds.length + 1).fill(0);
  for (const v of values) {
    let i = 0;
    while (i < bounds.length && v > bounds[i]!) i++;
    counts[i]!++;
  }
  return counts;
}

/** Positive values only: index = ceil(log2(v) * 2^scale) - 1, so bucket i holds (base^i, base^(i+1)]. */
function exponentialSide(values: number[], scale: number): { offset: number; counts: number[] } {
  const indexes = values.map((v) => Math.ceil(Math.log2(v) * Math.pow(2, scale)) - 1);
  const offset = Math.min(...indexes);
  const counts = new Array<number>(Math.max(...indexes) - offset + 1).fill(0);
  for (const i of indexes) counts[i - offset]!++;
  return { offset, counts };
}

describe('bucketQuantile', () => {
  it('interpolates linearly inside the bucket that holds the rank', () => {
    const buckets = explicitBuckets([0, 5, 10, 25], [0, 10, 20, 30, 0]);
    expect(bucketQuantile(buckets, 0.5)).toBeCloseTo(10, 12);
    expect(bucketQuantile(buckets, 0.25)).toBeCloseTo(5 + 5 * 0.25, 12);
    expect(bucketQuantile(buckets, 0.9)).toBeCloseTo(10 + 15 * 0.8, 12);
    expect(bucketQuantile(explicitBuckets([1], [0, 0]), 0.5)).toBeNull();
  });

  it('closes the open-ended buckets with the observed min and max, else answers the finite bound', () => {
    expect(bucketQuantile(explicitBuckets([10, 20], [0, 0, 4]), 0.5)).toBe(20);
    expect(bucketQuantile(explicitBuckets([10, 20], [0, 0, 4], 21, 40), 0.5)).toBeCloseTo(30, 12);
    expect(bucketQuantile(explicitBuckets([10, 20], [4, 0, 0]), 0.5)).toBeCloseTo(5, 12);
    expect(bucketQuantile(explicitBuckets([10, 20], [4, 0, 0], 6), 0.5)).toBeCloseTo(8, 12);
    expect(bucketQuantile(explicitBuckets([-5, 20], [4, 0, 0]), 0.5)).toBe(-5);
    expect(() => explicitBuckets([1, 2], [1, 2])).toThrow('2 bucket counts for 2 bounds (expected 3)');
  });

  it('lands within the true quantile\'s bucket for a lognormal sample on the OpenTelemetry default bounds', () => {
    const values = lognormalSample(20_000);
    const bounds = [0, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];
    const buckets = explicitBuckets(bounds, explicitCounts(values, bounds), Math.min(...values), Math.max(...values));
    for (const q of [0.5, 0.95, 0.99]) {
      const exact = quantile(values, q);
      const estimate = bucketQuantile(buckets, q)!;
      const bucket = buckets.find((b) => exact > b.lower && exact <= b.upper)!;
      expect(estimate, `q=${q}`).toBeGreaterThanOrEqual(bucket.lower);
      expect(estimate, `q=${q}`).toBeLessThanOrEqual(bucket.upper);
    }
  });

  it('is within one bucket\'s relative width of the true quantile on exponential buckets', () => {
    const values = lognormalSample(20_000);
    const scale = 4;
    const buckets = exponentialBuckets(scale, 0, 0, exponentialSide(values, scale), { offset: 0, counts: [] });
    const width = Math.pow(2, Math.pow(2, -scale)) - 1;
    for (const q of [0.5, 0.95, 0.99]) {
      const exact = quantile(values, q);
      const estimate = bucketQuantile(buckets, q)!;
      expect(Math.abs(estimate / exact - 1), `q=${q}`).toBeLessThan(width);
    }
  });
});

describe('exponential buckets', () => {
  it('has bounds base^i with base = 2^(2^-scale), negatives mirrored below the zero bucket', () => {
    expect(exponentialLowerBound(8, 3)).toBeCloseTo(2, 12);
    expect(exponentialLowerBound(1, 0)).toBe(2);
    expect(exponentialLowerBound(1, -1)).toBe(4);
    const buckets = exponentialBuckets(0, 2, 0.001, { offset: 1, counts: [3] }, { offset: 0, counts: [1, 4] });
    expect(buckets).toEqual([
      { lower: -4, upper: -2, count: 4 },
      { lower: -2, upper: -1, count: 1 },
      { lower: -0.001, upper: 0.001, count: 2 },
      { lower: 2, upper: 4, count: 3 },
    ]);
  });

  it('downscales by merging index i into i >> by (floor, also for negative indexes)', () => {
    expect(downscaleSide({ offset: -3, counts: [1, 2, 3, 4, 5, 6] }, 1)).toEqual({ offset: -2, counts: [1, 5, 9, 6] });
    expect(downscaleSide({ offset: 5, counts: [1, 1, 1, 1] }, 2)).toEqual({ offset: 1, counts: [3, 1] });
    expect(downscaleSide({ offset: 5, counts: [1] }, 0)).toEqual({ offset: 5, counts: [1] });
  });

  it('subtracts a previous cumulative histogram, refusing counts that went down', () => {
    expect(subtractSides({ offset: 1, counts: [4, 6] }, { offset: 1, counts: [4] })).toEqual({ offset: 1, counts: [0, 6] });
    expect(subtractSides({ offset: 2, counts: [4] }, { offset: 1, counts: [1, 1] })).toBeNull();
    // Far-apart ranges (garbage, or a reset at another scale) are not subtracted, nor allocated.
    expect(subtractSides({ offset: 2_000_000_000, counts: [1] }, { offset: -2_000_000_000, counts: [1] })).toBeNull();
    expect(subtractCounts([5, 7, 1], [5, 2, 0])).toEqual([0, 5, 1]);
    expect(subtractCounts([5, 1], [5, 2])).toBeNull();
    expect(subtractCounts([5, 1], [5])).toBeNull();
  });
});
