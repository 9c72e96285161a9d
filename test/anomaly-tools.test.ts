/**
 * list_anomalies and update_anomaly over MCP, in-process (createKiwi, the SDK Client over the
 * in-memory transport pair).
 */
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { afterEach, describe, expect, it } from 'vitest';
import { ANOMALY_TYPES } from '../src/detect/context.js';
import { createKiwi, type Kiwi } from '../src/index.js';
import { AnomalyStore, type AnomalyFinding } from '../src/store/anomalies.js';
import { connectInProcess } from './helpers/mcp.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir('kiwi-anomaly-tools-');

const opened: Kiwi[] = [];
afterEach(async () => {
  for (const kiwi of opened.splice(0)) await kiwi.close();
});

type ToolResult = Awaited<ReturnType<Client['callTool']>>;

function textOf(result: ToolResult): string {
  const content = result.content as { type: string; text?: string }[];
  return content.filter((c) => c.type === 'text').map((c) => c.text ?? '').join('\n');
}

const MINUTE = 60_000;
const T0 = Math.floor((Date.now() - 120 * MINUTE) / MINUTE) * MINUTE;

const finding = (over: Partial<AnomalyFinding> = {}): AnomalyFinding => ({
  fingerprint: 'latency_spike|mcp-search',
  type: 'latency_spike',
  severity: 'warning',
  component: 'mcp-search',
  series_id: null,
  description: 'p95 latency 5.1x its baseline',
  start_ts: T0,
  end_ts: T0 + MINUTE,
  score: 0.7,
  evidence: { factor: 5.1 },
  suggested_action: null,
  ...over,
});

async function setup(): Promise<{ kiwi: Kiwi; client: Client; anomalies: AnomalyStore }> {
  const kiwi = createKiwi({ db: join(tempDir(), 'kiwi.db'), selfTelemetry: false });
  opened.push(kiwi);
  const client = await connectInProcess(kiwi.server, 'anomaly-tools-test');
  const ingest = await client.callTool({
    name: 'ingest_telemetry',
    arguments: { records: [{ type: 'metric', ts: T0, name: 'process.memory.usage', component: 'mcp-search', value: 1 }] },
  });
  expect(ingest.isError).not.toBe(true);
  return { kiwi, client, anomalies: new AnomalyStore(kiwi.store) };
}

describe('anomaly tools', () => {
  it('update_anomaly refuses to re-activate a closed anomaly while another on the same signal is active', async () => {
    const { client, anomalies } = await setup();
    const old = anomalies.record(finding()).anomaly;
    const resolved = await client.callTool({ name: 'update_anomaly', arguments: { id: old.id, action: 'resolve' } });
    expect(resolved.isError).not.toBe(true);
    const current = anomalies.record(finding({ start_ts: T0 + 60 * MINUTE, end_ts: T0 + 61 * MINUTE })).anomaly;
    expect(current.id).not.toBe(old.id);

    for (const [action, verb] of [['acknowledge', 'acknowledge'], ['reopen', 'reopen']] as const) {
      const refused = await client.callTool({ name: 'update_anomaly', arguments: { id: old.id, action } });
      expect(refused.isError).toBe(true);
      expect(textOf(refused)).toBe(
        `action: cannot ${verb} ${old.id} (resolved): ${current.id} is already open on the same signal ` +
          `(latency_spike on mcp-search); act on ${current.id} instead`,
      );
    }
    expect(anomalies.get(old.id)!.status).toBe('resolved');
    const active = await client.callTool({ name: 'list_anomalies', arguments: {} });
    expect((active.structuredContent as { anomalies: { id: string }[] }).anomalies.map((a) => a.id)).toEqual([current.id]);

    // Marking the closed one a false positive is no re-activation, and is allowed.
    const marked = await client.callTool({ name: 'update_anomaly', arguments: { id: old.id, action: 'false_positive' } });
    expect(marked.isError).not.toBe(true);
  });

  it('list_anomalies refuses an unknown type or component and says when the offset is past the last', async () => {
    const { client, anomalies } = await setup();
    anomalies.record(finding());

    const badType = await client.callTool({ name: 'list_anomalies', arguments: { type: 'latency' } });
    expect(badType.isError).toBe(true);
    expect(textOf(badType)).toMatch(/type/);
    for (const type of ANOMALY_TYPES) expect(textOf(badType)).toContain(type);
    const goodType = await client.callTool({ name: 'list_anomalies', arguments: { type: 'latency_spike' } });
    expect((goodType.structuredContent as { total: number }).total).toBe(1);

    const badComponent = await client.callTool({ name: 'list_anomalies', arguments: { component: 'mcp_search' } });
    expect(badComponent.isError).toBe(true);
    expect(textOf(badComponent)).toBe('component: no telemetry from "mcp_search"');
    const goodComponent = await client.callTool({ name: 'list_anomalies', arguments: { component: 'mcp-search' } });
    expect((goodComponent.structuredContent as { total: number }).total).toBe(1);

    const past = await client.callTool({ name: 'list_anomalies', arguments: { offset: 500 } });
    expect(past.isError).not.toBe(true);
    expect(past.structuredContent).toMatchObject({ total: 1, next_offset: null, anomalies: [] });
    expect(textOf(past)).toBe('1 anomalies; offset 500 is past the last');
  });
});
