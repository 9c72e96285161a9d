/**
 * MCP logging: a client that sets a level with `logging/setLevel` receives Kiwi's log lines at
 * that level and above as `notifications/message` (logger "kiwi"); one that sets none receives
 * none. Over stdio against the built CLI with a real SQLite file, over real HTTP with several
 * sessions (one of them ended, one gone without a word), and in-process.
 */
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CreateMessageRequestSchema,
  LoggingMessageNotificationSchema,
  type LoggingMessageNotification,
} from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it, onTestFinished } from 'vitest';
import { createKiwi } from '../src/index.js';
import { log } from '../src/log.js';
import { startHttp } from '../src/mcp/http.js';
import { KiwiMcpServer } from '../src/mcp/server.js';
import { CLI, assertBuilt } from './helpers/cli.js';
import { connectInProcess, useOpened } from './helpers/mcp.js';
import { pollUntil } from './helpers/poll.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir('kiwi-mcp-logging-');
type Line = LoggingMessageNotification['params'];
type Data = { message: string } & Record<string, unknown>;
const dataOf = (line: Line) => line.data as Data;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const opened = useOpened();

/** Collects the log notifications `client` receives. */
function collect(client: Client): Line[] {
  const lines: Line[] = [];
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
    lines.push(n.params);
  });
  return lines;
}

/** `kiwi serve --db <real file>` over stdio, with a real SDK client. */
async function serveStdio(client: Client, env: Record<string, string> = {}): Promise<{ stderr: () => string; errors: Error[] }> {
  assertBuilt();
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, 'serve', '--db', join(tempDir(), 'kiwi.db')],
    env: { ...(process.env as Record<string, string>), KIWI_LOG_LEVEL: 'warn', ANTHROPIC_API_KEY: '', ANTHROPIC_BASE_URL: '', ...env },
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const errors: Error[] = [];
  client.onerror = (err) => errors.push(err);
  await client.connect(transport);
  opened.clients.push(client);
  return { stderr: () => stderr, errors };
}

const isToolCall = (tool: string) => (line: Line) => dataOf(line).message === 'tools/call' && dataOf(line).tool === tool;

describe('MCP logging over stdio (the built CLI)', () => {
  it('sends nothing until the client sets a level, then its tool calls at debug as logger "kiwi", without their arguments', async () => {
    const client = new Client({ name: 'log-debug', version: '1.0.0' });
    const lines = collect(client);
    const served = await serveStdio(client);

    // quiet by default: calls are made, nothing is sent
    await client.callTool({ name: 'list_series', arguments: {} });
    await sleep(300);
    expect(lines).toEqual([]);

    await client.setLoggingLevel('debug');
    const secret = 'Bearer abcdefghijklmnop0123456789';
    const answer = await client.callTool({ name: 'search_events', arguments: { text: secret } });
    expect(answer.isError).toBeFalsy();
    const seen = await pollUntil(() => lines.filter(isToolCall('search_events')), (l) => l.length > 0);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ level: 'debug', logger: 'kiwi', data: { message: 'tools/call', tool: 'search_events', outcome: 'ok' } });
    expect(typeof dataOf(seen[0]!).duration_ms).toBe('number');
    expect(JSON.stringify(lines)).not.toContain('abcdefghijklmnop');

    // a refused call is logged too, as the caller's error, still without what it was given
    await client.callTool({ name: 'query_metrics', arguments: { name: 'x', from: secret } });
    const refused = await pollUntil(() => lines.filter(isToolCall('query_metrics')), (l) => l.length > 0);
    expect(refused[0]).toMatchObject({ level: 'debug', data: { outcome: 'error', error_type: 'invalid_params' } });
    expect(JSON.stringify(lines)).not.toContain('abcdefghijklmnop');

    // stderr keeps its own level (warn here): the debug lines went to the client only; stdout stayed the protocol
    expect(served.stderr()).not.toContain('tools/call');
    expect(served.errors).toEqual([]);
  });

  it('at "warning", sends a warning Kiwi logs while answering (a sampling failure) and none of the debug lines below it', async () => {
    // the client offers sampling, then fails it: Kiwi falls back to its own narrative and says so at warn
    const client = new Client({ name: 'log-warning', version: '1.0.0' }, { capabilities: { sampling: {} } });
    client.setRequestHandler(CreateMessageRequestSchema, async () => {
      throw new Error('the user declined sampling');
    });
    const lines = collect(client);
    await serveStdio(client);
    await client.setLoggingLevel('warning');

    const now = Date.now();
    const records = Array.from({ length: 120 }, (_, i) => ({ type: 'metric', ts: now - (119 - i) * 60_000, name: 'queue.depth', component: 'api', value: i < 100 ? 10 : 90 }));
    expect((await client.callTool({ name: 'ingest_telemetry', arguments: { records } })).isError).toBeFalsy();
    const result = await client.callTool({ name: 'analyze_root_cause', arguments: { start: '-20m', component: 'api' } });
    expect(result.isError, JSON.stringify(result.content)).toBeFalsy();
    expect((result.structuredContent as { source: string }).source).toBe('deterministic');

    const warned = await pollUntil(() => lines.filter((l) => dataOf(l).message === 'narrative source failed; falling back'), (l) => l.length > 0);
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ level: 'warning', logger: 'kiwi' });
    expect(String(dataOf(warned[0]!).reason)).toMatch(/^sampling: .*the user declined sampling/);
    // three tool calls were made, each logged at debug: none of them reached this client
    await sleep(200);
    expect(lines.map((l) => l.level)).toEqual(['warning']);
  });
});

