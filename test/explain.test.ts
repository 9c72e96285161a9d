import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { analyzeRootCause } from '../src/explain/analyze.js';
import { buildBrief } from '../src/explain/narrative.js';
import { explainSymptom } from '../src/explain/service.js';
import type { Analysis, Candidate } from '../src/explain/types.js';
import { loadScenario, scenarioTruth, type IncidentTruth, type IncidentType, type ScenarioOptions } from '../src/generate/index.js';
import type { TelemetryRecord } from '../src/ingest/records.js';
import { SELF_COMPONENT, SelfTelemetry } from '../src/ingest/self.js';
import { AnomalyStore } from '../src/store/anomalies.js';
import { Store } from '../src/store/store.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';

// One store per incident type, each a generated day ending at 17:00 UTC (busy hours).
const END = Date.UTC(2025, 5, 10, 17);
const dir = mkdtempSync(join(tmpdir(), 'kiwi-explain-'));
const scenarios = new Map<IncidentType, { store: Store; incident: IncidentTruth }>();

function load(type: IncidentType, seed: number): { store: Store; incident: IncidentTruth } {
  const options: ScenarioOptions = { days: 1, seed, end: END, incidents: [{ type }] as ScenarioOptions['incidents'] };
  const store = new Store(join(dir, `${type}.db`));
  loadScenario(store, options);
  return { store, incident: scenarioTruth(options).incidents[0]! };
}

const TYPES: IncidentType[] = ['latency_spike', 'error_spike', 'permission_spike', 'memory_leak', 'flaky_connection'];
/** Where an operator would first notice each incident. */
const NOTICED: Record<IncidentType, { component: string; metric: string }> = {
  latency_spike: { component: 'agent-planner', metric: 'latency' },
  error_spike: { component: 'agent-coder', metric: 'errors' },
  permission_spike: { component: 'agent-reviewer', metric: 'errors' },
  memory_leak: { component: 'worker', metric: 'process.memory.usage' },
  flaky_connection: { component: 'agent-coder', metric: 'errors' },
};

beforeAll(() => {
  TYPES.forEach((type, i) => scenarios.set(type, load(type, 40 + i)));
});

afterAll(() => {
  for (const { store } of scenarios.values()) store.close();
  rmSync(dir, { recursive: true, force: true });
});

const byComponent = (a: Analysis, component: string): Candidate | undefined => a.candidates.find((c) => c.component === component);

describe('the injected root cause ranks first in every generated scenario', () => {
  for (const type of TYPES) {
    it(`${type}: named symptom and start time only`, () => {
      const { store, incident } = scenarios.get(type)!;
      for (const symptom of [NOTICED[type], {}]) {
        const analysis = analyzeRootCause(store, { start: incident.start_ms, ...symptom });
        expect(analysis.candidates[0]?.component, JSON.stringify(analysis.candidates.map((c) => [c.component, c.score, c.metric]))).toBe(
          incident.root_cause.component,
        );
        const top = analysis.candidates[0]!;
        expect(top.score).toBeGreaterThan(0.6);
        expect(top.confidence).toBeGreaterThan(0.5);
        // the runner-up is clearly weaker
        expect(analysis.candidates[1]!.score).toBeLessThan(top.score - 0.2);
      }
    });
  }
});

