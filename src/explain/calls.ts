/**
 * Signals from spans and the call graph they form. A span's latency is split into its own time
 * and the time spent in the components it called, and a failure is charged to the component it
 * started from (the deepest failing call, or the component whose denial or error the trace
 * records), so a slow MCP server is not mistaken for the agents that wait on it, and a policy
 * that denies calls is not mistaken for the agent whose threads fail.
 */
import type { ExplainQueries, SpanRow, TraceEventRow } from '../store/explain.js';
import { median } from '../stats/robust.js';
import { rateShiftZ } from '../stats/shift.js';
import type { Grid } from './grid.js';
import { countShift, levelShift, MOVED_Z, round3, strengthOf } from './strength.js';
import type { Explanation, Signal, SignalKind, Symptom } from './types.js';

const MIN_BASELINE_BUCKETS = 5;
const MIN_WINDOW_BUCKETS = 3;
/** Buckets in the run that must be significant for a rate's onset. */
const ONSET_RUN = 3;
/** A callee explains a caller's change when it accounts for at least this share of it. */
const MIN_EXPLAINED_SHARE = 0.3;
/** Requests per bucket moving counts for less than latency or failures: demand is rarely the fault. */
const TRAFFIC_WEIGHT = 0.5;

export interface RootSpan {
  trace_id: string;
  component: string;
  name: string;
  start: number;
  duration_ms: number;
  status: string;
  error_type: string | null;
  /** Where its failure started, when it failed. */
  origin: string | null;
}

export interface ComponentGrids {
  latency: Float64Array;
  errors: Float64Array;
  requests: Float64Array;
}

export interface SpanAnalysis {
  signals: Signal[];
  explanations: Explanation[];
  grids: Map<string, ComponentGrids>;
  /** When each component's failure rate and its span latency (calls included) rose; null when they did not. */
  onsets: Map<string, { errors: number | null; latency: number | null }>;
  /** Root spans (threads) per bucket: the traffic that failure and error counts are judged against. */
  roots: Float64Array;
  /** Window root spans, for choosing affected threads. */
  windowRoots: RootSpan[];
  spanCount: number;
  /** Spans of the ignored component left out. */
  ignoredSpans: number;
  truncated: boolean;
}

interface PerComponent {
  count: Float64Array;
  errors: Float64Array;
  originated: Float64Array;
  selfTimes: number[][];
  durations: number[][];
}

const keyOf = (trace: string, span: string) => `${trace}\u0000${span}`;

/**
 * `ignored`: a component whose spans and trace events are left out (Kiwi's own, unless the symptom
 * is on Kiwi): its calls then neither are candidates nor count as the system's threads.
 */
