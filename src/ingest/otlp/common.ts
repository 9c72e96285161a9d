/** Conversions shared by the three signals: values, attributes, ids, times, resources. */
import type { Attributes, Labels } from '../records.js';
import type { AnyValue, Int64, KeyValue, Resource } from './types.js';

/** Same bounds as the file record contract (records.ts). */
export const MAX_NAME = 256;
export const MAX_MESSAGE = 64 * 1024;
const MIN_MS = 0;
const MAX_MS = Date.UTC(2200, 0, 1);
const MAX_DEPTH = 16;
const TWO_32 = 4294967296;

export const UNKNOWN_SERVICE = 'unknown_service';

/** Resource attributes copied onto spans and events (besides service.name, which is the component). */
export const KEPT_RESOURCE_ATTRIBUTES = [
  'service.version',
  'service.namespace',
  'service.instance.id',
  'host.name',
  'deployment.environment.name',
  'deployment.environment',
] as const;

/** An unsigned 64-bit integer as a double (exact below 2^53, within 1 part in 2^53 above). */
export function uint64(value: Int64 | null | undefined): number {
  if (value === null || value === undefined) return 0;
  if (typeof value === 'number') return value;
  return (value.high >>> 0) * TWO_32 + (value.low >>> 0);
}

/** A signed 64-bit integer: a number when it is safe, else its decimal string. */
export function int64Value(value: Int64): number | string {
  if (typeof value === 'number') return value;
  const n = (value.high | 0) * TWO_32 + (value.low >>> 0);
  return Number.isSafeInteger(n) ? n : value.toString();
}

/** Nanoseconds since the epoch to milliseconds (fractional). */
export function nanosToMs(value: Int64 | null | undefined): number {
  return uint64(value) / 1e6;
}

/** `end - start` in milliseconds, computed on the two 32-bit halves to keep sub-microsecond precision. */
export function durationMs(start: Int64 | null | undefined, end: Int64 | null | undefined): number {
  if (typeof start === 'object' && start && typeof end === 'object' && end) {
    const high = (end.high >>> 0) - (start.high >>> 0);
    const low = (end.low >>> 0) - (start.low >>> 0);
    return (high * TWO_32 + low) / 1e6;
  }
  return (uint64(end) - uint64(start)) / 1e6;
}

export function inEpochRange(ms: number): boolean {
  return ms >= MIN_MS && ms <= MAX_MS;
}

/** A trace or span id as lowercase hex, or null when absent or all zero. */
export function idHex(bytes: Uint8Array | null | undefined): string | null {
  if (!bytes || bytes.length === 0) return null;
  let zero = true;
  for (const b of bytes) {
    if (b !== 0) {
      zero = false;
      break;
    }
  }
  if (zero) return null;
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** An OTLP AnyValue as plain JSON: bytes become base64, non-finite doubles their name. */
export function anyValueToJson(value: AnyValue | null | undefined, depth = 0): unknown {
  if (!value) return null;
  if (value.stringValue !== null && value.stringValue !== undefined) return value.stringValue;
  if (value.boolValue !== null && value.boolValue !== undefined) return value.boolValue;
  if (value.intValue !== null && value.intValue !== undefined) return int64Value(value.intValue);
  if (value.doubleValue !== null && value.doubleValue !== undefined) {
    return Number.isFinite(value.doubleValue) ? value.doubleValue : String(value.doubleValue);
  }
  if (depth >= MAX_DEPTH) return '[nested too deeply]';
  if (value.arrayValue) return (value.arrayValue.values ?? []).map((v) => anyValueToJson(v, depth + 1));
  if (value.kvlistValue) return attributesToObject(value.kvlistValue.values, depth + 1);
  if (value.bytesValue) return Buffer.from(value.bytesValue).toString('base64');
  return null;
}

export function attributesToObject(list: readonly KeyValue[] | null | undefined, depth = 0): Attributes {
  const out: Attributes = {};
  if (!list) return out;
  for (const kv of list) {
    if (!kv.key) continue;
    out[kv.key] = anyValueToJson(kv.value, depth);
  }
  return out;
}

/** A value as a metric label: strings as they are, others as JSON; cut at 256 characters. */
export function labelValue(value: AnyValue | null | undefined): string {
  const json = anyValueToJson(value);
  const text = typeof json === 'string' ? json : JSON.stringify(json);
  return text.length > MAX_NAME ? text.slice(0, MAX_NAME) : text;
}

/** Point attributes as canonical labels (keys sorted), plus `extra` (e.g. service.instance.id). */
export function attributesToLabels(list: readonly KeyValue[] | null | undefined, extra: Labels): Labels {
  const entries: [string, string][] = [];
  if (list) {
    for (const kv of list) {
      if (!kv.key || kv.key.length > MAX_NAME) continue;
      entries.push([kv.key, labelValue(kv.value)]);
    }
  }
  for (const key in extra) if (!list?.some((kv) => kv.key === key)) entries.push([key, extra[key]!]);
  if (entries.length === 0) return {};
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const out: Labels = {};
  for (const [k, v] of entries) out[k] = v;
  return out;
}

export interface ResourceInfo {
  /** `service.name`, or `unknown_service`. */
  component: string;
  /** The kept resource attributes (KEPT_RESOURCE_ATTRIBUTES) present on the resource. */
  kept: Attributes;
  /** Labels every metric series of this resource carries (service.instance.id when present). */
  seriesLabels: Labels;
  /** Canonical JSON of every resource attribute: the identity of the emitting process. */
  identity: string;
}

export function resourceInfo(resource: Resource | null | undefined): ResourceInfo {
  const attrs = attributesToObject(resource?.attributes);
  const name = attrs['service.name'];
  let component = typeof name === 'string' && name.trim() ? name.trim() : UNKNOWN_SERVICE;
  if (component.length > MAX_NAME) component = component.slice(0, MAX_NAME);
  const kept: Attributes = {};
  for (const key of KEPT_RESOURCE_ATTRIBUTES) if (attrs[key] !== undefined && attrs[key] !== null) kept[key] = attrs[key];
  const seriesLabels: Labels = {};
  const instance = attrs['service.instance.id'];
  if (instance !== undefined && instance !== null) seriesLabels['service.instance.id'] = String(instance).slice(0, MAX_NAME);
  const identity = JSON.stringify(Object.keys(attrs).sort().map((k) => [k, attrs[k]]));
  return { component, kept, seriesLabels, identity };
}

/** Collects why items were rejected: a count and the first few reasons. */
export class Rejections {
  count = 0;
  private readonly reasons: string[] = [];
  private omitted = 0;

  constructor(private readonly limit = 5) {}

  add(reason: string, count = 1): void {
    this.count += count;
    if (this.reasons.length < this.limit) this.reasons.push(reason);
    else this.omitted++;
  }

  /** Empty when nothing was noted; reasons noted with a count of 0 are warnings. */
  message(item: readonly [string, string]): string {
    if (this.reasons.length === 0) return '';
    const more = this.omitted > 0 ? `; and ${this.omitted} more` : '';
    const head = this.count > 0 ? `${this.count} ${this.count === 1 ? item[0] : item[1]} rejected: ` : '';
    return `${head}${this.reasons.join('; ')}${more}`;
  }
}
