/**
 * The simulated agent platform: its components, tools, request model and the stable background
 * error signatures. docs/SCENARIOS.md describes the same thing in prose; keep them together.
 */

export const AGENTS = ['agent-planner', 'agent-coder', 'agent-reviewer'] as const;
export const MCP_SERVERS = ['mcp-github', 'mcp-filesystem', 'mcp-search'] as const;
export const POLICY = 'policy';
export const WORKER = 'worker';

export type AgentName = (typeof AGENTS)[number];
export type McpServerName = (typeof MCP_SERVERS)[number];
export type ComponentRole = 'agent' | 'mcp_server' | 'policy' | 'worker';

export const COMPONENTS: ReadonlyArray<{ name: string; role: ComponentRole }> = [
  ...AGENTS.map((name) => ({ name, role: 'agent' as const })),
  ...MCP_SERVERS.map((name) => ({ name, role: 'mcp_server' as const })),
  { name: POLICY, role: 'policy' },
  { name: WORKER, role: 'worker' },
];

export const METRIC_MEMORY = 'process.memory.usage';
export const METRIC_CPU = 'process.cpu.utilization';
export const METRIC_TOKENS = 'gen_ai.client.token.usage';

/** The worker's memory limit (2 GiB). The memory_leak ground truth's oom_at is computed against it. */
export const WORKER_MEMORY_LIMIT_BYTES = 2147483648;

export const DEFAULT_STEP_MS = 60_000;

const MIB = 1048576;

export interface ToolSpec {
  name: string;
  server: McpServerName;
  permission: string;
  /** Multiplier on the server's typical latency. */
  latencyFactor: number;
}

export const TOOLS: readonly ToolSpec[] = [
  { name: 'get_file', server: 'mcp-github', permission: 'read:repo', latencyFactor: 1 },
  { name: 'list_issues', server: 'mcp-github', permission: 'read:issues', latencyFactor: 1.3 },
  { name: 'create_pull_request', server: 'mcp-github', permission: 'write:repo', latencyFactor: 1.8 },
  { name: 'read_file', server: 'mcp-filesystem', permission: 'read:fs', latencyFactor: 1 },
  { name: 'write_file', server: 'mcp-filesystem', permission: 'write:fs', latencyFactor: 1.6 },
  { name: 'web_search', server: 'mcp-search', permission: 'net:search', latencyFactor: 1 },
  { name: 'fetch_page', server: 'mcp-search', permission: 'net:fetch', latencyFactor: 0.7 },
];

/** Tool-call latency per server: lognormal with this median (ms) and log-space sigma. */
export const SERVER_LATENCY: Record<McpServerName, { medianMs: number; sigma: number }> = {
  'mcp-github': { medianMs: 380, sigma: 0.35 },
  'mcp-filesystem': { medianMs: 30, sigma: 0.45 },
  'mcp-search': { medianMs: 1100, sigma: 0.35 },
};

export interface AgentProfile {
  name: AgentName;
  /** Thread starts per minute at the daily trough and at the daily peak. */
  nightRate: number;
  peakRate: number;
  /** Weight per tool name (TOOLS order). */
  toolWeights: readonly number[];
  /** Model think time before each tool call and after the last, lognormal median (ms). */
  modelMedianMs: number;
  inputTokensMedian: number;
  outputTokensMedian: number;
}

export const AGENT_PROFILES: readonly AgentProfile[] = [
  {
    name: 'agent-planner',
    nightRate: 0.4,
    peakRate: 2.4,
    //            get_file list_issues create_pr read_file write_file web_search fetch_page
    toolWeights: [0.1, 0.2, 0, 0.15, 0, 0.35, 0.2],
    modelMedianMs: 1400,
    inputTokensMedian: 2600,
    outputTokensMedian: 420,
  },
  {
    name: 'agent-coder',
    nightRate: 0.5,
    peakRate: 3,
    toolWeights: [0.2, 0.05, 0.1, 0.3, 0.25, 0.1, 0],
    modelMedianMs: 2200,
    inputTokensMedian: 5200,
    outputTokensMedian: 1300,
  },
  {
    name: 'agent-reviewer',
    nightRate: 0.4,
    peakRate: 2.2,
    toolWeights: [0.3, 0.15, 0.3, 0.15, 0, 0.1, 0],
    modelMedianMs: 1700,
    inputTokensMedian: 4100,
    outputTokensMedian: 650,
  },
];

/** Log-space sigma of model think time. */
export const MODEL_SIGMA = 0.4;

/** Tool calls per thread: 1, 2 or 3 with these weights. */
export const CALLS_PER_THREAD_WEIGHTS = [0.55, 0.3, 0.15] as const;

/** Baseline probabilities. */
export const BASE_TOOL_ERROR_RATE = 0.005;
export const BASE_AGENT_ERROR_RATE = 0.005;
export const BASE_DENY_RATE = 0.002;
/** Chance that a thread gives up (fails) after one of its tool calls failed or was denied. */
export const ABORT_AFTER_TOOL_ERROR = 0.8;
export const ABORT_AFTER_DENIAL = 0.6;

