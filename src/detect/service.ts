/**
 * detectAnomalies: runs the checks over a window, learns from false-positive marks, records what
 * it finds (an ongoing anomaly is updated, not duplicated; a closed one found again stays closed
 * unless its signal is abnormal since the closing), and closes the open anomalies a check judged
 * again and no longer sees.
 *
 * The work is one generator (`detection`) that yields between units of work: a check, a
 * component, a series, a slice of a long read. `detectAnomalies` runs it straight through;
 * `detectAnomaliesAsync` (what the MCP tool calls) lets the event loop run whenever a slice of
 * work has held it for SLICE_MS, so a week-long lookback does not stall other sessions. Both
 * compute the same thing in the same order.
 */
import { mcpServers, remedyForAnomaly } from '../remedies.js';
import { iso } from '../time.js';
import { readSetting } from '../settings.js';
import { AnomalyStore, closedAt, RECURRENCE_OF, type Anomaly } from '../store/anomalies.js';
import { DetectionReads } from '../store/detect.js';
import type { Store } from '../store/store.js';
import { latencySpike, errorSpike } from './checks/requests.js';
import { connectionInstability, permissionSpike } from './checks/events.js';
import { genericSeries, memoryLeak } from './checks/metrics.js';
import {
  healedBy,
  minScoreFor,
  recurredBy,
  ANOMALY_TYPES,
  type AnomalyType,
  type Check,
  type CheckFinding,
  type DetectionContext,
  type NotJudged,
  type Steps,
} from './context.js';

export type { NotJudged } from './context.js';

export const CHECKS: readonly Check[] = [latencySpike, errorSpike, permissionSpike, memoryLeak, connectionInstability, genericSeries];

/** How much larger than a false positive a finding on the same fingerprint must be to be reported. */
export const FALSE_POSITIVE_MARGIN = 1.5;
const HOUR = 3_600_000;

export interface DetectOptions {
  /** End of the window; default now. */
  now?: number;
  /** Default 60 minutes. */
  lookbackMs?: number;
  /** How far before the window the baseline reaches; default 6 hours. */
  baselineMs?: number;
  component?: string;
  types?: AnomalyType[];
  /** 0..1; default the `detect.sensitivity` setting (0.5). */
  sensitivity?: number;
  /** Who ran it, for the audit trail of automatic resolutions. */
  actor?: string;
}

export interface Suppressed {
  fingerprint: string;
  type: string;
  component: string;
  magnitude: number;
  /** The magnitude it needed: FALSE_POSITIVE_MARGIN times the largest one marked false positive. */
  required: number;
  false_positive: string;
}

export interface DetectionResult {
  window: { from: number; to: number };
  baseline_from: number;
  sensitivity: number;
  /** Anomalies found in this run, new or updated, most severe first. */
  anomalies: (Anomaly & { new: boolean })[];
  /** Open anomalies judged again and no longer seen: closed as resolved. */
  resolved: Anomaly[];
  /**
   * Closed anomalies (resolved, or marked false positive) that a finding of this run holds again
   * (same signal, overlapping their span), with their signal not abnormal since they were closed:
   * the same incident, left closed and not recorded again. A finding abnormal since the closing is a
   * recurrence: a new anomaly in `anomalies`, whose `evidence.recurrence_of` names the closed one.
   */
  already_closed: Anomaly[];
  /**
   * Open anomalies not seen in this window, which holds too little evidence that they are over
   * (a short window, few requests since), or whose signal could not be judged at all: left open,
   * neither found nor resolved.
   */
  unconfirmed: Anomaly[];
  /**
   * Signals with data in the window that a check could not judge over all or part of it (no
   * baseline of their own before it, too thin a baseline, too little memory since a restart):
   * nothing found there is no all-clear.
   */
  not_judged: NotJudged[];
  /** Findings held back because a person marked a similar one a false positive. */
  suppressed: Suppressed[];
  checks: { name: string; examined: number; found: number; ms: number }[];
}

const SEVERITY_ORDER = { critical: 0, warning: 1, info: 2 } as const;

export function isAnomalyType(type: string): type is AnomalyType {
  return (ANOMALY_TYPES as readonly string[]).includes(type);
}

/** Runs detection to the end without letting anything else run: for the CLI, benches and tests. */
export function detectAnomalies(store: Store, options: DetectOptions = {}): DetectionResult {
  const steps = detection(store, options);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

/** How long detection may hold the event loop before it lets other work run. */
export const SLICE_MS = 10;
/** The detection running or waiting on each store: one at a time, in the order they were asked. */
const queues = new WeakMap<Store, Promise<unknown>>();

/**
 * detectAnomalies that lets the event loop run at least between checks, and between smaller
 * units of work whenever one slice has run for SLICE_MS. Detections on one store run one after
 * another, in the order they were asked, as they would if each held the loop to the end.
 */
export function detectAnomaliesAsync(store: Store, options: DetectOptions = {}): Promise<DetectionResult> {
  const previous = queues.get(store) ?? Promise.resolve();
  const run = previous.then(() => drive(detection(store, options)));
  // the next one waits for this one to end, failed or not
  const tail = run.catch(() => undefined);
  queues.set(store, tail);
  void tail.then(() => {
    if (queues.get(store) === tail) queues.delete(store);
  });
  return run;
}

/** A step that yields this must let other work run (the end of a check); any other, when the slice is used up. */
const PAUSE = 'pause';

async function drive<T>(steps: Generator<void | typeof PAUSE, T, void>): Promise<T> {
  let sliceStart = performance.now();
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
    if (step.value === PAUSE || performance.now() - sliceStart >= SLICE_MS) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      sliceStart = performance.now();
    }
  }
}

