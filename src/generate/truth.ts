/** The ground truth of a scenario: what was injected, when, and what caused it. */
import type { IncidentType } from './incidents.js';
import {
  EFFECT_DELAY_MS,
  buildPlan,
  workerBaseline,
  type PlannedChange,
  type ScenarioOptions,
} from './plan.js';
import {
  AGENT_PROFILES,
  AGENTS,
  BASE_DENY_RATE,
  COMPONENTS,
  METRIC_CPU,
  METRIC_MEMORY,
  METRIC_TOKENS,
  NEW_SIGNATURE,
  NEW_SIGNATURE_TEMPLATE,
  SERVER_LATENCY,
  TOOLS,
  WORKER,
  WORKER_HEAP,
  WORKER_MEMORY_LIMIT_BYTES,
  type ComponentRole,
} from './topology.js';

export interface TruthEvent {
  kind: string;
  component: string;
  ts: string;
  ts_ms: number;
  message: string;
  attrs: Record<string, string | number>;
}

export type RootCauseKind = 'config' | 'deploy' | 'policy' | 'leak' | 'connection';

interface IncidentBase<T extends IncidentType, D> {
  type: T;
  start: string;
  start_ms: number;
  /** Every incident runs to the end of the scenario, so none has an end yet. */
  ongoing: true;
  root_cause: { component: string; kind: RootCauseKind; event?: TruthEvent };
  affected_components: string[];
  details: D;
}

export interface EffectDetails {
  /** When the effect starts (cause + EFFECT_DELAY_MS). */
  effect_start: string;
  effect_start_ms: number;
}

export type IncidentTruth =
  | IncidentBase<
      'latency_spike',
      EffectDetails & {
        config_key: string;
        old_value: string | number;
        new_value: string | number;
        slowdown_factor: number;
        tools: string[];
        baseline_median_ms: Record<string, number>;
      }
    >
  | IncidentBase<
      'error_spike',
      EffectDetails & {
        previous_version: string | number;
        version: string | number;
        error_type: string;
        signature_template: string;
        new_error_probability: number;
      }
    >
  | IncidentBase<
      'permission_spike',
      EffectDetails & {
        policy_key: string;
        old_value: string | number;
        new_value: string | number;
        principal: string;
        tool: string;
        permission: string;
        deny_probability: number;
        baseline_deny_rate: number;
      }
    >
  | IncidentBase<
      'memory_leak',
      {
        metric: string;
        growth_bytes_per_hour: number;
        memory_limit_bytes: number;
        /** Post-GC baseline when the leak starts (and after every OOM restart). */
        baseline_bytes_at_start: number;
        baseline_bytes_at_end: number;
        /** When the linear post-GC baseline reaches the limit (first crossing at or after the end). */
        oom_at: string;
        oom_at_ms: number;
        hours_to_oom_after_end: number;
        /** The sawtooth on top of the baseline: heap growth above it that triggers a collection. */
        gc_headroom_bytes: { min: number; max: number };
        /** Crossings that happened inside the scenario: the worker was OOM-killed and restarted. */
        oom_kills: Array<{ at: string; at_ms: number }>;
      }
    >
  | IncidentBase<
      'flaky_connection',
      {
        error_type: string;
        disconnects: number;
        outages: Array<{ start: string; start_ms: number; end: string; end_ms: number; duration_ms: number; reason: string }>;
      }
    >;

export interface ScenarioTruth {
  generator: 'kiwi generate';
  seed: number;
  days: number;
  step_ms: number;
  /** The simulated users' UTC offset: their day peaks at 16:00 local time. */
  utc_offset_hours: number;
  start: string;
  start_ms: number;
  end: string;
  end_ms: number;
  components: Array<{ name: string; role: ComponentRole }>;
  metric_series: Array<{ name: string; component: string; labels: Record<string, string> }>;
  worker_memory_limit_bytes: number;
  incidents: IncidentTruth[];
  /** Harmless config changes and deploys (they cause nothing; distractors for root-cause work). */
  background_changes: TruthEvent[];
}

const iso = (ms: number): string => new Date(ms).toISOString();

function truthEvent(c: PlannedChange): TruthEvent {
  return { kind: c.kind, component: c.component, ts: iso(c.ts), ts_ms: c.ts, message: c.message, attrs: { ...c.attrs } };
}

function usersOf(server: string): string[] {
  return AGENT_PROFILES.filter((a) => a.toolWeights.some((w, i) => w > 0 && TOOLS[i]?.server === server)).map((a) => a.name);
}

export function metricSeries(): ScenarioTruth['metric_series'] {
  const series: ScenarioTruth['metric_series'] = [];
  for (const { name } of COMPONENTS) {
    series.push({ name: METRIC_MEMORY, component: name, labels: {} });
    series.push({ name: METRIC_CPU, component: name, labels: {} });
  }
  for (const agent of AGENTS) {
    series.push({ name: METRIC_TOKENS, component: agent, labels: { 'gen_ai.token.type': 'input' } });
    series.push({ name: METRIC_TOKENS, component: agent, labels: { 'gen_ai.token.type': 'output' } });
  }
  return series;
}

