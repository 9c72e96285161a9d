/**
 * The OTLP mapping, request by request, into a real SQLite store: what each kind of metric,
 * span and log record becomes, cumulative state across requests (deltas, rates, resets), partial
 * rejection, and that a request which fails to store changes nothing. Bodies are OTLP/JSON, and
 * the same bodies as protobuf (encoded with the generated code from the official protos).
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { startHttp } from '../src/mcp/http.js';
import { encodeRequestFromJson, MalformedRequestError } from '../src/ingest/otlp/proto.js';
import { OtlpReceiver, type OtlpOutcome } from '../src/ingest/otlp/receiver.js';
import { CumulativeState } from '../src/ingest/otlp/state.js';
import type { Signal } from '../src/ingest/otlp/types.js';
import { Store } from '../src/store/store.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir('kiwi-otlp-map-');
const stores: Store[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

const MINUTE = 60_000;
/** A whole minute, an hour ago. */
const BASE = Math.floor((Date.now() - 60 * MINUTE) / MINUTE) * MINUTE;
const ns = (ms: number) => (BigInt(Math.round(ms * 1000)) * 1000n).toString();

interface Setup {
  store: Store;
  receiver: OtlpReceiver;
  db: string;
  /** Moves the receiver's clock (it started at `receiverStartedAt`). */
  setNow(ms: number): void;
}

function setup(options: { receiverStartedAt?: number; maxSeries?: number } = {}): Setup {
  const db = join(tempDir(), 'kiwi.db');
  const store = new Store(db);
  stores.push(store);
  let now = options.receiverStartedAt ?? BASE - 10 * MINUTE;
  const receiver = new OtlpReceiver(store, { clock: () => now, maxSeries: options.maxSeries });
  return { store, receiver, db, setNow: (ms) => (now = ms) };
}

type Format = 'json' | 'protobuf';
function send(receiver: OtlpReceiver, signal: Signal, body: unknown, format: Format = 'json'): OtlpOutcome {
  const bytes = format === 'json' ? Buffer.from(JSON.stringify(body)) : Buffer.from(encodeRequestFromJson(signal, body));
  return receiver.ingest(signal, format, bytes);
}

const attr = (key: string, value: string | number | boolean) => ({
  key,
  value:
    typeof value === 'string'
      ? { stringValue: value }
      : typeof value === 'boolean'
        ? { boolValue: value }
        : Number.isInteger(value)
          ? { intValue: String(value) }
          : { doubleValue: value },
});

function metricsRequest(service: string | null, metrics: unknown[], resourceAttrs: ReturnType<typeof attr>[] = []): unknown {
  const attributes = service === null ? resourceAttrs : [attr('service.name', service), ...resourceAttrs];
  return { resourceMetrics: [{ resource: { attributes }, scopeMetrics: [{ scope: { name: 'test' }, metrics }] }] };
}

/** Every point of one series (by name, component and exact labels), oldest first. */
function points(store: Store, name: string, component: string, labels: Record<string, string> = {}): [number, number][] {
  const { series } = store.findSeries({ name, component });
  const match = series.find((s) => JSON.stringify(s.labels) === JSON.stringify(Object.fromEntries(Object.entries(labels).sort())));
  if (!match) return [];
  const { ts, values } = store.readPoints(match.id, 0, Number.MAX_SAFE_INTEGER);
  return ts.map((t, i) => [t, values[i]!]);
}

function seriesNames(store: Store, component: string): string[] {
  return store.findSeries({ component }).series.map((s) => s.name).sort();
}