describe("a directive run's progress, as log lines", () => {
  it('an agent at "info" hears its plan and, at "warning", the policy denying the execute, with the run id and no inputs', async () => {
    const client = new Client({ name: 'log-agent', version: '1.0.0' });
    const lines = collect(client);
    await serveStdio(client);
    await client.setLoggingLevel('info');
    const inputs = { lookback: '30m', min_score: 0.9 };
    const plan = await client.callTool({ name: 'run_directive', arguments: { name: 'triage_incident', inputs } });
    const planned = (plan.structuredContent as { id: string }).id;
    // the default policy is read-only: triage_incident's summary event needs write:events
    const execute = await client.callTool({ name: 'run_directive', arguments: { name: 'triage_incident', inputs, mode: 'execute' } });
    const denied = execute.structuredContent as { id: string; status: string };
    expect(denied.status).toBe('denied');
    await pollUntil(() => lines, (seen) => seen.some((l) => dataOf(l).message === 'directive.denied triage_incident'));
    const directiveLines = lines.filter((l) => dataOf(l).message.startsWith('directive.'));
    expect(directiveLines.map((l) => [l.level, dataOf(l).message, dataOf(l).run])).toEqual([
      ['info', 'directive.plan triage_incident', planned],
      ['warning', 'directive.denied triage_incident', denied.id],
    ]);
    expect(dataOf(directiveLines[1]!)).toMatchObject({ actor: 'agent:log-agent', error: expect.stringMatching(/write:events/) });
    expect(JSON.stringify(directiveLines)).not.toContain('30m');
  }, 30_000);
});

describe('MCP logging over HTTP, several sessions', () => {
  async function connect(url: string): Promise<{ client: Client; transport: StreamableHTTPClientTransport; lines: Line[] }> {
    const client = new Client({ name: 'log-http', version: '0.0.0' });
    const lines = collect(client);
    const transport = new StreamableHTTPClientTransport(new URL(url));
    await client.connect(transport);
    opened.clients.push(client);
    await client.setLoggingLevel('debug');
    return { client, transport, lines };
  }

  /** Calls list_series until `lines` holds a line of that call (a client's GET stream opens after initialize). */
  async function callUntilLogged(client: Client, lines: Line[]): Promise<Line[]> {
    return pollUntil(
      async () => {
        const result = await client.callTool({ name: 'list_series', arguments: {} });
        expect(result.isError).not.toBe(true);
        await sleep(20);
        return lines.filter(isToolCall('list_series'));
      },
      (l) => l.length > 0,
    );
  }

  it('each session gets the lines; one ended by its client and one gone without a word do not break the others, and both are freed', async () => {
    const kiwi = createKiwi({ db: join(tempDir(), 'kiwi.db') });
    opened.kiwi = kiwi;
    const http = await startHttp({ host: '127.0.0.1', port: 0, createServer: kiwi.createServer, sessionIdleMs: 300 });
    opened.http = http;
    const before = KiwiMcpServer.loggingConnections;

    const a = await connect(http.url);
    const b = await connect(http.url);
    const c = await connect(http.url);
    expect(await callUntilLogged(a.client, a.lines)).not.toHaveLength(0);
    expect(await callUntilLogged(b.client, b.lines)).not.toHaveLength(0);
    expect(await callUntilLogged(c.client, c.lines)).not.toHaveLength(0);
    expect(KiwiMcpServer.loggingConnections).toBe(before + 3);
    // a line goes to every listening session, not only to the caller's
    const seenByB = b.lines.length;
    await a.client.callTool({ name: 'list_series', arguments: {} });
    expect((await pollUntil(() => b.lines.length, (n) => n > seenByB)) > seenByB).toBe(true);

    // a ends its session (DELETE); c's client vanishes, its session left to expire
    await a.transport.terminateSession();
    await a.client.close();
    await c.transport.close();
    expect(KiwiMcpServer.loggingConnections).toBe(before + 2);

    // b's calls, logged to b and to c's session whose client is gone, answer and reach b
    b.lines.length = 0;
    for (let i = 0; i < 5; i++) {
      const result = await b.client.callTool({ name: 'list_series', arguments: {} });
      expect(result.isError).not.toBe(true);
    }
    expect((await pollUntil(() => b.lines.filter(isToolCall('list_series')), (l) => l.length >= 5)).length).toBe(5);

    // c's session expires (no request open for 300 ms) and is dropped from the fan-out with it
    expect(await pollUntil(() => KiwiMcpServer.loggingConnections, (n) => n === before + 1, { timeoutMs: 5_000 })).toBe(before + 1);
    b.lines.length = 0;
    expect(await callUntilLogged(b.client, b.lines)).not.toHaveLength(0);

    await http.close();
    opened.http = undefined;
    expect(KiwiMcpServer.loggingConnections).toBe(before);
  });
});

