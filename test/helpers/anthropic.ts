/**
 * A local HTTP server that speaks the Anthropic Messages API (POST /v1/messages), so tests run
 * the real `@anthropic-ai/sdk` against it. Each request is recorded; what it answers is decided
 * per request by the test (a text answer, an API error, a delay, or bytes that are not JSON).
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  path: string;
  headers: IncomingHttpHeaders;
  body: {
    model?: string;
    max_tokens?: number;
    system?: string;
    messages?: { role: string; content: string }[];
    output_config?: { format?: { type?: string; schema?: Record<string, unknown> } };
  };
}

export type Reply =
  /** A message whose single text block is `text`. */
  | { text: string; stopReason?: string; delayMs?: number }
  /** An API error, as the real API sends it. */
  | { status: number; errorType: string; message: string; delayMs?: number }
  /** Raw bytes with status 200 (e.g. not JSON). */
  | { raw: string; delayMs?: number };

export interface MessagesServer {
  /** Base URL for the SDK's `baseURL` (no trailing /v1). */
  url: string;
  requests: RecordedRequest[];
  /** Decides the reply to the n-th request (0-based). */
  reply: (request: RecordedRequest, index: number) => Reply;
  close(): Promise<void>;
}

export const TEST_API_KEY = 'sk-ant-test-0000000000000000000000';

export async function startMessagesServer(reply: MessagesServer['reply']): Promise<MessagesServer> {
  const state: MessagesServer = {
    url: '',
    requests: [],
    reply,
    close: async () => undefined,
  };
  const timers = new Set<NodeJS.Timeout>();
  const server: Server = createServer((req, res) => {
    let raw = '';
    req.on('data', (chunk: Buffer) => (raw += chunk.toString()));
    req.on('end', () => {
      const send = (status: number, body: string) => {
        if (res.destroyed) return;
        res.writeHead(status, { 'content-type': 'application/json', 'request-id': `req_test_${state.requests.length}` });
        res.end(body);
      };
      if (req.method !== 'POST' || req.url?.split('?')[0] !== '/v1/messages') {
        send(404, JSON.stringify({ type: 'error', error: { type: 'not_found_error', message: `no route ${req.method} ${req.url}` } }));
        return;
      }
      // the API takes the key as x-api-key or as a bearer token (this SDK version sends the latter)
      const key = req.headers['x-api-key'] ?? req.headers.authorization?.replace(/^Bearer\s+/i, '');
      if (key !== TEST_API_KEY) {
        send(401, JSON.stringify({ type: 'error', error: { type: 'authentication_error', message: 'invalid API key' } }));
        return;
      }
      let body: RecordedRequest['body'];
      try {
        body = JSON.parse(raw) as RecordedRequest['body'];
      } catch {
        send(400, JSON.stringify({ type: 'error', error: { type: 'invalid_request_error', message: 'body is not JSON' } }));
        return;
      }
      const recorded: RecordedRequest = { path: req.url, headers: req.headers, body };
      const index = state.requests.push(recorded) - 1;
      const answer = state.reply(recorded, index);
      const respond = () => {
        if ('raw' in answer) send(200, answer.raw);
        else if ('status' in answer) send(answer.status, JSON.stringify({ type: 'error', error: { type: answer.errorType, message: answer.message } }));
        else {
          send(
            200,
            JSON.stringify({
              id: `msg_test_${index}`,
              type: 'message',
              role: 'assistant',
              model: body.model ?? 'unknown',
              content: [{ type: 'text', text: answer.text }],
              stop_reason: answer.stopReason ?? 'end_turn',
              stop_sequence: null,
              usage: { input_tokens: Math.ceil(raw.length / 4), output_tokens: Math.ceil(answer.text.length / 4) },
            }),
          );
        }
      };
      if (answer.delayMs) {
        const timer = setTimeout(() => {
          timers.delete(timer);
          respond();
        }, answer.delayMs);
        timers.add(timer);
      } else respond();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.close = () =>
    new Promise<void>((resolve) => {
      for (const timer of timers) clearTimeout(timer);
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return state;
}

/** A narrative answer as the model would write it. */
export function narrativeJson(overrides: Record<string, unknown> = {}): string {
  return JSON.stringify({
    root_cause: 'policy v42 denies create_pull_request for agent-reviewer',
    next_steps: ['Roll back policy.version to v41', 'Check the reviewer threads that failed'],
    confidence: 0.8,
    ...overrides,
  });
}
