/**
 * OTLP metrics → Kiwi metric points (documented in docs/TELEMETRY.md):
 *
 * - gauge: the value, under the metric's own name;
 * - sum, monotonic: the increase since the previous point under the metric's name (cumulative
 *   sums are turned into deltas, resets handled) and `<name>.rate`, that increase per second;
 * - sum, not monotonic (an up-down counter): the value as it is, a level like a gauge;
 * - histogram and exponential histogram: per interval `<name>.count`, `<name>.sum`, `<name>.p50`,
 *   `<name>.p95`, `<name>.p99` (estimated from the buckets, see stats/histogram.ts), and
 *   `<name>.min` / `<name>.max` when the exporter reports them for that interval;
 * - summary: `<name>.count` and `<name>.sum` per interval, and each reported quantile q as
 *   `<name>.p<100q>` (`.min` for 0, `.max` for 1).
 *
 * `service.name` is the component; point attributes (and `service.instance.id`) are the labels.
 * The metric's unit goes with its points: as it is for the value, sum, percentiles, min and max;
 * `<unit>/s` for `.rate`; `1` for the `.count` of a distribution. A unit that is not printable
 * ASCII of at most 63 characters is left out (the points are kept).
 */
import { createHash } from 'node:crypto';
import {
  bucketQuantile,
  clampToRange,
  downscaleSide,
  explicitBuckets,
  exponentialBuckets,
  subtractCounts,
  subtractSides,
  type Bucket,
  type ExponentialSide,
} from '../../stats/histogram.js';
import type { Labels, MetricRecord, TelemetryRecord } from '../records.js';
import { tooFarAhead, unitProblem } from '../records.js';
import { attributesToLabels, inEpochRange, MAX_NAME, nanosToMs, Rejections, resourceInfo, uint64 } from './common.js';
import { cumulativeStep, type StateChanges } from './state.js';
import type { MappedBatch } from './traces.js';
import {
  NO_RECORDED_VALUE,
  TEMPORALITY,
  type ExponentialBuckets,
  type ExponentialHistogramDataPoint,
  type HistogramDataPoint,
  type Int64,
  type Metric,
  type MetricsRequest,
  type NumberDataPoint,
  type SummaryDataPoint,
} from './types.js';

/** The percentiles stored for every histogram interval. */
export const HISTOGRAM_PERCENTILES = [50, 95, 99] as const;
/** Buckets accepted per histogram data point (per side for exponential ones); the state keeps them per series. */
export const MAX_BUCKETS = 4096;
const LONGEST_SUFFIX = '.count'.length;

interface Context {
  component: string;
  /** The unit of the metric being mapped; empty for none. */
  unit: string;
  resourceKey: string;
  seriesLabels: Labels;
  state: StateChanges;
  /** This machine's clock for the request, for times too far ahead of it. */
  now: number;
  records: TelemetryRecord[];
  rejections: Rejections;
  accepted: number;
}

export function mapMetrics(request: MetricsRequest, state: StateChanges, now: number = Date.now()): MappedBatch {
  const records: TelemetryRecord[] = [];
  const rejections = new Rejections();
  const ctx: Context = { component: '', unit: '', resourceKey: '', seriesLabels: {}, state, now, records, rejections, accepted: 0 };
  for (const resourceMetrics of request.resourceMetrics ?? []) {
    const resource = resourceInfo(resourceMetrics.resource);
    ctx.component = resource.component;
    ctx.seriesLabels = resource.seriesLabels;
    ctx.resourceKey = createHash('sha1').update(resource.identity).digest('base64');
    for (const scopeMetrics of resourceMetrics.scopeMetrics ?? []) {
      for (const metric of scopeMetrics.metrics ?? []) mapMetric(metric, ctx);
    }
  }
  return { records, accepted: ctx.accepted, rejections };
}

function pointCount(metric: Metric): number {
  return (
    (metric.gauge?.dataPoints?.length ?? 0) +
    (metric.sum?.dataPoints?.length ?? 0) +
    (metric.histogram?.dataPoints?.length ?? 0) +
    (metric.exponentialHistogram?.dataPoints?.length ?? 0) +
    (metric.summary?.dataPoints?.length ?? 0)
  );
}

