/** Incident names, the `--incidents` list syntax, and each incident's default start. */
import { parseDuration } from '../time.js';

export const INCIDENT_TYPES = ['latency_spike', 'error_spike', 'permission_spike', 'memory_leak', 'flaky_connection'] as const;
export type IncidentType = (typeof INCIDENT_TYPES)[number];

/** Which detection check must fire, on which component, for each injected incident. */
export const EXPECTED_ANOMALY: Readonly<Record<IncidentType, { type: string; component: string }>> = {
  latency_spike: { type: 'latency_spike', component: 'mcp-search' },
  error_spike: { type: 'error_spike', component: 'agent-coder' },
  permission_spike: { type: 'permission_spike', component: 'policy' },
  memory_leak: { type: 'memory_leak', component: 'worker' },
  flaky_connection: { type: 'connection_instability', component: 'mcp-github' },
};

export interface IncidentSpec {
  type: IncidentType;
  /** Start relative to the scenario end, in ms (negative). Absent: the type's default. */
  offsetMs?: number;
}

const MINUTE = 60_000;
const HOUR = 3_600_000;

/** Default start of each incident, relative to the scenario end. */
export const DEFAULT_OFFSETS_MS: Record<IncidentType, number> = {
  latency_spike: -45 * MINUTE,
  error_spike: -40 * MINUTE,
  permission_spike: -35 * MINUTE,
  memory_leak: -12 * HOUR,
  flaky_connection: -3 * HOUR,
};


function isIncidentType(name: string): name is IncidentType {
  return (INCIDENT_TYPES as readonly string[]).includes(name);
}

/** Parses an offset such as `-90m`, `-1.5h` or `-2d` into (negative, non-zero) milliseconds. */
export function parseOffset(text: string): number {
  const trimmed = text.trim();
  if (/^-\d+(?:\.\d+)?[smhd]$/.test(trimmed)) return -parseDuration(trimmed.slice(1));
  throw new Error(`offset ${JSON.stringify(text)} is not a negative duration such as -90m, -6h or -1d (units s, m, h, d)`);
}

/**
 * Parses `latency_spike,memory_leak@-6h`: comma-separated incident names, each optionally with
 * `@<offset>` (start relative to the scenario end). Empty text means no incidents.
 */
export function parseIncidentList(text: string): IncidentSpec[] {
  const specs: IncidentSpec[] = [];
  const seen = new Set<IncidentType>();
  for (const raw of text.split(',')) {
    const item = raw.trim();
    if (item === '') continue;
    const at = item.indexOf('@');
    const name = (at === -1 ? item : item.slice(0, at)).trim();
    if (!isIncidentType(name)) {
      throw new Error(`unknown incident ${JSON.stringify(item)}: expected one of ${INCIDENT_TYPES.join(', ')}, optionally with @-<offset>`);
    }
    if (seen.has(name)) throw new Error(`incident ${JSON.stringify(name)} is listed more than once`);
    seen.add(name);
    if (at === -1) {
      specs.push({ type: name });
      continue;
    }
    let offsetMs: number;
    try {
      offsetMs = parseOffset(item.slice(at + 1));
    } catch (err) {
      throw new Error(`bad incident ${JSON.stringify(item)}: ${(err as Error).message}`);
    }
    specs.push({ type: name, offsetMs });
  }
  return specs;
}
