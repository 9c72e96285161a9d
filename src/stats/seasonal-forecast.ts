/**
 * Multi-step forecasting of a regularly sampled series: a seasonal median plus a smoothed level
 * correction, with prediction intervals taken from the model's own past forecast errors.
 *
 * Forecast for step h after the last observation t:
 *   ŷ(t+h) = L(t) + w·(S(t+h) + ℓ(t) − L(t)),
 *   S(u) = median of y(u − k·period) over the last `cycles` cycles,
 *   ℓ = exponentially smoothed y − S (the level the recent data sits at relative to its season),
 *   L = exponentially smoothed y (the level-only forecast), w = the seasonal weight in [0, 1].
 * While fewer than `minCycles` cycles are known, S is 0 and the model is a plain smoothed level.
 * The median keeps one burst or one bad day out of the season; the level correction follows
 * shifts within hours. Errors of every past forecast are kept per horizon (and per origin as a
 * path), so intervals and exceedance probabilities come from the distribution of how wrong this
 * model has actually been on this series.
 *
 * The seasonal weight w is the least-squares coefficient of (y − L) on (seasonal − L) over the
 * model's resolved past forecasts, clipped to [0, 1]: how much of the seasonal model's departure
 * from the plain level came true. On a series with a real daily shape it is near 1; on one
 * without (noise only) the seasonal median of a few noisy cycles only adds its own noise and w
 * goes towards 0. That matters beyond the point forecast: the error paths are added to today's
 * forecast, so a forecast carrying noise of its own counts that noise twice and makes exceedances
 * look likelier than they are.
 */
import { normalCdf } from "./distributions.js";
import { quantile } from "./robust.js";

export interface SeasonalForecasterOptions {
  /** Steps per seasonal cycle (e.g. 288 five-minute steps in a day); 0 disables seasonality. */
  period: number;
  /** Steps ahead forecast at each origin. */
  horizon: number;
  /** Past cycles whose median is the seasonal expectation. */
  cycles?: number;
  /** Cycles needed before the seasonal part is used. */
  minCycles?: number;
  /** Smoothing factor of the level correction, in (0, 1]. */
  levelAlpha?: number;
  /** Past forecast errors remembered per horizon. */
  errorWindow?: number;
  /**
   * Steps of recent one-step changes whose robust spread scales the errors (0: errors are used
   * as they are). Errors are learned relative to the spread at their origin and applied at
   * today's, so intervals widen when the series gets noisier (a slower service is also a
   * noisier one) and narrow at quiet times.
   */
  scaleWindow?: number;
}

export const DEFAULT_SEASONAL_FORECASTER = { cycles: 7, minCycles: 2, levelAlpha: 0.2, errorWindow: 1000, scaleWindow: 36 } as const;

export class SeasonalMedianForecaster {
  readonly period: number;
  readonly horizon: number;
  private readonly cycles: number;
  private readonly minCycles: number;
  private readonly levelAlpha: number;
  private readonly errorWindow: number;
  private readonly scaleWindow: number;
  private readonly history: number[] = [];
  /** Absolute one-step changes of the last `scaleWindow` observed pairs. */
  private readonly changes: number[] = [];
  private level = NaN;
  /** Exponentially smoothed y: the level-only model the seasonal one is weighed against. */
  private plainLevel = NaN;
  /** Decayed sums for the seasonal weight: Σ(y − L)(seasonal − L) and Σ(seasonal − L)². */
  private weightCross = 0;
  private weightSquares = 0;
  /** The last seasonal expectation there was, standing in where one is missing. */
  private lastSeasonal = NaN;
  /** Forecasts made at recent origins whose targets are not all observed yet: origin index → path. */
  private readonly pending: PendingForecast[] = [];
  /** Error paths of resolved origins (actual − forecast per horizon; NaN where the actual was missing). */
  private readonly paths: Float64Array[] = [];
  private readonly scratch: number[] = [];

