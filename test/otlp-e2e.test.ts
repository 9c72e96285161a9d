/**
 * End to end: the built CLI receives OTLP/HTTP from the OpenTelemetry JS SDK's own exporters
 * (traces, metrics, logs; protobuf and JSON; plain and gzip) over 127.0.0.1, and the SQLite file
 * is read afterwards to check what landed. Raw requests probe the protocol answers (400, 413,
 * 415, 405, partial success) and that a refused request stores nothing. `kiwi serve --http`
 * serves the same endpoints beside /mcp, behind the same Host and token rules.
 */
import type { ChildProcess } from 'node:child_process';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { context, diag, DiagLogLevel, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { SeverityNumber } from '@opentelemetry/api-logs';
import { OTLPLogExporter as JsonLogExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { OTLPLogExporter as ProtoLogExporter } from '@opentelemetry/exporter-logs-otlp-proto';
import { AggregationTemporalityPreference, OTLPMetricExporter as JsonMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPMetricExporter as ProtoMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import { OTLPTraceExporter as JsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtoTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { InMemoryLogRecordExporter, LoggerProvider, SimpleLogRecordProcessor } from '@opentelemetry/sdk-logs';
import { AggregationType, InstrumentType, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import Database from 'better-sqlite3';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeRequestFromJson } from '../src/ingest/otlp/proto.js';
import { Store } from '../src/store/store.js';
import { CLI, killedAfterEachTest, startListening } from './helpers/cli.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir('kiwi-otlp-e2e-');

// ------------------------------------------------------------------ processes

const children = killedAfterEachTest();

interface Served {
  child: ChildProcess;
  port: number;
  base: string;
  db: string;
  stderr(): string;
}

/** Starts the built CLI and resolves with the URL from its "listening" line. */
async function startKiwi(args: string[], db: string, env: NodeJS.ProcessEnv = {}): Promise<Served> {
  const served = await startListening([...args, '--port', '0', '--db', db], { KIWI_TOKEN: '', ...env });
  children.push(served.child);
  const port = Number(new URL(served.url).port);
  return { child: served.child, port, base: `http://127.0.0.1:${port}`, db, stderr: served.stderr };
}

const otlp = (db: string, env: NodeJS.ProcessEnv = {}) => startKiwi(['otlp'], db, env);

// ------------------------------------------------------------------ reading the store

function counts(db: string): { spans: number; events: number; points: number } {
  const sqlite = new Database(db, { readonly: true, fileMustExist: true });
  try {
    const one = (table: string) => sqlite.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number;
    return { spans: one('spans'), events: one('events'), points: one('points') };
  } finally {
    sqlite.close();
  }
}

function withStore<T>(db: string, fn: (store: Store) => T): T {
  const store = new Store(db);
  try {
    return fn(store);
  } finally {
    store.close();
  }
}

function seriesValues(store: Store, name: string, component: string, labels: Record<string, string> = {}): number[] {
  const { series } = store.findSeries({ name, component, labels });
  expect(series, `${name} ${component} ${JSON.stringify(labels)}`).toHaveLength(1);
  return store.readPoints(series[0]!.id, 0, Number.MAX_SAFE_INTEGER).values;
}

// ------------------------------------------------------------------ raw HTTP

interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

function raw(
  port: number,
  options: { method?: string; path?: string; headers?: Record<string, string>; body?: Buffer | string; chunks?: Buffer[] },
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const req = httpRequest(
      { host: '127.0.0.1', port, method: options.method ?? 'POST', path: options.path ?? '/v1/traces', headers: { host: `127.0.0.1:${port}`, ...options.headers }, agent: false },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => {
          settled = true;
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) });
        });
      },
    );
    req.on('error', (err) => {
      if (!settled) reject(err);
    });
    req.setTimeout(30_000, () => req.destroy(new Error('raw request timed out')));
    if (options.chunks) {
      for (const c of options.chunks) req.write(c);
      req.end();
    } else req.end(options.body);
  });
}

/** google.rpc.Status, to read error bodies answered in protobuf. */
const StatusType = new protobuf.Type('Status').add(new protobuf.Field('code', 1, 'int32')).add(new protobuf.Field('message', 2, 'string'));
new protobuf.Root().define('google.rpc').add(StatusType);
const decodeStatus = (body: Buffer) => StatusType.toObject(StatusType.decode(body)) as { code?: number; message?: string };

