/**
 * Turns scenario options into a plan: the time range, every scheduled change event (background
 * and incident), the incidents' resolved parameters. Both the record generator and the ground
 * truth read the plan, so they cannot disagree.
 */
import { DEFAULT_OFFSETS_MS, INCIDENT_TYPES, type IncidentSpec, type IncidentType } from './incidents.js';
import { Rng } from './rng.js';
import {
  COMPONENTS,
  CONFIG_ACTORS,
  DEFAULT_STEP_MS,
  HARMLESS_CONFIG,
  INITIAL_VERSIONS,
  MIB_BYTES,
  WORKER_HEAP,
  WORKER_MEMORY_LIMIT_BYTES,
} from './topology.js';

export interface ScenarioOptions {
  days: number;
  seed: number;
  /** Epoch ms; floored to the step. */
  end: number;
  stepMs?: number;
  incidents?: IncidentSpec[];
  /** The simulated users' UTC offset in hours: their day peaks at 16:00 and is quietest at 04:00 local time (default 0). */
  utcOffsetHours?: number;
}

/** The UTC offset (whole hours, -12..11) that makes `now` fall at `localHour` for the simulated users. */
export function offsetPlacing(now: number, localHour: number): number {
  const hour = new Date(now).getUTCHours();
  return ((localHour - hour + 36) % 24) - 12;
}

export type ChangeAttrs = Record<string, string | number>;

export interface PlannedChange {
  ts: number;
  kind: 'config' | 'deploy';
  component: string;
  message: string;
  attrs: ChangeAttrs;
  /** The incident this change causes, or null for a harmless background change. */
  incident: IncidentType | null;
}

export interface Outage {
  startMs: number;
  endMs: number;
  reason: string;
}

export interface Plan {
  seed: number;
  utcOffsetHours: number;
  days: number;
  stepMs: number;
  startMs: number;
  endMs: number;
  /** Incidents in the order given, with resolved starts. */
  incidents: Array<{ type: IncidentType; startMs: number }>;
  latency?: { startMs: number; effectMs: number; factor: number; change: PlannedChange };
  errorSpike?: { startMs: number; effectMs: number; probability: number; change: PlannedChange };
  permission?: {
    startMs: number;
    effectMs: number;
    principal: string;
    tool: string;
    permission: string;
    probability: number;
    change: PlannedChange;
  };
  leak?: {
    startMs: number;
    rateBytesPerHour: number;
    /** Time for the post-GC baseline to climb from its start value to the limit. */
    cycleMs: number;
    /** OOM kills inside the scenario (each restarts the worker at its baseline). */
    killsMs: number[];
    /** The first crossing at or after the end. */
    oomAtMs: number;
  };
  flaky?: { startMs: number; outages: Outage[] };
  workerBaselineBytes: number;
  /** Every change event, background and incident, in time order. */
  changes: PlannedChange[];
}

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

/** The delay between an incident's cause (config change, deploy, policy change) and its effect. */
export const EFFECT_DELAY_MS = MINUTE;
export const LATENCY_FACTOR = 5;
export const ERROR_SPIKE_PROBABILITY = 0.3;
export const PERMISSION_SPIKE_PROBABILITY = 0.85;
export const LEAK_RATE_MIB_PER_HOUR = { min: 40, max: 80 } as const;

/** Background changes avoid this window around every incident start, so none masquerades as a cause. */
const QUIET_BEFORE_INCIDENT_MS = 2 * HOUR;
const QUIET_AFTER_INCIDENT_MS = HOUR;

