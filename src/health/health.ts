/** Per-component health: the latest key figures of every component Kiwi knows, itself included. */
import { SELF_COMPONENT } from '../ingest/self.js';
import type { AnomalySummary, RequestStats, Store } from '../store/store.js';
import { iso } from '../time.js';

export interface ComponentHealth {
  component: string;
  /**
   * ok, or the worst of: warning (an open anomaly, more than 10% of requests failing, an MCP
   * connection down, or no data for longer than the window), critical (an open critical anomaly).
   */
  status: 'ok' | 'warning' | 'critical';
  /** Why the status is not ok, one short phrase each; empty when ok. */
  reasons: string[];
  last_seen: string;
  /** Milliseconds since the component last sent anything, measured from `at`. */
  silent_for_ms: number;
  /** Requests (spans) in the window ending at `last_seen`. */
  requests: RequestStats | null;
  error_events: number;
  permission_denials: number;
  memory_bytes: number | null;
  cpu_utilization: number | null;
  connection: { state: string; since: string } | null;
  open_anomalies: Pick<AnomalySummary, 'id' | 'type' | 'severity' | 'description'>[];
}

export interface SystemHealth {
  at: string;
  window_minutes: number;
  components: ComponentHealth[];
  /** Components not listed because of `limit`. */
  omitted: number;
}

export interface HealthOptions {
  component?: string;
  windowMinutes?: number;
  limit?: number;
  now?: number;
}

const MAX_ANOMALIES_PER_COMPONENT = 5;
const ERROR_RATE_WARNING = 0.1;

export function systemHealth(store: Store, options: HealthOptions = {}): SystemHealth {
  const now = options.now ?? Date.now();
  const windowMs = (options.windowMinutes ?? 15) * 60_000;
  const known = store.listComponents().filter((c) => options.component === undefined || c.name === options.component);
  // Kiwi first: an agent asking about the system usually wants to know the observer is well too.
  known.sort((a, b) => Number(b.name === SELF_COMPONENT) - Number(a.name === SELF_COMPONENT));
  const limit = options.limit ?? 50;
  const anomalies = store.openAnomalies(1000);

  const components = known.slice(0, limit).map((c): ComponentHealth => {
    const from = c.last_seen - windowMs;
    const to = c.last_seen + 1;
    const requests = store.requestStats(c.name, from, to);
    const errorEvents = store.countEvents({ kinds: ['error'], component: c.name, from, to });
    const denials = store.countEvents({
      kinds: ['permission'],
      component: c.name,
      from,
      to,
      attr: { key: 'decision', value: 'deny' },
    });
    const connection = store.latestEvent('connection', c.name);
    const connectionState = typeof connection?.attrs.state === 'string' ? connection.attrs.state : null;
    const own = anomalies.filter((a) => a.component === c.name);
    const silentForMs = Math.max(0, now - c.last_seen);
    const reasons: string[] = [];
    const critical = own.filter((a) => a.severity === 'critical');
    if (critical.length) reasons.push(`open critical anomaly: ${critical.map((a) => a.type).join(', ')}`);
    if (own.length > critical.length) reasons.push(`open anomaly: ${own.filter((a) => a.severity !== 'critical').map((a) => a.type).join(', ')}`);
    if (requests.error_rate > ERROR_RATE_WARNING) reasons.push(`${(requests.error_rate * 100).toFixed(1)}% of requests failed`);
    if (connectionState === 'disconnected') reasons.push('MCP connection down');
    // a component that stopped sending shows its last figures, which may all look fine
    if (silentForMs > windowMs) reasons.push(`no data for ${Math.round(silentForMs / 60_000)} min`);
    const status: ComponentHealth['status'] = critical.length ? 'critical' : reasons.length ? 'warning' : 'ok';
    return {
      component: c.name,
      status,
      reasons,
      last_seen: iso(c.last_seen),
      silent_for_ms: silentForMs,
      requests: requests.count > 0 ? requests : null,
      error_events: errorEvents,
      permission_denials: denials,
      memory_bytes: store.latestValue('process.memory.usage', c.name)?.value ?? null,
      cpu_utilization: store.latestValue('process.cpu.utilization', c.name)?.value ?? null,
      connection: connection && connectionState ? { state: connectionState, since: iso(connection.ts) } : null,
      open_anomalies: own
        .slice(0, MAX_ANOMALIES_PER_COMPONENT)
        .map(({ id, type, severity, description }) => ({ id, type, severity, description })),
    };
  });
  return {
    at: iso(now),
    window_minutes: windowMs / 60_000,
    components,
    omitted: Math.max(0, known.length - limit),
  };
}
