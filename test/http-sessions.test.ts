/**
 * The life of an MCP session over Streamable HTTP: startHttp in-process on a real loopback port,
 * real SDK clients (and raw `node:http` requests where a client must behave in a way the SDK
 * client does not), a real store. A session ends when its client terminates it, and one nobody
 * uses expires; one in use does not.
 */
import { join } from 'node:path';
import { request as httpRequest } from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { LATEST_PROTOCOL_VERSION, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createKiwi } from '../src/index.js';
import { startHttp, type RunningHttp } from '../src/mcp/http.js';
import { InstrumentedTransport } from '../src/mcp/instrument.js';
import { KiwiMcpServer } from '../src/mcp/server.js';
import type { OperationObservation } from '../src/ingest/self.js';
import { useOpened } from './helpers/mcp.js';
import { pollUntil } from './helpers/poll.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir('kiwi-http-sessions-');
const EXPIRED = 'unknown or expired session; initialize again';

const opened = useOpened();

/** Kiwi over HTTP on a free loopback port, self-telemetry on (so every session's transport is wrapped). */
async function serve(sessionIdleMs?: number, createServer?: () => KiwiMcpServer): Promise<RunningHttp> {
  const kiwi = createKiwi({ db: join(tempDir(), 'kiwi.db') });
  opened.kiwi = kiwi;
  opened.http = await startHttp({ host: '127.0.0.1', port: 0, createServer: createServer ?? kiwi.createServer, sessionIdleMs });
  return opened.http;
}

async function connect(url: string): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const client = new Client({ name: 'kiwi-sessions-test', version: '0.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(url));
  await client.connect(transport);
  opened.clients.push(client);
  return { client, transport };
}

async function sessionCount(http: RunningHttp): Promise<number> {
  const res = await fetch(`${http.baseUrl}/healthz`);
  return ((await res.json()) as { sessions: number }).sessions;
}

interface Raw {
  status: number;
  sessionId: string | undefined;
  body: string;
}

/** One POST to /mcp over its own connection, read to its end (an SSE answer included). */
function post(port: number, message: unknown, sessionId?: string): Promise<Raw> {
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  if (sessionId) {
    headers['mcp-session-id'] = sessionId;
    headers['mcp-protocol-version'] = LATEST_PROTOCOL_VERSION;
  }
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/mcp', headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, sessionId: res.headers['mcp-session-id'] as string | undefined, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('raw request timed out')));
    req.end(JSON.stringify(message));
  });
}

/** A session opened by hand: no GET stream, nothing open between requests. */
async function rawSession(port: number): Promise<string> {
  const init = await post(port, {
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion: LATEST_PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'raw', version: '0' } },
  });
  expect(init.status).toBe(200);
  expect(init.sessionId).toBeDefined();
  const initialized = await post(port, { jsonrpc: '2.0', method: 'notifications/initialized' }, init.sessionId);
  expect(initialized.status).toBe(202);
  return init.sessionId!;
}

let nextId = 100;
const listTools = (port: number, sessionId: string) => post(port, { jsonrpc: '2.0', id: nextId++, method: 'tools/list' }, sessionId);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function expectExpired(answer: Raw): void {
  expect(answer.status).toBe(404);
  expect(JSON.parse(answer.body)).toMatchObject({ error: { message: EXPIRED } });
}

