import { PassThrough } from 'node:stream';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import { LineStdioTransport } from '../src/mcp/stdio.js';

function harness(maxBytes: number) {
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const transport = new LineStdioTransport(maxBytes, stdin, stdout);
  const received: JSONRPCMessage[] = [];
  const errors: string[] = [];
  const written: unknown[] = [];
  transport.onmessage = (m) => received.push(m);
  transport.onerror = (e) => errors.push(e.message);
  stdout.on('data', (d: Buffer) => written.push(...d.toString().trim().split('\n').map((l) => JSON.parse(l) as unknown)));
  return { stdin, transport, received, errors, written, settle: () => new Promise((r) => setImmediate(r)) };
}

const ping = (id: number | string) => JSON.stringify({ jsonrpc: '2.0', id, method: 'ping' });

describe('LineStdioTransport', () => {
  it('reads one message per line, across chunk boundaries and CRLF, and skips blank lines', async () => {
    const h = harness(1024);
    await h.transport.start();
    const text = `${ping(1)}\r\n\n${ping(2)}\n${ping('three')}\n`;
    for (let i = 0; i < text.length; i += 7) h.stdin.write(text.slice(i, i + 7));
    await h.settle();
    expect(h.received.map((m) => (m as { id: unknown }).id)).toEqual([1, 2, 'three']);
    expect(h.errors).toEqual([]);
  });

  it('reports a line that is not JSON-RPC and reads the next', async () => {
    const h = harness(1024);
    await h.transport.start();
    h.stdin.write(`not json\n{"jsonrpc":"2.0","id":1}\n${ping(2)}\n`);
    await h.settle();
    expect(h.errors).toHaveLength(2);
    expect(h.received.map((m) => (m as { id: unknown }).id)).toEqual([2]);
  });

  it('skips a message over the limit, answers it by the id at its head or tail (or null), and reads on', async () => {
    const h = harness(200);
    await h.transport.start();
    const filler = 'x'.repeat(500);
    h.stdin.write(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"a":"${filler}"}}\n`);
    h.stdin.write(`{"method":"tools/call","params":{"a":"${filler.slice(0, 250)}`);
    h.stdin.write(`${filler.slice(250)}"},"jsonrpc":"2.0","id":"req-8"}\n`);
    h.stdin.write(`{"method":"notifications/x","params":{"a":"${filler}"}}\n${ping(9)}\n`);
    await h.settle();
    expect(h.written).toEqual([
      { jsonrpc: '2.0', id: 7, error: { code: -32600, message: expect.stringMatching(/^Request too large: a message of 5\d\d bytes, over this server's limit of 200 bytes/) } },
      { jsonrpc: '2.0', id: 'req-8', error: { code: -32600, message: expect.stringMatching(/^Request too large/) } },
      { jsonrpc: '2.0', id: null, error: { code: -32600, message: expect.stringMatching(/^Request too large/) } },
    ]);
    expect(h.errors.filter((e) => e.startsWith('skipped a message of'))).toHaveLength(3);
    expect(h.received.map((m) => (m as { id: unknown }).id)).toEqual([9]);
  });

  it('does not trip over what it cannot read in a skipped line, and finds an id the crossing split', async () => {
    const h = harness(100);
    await h.transport.start();
    const filler = 'x'.repeat(300);
    // not valid JSON ids: no answer to a made-up id, and no exception out of the stream handler
    h.stdin.write(`{"method":"m","params":{"a":"${filler}"},"jsonrpc":"2.0","id":01}\n`);
    h.stdin.write(`{"method":"m","params":{"a":"${filler}"},"jsonrpc":"2.0","id":1.5}\n`);
    // the id begins in the piece held before the limit was crossed and ends in the next one
    h.stdin.write(`{"method":"m","params":{"a":"${'y'.repeat(60)}"},"jsonrpc":"2.0","id":12`);
    h.stdin.write('3}\n');
    // a response from the client (no method) that is too large is reported, not answered
    h.stdin.write(`{"jsonrpc":"2.0","id":4,"result":{"a":"${filler}"}}\n${ping(5)}\n`);
    await h.settle();
    expect(h.written.map((w) => (w as { id: unknown }).id)).toEqual([null, null, 123]);
    expect(h.errors.filter((e) => e.startsWith('skipped a message of'))).toHaveLength(4);
    expect(h.received.map((m) => (m as { id: unknown }).id)).toEqual([5]);
  });

  it('closes when its reader goes away, and a send after that settles', async () => {
    const h = harness(1024);
    let closed = 0;
    h.transport.onclose = () => closed++;
    await h.transport.start();
    const stdout = (h.transport as unknown as { stdout: PassThrough }).stdout;
    stdout.emit('error', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    await h.settle();
    expect(closed).toBe(1);
    expect(h.errors).toEqual(['write EPIPE']);
    await expect(h.transport.send({ jsonrpc: '2.0', id: 1, result: {} })).resolves.toBeUndefined();
  });
});
