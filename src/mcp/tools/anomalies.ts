/** detect_anomalies and the tools around stored anomalies. */
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { ANOMALY_TYPES } from '../../detect/context.js';
import { describeOutcomes, detectAnomaliesAsync } from '../../detect/service.js';
import { ANOMALY_STATUSES, AnomalyConflictError, AnomalyStore, type Anomaly } from '../../store/anomalies.js';
import type { Store } from '../../store/store.js';
import { iso, parseDuration, parseTimeInput } from '../../time.js';
import { durationInput, timeInput } from '../arguments.js';
import { mcpServers, remedyForAnomaly, suggestionText } from '../../remedies.js';
import { answer, boundedAttrs, round, suggestedActionShape } from '../format.js';

const LIMITS = { anomalies: 50, list: 100, evidenceChars: 3000, notJudged: 100 } as const;

const anomalyShape = z.object({
  id: z.string(),
  type: z.string(),
  severity: z.enum(['info', 'warning', 'critical']),
  status: z.enum(ANOMALY_STATUSES),
  component: z.string(),
  description: z.string(),
  start: z.string(),
  end: z.string().nullable(),
  score: z.number(),
  evidence: z.record(z.string(), z.unknown()),
  suggested_action: suggestedActionShape,
  note: z.string().nullable(),
});

function shape(a: Anomaly, isMcpServer: (component: string) => boolean) {
  return {
    id: a.id,
    type: a.type,
    severity: a.severity,
    status: a.status,
    component: a.component,
    description: a.description,
    start: iso(a.start_ts),
    end: a.end_ts === null ? null : iso(a.end_ts),
    score: round(a.score),
    evidence: boundedAttrs(a.evidence, LIMITS.evidenceChars),
    suggested_action: remedyForAnomaly(a, isMcpServer),
    note: a.note,
  };
}

function line(a: Anomaly, isMcpServer: (component: string) => boolean): string {
  const remedy = remedyForAnomaly(a, isMcpServer);
  const action = remedy ? ` → ${suggestionText(remedy)}` : '';
  return `${a.severity.toUpperCase()} ${a.type} ${a.component} [${a.id}, ${a.status}]: ${a.description}${action}`;
}

/**
 * What update_anomaly does. Any anomaly may be closed (resolve, false_positive) or re-closed the
 * other way; acknowledge and reopen make it active again, which is refused while another anomaly
 * on the same signal is active (detection updates that one: two would split what it sees).
 */
const ACTIONS = { acknowledge: 'acknowledged', resolve: 'resolved', false_positive: 'false_positive', reopen: 'open' } as const;