export function spanSignals(queries: ExplainQueries, symptom: Symptom, grid: Grid, maxSpans: number, ignored: string | null = null): SpanAnalysis {
  const baselineSpans = queries.spans(symptom.baseline_start, symptom.baseline_end, maxSpans);
  const windowSpans = queries.spans(symptom.start, symptom.end, maxSpans);
  const truncated = baselineSpans.length >= maxSpans || windowSpans.length >= maxSpans;
  const all = [...baselineSpans, ...windowSpans];
  const spans = ignored === null ? all : all.filter((s) => s.component !== ignored);
  const traceEvents = new Map<string, TraceEventRow[]>();
  for (const e of [
    ...queries.traceEvents(symptom.baseline_start, symptom.baseline_end, maxSpans),
    ...queries.traceEvents(symptom.start, symptom.end, maxSpans),
  ]) {
    if (e.component === ignored) continue;
    const list = traceEvents.get(e.trace_id);
    if (list) list.push(e);
    else traceEvents.set(e.trace_id, [e]);
  }

  const children = new Map<string, SpanRow[]>();
  for (const s of spans) {
    if (s.parent_id === null) continue;
    const key = keyOf(s.trace_id, s.parent_id);
    const list = children.get(key);
    if (list) list.push(s);
    else children.set(key, [s]);
  }

  const originCache = new Map<SpanRow, string>();
  const originOf = (span: SpanRow): string => {
    const cached = originCache.get(span);
    if (cached !== undefined) return cached;
    let origin = span.component;
    // a malformed trace may loop (a span its own ancestor): a span met again is its own origin
    originCache.set(span, origin);
    const failedChild = (children.get(keyOf(span.trace_id, span.span_id)) ?? [])
      .filter((c) => c.status === 'error')
      .sort((a, b) => a.start - b.start)[0];
    if (failedChild) origin = originOf(failedChild);
    else {
      const blamed = (traceEvents.get(span.trace_id) ?? []).find(
        (e) => e.component !== span.component && e.ts >= span.start - 1000 && e.ts <= span.start + span.duration_ms + 1000,
      );
      if (blamed) origin = blamed.component;
    }
    originCache.set(span, origin);
    return origin;
  };

  const per = new Map<string, PerComponent>();
  const stats = (component: string): PerComponent => {
    let p = per.get(component);
    if (!p) {
      p = {
        count: new Float64Array(grid.size),
        errors: new Float64Array(grid.size),
        originated: new Float64Array(grid.size),
        selfTimes: Array.from({ length: grid.size }, () => []),
        durations: Array.from({ length: grid.size }, () => []),
      };
      per.set(component, p);
    }
    return p;
  };
  const roots = new Float64Array(grid.size);
  const windowRoots: RootSpan[] = [];
  // caller component -> callee component -> [baseline sum, window sum] of time spent in the callee
  const calleeTime = new Map<string, Map<string, [number, number]>>();
  // caller component -> [baseline spans, window spans, baseline duration sum, window duration sum]
  const callerTotals = new Map<string, [number, number, number, number]>();
  // caller component -> origin component -> window failures of the caller that started there
  const callerFailures = new Map<string, Map<string, number>>();

  for (const s of spans) {
    const b = grid.index(s.start);
    if (b < 0) continue;
    const inWindow = grid.isWindow(b);
    const p = stats(s.component);
    p.count[b]!++;
    p.durations[b]!.push(s.duration_ms);
    const kids = children.get(keyOf(s.trace_id, s.span_id)) ?? [];
    let childTotal = 0;
    for (const k of kids) childTotal += k.duration_ms;
    p.selfTimes[b]!.push(kids.length ? Math.max(0, s.duration_ms - childTotal) : s.duration_ms);
    if (s.parent_id === null) roots[b]!++;

    if (kids.length) {
      const totals = callerTotals.get(s.component) ?? [0, 0, 0, 0];
      totals[inWindow ? 1 : 0]++;
      totals[inWindow ? 3 : 2] += s.duration_ms;
      callerTotals.set(s.component, totals);
      const byCallee = calleeTime.get(s.component) ?? new Map<string, [number, number]>();
      for (const k of kids) {
        if (k.component === s.component) continue;
        const sums = byCallee.get(k.component) ?? [0, 0];
        sums[inWindow ? 1 : 0] += k.duration_ms;
        byCallee.set(k.component, sums);
      }
      calleeTime.set(s.component, byCallee);
    }

    let origin: string | null = null;
    if (s.status === 'error') {
      p.errors[b]!++;
      origin = originOf(s);
      const failedChild = kids.some((k) => k.status === 'error');
      // one failure is charged once: at the deepest failing span of its chain
      if (!failedChild) stats(origin).originated[b]!++;
      if (inWindow && origin !== s.component) {
        const byOrigin = callerFailures.get(s.component) ?? new Map<string, number>();
        byOrigin.set(origin, (byOrigin.get(origin) ?? 0) + 1);
        callerFailures.set(s.component, byOrigin);
      }
    }
    if (inWindow && s.parent_id === null) {
      windowRoots.push({
        trace_id: s.trace_id,
        component: s.component,
        name: s.name,
        start: s.start,
        duration_ms: s.duration_ms,
        status: s.status,
        error_type: s.error_type,
        origin,
      });
    }
  }

  const signals: Signal[] = [];
  const grids = new Map<string, ComponentGrids>();
  const latencyShifts = new Map<string, number>();
  const errorShifts = new Map<string, number>();
  const onsets = new Map<string, { errors: number | null; latency: number | null }>();
  const rootTotals = totalsOf(grid, roots);

  for (const [component, p] of per) {
    const latencyGrid = grid.empty();
    const selfGrid = grid.empty();
    const errorGrid = grid.empty();
    for (let b = 0; b < grid.size; b++) {
      if (p.durations[b]!.length) latencyGrid[b] = median(p.durations[b]!);
      if (p.selfTimes[b]!.length) selfGrid[b] = median(p.selfTimes[b]!);
      if (p.count[b]! > 0) errorGrid[b] = p.errors[b]! / p.count[b]!;
    }
    grids.set(component, { latency: latencyGrid, errors: errorGrid, requests: p.count.slice() });

    const self = gridShift(grid, selfGrid);
    if (self) {
      signals.push({
        component,
        kind: 'latency',
        name: 'latency (own time)',
        strength: self.z > 0 ? strengthOf(self.z) : 0,
        z: self.z,
        direction: self.z >= 0 ? 'up' : 'down',
        baseline: self.baseline,
        current: self.current,
        unit: 'ms',
        onset: self.onset,
        detail:
          `median own time per ${Math.round(grid.bucketMs / 1000)} s bucket (excluding calls to other components) ` +
          `${self.z >= 0 ? 'rose' : 'fell'} from ${round3(self.baseline)} ms to ${round3(self.current)} ms (z ${round3(self.z)})`,
        grid: selfGrid,
      });
    }
    const total = gridShift(grid, latencyGrid);
    if (total) latencyShifts.set(component, total.z);

    const spansTotals = totalsOf(grid, p.count);
    const errorTotals = totalsOf(grid, p.errors);
    const errorZ = rateShiftZ(errorTotals.window, spansTotals.window, errorTotals.baseline, spansTotals.baseline);
    errorShifts.set(component, errorZ);
    onsets.set(component, {
      errors: errorZ >= MOVED_Z ? rateOnset(grid, p.errors, p.count, errorTotals.baseline, spansTotals.baseline) : null,
      latency: total && total.z >= MOVED_Z ? total.onset : null,
    });

    const traffic = gridShift(grid, p.count, 'count');
    if (traffic && Math.abs(traffic.z) >= MOVED_Z) {
      signals.push({
        component,
        kind: 'metric',
        name: 'requests',
        strength: TRAFFIC_WEIGHT * strengthOf(traffic.z),
        z: traffic.z,
        direction: traffic.z >= 0 ? 'up' : 'down',
        baseline: traffic.baseline,
        current: traffic.current,
        unit: null,
        onset: traffic.onset,
        detail: `spans per bucket ${traffic.z >= 0 ? 'rose' : 'fell'} from ${round3(traffic.baseline)} to ${round3(traffic.current)} (z ${round3(traffic.z)})`,
        grid: p.count.slice(),
      });
    }
  }

  // failures charged to where they started, judged against the traffic (threads) of the period
  const trials = rootTotals.window > 0 && rootTotals.baseline > 0 ? roots : null;
  for (const [component, p] of per) {
    const originated = totalsOf(grid, p.originated);
    if (originated.window === 0 && originated.baseline === 0) continue;
    const trialGrid = trials ?? per.get(component)!.count;
    signals.push(
      rateSignal(grid, {
        component,
        kind: 'errors',
        name: 'failures started here',
        hits: p.originated,
        trials: trialGrid,
        detail: (r) =>
          `${r.hits.window} failed calls or threads started here in the window (${round3(r.windowRate * 100)}% of ` +
          `${trials ? 'threads' : 'its spans'}) against ${r.hits.baseline} in the baseline (${round3(r.baselineRate * 100)}%)`,
      }),
    );
  }

  const explanations: Explanation[] = [];
  for (const [caller, totals] of callerTotals) {
    const [baseSpans, windowSpans, baseSum, windowSum] = totals;
    const callerZ = latencyShifts.get(caller) ?? 0;
    if (baseSpans === 0 || windowSpans === 0 || callerZ < MOVED_Z) continue;
    const rise = windowSum / windowSpans - baseSum / baseSpans;
    if (!(rise > 0)) continue;
    for (const [callee, [calleeBase, calleeWindow]] of calleeTime.get(caller) ?? []) {
      const share = Math.min(1, (calleeWindow / windowSpans - calleeBase / baseSpans) / rise);
      if (share < MIN_EXPLAINED_SHARE) continue;
      explanations.push({
        caller,
        callee,
        what: 'latency',
        share,
        caller_z: callerZ,
        detail: `${round3(share * 100)}% of the rise in ${caller}'s mean span duration (+${round3(rise)} ms) is time spent in ${callee}`,
      });
    }
  }
  for (const [caller, byOrigin] of callerFailures) {
    const callerZ = errorShifts.get(caller) ?? 0;
    if (callerZ < MOVED_Z) continue;
    const windowErrors = totalsOf(grid, per.get(caller)!.errors).window;
    for (const [origin, count] of byOrigin) {
      const share = count / windowErrors;
      if (share < MIN_EXPLAINED_SHARE) continue;
      explanations.push({
        caller,
        callee: origin,
        what: 'errors',
        share,
        caller_z: callerZ,
        detail: `${count} of ${caller}'s ${windowErrors} failed spans in the window started at ${origin}`,
      });
    }
  }

  return { signals, explanations, grids, onsets, roots, windowRoots, spanCount: spans.length, ignoredSpans: all.length - spans.length, truncated };
}

