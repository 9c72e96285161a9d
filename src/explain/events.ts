/**
 * Signals from events: error signatures that are new or grew, permission denials, MCP
 * connection drops, and the changes (config, deploys, policy, directive runs, Kiwi settings)
 * made shortly before the onset.
 */
import { groupSignatures, messageTemplate } from '../detect/signatures.js';
import type { ExplainQueries } from '../store/explain.js';
import type { StoredEvent } from '../store/store.js';
import { countShiftZ } from '../stats/shift.js';
import { iso } from '../time.js';
import { rateSignal, totalsOf } from './calls.js';
import type { Grid } from './grid.js';
import { MOVED_Z, round3, strengthOf } from './strength.js';
import type { Signal, SignatureSummary, Symptom } from './types.js';

/** Event kinds that record a change someone or something made. */
export const CHANGE_KINDS = ['config', 'deploy', 'policy', 'directive', 'rollback', 'restart', 'release', 'feature_flag', 'migration'] as const;
/** How long before the symptom's start a change still counts as "just before". */
export const CHANGE_LOOKBACK_MS = 60 * 60_000;
/**
 * Changes up to this long after the symptom's onset are listed (a start read off a chart is rarely
 * exact), and ranking decides how much each counts.
 */
const CHANGE_GRACE_MS = 5 * 60_000;
const MAX_SIGNATURES_PER_COMPONENT = 3;
const MAX_ERROR_EVENTS = 50_000;
const MAX_CHANGES = 200;

/** A change (config, deploy, policy, directive run, settings change) near the symptom's onset. */
export type ChangeEvent = StoredEvent;

export interface EventAnalysis {
  signals: Signal[];
  signatures: SignatureSummary[];
  /** Disconnects per component in the window. */
  disconnects: Map<string, number>;
  /** Denial ratio per bucket for components that make permission decisions. */
  denialGrids: Map<string, Float64Array>;
  disconnectGrids: Map<string, Float64Array>;
  errorEventCount: number;
  truncated: boolean;
}

/** `ignored`: a component whose events are left out (Kiwi's own, unless the symptom is on Kiwi). */
export function eventSignals(queries: ExplainQueries, symptom: Symptom, grid: Grid, roots: Float64Array, ignored: string | null = null): EventAnalysis {
  const signals: Signal[] = [];
  const baselineMs = symptom.baseline_end - symptom.baseline_start;
  const windowMs = symptom.end - symptom.start;
  const rootTotals = totalsOf(grid, roots);
  // event counts are judged against traffic (threads) when there is some, else against time
  const exposure =
    rootTotals.baseline > 0 && rootTotals.window > 0 ? { baseline: rootTotals.baseline, window: rootTotals.window } : { baseline: baselineMs, window: windowMs };

  // ---- error signatures
  const baselineRead = queries.errorEvents(symptom.baseline_start, symptom.baseline_end, MAX_ERROR_EVENTS);
  const windowRead = queries.errorEvents(symptom.start, symptom.end, MAX_ERROR_EVENTS);
  const truncated = baselineRead.length >= MAX_ERROR_EVENTS || windowRead.length >= MAX_ERROR_EVENTS;
  const baselineErrors = baselineRead.filter((e) => e.component !== ignored);
  const windowErrors = windowRead.filter((e) => e.component !== ignored);
  const byComponent = (rows: typeof windowErrors) => {
    const map = new Map<string, { ts: number; message: string }[]>();
    for (const r of rows) {
      const list = map.get(r.component);
      if (list) list.push(r);
      else map.set(r.component, [r]);
    }
    return map;
  };
  const baselineByComponent = byComponent(baselineErrors);
  const templates = new Map<string, string>();
  const templateOf = (message: string): string => {
    let template = templates.get(message);
    if (template === undefined) {
      template = messageTemplate(message);
      templates.set(message, template);
    }
    return template;
  };
  const signatures: SignatureSummary[] = [];
  for (const [component, rows] of byComponent(windowErrors)) {
    const before = new Map(groupSignatures(baselineByComponent.get(component) ?? []).map((g) => [g.template, g.count]));
    const grown = groupSignatures(rows)
      .map((g) => ({ g, before: before.get(g.template) ?? 0, z: countShiftZ(g.count, exposure.window, before.get(g.template) ?? 0, exposure.baseline) }))
      .filter((x) => x.z >= MOVED_Z && x.g.count >= 2)
      .sort((a, b) => b.z - a.z)
      .slice(0, MAX_SIGNATURES_PER_COMPONENT);
    for (const { g, before: baseCount, z } of grown) {
      const isNew = baseCount === 0;
      signatures.push({
        component,
        template: g.template,
        example: g.example,
        baseline_count: baseCount,
        window_count: g.count,
        first_seen: iso(g.first_ts),
        is_new: isNew,
      });
      const occurrences = new Float64Array(grid.size);
      for (const r of [...rows, ...(baselineByComponent.get(component) ?? [])]) {
        const b = grid.index(r.ts);
        if (b >= 0 && templateOf(r.message) === g.template) occurrences[b]!++;
      }
      signals.push({
        component,
        kind: 'signature',
        name: `error: ${g.template}`,
        strength: strengthOf(z),
        z,
        direction: 'up',
        baseline: baseCount,
        current: g.count,
        unit: null,
        onset: g.first_ts,
        detail: isNew
          ? `new error signature, ${g.count} times in the window, never in the baseline: ${g.example}`
          : `error signature grew from ${baseCount} in the baseline to ${g.count} in the window: ${g.example}`,
        grid: occurrences,
      });
    }
  }

  // ---- permission denials, per component that decides
  const denialGrids = new Map<string, Float64Array>();
  const decisions = new Map<string, { decided: Float64Array; denied: Float64Array }>();
  for (const [from, to] of [
    [symptom.baseline_start, symptom.baseline_end],
    [symptom.start, symptom.end],
  ] as const) {
    for (const row of queries.permissionBuckets(from, to, grid.bucketMs)) {
      if (row.component === ignored) continue;
      const b = grid.index(row.bucket);
      if (b < 0) continue;
      let d = decisions.get(row.component);
      if (!d) {
        d = { decided: new Float64Array(grid.size), denied: new Float64Array(grid.size) };
        decisions.set(row.component, d);
      }
      d.decided[b]! += row.decisions;
      d.denied[b]! += row.denied;
    }
  }
  for (const [component, d] of decisions) {
    const signal = rateSignal(grid, {
      component,
      kind: 'permission',
      name: 'permission denials',
      hits: d.denied,
      trials: d.decided,
      detail: (r) =>
        `denied ${r.hits.window} of ${r.trials.window} decisions (${round3(r.windowRate * 100)}%) against ${round3(r.baselineRate * 100)}% in the baseline`,
    });
    denialGrids.set(component, signal.grid!);
    if ((signal.current ?? 0) > 0) signals.push(signal); // no denial in the window: nothing to report
  }

  // ---- MCP connection drops
  const disconnects = new Map<string, number>();
  const disconnectGrids = new Map<string, Float64Array>();
  const counts = new Map<string, { baseline: number; window: number; first: number | null; grid: Float64Array }>();
  for (const e of [
    ...queries.eventsOfKinds(['connection'], symptom.baseline_start, symptom.baseline_end, MAX_ERROR_EVENTS),
    ...queries.eventsOfKinds(['connection'], symptom.start, symptom.end, MAX_ERROR_EVENTS),
  ]) {
    if (!isDisconnect(e) || e.component === ignored) continue;
    const b = grid.index(e.ts);
    if (b < 0) continue;
    let c = counts.get(e.component);
    if (!c) {
      c = { baseline: 0, window: 0, first: null, grid: new Float64Array(grid.size) };
      counts.set(e.component, c);
    }
    c.grid[b]!++;
    if (grid.isWindow(b)) {
      c.window++;
      if (c.first === null) c.first = e.ts;
    } else c.baseline++;
  }
  for (const [component, c] of counts) {
    disconnectGrids.set(component, c.grid);
    if (c.window === 0) continue;
    disconnects.set(component, c.window);
    const z = countShiftZ(c.window, windowMs, c.baseline, baselineMs);
    signals.push({
      component,
      kind: 'connection',
      name: 'disconnects',
      strength: z > 0 ? strengthOf(z) : 0,
      z,
      direction: 'up',
      baseline: c.baseline,
      current: c.window,
      unit: null,
      onset: c.first,
      detail: `${c.window} disconnects in the window against ${c.baseline} in the baseline (${round3(baselineMs / 3_600_000)} h)`,
      grid: c.grid,
    });
  }

  return {
    signals,
    signatures,
    disconnects,
    denialGrids,
    disconnectGrids,
    errorEventCount: baselineErrors.length + windowErrors.length,
    truncated,
  };
}

