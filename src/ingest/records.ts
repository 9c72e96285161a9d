/**
 * The telemetry record contract: what one JSONL line (or one CSV row, or one record handed to
 * the `ingest_telemetry` tool) may say, and the normalised form the store receives.
 *
 * Timestamps in input may be ISO 8601 strings or epoch numbers; normalised records carry epoch
 * milliseconds. See `parseTimestamp` for the rule.
 */
import { z } from 'zod';

export type Labels = Record<string, string>;
export type Attributes = Record<string, unknown>;

export const EVENT_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
export type EventLevel = (typeof EVENT_LEVELS)[number];

export const SPAN_STATUSES = ['ok', 'error', 'unset'] as const;
export type SpanStatus = (typeof SPAN_STATUSES)[number];

/** Event kinds the built-in checks read; any other lowercase word is accepted too. */
export const KNOWN_EVENT_KINDS = [
  'log',
  'error',
  'permission',
  'connection',
  'config',
  'deploy',
  'directive',
  'anomaly',
] as const;

export interface MetricRecord {
  type: 'metric';
  ts: number;
  name: string;
  value: number;
  component: string;
  labels: Labels;
  /** The series' unit (UCUM: `ms`, `s`, `By`, `1`, `{request}`); absent when none was sent. */
  unit?: string;
}

export interface EventRecord {
  type: 'event';
  ts: number;
  kind: string;
  component: string;
  level: EventLevel;
  message: string;
  attrs: Attributes;
}

export interface SpanRecord {
  type: 'span';
  trace_id: string;
  span_id: string;
  parent_id: string | null;
  name: string;
  component: string;
  start: number;
  duration_ms: number;
  status: SpanStatus;
  attrs: Attributes;
}

export type TelemetryRecord = MetricRecord | EventRecord | SpanRecord;

/**
 * Epoch numbers below 1e11 are seconds (1e11 s is the year 5138), the rest milliseconds
 * (1e11 ms is 1973-03-03, so no real millisecond stamp is that small). Fractions are kept.
 * ISO 8601 strings without an offset are read as UTC.
 */
export const EPOCH_SECONDS_BELOW = 1e11;

const ISO_8601 =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(Z|[+-]\d{2}:?\d{2})?)?$/i;
const NUMERIC = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?$/i;

/** Earliest and latest instants accepted (1970 to 2200): anything else is a unit mistake. */
const MIN_MS = 0;
const MAX_MS = Date.UTC(2200, 0, 1);

export function parseTimestamp(input: unknown): number {
  if (typeof input === 'number') return epochToMs(input);
  if (typeof input !== 'string') throw new Error('timestamp must be an ISO 8601 string or an epoch number');
  const fast = plainUtcTimestamp(input);
  if (fast !== null) return checkRange(fast, input);
  const text = input.trim();
  if (NUMERIC.test(text)) return epochToMs(Number(text));
  const m = ISO_8601.exec(text);
  if (!m) throw new Error(`timestamp ${JSON.stringify(input)} is neither ISO 8601 nor an epoch number`);
  const [, y, mo, d, h = '00', mi = '00', s = '00', frac = '', zone] = m;
  // Date.parse would roll 31 February into March: a day must exist in its month.
  if (Number(d) < 1 || Number(d) > new Date(Date.UTC(Number(y), Number(mo), 0)).getUTCDate()) {
    throw new Error(`timestamp ${JSON.stringify(input)} is not a real date`);
  }
  let iso = `${y}-${mo}-${d}T${h}:${mi}:${s}`;
  if (frac) iso += `.${frac.slice(0, 3).padEnd(3, '0')}`;
  iso += zone ? normaliseZone(zone) : 'Z';
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) throw new Error(`timestamp ${JSON.stringify(input)} is not a real date`);
  return checkRange(ms, input);
}

const digit = (text: string, at: number): number => {
  const d = text.charCodeAt(at) - 48;
  return d >= 0 && d <= 9 ? d : NaN;
};
const digits = (text: string, at: number, n: number): number => {
  let value = 0;
  for (let i = 0; i < n; i++) value = value * 10 + digit(text, at + i);
  return value;
};

/**
 * `YYYY-MM-DD HH:MM:SS` (or with `T`, optional `.fff`, optional `Z`): the usual shape of
 * timestamps in files, read without a regular expression or an intermediate string. Returns null
 * for any other shape, which the general parser then reads.
 */
function plainUtcTimestamp(text: string): number | null {
  const n = text.length;
  if (n !== 19 && n !== 20 && n !== 23 && n !== 24) return null;
  const sep = text.charCodeAt(10);
  if (text.charCodeAt(4) !== 45 || text.charCodeAt(7) !== 45 || (sep !== 32 && sep !== 84)) return null;
  if (text.charCodeAt(13) !== 58 || text.charCodeAt(16) !== 58) return null;
  let end = 19;
  let millis = 0;
  if (n >= 23) {
    if (text.charCodeAt(19) !== 46) return null;
    millis = digits(text, 20, 3);
    end = 23;
  }
  if (n === end + 1 && text.charCodeAt(end) !== 90) return null;
  if (n !== end && n !== end + 1) return null;
  const year = digits(text, 0, 4);
  const month = digits(text, 5, 2);
  const day = digits(text, 8, 2);
  const hour = digits(text, 11, 2);
  const minute = digits(text, 14, 2);
  const second = digits(text, 17, 2);
  if (Number.isNaN(year + month + day + hour + minute + second + millis)) return null;
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return null;
  const ms = Date.UTC(year, month - 1, day, hour, minute, second, millis);
  // Date.UTC rolls 31 February over into March: a real date reads back the same day.
  return new Date(ms).getUTCDate() === day ? ms : null;
}