export function buildPlan(options: ScenarioOptions): Plan {
  const { days, seed } = options;
  const stepMs = options.stepMs ?? DEFAULT_STEP_MS;
  const utcOffsetHours = options.utcOffsetHours ?? 0;
  if (!Number.isSafeInteger(seed)) throw new Error(`seed must be an integer (got ${String(seed)})`);
  if (!(utcOffsetHours >= -12 && utcOffsetHours <= 14)) throw new Error(`utc offset must be between -12 and 14 hours (got ${String(utcOffsetHours)})`);
  if (!Number.isFinite(days) || days <= 0 || days > 366) throw new Error(`days must be a number in (0, 366] (got ${String(days)})`);
  if (!Number.isInteger(stepMs) || stepMs < 1000 || stepMs > HOUR) {
    throw new Error(`step must be a whole number of ms between 1000 and 3600000 (got ${String(stepMs)})`);
  }
  if (!Number.isFinite(options.end)) throw new Error('end must be an epoch ms number');
  const endMs = Math.floor(options.end / stepMs) * stepMs;
  const steps = Math.max(1, Math.round((days * DAY) / stepMs));
  const startMs = endMs - steps * stepMs;
  if (startMs < Date.UTC(1971, 0, 1)) throw new Error('end must be an epoch ms timestamp well after 1970');

  const incidents: Plan['incidents'] = [];
  for (const spec of options.incidents ?? []) {
    if (!(INCIDENT_TYPES as readonly string[]).includes(spec.type)) throw new Error(`unknown incident ${JSON.stringify(spec.type)}`);
    if (incidents.some((i) => i.type === spec.type)) throw new Error(`incident ${spec.type} is listed more than once`);
    const offset = spec.offsetMs ?? DEFAULT_OFFSETS_MS[spec.type];
    const start = endMs + Math.round(offset);
    const label = `${spec.type}@${formatOffset(offset)}`;
    if (offset > -MINUTE) throw new Error(`incident ${label} must start at least one minute before the end`);
    if (start < startMs) throw new Error(`incident ${label} would start before the scenario start (${days} days before the end)`);
    incidents.push({ type: spec.type, startMs: start });
  }
  const startOf = (type: IncidentType): number | undefined => incidents.find((i) => i.type === type)?.startMs;

  const workerBaselineBytes = Math.round(
    Rng.derive(seed, 'worker-baseline').range(WORKER_HEAP.baselineMinBytes, WORKER_HEAP.baselineMaxBytes),
  );

  const changes = scheduleChanges(seed, startMs, endMs, incidents);
  const plan: Plan = { seed, utcOffsetHours, days, stepMs, startMs, endMs, incidents, workerBaselineBytes, changes };

  const find = (type: IncidentType): PlannedChange => {
    const change = changes.find((c) => c.incident === type);
    if (!change) throw new Error(`internal: no change event planned for ${type}`);
    return change;
  };
  const latencyStart = startOf('latency_spike');
  if (latencyStart !== undefined) {
    plan.latency = { startMs: latencyStart, effectMs: latencyStart + EFFECT_DELAY_MS, factor: LATENCY_FACTOR, change: find('latency_spike') };
  }
  const errorStart = startOf('error_spike');
  if (errorStart !== undefined) {
    plan.errorSpike = {
      startMs: errorStart,
      effectMs: errorStart + EFFECT_DELAY_MS,
      probability: ERROR_SPIKE_PROBABILITY,
      change: find('error_spike'),
    };
  }
  const permissionStart = startOf('permission_spike');
  if (permissionStart !== undefined) {
    plan.permission = {
      startMs: permissionStart,
      effectMs: permissionStart + EFFECT_DELAY_MS,
      principal: 'agent-reviewer',
      tool: 'create_pull_request',
      permission: 'write:repo',
      probability: PERMISSION_SPIKE_PROBABILITY,
      change: find('permission_spike'),
    };
  }
  const leakStart = startOf('memory_leak');
  if (leakStart !== undefined) {
    const rng = Rng.derive(seed, 'leak');
    const rateBytesPerHour = Math.round(rng.range(LEAK_RATE_MIB_PER_HOUR.min, LEAK_RATE_MIB_PER_HOUR.max) * MIB_BYTES);
    const cycleMs = ((WORKER_MEMORY_LIMIT_BYTES - workerBaselineBytes) / rateBytesPerHour) * HOUR;
    const crossings = Math.max(1, Math.ceil((endMs - leakStart) / cycleMs));
    const killsMs: number[] = [];
    for (let k = 1; k < crossings; k++) killsMs.push(Math.round(leakStart + k * cycleMs));
    plan.leak = { startMs: leakStart, rateBytesPerHour, cycleMs, killsMs, oomAtMs: Math.round(leakStart + crossings * cycleMs) };
  }
  const flakyStart = startOf('flaky_connection');
  if (flakyStart !== undefined) plan.flaky = { startMs: flakyStart, outages: scheduleOutages(seed, flakyStart, endMs) };
  return plan;
}

export function formatOffset(ms: number): string {
  const abs = Math.abs(ms);
  const sign = ms < 0 ? '-' : '';
  for (const [unit, size] of [['d', DAY], ['h', HOUR], ['m', MINUTE]] as const) {
    if (abs % size === 0) return `${sign}${abs / size}${unit}`;
  }
  return `${sign}${abs / 1000}s`;
}

/** Post-GC baseline of the worker at `ts` (the leak resets to the start value at each OOM kill). */
export function workerBaseline(plan: Plan, ts: number): number {
  const leak = plan.leak;
  if (!leak || ts < leak.startMs) return plan.workerBaselineBytes;
  const sinceRestart = (ts - leak.startMs) % leak.cycleMs;
  return plan.workerBaselineBytes + (leak.rateBytesPerHour * sinceRestart) / HOUR;
}

function scheduleOutages(seed: number, startMs: number, endMs: number): Outage[] {
  const rng = Rng.derive(seed, 'flaky');
  const reasons = ['ECONNRESET', 'heartbeat timeout', 'EOF from server', 'EPIPE'] as const;
  const outages: Outage[] = [];
  let t = startMs;
  while (t < endMs) {
    const duration = rng.int(10_000, 60_000);
    outages.push({ startMs: t, endMs: t + duration, reason: rng.pick(reasons) });
    t += duration + rng.int(5 * MINUTE, 20 * MINUTE);
  }
  return outages;
}