export function scenarioTruth(options: ScenarioOptions): ScenarioTruth {
  const plan = buildPlan(options);
  const effect = (startMs: number): EffectDetails => ({
    effect_start: iso(startMs + EFFECT_DELAY_MS),
    effect_start_ms: startMs + EFFECT_DELAY_MS,
  });
  const incidents: IncidentTruth[] = [];
  for (const { type, startMs } of plan.incidents) {
    const base = { start: iso(startMs), start_ms: startMs, ongoing: true as const };
    switch (type) {
      case 'latency_spike': {
        const change = plan.latency?.change;
        if (!change) break;
        const tools = TOOLS.filter((t) => t.server === 'mcp-search');
        incidents.push({
          type,
          ...base,
          root_cause: { component: 'mcp-search', kind: 'config', event: truthEvent(change) },
          affected_components: ['mcp-search', ...usersOf('mcp-search')],
          details: {
            ...effect(startMs),
            config_key: String(change.attrs.key),
            old_value: change.attrs.old_value ?? '',
            new_value: change.attrs.new_value ?? '',
            slowdown_factor: plan.latency?.factor ?? 1,
            tools: tools.map((t) => t.name),
            baseline_median_ms: Object.fromEntries(tools.map((t) => [t.name, SERVER_LATENCY['mcp-search'].medianMs * t.latencyFactor])),
          },
        });
        break;
      }
      case 'error_spike': {
        const change = plan.errorSpike?.change;
        if (!change) break;
        incidents.push({
          type,
          ...base,
          root_cause: { component: 'agent-coder', kind: 'deploy', event: truthEvent(change) },
          affected_components: ['agent-coder'],
          details: {
            ...effect(startMs),
            previous_version: change.attrs.previous_version ?? '',
            version: change.attrs.version ?? '',
            error_type: NEW_SIGNATURE.errorType,
            signature_template: NEW_SIGNATURE_TEMPLATE,
            new_error_probability: plan.errorSpike?.probability ?? 0,
          },
        });
        break;
      }
      case 'permission_spike': {
        const p = plan.permission;
        if (!p) break;
        incidents.push({
          type,
          ...base,
          root_cause: { component: 'policy', kind: 'policy', event: truthEvent(p.change) },
          affected_components: ['policy', p.principal],
          details: {
            ...effect(startMs),
            policy_key: String(p.change.attrs.key),
            old_value: p.change.attrs.old_value ?? '',
            new_value: p.change.attrs.new_value ?? '',
            principal: p.principal,
            tool: p.tool,
            permission: p.permission,
            deny_probability: p.probability,
            baseline_deny_rate: BASE_DENY_RATE,
          },
        });
        break;
      }
      case 'memory_leak': {
        const leak = plan.leak;
        if (!leak) break;
        incidents.push({
          type,
          ...base,
          root_cause: { component: WORKER, kind: 'leak' },
          affected_components: [WORKER],
          details: {
            metric: METRIC_MEMORY,
            growth_bytes_per_hour: leak.rateBytesPerHour,
            memory_limit_bytes: WORKER_MEMORY_LIMIT_BYTES,
            baseline_bytes_at_start: plan.workerBaselineBytes,
            baseline_bytes_at_end: Math.round(workerBaseline(plan, plan.endMs)),
            oom_at: iso(leak.oomAtMs),
            oom_at_ms: leak.oomAtMs,
            hours_to_oom_after_end: Math.round(((leak.oomAtMs - plan.endMs) / 3_600_000) * 1000) / 1000,
            gc_headroom_bytes: { min: WORKER_HEAP.gcHeadroomMinBytes, max: WORKER_HEAP.gcHeadroomMaxBytes },
            oom_kills: leak.killsMs.map((ms) => ({ at: iso(ms), at_ms: ms })),
          },
        });
        break;
      }
      case 'flaky_connection': {
        const outages = plan.flaky?.outages ?? [];
        const first = outages[0];
        incidents.push({
          type,
          ...base,
          root_cause: {
            component: 'mcp-github',
            kind: 'connection',
            ...(first && {
              event: {
                kind: 'connection',
                component: 'mcp-github',
                ts: iso(first.startMs),
                ts_ms: first.startMs,
                message: `mcp-github disconnected: ${first.reason}`,
                attrs: { state: 'disconnected', reason: first.reason },
              },
            }),
          },
          affected_components: ['mcp-github', ...usersOf('mcp-github')],
          details: {
            error_type: 'connection_closed',
            disconnects: outages.length,
            outages: outages.map((o) => ({
              start: iso(o.startMs),
              start_ms: o.startMs,
              end: iso(o.endMs),
              end_ms: o.endMs,
              duration_ms: o.endMs - o.startMs,
              reason: o.reason,
            })),
          },
        });
        break;
      }
    }
  }
  return {
    generator: 'kiwi generate',
    seed: plan.seed,
    days: plan.days,
    step_ms: plan.stepMs,
    utc_offset_hours: plan.utcOffsetHours,
    start: iso(plan.startMs),
    start_ms: plan.startMs,
    end: iso(plan.endMs),
    end_ms: plan.endMs,
    components: COMPONENTS.map((c) => ({ ...c })),
    metric_series: metricSeries(),
    worker_memory_limit_bytes: WORKER_MEMORY_LIMIT_BYTES,
    incidents,
    background_changes: plan.changes.filter((c) => c.incident === null).map(truthEvent),
  };
}
