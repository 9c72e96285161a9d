/**
 * Streaming windows over the most recent points: a ring buffer, O(1) rolling moments, and a
 * sorted window giving the rolling median, any quantile and the exact MAD.
 */
import { MAD_TO_SIGMA, type RobustLocationScale } from "./robust.js";

/** Fixed-capacity FIFO of numbers; the oldest value is overwritten once full. */
export class RingBuffer {
  private readonly values: Float64Array;
  private start = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError("capacity must be a positive integer");
    this.values = new Float64Array(capacity);
  }

  get length(): number {
    return this.count;
  }

  get isFull(): boolean {
    return this.count === this.capacity;
  }

  /** Appends a value; returns the value it evicted, or undefined when there was room. */
  push(value: number): number | undefined {
    if (this.count < this.capacity) {
      this.values[(this.start + this.count) % this.capacity] = value;
      this.count++;
      return undefined;
    }
    const evicted = this.values[this.start] as number;
    this.values[this.start] = value;
    this.start = (this.start + 1) % this.capacity;
    return evicted;
  }

  /** i = 0 is the oldest value held, length - 1 the newest. */
  get(i: number): number {
    return this.values[(this.start + i) % this.capacity] as number;
  }

  /** Value `lag` steps back from the newest (lag 0 = newest). */
  fromNewest(lag: number): number {
    return this.get(this.count - 1 - lag);
  }

  /** Overwrites the newest value (no-op when empty). */
  replaceNewest(value: number): void {
    if (this.count === 0) return;
    this.values[(this.start + this.count - 1) % this.capacity] = value;
  }

  toArray(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.count; i++) out.push(this.get(i));
    return out;
  }

  clear(): void {
    this.start = 0;
    this.count = 0;
  }
}

/**
 * Rolling mean and variance over the last `capacity` values in O(1) per point. Sums are kept
 * around a shift (re-centred now and then) so that large offsets do not cancel precision away.
 */
export class RollingMoments {
  private readonly window: RingBuffer;
  private shift = NaN;
  private sum = 0;
  private sumOfSquares = 0;
  private pushesSinceResum = 0;

  constructor(capacity: number) {
    this.window = new RingBuffer(capacity);
  }

  get length(): number {
    return this.window.length;
  }

  push(value: number): void {
    if (Number.isNaN(this.shift)) this.shift = value;
    const evicted = this.window.push(value);
    const centred = value - this.shift;
    this.sum += centred;
    this.sumOfSquares += centred * centred;
    if (evicted !== undefined) {
      const evictedCentred = evicted - this.shift;
      this.sum -= evictedCentred;
      this.sumOfSquares -= evictedCentred * evictedCentred;
    }
    if (++this.pushesSinceResum >= this.window.capacity) this.resum();
  }

  get mean(): number {
    return this.window.length === 0 ? NaN : this.shift + this.sum / this.window.length;
  }

  /** Sample variance (n - 1 denominator); NaN with fewer than two values. */
  get variance(): number {
    const n = this.window.length;
    if (n < 2) return NaN;
    return Math.max(0, (this.sumOfSquares - (this.sum * this.sum) / n) / (n - 1));
  }

  get standardDeviation(): number {
    return Math.sqrt(this.variance);
  }

  /** Re-centres on the current mean and recomputes the sums from the window. */
  private resum(): void {
    this.pushesSinceResum = 0;
    this.shift = this.mean;
    this.sum = 0;
    this.sumOfSquares = 0;
    for (let i = 0; i < this.window.length; i++) {
      const centred = this.window.get(i) - this.shift;
      this.sum += centred;
      this.sumOfSquares += centred * centred;
    }
  }
}

/**
 * First index in sorted[0..length) whose value is >= target. Branch-free: the step taken
 * depends on the comparison arithmetically, not through a jump, because on random data a
 * jump is mispredicted every other step and that, not the comparisons, is the cost.
 */
function lowerBound(sorted: Float64Array, length: number, target: number): number {
  let base = 0;
  let remaining = length;
  while (remaining > 1) {
    const half = remaining >>> 1;
    base += half * Number((sorted[base + half - 1] as number) < target);
    remaining -= half;
  }
  return remaining === 1 ? base + Number((sorted[base] as number) < target) : base;
}

/**
 * The last `capacity` values kept both in arrival order and sorted, so that the median, any
 * quantile (O(1)) and the exact median absolute deviation (O(log n)) can be read after each push.
 * A push costs O(log n) comparisons plus one memmove of at most n doubles.
 */
