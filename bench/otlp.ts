/**
 * `npm run bench:otlp`: spans per second and metric data points per second that `kiwi otlp`
 * (the built CLI, in its own process) accepts over loopback, sent in exporter-sized batches
 * (512 spans per request, the BatchSpanProcessor default; 1,000 data points per request) by four
 * concurrent keep-alive connections, as OTLP/protobuf (and spans also as OTLP/JSON). Beside it,
 * measured in the same run: the file-ingest path (`ingestFile`) on JSONL files holding the same
 * records Kiwi stores from those requests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ingestFile } from '../src/ingest/ingest.js';
import { encodeRequestFromJson } from '../src/ingest/otlp/proto.js';
import { Store } from '../src/store/store.js';
import { reportResult } from './result.js';

const SPANS = Number(process.env.BENCH_SPANS ?? 200_000);
const POINTS = Number(process.env.BENCH_POINTS ?? 200_000);
const SPANS_PER_REQUEST = 512;
const POINTS_PER_REQUEST = 1_000;
const CONCURRENCY = 4;
const TARGET_SPANS_PER_S = 50_000;
/** Requests sent before timing, so the server's code is compiled as it is in a long-running receiver. */
const WARMUP_REQUESTS = 40;

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'kiwi-bench-otlp-'));
const START_MS = Date.now() - 3_600_000;
const TOOLS = ['web_search', 'fetch_page', 'read_file', 'write_file', 'get_file', 'list_issues', 'create_pull_request'];
const SERVERS = ['mcp-search', 'mcp-filesystem', 'mcp-github'];

const ns = (ms: number) => `${Math.round(ms * 1000)}000`;
const hex = (n: number, width: number) => n.toString(16).padStart(width, '0');
const str = (key: string, value: string) => ({ key, value: { stringValue: value } });

// ---------------------------------------------------------------- the load

interface SpanSpec {
  traceId: string;
  spanId: string;
  parentId: string;
  server: string;
  tool: string;
  start: number;
  durationMs: number;
  error: boolean;
}

function spanSpec(i: number): SpanSpec {
  return {
    traceId: hex(0x5b8e0000 + Math.floor(i / 8), 32),
    spanId: hex(0x10000000 + i, 16),
    parentId: hex(0x20000000 + Math.floor(i / 8), 16),
    server: SERVERS[i % SERVERS.length]!,
    tool: TOOLS[i % TOOLS.length]!,
    start: START_MS + i * 10,
    durationMs: 20 + (i % 97) * 3.5,
    error: i % 50 === 0,
  };
}

function spanRequest(from: number, count: number): unknown {
  const byServer = new Map<string, unknown[]>();
  for (let i = from; i < from + count; i++) {
    const s = spanSpec(i);
    const spans = byServer.get(s.server) ?? [];
    spans.push({
      traceId: s.traceId,
      spanId: s.spanId,
      parentSpanId: s.parentId,
      name: `tools/call ${s.tool}`,
      kind: 2,
      startTimeUnixNano: ns(s.start),
      endTimeUnixNano: ns(s.start + s.durationMs),
      attributes: [
        str('mcp.method.name', 'tools/call'),
        str('gen_ai.tool.name', s.tool),
        str('mcp.session.id', `session-${i % 17}`),
        str('network.transport', 'pipe'),
        { key: 'jsonrpc.request.id', value: { intValue: String(i) } },
        ...(s.error ? [str('error.type', 'tool_error')] : []),
      ],
      status: s.error ? { code: 2, message: 'tool failed' } : {},
    });
    byServer.set(s.server, spans);
  }
  return {
    resourceSpans: [...byServer].map(([server, spans]) => ({
      resource: { attributes: [str('service.name', server), str('service.version', '1.0.0'), str('telemetry.sdk.language', 'nodejs')] },
      scopeSpans: [{ scope: { name: '@acme/mcp-instrumentation', version: '0.1.0' }, spans }],
    })),
  };
}

/** The JSONL records Kiwi stores for the same spans: the file-ingest baseline's input. */
function spanJsonl(): string {
  const lines: string[] = [];
  for (let i = 0; i < SPANS; i++) {
    const s = spanSpec(i);
    const attrs: Record<string, unknown> = {
      'mcp.method.name': 'tools/call',
      'gen_ai.tool.name': s.tool,
      'mcp.session.id': `session-${i % 17}`,
      'network.transport': 'pipe',
      'jsonrpc.request.id': i,
      'span.kind': 'server',
      'otel.scope.name': '@acme/mcp-instrumentation',
      'service.version': '1.0.0',
    };
    if (s.error) Object.assign(attrs, { 'error.type': 'tool_error', 'otel.status_description': 'tool failed' });
    lines.push(
      JSON.stringify({
        type: 'span',
        trace_id: s.traceId,
        span_id: s.spanId,
        parent_id: s.parentId,
        name: `tools/call ${s.tool}`,
        component: s.server,
        start: s.start,
        duration_ms: s.durationMs,
        status: s.error ? 'error' : 'unset',
        attrs,
      }),
    );
  }
  return `${lines.join('\n')}\n`;
}

