/** What every check receives, and the pieces of judgement they share. */
import { binomialLowerTail, binomialUpperTail, poissonLowerTail, poissonUpperTail } from '../stats/distributions.js';
import { theilSenInterval } from '../stats/envelope.js';
import { iso } from '../time.js';
import type { Anomaly, AnomalyFinding } from '../store/anomalies.js';
import type { DetectionReads, Steps } from '../store/detect.js';

export type { Steps } from '../store/detect.js';
import type { Store } from '../store/store.js';

export const ANOMALY_TYPES = [
  'latency_spike',
  'error_spike',
  'permission_spike',
  'memory_leak',
  'connection_instability',
  'spike',
  'dip',
  'level_shift',
] as const;
export type AnomalyType = (typeof ANOMALY_TYPES)[number];

export interface DetectionContext {
  store: Store;
  reads: DetectionReads;
  /** End of the window being judged (exclusive), epoch ms. */
  now: number;
  /** Start of the window: now - lookback. */
  windowStart: number;
  /** Start of the recent baseline, which ends where the window starts. */
  baselineStart: number;
  /** Findings below this score are not reported (from the sensitivity). */
  minScore: number;
  component?: string;
  /** What the checks could not judge, and why: they add to it (see judgedPart). */
  notJudged: NotJudged[];
}

/**
 * A signal a check could not judge over (part of) the window. A signal with no data in the window
 * has nothing to judge and is not listed.
 */
export interface NotJudged {
  check: string;
  /** The fingerprint its anomaly would have: an open one is not closed by this run. */
  fingerprint: string;
  component: string;
  series_id: number | null;
  /** The signal in words: "requests", "error events", "process.memory.usage{worker}". */
  signal: string;
  /** The part of the window not judged: from its start up to `to`, or all of it. */
  from: number;
  to: number;
  /**
   * no_baseline: the signal's data begins too late for a full baseline before (part of) the
   * window; thin_baseline: its baseline holds too little to judge against; short_segment: too
   * little memory since the last restart or level shift to tell a trend.
   */
  reason: 'no_baseline' | 'thin_baseline' | 'short_segment';
  /** The reason in words, with its numbers. */
  detail: string;
}

export type SignalRef = Pick<NotJudged, 'check' | 'fingerprint' | 'component' | 'series_id' | 'signal'>;

/** The part of the window a check judges for one signal, and where its baseline begins (it ends where that part begins). */
export interface JudgedPart {
  from: number;
  baselineFrom: number;
}

/**
 * How late in its baseline a signal's data may begin and the baseline still count as its own: a
 * tenth of it (the first request of a six-hour baseline may come a few minutes in).
 */
export const BASELINE_SLACK = 0.1;

/**
 * Where a check can judge a signal whose data begins at `first` against `baselineMs` of its own
 * data before. When the data begins by the start of the baseline (within BASELINE_SLACK), that is
 * the whole window. Otherwise the baseline before the window holds nothing of this signal (a store
 * younger than window and baseline, a component that appeared since): judging it there would take
 * an empty baseline for a quiet one. The signal is then judged from `baselineMs` after its first
 * datum, against those first `baselineMs`; the part of the window before is listed as not judged,
 * and null is returned when nothing of the window is left.
 */
export function judgedPart(ctx: DetectionContext, signal: SignalRef, first: number | null, baselineMs: number): JudgedPart | null {
  const baselineFrom = ctx.windowStart - baselineMs;
  if (first === null || first <= baselineFrom + BASELINE_SLACK * baselineMs) return { from: ctx.windowStart, baselineFrom };
  const from = first + baselineMs;
  ctx.notJudged.push({
    ...signal,
    from: ctx.windowStart,
    to: Math.min(from, ctx.now),
    reason: 'no_baseline',
    detail: `its data begins at ${iso(first)}, and judging it needs ${hoursText(baselineMs)} of it before`,
  });
  return from < ctx.now ? { from, baselineFrom: first } : null;
}

/** Records that a signal's baseline held too little to judge the part of the window from `from`. */
export function thinBaseline(ctx: DetectionContext, signal: SignalRef, from: number, detail: string): void {
  ctx.notJudged.push({ ...signal, from, to: ctx.now, reason: 'thin_baseline', detail });
}

/** The baseline a finding was judged against, for its evidence. */
export function baselineWindow(part: JudgedPart): { from: string; to: string } {
  return { from: iso(part.baselineFrom), to: iso(part.from) };
}