describe('evidence', () => {
  it('latency spike: the slow MCP server explains its caller, after a config change, moving a minute after it', () => {
    const { store, incident } = scenarios.get('latency_spike')!;
    const analysis = analyzeRootCause(store, { start: incident.start_ms, component: 'agent-planner', metric: 'latency' });
    const search = analysis.candidates[0]!;
    expect(search.component).toBe('mcp-search');
    expect(search.metric).toBe('latency (own time)');
    expect(search.evidence.deviation!.z!).toBeGreaterThan(5);
    expect(search.evidence.deviation!.current!).toBeGreaterThan(3 * search.evidence.deviation!.baseline!);
    expect(search.evidence.onset!.relative_to_symptom_ms).toBeGreaterThanOrEqual(0);
    expect(search.evidence.onset!.relative_to_symptom_ms).toBeLessThanOrEqual(3 * 60_000);
    expect(search.evidence.changes[0]).toMatchObject({ kind: 'config', minutes_before_symptom: 0 });
    expect(search.evidence.changes[0]!.message).toContain('max_concurrency');
    const planner = search.evidence.explains.find((e) => e.component === 'agent-planner' && e.what === 'latency');
    expect(planner?.share).toBeGreaterThan(0.5);
    expect(search.evidence.correlation).toBeGreaterThan(0.2);
    expect(search.evidence.is_symptom_component).toBe(false);
    // the agent that waits is not blamed for it
    const agent = byComponent(analysis, 'agent-planner');
    if (agent) expect(agent.evidence.explained_by.some((e) => e.component === 'mcp-search')).toBe(true);
  });

  it('error spike: a new error signature after a deploy', () => {
    const { store, incident } = scenarios.get('error_spike')!;
    const analysis = analyzeRootCause(store, { start: incident.start_ms, component: 'agent-coder', metric: 'errors' });
    const coder = analysis.candidates[0]!;
    const signature = coder.evidence.signals.find((s) => s.kind === 'signature');
    expect(signature?.name).toContain("reading 'hunks'");
    expect(signature?.baseline).toBe(0);
    expect(coder.evidence.signals.some((s) => s.kind === 'errors' && s.z! > 5)).toBe(true);
    expect(coder.evidence.changes[0]?.kind).toBe('deploy');
    expect(analysis.context.signatures.find((s) => s.component === 'agent-coder')?.is_new).toBe(true);
    expect(analysis.context.affected_threads.some((t) => t.component === 'agent-coder' && t.status === 'error')).toBe(true);
  });

  it("permission spike: the policy, not the reviewer whose threads fail, with the reviewer's failures traced to it", () => {
    const { store, incident } = scenarios.get('permission_spike')!;
    const analysis = analyzeRootCause(store, { start: incident.start_ms, component: 'agent-reviewer', metric: 'errors' });
    const policy = analysis.candidates[0]!;
    expect(policy.component).toBe('policy');
    expect(policy.metric).toBe('permission denials');
    const reviewer = policy.evidence.explains.find((e) => e.component === 'agent-reviewer' && e.what === 'errors');
    expect(reviewer?.share).toBeGreaterThan(0.7);
    expect(policy.evidence.changes[0]?.message).toContain('policy.version');
    // the reviewer's threads did fail more: the symptom is real, only not its own doing
    const reviewerCandidate = byComponent(analysis, 'agent-reviewer');
    expect(reviewerCandidate === undefined || reviewerCandidate.score < 0.5).toBe(true);
  });

  it('memory leak: the worker memory, against a day of baseline', () => {
    const { store, incident } = scenarios.get('memory_leak')!;
    const analysis = analyzeRootCause(store, { start: incident.start_ms, component: 'worker', metric: 'process.memory.usage' });
    const worker = analysis.candidates[0]!;
    expect(worker.metric).toBe('process.memory.usage');
    expect(worker.evidence.deviation).toMatchObject({ direction: 'up', unit: 'By' });
    expect(worker.evidence.correlation).toBeGreaterThan(0.9);
    expect(worker.evidence.is_symptom_component).toBe(true);
  });

  it('flaky connection: disconnects, and the agents failures traced to the server', () => {
    const { store, incident } = scenarios.get('flaky_connection')!;
    const analysis = analyzeRootCause(store, { start: incident.start_ms, component: 'agent-coder', metric: 'errors' });
    const github = analysis.candidates[0]!;
    expect(github.evidence.signals.map((s) => s.kind)).toEqual(expect.arrayContaining(['connection', 'errors']));
    const status = analysis.context.mcp_status.find((m) => m.component === 'mcp-github');
    expect(status?.disconnects_in_window).toBeGreaterThanOrEqual(5);
    expect(analysis.context.mcp_status.map((m) => m.component).sort()).toEqual(['mcp-filesystem', 'mcp-github', 'mcp-search']);
  });

  it('a quiet hour has no candidate that looks like an incident', () => {
    const { store } = scenarios.get('latency_spike')!;
    for (const hour of [9, 11, 13]) {
      const analysis = analyzeRootCause(store, { start: Date.UTC(2025, 5, 10, hour), end: Date.UTC(2025, 5, 10, hour, 45) });
      expect(analysis.candidates[0]?.score ?? 0).toBeLessThan(0.6);
    }
  });
});

