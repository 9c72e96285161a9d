/**
 * End to end over Streamable HTTP: the built CLI serves on a loopback port, real MCP SDK clients
 * talk to it, raw `node:http` requests probe its guards, and the SQLite file it leaves behind is
 * opened afterwards to check what landed.
 */
import type { ChildProcess } from 'node:child_process';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import { Store } from '../src/store/store.js';
import { killedAfterEachTest, startCli, waitForExit, startListening } from './helpers/cli.js';
import { pollUntil } from './helpers/poll.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir('kiwi-e2e-http-');
const TOOL_NAMES = ['ingest_telemetry', 'list_series', 'query_metrics', 'search_events', 'get_system_health'];

// ------------------------------------------------------------------ helpers

const children = killedAfterEachTest();
const clients: Client[] = [];

// Registered after the children's hook, so it runs before it: clients close while their servers live.
afterEach(async () => {
  for (const client of clients.splice(0)) await client.close().catch(() => undefined);
});

interface Served {
  child: ChildProcess;
  url: string;
  port: number;
  stderr(): string;
}

/** `kiwi serve --http --port 0 ...`: resolves once the process prints the line that names its URL. */
async function serveHttp(db: string, extraArgs: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<Served> {
  // An empty KIWI_TOKEN means "no token", whatever the environment running the tests holds.
  const served = await startListening(['serve', '--http', '--port', '0', '--db', db, ...extraArgs], { KIWI_TOKEN: '', ...env });
  children.push(served.child);
  return { ...served, port: Number(new URL(served.url).port) };
}

async function connect(url: string, headers: Record<string, string> = {}): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const client = new Client({ name: 'kiwi-e2e', version: '0.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  await client.connect(transport);
  clients.push(client);
  return { client, transport };
}

interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One HTTP request to 127.0.0.1:port with exactly the headers given (Host included). */
function rawRequest(
  port: number,
  options: { method?: string; path?: string; headers?: Record<string, string>; body?: string },
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, method: options.method ?? 'POST', path: options.path ?? '/mcp', headers: options.headers, agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('raw request timed out')));
    req.end(options.body);
  });
}

const INITIALIZE = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: LATEST_PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'raw', version: '0' } },
});
const MCP_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

