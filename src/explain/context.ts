/**
 * The context an investigator reads next to the ranking — recent warnings and errors, the
 * affected threads in detail, MCP connection status, the changes and new error signatures —
 * bounded in size and with secrets redacted.
 */
import type { ExplainQueries } from '../store/explain.js';
import type { Store, StoredEvent } from '../store/store.js';
import { iso } from '../time.js';
import type { RootSpan } from './calls.js';
import type { ChangeEvent, EventAnalysis } from './events.js';
import { isDisconnect } from './events.js';
import { redact } from './redact.js';
import type { AnalysisContext, Candidate, ContextEvent, Symptom, ThreadSummary } from './types.js';

export const CONTEXT_LIMITS = {
  logs: 15,
  logsPerComponent: 5,
  threads: 5,
  callsPerThread: 12,
  eventsPerThread: 8,
  changes: 10,
  signatures: 10,
  messageChars: 300,
  attrsChars: 400,
  componentsForLogs: 3,
} as const;

/** Warnings shortly before the start count as context too. */
const LOG_LEAD_MS = 5 * 60_000;

function cut(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

export function contextEvent(e: StoredEvent): ContextEvent {
  const attrs = redact(e.attrs);
  const json = JSON.stringify(attrs);
  return {
    at: iso(e.ts),
    kind: e.kind,
    component: e.component,
    level: e.level,
    message: cut(redact(e.message), CONTEXT_LIMITS.messageChars),
    attrs: json.length <= CONTEXT_LIMITS.attrsChars ? attrs : { _truncated: cut(json, CONTEXT_LIMITS.attrsChars) },
  };
}

export function buildContext(
  store: Store,
  queries: ExplainQueries,
  symptom: Symptom,
  candidates: Candidate[],
  windowRoots: RootSpan[],
  events: EventAnalysis,
  changes: ChangeEvent[],
): AnalysisContext {
  const focus = [...new Set([...candidates.slice(0, CONTEXT_LIMITS.componentsForLogs).map((c) => c.component), ...(symptom.component ? [symptom.component] : [])])];

  const logs: StoredEvent[] = [];
  for (const component of focus) {
    logs.push(
      ...store.searchEvents({ component, min_level: 'warn', from: symptom.start - LOG_LEAD_MS, to: symptom.end }, CONTEXT_LIMITS.logsPerComponent)
        .events,
    );
  }
  const recentLogs = logs
    .sort((a, b) => b.ts - a.ts)
    .slice(0, CONTEXT_LIMITS.logs)
    .map(contextEvent);

  return {
    recent_logs: recentLogs,
    affected_threads: affectedThreads(queries, focus, windowRoots),
    mcp_status: mcpStatus(queries, symptom, events),
    changes: changes.slice(0, CONTEXT_LIMITS.changes).map(contextEvent),
    signatures: [...events.signatures]
      .sort((a, b) => Number(b.is_new) - Number(a.is_new) || b.window_count - a.window_count)
      .slice(0, CONTEXT_LIMITS.signatures)
      .map((s) => ({ ...s, template: cut(redact(s.template), CONTEXT_LIMITS.messageChars), example: cut(redact(s.example), CONTEXT_LIMITS.messageChars) })),
  };
}

/**
 * Threads that show the problem: failed threads whose failure started at a focus component
 * first (newest first), then the slowest threads of the window.
 */
function affectedThreads(queries: ExplainQueries, focus: string[], windowRoots: RootSpan[]): ThreadSummary[] {
  const chosen: RootSpan[] = [];
  const failed = windowRoots.filter((r) => r.status === 'error' && r.origin !== null && focus.includes(r.origin)).sort((a, b) => b.start - a.start);
  for (const r of failed) {
    if (chosen.length >= Math.ceil(CONTEXT_LIMITS.threads / 2)) break;
    chosen.push(r);
  }
  const slowest = [...windowRoots].sort((a, b) => b.duration_ms - a.duration_ms);
  for (const r of slowest) {
    if (chosen.length >= CONTEXT_LIMITS.threads) break;
    if (!chosen.includes(r)) chosen.push(r);
  }
  return chosen.map((r) => {
    const calls = queries
      .traceSpans(r.trace_id, CONTEXT_LIMITS.callsPerThread + 1)
      .filter((s) => s.parent_id !== null)
      .slice(0, CONTEXT_LIMITS.callsPerThread);
    const threadEvents = queries.traceEventsOf(r.trace_id, r.start - 60_000, r.start + r.duration_ms + 60_000, CONTEXT_LIMITS.eventsPerThread);
    return {
      trace_id: r.trace_id,
      component: r.component,
      name: r.name,
      at: iso(r.start),
      duration_ms: r.duration_ms,
      status: r.status,
      error_type: r.error_type,
      calls: calls.map((s) => ({ component: s.component, name: s.name, duration_ms: s.duration_ms, status: s.status })),
      events: threadEvents.map((e) => {
        const c = contextEvent(e);
        return { at: c.at, kind: c.kind, component: c.component, level: c.level, message: c.message };
      }),
    };
  });
}

function mcpStatus(queries: ExplainQueries, symptom: Symptom, events: EventAnalysis): AnalysisContext['mcp_status'] {
  return queries.latestConnections(symptom.end).map((e) => ({
    component: e.component,
    state: typeof e.attrs.state === 'string' ? e.attrs.state : isDisconnect(e) ? 'disconnected' : 'connected',
    since: iso(e.ts),
    disconnects_in_window: events.disconnects.get(e.component) ?? 0,
  }));
}
