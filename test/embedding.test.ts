/**
 * The embedding API: a host creates Kiwi in-process and connects its MCP server to a transport
 * of its own (here the SDK's in-memory pair) and a real SDK Client.
 */
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createKiwi, type Kiwi } from '../src/index.js';
import type { StoredSpan } from '../src/store/store.js';
import { Store } from '../src/store/store.js';
import { pollUntil } from './helpers/poll.js';
import { connectInProcess } from './helpers/mcp.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir('kiwi-embedding-');

const opened: Kiwi[] = [];
afterEach(async () => {
  for (const kiwi of opened.splice(0)) await kiwi.close();
});

function open(options: Parameters<typeof createKiwi>[0]): Kiwi {
  const kiwi = createKiwi(options);
  opened.push(kiwi);
  return kiwi;
}

function connect(server: Kiwi['server']): Promise<Client> {
  return connectInProcess(server, 'embedding-test');
}

type ToolResult = Awaited<ReturnType<Client['callTool']>>;

function textOf(result: ToolResult): string {
  const content = result.content as { type: string; text?: string }[];
  return content.filter((c) => c.type === 'text').map((c) => c.text ?? '').join('\n');
}

/** Kiwi's own spans once `count` are there: they are buffered and written shortly after each answer. */
function selfSpans(kiwi: Kiwi, count: number): Promise<StoredSpan[]> {
  return pollUntil(() => kiwi.store.listSpans({ component: 'kiwi' }, 1000), (spans) => spans.length >= count);
}

const MINUTE = 60_000;
const BASE = Math.floor((Date.now() - 5 * MINUTE) / MINUTE) * MINUTE;

const RECORDS = [
  { type: 'metric', ts: BASE, name: 'process.memory.usage', component: 'api', value: 1000 },
  { type: 'metric', ts: BASE + 1000, name: 'process.memory.usage', component: 'api', value: 1500 },
  { type: 'metric', ts: BASE, name: 'http.server.request.duration', component: 'api', value: 0.2, labels: { route: '/x', code: 200 }, unit: 's' },
  { type: 'event', ts: BASE, kind: 'deploy', component: 'api', message: 'v2 rolled out' },
  { type: 'metric', ts: BASE, name: 'no.value', component: 'api' },
];

