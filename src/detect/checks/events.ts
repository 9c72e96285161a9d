/**
 * permission_spike (share of denied decisions) and connection_instability (disconnects of an MCP
 * server), both read from events.
 */
import { poissonUpperTail } from '../../stats/distributions.js';
import { toSignificant } from '../../stats/precision.js';
import { median } from '../../stats/robust.js';
import type { ConnectionRow, DecisionDetails } from '../../store/detect.js';
import { iso } from '../../time.js';
import {
  baselineWindow,
  clock,
  durationText,
  elevatedRun,
  eventBurst,
  judgedPart,
  thinBaseline,
  evidenceNumber,
  scoreOfP,
  windowAfter,
  severityFor,
  smoothedRate,
  type Check,
  type CheckFinding,
  type CheckOutput,
  type JudgedPart,
  type SignalRef,
  type Steps,
} from '../context.js';

const MIN_BASELINE_DECISIONS = 30;
const MIN_DENIAL_RATIO = 3;
const PATTERNS_SHOWN = 5;
/** Disconnects are rare: their baseline is the day before the window. */
const HOUR = 3_600_000;
const CONNECTION_BASELINE_MS = 24 * HOUR;
const MIN_DISCONNECTS = 3;

function groupBy<T>(rows: readonly T[], key: (row: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const row of rows) {
    const k = key(row);
    const list = groups.get(k);
    if (list) list.push(row);
    else groups.set(k, [row]);
  }
  return groups;
}

export const permissionSpike: Check = {
  name: 'permission_spike',
  types: ['permission_spike'],
  *run(ctx): Steps<CheckOutput> {
    const findings: CheckFinding[] = [];
    const examined: string[] = [];
    // Each component is judged where its own decisions give it a baseline (judgedPart).
    const parts = new Map<string, JudgedPart>();
    for (const component of ctx.reads.componentsWithDecisions(ctx.windowStart, ctx.now)) {
      if (ctx.component !== undefined && component !== ctx.component) continue;
      const part = judgedPart(ctx, decisionSignal(component), ctx.reads.firstDecision(component), ctx.windowStart - ctx.baselineStart);
      if (part) parts.set(component, part);
    }
    if (parts.size === 0) return { findings, examined };
    // One read from the earliest baseline on; each component's baseline and window are cut from it.
    yield* ctx.reads.decisions(Math.min(...[...parts.values()].map((p) => p.baselineFrom)), ctx.now);
    for (const [component, part] of parts) {
      yield;
      const base = (yield* ctx.reads.decisions(part.baselineFrom, part.from)).filter((d) => d.component === component);
      if (base.length < MIN_BASELINE_DECISIONS) {
        thinBaseline(ctx, decisionSignal(component), part.from, `its baseline from ${iso(part.baselineFrom)} holds ${base.length} decisions, ${MIN_BASELINE_DECISIONS} needed`);
        continue;
      }
      const decisions = (yield* ctx.reads.decisions(part.from, ctx.now)).filter((d) => d.component === component);
      const fingerprint = `permission_spike|${component}`;
      examined.push(fingerprint);
      const baseDenied = base.filter((d) => d.denied).length;
      const baseRate = smoothedRate(baseDenied, base.length, 0.001);
      const run = elevatedRun(decisions.map((d) => d.denied), baseRate, undefined, undefined, { hits: baseDenied, trials: base.length });
      if (!run) continue;
      const rate = run.hits / run.trials;
      const score = scoreOfP(run.pValue);
      if (rate / baseRate < MIN_DENIAL_RATIO || score < ctx.minScore) continue;
      const denied = decisions
        .slice(run.index)
        .filter((d) => d.denied)
        .map((d) => ctx.reads.decisionDetails(d.id));
      const patterns = denialPatterns(denied, run.hits);
      const top = patterns[0];
      const onset = decisions[run.index]!.ts;
      findings.push({
        fingerprint,
        type: 'permission_spike',
        severity: severityFor(score, rate > 0.25),
        component,
        series_id: null,
        description:
          `${component} denies ${(rate * 100).toFixed(1)}% of decisions since ${clock(onset)} UTC, ${(rate / baseRate).toFixed(0)}x its usual ` +
          `${(baseRate * 100).toFixed(2)}%` +
          (top ? `; mostly ${top.permission ?? '?'} for ${top.principal ?? '?'} on ${top.tool ?? '?'} (${top.denials} of ${run.hits})` : ''),
        start_ts: onset,
        end_ts: decisions[decisions.length - 1]!.ts,
        score,
        magnitude: rate / baseRate,
        evidence: {
          denial_rate: toSignificant(rate, 4),
          baseline_denial_rate: toSignificant(baseRate, 4),
          factor: toSignificant(rate / baseRate, 4),
          denials: run.hits,
          decisions: run.trials,
          p_value: run.pValue,
          baseline_window: baselineWindow(part),
          patterns,
        },
      });
    }
    return { findings, examined };
  },
  *since(ctx, anomaly, after) {
    const rate = evidenceNumber(anomaly, 'denial_rate');
    const usual = evidenceNumber(anomaly, 'baseline_denial_rate');
    if (rate === null || usual === null) return null;
    const since = (yield* ctx.reads.decisions(windowAfter(ctx, after), ctx.now)).filter((d) => d.component === anomaly.component);
    return { test: 'rate', hits: since.filter((d) => d.denied).length, trials: since.length, rate, usual };
  },
};