describe.each<Format>(['json', 'protobuf'])('OTLP metrics mapping (%s)', (format) => {
  it('stores gauges and up-down counters as their values, with point attributes and service.instance.id as labels', () => {
    const { store, receiver } = setup();
    const outcome = send(
      receiver,
      'metrics',
      metricsRequest(
        'worker',
        [
          {
            name: 'process.memory.usage',
            unit: 'By',
            gauge: {
              dataPoints: [
                { timeUnixNano: ns(BASE), asInt: '150000000' },
                { timeUnixNano: ns(BASE + 10_000), asDouble: 151e6 },
              ],
            },
          },
          {
            name: 'queue.depth',
            sum: {
              aggregationTemporality: 2,
              isMonotonic: false,
              dataPoints: [{ startTimeUnixNano: ns(BASE - MINUTE), timeUnixNano: ns(BASE), asInt: '7', attributes: [attr('queue', 'jobs')] }],
            },
          },
        ],
        [attr('service.instance.id', 'w-1'), attr('host.name', 'box')],
      ),
      format,
    );
    expect(outcome).toMatchObject({ accepted: 3, rejected: 0, message: '' });
    expect(points(store, 'process.memory.usage', 'worker', { 'service.instance.id': 'w-1' })).toEqual([
      [BASE, 150e6],
      [BASE + 10_000, 151e6],
    ]);
    expect(points(store, 'queue.depth', 'worker', { queue: 'jobs', 'service.instance.id': 'w-1' })).toEqual([[BASE, 7]]);

    // No service.name: the OpenTelemetry default.
    send(receiver, 'metrics', metricsRequest(null, [{ name: 'x', gauge: { dataPoints: [{ timeUnixNano: ns(BASE), asDouble: 1 }] } }]), format);
    expect(points(store, 'x', 'unknown_service')).toEqual([[BASE, 1]]);
  });

  it('turns cumulative counters into deltas and per-second rates, across requests, through resets and repeats', () => {
    const { store, receiver } = setup();
    const start = BASE - MINUTE;
    const counter = (startMs: number, timeMs: number, value: number) =>
      metricsRequest('api', [
        {
          name: 'http.server.request.count',
          sum: {
            aggregationTemporality: 2,
            isMonotonic: true,
            dataPoints: [{ startTimeUnixNano: ns(startMs), timeUnixNano: ns(timeMs), asInt: String(value), attributes: [attr('http.route', '/pay')] }],
          },
        },
      ]);
    const labels = { 'http.route': '/pay' };
    // Began after the receiver started: counted from its start.
    expect(send(receiver, 'metrics', counter(start, BASE, 10), format).accepted).toBe(1);
    // +15 in 10 s.
    send(receiver, 'metrics', counter(start, BASE + 10_000, 25), format);
    // The exporter restarted (new start time): 4 since then.
    const restart = BASE + 15_000;
    send(receiver, 'metrics', counter(restart, BASE + 20_000, 4), format);
    // Went down without a new start: a reset too, counted in full.
    send(receiver, 'metrics', counter(restart, BASE + 30_000, 2), format);
    // The same point again (an exporter retry): nothing new.
    expect(send(receiver, 'metrics', counter(restart, BASE + 30_000, 2), format)).toMatchObject({ accepted: 1, rejected: 0 });

    expect(points(store, 'http.server.request.count', 'api', labels)).toEqual([
      [BASE, 10],
      [BASE + 10_000, 15],
      [BASE + 20_000, 4],
      [BASE + 30_000, 2],
    ]);
    expect(points(store, 'http.server.request.count.rate', 'api', labels)).toEqual([
      [BASE, 10 / 60],
      [BASE + 10_000, 1.5],
      [BASE + 20_000, 4 / 5],
      [BASE + 30_000, 2 / 10],
    ]);
  });

  it('only sets a baseline for a counter that began before the receiver started, and stores delta sums as they come', () => {
    const { store, receiver } = setup({ receiverStartedAt: BASE });
    const old = (timeMs: number, value: number) =>
      metricsRequest('api', [
        { name: 'bytes.sent', sum: { aggregationTemporality: 2, isMonotonic: true, dataPoints: [{ startTimeUnixNano: ns(BASE - 3_600_000), timeUnixNano: ns(timeMs), asDouble: value }] } },
      ]);
    send(receiver, 'metrics', old(BASE + 5_000, 1_000_000), format);
    expect(points(store, 'bytes.sent', 'api')).toEqual([]);
    send(receiver, 'metrics', old(BASE + 15_000, 1_000_500), format);
    expect(points(store, 'bytes.sent', 'api')).toEqual([[BASE + 15_000, 500]]);
    expect(points(store, 'bytes.sent.rate', 'api')).toEqual([[BASE + 15_000, 50]]);

    send(
      receiver,
      'metrics',
      metricsRequest('api', [
        { name: 'jobs.done', sum: { aggregationTemporality: 1, isMonotonic: true, dataPoints: [{ startTimeUnixNano: ns(BASE), timeUnixNano: ns(BASE + 4_000), asInt: '8' }] } },
      ]),
      format,
    );
    expect(points(store, 'jobs.done', 'api')).toEqual([[BASE + 4_000, 8]]);
    expect(points(store, 'jobs.done.rate', 'api')).toEqual([[BASE + 4_000, 2]]);
  });

  it('turns cumulative histograms into per-interval count, sum and p50/p95/p99 estimated from the buckets', () => {
    const { store, receiver } = setup();
    const bounds = [0, 5, 10, 25, 50, 100];
    const hist = (timeMs: number, counts: number[], sum: number, extra: Record<string, number> = {}) =>
      metricsRequest('mcp-search', [
        {
          name: 'mcp.server.operation.duration',
          unit: 's',
          histogram: {
            aggregationTemporality: 2,
            dataPoints: [
              {
                startTimeUnixNano: ns(BASE - MINUTE),
                timeUnixNano: ns(timeMs),
                count: String(counts.reduce((a, b) => a + b, 0)),
                sum,
                bucketCounts: counts.map(String),
                explicitBounds: bounds,
                attributes: [attr('gen_ai.tool.name', 'web_search')],
                ...extra,
              },
            ],
          },
        },
      ]);
    const labels = { 'gen_ai.tool.name': 'web_search' };
    send(receiver, 'metrics', hist(BASE, [0, 10, 20, 30, 0, 0, 0], 900, { min: 1, max: 24 }), format);
    send(receiver, 'metrics', hist(BASE + 10_000, [0, 10, 20, 30, 10, 0, 0], 1300, { min: 1, max: 40 }), format);
    const name = 'mcp.server.operation.duration';
    expect(points(store, `${name}.count`, 'mcp-search', labels)).toEqual([
      [BASE, 60],
      [BASE + 10_000, 10],
    ]);
    expect(points(store, `${name}.sum`, 'mcp-search', labels)).toEqual([
      [BASE, 900],
      [BASE + 10_000, 400],
    ]);
    // First interval (the whole period since start): ranks 30, 57, 59.4 of 60, interpolated in
    // (5,10] and (10,25]; p99 (24.7) is clamped to the observed max, 24.
    const p = (suffix: string) => points(store, `${name}.${suffix}`, 'mcp-search', labels).map(([, v]) => v);
    expect(p('p50')[0]).toBeCloseTo(10, 9);
    expect(p('p95')[0]).toBeCloseTo(23.5, 9);
    expect(p('p99')[0]).toBe(24);
    expect(p('min')).toEqual([1]);
    expect(p('max')).toEqual([24]);
    // Second interval: the 10 new observations all fell in (25, 50].
    expect(p('p50')[1]).toBeCloseTo(37.5, 9);
    expect(p('p95')[1]).toBeCloseTo(48.75, 9);
    expect(p('p99')[1]).toBeCloseTo(49.75, 9);
  });

  it('maps exponential histograms (delta, and cumulative across a change of scale) and summaries', () => {
    const { store, receiver } = setup();
    send(
      receiver,
      'metrics',
      metricsRequest('agent', [
        {
          name: 'gen_ai.client.operation.duration',
          exponentialHistogram: {
            aggregationTemporality: 1,
            dataPoints: [
              { startTimeUnixNano: ns(BASE - 10_000), timeUnixNano: ns(BASE), count: '4', sum: 14, scale: 0, zeroCount: '0', positive: { offset: 0, bucketCounts: ['1', '2', '1'] } },
            ],
          },
        },
      ]),
      format,
    );
    // Scale 0: buckets (1,2], (2,4], (4,8]; ranks 2, 3.8, 3.96 of 4.
    const v = (n: string, c = 'agent') => points(store, n, c).map(([, x]) => x);
    expect(v('gen_ai.client.operation.duration.count')).toEqual([4]);
    expect(v('gen_ai.client.operation.duration.p50')[0]).toBeCloseTo(3, 9);
    expect(v('gen_ai.client.operation.duration.p95')[0]).toBeCloseTo(7.2, 9);
    expect(v('gen_ai.client.operation.duration.p99')[0]).toBeCloseTo(7.84, 9);

    // Cumulative: scale 1 first, then the exporter lowers the scale to 0 (buckets merge pairwise).
    const exp = (timeMs: number, scale: number, offset: number, counts: number[]) =>
      metricsRequest('agent', [
        {
          name: 'latency',
          exponentialHistogram: {
            aggregationTemporality: 2,
            dataPoints: [
              {
                startTimeUnixNano: ns(BASE - MINUTE),
                timeUnixNano: ns(timeMs),
                count: String(counts.reduce((a, b) => a + b, 0)),
                scale,
                zeroCount: '0',
                positive: { offset, bucketCounts: counts.map(String) },
              },
            ],
          },
        },
      ]);
    // Scale 1, indexes 2..3: (2, 2.83], (2.83, 4].
    send(receiver, 'metrics', exp(BASE, 1, 2, [3, 1]), format);
    // Scale 0, indexes 1..2: (2,4] holds the 4 earlier plus 0 new; (4,8] holds 6 new.
    send(receiver, 'metrics', exp(BASE + 10_000, 0, 1, [4, 6]), format);
    expect(v('latency.count')).toEqual([4, 6]);
    // Second interval: all 6 new observations in (4, 8]; p50 = 4 + 4 * 0.5.
    expect(v('latency.p50')[1]).toBeCloseTo(6, 9);

    send(
      receiver,
      'metrics',
      metricsRequest('legacy', [
        {
          name: 'rpc.latency',
          summary: {
            dataPoints: [
              {
                startTimeUnixNano: ns(BASE - MINUTE),
                timeUnixNano: ns(BASE),
                count: '100',
                sum: 250,
                quantileValues: [
                  { quantile: 0, value: 0.1 },
                  { quantile: 0.5, value: 2 },
                  { quantile: 0.99, value: 9 },
                  { quantile: 1, value: 12 },
                ],
              },
            ],
          },
        },
      ]),
      format,
    );
    expect(seriesNames(store, 'legacy')).toEqual(['rpc.latency.count', 'rpc.latency.max', 'rpc.latency.min', 'rpc.latency.p50', 'rpc.latency.p99', 'rpc.latency.sum']);
    expect(v('rpc.latency.p99', 'legacy')).toEqual([9]);
    expect(v('rpc.latency.count', 'legacy')).toEqual([100]);
  });

  it('stores each series with its unit: the metric\'s own, per second for a rate, 1 for a count; none when missing or not a unit', () => {
    const { store, receiver } = setup();
    const start = ns(BASE - MINUTE);
    const outcome = send(
      receiver,
      'metrics',
      metricsRequest('api', [
        { name: 'process.memory.usage', unit: 'By', gauge: { dataPoints: [{ timeUnixNano: ns(BASE), asInt: '100' }] } },
        {
          name: 'http.server.requests',
          unit: '{request}',
          sum: { aggregationTemporality: 2, isMonotonic: true, dataPoints: [{ startTimeUnixNano: start, timeUnixNano: ns(BASE), asInt: '12' }] },
        },
        {
          name: 'http.server.request.duration',
          unit: 'ms',
          histogram: {
            aggregationTemporality: 1,
            dataPoints: [{ startTimeUnixNano: start, timeUnixNano: ns(BASE), count: '3', sum: 60, min: 10, max: 30, bucketCounts: ['1', '2'], explicitBounds: [15] }],
          },
        },
        {
          name: 'rpc.latency',
          unit: 's',
          summary: { dataPoints: [{ startTimeUnixNano: start, timeUnixNano: ns(BASE), count: '4', sum: 2, quantileValues: [{ quantile: 0.5, value: 0.4 }] }] },
        },
        { name: 'queue.depth', gauge: { dataPoints: [{ timeUnixNano: ns(BASE), asInt: '3' }] } },
        { name: 'odd.unit', unit: 'milli seconds', gauge: { dataPoints: [{ timeUnixNano: ns(BASE), asInt: '4' }] } },
      ]),
      format,
    );
    expect(outcome).toMatchObject({ accepted: 6, rejected: 0 });
    const units = Object.fromEntries(store.findSeries({ component: 'api' }).series.map((s) => [s.name, s.unit]));
    expect(units).toEqual({
      'process.memory.usage': 'By',
      'http.server.requests': '{request}',
      'http.server.requests.rate': '{request}/s',
      'http.server.request.duration.count': '1',
      'http.server.request.duration.sum': 'ms',
      'http.server.request.duration.p50': 'ms',
      'http.server.request.duration.p95': 'ms',
      'http.server.request.duration.p99': 'ms',
      'http.server.request.duration.min': 'ms',
      'http.server.request.duration.max': 'ms',
      'rpc.latency.p50': 's',
      'rpc.latency.count': '1',
      'rpc.latency.sum': 's',
      'queue.depth': null,
      'odd.unit': null,
    });
    // a later export in another unit changes the series' unit; one without a unit leaves it
    send(receiver, 'metrics', metricsRequest('api', [{ name: 'process.memory.usage', unit: 'MiBy', gauge: { dataPoints: [{ timeUnixNano: ns(BASE + 1000), asInt: '1' }] } }]), format);
    send(receiver, 'metrics', metricsRequest('api', [{ name: 'process.memory.usage', gauge: { dataPoints: [{ timeUnixNano: ns(BASE + 2000), asInt: '1' }] } }]), format);
    expect(store.findSeries({ name: 'process.memory.usage' }).series).toMatchObject([{ unit: 'MiBy' }]);
  });

  it('stores the good data points of a request and rejects the bad ones, saying which and why', () => {
    const { store, receiver } = setup();
    const outcome = send(
      receiver,
      'metrics',
      metricsRequest('api', [
        {
          name: 'cpu',
          gauge: {
            dataPoints: [
              { timeUnixNano: ns(BASE), asDouble: 0.5 },
              { timeUnixNano: '0', asDouble: 0.6 },
              { timeUnixNano: ns(BASE + 1000), asDouble: 'NaN' },
              { timeUnixNano: ns(BASE + 2000), asDouble: 0.7, flags: 1 },
              // a day and more ahead of the clock: a unit or time-zone mistake, not the newest value
              { timeUnixNano: ns(Date.now() + 2 * 86_400_000), asDouble: 0.8 },
            ],
          },
        },
        {
          name: 'latency',
          histogram: { aggregationTemporality: 1, dataPoints: [{ timeUnixNano: ns(BASE), count: '3', bucketCounts: ['1', '2'], explicitBounds: [1, 2, 3] }] },
        },
      ]),
      format,
    );
    expect(outcome.rejected).toBe(4);
    expect(outcome.accepted).toBe(2);
    expect(outcome.message).toMatch(/^4 data points rejected: /);
    expect(outcome.message).toMatch(/metric "cpu": time_unix_nano \S+ is more than a day ahead of this machine's clock/);
    expect(outcome.message).toContain('metric "cpu": data point without time_unix_nano');
    expect(outcome.message).toContain('metric "cpu": value NaN is not a finite number');
    expect(outcome.message).toContain('metric "latency": 2 bucket_counts for 3 explicit_bounds (expected 4)');
    // The good point is stored; the no-recorded-value point is accepted but has nothing to store.
    expect(points(store, 'cpu', 'api')).toEqual([[BASE, 0.5]]);
    expect(seriesNames(store, 'api')).toEqual(['cpu']);
  });
});

describe.each<Format>(['json', 'protobuf'])('OTLP spans and logs mapping (%s)', (format) => {
  const traceId = '5b8efff798038103d269b633813fc60c';
  it('maps spans: ids, parent, duration, status, kind, events, links; MCP tool calls named tools/call <tool>; error.type means error', () => {
    const { store, receiver } = setup();
    const body = {
      resourceSpans: [
        {
          resource: { attributes: [attr('service.name', 'mcp-filesystem'), attr('service.version', '1.4.2'), attr('process.pid', 42)] },
          scopeSpans: [
            {
              scope: { name: '@acme/mcp-instrumentation' },
              spans: [
                {
                  traceId,
                  spanId: 'eee19b7ec3c1b174',
                  parentSpanId: 'eee19b7ec3c1b173',
                  name: 'mcp.request',
                  kind: 2,
                  startTimeUnixNano: ns(BASE),
                  endTimeUnixNano: ns(BASE + 12.5),
                  attributes: [attr('mcp.method.name', 'tools/call'), attr('gen_ai.tool.name', 'read_file'), attr('error.type', 'tool_error')],
                  links: [{ traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', attributes: [attr('why', 'retry')] }],
                  events: [
                    { name: 'exception', timeUnixNano: ns(BASE + 10), attributes: [attr('exception.type', 'ENOENT'), attr('exception.message', 'no such file'), attr('exception.stacktrace', 'at read')] },
                  ],
                  status: {},
                },
                {
                  traceId,
                  spanId: 'eee19b7ec3c1b173',
                  name: 'invoke_agent coder',
                  kind: 1,
                  startTimeUnixNano: ns(BASE - 5),
                  endTimeUnixNano: ns(BASE + 100),
                  status: { code: 1 },
                },
                // Rejected: a trace id of the wrong length, and no end time.
                { traceId: 'abcd', spanId: 'eee19b7ec3c1b175', name: 'bad', startTimeUnixNano: ns(BASE), endTimeUnixNano: ns(BASE + 1) },
                { traceId, spanId: 'eee19b7ec3c1b176', name: 'unfinished', startTimeUnixNano: ns(BASE) },
                { traceId, spanId: 'eee19b7ec3c1b177', name: 'future', startTimeUnixNano: ns(Date.now() + 3 * 86_400_000), endTimeUnixNano: ns(Date.now() + 3 * 86_400_000 + 5) },
              ],
            },
          ],
        },
      ],
    };
    const outcome = send(receiver, 'traces', body, format);
    expect(outcome.accepted).toBe(2);
    expect(outcome.rejected).toBe(3);
    expect(outcome.message).toMatch(/span eee19b7ec3c1b177 "future": start_time_unix_nano \S+ is more than a day ahead/);
    expect(outcome.message).toContain('span eee19b7ec3c1b175 "bad": trace_id must be 16 bytes');
    expect(outcome.message).toContain('span eee19b7ec3c1b176 "unfinished": end_time_unix_nano is missing');

    const spans = store.listSpans({ trace_id: traceId }, 10);
    expect(spans).toHaveLength(2);
    const tool = spans.find((s) => s.span_id === 'eee19b7ec3c1b174')!;
    expect(tool).toMatchObject({
      trace_id: traceId,
      parent_id: 'eee19b7ec3c1b173',
      name: 'tools/call read_file',
      component: 'mcp-filesystem',
      start: BASE,
      duration_ms: 12.5,
      status: 'error',
    });
    expect(tool.attrs).toMatchObject({
      'otel.span.name': 'mcp.request',
      'span.kind': 'server',
      'otel.scope.name': '@acme/mcp-instrumentation',
      'service.version': '1.4.2',
      'error.type': 'tool_error',
      'otel.links': [{ trace_id: '0af7651916cd43dd8448eb211c80319c', span_id: 'b7ad6b7169203331', attrs: { why: 'retry' } }],
      'otel.events': [{ name: 'exception', ts: BASE + 10, attrs: { 'exception.type': 'ENOENT', 'exception.message': 'no such file' } }],
    });
    expect(tool.attrs['process.pid']).toBeUndefined();
    const agent = spans.find((s) => s.span_id === 'eee19b7ec3c1b173')!;
    expect(agent).toMatchObject({ parent_id: null, name: 'invoke_agent coder', status: 'ok', duration_ms: 105 });

    // The exception became an error event the error checks read.
    const errors = store.searchEvents({ kinds: ['error'] }, 10).events;
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ ts: BASE + 10, component: 'mcp-filesystem', level: 'error', message: 'ENOENT: no such file' });
    expect(errors[0]!.attrs).toMatchObject({ trace_id: traceId, span_id: 'eee19b7ec3c1b174', 'error.type': 'ENOENT', 'exception.stacktrace': 'at read' });

    // Request stats read the spans per component, as the latency and error checks do.
    expect(store.requestStats('mcp-filesystem', BASE - MINUTE, BASE + MINUTE)).toMatchObject({ count: 2, errors: 1, error_rate: 0.5 });
  });

  it('maps log records to events: level from severity, kind from event name / kiwi.event.kind / severity, body as message', () => {
    const { store, receiver } = setup();
    const log = (over: Record<string, unknown>) => ({ timeUnixNano: ns(BASE), ...over });
    const outcome = send(
      receiver,
      'logs',
      {
        resourceLogs: [
          {
            resource: { attributes: [attr('service.name', 'checkout')] },
            scopeLogs: [
              {
                scope: { name: 'app' },
                logRecords: [
                  log({ severityNumber: 9, severityText: 'INFO', body: { stringValue: 'started' } }),
                  log({
                    timeUnixNano: ns(BASE + 1),
                    severityNumber: 17,
                    body: { stringValue: 'payment gateway timeout' },
                    attributes: [attr('exception.type', 'TimeoutError')],
                    traceId,
                    spanId: 'eee19b7ec3c1b174',
                  }),
                  log({ timeUnixNano: ns(BASE + 2), severityNumber: 13, eventName: 'deploy', body: { kvlistValue: { values: [attr('version', '2.0.1')] } }, attributes: [attr('version', '2.0.1')] }),
                  log({ timeUnixNano: ns(BASE + 3), severityText: 'warning', attributes: [attr('kiwi.event.kind', 'permission'), attr('decision', 'deny')], body: { stringValue: 'denied write:fs' } }),
                  // No time: the observed time is used.
                  { observedTimeUnixNano: ns(BASE + 4), severityNumber: 21, body: { stringValue: 'out of memory' } },
                  // Rejected: dated 2300.
                  log({ timeUnixNano: '10413792000000000000', body: { stringValue: 'from the future' } }),
                ],
              },
            ],
          },
        ],
      },
      format,
    );
    expect(outcome).toMatchObject({ accepted: 5, rejected: 1 });
    expect(outcome.message).toMatch(/^1 log record rejected: log record \d+ ms: time_unix_nano is outside 1970\.\.2200$/);
    const events = store.searchEvents({ component: 'checkout' }, 10).events.sort((a, b) => a.ts - b.ts);
    expect(events.map((e) => [e.ts - BASE, e.kind, e.level, e.message])).toEqual([
      [0, 'log', 'info', 'started'],
      [1, 'error', 'error', 'payment gateway timeout'],
      [2, 'deploy', 'warn', '{"version":"2.0.1"}'],
      [3, 'permission', 'warn', 'denied write:fs'],
      [4, 'error', 'fatal', 'out of memory'],
    ]);
    expect(events[1]!.attrs).toMatchObject({ trace_id: traceId, span_id: 'eee19b7ec3c1b174', 'error.type': 'TimeoutError', 'otel.scope.name': 'app' });
    expect(events[2]!.attrs).toMatchObject({ 'event.name': 'deploy', version: '2.0.1' });
    expect(events[3]!.attrs).toMatchObject({ decision: 'deny', 'otel.severity_text': 'warning' });
  });
});

describe('OTLP request atomicity', () => {
  it('stores nothing of a request the store refuses, and leaves the cumulative state as it was for the retry', () => {
    const { store, receiver, db } = setup();
    const counter = (timeMs: number, value: number) =>
      metricsRequest('api', [
        { name: 'requests', sum: { aggregationTemporality: 2, isMonotonic: true, dataPoints: [{ startTimeUnixNano: ns(BASE - MINUTE), timeUnixNano: ns(timeMs), asInt: String(value) }] } },
      ]);
    send(receiver, 'metrics', counter(BASE, 10));

    // Another connection holds the write lock; this store gives up quickly instead of waiting 10 s.
    store.db.pragma('busy_timeout = 20');
    const other = new Database(db);
    other.prepare('BEGIN IMMEDIATE').run();
    try {
      expect(() => send(receiver, 'metrics', counter(BASE + 10_000, 30))).toThrow(/locked|busy/i);
    } finally {
      other.prepare('ROLLBACK').run();
      other.close();
    }
    expect(points(store, 'requests', 'api')).toEqual([[BASE, 10]]);

    // The retry counts the increase once, against the point before the failed request.
    send(receiver, 'metrics', counter(BASE + 10_000, 30));
    expect(points(store, 'requests', 'api')).toEqual([
      [BASE, 10],
      [BASE + 10_000, 20],
    ]);
  });

  it('also bounds the remembered histogram buckets in all, forgetting the least recently updated series first', () => {
    let now = 1_000;
    const state = new CumulativeState(100, () => now, 25);
    const histogram = (buckets: number) => ({ kind: 'histogram' as const, start: 1, time: 2, count: 1, sum: 1, bounds: new Array<number>(buckets - 1).fill(0), counts: new Array<number>(buckets).fill(0) });
    const changes = state.begin();
    changes.set('a', histogram(6)); // weight 1 + 6 + 5 = 12
    changes.set('b', histogram(6));
    changes.commit();
    expect(state.size).toBe(2);
    expect(state.baseline).toBe(1_000);
    now = 5_000;
    const more = state.begin();
    more.set('b', histogram(6));
    more.set('c', histogram(3)); // 24 + 6 > 25: 'a', the least recently updated, goes
    more.commit();
    expect(state.size).toBe(2);
    expect(state.peek('a')).toBeUndefined();
    expect(state.peek('b')).toBeDefined();
    expect(state.baseline).toBe(5_000);
  });

  it('keeps at most maxSeries cumulative series, forgetting the least recently updated', () => {
    const { store, receiver, setNow } = setup({ maxSeries: 2 });
    setNow(BASE + 1_000);
    const counter = (route: string, timeMs: number, value: number) => ({
      name: 'hits',
      sum: {
        aggregationTemporality: 2,
        isMonotonic: true,
        dataPoints: [{ startTimeUnixNano: ns(BASE - MINUTE), timeUnixNano: ns(timeMs), asInt: String(value), attributes: [attr('route', route)] }],
      },
    });
    send(receiver, 'metrics', metricsRequest('api', [counter('/a', BASE, 1), counter('/b', BASE, 1), counter('/c', BASE, 1)]));
    expect(receiver.rememberedSeries).toBe(2);
    // /a was forgotten: its next point only sets a new baseline (it may have been counted before).
    send(receiver, 'metrics', metricsRequest('api', [counter('/a', BASE + 10_000, 5), counter('/c', BASE + 10_000, 4)]));
    expect(points(store, 'hits', 'api', { route: '/a' })).toEqual([[BASE, 1]]);
    expect(points(store, 'hits', 'api', { route: '/c' })).toEqual([
      [BASE, 1],
      [BASE + 10_000, 3],
    ]);
  });
});

describe('OTLP over HTTP, in-process (startHttp with only the receiver)', () => {
  it('answers 503 with Retry-After while the store is locked, stores nothing, and 200 on the retry', async () => {
    const { store, receiver, db } = setup();
    const http = await startHttp({ host: '127.0.0.1', port: 0, otlp: receiver });
    try {
      expect(http.url).toBe(http.baseUrl);
      const post = (body: unknown) =>
        fetch(`${http.baseUrl}/v1/logs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const logs = {
        resourceLogs: [{ resource: { attributes: [attr('service.name', 'svc')] }, scopeLogs: [{ logRecords: [{ timeUnixNano: ns(BASE), body: { stringValue: 'hello' } }] }] }],
      };
      store.db.pragma('busy_timeout = 20');
      const other = new Database(db);
      other.prepare('BEGIN IMMEDIATE').run();
      let busy: Response;
      try {
        busy = await post(logs);
      } finally {
        other.prepare('ROLLBACK').run();
        other.close();
      }
      expect(busy.status).toBe(503);
      expect(busy.headers.get('retry-after')).toBe('1');
      expect(await busy.json()).toEqual({ code: 14, message: 'the store is busy; retry' });
      expect(store.searchEvents({}, 10).events).toHaveLength(0);

      const retry = await post(logs);
      expect(retry.status).toBe(200);
      expect(await retry.json()).toEqual({});
      expect(store.searchEvents({}, 10).events.map((e) => e.message)).toEqual(['hello']);

      // Only OTLP is served here.
      expect((await fetch(`${http.baseUrl}/mcp`, { method: 'POST' })).status).toBe(404);
      expect(await (await fetch(`${http.baseUrl}/healthz`)).json()).toEqual({ status: 'ok' });
    } finally {
      await http.close();
    }
  });
});

describe('OTLP decoding of damaged bodies', () => {
  it('answers every damaged protobuf or JSON body with a decode error (400) or a stored/partial result, never an internal error', () => {
    const { receiver } = setup();
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const samples: [Signal, unknown][] = [
      [
        'traces',
        {
          resourceSpans: [
            {
              resource: { attributes: [attr('service.name', 'fuzz')] },
              scopeSpans: [
                {
                  spans: [
                    {
                      traceId: '5b8efff798038103d269b633813fc60c',
                      spanId: 'eee19b7ec3c1b174',
                      name: 'x',
                      startTimeUnixNano: ns(BASE),
                      endTimeUnixNano: ns(BASE + 1),
                      attributes: [attr('a', 1), { key: 'arr', value: { arrayValue: { values: [{ stringValue: 'v' }] } } }],
                      events: [{ name: 'exception', timeUnixNano: ns(BASE), attributes: [attr('exception.type', 'E')] }],
                    },
                  ],
                },
              ],
            },
          ],
        },
      ],
      [
        'metrics',
        metricsRequest('fuzz', [
          { name: 'h', histogram: { aggregationTemporality: 2, dataPoints: [{ startTimeUnixNano: ns(BASE - 1000), timeUnixNano: ns(BASE), count: '3', sum: 3, bucketCounts: ['1', '2'], explicitBounds: [1] }] } },
          { name: 'e', exponentialHistogram: { aggregationTemporality: 1, dataPoints: [{ timeUnixNano: ns(BASE), count: '2', scale: 3, positive: { offset: -2, bucketCounts: ['1', '1'] } }] } },
          { name: 'g', gauge: { dataPoints: [{ timeUnixNano: ns(BASE), asDouble: 1 }] } },
        ]),
      ],
      ['logs', { resourceLogs: [{ scopeLogs: [{ logRecords: [{ timeUnixNano: ns(BASE), severityNumber: 17, body: { kvlistValue: { values: [attr('k', 'v')] } } }] }] }] }],
    ];
    let decodeErrors = 0;
    let answered = 0;
    for (const [signal, json] of samples) {
      const proto = Buffer.from(encodeRequestFromJson(signal, json));
      const text = Buffer.from(JSON.stringify(json));
      for (let i = 0; i < 400; i++) {
        for (const [format, original] of [['protobuf', proto], ['json', text]] as const) {
          const body = Buffer.from(original);
          const flips = 1 + Math.floor(random() * 3);
          for (let f = 0; f < flips; f++) body[Math.floor(random() * body.length)] = Math.floor(random() * 256);
          const cut = random() < 0.2 ? body.subarray(0, Math.floor(random() * body.length)) : body;
          try {
            receiver.ingest(signal, format, cut);
            answered++;
          } catch (err) {
            if (!(err instanceof MalformedRequestError)) throw new Error(`${signal}/${format} body ${cut.toString('hex')}: ${(err as Error).stack}`);
            decodeErrors++;
          }
        }
      }
    }
    // Both outcomes happen: the test exercised the decoder's refusals and the mapping of odd values.
    expect(decodeErrors).toBeGreaterThan(100);
    expect(answered).toBeGreaterThan(100);
  });
});

describe('cumulative state: a series seen for the first time', () => {
  it('counts from its start when the start is after the receiver started, even an empty first interval', async () => {
    const { cumulativeStep } = await import('../src/ingest/otlp/state.js');
    const never = () => false;
    // started after the receiver, collected later: the whole value is new
    expect(cumulativeStep(undefined, 1_000, 2_000, 500, never)).toEqual({ kind: 'delta', since: 1_000, whole: true });
    // started and collected in the same instant (the SDK's first flush): still new, not a baseline
    expect(cumulativeStep(undefined, 1_000, 1_000, 500, never)).toEqual({ kind: 'delta', since: 1_000, whole: true });
    // started before the receiver: some of it may have been counted by an earlier Kiwi, so it only seeds
    expect(cumulativeStep(undefined, 400, 2_000, 500, never)).toEqual({ kind: 'seed' });
  });
});