describe('createKiwi (embedding)', () => {
  it('serves the tools in-process, records its own calls as spans, and closes safely twice', async () => {
    const db = join(tempDir(), 'embedded.db');
    const kiwi = open({ db, selfIntervalMs: 100_000 });
    expect(kiwi.store.path).toBe(db);
    const client = await connect(kiwi.server);

    const ingest = await client.callTool({ name: 'ingest_telemetry', arguments: { records: RECORDS } });
    expect(ingest.isError).not.toBe(true);
    expect(ingest.structuredContent).toEqual({
      source: 'records',
      format: null,
      accepted: 4,
      rejected: 1,
      written: { metrics: 3, events: 1, spans: 0, unchanged: 0 },
      errors: [expect.stringMatching(/^records:5: .*value/)],
      strict: false,
    });
    expect(textOf(ingest)).toContain('accepted 4, rejected 1');

    const page1 = await client.callTool({ name: 'list_series', arguments: { component: 'api', limit: 1 } });
    expect(page1.isError).not.toBe(true);
    expect(page1.structuredContent).toEqual({
      total: 2,
      offset: 0,
      next_offset: 1,
      series: [
        {
          id: expect.any(Number),
          name: 'http.server.request.duration',
          component: 'api',
          labels: { code: '200', route: '/x' },
          unit: 's',
          first: new Date(BASE).toISOString(),
          last: new Date(BASE).toISOString(),
          last_value: 0.2,
        },
      ],
    });
    const page2 = await client.callTool({ name: 'list_series', arguments: { component: 'api', limit: 1, offset: 1 } });
    expect(page2.structuredContent).toMatchObject({
      total: 2,
      offset: 1,
      next_offset: null,
      series: [{ name: 'process.memory.usage', labels: {}, unit: null, first: new Date(BASE).toISOString(), last: new Date(BASE + 1000).toISOString(), last_value: 1500 }],
    });

    // Arguments that fail the input schema: an error result naming the field.
    const invalid = await client.callTool({ name: 'list_series', arguments: { limit: 'ten' } });
    expect(invalid.isError).toBe(true);
    expect(invalid.structuredContent).toBeUndefined();
    expect(textOf(invalid)).toContain('limit');

    // A handler that refuses its input: also an error result, with the handler's reason.
    const refused = await client.callTool({ name: 'ingest_telemetry', arguments: { records: [], jsonl: '' } });
    expect(refused.isError).toBe(true);
    expect(textOf(refused)).toContain('give exactly one of records, jsonl or csv');

    // The server still answers.
    // (process.memory.usage is both the api's series and Kiwi's own start-up sample.)
    const again = await client.callTool({ name: 'list_series', arguments: { name: 'process.memory.usage' } });
    expect(again.structuredContent).toMatchObject({ total: 2, series: [{ component: 'api' }, { component: 'kiwi' }] });

    // A second server over the same store (as for several sessions) sees the same data and is observed too.
    const other = await connect(kiwi.createServer());
    const fromOther = await other.callTool({ name: 'list_series', arguments: { component: 'api' } });
    expect(fromOther.structuredContent).toMatchObject({ total: 2 });

    const calls = ['ingest_telemetry', 'list_series', 'list_series', 'list_series', 'ingest_telemetry', 'list_series', 'list_series'];
    const spans = await selfSpans(kiwi, calls.length);
    expect(spans.map((s) => s.name).sort()).toEqual(calls.map((t) => `tools/call ${t}`).sort());
    for (const span of spans) {
      expect(span.component).toBe('kiwi');
      expect(span.parent_id).toBeNull();
      expect(span.duration_ms).toBeGreaterThanOrEqual(0);
      expect(span.attrs['mcp.method.name']).toBe('tools/call');
      expect(span.name).toBe(`tools/call ${String(span.attrs['gen_ai.tool.name'])}`);
    }
    expect(new Set(spans.map((s) => s.trace_id)).size).toBe(calls.length);
    // Arguments refused, by the schema or by the handler, are the caller's mistake (like an HTTP 4xx):
    // the spans are not failed, the error type says why, and each is a warning log, not an error event.
    expect(spans.filter((s) => s.status === 'error')).toEqual([]);
    expect(spans.filter((s) => s.attrs['error.type'] === 'invalid_params').map((s) => s.name).sort()).toEqual([
      'tools/call ingest_telemetry',
      'tools/call list_series',
    ]);
    expect(kiwi.store.searchEvents({ component: 'kiwi', kinds: ['error'] }, 10).events).toEqual([]);
    const selfWarnings = kiwi.store.searchEvents({ component: 'kiwi', kinds: ['log'] }, 10).events;
    expect(selfWarnings.map((e) => [e.level, e.message.split(':')[0]]).sort()).toEqual([
      ['warn', 'ingest_telemetry refused its arguments'],
      ['warn', 'list_series refused its arguments'],
    ]);
    // And the start-up sample of Kiwi's own process is there.
    expect(kiwi.store.latestValue('process.memory.usage', 'kiwi')?.value).toBeGreaterThan(0);

    // close() twice is safe, closes the store and the connections, the other server's too
    // (left open, it would answer every call with "the database connection is not open").
    let clientClosed = false;
    client.onclose = () => (clientClosed = true);
    let otherClosed = false;
    other.onclose = () => (otherClosed = true);
    await kiwi.close();
    await expect(kiwi.close()).resolves.toBeUndefined();
    expect(kiwi.store.db.open).toBe(false);
    expect(() => kiwi.store.listSpans({}, 1)).toThrow(/not open/);
    expect(clientClosed).toBe(true);
    expect(otherClosed).toBe(true);
    await expect(client.callTool({ name: 'list_series', arguments: {} })).rejects.toThrow();
    await expect(other.callTool({ name: 'list_series', arguments: {} })).rejects.toThrow(/not connected/i);

    // What it wrote is in the file, intact.
    const reopened = new Store(db);
    try {
      expect(reopened.integrityCheck()).toBe('ok');
      expect(reopened.latestValue('process.memory.usage', 'api')).toEqual({ ts: BASE + 1000, value: 1500 });
      expect(reopened.listSpans({ component: 'kiwi' }, 1000)).toHaveLength(calls.length);
    } finally {
      reopened.close();
    }
  });

  it('classifies a failed call by its cause: the caller\'s arguments (invalid_params) or the tool (tool_error)', async () => {
    const kiwi = open({ db: join(tempDir(), 'errors.db'), selfIntervalMs: 100_000 });
    // a tool of the embedder's that fails on its own: the tool's error, whatever its words
    kiwi.server.registerTool('failing_tool', { inputSchema: { path: z.string() } }, () => {
      throw new Error('disk unreadable');
    });
    const client = await connect(kiwi.server);
    // refused by the input schema
    const invalid = await client.callTool({ name: 'query_metrics', arguments: { max_series: 'x' } });
    expect(invalid.isError).toBe(true);
    expect(textOf(invalid)).toContain('max_series');
    // refused by the handler, naming the argument (`field: reason`): the caller's mistake too
    const refused = await client.callTool({ name: 'get_system_health', arguments: { component: 'nobody' } });
    expect(refused.isError).toBe(true);
    expect(textOf(refused)).toBe('component: no telemetry from "nobody"');
    // refused for its arguments taken together, naming none of them: the caller's mistake too
    const both = await client.callTool({ name: 'ingest_telemetry', arguments: { records: [], jsonl: '' } });
    expect(textOf(both)).toBe('give exactly one of records, jsonl or csv');
    const failed = await client.callTool({ name: 'failing_tool', arguments: { path: 'x' } });
    expect(textOf(failed)).toBe('disk unreadable');

    const spans = await selfSpans(kiwi, 4);
    expect(spans.map((s) => `${s.name} ${s.status} ${String(s.attrs['error.type'])}`).sort()).toEqual([
      'tools/call failing_tool error tool_error',
      'tools/call get_system_health ok invalid_params',
      'tools/call ingest_telemetry ok invalid_params',
      'tools/call query_metrics ok invalid_params',
    ]);
    // Only the tool's own failure is an error event.
    const errorEvents = kiwi.store.searchEvents({ component: 'kiwi', kinds: ['error'] }, 10).events;
    expect(errorEvents.map((e) => e.message.split(':')[0])).toEqual(['failing_tool failed']);
    // The error-count series carries the classification as a label, too.
    const errorSeries = kiwi.store.findSeries({ name: 'mcp.server.operation.errors', component: 'kiwi' }).series;
    expect(errorSeries.map((s) => `${s.labels['gen_ai.tool.name']} ${s.labels['error.type']}`).sort()).toEqual([
      'failing_tool tool_error',
      'get_system_health invalid_params',
      'ingest_telemetry invalid_params',
      'query_metrics invalid_params',
    ]);
  });

  it('cuts a long error short, whatever the caller put in it', async () => {
    const kiwi = open({ db: join(tempDir(), 'long.db'), selfIntervalMs: 100_000 });
    const client = await connect(kiwi.server);
    const longName = await client.callTool({ name: 'get_system_health', arguments: { component: 'n'.repeat(100_000) } });
    expect(textOf(longName)).toMatch(/^component: no telemetry from "n+…$/);
    expect(textOf(longName).length).toBe(1_000);
    const manyKeys = await client.callTool({ name: 'list_series', arguments: Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`k${i}${'x'.repeat(200)}`, i])) });
    expect(textOf(manyKeys)).toMatch(/unknown arguments "k0x{61}…", .* and 45 more; this tool takes name, name_prefix, component, limit, offset$/);
    expect(textOf(manyKeys).length).toBeLessThan(700);
  });

  it('records nothing of its own with selfTelemetry: false', async () => {
    const kiwi = open({ db: join(tempDir(), 'quiet.db'), selfTelemetry: false });
    const client = await connect(kiwi.server);

    const ingest = await client.callTool({ name: 'ingest_telemetry', arguments: { records: RECORDS.slice(0, 2) } });
    expect(ingest.structuredContent).toMatchObject({ accepted: 2, written: { metrics: 2, events: 0, spans: 0 } });
    const invalid = await client.callTool({ name: 'list_series', arguments: { limit: 'ten' } });
    expect(invalid.isError).toBe(true);
    const listed = await client.callTool({ name: 'list_series', arguments: {} });
    // Only what was sent: no series of Kiwi's own process either.
    expect(listed.structuredContent).toMatchObject({ total: 1, series: [{ name: 'process.memory.usage', component: 'api' }] });

    expect(kiwi.store.listSpans({ component: 'kiwi' }, 100)).toEqual([]);
    expect(kiwi.store.listSpans({}, 100)).toEqual([]);
    expect(kiwi.store.findSeries({ component: 'kiwi' }).total).toBe(0);
    expect(kiwi.store.searchEvents({ component: 'kiwi' }, 10).events).toEqual([]);
    expect(kiwi.store.listComponents().map((c) => c.name)).toEqual(['api']);

    await kiwi.close();
    await kiwi.close();
    expect(kiwi.store.db.open).toBe(false);
  });
});