function decisionSignal(component: string): SignalRef {
  return { check: 'permission_spike', fingerprint: `permission_spike|${component}`, component, series_id: null, signal: 'permission decisions' };
}

function denialPatterns(denied: DecisionDetails[], total: number) {
  return [...groupBy(denied, (d) => `${d.principal}\u0000${d.tool}\u0000${d.permission}`).values()]
    .map((rows) => ({
      principal: rows[0]!.principal,
      tool: rows[0]!.tool,
      permission: rows[0]!.permission,
      denials: rows.length,
      share: toSignificant(rows.length / total, 3),
    }))
    .sort((a, b) => b.denials - a.denials)
    .slice(0, PATTERNS_SHOWN);
}

export const connectionInstability: Check = {
  name: 'connection_instability',
  types: ['connection_instability'],
  // a handful of events: nothing to pause for
  *run(ctx): Steps<CheckOutput> {
    const findings: CheckFinding[] = [];
    const examined: string[] = [];
    const read = groupBy(ctx.reads.connections(ctx.windowStart - CONNECTION_BASELINE_MS, ctx.now), (c) => c.component);
    for (const [component, all] of read) {
      if (ctx.component !== undefined && component !== ctx.component) continue;
      const fingerprint = `connection_instability|${component}`;
      // No disconnects in a day means something only while the server was sending anything.
      const signal: SignalRef = { check: 'connection_instability', fingerprint, component, series_id: null, signal: 'connection events' };
      const part = judgedPart(ctx, signal, ctx.reads.firstTelemetry(component), CONNECTION_BASELINE_MS);
      if (!part) continue;
      examined.push(fingerprint);
      const windowMs = ctx.now - part.from;
      const baseStart = part.baselineFrom;
      const events = all.filter((e) => e.ts >= part.from);
      const disconnects = events.filter((e) => e.state === 'disconnected');
      if (disconnects.length < MIN_DISCONNECTS) continue;
      const baseDisconnects = all.filter((e) => e.ts >= baseStart && e.ts < part.from && e.state === 'disconnected');
      // The median hour, not the mean: hours of an ongoing incident must not become its own baseline.
      const hourly = new Array<number>(CONNECTION_BASELINE_MS / HOUR).fill(0);
      for (const d of baseDisconnects) hourly[Math.floor((d.ts - baseStart) / HOUR)]!++;
      const perHourUsually = Math.max(median(hourly), 0.5 / hourly.length);
      const expected = perHourUsually * (windowMs / HOUR);
      // The flapping may have begun before the window: walk back through the hours that had disconnects too.
      let firstHour = hourly.length;
      while (firstHour > 0 && hourly[firstHour - 1]! > 0) firstHour--;
      // Judged over the window; when it began earlier, over the whole flapping too; and, when it
      // began well inside a long window, over the burst since it began (the best of the three,
      // each counted three times): three hours of flapping are stronger evidence than the few
      // disconnects one hour holds, and than a week's count diluted by six quiet days.
      let sinceOnset = disconnects.length;
      for (let h = firstHour; h < hourly.length; h++) sinceOnset += hourly[h]!;
      const flappingHours = hourly.length - firstHour;
      const pWindow = poissonUpperTail(disconnects.length, expected);
      const pFlapping = flappingHours > 0 ? poissonUpperTail(sinceOnset, perHourUsually * (windowMs / HOUR + flappingHours)) : 1;
      const burst = eventBurst(disconnects.map((d) => d.ts), ctx.now, perHourUsually, MIN_DISCONNECTS);
      const pBurst = burst?.pValue ?? 1;
      const p = Math.min(1, 3 * Math.min(pWindow, pFlapping, pBurst));
      const score = scoreOfP(p);
      if (score < ctx.minScore) continue;
      const fromBurst = burst !== null && flappingHours === 0 && pBurst < pWindow;
      if (fromBurst) sinceOnset = burst.after + 1;
      const onset = fromBurst
        ? disconnects[burst.index]!.ts
        : (baseDisconnects.find((d) => d.ts >= baseStart + firstHour * HOUR)?.ts ?? disconnects[0]!.ts);
      // A burst inside a long window: its spacing and rate, not those of the quiet days before it.
      const flapping = fromBurst ? disconnects.slice(burst.index) : disconnects;
      const flappingMs = fromBurst ? ctx.now - onset : windowMs;
      const mtbfSeconds = meanTimeBetween(flapping, flappingMs);
      const downtimeSeconds = downtime(events, part.from, ctx.now) / 1000;
      const state = events[events.length - 1]?.state ?? null;
      const perHour = flapping.length / (flappingMs / 3_600_000);
      findings.push({
        fingerprint,
        type: 'connection_instability',
        severity: severityFor(score, state === 'disconnected' || perHour >= 10),
        component,
        series_id: null,
        description:
          `${component} disconnected ${disconnects.length} times in the last ${durationText(windowMs)}, flapping since ${clock(onset)} UTC ` +
          `(MTBF ${Math.round(mtbfSeconds)} s, ${Math.round(downtimeSeconds)} s down${state === 'disconnected' ? ', disconnected now' : ''})`,
        start_ts: onset,
        end_ts: events[events.length - 1]!.ts,
        score,
        magnitude: disconnects.length / expected,
        evidence: {
          disconnects: disconnects.length,
          mtbf_seconds: Math.round(mtbfSeconds),
          downtime_seconds: Math.round(downtimeSeconds),
          expected_disconnects: toSignificant(expected, 3),
          baseline_disconnects_24h: baseDisconnects.length,
          flapping_hours_before_window: flappingHours,
          disconnects_since_onset: sinceOnset,
          usual_per_hour: toSignificant(perHourUsually, 3),
          current_state: state,
          reasons: [...groupBy(disconnects, (d) => d.reason ?? 'unknown')].map(([reason, rows]) => ({ reason, count: rows.length })),
          p_value: p,
          baseline_window: baselineWindow(part),
        },
      });
    }
    return { findings, examined };
  },
  *since(ctx, anomaly, after) {
    const mtbfSeconds = evidenceNumber(anomaly, 'mtbf_seconds');
    const usualPerHour = evidenceNumber(anomaly, 'usual_per_hour');
    if (mtbfSeconds === null || usualPerHour === null || mtbfSeconds <= 0) return null;
    const from = windowAfter(ctx, after);
    const disconnects = ctx.reads.connections(from, ctx.now).filter((c) => c.component === anomaly.component && c.state === 'disconnected');
    return { test: 'count', count: disconnects.length, hours: (ctx.now - from) / HOUR, perHour: 3600 / mtbfSeconds, usualPerHour };
  },
};

/** Mean time between failures: the spacing of disconnects, or the window over their count. */
function meanTimeBetween(disconnects: ConnectionRow[], windowMs: number): number {
  if (disconnects.length < 2) return windowMs / 1000 / Math.max(1, disconnects.length);
  return (disconnects[disconnects.length - 1]!.ts - disconnects[0]!.ts) / (disconnects.length - 1) / 1000;
}

/** Milliseconds spent disconnected within [from, to). */
function downtime(events: ConnectionRow[], from: number, to: number): number {
  let total = 0;
  let downSince: number | null = null;
  for (const e of events) {
    if (e.state === 'disconnected' && downSince === null) downSince = e.ts;
    else if (e.state === 'connected' && downSince !== null) {
      total += e.ts - downSince;
      downSince = null;
    }
  }
  if (downSince !== null) total += to - Math.max(from, downSince);
  return total;
}
