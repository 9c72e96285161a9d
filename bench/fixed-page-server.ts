/**
 * A context server for `bench:mcp`: the SDK's McpServer over stdio with one tool, `list_series`,
 * registered with Kiwi's own schemas and description, answering the page given as its argument
 * (Kiwi's answer, captured by the bench) without reading anything. What it costs over the echo
 * peer is what the SDK charges for a tool of this shape; what Kiwi costs over it is Kiwi's own
 * work: the store read, the rendering and its self-telemetry.
 */
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { LIST_SERIES_TOOL } from '../src/mcp/tools/telemetry.js';

const page = process.argv[2];
if (!page) {
  process.stderr.write('usage: fixed-page-server.js <CallToolResult JSON>\n');
  process.exit(2);
}
const answer = JSON.parse(page) as CallToolResult;
const server = new McpServer({ name: 'fixed-page', version: '1.0.0' });
server.registerTool('list_series', LIST_SERIES_TOOL, async () => answer);
await server.connect(new StdioServerTransport());