/** A span of time for a description: minutes up to two hours ("60 min"), hours or days beyond. */
export function durationText(ms: number): string {
  return ms <= 2 * 3_600_000 ? `${Math.round(ms / 60_000)} min` : hoursText(ms);
}

export function hoursText(ms: number): string {
  const hours = ms / 3_600_000;
  return hours >= 48 && hours % 24 === 0 ? `${hours / 24} days` : `${Number(hours.toPrecision(3))} h`;
}

/** A finding plus the size of the effect, which false-positive feedback compares. */
export interface CheckFinding extends Omit<AnomalyFinding, 'suggested_action'> {
  /** A check-specific size of the effect (a factor, a ratio, a z): larger is more anomalous. */
  magnitude: number;
}

export interface CheckOutput {
  findings: CheckFinding[];
  /** Fingerprints the check judged this run (found or not): what it may close when healed. */
  examined: string[];
}

/**
 * A check runs as a generator (`Steps`): it yields between units of work (a component, a series,
 * a slice of a long read) so that detect/service.ts can let other work run in between. Yielding
 * changes nothing in what it computes.
 */
export interface Check {
  name: string;
  types: readonly AnomalyType[];
  run(ctx: DetectionContext): Steps<CheckOutput>;
  /**
   * An anomaly's signal in the window after `after` (when it was last seen, or when it was closed),
   * measured against the anomaly's own level and the usual one (from its evidence): what says
   * whether it is over (`healedBy`) or abnormal again (`recurredBy`). Null when the check cannot
   * judge it this way (not finding an open one again is then taken as its end).
   */
  since?(ctx: DetectionContext, anomaly: Anomaly, after: number): Steps<SignalSince | null>;
  /**
   * Whether an open anomaly is judged by `since` even when the check examined nothing of its signal
   * this run: a sparse signal (the error events of a component without requests) that fell silent
   * left nothing to examine, and its silence still says something while the component sends anything.
   */
  judgesSilence?(anomaly: Anomaly): boolean;
}

/**
 * What the window says about an anomaly's signal since a time:
 * - rate: `hits` of `trials` (errors of requests, slow requests, denials, points beyond halfway),
 *   against the anomaly's rate and the usual one;
 * - count: events over `hours`, against the anomaly's rate per hour and the usual one;
 * - floor: hourly memory minima (at `hours`) against the leak's growth per hour;
 * - silent: the component sent nothing at all, so its silence says nothing.
 */
export type SignalSince =
  | { test: 'rate'; hits: number; trials: number; rate: number; usual: number }
  | { test: 'count'; count: number; hours: number; perHour: number; usualPerHour: number }
  | { test: 'floor'; hours: number[]; lows: number[]; growthPerHour: number }
  | { test: 'silent' };

/**
 * Not finding an anomaly again is no evidence it is over when the window is too short to have
 * found it: a 10-minute look at an hour-old error spike holds a handful of requests. So a rate
 * anomaly ends only when the window's rate is significantly (p < HEALED_P) below halfway between
 * the anomaly's rate and the usual one: 0 errors in 3 requests leave a 40% error spike open,
 * 0 in 15 close it.
 */
export const HEALED_P = 0.05;

export function rateHealed(hits: number, trials: number, anomalyRate: number, usualRate: number): boolean {
  if (!(anomalyRate > usualRate)) return true;
  return binomialLowerTail(hits, trials, (anomalyRate + usualRate) / 2) < HEALED_P;
}

/** As rateHealed, for events counted over `hours` against rates per hour. */
export function countHealed(count: number, hours: number, anomalyPerHour: number, usualPerHour: number): boolean {
  if (!(anomalyPerHour > usualPerHour)) return true;
  return poissonLowerTail(count, ((anomalyPerHour + usualPerHour) / 2) * hours) < HEALED_P;
}

/** Hourly minima a leak is judged over, since it was last seen or closed: fewer tell nothing. */
export const MIN_FLOOR_LOWS = 4;

/**
 * Whether the signal since an open anomaly was last seen shows it over: a rate or count
 * significantly below halfway between the anomaly's and the usual one; a memory floor (at least
 * MIN_FLOOR_LOWS hourly minima) whose Sen 95% upper slope is below half the leak's growth. A
 * silent component shows nothing.
 */