describe('MCP sessions over HTTP', () => {
  it('frees a session its client terminates, with self-telemetry wrapping the transport: 0 sessions after 20 open, call, terminate cycles', async () => {
    const http = await serve();
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const { client, transport } = await connect(http.url);
      const result = await client.callTool({ name: 'list_series', arguments: {} });
      expect(result.isError).not.toBe(true);
      ids.push(transport.sessionId!);
      await transport.terminateSession();
      await client.close();
    }
    expect(new Set(ids).size).toBe(20);
    expect(await sessionCount(http)).toBe(0);
    expectExpired(await listTools(http.port, ids[0]!));
  });

  it('closes a session nobody uses after the idle timeout: its id then gets 404, a new session works', async () => {
    const http = await serve(400);
    // A client that went away without a DELETE: its GET stream closed with it.
    const gone = await connect(http.url);
    await gone.client.callTool({ name: 'list_series', arguments: {} });
    const goneId = gone.transport.sessionId!;
    await gone.client.close();
    // One that initialized and never came back.
    const silentId = await rawSession(http.port);
    expect(await sessionCount(http)).toBe(2);

    expect(await pollUntil(() => sessionCount(http), (n) => n === 0, { timeoutMs: 5_000 })).toBe(0);
    expectExpired(await listTools(http.port, goneId));
    expectExpired(await listTools(http.port, silentId));

    const again = await connect(http.url);
    expect((await again.client.callTool({ name: 'list_series', arguments: {} })).isError).not.toBe(true);
  });

  it('keeps a session in use past the idle timeout: one calling now and then, one holding its GET stream open', async () => {
    const http = await serve(400);
    const listening = await connect(http.url); // the SDK client holds a GET stream open for server messages
    const callingId = await rawSession(http.port); // no GET stream: only its requests count
    const idleId = await rawSession(http.port);
    // 2 s, five times the timeout: the calling session asks every 150 ms.
    for (const end = Date.now() + 2_000; Date.now() < end; ) {
      expect((await listTools(http.port, callingId)).status).toBe(200);
      await sleep(150);
    }
    expectExpired(await listTools(http.port, idleId));
    expect((await listTools(http.port, callingId)).status).toBe(200);
    expect((await listening.client.callTool({ name: 'list_series', arguments: {} })).isError).not.toBe(true);
    expect(await sessionCount(http)).toBe(2);

    // Once the listening client goes away, its session expires in turn.
    const listeningId = listening.transport.sessionId!;
    await listening.client.close();
    await sleep(1_200);
    expectExpired(await listTools(http.port, listeningId));
  });

  it('does not cut a session whose call takes longer than the idle timeout', async () => {
    const slowServer = () => {
      const server = new KiwiMcpServer(null);
      server.registerTool('wait', { inputSchema: { ms: z.number() } }, async ({ ms }) => {
        await sleep(ms);
        return { content: [{ type: 'text', text: `waited ${ms} ms` }] };
      });
      return server;
    };
    const http = await serve(300, slowServer);
    const id = await rawSession(http.port);
    const answer = await post(http.port, { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'wait', arguments: { ms: 1_500 } } }, id);
    expect(answer.status).toBe(200);
    expect(answer.body).toContain('waited 1500 ms');
    expect((await listTools(http.port, id)).status).toBe(200);
    await sleep(1_000);
    expectExpired(await listTools(http.port, id));
  });
});

describe('InstrumentedTransport', () => {
  it('keeps the handlers set on the transport it wraps, and still observes tool calls', async () => {
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    const seen: string[] = [];
    const errors: string[] = [];
    let closed = 0;
    serverSide.onclose = () => closed++;
    serverSide.onerror = (error) => errors.push(`host: ${error.message}`);
    serverSide.onmessage = (message: JSONRPCMessage) => seen.push('method' in message ? message.method : 'response');
    const ops: OperationObservation[] = [];
    const wrapped = new InstrumentedTransport(serverSide, (op) => ops.push(op));
    const server = new McpServer({ name: 't', version: '0' });
    server.registerTool('echo', { inputSchema: { text: z.string() } }, ({ text }) => ({ content: [{ type: 'text', text }] }));
    let serverClosed = 0;
    server.server.onclose = () => serverClosed++;
    server.server.onerror = (error) => errors.push(`server: ${error.message}`);
    await server.connect(wrapped);
    const client = new Client({ name: 'c', version: '0' });
    await client.connect(clientSide);

    expect(await client.callTool({ name: 'echo', arguments: { text: 'hi' } })).toMatchObject({ content: [{ text: 'hi' }] });
    expect(seen).toEqual(['initialize', 'notifications/initialized', 'tools/call']);
    expect(ops).toMatchObject([{ method: 'tools/call', tool: 'echo', outcome: 'ok' }]);

    serverSide.onerror!(new Error('boom'));
    expect(errors).toEqual(['host: boom', 'server: boom']);

    await client.close();
    expect(closed).toBe(1);
    expect(serverClosed).toBe(1);
  });
});