function normaliseZone(zone: string): string {
  if (zone.toUpperCase() === 'Z') return 'Z';
  return zone.includes(':') ? zone : `${zone.slice(0, 3)}:${zone.slice(3)}`;
}

function epochToMs(n: number): number {
  if (!Number.isFinite(n)) throw new Error('timestamp must be a finite number');
  const ms = Math.abs(n) < EPOCH_SECONDS_BELOW ? n * 1000 : n;
  return checkRange(Math.round(ms), n);
}

function checkRange(ms: number, original: unknown): number {
  if (ms < MIN_MS || ms > MAX_MS) {
    throw new Error(`timestamp ${JSON.stringify(original)} is outside 1970..2200`);
  }
  return ms;
}

// ---- validation schemas (zod is the source of truth; schemas/telemetry-record.schema.json is generated from it)

const MAX_NAME = 256;
const MAX_MESSAGE = 64 * 1024;

const timestamp = z
  .union([z.string(), z.number()])
  .describe('ISO 8601 (UTC when no offset), or epoch seconds (< 1e11) or milliseconds (>= 1e11)');
const name = z.string().min(1).max(MAX_NAME);
const component = z.string().min(1).max(MAX_NAME).describe('Emitting component, e.g. an agent or an MCP server');
const labelValue = z.union([z.string().max(MAX_NAME), z.number(), z.boolean()]);
const labels = z.record(z.string().min(1).max(MAX_NAME), labelValue);
const attrs = z.record(z.string(), z.unknown());

/** Longest unit accepted: the OpenTelemetry API's limit on an instrument's unit. */
export const MAX_UNIT = 63;
/** Printable ASCII without spaces, as UCUM's case-sensitive form is written. */
const UNIT_PATTERN = /^[!-~]*$/;
const UNIT_TOO_LONG = `must be at most ${MAX_UNIT} characters`;
const UNIT_NOT_UCUM = 'must be printable ASCII without spaces, a UCUM unit such as ms, s, By, 1 or {request}';

/** Why `unit` is not a unit Kiwi stores, or null. The empty string is no unit. */
export function unitProblem(unit: string): string | null {
  if (unit.length > MAX_UNIT) return UNIT_TOO_LONG;
  if (!UNIT_PATTERN.test(unit)) return UNIT_NOT_UCUM;
  return null;
}

const unitField = z
  .string({ error: 'must be a string such as "ms", "By" or "{request}"' })
  .max(MAX_UNIT, UNIT_TOO_LONG)
  .regex(UNIT_PATTERN, UNIT_NOT_UCUM)
  .describe(
    'Unit of the series, UCUM as in OpenTelemetry (ms, s, By, 1, {request}); empty or absent: none. ' +
      'The last non-empty unit sent for a series is the one it keeps',
  );

export const metricInput = z
  .object({
    type: z.literal('metric'),
    ts: timestamp,
    name: name.describe('Metric name, OpenTelemetry semantic-convention style (see docs/TELEMETRY.md)'),
    value: z.number().refine(Number.isFinite, 'value must be a finite number'),
    component,
    labels: labels.optional(),
    unit: unitField.optional(),
  })
  .strict();

export const eventInput = z
  .object({
    type: z.literal('event'),
    ts: timestamp,
    kind: z
      .string()
      .regex(/^[a-z][a-z0-9_.-]{0,63}$/, 'kind must be a lowercase word such as log, error, permission, connection, config, deploy')
      .describe(`Event kind; the checks read ${KNOWN_EVENT_KINDS.join(', ')}`),
    component,
    level: z.enum(EVENT_LEVELS).default('info'),
    message: z.string().max(MAX_MESSAGE),
    attrs: attrs.optional(),
  })
  .strict();

export const spanInput = z
  .object({
    type: z.literal('span'),
    trace_id: z.string().min(1).max(128),
    span_id: z.string().min(1).max(128),
    parent_id: z.string().min(1).max(128).nullable().optional(),
    name,
    component,
    start: timestamp,
    duration_ms: z.number().nonnegative().refine(Number.isFinite, 'duration_ms must be finite'),
    status: z.enum(SPAN_STATUSES).default('unset'),
    attrs: attrs.optional(),
  })
  .strict();

export const recordInput = z.discriminatedUnion('type', [metricInput, eventInput, spanInput]);
export type RecordInput = z.input<typeof recordInput>;

