import { parseDuration, parseDurationOrMs, parseTimeInput } from '../src/time.js';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normaliseRecord, type EventRecord, type MetricRecord, type SpanRecord, type TelemetryRecord } from '../src/ingest/records.js';
import {
  INCIDENT_TYPES,
  WORKER_MEMORY_LIMIT_BYTES,
  generateRecords,
  parseIncidentList,
  recordToJsonLine,
  scenarioTruth,
  writeScenario,
  type IncidentTruth,
  type ScenarioOptions,
  type ScenarioTruth,
} from '../src/generate/index.js';

// 16:00 UTC is the daily peak: enough traffic inside the short incident windows.
const END = Date.UTC(2025, 5, 10, 16, 0);
const MIN = 60_000;
const HOUR = 3_600_000;
const ALL = INCIDENT_TYPES.join(',');

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kiwi-generate-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const spansOf = (records: TelemetryRecord[]): SpanRecord[] => records.filter((r): r is SpanRecord => r.type === 'span');
const eventsOf = (records: TelemetryRecord[], kind: string): EventRecord[] =>
  records.filter((r): r is EventRecord => r.type === 'event' && r.kind === kind);
const metricsOf = (records: TelemetryRecord[], name: string, component: string): MetricRecord[] =>
  records.filter((r): r is MetricRecord => r.type === 'metric' && r.name === name && r.component === component);
const timeOf = (r: TelemetryRecord): number => (r.type === 'span' ? r.start : r.ts);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
}

function errorRate(spans: SpanRecord[]): number {
  return spans.filter((s) => s.status === 'error').length / spans.length;
}

function slope(points: Array<[number, number]>): number {
  const n = points.length;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (const [x, y] of points) {
    sxy += (x - mx) * (y - my);
    sxx += (x - mx) ** 2;
  }
  return sxy / sxx;
}

/** The first sample after each collection (a drop of more than 50 MiB). */
function postGcMinima(points: MetricRecord[]): Array<[number, number]> {
  const minima: Array<[number, number]> = [];
  for (let i = 1; i < points.length; i++) {
    const prev = points[i - 1];
    const cur = points[i];
    if (prev && cur && cur.value < prev.value - 50 * 1048576) minima.push([cur.ts, cur.value]);
  }
  return minima;
}

function incident<T extends IncidentTruth['type']>(truth: ScenarioTruth, type: T): Extract<IncidentTruth, { type: T }> {
  const found = truth.incidents.find((i): i is Extract<IncidentTruth, { type: T }> => i.type === type);
  if (!found) throw new Error(`no ${type} in truth`);
  return found;
}

