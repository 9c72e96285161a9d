/**
 * forecast_failure end to end: a generated scenario ending now (`kiwi serve` applies retention)
 * with a memory leak (6 h visible) and a flaky MCP connection, loaded with the built CLI; then
 * `kiwi forecast` as a user runs it and the tool over stdio with a real MCP client.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Forecast } from '../src/forecast/types.js';
import { CLI, assertBuilt, runCli } from './helpers/cli.js';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

interface Truth {
  end_ms: number;
  step_ms: number;
  incidents: { type: string; details: { hours_to_oom_after_end?: number } }[];
}

interface Answer {
  as_of: string;
  forecasts: Forecast[];
  charts: { target: string; component: string; mime_type: string }[];
}

let dir: string;
let db: string;
let truthHours: number;
let lastPoint: string;

beforeAll(async () => {
  assertBuilt();
  dir = mkdtempSync(join(tmpdir(), 'kiwi-forecast-'));
  db = join(dir, 'kiwi.db');
  const scenario = join(dir, 'scenario.jsonl');
  const generated = await runCli([
    'generate', '--out', scenario, '--days', '2', '--seed', '4',
    '--incidents', 'memory_leak@-6h,flaky_connection@-6h',
  ]);
  expect(generated.code, generated.stderr).toBe(0);
  const ingested = await runCli(['ingest', scenario, '--db', db]);
  expect(ingested.code, ingested.stderr).toBe(0);
  const limit = await runCli(['settings', 'set', 'forecast.memory_limit_bytes', '{"worker":2147483648}', '--db', db]);
  expect(limit.code, limit.stderr).toBe(0);
  const truth = JSON.parse(readFileSync(join(dir, 'scenario.truth.json'), 'utf8')) as Truth;
  lastPoint = new Date(truth.end_ms - truth.step_ms).toISOString();
  truthHours = truth.incidents.find((i) => i.type === 'memory_leak')!.details.hours_to_oom_after_end!;
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('kiwi forecast', () => {
  it('forecasts the worker running out of memory within 20% of the truth and writes the chart', async () => {
    const chart = join(dir, 'memory.png');
    const result = await runCli(['forecast', '--db', db, '--target', 'memory', '--component', 'worker', '--json', '--chart', chart]);
    expect(result.code, result.stderr).toBe(0);
    const answer = JSON.parse(result.stdout) as Answer;
    expect(answer.forecasts).toHaveLength(1);
    const memory = answer.forecasts[0]!;
    expect(memory.memory!.will_oom).toBe(true);
    const hours = memory.memory!.hours_to_oom!;
    expect(Math.abs(hours.estimate - truthHours) / truthHours).toBeLessThan(0.2);
    expect(hours.lower!).toBeLessThanOrEqual(hours.estimate);
    expect(hours.upper!).toBeGreaterThanOrEqual(hours.estimate);
    expect(memory.memory!.limit_source).toBe('setting');
    expect(memory.suggested_action).toMatchObject({ directive: 'memory_leak_response', inputs: { component: 'worker' } });
    expect(memory.data_span!.to).toBe(lastPoint);
    expect(readFileSync(chart).subarray(0, 8)).toEqual(PNG_SIGNATURE);
    expect(result.stderr).toContain(`chart (memory, worker): ${chart}`);
  });

  it('prints one line per forecast, most urgent first, with the suggested directive', async () => {
    const result = await runCli(['forecast', '--db', db, '--target', 'connection']);
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines[1]).toMatch(/^\[connection\] mcp-github: up .* MAY FAIL SOON/);
    expect(lines[2]).toContain('suggested: run_directive flaky_connection_response {"component":"mcp-github"}');
    expect(result.stdout).toMatch(/\[connection\] mcp-search: not enough history .* need 3 disconnects/);
  });

  it('refuses what it cannot answer, naming the flag', async () => {
    const unknown = await runCli(['forecast', '--db', db, '--component', 'nosuch']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('component: no telemetry to forecast from for "nosuch"');
    const badTarget = await runCli(['forecast', '--db', db, '--target', 'disk']);
    expect(badTarget.code).toBe(2);
    expect(badTarget.stderr).toContain('--target must be one of memory, latency, connection, error_budget or all');
    const badHorizon = await runCli(['forecast', '--db', db, '--horizon', 'soon']);
    expect(badHorizon.code).toBe(2);
    expect(badHorizon.stderr).toContain('--horizon:');
  });
});

describe('forecast_failure over stdio', () => {
  let client: Client;

  beforeAll(async () => {
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [CLI, 'serve', '--db', db],
      env: { ...process.env, KIWI_LOG_LEVEL: 'warn' } as Record<string, string>,
      stderr: 'pipe',
    });
    client = new Client({ name: 'forecast-e2e', version: '1.0.0' });
    await client.connect(transport);
  });

  afterAll(async () => {
    await client?.close();
  });

  it('is listed read-only with input and output schemas', async () => {
    const { tools } = await client.listTools();
    const tool = tools.find((t) => t.name === 'forecast_failure')!;
    expect(tool.annotations).toMatchObject({ readOnlyHint: true, destructiveHint: false });
    expect(Object.keys(tool.inputSchema.properties!)).toEqual(expect.arrayContaining(['target', 'component', 'horizon']));
    expect(tool.outputSchema).toBeDefined();
  });

  it('answers every target with structured forecasts, a text rendering and PNG charts', async () => {
    const result = await client.callTool({ name: 'forecast_failure', arguments: { target: 'all' } });
    expect(result.isError).toBeFalsy();
    const answer = result.structuredContent as unknown as Answer;
    const worker = answer.forecasts.find((f) => f.target === 'memory' && f.component === 'worker')!;
    expect(worker.memory!.will_oom).toBe(true);
    const github = answer.forecasts.find((f) => f.target === 'connection' && f.component === 'mcp-github')!;
    expect(github.connection!.may_fail_soon).toBe(true);
    expect(github.connection!.probability!.estimate).toBeGreaterThan(0.5);
    const latency = answer.forecasts.filter((f) => f.target === 'latency');
    expect(latency.length).toBeGreaterThan(0);
    for (const f of latency) {
      expect(f.latency!.spike_probability).toBeGreaterThanOrEqual(0);
      expect(f.latency!.spike_probability).toBeLessThanOrEqual(1);
    }
    expect(answer.forecasts.some((f) => f.target === 'error_budget' && f.status === 'ok')).toBe(true);
    for (const f of answer.forecasts) {
      expect(f.model.length).toBeGreaterThan(10);
      expect(f.confidence_basis.length).toBeGreaterThan(5);
      if (f.status === 'ok') expect(f.data_span).not.toBeNull();
      else expect(f.needs).toBeDefined();
    }
    const content = result.content as ({ type: 'text'; text: string } | { type: 'image'; data: string; mimeType: string })[];
    expect(content[0]).toMatchObject({ type: 'text' });
    expect((content[0] as { text: string }).text).toMatch(/\[memory\] worker: .* OUT OF MEMORY within 24 h/);
    const images = content.filter((c) => c.type === 'image') as { data: string; mimeType: string }[];
    expect(images).toHaveLength(answer.charts.length);
    expect(images.length).toBeGreaterThanOrEqual(3);
    expect(images.length).toBeLessThanOrEqual(4);
    for (const image of images) {
      expect(image.mimeType).toBe('image/png');
      expect(Buffer.from(image.data, 'base64').subarray(0, 8)).toEqual(PNG_SIGNATURE);
    }
  });

  it('takes a metric and a horizon as directives pass them', async () => {
    const result = await client.callTool({
      name: 'forecast_failure',
      arguments: { component: 'worker', metric: 'process.memory.usage', horizon: '6h', chart: false },
    });
    const answer = result.structuredContent as unknown as Answer;
    expect(answer.forecasts).toHaveLength(1);
    const f = answer.forecasts[0]!;
    expect(f.target).toBe('memory');
    expect(f.horizon_hours).toBe(6);
    expect(f.hours_to_failure).toBeCloseTo(f.memory!.hours_to_oom!.estimate, 6);
    expect(f.memory!.will_oom).toBe(f.memory!.hours_to_oom!.estimate <= 6);
    expect((result.content as { type: string }[]).every((c) => c.type === 'text')).toBe(true);
  });

  it('names the field of a bad argument and keeps serving', async () => {
    const horizon = await client.callTool({ name: 'forecast_failure', arguments: { horizon: 'soon' } });
    expect(horizon.isError).toBe(true);
    expect((horizon.content as { text: string }[])[0]!.text).toContain('horizon:');
    // a metric and a target that disagree: neither is silently dropped
    const both = await client.callTool({ name: 'forecast_failure', arguments: { target: 'latency', metric: 'process.memory.usage' } });
    expect((both.content as { text: string }[])[0]!.text).toBe('metric: "process.memory.usage" is forecast by target memory, not latency; give one of them');
    // metrics are matched by name, not by words in it: a connection error count is not the error budget
    const connectionErrors = await client.callTool({ name: 'forecast_failure', arguments: { target: 'connection', metric: 'mcp.connection.errors' } });
    expect(connectionErrors.isError).toBe(true);
    expect((connectionErrors.content as { text: string }[])[0]!.text).toMatch(/^metric: "mcp.connection.errors" is not one forecasting reads: .*give target instead$/);
    const duration = await client.callTool({ name: 'forecast_failure', arguments: { metric: 'http.server.request.duration', chart: false } });
    const latency = duration.structuredContent as unknown as Answer & { target: string };
    expect(latency.target).toBe('latency');
    expect(latency.forecasts.length).toBeGreaterThan(0);
    expect(latency.forecasts.every((f) => f.target === 'latency')).toBe(true);
    const component = await client.callTool({ name: 'forecast_failure', arguments: { target: 'memory', component: 'nosuch' } });
    expect(component.isError).toBe(true);
    expect((component.content as { text: string }[])[0]!.text).toContain('component: no process.memory.usage series for "nosuch"');
    const target = await client.callTool({ name: 'forecast_failure', arguments: { target: 'disk' } });
    expect(target.isError).toBe(true);
    const ok = await client.callTool({ name: 'forecast_failure', arguments: { target: 'memory', component: 'mcp-search', chart: false } });
    expect(ok.isError).toBeFalsy();
    expect((ok.structuredContent as unknown as Answer).forecasts[0]!.memory!.will_oom).toBe(false);
  });
});
