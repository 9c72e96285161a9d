import { describe, expect, it } from "vitest";
import {
  AnomalyLikelihood,
  binomialRateTest,
  binomialUpperTail,
  Cusum,
  cusumAlarms,
  DAY_MS,
  Ewma,
  HOUR_MS,
  LayeredSeasonalProfile,
  logGamma,
  mad,
  mannKendall,
  median,
  normalCdf,
  normalQuantile,
  normalUpperTail,
  poissonRateTest,
  poissonUpperTail,
  pValueToScore,
  quantile,
  RateBaseline,
  RingBuffer,
  RobustBaseline,
  RollingMoments,
  RollingSortedWindow,
  SeasonalProfile,
  TailRarity,
  seededNormal,
  seededRandom,
  shuffled,
  theilSen,
  zToScore,
} from "../src/stats/index.js";

describe("distributions", () => {
  it("logGamma matches factorials", () => {
    expect(logGamma(1)).toBeCloseTo(0, 10);
    expect(logGamma(5)).toBeCloseTo(Math.log(24), 10);
    expect(logGamma(0.5)).toBeCloseTo(Math.log(Math.sqrt(Math.PI)), 10);
  });

  it("normal tails match tables and invert", () => {
    expect(normalCdf(0)).toBeCloseTo(0.5, 7);
    expect(normalCdf(1.959964)).toBeCloseTo(0.975, 6);
    expect(normalUpperTail(3)).toBeCloseTo(0.0013499, 6);
    expect(normalUpperTail(8) / 6.22096e-16).toBeCloseTo(1, 5);
    for (const p of [1e-8, 0.01, 0.3, 0.5, 0.9, 0.999]) expect(normalCdf(normalQuantile(p)) / p).toBeCloseTo(1, 5);
  });

  it("binomial and Poisson tails match hand-computed values", () => {
    // P(X >= 2 | n = 100, p = 0.01) = 1 - 0.99^100 - 100 * 0.01 * 0.99^99
    expect(binomialUpperTail(2, 100, 0.01)).toBeCloseTo(1 - 0.99 ** 100 - 0.99 ** 99, 10);
    expect(binomialUpperTail(0, 10, 0.5)).toBe(1);
    expect(binomialUpperTail(10, 10, 0.5)).toBeCloseTo(1 / 1024, 12);
    // P(X >= 3 | lambda = 1) = 1 - e^-1 (1 + 1 + 1/2)
    expect(poissonUpperTail(3, 1)).toBeCloseTo(1 - Math.exp(-1) * 2.5, 10);
    expect(poissonUpperTail(40, 10)).toBeLessThan(1e-10);
  });
});

describe("robust summaries", () => {
  it("median and quantiles interpolate like numpy", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(quantile([1, 2, 3, 4, 5], 0.25)).toBe(2);
    expect(mad([1, 1, 2, 2, 4, 6, 9])).toBe(1);
  });

  it("MAD baseline ignores a single outlier", () => {
    const normal = seededNormal(7);
    const baseline = new RobustBaseline({ window: 200 });
    for (let i = 0; i < 200; i++) baseline.update(10 + normal());
    const before = baseline.judge(10);
    baseline.update(1e6);
    const after = baseline.judge(10);
    expect(Math.abs(after.median - before.median)).toBeLessThan(0.05);
    expect(after.sigma / before.sigma).toBeGreaterThan(0.95);
    expect(after.sigma / before.sigma).toBeLessThan(1.05);
    expect(before.sigma).toBeGreaterThan(0.8);
    expect(before.sigma).toBeLessThan(1.2);
    // and the outlier itself is judged before joining the window
    expect(baseline.judge(1e6).z).toBeGreaterThan(1e5);
  });
});

