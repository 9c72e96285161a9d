/**
 * Kiwi's telemetry about itself, written into its own store under component `kiwi`: a span and
 * metric points for every MCP operation it serves, and a periodic sample of its memory,
 * event-loop delay and store size. Kiwi is then a component like any other.
 *
 * Records are buffered and written in one transaction at most `flushMs` after the first of them
 * (and at once when the buffer is full or the telemetry stops): a transaction per call would
 * cost more than the call it observes. Kiwi's view of itself is therefore up to `flushMs` old.
 */
import { randomBytes } from 'node:crypto';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { log } from '../log.js';
import type { Store } from '../store/store.js';
import type { TelemetryRecord } from './records.js';

export const SELF_COMPONENT = 'kiwi';

export const SELF_METRICS = {
  operationDuration: 'mcp.server.operation.duration',
  operationErrors: 'mcp.server.operation.errors',
  memoryRss: 'process.memory.usage',
  heapUsed: 'v8js.memory.heap.used',
  eventLoopDelayP99: 'nodejs.eventloop.delay.p99',
  eventLoopDelayMean: 'nodejs.eventloop.delay.mean',
  storeSize: 'kiwi.store.size',
} as const;

/** The unit of each of Kiwi's own series (UCUM, as the conventions give them; docs/TELEMETRY.md). */
export const SELF_METRIC_UNITS: Readonly<Record<(typeof SELF_METRICS)[keyof typeof SELF_METRICS], string>> = {
  [SELF_METRICS.operationDuration]: 's',
  [SELF_METRICS.operationErrors]: '1',
  [SELF_METRICS.memoryRss]: 'By',
  [SELF_METRICS.heapUsed]: 'By',
  [SELF_METRICS.eventLoopDelayP99]: 's',
  [SELF_METRICS.eventLoopDelayMean]: 's',
  [SELF_METRICS.storeSize]: 'By',
};

export interface OperationObservation {
  /** JSON-RPC method, e.g. `tools/call`. */
  method: string;
  /** For `tools/call`: the tool's name. */
  tool?: string;
  start: number;
  durationMs: number;
  outcome: 'ok' | 'error';
  /** A short class of failure: `tool_error`, `invalid_params`, or a JSON-RPC error code. */
  errorType?: string;
  errorMessage?: string;
  sessionId?: string;
}

/** The `error.type` of a call whose arguments the tool's schema refused. */
export const CALLER_ERROR = 'invalid_params';

/** Calls and samples buffered before a write is forced, whatever the flush delay. */
const MAX_BUFFERED = 1_000;

export class SelfTelemetry {
  private timer: NodeJS.Timeout | null = null;
  private flushTimer: NodeJS.Timeout | null = null;
  /**
   * Calls are kept as their observations and turned into records when written: one small object
   * a call survives the young-generation collections until the flush, not the eight of its records.
   */
  private operations: OperationObservation[] = [];
  private samples: TelemetryRecord[] = [];
  private stopped = false;
  /** Last timestamp written per per-call series: a point is one value per millisecond, so calls ending together get the next one. */
  private readonly lastPointTs = new Map<string, number>();
  private readonly loopDelay: IntervalHistogram;
  private readonly ids = new RandomHexIds();

  constructor(
    private readonly store: Store,
    private readonly intervalMs: number,
    /** Longest a record waits in the buffer; 0 writes each call's records at once. */
    private readonly flushMs = 100,
  ) {
    this.loopDelay = monitorEventLoopDelay({ resolution: 20 });
  }

  start(): void {
    if (this.timer) return;
    this.stopped = false;
    this.loopDelay.enable();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    this.timer.unref();
  }

  /** Stops sampling and writes what is buffered; later records are written at once. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.loopDelay.disable();
    this.stopped = true;
    this.flush();
  }

  /** Writes the buffered records now. */
  flush(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    if (this.operations.length === 0 && this.samples.length === 0) return;
    const records = this.samples;
    for (const op of this.operations) this.appendOperationRecords(op, records);
    this.operations = [];
    this.samples = [];
    try {
      this.store.writeRecords(records);
    } catch (err) {
      // Losing a sample of ourselves must never take the server down.
      log.warn('could not record self-telemetry', { error: (err as Error).message, records: records.length });
    }
  }

  recordOperation(op: OperationObservation): void {
    this.operations.push(op);
    this.buffer();
  }

