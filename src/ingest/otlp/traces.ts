/**
 * OTLP spans → Kiwi spans (one per OTLP span) and error events (one per `exception` span event).
 * The mapping is documented in docs/TELEMETRY.md ("OpenTelemetry (OTLP) ingest").
 */
import { tooFarAhead, type Attributes, type EventRecord, type SpanRecord, type SpanStatus, type TelemetryRecord } from '../records.js';
import {
  attributesToObject,
  durationMs,
  idHex,
  inEpochRange,
  MAX_MESSAGE,
  MAX_NAME,
  nanosToMs,
  Rejections,
  resourceInfo,
} from './common.js';
import { SPAN_KINDS, STATUS_CODE, type Span, type TracesRequest } from './types.js';

/** Span events and links kept per span (the rest are counted, not stored). */
const MAX_SPAN_EVENTS = 64;
const MAX_SPAN_LINKS = 32;
const MAX_STACKTRACE = 8 * 1024;

export interface MappedBatch {
  records: TelemetryRecord[];
  /** Items counted as accepted (spans, data points, log records). */
  accepted: number;
  rejections: Rejections;
}

function shortId(id: Uint8Array | null | undefined): string {
  return idHex(id) ?? '(none)';
}

export function mapTraces(request: TracesRequest, now: number = Date.now()): MappedBatch {
  const records: TelemetryRecord[] = [];
  const rejections = new Rejections();
  let accepted = 0;
  for (const resourceSpans of request.resourceSpans ?? []) {
    const resource = resourceInfo(resourceSpans.resource);
    for (const scopeSpans of resourceSpans.scopeSpans ?? []) {
      const scopeName = scopeSpans.scope?.name || undefined;
      for (const span of scopeSpans.spans ?? []) {
        const problem = mapSpan(span, resource.component, resource.kept, scopeName, records, now);
        if (problem) rejections.add(`span ${shortId(span.spanId)} "${(span.name ?? '').slice(0, 64)}": ${problem}`);
        else accepted++;
      }
    }
  }
  return { records, accepted, rejections };
}

