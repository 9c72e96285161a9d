/**
 * The narrative's sources: the real Anthropic SDK against a local server speaking the Messages
 * API, and MCP sampling answered by a real SDK Client connected to Kiwi's real server. Each
 * failure (timeout, malformed answer, API error) must fall back to the next source.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { CreateMessageRequestSchema, type CreateMessageRequest, type CreateMessageResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { explainSymptom } from '../src/explain/service.js';
import type { TelemetryRecord } from '../src/ingest/records.js';
import { createMcpServer } from '../src/mcp/server.js';
import { writeSetting } from '../src/settings.js';
import { Store } from '../src/store/store.js';
import { narrativeJson, startMessagesServer, TEST_API_KEY, type MessagesServer, type Reply } from './helpers/anthropic.js';
import { pollUntil } from './helpers/poll.js';

const START = Date.UTC(2026, 2, 1, 12);
const SECRETS = ['hunter2', 'sk-live-0123456789abcdefXYZ', 'tok_abcdefghijklmnopqrstuv'];
const dir = mkdtempSync(join(tmpdir(), 'kiwi-explain-llm-'));
let store: Store;

/** Two hours of six services; svc-2's CPU jumps five minutes into the symptom, just after a config change carrying secrets. */
function seed(s: Store): void {
  const records: TelemetryRecord[] = [];
  let state = 7;
  const noise = () => ((state = (state * 48271) % 2147483647) / 2147483647 - 0.5) * 2;
  for (let ts = START - 90 * 60_000; ts < START + 30 * 60_000; ts += 10_000) {
    for (let c = 0; c < 6; c++) {
      const jump = c === 2 && ts >= START + 5 * 60_000 ? 50 : 0;
      records.push({ type: 'metric', ts, name: 'process.cpu.utilization', component: `svc-${c}`, labels: {}, value: (20 + noise() + jump) / 100 });
    }
  }
  records.push({
    type: 'event',
    ts: START + 4 * 60_000,
    kind: 'config',
    component: 'svc-2',
    level: 'info',
    message: `config workers changed from 8 to 64 by deploy-bot using token ${SECRETS[2]}`,
    attrs: { key: 'workers', old_value: 8, new_value: 64, actor: 'deploy-bot', api_key: SECRETS[1], db: { password: SECRETS[0] } },
  });
  s.writeRecords(records);
}

beforeAll(() => {
  store = new Store(join(dir, 'kiwi.db'));
  seed(store);
});