export function registerAnomalyTools(server: McpServer, store: Store): void {
  const anomalies = new AnomalyStore(store);
  const isMcpServer = mcpServers(store);

  server.registerTool(
    'detect_anomalies',
    {
      title: 'Detect anomalies',
      description:
        'Judge the last `lookback` (default 60m) against each signal\'s own baseline (the 6 hours before, and the same hours a day ' +
        'earlier) and report what is abnormal: latency_spike, error_spike (with the top error signatures), permission_spike (with ' +
        'the principal/tool/permission pattern), memory_leak (trend of the memory floor since the last restart, over at least 6 h), connection_instability (disconnects, MTBF), ' +
        'and spike / dip / level_shift on any other metric. Each anomaly has a stable id, severity, evidence and a ' +
        'suggested_action: the directive that acts on it and its inputs (latency_spike, memory_leak, connection_instability), ' +
        'else null: analyze_root_cause finds what a person must revert. Findings are stored: an ongoing anomaly keeps its id; a closed one found ' +
        'again stays closed (already_closed) unless abnormal since it was closed, then a new one names it (evidence.recurrence_of); anomalies no longer seen are ' +
        'resolved once the data since they were last seen shows them over (a window too short to tell leaves them open, listed ' +
        'as unconfirmed), and a finding no larger than one a person marked false_positive is held back. A signal is judged only ' +
        'where its own data reaches a baseline back (a week-long lookback on a week of data judges all but its first 6 h); ' +
        'not_judged lists what was not judged and why: no finding there is no all-clear. sensitivity 0..1 (default ' +
        `0.5: p < 1e-6). At most ${LIMITS.anomalies} anomalies (limit, default 20) and ${LIMITS.notJudged} not_judged entries, evidence cut at ${LIMITS.evidenceChars} characters.`,
      inputSchema: {
        lookback: durationInput.default('60m').describe('Window to judge, e.g. 15m, 60m, 6h'),
        at: timeInput.optional().describe('End of the window (default now): ISO 8601, epoch, or -2h. A past window closes no anomaly last seen after it'),
        component: z.string().optional().describe('Judge only this component'),
        types: z.array(z.enum(ANOMALY_TYPES)).optional().describe('Run only the checks for these types'),
        sensitivity: z.number().min(0).max(1).optional().describe('0..1; default the detect.sensitivity setting (0.5: p < 1e-6; 1: p < 1e-3; 0: p < 1e-9)'),
        limit: z.number().int().min(1).max(LIMITS.anomalies).default(20),
      },
      outputSchema: {
        window: z.object({ from: z.string(), to: z.string() }),
        anomalies: z.array(anomalyShape.extend({ new: z.boolean() })),
        total: z.number(),
        resolved: z.array(z.object({ id: z.string(), type: z.string(), component: z.string() })),
        unconfirmed: z.array(z.object({ id: z.string(), type: z.string(), component: z.string() })),
        already_closed: z.array(z.object({ id: z.string(), type: z.string(), component: z.string(), status: z.enum(ANOMALY_STATUSES) })),
        not_judged: z.array(
          z.object({
            check: z.string(),
            component: z.string(),
            series_id: z.number().nullable(),
            signal: z.string(),
            from: z.string(),
            to: z.string(),
            reason: z.enum(['no_baseline', 'thin_baseline', 'short_segment']),
            detail: z.string(),
          }),
        ),
        not_judged_total: z.number(),
        suppressed: z.array(
          z.object({ type: z.string(), component: z.string(), magnitude: z.number(), required: z.number(), false_positive: z.string() }),
        ),
        checks: z.array(z.object({ name: z.string(), examined: z.number(), found: z.number(), ms: z.number() })),
      },
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    async (args) => {
      let lookbackMs: number;
      try {
        lookbackMs = parseDuration(args.lookback);
      } catch (err) {
        throw new Error(`lookback: ${(err as Error).message}`);
      }
      let now: number | undefined;
      if (args.at !== undefined) {
        try {
          now = parseTimeInput(args.at);
        } catch (err) {
          throw new Error(`at: ${(err as Error).message}`);
        }
      }
      const result = await detectAnomaliesAsync(store, {
        lookbackMs,
        ...(now !== undefined ? { now } : {}),
        ...(args.component !== undefined ? { component: args.component } : {}),
        ...(args.types ? { types: args.types } : {}),
        ...(args.sensitivity !== undefined ? { sensitivity: args.sensitivity } : {}),
        actor: 'mcp:detect_anomalies',
      });
      const shown = result.anomalies.slice(0, args.limit);
      const structured = {
        window: { from: iso(result.window.from), to: iso(result.window.to) },
        anomalies: shown.map((a) => ({ ...shape(a, isMcpServer), new: a.new })),
        total: result.anomalies.length,
        resolved: result.resolved.map((a) => ({ id: a.id, type: a.type, component: a.component })),
        unconfirmed: result.unconfirmed.map((a) => ({ id: a.id, type: a.type, component: a.component })),
        already_closed: result.already_closed.map((a) => ({ id: a.id, type: a.type, component: a.component, status: a.status })),
        not_judged: result.not_judged.slice(0, LIMITS.notJudged).map(({ check, component, series_id, signal, from, to, reason, detail }) => ({
          check,
          component,
          series_id,
          signal,
          from: iso(from),
          to: iso(to),
          reason,
          detail,
        })),
        not_judged_total: result.not_judged.length,
        suppressed: result.suppressed.map(({ type, component, magnitude, required, false_positive }) => ({
          type,
          component,
          magnitude: round(magnitude),
          required: round(required),
          false_positive,
        })),
        checks: result.checks,
      };
      const text = [
        `${result.anomalies.length} anomalies in ${structured.window.from} .. ${structured.window.to}` +
          (result.anomalies.length > shown.length ? ` (showing ${shown.length})` : ''),
        ...shown.map((a) => `${a.new ? 'NEW ' : ''}${line(a, isMcpServer)}`),
        ...describeOutcomes(result),
      ].join('\n');
      return answer(structured, text);
    },
  );

  server.registerTool(
    'list_anomalies',
    {
      title: 'List anomalies',
      description:
        'Stored anomalies, most recently seen first. status defaults to open and acknowledged; filter by component, type and ' +
        `since (time). Paginated: limit (default 20, at most ${LIMITS.list}) and offset.`,
      inputSchema: {
        status: z.array(z.enum(ANOMALY_STATUSES)).optional().describe('Default: open and acknowledged'),
        component: z.string().optional().describe('A component Kiwi has telemetry from'),
        type: z.enum(ANOMALY_TYPES).optional(),
        since: timeInput.optional().describe('Anomalies last seen at or after this time: ISO 8601, epoch, or relative like -7d'),
        limit: z.number().int().min(1).max(LIMITS.list).default(20),
        offset: z.number().int().min(0).default(0),
      },
      outputSchema: { total: z.number(), next_offset: z.number().nullable(), anomalies: z.array(anomalyShape) },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async (args) => {
      let since: number | undefined;
      if (args.since !== undefined) {
        try {
          since = parseTimeInput(args.since);
        } catch (err) {
          throw new Error(`since: ${(err as Error).message}`);
        }
      }
      // Otherwise a misspelt component lists nothing: an all-clear for nothing.
      if (args.component !== undefined && !store.hasComponent(args.component)) {
        throw new Error(`component: no telemetry from "${args.component}"`);
      }
      const { anomalies: rows, total } = anomalies.list(
        {
          statuses: args.status ?? ['open', 'acknowledged'],
          ...(args.component !== undefined ? { component: args.component } : {}),
          ...(args.type !== undefined ? { types: [args.type] } : {}),
          ...(since !== undefined ? { since } : {}),
        },
        args.limit,
        args.offset,
      );
      const next = args.offset + rows.length < total ? args.offset + rows.length : null;
      const text = [
        rows.length === 0 && args.offset > 0 ? `${total} anomalies; offset ${args.offset} is past the last` : `${total} anomalies`,
        ...rows.map((a) => line(a, isMcpServer)),
        ...(next !== null ? [`next page: offset=${next}`] : []),
      ].join('\n');
      return answer({ total, next_offset: next, anomalies: rows.map((a) => shape(a, isMcpServer)) }, text);
    },
  );

  server.registerTool(
    'get_anomaly',
    {
      title: 'Get an anomaly',
      description: `One stored anomaly by id, with its evidence (cut at ${LIMITS.evidenceChars} characters).`,
      inputSchema: { id: z.string().max(100) },
      outputSchema: anomalyShape.shape,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async ({ id }) => {
      const anomaly = anomalies.get(id);
      if (!anomaly) throw new Error(`id: no anomaly "${id}"`);
      const shaped = shape(anomaly, isMcpServer);
      return answer(shaped, `${line(anomaly, isMcpServer)}\nevidence: ${JSON.stringify(shaped.evidence)}`);
    },
  );

  server.registerTool(
    'update_anomaly',
    {
      title: 'Update an anomaly',
      description:
        'Acknowledge, resolve, reopen, or mark an anomaly a false positive, with a note. A false-positive mark teaches detection: ' +
        'later findings on the same signal are held back unless 1.5x larger. Acknowledging or reopening a closed anomaly is ' +
        'refused while another on the same signal is open or acknowledged (act on that one). Every change is audited.',
      inputSchema: {
        id: z.string().max(100),
        action: z.enum(['acknowledge', 'resolve', 'false_positive', 'reopen']).describe('false_positive also teaches detection to hold back similar findings'),
        note: z.string().max(2000).optional().describe('Why; kept with the anomaly and in the audit trail'),
      },
      outputSchema: anomalyShape.shape,
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    async ({ id, action, note }) => {
      let updated: Anomaly;
      try {
        updated = anomalies.setStatus(id, ACTIONS[action], 'mcp:update_anomaly', note);
      } catch (err) {
        if (err instanceof AnomalyConflictError) throw new Error(`action: ${err.message}`);
        throw err;
      }
      return answer(shape(updated, isMcpServer), line(updated, isMcpServer));
    },
  );
}
