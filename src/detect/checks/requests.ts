/**
 * latency_spike and error_spike: per component, its requests (spans) in the window against its
 * own requests in the baseline. Both are rate tests on a per-request outcome — "slower than the
 * baseline's p95" or "failed" — so they are judged by a binomial tail, not a fixed multiplier,
 * and they work the same at 3 requests a minute or 3,000.
 */
import { median, quantile } from '../../stats/robust.js';
import { binomialUpperTail } from '../../stats/distributions.js';
import { iso } from '../../time.js';
import { toSignificant } from '../../stats/precision.js';
import type { RequestIds, Requests } from '../../store/detect.js';
import { groupSignatures, messageTemplate } from '../signatures.js';
import type { Anomaly } from '../../store/anomalies.js';
import {
  baselineWindow,
  clock,
  durationText,
  eventBurst,
  elevatedRun,
  hoursText,
  judgedPart,
  thinBaseline,
  evidenceNumber,
  formatMs,
  scoreOfP,
  windowAfter,
  severityFor,
  smoothedRate,
  type Check,
  type CheckFinding,
  type CheckOutput,
  type DetectionContext,
  type JudgedPart,
  type SignalRef,
  type Steps,
} from '../context.js';

const sig = (value: number) => toSignificant(value, 4);
const HOUR = 3_600_000;
const MIN_BASELINE_REQUESTS = 30;
/** Share of baseline requests above its p95, by definition. */
const SLOW_SHARE = 0.05;
const MIN_LATENCY_FACTOR = 1.5;
const MIN_ERROR_RATIO = 2;
const CRITICAL_ERROR_RATE = 0.1;
const AFFECTED_SHOWN = 10;
const SIGNATURES_SHOWN = 5;

/** Components with requests in the window (the one asked about, when one is). */
function requestComponents(ctx: DetectionContext): string[] {
  return ctx.reads.componentsWithRequests(ctx.windowStart, ctx.now).filter((c) => ctx.component === undefined || c === ctx.component);
}

const signalOf = (check: string, component: string, signal: string): SignalRef => ({
  check,
  fingerprint: `${check}|${component}`,
  component,
  series_id: null,
  signal,
});

/**
 * A component's requests over the part of the window it can be judged in, and over its baseline
 * before that part (see judgedPart); null, and listed as not judged, when nothing of the window
 * can be judged against a baseline of at least MIN_BASELINE_REQUESTS.
 */
function* judgedRequests(
  ctx: DetectionContext,
  check: string,
  component: string,
): Steps<{ part: JudgedPart; baseline: Requests; window: Requests } | null> {
  const signal = signalOf(check, component, 'requests');
  const part = judgedPart(ctx, signal, ctx.reads.firstRequest(component), ctx.windowStart - ctx.baselineStart);
  if (!part) return null;
  const baseline = yield* ctx.reads.requests(component, part.baselineFrom, part.from);
  if (baseline.length < MIN_BASELINE_REQUESTS) {
    thinBaseline(ctx, signal, part.from, `its baseline from ${iso(part.baselineFrom)} holds ${baseline.length} requests, ${MIN_BASELINE_REQUESTS} needed`);
    return null;
  }
  const window = yield* ctx.reads.requests(component, part.from, ctx.now);
  return { part, baseline, window };
}

/**
 * The `count` slowest requests from index `from` on, slowest first, ties in time order: what a
 * stable sort by duration, descending, puts first, without sorting them all.
 */
function slowest(requests: Requests, from: number, count: number): number[] {
  const top: number[] = [];
  const duration = requests.duration;
  for (let i = from; i < requests.length; i++) {
    const d = duration[i]!;
    if (top.length === count && !(d > duration[top[count - 1]!]!)) continue;
    let at = top.length;
    while (at > 0 && d > duration[top[at - 1]!]!) at--;
    top.splice(at, 0, i);
    if (top.length > count) top.pop();
  }
  return top;
}

/** Requests (by index) with their trace and span ids, read now: only those shown need them. */
function withIds(ctx: DetectionContext, requests: Requests, indices: number[]): { ids: RequestIds; i: number }[] {
  return indices.flatMap((i) => {
    const ids = ctx.reads.requestIds(requests.rowid[i]!);
    return ids ? [{ ids, i }] : [];
  });
}

