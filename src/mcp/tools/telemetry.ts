/** Tools that read and write raw telemetry: ingest, list, query, search, health. */
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { systemHealth } from '../../health/health.js';
import { formatIngestError, formatWritten, ingestText, ingestValues, type IngestSummary } from '../../ingest/ingest.js';
import { EVENT_LEVELS } from '../../ingest/records.js';
import { formatMs } from '../../detect/context.js';
import { queryMetrics } from '../../query/metrics.js';
import type { Store } from '../../store/store.js';
import { formatDuration, iso, parseTimeInput } from '../../time.js';
import { ArgumentsError, boundedDuration, readDuration, timeInput, type DurationBounds } from '../arguments.js';
import { answer, boundedAttrs, formatBytes, labelText, round, truncate } from '../format.js';

/** The narrowest bucket query_metrics takes (a directive's plan checks it too, through argumentProblems). */
const BUCKET_BOUNDS: DurationBounds = { min: '1s' };

const LIMITS = {
  ingestRecords: 10_000,
  ingestTextBytes: 10 * 1024 * 1024,
  ingestErrorsShown: 20,
  listSeries: 200,
  querySeries: 20,
  queryBuckets: 500,
  events: 200,
  eventMessageChars: 500,
  eventAttrsChars: 1000,
  healthComponents: 100,
  traceSpans: 500,
} as const;


function timeArg(field: string, value: string | number, now: number): number {
  try {
    return parseTimeInput(value, now);
  } catch (err) {
    throw new Error(`${field}: ${(err as Error).message}`);
  }
}

const seriesShape = {
  id: z.number().int(),
  name: z.string(),
  component: z.string(),
  labels: z.record(z.string(), z.string()),
  unit: z
    .string()
    .nullable()
    .describe('Unit of the values, UCUM as OpenTelemetry sends it (ms, s, By, 1, {request}, By/s); null when none was sent'),
};

/** ` ms` after a value, or nothing for a series without a unit. */
const unitSuffix = (unit: string | null): string => (unit ? ` ${unit}` : '');

const requestStats = z.object({
  count: z.number(),
  errors: z.number(),
  error_rate: z.number(),
  p50_ms: z.number().nullable(),
  p95_ms: z.number().nullable(),
});

function renderIngest(s: IngestSummary): string {
  const lines = [
    `${s.source}: accepted ${s.accepted}, rejected ${s.rejected}` +
      (s.strict && s.rejected > 0 ? ' (strict: nothing written)' : '') +
      ` — ${formatWritten(s.written)}`,
    ...s.errors.slice(0, LIMITS.ingestErrorsShown).map(formatIngestError),
  ];
  if (s.rejected > LIMITS.ingestErrorsShown) lines.push(`… ${s.rejected - LIMITS.ingestErrorsShown} more rejected lines`);
  return lines.join('\n');
}

/** list_series' schemas and description, exported for bench:mcp's fixed-page context server. */
export const LIST_SERIES_TOOL = {
  title: 'List metric series',
  description:
    'List stored metric series (name, component, labels, unit) with their first and last timestamps and latest value. ' +
    `Filter by exact name, name prefix or component. Paginated: limit (default 50, at most ${LIMITS.listSeries}) and offset.`,
  inputSchema: {
    name: z.string().optional(),
    name_prefix: z.string().optional().describe('e.g. "process." or "mcp."'),
    component: z.string().optional(),
    limit: z.number().int().min(1).max(LIMITS.listSeries).default(50),
    offset: z.number().int().min(0).default(0),
  },
  outputSchema: {
    total: z.number(),
    offset: z.number(),
    next_offset: z.number().nullable(),
    series: z.array(
      z.object({
        ...seriesShape,
        first: z.string().nullable(),
        last: z.string().nullable(),
        last_value: z.number().nullable(),
      }),
    ),
  },
  annotations: { readOnlyHint: true, openWorldHint: false },
};

/** What the health tool needs of self-telemetry: Kiwi's buffered calls written before it reads. */
export interface SelfTelemetryFlush {
  flush(): void;
}