// ------------------------------------------------------------------ what the SDK exporters tell us

const MINUTE = 60_000;
const BASE = Math.floor((Date.now() - 10 * MINUTE) / MINUTE) * MINUTE;
const warnings: string[] = [];
beforeAll(() => {
  const note = (...args: unknown[]) => warnings.push(args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' '));
  diag.setLogger({ error: note, warn: note, info: () => {}, debug: () => {}, verbose: () => {} }, DiagLogLevel.WARN);
});
afterAll(() => diag.disable());

/** Exports finished spans through a real OTLP exporter and resolves with its result. */
function exportWith<T>(exporter: { export(items: T[], done: (result: { code: number; error?: Error }) => void): void }, items: T[]): Promise<{ code: number; error?: Error }> {
  return new Promise((resolve) => exporter.export(items, resolve));
}

const SUCCESS = 0;

// ------------------------------------------------------------------ tests

describe('kiwi otlp, fed by the OpenTelemetry JS SDK exporters', () => {
  it('stores spans sent as protobuf (gzip) and as JSON, linked across services, with partial success understood by the exporter', async () => {
    const served = await otlp(join(tempDir(), 'kiwi.db'));
    const memory = new InMemorySpanExporter();
    const providerFor = (service: string) =>
      new BasicTracerProvider({ resource: resourceFromAttributes({ 'service.name': service, 'service.version': '3.1.0' }), spanProcessors: [new SimpleSpanProcessor(memory)] });

    // The agent thread, recorded by the agent.
    const agent = providerFor('agent-coder').getTracer('agent');
    const thread = agent.startSpan('invoke_agent coder', {
      kind: SpanKind.INTERNAL,
      startTime: new Date(BASE),
      attributes: { 'gen_ai.operation.name': 'invoke_agent', 'gen_ai.agent.name': 'coder' },
    });
    const threadContext = trace.setSpan(ROOT_CONTEXT, thread);
    const agentSpans = () => memory.getFinishedSpans().splice(0);
    thread.end(new Date(BASE + 900));
    const fromAgent = agentSpans();

    // The tool call it made, recorded by the MCP server that served it (another service).
    const server = providerFor('mcp-filesystem').getTracer('mcp');
    const call = server.startSpan(
      'tools/call read_file',
      {
        kind: SpanKind.SERVER,
        startTime: new Date(BASE + 100),
        attributes: { 'mcp.method.name': 'tools/call', 'gen_ai.tool.name': 'read_file', 'error.type': 'tool_error' },
        links: [{ context: thread.spanContext(), attributes: { 'link.reason': 'caller' } }],
      },
      threadContext,
    );
    call.recordException(Object.assign(new Error('ENOENT: no such file'), { name: 'FileNotFound' }), new Date(BASE + 300));
    call.setStatus({ code: SpanStatusCode.ERROR, message: 'tool failed' });
    call.end(new Date(BASE + 350));
    // One the receiver must refuse: dated 2300.
    server.startSpan('from the future', { startTime: new Date('2300-01-01T00:00:00Z') }).end(new Date('2300-01-01T00:00:01Z'));
    const fromServer = memory.getFinishedSpans().splice(0);
    expect(fromServer).toHaveLength(2);

    const proto = new ProtoTraceExporter({ url: `${served.base}/v1/traces`, compression: 'gzip' as NonNullable<ConstructorParameters<typeof ProtoTraceExporter>[0]>['compression'] });
    const json = new JsonTraceExporter({ url: `${served.base}/v1/traces` });
    warnings.length = 0;
    expect((await exportWith(proto, fromAgent)).code).toBe(SUCCESS);
    expect((await exportWith(json, fromServer)).code).toBe(SUCCESS);
    await Promise.all([proto.shutdown(), json.shutdown()]);
    // The JSON exporter read Kiwi's partial success and reported it.
    expect(warnings.join('\n')).toMatch(/Partial Success.*"rejectedSpans":"1".*from the future.*outside 1970\.\.2200/);

    withStore(served.db, (store) => {
      const traceId = thread.spanContext().traceId;
      const spans = store.listSpans({ trace_id: traceId }, 10);
      expect(spans).toHaveLength(2);
      const root = spans.find((s) => s.component === 'agent-coder')!;
      const tool = spans.find((s) => s.component === 'mcp-filesystem')!;
      expect(root).toMatchObject({ span_id: thread.spanContext().spanId, parent_id: null, name: 'invoke_agent coder', start: BASE, duration_ms: 900, status: 'unset' });
      expect(root.attrs).toMatchObject({ 'gen_ai.operation.name': 'invoke_agent', 'gen_ai.agent.name': 'coder', 'span.kind': 'internal', 'service.version': '3.1.0' });
      expect(tool).toMatchObject({ span_id: call.spanContext().spanId, parent_id: thread.spanContext().spanId, name: 'tools/call read_file', start: BASE + 100, duration_ms: 250, status: 'error' });
      expect(tool.attrs).toMatchObject({
        'span.kind': 'server',
        'otel.status_description': 'tool failed',
        'otel.scope.name': 'mcp',
        'otel.links': [{ trace_id: traceId, span_id: thread.spanContext().spanId, attrs: { 'link.reason': 'caller' } }],
      });
      expect(store.listSpans({ component: 'mcp-filesystem' }, 10)).toHaveLength(1);
      const errors = store.searchEvents({ kinds: ['error'], component: 'mcp-filesystem' }, 10).events;
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatchObject({ ts: BASE + 300, level: 'error', message: 'FileNotFound: ENOENT: no such file' });
      expect(errors[0]!.attrs).toMatchObject({ trace_id: traceId, 'error.type': 'FileNotFound' });
      expect(store.requestStats('mcp-filesystem', BASE, BASE + MINUTE)).toMatchObject({ count: 1, errors: 1, p50_ms: 250 });
    });
  });

  it('stores metrics from the protobuf (gzip, cumulative) and JSON (delta, exponential histogram) exporters as deltas, rates and percentiles', async () => {
    const served = await otlp(join(tempDir(), 'kiwi.db'));
    const cumulativeExporter = new ProtoMetricExporter({
      url: `${served.base}/v1/metrics`,
      compression: 'gzip' as NonNullable<ConstructorParameters<typeof ProtoMetricExporter>[0]>['compression'],
    });
    const reader = new PeriodicExportingMetricReader({ exporter: cumulativeExporter, exportIntervalMillis: 3_600_000, exportTimeoutMillis: 10_000 });
    const provider = new MeterProvider({
      resource: resourceFromAttributes({ 'service.name': 'checkout', 'service.instance.id': 'checkout-1' }),
      readers: [reader],
      views: [{ instrumentName: 'http.server.request.duration', aggregation: { type: AggregationType.EXPLICIT_BUCKET_HISTOGRAM, options: { boundaries: [0.1, 0.25, 0.5, 1] } } }],
    });
    const meter = provider.getMeter('checkout');
    const orders = meter.createCounter('checkout.orders');
    const duration = meter.createHistogram('http.server.request.duration', { unit: 's' });
    const depth = meter.createUpDownCounter('queue.depth');
    meter.createObservableGauge('process.memory.usage', { unit: 'By' }).addCallback((r) => r.observe(123_456_789));
    const route = { 'http.route': '/pay' };

    orders.add(5, route);
    for (const v of [0.05, 0.2, 0.3, 0.4, 0.8]) duration.record(v, route);
    depth.add(3);
    depth.add(-1);
    // The SDK starts a cumulative stream at its first measurement, on a coarse clock: let time move so
    // the first interval is not empty and has a rate (an empty one is counted, but has no rate).
    await new Promise((resolve) => setTimeout(resolve, 3));
    await provider.forceFlush();
    orders.add(7, route);
    for (const v of [0.9, 0.95]) duration.record(v, route);
    await provider.forceFlush();

    // Delta temporality and an exponential histogram, as JSON.
    const deltaExporter = new JsonMetricExporter({ url: `${served.base}/v1/metrics`, temporalityPreference: AggregationTemporalityPreference.DELTA });
    const deltaReader = new PeriodicExportingMetricReader({ exporter: deltaExporter, exportIntervalMillis: 3_600_000, exportTimeoutMillis: 10_000 });
    const deltaProvider = new MeterProvider({
      resource: resourceFromAttributes({ 'service.name': 'agent-planner' }),
      readers: [deltaReader],
      views: [{ instrumentType: InstrumentType.HISTOGRAM, aggregation: { type: AggregationType.EXPONENTIAL_HISTOGRAM } }],
    });
    const deltaMeter = deltaProvider.getMeter('agent');
    const tokens = deltaMeter.createCounter('gen_ai.client.token.usage');
    const opDuration = deltaMeter.createHistogram('gen_ai.client.operation.duration', { unit: 's' });
    tokens.add(120, { 'gen_ai.token.type': 'input' });
    for (const v of [1, 2, 2, 3, 4, 8]) opDuration.record(v);
    await deltaProvider.forceFlush();
    tokens.add(30, { 'gen_ai.token.type': 'input' });
    await deltaProvider.forceFlush();
    await Promise.all([provider.shutdown(), deltaProvider.shutdown()]);

    withStore(served.db, (store) => {
      const labels = { 'http.route': '/pay', 'service.instance.id': 'checkout-1' };
      // Three exports: two forced, and the last one shutdown makes (nothing new by then).
      expect(seriesValues(store, 'checkout.orders', 'checkout', labels)).toEqual([5, 7, 0]);
      const rates = seriesValues(store, 'checkout.orders.rate', 'checkout', labels);
      expect(rates).toHaveLength(3);
      expect(rates[0]).toBeGreaterThan(0);
      expect(rates[1]).toBeGreaterThan(0);
      expect(rates[2]).toBe(0);
      expect(seriesValues(store, 'http.server.request.duration.count', 'checkout', labels)).toEqual([5, 2, 0]);
      const sums = seriesValues(store, 'http.server.request.duration.sum', 'checkout', labels);
      expect(sums[0]).toBeCloseTo(1.75, 9);
      expect(sums[1]).toBeCloseTo(1.85, 9);
      expect(sums[2]).toBeCloseTo(0, 9);
      // Interval 1: rank 2.5 of 5 falls in (0.25, 0.5], which holds 2 → 0.25 + 0.25 * 0.25. Interval 2:
      // both new observations in (0.5, 1]. Interval 3 is empty: no percentiles.
      const p50 = seriesValues(store, 'http.server.request.duration.p50', 'checkout', labels);
      expect(p50).toHaveLength(2);
      expect(p50[0]).toBeCloseTo(0.3125, 9);
      expect(p50[1]).toBeCloseTo(0.75, 9);
      expect(seriesValues(store, 'http.server.request.duration.p99', 'checkout', labels)[1]).toBeCloseTo(0.995, 9);
      // Min and max are over the whole cumulative period, so they are stored only for the first interval.
      expect(seriesValues(store, 'http.server.request.duration.min', 'checkout', labels)).toEqual([0.05]);
      const instance = { 'service.instance.id': 'checkout-1' };
      expect(new Set(seriesValues(store, 'queue.depth', 'checkout', instance))).toEqual(new Set([2]));
      const memory = seriesValues(store, 'process.memory.usage', 'checkout', instance);
      expect(memory.length).toBeGreaterThanOrEqual(2);
      expect(new Set(memory)).toEqual(new Set([123_456_789]));

      expect(seriesValues(store, 'gen_ai.client.token.usage', 'agent-planner', { 'gen_ai.token.type': 'input' })).toEqual([120, 30]);
      expect(seriesValues(store, 'gen_ai.client.operation.duration.count', 'agent-planner')).toEqual([6]);
      expect(seriesValues(store, 'gen_ai.client.operation.duration.sum', 'agent-planner')).toEqual([20]);
      expect(seriesValues(store, 'gen_ai.client.operation.duration.max', 'agent-planner')).toEqual([8]);
      // Exponential buckets are narrow (scale 20 shrinks to fit): the median of 1,2,2,3,4,8 is 2.5 (between 2 and 3).
      const median = seriesValues(store, 'gen_ai.client.operation.duration.p50', 'agent-planner')[0]!;
      expect(median).toBeGreaterThanOrEqual(2);
      expect(median).toBeLessThanOrEqual(3);
    });
  });

  it('keeps each metric\'s unit, which list_series and query_metrics then show to an MCP client over stdio', async () => {
    const db = join(tempDir(), 'kiwi.db');
    const served = await otlp(db);
    const reader = new PeriodicExportingMetricReader({ exporter: new ProtoMetricExporter({ url: `${served.base}/v1/metrics` }), exportIntervalMillis: 3_600_000, exportTimeoutMillis: 10_000 });
    const provider = new MeterProvider({ resource: resourceFromAttributes({ 'service.name': 'shop' }), readers: [reader] });
    const meter = provider.getMeter('shop');
    meter.createCounter('http.server.requests', { unit: '{request}' }).add(4);
    const duration = meter.createHistogram('http.server.request.duration', { unit: 'ms' });
    for (const v of [12, 30, 45]) duration.record(v);
    meter.createObservableGauge('process.memory.usage', { unit: 'By' }).addCallback((r) => r.observe(52_428_800));
    meter.createUpDownCounter('queue.depth').add(2);
    await new Promise((resolve) => setTimeout(resolve, 3)); // a first interval with a length, so the counter has a rate
    await provider.forceFlush();
    await provider.shutdown();

    // kiwi otlp keeps running: the MCP server shares its store file
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [CLI, 'serve', '--db', db, '--no-self-telemetry'],
      env: { ...(process.env as Record<string, string>), KIWI_LOG_LEVEL: 'error' },
      stderr: 'pipe',
    });
    const client = new Client({ name: 'otlp-units-e2e', version: '0' });
    await client.connect(transport);
    try {
      const listed = await client.callTool({ name: 'list_series', arguments: { component: 'shop' } });
      expect(listed.isError).toBeFalsy();
      const series = (listed.structuredContent as { series: { name: string; unit: string | null; last_value: number | null }[] }).series;
      expect(Object.fromEntries(series.map((s) => [s.name, s.unit]))).toMatchObject({
        'http.server.requests': '{request}',
        'http.server.requests.rate': '{request}/s',
        'http.server.request.duration.count': '1',
        'http.server.request.duration.sum': 'ms',
        'http.server.request.duration.p50': 'ms',
        'http.server.request.duration.max': 'ms',
        'process.memory.usage': 'By',
        'queue.depth': null,
      });
      expect((listed.content as { text: string }[])[0]!.text).toContain('process.memory.usage{shop} last=52428800 By');

      const queried = await client.callTool({ name: 'query_metrics', arguments: { name: 'http.server.request.duration.max', component: 'shop' } });
      expect(queried.isError).toBeFalsy();
      const result = queried.structuredContent as { series: { unit: string | null; buckets: { max: number }[] }[] };
      expect(result.series).toMatchObject([{ unit: 'ms', buckets: [{ max: 45 }] }]);
      expect((queried.content as { text: string }[])[0]!.text).toContain('http.server.request.duration.max{shop} (ms)');
    } finally {
      await client.close();
    }
  });

  it('stores log records from the protobuf and JSON exporters as events, with trace context', async () => {
    const served = await otlp(join(tempDir(), 'kiwi.db'));
    const memory = new InMemoryLogRecordExporter();
    const provider = new LoggerProvider({ resource: resourceFromAttributes({ 'service.name': 'checkout' }), processors: [new SimpleLogRecordProcessor(memory)] });
    const logger = provider.getLogger('app');
    const tracer = new BasicTracerProvider().getTracer('t');
    const span = tracer.startSpan('POST /pay');
    logger.emit({
      timestamp: new Date(BASE + 1000),
      severityNumber: SeverityNumber.ERROR,
      severityText: 'ERROR',
      body: 'payment gateway timeout after 30000 ms',
      attributes: { 'exception.type': 'TimeoutError' },
      context: trace.setSpan(context.active(), span),
    });
    logger.emit({ timestamp: new Date(BASE + 2000), severityNumber: SeverityNumber.INFO, eventName: 'deploy', body: { version: '2.0.1' }, attributes: { version: '2.0.1' } });
    const first = memory.getFinishedLogRecords().splice(0);
    logger.emit({ timestamp: new Date(BASE + 3000), severityNumber: SeverityNumber.WARN, body: 'permission denied: write:fs', attributes: { 'kiwi.event.kind': 'permission', decision: 'deny' } });
    const second = memory.getFinishedLogRecords().splice(0);

    const proto = new ProtoLogExporter({ url: `${served.base}/v1/logs` });
    const json = new JsonLogExporter({ url: `${served.base}/v1/logs`, compression: 'gzip' as NonNullable<ConstructorParameters<typeof JsonLogExporter>[0]>['compression'] });
    expect((await exportWith(proto, first)).code).toBe(SUCCESS);
    expect((await exportWith(json, second)).code).toBe(SUCCESS);
    await Promise.all([proto.shutdown(), json.shutdown(), provider.shutdown()]);

    withStore(served.db, (store) => {
      const events = store.searchEvents({ component: 'checkout' }, 10).events.sort((a, b) => a.ts - b.ts);
      expect(events.map((e) => [e.ts, e.kind, e.level, e.message])).toEqual([
        [BASE + 1000, 'error', 'error', 'payment gateway timeout after 30000 ms'],
        [BASE + 2000, 'deploy', 'info', '{"version":"2.0.1"}'],
        [BASE + 3000, 'permission', 'warn', 'permission denied: write:fs'],
      ]);
      expect(events[0]!.attrs).toMatchObject({ trace_id: span.spanContext().traceId, span_id: span.spanContext().spanId, 'error.type': 'TimeoutError', 'otel.scope.name': 'app' });
      expect(events[2]!.attrs).toMatchObject({ decision: 'deny' });
    });
  });
});