/** The last `count` failed requests from index `from` on, in time order. */
function lastFailed(requests: Requests, from: number, count: number): number[] {
  const failed: number[] = [];
  for (let i = requests.length - 1; i >= from && failed.length < count; i--) if (requests.error[i]) failed.push(i);
  return failed.reverse();
}

export const latencySpike: Check = {
  name: 'latency_spike',
  types: ['latency_spike'],
  *run(ctx): Steps<CheckOutput> {
    const findings: CheckFinding[] = [];
    const examined: string[] = [];
    for (const component of requestComponents(ctx)) {
      yield;
      const judged = yield* judgedRequests(ctx, 'latency_spike', component);
      if (!judged) continue;
      const { part, baseline, window } = judged;
      const fingerprint = `latency_spike|${component}`;
      examined.push(fingerprint);
      const baseDurations = baseline.duration;
      const baseP50 = median(baseDurations);
      const baseP95 = quantile(baseDurations, 0.95);
      const slow = new Uint8Array(window.length);
      for (let i = 0; i < window.length; i++) slow[i] = window.duration[i]! > baseP95 ? 1 : 0;
      let baseSlow = 0;
      for (let i = 0; i < baseline.length; i++) if (baseDurations[i]! > baseP95) baseSlow++;
      const run = elevatedRun(slow, SLOW_SHARE, undefined, undefined, { hits: baseSlow, trials: baseline.length });
      if (!run) continue;
      const durations = window.duration.subarray(run.index);
      const p50 = median(durations);
      const factor = baseP50 > 0 ? p50 / baseP50 : Infinity;
      const score = scoreOfP(run.pValue);
      if (factor < MIN_LATENCY_FACTOR || score < ctx.minScore) continue;
      const onset = window.start[run.index]!;
      const shown = slowest(window, run.index, AFFECTED_SHOWN);
      findings.push({
        fingerprint,
        type: 'latency_spike',
        severity: severityFor(score, factor >= 5),
        component,
        series_id: null,
        description:
          `${component} requests take ${factor.toFixed(1)}x their usual time since ${clock(onset)} UTC ` +
          `(p50 ${formatMs(p50)} vs ${formatMs(baseP50)}; ${run.hits} of ${run.trials} slower than the usual p95 ${formatMs(baseP95)})`,
        start_ts: onset,
        end_ts: window.start[window.length - 1]!,
        score,
        magnitude: factor,
        evidence: {
          factor: sig(factor),
          baseline: { requests: baseline.length, p50_ms: sig(baseP50), p95_ms: sig(baseP95) },
          baseline_window: baselineWindow(part),
          window: { requests: run.trials, p50_ms: sig(p50), p95_ms: sig(quantile(durations, 0.95)) },
          slower_than_baseline_p95: run.hits,
          p_value: run.pValue,
          affected_requests: withIds(ctx, window, shown).map(({ ids, i }) => ({
            ...ids,
            start: new Date(window.start[i]!).toISOString(),
            duration_ms: sig(window.duration[i]!),
          })),
        },
      });
    }
    return { findings, examined };
  },
  *since(ctx, anomaly, after) {
    const usualP95 = evidenceNumber(anomaly, 'baseline.p95_ms');
    const slow = evidenceNumber(anomaly, 'slower_than_baseline_p95');
    const trials = evidenceNumber(anomaly, 'window.requests');
    if (usualP95 === null || slow === null || trials === null || trials === 0) return null;
    const since = yield* requestsAfter(ctx, anomaly, after);
    let slower = 0;
    for (let i = 0; i < since.length; i++) if (since.duration[i]! > usualP95) slower++;
    return { test: 'rate', hits: slower, trials: since.length, rate: slow / trials, usual: SLOW_SHARE };
  },
};

/** The component's requests in the window after `after`: what says whether the anomaly is over, or back. */
function requestsAfter(ctx: DetectionContext, anomaly: Anomaly, after: number): Steps<Requests> {
  return ctx.reads.requests(anomaly.component, windowAfter(ctx, after), ctx.now);
}