describe('an anomaly id as the symptom', () => {
  it('takes its component, type and times', () => {
    const { store, incident } = scenarios.get('latency_spike')!;
    const { anomaly } = new AnomalyStore(store).record({
      fingerprint: 'latency_spike:agent-planner',
      type: 'latency_spike',
      severity: 'warning',
      component: 'agent-planner',
      series_id: null,
      description: 'agent-planner threads are slower',
      start_ts: incident.start_ms + 3 * 60_000,
      end_ts: END,
      score: 0.9,
      evidence: {},
      suggested_action: null,
    });
    const analysis = analyzeRootCause(store, { anomaly_id: anomaly.id });
    expect(analysis.symptom).toMatchObject({
      anomaly_id: anomaly.id,
      anomaly_type: 'latency_spike',
      component: 'agent-planner',
      metric: 'latency',
      start: incident.start_ms + 3 * 60_000,
      end: END,
      baseline_end: incident.start_ms + 3 * 60_000,
      baseline_start: incident.start_ms + 3 * 60_000 - 86_400_000,
      description: 'agent-planner threads are slower',
    });
    expect(analysis.candidates[0]!.component).toBe('mcp-search');
    // the config change 3 minutes before the anomaly's onset still counts
    expect(analysis.candidates[0]!.evidence.changes[0]?.minutes_before_symptom).toBe(3);
  });

  it('a change within the onset but after the given start reads as after it, not "-N min before"', () => {
    const { store, incident } = scenarios.get('error_spike')!;
    const deploy = incident.root_cause.event!;
    const analysis = analyzeRootCause(store, { start: deploy.ts_ms - 30_000, component: 'agent-coder', metric: 'errors' });
    const coder = byComponent(analysis, 'agent-coder')!;
    expect(coder.evidence.changes[0]).toMatchObject({ kind: 'deploy', minutes_before_symptom: -0.5 });
    expect(coder.evidence.summary).toContain(`deploy 0.5 min after the symptom's start: ${deploy.message}`);
  });

  it('a metric anomaly uses its series', () => {
    const { store, incident } = scenarios.get('memory_leak')!;
    const series = store.findSeries({ name: 'process.memory.usage', component: 'worker' }).series[0]!;
    const { anomaly } = new AnomalyStore(store).record({
      fingerprint: `memory_leak:${series.id}`,
      type: 'memory_leak',
      severity: 'warning',
      component: 'worker',
      series_id: series.id,
      description: 'worker memory grows',
      start_ts: incident.start_ms,
      end_ts: null,
      score: 0.8,
      evidence: {},
      suggested_action: null,
    });
    const analysis = analyzeRootCause(store, { anomaly_id: anomaly.id });
    expect(analysis.symptom.metric).toBe('process.memory.usage');
    expect(analysis.symptom.series_id).toBe(series.id);
    expect(analysis.candidates[0]!.component).toBe('worker');
    expect(analysis.candidates[0]!.evidence.correlation).toBeGreaterThan(0.9);
  });
});

describe('bad input is refused, naming the field', () => {
  it.each([
    [{}, /^start: required/],
    [{ start: 'yesterday' }, /^start: timestamp "yesterday"/],
    [{ start: '2025-06-10T16:00:00Z', end: '2025-06-10T15:00:00Z' }, /^end: must be after start/],
    [{ anomaly_id: 'an_nope' }, /^anomaly_id: no anomaly "an_nope"/],
    [{ start: '2025-06-10T16:00:00Z', component: 'nobody' }, /^component: no telemetry from "nobody"/],
    [{ start: '2025-06-10T16:00:00Z', metric: 'no.such.metric' }, /^metric: no series named "no.such.metric"/],
    [
      { start: '2025-06-10T16:00:00Z', end: '2025-06-10T17:00:00Z', baseline_start: '2025-06-10T15:00:00Z', baseline_end: '2025-06-10T16:30:00Z' },
      /^baseline_start: the baseline .* overlaps the symptom window/,
    ],
    [{ start: '2025-06-10T16:00:00Z', baseline_start: '2025-06-10T12:00:00Z', baseline_end: '2025-06-10T11:00:00Z' }, /^baseline_end: must be after/],
  ])('%j', (input, message) => {
    const { store } = scenarios.get('error_spike')!;
    expect(() => analyzeRootCause(store, input)).toThrow(message);
  });
});

