/**
 * Univariate causal anomaly detector.
 *
 * For each point (timestamp, value) it returns an anomaly score in [0, 1] and a 0/1 decision,
 * computed from that point and the ones before it only. Memory is O(window) per series and a
 * point costs O(log window) plus a few memmoves. See docs/DETECTOR.md for the reasoning and
 * the NAB results.
 *
 * Stages:
 *  1. Four surprise features, each in the series' own units:
 *     level    |x - median of the last `longWindow` points|
 *     shift    |mean of the last `shortWindow` points - that median|
 *     step     |x - previous x|
 *     seasonal |x - daily profile at this time of day| (nearest of the neighbouring slots),
 *              once two days of history exist.
 *  2. Each feature is turned into a p-value against its own recent history (TailRarity):
 *     no fixed multipliers, no per-series scale to configure.
 *  3. The smallest p-value, Bonferroni-corrected for the number of features, is the point's
 *     surprise; the score is its log-scaled value (0.5 at p = 1e-3, 1 at p <= 1e-6).
 *  4. Decision: score >= 0.5, then a refractory period in which only a point far more surprising
 *     than the one that raised the alarm can raise another.
 */
import { MINUTE_MS, DAY_MS, SeasonalProfile } from "../stats/seasonal.js";
import { RingBuffer, RollingSortedWindow } from "../stats/rolling.js";
import { pValueToScore } from "../stats/score.js";
import { TailRarity } from "../stats/tail.js";

export interface SeriesPoint {
  /** Milliseconds since the Unix epoch. */
  ts: number;
  value: number;
}

export type SurpriseFeature = "level" | "shift" | "step" | "seasonal";

export interface PointVerdict {
  /** Anomaly score in [0, 1]; the decision threshold is `threshold` (0.5 by default). */
  score: number;
  /** Kiwi's decision for this point (refractory period applied). */
  anomaly: 0 | 1;
  /** Bonferroni-corrected p-value of the most surprising feature (1 while warming up). */
  pValue: number;
  /** The feature with the smallest p-value, when the detector is past its warm-up. */
  driver: SurpriseFeature | undefined;
}

export interface DetectorConfig {
  /** Points in the rolling median the level and shift features are measured from. */
  longWindow: number;
  /** Points averaged by the shift feature. */
  shortWindow: number;
  /** Past feature values each feature's p-value is calibrated against. */
  rarityWindow: number;
  /** Upper fraction of that history modelled by an exponential tail. */
  tailFraction: number;
  /** Points before any score above 0 is produced. */
  warmupPoints: number;
  /** p-value at which the score reaches 1 (the score is 0.5 at its square root). */
  saturationP: number;
  /** Score at or above which a point is an anomaly. */
  threshold: number;
  /** Points after an alarm during which ordinary surprises do not alarm again. */
  refractoryPoints: number;
  /** During the refractory period, a point alarms only if its p-value is below this factor times the alarm's. */
  refractoryOverrideFactor: number;
  /** Daily cycles remembered per time-of-day slot (their median is the seasonal expectation). */
  seasonalCycles: number;
  /** Slots on each side of the point's own slot that may explain it (tolerates phase jitter). */
  seasonalNeighbourSlots: number;
}

export const DEFAULT_DETECTOR_CONFIG: Readonly<DetectorConfig> = Object.freeze({
  longWindow: 3000,
  shortWindow: 6,
  rarityWindow: 3000,
  tailFraction: 0.02,
  warmupPoints: 150,
  saturationP: 1e-6,
  threshold: 0.5,
  refractoryPoints: 300,
  refractoryOverrideFactor: 1e-4,
  seasonalCycles: 5,
  seasonalNeighbourSlots: 1,
});

/** Seasonal slot widths that divide a day; the first one not shorter than the sampling interval is used. */
const DAY_DIVISORS_MS = [1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 240, 360, 720].map((minutes) => minutes * MINUTE_MS);
/** Sampling intervals observed before the seasonal slot width is chosen. */
const INTERVAL_SAMPLE = 25;

export class UnivariateDetector {
  readonly config: Readonly<DetectorConfig>;
  private readonly values: RollingSortedWindow;
  private readonly recent: RingBuffer;
  private readonly levelRarity: TailRarity;
  private readonly shiftRarity: TailRarity;
  private readonly stepRarity: TailRarity;
  private readonly seasonalRarity: TailRarity;
  private seasonal: SeasonalProfile | undefined;
  private readonly intervals: number[] = [];
  private previousTs = NaN;
  private previousValue = NaN;
  private seen = 0;
  private refractoryLeft = 0;
  private alarmPValue = 1;