export const errorSpike: Check = {
  name: 'error_spike',
  types: ['error_spike'],
  *run(ctx): Steps<CheckOutput> {
    const findings: CheckFinding[] = [];
    const examined: string[] = [];
    const withRequests = new Set<string>();
    for (const component of requestComponents(ctx)) {
      withRequests.add(component);
      yield;
      const judged = yield* judgedRequests(ctx, 'error_spike', component);
      if (!judged) continue;
      const { part, baseline, window } = judged;
      const fingerprint = `error_spike|${component}`;
      examined.push(fingerprint);
      let baseErrors = 0;
      for (let i = 0; i < baseline.length; i++) baseErrors += baseline.error[i]!;
      const baseRate = smoothedRate(baseErrors, baseline.length, 0.001);
      const run = elevatedRun(window.error, baseRate, undefined, undefined, { hits: baseErrors, trials: baseline.length });
      if (!run) continue;
      const rate = run.hits / run.trials;
      const score = scoreOfP(run.pValue);
      if (rate / baseRate < MIN_ERROR_RATIO || score < ctx.minScore) continue;
      const onset = window.start[run.index]!;
      const failed = lastFailed(window, run.index, AFFECTED_SHOWN);
      const signatures = errorSignatures(ctx, component, onset, part);
      const newOnes = signatures.filter((s) => s.new).length;
      findings.push({
        fingerprint,
        type: 'error_spike',
        severity: severityFor(score, rate > CRITICAL_ERROR_RATE),
        component,
        series_id: null,
        description:
          `${component} fails ${(rate * 100).toFixed(1)}% of requests since ${clock(onset)} UTC, against ${(baseRate * 100).toFixed(2)}% usually` +
          (signatures[0] ? `; top error: ${signatures[0].template}${signatures[0].new ? ' (new)' : ''}` : '') +
          (newOnes > 1 ? ` (+${newOnes - 1} more new signatures)` : ''),
        start_ts: onset,
        end_ts: window.start[window.length - 1]!,
        score,
        magnitude: rate / baseRate,
        evidence: {
          error_rate: sig(rate),
          baseline_error_rate: sig(baseRate),
          ratio: sig(rate / baseRate),
          errors: run.hits,
          requests: run.trials,
          p_value: run.pValue,
          baseline_window: baselineWindow(part),
          signatures,
          failed_requests: withIds(ctx, window, failed).map(({ ids, i }) => ({ ...ids, start: new Date(window.start[i]!).toISOString() })),
        },
      });
    }
    // Components that log errors but serve no requests (a worker, a cron job): error events per hour,
    // against those of the component's baseline. Their silence means something only while the
    // component was sending anything, so the baseline is judged by its first telemetry of any kind.
    const baselineMs = ctx.windowStart - ctx.baselineStart;
    for (const component of ctx.reads.errorCounts(ctx.windowStart, ctx.now).keys()) {
      if (withRequests.has(component) || (ctx.component !== undefined && component !== ctx.component)) continue;
      yield;
      const part = judgedPart(ctx, signalOf('error_spike', component, 'error events'), ctx.reads.firstTelemetry(component), baselineMs);
      if (!part) continue;
      const fingerprint = `error_spike|${component}`;
      examined.push(fingerprint);
      const times = ctx.reads.errorTimes(component, part.from, ctx.now);
      if (times.length === 0) continue;
      const baseCount = ctx.reads.errorCount(component, part.baselineFrom, part.from);
      const baseMs = part.from - part.baselineFrom;
      // Two Poisson counts compared exactly: given both together, the window's share is binomial
      // with the window's share of the time. A baseline of zero errors is then weak evidence of a
      // zero rate, as it should be: 0 in 6 hours and 83 in a week are the same rate. Judged over
      // the window and over the burst since its first error inside it (the stronger, counted
      // twice), against the baseline and the window before the burst: a burst of the last hour
      // is not lost in a week.
      const windowMs = ctx.now - part.from;
      const pWindow = binomialUpperTail(times.length, times.length + baseCount, windowMs / (windowMs + baseMs));
      const burst = eventBurst(times, ctx.now, { count: baseCount, ms: baseMs, from: part.from });
      const fromBurst = burst !== null && burst.index > 0 && burst.pValue < pWindow;
      const p = Math.min(1, 2 * Math.min(pWindow, burst?.pValue ?? 1));
      const from = fromBurst ? times[burst.index]! : part.from;
      const count = fromBurst ? burst.after + 1 : times.length;
      const countedMs = ctx.now - from;
      const usualCount = baseCount + (fromBurst ? burst.index : 0);
      const usualMs = baseMs + (from - part.from);
      const expected = Math.max(0.5, usualCount) * (countedMs / usualMs);
      const score = scoreOfP(p);
      if (count / expected < MIN_ERROR_RATIO || score < ctx.minScore) continue;
      const signatures = errorSignatures(ctx, component, from, part);
      findings.push({
        fingerprint,
        type: 'error_spike',
        severity: severityFor(score, count / expected >= 10),
        component,
        series_id: null,
        description:
          `${component} logged ${count} errors ${fromBurst ? `since ${clock(from)} UTC` : `in the last ${durationText(countedMs)}`}, against ` +
          (usualCount > 0 ? `${expected.toFixed(1)} expected (${usualCount} in the ${hoursText(usualMs)} before)` : `none in the ${hoursText(usualMs)} before`),
        start_ts: fromBurst ? from : signatures.length ? Math.min(...signatures.map((sig) => Date.parse(sig.first_seen))) : part.from,
        end_ts: times[times.length - 1]!,
        score,
        magnitude: count / expected,
        evidence: {
          errors: count,
          hours: toSignificant(countedMs / HOUR, 4),
          usual_per_hour: toSignificant(usualCount / (usualMs / HOUR), 4),
          baseline_errors: baseCount,
          expected: sig(expected),
          ratio: sig(count / expected),
          p_value: p,
          baseline_window: baselineWindow(part),
          signatures,
        },
      });
    }
    return { findings, examined };
  },
  // An error spike of a component without requests (errors logged as events) that stopped logging
  // errors left nothing to examine: its silence says it is over while the component sends anything else.
  judgesSilence: (anomaly) => isFromErrorEvents(anomaly),
  *since(ctx, anomaly, after) {
    if (isFromErrorEvents(anomaly)) {
      // its count of error events since, against its rate per hour and the usual one
      const errors = evidenceNumber(anomaly, 'errors');
      const hours = evidenceNumber(anomaly, 'hours');
      const usualPerHour = evidenceNumber(anomaly, 'usual_per_hour');
      if (errors === null || hours === null || usualPerHour === null || !(hours > 0)) return null;
      const from = windowAfter(ctx, after);
      // A component that sent nothing at all since cannot be judged by its silence.
      if (from >= ctx.now || !ctx.reads.sentAnything(anomaly.component, from, ctx.now)) return { test: 'silent' };
      return { test: 'count', count: ctx.reads.errorCount(anomaly.component, from, ctx.now), hours: (ctx.now - from) / HOUR, perHour: errors / hours, usualPerHour };
    }
    const rate = evidenceNumber(anomaly, 'error_rate')!;
    const usual = evidenceNumber(anomaly, 'baseline_error_rate')!;
    const since = yield* requestsAfter(ctx, anomaly, after);
    let errors = 0;
    for (let i = 0; i < since.length; i++) errors += since.error[i]!;
    return { test: 'rate', hits: errors, trials: since.length, rate, usual };
  },
};

/** An error spike found in the error events of a component without requests, not in its requests' outcomes. */
function isFromErrorEvents(anomaly: Anomaly): boolean {
  return evidenceNumber(anomaly, 'error_rate') === null || evidenceNumber(anomaly, 'baseline_error_rate') === null;
}

/** Error signatures since `from`, each marked new when the baseline never showed its template. */
function errorSignatures(ctx: DetectionContext, component: string, from: number, part: JudgedPart) {
  const known = new Set(ctx.reads.errorMessages(component, part.baselineFrom, part.from).map((m) => messageTemplate(m.message)));
  return groupSignatures(ctx.reads.errorMessages(component, from, ctx.now))
    .slice(0, SIGNATURES_SHOWN)
    .map((s) => ({
      template: s.template,
      count: s.count,
      new: !known.has(s.template),
      first_seen: new Date(s.first_ts).toISOString(),
      example: s.example.length > 300 ? `${s.example.slice(0, 299)}…` : s.example,
    }));
}
