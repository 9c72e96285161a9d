/**
 * What an operator relies on when a directive changes things: an undo never overwrites someone
 * else's change, secret inputs are masked in everything stored, the policy's webhook timeout holds,
 * a wait longer than its step's timeout is refused at validation, every tool that changes data
 * needs approval, and an approver must hold the permissions of what they approve.
 */
import { createServer, type Server } from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, describe, expect, it } from 'vitest';
import { DirectiveLibrary } from '../src/directives/library.js';
import { formatDiagnostic } from '../src/directives/load.js';
import type { Policy } from '../src/directives/policy.js';
import { validateDirective } from '../src/directives/validate.js';
import { createKiwi, type Kiwi } from '../src/index.js';
import { readSetting } from '../src/settings.js';
import { AnomalyStore, type AnomalyFinding } from '../src/store/anomalies.js';
import { Store } from '../src/store/store.js';
import { ALL_PERMISSIONS, directiveSetup, policy, type DirectiveSetup } from './helpers/directives.js';
import { connectInProcess } from './helpers/mcp.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir('kiwi-directives-safety-');
const stores: Store[] = [];
const kiwis: Kiwi[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) s.close();
  for (const k of kiwis.splice(0)) await k.close();
});

type Setup = DirectiveSetup;

function setup(options: { policy?: Policy } = {}): Setup {
  return directiveSetup(tempDir(), (store) => stores.push(store), options);
}

function validate(s: Setup, name: string): string[] {
  const library = new DirectiveLibrary(s.directives);
  return validateDirective(library.get(name)!.loaded, { library, scriptsDir: s.scripts, tools: [] }, name).map((d) => formatDiagnostic(d).replace(s.directives, 'D'));
}

const head = (name: string, permissions = '[read:metrics, write:settings, write:events, write:anomalies, net:webhook]') =>
  `name: ${name}\nversion: 1.0.0\ndescription: test\npermissions: ${permissions}\n`;