  constructor(config: Partial<DetectorConfig> = {}) {
    const c = { ...DEFAULT_DETECTOR_CONFIG, ...config };
    this.config = c;
    this.values = new RollingSortedWindow(c.longWindow);
    this.recent = new RingBuffer(c.shortWindow);
    const rarity = (): TailRarity => new TailRarity({ window: c.rarityWindow, tailFraction: c.tailFraction });
    this.levelRarity = rarity();
    this.shiftRarity = rarity();
    this.stepRarity = rarity();
    this.seasonalRarity = rarity();
  }

  /** Scores one point; call in time order. Non-finite values score 0 and are not learned. */
  update(ts: number, value: number): PointVerdict {
    if (!Number.isFinite(value)) return { score: 0, anomaly: 0, pValue: 1, driver: undefined };
    const c = this.config;
    this.recent.push(value);

    let pValue = 1;
    let driver: SurpriseFeature | undefined;
    if (this.values.length >= 20) {
      const center = this.values.median;
      // the smallest p-value of the features and which one gave it (written out: this runs per point)
      let smallest = this.levelRarity.update(Math.abs(value - center));
      driver = "level";
      let features = 2;
      const shift = this.shiftRarity.update(Math.abs(this.recentMean() - center));
      if (shift < smallest) {
        smallest = shift;
        driver = "shift";
      }
      if (!Number.isNaN(this.previousValue)) {
        features++;
        const step = this.stepRarity.update(Math.abs(value - this.previousValue));
        if (step < smallest) {
          smallest = step;
          driver = "step";
        }
      }
      const residual = this.seasonalResidual(ts, value);
      if (!Number.isNaN(residual)) {
        features++;
        const seasonal = this.seasonalRarity.update(residual);
        if (seasonal < smallest) {
          smallest = seasonal;
          driver = "seasonal";
        }
      }
      pValue = Math.min(1, features * smallest);
    }
    this.values.push(value);
    this.learnSeasonal(ts, value);
    this.previousValue = value;
    this.seen++;

    if (this.seen <= c.warmupPoints) return { score: 0, anomaly: 0, pValue: 1, driver: undefined };
    let score = pValueToScore(pValue, c.saturationP);
    if (this.refractoryLeft > 0) {
      this.refractoryLeft--;
      // Keep the score just under the threshold so that it still shows the surprise.
      if (!(pValue < this.alarmPValue * c.refractoryOverrideFactor)) score = Math.min(score, c.threshold * 0.999);
    }
    const anomaly = score >= c.threshold ? 1 : 0;
    if (anomaly) {
      this.refractoryLeft = c.refractoryPoints;
      this.alarmPValue = pValue;
    }
    return { score, anomaly, pValue, driver };
  }

  /**
   * Summed afresh each time: a running sum drifts by rounding errors, and on a perfectly
   * regular series that drift alone would look infinitely rare.
   */
  private recentMean(): number {
    let sum = 0;
    for (let i = 0; i < this.recent.length; i++) sum += this.recent.get(i);
    return sum / this.recent.length;
  }

  /** Distance to the daily profile, from the nearest of the neighbouring time-of-day slots. */
  private seasonalResidual(ts: number, value: number): number {
    const profile = this.seasonal;
    if (!profile) return NaN;
    const reach = this.config.seasonalNeighbourSlots;
    let nearest = Infinity;
    for (let shift = -reach; shift <= reach; shift++) {
      const expected = profile.expectedValue(ts, shift);
      if (!Number.isNaN(expected)) nearest = Math.min(nearest, Math.abs(value - expected));
    }
    return nearest === Infinity ? NaN : nearest;
  }

  /** The daily profile starts once the sampling interval is known (slot = that interval). */
  private learnSeasonal(ts: number, value: number): void {
    if (!this.seasonal && !Number.isNaN(this.previousTs) && ts > this.previousTs) {
      this.intervals.push(ts - this.previousTs);
      if (this.intervals.length === INTERVAL_SAMPLE) {
        const typical = this.intervals.sort((a, b) => a - b)[INTERVAL_SAMPLE >> 1] as number;
        const slotMs = DAY_DIVISORS_MS.find((width) => width >= typical * 0.9);
        if (slotMs !== undefined) {
          this.seasonal = new SeasonalProfile({ periodMs: DAY_MS, slotMs, cyclesKept: this.config.seasonalCycles, minCycles: 2 });
        }
      }
    }
    this.seasonal?.add(ts, value);
    if (!(ts <= this.previousTs)) this.previousTs = ts;
  }
}

/**
 * Streams verdicts for a series, one per input point, in order. Memory is bounded by the
 * configuration, not by the series length.
 */
export function* scoreSeries(points: Iterable<SeriesPoint>, config: Partial<DetectorConfig> = {}): Generator<PointVerdict> {
  const detector = new UnivariateDetector(config);
  for (const point of points) yield detector.update(point.ts, point.value);
}