export class RollingSortedWindow {
  private readonly arrival: RingBuffer;
  private readonly sorted: Float64Array;
  /**
   * The last countBelow answer, kept until the next push: callers often ask how many values lie
   * below x and then push x (TailRarity does), and that count is where x is inserted.
   */
  private lastCountedValue = NaN;
  private lastCountBelow = 0;

  constructor(readonly capacity: number) {
    this.arrival = new RingBuffer(capacity);
    this.sorted = new Float64Array(capacity);
  }

  get length(): number {
    return this.arrival.length;
  }

  get isFull(): boolean {
    return this.arrival.isFull;
  }

  /** Value `lag` steps back from the newest, in arrival order. */
  fromNewest(lag: number): number {
    return this.arrival.fromNewest(lag);
  }

  push(value: number): void {
    if (Number.isNaN(value)) throw new RangeError("RollingSortedWindow does not accept NaN");
    const sizeBefore = this.arrival.length;
    const evicted = this.arrival.push(value);
    const sorted = this.sorted;
    const insertAt = value === this.lastCountedValue ? this.lastCountBelow : lowerBound(sorted, sizeBefore, value);
    this.lastCountedValue = NaN;
    if (evicted === undefined) {
      sorted.copyWithin(insertAt + 1, insertAt, sizeBefore);
      sorted[insertAt] = value;
      return;
    }
    // Replace the evicted value by the new one, shifting only the elements between the two.
    const removeAt = lowerBound(sorted, sizeBefore, evicted);
    if (insertAt <= removeAt) {
      sorted.copyWithin(insertAt + 1, insertAt, removeAt);
      sorted[insertAt] = value;
    } else {
      sorted.copyWithin(removeAt, removeAt + 1, insertAt);
      sorted[insertAt - 1] = value;
    }
  }

  /** Quantile with linear interpolation (type 7); NaN when empty. */
  quantile(q: number): number {
    const n = this.arrival.length;
    if (n === 0) return NaN;
    const position = Math.min(Math.max(q, 0), 1) * (n - 1);
    const below = Math.floor(position);
    const above = Math.min(below + 1, n - 1);
    const low = this.sorted[below] as number;
    return low + ((this.sorted[above] as number) - low) * (position - below);
  }

  get median(): number {
    return this.quantile(0.5);
  }

  get min(): number {
    return this.arrival.length === 0 ? NaN : (this.sorted[0] as number);
  }

  get max(): number {
    return this.arrival.length === 0 ? NaN : (this.sorted[this.arrival.length - 1] as number);
  }

  /** Number of values held that are strictly below `value`. */
  countBelow(value: number): number {
    this.lastCountBelow = lowerBound(this.sorted, this.arrival.length, value);
    this.lastCountedValue = value;
    return this.lastCountBelow;
  }

  /**
   * Exact median absolute deviation around the median (unscaled). The absolute deviations
   * form two sorted runs (left of the median, read backwards, and right of it), so their
   * median is the k-th smallest of two sorted sequences: a binary search, no copy.
   */
  mad(): number {
    const n = this.arrival.length;
    if (n === 0) return NaN;
    const center = this.median;
    const sorted = this.sorted;
    const split = lowerBound(sorted, n, center);
    const leftLength = split;
    const rightLength = n - split;
    const left = (i: number): number => center - (sorted[split - 1 - i] as number);
    const right = (j: number): number => (sorted[split + j] as number) - center;
    const kth = (k: number): number => {
      const need = k + 1;
      let low = Math.max(0, need - rightLength);
      let high = Math.min(need, leftLength);
      while (low <= high) {
        const i = (low + high) >>> 1;
        const j = need - i;
        const leftPrev = i > 0 ? left(i - 1) : -Infinity;
        const leftNext = i < leftLength ? left(i) : Infinity;
        const rightPrev = j > 0 ? right(j - 1) : -Infinity;
        const rightNext = j < rightLength ? right(j) : Infinity;
        if (leftPrev > rightNext) high = i - 1;
        else if (rightPrev > leftNext) low = i + 1;
        else return Math.max(leftPrev, rightPrev);
      }
      return NaN; // unreachable for 0 <= k < n
    };
    if (n % 2 === 1) return kth((n - 1) / 2);
    return 0.5 * (kth(n / 2 - 1) + kth(n / 2));
  }

  /** Median and MAD-based sigma of the window. */
  locationScale(): RobustLocationScale {
    return { median: this.median, sigma: MAD_TO_SIGMA * this.mad() };
  }
}
