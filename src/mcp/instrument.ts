/**
 * Observes the MCP operations a transport carries: each `tools/call` request is timed from its
 * arrival to its response and handed to self-telemetry with its outcome. Watching the transport
 * (rather than wrapping tool handlers) also catches calls the SDK answers itself, such as
 * arguments that fail validation.
 */
import type { Transport, TransportSendOptions } from '@modelcontextprotocol/sdk/shared/transport.js';
import type {
  JSONRPCErrorResponse,
  JSONRPCMessage,
  JSONRPCRequest,
  JSONRPCResultResponse,
  MessageExtraInfo,
} from '@modelcontextprotocol/sdk/types.js';
import { CALLER_ERROR, type OperationObservation } from '../ingest/self.js';

const OBSERVED_METHODS = new Set(['tools/call']);
/** How the SDK words what it refuses as invalid parameters: arguments failing a tool's schema, an unknown tool. */
const INVALID_PARAMS = /^(MCP error -32602: |Input validation error)/;

interface Pending {
  method: string;
  tool?: string;
  start: number;
  startedAt: number;
}

export class InstrumentedTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: <T extends JSONRPCMessage>(message: T, extra?: MessageExtraInfo) => void;
  private readonly pending = new Map<string | number, Pending>();

  constructor(
    readonly inner: Transport,
    private readonly observe: (op: OperationObservation) => void,
    /** Whether the tool refused request `id` for its arguments (and forgets it): the caller's mistake. */
    private readonly refusedArguments: (id: string | number) => boolean = () => false,
  ) {
    // Handlers the host set on `inner` before handing it over (the HTTP server's onclose drops the
    // session) keep running, first, as the SDK's Protocol.connect chains those it finds.
    const innerClose = inner.onclose;
    const innerError = inner.onerror;
    const innerMessage = inner.onmessage;
    inner.onclose = () => {
      innerClose?.();
      this.onclose?.();
    };
    inner.onerror = (error) => {
      innerError?.(error);
      this.onerror?.(error);
    };
    inner.onmessage = (message, extra) => {
      innerMessage?.(message, extra);
      if (isRequest(message) && OBSERVED_METHODS.has(message.method)) {
        const params = message.params as { name?: unknown } | undefined;
        const entry: Pending = { method: message.method, start: Date.now(), startedAt: performance.now() };
        if (typeof params?.name === 'string') entry.tool = params.name;
        this.pending.set(message.id, entry);
      }
      this.onmessage?.(message, extra);
    };
  }

  get sessionId(): string | undefined {
    return this.inner.sessionId;
  }

  setProtocolVersion(version: string): void {
    this.inner.setProtocolVersion?.(version);
  }

  start(): Promise<void> {
    return this.inner.start();
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  async send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    const id = isResultResponse(message) || isErrorResponse(message) ? message.id : undefined;
    const entry = id === undefined ? undefined : this.pending.get(id);
    try {
      await this.inner.send(message, options);
    } finally {
      if (entry && id !== undefined) {
        this.pending.delete(id);
        this.observe(this.describe(entry, id, message));
      }
    }
  }

  private describe(entry: Pending, id: string | number, message: JSONRPCMessage): OperationObservation {
    const op: OperationObservation = {
      method: entry.method,
      start: entry.start,
      durationMs: performance.now() - entry.startedAt,
      outcome: 'ok',
    };
    if (entry.tool !== undefined) op.tool = entry.tool;
    if (this.sessionId !== undefined) op.sessionId = this.sessionId;
    if (isErrorResponse(message)) {
      op.outcome = 'error';
      op.errorType = String(message.error.code);
      op.errorMessage = message.error.message;
    } else if (isResultResponse(message) && message.result.isError === true) {
      op.outcome = 'error';
      const text = firstText(message.result.content);
      const callers = this.refusedArguments(id) || (text !== undefined && INVALID_PARAMS.test(text));
      op.errorType = callers ? CALLER_ERROR : 'tool_error';
      if (text !== undefined) op.errorMessage = text;
    }
    return op;
  }
}

// The SDK's own guards (isJSONRPCRequest and kin) run a zod parse of the whole message, which
// costs more than some calls it observes. Messages here are already valid JSON-RPC (the SDK
// parsed those coming in and built those going out), so their shape tells them apart.
function isRequest(message: JSONRPCMessage): message is JSONRPCRequest {
  return 'method' in message && 'id' in message;
}

function isErrorResponse(message: JSONRPCMessage): message is JSONRPCErrorResponse {
  return 'error' in message && 'id' in message;
}

function isResultResponse(message: JSONRPCMessage): message is JSONRPCResultResponse {
  return 'result' in message && 'id' in message;
}

function firstText(content: unknown): string | undefined {
  if (!Array.isArray(content)) return undefined;
  const item = content.find((c): c is { type: 'text'; text: string } => c?.type === 'text' && typeof c.text === 'string');
  return item?.text;
}