export function isDisconnect(e: StoredEvent): boolean {
  const state = e.attrs.state;
  return state === 'disconnected' || (state === undefined && /disconnect/i.test(e.message));
}

/**
 * Changes from an hour before the symptom's start to a few minutes after its onset (the start, or
 * later when the symptom's own signal began moving later), newest first. Those of the `ignored`
 * component are left out (Kiwi's: its own settings and untargeted directive runs, which change
 * only Kiwi, unless the symptom is on Kiwi).
 */
export function changesBefore(queries: ExplainQueries, symptom: Symptom, onset: number = symptom.start, ignored: string | null = null): ChangeEvent[] {
  const from = symptom.start - CHANGE_LOOKBACK_MS;
  const to = Math.min(symptom.end, Math.max(symptom.start, onset) + CHANGE_GRACE_MS);
  const events: StoredEvent[] = queries.eventsOfKinds(CHANGE_KINDS, from, to, MAX_CHANGES);
  for (const run of queries.directiveRuns(from, to, MAX_CHANGES)) {
    const target = run.inputs.component;
    events.push({
      id: -1,
      ts: run.created_at,
      kind: 'directive',
      component: typeof target === 'string' ? target : 'kiwi',
      level: 'info',
      message: `directive ${run.directive} run ${run.id} (${run.status})${run.requested_by ? ` requested by ${run.requested_by}` : ''}`,
      attrs: { run_id: run.id, directive: run.directive, status: run.status },
    });
  }
  for (const change of queries.settingChanges(from, to, MAX_CHANGES)) {
    for (const component of componentsOfSetting(change.old_value, change.new_value)) {
      events.push({
        id: -1,
        ts: change.ts,
        kind: 'config',
        component,
        level: 'info',
        message: `kiwi setting ${change.key} changed by ${change.actor}${change.reason ? ` (${change.reason})` : ''}`,
        attrs: { key: change.key, old_value: change.old_value, new_value: change.new_value, actor: change.actor },
      });
    }
  }
  return events.filter((e) => e.component !== ignored).sort((a, b) => b.ts - a.ts);
}

/** A per-component setting (a record) names the components whose entry changed; any other names Kiwi. */
function componentsOfSetting(before: unknown, after: unknown): string[] {
  const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isRecord(before) && !isRecord(after)) return ['kiwi'];
  const a = isRecord(before) ? before : {};
  const b = isRecord(after) ? after : {};
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  const changed = [...keys].filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
  return changed.length ? changed : ['kiwi'];
}
