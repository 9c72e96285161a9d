/**
 * The main job end to end: the demo's loop (a real `kiwi serve` over stdio, a real MCP client, a
 * human approval through the real CLI) with its outcomes asserted, and a directive whose verify
 * step fails, rolled back.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { INCIDENT_TYPES, offsetPlacing, writeScenario } from '../src/generate/index.js';
import type { DemoOutcome } from '../src/cli/demo.js';
import { readSetting } from '../src/settings.js';
import { Store } from '../src/store/store.js';
import { assertBuilt, runCli } from './helpers/cli.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir('kiwi-loop-');
// The demo starts the CLI next to its own module: import the built one, so the loop runs what users run.
const dist = '../dist/src/';
const { runDemo } = (await import(`${dist}cli/demo.js`)) as typeof import('../src/cli/demo.js');

describe('the loop an agent lives (npm run demo)', () => {
  it('finds every incident, ranks each root cause first, forecasts the OOM, heals with an approved directive', async () => {
    assertBuilt();
    const transcript: string[] = [];
    const { code, outcome } = await runDemo({ dir: tempDir(), days: 2, seed: 7, out: (line) => transcript.push(line) });
    expect(code).toBe(0);
    const o: DemoOutcome = outcome;

    expect(o.incidents.map((i) => i.type).sort()).toEqual([...INCIDENT_TYPES].sort());
    for (const incident of o.incidents) {
      expect(incident.anomaly_id, `${incident.type} detected`).not.toBeNull();
      expect(incident.top_candidate, `${incident.type} root cause`).toBe(incident.root_cause);
      expect(incident.source).toBe('deterministic'); // no sampling client, no API key here
    }

    expect(o.oom.forecast_hours).not.toBeNull();
    expect(Math.abs(o.oom.error!)).toBeLessThanOrEqual(0.2);

    expect(o.directive).toMatchObject({ planned: 'planned', after_execute: 'awaiting_approval', final: 'succeeded', timeout_before: null, timeout_after: 30000 });
    expect(o.directive.audited).toEqual(expect.arrayContaining(['directive.awaiting_approval', 'directive.approved', 'anomaly.update', 'directive.finish']));
    expect(o.healed.resolved).toContain('latency_spike|mcp-search');
    expect(o.healed.still_open).toEqual(expect.arrayContaining(['error_spike|agent-coder', 'memory_leak|worker', 'connection_instability|mcp-github', 'permission_spike|policy']));
    expect(o.healed.still_open).not.toContain('latency_spike|mcp-search');

    expect(o.kiwi_requests).toBeGreaterThanOrEqual(10);
    expect(o.charts.length).toBeGreaterThanOrEqual(1);
    for (const chart of o.charts) expect(readFileSync(chart).subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
    expect(transcript.join('\n')).toMatch(/## What happened/);
  });
});

describe('a directive whose check fails', () => {
  it('is rolled back: the setting it changed is restored, and both changes are audited', async () => {
    assertBuilt();
    const dir = tempDir();
    const db = join(dir, 'kiwi.db');
    const policy = join(dir, 'policy.yaml');
    writeFileSync(policy, 'grants:\n  "cli:*": [read:metrics, write:settings, write:anomalies, write:events, execute:script, call:tool]\n');
    // a latency spike at a busy hour for the simulated users, ending now
    const now = Date.now();
    const utcOffsetHours = offsetPlacing(now, 15);
    await writeScenario({ days: 1, seed: 3, end: now, incidents: [{ type: 'latency_spike' }], utcOffsetHours }, join(dir, 'scenario.jsonl'));
    expect((await runCli(['ingest', join(dir, 'scenario.jsonl'), '--db', db])).code).toBe(0);

    const run = await runCli(
      [
        'directive', 'run', 'auto_heal_anomaly', '--db', db, '--policy', policy, '--mode', 'execute', '--approve',
        '--input', 'anomaly_type=latency_spike', '--input', 'component=mcp-search', '--input', 'verify_delay=0s',
        '--input', 'latency_target_ms=1', '--input', 'timeout_ms=45000',
      ],
      { env: { USER: 'ops' } },
    );
    expect(run.stdout).toMatch(/ROLLED_BACK/);
    expect(run.stdout).toMatch(/not healed: latency_p95_ms of mcp-search/);

    const store = new Store(db);
    expect(readSetting(store, 'mcp.timeout_ms')).toEqual({});
    const changes = store.settingHistory('mcp.timeout_ms').reverse().map((h) => [h.old_value, h.new_value]);
    expect(changes).toEqual([
      [null, { 'mcp-search': 45000 }],
      [{ 'mcp-search': 45000 }, {}],
    ]);
    const audited = store.listAudit(100).map((a) => a.action);
    expect(audited.filter((a) => a === 'settings.change')).toHaveLength(2);
    expect(store.searchEvents({ text: 'could not heal the latency_spike on mcp-search' }, 5).events).toHaveLength(1);
    store.close();
  });
});