async function until(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

type StepRow = { phase: string; ref: string; outcome: string; error: string | null };

describe('an undo never overwrites a change made since', () => {
  // sets detect.sensitivity, waits, then a check that always fails (no data): the change is undone
  const setsThenFails = (name: string, value: number, wait: string) => `${head(name)}steps:
  - action: settings.set
    inputs: { key: detect.sensitivity, value: ${value} }
  - action: wait
    inputs: { duration: ${wait} }
  - action: verify
    inputs: { signal: metric, metric: nothing, component: none, below: 1 }
`;

  it('settings: a value an operator set while the run waited stays, and the run reports its rollback incomplete', async () => {
    const s = setup();
    s.write('a', setsThenFails('a', 0.7, '600ms'));
    s.write('b', setsThenFails('b', 0.8, '300ms'));
    const a = s.engine.run({ directive: 'a', principal: 'cli:alice', mode: 'execute', approve: true });
    await until('run a to set 0.7', () => readSetting(s.store, 'detect.sensitivity') === 0.7);
    const b = s.engine.run({ directive: 'b', principal: 'cli:carol', mode: 'execute', approve: true });
    await until('run b to set 0.8', () => readSetting(s.store, 'detect.sensitivity') === 0.8);
    s.store.changeSetting('detect.sensitivity', 0.9, 'cli:bob', 'by hand');
    const [runA, runB] = await Promise.all([a, b]);

    expect(readSetting(s.store, 'detect.sensitivity')).toBe(0.9);
    for (const [run, set] of [[runA, 0.7], [runB, 0.8]] as const) {
      expect(run.status).toBe('failed');
      expect(run.error).toMatch(
        new RegExp(`rollback incomplete: restore detect\\.sensitivity to [0-9.]+: detect\\.sensitivity is 0\\.9 now, not the ${set} this run set \\(changed by cli:bob at \\d{4}-\\d\\d-\\d\\dT[^)]+\\): left as it is`),
      );
      expect((run.steps as StepRow[]).filter((r) => r.phase === 'undo').map((r) => [r.ref, r.outcome])).toEqual([['settings.restore', 'failed']]);
    }
    // nothing was written back after the operator's change
    expect(s.store.settingHistory('detect.sensitivity', 1)[0]).toMatchObject({ actor: 'cli:bob', new_value: 0.9 });
  });

  it('settings: an undo still restores when the value is the one the run set (a component entry too)', async () => {
    const s = setup();
    s.write('c', `${head('c')}steps:
  - action: settings.set
    inputs: { key: mcp.timeout_ms, component: svc, value: 30000 }
  - action: verify
    inputs: { signal: metric, metric: nothing, component: none, below: 1 }
`);
    s.store.changeSetting('mcp.timeout_ms', { other: 5000 }, 'cli:bob');
    const run = await s.engine.run({ directive: 'c', principal: 'cli:alice', mode: 'execute', approve: true });
    expect(run.status).toBe('rolled_back');
    expect(readSetting(s.store, 'mcp.timeout_ms')).toEqual({ other: 5000 });
  });

  it('anomalies: a status an operator set while the run waited stays', async () => {
    const s = setup();
    const anomalies = new AnomalyStore(s.store);
    const finding: AnomalyFinding = {
      fingerprint: 'latency_spike|svc',
      type: 'latency_spike',
      severity: 'warning',
      component: 'svc',
      series_id: null,
      description: 'p95 5x baseline',
      start_ts: Date.now() - 120_000,
      end_ts: Date.now() - 60_000,
      score: 0.7,
      evidence: {},
      suggested_action: null,
    };
    const { anomaly } = anomalies.record(finding);
    s.write('ack', `${head('ack')}inputs:\n  id: { type: string }\nsteps:
  - action: anomaly.update
    inputs: { id: "{{ inputs.id }}", status: acknowledged, note: looking }
  - action: wait
    inputs: { duration: 300ms }
  - action: verify
    inputs: { signal: metric, metric: nothing, component: none, below: 1 }
`);
    const pending = s.engine.run({ directive: 'ack', principal: 'cli:alice', mode: 'execute', approve: true, inputs: { id: anomaly.id } });
    await until('the run to acknowledge', () => anomalies.get(anomaly.id)!.status === 'acknowledged');
    anomalies.setStatus(anomaly.id, 'resolved', 'cli:bob', 'fixed by hand');
    const run = await pending;
    expect(anomalies.get(anomaly.id)).toMatchObject({ status: 'resolved', note: 'fixed by hand' });
    expect(run.status).toBe('failed');
    expect(run.error).toMatch(
      new RegExp(`rollback incomplete: restore anomaly ${anomaly.id} to open: anomaly ${anomaly.id} is resolved \\(note "fixed by hand"\\) now, not the acknowledged \\(note "looking"\\) this run set \\(changed by cli:bob at [^)]+\\): left as it is`),
    );
  });
});

describe('secret inputs are masked in what is stored', () => {
  const SECRET = 'hunter2-SECRET';

  it('events, setting reasons, anomaly notes and the audit trail hold *** (every table of the store is read back)', async () => {
    const s = setup();
    const { anomaly } = new AnomalyStore(s.store).record({
      fingerprint: 'error_rate|svc',
      type: 'error_rate',
      severity: 'warning',
      component: 'svc',
      series_id: null,
      description: 'errors',
      start_ts: Date.now() - 60_000,
      end_ts: Date.now(),
      score: 0.5,
      evidence: {},
      suggested_action: null,
    });
    s.write('sec', `${head('sec')}inputs:\n  token: { type: string, secret: true }\n  id: { type: string }\nsteps:
  - action: events.log
    inputs: { message: "used token {{ inputs.token }}", attrs: { token: "{{ inputs.token }}", nested: ["x {{ inputs.token }}"] } }
  - action: settings.set
    inputs: { key: detect.sensitivity, value: 0.6, reason: "rotated {{ inputs.token }}" }
  - action: anomaly.update
    inputs: { id: "{{ inputs.id }}", status: acknowledged, note: "token {{ inputs.token }} leaked" }
`);
    const run = await s.engine.run({ directive: 'sec', principal: 'cli:t', mode: 'execute', approve: true, inputs: { token: SECRET, id: anomaly.id } });
    expect(run.status).toBe('succeeded');
    expect(s.store.searchEvents({ text: 'used token' }, 5).events[0]).toMatchObject({ message: 'used token ***', attrs: { token: '***', nested: ['x ***'] } });
    expect(s.store.settingHistory('detect.sensitivity', 1)[0]).toMatchObject({ new_value: 0.6, reason: 'rotated ***' });
    expect(new AnomalyStore(s.store).get(anomaly.id)!.note).toBe('token *** leaked');
    const tables = (s.store.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((t) => t.name);
    for (const table of tables) {
      const rows = JSON.stringify(s.store.db.prepare(`SELECT * FROM "${table}"`).all());
      expect(rows, `table ${table}`).not.toContain(SECRET);
    }
  });

  it('a secret used as a setting value is stored as given (the value must be real); its run shows ***', async () => {
    const s = setup();
    s.write('model', `${head('model')}inputs:\n  token: { type: string, secret: true }\nsteps:
  - action: settings.set
    inputs: { key: explain.llm_model, value: "{{ inputs.token }}" }
`);
    const run = await s.engine.run({ directive: 'model', principal: 'cli:t', mode: 'execute', approve: true, inputs: { token: SECRET } });
    expect(run.status).toBe('succeeded');
    expect(readSetting(s.store, 'explain.llm_model')).toBe(SECRET);
    expect(JSON.stringify(s.engine.getRun(run.id))).not.toContain(SECRET);
  });
});

/** V8's collector, when it can be had without starting Node with --expose-gc; null otherwise. */
function collector(): (() => void) | null {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed) return exposed;
  try {
    setFlagsFromString('--expose_gc');
    return runInNewContext('gc') as () => void;
  } catch {
    return null;
  }
}

describe('the policy webhook timeout', () => {
  it('fires even after a garbage collection while the receiver is still silent', async () => {
    const received: unknown[] = [];
    const server: Server = createServer((req, res) => {
      let text = '';
      req.on('data', (d: Buffer) => (text += d.toString()));
      req.on('end', () => {
        received.push(JSON.parse(text));
        setTimeout(() => res.writeHead(204).end(), 4000).unref(); // answers late
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const gc = collector();
    try {
      const s = setup({ policy: policy({ webhooks: { allow: [`http://127.0.0.1:${port}/hooks/`], timeout: '300ms' } }) });
      s.write('late', `${head('late')}inputs:\n  token: { type: string, secret: true }\nsteps:
  - action: notify.webhook
    inputs: { url: "http://127.0.0.1:${port}/hooks/late", body: { token: "{{ inputs.token }}" } }
`);
      const started = Date.now();
      const pending = s.engine.run({ directive: 'late', principal: 'cli:t', mode: 'execute', inputs: { token: 'real-token' } });
      await until('the webhook to arrive', () => received.length === 1);
      gc?.();
      await new Promise((r) => setTimeout(r, 50));
      gc?.();
      const run = await pending;
      const took = Date.now() - started;
      expect(run.status).toBe('rolled_back');
      expect(run.error).toMatch(/steps\[0\] \(step_steps_0\) failed: webhook: no answer within 300 ms \(policy webhooks\.timeout\)/);
      expect(took).toBeLessThan(2500);
      expect(received).toEqual([{ token: 'real-token' }]); // the body sent out keeps the real value
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

describe('validation: waits that cannot fit their step, and timeouts without a unit', () => {
  it('reports a wait or verify delay not shorter than the step timeout at the step, naming the timeout to raise', () => {
    const s = setup();
    s.write('w', `${head('w')}steps:
  - action: wait
    inputs: { duration: 2m }
  - action: verify
    timeout: 90s
    inputs: { signal: metric, metric: cpu, component: svc, below: 1, delay: 2m }
  - action: verify
    timeout: 3m
    inputs: { signal: metric, metric: cpu, component: svc, below: 1, delay: 2m, window: 10m }
  - action: wait
    timeout: 10m
    inputs: { duration: 6m }
  - action: wait
    inputs: { duration: 59s }
`);
    expect(validate(s, 'w')).toEqual([
      "D/w.yaml:6:5: wait duration 2m is not shorter than the default step timeout (60s), so the step would always time out; raise the step's timeout: above 2m (at most 10m)",
      "D/w.yaml:8:5: verify delay 2m is not shorter than its timeout (90s), so the step would always time out; raise the step's timeout: above 2m (at most 10m)",
      'D/w.yaml:14:5: wait duration 6m is longer than 5 minutes, the most a wait may take',
    ]);
  });

  it("the README's raise_timeout example (delay: 2m, no timeout) is reported", () => {
    const s = setup();
    s.write('raise_timeout', `name: raise_timeout
version: 1.0.0
description: Raise an MCP server's tool-call timeout, then check its latency recovered
inputs:
  component: { type: string }
permissions: [read:metrics, write:settings]
target: "{{ inputs.component }}"
steps:
  - name: raise
    action: settings.set
    inputs: { key: mcp.timeout_ms, component: "{{ inputs.component }}", value: 30000 }
  - name: check
    if: "{{ inputs.component != 'kiwi' }}"
    action: verify
    inputs: { signal: latency_p95_ms, component: "{{ inputs.component }}", window: 5m, delay: 2m, below: 2000 }
`);
    expect(validate(s, 'raise_timeout')).toEqual([expect.stringMatching(/^D\/raise_timeout\.yaml:12:5: verify delay 2m is not shorter than the default step timeout \(60s\)/)]);
  });

  it('refuses a bare-number timeout (it would be milliseconds) and asks for a unit', async () => {
    const s = setup();
    s.write('t', `${head('t')}steps:\n  - action: wait\n    timeout: 10\n    inputs: { duration: 1s }\n`);
    expect(validate(s, 't')).toEqual(['D/t.yaml:7:14: timeout: 10 has no unit; write it with one, e.g. 10s, 10ms or 10m']);
    await expect(s.engine.run({ directive: 't', principal: 'cli:t', mode: 'execute' })).rejects.toThrow(/timeout: 10 has no unit/);
  });
});

describe('approval', () => {
  it('a tool step that is not read-only (update_anomaly over real MCP) waits for approval, planned as not reversible', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'directives'));
    mkdirSync(join(dir, 'scripts'));
    writeFileSync(join(dir, 'policy.yaml'), 'grants:\n  "*": [read:metrics, call:tool]\n');
    writeFileSync(
      join(dir, 'directives', 'close.yaml'),
      `${head('close', '[read:metrics, call:tool]')}inputs:\n  id: { type: string }\nsteps:\n  - tool: update_anomaly\n    inputs: { id: "{{ inputs.id }}", action: resolve, note: done }\n`,
    );
    const kiwi = createKiwi({ db: join(dir, 'kiwi.db'), selfTelemetry: false, policy: join(dir, 'policy.yaml'), directivesDir: join(dir, 'directives'), scriptsDir: join(dir, 'scripts') });
    kiwis.push(kiwi);
    const anomalies = new AnomalyStore(kiwi.store);
    const { anomaly } = anomalies.record({
      fingerprint: 'latency_spike|svc',
      type: 'latency_spike',
      severity: 'warning',
      component: 'svc',
      series_id: null,
      description: 'slow',
      start_ts: Date.now() - 60_000,
      end_ts: Date.now(),
      score: 0.5,
      evidence: {},
      suggested_action: null,
    });
    const client = await connectInProcess(kiwi.server, 'safety-agent');
    const result = await client.callTool({ name: 'run_directive', arguments: { name: 'close', inputs: { id: anomaly.id }, mode: 'execute' } });
    expect(result.isError).not.toBe(true);
    const run = result.structuredContent as { status: string; plan: { ref: string; destructive: boolean; reversible: boolean }[] };
    expect(run.status).toBe('awaiting_approval');
    expect(run.plan).toEqual([expect.objectContaining({ ref: 'update_anomaly', destructive: true, reversible: false })]);
    expect(anomalies.get(anomaly.id)!.status).toBe('open');
    await client.close();
  });

  it('an approver not granted the destructive steps’ permissions is refused, audited, and the run keeps waiting', async () => {
    const s = setup({ policy: policy({ grants: { '*': ['read:metrics'], 'cli:alice': ALL_PERMISSIONS, 'cli:carol': ['read:metrics', 'write:settings'], 'cli:mallory': ['read:metrics'] } }) });
    s.write('d', `${head('d', '[read:metrics, write:settings]')}steps:\n  - action: settings.set\n    inputs: { key: retention.raw_days, value: 9 }\n`);
    const waiting = await s.engine.run({ directive: 'd', principal: 'cli:alice', mode: 'execute' });
    expect(waiting.status).toBe('awaiting_approval');
    await expect(s.engine.approve(waiting.id, 'cli:mallory')).rejects.toThrow(
      /cli:mallory may not approve it: the policy \(test policy\) does not grant cli:mallory write:settings \(steps\[0\] settings\.set\); an approver must hold the permissions of the destructive steps\. The run still awaits approval/,
    );
    expect(s.engine.getRun(waiting.id)!.status).toBe('awaiting_approval');
    expect(readSetting(s.store, 'retention.raw_days')).toBe(30);
    expect(s.store.listAudit(20).find((a) => a.action === 'directive.approval_refused')).toMatchObject({ actor: 'cli:mallory', target: waiting.id });
    const done = await s.engine.approve(waiting.id, 'cli:carol');
    expect(done).toMatchObject({ status: 'succeeded', approved_by: 'cli:carol' });
    expect(readSetting(s.store, 'retention.raw_days')).toBe(9);
  });
});
