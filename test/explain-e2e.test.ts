/**
 * What a user runs: `kiwi generate`, `kiwi ingest` and `kiwi explain` from the built CLI, and
 * `kiwi serve` over stdio asked by a real MCP client that answers sampling requests.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { CreateMessageRequestSchema, type CreateMessageRequest } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ScenarioTruth } from '../src/generate/index.js';
import { CLI, runCli } from './helpers/cli.js';
import { narrativeJson, startMessagesServer, TEST_API_KEY, type MessagesServer } from './helpers/anthropic.js';

let dir: string;
let db: string;
let incidentStart: string;
const cleanEnv = { ANTHROPIC_API_KEY: '', ANTHROPIC_BASE_URL: '' };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kiwi-explain-e2e-'));
  db = join(dir, 'kiwi.db');
  const out = join(dir, 'scenario.jsonl');
  const generated = await runCli([
    'generate', '--out', out, '--days', '1', '--seed', '9', '--incidents', 'permission_spike', '--end', '2025-06-10T17:00:00Z',
  ]);
  expect(generated.code, generated.stderr).toBe(0);
  const ingested = await runCli(['ingest', out, '--db', db]);
  expect(ingested.code, ingested.stderr).toBe(0);
  const truth = JSON.parse(readFileSync(join(dir, 'scenario.truth.json'), 'utf8')) as ScenarioTruth;
  incidentStart = truth.incidents[0]!.start;
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('kiwi explain', () => {
  let api: MessagesServer;
  beforeAll(async () => {
    api = await startMessagesServer(() => ({ text: narrativeJson({ root_cause: 'policy v42 denies the reviewer' }) }));
  });
  afterAll(async () => {
    await api.close();
  });

  it('ranks the policy first for the reviewer errors, with a deterministic narrative', async () => {
    const result = await runCli(['explain', '--db', db, '--start', incidentStart, '--component', 'agent-reviewer', '--metric', 'errors'], {
      env: cleanEnv,
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^root cause of errors of agent-reviewer from /);
    expect(result.stdout).toMatch(/\n1\. policy {2}score 0\.\d+/);
    expect(result.stdout).toContain('narrative (deterministic): policy is the most likely root cause');
    expect(result.stdout).toContain('config policy.version changed from v41 to v42');
    expect(result.stdout).toContain('narrative fallbacks: sampling: no connected client that offers it; anthropic: ANTHROPIC_API_KEY is not set');
  });

  it('prints JSON, with the narrative from the Anthropic API when a key is set', async () => {
    const result = await runCli(['explain', '--db', db, '--start', incidentStart, '--json', '--limit', '3', '--model', 'claude-haiku-4-5'], {
      env: { ANTHROPIC_API_KEY: TEST_API_KEY, ANTHROPIC_BASE_URL: api.url },
    });
    expect(result.code, result.stderr).toBe(0);
    const json = JSON.parse(result.stdout) as { source: string; model: string; narrative: string; candidates: { component: string }[] };
    expect(json.source).toBe('anthropic');
    expect(json.model).toBe('claude-haiku-4-5');
    expect(json.narrative).toBe('policy v42 denies the reviewer');
    expect(json.candidates).toHaveLength(3);
    expect(json.candidates[0]!.component).toBe('policy');
    expect(api.requests.at(-1)!.body.model).toBe('claude-haiku-4-5');
  });

  it('--no-llm does not call the API even with a key', async () => {
    const before = api.requests.length;
    const result = await runCli(['explain', '--db', db, '--start', incidentStart, '--no-llm'], {
      env: { ANTHROPIC_API_KEY: TEST_API_KEY, ANTHROPIC_BASE_URL: api.url },
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('narrative (deterministic)');
    expect(api.requests.length).toBe(before);
  });

  it.each([
    [['--start', 'soon'], /--start: timestamp "soon"/],
    [['--anomaly', 'an_missing'], /--anomaly: no anomaly "an_missing"/],
    [[], /give --anomaly ID or --start TIME/],
    [['--start', '2025-06-10T16:00:00Z', '--limit', '50'], /--limit must be between 1 and 20/],
    [['--start', '2025-06-10T16:00:00Z', '--component', 'ghost'], /--component: no telemetry from "ghost"/],
  ])('refuses %j with a clear message and exit 2', async (args, message) => {
    const result = await runCli(['explain', '--db', db, ...args], { env: cleanEnv });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toContain('usage: kiwi explain');
  });
});

describe('analyze_root_cause over stdio, narrated by the client through sampling', () => {
  it('asks the client, and says the client wrote it', async () => {
    // the scenario is from 2025: keep `kiwi serve`'s retention pass from pruning it
    const kept = await runCli(['settings', 'set', 'retention.raw_days', '3650', '--db', db]);
    expect(kept.code, kept.stderr).toBe(0);
    const seen: CreateMessageRequest[] = [];
    const client = new Client({ name: 'e2e-sampling', version: '1.0.0' }, { capabilities: { sampling: {} } });
    client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
      seen.push(request);
      return { model: 'host-model', role: 'assistant', content: { type: 'text', text: narrativeJson({ root_cause: 'the v42 policy' }) } };
    });
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [CLI, 'serve', '--db', db, '--no-self-telemetry'],
      env: { ...process.env, ...cleanEnv, KIWI_LOG_LEVEL: 'warn' } as Record<string, string>,
      stderr: 'pipe',
    });
    await client.connect(transport);
    try {
      const result = await client.callTool({
        name: 'analyze_root_cause',
        arguments: { start: incidentStart, component: 'agent-reviewer', metric: 'errors' },
      });
      expect(result.isError, JSON.stringify(result.content)).toBeFalsy();
      const structured = result.structuredContent as { source: string; model: string; narrative: string; candidates: { component: string }[]; symptom: { component: string } };
      expect(structured.source).toBe('sampling');
      expect(structured.model).toBe('host-model');
      expect(structured.narrative).toBe('the v42 policy');
      expect(structured.candidates[0]!.component).toBe('policy');
      expect(structured.symptom.component).toBe('agent-reviewer');
      expect(seen).toHaveLength(1);
      expect(JSON.stringify(seen[0]!.params.messages)).toContain('policy.version');
    } finally {
      await client.close();
    }
  });
});
