/**
 * OTLP wire formats. Protobuf is decoded by protobufjs code generated (pbjs, static module) from
 * the official opentelemetry-proto definitions, as shipped by the OpenTelemetry JS project in
 * `@opentelemetry/otlp-transformer` 0.214.0 (`build/src/generated/root.js`; later releases
 * replaced it with hand-written serializers that only encode). Nothing here decodes by hand.
 *
 * OTLP/JSON is the proto3 JSON mapping with two OTLP rules: trace and span ids are hex strings
 * (not base64), and enums are integers. It is read with `JSON.parse`, the ids are turned into
 * bytes, and the generated `fromObject` builds the same message classes the protobuf path does.
 */
import { createRequire } from 'node:module';
import protobuf from 'protobufjs';
import type { RequestBySignal, Signal } from './types.js';

interface Codec<T> {
  decode(bytes: Uint8Array): T;
  fromObject(object: Record<string, unknown>): T;
  encode(message: object): { finish(): Uint8Array };
}

interface CollectorPackage {
  v1: Record<string, Codec<unknown> | undefined>;
}

interface GeneratedRoot {
  opentelemetry: { proto: { collector: { trace: CollectorPackage; metrics: CollectorPackage; logs: CollectorPackage } } };
}

const require = createRequire(import.meta.url);
const generated = require('@opentelemetry/otlp-transformer/build/src/generated/root.js') as GeneratedRoot;
const collector = generated.opentelemetry.proto.collector;

interface SignalCodecs {
  request: Codec<unknown>;
  response: Codec<unknown>;
  /** Field of the response's partial_success that counts what was rejected. */
  rejectedField: string;
  /** Top-level field of the request (lowerCamelCase, as OTLP/JSON spells it). */
  topField: string;
  /** The unit rejected items are counted in, for messages: [one, many]. */
  item: readonly [string, string];
}

function codecs(pkg: CollectorPackage, name: string, rejectedField: string, topField: string, item: readonly [string, string]): SignalCodecs {
  const request = pkg.v1[`Export${name}ServiceRequest`];
  const response = pkg.v1[`Export${name}ServiceResponse`];
  if (!request || !response) throw new Error(`generated OTLP code lacks Export${name}ServiceRequest/Response`);
  return { request, response, rejectedField, topField, item };
}

export const SIGNALS: Record<Signal, SignalCodecs> = {
  traces: codecs(collector.trace, 'Trace', 'rejectedSpans', 'resourceSpans', ['span', 'spans']),
  metrics: codecs(collector.metrics, 'Metrics', 'rejectedDataPoints', 'resourceMetrics', ['data point', 'data points']),
  logs: codecs(collector.logs, 'Logs', 'rejectedLogRecords', 'resourceLogs', ['log record', 'log records']),
};

/** A body that is not the message it claims to be: answered with 400. */
export class MalformedRequestError extends Error {}

export function decodeProtobuf<S extends Signal>(signal: S, body: Uint8Array): RequestBySignal[S] {
  try {
    return SIGNALS[signal].request.decode(body) as RequestBySignal[S];
  } catch (err) {
    throw new MalformedRequestError(`body is not a valid protobuf Export${exportName(signal)}ServiceRequest: ${(err as Error).message}`);
  }
}