function canonicalLabels(input: Record<string, string | number | boolean> | undefined): Labels {
  const out: Labels = {};
  if (!input) return out;
  for (const key of Object.keys(input).sort()) out[key] = String(input[key]);
  return out;
}

const METRIC_KEYS = new Set(['type', 'ts', 'name', 'value', 'component', 'labels', 'unit']);
const isName = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= MAX_NAME;

/**
 * The common case, a well-formed metric, checked by hand: ingest spends most of its time here.
 * It accepts a subset of what `metricInput` accepts and returns null for anything else, which
 * then goes through zod (and its error messages). test/records.test.ts holds the two together.
 */
function fastMetric(raw: Record<string, unknown>): MetricRecord | null {
  for (const key in raw) if (!METRIC_KEYS.has(key)) return null;
  const { ts, name, value, component, labels, unit } = raw;
  if (typeof value !== 'number' || !Number.isFinite(value) || !isName(name) || !isName(component)) return null;
  if (typeof ts !== 'number' && typeof ts !== 'string') return null;
  if (unit !== undefined && (typeof unit !== 'string' || unitProblem(unit) !== null)) return null;
  let canonical: Labels = {};
  if (labels !== undefined) {
    if (labels === null || typeof labels !== 'object' || Array.isArray(labels)) return null;
    const keys = Object.keys(labels);
    if (keys.length > 0) {
      keys.sort();
      canonical = {};
      for (const key of keys) {
        const v = (labels as Record<string, unknown>)[key];
        if (key.length === 0 || key.length > MAX_NAME || typeof v !== 'string' || v.length > MAX_NAME) return null;
        canonical[key] = v;
      }
    }
  }
  let ms: number;
  try {
    ms = parseTimestamp(ts);
  } catch {
    return null;
  }
  const record: MetricRecord = { type: 'metric', ts: ms, name, value, component, labels: canonical };
  if (unit) record.unit = unit as string;
  return record;
}

/** Validates one decoded record and returns its normalised form, or throws with a readable reason. */
/**
 * How far ahead of this machine's clock a record may be: clocks drift by seconds, but a day
 * ahead is a unit or time-zone mistake, and stored it would stand for the newest data of its
 * component for as long (hiding its silence from health, stretching analysis windows).
 */
export const FUTURE_TOLERANCE_MS = 86_400_000;

/** Why `ms` is too far ahead of the clock to store, or null. */
export function tooFarAhead(ms: number, now: number = Date.now()): string | null {
  if (ms <= now + FUTURE_TOLERANCE_MS) return null;
  return `${new Date(ms).toISOString()} is more than a day ahead of this machine's clock (${new Date(now).toISOString()}); check its unit or time zone`;
}

/** A record from its JSONL/JSON form, checked and canonical; throws `field: reason`. `now` is the clock the time is held to. */
export function normaliseRecord(raw: unknown, now: number = Date.now()): TelemetryRecord {
  const record = normaliseShape(raw);
  const ahead = tooFarAhead(record.type === 'span' ? record.start : record.ts, now);
  if (ahead) throw new Error(`${record.type === 'span' ? 'start' : 'ts'}: ${ahead}`);
  return record;
}

function normaliseShape(raw: unknown): TelemetryRecord {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new Error('record must be a JSON object');
  }
  if ((raw as { type?: unknown }).type === 'metric') {
    const fast = fastMetric(raw as Record<string, unknown>);
    if (fast) return fast;
  }
  const type = (raw as { type?: unknown }).type;
  if (type !== 'metric' && type !== 'event' && type !== 'span') {
    throw new Error(`"type" must be "metric", "event" or "span" (got ${JSON.stringify(type) ?? 'nothing'})`);
  }
  const parsed = recordInput.safeParse(raw);
  if (!parsed.success) throw new Error(formatZodError(parsed.error));
  const r = parsed.data;
  switch (r.type) {
    case 'metric': {
      const metric: MetricRecord = {
        type: 'metric',
        ts: withField('ts', () => parseTimestamp(r.ts)),
        name: r.name,
        value: r.value,
        component: r.component,
        labels: canonicalLabels(r.labels),
      };
      if (r.unit) metric.unit = r.unit;
      return metric;
    }
    case 'event':
      return {
        type: 'event',
        ts: withField('ts', () => parseTimestamp(r.ts)),
        kind: r.kind,
        component: r.component,
        level: r.level,
        message: r.message,
        attrs: r.attrs ?? {},
      };
    case 'span':
      return {
        type: 'span',
        trace_id: r.trace_id,
        span_id: r.span_id,
        parent_id: r.parent_id ?? null,
        name: r.name,
        component: r.component,
        start: withField('start', () => parseTimestamp(r.start)),
        duration_ms: r.duration_ms,
        status: r.status,
        attrs: r.attrs ?? {},
      };
  }
}

function withField<T>(field: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new Error(`${field}: ${(err as Error).message}`);
  }
}

/** One line per problem, each naming the field path: `labels.host: expected string`. */
export function formatZodError(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const path = issue.path.map(String).join('.');
      return path ? `${path}: ${issue.message}` : issue.message;
    })
    .join('; ');
}
