/**
 * Kiwi's runtime settings: a catalogue of known keys with defaults and validation. Values live
 * in the store's `settings` table (with history); a key never set reads as its default.
 */
import { z } from 'zod';
import type { Store } from './store/store.js';

export const SETTINGS = {
  'retention.raw_days': {
    schema: z.number().positive().max(3650),
    default: 30,
    description: 'Raw points, events and spans older than this many days are pruned (points are first rolled up by minute).',
  },
  'retention.rollup_days': {
    schema: z.number().positive().max(36500),
    default: 365,
    description: 'One-minute roll-ups older than this many days are pruned.',
  },
  'telemetry.self_interval_ms': {
    schema: z.number().int().min(100).max(3_600_000),
    default: 10_000,
    description: "How often Kiwi samples its own memory, event-loop delay and store size.",
  },
  'telemetry.self_flush_ms': {
    schema: z.number().int().min(0).max(60_000),
    default: 100,
    description:
      "Longest Kiwi buffers the telemetry of its own tool calls before writing it in one transaction (0: write each call's at once). " +
      'Kiwi sees itself up to this much late. Read when Kiwi starts.',
  },
  'http.session_idle_ms': {
    schema: z.number().int().min(0).max(604_800_000),
    default: 1_800_000,
    description:
      'How long an MCP session over HTTP may have no request open (a GET stream its client holds open counts as open) before Kiwi ' +
      'closes it; its client must then initialize again. 0: never. Read when kiwi serve --http starts.',
  },
  'detect.sensitivity': {
    schema: z.number().min(0).max(1),
    default: 0.5,
    description:
      'How readily detect_anomalies reports: 0.5 reports findings with p < 1e-6, 1 with p < 1e-3, 0 with p < 1e-9.',
  },
  'mcp.timeout_ms': {
    schema: z.record(z.string().min(1), z.number().int().min(100).max(600_000)),
    default: {} as Record<string, number>,
    description:
      'Per component: the tool-call timeout in milliseconds the platform should apply to that MCP server, e.g. {"mcp-search": 30000}. Set by directives (settings.set with a component).',
  },
  'mcp.circuit_breaker': {
    schema: z.record(z.string().min(1), z.enum(['open', 'closed'])),
    default: {} as Record<string, 'open' | 'closed'>,
    description:
      'Per component: "open" asks the platform to stop routing calls to that MCP server until closed again, e.g. {"mcp-github": "open"}. Set by directives.',
  },
  'explain.llm_model': {
    schema: z.string().min(1).max(200),
    default: 'claude-sonnet-5-5',
    description:
      'Anthropic model that writes root-cause narratives when ANTHROPIC_API_KEY is set and the MCP client offers no sampling.',
  },
  'explain.llm_timeout_ms': {
    schema: z.number().int().min(100).max(600_000),
    default: 30_000,
    description:
      'How long a root-cause narrative may take (MCP sampling, or each Anthropic API attempt) before Kiwi falls back to the next source.',
  },
  'explain.llm_max_retries': {
    schema: z.number().int().min(0).max(5),
    default: 2,
    description: 'Retries of a failed Anthropic API request (rate limits, server errors, timeouts) for a root-cause narrative.',
  },
  'forecast.memory_limit_bytes': {
    schema: z.record(z.string().min(1), z.number().int().positive()),
    default: {} as Record<string, number>,
    description:
      'Per component: the memory limit (bytes) the out-of-memory forecast runs against, e.g. {"worker": 2147483648}. A component not listed uses the host\'s total memory.',
  },
  'forecast.error_rate_objective': {
    schema: z.number().gt(0).lt(1),
    default: 0.01,
    description: 'Error-rate objective for the error-budget forecast: the share of requests (spans) allowed to fail over the window.',
  },
  'forecast.error_budget_window_days': {
    schema: z.number().positive().max(365),
    default: 30,
    description: 'Window of the error budget, in days.',
  },
  'forecast.latency_spike_factor': {
    schema: z.number().gt(1).max(100),
    default: 1.5,
    description: 'A latency spike is a p95 above this multiple of the current p95 (the latency forecast gives its probability).',
  },
  'forecast.connection_alert_probability': {
    schema: z.number().gt(0).lt(1),
    default: 0.5,
    description: 'A connection "may fail soon" when the probability of a drop within the horizon reaches this.',
  },
} as const;

export type SettingKey = keyof typeof SETTINGS;
export type SettingValue<K extends SettingKey> = z.infer<(typeof SETTINGS)[K]['schema']>;

export function isSettingKey(key: string): key is SettingKey {
  return Object.hasOwn(SETTINGS, key);
}

export function readSetting<K extends SettingKey>(store: Store, key: K): SettingValue<K> {
  const row = store.getSetting(key);
  const parsed = row ? SETTINGS[key].schema.safeParse(row.value) : null;
  return (parsed?.success ? parsed.data : SETTINGS[key].default) as SettingValue<K>;
}

/** Sets a known setting after validating it; `undefined` resets it to its default. */
export function writeSetting(store: Store, key: string, value: unknown, actor: string, reason?: string) {
  if (!isSettingKey(key)) throw new Error(`unknown setting "${key}"; known: ${Object.keys(SETTINGS).join(', ')}`);
  if (value === undefined) return store.changeSetting(key, undefined, actor, reason);
  const parsed = SETTINGS[key].schema.safeParse(value);
  if (!parsed.success) throw new Error(`${key}: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
  return store.changeSetting(key, parsed.data, actor, reason);
}

/** Applies the retention settings: what was pruned, and how much smaller the file is for it (`Store.prune`). */
export function pruneByRetention(store: Store, now: number = Date.now()) {
  const day = 86_400_000;
  return store.prune(now - readSetting(store, 'retention.raw_days') * day, now - readSetting(store, 'retention.rollup_days') * day);
}