describe('OTLP/HTTP protocol answers', () => {
  const spanJson = (name: string) => ({
    resourceSpans: [
      {
        resource: { attributes: [{ key: 'service.name', value: { stringValue: 'raw' } }] },
        scopeSpans: [
          {
            spans: [
              { traceId: '5b8efff798038103d269b633813fc60c', spanId: 'eee19b7ec3c1b174', name, startTimeUnixNano: `${BASE}000000`, endTimeUnixNano: `${BASE + 5}000000` },
            ],
          },
        ],
      },
    ],
  });
  const PROTO = { 'content-type': 'application/x-protobuf' };
  const JSON_TYPE = { 'content-type': 'application/json' };

  it('answers 400, 413, 415 and 405 with a google.rpc.Status, and stores nothing of any refused request', async () => {
    const served = await otlp(join(tempDir(), 'kiwi.db'));
    const port = served.port;
    const good = Buffer.from(encodeRequestFromJson('traces', spanJson('ok')));
    const before = counts(served.db);
    expect(before).toEqual({ spans: 0, events: 0, points: 0 });

    // Malformed protobuf: a length-delimited field running past the end.
    const malformed = await raw(port, { headers: PROTO, body: Buffer.from([0x0a, 0xff, 0xff, 0x03, 0x01]) });
    expect(malformed.status).toBe(400);
    expect(malformed.headers['content-type']).toBe('application/x-protobuf');
    expect(decodeStatus(malformed.body)).toMatchObject({ code: 3, message: expect.stringMatching(/^body is not a valid protobuf ExportTraceServiceRequest: /) });
    // A real request cut short.
    const truncated = await raw(port, { headers: PROTO, body: good.subarray(0, good.length - 7) });
    expect(truncated.status).toBe(400);
    expect(decodeStatus(truncated.body).message).toMatch(/index out of range|invalid/);
    // JSON that is not JSON, and JSON of the wrong shape (the field is named).
    const notJson = await raw(port, { headers: JSON_TYPE, body: '{"resourceSpans": [' });
    expect(notJson.status).toBe(400);
    expect(JSON.parse(notJson.body.toString())).toMatchObject({ code: 3, message: expect.stringMatching(/^body is not valid JSON/) });
    const wrongShape = await raw(port, { headers: JSON_TYPE, body: JSON.stringify({ resourceSpans: [{ scopeSpans: { spans: [] } }] }) });
    expect(wrongShape.status).toBe(400);
    expect(JSON.parse(wrongShape.body.toString()).message).toMatch(/scopeSpans: array expected/);
    const snake = await raw(port, { headers: JSON_TYPE, body: JSON.stringify({ resource_spans: [] }) });
    expect(snake.status).toBe(400);
    expect(JSON.parse(snake.body.toString()).message).toContain('lowerCamelCase');
    // Not gzip although it says so.
    const badGzip = await raw(port, { headers: { ...PROTO, 'content-encoding': 'gzip' }, body: good });
    expect(badGzip.status).toBe(400);
    expect(decodeStatus(badGzip.body).message).toMatch(/^body is not valid gzip/);

    // 415: another content type, another encoding.
    const text = await raw(port, { headers: { 'content-type': 'text/plain' }, body: 'hello' });
    expect(text.status).toBe(415);
    expect(JSON.parse(text.body.toString()).message).toContain('application/x-protobuf or application/json');
    const brotli = await raw(port, { headers: { ...PROTO, 'content-encoding': 'br' }, body: good });
    expect(brotli.status).toBe(415);

    // 413: declared too large, streamed too large (chunked, no length), and a gzip bomb.
    const big = Buffer.alloc(17 * 1024 * 1024, 0x0a);
    const declared = await raw(port, { headers: PROTO, body: big });
    expect(declared.status).toBe(413);
    expect(decodeStatus(declared.body)).toMatchObject({ code: 8, message: 'request body larger than 16777216 bytes' });
    const chunked = await raw(port, { headers: PROTO, chunks: Array.from({ length: 17 }, () => Buffer.alloc(1024 * 1024, 0x0a)) });
    expect(chunked.status).toBe(413);
    const bomb = gzipSync(Buffer.alloc(20 * 1024 * 1024));
    expect(bomb.length).toBeLessThan(100_000);
    const inflated = await raw(port, { headers: { ...PROTO, 'content-encoding': 'gzip' }, body: bomb });
    expect(inflated.status).toBe(413);
    expect(decodeStatus(inflated.body).message).toContain('decompressed request body larger than');

    // 405 and 404.
    const get = await raw(port, { method: 'GET', headers: {} });
    expect(get.status).toBe(405);
    expect(get.headers.allow).toBe('POST');
    const elsewhere = await raw(port, { path: '/v1/profiles', headers: PROTO, body: good });
    expect(elsewhere.status).toBe(404);

    // Nothing of any of that was stored; the server still serves, gzip included.
    expect(counts(served.db)).toEqual(before);
    const ok = await raw(port, { headers: { ...PROTO, 'content-encoding': 'gzip' }, body: gzipSync(good) });
    expect(ok.status).toBe(200);
    expect(ok.headers['content-type']).toBe('application/x-protobuf');
    expect(ok.body.length).toBe(0);
    // Gzip bytes without the content-encoding that says so are not JSON.
    const undeclared = await raw(port, { headers: JSON_TYPE, body: gzipSync(JSON.stringify(spanJson('ok-json'))) });
    expect(undeclared.status).toBe(400);
    const okJsonGzip = await raw(port, { headers: { ...JSON_TYPE, 'content-encoding': 'gzip' }, body: gzipSync(JSON.stringify(spanJson('ok-json'))) });
    expect(okJsonGzip.status).toBe(200);
    expect(JSON.parse(okJsonGzip.body.toString())).toEqual({});
    expect(counts(served.db)).toEqual({ spans: 1, events: 0, points: 0 });
  });

  it('answers a partly bad request with partial_success (rejected count and message) in the request\'s encoding', async () => {
    const served = await otlp(join(tempDir(), 'kiwi.db'));
    const request = spanJson('good');
    const spans = request.resourceSpans[0]!.scopeSpans[0]!.spans as Record<string, unknown>[];
    spans.push({ ...spans[0], spanId: '0000000000000000', name: 'zero id' });
    spans.push({ ...spans[0], spanId: 'eee19b7ec3c1b175', name: '' });
    const asJson = await raw(served.port, { headers: JSON_TYPE, body: JSON.stringify(request) });
    expect(asJson.status).toBe(200);
    expect(JSON.parse(asJson.body.toString())).toEqual({
      partialSuccess: {
        rejectedSpans: '2',
        errorMessage: '2 spans rejected: span (none) "zero id": span_id must be 8 bytes (16 hex digits in OTLP/JSON), not all zero; span eee19b7ec3c1b175 "": name is empty',
      },
    });
    const asProto = await raw(served.port, { headers: PROTO, body: Buffer.from(encodeRequestFromJson('traces', request)) });
    expect(asProto.status).toBe(200);
    // ExportTraceServiceResponse { partial_success (1) { rejected_spans (1): 2, error_message (2) } }, read with protobufjs.
    const reader = protobuf.Reader.create(asProto.body);
    expect(reader.uint32()).toBe((1 << 3) | 2);
    const inner = protobuf.Reader.create(reader.bytes());
    expect(inner.uint32()).toBe((1 << 3) | 0);
    expect(Number(inner.int64())).toBe(2);
    expect(inner.uint32()).toBe((2 << 3) | 2);
    expect(inner.string()).toMatch(/^2 spans rejected: /);
    withStore(served.db, (store) => expect(store.listSpans({ component: 'raw' }, 10).map((s) => s.name)).toEqual(['good']));
  });
});