/**
 * One export of service `api-<service>` with 1,000 series: 600 gauges (memory per worker), 400
 * cumulative counters (requests per route and status). Export `round` is `round` × 10 s later.
 */
function metricRequest(service: number, round: number): unknown {
  const time = ns(START_MS + round * 10_000);
  const start = ns(START_MS - 1_000);
  const gauges = Array.from({ length: 600 }, (_, k) => ({
    timeUnixNano: time,
    asDouble: 1.5e8 + k * 1e5 + round * 1_000,
    attributes: [str('worker', `w-${k}`)],
  }));
  const counters = Array.from({ length: 400 }, (_, k) => ({
    startTimeUnixNano: start,
    timeUnixNano: time,
    asInt: String((round + 1) * (10 + (k % 7))),
    attributes: [str('http.route', `/r/${k}`), str('http.response.status_code', String(200 + (k % 4)))],
  }));
  return {
    resourceMetrics: [
      {
        resource: { attributes: [str('service.name', `api-${service}`), str('service.instance.id', 'i-1')] },
        scopeMetrics: [
          {
            scope: { name: 'bench' },
            metrics: [
              { name: 'process.memory.usage', unit: 'By', gauge: { dataPoints: gauges } },
              { name: 'http.server.request.count', sum: { aggregationTemporality: 2, isMonotonic: true, dataPoints: counters } },
            ],
          },
        ],
      },
    ],
  };
}

/**
 * The points Kiwi stores for those exports: the gauges as they are; the counters, which began
 * before the receiver started, from the second export on, as deltas and rates.
 */
function metricJsonl(rounds: number): { text: string; points: number } {
  const lines: string[] = [];
  for (let service = 0; service < CONCURRENCY; service++) {
    const component = `api-${service}`;
    for (let round = 0; round < rounds; round++) {
      const ts = START_MS + round * 10_000;
      for (let k = 0; k < 600; k++) {
        lines.push(JSON.stringify({ type: 'metric', ts, name: 'process.memory.usage', component, value: 1.5e8 + k * 1e5 + round * 1_000, labels: { 'service.instance.id': 'i-1', worker: `w-${k}` } }));
      }
      if (round === 0) continue;
      for (let k = 0; k < 400; k++) {
        const labels = { 'http.response.status_code': String(200 + (k % 4)), 'http.route': `/r/${k}`, 'service.instance.id': 'i-1' };
        const delta = 10 + (k % 7);
        lines.push(JSON.stringify({ type: 'metric', ts, name: 'http.server.request.count', component, value: delta, labels }));
        lines.push(JSON.stringify({ type: 'metric', ts, name: 'http.server.request.count.rate', component, value: delta / 10, labels }));
      }
    }
  }
  return { text: `${lines.join('\n')}\n`, points: lines.length };
}

// ---------------------------------------------------------------- the server and the client

async function startKiwi(db: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [CLI, 'otlp', '--port', '0', '--db', db], {
    env: { ...process.env, KIWI_LOG_LEVEL: 'warn', KIWI_TOKEN: '' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on http:\/\/[^:]+:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`kiwi otlp exited (${code}) before listening`)));
  });
  return { child, port };
}

async function post(agent: Agent, port: number, path: string, contentType: string, body: Buffer): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', agent, headers: { 'content-type': contentType, 'content-length': body.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks);
        // A full success is 200 with an empty response message ({} in JSON).
        if (res.statusCode !== 200 || (text.length > 0 && text.toString() !== '{}')) {
          reject(new Error(`${path}: HTTP ${res.statusCode}: ${text.toString('utf8').slice(0, 300)}`));
        } else resolve();
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Sends each stream's bodies one after another (as one exporter does), the streams side by side
 * over their own keep-alive connections; resolves with the seconds it took.
 */
async function sendStreams(port: number, path: string, contentType: string, streams: Buffer[][]): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: streams.length, noDelay: true });
  const started = performance.now();
  await Promise.all(streams.map(async (bodies) => {
    for (const body of bodies) await post(agent, port, path, contentType, body);
  }));
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  return seconds;
}