interface ChangeIntent {
  ts: number;
  kind: 'config' | 'deploy';
  component: string;
  actor: string;
  /** For config: the key, and the new value (undefined: flip a harmless two-valued setting). */
  key?: string;
  newValue?: string | number;
  /** For deploy: bump the minor (incident) or the patch (background) version. */
  bump?: 'minor' | 'patch';
  incident: IncidentType | null;
}

const INCIDENT_CONFIG_DEFAULTS: Record<string, string | number> = {
  'mcp-search/max_concurrency': 16,
  'policy/policy.version': 'v41',
};

function scheduleChanges(seed: number, startMs: number, endMs: number, incidents: Plan['incidents']): PlannedChange[] {
  const intents: ChangeIntent[] = [];
  const rng = Rng.derive(seed, 'changes');
  for (let day = Math.floor(startMs / DAY) * DAY; day < endMs; day += DAY) {
    const count = rng.int(1, 3);
    for (let i = 0; i < count; i++) {
      // Every draw is taken whether or not the change is kept, so incidents do not reshuffle them.
      const ts = day + Math.round(rng.range(7 * HOUR, 20 * HOUR) / 1000) * 1000;
      const component = rng.pick(COMPONENTS);
      const deploy = rng.chance(0.5);
      const settings = HARMLESS_CONFIG[component.role];
      const setting = settings[rng.int(0, settings.length - 1)];
      const actor = rng.pick(CONFIG_ACTORS);
      if (ts < startMs || ts >= endMs) continue;
      if (incidents.some((inc) => ts >= inc.startMs - QUIET_BEFORE_INCIDENT_MS && ts <= inc.startMs + QUIET_AFTER_INCIDENT_MS)) continue;
      if (deploy || !setting) intents.push({ ts, kind: 'deploy', component: component.name, actor: 'ci-deploy', bump: 'patch', incident: null });
      else intents.push({ ts, kind: 'config', component: component.name, actor, key: setting.key, incident: null });
    }
  }
  for (const inc of incidents) {
    if (inc.type === 'latency_spike') {
      intents.push({ ts: inc.startMs, kind: 'config', component: 'mcp-search', actor: 'ops-bot', key: 'max_concurrency', newValue: 2, incident: inc.type });
    } else if (inc.type === 'error_spike') {
      intents.push({ ts: inc.startMs, kind: 'deploy', component: 'agent-coder', actor: 'ci-deploy', bump: 'minor', incident: inc.type });
    } else if (inc.type === 'permission_spike') {
      intents.push({ ts: inc.startMs, kind: 'config', component: 'policy', actor: 'policy-sync', key: 'policy.version', newValue: 'v42', incident: inc.type });
    }
  }
  intents.sort((a, b) => a.ts - b.ts);

  const versions = new Map<string, string>(Object.entries(INITIAL_VERSIONS));
  const settings = new Map<string, string | number>(Object.entries(INCIDENT_CONFIG_DEFAULTS));
  const changes: PlannedChange[] = [];
  for (const intent of intents) {
    if (intent.kind === 'deploy') {
      const previous = versions.get(intent.component) ?? '1.0.0';
      const version = bumpVersion(previous, intent.bump ?? 'patch');
      versions.set(intent.component, version);
      changes.push({
        ts: intent.ts,
        kind: 'deploy',
        component: intent.component,
        message: `deployed ${intent.component} ${version} (was ${previous})`,
        attrs: { version, previous_version: previous, actor: intent.actor },
        incident: intent.incident,
      });
      continue;
    }
    const key = intent.key ?? 'log_level';
    const id = `${intent.component}/${key}`;
    const role = COMPONENTS.find((c) => c.name === intent.component)?.role ?? 'agent';
    const pair = HARMLESS_CONFIG[role].find((s) => s.key === key)?.values;
    const oldValue = settings.get(id) ?? pair?.[0] ?? '';
    const newValue = intent.newValue ?? (pair ? (oldValue === pair[0] ? pair[1] : pair[0]) : oldValue);
    settings.set(id, newValue);
    changes.push({
      ts: intent.ts,
      kind: 'config',
      component: intent.component,
      message: `config ${key} changed from ${oldValue} to ${newValue} by ${intent.actor}`,
      attrs: { key, old_value: oldValue, new_value: newValue, actor: intent.actor },
      incident: intent.incident,
    });
  }
  return changes;
}

function bumpVersion(version: string, bump: 'minor' | 'patch'): string {
  const [major = 1, minor = 0, patch = 0] = version.split('.').map(Number);
  return bump === 'minor' ? `${major}.${minor + 1}.0` : `${major}.${minor}.${patch + 1}`;
}