describe('MCP logging over HTTP, a client that holds no GET stream', () => {
  it("hears the lines its own tool call logs, on that call's response stream, before the result", async () => {
    const kiwi = createKiwi({ db: join(tempDir(), 'kiwi.db'), selfTelemetry: false });
    opened.kiwi = kiwi;
    const http = await startHttp({ host: '127.0.0.1', port: 0, createServer: kiwi.createServer });
    opened.http = http;
    const gets: string[] = [];
    // a real HTTP client that never opens the standalone GET stream, as some hosts do
    const noGetStream: typeof fetch = (input, init) => {
      if ((init?.method ?? 'GET') === 'GET') {
        gets.push(String(input));
        return Promise.resolve(new Response(null, { status: 405 }));
      }
      return fetch(input, init);
    };
    const client = new Client({ name: 'no-get', version: '0.0.0' });
    const lines = collect(client);
    await client.connect(new StreamableHTTPClientTransport(new URL(http.url), { fetch: noGetStream }));
    opened.clients.push(client);
    await client.setLoggingLevel('info');

    const plan = await client.callTool({ name: 'run_directive', arguments: { name: 'triage_incident', inputs: { lookback: '30m' } } });
    const run = (plan.structuredContent as { id: string }).id;
    // no waiting: the line came on the same stream as the result, ahead of it
    expect(lines.map((l) => [l.level, dataOf(l).message, dataOf(l).run])).toEqual([['info', 'directive.plan triage_incident', run]]);
    expect(gets.length).toBeGreaterThan(0);

    // a line logged outside any call of this client still has no stream to go to
    log.warn('unrelated line');
    await sleep(100);
    expect(lines.map((l) => dataOf(l).message)).not.toContain('unrelated line');
  });
});

describe('MCP logging in-process (createKiwi)', () => {
  it('reaches each connected server at its own level, and sendLoggingMessage sends nothing before a level is set', async () => {
    // what MCP clients get does not depend on KIWI_LOG_LEVEL, which is stderr's alone
    const stderrLevel = process.env.KIWI_LOG_LEVEL;
    process.env.KIWI_LOG_LEVEL = 'silent';
    onTestFinished(() => {
      if (stderrLevel === undefined) delete process.env.KIWI_LOG_LEVEL;
      else process.env.KIWI_LOG_LEVEL = stderrLevel;
    });
    const kiwi = createKiwi({ db: join(tempDir(), 'kiwi.db'), selfTelemetry: false });
    opened.kiwi = kiwi;
    const first = await connectInProcess(kiwi.server, 'first');
    const other = kiwi.createServer();
    const second = await connectInProcess(other, 'second');
    opened.clients.push(first, second);
    const firstLines = collect(first);
    const secondLines = collect(second);

    await kiwi.server.sendLoggingMessage({ level: 'emergency', data: 'before any level' });
    await first.setLoggingLevel('info');
    await second.setLoggingLevel('error');
    log.info('an info line', { token: 'hunter2-secret', rows: 3 });
    log.error('an error line');
    await kiwi.server.sendLoggingMessage({ level: 'warning', data: 'direct' });
    await sleep(50);
    expect(firstLines).toEqual([
      { level: 'info', logger: 'kiwi', data: { message: 'an info line', token: '[redacted]', rows: 3 } },
      { level: 'error', logger: 'kiwi', data: { message: 'an error line' } },
      { level: 'warning', data: 'direct' },
    ]);
    expect(secondLines).toEqual([{ level: 'error', logger: 'kiwi', data: { message: 'an error line' } }]);

    // a closed server is dropped; the other keeps receiving
    const count = KiwiMcpServer.loggingConnections;
    await other.close();
    expect(KiwiMcpServer.loggingConnections).toBe(count - 1);
    log.error('after one closed');
    await sleep(50);
    expect(firstLines.at(-1)).toMatchObject({ data: { message: 'after one closed' } });
  });
});
