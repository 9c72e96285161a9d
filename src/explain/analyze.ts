/** Deterministic root-cause analysis: the symptom's windows, every signal, the ranking, the context. */
import { SELF_COMPONENT } from '../ingest/self.js';
import { mcpServers } from '../remedies.js';
import { ExplainQueries } from '../store/explain.js';
import type { Store } from '../store/store.js';
import { spanSignals, type SpanAnalysis } from './calls.js';
import { buildContext } from './context.js';
import { changesBefore, eventSignals } from './events.js';
import { chooseBucketMs, Grid } from './grid.js';
import { metricSignals } from './metrics.js';
import { rankCandidates, symptomOnset } from './rank.js';
import { remedyForCause } from './remedy.js';
import { redact } from './redact.js';
import { isDerivedMetric, isSelfSymptom, resolveSymptom } from './symptom.js';
import type { Analysis, Symptom, SymptomInput } from './types.js';

export const ANALYSIS_LIMITS = {
  candidates: 20,
  defaultCandidates: 5,
  series: 5000,
  spansPerRange: 250_000,
} as const;

export interface AnalyzeOptions {
  /** Candidates returned (default 5, at most 20). */
  limit?: number;
  /** For relative times in the input. */
  now?: number;
  maxSeries?: number;
  maxSpans?: number;
}

export function analyzeRootCause(store: Store, input: SymptomInput, options: AnalyzeOptions = {}): Analysis {
  const started = performance.now();
  const queries = new ExplainQueries(store);
  const symptom = resolveSymptom(store, queries, input, options.now);
  const limit = Math.min(ANALYSIS_LIMITS.candidates, Math.max(1, options.limit ?? ANALYSIS_LIMITS.defaultCandidates));
  const grid = new Grid(symptom, chooseBucketMs(symptom.end - symptom.start));
  const notes: string[] = [];
  // Kiwi observes itself, so an agent investigating the symptom through Kiwi makes Kiwi's calls
  // rise just after the onset: Kiwi would rank as the cause of every incident it is asked about.
  // Its own telemetry is left out unless the symptom is on Kiwi.
  const ignored = isSelfSymptom(store, queries, symptom) ? null : SELF_COMPONENT;

  const metrics = metricSignals(store, queries, symptom, grid, options.maxSeries ?? ANALYSIS_LIMITS.series, ignored);
  if (metrics.truncated) notes.push(`only the first ${metrics.seriesCount} series were read`);
  const spans = spanSignals(queries, symptom, grid, options.maxSpans ?? ANALYSIS_LIMITS.spansPerRange, ignored);
  if (spans.truncated) notes.push(`spans were capped at ${options.maxSpans ?? ANALYSIS_LIMITS.spansPerRange} per window`);
  if (spans.ignoredSpans > 0) {
    notes.push(
      `Kiwi's own telemetry (component "${SELF_COMPONENT}", ${spans.ignoredSpans} spans of its calls) was left out: ` +
        `calls made to investigate a symptom follow it, they do not cause it; give component "${SELF_COMPONENT}" to explain Kiwi itself`,
    );
  }
  const events = eventSignals(queries, symptom, grid, spans.roots, ignored);
  if (events.truncated) notes.push('error events were capped at 50,000 per window');

  const symptomGrid = symptomSeries(symptom, metrics.symptomGrid, spans.grids, events.denialGrids, events.disconnectGrids);
  const signals = [...metrics.signals, ...spans.signals, ...events.signals];
  const measured = measuredOnset(symptom, spans.onsets);
  const onset = symptomOnset(symptom, signals, measured);
  const changes = changesBefore(queries, symptom, onset, ignored);
  const traced = new Set(spans.grids.keys());
  const ranked = rankCandidates({ symptom, grid, signals, explanations: spans.explanations, changes, symptomGrid, traced, measuredOnset: measured, onset });
  if (metrics.seriesCount === 0 && spans.spanCount === 0 && events.errorEventCount === 0 && changes.length === 0) {
    notes.push('the store holds no telemetry for these windows');
  } else if (ranked.length === 0) notes.push('nothing moved from its baseline and no change was recorded shortly before the start');
  // error examples and change messages can carry secrets
  const candidates = redact(ranked.slice(0, limit).map(({ strength: _strength, ...candidate }) => candidate));
  const context = buildContext(store, queries, symptom, candidates, spans.windowRoots, events, changes);
  const components = new Set(signals.map((s) => s.component));

  return {
    symptom,
    bucket_ms: grid.bucketMs,
    candidates,
    context,
    considered: {
      series: metrics.seriesCount,
      spans: spans.spanCount,
      error_events: events.errorEventCount,
      components: components.size,
    },
    suggested_action: remedyForCause(symptom, candidates[0], mcpServers(store)),
    notes,
    elapsed_ms: performance.now() - started,
  };
}

/** When the symptom's own failure rate or latency rose (null: not such a symptom, or it did not rise). */
function measuredOnset(symptom: Symptom, onsets: SpanAnalysis['onsets']): number | null {
  if (symptom.component === null) return null;
  const own = onsets.get(symptom.component);
  if (symptom.metric === 'errors') return own?.errors ?? null;
  if (symptom.metric === 'latency') return own?.latency ?? null;
  return null;
}

function symptomSeries(
  symptom: Symptom,
  metricGrid: Float64Array | null,
  spanGrids: Map<string, { latency: Float64Array; errors: Float64Array; requests: Float64Array }>,
  denials: Map<string, Float64Array>,
  disconnects: Map<string, Float64Array>,
): Float64Array | null {
  if (!isDerivedMetric(symptom.metric)) return metricGrid;
  if (symptom.component === null) return null;
  switch (symptom.metric) {
    case 'latency':
      return spanGrids.get(symptom.component)?.latency ?? null;
    case 'errors':
      return spanGrids.get(symptom.component)?.errors ?? null;
    case 'requests':
      return spanGrids.get(symptom.component)?.requests ?? null;
    case 'denials':
      return denials.get(symptom.component) ?? null;
    case 'disconnects':
      return disconnects.get(symptom.component) ?? null;
  }
}