afterAll(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const input = { start: START, end: START + 30 * 60_000 };

describe('the Anthropic API through the real SDK', () => {
  let api: MessagesServer;
  let replies: Reply[];
  const env = () => ({ ANTHROPIC_API_KEY: TEST_API_KEY, ANTHROPIC_BASE_URL: api.url });

  beforeEach(async () => {
    replies = [];
    api = await startMessagesServer((_, index) => replies[Math.min(index, replies.length - 1)] ?? { text: narrativeJson() });
    writeSetting(store, 'explain.llm_timeout_ms', 5000, 'test');
    writeSetting(store, 'explain.llm_max_retries', 2, 'test');
    writeSetting(store, 'explain.llm_model', undefined, 'test');
  });

  afterEach(async () => {
    await api.close();
  });

  it('writes the narrative, with the configured model, structured output, and no secrets sent', async () => {
    replies = [{ text: narrativeJson({ root_cause: 'svc-2 saturates its CPU after workers went from 8 to 64' }) }];
    const result = await explainSymptom(store, input, { env: env(), sampling: null });
    expect(result.candidates[0]?.component).toBe('svc-2');
    expect(result.source).toBe('anthropic');
    expect(result.model).toBe('claude-sonnet-5-5');
    expect(result.narrative).toEqual({
      root_cause: 'svc-2 saturates its CPU after workers went from 8 to 64',
      next_steps: ['Roll back policy.version to v41', 'Check the reviewer threads that failed'],
      confidence: 0.8,
    });
    expect(result.fallbacks).toEqual(['sampling: no connected client that offers it']);

    expect(api.requests).toHaveLength(1);
    const request = api.requests[0]!;
    expect(request.headers['x-api-key'] ?? request.headers.authorization).toMatch(new RegExp(`^(Bearer )?${TEST_API_KEY}$`));
    expect(request.headers['anthropic-version']).toBeDefined();
    expect(request.body.model).toBe('claude-sonnet-5-5');
    expect(request.body.max_tokens).toBe(1024);
    expect(request.body.system).toMatch(/site-reliability engineer/);
    expect(request.body.output_config?.format?.type).toBe('json_schema');
    expect(request.body.output_config?.format?.schema?.required).toEqual(['root_cause', 'next_steps', 'confidence']);
    const sent = JSON.stringify(request.body);
    expect(sent).toContain('svc-2');
    expect(sent).toContain('workers changed from 8 to 64');
    for (const secret of SECRETS) expect(sent).not.toContain(secret);
    expect(sent).toContain('[redacted]');
  });

  it('uses the model from the setting, or the one given', async () => {
    writeSetting(store, 'explain.llm_model', 'claude-haiku-4-5', 'test');
    await explainSymptom(store, input, { env: env() });
    await explainSymptom(store, input, { env: env(), model: 'claude-opus-4-7' });
    expect(api.requests.map((r) => r.body.model)).toEqual(['claude-haiku-4-5', 'claude-opus-4-7']);
  });

  it('falls back to the deterministic summary on a malformed answer', async () => {
    replies = [{ text: 'The root cause is probably svc-2, I would check it.' }];
    const result = await explainSymptom(store, input, { env: env() });
    expect(result.source).toBe('deterministic');
    expect(result.model).toBeNull();
    expect(result.fallbacks[1]).toBe('anthropic: the answer holds no JSON object');
    expect(result.narrative.root_cause).toMatch(/^svc-2 is the most likely root cause/);
    expect(result.narrative.next_steps[0]).toMatch(/Review the config on svc-2/);
  });

  it('falls back when the answer does not match the schema, or the body is not JSON', async () => {
    replies = [{ text: JSON.stringify({ root_cause: 'x', next_steps: 'do things', confidence: 0.5 }) }];
    const schemaMismatch = await explainSymptom(store, input, { env: env() });
    expect(schemaMismatch.source).toBe('deterministic');
    expect(schemaMismatch.fallbacks[1]).toMatch(/^anthropic: the answer does not match the schema: next_steps/);

    replies = [{ raw: '<html>upstream error</html>' }];
    const notJson = await explainSymptom(store, input, { env: env() });
    expect(notJson.source).toBe('deterministic');
    expect(notJson.fallbacks[1]).toMatch(/^anthropic: /);
  });

  it('times out, retries a bounded number of times, then falls back', async () => {
    writeSetting(store, 'explain.llm_timeout_ms', 300, 'test');
    writeSetting(store, 'explain.llm_max_retries', 1, 'test');
    replies = [{ text: narrativeJson(), delayMs: 5000 }];
    const started = Date.now();
    const result = await explainSymptom(store, input, { env: env() });
    expect(result.source).toBe('deterministic');
    expect(result.fallbacks[1]).toBe('anthropic: timed out');
    expect(api.requests).toHaveLength(2);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('stops the request, and does not retry it, when the caller aborts', async () => {
    replies = [{ text: narrativeJson(), delayMs: 5000 }];
    const controller = new AbortController();
    const result = explainSymptom(store, input, { env: env(), signal: controller.signal });
    await pollUntil(() => api.requests.length, (n) => n === 1);
    controller.abort();
    const explained = await result;
    expect(explained.source).toBe('deterministic');
    expect(explained.fallbacks[1]).toMatch(/^anthropic: .*abort/i);
    expect(api.requests).toHaveLength(1); // 2 retries were allowed
  });

  it('retries an overloaded API and then succeeds', async () => {
    replies = [{ status: 529, errorType: 'overloaded_error', message: 'Overloaded' }, { text: narrativeJson({ confidence: 0.6 }) }];
    const result = await explainSymptom(store, input, { env: env() });
    expect(result.source).toBe('anthropic');
    expect(result.narrative.confidence).toBe(0.6);
    expect(api.requests).toHaveLength(2);
  });

  it('does not retry a refused key, and says why it fell back', async () => {
    const result = await explainSymptom(store, input, { env: { ...env(), ANTHROPIC_API_KEY: 'sk-ant-wrong' } });
    expect(result.source).toBe('deterministic');
    expect(result.fallbacks[1]).toMatch(/^anthropic: HTTP 401/);
    expect(api.requests).toHaveLength(0);
  });
});

describe('MCP sampling answered by a real SDK client', () => {
  type Handler = (request: CreateMessageRequest) => Promise<CreateMessageResult>;
  const saved = { key: process.env.ANTHROPIC_API_KEY, url: process.env.ANTHROPIC_BASE_URL };
  const clients: Client[] = [];

  beforeEach(() => {
    delete process.env.ANTHROPIC_API_KEY;
    delete process.env.ANTHROPIC_BASE_URL;
    writeSetting(store, 'explain.llm_timeout_ms', 5000, 'test');
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) await client.close();
    if (saved.key === undefined) delete process.env.ANTHROPIC_API_KEY;
    else process.env.ANTHROPIC_API_KEY = saved.key;
    if (saved.url === undefined) delete process.env.ANTHROPIC_BASE_URL;
    else process.env.ANTHROPIC_BASE_URL = saved.url;
  });

  async function connect(handler: Handler | null): Promise<{ client: Client; seen: CreateMessageRequest[] }> {
    const seen: CreateMessageRequest[] = [];
    const client = new Client({ name: 'sampling-test', version: '1.0.0' }, { capabilities: handler ? { sampling: {} } : {} });
    if (handler) {
      client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
        seen.push(request);
        return handler(request);
      });
    }
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await createMcpServer(store, null).connect(serverSide);
    await client.connect(clientSide);
    clients.push(client);
    return { client, seen };
  }

  type Structured = { source: string; model: string | null; narrative: string; next_steps: string[]; fallbacks: string[]; candidates: { component: string }[] };
  const call = async (client: Client, args: Record<string, unknown> = {}) => {
    const result = await client.callTool({ name: 'analyze_root_cause', arguments: { start: START, end: START + 30 * 60_000, ...args } });
    return { result, structured: result.structuredContent as Structured, text: (result.content as { text: string }[])[0]!.text };
  };
  const textReply = (text: string): CreateMessageResult => ({ model: 'client-model-1', role: 'assistant', content: { type: 'text', text } });

  it("writes the narrative with the client's model", async () => {
    const { client, seen } = await connect(async () => textReply(narrativeJson({ root_cause: 'svc-2 is saturated after the workers change' })));
    const { structured, text } = await call(client);
    expect(structured.source).toBe('sampling');
    expect(structured.model).toBe('client-model-1');
    expect(structured.narrative).toBe('svc-2 is saturated after the workers change');
    expect(structured.candidates[0]!.component).toBe('svc-2');
    expect(structured.fallbacks).toEqual([]);
    expect(text).toContain('narrative (sampling, client-model-1): svc-2 is saturated');
    expect(seen).toHaveLength(1);
    const params = seen[0]!.params;
    expect(params.maxTokens).toBe(1024);
    expect(params.systemPrompt).toMatch(/site-reliability engineer/);
    const prompt = JSON.stringify(params.messages);
    expect(prompt).toContain('svc-2');
    for (const secret of SECRETS) expect(prompt).not.toContain(secret);
  });

  it('falls back to the Anthropic API when the sampled answer is malformed', async () => {
    const api = await startMessagesServer(() => ({ text: narrativeJson({ root_cause: 'from the API' }) }));
    try {
      process.env.ANTHROPIC_API_KEY = TEST_API_KEY;
      process.env.ANTHROPIC_BASE_URL = api.url;
      const { client } = await connect(async () => textReply('svc-2, probably.'));
      const { structured } = await call(client);
      expect(structured.source).toBe('anthropic');
      expect(structured.narrative).toBe('from the API');
      expect(structured.fallbacks).toEqual(['sampling: the answer holds no JSON object']);
      expect(api.requests).toHaveLength(1);
    } finally {
      await api.close();
    }
  });

  it('falls back to the deterministic summary when sampling times out', async () => {
    writeSetting(store, 'explain.llm_timeout_ms', 300, 'test');
    const { client, seen } = await connect(
      () => new Promise<CreateMessageResult>((resolve) => setTimeout(() => resolve(textReply(narrativeJson())), 3000)),
    );
    const started = Date.now();
    const { structured } = await call(client);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(seen).toHaveLength(1);
    expect(structured.source).toBe('deterministic');
    expect(structured.fallbacks[0]).toMatch(/^sampling: .*timed out/i);
    expect(structured.fallbacks[1]).toBe('anthropic: ANTHROPIC_API_KEY is not set');
    expect(structured.narrative).toMatch(/^svc-2 is the most likely root cause/);
  });

  it('does not ask a client that offers no sampling, nor any model when narrative is false', async () => {
    const plain = await connect(null);
    const first = await call(plain.client);
    expect(first.structured.source).toBe('deterministic');
    expect(first.structured.fallbacks[0]).toBe('sampling: no connected client that offers it');

    const sampling = await connect(async () => textReply(narrativeJson()));
    const second = await call(sampling.client, { narrative: false });
    expect(second.structured.source).toBe('deterministic');
    expect(second.structured.fallbacks).toEqual([]);
    expect(sampling.seen).toHaveLength(0);
  });

  it('is listed with schemas and annotations, and refuses bad arguments naming the field', async () => {
    const { client } = await connect(null);
    const tool = (await client.listTools()).tools.find((t) => t.name === 'analyze_root_cause');
    expect(tool?.annotations).toMatchObject({ readOnlyHint: true, destructiveHint: false, idempotentHint: true });
    expect(tool?.outputSchema?.required).toEqual(expect.arrayContaining(['symptom', 'candidates', 'narrative', 'next_steps', 'source']));
    const missing = await client.callTool({ name: 'analyze_root_cause', arguments: {} });
    expect(missing.isError).toBe(true);
    expect((missing.content as { text: string }[])[0]!.text).toMatch(/start: required/);
    const badTime = await client.callTool({ name: 'analyze_root_cause', arguments: { start: 'not a time' } });
    expect(badTime.isError).toBe(true);
    expect((badTime.content as { text: string }[])[0]!.text).toMatch(/start: timestamp "not a time"/);
    const badLimit = await client.callTool({ name: 'analyze_root_cause', arguments: { start: START, limit: 99 } });
    expect(badLimit.isError).toBe(true);
    expect((badLimit.content as { text: string }[])[0]!.text).toMatch(/limit/);
  });
});
