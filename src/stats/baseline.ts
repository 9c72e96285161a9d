/**
 * Causal robust baseline: each point is judged against the window of points before it, and
 * only then joins the window.
 */
import { RollingSortedWindow } from "./rolling.js";
import { MAD_TO_SIGMA } from "./robust.js";

export interface BaselineJudgement {
  /** Median of the previous points. */
  median: number;
  /** Robust sigma of the previous points (MAD * 1.4826, floored by `minSigma`). */
  sigma: number;
  /** (value - median) / sigma; 0 while the baseline is still warming up. */
  z: number;
  /** True once the baseline held `minPoints` before this point. */
  ready: boolean;
}

export interface RobustBaselineOptions {
  /** Number of previous points the baseline keeps. */
  window: number;
  /** Points needed before z-scores are produced. */
  minPoints?: number;
  /**
   * Floor on sigma, as a fraction of |median| plus an absolute floor, so that a flat series
   * does not turn the smallest wiggle into an infinite z-score.
   */
  relativeSigmaFloor?: number;
  absoluteSigmaFloor?: number;
}

export class RobustBaseline {
  private readonly window: RollingSortedWindow;
  private readonly minPoints: number;
  private readonly relativeSigmaFloor: number;
  private readonly absoluteSigmaFloor: number;

  constructor(options: RobustBaselineOptions) {
    this.window = new RollingSortedWindow(options.window);
    this.minPoints = options.minPoints ?? Math.min(options.window, 10);
    this.relativeSigmaFloor = options.relativeSigmaFloor ?? 0;
    this.absoluteSigmaFloor = options.absoluteSigmaFloor ?? 1e-9;
  }

  get length(): number {
    return this.window.length;
  }

  /** Judges `value` against the points seen so far, then adds it to the baseline. */
  update(value: number): BaselineJudgement {
    const judgement = this.judge(value);
    this.window.push(value);
    return judgement;
  }

  /** Judges `value` without adding it (e.g. to keep an outlier out of the baseline). */
  judge(value: number): BaselineJudgement {
    const n = this.window.length;
    if (n === 0) return { median: value, sigma: 0, z: 0, ready: false };
    const center = this.window.median;
    const sigma = Math.max(
      MAD_TO_SIGMA * this.window.mad(),
      this.relativeSigmaFloor * Math.abs(center),
      this.absoluteSigmaFloor,
    );
    const ready = n >= this.minPoints;
    return { median: center, sigma, z: ready ? (value - center) / sigma : 0, ready };
  }

  add(value: number): void {
    this.window.push(value);
  }
}
