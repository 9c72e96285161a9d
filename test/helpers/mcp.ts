/** A real SDK Client connected to a server in this process, over the SDK's InMemoryTransport. */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { afterEach } from 'vitest';
import type { Kiwi } from '../../src/index.js';
import type { RunningHttp } from '../../src/mcp/http.js';

/** The client's name is the agent's principal (`agent:<name>`) for directives. */
export async function connectInProcess(server: McpServer, name = 'test-agent'): Promise<Client> {
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  const client = new Client({ name, version: '0.0.0' });
  await client.connect(clientSide);
  return client;
}

/** What a test opened: closed after each test (clients first, then the HTTP server, then Kiwi). */
export interface Opened {
  clients: Client[];
  http?: RunningHttp;
  kiwi?: Kiwi;
}

export function useOpened(): Opened {
  const opened: Opened = { clients: [] };
  afterEach(async () => {
    for (const client of opened.clients.splice(0)) await client.close().catch(() => undefined);
    await opened.http?.close();
    await opened.kiwi?.close();
    opened.http = undefined;
    opened.kiwi = undefined;
  });
  return opened;
}
