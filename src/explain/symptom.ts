/** Turning an anomaly id or a loosely given symptom into explicit windows. */
import { SELF_COMPONENT } from '../ingest/self.js';
import { AnomalyStore } from '../store/anomalies.js';
import type { ExplainQueries } from '../store/explain.js';
import type { Store } from '../store/store.js';
import { iso, parseTimeInput } from '../time.js';
import { DERIVED_METRICS, type DerivedMetric, type Symptom, type SymptomInput } from './types.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/** Without an end: at most this long after the start (or up to the newest data). */
export const MAX_WINDOW_MS = 7 * 24 * HOUR;

/**
 * The default baseline: the day before the start (as long as the window when that is longer,
 * at most a week). A whole day holds the whole daily cycle, so metrics that follow the load are
 * judged against their own peak hours and not mistaken for a change when the symptom falls at
 * one.
 */
export function defaultBaselineMs(windowMs: number): number {
  return Math.min(7 * 24 * HOUR, Math.max(24 * HOUR, windowMs));
}

function humanDuration(ms: number): string {
  if (ms < 2 * MINUTE) return `${Math.round(ms / 1000)} s`;
  if (ms < 2 * HOUR) return `${Math.round(ms / MINUTE)} min`;
  if (ms < 48 * HOUR) return `${Number((ms / HOUR).toFixed(1))} h`;
  return `${Number((ms / (24 * HOUR)).toFixed(1))} days`;
}

/** Which derived metric an anomaly type is about. */
const ANOMALY_METRIC: Record<string, DerivedMetric> = {
  latency_spike: 'latency',
  error_spike: 'errors',
  permission_spike: 'denials',
  connection_instability: 'disconnects',
  flaky_connection: 'disconnects',
};

export function isDerivedMetric(metric: string | null): metric is DerivedMetric {
  return metric !== null && (DERIVED_METRICS as readonly string[]).includes(metric);
}

function time(field: string, value: string | number | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  try {
    return parseTimeInput(value, now);
  } catch (err) {
    throw new Error(`${field}: ${(err as Error).message}`);
  }
}

/** Resolves the input, or throws `field: reason`. */
export function resolveSymptom(store: Store, queries: ExplainQueries, input: SymptomInput, now: number = Date.now()): Symptom {
  let start = time('start', input.start, now);
  let end = time('end', input.end, now);
  const baselineStart = time('baseline_start', input.baseline_start, now);
  const baselineEnd = time('baseline_end', input.baseline_end, now);
  let component = input.component ?? null;
  let metric = input.metric ?? null;
  let seriesId: number | null = null;
  let anomalyType: string | null = null;
  let description = '';

  if (input.anomaly_id !== undefined) {
    const anomaly = new AnomalyStore(store).get(input.anomaly_id);
    if (!anomaly) throw new Error(`anomaly_id: no anomaly "${input.anomaly_id}"`);
    anomalyType = anomaly.type;
    component ??= anomaly.component;
    start ??= anomaly.start_ts;
    end ??= anomaly.end_ts !== null && anomaly.end_ts > anomaly.start_ts ? anomaly.end_ts : undefined;
    seriesId = anomaly.series_id;
    description = anomaly.description;
    if (metric === null) {
      if (seriesId !== null) metric = queries.seriesById(seriesId)?.name ?? null;
      else metric = ANOMALY_METRIC[anomaly.type] ?? null;
    }
  }
  if (start === undefined) throw new Error('start: required (or give anomaly_id)');
  if (component !== null && component.trim() === '') throw new Error('component: must not be empty');
  if (metric !== null && metric.trim() === '') throw new Error('metric: must not be empty');

  if (end === undefined) {
    const lastSeen = queries.lastSeen();
    end = lastSeen !== null && lastSeen >= start ? lastSeen + 1 : Math.max(now, start + MINUTE);
    end = Math.min(end, start + MAX_WINDOW_MS);
  }
  if (!(end > start)) throw new Error(`end: must be after start (${iso(start)})`);

  const windowMs = end - start;
  let bStart: number;
  let bEnd: number;
  if (baselineStart === undefined && baselineEnd === undefined) {
    bEnd = start;
    bStart = start - defaultBaselineMs(windowMs);
  } else if (baselineStart !== undefined && baselineEnd !== undefined) {
    bStart = baselineStart;
    bEnd = baselineEnd;
  } else if (baselineStart !== undefined) {
    bStart = baselineStart;
    bEnd = baselineStart < start ? start : baselineStart + defaultBaselineMs(windowMs);
  } else {
    bEnd = baselineEnd!;
    bStart = bEnd - defaultBaselineMs(windowMs);
  }
  if (!(bEnd > bStart)) throw new Error('baseline_end: must be after baseline_start');
  if (bStart < end && bEnd > start) {
    throw new Error(`baseline_start: the baseline ${iso(bStart)}..${iso(bEnd)} overlaps the symptom window ${iso(start)}..${iso(end)}`);
  }

  if (seriesId === null && metric !== null && !isDerivedMetric(metric)) {
    const match = store.findSeries({ name: metric, ...(component !== null ? { component } : {}) }, 1);
    if (match.total === 0) {
      throw new Error(
        `metric: no series named "${metric}"${component !== null ? ` for component "${component}"` : ''}; ` +
          `use a stored metric name or one of ${DERIVED_METRICS.join(', ')}`,
      );
    }
  }
  if (component !== null && !store.hasComponent(component)) {
    throw new Error(`component: no telemetry from "${component}"`);
  }

  if (!description) {
    const what = [metric, component].filter(Boolean).join(' of ') || 'the system';
    description = `${what} from ${iso(start)} for ${humanDuration(windowMs)}`;
  }
  return {
    anomaly_id: input.anomaly_id ?? null,
    anomaly_type: anomalyType,
    component,
    metric,
    series_id: seriesId,
    start,
    end,
    baseline_start: bStart,
    baseline_end: bEnd,
    description,
  };
}

/**
 * Whether the symptom is on Kiwi itself: it names Kiwi's component (an anomaly of Kiwi's does),
 * or, naming none, a stored series that only Kiwi writes. Only then is Kiwi a candidate cause:
 * otherwise its own telemetry is mostly the investigation (an agent's calls to Kiwi start when
 * the symptom is noticed, and rise after its onset), not a cause of the symptom.
 */
export function isSelfSymptom(store: Store, queries: ExplainQueries, symptom: Symptom): boolean {
  if (symptom.component !== null) return symptom.component === SELF_COMPONENT;
  if (symptom.series_id !== null) return queries.seriesById(symptom.series_id)?.component === SELF_COMPONENT;
  if (symptom.metric === null || isDerivedMetric(symptom.metric)) return false;
  const all = store.findSeries({ name: symptom.metric }, 0).total;
  return all > 0 && store.findSeries({ name: symptom.metric, component: SELF_COMPONENT }, 0).total === all;
}