interface RateTotals {
  hits: { baseline: number; window: number };
  trials: { baseline: number; window: number };
  baselineRate: number;
  windowRate: number;
}

/**
 * A signal about the share of `hits` among `trials` per bucket (failures among threads, denials
 * among decisions), the window against the baseline; its grid is the share per bucket.
 */
export function rateSignal(
  grid: Grid,
  spec: { component: string; kind: SignalKind; name: string; hits: Float64Array; trials: Float64Array; detail: (totals: RateTotals) => string },
): Signal {
  const hits = totalsOf(grid, spec.hits);
  const trials = totalsOf(grid, spec.trials);
  const share = grid.empty();
  for (let b = 0; b < grid.size; b++) if (spec.trials[b]! > 0) share[b] = spec.hits[b]! / spec.trials[b]!;
  const z = rateShiftZ(hits.window, trials.window, hits.baseline, trials.baseline);
  const totals: RateTotals = {
    hits,
    trials,
    baselineRate: trials.baseline ? hits.baseline / trials.baseline : 0,
    windowRate: trials.window ? hits.window / trials.window : 0,
  };
  return {
    component: spec.component,
    kind: spec.kind,
    name: spec.name,
    strength: z > 0 ? strengthOf(z) : 0,
    z,
    direction: z >= 0 ? 'up' : 'down',
    baseline: totals.baselineRate,
    current: totals.windowRate,
    unit: '1', // a share of 0..1 (UCUM's % would be 0..100)
    onset: rateOnset(grid, spec.hits, spec.trials, hits.baseline, trials.baseline),
    detail: spec.detail(totals),
    grid: share,
  };
}

