import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSetting } from '../src/settings.js';
import { Store } from '../src/store/store.js';
import { CLI, assertBuilt, startCli, waitForExit } from './helpers/cli.js';
import { narrativeJson, startMessagesServer, TEST_API_KEY } from './helpers/anthropic.js';
import { pollUntil } from './helpers/poll.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir();

type ToolResult = Awaited<ReturnType<Client['callTool']>>;
const text = (r: ToolResult) => (r.content as { type: string; text: string }[])[0]!.text;
const structured = <T>(r: ToolResult) => r.structuredContent as T;

const T0 = Date.UTC(2026, 0, 1);
const lines = [
  ...Array.from({ length: 120 }, (_, i) =>
    JSON.stringify({ type: 'metric', ts: T0 + i * 10_000, name: 'http.server.request.duration', value: (i % 60) / 10, component: 'api', labels: { route: '/a' } }),
  ),
  JSON.stringify({ type: 'metric', ts: T0, name: 'process.memory.usage', value: 2e8, component: 'api' }),
  ...Array.from({ length: 12 }, (_, i) =>
    JSON.stringify({ type: 'event', ts: T0 + i * 1000, kind: i % 2 ? 'error' : 'log', component: 'api', level: i % 2 ? 'error' : 'info', message: `event ${i}` }),
  ),
  JSON.stringify({ type: 'span', trace_id: 'a', span_id: '1', name: 'GET /a', component: 'api', start: T0, duration_ms: 40, status: 'error' }),
  'this line is broken',
];

