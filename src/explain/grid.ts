/**
 * The analysis grid: equal buckets over the baseline, then over the symptom window (the two may
 * be apart, in either order). Signals are put on it to find when they moved and how they
 * correlate with the symptom.
 */
import { niceWidthAtLeast } from '../time.js';
import type { Symptom } from './types.js';

/** About this many buckets over the symptom window. */
const TARGET_WINDOW_BUCKETS = 60;

export function chooseBucketMs(windowMs: number): number {
  return Math.min(3_600_000, Math.max(1000, niceWidthAtLeast(Math.ceil(windowMs / TARGET_WINDOW_BUCKETS))));
}

export class Grid {
  readonly baselineBuckets: number;
  readonly windowBuckets: number;

  constructor(
    readonly symptom: Symptom,
    readonly bucketMs: number,
  ) {
    this.baselineBuckets = Math.ceil((symptom.baseline_end - symptom.baseline_start) / bucketMs);
    this.windowBuckets = Math.ceil((symptom.end - symptom.start) / bucketMs);
  }

  get size(): number {
    return this.baselineBuckets + this.windowBuckets;
  }

  /** Bucket index of a time, or -1 outside both ranges. */
  index(ts: number): number {
    const s = this.symptom;
    if (ts >= s.start && ts < s.end) return this.baselineBuckets + Math.floor((ts - s.start) / this.bucketMs);
    if (ts >= s.baseline_start && ts < s.baseline_end) return Math.floor((ts - s.baseline_start) / this.bucketMs);
    return -1;
  }

  startOf(index: number): number {
    const s = this.symptom;
    return index < this.baselineBuckets
      ? s.baseline_start + index * this.bucketMs
      : s.start + (index - this.baselineBuckets) * this.bucketMs;
  }

  isWindow(index: number): boolean {
    return index >= this.baselineBuckets;
  }

  /** A grid-sized array of NaN. */
  empty(): Float64Array {
    return new Float64Array(this.size).fill(Number.NaN);
  }

  /** Mean of the points in each bucket (NaN where none fell). */
  bucketMean(ts: ArrayLike<number>, values: ArrayLike<number>): Float64Array {
    const sums = new Float64Array(this.size);
    const counts = new Uint32Array(this.size);
    for (let i = 0; i < ts.length; i++) {
      const b = this.index(ts[i] as number);
      if (b < 0) continue;
      sums[b]! += values[i] as number;
      counts[b]!++;
    }
    const out = this.empty();
    for (let b = 0; b < this.size; b++) if (counts[b]! > 0) out[b] = sums[b]! / counts[b]!;
    return out;
  }

  /** The baseline part and the window part of a grid array, NaN dropped. */
  split(grid: Float64Array): { baseline: number[]; window: number[]; windowIndex: number[] } {
    const baseline: number[] = [];
    const window: number[] = [];
    const windowIndex: number[] = [];
    for (let b = 0; b < grid.length; b++) {
      const v = grid[b]!;
      if (Number.isNaN(v)) continue;
      if (b < this.baselineBuckets) baseline.push(v);
      else {
        window.push(v);
        windowIndex.push(b);
      }
    }
    return { baseline, window, windowIndex };
  }
}
