/**
 * What the receiver remembers per cumulative series between requests: the previous point's start
 * time, time and totals, from which the next point's delta is taken. Kept in memory, per
 * receiver, bounded: past `maxSeries` series, or `maxBuckets` remembered bucket counts and
 * bounds in all, the least recently updated series are forgotten.
 *
 * A series seen for the first time is counted from its start time only when that start is after
 * the receiver started and after the last series was forgotten: then nothing of it can have been
 * counted before. Otherwise its first point only sets the baseline (as the Collector's
 * cumulative-to-delta processor does), so a restart of Kiwi never counts a total twice.
 *
 * Changes are staged per request and applied only once the request's records are stored, so a
 * request that fails to store leaves the state as it was and its retry is counted once.
 */
import type { ExponentialSide } from '../../stats/histogram.js';

interface Base {
  /** Start of the cumulative period, ms since the epoch (0 when the exporter gave none). */
  start: number;
  /** Time of the last point, ms since the epoch. */
  time: number;
}

export type CumulativeEntry =
  | (Base & { kind: 'sum'; value: number })
  | (Base & { kind: 'histogram'; count: number; sum: number | null; bounds: number[]; counts: number[] })
  | (Base & {
      kind: 'exponential';
      count: number;
      sum: number | null;
      scale: number;
      zeroCount: number;
      positive: ExponentialSide;
      negative: ExponentialSide;
    })
  | (Base & { kind: 'summary'; count: number; sum: number });

export const DEFAULT_MAX_SERIES = 50_000;
/** About 80 MB of remembered histogram buckets at most. */
export const DEFAULT_MAX_BUCKETS = 10_000_000;

function weight(entry: CumulativeEntry): number {
  switch (entry.kind) {
    case 'histogram':
      return 1 + entry.counts.length + entry.bounds.length;
    case 'exponential':
      return 1 + entry.positive.counts.length + entry.negative.counts.length;
    default:
      return 1;
  }
}

export class CumulativeState {
  private readonly entries = new Map<string, CumulativeEntry>();
  private lastEviction = 0;
  private totalWeight = 0;
  readonly startedAt: number;

  constructor(
    readonly maxSeries = DEFAULT_MAX_SERIES,
    private readonly clock: () => number = Date.now,
    readonly maxBuckets = DEFAULT_MAX_BUCKETS,
  ) {
    this.startedAt = clock();
  }

  get size(): number {
    return this.entries.size;
  }

  /** A first-seen series whose start time is later than this began while we were listening. */
  get baseline(): number {
    return Math.max(this.startedAt, this.lastEviction);
  }

  begin(): StateChanges {
    return new StateChanges(this);
  }

  peek(key: string): CumulativeEntry | undefined {
    return this.entries.get(key);
  }

  apply(changes: ReadonlyMap<string, CumulativeEntry>): void {
    for (const [key, entry] of changes) {
      // Delete first so the map's insertion order stays least-recently-updated first.
      const old = this.entries.get(key);
      if (old) this.totalWeight -= weight(old);
      this.entries.delete(key);
      this.entries.set(key, entry);
      this.totalWeight += weight(entry);
    }
    while (this.entries.size > this.maxSeries || (this.totalWeight > this.maxBuckets && this.entries.size > 0)) {
      const [oldest, entry] = this.entries.entries().next().value as [string, CumulativeEntry];
      this.entries.delete(oldest);
      this.totalWeight -= weight(entry);
      this.lastEviction = this.clock();
    }
  }
}

/** One request's view of the state: reads see its own writes; nothing is kept until `commit`. */
export class StateChanges {
  private readonly staged = new Map<string, CumulativeEntry>();

  constructor(private readonly state: CumulativeState) {}

  get baseline(): number {
    return this.state.baseline;
  }

  get(key: string): CumulativeEntry | undefined {
    return this.staged.get(key) ?? this.state.peek(key);
  }

  set(key: string, entry: CumulativeEntry): void {
    this.staged.set(key, entry);
  }

  commit(): void {
    this.state.apply(this.staged);
    this.staged.clear();
  }
}

export type Step =
  /** An old or repeated point: nothing to store. */
  | { kind: 'skip' }
  /** First sight of a series that may have been counted before: remember it, store nothing. */
  | { kind: 'seed' }
  /** `whole`: the point's totals are the delta (new series or reset); else subtract the previous. */
  | { kind: 'delta'; since: number; whole: boolean };

/**
 * How a cumulative point relates to the previous one of its series. A new start time, or totals
 * that went down (`wentDown`), is a reset: the point counts from its own start.
 */
export function cumulativeStep<E extends CumulativeEntry>(
  previous: E | undefined,
  start: number,
  time: number,
  baseline: number,
  wentDown: (previous: E) => boolean,
): Step {
  if (!previous) {
    // start === time: created and collected within the same instant (a fast exporter); its value is all new
    if (start > 0 && start >= baseline && start <= time) return { kind: 'delta', since: start, whole: true };
    return { kind: 'seed' };
  }
  if (time <= previous.time) return { kind: 'skip' };
  const restarted = start > 0 && start !== previous.start;
  if (restarted || wentDown(previous)) {
    return { kind: 'delta', since: start > previous.time && start < time ? start : previous.time, whole: true };
  }
  return { kind: 'delta', since: previous.time, whole: false };
}