function* detection(store: Store, options: DetectOptions): Generator<void | typeof PAUSE, DetectionResult, void> {
  // Otherwise a misspelt component is judged and found healthy: an all-clear for nothing.
  if (options.component !== undefined && !store.hasComponent(options.component)) {
    throw new Error(`component: no telemetry from "${options.component}"`);
  }
  const now = options.now ?? Date.now();
  const lookbackMs = options.lookbackMs ?? HOUR;
  const sensitivity = options.sensitivity ?? readSetting(store, 'detect.sensitivity');
  const windowStart = now - lookbackMs;
  const ctx: DetectionContext = {
    store,
    reads: new DetectionReads(store.db),
    now,
    windowStart,
    baselineStart: windowStart - (options.baselineMs ?? 6 * HOUR),
    minScore: minScoreFor(sensitivity),
    ...(options.component !== undefined ? { component: options.component } : {}),
    notJudged: [],
  };
  const anomalies = new AnomalyStore(store);
  const wanted = options.types?.length ? new Set<string>(options.types) : null;
  const result: DetectionResult = {
    window: { from: windowStart, to: now },
    baseline_from: ctx.baselineStart,
    sensitivity,
    anomalies: [],
    resolved: [],
    already_closed: [],
    unconfirmed: [],
    not_judged: ctx.notJudged,
    suppressed: [],
    checks: [],
  };
  const examined = new Set<string>();
  const seen = new Set<string>();
  const isMcpServer = mcpServers(store);

  for (const check of CHECKS) {
    if (wanted && !check.types.some((t) => wanted.has(t))) continue;
    yield PAUSE;
    // Its own time, not the time others ran while it let them.
    let ms = 0;
    let started = performance.now();
    const steps = check.run(ctx);
    let step = steps.next();
    while (!step.done) {
      ms += performance.now() - started;
      yield;
      started = performance.now();
      step = steps.next();
    }
    ms += performance.now() - started;
    const output = step.value;
    output.examined.forEach((f) => examined.add(f));
    let found = 0;
    for (const finding of output.findings) {
      if (wanted && !wanted.has(finding.type)) continue;
      seen.add(finding.fingerprint);
      const held = heldBack(anomalies, finding);
      if (held) {
        result.suppressed.push(held);
        continue;
      }
      // With no active anomaly on the signal, a closed one the finding overlaps is that incident seen again.
      const closed = anomalies.hasActive(finding.fingerprint)
        ? null
        : anomalies.closedOverlapping(finding.fingerprint, finding.start_ts, finding.end_ts ?? finding.start_ts);
      if (closed && !(yield* recurred(check, ctx, closed))) {
        result.already_closed.push(closed);
        continue;
      }
      // (judging it may have let someone reopen an anomaly on the signal meanwhile: that one is updated, unlinked)
      const recurrenceOf = closed && !anomalies.hasActive(finding.fingerprint) ? closed : null;
      const { magnitude, ...rest } = finding;
      const suggested = remedyForAnomaly({ id: null, type: rest.type, component: rest.component }, isMcpServer)?.directive ?? null;
      const evidence = {
        ...rest.evidence,
        magnitude,
        ...(recurrenceOf ? { [RECURRENCE_OF]: { id: recurrenceOf.id, status: recurrenceOf.status, closed_at: iso(closedAt(recurrenceOf)) } } : {}),
      };
      const { anomaly, created } = anomalies.record({ ...rest, evidence, suggested_action: suggested }, now);
      result.anomalies.push({ ...anomaly, new: created });
      found++;
    }
    result.checks.push({ name: check.name, examined: output.examined.length, found, ms: Math.round(ms) });
  }

  // What a check judged again and did not find any more has healed, when the data since it was last
  // seen says so (Check.since, healedBy); a window that ends before an anomaly was last seen (a look
  // at the past) says nothing about it.
  yield PAUSE;
  const open = anomalies.list({ statuses: ['open', 'acknowledged'], ...(options.component ? { component: options.component } : {}) }, 10_000);
  const judged: { anomaly: Anomaly; healed: boolean | null }[] = [];
  // A signal no check could judge in any of the window says nothing about its open anomaly either.
  const unjudged = new Set(ctx.notJudged.filter((n) => n.to >= now).map((n) => n.fingerprint));
  for (const anomaly of open.anomalies) {
    if (seen.has(anomaly.fingerprint)) continue;
    if (wanted && !wanted.has(anomaly.type)) continue;
    const lastSeen = anomaly.end_ts ?? anomaly.start_ts;
    if (lastSeen > now) continue;
    const check = CHECKS.find((c) => c.types.includes(anomaly.type as AnomalyType));
    if (!examined.has(anomaly.fingerprint)) {
      if (unjudged.has(anomaly.fingerprint)) {
        judged.push({ anomaly, healed: false });
        continue;
      }
      // a sparse signal that fell silent (Check.judgesSilence) is judged all the same
      if (!check?.judgesSilence?.(anomaly)) continue;
    }
    const since = check?.since ? yield* check.since(ctx, anomaly, lastSeen) : null;
    judged.push({ anomaly, healed: since === null ? null : healedBy(since) });
    yield;
  }
  // Closed in one go, after all the judging: an anomaly someone changed while the judging let
  // other work run (acknowledged, marked a false positive) is theirs, and left as it is now.
  for (const { anomaly, healed } of judged) {
    const current = anomalies.get(anomaly.id);
    if (!current || current.status !== anomaly.status || current.updated_at !== anomaly.updated_at) continue;
    if (healed === false) {
      result.unconfirmed.push(anomaly);
      continue;
    }
    result.resolved.push(
      anomalies.setStatus(anomaly.id, 'resolved', options.actor ?? 'kiwi:detect', `no longer observed in the window ending ${new Date(now).toISOString()}`, {}, now),
    );
  }

  result.anomalies.sort((a, b) => SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity] || b.score - a.score);
  return result;
}

