/**
 * Which shipped directive acts on what Kiwi finds, in one place: detection, root-cause analysis and
 * forecasting all answer with the same `suggested_action`, a directive and the inputs to run it
 * with, or null when no directive can act on it.
 *
 * A directive is suggested only where running it does something about the finding. Error spikes,
 * permission-denial bursts and a series that spiked have no remedy a directive can apply safely (a
 * person reverts the deploy or the policy that caused them), so they suggest nothing rather than
 * `triage_incident`, which only detects and explains again. A latency or error-budget forecast
 * suggests nothing either: `auto_heal_anomaly` acts on a latency spike that detection confirms, and
 * none has happened yet; nor does a latency spike on a caller, which its root cause traces to the
 * MCP server to heal.
 */
import type { Store } from './store/store.js';

export interface SuggestedAction {
  directive: RemedyDirective;
  /** Inputs to run it with, as given to `run_directive`. */
  inputs: Record<string, string | number>;
  /** What running it would do, and why it applies. */
  reason: string;
}

/** The shipped directives that remedy something. */
export type RemedyDirective = 'auto_heal_anomaly' | 'memory_leak_response' | 'flaky_connection_response' | 'proactive_scale';

export function healLatencySpike(component: string, anomalyId: string | null, why: string): SuggestedAction {
  return {
    directive: 'auto_heal_anomaly',
    inputs: { anomaly_type: 'latency_spike', component, ...(anomalyId ? { anomaly_id: anomalyId } : {}) },
    reason: `${why}: raises ${component}'s tool-call timeout and undoes it unless p95 latency recovers`,
  };
}

export function respondToMemoryLeak(component: string, anomalyId: string | null, why: string, hoursThreshold?: number): SuggestedAction {
  return {
    directive: 'memory_leak_response',
    inputs: { component, ...(hoursThreshold !== undefined ? { hours_threshold: hoursThreshold } : {}), ...(anomalyId ? { anomaly_id: anomalyId } : {}) },
    reason: `${why}: restarts ${component} gracefully when out of memory is forecast within ${hoursThreshold ?? 12} h`,
  };
}

export function respondToFlakyConnection(component: string, why: string): SuggestedAction {
  return {
    directive: 'flaky_connection_response',
    inputs: { component },
    reason: `${why}: opens ${component}'s circuit breaker when it dropped 3 or more times in the last hour`,
  };
}

export function scaleBeforeFailure(component: string, horizonHours: number, why: string): SuggestedAction {
  return {
    directive: 'proactive_scale',
    inputs: { component, horizon_hours: horizonHours },
    reason: `${why}: asks the platform for a larger memory limit when out of memory is forecast within ${horizonHours} h`,
  };
}

/**
 * Whether Kiwi sees a component's MCP connection: only an MCP server has a tool-call timeout to
 * raise. A caller slowed by one is healed on the server its root cause names.
 */
export function mcpServers(store: Pick<Store, 'latestEvent'>): (component: string) => boolean {
  return (component) => store.latestEvent('connection', component) !== null;
}

/**
 * The directive that acts on a stored anomaly of this type, with its inputs; null when none does,
 * and for an anomaly that is closed (resolved, or marked a false positive: acting on it would undo
 * a person's judgement).
 */
export function remedyForAnomaly(
  anomaly: { id: string | null; type: string; component: string; status?: string },
  isMcpServer: (component: string) => boolean,
): SuggestedAction | null {
  if (anomaly.status !== undefined && anomaly.status !== 'open' && anomaly.status !== 'acknowledged') return null;
  switch (anomaly.type) {
    case 'latency_spike':
      return isMcpServer(anomaly.component) ? healLatencySpike(anomaly.component, anomaly.id, 'a latency spike') : null;
    case 'memory_leak':
      return respondToMemoryLeak(anomaly.component, anomaly.id, 'a memory leak');
    case 'connection_instability':
      return respondToFlakyConnection(anomaly.component, 'an unstable connection');
    default:
      return null;
  }
}

/** One line: the call to make, and why. */
export function suggestionText(action: SuggestedAction): string {
  return `run_directive ${action.directive} ${JSON.stringify(action.inputs)} — ${action.reason}`;
}
