/**
 * From signals to ranked candidates. A component's strength is its strongest signal, raised a
 * little by other kinds of evidence that agree (a latency rise and a new error signature), by
 * callers whose change it explains (call graph) on the way to the symptom's component, and by a
 * change made to it just before the symptom's onset. A component whose move started clearly
 * after another's, or after the symptom's, is more likely an effect; a change made after the
 * symptom's onset is not its cause.
 */
import { pearson } from '../stats/shift.js';
import { iso } from '../time.js';
import type { ChangeEvent } from './events.js';
import type { Grid } from './grid.js';
import { MOVED_Z, round3, strengthOf } from './strength.js';
import type { Candidate, Explanation, Signal, SignalKind, Symptom } from './types.js';

/** Weight of each other kind of evidence that agrees with the strongest one. */
const CORROBORATION = 0.3;
const MAX_CORROBORATING_KINDS = 2;
/** Weight of a caller's change that this component explains. */
const EXPLAINS_WEIGHT = 0.5;
/** A change right at the onset raises a moved component by half, and alone is worth a just-moved signal. */
const CHANGE_GAIN = 0.5;
const CHANGE_ALONE = MOVED_Z;
/** A change this long before the symptom's onset weighs half as much as one right at it. */
const CHANGE_HALF_LIFE_MS = 20 * 60_000;
/** Moving this many buckets after the first mover marks a likely effect. */
const LATE_BUCKETS = 2;
const LATE_FACTOR = 0.8;
/**
 * When the symptom names its component, another component that started moving clearly after the
 * symptom's onset is an effect, or unrelated. (With a start time alone, every component is a
 * candidate for the symptom, and a slow trend's detected onset lags: the first-mover rule applies.)
 */
const AFTER_SYMPTOM_FACTOR = 0.5;
/** Strength at which the score reaches 1 − 1/e. */
const SCORE_SCALE = 8;
const SIGNALS_SHOWN = 5;
/**
 * Weight of a signal that cannot explain the symptom (a latency move elsewhere, for an error
 * spike; a traced component the symptom's trace does not lead to), unless it is on the symptom's
 * own component. Several incidents can overlap: the largest move in the system is not the cause of
 * every symptom.
 */
const UNRELATED_KIND = 0.25;
const RELATED_KINDS: Record<string, readonly SignalKind[]> = {
  latency: ['latency', 'metric', 'connection', 'change'],
  errors: ['errors', 'signature', 'permission', 'connection', 'change'],
  denials: ['permission', 'change'],
  disconnects: ['connection', 'errors', 'change'],
  requests: ['metric', 'latency', 'errors', 'change'],
};

/** The signal kinds that can explain the symptom; every kind when the symptom names no metric. */
function relatedKinds(symptom: Symptom): readonly SignalKind[] | null {
  if (symptom.metric === null) return null;
  return RELATED_KINDS[symptom.metric] ?? ['metric', 'change'];
}

/**
 * When the symptom began, as its own evidence shows: the earliest of when its own series rose
 * (`measured`: the component's failure rate or latency, for those symptoms) and the onsets of the
 * moves of the symptom's component that can explain its kind; the given start when it names no
 * component or none of these moved. A start given by a detector or read off a chart can be early:
 * causes come before the onset, and a change made after it is not one.
 */
export function symptomOnset(symptom: Symptom, signals: readonly Signal[], measured: number | null = null): number {
  if (symptom.component === null) return symptom.start;
  const related = relatedKinds(symptom);
  let onset = measured ?? Infinity;
  for (const s of signals) {
    if (s.component !== symptom.component || s.onset === null || s.strength < MOVED_Z) continue;
    if (related !== null && !related.includes(s.kind)) continue;
    onset = Math.min(onset, s.onset);
  }
  return Number.isFinite(onset) ? Math.max(symptom.start, onset) : symptom.start;
}

/**
 * How much a change counts as a cause of a symptom that began at `onset`: 1 right at it, halving
 * every 20 minutes before it. After it, only the grid's timing resolution: a change made x after
 * an onset known to a bucket precedes it with probability 1 − x/bucket, and none later does.
 */
function changeWeight(ts: number, onset: number, bucketMs: number): number {
  if (ts <= onset) return Math.pow(0.5, (onset - ts) / CHANGE_HALF_LIFE_MS);
  return Math.max(0, 1 - (ts - onset) / bucketMs);
}