/**
 * Whether a closed anomaly's signal is abnormal again since it was closed (recurredBy): judged over
 * the window after the closing, so a window that ends before it holds nothing that could say so.
 */
function* recurred(check: Check, ctx: DetectionContext, closed: Anomaly): Steps<boolean> {
  const after = closedAt(closed);
  if (!check.since || after + 1 >= ctx.now) return false;
  const since = yield* check.since(ctx, closed, after);
  return since !== null && recurredBy(since);
}

/** A finding no larger than FALSE_POSITIVE_MARGIN times one a person marked false positive is held back. */
function heldBack(anomalies: AnomalyStore, finding: CheckFinding): Suppressed | null {
  let largest: Anomaly | null = null;
  let largestMagnitude = 0;
  for (const fp of anomalies.falsePositives(finding.fingerprint)) {
    const magnitude = Number(fp.evidence.magnitude ?? 0);
    if (magnitude > largestMagnitude) {
      largest = fp;
      largestMagnitude = magnitude;
    }
  }
  if (!largest) return null;
  const required = largestMagnitude * FALSE_POSITIVE_MARGIN;
  if (finding.magnitude >= required) return null;
  return {
    fingerprint: finding.fingerprint,
    type: finding.type,
    component: finding.component,
    magnitude: finding.magnitude,
    required,
    false_positive: largest.id,
  };
}

const NOT_JUDGED_WHY: Record<NotJudged['reason'], string> = {
  no_baseline: 'no baseline of their own before it: their data begins later',
  thin_baseline: 'too little data in their baseline',
  short_segment: 'too little memory to tell a trend',
};
/**
 * What a detection did besides finding anomalies, a line each: what it resolved, what it left open
 * or closed, what it could not judge, what it held back.
 */
export function describeOutcomes(result: DetectionResult): string[] {
  return [
    ...result.resolved.map((a) => `resolved: ${a.type} ${a.component} [${a.id}]`),
    ...result.unconfirmed.map((a) => `still open, too little data since to tell it is over: ${a.type} ${a.component} [${a.id}]`),
    ...result.already_closed.map((a) => `seen again, left ${a.status} (nothing abnormal since it was closed): ${a.type} ${a.component} [${a.id}]`),
    ...describeNotJudged(result.not_judged),
    ...result.suppressed.map((s) => `held back: ${s.type} ${s.component} (like false positive ${s.false_positive})`),
  ];
}

/** Signals named on one line of describeNotJudged; the rest are counted. */
const NOT_JUDGED_NAMED = 8;

/**
 * What a detection could not judge, in words: one line per reason and stretch of time (to the
 * minute), naming the signals. An agent reading "0 anomalies" must also read what was not looked at.
 */
export function describeNotJudged(entries: readonly NotJudged[]): string[] {
  const minute = (ms: number) => `${iso(ms).slice(0, 16)}Z`;
  const groups = new Map<string, { entry: NotJudged; names: string[] }>();
  for (const n of entries) {
    const key = `${n.reason}|${minute(n.from)}|${minute(n.to)}`;
    const name = n.series_id === null ? `${n.check} ${n.component}` : `${n.check} ${n.signal}`;
    const group = groups.get(key);
    if (group) group.names.push(name);
    else groups.set(key, { entry: n, names: [name] });
  }
  return [...groups.values()].map(({ entry, names }) => {
    const named = names.slice(0, NOT_JUDGED_NAMED).join(', ');
    const more = names.length > NOT_JUDGED_NAMED ? ` and ${names.length - NOT_JUDGED_NAMED} more` : '';
    const detail = names.length === 1 ? `: ${entry.detail}` : '';
    return `not judged ${minute(entry.from)} .. ${minute(entry.to)} (${NOT_JUDGED_WHY[entry.reason]}${detail}): ${named}${more}`;
  });
}
