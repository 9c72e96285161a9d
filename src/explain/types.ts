/** The shapes root-cause analysis passes around and returns. */
import type { SuggestedAction } from '../remedies.js';

/** What to explain: an anomaly id, or a symptom. Times are ISO 8601 strings or epoch numbers. */
export interface SymptomInput {
  anomaly_id?: string;
  component?: string;
  /** A stored metric name, or one derived from spans and events: latency, errors, denials, disconnects, requests. */
  metric?: string;
  start?: string | number;
  end?: string | number;
  baseline_start?: string | number;
  baseline_end?: string | number;
}

/** Signals derived from spans and events rather than stored as metric series. */
export const DERIVED_METRICS = ['latency', 'errors', 'denials', 'disconnects', 'requests'] as const;
export type DerivedMetric = (typeof DERIVED_METRICS)[number];

/** The symptom with every window made explicit (epoch ms, half-open). */
export interface Symptom {
  anomaly_id: string | null;
  anomaly_type: string | null;
  component: string | null;
  metric: string | null;
  /** The stored series the symptom is about, when it is one. */
  series_id: number | null;
  start: number;
  end: number;
  baseline_start: number;
  baseline_end: number;
  description: string;
}

export type SignalKind = 'metric' | 'latency' | 'errors' | 'signature' | 'permission' | 'connection' | 'change';

/** One piece of evidence about one component. */
export interface Signal {
  component: string;
  kind: SignalKind;
  /** What moved: a metric name with labels, `latency (self time)`, a change's key, an error template. */
  name: string;
  /** Ranking weight on a z-like scale: how surprising the move is against the component's own baseline. */
  strength: number;
  /** Signed robust z (or likelihood-ratio z for rates and counts); null for changes. */
  z: number | null;
  direction: 'up' | 'down' | null;
  baseline: number | null;
  current: number | null;
  unit: string | null;
  /** When it started moving (epoch ms), or when the change happened. */
  onset: number | null;
  detail: string;
  /** Values on the analysis grid (baseline buckets, then window buckets), for correlation. */
  grid?: Float64Array;
}

/** A caller whose latency or errors this component's explain (from the span call graph). */
export interface Explanation {
  caller: string;
  callee: string;
  what: 'latency' | 'errors';
  /** Share of the caller's change accounted for by the callee, 0..1. */
  share: number;
  /** How far the caller's latency or failure rate moved (z). */
  caller_z: number;
  detail: string;
}

export interface CandidateEvidence {
  summary: string;
  /** How far the strongest signal moved from the component's own baseline. */
  deviation: {
    signal: string;
    baseline: number | null;
    current: number | null;
    z: number | null;
    direction: 'up' | 'down' | null;
    unit: string | null;
  } | null;
  /** When it started relative to the symptom's start (negative: before). */
  onset: { at: string; relative_to_symptom_ms: number } | null;
  /** Pearson correlation of the strongest signal with the symptom over baseline and window buckets. */
  correlation: number | null;
  signals: {
    kind: SignalKind;
    name: string;
    strength: number;
    z: number | null;
    baseline: number | null;
    current: number | null;
    onset: string | null;
    detail: string;
  }[];
  changes: { kind: string; at: string; minutes_before_symptom: number; message: string }[];
  explains: { component: string; what: 'latency' | 'errors'; share: number }[];
  explained_by: { component: string; what: 'latency' | 'errors'; share: number }[];
  is_symptom_component: boolean;
}

export interface Candidate {
  component: string;
  /** The strongest signal: a metric name or a derived signal. */
  metric: string;
  /** 0..1, monotone in the evidence strength; candidates are sorted by it. */
  score: number;
  /** 0..1: this candidate's share of all the evidence, discounted when the evidence is weak. */
  confidence: number;
  evidence: CandidateEvidence;
}

export interface ContextEvent {
  at: string;
  kind: string;
  component: string;
  level: string;
  message: string;
  attrs: Record<string, unknown>;
}

export interface ThreadSummary {
  trace_id: string;
  component: string;
  name: string;
  at: string;
  duration_ms: number;
  status: string;
  error_type: string | null;
  calls: { component: string; name: string; duration_ms: number; status: string }[];
  events: { at: string; kind: string; component: string; level: string; message: string }[];
}

export interface SignatureSummary {
  component: string;
  template: string;
  example: string;
  baseline_count: number;
  window_count: number;
  first_seen: string;
  is_new: boolean;
}

export interface AnalysisContext {
  recent_logs: ContextEvent[];
  affected_threads: ThreadSummary[];
  mcp_status: { component: string; state: string; since: string; disconnects_in_window: number }[];
  changes: ContextEvent[];
  signatures: SignatureSummary[];
}

export interface Analysis {
  symptom: Symptom;
  bucket_ms: number;
  candidates: Candidate[];
  context: AnalysisContext;
  considered: { series: number; spans: number; error_events: number; components: number };
  /** The directive that acts on the most likely cause, with its inputs (null: none does). */
  suggested_action: SuggestedAction | null;
  notes: string[];
  elapsed_ms: number;
}

export type NarrativeSource = 'sampling' | 'anthropic' | 'deterministic';

/** What the LLM (or the deterministic summary) writes. */
export interface Narrative {
  root_cause: string;
  next_steps: string[];
  confidence: number;
}

export interface Explained extends Analysis {
  narrative: Narrative;
  source: NarrativeSource;
  /** The model that wrote it, when one did. */
  model: string | null;
  /** Why earlier sources in the order were not used (not available, timed out, malformed answer). */
  fallbacks: string[];
}
