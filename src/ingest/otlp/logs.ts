/** OTLP log records → Kiwi events (documented in docs/TELEMETRY.md). */
import { KNOWN_EVENT_KINDS, type Attributes, type EventLevel, type EventRecord, type TelemetryRecord } from '../records.js';
import { tooFarAhead } from '../records.js';
import { anyValueToJson, attributesToObject, idHex, inEpochRange, MAX_MESSAGE, nanosToMs, Rejections, resourceInfo } from './common.js';
import type { MappedBatch } from './traces.js';
import type { LogRecord, LogsRequest } from './types.js';

const KIND_PATTERN = /^[a-z][a-z0-9_.-]{0,63}$/;
/** Kiwi's own attribute for choosing an event kind from an OpenTelemetry log. */
export const KIWI_EVENT_KIND = 'kiwi.event.kind';
const SEVERITY_ERROR = 17;

/** SeverityNumber ranges of the logs data model: 1-4 trace, 5-8 debug, 9-12 info, 13-16 warn, 17-20 error, 21-24 fatal. */
export function levelOf(severityNumber: number | null | undefined, severityText: string | null | undefined): EventLevel {
  const n = severityNumber ?? 0;
  if (n >= 21) return 'fatal';
  if (n >= 17) return 'error';
  if (n >= 13) return 'warn';
  if (n >= 9) return 'info';
  if (n >= 5) return 'debug';
  if (n >= 1) return 'trace';
  const text = (severityText ?? '').trim().toLowerCase();
  if (text.startsWith('fatal') || text === 'critical' || text === 'crit' || text === 'emerg' || text === 'alert') return 'fatal';
  if (text.startsWith('err')) return 'error';
  if (text.startsWith('warn')) return 'warn';
  if (text.startsWith('debug')) return 'debug';
  if (text.startsWith('trace')) return 'trace';
  return 'info';
}

function kindOf(record: LogRecord, attrs: Attributes, level: EventLevel): string {
  const explicit = attrs[KIWI_EVENT_KIND];
  if (typeof explicit === 'string' && KIND_PATTERN.test(explicit)) return explicit;
  const eventName = record.eventName || (typeof attrs['event.name'] === 'string' ? (attrs['event.name'] as string) : '');
  if ((KNOWN_EVENT_KINDS as readonly string[]).includes(eventName)) return eventName;
  if (level === 'error' || level === 'fatal' || (record.severityNumber ?? 0) >= SEVERITY_ERROR) return 'error';
  if (typeof attrs['exception.type'] === 'string') return 'error';
  return 'log';
}

export function mapLogs(request: LogsRequest, now: number): MappedBatch {
  const records: TelemetryRecord[] = [];
  const rejections = new Rejections();
  let accepted = 0;
  for (const resourceLogs of request.resourceLogs ?? []) {
    const resource = resourceInfo(resourceLogs.resource);
    for (const scopeLogs of resourceLogs.scopeLogs ?? []) {
      const scopeName = scopeLogs.scope?.name || undefined;
      for (const log of scopeLogs.logRecords ?? []) {
        const time = nanosToMs(log.timeUnixNano) || nanosToMs(log.observedTimeUnixNano);
        const ts = time > 0 ? Math.round(time) : now;
        if (!inEpochRange(ts)) {
          rejections.add(`log record ${Math.round(time)} ms: time_unix_nano is outside 1970..2200`);
          continue;
        }
        const ahead = tooFarAhead(ts, now);
        if (ahead) {
          rejections.add(`log record: time_unix_nano ${ahead}`);
          continue;
        }
        const attrs = attributesToObject(log.attributes);
        const level = levelOf(log.severityNumber, log.severityText);
        const kind = kindOf(log, attrs, level);
        const traceId = idHex(log.traceId);
        const spanId = idHex(log.spanId);
        if (traceId) attrs.trace_id = traceId;
        if (spanId) attrs.span_id = spanId;
        if (log.eventName) attrs['event.name'] = log.eventName;
        if (log.severityText) attrs['otel.severity_text'] = log.severityText;
        if (scopeName) attrs['otel.scope.name'] = scopeName;
        for (const key in resource.kept) if (attrs[key] === undefined) attrs[key] = resource.kept[key];
        if (kind === 'error' && attrs['error.type'] === undefined && typeof attrs['exception.type'] === 'string') {
          attrs['error.type'] = attrs['exception.type'];
        }
        let message = messageOf(log, attrs);
        if (message.length > MAX_MESSAGE) {
          attrs['kiwi.message_truncated_from'] = message.length;
          message = message.slice(0, MAX_MESSAGE);
        }
        const event: EventRecord = { type: 'event', ts, kind, component: resource.component, level, message, attrs };
        records.push(event);
        accepted++;
      }
    }
  }
  return { records, accepted, rejections };
}

function messageOf(log: LogRecord, attrs: Attributes): string {
  const body = anyValueToJson(log.body);
  if (typeof body === 'string' && body) return body;
  if (body !== null && body !== undefined && body !== '') return JSON.stringify(body);
  const type = attrs['exception.type'];
  const text = attrs['exception.message'];
  if (typeof type === 'string' || typeof text === 'string') return [type, text].filter((x) => typeof x === 'string' && x).join(': ');
  return log.eventName ?? '';
}