describe('context and what leaves Kiwi', () => {
  it('is bounded, and redacts secrets in events before the brief is built', async () => {
    const { store, incident } = scenarios.get('error_spike')!;
    store.writeRecords([
      {
        type: 'event',
        ts: incident.start_ms - 10 * 60_000,
        kind: 'config',
        component: 'agent-coder',
        level: 'info',
        message: 'config db.password changed by ops (password=hunter2)',
        attrs: { key: 'db.password', old_value: 'old-pass-123', new_value: 'hunter2', api_key: 'sk-ant-api03-ZZZZZZZZZZZZZZZZZZZZ' },
      },
      {
        type: 'event',
        ts: incident.start_ms + 5 * 60_000,
        kind: 'log',
        component: 'agent-coder',
        level: 'warn',
        message: `retrying with Authorization: Bearer abcdefghijklmnop0123 ${'x'.repeat(1000)}`,
        attrs: {},
      },
    ]);
    const analysis = analyzeRootCause(store, { start: incident.start_ms, component: 'agent-coder', metric: 'errors' }, { limit: 20 });
    const c = analysis.context;
    expect(c.recent_logs.length).toBeLessThanOrEqual(15);
    expect(c.affected_threads.length).toBeLessThanOrEqual(5);
    expect(c.affected_threads.every((t) => t.calls.length <= 12 && t.events.length <= 8)).toBe(true);
    expect(c.recent_logs.every((l) => l.message.length <= 300)).toBe(true);
    expect(analysis.candidates.length).toBeLessThanOrEqual(20);
    const brief = buildBrief(analysis);
    expect(brief.length).toBeLessThanOrEqual(12_000);
    const everything = JSON.stringify(analysis.context) + JSON.stringify(analysis.candidates) + brief;
    for (const secret of ['hunter2', 'old-pass-123', 'sk-ant-api03', 'abcdefghijklmnop0123']) expect(everything).not.toContain(secret);
    expect(brief).toContain('[redacted]');
    expect(c.changes.some((e) => e.message.includes('db.password'))).toBe(true);

    // without an LLM the result says the deterministic summary wrote it, and why the others did not
    const explained = await explainSymptom(store, { start: incident.start_ms }, { env: {}, sampling: null });
    expect(explained.source).toBe('deterministic');
    expect(explained.fallbacks).toEqual(['sampling: no connected client that offers it', 'anthropic: ANTHROPIC_API_KEY is not set']);
    expect(explained.narrative.root_cause).toContain('agent-coder is the most likely root cause');
    expect(explained.narrative.next_steps.some((s) => s.includes('deploy'))).toBe(true);
    expect(explained.narrative.next_steps[0]).toMatch(/^Review the deploy of agent-coder .*roll it back/);
    // a deploy is rolled back by a person: no directive acts on it
    expect(explained.suggested_action).toBeNull();
  });
});

describe('metrics only', () => {
  it('ranks the series that moved first, with its onset and its correlation with the symptom', () => {
    const store = new Store(join(dir, 'metrics.db'));
    const start = Date.UTC(2026, 0, 1, 12);
    const records: TelemetryRecord[] = [];
    let noise = 1;
    const next = () => ((noise = (noise * 48271) % 2147483647) / 2147483647 - 0.5) * 2;
    for (let ts = start - 3_600_000; ts < start + 1_800_000; ts += 10_000) {
      const after = ts >= start + 300_000;
      for (let c = 0; c < 6; c++) {
        records.push({ type: 'metric', ts, name: 'cpu', component: `svc-${c}`, labels: {}, value: 20 + next() + (after && c === 4 ? 60 : 0) });
        records.push({ type: 'metric', ts, name: 'mem', component: `svc-${c}`, labels: {}, value: 1e8 + 1e5 * next() });
      }
      records.push({ type: 'metric', ts, name: 'lat', component: 'front', labels: {}, value: 0.2 + 0.01 * next() + (after ? 0.05 : 0) });
    }
    store.writeRecords(records);
    const analysis = analyzeRootCause(store, { start, component: 'front', metric: 'lat', baseline_start: start - 3_600_000, baseline_end: start });
    store.close();
    const top = analysis.candidates[0]!;
    expect(top.component).toBe('svc-4');
    expect(top.metric).toBe('cpu');
    expect(top.evidence.onset?.relative_to_symptom_ms).toBe(300_000);
    expect(top.evidence.correlation).toBeGreaterThan(0.9);
    expect(analysis.considered.series).toBe(13);
    expect(analysis.candidates.every((c) => c.component !== 'svc-0' || c.score < 0.5)).toBe(true);
  });
});

describe('malformed traces', () => {
  it('survive a span that is its own parent and a loop of two', () => {
    const store = new Store(join(dir, 'loops.db'));
    const start = Date.UTC(2026, 0, 1, 12);
    const records: TelemetryRecord[] = [];
    for (let i = 0; i < 200; i++) {
      const ts = start - 3_600_000 + i * 30_000;
      records.push(
        { type: 'span', trace_id: `t${i}`, span_id: 'a', parent_id: 'a', name: 'self', component: 'api', start: ts, duration_ms: 10, status: 'error', attrs: {} },
        { type: 'span', trace_id: `u${i}`, span_id: 'b', parent_id: 'c', name: 'x', component: 'api', start: ts, duration_ms: 10, status: 'error', attrs: {} },
        { type: 'span', trace_id: `u${i}`, span_id: 'c', parent_id: 'b', name: 'y', component: 'db', start: ts, duration_ms: 10, status: 'error', attrs: {} },
      );
    }
    store.writeRecords(records);
    const analysis = analyzeRootCause(store, { start, baseline_start: start - 3_600_000, baseline_end: start - 1_800_000 });
    store.close();
    // 60 threads of each kind in the baseline, 80 in the window (the half hour between is neither)
    expect(analysis.considered.spans).toBe(420);
  });
});

