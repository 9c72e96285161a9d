/**
 * Level-shift detection with a two-sided tabular CUSUM (Page, 1954).
 *
 * Values are standardised against a reference mean and sigma; deviations beyond the slack `k`
 * (in sigmas) accumulate, and an alarm is raised when either sum exceeds `h` (in sigmas).
 * Two-sided average run lengths on Gaussian noise (Siegmund's approximation), k = 0.5:
 * h = 5 alarms falsely every ~470 points and finds a one-sigma shift after ~10;
 * h = 8 (the default) alarms falsely every ~9,500 points and finds it after ~16.
 */
import { MAD_TO_SIGMA, mad, median } from "./robust.js";

export interface CusumOptions {
  /** Slack per point, in sigmas (half the shift size one wants to detect fastest). */
  k?: number;
  /** Decision threshold, in sigmas. */
  h?: number;
  /** Known in-control mean; learned from the first `calibrationPoints` when omitted. */
  target?: number;
  /** Known in-control sigma; learned (median/MAD) from the first `calibrationPoints` when omitted. */
  sigma?: number;
  /** Points used to learn target and sigma (initially and again after every alarm). */
  calibrationPoints?: number;
}

export interface CusumStep {
  /** Upper and lower cumulative sums, in sigmas. */
  upper: number;
  lower: number;
  /** "up" or "down" when this point raised an alarm. */
  alarm: "up" | "down" | undefined;
  /** max(upper, lower) / h: how close the detector is to an alarm (>= 1 at an alarm). */
  pressure: number;
}

export class Cusum {
  private readonly k: number;
  private readonly h: number;
  private readonly calibrationPoints: number;
  private readonly learnsReference: boolean;
  private target: number;
  private sigma: number;
  private calibration: number[] = [];
  private upper = 0;
  private lower = 0;

  constructor(options: CusumOptions = {}) {
    this.k = options.k ?? 0.5;
    this.h = options.h ?? 8;
    this.calibrationPoints = options.calibrationPoints ?? 30;
    this.learnsReference = options.target === undefined || options.sigma === undefined;
    this.target = options.target ?? NaN;
    this.sigma = options.sigma ?? NaN;
  }

  get reference(): { target: number; sigma: number } {
    return { target: this.target, sigma: this.sigma };
  }

  update(value: number): CusumStep {
    if (Number.isNaN(this.target) || Number.isNaN(this.sigma)) {
      this.calibration.push(value);
      if (this.calibration.length >= this.calibrationPoints) this.finishCalibration();
      return { upper: 0, lower: 0, alarm: undefined, pressure: 0 };
    }
    const z = (value - this.target) / this.sigma;
    this.upper = Math.max(0, this.upper + z - this.k);
    this.lower = Math.max(0, this.lower - z - this.k);
    const pressure = Math.max(this.upper, this.lower) / this.h;
    let alarm: CusumStep["alarm"];
    if (this.upper > this.h) alarm = "up";
    else if (this.lower > this.h) alarm = "down";
    const step: CusumStep = { upper: this.upper, lower: this.lower, alarm, pressure };
    if (alarm) this.restart();
    return step;
  }

  /** After an alarm the sums restart; a learned reference is learned again from the new level. */
  private restart(): void {
    this.upper = 0;
    this.lower = 0;
    if (this.learnsReference) {
      this.target = NaN;
      this.sigma = NaN;
      this.calibration = [];
    }
  }

  private finishCalibration(): void {
    const center = median(this.calibration);
    let sigma = MAD_TO_SIGMA * mad(this.calibration, center);
    if (!(sigma > 0)) sigma = Math.max(Math.abs(center) * 1e-3, 1e-9);
    this.target = center;
    this.sigma = sigma;
    this.calibration = [];
  }
}

/** Index of every alarm a CUSUM raises over `values` (causal: each alarm uses only earlier points). */
export function cusumAlarms(values: ArrayLike<number>, options: CusumOptions = {}): Array<{ index: number; direction: "up" | "down" }> {
  const detector = new Cusum(options);
  const alarms: Array<{ index: number; direction: "up" | "down" }> = [];
  for (let i = 0; i < values.length; i++) {
    const step = detector.update(values[i] as number);
    if (step.alarm) alarms.push({ index: i, direction: step.alarm });
  }
  return alarms;
}
