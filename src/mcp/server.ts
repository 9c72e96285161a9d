/** Kiwi's MCP face: a server with every tool group registered, observing its own operations. */
import { AsyncLocalStorage } from 'node:async_hooks';
import { McpServer, type RegisteredTool, type ToolCallback } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { AnySchema, ZodRawShapeCompat } from '@modelcontextprotocol/sdk/server/zod-compat.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  LoggingLevelSchema,
  SetLevelRequestSchema,
  type LoggingLevel,
  type LoggingMessageNotification,
  type ToolAnnotations,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { redact } from '../explain/redact.js';
import type { OperationObservation, SelfTelemetry } from '../ingest/self.js';
import { addLogSink, log, type LogFields, type LogLevel } from '../log.js';
import type { Store } from '../store/store.js';
import { truncate } from './format.js';
import type { ToolArgumentProblem } from '../directives/engine.js';
import { argumentProblems, ArgumentsError } from './arguments.js';
import { InstrumentedTransport } from './instrument.js';
import { registerTelemetryTools } from './tools/telemetry.js';
import { registerAnomalyTools } from './tools/anomalies.js';
import { registerDirectiveTools, type DirectiveToolOptions } from './tools/directives.js';
import { registerExplainTools } from './tools/explain.js';
import { registerForecastTools } from './tools/forecast.js';
import { registerLoopPrompts } from './prompts.js';

export const SERVER_INFO = { name: 'kiwi', version: '0.1.0' } as const;

const INSTRUCTIONS =
  'Kiwi keeps telemetry of an agent platform (metrics, events, spans, MCP connection state, permission decisions) and of ' +
  'itself (component "kiwi"). Start with get_system_health, narrow with list_series, query_metrics and search_events. ' +
  'Every answer is bounded and paginated; times accept ISO 8601, epoch numbers, "now" or "-15m".';

/** The longest error text a tool answers with: errors quote what they were given, and that may be huge. */
const MAX_ERROR_CHARS = 1_000;

/** The `logger` of the log lines a session receives as `notifications/message`. */
export const MCP_LOGGER = 'kiwi';
/** MCP's log levels by severity, least first (RFC 5424's order, as the SDK lists them). */
const SEVERITY = new Map<LoggingLevel, number>(LoggingLevelSchema.options.map((level, index) => [level, index]));
const MCP_LEVEL: Record<LogLevel, LoggingLevel> = { debug: 'debug', info: 'info', warn: 'warning', error: 'error' };
/**
 * Log notifications one session may have waiting to be written (stdout full, a client not reading);
 * past it, that session misses lines rather than Kiwi holding them without bound.
 */
const MAX_PENDING_LOG_NOTIFICATIONS = 1_000;

interface ToolCallInFlight {
  server: KiwiMcpServer;
  requestId: string | number;
}

/**
 * An McpServer whose every connection is observed by Kiwi's self-telemetry, however the host
 * connects it, and receives Kiwi's log lines once its client sets a level (`logging/setLevel`).
 */
export class KiwiMcpServer extends McpServer {
  /** Requests a tool refused for their arguments (its error began `<argument>:`), until the response is observed. */
  private readonly refusedArguments = new Set<string | number>();
  /** Each tool's arguments as the SDK checks them (strict), for checkArguments. */
  private readonly argumentSchemas = new Map<string, z.ZodType>();

  /** Connected servers whose client set a log level: each log line is sent to those whose level it meets. */
  private static readonly logListeners = new Set<KiwiMcpServer>();
  /** Removes the one sink the listeners share from log.ts, while any listens. */
  private static removeLogSink: (() => void) | null = null;
  /** The level the client set with `logging/setLevel` on this connection; null (the default) sends nothing. */
  private logLevel: LoggingLevel | null = null;
  private pendingLogNotifications = 0;
  /** The tool call whose handler is running (a directive's tool steps, on sibling servers, run inside it). */
  private static readonly serving = new AsyncLocalStorage<ToolCallInFlight>();
  /** Tool calls of this connection not yet answered: a line may still ride on their response stream. */
  private readonly unanswered = new Set<string | number>();

  constructor(private readonly telemetry: SelfTelemetry | null) {
    super(SERVER_INFO, { capabilities: { logging: {} }, instructions: INSTRUCTIONS });
    // Replaces the SDK's handler, which keeps the level without anything to send; until a client
    // sets one, it would send every level (Kiwi sends none: its lines already go to stderr).
    this.server.setRequestHandler(SetLevelRequestSchema, async (request) => {
      this.listenToLog(request.params.level);
      return {};
    });
  }