describe('parseIncidentList', () => {
  it('parses names and offsets', () => {
    expect(parseIncidentList('')).toEqual([]);
    expect(parseIncidentList('latency_spike, memory_leak@-6h,flaky_connection@-90m,error_spike@-1.5h,permission_spike@-30s')).toEqual([
      { type: 'latency_spike' },
      { type: 'memory_leak', offsetMs: -6 * HOUR },
      { type: 'flaky_connection', offsetMs: -90 * MIN },
      { type: 'error_spike', offsetMs: -1.5 * HOUR },
      { type: 'permission_spike', offsetMs: -30_000 },
    ]);
    expect(parseIncidentList('memory_leak@-2d')).toEqual([{ type: 'memory_leak', offsetMs: -2 * 24 * HOUR }]);
  });

  it('parses durations for --step', () => {
    expect(parseDuration('60s')).toBe(60_000);
    expect(() => parseDuration('60000')).toThrow(/"60000" has no unit; write it as 500ms, 90s/);
    expect(parseDurationOrMs('60000')).toBe(60_000);
    expect(parseDurationOrMs('2m')).toBe(120_000);
    expect(parseDuration('1.5m')).toBe(90_000);
    expect(() => parseDuration('0s')).toThrow(/0s/);
    expect(() => parseDuration('-5m')).toThrow(/-5m/);
    expect(parseTimeInput('-2h', 10 * 3_600_000)).toBe(8 * 3_600_000);
    expect(() => parseTimeInput('-99999d', Date.UTC(2026, 0, 1))).toThrow('"-99999d" reaches before 1970');
  });

  it('rejects bad items, naming them', () => {
    expect(() => parseIncidentList('latency_spike,cpu_spike')).toThrow(/cpu_spike/);
    expect(() => parseIncidentList('memory_leak@6h')).toThrow(/memory_leak@6h/);
    expect(() => parseIncidentList('memory_leak@-6w')).toThrow(/memory_leak@-6w/);
    expect(() => parseIncidentList('memory_leak@')).toThrow(/memory_leak@/);
    expect(() => parseIncidentList('memory_leak@-0m')).toThrow(/memory_leak@-0m/);
    expect(() => parseIncidentList('error_spike,error_spike')).toThrow(/more than once/);
  });

  it('rejects incidents that do not fit the scenario', () => {
    expect(() => scenarioTruth({ days: 1, seed: 1, end: END, incidents: parseIncidentList('memory_leak@-2d') })).toThrow(
      /memory_leak@-2d.*before the scenario start/,
    );
    expect(() => scenarioTruth({ days: 1, seed: 1, end: END, incidents: parseIncidentList('latency_spike@-30s') })).toThrow(
      /latency_spike@-30s/,
    );
    expect(() => [...generateRecords({ days: 0, seed: 1, end: END })]).toThrow(/days/);
    expect(() => [...generateRecords({ days: 1, seed: 1.5, end: END })]).toThrow(/seed/);
  });
});

describe('determinism and format', () => {
  const options: ScenarioOptions = { days: 1, seed: 11, end: END + 17_345, incidents: parseIncidentList(ALL) };
  let records: TelemetryRecord[];
  beforeAll(() => {
    records = [...generateRecords(options)];
  });

  it('writes byte-identical files for the same options, different ones for another seed', async () => {
    const a = join(dir, 'a.jsonl');
    const b = join(dir, 'b.jsonl');
    const c = join(dir, 'c.jsonl');
    const first = await writeScenario(options, a);
    await writeScenario(options, b);
    await writeScenario({ ...options, seed: 12 }, c);
    expect(first.truthPath).toBe(join(dir, 'a.truth.json'));
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
    expect(readFileSync(join(dir, 'a.truth.json'), 'utf8')).toBe(readFileSync(join(dir, 'b.truth.json'), 'utf8'));
    expect(readFileSync(a).equals(readFileSync(c))).toBe(false);

    const lines = readFileSync(a, 'utf8').split('\n');
    expect(lines.pop()).toBe('');
    expect(lines.length).toBe(first.lines);
    expect(records.length).toBe(lines.length);
    // Plain loop: one expect per line would make this test take minutes.
    const problems: string[] = [];
    lines.forEach((line, i) => {
      try {
        const record = normaliseRecord(JSON.parse(line));
        if (!isDeepStrictEqual(record, records[i])) problems.push(`line ${i + 1} differs from the generated record`);
        if (recordToJsonLine(record) !== line) problems.push(`line ${i + 1} does not round-trip`);
      } catch (err) {
        problems.push(`line ${i + 1}: ${(err as Error).message}`);
      }
    });
    expect(problems.slice(0, 5)).toEqual([]);
  }, 30_000);

  it('floors the end to the step, and emits in time order inside [start, end) plus trailing calls', () => {
    const truth = scenarioTruth(options);
    expect(truth.end_ms).toBe(END);
    expect(truth.start_ms).toBe(END - 24 * HOUR);
    const disorder = records.findIndex((r, i) => i > 0 && timeOf(r) < timeOf(records[i - 1] as TelemetryRecord));
    expect(disorder).toBe(-1);
    expect(timeOf(records[0] as TelemetryRecord)).toBe(truth.start_ms);
    const late = records.filter((r) => timeOf(r) >= truth.end_ms);
    expect(late.every((r) => r.type !== 'metric' && timeOf(r) < truth.end_ms + 5 * MIN)).toBe(true);
  });

  it('builds consistent traces', () => {
    const spans = spansOf(records);
    expect(new Set(spans.map((s) => s.span_id)).size).toBe(spans.length);
    const roots = new Map(spans.filter((s) => s.parent_id === null).map((s) => [s.span_id, s]));
    expect(new Set([...roots.values()].map((s) => s.trace_id)).size).toBe(roots.size);
    const children = spans.filter((s) => s.parent_id !== null);
    expect(children.length).toBeGreaterThan(roots.size);
    const problems: string[] = [];
    for (const child of children) {
      const root = roots.get(child.parent_id ?? '');
      const bad = (why: string): void => void problems.push(`${child.span_id}: ${why}`);
      if (!root || root.trace_id !== child.trace_id) {
        bad('no root in its trace');
        continue;
      }
      if (child.start <= root.start) bad('starts before its root');
      if (child.start + child.duration_ms > root.start + root.duration_ms) bad('ends after its root');
      if (child.name !== `tools/call ${String(child.attrs['gen_ai.tool.name'])}`) bad(`name ${child.name}`);
      if (child.attrs['mcp.method.name'] !== 'tools/call') bad('mcp.method.name');
      if (!/^mcp-(github|filesystem|search)$/.test(child.component)) bad(`component ${child.component}`);
      if ((child.status === 'error') !== (child.attrs['error.type'] !== undefined)) bad('status and error.type disagree');
    }
    for (const root of roots.values()) {
      if (root.name !== `invoke_agent ${root.component}`) problems.push(`root name ${root.name}`);
      if (root.attrs['gen_ai.operation.name'] !== 'invoke_agent' || root.attrs['gen_ai.agent.name'] !== root.component) {
        problems.push(`root attrs ${JSON.stringify(root.attrs)}`);
      }
    }
    expect(problems.slice(0, 5)).toEqual([]);
  });
});