describe("rolling windows", () => {
  it("ring buffer keeps the newest values in order", () => {
    const ring = new RingBuffer(3);
    expect(ring.push(1)).toBeUndefined();
    ring.push(2);
    ring.push(3);
    expect(ring.push(4)).toBe(1);
    expect(ring.toArray()).toEqual([2, 3, 4]);
    expect(ring.fromNewest(0)).toBe(4);
  });

  it("rolling moments match a direct computation", () => {
    const moments = new RollingMoments(50);
    const random = seededRandom(3);
    const values: number[] = [];
    for (let i = 0; i < 500; i++) {
      const v = 1e6 + random();
      values.push(v);
      moments.push(v);
    }
    const last = values.slice(-50);
    const average = last.reduce((a, b) => a + b, 0) / 50;
    const sampleVariance = last.reduce((a, b) => a + (b - average) ** 2, 0) / 49;
    expect(moments.mean).toBeCloseTo(average, 6);
    expect(moments.variance).toBeCloseTo(sampleVariance, 4);
  });

  it("sorted window gives the exact rolling median, quantiles and MAD", () => {
    const random = seededRandom(11);
    for (const capacity of [1, 2, 7, 64]) {
      const window = new RollingSortedWindow(capacity);
      const values: number[] = [];
      for (let i = 0; i < 300; i++) {
        // a few repeated values exercise ties
        const v = random() < 0.2 ? 5 : Math.round(random() * 1000) / 10;
        values.push(v);
        window.push(v);
        const last = values.slice(-capacity);
        expect(window.median).toBeCloseTo(median(last), 12);
        expect(window.quantile(0.9)).toBeCloseTo(quantile(last, 0.9), 12);
        expect(window.mad()).toBeCloseTo(mad(last), 12);
      }
    }
  });

  it("sorted window answers exactly what a sorted copy of its last values answers", () => {
    // Reference: sort the last `capacity` values afresh and read them with the same type-7 rule.
    const referenceQuantile = (sorted: number[], q: number): number => {
      const position = Math.min(Math.max(q, 0), 1) * (sorted.length - 1);
      const below = Math.floor(position);
      const low = sorted[below] as number;
      return low + ((sorted[Math.min(below + 1, sorted.length - 1)] as number) - low) * (position - below);
    };
    const random = seededRandom(23);
    for (const [capacity, levels] of [[1, 3], [2, 3], [5, 4], [33, 6], [200, 10], [200, 1e6]] as const) {
      const window = new RollingSortedWindow(capacity);
      const values: number[] = [];
      // three times the capacity: the window wraps around and evicts, including evicted duplicates
      for (let i = 0; i < 3 * capacity + 50; i++) {
        const v = random() < 0.1 ? -2.5 : Math.floor(random() * levels) / 4;
        const probe = random() < 0.5 ? v : Math.floor(random() * levels) / 4 + 0.125; // present, or absent
        if (values.length > 0) {
          // countBelow before a push is the path TailRarity takes (the push reuses that count)
          const sorted = values.slice(-capacity).sort((a, b) => a - b);
          expect(window.countBelow(probe)).toBe(sorted.filter((x) => x < probe).length);
          expect(window.countBelow(v)).toBe(sorted.filter((x) => x < v).length);
        }
        if (random() < 0.3) window.countBelow(probe); // a stale count for another value must not be reused
        values.push(v);
        window.push(v);
        const sorted = values.slice(-capacity).sort((a, b) => a - b);
        expect(window.length).toBe(sorted.length);
        for (const q of [0, 1, 0.5, 0.02, 0.98, random(), -1, 2]) expect(window.quantile(q)).toBe(referenceQuantile(sorted, q));
        expect(window.min).toBe(sorted[0]);
        expect(window.max).toBe(sorted[sorted.length - 1]);
        expect(window.countBelow(Infinity)).toBe(sorted.length);
        expect(window.countBelow(-Infinity)).toBe(0);
      }
    }
  });

  it("sorted window keeps -0 and 0 together and a count for 0 serves a push of -0", () => {
    const window = new RollingSortedWindow(4);
    for (const v of [1, -0, 2, 0]) {
      window.countBelow(0);
      window.push(v);
    }
    expect(window.countBelow(0)).toBe(0);
    expect(window.countBelow(0.5)).toBe(2);
    expect(window.quantile(0)).toBe(0);
    expect(window.quantile(1)).toBe(2);
    window.push(-1); // evicts 1
    expect(window.countBelow(0)).toBe(1);
    expect(window.max).toBe(2);
    expect(() => window.push(NaN)).toThrow(RangeError);
  });
});

describe("Ewma", () => {
  it("converges to the mean and variance of a stationary series", () => {
    const normal = seededNormal(5);
    const ewma = new Ewma(0.01);
    for (let i = 0; i < 20_000; i++) ewma.push(3 + 2 * normal());
    expect(ewma.mean).toBeGreaterThan(2.7);
    expect(ewma.mean).toBeLessThan(3.3);
    expect(ewma.standardDeviation).toBeGreaterThan(1.7);
    expect(ewma.standardDeviation).toBeLessThan(2.3);
  });
});