describe('kiwi serve --http also receives OTLP', () => {
  it('under the same Host and token rules as /mcp, and what it receives is what MCP tools answer about', async () => {
    const served = await startKiwi(['serve', '--http', '--no-self-telemetry'], join(tempDir(), 'kiwi.db'), { KIWI_TOKEN: 'otlp-s3cret' });
    const memory = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({ resource: resourceFromAttributes({ 'service.name': 'mcp-search' }), spanProcessors: [new SimpleSpanProcessor(memory)] });
    const tracer = provider.getTracer('mcp');
    for (let i = 0; i < 4; i++) {
      tracer
        .startSpan('tools/call web_search', { kind: SpanKind.SERVER, startTime: new Date(BASE + i * 1000), attributes: { 'mcp.method.name': 'tools/call', 'gen_ai.tool.name': 'web_search' } })
        .end(new Date(BASE + i * 1000 + 100 * (i + 1)));
    }
    const spans = memory.getFinishedSpans().splice(0);

    // No token: refused (401), nothing stored.
    const anonymous = new ProtoTraceExporter({ url: `${served.base}/v1/traces` });
    const refused = await exportWith(anonymous, spans);
    expect(refused.code).not.toBe(SUCCESS);
    expect(String((refused.error as { code?: number } | undefined)?.code)).toBe('401');
    await anonymous.shutdown();
    // A foreign Host: refused (403) before anything else, as a Status.
    const evil = await raw(served.port, { headers: { 'content-type': 'application/json', host: 'evil.example', authorization: 'Bearer otlp-s3cret' }, body: '{}' });
    expect(evil.status).toBe(403);
    expect(JSON.parse(evil.body.toString())).toMatchObject({ code: 7, message: 'Host "evil.example" is not allowed' });
    expect(counts(served.db).spans).toBe(0);

    // Configured only through the standard environment variables, as the README says.
    const saved = { ...process.env };
    Object.assign(process.env, {
      OTEL_EXPORTER_OTLP_ENDPOINT: served.base,
      OTEL_EXPORTER_OTLP_HEADERS: 'Authorization=Bearer otlp-s3cret',
      OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip',
    });
    let exporter: ProtoTraceExporter;
    try {
      exporter = new ProtoTraceExporter();
    } finally {
      for (const key of ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_HEADERS', 'OTEL_EXPORTER_OTLP_COMPRESSION']) {
        if (saved[key] === undefined) delete process.env[key];
        else process.env[key] = saved[key];
      }
    }
    expect((await exportWith(exporter, spans)).code).toBe(SUCCESS);
    await exporter.shutdown();

    // An MCP client on the same port sees the component and its request latency.
    const client = new Client({ name: 'otlp-e2e', version: '0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${served.base}/mcp`), { requestInit: { headers: { Authorization: 'Bearer otlp-s3cret' } } }));
    try {
      const health = await client.callTool({ name: 'get_system_health', arguments: {} });
      const components = (health.structuredContent as { components: { component: string; requests: { count: number; p50_ms: number | null } | null }[] }).components;
      const search = components.find((c) => c.component === 'mcp-search');
      expect(search?.requests).toMatchObject({ count: 4, p50_ms: 250 });
    } finally {
      await client.close();
    }
  });
});
