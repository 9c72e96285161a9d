/**
 * latency_spike and error_spike: per component, its requests (spans) in the window against its
 * own requests in the baseline. Both are rate tests on a per-request outcome — "slower than the
 * baseline's p95" or "failed" — so they are judged by a binomial tail, not a fixed multiplier,
 * and they work the same at 3 requests a minute or 3,000.
 */
import { median, quantile } from '../../stats/robust.js';
import { poissonUpperTail } from '../../stats/distributions.js';
import { toSignificant } from '../../stats/precision.js';
import type { RequestRow } from '../../store/detect.js';
import { groupSignatures, messageTemplate } from '../signatures.js';
import type { Anomaly } from '../../store/anomalies.js';
import {
  clock,
  elevatedRun,
  evidenceNumber,
  formatMs,
  rateHealed,
  scoreOfP,
  sinceLastSeen,
  severityFor,
  smoothedRate,
  type Check,
  type CheckFinding,
  type CheckOutput,
  type DetectionContext,
} from '../context.js';

const sig = (value: number) => toSignificant(value, 4);
const MIN_BASELINE_REQUESTS = 30;
/** Share of baseline requests above its p95, by definition. */
const SLOW_SHARE = 0.05;
const MIN_LATENCY_FACTOR = 1.5;
const MIN_ERROR_RATIO = 2;
const CRITICAL_ERROR_RATE = 0.1;
const AFFECTED_SHOWN = 10;
const SIGNATURES_SHOWN = 5;

interface Requests {
  component: string;
  window: RequestRow[];
  baseline: RequestRow[];
}

function requestsByComponent(ctx: DetectionContext): Requests[] {
  const components = ctx.reads.componentsWithRequests(ctx.windowStart, ctx.now);
  return components
    .filter((c) => ctx.component === undefined || c === ctx.component)
    .map((component) => ({
      component,
      window: ctx.reads.requests(component, ctx.windowStart, ctx.now),
      baseline: ctx.reads.requests(component, ctx.baselineStart, ctx.windowStart),
    }));
}

export const latencySpike: Check = {
  name: 'latency_spike',
  types: ['latency_spike'],
  run(ctx): CheckOutput {
    const findings: CheckFinding[] = [];
    const examined: string[] = [];
    for (const { component, window, baseline } of requestsByComponent(ctx)) {
      if (baseline.length < MIN_BASELINE_REQUESTS) continue;
      const fingerprint = `latency_spike|${component}`;
      examined.push(fingerprint);
      const baseDurations = baseline.map((r) => r.duration_ms);
      const baseP50 = median(baseDurations);
      const baseP95 = quantile(baseDurations, 0.95);
      const slow = window.map((r) => r.duration_ms > baseP95);
      const run = elevatedRun(slow, SLOW_SHARE);
      if (!run) continue;
      const affected = window.slice(run.index);
      const durations = affected.map((r) => r.duration_ms);
      const p50 = median(durations);
      const factor = baseP50 > 0 ? p50 / baseP50 : Infinity;
      const score = scoreOfP(run.pValue);
      if (factor < MIN_LATENCY_FACTOR || score < ctx.minScore) continue;
      const onset = affected[0]!.start;
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
        end_ts: affected[affected.length - 1]!.start,
        score,
        magnitude: factor,
        evidence: {
          factor: sig(factor),
          baseline: { requests: baseline.length, p50_ms: sig(baseP50), p95_ms: sig(baseP95) },
          window: { requests: run.trials, p50_ms: sig(p50), p95_ms: sig(quantile(durations, 0.95)) },
          slower_than_baseline_p95: run.hits,
          p_value: run.pValue,
          affected_requests: [...affected]
            .sort((a, b) => b.duration_ms - a.duration_ms)
            .slice(0, AFFECTED_SHOWN)
            .map((r) => ({ trace_id: r.trace_id, span_id: r.span_id, start: new Date(r.start).toISOString(), duration_ms: sig(r.duration_ms) })),
        },
      });
    }
    return { findings, examined };
  },
  healed(ctx, anomaly) {
    const usualP95 = evidenceNumber(anomaly, 'baseline.p95_ms');
    const slow = evidenceNumber(anomaly, 'slower_than_baseline_p95');
    const trials = evidenceNumber(anomaly, 'window.requests');
    if (usualP95 === null || slow === null || trials === null || trials === 0) return null;
    const since = requestsSinceLastSeen(ctx, anomaly);
    return rateHealed(since.filter((r) => r.duration_ms > usualP95).length, since.length, slow / trials, SLOW_SHARE);
  },
};

