/** Kiwi's MCP face: a server with every tool group registered, observing its own operations. */
import { McpServer, type RegisteredTool, type ToolCallback } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { AnySchema, ZodRawShapeCompat } from '@modelcontextprotocol/sdk/server/zod-compat.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { ToolAnnotations } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { SelfTelemetry } from '../ingest/self.js';
import type { Store } from '../store/store.js';
import { truncate } from './format.js';
import { ArgumentsError } from './arguments.js';
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

/** An McpServer whose every connection is observed by Kiwi's self-telemetry, however the host connects it. */
export class KiwiMcpServer extends McpServer {
  /** Requests a tool refused for their arguments (its error began `<argument>:`), until the response is observed. */
  private readonly refusedArguments = new Set<string | number>();

  constructor(private readonly telemetry: SelfTelemetry | null) {
    super(SERVER_INFO, { capabilities: { logging: {} }, instructions: INSTRUCTIONS });
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
      try {
        return await handler(...params);
      } catch (err) {
        const message = truncate(err instanceof Error ? err.message : String(err), MAX_ERROR_CHARS);
        const extra = params[params.length - 1] as { requestId?: string | number } | undefined;
        const observed = this.telemetry !== null; // only an observed connection reads (and so clears) the note
        const callers = err instanceof ArgumentsError || argumentNames.some((a) => message.startsWith(`${a}:`) || message.startsWith(`${a}.`));
        if (observed && extra?.requestId !== undefined && callers) {
          this.refusedArguments.add(extra.requestId);
        }
        throw new Error(message);
      }
    }) as ToolCallback<InputArgs>;
    return super.registerTool(name, { ...config, inputSchema: strict }, guarded);
  }

  override async connect(transport: Transport): Promise<void> {
    const telemetry = this.telemetry;
    if (!telemetry) return super.connect(transport);
    return super.connect(
      new InstrumentedTransport(transport, (op) => telemetry.recordOperation(op), (id) => this.refusedArguments.delete(id)),
    );
  }
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
