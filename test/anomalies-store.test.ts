import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AnomalyConflictError, AnomalyStore, type AnomalyFinding } from '../src/store/anomalies.js';
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

  it('keeps the newer description, evidence, severity and score when a finding from an earlier window comes in', () => {
    const store = new Store(join(tempDir(), 'kiwi.db'));
    const anomalies = new AnomalyStore(store);
    const HOUR = 3_600_000;
    const memory = (over: Partial<AnomalyFinding>) =>
      finding({ fingerprint: 'memory_leak|api', type: 'memory_leak', component: 'api', suggested_action: 'restart', ...over });
    const { anomaly } = anomalies.record(
      memory({ start_ts: T0 + HOUR, end_ts: T0 + 3 * HOUR, description: 'memory rising, now 1536 MiB', evidence: { now_mib: 1536 }, severity: 'warning', score: 0.8 }),
      T0 + 3 * HOUR,
    );
    // A look at the past (`at` 2 h ago): the window ends before the anomaly was last seen, and saw an earlier onset.
    const past = anomalies.record(
      memory({
        start_ts: T0 + HOUR / 2,
        end_ts: T0 + HOUR + 30 * 60_000,
        description: 'memory rising, now 1298 MiB',
        evidence: { now_mib: 1298 },
        severity: 'critical',
        score: 0.95,
        suggested_action: 'page someone',
      }),
      T0 + 3 * HOUR + 60_000,
    );
    expect(past.created).toBe(false);
    expect(past.anomaly).toMatchObject({
      id: anomaly.id,
      description: 'memory rising, now 1536 MiB',
      evidence: { now_mib: 1536 },
      severity: 'warning',
      score: 0.8,
      suggested_action: 'restart',
      start_ts: T0 + HOUR / 2, // the earlier onset it saw, continuous with what is stored
      end_ts: T0 + 3 * HOUR,
    });
    // An earlier episode that ends before the stored onset may have healed in between: the onset stays.
    const disjoint = anomalies.record(memory({ start_ts: T0 - 5 * HOUR, end_ts: T0 - 4 * HOUR, description: 'old', evidence: {} }));
    expect(disjoint.anomaly).toMatchObject({ id: anomaly.id, start_ts: T0 + HOUR / 2, end_ts: T0 + 3 * HOUR, description: 'memory rising, now 1536 MiB' });
    // A finding from a window ending at or after it still updates it.
    const later = anomalies.record(memory({ start_ts: T0 + 2 * HOUR, end_ts: T0 + 4 * HOUR, description: 'memory rising, now 1700 MiB', evidence: { now_mib: 1700 } }));
    expect(later.anomaly).toMatchObject({ id: anomaly.id, start_ts: T0 + HOUR / 2, end_ts: T0 + 4 * HOUR, description: 'memory rising, now 1700 MiB', evidence: { now_mib: 1700 } });
    store.close();
  });

  it('refuses to re-activate a closed anomaly while another one on the same signal is active', () => {
    const store = new Store(join(tempDir(), 'kiwi.db'));
    const anomalies = new AnomalyStore(store);
    const old = anomalies.record(finding()).anomaly;
    anomalies.setStatus(old.id, 'resolved', 'alice');
    const current = anomalies.record(finding({ start_ts: T0 + 3_600_000, end_ts: T0 + 3_660_000 }));
    expect(current.created).toBe(true);
    for (const status of ['acknowledged', 'open'] as const) {
      expect(() => anomalies.setStatus(old.id, status, 'alice')).toThrow(AnomalyConflictError);
      expect(() => anomalies.setStatus(old.id, status, 'alice')).toThrow(
        new RegExp(`^cannot ${status === 'open' ? 'reopen' : 'acknowledge'} ${old.id} \\(resolved\\): ${current.anomaly.id} is already open on the same signal`),
      );
    }
    expect(anomalies.get(old.id)!.status).toBe('resolved');
    expect(anomalies.list({ statuses: ['open', 'acknowledged'] }, 10).anomalies.map((a) => a.id)).toEqual([current.anomaly.id]);
    // Closing transitions stay allowed, and once the other is closed the old one can be reopened.
    expect(anomalies.setStatus(old.id, 'false_positive', 'alice').status).toBe('false_positive');
    expect(() => anomalies.setStatus(old.id, 'acknowledged', 'alice')).toThrow(/\(false_positive\): .* is already open/);
    anomalies.setStatus(current.anomaly.id, 'resolved', 'alice');
    expect(anomalies.setStatus(old.id, 'open', 'alice').status).toBe('open');
    expect(() => anomalies.setStatus(current.anomaly.id, 'acknowledged', 'alice')).toThrow(new RegExp(`${old.id} is already open`));
    store.close();
  });
});
