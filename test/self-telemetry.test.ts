import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SELF_COMPONENT, SELF_METRICS, SelfTelemetry } from '../src/ingest/self.js';
import { Store } from '../src/store/store.js';
import { pollUntil } from './helpers/poll.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir();

describe('SelfTelemetry', () => {
  it('keeps every call: calls ending in the same millisecond get their own points', () => {
    const store = new Store(join(tempDir(), 'kiwi.db'));
    const telemetry = new SelfTelemetry(store, 60_000);
    const call = { method: 'tools/call', tool: 'list_series', start: 1_800_000_000_000, durationMs: 2 };
    for (let i = 0; i < 5; i++) telemetry.recordOperation({ ...call, outcome: 'ok' });
    telemetry.recordOperation({ ...call, outcome: 'error', errorType: 'tool_error', errorMessage: 'boom' });
    telemetry.recordOperation({ ...call, outcome: 'error', errorType: 'tool_error', errorMessage: 'boom' });
    telemetry.flush();
    const duration = store.findSeries({ name: SELF_METRICS.operationDuration, component: SELF_COMPONENT }).series[0]!;
    expect(store.readPoints(duration.id, 0, 2e12).ts).toHaveLength(7);
    const errors = store.findSeries({ name: SELF_METRICS.operationErrors, component: SELF_COMPONENT }).series[0]!;
    expect(store.readPoints(errors.id, 0, 2e12).values).toEqual([1, 1]);
    expect(store.listSpans({ component: SELF_COMPONENT }, 100)).toHaveLength(7);
    expect(store.searchEvents({ kinds: ['error'], component: SELF_COMPONENT }, 10).events).toHaveLength(2); // each failed call, its own trace
    store.close();
  });

  it('buffers calls and writes them together within the flush delay, and everything left when it stops', async () => {
    const store = new Store(join(tempDir(), 'kiwi.db'));
    const telemetry = new SelfTelemetry(store, 60_000, 50);
    const spans = () => store.listSpans({ component: SELF_COMPONENT }, 100).length;
    const call = { method: 'tools/call', tool: 'list_series', start: Date.now(), durationMs: 1, outcome: 'ok' as const };
    for (let i = 0; i < 3; i++) telemetry.recordOperation(call);
    expect(spans()).toBe(0); // nothing written on the call's path
    expect(await pollUntil(spans, (n) => n === 3, { timeoutMs: 2_000 })).toBe(3);

    telemetry.recordOperation(call);
    telemetry.stop(); // does not wait for the timer
    expect(spans()).toBe(4);
    telemetry.recordOperation(call); // after stop: written at once
    expect(spans()).toBe(5);
    store.close();
  });

  it('writes at once with a flush delay of 0, and when the buffer is full whatever the delay', () => {
    const store = new Store(join(tempDir(), 'kiwi.db'));
    const spans = () => store.listSpans({ component: SELF_COMPONENT }, 5_000).length;
    const call = { method: 'tools/call', tool: 'list_series', start: Date.now(), durationMs: 1, outcome: 'ok' as const };
    const immediate = new SelfTelemetry(store, 60_000, 0);
    immediate.recordOperation(call);
    expect(spans()).toBe(1);

    const patient = new SelfTelemetry(store, 60_000, 3_600_000);
    for (let i = 0; i < 999; i++) patient.recordOperation(call);
    expect(spans()).toBe(1);
    patient.recordOperation(call); // the 1,000th call
    expect(spans()).toBe(1001);
    patient.stop();
    store.close();
  });

  it('gives each call a distinct 16-byte trace id that begins with its start time, so later calls sort after earlier ones', () => {
    const store = new Store(join(tempDir(), 'kiwi.db'));
    const telemetry = new SelfTelemetry(store, 60_000, 0);
    const starts = [1_800_000_000_000, 1_800_000_000_000, 1_800_000_000_001, 1_800_000_360_000];
    for (const start of starts) telemetry.recordOperation({ method: 'tools/call', tool: 'list_series', start, durationMs: 1, outcome: 'ok' });
    const spans = store.listSpans({ component: SELF_COMPONENT }, 10).sort((a, b) => a.start - b.start);
    const ids = spans.map((s) => s.trace_id);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(new Set(ids).size).toBe(starts.length);
    expect(ids.map((id) => parseInt(id.slice(0, 12), 16))).toEqual(starts);
    expect([...ids].sort()).toEqual(ids.slice(0, 2).sort().concat(ids.slice(2)));
    store.close();
  });

  it('never takes the caller down when the store cannot be written', () => {
    const store = new Store(join(tempDir(), 'kiwi.db'));
    const telemetry = new SelfTelemetry(store, 60_000, 0);
    store.close();
    expect(() => telemetry.recordOperation({ method: 'tools/call', start: Date.now(), durationMs: 1, outcome: 'ok' })).not.toThrow();
  });
});
