/**
 * Metric signals: every stored series judged against its own baseline (robust standardisation,
 * as BARO and NSigma do), with the time it started to move.
 */
import type { ExplainQueries } from '../store/explain.js';
import type { SeriesRow, Store } from '../store/store.js';
import type { Grid } from './grid.js';
import { formatValue, labelled, levelShift, MOVED_Z, round3, strengthOf, unitOf } from './strength.js';
import type { Signal, Symptom } from './types.js';

/** Fewer baseline points than this and a series is not judged. */
const MIN_BASELINE_POINTS = 5;
/** Strength given to a series that went silent or appeared, when enough points were expected. */
const PRESENCE_STRENGTH = MOVED_Z;

export interface MetricAnalysis {
  signals: Signal[];
  /** The symptom's series on the grid, when the symptom is a stored metric. */
  symptomGrid: Float64Array | null;
  seriesCount: number;
  truncated: boolean;
}

/** `ignored`: a component whose series are left out (Kiwi's own, unless the symptom is on Kiwi). */
export function metricSignals(
  store: Store,
  queries: ExplainQueries,
  symptom: Symptom,
  grid: Grid,
  maxSeries: number,
  ignored: string | null = null,
): MetricAnalysis {
  const series = queries.allSeries(maxSeries + 1);
  const truncated = series.length > maxSeries;
  if (truncated) series.length = maxSeries;
  const signals: Signal[] = [];
  const baselineMs = symptom.baseline_end - symptom.baseline_start;
  const windowMs = symptom.end - symptom.start;
  let symptomGrid: Float64Array | null = null;
  let symptomZ = -1;
  let read = 0;

  for (const s of series) {
    if (s.component === ignored) continue;
    read++;
    const baseline = queries.values(s.id, symptom.baseline_start, symptom.baseline_end);
    const window = store.readPoints(s.id, symptom.start, symptom.end);
    const isSymptomSeries =
      symptom.series_id !== null
        ? s.id === symptom.series_id
        : symptom.metric === s.name && (symptom.component === null || symptom.component === s.component);
    const name = labelled(s.name, s.labels);
    // the unit its points were sent with; a guess from the name only for a series sent without one
    const unit = s.unit ?? unitOf(s.name);

    if (baseline.length < MIN_BASELINE_POINTS || window.values.length === 0) {
      const presence = presenceSignal(s, name, unit, baseline.length, window, baselineMs, windowMs, symptom);
      if (presence) signals.push(presence);
      continue;
    }
    const shift = levelShift(baseline, window.values);
    // for correlation: the end of the baseline (as long as the window), then the window
    const recent = store.readPoints(s.id, Math.max(symptom.baseline_start, symptom.baseline_end - windowMs), symptom.baseline_end);
    const gridValues = grid.bucketMean([...recent.ts, ...window.ts], [...recent.values, ...window.values]);
    if (isSymptomSeries && Math.abs(shift.z) > symptomZ) {
      symptomZ = Math.abs(shift.z);
      symptomGrid = gridValues;
    }
    const direction = shift.z > 0 ? 'up' : shift.z < 0 ? 'down' : null;
    const onset = shift.onsetIndex >= 0 ? window.ts[shift.onsetIndex]! : null;
    const extreme = shift.baseline.median + shift.z * shift.baseline.sigma;
    signals.push({
      component: s.component,
      kind: 'metric',
      name,
      strength: strengthOf(shift.z),
      z: shift.z,
      direction,
      baseline: shift.baseline.median,
      current: extreme,
      unit,
      onset,
      detail:
        `${name} ${direction === 'down' ? 'fell' : 'rose'} from ${formatValue(shift.baseline.median, unit)} ` +
        `to ${formatValue(extreme, unit)} (${round3(shift.z)} robust sigmas${shift.baseline.floored ? ', flat baseline' : ''}; ` +
        `window median ${formatValue(shift.windowMedian, unit)})`,
      grid: gridValues,
    });
  }
  return { signals, symptomGrid, seriesCount: read, truncated };
}

function presenceSignal(
  s: SeriesRow,
  name: string,
  unit: string | null,
  baselineCount: number,
  window: { ts: number[]; values: number[] },
  baselineMs: number,
  windowMs: number,
  symptom: Symptom,
): Signal | null {
  const expectedInWindow = (baselineCount * windowMs) / baselineMs;
  if (window.values.length === 0 && baselineCount >= MIN_BASELINE_POINTS && expectedInWindow >= MIN_BASELINE_POINTS) {
    return {
      component: s.component,
      kind: 'metric',
      name,
      strength: PRESENCE_STRENGTH,
      z: null,
      direction: 'down',
      baseline: null,
      current: null,
      unit,
      onset: symptom.start,
      detail: `${name} went silent: ${baselineCount} points in the baseline, none in the window (about ${Math.round(expectedInWindow)} expected)`,
    };
  }
  const expectedInBaseline = (window.values.length * baselineMs) / windowMs;
  if (baselineCount === 0 && window.values.length >= MIN_BASELINE_POINTS && expectedInBaseline >= MIN_BASELINE_POINTS) {
    return {
      component: s.component,
      kind: 'metric',
      name,
      strength: PRESENCE_STRENGTH,
      z: null,
      direction: 'up',
      baseline: null,
      current: window.values[window.values.length - 1]!,
      unit,
      onset: window.ts[0]!,
      detail: `${name} appeared in the window (${window.values.length} points, none in the baseline)`,
    };
  }
  return null;
}