describe('quiet scenario', () => {
  const options: ScenarioOptions = { days: 2, seed: 3, end: END };
  let records: TelemetryRecord[];
  let truth: ScenarioTruth;
  beforeAll(() => {
    records = [...generateRecords(options)];
    truth = scenarioTruth(options);
  });

  it('has one point per step for each of the 22 metric series', () => {
    expect(truth.metric_series.length).toBe(22);
    for (const s of truth.metric_series) {
      const points = records.filter(
        (r): r is MetricRecord =>
          r.type === 'metric' && r.name === s.name && r.component === s.component && JSON.stringify(r.labels) === JSON.stringify(s.labels),
      );
      expect(points.length).toBe(2 * 1440);
    }
    const cpu = records.filter((r): r is MetricRecord => r.type === 'metric' && r.name === 'process.cpu.utilization');
    expect(cpu.every((m) => m.value > 0 && m.value <= 1)).toBe(true);
  });

  it('follows the daily cycle', () => {
    const roots = spansOf(records).filter((s) => s.parent_id === null);
    const hourOf = (ms: number): number => new Date(ms).getUTCHours();
    const peak = roots.filter((s) => hourOf(s.start) >= 14 && hourOf(s.start) < 18).length;
    const night = roots.filter((s) => hourOf(s.start) >= 2 && hourOf(s.start) < 6).length;
    expect(peak).toBeGreaterThan(3 * night);
    expect(night).toBeGreaterThan(0);
  });

  it('connects once at start and never disconnects', () => {
    const conn = eventsOf(records, 'connection');
    expect(conn.map((e) => [e.component, e.attrs.state, e.ts])).toEqual([
      ['mcp-github', 'connected', truth.start_ms],
      ['mcp-filesystem', 'connected', truth.start_ms],
      ['mcp-search', 'connected', truth.start_ms],
    ]);
    expect(truth.incidents).toEqual([]);
  });

  it('keeps error and denial rates low and stable, with background signatures only', () => {
    const roots = spansOf(records).filter((s) => s.parent_id === null);
    for (const agent of ['agent-planner', 'agent-coder', 'agent-reviewer']) {
      for (let day = 0; day < 2; day++) {
        const from = truth.start_ms + day * 24 * HOUR;
        const mine = roots.filter((s) => s.component === agent && s.start >= from && s.start < from + 24 * HOUR);
        expect(mine.length).toBeGreaterThan(1000);
        const rate = errorRate(mine);
        expect(rate).toBeGreaterThan(0.002);
        expect(rate).toBeLessThan(0.03);
      }
    }
    const permissions = eventsOf(records, 'permission');
    const denied = permissions.filter((e) => e.attrs.decision === 'deny');
    expect(denied.length / permissions.length).toBeLessThan(0.005);
    expect(denied.every((e) => e.level === 'warn')).toBe(true);
    const errorTypes = new Set(eventsOf(records, 'error').map((e) => String(e.attrs['error.type'])));
    expect(errorTypes.has('TypeError')).toBe(false);
    expect(errorTypes.has('connection_closed')).toBe(false);
    expect(errorTypes.size).toBeLessThanOrEqual(13);
  });

  it('has harmless background changes with chained values', () => {
    const changes = [...eventsOf(records, 'config'), ...eventsOf(records, 'deploy')];
    expect(changes.length).toBeGreaterThanOrEqual(2);
    expect(changes.length).toBe(truth.background_changes.length);
    for (const c of eventsOf(records, 'config')) expect(c.attrs).toHaveProperty('old_value');
    for (const d of eventsOf(records, 'deploy')) expect(typeof d.attrs.version).toBe('string');
  });

  it('gives the worker a flat GC sawtooth', () => {
    const worker = metricsOf(records, 'process.memory.usage', 'worker');
    const minima = postGcMinima(worker);
    expect(minima.length).toBeGreaterThan(2 * 24); // a collection every 20-45 minutes
    expect(minima.length).toBeLessThan(2 * 24 * 4);
    const perHour = slope(minima) * HOUR;
    expect(Math.abs(perHour)).toBeLessThan(0.5 * 1048576);
    const others = metricsOf(records, 'process.memory.usage', 'agent-coder').map((m) => m.value);
    expect((Math.max(...others) - Math.min(...others)) / median(others)).toBeLessThan(0.1);
  });
});