/** Spans: any order, `CONCURRENCY` streams. */
function deal(bodies: Buffer[]): Buffer[][] {
  const streams: Buffer[][] = Array.from({ length: CONCURRENCY }, () => []);
  bodies.forEach((b, i) => streams[i % CONCURRENCY]!.push(b));
  return streams;
}

async function stop(child: ChildProcess): Promise<void> {
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  await exited;
}

function count(db: string, sql: string): number {
  const store = new Store(db);
  try {
    return store.db.prepare(sql).pluck().get() as number;
  } finally {
    store.close();
  }
}

const fmt = (n: number) => Math.round(n).toLocaleString('en');

async function main(): Promise<void> {
  // Warm-up spans use indexes past the measured ones, so they never collide.
  const warmSpans = Array.from({ length: WARMUP_REQUESTS }, (_, r) => spanRequest(SPANS + r * SPANS_PER_REQUEST, SPANS_PER_REQUEST));
  const warmProto = warmSpans.map((json) => Buffer.from(encodeRequestFromJson('traces', json)));
  const warmJson = warmSpans.map((json) => Buffer.from(JSON.stringify(json)));
  const spanBodies: Buffer[] = [];
  const spanJsonBodies: Buffer[] = [];
  for (let from = 0; from < SPANS; from += SPANS_PER_REQUEST) {
    const json = spanRequest(from, Math.min(SPANS_PER_REQUEST, SPANS - from));
    spanBodies.push(Buffer.from(encodeRequestFromJson('traces', json)));
    spanJsonBodies.push(Buffer.from(JSON.stringify(json)));
  }
  // One exporting service per connection, each sending its exports in order (cumulative state).
  const rounds = Math.ceil(POINTS / POINTS_PER_REQUEST / CONCURRENCY);
  const metricStreams = Array.from({ length: CONCURRENCY }, (_, service) =>
    Array.from({ length: rounds }, (_, r) => Buffer.from(encodeRequestFromJson('metrics', metricRequest(service, r)))),
  );
  const dataPoints = CONCURRENCY * rounds * POINTS_PER_REQUEST;
  const protoKb = spanBodies.reduce((a, b) => a + b.length, 0) / spanBodies.length / 1024;
  console.log(
    `load: ${fmt(SPANS)} spans in ${spanBodies.length} requests of ${SPANS_PER_REQUEST} (${protoKb.toFixed(0)} KiB protobuf each), ` +
      `${fmt(dataPoints)} data points in ${CONCURRENCY * rounds} requests of ${POINTS_PER_REQUEST} from ${CONCURRENCY} services; ${CONCURRENCY} connections`,
  );

  // OTLP over loopback, each in a fresh store.
  const spanDb = join(dir, 'spans.db');
  let kiwi = await startKiwi(spanDb);
  await sendStreams(kiwi.port, '/v1/traces', 'application/x-protobuf', deal(warmProto));
  const spanSeconds = await sendStreams(kiwi.port, '/v1/traces', 'application/x-protobuf', deal(spanBodies));
  await stop(kiwi.child);
  const storedSpans = count(spanDb, 'SELECT count(*) FROM spans');
  const expectedSpans = SPANS + WARMUP_REQUESTS * SPANS_PER_REQUEST;
  if (storedSpans !== expectedSpans) throw new Error(`stored ${storedSpans} spans of ${expectedSpans}`);

  const jsonDb = join(dir, 'spans-json.db');
  kiwi = await startKiwi(jsonDb);
  await sendStreams(kiwi.port, '/v1/traces', 'application/json', deal(warmJson));
  const jsonSeconds = await sendStreams(kiwi.port, '/v1/traces', 'application/json', deal(spanJsonBodies));
  await stop(kiwi.child);
  if (count(jsonDb, 'SELECT count(*) FROM spans') !== expectedSpans) throw new Error('JSON spans missing');

  const metricDb = join(dir, 'metrics.db');
  kiwi = await startKiwi(metricDb);
  // Warm-up exports from another service (its own series), then the measured ones.
  const warmMetrics = Array.from({ length: WARMUP_REQUESTS }, (_, r) => {
    const json = metricRequest(0, r) as { resourceMetrics: { resource: { attributes: unknown[] } }[] };
    json.resourceMetrics[0]!.resource.attributes = [str('service.name', 'warmup')];
    return Buffer.from(encodeRequestFromJson('metrics', json));
  });
  await sendStreams(kiwi.port, '/v1/metrics', 'application/x-protobuf', [warmMetrics]);
  const metricSeconds = await sendStreams(kiwi.port, '/v1/metrics', 'application/x-protobuf', metricStreams);
  await stop(kiwi.child);
  const storedPoints = count(metricDb, "SELECT count(*) FROM points JOIN series ON series.id = points.series_id WHERE series.component LIKE 'api-%'");
  const { text, points: filePoints } = metricJsonl(rounds);
  if (storedPoints !== filePoints) throw new Error(`stored ${storedPoints} points, expected ${filePoints}`);

  // The file-ingest baseline on the same records.
  const spanFile = join(dir, 'spans.jsonl');
  writeFileSync(spanFile, spanJsonl());
  const metricFile = join(dir, 'points.jsonl');
  writeFileSync(metricFile, text);
  let store = new Store(join(dir, 'file-spans.db'));
  let started = performance.now();
  const fileSpans = await ingestFile(store, spanFile);
  const fileSpanSeconds = (performance.now() - started) / 1000;
  store.close();
  store = new Store(join(dir, 'file-points.db'));
  started = performance.now();
  const fileMetrics = await ingestFile(store, metricFile);
  const filePointSeconds = (performance.now() - started) / 1000;
  store.close();
  if (fileSpans.rejected > 0 || fileMetrics.rejected > 0) throw new Error('baseline input had rejected lines');

  const otlpSpanRate = SPANS / spanSeconds;
  const jsonSpanRate = SPANS / jsonSeconds;
  const fileSpanRate = fileSpans.accepted / fileSpanSeconds;
  const dataPointRate = dataPoints / metricSeconds;
  const storedPointRate = storedPoints / metricSeconds;
  const filePointRate = filePoints / filePointSeconds;
  console.log(`baseline files: ${(statSync(spanFile).size / 1e6).toFixed(0)} MB of span JSONL, ${(statSync(metricFile).size / 1e6).toFixed(0)} MB of metric JSONL (${fmt(filePoints)} points)`);
  console.log(`machine: ${loadavg().map((l) => l.toFixed(1)).join(' ')} load average (1, 5, 15 min) over 2 cores shared with other work`);
  console.log('');
  console.log('| measure | value | file ingest, same run | ratio | target |');
  console.log('| --- | --- | --- | --- | --- |');
  console.log(
    `| OTLP/protobuf spans | ${fmt(otlpSpanRate)} spans/s | ${fmt(fileSpanRate)} spans/s | ${(otlpSpanRate / fileSpanRate).toFixed(2)}x | >= ${fmt(TARGET_SPANS_PER_S)} spans/s ${otlpSpanRate >= TARGET_SPANS_PER_S ? 'ok' : 'MISSED'} |`,
  );
  console.log(`| OTLP/JSON spans | ${fmt(jsonSpanRate)} spans/s | ${fmt(fileSpanRate)} spans/s | ${(jsonSpanRate / fileSpanRate).toFixed(2)}x | |`);
  console.log(
    `| OTLP/protobuf metric data points (per request 600 gauges + 400 cumulative counters) | ${fmt(dataPointRate)} data points/s (${fmt(storedPointRate)} stored points/s) | ${fmt(filePointRate)} points/s | ${(storedPointRate / filePointRate).toFixed(2)}x (stored points) | |`,
  );
  reportResult({
    bench: 'otlp',
    measure: 'OTLP/protobuf spans over loopback, 4 connections',
    value: `${fmt(otlpSpanRate)} spans/s`,
    baseline: `${fmt(fileSpanRate)} spans/s (file ingest)`,
    ratio: `${(otlpSpanRate / fileSpanRate).toFixed(2)}x`,
    target: `>= ${fmt(TARGET_SPANS_PER_S)} spans/s`,
    ok: otlpSpanRate >= TARGET_SPANS_PER_S,
  });
  reportResult({
    bench: 'otlp',
    measure: 'OTLP/JSON spans over loopback, 4 connections',
    value: `${fmt(jsonSpanRate)} spans/s`,
    baseline: `${fmt(fileSpanRate)} spans/s (file ingest)`,
    ratio: `${(jsonSpanRate / fileSpanRate).toFixed(2)}x`,
  });
  reportResult({
    bench: 'otlp',
    measure: 'OTLP/protobuf metric data points (stored points)',
    value: `${fmt(dataPointRate)} data points/s (${fmt(storedPointRate)} stored points/s)`,
    baseline: `${fmt(filePointRate)} points/s (file ingest)`,
    ratio: `${(storedPointRate / filePointRate).toFixed(2)}x (stored points)`,
  });
  rmSync(dir, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  rmSync(dir, { recursive: true, force: true });
  console.error(err);
  process.exit(1);
});