/** Appends the span's records, or returns why the span is rejected. */
function mapSpan(
  span: Span,
  component: string,
  resourceAttrs: Attributes,
  scopeName: string | undefined,
  out: TelemetryRecord[],
  now: number,
): string | null {
  const traceId = idHex(span.traceId);
  if (!traceId || span.traceId!.length !== 16) return 'trace_id must be 16 bytes (32 hex digits in OTLP/JSON), not all zero';
  const spanId = idHex(span.spanId);
  if (!spanId || span.spanId!.length !== 8) return 'span_id must be 8 bytes (16 hex digits in OTLP/JSON), not all zero';
  const parent = span.parentSpanId && span.parentSpanId.length > 0 ? idHex(span.parentSpanId) : null;
  if (span.parentSpanId && span.parentSpanId.length > 0 && span.parentSpanId.length !== 8) return 'parent_span_id must be 8 bytes or empty';
  const start = nanosToMs(span.startTimeUnixNano);
  const end = nanosToMs(span.endTimeUnixNano);
  if (start === 0) return 'start_time_unix_nano is missing';
  if (end === 0) return 'end_time_unix_nano is missing';
  if (!inEpochRange(start) || !inEpochRange(end)) return 'start or end time is outside 1970..2200';
  const ahead = tooFarAhead(start, now);
  if (ahead) return `start_time_unix_nano ${ahead}`;
  const duration = durationMs(span.startTimeUnixNano, span.endTimeUnixNano);
  if (duration < 0) return 'end_time_unix_nano is before start_time_unix_nano';

  const attrs: Attributes = attributesToObject(span.attributes);
  let name = span.name ?? '';
  // MCP tool calls are named `tools/call <tool>` whatever the instrumentation called them, so the
  // checks find them by name; the original name is kept.
  const method = attrs['mcp.method.name'];
  const tool = attrs['gen_ai.tool.name'];
  if (method === 'tools/call' && typeof tool === 'string' && tool) {
    const conventional = `tools/call ${tool}`;
    if (name !== conventional) {
      if (name) attrs['otel.span.name'] = name;
      name = conventional;
    }
  }
  if (!name) return 'name is empty';
  if (name.length > MAX_NAME) {
    attrs['otel.span.name'] = name;
    name = name.slice(0, MAX_NAME);
  }

  const kind = SPAN_KINDS[span.kind ?? 0];
  if (kind && kind !== 'unspecified') attrs['span.kind'] = kind;
  if (scopeName) attrs['otel.scope.name'] = scopeName;
  for (const key in resourceAttrs) if (attrs[key] === undefined) attrs[key] = resourceAttrs[key];
  const statusCode = span.status?.code ?? STATUS_CODE.unset;
  const statusMessage = span.status?.message;
  if (statusMessage) attrs['otel.status_description'] = statusMessage;
  // The GenAI and MCP conventions mark a failed operation with error.type; a span that carries it
  // failed even when its instrumentation left the status unset.
  let status: SpanStatus = statusCode === STATUS_CODE.error ? 'error' : statusCode === STATUS_CODE.ok ? 'ok' : 'unset';
  if (status === 'unset' && typeof attrs['error.type'] === 'string' && attrs['error.type']) status = 'error';

  const startMs = Math.round(start);
  const events = span.events ?? [];
  if (events.length > 0) {
    attrs['otel.events'] = events.slice(0, MAX_SPAN_EVENTS).map((e) => {
      const entry: Attributes = { name: e.name ?? '', ts: Math.round(nanosToMs(e.timeUnixNano)) || startMs };
      const eventAttrs = attributesToObject(e.attributes);
      // An exception's stack goes to its error event, not twice into the store.
      if (e.name === 'exception') delete eventAttrs['exception.stacktrace'];
      if (Object.keys(eventAttrs).length > 0) entry.attrs = eventAttrs;
      return entry;
    });
    if (events.length > MAX_SPAN_EVENTS) attrs['otel.events_omitted'] = events.length - MAX_SPAN_EVENTS;
  }
  const links = span.links ?? [];
  if (links.length > 0) {
    attrs['otel.links'] = links.slice(0, MAX_SPAN_LINKS).map((l) => {
      const entry: Attributes = { trace_id: idHex(l.traceId), span_id: idHex(l.spanId) };
      const linkAttrs = attributesToObject(l.attributes);
      if (Object.keys(linkAttrs).length > 0) entry.attrs = linkAttrs;
      return entry;
    });
    if (links.length > MAX_SPAN_LINKS) attrs['otel.links_omitted'] = links.length - MAX_SPAN_LINKS;
  }

  const record: SpanRecord = {
    type: 'span',
    trace_id: traceId,
    span_id: spanId,
    parent_id: parent,
    name,
    component,
    start: startMs,
    duration_ms: duration,
    status,
    attrs,
  };
  out.push(record);

  for (const e of events) {
    if (e.name !== 'exception') continue;
    const ea = attributesToObject(e.attributes);
    const type = typeof ea['exception.type'] === 'string' ? (ea['exception.type'] as string) : undefined;
    const text = typeof ea['exception.message'] === 'string' ? (ea['exception.message'] as string) : undefined;
    const errorAttrs: Attributes = { trace_id: traceId, span_id: spanId, 'span.name': name };
    if (type) errorAttrs['error.type'] = type;
    else if (typeof attrs['error.type'] === 'string') errorAttrs['error.type'] = attrs['error.type'];
    const stack = ea['exception.stacktrace'];
    if (typeof stack === 'string') errorAttrs['exception.stacktrace'] = stack.slice(0, MAX_STACKTRACE);
    for (const key in resourceAttrs) errorAttrs[key] = resourceAttrs[key];
    const message = [type, text].filter(Boolean).join(': ') || `exception in ${name}`;
    const ts = Math.round(nanosToMs(e.timeUnixNano));
    const event: EventRecord = {
      type: 'event',
      ts: ts > 0 && inEpochRange(ts) ? ts : startMs,
      kind: 'error',
      component,
      level: 'error',
      message: message.slice(0, MAX_MESSAGE),
      attrs: errorAttrs,
    };
    out.push(event);
  }
  return null;
}
