/**
 * The anomaly lifecycle as an agent sees it, over stdio against the built server: a spike resolved
 * with update_anomaly and found again by a later detect_anomalies is reported as already closed,
 * not as a new anomaly.
 */
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { expect, it } from 'vitest';
import type { TelemetryRecord } from '../src/ingest/records.js';
import { seededRandom } from '../src/stats/random.js';
import { Store } from '../src/store/store.js';
import { CLI, assertBuilt } from './helpers/cli.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir();
const MIN = 60_000;
const HOUR = 60 * MIN;
/** Recent (the server prunes what is older than its retention), and an hour of data after it before the clock. */
const END = Math.floor(Date.now() / MIN) * MIN - 2 * HOUR;

it('a resolved error spike found again is listed as already closed, and not recorded again', async () => {
  assertBuilt();
  const db = join(tempDir(), 'kiwi.db');
  const random = seededRandom(4);
  const records: TelemetryRecord[] = [];
  for (let ts = END - 8 * HOUR, i = 0; ts < END + HOUR; ts += 5_000, i++) {
    const error = random() < (ts >= END - 40 * MIN && ts < END ? 0.3 : 0.01);
    records.push({ type: 'span', trace_id: `t${i}`, span_id: 's', parent_id: null, name: 'x', component: 'api', start: ts, duration_ms: 100, status: error ? 'error' : 'ok', attrs: {} });
  }
  const store = new Store(db);
  store.writeRecords(records);
  store.close();

  const client = new Client({ name: 'lifecycle', version: '1' });
  await client.connect(new StdioClientTransport({ command: process.execPath, args: [CLI, 'serve', '--db', db], stderr: 'ignore' }));
  try {
    type Detected = { anomalies: { id: string; new: boolean }[]; already_closed: { id: string; status: string }[] };
    const detect = async (at: number) => {
      const result = await client.callTool({ name: 'detect_anomalies', arguments: { at: new Date(at).toISOString() } });
      return { structuredContent: result.structuredContent as Detected, text: (result.content as { text: string }[])[0]!.text };
    };
    const first = await detect(END - 10 * MIN);
    expect(first.structuredContent.anomalies).toHaveLength(1);
    const id = first.structuredContent.anomalies[0]!.id;
    // resolved now, by the clock: after all of this data
    const resolved = await client.callTool({ name: 'update_anomaly', arguments: { id, action: 'resolve', note: 'fixed' } });
    expect(resolved.isError).not.toBe(true);

    const again = await detect(END + 20 * MIN);
    expect(again.structuredContent.anomalies).toEqual([]);
    expect(again.structuredContent.already_closed).toEqual([expect.objectContaining({ id, status: 'resolved' })]);
    expect(again.text).toContain(`seen again, left resolved (nothing abnormal since it was closed): error_spike api [${id}]`);
    const all = (await client.callTool({ name: 'list_anomalies', arguments: { status: ['open', 'acknowledged', 'resolved', 'false_positive'] } })).structuredContent as { total: number };
    expect(all.total).toBe(1);
  } finally {
    await client.close();
  }
});