/** The component's requests in the window after the anomaly was last seen: what says whether it is over. */
function requestsSinceLastSeen(ctx: DetectionContext, anomaly: Anomaly): RequestRow[] {
  return ctx.reads.requests(anomaly.component, sinceLastSeen(ctx, anomaly), ctx.now);
}

export const errorSpike: Check = {
  name: 'error_spike',
  types: ['error_spike'],
  run(ctx): CheckOutput {
    const findings: CheckFinding[] = [];
    const examined: string[] = [];
    const withRequests = new Set<string>();
    for (const { component, window, baseline } of requestsByComponent(ctx)) {
      withRequests.add(component);
      if (baseline.length < MIN_BASELINE_REQUESTS) continue;
      const fingerprint = `error_spike|${component}`;
      examined.push(fingerprint);
      const baseErrors = baseline.filter((r) => r.error).length;
      const baseRate = smoothedRate(baseErrors, baseline.length, 0.001);
      const run = elevatedRun(window.map((r) => r.error), baseRate);
      if (!run) continue;
      const rate = run.hits / run.trials;
      const score = scoreOfP(run.pValue);
      if (rate / baseRate < MIN_ERROR_RATIO || score < ctx.minScore) continue;
      const onset = window[run.index]!.start;
      const signatures = errorSignatures(ctx, component, onset);
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
        end_ts: window[window.length - 1]!.start,
        score,
        magnitude: rate / baseRate,
        evidence: {
          error_rate: sig(rate),
          baseline_error_rate: sig(baseRate),
          ratio: sig(rate / baseRate),
          errors: run.hits,
          requests: run.trials,
          p_value: run.pValue,
          signatures,
          failed_requests: window
            .slice(run.index)
            .filter((r) => r.error)
            .slice(-AFFECTED_SHOWN)
            .map((r) => ({ trace_id: r.trace_id, span_id: r.span_id, start: new Date(r.start).toISOString() })),
        },
      });
    }
    // Components that log errors but serve no requests (a worker, a cron job): error events per hour.
    const windowCounts = ctx.reads.errorCounts(ctx.windowStart, ctx.now);
    const baseCounts = ctx.reads.errorCounts(ctx.baselineStart, ctx.windowStart);
    const windowMs = ctx.now - ctx.windowStart;
    const baseMs = ctx.windowStart - ctx.baselineStart;
    for (const [component, count] of windowCounts) {
      if (withRequests.has(component) || (ctx.component !== undefined && component !== ctx.component)) continue;
      const fingerprint = `error_spike|${component}`;
      examined.push(fingerprint);
      const expected = Math.max(0.5, baseCounts.get(component) ?? 0) * (windowMs / baseMs);
      const p = poissonUpperTail(count, expected);
      const score = scoreOfP(p);
      if (count / expected < MIN_ERROR_RATIO || score < ctx.minScore) continue;
      const signatures = errorSignatures(ctx, component, ctx.windowStart);
      findings.push({
        fingerprint,
        type: 'error_spike',
        severity: severityFor(score, count / expected >= 10),
        component,
        series_id: null,
        description: `${component} logged ${count} errors in the last ${Math.round(windowMs / 60_000)} min, against ${expected.toFixed(1)} expected`,
        start_ts: signatures.length ? Math.min(...signatures.map((sig) => Date.parse(sig.first_seen))) : ctx.windowStart,
        end_ts: ctx.now,
        score,
        magnitude: count / expected,
        evidence: { errors: count, expected: sig(expected), ratio: sig(count / expected), p_value: p, signatures },
      });
    }
    return { findings, examined };
  },
  healed(ctx, anomaly) {
    // the request-based finding; one from error events alone ends when it is not found again
    const rate = evidenceNumber(anomaly, 'error_rate');
    const usual = evidenceNumber(anomaly, 'baseline_error_rate');
    if (rate === null || usual === null) return null;
    const since = requestsSinceLastSeen(ctx, anomaly);
    return rateHealed(since.filter((r) => r.error).length, since.length, rate, usual);
  },
};

/** Error signatures since `from`, each marked new when the baseline never showed its template. */
function errorSignatures(ctx: DetectionContext, component: string, from: number) {
  const known = new Set(ctx.reads.errorMessages(component, ctx.baselineStart, ctx.windowStart).map((m) => messageTemplate(m.message)));
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