  /**
   * A span and a duration point for the call, and on failure an error point and event. Arguments
   * refused by the tool's schema are the caller's mistake, as a 4xx is for an HTTP server: the
   * span keeps `error.type` but is not failed, and the event is a warning log, not an error, so
   * Kiwi's health and a root-cause analysis do not blame Kiwi for them.
   */
  private appendOperationRecords(op: OperationObservation, records: TelemetryRecord[]): void {
    const finished = Math.round(op.start + op.durationMs);
    const callersMistake = op.errorType === CALLER_ERROR;
    const labels: Record<string, string> = { 'mcp.method.name': op.method };
    if (op.tool) labels['gen_ai.tool.name'] = op.tool;
    const attrs: Record<string, unknown> = { ...labels };
    if (op.sessionId) attrs['mcp.session.id'] = op.sessionId;
    if (op.errorType) attrs['error.type'] = op.errorType;
    const traceId = this.ids.timeOrdered(op.start);
    records.push(
      {
        type: 'span',
        trace_id: traceId,
        span_id: this.ids.next(8),
        parent_id: null,
        name: op.tool ? `${op.method} ${op.tool}` : op.method,
        component: SELF_COMPONENT,
        start: op.start,
        duration_ms: op.durationMs,
        status: callersMistake ? 'ok' : op.outcome,
        attrs,
      },
      {
        type: 'metric',
        ts: this.uniqueTs(`${SELF_METRICS.operationDuration}\u0000${op.method}\u0000${op.tool ?? ''}`, finished),
        name: SELF_METRICS.operationDuration,
        value: op.durationMs / 1000,
        component: SELF_COMPONENT,
        labels: sortKeys(labels),
        unit: SELF_METRIC_UNITS[SELF_METRICS.operationDuration],
      },
    );
    if (op.outcome === 'error') {
      records.push(
        {
          type: 'metric',
          ts: this.uniqueTs(`${SELF_METRICS.operationErrors}\u0000${op.method}\u0000${op.tool ?? ''}\u0000${op.errorType ?? ''}`, finished),
          name: SELF_METRICS.operationErrors,
          value: 1,
          component: SELF_COMPONENT,
          labels: sortKeys({ ...labels, 'error.type': op.errorType ?? 'error' }),
          unit: SELF_METRIC_UNITS[SELF_METRICS.operationErrors],
        },
        {
          type: 'event',
          ts: finished,
          kind: callersMistake ? 'log' : 'error',
          component: SELF_COMPONENT,
          level: callersMistake ? 'warn' : 'error',
          message: `${op.tool ?? op.method} ${callersMistake ? 'refused its arguments' : 'failed'}: ${(op.errorMessage ?? op.errorType ?? 'error').slice(0, 500)}`,
          attrs: { ...attrs, trace_id: traceId },
        },
      );
    }
  }

  private uniqueTs(series: string, ts: number): number {
    const last = this.lastPointTs.get(series);
    const unique = last !== undefined && ts <= last ? last + 1 : ts;
    this.lastPointTs.set(series, unique);
    return unique;
  }

  /** One sample of Kiwi's own process; also called by the interval timer. */
  sample(now: number = Date.now()): void {
    const memory = process.memoryUsage();
    const point = (name: keyof typeof SELF_METRIC_UNITS, value: number): TelemetryRecord => ({
      type: 'metric',
      ts: now,
      name,
      value,
      component: SELF_COMPONENT,
      labels: {},
      unit: SELF_METRIC_UNITS[name],
    });
    const records = [
      point(SELF_METRICS.memoryRss, memory.rss),
      point(SELF_METRICS.heapUsed, memory.heapUsed),
      point(SELF_METRICS.storeSize, this.store.sizeBytes()),
    ];
    if (this.loopDelay.count > 0) {
      records.push(
        point(SELF_METRICS.eventLoopDelayP99, this.loopDelay.percentile(99) / 1e9),
        point(SELF_METRICS.eventLoopDelayMean, this.loopDelay.mean / 1e9),
      );
      this.loopDelay.reset();
    }
    for (const record of records) this.samples.push(record);
    this.buffer();
  }

  /** Writes now, or makes sure a write comes within the flush delay. */
  private buffer(): void {
    if (this.stopped || this.flushMs === 0 || this.operations.length + this.samples.length >= MAX_BUFFERED) return this.flush();
    if (!this.flushTimer) {
      this.flushTimer = setTimeout(() => this.flush(), this.flushMs);
      // A host that exits without closing Kiwi loses at most this buffer, never its own exit.
      this.flushTimer.unref();
    }
  }
}

/** Random hex ids cut from a pooled buffer: one call into the system's generator per 4 KiB, not one per id. */
class RandomHexIds {
  private pool = Buffer.alloc(0);
  private offset = 0;

  /**
   * A 16-byte trace id that begins with the time (6 bytes of epoch milliseconds, then 10 random
   * bytes, as UUIDv7 and ULID do): Kiwi's own spans then land at the end of the spans' primary
   * key instead of on a random page of it: 4 µs a span instead of 20 with 100,000 spans stored.
   */
  timeOrdered(epochMs: number): string {
    return Math.max(0, Math.floor(epochMs)).toString(16).padStart(12, '0').slice(-12) + this.next(10);
  }

  next(bytes: number): string {
    if (this.offset + bytes > this.pool.length) {
      this.pool = randomBytes(4096);
      this.offset = 0;
    }
    const id = this.pool.toString('hex', this.offset, this.offset + bytes);
    this.offset += bytes;
    return id;
  }
}

function sortKeys(labels: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