/** Waits for a child to exit; kills it and fails when it has not within `ms`. */
async function exitWithin(child: ChildProcess, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`process did not exit within ${ms} ms`));
    }, ms);
  });
  try {
    return await Promise.race([waitForExit(child), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

type ToolResult = Awaited<ReturnType<Client['callTool']>>;

function structured<T>(result: ToolResult): T {
  expect(result.isError, JSON.stringify(result.content)).not.toBe(true);
  expect(result.structuredContent).toBeDefined();
  return result.structuredContent as T;
}

function textOf(result: ToolResult): string {
  const content = result.content as { type: string; text?: string }[];
  return content.filter((c) => c.type === 'text').map((c) => c.text ?? '').join('\n');
}

const iso = (ms: number) => new Date(ms).toISOString();

// ------------------------------------------------------------------ the telemetry the tests send

const MINUTE = 60_000;
/** A whole minute ten minutes ago: recent enough that the retention pass at start-up leaves it alone. */
const BASE = Math.floor((Date.now() - 10 * MINUTE) / MINUTE) * MINUTE;
const LATENCY = 'http.server.request.duration';

function checkoutJsonl(): string {
  const records: unknown[] = [
    ...[1, 2, 3, 4, 5, 6].map((value, i) => ({
      type: 'metric',
      ts: BASE + i * 10_000,
      name: LATENCY,
      component: 'checkout',
      value,
      labels: { route: '/pay' },
    })),
    {
      type: 'event',
      ts: BASE + 15_000,
      kind: 'error',
      component: 'checkout',
      level: 'error',
      message: 'payment gateway timeout',
      attrs: { code: 504 },
    },
    {
      type: 'span',
      trace_id: 'trace-e2e-1',
      span_id: 'span-1',
      name: 'POST /checkout',
      component: 'checkout',
      start: iso(BASE + 20_000),
      duration_ms: 123.5,
      status: 'error',
    },
  ];
  // Line 9 is bad: it is reported and the rest kept.
  return [...records.map((r) => JSON.stringify(r)), '{"type":"metric","ts":"yesterday"}'].join('\n');
}

interface IngestAnswer {
  source: string;
  format: string | null;
  accepted: number;
  rejected: number;
  written: { metrics: number; events: number; spans: number; unchanged: number };
  errors: string[];
  strict: boolean;
}
interface QueryAnswer {
  bucket: string;
  series_total: number;
  series: { name: string; component: string; labels: Record<string, string>; buckets: Record<string, unknown>[] }[];
  notes: string[];
}
interface EventsAnswer {
  events: { ts: string; kind: string; component: string; level: string; message: string; attrs: Record<string, unknown> }[];
  next_cursor: string | null;
}
interface SeriesAnswer {
  total: number;
  series: { name: string; component: string; first: string | null; last: string | null; last_value: number | null }[];
}
interface HealthAnswer {
  components: {
    component: string;
    status: string;
    requests: { count: number; errors: number; error_rate: number; p50_ms: number | null } | null;
    error_events: number;
    memory_bytes: number | null;
  }[];
}

// ------------------------------------------------------------------ tests

describe('kiwi serve --http', () => {
  it('serves every tool to two concurrent sessions over one store, records its own calls, and shuts down cleanly on SIGTERM', async () => {
    const db = join(tempDir(), 'kiwi.db');
    const served = await serveHttp(db);
    expect(served.url).toBe(`http://127.0.0.1:${served.port}/mcp`);

    /** Every tools/call made, by session, to compare with the spans Kiwi recorded about itself. */
    const made: { session: string; tool: string }[] = [];
    const call = async (c: { client: Client; transport: StreamableHTTPClientTransport }, name: string, args: Record<string, unknown>) => {
      made.push({ session: c.transport.sessionId!, tool: name });
      return c.client.callTool({ name, arguments: args });
    };

    const a = await connect(served.url);
    expect(a.transport.sessionId).toMatch(/\S/);

    // Tools: all five, each with an output schema and annotations.
    const { tools } = await a.client.listTools();
    const byName = new Map(tools.map((t) => [t.name, t]));
    for (const name of TOOL_NAMES) {
      const tool = byName.get(name);
      expect(tool, name).toBeDefined();
      expect(tool!.outputSchema?.type, name).toBe('object');
      expect(tool!.annotations, name).toBeDefined();
    }
    expect(byName.get('ingest_telemetry')!.annotations).toMatchObject({ readOnlyHint: false, idempotentHint: true });
    expect(byName.get('query_metrics')!.annotations?.readOnlyHint).toBe(true);

    // Ingest: metrics, an event and a span as JSONL, plus one bad line.
    const ingested = structured<IngestAnswer>(await call(a, 'ingest_telemetry', { jsonl: checkoutJsonl() }));
    expect(ingested).toMatchObject({ source: 'jsonl', format: 'jsonl', accepted: 8, rejected: 1, strict: false });
    expect(ingested.written).toEqual({ metrics: 6, events: 1, spans: 1, unchanged: 0 });
    expect(ingested.errors).toHaveLength(1);
    expect(ingested.errors[0]).toMatch(/^jsonl:9: /);

    // What was sent comes back: one bucket over the six points.
    const query = structured<QueryAnswer>(
      await call(a, 'query_metrics', { name: LATENCY, component: 'checkout', from: BASE, to: BASE + MINUTE, bucket: '1m' }),
    );
    expect(query.series_total).toBe(1);
    expect(query.bucket).toBe('1m');
    expect(query.series[0]!.labels).toEqual({ route: '/pay' });
    expect(query.series[0]!.buckets).toEqual([
      { start: iso(BASE), count: 6, avg: 3.5, min: 1, max: 6, p50: 3.5, p95: 5.75, p99: 5.95, rate: 0.35 },
    ]);

    const events = structured<EventsAnswer>(await call(a, 'search_events', { component: 'checkout' }));
    expect(events.next_cursor).toBeNull();
    expect(events.events).toHaveLength(1);
    expect(events.events[0]).toMatchObject({
      ts: iso(BASE + 15_000),
      kind: 'error',
      component: 'checkout',
      level: 'error',
      message: 'payment gateway timeout',
      attrs: { code: 504 },
    });

    // Health lists Kiwi first, then the component; the error span makes checkout a warning.
    const health = structured<HealthAnswer>(await call(a, 'get_system_health', {}));
    expect(health.components.map((c) => c.component)).toEqual(['kiwi', 'checkout']);
    const checkout = health.components[1]!;
    expect(checkout.status).toBe('warning');
    expect(checkout.requests).toMatchObject({ count: 1, errors: 1, error_rate: 1, p50_ms: 123.5 });
    expect(checkout.error_events).toBe(1);
    const kiwi = health.components[0]!;
    expect(kiwi.memory_bytes).toBeGreaterThan(0);
    // The three tool calls before this one, as spans of Kiwi itself.
    expect(kiwi.requests?.count).toBeGreaterThanOrEqual(3);
    expect(kiwi.requests?.errors).toBe(0);

    // A second session against the same store.
    const b = await connect(served.url);
    expect(b.transport.sessionId).toMatch(/\S/);
    expect(b.transport.sessionId).not.toBe(a.transport.sessionId);
    const seenByB = structured<SeriesAnswer>(await call(b, 'list_series', { component: 'checkout' }));
    expect(seenByB.total).toBe(1);
    expect(seenByB.series[0]).toMatchObject({ name: LATENCY, first: iso(BASE), last: iso(BASE + 50_000), last_value: 6 });

    const fromB = structured<IngestAnswer>(
      await call(b, 'ingest_telemetry', { records: [{ type: 'metric', ts: BASE, name: 'queue.depth', component: 'worker', value: 42 }] }),
    );
    expect(fromB.written).toEqual({ metrics: 1, events: 0, spans: 0, unchanged: 0 });
    const seenByA = structured<SeriesAnswer>(await call(a, 'list_series', { name: 'queue.depth' }));
    expect(seenByA.series).toEqual([expect.objectContaining({ component: 'worker', last_value: 42 })]);

    // Both sessions at once.
    const [qa, qb] = await Promise.all([
      call(a, 'query_metrics', { name: 'queue.depth', from: BASE, to: BASE + MINUTE, bucket: '1m' }),
      call(b, 'query_metrics', { name: LATENCY, from: BASE, to: BASE + MINUTE, bucket: '1m' }),
    ]);
    expect(structured<QueryAnswer>(qa).series[0]!.buckets[0]).toMatchObject({ count: 1, avg: 42 });
    expect(structured<QueryAnswer>(qb).series[0]!.buckets[0]).toMatchObject({ count: 6, max: 6 });

    // Invalid arguments: an error result naming the field, and the server keeps serving.
    const invalid = await call(a, 'query_metrics', { max_series: 'x' });
    expect(invalid.isError).toBe(true);
    expect(textOf(invalid)).toContain('max_series');
    const after = structured<QueryAnswer>(await call(a, 'query_metrics', { name: LATENCY, from: BASE, to: BASE + MINUTE, bucket: '1m' }));
    expect(after.series_total).toBe(1);

    // Kiwi's own warning about that call (the caller's mistake, not Kiwi's failure) is searchable over MCP, from the other session.
    const selfErrors = await pollUntil(
      async () => structured<EventsAnswer>(await call(b, 'search_events', { component: 'kiwi', min_level: 'warn' })),
      (found) => found.events.length > 0,
      { intervalMs: 150 },
    );
    expect(selfErrors.events).toHaveLength(1);
    expect(selfErrors.events[0]).toMatchObject({ kind: 'log', level: 'warn', message: expect.stringMatching(/^query_metrics refused its arguments: .*max_series/) });

    // Clean shutdown.
    const sessions = { a: a.transport.sessionId!, b: b.transport.sessionId! };
    await a.client.close();
    await b.client.close();
    served.child.kill('SIGTERM');
    expect(await exitWithin(served.child, 15_000)).toEqual({ code: 0, signal: null });
    expect(served.stderr()).not.toMatch(/kiwi (error|warn):/);

    const store = new Store(db);
    try {
      expect(store.integrityCheck()).toBe('ok');

      // The data sent over HTTP is in the file.
      const latency = store.findSeries({ name: LATENCY, component: 'checkout' });
      expect(latency.total).toBe(1);
      expect(store.readPoints(latency.series[0]!.id, BASE, BASE + MINUTE)).toEqual({
        ts: [0, 1, 2, 3, 4, 5].map((i) => BASE + i * 10_000),
        values: [1, 2, 3, 4, 5, 6],
      });
      expect(store.latestValue('queue.depth', 'worker')).toEqual({ ts: BASE, value: 42 });
      expect(store.searchEvents({ component: 'checkout' }, 10).events.map((e) => e.message)).toEqual(['payment gateway timeout']);
      expect(store.listSpans({ component: 'checkout' }, 10)).toEqual([
        expect.objectContaining({ trace_id: 'trace-e2e-1', span_id: 'span-1', name: 'POST /checkout', duration_ms: 123.5, status: 'error' }),
      ]);

      // Self-telemetry: one span per tools/call, named after the tool, tagged with its session.
      const spans = store.listSpans({ component: 'kiwi' }, 1000);
      const recorded = spans.map((s) => `${s.attrs['mcp.session.id']} ${s.name}`).sort();
      const expected = made.map((m) => `${m.session} tools/call ${m.tool}`).sort();
      expect(recorded).toEqual(expected);
      expect(new Set(spans.map((s) => s.attrs['mcp.session.id']))).toEqual(new Set([sessions.a, sessions.b]));
      // The one refused call is classified as what it was, arguments that did not validate: the
      // caller's mistake, counted among the errors but not a failed span of Kiwi.
      const refused = spans.filter((s) => s.attrs['error.type'] !== undefined);
      expect(refused.map((s) => [s.name, s.attrs['error.type'], s.status])).toEqual([['tools/call query_metrics', 'invalid_params', 'ok']]);
      expect(spans.filter((s) => s.status === 'ok')).toHaveLength(made.length);
      expect(store.findSeries({ name: 'mcp.server.operation.errors', component: 'kiwi' }).total).toBe(1);
    } finally {
      store.close();
    }
  });

  it('refuses requests whose Host or Origin header is not an allowed (loopback) name', async () => {
    const served = await serveHttp(join(tempDir(), 'kiwi.db'));
    const port = served.port;

    // DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own Host.
    const evilHost = await rawRequest(port, { headers: { ...MCP_HEADERS, host: 'evil.example' }, body: INITIALIZE });
    expect(evilHost.status).toBe(403);
    expect(evilHost.headers['mcp-session-id']).toBeUndefined();
    expect(evilHost.body).toContain('evil.example');
    expect(evilHost.body).not.toContain('serverInfo');
    const evilHealth = await rawRequest(port, { method: 'GET', path: '/healthz', headers: { host: `evil.example:${port}` } });
    expect(evilHealth.status).toBe(403);
    expect(evilHealth.body).not.toContain('"status":"ok"');

    // The same initialize with a loopback Host is served.
    const good = await rawRequest(port, { headers: { ...MCP_HEADERS, host: `localhost:${port}` }, body: INITIALIZE });
    expect(good.status).toBe(200);
    expect(good.headers['mcp-session-id']).toMatch(/\S/);
    expect(good.body).toContain('"serverInfo"');
    expect(good.body).toContain('"kiwi"');

    // A foreign Origin is refused even with a loopback Host; a loopback Origin is accepted.
    const evilOrigin = await rawRequest(port, {
      headers: { ...MCP_HEADERS, host: `127.0.0.1:${port}`, origin: 'http://evil.example' },
      body: INITIALIZE,
    });
    expect(evilOrigin.status).toBe(403);
    expect(evilOrigin.headers['mcp-session-id']).toBeUndefined();
    const goodOrigin = await rawRequest(port, {
      headers: { ...MCP_HEADERS, host: `127.0.0.1:${port}`, origin: `http://localhost:${port}` },
      body: INITIALIZE,
    });
    expect(goodOrigin.status).toBe(200);

    // Health over loopback counts the two sessions opened above and none of the refused ones.
    const healthz = await rawRequest(port, { method: 'GET', path: '/healthz', headers: { host: `127.0.0.1:${port}` } });
    expect(healthz.status).toBe(200);
    expect(JSON.parse(healthz.body)).toEqual({ status: 'ok', sessions: 2 });
  });

  it('frees each session its client terminates: /healthz counts 0 after 25 open, call, terminate cycles, and a terminated id gets 404', async () => {
    // Self-telemetry is on (the default), so every session's transport is wrapped by it: the wrapper
    // once dropped the handler that forgets a closed session, and every McpServer stayed.
    const served = await serveHttp(join(tempDir(), 'kiwi.db'));
    const health = async () => {
      const answer = await rawRequest(served.port, { method: 'GET', path: '/healthz', headers: { host: `127.0.0.1:${served.port}` } });
      return JSON.parse(answer.body) as { status: string; sessions: number };
    };
    const ids: string[] = [];
    for (let i = 0; i < 25; i++) {
      const { client, transport } = await connect(served.url);
      structured<SeriesAnswer>(await client.callTool({ name: 'list_series', arguments: { component: 'kiwi' } }));
      ids.push(transport.sessionId!);
      await transport.terminateSession();
      await client.close();
    }
    expect(new Set(ids).size).toBe(25);
    expect(await health()).toEqual({ status: 'ok', sessions: 0 });

    const stale = await rawRequest(served.port, {
      headers: { ...MCP_HEADERS, host: `127.0.0.1:${served.port}`, 'mcp-session-id': ids[0]!, 'mcp-protocol-version': LATEST_PROTOCOL_VERSION },
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }),
    });
    expect(stale.status).toBe(404);
    expect(JSON.parse(stale.body)).toMatchObject({ error: { message: 'unknown or expired session; initialize again' } });

    // A session still open is counted, and works.
    const { client } = await connect(served.url);
    expect(await health()).toEqual({ status: 'ok', sessions: 1 });
    expect((await client.listTools()).tools.map((t) => t.name)).toEqual(expect.arrayContaining(TOOL_NAMES));
  });

  it('requires the bearer token from KIWI_TOKEN when one is set', async () => {
    const served = await serveHttp(join(tempDir(), 'kiwi.db'), [], { KIWI_TOKEN: 's3cret' });
    const headers = { ...MCP_HEADERS, host: `127.0.0.1:${served.port}` };

    const none = await rawRequest(served.port, { headers, body: INITIALIZE });
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toBe('Bearer');
    expect(none.headers['mcp-session-id']).toBeUndefined();
    const wrong = await rawRequest(served.port, { headers: { ...headers, authorization: 'Bearer wrong' }, body: INITIALIZE });
    expect(wrong.status).toBe(401);
    const longer = await rawRequest(served.port, { headers: { ...headers, authorization: 'Bearer s3cret-and-more' }, body: INITIALIZE });
    expect(longer.status).toBe(401);

    // A client without the token cannot even initialize.
    const refused = new Client({ name: 'no-token', version: '0.0.0' });
    clients.push(refused);
    await expect(refused.connect(new StreamableHTTPClientTransport(new URL(served.url)))).rejects.toThrow();

    const { client } = await connect(served.url, { Authorization: 'Bearer s3cret' });
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(TOOL_NAMES));
    const series = structured<SeriesAnswer>(await client.callTool({ name: 'list_series', arguments: { component: 'kiwi' } }));
    expect(series.total).toBeGreaterThan(0);
  });

  it('refuses to listen on 0.0.0.0 without KIWI_TOKEN, and with one guards it by the token', async () => {
    const db = join(tempDir(), 'kiwi.db');
    const child = startCli(['serve', '--http', '--host', '0.0.0.0', '--port', '0', '--db', db], { KIWI_TOKEN: '' });
    children.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exit = await exitWithin(child, 15_000);
    expect(exit.signal).toBeNull();
    expect(exit.code).not.toBe(0);
    expect(stderr).toContain('KIWI_TOKEN');
    expect(stdout).not.toContain('listening');

    // With a token it binds every interface; this test only ever talks to it over loopback.
    const served = await serveHttp(db, ['--host', '0.0.0.0'], { KIWI_TOKEN: 'wide-open-no-more' });
    expect(served.url).toBe(`http://0.0.0.0:${served.port}/mcp`);
    const loopbackUrl = `http://127.0.0.1:${served.port}/mcp`;
    const anonymous = await rawRequest(served.port, { headers: { ...MCP_HEADERS, host: `127.0.0.1:${served.port}` }, body: INITIALIZE });
    expect(anonymous.status).toBe(401);
    const { client } = await connect(loopbackUrl, { Authorization: 'Bearer wide-open-no-more' });
    expect((await client.listTools()).tools.map((t) => t.name)).toEqual(expect.arrayContaining(TOOL_NAMES));
  });
});