describe('kiwi serve over stdio, driven by a real MCP client', () => {
  let client: Client;
  let transport: StdioClientTransport;
  let db: string;
  const transportErrors: Error[] = [];
  let stderr = '';
  let toolCalls = 0;
  const call = async (name: string, args: Record<string, unknown>) => {
    toolCalls++;
    return client.callTool({ name, arguments: args });
  };

  let sessionDir: string;
  beforeAll(async () => {
    assertBuilt();
    // one folder for the whole session (useTempDir's folders are removed after each test)
    sessionDir = mkdtempSync(join(tmpdir(), 'kiwi-e2e-stdio-'));
    db = join(sessionDir, 'kiwi.db');
    // Kiwi's own calls then stay buffered for the whole session, unless a tool writes them first.
    const setup = new Store(db);
    writeSetting(setup, 'telemetry.self_flush_ms', 60_000, 'e2e test');
    setup.close();
    transport = new StdioClientTransport({
      command: process.execPath,
      args: [CLI, 'serve', '--db', db],
      env: { ...process.env, KIWI_LOG_LEVEL: 'info' } as Record<string, string>,
      stderr: 'pipe',
    });
    transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    client = new Client({ name: 'e2e', version: '1.0.0' });
    client.onerror = (err) => transportErrors.push(err);
    await client.connect(transport);
  });

  afterAll(async () => {
    await client?.close();
    rmSync(sessionDir, { recursive: true, force: true });
  });

  it('lists its tools with schemas and annotations', async () => {
    const { tools } = await client.listTools();
    const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
    expect(Object.keys(byName)).toEqual(
      expect.arrayContaining(['get_system_health', 'ingest_telemetry', 'list_series', 'query_metrics', 'search_events', 'detect_anomalies']),
    );
    for (const tool of tools) {
      expect(tool.outputSchema, tool.name).toBeDefined();
      expect(tool.description!.length, tool.name).toBeGreaterThan(50);
    }
    expect(byName.query_metrics!.annotations).toMatchObject({ readOnlyHint: true });
    expect(byName.ingest_telemetry!.annotations).toMatchObject({ readOnlyHint: false, destructiveHint: false, idempotentHint: true });
    expect(client.getServerVersion()?.name).toBe('kiwi');
  });

  it('ingests JSONL, keeping good lines and naming the bad one', async () => {
    const result = await call('ingest_telemetry', { jsonl: lines.join('\n') });
    expect(result.isError).toBeFalsy();
    expect(structured(result)).toMatchObject({
      accepted: lines.length - 1,
      rejected: 1,
      written: { metrics: 121, events: 12, spans: 1 },
      errors: [expect.stringMatching(new RegExp(`^jsonl:${lines.length}: invalid JSON`))],
    });
    expect(text(result)).toContain(`jsonl:${lines.length}: invalid JSON`);
  });

  it('lists series with pagination', async () => {
    const first = structured<{ total: number; next_offset: number | null; series: { name: string }[] }>(
      await call('list_series', { component: 'api', limit: 1 }),
    );
    expect(first.total).toBe(2);
    expect(first.next_offset).toBe(1);
    const second = structured<{ next_offset: number | null; series: { name: string; last_value: number }[] }>(
      await call('list_series', { component: 'api', limit: 1, offset: 1 }),
    );
    expect(second.next_offset).toBeNull();
    expect([first.series[0]!.name, second.series[0]!.name].sort()).toEqual(['http.server.request.duration', 'process.memory.usage']);
  });

  it('queries bucketed statistics, and says when it widened a bucket', async () => {
    const result = await call('query_metrics', {
      name: 'http.server.request.duration',
      labels: { route: '/a' },
      from: new Date(T0).toISOString(),
      to: T0 + 20 * 60_000,
      bucket: '10m',
    });
    const body = structured<{ bucket: string; series: { buckets: { count: number; avg: number; max: number; p50: number }[] }[] }>(result);
    expect(body.bucket).toBe('10m');
    // 120 points at 10 s: two 10-minute buckets of 60, values 0.0..5.9
    expect(body.series[0]!.buckets.map((b) => [b.count, b.avg, b.max, b.p50])).toEqual([
      [60, 2.95, 5.9, 2.95],
      [60, 2.95, 5.9, 2.95],
    ]);
    const widened = structured<{ bucket: string; notes: string[] }>(
      await call('query_metrics', { name: 'http.server.request.duration', from: T0, to: T0 + 86_400_000, bucket: '10s', max_buckets: 100 }),
    );
    expect(widened.bucket).toBe('15m');
    expect(widened.notes[0]).toMatch(/bucket widened from 10s to 15m/);
  });

  it('answers bad arguments with an error naming the field, and keeps serving', async () => {
    const badType = await call('query_metrics', { name: 'x', max_series: 'many' });
    expect(badType.isError).toBe(true);
    expect(text(badType)).toMatch(/max_series/);
    // neither a string nor a number: the union says what it wanted, not just "Invalid input"
    const notATime = await call('query_metrics', { name: 'x', from: true });
    expect(text(notATime)).toMatch(/expected a time: ISO 8601, epoch seconds or milliseconds, "now", or relative like "-15m".* at from$/);
    const badTime = await call('query_metrics', { name: 'x', from: 'the dawn of time' });
    expect(badTime.isError).toBe(true);
    expect(text(badTime)).toMatch(/^from: /);
    // a duration without its unit is refused, not read as milliseconds (an empty window, a false all-clear)
    const bareLookback = await call('detect_anomalies', { lookback: '60' });
    expect(text(bareLookback)).toBe('lookback: "60" has no unit; write it as 500ms, 90s, 15m, 2h or 7d');
    const bareFrom = await call('query_metrics', { name: 'x', from: '-60' });
    expect(text(bareFrom)).toMatch(/^from: "-60" has no unit; write it as -90s, -15m/);
    const durationForTime = await call('search_events', { from: '60m' });
    expect(text(durationForTime)).toBe('from: "60m" is a duration, not a time; for 60m ago write -60m');
    const badBucket = await call('query_metrics', { name: 'x', bucket: 'soon' });
    expect(text(badBucket)).toMatch(/^bucket: /);
    const backwards = await call('query_metrics', { name: 'x', from: T0 + 1000, to: T0 });
    expect(text(backwards)).toMatch(/^to: must be later than from/);
    const backwardsEvents = await call('search_events', { from: '-1h', to: '-2h' });
    expect(text(backwardsEvents)).toBe('to: must be later than from');
    const pastTheEnd = await call('list_series', { offset: 999 });
    expect(text(pastTheEnd)).toMatch(/^\d+ series; offset 999 is past the last$/);
    const badCursor = await call('search_events', { cursor: 'not-a-cursor' });
    expect(text(badCursor)).toMatch(/^cursor: /);
    const twoSources = await call('ingest_telemetry', { jsonl: '', csv: '' });
    expect(text(twoSources)).toMatch(/exactly one of records, jsonl or csv/);
    // a name the tool does not take is refused, not dropped (the answer would silently be the default hour)
    const unknown = await call('query_metrics', { name: 'x', start: '-2h' });
    expect(unknown.isError).toBe(true);
    expect(text(unknown)).toMatch(/unknown argument "start"; this tool takes name, name_prefix, component, labels, from, to,/);
    const health = await call('get_system_health', { component: 'api' });
    expect(health.isError).toBeFalsy();
  });

  it('searches events newest first, page by page', async () => {
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const result = await call('search_events', { kind: ['log', 'error'], component: 'api', limit: 5, ...(cursor ? { cursor } : {}) });
      const page = structured<{ events: { message: string }[]; next_cursor: string | null }>(result);
      seen.push(...page.events.map((e) => e.message));
      // the text, which an agent may read alone, carries the cursor too
      if (page.next_cursor) expect(text(result)).toContain(`(more: cursor ${page.next_cursor})`);
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
    expect(seen).toEqual(Array.from({ length: 12 }, (_, i) => `event ${11 - i}`));
    const errors = structured<{ events: unknown[] }>(await call('search_events', { component: 'api', min_level: 'error', text: 'EVENT' }));
    expect(errors.events).toHaveLength(6);
    // kinds are stored lowercase: an upper-case kind finds them rather than nothing
    const upper = structured<{ events: { kind: string }[] }>(await call('search_events', { component: 'api', kind: 'ERROR' }));
    expect(upper.events.map((e) => e.kind)).toEqual(Array(6).fill('error'));
  });

  it('reports health per component, Kiwi itself included', async () => {
    type Health = { components: { component: string; status: string; reasons: string[]; requests: { count: number; errors: number } | null; error_events: number; memory_bytes: number | null }[] };
    // Kiwi's calls are still buffered (a 60 s flush delay): the health tool writes them before it reads.
    const answered = await call('get_system_health', { window_minutes: 30 });
    const health = structured<Health>(answered);
    // the text gives Kiwi's own p95 (timed to fractions of a millisecond) as a person reads it
    expect(text(answered)).toMatch(/^kiwi OK · \d+ req, 0\.0% err, p95 (\d+ ms|\d+\.\d\d s) · mem /m);
    const names = health.components.map((c) => c.component);
    expect(names[0]).toBe('kiwi');
    expect(names).toContain('api');
    const api = health.components.find((c) => c.component === 'api')!;
    expect(api).toMatchObject({ requests: { count: 1, errors: 1 }, error_events: 6, memory_bytes: 2e8 });
    // its last data is from January: figures that look like a present state are flagged as old, as is its failing request
    expect(api.status).toBe('warning');
    expect(api.reasons).toEqual(['100.0% of requests failed', expect.stringMatching(/^no data for \d+ min$/)]);
    expect(health.components[0]!.reasons).toEqual([]);
    const kiwi = health.components[0]!;
    expect(kiwi.memory_bytes).toBeGreaterThan(1e6);
    // every tool call before this one is a request Kiwi recorded about itself, errors included
    expect(kiwi.requests!.count).toBe(toolCalls - 1);
    // the bad calls above were all the caller's mistakes (refused arguments), none Kiwi's failure
    expect(kiwi.requests!.errors).toBe(0);
  });

  it('kept stdout for the protocol alone, and logged to stderr', () => {
    expect(transportErrors).toEqual([]);
    expect(stderr).toMatch(/kiwi info: MCP over stdio/);
  });
});