/**
 * The call-graph explanations that bear on the symptom: with a named component, those whose
 * caller is that component or (transitively) a callee that explains its change. A component that
 * explains another component's errors is not thereby a cause of this one's. Without a component,
 * every explanation.
 */
function explanationsReaching(symptom: Symptom, explanations: readonly Explanation[]): Set<Explanation> {
  if (symptom.component === null) return new Set(explanations);
  const reached = new Set([symptom.component]);
  const kept = new Set<Explanation>();
  for (let grew = true; grew; ) {
    grew = false;
    for (const e of explanations) {
      if (kept.has(e) || !reached.has(e.caller)) continue;
      kept.add(e);
      reached.add(e.callee);
      grew = true;
    }
  }
  return kept;
}

const CHANGES_SHOWN = 5;

export interface RankInput {
  symptom: Symptom;
  grid: Grid;
  signals: Signal[];
  explanations: Explanation[];
  changes: ChangeEvent[];
  symptomGrid: Float64Array | null;
  /** Components in the call graph: with spans, or where failures of spans started. */
  traced: ReadonlySet<string>;
  /**
   * When the symptom's own failure rate or latency rose, for such a symptom of a component in
   * the call graph: a change the call graph traces to where it started. Null otherwise.
   */
  measuredOnset: number | null;
  /** When the symptom began (`symptomOnset`). */
  onset: number;
}

export interface RankedCandidate extends Candidate {
  strength: number;
}

interface Draft {
  component: string;
  signals: Signal[];
  primary: Signal | null;
  strength: number;
  changes: ChangeEvent[];
  explains: Explanation[];
  /** The explanations that bear on the symptom (see explanationsReaching). */
  counted: Explanation[];
  explainedBy: Explanation[];
}

export function rankCandidates(input: RankInput): RankedCandidate[] {
  const { symptom, grid } = input;
  const drafts = new Map<string, Draft>();
  const draft = (component: string): Draft => {
    let d = drafts.get(component);
    if (!d) {
      d = { component, signals: [], primary: null, strength: 0, changes: [], explains: [], counted: [], explainedBy: [] };
      drafts.set(component, d);
    }
    return d;
  };
  const related = relatedKinds(symptom);
  const reaching = explanationsReaching(symptom, input.explanations);
  const reached = new Set([symptom.component, ...[...reaching].map((e) => e.callee)]);
  // When the symptom's failures or latency rose, the call graph shows where that came from (where
  // each failure started, the time spent in each callee): a component in the graph that it does not
  // lead to did not cause it, however much it moved. Components outside the graph (metrics only)
  // keep their weight: the graph says nothing about them.
  const traced = input.measuredOnset !== null;
  const unrelated = new Set<Signal>();
  for (const s of input.signals) {
    if (!(s.strength > 0)) continue;
    const kindRelated = related === null || related.includes(s.kind);
    const cutOff = traced && input.traced.has(s.component) && !reached.has(s.component);
    const relevant = s.component === symptom.component || (kindRelated && !cutOff);
    const weighted = relevant ? s : { ...s, strength: s.strength * UNRELATED_KIND };
    if (!relevant) unrelated.add(weighted);
    draft(s.component).signals.push(weighted);
  }
  for (const c of input.changes) draft(c.component).changes.push(c);
  for (const e of input.explanations) {
    draft(e.callee).explains.push(e);
    if (reaching.has(e)) draft(e.callee).counted.push(e);
    draft(e.caller).explainedBy.push(e);
  }
  const { onset } = input;

  for (const d of drafts.values()) {
    d.signals.sort((a, b) => b.strength - a.strength);
    d.primary = d.signals[0] ?? null;
    let strength = d.primary?.strength ?? 0;
    const kindsSeen = new Set(d.primary ? [d.primary.kind] : []);
    let corroborating = 0;
    for (const s of d.signals) {
      if (corroborating >= MAX_CORROBORATING_KINDS) break;
      if (kindsSeen.has(s.kind) || s.strength < MOVED_Z) continue;
      kindsSeen.add(s.kind);
      strength += CORROBORATION * s.strength;
      corroborating++;
    }
    for (const e of d.counted) strength += EXPLAINS_WEIGHT * e.share * strengthOf(e.caller_z);
    d.strength = strength;
  }

  // effects come after causes: find the first mover among those whose move could explain the symptom
  const onsets = [...drafts.values()]
    .filter((d) => d.primary?.onset != null && !unrelated.has(d.primary) && d.strength >= MOVED_Z)
    .map((d) => d.primary!.onset!);
  const firstOnset = onsets.length ? Math.min(...onsets) : null;

  for (const d of drafts.values()) {
    if (firstOnset !== null && d.primary?.onset != null && d.primary.onset > firstOnset + LATE_BUCKETS * grid.bucketMs) {
      d.strength *= LATE_FACTOR;
    }
    const afterSymptom = d.primary?.onset != null && d.primary.onset > onset + LATE_BUCKETS * grid.bucketMs;
    if (symptom.component !== null && d.component !== symptom.component && afterSymptom) {
      d.strength *= AFTER_SYMPTOM_FACTOR;
    }
    const weight = Math.max(0, ...d.changes.map((c) => changeWeight(c.ts, onset, grid.bucketMs)));
    if (weight > 0) d.strength += weight * (CHANGE_GAIN * d.strength + CHANGE_ALONE);
  }

  const ranked = [...drafts.values()].filter((d) => d.strength > 0).sort((a, b) => b.strength - a.strength || a.component.localeCompare(b.component));
  const totalSquares = ranked.reduce((sum, d) => sum + d.strength * d.strength, 0);
  return ranked.map((d) => {
    const score = 1 - Math.exp(-d.strength / SCORE_SCALE);
    const share = totalSquares > 0 ? (d.strength * d.strength) / totalSquares : 0;
    return {
      component: d.component,
      metric: d.primary?.name ?? (d.changes[0] ? `${d.changes[0].kind} change` : 'call graph'),
      score: round3(score),
      confidence: round3(share * score),
      strength: d.strength,
      evidence: evidenceOf(d, symptom, grid, input.symptomGrid),
    };
  });
}