function mapMetric(metric: Metric, ctx: Context): void {
  const name = metric.name ?? '';
  if (!name || name.length + LONGEST_SUFFIX + 4 > MAX_NAME) {
    ctx.rejections.add(`metric "${name.slice(0, 64)}": name must be 1 to ${MAX_NAME - LONGEST_SUFFIX - 4} characters`, pointCount(metric));
    return;
  }
  const unit = metric.unit ?? '';
  ctx.unit = unitProblem(unit) === null ? unit : '';
  if (metric.gauge) {
    for (const p of metric.gauge.dataPoints ?? []) mapGaugePoint(name, p, ctx);
  } else if (metric.sum) {
    const cumulative = metric.sum.aggregationTemporality === TEMPORALITY.cumulative;
    const monotonic = metric.sum.isMonotonic === true;
    for (const p of metric.sum.dataPoints ?? []) {
      if (monotonic) mapCounterPoint(name, p, cumulative, ctx);
      else mapGaugePoint(name, p, ctx);
    }
  } else if (metric.histogram) {
    const cumulative = metric.histogram.aggregationTemporality === TEMPORALITY.cumulative;
    for (const p of metric.histogram.dataPoints ?? []) mapHistogramPoint(name, p, cumulative, ctx);
  } else if (metric.exponentialHistogram) {
    const cumulative = metric.exponentialHistogram.aggregationTemporality === TEMPORALITY.cumulative;
    for (const p of metric.exponentialHistogram.dataPoints ?? []) mapExponentialPoint(name, p, cumulative, ctx);
  } else if (metric.summary) {
    for (const p of metric.summary.dataPoints ?? []) mapSummaryPoint(name, p, ctx);
  } else {
    ctx.rejections.add(`metric "${name}": no gauge, sum, histogram, exponential histogram or summary`, 0);
  }
}

// ---------------------------------------------------------------- helpers

interface PointBase {
  attributes?: NumberDataPoint['attributes'];
  startTimeUnixNano?: Int64 | null;
  timeUnixNano?: Int64 | null;
  flags?: number | null;
}

interface PointTimes {
  start: number;
  time: number;
  ts: number;
  labels: Labels;
}

/** Validates the point's times and returns them with its labels; null when rejected or stale-marked. */
function pointTimes(name: string, p: PointBase, ctx: Context): PointTimes | null {
  if (((p.flags ?? 0) & NO_RECORDED_VALUE) !== 0) {
    // A staleness marker: accepted, nothing to store.
    ctx.accepted++;
    return null;
  }
  const time = nanosToMs(p.timeUnixNano);
  if (time === 0) {
    ctx.rejections.add(`metric "${name}": data point without time_unix_nano`);
    return null;
  }
  if (!inEpochRange(time)) {
    ctx.rejections.add(`metric "${name}": time_unix_nano ${Math.round(time)} ms is outside 1970..2200`);
    return null;
  }
  const ahead = tooFarAhead(time, ctx.now);
  if (ahead) {
    ctx.rejections.add(`metric "${name}": time_unix_nano ${ahead}`);
    return null;
  }
  return { start: nanosToMs(p.startTimeUnixNano), time, ts: Math.round(time), labels: attributesToLabels(p.attributes, ctx.seriesLabels) };
}

function signed(value: Int64 | null | undefined): number {
  if (value === null || value === undefined) return 0;
  if (typeof value === 'number') return value;
  return (value.high | 0) * 4294967296 + (value.low >>> 0);
}

function numberValue(p: NumberDataPoint): number | null {
  if (p.asDouble !== null && p.asDouble !== undefined) return p.asDouble;
  if (p.asInt !== null && p.asInt !== undefined) return signed(p.asInt);
  return null;
}

/** A point in the metric's own unit, or in `unit` when given (a derived series: a rate, a count). */
function push(ctx: Context, name: string, ts: number, value: number, labels: Labels, unit: string = ctx.unit): void {
  const record: MetricRecord = { type: 'metric', ts, name, value, component: ctx.component, labels };
  if (unit) record.unit = unit;
  ctx.records.push(record);
}

/** The unit of a per-second rate of a counter in `unit`; none when the counter has none. */
const perSecond = (unit: string): string => (unit ? `${unit}/s` : '');
/** The unit of a number of measurements (a distribution's count): dimensionless. */
const COUNT_UNIT = '1';

function stateKey(ctx: Context, name: string, labels: Labels): string {
  return `${ctx.resourceKey}\u0000${name}\u0000${JSON.stringify(labels)}`;
}

// ---------------------------------------------------------------- gauges and sums

function mapGaugePoint(name: string, p: NumberDataPoint, ctx: Context): void {
  const t = pointTimes(name, p, ctx);
  if (!t) return;
  const value = numberValue(p);
  if (value === null || !Number.isFinite(value)) {
    ctx.rejections.add(`metric "${name}": value ${value === null ? 'missing' : String(value)} is not a finite number`);
    return;
  }
  push(ctx, name, t.ts, value, t.labels);
  ctx.accepted++;
}