export function totalsOf(grid: Grid, values: Float64Array): { baseline: number; window: number } {
  let baseline = 0;
  let window = 0;
  for (let b = 0; b < values.length; b++) {
    const v = values[b]!;
    if (Number.isNaN(v)) continue;
    if (grid.isWindow(b)) window += v;
    else baseline += v;
  }
  return { baseline, window };
}

/**
 * A grid array's window judged against its baseline buckets; null when either has too few. A
 * `level` (a latency per bucket) skips empty buckets; a `count` per bucket counts them as zero and
 * gets the Poisson floor on its scale (see `countShift`).
 */
export function gridShift(
  grid: Grid,
  values: Float64Array,
  kind: 'level' | 'count' = 'level',
): { z: number; baseline: number; current: number; onset: number | null } | null {
  const parts = kind === 'level' ? grid.split(values) : splitAll(grid, values);
  if (parts.baseline.length < MIN_BASELINE_BUCKETS || parts.window.length < MIN_WINDOW_BUCKETS) return null;
  const shift = kind === 'level' ? levelShift(parts.baseline, parts.window) : countShift(parts.baseline, parts.window);
  return {
    z: shift.z,
    baseline: shift.baseline.median,
    current: shift.baseline.median + shift.z * shift.baseline.sigma,
    onset: shift.onsetIndex >= 0 ? grid.startOf(parts.windowIndex[shift.onsetIndex]!) : null,
  };
}

function splitAll(grid: Grid, values: Float64Array): { baseline: number[]; window: number[]; windowIndex: number[] } {
  const zeroFilled = values.map((v) => (Number.isNaN(v) ? 0 : v));
  return grid.split(zeroFilled);
}

/**
 * First window bucket from which `ONSET_RUN` buckets of events, taken together, are a
 * significant rise over the baseline rate.
 */
export function rateOnset(grid: Grid, events: Float64Array, trials: Float64Array, baselineEvents: number, baselineTrials: number): number | null {
  for (let b = grid.baselineBuckets; b < grid.size; b++) {
    if (!(events[b]! > 0)) continue;
    let e = 0;
    let t = 0;
    for (let j = b; j < Math.min(grid.size, b + ONSET_RUN); j++) {
      e += events[j]!;
      t += trials[j]!;
    }
    if (rateShiftZ(e, Math.max(t, e), baselineEvents, baselineTrials) >= MOVED_Z) return grid.startOf(b);
  }
  return null;
}