/** Correlation over the end of the baseline (as long as the window) and the window: the move and what led to it. */
function correlationWithSymptom(grid: Grid, values: Float64Array, symptomGrid: Float64Array): number | null {
  const from = Math.max(0, grid.baselineBuckets - grid.windowBuckets);
  return pearson(values.subarray(from), symptomGrid.subarray(from), 5);
}

function evidenceOf(d: Draft, symptom: Symptom, grid: Grid, symptomGrid: Float64Array | null): Candidate['evidence'] {
  const p = d.primary;
  const correlation = p?.grid && symptomGrid ? correlationWithSymptom(grid, p.grid, symptomGrid) : null;
  const changes = d.changes.slice(0, CHANGES_SHOWN).map((c) => ({
    kind: c.kind,
    at: iso(c.ts),
    minutes_before_symptom: round3((symptom.start - c.ts) / 60_000),
    message: c.message,
  }));
  const parts: string[] = [];
  if (p) parts.push(p.detail);
  if (changes[0]) parts.push(`${changes[0].kind} ${whenToSymptom(changes[0].minutes_before_symptom)}: ${changes[0].message}`);
  for (const e of d.counted.slice(0, 2)) parts.push(`explains ${e.caller}'s ${e.what}: ${e.detail}`);
  return {
    summary: parts.join('; ') || 'no signal',
    deviation: p
      ? { signal: p.name, baseline: roundOrNull(p.baseline), current: roundOrNull(p.current), z: roundOrNull(p.z), direction: p.direction, unit: p.unit }
      : null,
    onset: p?.onset != null ? { at: iso(p.onset), relative_to_symptom_ms: p.onset - symptom.start } : null,
    correlation: correlation === null ? null : round3(correlation),
    signals: d.signals.slice(0, SIGNALS_SHOWN).map((s) => ({
      kind: s.kind,
      name: s.name,
      strength: round3(s.strength),
      z: roundOrNull(s.z),
      baseline: roundOrNull(s.baseline),
      current: roundOrNull(s.current),
      onset: s.onset != null ? iso(s.onset) : null,
      detail: s.detail,
    })),
    changes,
    explains: d.explains.map((e) => ({ component: e.caller, what: e.what, share: round3(e.share) })),
    explained_by: d.explainedBy.map((e) => ({ component: e.callee, what: e.what, share: round3(e.share) })),
    is_symptom_component: symptom.component === d.component,
  };
}

function roundOrNull(value: number | null): number | null {
  return value === null || !Number.isFinite(value) ? null : Number(value.toPrecision(6));
}

/** A change's time against the symptom's start, in words: a change within the onset may come after it. */
function whenToSymptom(minutesBefore: number): string {
  return minutesBefore < 0 ? `${-minutesBefore} min after the symptom's start` : `${minutesBefore} min before the symptom`;
}
