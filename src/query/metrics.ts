/** Bounded metric queries: which series, which range, how wide a bucket, how much comes back. */
import type { Labels } from '../ingest/records.js';
import type { Bucket, SeriesFilter, SeriesRow, Store } from '../store/store.js';
import { formatDuration, niceWidthAtLeast } from '../time.js';

export interface MetricQuery extends SeriesFilter {
  from: number;
  to: number;
  /** Requested bucket width; widened when it would give more than `maxBuckets` buckets. */
  bucketMs?: number;
  maxBuckets: number;
  maxSeries: number;
}

export interface SeriesResult {
  id: number;
  name: string;
  component: string;
  labels: Labels;
  /** UCUM unit of the series; null when none was sent. */
  unit: string | null;
  buckets: Bucket[];
}

export interface MetricQueryResult {
  from: number;
  to: number;
  bucket_ms: number;
  series_total: number;
  series: SeriesResult[];
  notes: string[];
}

/** About this many buckets when the caller names no width. */
const AUTO_BUCKETS = 60;

export function queryMetrics(store: Store, q: MetricQuery): MetricQueryResult {
  if (!(q.to > q.from)) throw new Error('to: must be later than from');
  const notes: string[] = [];
  const span = q.to - q.from;
  let bucketMs = q.bucketMs ?? niceWidthAtLeast(span / AUTO_BUCKETS);
  if (span / bucketMs > q.maxBuckets) {
    const widened = niceWidthAtLeast(span / q.maxBuckets);
    notes.push(
      `bucket widened from ${formatDuration(bucketMs)} to ${formatDuration(widened)} to stay within ${q.maxBuckets} buckets per series`,
    );
    bucketMs = widened;
  }
  const { series, total } = store.findSeries(q, q.maxSeries);
  if (total > series.length) {
    notes.push(`${total} series matched; the first ${series.length} are shown (narrow by name, component or labels)`);
  }
  if (total === 0) notes.push('no series matched; list_series shows what exists');
  return {
    from: q.from,
    to: q.to,
    bucket_ms: bucketMs,
    series_total: total,
    series: series.map((s: SeriesRow) => ({ ...s, buckets: store.queryBuckets(s.id, q.from, q.to, bucketMs) })),
    notes,
  };
}