describe('kiwi serve shutdown', () => {
  it('exits cleanly when stdin closes, with the store intact and its own telemetry in it', async () => {
    const db = join(tempDir(), 'kiwi.db');
    const child = startCli(['serve', '--db', db]);
    let stdout = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stdin!.write(
      `${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } })}\n`,
    );
    const deadline = Date.now() + 20_000;
    while (!stdout.includes('"id":1') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(JSON.parse(stdout.split('\n')[0]!)).toMatchObject({ id: 1, result: { serverInfo: { name: 'kiwi' } } });
    child.stdin!.end();
    expect(await waitForExit(child)).toEqual({ code: 0, signal: null });
    const store = new Store(db);
    expect(store.integrityCheck()).toBe('ok');
    expect(store.findSeries({ component: 'kiwi', name: 'process.memory.usage' }).total).toBe(1);
    store.close();
  });

  it('exits cleanly on SIGTERM', async () => {
    const child = startCli(['serve', '--db', join(tempDir(), 'kiwi.db')]);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const deadline = Date.now() + 20_000;
    // KIWI_LOG_LEVEL=warn in startCli: wait for the process to be up by asking it something
    child.stdin!.write(`${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' })}\n`);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    while (!out.includes('"id":1') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGTERM');
    expect(await waitForExit(child)).toEqual({ code: 0, signal: null });
    expect(stderr).toBe('');
  });

  it('exits on SIGTERM while a tool waits on the Anthropic API, and stops that request instead of retrying it', async () => {
    const api = await startMessagesServer(() => ({ text: narrativeJson(), delayMs: 120_000 }));
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [CLI, 'serve', '--db', join(tempDir(), 'kiwi.db'), '--no-self-telemetry'],
      env: { ...(process.env as Record<string, string>), KIWI_LOG_LEVEL: 'error', ANTHROPIC_API_KEY: TEST_API_KEY, ANTHROPIC_BASE_URL: api.url },
      stderr: 'pipe',
    });
    const client = new Client({ name: 'impatient-host', version: '1.0.0' });
    try {
      await client.connect(transport);
      const now = Date.now();
      const records = Array.from({ length: 120 }, (_, i) => ({ type: 'metric', ts: now - (119 - i) * 60_000, name: 'queue.depth', component: 'api', value: i < 100 ? 10 : 90 }));
      await client.callTool({ name: 'ingest_telemetry', arguments: { records } });
      const pid = transport.pid!;
      const call = client.callTool({ name: 'analyze_root_cause', arguments: { start: '-20m', component: 'api' } }).catch((err: Error) => err);
      await pollUntil(() => api.requests.length, (n) => n === 1, { timeoutMs: 20_000 });
      process.kill(pid, 'SIGTERM');
      // the request waits two minutes and two retries are allowed: only a stopped request lets it exit now
      const alive = () => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      };
      expect(await pollUntil(alive, (up) => !up, { timeoutMs: 15_000 })).toBe(false);
      expect(api.requests).toHaveLength(1);
      await call;
    } finally {
      await client.close();
      await api.close();
    }
  });
});
