/** What every check receives, and the pieces of judgement they share. */
import { binomialLowerTail, binomialUpperTail, poissonLowerTail } from '../stats/distributions.js';
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
   * For an open anomaly of this check that the window no longer shows: whether the window holds
   * evidence that it is over (true), too little to tell (false: it stays open), or null when the
   * check cannot judge it this way (not finding it again is then taken as its end).
   */
  healed?(ctx: DetectionContext, anomaly: Anomaly): Steps<boolean | null>;
}

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

/** Where the window's evidence that an anomaly is over starts: after it was last seen. */
export function sinceLastSeen(ctx: DetectionContext, anomaly: Anomaly): number {
  return Math.max(ctx.windowStart, (anomaly.end_ts ?? anomaly.start_ts) + 1);
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
 * Over events in time order, each a hit or not (true or 1: an error, a denial, a request slower than the
 * baseline's p95), finds the start of the trailing run whose hit rate is most surprising against
 * `baseRate`: the onset of an ongoing rise. At most `maxStarts` evenly spaced starts are tried,
 * and the p-value is multiplied by their number (Bonferroni).
 */
export function elevatedRun(hits: ArrayLike<boolean | number>, baseRate: number, minTrials = 5, maxStarts = 60): ElevatedRun | null {
  const n = hits.length;
  if (n < minTrials) return null;
  const suffixHits = new Int32Array(n + 1);
  for (let i = n - 1; i >= 0; i--) suffixHits[i] = suffixHits[i + 1]! + (hits[i] ? 1 : 0);
  const last = n - minTrials;
  const step = Math.max(1, Math.ceil((last + 1) / maxStarts));
  let best: ElevatedRun | null = null;
  let tried = 0;
  for (let i = 0; i <= last; i += step) {
    tried++;
    const trials = n - i;
    const k = suffixHits[i]!;
    if (k / trials <= baseRate) continue;
    const p = binomialUpperTail(k, trials, baseRate);
    if (!best || p < best.pValue) best = { index: i, hits: k, trials, pValue: p };
  }
  if (best) best.pValue = Math.min(1, best.pValue * tried);
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