describe('incidents', () => {
  const options: ScenarioOptions = { days: 1, seed: 5, end: END, incidents: parseIncidentList(ALL) };
  let records: TelemetryRecord[];
  let truth: ScenarioTruth;
  beforeAll(() => {
    records = [...generateRecords(options)];
    truth = scenarioTruth(options);
  });

  it('leaves the traffic itself unchanged (incidents are overlays)', () => {
    const quiet = [...generateRecords({ ...options, incidents: [] })];
    const traces = (rs: TelemetryRecord[]): string[] => spansOf(rs).filter((s) => s.parent_id === null).map((s) => s.trace_id);
    expect(traces(records)).toEqual(traces(quiet));
  });

  it('documents every incident with its default start and root cause', () => {
    expect(truth.incidents.map((i) => [i.type, i.start_ms, i.root_cause.component, i.root_cause.kind])).toEqual([
      ['latency_spike', END - 45 * MIN, 'mcp-search', 'config'],
      ['error_spike', END - 40 * MIN, 'agent-coder', 'deploy'],
      ['permission_spike', END - 35 * MIN, 'policy', 'policy'],
      ['memory_leak', END - 12 * HOUR, 'worker', 'leak'],
      ['flaky_connection', END - 3 * HOUR, 'mcp-github', 'connection'],
    ]);
    for (const inc of truth.incidents) expect(inc.start).toBe(new Date(inc.start_ms).toISOString());
    // No background change lands near an incident.
    for (const c of truth.background_changes) {
      for (const inc of truth.incidents) expect(Math.abs(c.ts_ms - inc.start_ms)).toBeGreaterThan(HOUR);
    }
  });

  it('latency_spike: config change on mcp-search, then its tool calls are ~5x slower', () => {
    const inc = incident(truth, 'latency_spike');
    const change = eventsOf(records, 'config').filter((e) => e.component === 'mcp-search');
    expect(change).toHaveLength(1);
    expect(change[0]?.ts).toBe(inc.start_ms);
    expect(change[0]?.attrs).toEqual(inc.root_cause.event?.attrs);
    expect(change[0]?.attrs).toMatchObject({ key: 'max_concurrency', old_value: 16, new_value: 2, actor: 'ops-bot' });

    const search = spansOf(records).filter((s) => s.component === 'mcp-search');
    const before = search.filter((s) => s.start < inc.start_ms).map((s) => s.duration_ms);
    const after = search.filter((s) => s.start >= inc.details.effect_start_ms).map((s) => s.duration_ms);
    expect(after.length).toBeGreaterThan(30);
    expect(median(after)).toBeGreaterThanOrEqual(3 * median(before));
    const github = spansOf(records).filter((s) => s.component === 'mcp-filesystem');
    const ghBefore = median(github.filter((s) => s.start < inc.start_ms).map((s) => s.duration_ms));
    const ghAfter = median(github.filter((s) => s.start >= inc.details.effect_start_ms).map((s) => s.duration_ms));
    expect(ghAfter / ghBefore).toBeLessThan(1.5);
    const planner = spansOf(records).filter((s) => s.component === 'agent-planner');
    const pBefore = median(planner.filter((s) => s.start < inc.start_ms).map((s) => s.duration_ms));
    const pAfter = median(planner.filter((s) => s.start >= inc.details.effect_start_ms).map((s) => s.duration_ms));
    expect(pAfter).toBeGreaterThan(1.2 * pBefore);
  });

  it('error_spike: deploy on agent-coder, then a new signature and ~31% thread errors', () => {
    const inc = incident(truth, 'error_spike');
    const deploy = eventsOf(records, 'deploy').filter((e) => e.component === 'agent-coder' && e.ts === inc.start_ms);
    expect(deploy).toHaveLength(1);
    expect(deploy[0]?.attrs.version).toBe(inc.details.version);

    const coder = spansOf(records).filter((s) => s.component === 'agent-coder' && s.parent_id === null);
    const before = errorRate(coder.filter((s) => s.start < inc.start_ms));
    const after = errorRate(coder.filter((s) => s.start >= inc.details.effect_start_ms));
    expect(after).toBeGreaterThanOrEqual(10 * before);
    expect(after).toBeGreaterThan(0.15);
    expect(after).toBeLessThan(0.5);

    const isNew = (e: EventRecord): boolean => e.message.includes("(reading 'hunks') in apply_patch for PR #");
    const signature = eventsOf(records, 'error').filter(isNew);
    expect(signature.filter((e) => e.ts < inc.start_ms)).toHaveLength(0);
    expect(signature.length).toBeGreaterThan(10);
    expect(signature.every((e) => e.component === 'agent-coder' && e.attrs['error.type'] === 'TypeError')).toBe(true);
    expect(new Set(signature.map((e) => e.message)).size).toBeGreaterThan(1); // variable parts to mask
  });

  it('permission_spike: policy change, then denials for one principal and tool', () => {
    const inc = incident(truth, 'permission_spike');
    const change = eventsOf(records, 'config').filter((e) => e.component === 'policy' && e.attrs.key === 'policy.version');
    expect(change.map((e) => [e.ts, e.attrs.old_value, e.attrs.new_value])).toEqual([[inc.start_ms, 'v41', 'v42']]);

    const target = eventsOf(records, 'permission').filter(
      (e) => e.attrs.principal === inc.details.principal && e.attrs.tool === inc.details.tool,
    );
    const share = (es: EventRecord[]): number => es.filter((e) => e.attrs.decision === 'deny').length / es.length;
    const before = target.filter((e) => e.ts < inc.start_ms);
    const after = target.filter((e) => e.ts >= inc.details.effect_start_ms);
    expect(after.length).toBeGreaterThan(10);
    expect(share(after)).toBeGreaterThan(0.6);
    expect(share(before)).toBeLessThan(0.02);
    // A denied call never reaches the server; an allowed one does, a few ms after its decision.
    const toolSpans = spansOf(records).filter((s) => s.attrs['gen_ai.tool.name'] === inc.details.tool);
    const reached = (e: EventRecord): boolean =>
      toolSpans.some((s) => s.trace_id === e.attrs.trace_id && s.start > e.ts && s.start <= e.ts + 5);
    for (const e of target) expect(reached(e)).toBe(e.attrs.decision === 'allow');
  });

  it('memory_leak: post-GC minima grow at the documented rate; oom_at follows from limit and rate', () => {
    const inc = incident(truth, 'memory_leak');
    const d = inc.details;
    expect(d.memory_limit_bytes).toBe(WORKER_MEMORY_LIMIT_BYTES);
    expect(d.growth_bytes_per_hour).toBeGreaterThanOrEqual(40 * 1048576);
    expect(d.growth_bytes_per_hour).toBeLessThanOrEqual(80 * 1048576);
    const expectedOom = inc.start_ms + ((WORKER_MEMORY_LIMIT_BYTES - d.baseline_bytes_at_start) / d.growth_bytes_per_hour) * HOUR;
    expect(Math.abs(d.oom_at_ms - expectedOom)).toBeLessThanOrEqual(1);
    expect(d.oom_at_ms - truth.end_ms).toBeGreaterThan(3 * HOUR);
    expect(d.oom_kills).toEqual([]);

    const worker = metricsOf(records, 'process.memory.usage', 'worker');
    const minima = postGcMinima(worker);
    const after = minima.filter(([ts]) => ts >= inc.start_ms);
    const before = minima.filter(([ts]) => ts < inc.start_ms);
    expect(after.length).toBeGreaterThan(15);
    const rate = slope(after) * HOUR;
    expect(Math.abs(rate / d.growth_bytes_per_hour - 1)).toBeLessThan(0.1);
    expect(Math.abs(slope(before) * HOUR)).toBeLessThan(0.1 * d.growth_bytes_per_hour);
    expect(worker.every((m) => m.value <= WORKER_MEMORY_LIMIT_BYTES)).toBe(true);
    // Other components do not leak.
    const coder = metricsOf(records, 'process.memory.usage', 'agent-coder');
    const late = median(coder.filter((m) => m.ts >= inc.start_ms).map((m) => m.value));
    const early = median(coder.filter((m) => m.ts < inc.start_ms).map((m) => m.value));
    expect(Math.abs(late / early - 1)).toBeLessThan(0.05);
  });

  it('flaky_connection: mcp-github disconnects repeatedly and calls during outages fail', () => {
    const inc = incident(truth, 'flaky_connection');
    const conn = eventsOf(records, 'connection').filter((e) => e.component === 'mcp-github');
    const disconnects = conn.filter((e) => e.attrs.state === 'disconnected');
    expect(disconnects.filter((e) => e.ts < inc.start_ms)).toHaveLength(0);
    expect(disconnects.length).toBeGreaterThanOrEqual(6);
    expect(disconnects.length).toBe(inc.details.disconnects);
    expect(disconnects[0]?.ts).toBe(inc.root_cause.event?.ts_ms);
    expect(disconnects.every((e) => e.level === 'warn')).toBe(true);
    for (const o of inc.details.outages) {
      expect(o.duration_ms).toBeGreaterThanOrEqual(10_000);
      expect(o.duration_ms).toBeLessThanOrEqual(60_000);
    }
    for (let i = 1; i < inc.details.outages.length; i++) {
      const gap = (inc.details.outages[i]?.start_ms ?? 0) - (inc.details.outages[i - 1]?.start_ms ?? 0);
      expect(gap).toBeGreaterThanOrEqual(5 * MIN);
      expect(gap).toBeLessThanOrEqual(21 * MIN);
    }
    const closed = spansOf(records).filter((s) => s.parent_id !== null && s.attrs['error.type'] === 'connection_closed');
    expect(closed.length).toBeGreaterThanOrEqual(6);
    for (const s of closed) {
      expect(s.component).toBe('mcp-github');
      expect(inc.details.outages.some((o) => s.start >= o.start_ms && s.start < o.end_ms)).toBe(true);
    }
    const closedEvents = eventsOf(records, 'error').filter((e) => e.attrs['error.type'] === 'connection_closed');
    expect(closedEvents.length).toBe(closed.length);
    // Other servers stay connected.
    expect(eventsOf(records, 'connection').filter((e) => e.component !== 'mcp-github')).toHaveLength(2);
  });

  it('writes the truth next to the data', async () => {
    const out = join(dir, 'incidents.jsonl');
    const { truthPath } = await writeScenario(options, out);
    const written = JSON.parse(readFileSync(truthPath, 'utf8')) as ScenarioTruth;
    expect(written).toEqual(JSON.parse(JSON.stringify(truth)));
  });
});