describe("Kiwi's own calls while an agent investigates", () => {
  // A latency spike of mcp-search; from 3 minutes after its start an agent investigates it through
  // Kiwi: 16 tool calls a minute for 20 minutes, every eighth failing on Kiwi's side. Kiwi records
  // each call as its own span (component kiwi), none of them in the baseline: its calls rise just
  // after the symptom's onset because of it.
  let store: Store;
  let incident: IncidentTruth;
  const investigation = (): number => incident.start_ms + 3 * 60_000;

  beforeAll(() => {
    ({ store, incident } = (() => {
      const options: ScenarioOptions = { days: 1, seed: 40, end: END, incidents: [{ type: 'latency_spike' }] as ScenarioOptions['incidents'] };
      const s = new Store(join(dir, 'self-investigation.db'));
      loadScenario(s, options);
      return { store: s, incident: scenarioTruth(options).incidents[0]! };
    })());
    const telemetry = new SelfTelemetry(store, 60_000, 3_600_000);
    for (let call = 0; call < 20 * 16; call++) {
      const failed = call % 8 === 7;
      telemetry.recordOperation({
        method: 'tools/call',
        tool: call % 2 ? 'analyze_root_cause' : 'query_metrics',
        start: investigation() + call * 3750,
        durationMs: 30 + (call % 7) * 10,
        outcome: failed ? 'error' : 'ok',
        ...(failed ? { errorType: 'tool_error', errorMessage: 'SqliteError: database is locked' } : {}),
      });
    }
    telemetry.stop();
  });

  afterAll(() => store.close());

  const sane = (analysis: Analysis) => {
    for (const c of analysis.candidates) {
      for (const s of c.evidence.signals) if (s.z !== null) expect(Math.abs(s.z), `${c.component} ${s.name}`).toBeLessThan(1000);
    }
  };

  it('a symptom elsewhere: Kiwi is no candidate, its errors are no signature, and the note says why', () => {
    for (const input of [
      { component: 'agent-planner', metric: 'latency' },
      { component: 'mcp-search', metric: 'latency' },
      { metric: 'latency' },
      {},
    ]) {
      const analysis = analyzeRootCause(store, { start: incident.start_ms, ...input }, { limit: 20 });
      const ranking = JSON.stringify(analysis.candidates.map((c) => [c.component, c.score, c.metric]));
      expect(analysis.candidates[0]?.component, ranking).toBe('mcp-search');
      expect(byComponent(analysis, SELF_COMPONENT), ranking).toBeUndefined();
      expect(analysis.context.signatures.some((s) => s.component === SELF_COMPONENT)).toBe(false);
      expect(analysis.notes.some((n) => n.includes(`component "${SELF_COMPONENT}"`) && n.includes('left out'))).toBe(true);
      sane(analysis);
    }
  });

  it('a symptom on Kiwi: Kiwi is a candidate, its calls judged with a sane z', () => {
    for (const input of [
      { component: SELF_COMPONENT, metric: 'requests' },
      { component: SELF_COMPONENT, metric: 'errors' },
      // a series only Kiwi writes names Kiwi without the component
      { metric: 'mcp.server.operation.duration' },
    ]) {
      const analysis = analyzeRootCause(store, { start: investigation(), ...input }, { limit: 20 });
      const ranking = JSON.stringify(analysis.candidates.map((c) => [c.component, c.score, c.metric]));
      const kiwi = byComponent(analysis, SELF_COMPONENT);
      expect(kiwi, `${JSON.stringify(input)} ${ranking}`).toBeDefined();
      expect(analysis.notes.some((n) => n.includes('left out'))).toBe(false);
      sane(analysis);
    }
    const requests = byComponent(analyzeRootCause(store, { start: investigation(), component: SELF_COMPONENT, metric: 'requests' }), SELF_COMPONENT)!;
    const traffic = requests.evidence.signals.find((s) => s.name === 'requests')!;
    // none in the baseline, 16 a minute in the window: judged against one event's Poisson noise, not 1e-9
    expect(traffic.baseline).toBe(0);
    expect(traffic.z!).toBeGreaterThan(3);
    expect(traffic.z!).toBeLessThan(100);
    expect(requests.evidence.is_symptom_component).toBe(true);
  });
});