export function registerTelemetryTools(server: McpServer, store: Store, selfTelemetry: SelfTelemetryFlush | null = null): void {
  server.registerTool(
    'ingest_telemetry',
    {
      title: 'Ingest telemetry',
      description:
        'Store metrics, events (logs, errors, permission decisions, connection changes, config changes, deploys) and spans. ' +
        'Give exactly one of: `records` (objects as in the JSONL format, at most 10,000), `jsonl` (one record per line) or ' +
        '`csv` (header timestamp,component,metric,value; extra columns become labels), text at most 10 MB. Bad lines are ' +
        'reported as source:line: reason and the good ones kept; with strict=true any bad line means nothing is written. ' +
        'Re-sending the same data stores it once. The answer lists at most 20 errors.',
      inputSchema: {
        records: z.array(z.record(z.string(), z.unknown())).max(LIMITS.ingestRecords).optional().describe('Record objects as in the JSONL format (type metric, event or span)'),
        jsonl: z.string().max(LIMITS.ingestTextBytes).optional().describe('One JSON record per line'),
        csv: z.string().max(LIMITS.ingestTextBytes).optional().describe('Long-form CSV with a header timestamp,component,metric,value; extra columns become labels'),
        strict: z.boolean().default(false).describe('Reject everything when any line is bad'),
      },
      outputSchema: {
        source: z.string(),
        format: z.enum(['jsonl', 'csv']).nullable(),
        accepted: z.number(),
        rejected: z.number(),
        written: z
          .object({ metrics: z.number(), events: z.number(), spans: z.number(), unchanged: z.number() })
          .describe('New or changed points, events and spans; unchanged: records already stored exactly as sent'),
        errors: z.array(z.string()).describe('source:line: reason, at most 20'),
        strict: z.boolean(),
      },
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    async ({ records, jsonl, csv, strict }) => {
      const given = [records, jsonl, csv].filter((x) => x !== undefined).length;
      if (given !== 1) throw new ArgumentsError('give exactly one of records, jsonl or csv');
      const summary = records
        ? ingestValues(store, records, 'records', { strict })
        : ingestText(store, (jsonl ?? csv)!, jsonl !== undefined ? 'jsonl' : 'csv', { strict, format: jsonl !== undefined ? 'jsonl' : 'csv' });
      const structured = {
        source: summary.source,
        format: summary.format,
        accepted: summary.accepted,
        rejected: summary.rejected,
        written: summary.written,
        errors: summary.errors.slice(0, LIMITS.ingestErrorsShown).map(formatIngestError),
        strict: summary.strict,
      };
      return answer(structured, renderIngest(summary));
    },
  );

  server.registerTool(
    'list_series',
    LIST_SERIES_TOOL,
    async ({ name, name_prefix, component, limit, offset }) => {
      const { series, total } = store.listSeries({ name, name_prefix, component }, limit, offset);
      const rows = series.map((s) => ({
        id: s.id,
        name: s.name,
        component: s.component,
        labels: s.labels,
        unit: s.unit,
        first: s.first_ts === null ? null : iso(s.first_ts),
        last: s.last_ts === null ? null : iso(s.last_ts),
        last_value: round(s.last_value),
      }));
      const next = offset + rows.length < total ? offset + rows.length : null;
      const text = [
        rows.length === 0 && offset > 0
          ? `${total} series; offset ${offset} is past the last`
          : `${total} series${total > rows.length ? `, showing ${offset + 1}-${offset + rows.length}` : ''}`,
        ...rows.map((r) => `${r.name}${labelText(r.component, r.labels)} last=${r.last_value === null ? '-' : `${r.last_value}${unitSuffix(r.unit)}`} at ${r.last ?? '-'}`),
        ...(next !== null ? [`next page: offset=${next}`] : []),
      ].join('\n');
      return answer({ total, offset, next_offset: next, series: rows }, text);
    },
  );

  server.registerTool(
    'query_metrics',
    {
      title: 'Query metrics',
      description:
        'Bucketed statistics of metric series over a time range: per bucket count, avg, min, max, p50, p95, p99 and rate ' +
        '(sum per second); each series says its `unit` (avg, min, max and percentiles are in it, rate in it per second). Select series by exact name or name prefix, component and labels (all given labels must match). ' +
        `Range defaults to the last hour. At most ${LIMITS.querySeries} series (max_series, default 10) and ` +
        `${LIMITS.queryBuckets} buckets per series (max_buckets, default 120) come back; a bucket too narrow for that is widened ` +
        'and the answer says so. Empty buckets are left out.',
      inputSchema: {
        name: z.string().optional(),
        name_prefix: z.string().optional(),
        component: z.string().optional(),
        labels: z.record(z.string(), z.string()).optional(),
        from: timeInput.default('-1h'),
        to: timeInput.default('now'),
        bucket: boundedDuration(BUCKET_BOUNDS).optional().describe('Bucket width such as 10s, 1m, 5m, 1h; default: about 60 buckets over the range'),
        max_series: z.number().int().min(1).max(LIMITS.querySeries).default(10),
        max_buckets: z.number().int().min(1).max(LIMITS.queryBuckets).default(120),
      },
      outputSchema: {
        from: z.string(),
        to: z.string(),
        bucket: z.string(),
        series_total: z.number(),
        series: z.array(
          z.object({
            ...seriesShape,
            buckets: z.array(
              z.object({
                start: z.string(),
                count: z.number(),
                avg: z.number(),
                min: z.number(),
                max: z.number(),
                p50: z.number().nullable(),
                p95: z.number().nullable(),
                p99: z.number().nullable(),
                rate: z.number(),
              }),
            ),
          }),
        ),
        notes: z.array(z.string()),
      },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async (args) => {
      const now = Date.now();
      let bucketMs: number | undefined;
      if (args.bucket !== undefined) {
        try {
          bucketMs = readDuration(args.bucket, BUCKET_BOUNDS);
        } catch (err) {
          throw new Error(`bucket: ${(err as Error).message}`);
        }
      }
      const result = queryMetrics(store, {
        name: args.name,
        name_prefix: args.name_prefix,
        component: args.component,
        labels: args.labels,
        from: timeArg('from', args.from, now),
        to: timeArg('to', args.to, now),
        bucketMs,
        maxBuckets: args.max_buckets,
        maxSeries: args.max_series,
      });
      const series = result.series.map((s) => ({
        id: s.id,
        name: s.name,
        component: s.component,
        labels: s.labels,
        unit: s.unit,
        buckets: s.buckets.map((b) => ({
          start: iso(b.start),
          count: b.count,
          avg: round(b.avg),
          min: round(b.min),
          max: round(b.max),
          p50: round(b.p50),
          p95: round(b.p95),
          p99: round(b.p99),
          rate: round(b.rate),
        })),
      }));
      const text = [
        `${iso(result.from)} .. ${iso(result.to)}, bucket ${formatDuration(result.bucket_ms)}, ${result.series_total} series`,
        ...series.map((s) => {
          const values = s.buckets.map((b) => b.avg);
          const title = `${s.name}${labelText(s.component, s.labels)}${s.unit ? ` (${s.unit})` : ''}`;
          if (values.length === 0) return `${title}: no data in range`;
          const last = s.buckets[s.buckets.length - 1]!;
          return (
            `${title}: ${values.length} buckets, avg min ${round(Math.min(...values))} ` +
            `max ${round(Math.max(...values))}; last (${last.start}) avg ${last.avg} p95 ${last.p95 ?? '-'} n=${last.count}`
          );
        }),
        ...result.notes,
      ].join('\n');
      return answer(
        { from: iso(result.from), to: iso(result.to), bucket: formatDuration(result.bucket_ms), series_total: result.series_total, series, notes: result.notes },
        text,
      );
    },
  );

  server.registerTool(
    'search_events',
    {
      title: 'Search events',
      description:
        'Search logs and events (kinds: log, error, permission, connection, config, deploy, directive, anomaly, or any other) by ' +
        'kind, component, lowest level, text in the message, trace and time range; newest first. Paginated: limit (default 50, at most ' +
        `${LIMITS.events}) and the next_cursor of the previous page. Messages are cut at ${LIMITS.eventMessageChars} characters ` +
        `and attributes at ${LIMITS.eventAttrsChars}.`,
      inputSchema: {
        kind: z.union([z.string(), z.array(z.string()).max(20)], { error: 'expected one event kind or a list of at most 20' }).optional().describe('One kind or several: log, error, permission, connection, config, deploy, ...'),
        component: z.string().optional(),
        min_level: z.enum(EVENT_LEVELS).optional().describe('Lowest level included (trace < debug < info < warn < error < fatal)'),
        text: z.string().max(200).optional().describe('Case-insensitive text the message contains'),
        trace_id: z.string().max(64).optional().describe('Only events recorded for this trace (their trace_id attribute), e.g. a failed request of an anomaly'),
        from: timeInput.optional(),
        to: timeInput.optional(),
        limit: z.number().int().min(1).max(LIMITS.events).default(50),
        cursor: z.string().optional().describe('next_cursor of the previous page'),
      },
      outputSchema: {
        events: z.array(
          z.object({
            id: z.number(),
            ts: z.string(),
            kind: z.string(),
            component: z.string(),
            level: z.string(),
            message: z.string(),
            attrs: z.record(z.string(), z.unknown()),
          }),
        ),
        next_cursor: z.string().nullable(),
      },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async (args) => {
      const now = Date.now();
      const from = args.from === undefined ? undefined : timeArg('from', args.from, now);
      const to = args.to === undefined ? undefined : timeArg('to', args.to, now);
      // as query_metrics says: a backwards range is a mistake, not a quiet period
      if (from !== undefined && to !== undefined && !(to > from)) throw new Error('to: must be later than from');
      let page;
      try {
        page = store.searchEvents(
          {
            // stored kinds are lowercase words, so `LOG` means log rather than matching nothing
            kinds: args.kind === undefined ? undefined : (Array.isArray(args.kind) ? args.kind : [args.kind]).map((k) => k.toLowerCase()),
            component: args.component,
            min_level: args.min_level,
            text: args.text,
            trace_id: args.trace_id,
            from,
            to,
          },
          args.limit,
          args.cursor,
        );
      } catch (err) {
        const message = (err as Error).message;
        throw new Error(message.startsWith('cursor') ? `cursor: ${message}` : message);
      }
      const events = page.events.map((e) => ({
        id: e.id,
        ts: iso(e.ts),
        kind: e.kind,
        component: e.component,
        level: e.level,
        message: truncate(e.message, LIMITS.eventMessageChars),
        attrs: boundedAttrs(e.attrs, LIMITS.eventAttrsChars),
      }));
      const text = [
        `${events.length} events${page.next_cursor ? ` (more: cursor ${page.next_cursor})` : ''}`,
        ...events.map((e) => `${e.ts} ${e.level} ${e.kind} ${e.component}: ${truncate(e.message, 160)}`),
      ].join('\n');
      return answer({ events, next_cursor: page.next_cursor }, text);
    },
  );

  server.registerTool(
    'get_trace',
    {
      title: 'Get a trace',
      description:
        'One trace by its trace_id (as anomalies, root-cause context and search_events show them): its spans as a call tree ' +
        `(component, name, start, duration, status), oldest first, at most ${LIMITS.traceSpans}, and the events recorded for it.`,
      inputSchema: { trace_id: z.string().min(1).max(64) },
      outputSchema: {
        trace_id: z.string(),
        spans: z.array(
          z.object({
            span_id: z.string(),
            parent_id: z.string().nullable(),
            depth: z.number().describe('0 for a root, or a span whose parent is not stored'),
            name: z.string(),
            component: z.string(),
            start: z.string(),
            duration_ms: z.number(),
            status: z.string(),
            attrs: z.record(z.string(), z.unknown()),
          }),
        ),
        spans_total: z.number(),
        events: z.array(z.object({ ts: z.string(), kind: z.string(), component: z.string(), level: z.string(), message: z.string() })),
      },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async ({ trace_id }) => {
      const stored = store.listSpans({ trace_id }, LIMITS.traceSpans + 1);
      if (stored.length === 0) throw new Error(`trace_id: no spans of trace "${truncate(trace_id, 64)}"`);
      const kept = stored.slice(0, LIMITS.traceSpans).sort((a, b) => a.start - b.start);
      // parents before children: depth-first from the roots, each level oldest first
      const children = new Map<string | null, typeof kept>();
      const ids = new Set(kept.map((s) => s.span_id));
      for (const span of kept) {
        const parent = span.parent_id !== null && ids.has(span.parent_id) ? span.parent_id : null;
        const siblings = children.get(parent);
        if (siblings) siblings.push(span);
        else children.set(parent, [span]);
      }
      const ordered: { span: (typeof kept)[number]; depth: number }[] = [];
      const visit = (parent: string | null, depth: number) => {
        for (const span of children.get(parent) ?? []) {
          ordered.push({ span, depth });
          visit(span.span_id, depth + 1);
        }
      };
      visit(null, 0);
      const spans = ordered.map(({ span, depth }) => ({
        span_id: span.span_id,
        parent_id: span.parent_id,
        depth,
        name: span.name,
        component: span.component,
        start: iso(span.start),
        duration_ms: round(span.duration_ms),
        status: span.status,
        attrs: boundedAttrs(span.attrs, LIMITS.eventAttrsChars),
      }));
      const first = kept[0]!.start;
      const last = Math.max(...kept.map((s) => s.start + s.duration_ms));
      const events = store
        .searchEvents({ trace_id, from: first - 60_000, to: last + 60_000 }, LIMITS.events)
        .events.reverse()
        .map((e) => ({ ts: iso(e.ts), kind: e.kind, component: e.component, level: e.level, message: truncate(e.message, LIMITS.eventMessageChars) }));
      const text = [
        `trace ${trace_id}: ${spans.length} spans${stored.length > kept.length ? ` (of more than ${LIMITS.traceSpans})` : ''}, ${events.length} events`,
        ...spans.map((s) => `${'  '.repeat(s.depth)}${s.component} ${s.name} ${s.duration_ms} ms ${s.status}${s.status === 'error' ? ' ✗' : ''} (${s.start})`),
        ...events.map((e) => `event ${e.ts} ${e.level} ${e.kind} ${e.component}: ${truncate(e.message, 160)}`),
      ].join('\n');
      return answer({ trace_id, spans, spans_total: stored.length > kept.length ? stored.length : spans.length, events }, text);
    },
  );

  server.registerTool(
    'get_system_health',
    {
      title: 'System health',
      description:
        'Per component (Kiwi itself included, listed first, with every call made to it before this one): status, when it was last seen, request count, error rate and ' +
        'latency (p50/p95 of spans) over the window ending at its last data, error events, permission denials, latest memory and ' +
        `CPU, MCP connection state, and open anomalies. window_minutes defaults to 15; at most ${LIMITS.healthComponents} components. ` +
        'status is critical with an open critical anomaly; warning with another open anomaly, more than 10% of requests failing, the MCP ' +
        'connection down, or no data for longer than the window; `reasons` says which. Anomalies count as detect_anomalies last stored ' +
        'them: run it first to judge the present.',
      inputSchema: {
        component: z.string().optional(),
        window_minutes: z.number().int().min(1).max(1440).default(15).describe('Requests and events are counted over this many minutes ending at each component\'s last data'),
        limit: z.number().int().min(1).max(LIMITS.healthComponents).default(50),
      },
      outputSchema: {
        at: z.string(),
        window_minutes: z.number(),
        omitted: z.number(),
        components: z.array(
          z.object({
            component: z.string(),
            status: z.enum(['ok', 'warning', 'critical']),
            reasons: z.array(z.string()).describe('why the status is not ok; empty when ok'),
            last_seen: z.string(),
            silent_for_ms: z.number(),
            requests: requestStats.nullable(),
            error_events: z.number(),
            permission_denials: z.number(),
            memory_bytes: z.number().nullable(),
            cpu_utilization: z.number().nullable(),
            connection: z.object({ state: z.string(), since: z.string() }).nullable(),
            open_anomalies: z.array(
              z.object({ id: z.string(), type: z.string(), severity: z.string(), description: z.string() }),
            ),
          }),
        ),
      },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async ({ component, window_minutes, limit }) => {
      // Kiwi's own calls wait up to telemetry.self_flush_ms in a buffer: the health answer counts every one before it.
      selfTelemetry?.flush();
      const health = systemHealth(store, { component, windowMinutes: window_minutes, limit });
      if (component !== undefined && health.components.length === 0) {
        throw new Error(`component: no telemetry from "${component}"`);
      }
      const components = health.components.map((c) => ({
        ...c,
        requests: c.requests && {
          ...c.requests,
          error_rate: round(c.requests.error_rate),
          p50_ms: round(c.requests.p50_ms),
          p95_ms: round(c.requests.p95_ms),
        },
        cpu_utilization: round(c.cpu_utilization),
      }));
      const text = [
        `health at ${health.at} (window ${health.window_minutes} min)`,
        ...components.map((c) => {
          const parts = [`${c.component} ${c.status.toUpperCase()}${c.reasons.length ? ` (${c.reasons.join('; ')})` : ''}`];
          if (c.requests) {
            parts.push(`${c.requests.count} req, ${(c.requests.error_rate * 100).toFixed(1)}% err, p95 ${c.requests.p95_ms === null ? '-' : formatMs(c.requests.p95_ms)}`);
          }
          if (c.error_events) parts.push(`${c.error_events} error events`);
          if (c.permission_denials) parts.push(`${c.permission_denials} denials`);
          if (c.memory_bytes !== null) parts.push(`mem ${formatBytes(c.memory_bytes)}`);
          if (c.connection) parts.push(`connection ${c.connection.state}`);
          if (c.silent_for_ms > 5 * 60_000 && c.silent_for_ms <= health.window_minutes * 60_000) parts.push(`silent for ${Math.round(c.silent_for_ms / 60_000)} min`);
          return parts.join(' · ');
        }),
        ...(health.omitted ? [`${health.omitted} more components not shown`] : []),
      ].join('\n');
      return answer({ ...health, components }, text);
    },
  );
}
