/**
 * Detection, root-cause analysis and forecasting answer `suggested_action` in one vocabulary: a
 * shipped directive that acts on the finding, with inputs run_directive takes as they are, or null
 * where no directive can act. Checked through the MCP tools on a generated platform with all five
 * incidents, and every suggestion is planned to show it is runnable.
 */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXPECTED_ANOMALY, INCIDENT_TYPES, loadScenario, offsetPlacing, WORKER_MEMORY_LIMIT_BYTES, type IncidentType } from '../src/generate/index.js';
import { createMcpServer } from '../src/mcp/server.js';
import { writeSetting } from '../src/settings.js';
import { Store } from '../src/store/store.js';
import { policy } from './helpers/directives.js';
import { connectInProcess } from './helpers/mcp.js';

type Suggested = { directive: string; inputs: Record<string, string | number>; reason: string } | null;
type Structured = Record<string, unknown>;

const MINUTE = 60_000;
const END = Date.UTC(2026, 10, 18, 15, 0);
const dir = mkdtempSync(join(tmpdir(), 'kiwi-suggest-'));
let store: Store;
let client: Client;

async function call(name: string, args: Structured): Promise<Structured> {
  const result = (await client.callTool({ name, arguments: args })) as { structuredContent?: Structured; isError?: boolean; content: { text?: string }[] };
  if (result.isError) throw new Error(`${name}: ${result.content[0]?.text}`);
  return result.structuredContent!;
}

beforeAll(async () => {
  store = new Store(join(dir, 'kiwi.db'));
  // a fixed afternoon, so the scenario is the same on every run; detection is asked at its end
  loadScenario(store, { days: 2, seed: 3, end: END, stepMs: MINUTE, incidents: INCIDENT_TYPES.map((type) => ({ type })), utcOffsetHours: offsetPlacing(END, 15) });
  writeSetting(store, 'forecast.memory_limit_bytes', { worker: WORKER_MEMORY_LIMIT_BYTES }, 'test', "the worker's container limit");
  const repo = new URL('..', import.meta.url).pathname;
  const server = createMcpServer(store, null, { policy: policy(), directivesDir: join(repo, 'directives'), scriptsDir: join(repo, 'scripts') });
  client = await connectInProcess(server);
}, 120_000);

afterAll(async () => {
  await client?.close();
  store?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** What each incident's anomaly, and its root cause, suggests: the directive and the component it acts on. */
const REMEDY: Record<IncidentType, { directive: string; component: string } | null> = {
  latency_spike: { directive: 'auto_heal_anomaly', component: 'mcp-search' },
  memory_leak: { directive: 'memory_leak_response', component: 'worker' },
  flaky_connection: { directive: 'flaky_connection_response', component: 'mcp-github' },
  // reverted by a person (the deploy, the policy): no directive acts on them
  error_spike: null,
  permission_spike: null,
};

describe('suggested_action', () => {
  const suggestions: NonNullable<Suggested>[] = [];

  it('detection and root cause suggest the directive that acts on each incident, or null', async () => {
    const detected = (await call('detect_anomalies', { at: END })).anomalies as { id: string; type: string; component: string; suggested_action: Suggested }[];
    for (const type of INCIDENT_TYPES) {
      const expected = EXPECTED_ANOMALY[type];
      const anomaly = detected.find((a) => a.type === expected.type && a.component === expected.component);
      expect(anomaly, `${type} detected`).toBeDefined();
      const remedy = REMEDY[type];
      const explained = (await call('analyze_root_cause', { anomaly_id: anomaly!.id })).suggested_action as Suggested;
      if (remedy === null) {
        expect(anomaly!.suggested_action, type).toBeNull();
        expect(explained, type).toBeNull();
        continue;
      }
      expect(anomaly!.suggested_action, type).toMatchObject({ directive: remedy.directive, inputs: { component: remedy.component } });
      expect(explained, type).toMatchObject({ directive: remedy.directive, inputs: { component: remedy.component } });
      // the directive resolves the anomaly it heals
      if (remedy.directive !== 'flaky_connection_response') expect(anomaly!.suggested_action!.inputs.anomaly_id).toBe(anomaly!.id);
      suggestions.push(anomaly!.suggested_action!, explained!);
    }
  }, 120_000);

  it('a caller slowed by an MCP server gets no timeout of its own: its root cause heals the server', async () => {
    const detected = (await call('list_anomalies', { type: 'latency_spike' })).anomalies as { id: string; component: string; suggested_action: Suggested }[];
    const caller = detected.find((a) => a.component === 'agent-planner');
    expect(caller, 'the planner, waiting on mcp-search, is slow too').toBeDefined();
    expect(caller!.suggested_action).toBeNull();
    const explained = (await call('analyze_root_cause', { anomaly_id: caller!.id })).suggested_action as Suggested;
    // the server's own anomaly is not the one analysed, so the directive is not told to resolve it
    expect(explained).toEqual({ directive: 'auto_heal_anomaly', inputs: { anomaly_type: 'latency_spike', component: 'mcp-search' }, reason: expect.any(String) });
  }, 60_000);

  it('forecasting suggests a directive only where one acts before the failure', async () => {
    const forecasts = (await call('forecast_failure', { target: 'all', horizon: '24h' })).forecasts as { target: string; component: string; suggested_action: Suggested }[];
    for (const f of forecasts.filter((f) => f.target === 'latency' || f.target === 'error_budget')) expect(f.suggested_action, `${f.target} ${f.component}`).toBeNull();
    const worker = forecasts.find((f) => f.target === 'memory' && f.component === 'worker');
    expect(worker?.suggested_action?.directive).toMatch(/^(memory_leak_response|proactive_scale)$/);
    suggestions.push(...forecasts.flatMap((f) => (f.suggested_action ? [f.suggested_action] : [])));
  }, 60_000);

  it('a closed anomaly suggests nothing: acting on it would undo a person marking it a false positive', async () => {
    const listed = (await call('list_anomalies', { type: 'connection_instability' })).anomalies as { id: string; suggested_action: Suggested }[];
    const flaky = listed[0]!;
    expect(flaky.suggested_action?.directive).toBe('flaky_connection_response');
    await call('update_anomaly', { id: flaky.id, action: 'false_positive', note: 'planned maintenance' });
    expect((await call('get_anomaly', { id: flaky.id })).suggested_action).toBeNull();
  });

  it('every suggestion plans cleanly with its inputs as given', async () => {
    expect(suggestions.length).toBeGreaterThanOrEqual(7);
    for (const s of suggestions) {
      const planned = await call('run_directive', { name: s.directive, inputs: s.inputs });
      expect(planned.error, `${s.directive} ${JSON.stringify(s.inputs)}`).toBeNull();
      expect(planned.status).toBe('planned');
    }
  }, 60_000);
});
