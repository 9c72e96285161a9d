import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AnomalyStore, type AnomalyFinding } from '../src/store/anomalies.js';
import { Store } from '../src/store/store.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir();
const T0 = Date.UTC(2026, 0, 1);

const finding = (over: Partial<AnomalyFinding> = {}): AnomalyFinding => ({
  fingerprint: 'latency_spike|mcp-search',
  type: 'latency_spike',
  severity: 'warning',
  component: 'mcp-search',
  series_id: null,
  description: 'p95 latency 5.1x its baseline',
  start_ts: T0,
  end_ts: T0 + 60_000,
  score: 0.7,
  evidence: { factor: 5.1 },
  suggested_action: 'auto_heal_anomaly',
  ...over,
});

describe('AnomalyStore', () => {
  it('opens an anomaly once and updates it while it lasts, keeping its id and onset', () => {
    const store = new Store(join(tempDir(), 'kiwi.db'));
    const anomalies = new AnomalyStore(store);
    const first = anomalies.record(finding(), T0 + 60_000);
    expect(first.created).toBe(true);
    expect(first.anomaly.id).toMatch(/^an_[0-9a-f]{12}$/);
    const again = anomalies.record(finding({ start_ts: T0 + 120_000, end_ts: T0 + 180_000, severity: 'info', score: 0.9, evidence: { factor: 6 } }));
    expect(again.created).toBe(false);
    expect(again.anomaly).toMatchObject({ id: first.anomaly.id, start_ts: T0, end_ts: T0 + 180_000, severity: 'warning', score: 0.9, evidence: { factor: 6 } });
    expect(anomalies.list({}, 10).total).toBe(1);
    store.close();
  });

  it('opens a new anomaly after the last one was resolved, and audits status changes', () => {
    const store = new Store(join(tempDir(), 'kiwi.db'));
    const anomalies = new AnomalyStore(store);
    const { anomaly } = anomalies.record(finding());
    expect(anomalies.setStatus(anomaly.id, 'false_positive', 'alice', 'nightly batch job')).toMatchObject({ status: 'false_positive', note: 'nightly batch job' });
    expect(anomalies.falsePositives('latency_spike|mcp-search').map((a) => a.id)).toEqual([anomaly.id]);
    const next = anomalies.record(finding({ start_ts: T0 + 3_600_000 }));
    expect(next.created).toBe(true);
    expect(next.anomaly.id).not.toBe(anomaly.id);
    expect(anomalies.list({ statuses: ['open'] }, 10).anomalies.map((a) => a.id)).toEqual([next.anomaly.id]);
    expect(anomalies.list({ component: 'nope' }, 10).total).toBe(0);
    expect(store.listAudit(5)[0]).toMatchObject({ actor: 'alice', action: 'anomaly.update', target: anomaly.id, details: { from: 'open', to: 'false_positive' } });
    expect(() => anomalies.setStatus('an_missing', 'resolved', 'bob')).toThrow(/no anomaly "an_missing"/);
    store.close();
  });
});
