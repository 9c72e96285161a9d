import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SELF_COMPONENT, SELF_METRICS, SelfTelemetry } from '../src/ingest/self.js';
import { Store } from '../src/store/store.js';
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
    const duration = store.findSeries({ name: SELF_METRICS.operationDuration, component: SELF_COMPONENT }).series[0]!;
    expect(store.readPoints(duration.id, 0, 2e12).ts).toHaveLength(7);
    const errors = store.findSeries({ name: SELF_METRICS.operationErrors, component: SELF_COMPONENT }).series[0]!;
    expect(store.readPoints(errors.id, 0, 2e12).values).toEqual([1, 1]);
    expect(store.listSpans({ component: SELF_COMPONENT }, 100)).toHaveLength(7);
    expect(store.searchEvents({ kinds: ['error'], component: SELF_COMPONENT }, 10).events).toHaveLength(2); // each failed call, its own trace
    store.close();
  });
});
