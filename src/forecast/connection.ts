/**
 * Will an MCP server's connection drop soon? Up-times between `connected` and `disconnected`
 * events (the current one censored) are fitted by an exponential or, when the data support its
 * extra parameter, a Weibull failure-time model; the probability of a drop within the horizon is
 * conditional on how long it has been up now.
 */
import {
  conditionalFailureInterval,
  conditionalFailureProbability,
  conditionalQuantile,
  fitFailureTimes,
  meanLifetime,
  rateInterval,
  recentRegimeStart,
  type FailureTimeFit,
  type Lifetime,
} from '../stats/survival.js';
import { respondToFlakyConnection } from '../remedies.js';
import type { ConnectionChange } from '../store/forecast.js';
import { iso } from '../time.js';
import { HOUR_MS, hoursText, insufficient, type ChartSpec, type Confidence, type ForecastWithChart } from './types.js';

export const CONNECTION_MODEL = {
  lookbackMs: 7 * 24 * HOUR_MS,
  minFailures: 3,
  minFailuresForWeibull: 5,
} as const;

export const CONNECTION_MODEL_NAME =
  'failure-time model of up-times between disconnects (exponential, or Weibull when AIC prefers it; current up-time censored), maximum likelihood; probability conditional on the current up-time';

export interface ConnectionHistory {
  /** Up-times, oldest first, each with when it began. */
  lifetimes: (Lifetime & { start: number })[];
  connected: boolean;
  /** When the current state began (null when unknown). */
  since: number | null;
  failures: number;
  /** Time observed connected, in ms. */
  exposureMs: number;
}

/**
 * Up-times from a time-ordered list of connection changes, up to `now`. `before` is the last
 * change before the list (so an up-time that began earlier is measured from its true start).
 * Repeated states (two `connected` in a row) change nothing.
 */
export function connectionHistory(changes: readonly ConnectionChange[], before: ConnectionChange | null, now: number): ConnectionHistory {
  const lifetimes: (Lifetime & { start: number })[] = [];
  let state: string | null = before?.state ?? null;
  let since: number | null = before?.ts ?? null;
  for (const change of changes) {
    if (change.ts > now) break;
    if (change.state === state) continue;
    if (change.state === 'disconnected' && state === 'connected' && since !== null) {
      lifetimes.push({ duration: change.ts - since, failed: true, start: since });
    }
    state = change.state;
    since = change.ts;
  }
  const connected = state === 'connected';
  if (connected && since !== null && now > since) lifetimes.push({ duration: now - since, failed: false, start: since });
  return {
    lifetimes,
    connected,
    since,
    failures: lifetimes.filter((l) => l.failed).length,
    exposureMs: lifetimes.reduce((s, l) => s + l.duration, 0),
  };
}

export interface ConnectionFit {
  fit: FailureTimeFit;
  /** The up-times of the recent regime the model was fitted to. */
  lifetimes: (Lifetime & { start: number })[];
  /** Index in the history where that regime starts (0: all of it). */
  regimeStart: number;
  failures: number;
  exposureMs: number;
}

/**
 * The failure-time model of a connection history with enough disconnects (else null). When the
 * drops came faster (or slower) lately, only the recent regime describes what comes next.
 */
export function fitConnection(history: ConnectionHistory): ConnectionFit | null {
  if (history.failures < CONNECTION_MODEL.minFailures) return null;
  const regimeStart = recentRegimeStart(history.lifetimes, CONNECTION_MODEL.minFailures);
  const lifetimes = history.lifetimes.slice(regimeStart);
  return {
    fit: fitFailureTimes(lifetimes, CONNECTION_MODEL.minFailuresForWeibull),
    lifetimes,
    regimeStart,
    failures: lifetimes.filter((l) => l.failed).length,
    exposureMs: lifetimes.reduce((s, l) => s + l.duration, 0),
  };
}

/** P(a drop within `horizonMs` after `now`) for a connection that is up, or null without enough history. */
export function connectionDropProbability(history: ConnectionHistory, now: number, horizonMs: number): number | null {
  if (!history.connected || history.since === null) return null;
  const model = fitConnection(history);
  return model === null ? null : conditionalFailureProbability(model.fit, now - history.since, horizonMs);
}

export interface ConnectionInput {
  component: string;
  changes: readonly ConnectionChange[];
  before: ConnectionChange | null;
  now: number;
  from: number;
  horizonHours: number;
  /** may_fail_soon when the probability reaches this. */
  alertProbability: number;
}