/**
 * Daily load shape in [0, 1]: trough at 04:00, peak at 16:00 in the users' local time (UTC plus
 * `utcOffsetHours`), with a flatter night than a plain cosine.
 */
export function dailyLoad(ts: number, utcOffsetHours = 0): number {
  const hour = ((((ts + utcOffsetHours * 3_600_000) % 86_400_000) + 86_400_000) % 86_400_000) / 3_600_000;
  const base = (1 - Math.cos((2 * Math.PI * (hour - 4)) / 24)) / 2;
  return base ** 1.5;
}

export function agentRate(profile: AgentProfile, ts: number, utcOffsetHours = 0): number {
  return profile.nightRate + (profile.peakRate - profile.nightRate) * dailyLoad(ts, utcOffsetHours);
}

/** Per-component process metrics: memory (bytes) and cpu (ratio) = idle + load part * dailyLoad. */
export const PROCESS_PROFILE: Record<string, { memoryBytes: number; memoryLoadBytes: number; cpuIdle: number; cpuLoad: number }> = {
  'agent-planner': { memoryBytes: 310 * MIB, memoryLoadBytes: 14 * MIB, cpuIdle: 0.04, cpuLoad: 0.3 },
  'agent-coder': { memoryBytes: 420 * MIB, memoryLoadBytes: 22 * MIB, cpuIdle: 0.05, cpuLoad: 0.38 },
  'agent-reviewer': { memoryBytes: 285 * MIB, memoryLoadBytes: 12 * MIB, cpuIdle: 0.04, cpuLoad: 0.26 },
  'mcp-github': { memoryBytes: 180 * MIB, memoryLoadBytes: 8 * MIB, cpuIdle: 0.03, cpuLoad: 0.18 },
  'mcp-filesystem': { memoryBytes: 96 * MIB, memoryLoadBytes: 4 * MIB, cpuIdle: 0.02, cpuLoad: 0.1 },
  'mcp-search': { memoryBytes: 240 * MIB, memoryLoadBytes: 10 * MIB, cpuIdle: 0.05, cpuLoad: 0.24 },
  policy: { memoryBytes: 64 * MIB, memoryLoadBytes: 2 * MIB, cpuIdle: 0.01, cpuLoad: 0.06 },
  worker: { memoryBytes: 0, memoryLoadBytes: 0, cpuIdle: 0.08, cpuLoad: 0.42 },
};

/** Worker heap model: post-GC baseline, allocation between collections, GC trigger headroom. */
export const WORKER_HEAP = {
  baselineMinBytes: 620 * MIB,
  baselineMaxBytes: 700 * MIB,
  /** Allocation rate in bytes per minute: idle part + load part * dailyLoad. */
  allocIdleBytesPerMin: 4.5 * MIB,
  allocLoadBytesPerMin: 3 * MIB,
  /** A collection runs when the heap has grown this much above the post-GC baseline. */
  gcHeadroomMinBytes: 150 * MIB,
  gcHeadroomMaxBytes: 200 * MIB,
  /** Post-GC residue: live garbage a collection did not reclaim, sd in bytes. */
  residueSdBytes: 1.5 * MIB,
};

export const MIB_BYTES = MIB;

export const INITIAL_VERSIONS: Record<string, string> = {
  'agent-planner': '1.8.2',
  'agent-coder': '2.14.3',
  'agent-reviewer': '1.3.5',
  'mcp-github': '0.9.4',
  'mcp-filesystem': '0.7.1',
  'mcp-search': '1.2.0',
  policy: '3.1.0',
  worker: '4.6.2',
};

/** Harmless settings that background config changes flip between two values. */
export const HARMLESS_CONFIG: Record<ComponentRole, ReadonlyArray<{ key: string; values: readonly [string | number, string | number] }>> = {
  agent: [
    { key: 'log_level', values: ['info', 'debug'] },
    { key: 'max_tool_calls', values: [8, 10] },
  ],
  mcp_server: [
    { key: 'cache_ttl_s', values: [300, 600] },
    { key: 'log_level', values: ['info', 'debug'] },
  ],
  policy: [
    { key: 'audit.sample_rate', values: [1, 0.5] },
    { key: 'log_level', values: ['info', 'debug'] },
  ],
  worker: [
    { key: 'batch_size', values: [200, 250] },
    { key: 'log_level', values: ['info', 'debug'] },
  ],
};

export const CONFIG_ACTORS = ['alice@acme.dev', 'bob@acme.dev', 'ops-bot', 'terraform'] as const;

const REPOS = ['web', 'api', 'infra', 'docs', 'sdk'] as const;
const PATHS = ['src/index.ts', 'src/utils/date.ts', 'README.md', 'package.json', 'src/api/routes.ts', 'test/app.test.ts'] as const;
const HOSTS = ['docs.python.org', 'developer.mozilla.org', 'stackoverflow.com', 'github.com', 'nodejs.org'] as const;

export interface Signature {
  errorType: string;
  /** Builds a message with variable parts (ids, numbers, paths) from a draw source. */
  message: (v: VariablePart, tool: string) => string;
}

