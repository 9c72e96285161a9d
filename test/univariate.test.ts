import { describe, expect, it } from "vitest";
import { DEFAULT_DETECTOR_CONFIG, scoreSeries, UnivariateDetector, type SeriesPoint } from "../src/detect/univariate.js";
import { seededNormal } from "../src/stats/random.js";

const FIVE_MINUTES = 5 * 60_000;
const START = Date.UTC(2024, 0, 1);

function series(values: number[]): SeriesPoint[] {
  return values.map((value, i) => ({ ts: START + i * FIVE_MINUTES, value }));
}

function noise(n: number, seed: number, level = 100, sigma = 5): number[] {
  const normal = seededNormal(seed);
  return Array.from({ length: n }, () => level + sigma * normal());
}

function alarms(values: number[]): number[] {
  const out: number[] = [];
  let i = 0;
  for (const verdict of scoreSeries(series(values))) {
    if (verdict.anomaly) out.push(i);
    i++;
  }
  return out;
}

describe("univariate detector", () => {
  it("is causal: a point's verdict does not change with what comes after it", () => {
    const base = noise(1500, 1);
    const altered = base.slice();
    for (let i = 1000; i < 1500; i++) altered[i] = (altered[i] as number) * 3 + 50;
    const first = [...scoreSeries(series(base))];
    const second = [...scoreSeries(series(altered))];
    expect(second.slice(0, 1000)).toEqual(first.slice(0, 1000));
    expect(second.slice(1000)).not.toEqual(first.slice(1000));
  });

  it("keeps scores in [0, 1] and stays silent while warming up", () => {
    const values = noise(800, 2);
    values[50] = 1e6;
    const verdicts = [...scoreSeries(series(values))];
    for (const verdict of verdicts) {
      expect(verdict.score).toBeGreaterThanOrEqual(0);
      expect(verdict.score).toBeLessThanOrEqual(1);
    }
    expect(verdicts.slice(0, DEFAULT_DETECTOR_CONFIG.warmupPoints).every((v) => v.score === 0)).toBe(true);
  });

  it("flags a spike at the spike itself and rarely alarms on stationary noise", () => {
    const quiet = noise(3000, 3);
    // The default configuration alarms at p < 1e-3 (tuned on NAB, which charges little for a
    // false alarm): on pure Gaussian noise that is about one alarm per 500 to 1000 points.
    expect(alarms(quiet).filter((i) => i > 500).length).toBeLessThanOrEqual(5);
    const spiky = quiet.slice();
    spiky[2000] = 200;
    expect(alarms(spiky)).toContain(2000);
  });

  it("flags a level shift once at its onset, then stays quiet (refractory period)", () => {
    const values = noise(3000, 4);
    for (let i = 1500; i < 3000; i++) values[i] = (values[i] as number) + 60;
    const found = alarms(values);
    expect(found).toContain(1500);
    expect(found.filter((i) => i > 1500 && i < 1500 + DEFAULT_DETECTOR_CONFIG.refractoryPoints)).toEqual([]);
  });

  it("lets a far more surprising point through the refractory period", () => {
    const values = noise(2500, 5);
    values[1500] = 140; // a modest alarm
    values[1600] = 1e5; // an extreme one, inside the refractory period
    const found = alarms(values);
    expect(found).toContain(1500);
    expect(found).toContain(1600);
  });

  it("never alarms on a flat line", () => {
    expect(alarms(new Array(3000).fill(45))).toEqual([]);
  });

  it("finds a missing daily peak through the seasonal profile", () => {
    const normal = seededNormal(6);
    const perDay = 288;
    const values: number[] = [];
    for (let i = 0; i < perDay * 12; i++) {
      const hour = ((i % perDay) / perDay) * 24;
      const peak = hour >= 9 && hour < 17 ? 60 : 0;
      const skipped = i >= perDay * 9 && i < perDay * 10;
      values.push(20 + (skipped ? 0 : peak) + normal());
    }
    const detector = new UnivariateDetector();
    const verdicts = values.map((value, i) => detector.update(START + i * FIVE_MINUTES, value));
    const peakStart = perDay * 9 + (9 * perDay) / 24;
    const hits = verdicts.map((v, i) => (v.anomaly ? i : -1)).filter((i) => i >= peakStart && i < peakStart + 30);
    expect(hits.length).toBeGreaterThan(0);
    expect(verdicts[hits[0] as number]?.driver).toBe("seasonal");
  });

  it("streams lazily over an endless source", () => {
    function* endless(): Generator<SeriesPoint> {
      for (let i = 0; ; i++) yield { ts: START + i * FIVE_MINUTES, value: Math.sin(i / 10) };
    }
    let count = 0;
    for (const verdict of scoreSeries(endless())) {
      expect(Number.isFinite(verdict.score)).toBe(true);
      if (++count === 1000) break;
    }
    expect(count).toBe(1000);
  });

  it("ignores non-finite values", () => {
    const detector = new UnivariateDetector();
    const values = noise(301, 8);
    for (let i = 0; i < 300; i++) detector.update(START + i * FIVE_MINUTES, values[i] as number);
    expect(detector.update(START + 300 * FIVE_MINUTES, NaN)).toMatchObject({ score: 0, anomaly: 0 });
    expect(detector.update(START + 301 * FIVE_MINUTES, Infinity)).toMatchObject({ score: 0, anomaly: 0 });
    expect(detector.update(START + 302 * FIVE_MINUTES, values[300] as number).anomaly).toBe(0);
  });
});