  constructor(options: SeasonalForecasterOptions) {
    if (!(options.horizon >= 1)) throw new RangeError("horizon must be at least 1");
    if (!(options.period >= 0)) throw new RangeError("period must be 0 or more");
    this.period = Math.floor(options.period);
    this.horizon = Math.floor(options.horizon);
    this.cycles = options.cycles ?? DEFAULT_SEASONAL_FORECASTER.cycles;
    this.minCycles = options.minCycles ?? DEFAULT_SEASONAL_FORECASTER.minCycles;
    this.levelAlpha = options.levelAlpha ?? DEFAULT_SEASONAL_FORECASTER.levelAlpha;
    this.errorWindow = options.errorWindow ?? DEFAULT_SEASONAL_FORECASTER.errorWindow;
    this.scaleWindow = options.scaleWindow ?? DEFAULT_SEASONAL_FORECASTER.scaleWindow;
  }

  /**
   * The spread errors are measured in: the median absolute one-step change over the recent
   * window (1 when scaling is off), floored so a flat stretch does not make it zero.
   */
  get scale(): number {
    if (this.scaleWindow === 0) return 1;
    const n = this.changes.length;
    const sorted = [...this.changes].sort((a, b) => a - b);
    const spread = n === 0 ? 0 : n % 2 === 1 ? (sorted[(n - 1) / 2] as number) : 0.5 * ((sorted[n / 2 - 1] as number) + (sorted[n / 2] as number));
    const level = Math.abs(this.level);
    return Math.max(spread, 1e-3 * (Number.isFinite(level) ? level : 0), 1e-9);
  }

  /** Observations seen so far (missing ones included). */
  get length(): number {
    return this.history.length;
  }

  /** True once the seasonal part is in use for the next forecast. */
  get seasonal(): boolean {
    return this.period > 0 && this.history.length >= this.minCycles * this.period;
  }

  /**
   * Share of the seasonal model's departure from the plain smoothed level that the forecast
   * follows, learned from past forecasts (1 until there is evidence, and before the season is in use).
   */
  get seasonalWeight(): number {
    if (!this.seasonal || !(this.weightSquares > 0)) return 1;
    return Math.min(1, Math.max(0, this.weightCross / this.weightSquares));
  }

  /** Number of resolved past forecasts (origins) whose errors inform the intervals. */
  get resolvedOrigins(): number {
    return this.paths.length;
  }

  /**
   * Adds the next observation (NaN = missing: the step passes, nothing is learned). Each call
   * also records the forecast made at this origin, so its errors are learned when they resolve.
   */
  update(value: number): void {
    const index = this.history.length;
    if (this.period > 0 && index === this.minCycles * this.period) this.rebaseLevel();
    if (Number.isFinite(value)) {
      this.plainLevel = Number.isNaN(this.plainLevel) ? value : this.plainLevel + this.levelAlpha * (value - this.plainLevel);
      const found = this.seasonalAt(index);
      if (!Number.isNaN(found)) this.lastSeasonal = found;
      const expected = this.seasonal ? this.lastSeasonal : NaN;
      if (!(this.seasonal && Number.isNaN(expected))) {
        const deviation = value - (Number.isNaN(expected) ? 0 : expected);
        this.level = Number.isNaN(this.level) ? deviation : this.level + this.levelAlpha * (deviation - this.level);
      }
    }
    const previous = this.history[this.history.length - 1];
    if (this.scaleWindow > 0 && Number.isFinite(value) && previous !== undefined && Number.isFinite(previous)) {
      this.changes.push(Math.abs(value - previous));
      if (this.changes.length > this.scaleWindow) this.changes.shift();
    }
    this.history.push(Number.isFinite(value) ? value : NaN);
    this.resolve();
    if (!Number.isNaN(this.level)) {
      const seasonal = this.seasonalModelForecast();
      this.pending.push({ origin: this.history.length, forecast: this.combine(seasonal), seasonal, plainLevel: this.plainLevel, scale: this.scale });
    }
  }

  /** Point forecasts for the next `horizon` steps (empty before the first observation). */
  forecast(): number[] {
    return this.combine(this.seasonalModelForecast());
  }

  /** The level-only forecast moved `seasonalWeight` of the way to the seasonal model's. */
  private combine(seasonal: number[]): number[] {
    if (!this.seasonal || seasonal.length === 0) return seasonal;
    const w = this.seasonalWeight;
    return seasonal.map((f) => this.plainLevel + w * (f - this.plainLevel));
  }

