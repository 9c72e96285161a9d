import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { describe, expect, it } from 'vitest';
import { detectAnomalies } from '../src/detect/service.js';
import { explainSymptom } from '../src/explain/service.js';
import { EXPECTED_ANOMALY, INCIDENT_TYPES, type IncidentType, scenarioTruth, writeScenario } from '../src/generate/index.js';
import { ingestFile } from '../src/ingest/ingest.js';
import { Store } from '../src/store/store.js';
import { CLI, assertBuilt } from './helpers/cli.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir();
const HOUR = 3_600_000;
/** Afternoon UTC: the generated platform is busy, so short incident windows hold enough requests. */
const END = Date.UTC(2026, 10, 18, 16, 0);

/** `type|component` of the anomaly an injected incident must raise. */
const expected = (incident: IncidentType): string => `${EXPECTED_ANOMALY[incident].type}|${EXPECTED_ANOMALY[incident].component}`;

async function scenarioStore(days: number, seed: number, incidents: boolean): Promise<{ store: Store; db: string }> {
  const dir = tempDir();
  const options = { days, seed, end: END, stepMs: 60_000, incidents: incidents ? INCIDENT_TYPES.map((type) => ({ type })) : [] };
  await writeScenario(options, join(dir, 'scenario.jsonl'));
  const db = join(dir, 'kiwi.db');
  const store = new Store(db);
  await ingestFile(store, join(dir, 'scenario.jsonl'));
  return { store, db };
}

describe('detection on generated scenarios', () => {
  it('finds every injected incident with the right type and component, and ranks its root cause first though all five overlap', async () => {
    const { store } = await scenarioStore(2, 5, true);
    const anomalies = detectAnomalies(store, { now: END }).anomalies;
    const found = new Set(anomalies.map((a) => `${a.type}|${a.component}`));
    const truth = scenarioTruth({ days: 2, seed: 5, end: END, stepMs: 60_000, incidents: INCIDENT_TYPES.map((type) => ({ type })) });
    for (const incident of truth.incidents) {
      expect(found, incident.type).toContain(expected(incident.type));
      const anomaly = anomalies.find((a) => `${a.type}|${a.component}` === expected(incident.type))!;
      const explained = await explainSymptom(store, { anomaly_id: anomaly.id }, { llm: false, now: END });
      expect(explained.candidates[0]?.component, incident.type).toBe(incident.root_cause.component);
    }
    store.close();
  });

  it('raises at most 0.05 false alarms per series-day on quiet data, judged every hour', async () => {
    const { store } = await scenarioStore(3, 11, false);
    let created = 0;
    const from = END - 40 * HOUR;
    for (let now = from; now <= END; now += HOUR) created += detectAnomalies(store, { now }).anomalies.filter((a) => a.new).length;
    const seriesDays = store.findSeries({}).total * ((END - from) / (24 * HOUR));
    expect(created / seriesDays).toBeLessThanOrEqual(0.05);
    store.close();
  });
});

describe('the anomaly tools over stdio', () => {
  it('detect, list, get, mark a false positive, and detect again with it held back', async () => {
    assertBuilt();
    const { store, db } = await scenarioStore(2, 6, true);
    store.close();
    const client = new Client({ name: 'e2e', version: '1' });
    await client.connect(new StdioClientTransport({ command: process.execPath, args: [CLI, 'serve', '--db', db], stderr: 'ignore' }));
    try {
      const at = new Date(END).toISOString();
      const detected = await client.callTool({ name: 'detect_anomalies', arguments: { at, lookback: '60m' } });
      const body = detected.structuredContent as { anomalies: { id: string; type: string; component: string; new: boolean; evidence: Record<string, unknown> }[]; total: number };
      expect(body.anomalies.map((a) => `${a.type}|${a.component}`)).toEqual(expect.arrayContaining(INCIDENT_TYPES.map(expected)));
      expect(body.anomalies.every((a) => a.new)).toBe(true);

      const listed = (await client.callTool({ name: 'list_anomalies', arguments: { limit: 100 } })).structuredContent as { total: number };
      expect(listed.total).toBe(body.total);

      const leak = body.anomalies.find((a) => a.type === 'memory_leak')!;
      const got = (await client.callTool({ name: 'get_anomaly', arguments: { id: leak.id } })).structuredContent as { evidence: { growth_pct_per_hour: number } };
      expect(got.evidence.growth_pct_per_hour).toBeGreaterThan(1);

      const marked = await client.callTool({ name: 'update_anomaly', arguments: { id: leak.id, action: 'false_positive', note: 'planned cache warm-up' } });
      expect(marked.structuredContent).toMatchObject({ status: 'false_positive', note: 'planned cache warm-up' });

      const again = (await client.callTool({ name: 'detect_anomalies', arguments: { at, lookback: '60m' } })).structuredContent as {
        anomalies: { id: string; type: string; new: boolean }[];
        suppressed: { type: string; false_positive: string }[];
      };
      expect(again.anomalies.find((a) => a.type === 'memory_leak')).toBeUndefined();
      expect(again.suppressed).toEqual([expect.objectContaining({ type: 'memory_leak', false_positive: leak.id })]);
      expect(again.anomalies.every((a) => !a.new)).toBe(true); // the others are the same ongoing anomalies

      const missing = await client.callTool({ name: 'get_anomaly', arguments: { id: 'an_nope' } });
      expect(missing.isError).toBe(true);
      expect((missing.content as { text: string }[])[0]!.text).toMatch(/^id: no anomaly "an_nope"/);
      const badLookback = await client.callTool({ name: 'detect_anomalies', arguments: { lookback: 'soon' } });
      expect((badLookback.content as { text: string }[])[0]!.text).toMatch(/^lookback: /);
    } finally {
      await client.close();
    }
  });
});