describe('memory leak past the limit', () => {
  it('OOM-kills and restarts the worker at each crossing, and forecasts the next one', () => {
    const options: ScenarioOptions = { days: 2, seed: 9, end: END, incidents: parseIncidentList('memory_leak@-47h') };
    const truth = scenarioTruth(options);
    const d = incident(truth, 'memory_leak').details;
    expect(d.oom_kills.length).toBeGreaterThanOrEqual(1);
    expect(d.oom_at_ms).toBeGreaterThanOrEqual(truth.end_ms);
    const records = [...generateRecords(options)];
    const kills = eventsOf(records, 'error').filter((e) => e.attrs['error.type'] === 'oom_killed');
    expect(kills.map((e) => e.ts)).toEqual(d.oom_kills.map((k) => k.at_ms));
    const worker = metricsOf(records, 'process.memory.usage', 'worker');
    expect(worker.every((m) => m.value <= WORKER_MEMORY_LIMIT_BYTES)).toBe(true);
    const firstKill = d.oom_kills[0]?.at_ms ?? 0;
    const justBefore = worker.filter((m) => m.ts < firstKill && m.ts >= firstKill - 30 * MIN).map((m) => m.value);
    const justAfter = worker.filter((m) => m.ts >= firstKill && m.ts < firstKill + 10 * MIN).map((m) => m.value);
    expect(Math.min(...justBefore)).toBeGreaterThan(0.9 * WORKER_MEMORY_LIMIT_BYTES);
    expect(Math.max(...justAfter)).toBeLessThan(0.5 * WORKER_MEMORY_LIMIT_BYTES);
  });
});

describe('utcOffsetHours', () => {
  it('moves the daily cycle to the users\' local time: busiest at 16:00 local', async () => {
    const { dailyLoad } = await import('../src/generate/topology.js');
    const utc4 = Date.UTC(2026, 2, 1, 4, 0);
    expect(dailyLoad(utc4, 12)).toBeCloseTo(dailyLoad(Date.UTC(2026, 2, 1, 16, 0), 0), 12);
    expect(dailyLoad(utc4, 12)).toBeCloseTo(1, 12);
    expect(dailyLoad(utc4, 0)).toBeCloseTo(0, 12);
    const threads = (utcOffsetHours: number) =>
      [...generateRecords({ days: 0.25, seed: 3, end: Date.UTC(2026, 2, 1, 6, 0), utcOffsetHours })].filter((r) => r.type === 'span' && r.parent_id === null).length;
    expect(threads(12)).toBeGreaterThan(3 * threads(0));
  });
});
