/** Known-answer tests for the forecasting models and the numeric code under them, and each refusal. */
import { inflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { leastCovering, renderChart } from '../src/forecast/chart.js';
import { connectionDropProbability, connectionHistory, forecastConnection } from '../src/forecast/connection.js';
import { forecastErrorBudget, wilsonInterval } from '../src/forecast/error-budget.js';
import { forecastLatency, latencyBuckets } from '../src/forecast/latency.js';
import { forecastMemory } from '../src/forecast/memory.js';
import { crc32 } from '../src/forecast/png.js';
import type { ChartSpec } from '../src/forecast/types.js';
import { generatedSeries, parseIncidentList, scenarioTruth, WORKER_MEMORY_LIMIT_BYTES } from '../src/generate/index.js';
import { hingeStart, levelShifts, theilSenInterval, windowMinima } from '../src/stats/envelope.js';
import { seededNormal, seededRandom } from '../src/stats/random.js';
import { kernelExceedance, SeasonalMedianForecaster } from '../src/stats/seasonal-forecast.js';
import {
  conditionalFailureProbability,
  fitExponential,
  fitFailureTimes,
  fitWeibull,
  recentRegimeStart,
  type Lifetime,
} from '../src/stats/survival.js';
import type { ConnectionChange } from '../src/store/forecast.js';

const MIB = 1_048_576;
const HOUR = 3_600_000;
const MINUTE = 60_000;
const T0 = Date.UTC(2025, 0, 6, 0, 0, 0);

/** A worker-like memory series: floor + `leakMibPerHour` after `leakFromHour`, with a GC sawtooth on top. */
function sawtooth(hours: number, leakMibPerHour: number, leakFromHour = 0, seed = 1): { ts: number[]; values: number[] } {
  const noise = seededNormal(seed);
  const ts: number[] = [];
  const values: number[] = [];
  let heap = 0;
  for (let m = 0; m < hours * 60; m++) {
    const h = m / 60;
    const floor = 650 * MIB + Math.max(0, h - leakFromHour) * leakMibPerHour * MIB;
    heap += 6 * MIB;
    if (heap > 170 * MIB) heap = 0;
    ts.push(T0 + m * MINUTE);
    values.push(floor + heap + noise() * 1.5 * MIB);
  }
  return { ts, values };
}

describe('seasonal median forecaster', () => {
  it('forecasts an exactly periodic series exactly once two cycles are known', () => {
    const period = 24;
    const model = new SeasonalMedianForecaster({ period, horizon: 6 });
    const value = (t: number) => 100 + 20 * Math.sin((2 * Math.PI * t) / period);
    for (let t = 0; t < 5 * period; t++) model.update(value(t));
    expect(model.seasonal).toBe(true);
    model.forecast().forEach((f, h) => expect(f).toBeCloseTo(value(5 * period + h), 6));
    expect(model.interval(0.95, 10)!.every((b, h) => Math.abs(b.upper - b.lower) < 1e-6 && Math.abs(b.lower - value(5 * period + h)) < 1e-6)).toBe(true);
  });

  it('is a smoothed level before seasonality is known, and follows a level shift', () => {
    const model = new SeasonalMedianForecaster({ period: 288, horizon: 3 });
    for (let t = 0; t < 50; t++) model.update(10);
    expect(model.seasonal).toBe(false);
    expect(model.forecast()).toEqual([10, 10, 10]);
    for (let t = 0; t < 40; t++) model.update(30);
    expect(model.forecast()[0]).toBeCloseTo(30, 2);
  });

  it('gives 95% intervals that hold about 95% of new values and a tail probability near the normal one', () => {
    const noise = seededNormal(7);
    const model = new SeasonalMedianForecaster({ period: 0, horizon: 1, errorWindow: 2000, scaleWindow: 0 });
    for (let t = 0; t < 3000; t++) model.update(50 + noise());
    let inside = 0;
    const trials = 2000;
    for (let t = 0; t < trials; t++) {
      const [band] = model.interval(0.95)!;
      const value = 50 + noise();
      if (value >= band!.lower && value <= band!.upper) inside++;
      model.update(value);
    }
    expect(inside / trials).toBeGreaterThan(0.92);
    expect(inside / trials).toBeLessThan(0.98);
    // One step ahead the error is the noise plus a little level uncertainty: P(> forecast + 2) ≈ 2.5%.
    const forecast = model.forecast()[0]!;
    const p = model.exceedanceProbability(forecast + 2, 1)!;
    expect(p).toBeGreaterThan(0.01);
    expect(p).toBeLessThan(0.06);
    expect(model.exceedanceProbability(forecast - 10, 1)).toBeGreaterThan(0.99);
  });

  it('shrinks the seasonal part away on noise without a daily shape, so its spike probability is not inflated', () => {
    const period = 48;
    const noise = seededNormal(3);
    const model = new SeasonalMedianForecaster({ period, horizon: 6, scaleWindow: 0 });
    for (let t = 0; t < 10 * period; t++) model.update(50 + noise());
    expect(model.seasonal).toBe(true);
    // The median of 7 noisy cycles wanders by about ±1 around 50; the forecast must not follow it.
    expect(model.seasonalWeight).toBeLessThan(0.1);
    const forecast = model.forecast();
    expect(Math.max(...forecast) - Math.min(...forecast)).toBeLessThan(0.1);
    // P(any of the next 6 values of N(50, 1) above 52) = 1 − Φ(2)^6 ≈ 0.129. With the unshrunk
    // seasonal median this model said about 0.28: its own noise counted twice.
    let sum = 0;
    let origins = 0;
    for (let t = 0; t < 1200; t++) {
      if (t % 6 === 0) {
        sum += model.exceedanceProbability(52, 6)!;
        origins++;
      }
      model.update(50 + noise());
    }
    expect(sum / origins).toBeGreaterThan(0.08);
    expect(sum / origins).toBeLessThan(0.2);
  });

  it('keeps the seasonal part where the daily shape is real', () => {
    const period = 48;
    const noise = seededNormal(4);
    const shape = (t: number) => 50 + 3 * Math.sin((2 * Math.PI * t) / period);
    const model = new SeasonalMedianForecaster({ period, horizon: 6, scaleWindow: 0 });
    for (let t = 0; t < 10 * period + 12; t++) model.update(shape(t) + noise());
    expect(model.seasonalWeight).toBeGreaterThan(0.8);
    // The forecast follows the sine (amplitude 3) to within the noise of a 7-cycle median and the level.
    model.forecast().forEach((f, h) => expect(Math.abs(f - shape(10 * period + 12 + h))).toBeLessThan(1));
  });

  it('skips missing values without learning from them', () => {
    const model = new SeasonalMedianForecaster({ period: 4, horizon: 2 });
    for (let t = 0; t < 12; t++) model.update(t % 4 === 1 ? NaN : 5);
    expect(model.forecast().every((f) => Math.abs(f - 5) < 1e-9)).toBe(true);
  });

  it('kernel exceedance is the smoothed share above the threshold', () => {
    const samples = Array.from({ length: 1000 }, (_, i) => i / 999);
    expect(kernelExceedance(samples, 0.5)).toBeCloseTo(0.5, 2);
    expect(kernelExceedance(samples, 0.9)).toBeCloseTo(0.1, 1);
    expect(kernelExceedance([1, 1, 1], 0)).toBe(1);
  });
});

describe('failure-time models', () => {
  it('exponential MLE with censoring is failures over exposure', () => {
    const fit = fitExponential([
      { duration: 10, failed: true },
      { duration: 20, failed: true },
      { duration: 30, failed: false },
    ]);
    expect(fit.rate).toBeCloseTo(2 / 60, 12);
    expect(conditionalFailureProbability(fit, 123, 15)).toBeCloseTo(1 - Math.exp(-15 / 30), 12);
  });

  it('recovers a Weibull shape and scale, and prefers it to the exponential for wear-out data', () => {
    const uniform = seededRandom(3);
    const lifetimes: Lifetime[] = Array.from({ length: 800 }, () => ({ duration: 10 * Math.pow(-Math.log(1 - uniform()), 1 / 3), failed: true }));
    const fit = fitWeibull(lifetimes)!;
    expect(fit.shape).toBeGreaterThan(2.7);
    expect(fit.shape).toBeLessThan(3.3);
    expect(fit.scale).toBeGreaterThan(9.6);
    expect(fit.scale).toBeLessThan(10.4);
    expect(fitFailureTimes(lifetimes).kind).toBe('weibull');
    // Wear-out: an old connection is more likely to drop in the next unit than a young one.
    expect(conditionalFailureProbability(fit, 12, 1)).toBeGreaterThan(conditionalFailureProbability(fit, 2, 1));
  });

  it('keeps the exponential for memoryless data', () => {
    const uniform = seededRandom(4);
    const lifetimes: Lifetime[] = Array.from({ length: 400 }, () => ({ duration: -5 * Math.log(1 - uniform()), failed: true }));
    expect(fitFailureTimes(lifetimes).kind).toBe('exponential');
  });

  it('finds where the failure rate changed', () => {
    const lifetimes: Lifetime[] = [
      { duration: 100, failed: true },
      { duration: 90, failed: true },
      ...Array.from({ length: 10 }, () => ({ duration: 1, failed: true })),
      { duration: 0.5, failed: false },
    ];
    expect(recentRegimeStart(lifetimes)).toBe(2);
    expect(recentRegimeStart(Array.from({ length: 12 }, () => ({ duration: 5, failed: true })))).toBe(0);
  });
});

describe('trends of the floor', () => {
  it('window minima trace the floor under a sawtooth; Theil–Sen and Sen’s interval hold the true slope', () => {
    const { ts, values } = sawtooth(12, 40);
    const minima = windowMinima(ts, values, HOUR);
    expect(minima.xs.length).toBe(12);
    const hours = minima.xs.map((x) => (x - T0) / HOUR);
    const fit = theilSenInterval(hours, minima.ys.map((y) => y / MIB));
    expect(fit.slope).toBeGreaterThan(38);
    expect(fit.slope).toBeLessThan(42);
    expect(fit.lower).toBeLessThanOrEqual(40);
    expect(fit.upper).toBeGreaterThanOrEqual(40);
    expect(fit.pValue).toBeLessThan(0.001);
  });

  it('a restart is a level shift, the onset of a leak is not; the hinge finds the onset', () => {
    const hourly = (ys: number[]) => ys.map((_, i) => T0 + i * HOUR);
    const leak = [0, 0, 0, 0, 0, 0, 50, 100, 150, 200, 250, 300];
    expect(levelShifts(hourly(leak), leak, HOUR, 8, 20)).toEqual([]);
    expect(hingeStart(leak.map((_, i) => i), leak, 4)).toBe(5);
    const restart = [500, 550, 600, 650, 700, 100, 150, 200, 250];
    expect(levelShifts(hourly(restart), restart, HOUR, 8, 20)).toEqual([5]);
  });

  it('judges a step against the trend: minima read at different minutes of their hours are no restart', () => {
    // A floor rising 70 an hour, its hourly minima read 40 or 80 minutes apart (as collections fall),
    // so the steps between them alternate 47 and 93: the last, 93, is twice the median of those before.
    const xs: number[] = [];
    for (let t = 60; xs.length < 12; t += xs.length % 2 ? 80 : 40) xs.push(T0 + t * MINUTE);
    const ys = xs.map((x) => 700 + (70 * (x - T0)) / HOUR);
    expect(ys[11]! - ys[10]!).toBeCloseTo(93.3, 1);
    expect(levelShifts(xs, ys, HOUR, 8, 32)).toEqual([]);
    // The same floor with its last minimum read at the start of its window, up to an hour's growth high.
    expect(levelShifts(xs, ys.map((y, i) => (i === 11 ? y + 60 : y)), HOUR, 8, 32)).toEqual([]);
    // A fall below the trend at the last point is memory freed: a restart, even unconfirmed.
    expect(levelShifts(xs, ys.map((y, i) => (i === 11 ? y - 400 : y)), HOUR, 8, 32)).toEqual([11]);
    // A rise at the last point waits for a second point to show that the new level holds.
    const flat = xs.map(() => 650);
    expect(levelShifts(xs, flat.map((y, i) => (i === 11 ? y + 300 : y)), HOUR, 8, 32)).toEqual([]);
    expect(levelShifts(xs, flat.map((y, i) => (i >= 10 ? y + 300 : y)), HOUR, 8, 32)).toEqual([10]);
  });
});

describe('memory forecast', () => {
  it('forecasts out-of-memory from a leak under a GC sawtooth, within 5% of the exact answer', () => {
    const { ts, values } = sawtooth(30, 60, 22);
    const { forecast, chart } = forecastMemory({ component: 'worker', ts, values, limitBytes: 2048 * MIB, limitSource: 'setting', horizonHours: 24 });
    const floorNow = 650 + 8 * 60; // MiB at the last sample (30 h, leaking for 8 h)
    const truth = (2048 - floorNow) / 60;
    expect(forecast.status).toBe('ok');
    expect(forecast.memory!.will_oom).toBe(true);
    expect(Math.abs(forecast.memory!.hours_to_oom!.estimate - truth) / truth).toBeLessThan(0.05);
    expect(forecast.memory!.hours_to_oom!.lower!).toBeLessThanOrEqual(forecast.memory!.hours_to_oom!.estimate);
    expect(forecast.memory!.growth_mb_per_hour.estimate).toBeCloseTo(60, -1);
    expect(forecast.hours_to_failure).toBe(forecast.memory!.hours_to_oom!.estimate);
    expect(forecast.suggested_action?.directive).toBe('memory_leak_response');
    expect(forecast.model).toMatch(/Theil–Sen/);
    expect(chart?.threshold?.value).toBe(2048 * MIB);
  });

  it('does not forecast out-of-memory for a flat sawtooth, nor after a restart to a higher floor', () => {
    const flat = sawtooth(30, 0);
    const quiet = forecastMemory({ component: 'worker', ...flat, limitBytes: 2048 * MIB, limitSource: 'setting', horizonHours: 24 });
    expect(quiet.forecast.memory!.will_oom).toBe(false);
    expect(quiet.forecast.memory!.hours_to_oom).toBeNull();
    expect(quiet.forecast.hours_to_failure).toBeUndefined();
    expect(quiet.forecast.suggested_action).toBeNull();
    const stepped = { ts: flat.ts, values: flat.values.map((v, i) => (i > 20 * 60 ? v + 300 * MIB : v)) };
    const step = forecastMemory({ component: 'worker', ...stepped, limitBytes: 2048 * MIB, limitSource: 'setting', horizonHours: 24 });
    expect(step.forecast.memory!.will_oom).toBe(false);
    expect(step.forecast.memory!.restarts_seen).toBe(1);
  });

  it('tells a daily load rise from a leak', () => {
    const ts: number[] = [];
    const values: number[] = [];
    for (let m = 0; m < 47 * 60; m++) {
      const t = T0 + m * MINUTE;
      const hourOfDay = (t / HOUR) % 24;
      ts.push(t);
      // Load peaks at 16:00 and is least at 04:00, continuously (no step at midnight, which would be a level shift).
      values.push((300 + 40 * (1 - Math.cos((2 * Math.PI * (hourOfDay - 4)) / 24)) / 2) * MIB);
    }
    const { forecast } = forecastMemory({ component: 'agent', ts, values, limitBytes: 500 * MIB, limitSource: 'setting', horizonHours: 24 });
    expect(forecast.memory!.will_oom).toBe(false);
    expect(forecast.confidence_basis).toMatch(/repeats daily/);
  });

  it('forecasts a generated leak at the end time whose last hourly minimum was read as a restart (seed 4, 05:04)', () => {
    const options = { days: 2, seed: 4, end: Date.parse('2026-11-21T05:04:00Z'), incidents: parseIncidentList('memory_leak@-6h,flaky_connection@-6h') };
    const { ts, values } = generatedSeries(options, 'process.memory.usage', 'worker');
    const truth = (scenarioTruth(options).incidents.find((i) => i.type === 'memory_leak')!.details as { hours_to_oom_after_end: number }).hours_to_oom_after_end;
    const { forecast } = forecastMemory({ component: 'worker', ts, values, limitBytes: WORKER_MEMORY_LIMIT_BYTES, limitSource: 'setting', horizonHours: 24 });
    expect(forecast.status).toBe('ok');
    expect(forecast.memory!.restarts_seen).toBe(0);
    expect(forecast.memory!.will_oom).toBe(true);
    expect(Math.abs(forecast.memory!.hours_to_oom!.estimate - truth) / truth).toBeLessThan(0.2);
  });

  it('forecasts a leak that ends right after its hourly minimum stepped up by two collections’ worth of growth', () => {
    // Floor 650 MiB, leaking 70 MiB/h from hour 22; a collection every 40 minutes, so hourly minima
    // are read 40 or 80 minutes apart and the last step (04:40 → 05:20) is twice the one before.
    const ts: number[] = [];
    const values: number[] = [];
    for (let m = 0; m < 30 * 60; m++) {
      ts.push(T0 + m * MINUTE);
      values.push((650 + Math.max(0, m / 60 - 22) * 70 + 5 * (m % 40)) * MIB);
    }
    const minima = windowMinima(ts, values, HOUR);
    const steps = minima.ys.slice(-3).map((y, i, a) => (i ? (y - a[i - 1]!) / MIB : 0));
    expect(steps[2]).toBeCloseTo(2 * steps[1]!, 0);
    const { forecast } = forecastMemory({ component: 'worker', ts, values, limitBytes: 2048 * MIB, limitSource: 'setting', horizonHours: 24 });
    const truth = (2048 - (650 + (30 * 60 - 1 - 22 * 60) * (70 / 60))) / 70;
    expect(forecast.status).toBe('ok');
    expect(forecast.memory!.restarts_seen).toBe(0);
    expect(Math.abs(forecast.memory!.hours_to_oom!.estimate - truth) / truth).toBeLessThan(0.2);
  });

  it('a restart in the last hour: a fall is a restart at once, a rise waits for a second hourly minimum', () => {
    const limits = { limitBytes: 2048 * MIB, limitSource: 'setting' as const, horizonHours: 24 };
    // A leak whose process restarts (memory freed) 45 minutes before the end: too soon to say.
    const leak = sawtooth(30, 60, 10);
    const killedAt = T0 + (30 * 60 - 45) * MINUTE;
    const killed = { ts: leak.ts, values: leak.values.map((v, i) => (leak.ts[i]! >= killedAt ? v - 1100 * MIB : v)) };
    const afterKill = forecastMemory({ component: 'worker', ...killed, ...limits }).forecast;
    expect(afterKill.status).toBe('insufficient_history');
    expect(afterKill.needs!.need).toMatch(/since the last restart or level shift \(at 2025-01-07T05:/);
    // A leak-free process restarting to a floor 300 MiB higher: one minimum above is not yet a
    // new level, nor growth; two are a restart.
    const flat = sawtooth(30, 0);
    const risenFor = (minutes: number) => {
      const at = T0 + (30 * 60 - minutes) * MINUTE;
      return forecastMemory({ component: 'worker', ts: flat.ts, values: flat.values.map((v, i) => (flat.ts[i]! >= at ? v + 300 * MIB : v)), ...limits }).forecast;
    };
    const justRisen = risenFor(45);
    expect(justRisen.status).toBe('ok');
    expect(justRisen.memory!.will_oom).toBe(false);
    expect(justRisen.memory!.restarts_seen).toBe(0);
    const risen = risenFor(150);
    expect(risen.status).toBe('insufficient_history');
    expect(risen.needs!.need).toMatch(/since the last restart/);
  });

  it('refuses with too little history, and right after a restart, saying what it needs', () => {
    const short = sawtooth(2, 60);
    const refused = forecastMemory({ component: 'worker', ...short, limitBytes: 2048 * MIB, limitSource: 'setting', horizonHours: 24 });
    expect(refused.forecast.status).toBe('insufficient_history');
    expect(refused.forecast.needs).toEqual({ need: '4 h of process.memory.usage', have: expect.stringMatching(/^2\.0 h/) });
    expect(refused.chart).toBeNull();
    const long = sawtooth(20, 60);
    const restarted = { ts: long.ts, values: long.values.map((v, i) => (i > 18 * 60 ? v - 900 * MIB : v)) };
    const after = forecastMemory({ component: 'worker', ...restarted, limitBytes: 2048 * MIB, limitSource: 'setting', horizonHours: 24 });
    expect(after.forecast.status).toBe('insufficient_history');
    expect(after.forecast.needs!.need).toMatch(/since the last restart/);
  });
});

describe('latency forecast', () => {
  function buckets(hours: number, level: (t: number) => number, seed = 5) {
    const noise = seededNormal(seed);
    const start: number[] = [];
    const duration: number[] = [];
    for (let t = T0; t < T0 + hours * HOUR; t += 20_000) {
      start.push(t);
      duration.push(level(t) * Math.exp(0.3 * noise()));
    }
    return latencyBuckets(start, duration, T0, T0 + hours * HOUR);
  }

  it('forecasts a steady p95 with an interval around it, and a small spike probability', () => {
    const { forecast } = forecastLatency({ component: 'svc', buckets: buckets(24, () => 100), horizonHours: 1, spikeFactor: 1.5 });
    const latency = forecast.latency!;
    expect(forecast.status).toBe('ok');
    expect(latency.predicted).toHaveLength(12);
    // p95 of a lognormal with median 100 and log-sigma 0.3 over 15 requests is about 100·e^(1.645·0.3) ≈ 164.
    expect(latency.current_ms).toBeGreaterThan(130);
    expect(latency.current_ms).toBeLessThan(200);
    expect(latency.threshold_ms).toBeCloseTo(latency.current_ms * 1.5, 0);
    for (const p of latency.predicted) {
      expect(p.lower!).toBeLessThan(p.ms);
      expect(p.upper!).toBeGreaterThan(p.ms);
    }
    expect(latency.spike_probability).toBeLessThan(0.2);
  });

  it('puts the spike probability high when the threshold is below where latency is heading', () => {
    // Latency doubled over the last hour: the threshold (1.1× now) sits just above the current level.
    const rising = (t: number) => (t > T0 + 23 * HOUR ? 200 : 100);
    const { forecast } = forecastLatency({ component: 'svc', buckets: buckets(24, rising), horizonHours: 1, spikeFactor: 1.05 });
    expect(forecast.latency!.spike_probability).toBeGreaterThan(0.5);
    // auto_heal_anomaly heals a spike detection confirms; none has happened yet
    expect(forecast.suggested_action).toBeNull();
  });

  it('refuses with less than 12 hours of requests', () => {
    const { forecast, chart } = forecastLatency({ component: 'svc', buckets: buckets(6, () => 100), horizonHours: 1, spikeFactor: 1.5 });
    expect(forecast.status).toBe('insufficient_history');
    expect(forecast.needs!.need).toMatch(/^12 h of requests/);
    expect(forecast.needs!.have).toMatch(/^6\.0 h/);
    expect(chart).toBeNull();
  });
});

describe('connection forecast', () => {
  const changes = (times: [number, string][]): ConnectionChange[] => times.map(([m, state]) => ({ ts: T0 + m * MINUTE, state }));

  it('fits up-times between disconnects and conditions on the current up-time', () => {
    // Up 55–65 min, down 1 min, eight times; now up for 30 min.
    const list: [number, string][] = [[0, 'connected']];
    let at = 0;
    for (let k = 1; k <= 8; k++) {
      at += 55 + ((k * 3) % 11);
      list.push([at, 'disconnected'], [at + 1, 'connected']);
      at += 1;
    }
    const now = T0 + (at + 30) * MINUTE;
    const history = connectionHistory(changes(list), null, now);
    expect(history.failures).toBe(8);
    expect(history.connected).toBe(true);
    const { forecast, chart } = forecastConnection({ component: 'mcp-x', changes: changes(list), before: null, now, from: T0, horizonHours: 1, alertProbability: 0.5 });
    const c = forecast.connection!;
    expect(c.mtbf_hours).toBeCloseTo(1, 1);
    expect(c.current_uptime_hours).toBeCloseTo(0.5, 3);
    // Up-times this regular are wear-out (Weibull shape ≫ 1): after 30 min up, a drop within the hour is near certain.
    expect(c.weibull_shape!).toBeGreaterThan(5);
    expect(c.probability!.estimate).toBeGreaterThan(0.9);
    expect(c.may_fail_soon).toBe(true);
    expect(forecast.suggested_action?.directive).toBe('flaky_connection_response');
    expect(chart?.unit).toBe('probability');
    expect(connectionDropProbability(history, now, HOUR)).toBeCloseTo(c.probability!.estimate, 3);
  });

  it('says a connection that is down now is failing', () => {
    const { forecast } = forecastConnection({
      component: 'mcp-x',
      changes: changes([[0, 'connected'], [10, 'disconnected']]),
      before: null,
      now: T0 + 12 * MINUTE,
      from: T0,
      horizonHours: 1,
      alertProbability: 0.5,
    });
    expect(forecast.connection!.connected).toBe(false);
    expect(forecast.connection!.probability!.estimate).toBe(1);
    expect(forecast.hours_to_failure).toBe(0);
  });

  it('refuses with fewer than 3 disconnects, giving the upper bound it can', () => {
    const { forecast } = forecastConnection({
      component: 'mcp-x',
      changes: changes([[0, 'connected']]),
      before: null,
      now: T0 + 100 * HOUR,
      from: T0,
      horizonHours: 1,
      alertProbability: 0.5,
    });
    expect(forecast.status).toBe('insufficient_history');
    expect(forecast.needs!.need).toBe('3 disconnects to fit a failure-time model');
    // 0 failures in 100 h: the 95% upper rate is about 3.7/100 h, so a drop within 1 h is below ~3.7%.
    expect(forecast.needs!.have).toMatch(/^0 in 4\.2 d connected \(so a drop within 1 h is below 3\.\d%/);
  });
});

describe('error budget forecast', () => {
  it('spends the remaining budget at the last hour’s burn', () => {
    // 10 hours, 600 requests an hour; 1% errors for 9 hours, then 5% in the last hour.
    const start: number[] = [];
    const error: number[] = [];
    for (let i = 0; i < 6000; i++) {
      start.push(T0 + i * 6000);
      const lastHour = i >= 5400;
      error.push(lastHour ? (i % 20 === 0 ? 1 : 0) : i % 100 === 0 ? 1 : 0);
    }
    const now = T0 + 10 * HOUR;
    const { forecast } = forecastErrorBudget({ component: 'svc', start, error, now, objective: 0.01, windowDays: 1, horizonHours: 24 });
    const b = forecast.error_budget!;
    // Budget: 1% of 600 × 24 = 144 errors; spent 54 + 30 = 84; burning 30 an hour: 60 / 30 = 2 h left.
    expect(b.budget_errors).toBeCloseTo(144, 6);
    expect(b.errors_in_window).toBe(84);
    expect(b.current_error_rate.estimate).toBeCloseTo(0.05, 6);
    expect(b.burn_rate.estimate).toBeCloseTo(5, 6);
    expect(b.hours_to_exhaustion!.estimate).toBeCloseTo(2, 6);
    // the text gives the burn to three figures, as the objective
    expect(forecast.summary).toContain('(objective 1.00%, burn 5.00×)');
    expect(b.hours_to_exhaustion!.lower!).toBeLessThan(2);
    expect(b.hours_to_exhaustion!.upper!).toBeGreaterThan(2);
    expect(b.will_exhaust).toBe(true);
    // no directive stops errors by itself
    expect(forecast.suggested_action).toBeNull();
  });

  it('writes a burn of a thousand and more as a whole number', () => {
    const start = Array.from({ length: 6000 }, (_, i) => T0 + i * 6000);
    const error = start.map((_, i) => (i >= 5400 ? 1 : 0));
    const { forecast } = forecastErrorBudget({ component: 'svc', start, error, now: T0 + 10 * HOUR, objective: 0.001, windowDays: 1, horizonHours: 24 });
    expect(forecast.error_budget!.burn_rate.estimate).toBeCloseTo(1000, 6);
    expect(forecast.summary).toContain('(objective 0.100%, burn 1000×)');
  });

  it('widens a quiet hour back to the 30th latest request, and refuses when a day holds fewer', () => {
    // One request every 10 minutes for 10 hours, every 5th failing: the last hour holds 6.
    const start = Array.from({ length: 60 }, (_, i) => T0 + i * 10 * MINUTE);
    const error = start.map((_, i) => (i % 5 === 0 ? 1 : 0));
    const now = T0 + 10 * HOUR;
    const widened = forecastErrorBudget({ component: 'svc', start, error, now, objective: 0.01, windowDays: 30, horizonHours: 24 });
    expect(widened.forecast.status).toBe('ok');
    expect(widened.forecast.error_budget!.current_error_rate.estimate).toBeCloseTo(0.2, 6);
    expect(widened.forecast.summary).toContain('in the last 5.0 h');
    const sparse = forecastErrorBudget({ component: 'svc', start: [T0, T0 + HOUR], error: [0, 1], now: T0 + 2 * HOUR, objective: 0.01, windowDays: 30, horizonHours: 24 });
    expect(sparse.forecast.status).toBe('insufficient_history');
    expect(sparse.forecast.needs!.have).toBe('2.0 h, 2 in the last 24.0 h');
  });

  it('Wilson interval matches the textbook value', () => {
    const { lower, upper } = wilsonInterval(0, 10);
    expect(lower).toBe(0);
    expect(upper).toBeCloseTo(0.2775, 3);
  });
});

describe('chart', () => {
  function chunks(png: Buffer): { type: string; data: Buffer; crcOk: boolean }[] {
    const out = [];
    for (let at = 8; at < png.length; ) {
      const length = png.readUInt32BE(at);
      const type = png.toString('ascii', at + 4, at + 8);
      const data = png.subarray(at + 8, at + 8 + length);
      out.push({ type, data, crcOk: png.readUInt32BE(at + 8 + length) === crc32(png.subarray(at + 4, at + 8 + length)) });
      at += 12 + length;
    }
    return out;
  }

  it("puts the threshold's label where it hides the least of the series, and never on the NOW mark", () => {
    const right = { x: 300, y: 40, w: 80, h: 18 };
    const left = { x: 120, y: 40, w: 80, h: 18 };
    const nowhere = { x: 0, y: 0, w: 1, h: 1 };
    // a forecast rising through the right end: the label goes left
    expect(leastCovering([right, left], [[310, 50], [330, 45], [150, 200]], nowhere)).toBe(left);
    // nothing under either: the first place
    expect(leastCovering([right, left], [[150, 200]], nowhere)).toBe(right);
    // the NOW mark weighs more than a few points
    expect(leastCovering([right, left], [[150, 45], [160, 45]], { x: 290, y: 40, w: 40, h: 22 })).toBe(left);
    expect(leastCovering([right, left], [[310, 50]], { x: 110, y: 40, w: 40, h: 22 })).toBe(right);
  });

  it('is a valid PNG with the threshold drawn in red at its value', () => {
    const spec: ChartSpec = {
      title: 'test chart',
      unit: 'ms',
      actual: { xs: [0, HOUR, 2 * HOUR], ys: [100, 110, 105], label: 'ACTUAL' },
      forecast: { xs: [2 * HOUR, 3 * HOUR], ys: [105, 108], label: 'FORECAST' },
      band: { xs: [2 * HOUR, 3 * HOUR], lower: [95, 90], upper: [115, 125], label: '95%' },
      threshold: { value: 150, label: 'SPIKE' },
      now: 2 * HOUR,
    };
    const png = renderChart(spec, { width: 400, height: 300 });
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    const parts = chunks(png);
    expect(parts.map((c) => c.type)).toEqual(['IHDR', 'IDAT', 'IEND']);
    expect(parts.every((c) => c.crcOk)).toBe(true);
    const header = parts[0]!.data;
    expect([header.readUInt32BE(0), header.readUInt32BE(4), header[8], header[9]]).toEqual([400, 300, 8, 2]);
    // Undo the Sub filter and look for the threshold's red dashes.
    const raw = inflateSync(parts[1]!.data);
    const stride = 400 * 3;
    const pixel = (x: number, y: number): number[] => {
      const row = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
      const out = [0, 0, 0];
      for (let i = 0; i <= x * 3 + 2; i++) out[i % 3] = (out[i % 3]! + row[i]!) & 0xff;
      return out;
    };
    expect(raw.length).toBe(300 * (stride + 1));
    let redRows = 0;
    for (let y = 0; y < 300; y++) {
      let red = 0;
      for (let x = 120; x < 380; x += 2) {
        const [r, g, b] = pixel(x, y);
        if (r! > 180 && g! < 90 && b! < 90) red++;
      }
      if (red > 40) redRows++;
    }
    expect(redRows).toBeGreaterThan(0);
    expect(redRows).toBeLessThan(5);
  });
});
