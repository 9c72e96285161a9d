/**
 * How directive steps reach the rest of Kiwi without import cycles: the detection, root-cause and
 * forecasting capabilities, and Kiwi's own MCP tools, are handed to the engine by whoever builds
 * it (the MCP server, the CLI, an embedding host, a test).
 */

/** One capability call: JSON in, JSON out. `signal` aborts when the step times out. */
export type Capability = (input: Record<string, unknown>, signal: AbortSignal) => Promise<Record<string, unknown>>;

export const CAPABILITY_NAMES = ['detect', 'explain', 'forecast'] as const;
export type CapabilityName = (typeof CAPABILITY_NAMES)[number];

export function isCapabilityName(name: string): name is CapabilityName {
  return (CAPABILITY_NAMES as readonly string[]).includes(name);
}

/**
 * `detect` (input e.g. `{ lookback, component, types }` → `{ anomalies: [...] }`), `explain`
 * (`{ anomaly_id }` → `{ causes: [...], narrative }`), `forecast` (`{ component, metric, horizon }`
 * → `{ forecasts: [...] }`). A capability that is absent makes its action fail with a clear error.
 */
export type CapabilityRegistry = Partial<Record<CapabilityName, Capability>>;

/** The MCP tools a capability is reached through when no implementation is injected. */
export const CAPABILITY_TOOLS: Record<CapabilityName, string> = {
  detect: 'detect_anomalies',
  explain: 'analyze_root_cause',
  forecast: 'forecast_failure',
};

export interface ToolInfo {
  name: string;
  readOnly: boolean;
  destructive: boolean;
  /** The argument names the tool takes, when known: validation refuses others (the tools refuse them too). */
  inputs?: readonly string[];
}

export interface ToolCallResult {
  structured: Record<string, unknown> | null;
  text: string;
  isError: boolean;
}

/** Kiwi's own MCP tools, as a `tool` step calls them. */
export interface ToolCaller {
  list(): Promise<ToolInfo[]>;
  call(name: string, args: Record<string, unknown>, signal: AbortSignal): Promise<ToolCallResult>;
}

/** Tools a `tool` step may not call: running a directive from a tool step would escape the depth limit. */
export const REFUSED_TOOLS: ReadonlySet<string> = new Set(['run_directive']);

/**
 * The registry a server uses: injected implementations first, else the capability's MCP tool when
 * the server has it (so a capability becomes available to directives as soon as its tool lands).
 */
/** Capabilities reached through their MCP tool (capabilitiesWithToolFallback): their inputs are that tool's arguments. */
const throughTool = new WeakSet<Capability>();

/** Whether `capability` calls its MCP tool, so the tool's argument checks apply to its inputs; an injected one has its own. */
export function reachesTool(capability: Capability | undefined): boolean {
  return capability !== undefined && throughTool.has(capability);
}

export function capabilitiesWithToolFallback(injected: CapabilityRegistry, tools: ToolCaller | null): CapabilityRegistry {
  const registry: CapabilityRegistry = { ...injected };
  if (!tools) return registry;
  for (const name of Object.keys(CAPABILITY_TOOLS) as CapabilityName[]) {
    if (registry[name]) continue;
    const tool = CAPABILITY_TOOLS[name];
    const viaTool: Capability = async (input, signal) => {
      const available = await tools.list();
      if (!available.some((t) => t.name === tool)) throw new Error(`capability "${name}" is not available in this server (no ${tool} tool yet)`);
      const result = await tools.call(tool, input, signal);
      if (result.isError) throw new Error(`${tool}: ${result.text}`);
      return result.structured ?? { text: result.text };
    };
    throughTool.add(viaTool);
    registry[name] = viaTool;
  }
  return registry;
}