  /** How many connections receive Kiwi's log lines now (a closed one is no longer counted). */
  static get loggingConnections(): number {
    return KiwiMcpServer.logListeners.size;
  }

  /** Kiwi's log lines at `level` and above go to this connection from now on, as `notifications/message`. */
  private listenToLog(level: LoggingLevel): void {
    this.logLevel = level;
    if (!this.isConnected()) return;
    KiwiMcpServer.logListeners.add(this);
    KiwiMcpServer.removeLogSink ??= addLogSink(KiwiMcpServer.forwardLog);
  }

  /** This connection gets no more log lines (it closed, or a new one begins quiet). */
  private stopLogging(): void {
    this.logLevel = null;
    KiwiMcpServer.logListeners.delete(this);
    if (KiwiMcpServer.logListeners.size === 0 && KiwiMcpServer.removeLogSink) {
      KiwiMcpServer.removeLogSink();
      KiwiMcpServer.removeLogSink = null;
    }
  }

  /**
   * One log line to every listening session whose level it meets, redacted once for all. Never
   * waits and never throws: a session that is gone misses the line, and is dropped if its
   * connection is closed, without the others or the code that logged noticing.
   */
  private static readonly forwardLog = (level: LogLevel, message: string, fields: LogFields | undefined): void => {
    const mcpLevel = MCP_LEVEL[level];
    const calling = KiwiMcpServer.serving.getStore();
    let data: Record<string, unknown> | undefined;
    for (const server of KiwiMcpServer.logListeners) {
      if (!server.isConnected()) {
        server.stopLogging();
        continue;
      }
      if (!server.wantsLog(mcpLevel) || server.pendingLogNotifications >= MAX_PENDING_LOG_NOTIFICATIONS) continue;
      // the message first, then the fields (a field named "message" does not replace it)
      data ??= redact(Object.assign({ message }, fields, { message }));
      server.pendingLogNotifications++;
      server.server
        .notification({ method: 'notifications/message', params: { level: mcpLevel, logger: MCP_LOGGER, data } }, server.relatedTo(calling))
        .catch(() => undefined)
        .finally(() => server.pendingLogNotifications--);
    }
  };

  /**
   * A line logged by this connection's own unanswered tool call goes out as part of that call: over
   * HTTP on the call's response stream, before its result, so a client that holds no GET stream
   * still hears it. Any other line is unrelated, and goes to the GET stream.
   */
  private relatedTo(call: ToolCallInFlight | undefined): { relatedRequestId: string | number } | undefined {
    return call?.server === this && this.unanswered.has(call.requestId) ? { relatedRequestId: call.requestId } : undefined;
  }

  private wantsLog(level: LoggingLevel): boolean {
    return this.logLevel !== null && SEVERITY.get(level)! >= SEVERITY.get(this.logLevel)!;
  }

  /** As the SDK's, but by the level this connection set (and nothing before it set one). */
  override async sendLoggingMessage(params: LoggingMessageNotification['params'], _sessionId?: string): Promise<void> {
    if (!this.wantsLog(params.level)) return;
    await this.server.notification({ method: 'notifications/message', params });
  }

  /**
   * As McpServer's, with three differences: an argument the tool does not name is refused by name
   * instead of silently dropped; an error the handler throws is cut to MAX_ERROR_CHARS; and one
   * that names an argument (`from: ...`, the convention for what only a handler can check), or is
   * an ArgumentsError, is noted as the caller's mistake for self-telemetry, as the SDK's own argument checks are.
   */
  override registerTool<OutputArgs extends ZodRawShapeCompat | AnySchema, InputArgs extends undefined | ZodRawShapeCompat | AnySchema = undefined>(
    name: string,
    config: {
      title?: string;
      description?: string;
      inputSchema?: InputArgs;
      outputSchema?: OutputArgs;
      annotations?: ToolAnnotations;
      _meta?: Record<string, unknown>;
    },
    cb: ToolCallback<InputArgs>,
  ): RegisteredTool {
    const input = config.inputSchema;
    const strict = input === undefined || input instanceof z.ZodType ? input : (strictArguments(input as z.ZodRawShape) as unknown as InputArgs);
    const argumentNames = input === undefined ? [] : Object.keys(input instanceof z.ZodObject ? input.shape : (input as z.ZodRawShape));
    const handler = cb as (...params: unknown[]) => unknown;
    const guarded = (async (...params: unknown[]) => {
      const extra = params[params.length - 1] as { requestId?: string | number; sessionId?: string } | undefined;
      const requestId = extra?.requestId;
      // Only a transport with sessions (HTTP) has a stream per request, and only a listening
      // connection needs one; elsewhere the call is not tracked: on Node 20 an AsyncLocalStorage
      // in use slows every promise in the process.
      const relatesLines = this.logLevel !== null && extra?.sessionId !== undefined;
      try {
        if (requestId === undefined || !relatesLines) return await handler(...params);
        this.unanswered.add(requestId);
        return await KiwiMcpServer.serving.run({ server: this, requestId }, () => handler(...params));
      } catch (err) {
        const message = truncate(err instanceof Error ? err.message : String(err), MAX_ERROR_CHARS);
        // every connection is observed (see connect), so the note is read, and cleared, when the response goes out
        const callers = err instanceof ArgumentsError || argumentNames.some((a) => message.startsWith(`${a}:`) || message.startsWith(`${a}.`));
        if (requestId !== undefined && callers) {
          this.refusedArguments.add(requestId);
        }
        throw new Error(message);
      } finally {
        if (requestId !== undefined && relatesLines) this.unanswered.delete(requestId);
      }
    }) as ToolCallback<InputArgs>;
    if (strict instanceof z.ZodType) this.argumentSchemas.set(name, strict);
    return super.registerTool(name, { ...config, inputSchema: strict }, guarded);
  }

