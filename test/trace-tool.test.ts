/** get_trace and search_events' trace_id: the trace ids anomalies and root-cause answers show lead somewhere. */
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { afterEach, describe, expect, it } from 'vitest';
import { createKiwi, type Kiwi } from '../src/index.js';
import { connectInProcess } from './helpers/mcp.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir('kiwi-trace-');
let kiwi: Kiwi | null = null;
afterEach(async () => {
  await kiwi?.close();
  kiwi = null;
});

type ToolResult = Awaited<ReturnType<Client['callTool']>>;
const textOf = (r: ToolResult) => (r.content as { text: string }[])[0]!.text;

describe('traces', () => {
  it('get_trace shows a trace as a call tree with its events; search_events finds the events of one trace', async () => {
    kiwi = createKiwi({ db: join(tempDir(), 'kiwi.db'), selfTelemetry: false });
    const client = await connectInProcess(kiwi.server, 'agent');

    const t = Date.now() - 10 * 60_000;
    const span = (trace: string, id: string, parent: string | null, component: string, start: number, duration: number, status = 'ok') => ({
      type: 'span', trace_id: trace, span_id: id, parent_id: parent, name: `call ${id}`, component, start, duration_ms: duration, status,
    });
    const records = [
      // stored out of order, one child's parent never arrived
      span('t1', 'c2', 'r', 'mcp-github', t + 300, 50, 'error'),
      span('t1', 'r', null, 'agent-coder', t, 500, 'error'),
      span('t1', 'c1', 'r', 'mcp-search', t + 10, 200),
      span('t1', 'g1', 'c1', 'search-index', t + 20, 150),
      span('t1', 'orphan', 'lost', 'worker', t + 400, 5),
      span('t2', 'x', null, 'agent-coder', t, 100),
      { type: 'event', ts: t + 340, kind: 'error', component: 'mcp-github', level: 'error', message: 'rate limited', attrs: { trace_id: 't1' } },
      { type: 'event', ts: t + 50, kind: 'error', component: 'agent-coder', level: 'error', message: 'other trace', attrs: { trace_id: 't2' } },
    ];
    await client.callTool({ name: 'ingest_telemetry', arguments: { records } });

    const result = await client.callTool({ name: 'get_trace', arguments: { trace_id: 't1' } });
    const trace = result.structuredContent as { spans: { span_id: string; depth: number }[]; spans_total: number; events: { message: string }[] };
    expect(trace.spans.map((s) => [s.span_id, s.depth])).toEqual([
      ['r', 0],
      ['c1', 1],
      ['g1', 2],
      ['c2', 1],
      ['orphan', 0],
    ]);
    expect(trace.spans_total).toBe(5);
    expect(trace.events.map((e) => e.message)).toEqual(['rate limited']);
    expect(textOf(result).split('\n').slice(0, 4)).toEqual([
      'trace t1: 5 spans, 1 events',
      expect.stringMatching(/^agent-coder call r 500 ms error ✗ /),
      expect.stringMatching(/^  mcp-search call c1 200 ms ok /),
      expect.stringMatching(/^    search-index call g1 150 ms ok /),
    ]);

    const missing = await client.callTool({ name: 'get_trace', arguments: { trace_id: 'nope' } });
    expect(missing.isError).toBe(true);
    expect(textOf(missing)).toBe('trace_id: no spans of trace "nope"');

    const events = await client.callTool({ name: 'search_events', arguments: { trace_id: 't2' } });
    expect((events.structuredContent as { events: { message: string }[] }).events.map((e) => e.message)).toEqual(['other trace']);
  });
});