  /** The seasonal model alone: S(t+h) + ℓ(t) (the plain level before the season is known). */
  private seasonalModelForecast(): number[] {
    if (Number.isNaN(this.level)) return [];
    const start = this.history.length;
    const out = new Array<number>(this.horizon);
    let carried = this.lastSeasonal;
    for (let h = 0; h < this.horizon; h++) {
      const found = this.seasonalAt(start + h);
      if (!Number.isNaN(found)) carried = found;
      const expected = this.seasonal ? carried : NaN;
      out[h] = (Number.isNaN(expected) ? 0 : expected) + this.level;
    }
    return out;
  }

  /** The most recent `limit` error paths, oldest first: (actual − forecast) / scale at origin, at step h + 1. */
  errorPaths(limit = this.errorWindow): Float64Array[] {
    return this.paths.slice(-limit);
  }

  /** Past errors at step `h` (1-based) of the horizon at today's scale, missing ones left out. */
  errorsAt(h: number, limit = this.errorWindow): number[] {
    const scale = this.scale;
    const out: number[] = [];
    for (const path of this.paths.slice(-limit)) {
      const e = path[h - 1] as number;
      if (!Number.isNaN(e)) out.push(e * scale);
    }
    return out;
  }

  /**
   * Central prediction interval per step: forecast + the (1 − level)/2 and (1 + level)/2
   * quantiles of past errors at that step. Null where fewer than `minErrors` are known.
   */
  interval(level = 0.95, minErrors = 50): { lower: number; upper: number }[] | null {
    const forecast = this.forecast();
    if (forecast.length === 0) return null;
    const out: { lower: number; upper: number }[] = [];
    for (let h = 1; h <= this.horizon; h++) {
      const errors = this.errorsAt(h);
      if (errors.length < minErrors) return null;
      const f = forecast[h - 1] as number;
      out.push({ lower: f + quantile(errors, (1 - level) / 2), upper: f + quantile(errors, (1 + level) / 2) });
    }
    return out;
  }

  /**
   * P(the series exceeds `threshold` at least once in the next `steps` steps): each past error
   * path added to today's forecast gives one plausible future; the maximum of each is smoothed
   * with a Gaussian kernel (Silverman's bandwidth), so the answer is a fitted distribution of the
   * path maximum, never 0 or 1 merely because no past path came close. Null without enough paths.
   */
  exceedanceProbability(threshold: number, steps = this.horizon, minPaths = 50): number | null {
    const forecast = this.forecast();
    if (forecast.length === 0) return null;
    const n = Math.min(steps, this.horizon);
    const scale = this.scale;
    const margins: number[] = [];
    for (const path of this.paths.slice(-this.errorWindow)) {
      let best = -Infinity;
      for (let h = 0; h < n; h++) {
        const e = path[h] as number;
        if (Number.isNaN(e)) continue;
        const v = (forecast[h] as number) + e * scale;
        if (v > best) best = v;
      }
      if (best > -Infinity) margins.push(best - threshold);
    }
    if (margins.length < minPaths) return null;
    return kernelExceedance(margins, 0);
  }

  /**
   * The seasonal expectation for step `index`: the median of the same phase over the last
   * cycles. Where that phase is missing in every cycle (a quiet bucket with no requests), the
   * nearest phases (±1, ±2, ±3 steps) stand in; NaN only when none of those exist either.
   */
  private seasonalAt(index: number): number {
    if (this.period === 0 || this.history.length < this.minCycles * this.period) return NaN;
    for (let spread = 0; spread <= 3; spread++) {
      const values = this.scratch;
      values.length = 0;
      for (let k = 1; k <= this.cycles; k++) {
        for (let d = -spread; d <= spread; d++) {
          if (spread > 0 && Math.abs(d) !== spread) continue;
          const at = index - k * this.period + d;
          if (at < 0 || at >= this.history.length) continue;
          const v = this.history[at] as number;
          if (!Number.isNaN(v)) values.push(v);
        }
      }
      if (values.length === 0) continue;
      values.sort((a, b) => a - b);
      const n = values.length;
      return n % 2 === 1 ? (values[(n - 1) / 2] as number) : 0.5 * ((values[n / 2 - 1] as number) + (values[n / 2] as number));
    }
    return NaN;
  }