describe("seasonal profile", () => {
  it("learns a daily cycle and predicts the next day", () => {
    const normal = seededNormal(21);
    const profile = new SeasonalProfile({ periodMs: DAY_MS, slotMs: HOUR_MS, minCycles: 2 });
    const start = Date.UTC(2024, 0, 1);
    const step = 5 * 60_000;
    const cycle = (ts: number): number => 100 + 50 * Math.sin((2 * Math.PI * (ts % DAY_MS)) / DAY_MS);
    expect(profile.expected(start)).toBeUndefined();
    for (let ts = start; ts < start + 3 * DAY_MS; ts += step) profile.add(ts, cycle(ts) + normal());
    let worstError = 0;
    for (let ts = start + 3 * DAY_MS; ts < start + 4 * DAY_MS; ts += HOUR_MS) {
      const expectation = profile.expected(ts + 30 * 60_000);
      expect(expectation).toBeDefined();
      worstError = Math.max(worstError, Math.abs((expectation?.expected ?? NaN) - cycle(ts + 30 * 60_000)));
    }
    // hourly buckets of a sine with amplitude 50 are within ~7 of the mid-hour value
    expect(worstError).toBeLessThan(8);
    expect(profile.expected(start)?.cycles).toBe(3);
  });

  it("layers day-of-week over hour-of-day once two weeks are seen", () => {
    const layered = new LayeredSeasonalProfile();
    const start = Date.UTC(2024, 0, 1);
    for (let ts = start; ts < start + 3 * DAY_MS; ts += HOUR_MS) layered.add(ts, 1);
    expect(layered.expected(start + 3 * DAY_MS)?.periodMs).toBe(DAY_MS);
    for (let ts = start + 3 * DAY_MS; ts < start + 15 * DAY_MS; ts += HOUR_MS) layered.add(ts, 1);
    expect(layered.expected(start + 15 * DAY_MS)?.periodMs).toBe(7 * DAY_MS);
  });
});

describe("CUSUM", () => {
  it("detects a one-sigma shift at a known index soon after it happens", () => {
    const normal = seededNormal(42);
    const values: number[] = [];
    for (let i = 0; i < 300; i++) values.push(10 + normal() + (i >= 200 ? 1 : 0));
    const alarms = cusumAlarms(values, { target: 10, sigma: 1, k: 0.5, h: 8 });
    expect(alarms.length).toBeGreaterThan(0);
    const first = alarms[0];
    expect(first?.direction).toBe("up");
    expect(first?.index).toBeGreaterThanOrEqual(200);
    expect(first?.index).toBeLessThan(230);
  });

  it("stays quiet on stationary noise", () => {
    const normal = seededNormal(43);
    const values: number[] = [];
    for (let i = 0; i < 2000; i++) values.push(10 + normal());
    // h = 8 puts the two-sided in-control average run length near 9,500 points
    expect(cusumAlarms(values, { target: 10, sigma: 1, k: 0.5, h: 8 })).toEqual([]);
  });

  it("learns its reference and finds a downward step", () => {
    const normal = seededNormal(44);
    const detector = new Cusum({ calibrationPoints: 50 });
    let alarmAt = -1;
    for (let i = 0; i < 200; i++) {
      const step = detector.update(50 + 2 * normal() - (i >= 120 ? 6 : 0));
      if (step.alarm && alarmAt < 0) {
        alarmAt = i;
        expect(step.alarm).toBe("down");
      }
    }
    expect(alarmAt).toBeGreaterThanOrEqual(120);
    expect(alarmAt).toBeLessThan(126);
  });
});

describe("trend tests", () => {
  it("Theil-Sen recovers an exact line and resists outliers", () => {
    const xs = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
    const ys = xs.map((x) => 3 * x - 2);
    expect(theilSen(ys, xs)).toEqual({ slope: 3, intercept: -2 });
    const spoiled = ys.slice();
    spoiled[2] = 1000;
    spoiled[7] = -1000;
    const fit = theilSen(spoiled);
    expect(fit.slope).toBeCloseTo(3, 10);
    expect(fit.intercept).toBeCloseTo(-2, 10);
  });

  it("Mann-Kendall finds a monotone trend and none in shuffled data", () => {
    const increasing = Array.from({ length: 30 }, (_, i) => i);
    const rising = mannKendall(increasing);
    expect(rising.s).toBe((30 * 29) / 2);
    expect(rising.tau).toBe(1);
    expect(rising.trend).toBe("increasing");
    expect(rising.pValue).toBeLessThan(1e-8);
    expect(mannKendall(increasing.slice().reverse()).trend).toBe("decreasing");
    const mixed = mannKendall(shuffled(increasing, seededRandom(1)));
    expect(mixed.trend).toBe("none");
    expect(mixed.pValue).toBeGreaterThan(0.05);
  });

  it("Mann-Kendall corrects its variance for ties", () => {
    const result = mannKendall([1, 1, 1, 2, 2, 2]);
    // S = 9 concordant pairs; variance = (6*5*17 - 2 * 3*2*11) / 18
    expect(result.s).toBe(9);
    expect(result.variance).toBeCloseTo((6 * 5 * 17 - 2 * 66) / 18, 12);
  });
});