function mapCounterPoint(name: string, p: NumberDataPoint, cumulative: boolean, ctx: Context): void {
  const t = pointTimes(name, p, ctx);
  if (!t) return;
  const value = numberValue(p);
  if (value === null || !Number.isFinite(value)) {
    ctx.rejections.add(`metric "${name}": value ${value === null ? 'missing' : String(value)} is not a finite number`);
    return;
  }
  ctx.accepted++;
  let delta = value;
  let since = t.start > 0 && t.start < t.time ? t.start : 0;
  if (cumulative) {
    const key = stateKey(ctx, name, t.labels);
    const stored = ctx.state.get(key);
    const previous = stored?.kind === 'sum' ? stored : undefined;
    const step = cumulativeStep(previous, t.start, t.time, ctx.state.baseline, (prev) => value < prev.value);
    if (step.kind === 'skip') return;
    ctx.state.set(key, { kind: 'sum', start: t.start, time: t.time, value });
    if (step.kind === 'seed') return;
    delta = step.whole || !previous ? value : value - previous.value;
    since = step.since;
  }
  push(ctx, name, t.ts, delta, t.labels);
  if (since > 0 && t.time > since) push(ctx, `${name}.rate`, t.ts, delta / ((t.time - since) / 1000), t.labels, perSecond(ctx.unit));
}

// ---------------------------------------------------------------- distributions

interface Interval {
  count: number;
  sum: number | null;
  buckets: Bucket[];
  /** Min and max apply to the interval (delta temporality, or the whole cumulative period). */
  min: number | null;
  max: number | null;
}

/** What a cumulative count and sum added since the previous report (min and max are not known for it). */
function intervalSince(count: number, sum: number | null, previous: { count: number; sum: number | null }): Interval {
  return { count: count - previous.count, sum: sum !== null && previous.sum !== null ? sum - previous.sum : null, buckets: [], min: null, max: null };
}

function pushDistribution(name: string, t: PointTimes, interval: Interval, ctx: Context): void {
  push(ctx, `${name}.count`, t.ts, interval.count, t.labels, COUNT_UNIT);
  if (interval.sum !== null && Number.isFinite(interval.sum)) push(ctx, `${name}.sum`, t.ts, interval.sum, t.labels);
  if (interval.count <= 0) return;
  for (const pct of HISTOGRAM_PERCENTILES) {
    const estimate = bucketQuantile(interval.buckets, pct / 100);
    if (estimate !== null && Number.isFinite(estimate)) {
      push(ctx, `${name}.p${pct}`, t.ts, clampToRange(estimate, interval.min, interval.max), t.labels);
    }
  }
  if (interval.min !== null && Number.isFinite(interval.min)) push(ctx, `${name}.min`, t.ts, interval.min, t.labels);
  if (interval.max !== null && Number.isFinite(interval.max)) push(ctx, `${name}.max`, t.ts, interval.max, t.labels);
}

const finiteOrNull = (x: number | null | undefined): number | null => (x !== null && x !== undefined && Number.isFinite(x) ? x : null);

function mapHistogramPoint(name: string, p: HistogramDataPoint, cumulative: boolean, ctx: Context): void {
  const t = pointTimes(name, p, ctx);
  if (!t) return;
  const bounds = p.explicitBounds ?? [];
  const counts = (p.bucketCounts ?? []).map(uint64);
  const count = uint64(p.count);
  if (counts.length > MAX_BUCKETS) {
    ctx.rejections.add(`metric "${name}": ${counts.length} buckets (at most ${MAX_BUCKETS})`);
    return;
  }
  if (counts.length > 0 && counts.length !== bounds.length + 1) {
    ctx.rejections.add(`metric "${name}": ${counts.length} bucket_counts for ${bounds.length} explicit_bounds (expected ${bounds.length + 1})`);
    return;
  }
  for (let i = 1; i < bounds.length; i++) {
    if (!(bounds[i]! > bounds[i - 1]!)) {
      ctx.rejections.add(`metric "${name}": explicit_bounds must be strictly increasing`);
      return;
    }
  }
  ctx.accepted++;
  const sum = finiteOrNull(p.sum);
  let interval: Interval = { count, sum, buckets: [], min: finiteOrNull(p.min), max: finiteOrNull(p.max) };
  let deltaCounts = counts;
  if (cumulative) {
    const key = stateKey(ctx, name, t.labels);
    const stored = ctx.state.get(key);
    const previous = stored?.kind === 'histogram' ? stored : undefined;
    const step = cumulativeStep(previous, t.start, t.time, ctx.state.baseline, (prev) => count < prev.count);
    if (step.kind === 'skip') return;
    ctx.state.set(key, { kind: 'histogram', start: t.start, time: t.time, count, sum, bounds: [...bounds], counts });
    if (step.kind === 'seed') return;
    if (!step.whole && previous) {
      const sameBounds = previous.bounds.length === bounds.length && previous.bounds.every((b, i) => b === bounds[i]);
      const subtracted = sameBounds ? subtractCounts(counts, previous.counts) : null;
      if (subtracted && (counts.length > 0 || previous.counts.length === 0)) {
        deltaCounts = subtracted;
        interval = intervalSince(count, sum, previous);
      }
    }
  }
  if (deltaCounts.length > 0) interval.buckets = explicitBuckets(bounds, deltaCounts, interval.min, interval.max);
  pushDistribution(name, t, interval, ctx);
}