export function decodeJson<S extends Signal>(signal: S, body: Buffer): RequestBySignal[S] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new MalformedRequestError(`body is not valid JSON: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new MalformedRequestError(`body must be a JSON object (an Export${exportName(signal)}ServiceRequest)`);
  }
  const object = parsed as Record<string, unknown>;
  const { topField } = SIGNALS[signal];
  const snake = topField.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  if (object[topField] === undefined && object[snake] !== undefined) {
    throw new MalformedRequestError(`OTLP/JSON field names are lowerCamelCase: "${topField}", not "${snake}"`);
  }
  hexIdsToBytes(signal, object);
  try {
    return SIGNALS[signal].request.fromObject(object) as RequestBySignal[S];
  } catch (err) {
    // fromObject names the offending field, e.g. ".opentelemetry.proto.trace.v1.ResourceSpans.scopeSpans: array expected"
    throw new MalformedRequestError(`body is not a valid OTLP/JSON Export${exportName(signal)}ServiceRequest: ${(err as Error).message}`);
  }
}

function exportName(signal: Signal): string {
  return signal === 'traces' ? 'Trace' : signal === 'metrics' ? 'Metrics' : 'Logs';
}

const HEX = /^(?:[0-9a-fA-F]{2})*$/;

/**
 * OTLP/JSON ids are hex; the generated code reads strings as base64. Each id field is replaced by
 * its bytes; a string that is not hex becomes empty bytes, which the mapping rejects as an
 * invalid id (a partial success, naming the record).
 */
function idBytes(holder: unknown, ...fields: string[]): void {
  if (holder === null || typeof holder !== 'object') return;
  const record = holder as Record<string, unknown>;
  for (const field of fields) {
    const value = record[field];
    if (typeof value === 'string') record[field] = HEX.test(value) ? Buffer.from(value, 'hex') : Buffer.alloc(0);
  }
}

function each(value: unknown, fn: (item: unknown) => void): void {
  if (Array.isArray(value)) for (const item of value) fn(item);
}

function field(holder: unknown, name: string): unknown {
  return holder !== null && typeof holder === 'object' ? (holder as Record<string, unknown>)[name] : undefined;
}

function hexIdsToBytes(signal: Signal, request: Record<string, unknown>): void {
  if (signal === 'traces') {
    each(request.resourceSpans, (rs) =>
      each(field(rs, 'scopeSpans'), (ss) =>
        each(field(ss, 'spans'), (span) => {
          idBytes(span, 'traceId', 'spanId', 'parentSpanId');
          each(field(span, 'links'), (link) => idBytes(link, 'traceId', 'spanId'));
        }),
      ),
    );
  } else if (signal === 'logs') {
    each(request.resourceLogs, (rl) =>
      each(field(rl, 'scopeLogs'), (sl) => each(field(sl, 'logRecords'), (record) => idBytes(record, 'traceId', 'spanId'))),
    );
  } else {
    each(request.resourceMetrics, (rm) =>
      each(field(rm, 'scopeMetrics'), (sm) =>
        each(field(sm, 'metrics'), (metric) => {
          for (const kind of ['gauge', 'sum', 'histogram', 'exponentialHistogram', 'summary']) {
            each(field(field(metric, kind), 'dataPoints'), (point) => each(field(point, 'exemplars'), (e) => idBytes(e, 'traceId', 'spanId')));
          }
        }),
      ),
    );
  }
}

// ---------------------------------------------------------------- responses

export type WireFormat = 'protobuf' | 'json';

/** The Export*ServiceResponse: empty on full success, with partial_success when some was rejected. */
export function encodeResponse(signal: Signal, format: WireFormat, rejected: number, errorMessage: string): Buffer {
  const { response, rejectedField } = SIGNALS[signal];
  const partial = rejected > 0 || errorMessage ? { [rejectedField]: rejected, errorMessage } : null;
  if (format === 'json') {
    // int64 fields are decimal strings in OTLP/JSON.
    const body = partial ? { partialSuccess: { [rejectedField]: String(rejected), errorMessage } } : {};
    return Buffer.from(JSON.stringify(body));
  }
  const message = partial ? { partialSuccess: partial } : {};
  return Buffer.from(response.encode(message).finish());
}

/** google.rpc.Status (googleapis google/rpc/status.proto), the body OTLP/HTTP requires for 4xx and 5xx. */
const statusType = new protobuf.Type('Status')
  .add(new protobuf.Field('code', 1, 'int32'))
  .add(new protobuf.Field('message', 2, 'string'));
new protobuf.Root().define('google.rpc').add(statusType);

/** gRPC status codes used in Status bodies. */
export const RPC_CODE = { invalidArgument: 3, resourceExhausted: 8, unimplemented: 12, internal: 13, unavailable: 14, unauthenticated: 16, permissionDenied: 7, notFound: 5 } as const;

export function encodeStatus(format: WireFormat, code: number, message: string): Buffer {
  if (format === 'json') return Buffer.from(JSON.stringify({ code, message }));
  return Buffer.from(statusType.encode(statusType.create({ code, message })).finish());
}

/** Test and bench helper: the protobuf bytes of a request given in OTLP/JSON form. */
export function encodeRequestFromJson(signal: Signal, json: unknown): Uint8Array {
  const object = structuredClone(json) as Record<string, unknown>;
  hexIdsToBytes(signal, object);
  const { request } = SIGNALS[signal];
  return request.encode(request.fromObject(object) as object).finish();
}