  /**
   * When the seasonal part comes in, the level stops being the series' level and becomes its
   * offset from the season: it restarts as the median offset of the last cycle's observations.
   * The errors of the level-only model say nothing about the new one, so they are forgotten.
   */
  private rebaseLevel(): void {
    this.paths.length = 0;
    this.pending.length = 0;
    this.weightCross = 0;
    this.weightSquares = 0;
    const deviations: number[] = [];
    for (let i = this.history.length - this.period; i < this.history.length; i++) {
      const v = this.history[i] as number;
      const expected = this.seasonalAt(i);
      if (!Number.isNaN(v) && !Number.isNaN(expected)) deviations.push(v - expected);
    }
    if (deviations.length === 0) return;
    deviations.sort((a, b) => a - b);
    const n = deviations.length;
    this.level = n % 2 === 1 ? (deviations[(n - 1) / 2] as number) : 0.5 * ((deviations[n / 2 - 1] as number) + (deviations[n / 2] as number));
  }

  /**
   * Adds one resolved origin's evidence to the seasonal weight (every step of its horizon), the
   * older evidence decaying so that about the last `errorWindow` origins count.
   */
  private learnWeight(origin: number, seasonal: readonly number[], plainLevel: number): void {
    const keep = 1 - 1 / this.errorWindow;
    this.weightCross *= keep;
    this.weightSquares *= keep;
    for (let h = 0; h < this.horizon; h++) {
      const actual = this.history[origin + h] as number;
      const departure = (seasonal[h] as number) - plainLevel;
      if (!Number.isFinite(actual) || !Number.isFinite(departure)) continue;
      this.weightCross += (actual - plainLevel) * departure;
      this.weightSquares += departure * departure;
    }
  }

  /** Moves forecasts whose whole horizon is now observed into the error paths. */
  private resolve(): void {
    const observed = this.history.length;
    while (this.pending.length > 0 && (this.pending[0] as { origin: number }).origin + this.horizon <= observed) {
      const { origin, forecast, seasonal, plainLevel, scale } = this.pending.shift() as PendingForecast;
      if (this.seasonal) this.learnWeight(origin, seasonal, plainLevel);
      const path = new Float64Array(this.horizon);
      for (let h = 0; h < this.horizon; h++) path[h] = ((this.history[origin + h] as number) - (forecast[h] as number)) / scale;
      this.paths.push(path);
      if (this.paths.length > this.errorWindow * 2) this.paths.splice(0, this.paths.length - this.errorWindow);
    }
  }
}

/**
 * A forecast made at `origin` (the index of its first target): the one used (`forecast`), the
 * seasonal model's and the plain level it was weighed against, and the spread its errors are
 * measured in.
 */
interface PendingForecast {
  origin: number;
  forecast: number[];
  seasonal: number[];
  plainLevel: number;
  scale: number;
}

/**
 * P(X > threshold) under a Gaussian kernel density fitted to `samples` (Silverman's rule of
 * thumb for the bandwidth). With no spread at all it is the plain share above the threshold.
 */
export function kernelExceedance(samples: ArrayLike<number>, threshold: number): number {
  const n = samples.length;
  if (n === 0) return NaN;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += samples[i] as number;
  const mean = sum / n;
  let squares = 0;
  for (let i = 0; i < n; i++) squares += ((samples[i] as number) - mean) ** 2;
  const sd = n > 1 ? Math.sqrt(squares / (n - 1)) : 0;
  const iqr = quantile(samples, 0.75) - quantile(samples, 0.25);
  const spread = iqr > 0 ? Math.min(sd, iqr / 1.349) : sd;
  const bandwidth = 0.9 * spread * Math.pow(n, -0.2);
  let p = 0;
  for (let i = 0; i < n; i++) {
    const margin = (samples[i] as number) - threshold;
    p += bandwidth > 0 ? normalCdf(margin / bandwidth) : margin > 0 ? 1 : 0;
  }
  return p / n;
}

/** Seasonal-naive forecast (the value one period earlier) for the `horizon` steps after `history`. */
export function seasonalNaiveForecast(history: ArrayLike<number>, period: number, horizon: number): number[] {
  const out: number[] = [];
  for (let h = 0; h < horizon; h++) {
    const at = history.length + h - period;
    out.push(at >= 0 ? (history[at] as number) : (history[history.length - 1] as number));
  }
  return out;
}
