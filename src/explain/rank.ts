/**
 * From signals to ranked candidates. A component's strength is its strongest signal, raised a
 * little by other kinds of evidence that agree (a latency rise and a new error signature), by
 * callers whose change it explains (call graph), and by a change made to it just before the
 * onset. A component whose move started clearly after another's is more likely an effect.
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
/** Moving this many buckets after the first mover marks a likely effect. */
const LATE_BUCKETS = 2;
const LATE_FACTOR = 0.8;
/**
 * When the symptom names its component, another component that started moving clearly after the
 * symptom began is an effect, or unrelated. (With a start time alone, every component is a
 * candidate for the symptom, and a slow trend's detected onset lags: the first-mover rule applies.)
 */
const AFTER_SYMPTOM_FACTOR = 0.5;
/** Strength at which the score reaches 1 − 1/e. */
const SCORE_SCALE = 8;
const SIGNALS_SHOWN = 5;
/**
 * Weight of a signal that cannot explain the symptom's kind (a latency move elsewhere, for an
 * error spike), unless it is on the symptom's own component. Several incidents can overlap: the
 * largest move in the system is not the cause of every symptom.
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
const CHANGES_SHOWN = 5;

export interface RankInput {
  symptom: Symptom;
  grid: Grid;
  signals: Signal[];
  explanations: Explanation[];
  changes: ChangeEvent[];
  symptomGrid: Float64Array | null;
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
  explainedBy: Explanation[];
}

export function rankCandidates(input: RankInput): RankedCandidate[] {
  const { symptom, grid } = input;
  const drafts = new Map<string, Draft>();
  const draft = (component: string): Draft => {
    let d = drafts.get(component);
    if (!d) {
      d = { component, signals: [], primary: null, strength: 0, changes: [], explains: [], explainedBy: [] };
      drafts.set(component, d);
    }
    return d;
  };
  const related = relatedKinds(symptom);
  for (const s of input.signals) {
    if (!(s.strength > 0)) continue;
    const relevant = related === null || related.includes(s.kind) || s.component === symptom.component;
    draft(s.component).signals.push(relevant ? s : { ...s, strength: s.strength * UNRELATED_KIND });
  }
  for (const c of input.changes) draft(c.component).changes.push(c);
  for (const e of input.explanations) {
    draft(e.callee).explains.push(e);
    draft(e.caller).explainedBy.push(e);
  }

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
    for (const e of d.explains) strength += EXPLAINS_WEIGHT * e.share * strengthOf(e.caller_z);
    d.strength = strength;
  }

  // effects come after causes: find the first mover among those that moved
  const onsets = [...drafts.values()]
    .filter((d) => d.primary?.onset != null && d.strength >= MOVED_Z)
    .map((d) => d.primary!.onset!);
  const firstOnset = onsets.length ? Math.min(...onsets) : null;

  for (const d of drafts.values()) {
    if (firstOnset !== null && d.primary?.onset != null && d.primary.onset > firstOnset + LATE_BUCKETS * grid.bucketMs) {
      d.strength *= LATE_FACTOR;
    }
    const afterSymptom = d.primary?.onset != null && d.primary.onset > symptom.start + LATE_BUCKETS * grid.bucketMs;
    if (symptom.component !== null && d.component !== symptom.component && afterSymptom) {
      d.strength *= AFTER_SYMPTOM_FACTOR;
    }
    const recency = Math.max(0, ...d.changes.map((c) => c.recency));
    if (recency > 0) d.strength += recency * (CHANGE_GAIN * d.strength + CHANGE_ALONE);
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
  if (changes[0]) parts.push(`${changes[0].kind} ${changes[0].minutes_before_symptom} min before the symptom: ${changes[0].message}`);
  for (const e of d.explains.slice(0, 2)) parts.push(`explains ${e.caller}'s ${e.what}: ${e.detail}`);
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