  /** What tool `name` would refuse in `args`, without calling it (argumentProblems); none for a tool it does not have. */
  checkArguments(name: string, args: Record<string, unknown>): ToolArgumentProblem[] {
    const schema = this.argumentSchemas.get(name);
    return schema ? argumentProblems(schema, args) : [];
  }

  /**
   * Every connection is observed: each tool call goes to self-telemetry (when on) and to the log at
   * debug. A connection begins quiet and stops getting log lines when its transport closes.
   */
  override async connect(transport: Transport): Promise<void> {
    const telemetry = this.telemetry;
    if (!this.isConnected()) this.stopLogging(); // (connected, super.connect refuses a second transport)
    const observed = new InstrumentedTransport(
      transport,
      (op) => {
        telemetry?.recordOperation(op);
        logOperation(op);
      },
      (id) => this.refusedArguments.delete(id),
    );
    // chained by the SDK's Protocol.connect, after handlers the host set on `transport`
    observed.onclose = () => this.stopLogging();
    return super.connect(observed);
  }

  override async close(): Promise<void> {
    this.stopLogging();
    return super.close();
  }
}

/** A tool call at debug: its tool, outcome and time, never its arguments nor its error's text (which may quote them). */
function logOperation(op: OperationObservation): void {
  if (!log.wants('debug')) return;
  const fields: LogFields = { tool: op.tool === undefined ? null : truncate(op.tool, 64), outcome: op.outcome, duration_ms: Math.round(op.durationMs * 10) / 10 };
  if (op.errorType !== undefined) fields.error_type = op.errorType;
  log.debug(op.method, fields);
}

/** Where the directive tools find their policy, directives and scripts (each defaults as DirectiveService's does). */
export type DirectiveSetup = Pick<DirectiveToolOptions, 'policy' | 'directivesDir' | 'scriptsDir' | 'answerWithinMs'>;

export function createMcpServer(store: Store, telemetry: SelfTelemetry | null, directives: DirectiveSetup = {}): KiwiMcpServer {
  const server = new KiwiMcpServer(telemetry);
  registerTelemetryTools(server, store, telemetry);
  registerAnomalyTools(server, store);
  registerExplainTools(server, store);
  registerForecastTools(server, store);
  registerDirectiveTools(server, store, { ...directives, createServer: () => createMcpServer(store, telemetry, directives) });
  registerLoopPrompts(server);
  return server;
}

/** The tool's arguments, refusing unknown ones with the names it does take (a model guessing `start` for `from` learns which). */
function strictArguments(shape: z.ZodRawShape) {
  const known = Object.keys(shape);
  return z.strictObject(shape, {
    error: (issue) => {
      if (issue.code !== 'unrecognized_keys') return undefined;
      // the names as given, a few and each cut short: they come from the caller
      const shown = issue.keys.slice(0, 5).map((k) => JSON.stringify(truncate(k, 64)));
      const more = issue.keys.length > shown.length ? ` and ${issue.keys.length - shown.length} more` : '';
      return `unknown argument${issue.keys.length > 1 ? 's' : ''} ${shown.join(', ')}${more}; this tool takes ${known.length ? known.join(', ') : 'no arguments'}`;
    },
  });
}
