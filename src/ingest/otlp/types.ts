/**
 * The decoded OTLP messages Kiwi reads, as the protobufjs code generated from the official
 * opentelemetry-proto definitions produces them (field names in lowerCamelCase; 64-bit integers
 * as `Long`; bytes as `Uint8Array`; unset fields null or absent). Only the fields Kiwi maps are
 * listed; the generated classes carry the rest.
 */
import type { Long } from 'protobufjs';

export type Int64 = Long | number;
type Maybe<T> = T | null | undefined;

export interface AnyValue {
  stringValue?: Maybe<string>;
  boolValue?: Maybe<boolean>;
  intValue?: Maybe<Int64>;
  doubleValue?: Maybe<number>;
  arrayValue?: Maybe<{ values?: Maybe<AnyValue[]> }>;
  kvlistValue?: Maybe<{ values?: Maybe<KeyValue[]> }>;
  bytesValue?: Maybe<Uint8Array>;
}

export interface KeyValue {
  key?: Maybe<string>;
  value?: Maybe<AnyValue>;
}

export interface Resource {
  attributes?: Maybe<KeyValue[]>;
}

export interface InstrumentationScope {
  name?: Maybe<string>;
  version?: Maybe<string>;
}

// ---------------------------------------------------------------- traces

export const SPAN_KINDS = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'] as const;
export const STATUS_CODE = { unset: 0, ok: 1, error: 2 } as const;

export interface SpanEvent {
  timeUnixNano?: Maybe<Int64>;
  name?: Maybe<string>;
  attributes?: Maybe<KeyValue[]>;
}

export interface SpanLink {
  traceId?: Maybe<Uint8Array>;
  spanId?: Maybe<Uint8Array>;
  attributes?: Maybe<KeyValue[]>;
}

export interface Span {
  traceId?: Maybe<Uint8Array>;
  spanId?: Maybe<Uint8Array>;
  parentSpanId?: Maybe<Uint8Array>;
  name?: Maybe<string>;
  kind?: Maybe<number>;
  startTimeUnixNano?: Maybe<Int64>;
  endTimeUnixNano?: Maybe<Int64>;
  attributes?: Maybe<KeyValue[]>;
  events?: Maybe<SpanEvent[]>;
  links?: Maybe<SpanLink[]>;
  status?: Maybe<{ message?: Maybe<string>; code?: Maybe<number> }>;
}

export interface TracesRequest {
  resourceSpans?: Maybe<
    {
      resource?: Maybe<Resource>;
      scopeSpans?: Maybe<{ scope?: Maybe<InstrumentationScope>; spans?: Maybe<Span[]> }[]>;
    }[]
  >;
}

// ---------------------------------------------------------------- metrics

export const TEMPORALITY = { unspecified: 0, delta: 1, cumulative: 2 } as const;
/** DataPointFlags.FLAG_NO_RECORDED_VALUE: the point only marks that the series went stale. */
export const NO_RECORDED_VALUE = 1;

export interface NumberDataPoint {
  attributes?: Maybe<KeyValue[]>;
  startTimeUnixNano?: Maybe<Int64>;
  timeUnixNano?: Maybe<Int64>;
  asDouble?: Maybe<number>;
  asInt?: Maybe<Int64>;
  flags?: Maybe<number>;
}

export interface HistogramDataPoint {
  attributes?: Maybe<KeyValue[]>;
  startTimeUnixNano?: Maybe<Int64>;
  timeUnixNano?: Maybe<Int64>;
  count?: Maybe<Int64>;
  sum?: Maybe<number>;
  bucketCounts?: Maybe<Int64[]>;
  explicitBounds?: Maybe<number[]>;
  flags?: Maybe<number>;
  min?: Maybe<number>;
  max?: Maybe<number>;
}

export interface ExponentialBuckets {
  offset?: Maybe<number>;
  bucketCounts?: Maybe<Int64[]>;
}

export interface ExponentialHistogramDataPoint {
  attributes?: Maybe<KeyValue[]>;
  startTimeUnixNano?: Maybe<Int64>;
  timeUnixNano?: Maybe<Int64>;
  count?: Maybe<Int64>;
  sum?: Maybe<number>;
  scale?: Maybe<number>;
  zeroCount?: Maybe<Int64>;
  zeroThreshold?: Maybe<number>;
  positive?: Maybe<ExponentialBuckets>;
  negative?: Maybe<ExponentialBuckets>;
  flags?: Maybe<number>;
  min?: Maybe<number>;
  max?: Maybe<number>;
}

export interface SummaryDataPoint {
  attributes?: Maybe<KeyValue[]>;
  startTimeUnixNano?: Maybe<Int64>;
  timeUnixNano?: Maybe<Int64>;
  count?: Maybe<Int64>;
  sum?: Maybe<number>;
  quantileValues?: Maybe<{ quantile?: Maybe<number>; value?: Maybe<number> }[]>;
  flags?: Maybe<number>;
}

export interface Metric {
  name?: Maybe<string>;
  unit?: Maybe<string>;
  gauge?: Maybe<{ dataPoints?: Maybe<NumberDataPoint[]> }>;
  sum?: Maybe<{ dataPoints?: Maybe<NumberDataPoint[]>; aggregationTemporality?: Maybe<number>; isMonotonic?: Maybe<boolean> }>;
  histogram?: Maybe<{ dataPoints?: Maybe<HistogramDataPoint[]>; aggregationTemporality?: Maybe<number> }>;
  exponentialHistogram?: Maybe<{ dataPoints?: Maybe<ExponentialHistogramDataPoint[]>; aggregationTemporality?: Maybe<number> }>;
  summary?: Maybe<{ dataPoints?: Maybe<SummaryDataPoint[]> }>;
}

export interface MetricsRequest {
  resourceMetrics?: Maybe<
    {
      resource?: Maybe<Resource>;
      scopeMetrics?: Maybe<{ scope?: Maybe<InstrumentationScope>; metrics?: Maybe<Metric[]> }[]>;
    }[]
  >;
}

// ---------------------------------------------------------------- logs

export interface LogRecord {
  timeUnixNano?: Maybe<Int64>;
  observedTimeUnixNano?: Maybe<Int64>;
  severityNumber?: Maybe<number>;
  severityText?: Maybe<string>;
  body?: Maybe<AnyValue>;
  attributes?: Maybe<KeyValue[]>;
  traceId?: Maybe<Uint8Array>;
  spanId?: Maybe<Uint8Array>;
  eventName?: Maybe<string>;
}

export interface LogsRequest {
  resourceLogs?: Maybe<
    {
      resource?: Maybe<Resource>;
      scopeLogs?: Maybe<{ scope?: Maybe<InstrumentationScope>; logRecords?: Maybe<LogRecord[]> }[]>;
    }[]
  >;
}

export type Signal = 'traces' | 'metrics' | 'logs';

export interface RequestBySignal {
  traces: TracesRequest;
  metrics: MetricsRequest;
  logs: LogsRequest;
}