export function healedBy(since: SignalSince): boolean {
  switch (since.test) {
    case 'rate':
      return rateHealed(since.hits, since.trials, since.rate, since.usual);
    case 'count':
      return countHealed(since.count, since.hours, since.perHour, since.usualPerHour);
    case 'floor':
      if (!(since.growthPerHour > 0)) return true;
      return since.lows.length >= MIN_FLOOR_LOWS && theilSenInterval(since.hours, since.lows).upper < since.growthPerHour / 2;
    case 'silent':
      return false;
  }
}

/**
 * Whether the signal since a closed anomaly was closed shows it again, the mirror of healedBy: a
 * rate or count significantly (p < HEALED_P) above halfway between the anomaly's and the usual
 * one; a memory floor whose Sen 95% lower slope is above half the leak's growth. Too little data
 * since the closing to tell leaves it closed.
 */
export function recurredBy(since: SignalSince): boolean {
  switch (since.test) {
    case 'rate':
      return since.rate > since.usual && binomialUpperTail(since.hits, since.trials, (since.rate + since.usual) / 2) < HEALED_P;
    case 'count':
      return since.perHour > since.usualPerHour && poissonUpperTail(since.count, ((since.perHour + since.usualPerHour) / 2) * since.hours) < HEALED_P;
    case 'floor':
      return (
        since.growthPerHour > 0 && since.lows.length >= MIN_FLOOR_LOWS && theilSenInterval(since.hours, since.lows).lower > since.growthPerHour / 2
      );
    case 'silent':
      return false;
  }
}

/** Where the window's evidence after a time (an anomaly last seen, or closed) starts. */
export function windowAfter(ctx: DetectionContext, after: number): number {
  return Math.max(ctx.windowStart, after + 1);
}

