/**
 * Two incidents a minute apart, as the demo's loop meets them when its clock puts them close: a
 * known answer for each symptom. agent-a fails with a new error of its own (after a deploy);
 * about a minute later the permission gate gets a config change and starts denying agent-b's
 * calls, failing agent-b's threads. agent-a's errors are agent-a's doing: the gate's burst, its
 * change and the agent-b failures it explains do not reach agent-a. agent-b's errors are the
 * gate's doing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { analyzeRootCause } from '../src/explain/analyze.js';
import type { TelemetryRecord } from '../src/ingest/records.js';
import { Store } from '../src/store/store.js';

const MINUTE = 60_000;
const T = Date.UTC(2026, 0, 5, 12); // agent-a's new error starts here
const GATE_CHANGE = T + 40_000; // the gate's config change, 40 s after it
const GATE_DENIES = T + MINUTE; // and its denials of agent-b, a minute after it
const BASELINE_START = T - 60 * MINUTE;
const END = T + 40 * MINUTE;
const THREAD_EVERY_MS = 20_000;

function thread(agent: 'agent-a' | 'agent-b', k: number, t0: number): TelemetryRecord[] {
  const trace = `${agent}-${k}`;
  const inWindow = t0 >= T;
  const denied = agent === 'agent-b' && t0 >= GATE_DENIES ? k % 2 === 0 : k % 211 === 0;
  const newError = agent === 'agent-a' && inWindow && k % 3 === 0;
  const usualError = !denied && !newError && k % (agent === 'agent-a' ? 47 : 53) === 0;
  // a denied call returns at once; the agent's own time is the same either way
  const toolMs = denied ? 5 : 3000;
  const records: TelemetryRecord[] = [
    {
      type: 'event',
      ts: t0 + 500,
      kind: 'permission',
      component: 'gate',
      level: denied ? 'warn' : 'info',
      message: `${denied ? 'denied' : 'allowed'} write:repo for ${agent} on create_pull_request`,
      attrs: { decision: denied ? 'deny' : 'allow', principal: agent, tool: 'create_pull_request', trace_id: trace },
    },
    {
      type: 'span',
      trace_id: trace,
      span_id: 'tool',
      parent_id: 'root',
      name: 'tools/call create_pull_request',
      component: 'mcp-tools',
      start: t0 + 1000,
      duration_ms: toolMs,
      status: 'ok',
      attrs: {},
    },
  ];
  let errorType: string | null = null;
  if (denied) errorType = 'PermissionDenied';
  else if (newError) {
    errorType = 'TypeError';
    records.push({
      type: 'event',
      ts: t0 + 7000,
      kind: 'error',
      component: agent,
      level: 'error',
      message: `TypeError: Cannot read properties of undefined (reading 'hunks') in apply_patch for PR #${1000 + k}`,
      attrs: { 'error.type': 'TypeError', trace_id: trace },
    });
  } else if (usualError) {
    errorType = 'TimeoutError';
    records.push({
      type: 'event',
      ts: t0 + 7000,
      kind: 'error',
      component: agent,
      level: 'error',
      message: `TimeoutError: model call timed out after 30000 ms (request ${k})`,
      attrs: { 'error.type': 'TimeoutError', trace_id: trace },
    });
  }
  records.push({
    type: 'span',
    trace_id: trace,
    span_id: 'root',
    parent_id: null,
    name: `invoke_agent ${agent}`,
    component: agent,
    start: t0,
    duration_ms: 5000 + toolMs,
    status: errorType ? 'error' : 'ok',
    attrs: errorType ? { 'error.type': errorType } : {},
  });
  return records;
}

function overlappingIncidents(): TelemetryRecord[] {
  const records: TelemetryRecord[] = [];
  for (let k = 0, t0 = BASELINE_START; t0 < END - 10_000; k++, t0 += THREAD_EVERY_MS) {
    records.push(...thread('agent-a', k, t0), ...thread('agent-b', k, t0 + THREAD_EVERY_MS / 2));
  }
  records.push(
    {
      type: 'event',
      ts: T - 4 * MINUTE,
      kind: 'deploy',
      component: 'agent-a',
      level: 'info',
      message: 'deployed agent-a 2.15.0 (was 2.14.3)',
      attrs: { version: '2.15.0', previous: '2.14.3' },
    },
    {
      type: 'event',
      ts: GATE_CHANGE,
      kind: 'config',
      component: 'gate',
      level: 'info',
      message: 'config policy.version changed from v41 to v42 by policy-sync',
      attrs: { key: 'policy.version', old_value: 'v41', new_value: 'v42' },
    },
  );
  return records;
}

const dir = mkdtempSync(join(tmpdir(), 'kiwi-explain-overlap-'));
let store: Store;

beforeAll(() => {
  store = new Store(join(dir, 'kiwi.db'));
  store.writeRecords(overlappingIncidents());
});

afterAll(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const windows = { start: T, end: END, baseline_start: BASELINE_START, baseline_end: T };

describe('two incidents a minute apart, each symptom with its own cause', () => {
  it("agent-a's errors: its own new error, not the gate whose burst and change came after and fail agent-b", () => {
    const analysis = analyzeRootCause(store, { ...windows, component: 'agent-a', metric: 'errors' }, { limit: 10 });
    const ranking = JSON.stringify(analysis.candidates.map((c) => [c.component, c.score, c.metric]));
    const top = analysis.candidates[0]!;
    expect(top.component, ranking).toBe('agent-a');
    expect(top.evidence.signals.some((s) => s.kind === 'signature' && s.name.includes("reading 'hunks'"))).toBe(true);
    expect(top.evidence.changes[0]).toMatchObject({ kind: 'deploy', minutes_before_symptom: 4 });

    // the gate's evidence is all there, and none of it is about agent-a
    const gate = analysis.candidates.find((c) => c.component === 'gate');
    expect(gate, ranking).toBeDefined();
    expect(gate!.evidence.explains).toEqual([expect.objectContaining({ component: 'agent-b', what: 'errors' })]);
    expect(gate!.evidence.explains[0]!.share).toBeGreaterThan(0.9);
    expect(gate!.evidence.changes[0]?.message).toContain('policy.version');
    expect(gate!.evidence.changes[0]!.minutes_before_symptom).toBeLessThan(0);
    expect(gate!.evidence.summary).not.toContain("explains agent-b's");
    expect(gate!.score, ranking).toBeLessThan(top.score - 0.2);
  });

  it("agent-b's errors: the gate, whose denials its failed threads started at, after its config change", () => {
    const analysis = analyzeRootCause(store, { ...windows, component: 'agent-b', metric: 'errors' }, { limit: 10 });
    const ranking = JSON.stringify(analysis.candidates.map((c) => [c.component, c.score, c.metric]));
    const top = analysis.candidates[0]!;
    expect(top.component, ranking).toBe('gate');
    expect(top.evidence.signals.map((s) => s.kind)).toEqual(expect.arrayContaining(['permission', 'errors']));
    expect(top.evidence.explains.find((e) => e.component === 'agent-b')?.share).toBeGreaterThan(0.9);
    expect(top.evidence.summary).toContain("explains agent-b's errors");
    expect(top.evidence.changes[0]?.message).toContain('policy.version');
    // agent-a's new error is not agent-b's problem
    const agentA = analysis.candidates.find((c) => c.component === 'agent-a');
    expect(agentA === undefined || agentA.score < top.score - 0.2, ranking).toBe(true);
  });
});