/** What message templates draw their variable parts from. */
export interface VariablePart {
  int(lo: number, hi: number): number;
  hex(chars: number): string;
  pick<T>(items: readonly T[]): T;
}

export const SERVER_SIGNATURES: Record<McpServerName, readonly Signature[]> = {
  'mcp-github': [
    {
      errorType: 'rate_limited',
      message: (v) => `GitHub API rate limit exceeded for installation ${v.int(10000, 99999)} (resets in ${v.int(5, 900)} s)`,
    },
    {
      errorType: 'upstream_error',
      message: (v) => `upstream 502 from api.github.com for GET /repos/acme/${v.pick(REPOS)}/pulls/${v.int(100, 9999)}`,
    },
    {
      errorType: 'not_found',
      message: (v) => `not found: /repos/acme/${v.pick(REPOS)}/contents/${v.pick(PATHS)} (request ${v.hex(8)})`,
    },
  ],
  'mcp-filesystem': [
    {
      errorType: 'ENOENT',
      message: (v) => `ENOENT: no such file or directory, open '/srv/workspaces/ws-${v.int(1000, 9999)}/${v.pick(PATHS)}'`,
    },
    {
      errorType: 'EACCES',
      message: (v) => `EACCES: permission denied, open '/srv/workspaces/ws-${v.int(1000, 9999)}/.git/config'`,
    },
  ],
  'mcp-search': [
    {
      errorType: 'rate_limited',
      message: (v) => `search backend returned 429 for query q-${v.hex(8)} (retry after ${v.int(2, 60)} s)`,
    },
    {
      errorType: 'upstream_error',
      message: (v) => `fetch failed: HTTP 503 from https://${v.pick(HOSTS)}/p/${v.int(1, 99999)} (request ${v.hex(8)})`,
    },
  ],
};

export const AGENT_SIGNATURES: readonly Signature[] = [
  {
    errorType: 'model_overloaded',
    message: (v) => `model call failed: 529 overloaded (request req_${v.hex(12)}, attempt ${v.int(1, 3)}/3)`,
  },
  {
    errorType: 'context_length_exceeded',
    message: (v) => `context length exceeded: ${v.int(200001, 260000)} tokens > 200000 in thread ${v.hex(8)}`,
  },
  {
    errorType: 'invalid_tool_arguments',
    message: (v, tool) => `tool argument validation failed: missing field '${v.pick(['path', 'query', 'repo', 'title'])}' in call to ${tool} (thread ${v.hex(8)})`,
  },
];

export const WORKER_SIGNATURES: readonly Signature[] = [
  {
    errorType: 'job_failed',
    message: (v) => `job ${v.int(100000, 999999)} failed: upstream 503 from artifact store (attempt ${v.int(1, 3)}/3)`,
  },
  {
    errorType: 'job_timeout',
    message: (v) => `job ${v.int(100000, 999999)} timed out after ${v.int(60, 300)} s in stage ${v.pick(['index', 'embed', 'compact'])}`,
  },
];

/** The error_spike incident's new signature (absent before its effect start). */
export const NEW_SIGNATURE: Signature = {
  errorType: 'TypeError',
  message: (v) => `TypeError: Cannot read properties of undefined (reading 'hunks') in apply_patch for PR #${v.int(1000, 9999)}`,
};
export const NEW_SIGNATURE_TEMPLATE = "TypeError: Cannot read properties of undefined (reading 'hunks') in apply_patch for PR #<n>";

export const CONNECTION_CLOSED: Signature = {
  errorType: 'connection_closed',
  message: (v, tool) => `connection closed while calling ${tool} (request ${v.hex(8)}, session ${v.hex(8)})`,
};

/** Low-volume info logs per role: rate per hour and templates. */
export const INFO_LOGS: Record<ComponentRole, { perHour: number; messages: ReadonlyArray<(v: VariablePart) => string> }> = {
  agent: {
    perHour: 1,
    messages: [
      (v) => `thread pool: ${v.int(0, 6)} active, ${v.int(5, 180)} completed in the last hour`,
      (v) => {
        const server = v.pick(MCP_SERVERS);
        return `loaded tool manifest from ${server} (${TOOLS.filter((t) => t.server === server).length} tools)`;
      },
    ],
  },
  mcp_server: {
    perHour: 1,
    messages: [
      (v) => `session ${v.hex(8)} opened by ${v.pick(AGENTS)}`,
      (v) => `cache hit ratio 0.${v.int(60, 95)} over the last ${v.int(100, 1000)} requests`,
    ],
  },
  policy: {
    perHour: 0.5,
    messages: [(v) => `evaluated ${v.int(50, 900)} decisions in the last hour (p99 ${v.int(2, 4)} ms)`],
  },
  worker: {
    perHour: 2,
    messages: [(v) => `processed batch ${v.int(10000, 99999)}: ${v.int(50, 400)} jobs in ${v.int(3, 40)} s`],
  },
};

export const WORKER_ERRORS_PER_HOUR = 0.5;