/** A number the check stored in an anomaly's evidence (at a dotted path), or null. */
export function evidenceNumber(anomaly: Anomaly, path: string): number | null {
  let value: unknown = anomaly.evidence;
  for (const key of path.split('.')) value = value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined;
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

/** p = 1e-6 scores 0.5, p = 1e-12 scores 1: a log scale, so tiny p-values stay comparable. */
export function scoreOfP(p: number): number {
  if (!(p < 1)) return 0;
  return Math.min(1, -Math.log10(Math.max(p, 1e-300)) / 12);
}

/** Sensitivity in [0, 1] (default 0.5) to the lowest score reported: 0.5 -> p 1e-6, 1 -> p 1e-3, 0 -> p 1e-9. */
export function minScoreFor(sensitivity: number): number {
  const s = Math.min(1, Math.max(0, sensitivity));
  return 0.75 - 0.5 * s;
}

export interface ElevatedRun {
  /** Index of the first event of the run. */
  index: number;
  hits: number;
  trials: number;
  /** Upper-tail binomial p-value of the run against the base rate, corrected for the starts tried. */
  pValue: number;
}

/**
 * The starts of trailing runs to try over `n` events, each leaving at least `minTrials`: all of
 * them when there are at most `maxStarts`; otherwise `maxStarts` evenly spaced, and as many again
 * at trailing lengths growing geometrically from `minTrials` to `n`. Evenly spaced starts alone
 * place a recent onset no finer than a 60th of the window (three hours of a week), and a run from
 * there dilutes a 30-minute incident with hours of normal events; the geometric ones place it
 * within a few percent of its own age, whatever the window's length.
 */
export function runStarts(n: number, minTrials: number, maxStarts = 60): number[] {
  const last = n - minTrials;
  if (last < 0) return [];
  const step = Math.max(1, Math.ceil((last + 1) / maxStarts));
  const starts = new Set<number>();
  for (let i = 0; i <= last; i += step) starts.add(i);
  if (step > 1) {
    const ratio = Math.pow(n / minTrials, 1 / (maxStarts - 1));
    for (let k = 0; k < maxStarts; k++) starts.add(Math.max(0, Math.min(last, n - Math.round(minTrials * ratio ** k))));
  }
  return [...starts].sort((a, b) => a - b);
}

/** A baseline's hits (errors, denials, slow requests) among its trials: what a run's rate is compared with. */
export interface BaselineCount {
  hits: number;
  trials: number;
}

/**
 * Over events in time order, each a hit or not (true or 1: an error, a denial, a request slower than the
 * baseline's p95), finds the start of the trailing run whose hit rate is most surprising against
 * `baseRate`: the onset of an ongoing rise. The starts tried are `runStarts`, and the p-value is
 * multiplied by their number (Bonferroni).
 *
 * With `baseline` (its hits and trials), each run is compared with everything before it, the
 * baseline and the window up to the run's start, as a count rather than as a rate taken to be
 * exact: given the hits of both, the run's share is binomial with its share of the trials (exact
 * for rare hits, as two Poisson counts). Six hours holding 1 error in 600 requests say the usual
 * rate is below 1%, not that it is 0.17%: a week-long run of 0.5% is no spike against them alone,
 * while a run of the last hour is judged against six days before it as well.
 */
export function elevatedRun(
  hits: ArrayLike<boolean | number>,
  baseRate: number,
  minTrials = 5,
  maxStarts = 60,
  baseline: BaselineCount | null = null,
): ElevatedRun | null {
  const n = hits.length;
  if (n < minTrials) return null;
  const suffixHits = new Int32Array(n + 1);
  for (let i = n - 1; i >= 0; i--) suffixHits[i] = suffixHits[i + 1]! + (hits[i] ? 1 : 0);
  const starts = runStarts(n, minTrials, maxStarts);
  let best: ElevatedRun | null = null;
  for (const i of starts) {
    const trials = n - i;
    const k = suffixHits[i]!;
    if (k / trials <= baseRate) continue;
    let p: number;
    if (baseline) {
      // the run against all before it: the baseline, and the window up to the run's start
      const before = baseline.hits + suffixHits[0]! - k;
      p = binomialUpperTail(k, k + before, trials / (trials + baseline.trials + i));
    } else p = binomialUpperTail(k, trials, baseRate);
    if (!best || p < best.pValue) best = { index: i, hits: k, trials, pValue: p };
  }
  if (best) best.pValue = Math.min(1, best.pValue * starts.length);
  return best;
}

export interface EventBurst {
  /** Index of the event the burst begins with: its onset. */
  index: number;
  /** Events after that one, up to the end. */
  after: number;
  /** Poisson upper-tail p-value of `after` over the time since the onset, corrected for the starts tried. */
  pValue: number;
}

/** What a burst of events is compared with: `count` events over the `ms` before `from`, where the times begin. */
export interface EventReference {
  count: number;
  ms: number;
  from: number;
}

/**
 * Over the times of events (ascending, from `reference.from` or later) up to `now`, the trailing
 * burst most surprising against the usual rate: the onset of flapping or of a burst of errors that
 * began well inside a long window, where the window's whole count is diluted by days of quiet.
 * Each start is an event, and the evidence is the events after it over the time since: the first
 * marks the onset and is not counted, or any lone recent event would be a burst. The usual rate is
 * `perHour` taken as exact, or a reference count, as two Poisson counts compared exactly (see
 * elevatedRun): the reference's events and the events before the start, over its time and the time
 * up to the start. Starts as `runStarts`, Bonferroni-corrected.
 */
export function eventBurst(times: readonly number[], now: number, usual: number | EventReference, minEvents = 3, maxStarts = 60): EventBurst | null {
  const starts = runStarts(times.length, minEvents, maxStarts);
  let best: EventBurst | null = null;
  for (const i of starts) {
    const after = times.length - i - 1;
    const since = now - times[i]!;
    let p: number;
    if (typeof usual === 'number') p = poissonUpperTail(after, (usual * since) / 3_600_000);
    else {
      const before = usual.count + i;
      const beforeMs = usual.ms + (times[i]! - usual.from);
      p = binomialUpperTail(after, after + before, since / (since + beforeMs));
    }
    if (!best || p < best.pValue) best = { index: i, after, pValue: p };
  }
  if (best) best.pValue = Math.min(1, best.pValue * starts.length);
  return best;
}

/** A rate with half an event of prior, so zero observed events do not mean a rate of zero. */
export function smoothedRate(events: number, trials: number, floor: number): number {
  return Math.max(floor, (events + 0.5) / (trials + 1));
}

export function severityFor(score: number, critical: boolean): AnomalyFinding['severity'] {
  if (critical) return 'critical';
  return score >= 0.5 ? 'warning' : 'info';
}

export function formatMs(ms: number): string {
  if (ms >= 60_000) return `${(ms / 60_000).toFixed(1)} min`;
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  return `${Math.round(ms)} ms`;
}

export function clock(ts: number): string {
  return new Date(ts).toISOString().slice(11, 16);
}