function side(buckets: ExponentialBuckets | null | undefined): ExponentialSide {
  return { offset: buckets?.offset ?? 0, counts: (buckets?.bucketCounts ?? []).map(uint64) };
}

function mapExponentialPoint(name: string, p: ExponentialHistogramDataPoint, cumulative: boolean, ctx: Context): void {
  const t = pointTimes(name, p, ctx);
  if (!t) return;
  const scale = p.scale ?? 0;
  if (!Number.isInteger(scale) || scale < -10 || scale > 20) {
    ctx.rejections.add(`metric "${name}": scale ${scale} is outside -10..20`);
    return;
  }
  const positiveLength = p.positive?.bucketCounts?.length ?? 0;
  const negativeLength = p.negative?.bucketCounts?.length ?? 0;
  if (positiveLength > MAX_BUCKETS || negativeLength > MAX_BUCKETS) {
    ctx.rejections.add(`metric "${name}": ${Math.max(positiveLength, negativeLength)} buckets on one side (at most ${MAX_BUCKETS})`);
    return;
  }
  ctx.accepted++;
  const count = uint64(p.count);
  const sum = finiteOrNull(p.sum);
  let zeroCount = uint64(p.zeroCount);
  let positive = side(p.positive);
  let negative = side(p.negative);
  let intervalScale = scale;
  let interval: Interval = { count, sum, buckets: [], min: finiteOrNull(p.min), max: finiteOrNull(p.max) };
  if (cumulative) {
    const key = stateKey(ctx, name, t.labels);
    const stored = ctx.state.get(key);
    const previous = stored?.kind === 'exponential' ? stored : undefined;
    const step = cumulativeStep(previous, t.start, t.time, ctx.state.baseline, (prev) => count < prev.count);
    if (step.kind === 'skip') return;
    ctx.state.set(key, { kind: 'exponential', start: t.start, time: t.time, count, sum, scale, zeroCount, positive, negative });
    if (step.kind === 'seed') return;
    if (!step.whole && previous) {
      // Compare at the coarser of the two scales (the SDK only ever lowers it).
      const common = Math.min(scale, previous.scale);
      const pos = subtractSides(downscaleSide(positive, scale - common), downscaleSide(previous.positive, previous.scale - common));
      const neg = subtractSides(downscaleSide(negative, scale - common), downscaleSide(previous.negative, previous.scale - common));
      const zero = zeroCount - previous.zeroCount;
      if (pos && neg && zero >= 0) {
        positive = pos;
        negative = neg;
        zeroCount = zero;
        intervalScale = common;
        interval = intervalSince(count, sum, previous);
      }
    }
  }
  interval.buckets = exponentialBuckets(intervalScale, zeroCount, p.zeroThreshold ?? 0, positive, negative, interval.min, interval.max);
  pushDistribution(name, t, interval, ctx);
}

function quantileName(q: number): string {
  if (q === 0) return 'min';
  if (q === 1) return 'max';
  return `p${Number((q * 100).toFixed(3))}`;
}

function mapSummaryPoint(name: string, p: SummaryDataPoint, ctx: Context): void {
  const t = pointTimes(name, p, ctx);
  if (!t) return;
  const quantiles = p.quantileValues ?? [];
  for (const qv of quantiles) {
    const q = qv.quantile ?? 0;
    if (!(q >= 0 && q <= 1) || !Number.isFinite(qv.value ?? 0)) {
      ctx.rejections.add(`metric "${name}": quantile ${q} must be in 0..1 with a finite value`);
      return;
    }
  }
  ctx.accepted++;
  for (const qv of quantiles) push(ctx, `${name}.${quantileName(qv.quantile ?? 0)}`, t.ts, qv.value ?? 0, t.labels);
  // Summaries are cumulative: count and sum become per-interval deltas like a counter's.
  const count = uint64(p.count);
  const sum = finiteOrNull(p.sum) ?? 0;
  const key = stateKey(ctx, name, t.labels);
  const stored = ctx.state.get(key);
  const previous = stored?.kind === 'summary' ? stored : undefined;
  const step = cumulativeStep(previous, t.start, t.time, ctx.state.baseline, (prev) => count < prev.count);
  if (step.kind === 'skip') return;
  ctx.state.set(key, { kind: 'summary', start: t.start, time: t.time, count, sum });
  if (step.kind === 'seed') return;
  const whole = step.whole || !previous;
  push(ctx, `${name}.count`, t.ts, whole ? count : count - previous.count, t.labels, COUNT_UNIT);
  push(ctx, `${name}.sum`, t.ts, whole ? sum : sum - previous.sum, t.labels);
}
