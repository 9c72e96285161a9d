/**
 * Seasonal profiles: the typical value at a phase of a cycle (hour of day, hour of week),
 * learned causally from the same phase of previous cycles.
 */
import { RingBuffer } from "./rolling.js";

export const MINUTE_MS = 60_000;
export const HOUR_MS = 60 * MINUTE_MS;
export const DAY_MS = 24 * HOUR_MS;
export const WEEK_MS = 7 * DAY_MS;

export interface SeasonalProfileOptions {
  /** Length of the cycle, e.g. DAY_MS or WEEK_MS. */
  periodMs: number;
  /** Width of one phase bucket, e.g. HOUR_MS; must divide the period. */
  slotMs: number;
  /** Previous cycles remembered per slot (their median is the expectation). */
  cyclesKept?: number;
  /** Cycles of history (and values in the slot) needed before the profile answers. */
  minCycles?: number;
  /** Shift applied to timestamps before bucketing (e.g. a time-zone offset). */
  offsetMs?: number;
}

export interface SeasonalExpectation {
  /** Median of this slot over the remembered cycles. */
  expected: number;
  /** Number of cycles that contributed. */
  cycles: number;
}

export class SeasonalProfile {
  readonly periodMs: number;
  readonly slotMs: number;
  private readonly minCycles: number;
  private readonly offsetMs: number;
  private readonly slots: RingBuffer[];
  private readonly scratch: Float64Array;
  /** The cycle each slot's newest value belongs to, with the sum and count averaged into it. */
  private readonly pending = new Map<number, { cycle: number; sum: number; count: number }>();
  private firstTs = NaN;
  private lastTs = NaN;

  constructor(options: SeasonalProfileOptions) {
    if (!(options.slotMs > 0) || options.periodMs % options.slotMs !== 0) {
      throw new RangeError("slotMs must be positive and divide periodMs");
    }
    this.periodMs = options.periodMs;
    this.slotMs = options.slotMs;
    this.minCycles = options.minCycles ?? 2;
    this.offsetMs = options.offsetMs ?? 0;
    const cyclesKept = options.cyclesKept ?? 4;
    this.scratch = new Float64Array(cyclesKept);
    const slotCount = options.periodMs / options.slotMs;
    this.slots = Array.from({ length: slotCount }, () => new RingBuffer(cyclesKept));
  }

  slotOf(ts: number): number {
    const phase = (((ts + this.offsetMs) % this.periodMs) + this.periodMs) % this.periodMs;
    return Math.floor(phase / this.slotMs);
  }

  /** Cycles of history seen so far (fractional). */
  get historyCycles(): number {
    return Number.isNaN(this.firstTs) ? 0 : (this.lastTs - this.firstTs) / this.periodMs;
  }

  /** The expectation for `ts`, or undefined while history does not allow one yet. */
  expected(ts: number): SeasonalExpectation | undefined {
    const slot = this.slots[this.slotOf(ts)] as RingBuffer;
    const value = this.expectedValue(ts);
    return Number.isNaN(value) ? undefined : { expected: value, cycles: slot.length };
  }

  /**
   * Allocation-free form of `expected` for hot loops: the median of the slot `slotShift` slots
   * away from the one holding `ts` (0 = its own), or NaN while history does not allow one.
   */
  expectedValue(ts: number, slotShift = 0): number {
    if (this.historyCycles < this.minCycles) return NaN;
    const slotCount = this.slots.length;
    const slot = this.slots[(((this.slotOf(ts) + slotShift) % slotCount) + slotCount) % slotCount] as RingBuffer;
    const n = slot.length;
    if (n < this.minCycles) return NaN;
    // Insertion sort into a reused buffer: a slot holds only a handful of cycles.
    const held = this.scratch;
    for (let i = 0; i < n; i++) {
      const v = slot.get(i);
      let j = i - 1;
      while (j >= 0 && (held[j] as number) > v) {
        held[j + 1] = held[j] as number;
        j--;
      }
      held[j + 1] = v;
    }
    return n % 2 === 1 ? (held[(n - 1) / 2] as number) : 0.5 * ((held[n / 2 - 1] as number) + (held[n / 2] as number));
  }

  /**
   * Adds an observation. Points falling in the same slot within one cycle are averaged
   * into a single value for that cycle, so the profile holds one value per cycle and slot.
   */
  add(ts: number, value: number): void {
    if (Number.isNaN(this.firstTs)) this.firstTs = ts;
    this.lastTs = Math.max(Number.isNaN(this.lastTs) ? ts : this.lastTs, ts);
    const slotIndex = this.slotOf(ts);
    const cycle = Math.floor((ts + this.offsetMs) / this.periodMs);
    const slot = this.slots[slotIndex] as RingBuffer;
    const pending = this.pending.get(slotIndex);
    if (pending && pending.cycle === cycle) {
      pending.sum += value;
      pending.count++;
      // Replace the provisional value of this cycle with the running average.
      slot.replaceNewest(pending.sum / pending.count);
      return;
    }
    this.pending.set(slotIndex, { cycle, sum: value, count: 1 });
    slot.push(value);
  }
}

/** Hour-of-day profile (24 one-hour slots), usable after two days of history. */
export function hourOfDayProfile(options: Partial<SeasonalProfileOptions> = {}): SeasonalProfile {
  return new SeasonalProfile({ periodMs: DAY_MS, slotMs: HOUR_MS, minCycles: 2, ...options });
}

/** Hour-of-week profile (day-of-week x hour), usable after two weeks of history. */
export function hourOfWeekProfile(options: Partial<SeasonalProfileOptions> = {}): SeasonalProfile {
  return new SeasonalProfile({ periodMs: WEEK_MS, slotMs: HOUR_MS, minCycles: 2, ...options });
}

/**
 * Uses the most specific profile that history allows: hour-of-week once two weeks are seen,
 * hour-of-day once two days are seen, nothing before.
 */
export class LayeredSeasonalProfile {
  readonly profiles: SeasonalProfile[];

  constructor(profiles: SeasonalProfile[] = [hourOfWeekProfile(), hourOfDayProfile()]) {
    this.profiles = profiles;
  }

  expected(ts: number): (SeasonalExpectation & { periodMs: number }) | undefined {
    for (const profile of this.profiles) {
      const expectation = profile.expected(ts);
      if (expectation) return { ...expectation, periodMs: profile.periodMs };
    }
    return undefined;
  }

  add(ts: number, value: number): void {
    for (const profile of this.profiles) profile.add(ts, value);
  }
}