export function forecastConnection(input: ConnectionInput): ForecastWithChart {
  const { component, now, horizonHours } = input;
  const history = connectionHistory(input.changes, input.before, now);
  const span = { from: iso(input.from), to: iso(now), points: input.changes.length };
  const horizonMs = horizonHours * HOUR_MS;
  const uptimeMs = history.connected && history.since !== null ? now - history.since : 0;

  if (!history.connected && history.since !== null) {
    const downFor = (now - history.since) / HOUR_MS;
    return {
      forecast: {
        target: 'connection',
        component,
        status: 'ok',
        model: CONNECTION_MODEL_NAME,
        data_span: span,
        horizon_hours: horizonHours,
        confidence: 'high',
        confidence_basis: 'the connection is down now',
        hours_to_failure: 0,
        summary: `${component}: disconnected now (for ${hoursText(downFor)}, since ${iso(history.since)})`,
        suggested_action: respondToFlakyConnection(component, `disconnected since ${iso(history.since)}`),
        connection: {
          connected: false,
          current_uptime_hours: 0,
          mtbf_hours: history.failures > 0 ? round(history.exposureMs / history.failures / HOUR_MS) : null,
          failures_seen: history.failures,
          probability: { estimate: 1, lower: 1, upper: 1 },
          may_fail_soon: true,
          weibull_shape: null,
        },
      },
      chart: null,
    };
  }

  const model = fitConnection(history);
  if (model === null) {
    const exposureHours = history.exposureMs / HOUR_MS;
    const upper = history.exposureMs > 0 ? -Math.expm1(-rateInterval(history.failures, history.exposureMs).upper * horizonMs) : null;
    const forecast = insufficient(
      'connection',
      component,
      horizonHours,
      CONNECTION_MODEL_NAME,
      `${CONNECTION_MODEL.minFailures} disconnects to fit a failure-time model`,
      `${history.failures} in ${hoursText(exposureHours)} connected` +
        (upper !== null ? ` (so a drop within ${horizonHours} h is below ${(upper * 100).toPrecision(2)}% at 95% confidence)` : ''),
      span,
    );
    return { forecast, chart: null };
  }

  const { fit, lifetimes, regimeStart, failures, exposureMs } = model;
  const regimeFrom = (lifetimes[0] as { start: number }).start;
  const probability = conditionalFailureProbability(fit, uptimeMs, horizonMs);
  const bounds = conditionalFailureInterval(fit, lifetimes, uptimeMs, horizonMs);
  const mtbfHours = meanLifetime(fit) / HOUR_MS;
  const medianRemainingHours = conditionalQuantile(fit, uptimeMs, 0.5) / HOUR_MS;
  const mayFailSoon = probability >= input.alertProbability;
  const confidence: Confidence = failures >= 10 ? 'high' : failures >= 5 ? 'medium' : 'low';
  const modelText = fit.kind === 'weibull' ? `Weibull (shape ${fit.shape.toFixed(2)}, scale ${hoursText(fit.scale / HOUR_MS)})` : `exponential (rate ${(fit.rate * HOUR_MS).toPrecision(3)}/h)`;

  const steps = 30;
  const xs: number[] = [];
  const survive: number[] = [];
  const lower: number[] = [];
  const upper: number[] = [];
  for (let i = 0; i <= steps; i++) {
    const t = (horizonMs * i) / steps;
    xs.push(now + t);
    survive.push(1 - conditionalFailureProbability(fit, uptimeMs, t));
    const b = conditionalFailureInterval(fit, lifetimes, uptimeMs, t);
    lower.push(1 - b.upper);
    upper.push(1 - b.lower);
  }
  const shownFrom = Math.max(input.from, now - Math.max(3 * horizonMs, 6 * HOUR_MS));
  let state = input.before?.state === 'connected' ? 1 : 0;
  for (const change of input.changes) if (change.ts < shownFrom) state = change.state === 'connected' ? 1 : 0;
  const stateXs = [shownFrom];
  const stateYs = [state];
  for (const change of input.changes) {
    if (change.ts < shownFrom || change.ts > now) continue;
    const next = change.state === 'connected' ? 1 : 0;
    stateXs.push(change.ts, change.ts);
    stateYs.push(state, next);
    state = next;
  }
  stateXs.push(now);
  stateYs.push(state);
  const chart: ChartSpec = {
    title: `${component} connection: ${(probability * 100).toFixed(0)}% chance of a drop within ${hoursText(horizonHours)}`,
    unit: 'probability',
    actual: { xs: stateXs, ys: stateYs, label: 'UP (1) / DOWN (0)' },
    forecast: { xs, ys: survive, label: 'P(STILL UP)' },
    band: { xs, lower, upper, label: '95% INTERVAL' },
    threshold: { value: 1 - input.alertProbability, label: `MAY FAIL SOON BELOW ${Math.round((1 - input.alertProbability) * 100)}%` },
    now,
  };
  return {
    forecast: {
      target: 'connection',
      component,
      status: 'ok',
      model: `${CONNECTION_MODEL_NAME}: ${modelText}${regimeStart > 0 ? `, fitted on the up-times since ${iso(regimeFrom)} (the failure rate changed then)` : ''}`,
      data_span: span,
      horizon_hours: horizonHours,
      confidence,
      confidence_basis: `${failures} disconnects over ${hoursText(exposureMs / HOUR_MS)} connected${regimeStart > 0 ? ` since ${iso(regimeFrom)}` : ''}`,
      hours_to_failure: round(medianRemainingHours),
      summary:
        `${component}: up ${hoursText(uptimeMs / HOUR_MS)}, MTBF ${hoursText(mtbfHours)} (${failures} disconnects${regimeStart > 0 ? ` since ${iso(regimeFrom)}` : ''}); ` +
        `P(drop within ${hoursText(horizonHours)}) = ${(probability * 100).toFixed(1)}% (95% ${(bounds.lower * 100).toFixed(1)}–${(bounds.upper * 100).toFixed(1)}%)` +
        (mayFailSoon ? ' — MAY FAIL SOON' : ''),
      suggested_action: mayFailSoon
        ? respondToFlakyConnection(component, `a drop within ${hoursText(horizonHours)} is ${Math.round(probability * 100)}% likely`)
        : null,
      connection: {
        connected: true,
        current_uptime_hours: round(uptimeMs / HOUR_MS),
        mtbf_hours: round(mtbfHours),
        failures_seen: failures,
        probability: { estimate: round(probability), lower: round(bounds.lower), upper: round(bounds.upper) },
        may_fail_soon: mayFailSoon,
        weibull_shape: fit.kind === 'weibull' ? round(fit.shape) : null,
      },
    },
    chart,
  };
}

function round(v: number): number {
  return Number(v.toPrecision(4));
}