describe("rate tests", () => {
  it("flags 30 of 100 against a 1% baseline, not 2 of 100", () => {
    expect(binomialRateTest(30, 100, 0.01).significant).toBe(true);
    expect(binomialRateTest(30, 100, 0.01).pValue).toBeLessThan(1e-20);
    const two = binomialRateTest(2, 100, 0.01);
    expect(two.significant).toBe(false);
    expect(two.ratio).toBeCloseTo(2, 12);
  });

  it("Poisson test judges counts per exposure", () => {
    expect(poissonRateTest(20, 10, 0.5).significant).toBe(true);
    expect(poissonRateTest(7, 10, 0.5).significant).toBe(false);
  });

  it("streaming baseline learns a rate then flags a jump", () => {
    const random = seededRandom(9);
    const baseline = new RateBaseline({ priorRate: 0.5, priorTrials: 10 });
    let falseAlarms = 0;
    for (let period = 0; period < 200; period++) {
      let errors = 0;
      for (let call = 0; call < 100; call++) if (random() < 0.02) errors++;
      if (baseline.update(errors, 100).significant && period > 20) falseAlarms++;
    }
    expect(baseline.rate).toBeGreaterThan(0.015);
    expect(baseline.rate).toBeLessThan(0.025);
    expect(falseAlarms).toBeLessThanOrEqual(2);
    expect(baseline.update(15, 100).significant).toBe(true);
  });
});

describe("anomaly scores", () => {
  it("maps tail probabilities onto [0, 1] on a log scale", () => {
    expect(pValueToScore(1)).toBe(0);
    expect(pValueToScore(1e-3)).toBeCloseTo(0.5, 12);
    expect(pValueToScore(1e-9)).toBe(1);
    expect(zToScore(0)).toBe(0);
    expect(zToScore(10)).toBe(1);
    expect(zToScore(3)).toBeGreaterThan(zToScore(2));
  });

  it("anomaly likelihood rises when raw scores rise above their history", () => {
    const random = seededRandom(4);
    const likelihood = new AnomalyLikelihood({ historyWindow: 500, recentWindow: 5, minHistory: 100 });
    let quiet = 0;
    for (let i = 0; i < 600; i++) quiet = Math.max(quiet, i > 200 ? likelihood.update(0.1 * random()) : (likelihood.update(0.1 * random()), 0));
    expect(quiet).toBeLessThan(0.9999);
    let loud = 0;
    for (let i = 0; i < 5; i++) loud = likelihood.update(0.9);
    expect(loud).toBeGreaterThan(0.99999);
  });
});

describe("tail rarity", () => {
  it("gives empirical p-values inside the range and extrapolates beyond it", () => {
    const rarity = new TailRarity({ window: 1000, tailFraction: 0.02 });
    for (let i = 0; i < 1000; i++) rarity.update(i % 100);
    // 500 of the 1000 past values are >= 50
    expect(rarity.pValue(50)).toBeCloseTo(501 / 1001, 12);
    const atMax = rarity.pValue(99);
    const beyond = rarity.pValue(150);
    const farBeyond = rarity.pValue(400);
    expect(beyond).toBeLessThan(atMax);
    expect(farBeyond).toBeLessThan(beyond);
    expect(farBeyond).toBeLessThan(1 / 1000);
  });

  it("gives exactly the p-values computed from a sorted copy of its history", () => {
    const quantileOf = (sorted: number[], q: number): number => {
      const position = Math.min(Math.max(q, 0), 1) * (sorted.length - 1);
      const below = Math.floor(position);
      const low = sorted[below] as number;
      return low + ((sorted[Math.min(below + 1, sorted.length - 1)] as number) - low) * (position - below);
    };
    const reference = (history: number[], value: number): number => {
      const n = history.length;
      if (n < 50) return 1;
      const sorted = [...history].sort((a, b) => a - b);
      const tailCount = Math.max(5, Math.floor(n * 0.02));
      const threshold = quantileOf(sorted, (n - tailCount) / (n - 1));
      if (value <= threshold) return (sorted.filter((x) => x >= value).length + 1) / (n + 1);
      let excess = 0;
      for (let i = n - tailCount; i < n; i++) excess += quantileOf(sorted, i / (n - 1)) - threshold;
      return ((tailCount + 1) / (n + 1)) * Math.exp(-(value - threshold) / Math.max(excess / tailCount, 1e-12));
    };
    const normal = seededNormal(31);
    const rarity = new TailRarity({ window: 400, tailFraction: 0.02 });
    const history: number[] = [];
    for (let i = 0; i < 1500; i++) {
      // quantised magnitudes (ties) with now and then a value beyond the tail
      const value = i % 97 === 0 ? 10 + i / 100 : Math.round(Math.abs(normal()) * 20) / 20;
      expect(rarity.update(value)).toBe(reference(history, value));
      history.push(value);
      if (history.length > 400) history.shift();
    }
  });

  it("answers 1 until it has seen enough values", () => {
    const rarity = new TailRarity({ window: 100, minPoints: 10 });
    for (let i = 0; i < 10; i++) expect(rarity.update(i)).toBe(1);
    expect(rarity.update(1000)).toBeLessThan(1);
  });
});
