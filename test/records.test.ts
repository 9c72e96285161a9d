import { describe, expect, it } from 'vitest';
import { metricInput, normaliseRecord, parseTimestamp } from '../src/ingest/records.js';

describe('parseTimestamp', () => {
  it('reads epoch seconds below 1e11 and milliseconds above', () => {
    expect(parseTimestamp(1_700_000_000)).toBe(1_700_000_000_000);
    expect(parseTimestamp(1_700_000_000.5)).toBe(1_700_000_000_500);
    expect(parseTimestamp(1_700_000_000_123)).toBe(1_700_000_000_123);
    expect(parseTimestamp('1700000000')).toBe(1_700_000_000_000);
    expect(parseTimestamp(4_102_444_800)).toBe(Date.UTC(2100, 0, 1));
    expect(() => parseTimestamp(99_999_999_999)).toThrow(/outside/); // seconds: the year 5138
    expect(parseTimestamp(100_000_000_000)).toBe(100_000_000_000);
  });

  it('reads ISO 8601, as UTC when no offset is given', () => {
    expect(parseTimestamp('2026-01-02T03:04:05Z')).toBe(Date.UTC(2026, 0, 2, 3, 4, 5));
    expect(parseTimestamp('2026-01-02 03:04:05')).toBe(Date.UTC(2026, 0, 2, 3, 4, 5));
    expect(parseTimestamp('2026-01-02T03:04:05.250+02:00')).toBe(Date.UTC(2026, 0, 2, 1, 4, 5, 250));
    expect(parseTimestamp('2026-01-02T03:04:05+0200')).toBe(Date.UTC(2026, 0, 2, 1, 4, 5));
    expect(parseTimestamp('2026-01-02')).toBe(Date.UTC(2026, 0, 2));
  });

  it('refuses what is not a time, or is implausible', () => {
    expect(() => parseTimestamp('yesterday')).toThrow(/neither ISO 8601 nor an epoch/);
    expect(() => parseTimestamp('2026-13-45T00:00:00Z')).toThrow(/not a real date/);
    expect(() => parseTimestamp('2026-02-31 00:00:00')).toThrow(/not a real date/);
    expect(() => parseTimestamp('2026-02-29T00:00:00+02:00')).toThrow(/not a real date/);
    expect(parseTimestamp('2024-02-29 12:00:00')).toBe(Date.UTC(2024, 1, 29, 12));
    expect(parseTimestamp('2026-02-28 23:59:59.5')).toBe(Date.UTC(2026, 1, 28, 23, 59, 59, 500));
    expect(() => parseTimestamp(Number.NaN)).toThrow(/finite/);
    expect(() => parseTimestamp(-5)).toThrow(/outside 1970..2200/);
    expect(() => parseTimestamp(9e15)).toThrow(/outside/);
    expect(() => parseTimestamp(true)).toThrow(/ISO 8601 string or an epoch number/);
  });
});

describe('normaliseRecord', () => {
  it('normalises the three record types', () => {
    expect(
      normaliseRecord({ type: 'metric', ts: 1_700_000_000, name: 'm', value: 2, component: 'c', labels: { b: 1, a: 'x' } }),
    ).toEqual({ type: 'metric', ts: 1_700_000_000_000, name: 'm', value: 2, component: 'c', labels: { a: 'x', b: '1' } });
    expect(normaliseRecord({ type: 'event', ts: '2026-01-01T00:00:00Z', kind: 'deploy', component: 'c', message: 'v2' })).toEqual({
      type: 'event',
      ts: Date.UTC(2026, 0, 1),
      kind: 'deploy',
      component: 'c',
      level: 'info',
      message: 'v2',
      attrs: {},
    });
    expect(
      normaliseRecord({ type: 'span', trace_id: 't', span_id: 's', name: 'n', component: 'c', start: 1_700_000_000_000, duration_ms: 1.5 }),
    ).toMatchObject({ parent_id: null, status: 'unset', start: 1_700_000_000_000 });
  });

  it('keeps a metric\'s UCUM unit, and reads an empty one as none', () => {
    const base = { type: 'metric', ts: 1_700_000_000, name: 'm', value: 2, component: 'c' };
    for (const unit of ['ms', 's', 'By', '1', '{request}', 'By/s', '%']) {
      expect(normaliseRecord({ ...base, unit })).toEqual({ ...base, ts: 1_700_000_000_000, labels: {}, unit });
    }
    expect(normaliseRecord({ ...base, unit: '' })).toEqual({ ...base, ts: 1_700_000_000_000, labels: {} });
    expect(normaliseRecord({ ...base, unit: '' })).not.toHaveProperty('unit');
  });

  it.each([
    [null, /JSON object/],
    [[1], /JSON object/],
    [{ type: 'bogus' }, /"type" must be/],
    [{ ts: 1 }, /"type" must be/],
    [{ type: 'metric', ts: 1_700_000_000, name: 'm', component: 'c' }, /value/],
    [{ type: 'metric', ts: 1_700_000_000, name: 'm', value: '3', component: 'c' }, /value/],
    [{ type: 'metric', ts: 1_700_000_000, name: '', value: 3, component: 'c' }, /name/],
    [{ type: 'metric', ts: 'soon', name: 'm', value: 3, component: 'c' }, /^ts: /],
    [{ type: 'metric', ts: 1_700_000_000, name: 'm', value: 3, component: 'c', labels: { a: { b: 1 } } }, /labels\.a/],
    [{ type: 'metric', ts: 1_700_000_000, name: 'm', value: 3, component: 'c', units: 'By' }, /Unrecognized key/],
    [{ type: 'metric', ts: 1_700_000_000, name: 'm', value: 3, component: 'c', unit: 5 }, /^unit: must be a string/],
    [{ type: 'metric', ts: 1_700_000_000, name: 'm', value: 3, component: 'c', unit: 'milli seconds' }, /^unit: must be printable ASCII without spaces/],
    [{ type: 'metric', ts: 1_700_000_000, name: 'm', value: 3, component: 'c', unit: 'µs' }, /^unit: must be printable ASCII/],
    [{ type: 'metric', ts: 1_700_000_000, name: 'm', value: 3, component: 'c', unit: 'x'.repeat(64) }, /^unit: must be at most 63 characters/],
    [{ type: 'event', ts: 1_700_000_000, kind: 'Not A Kind', component: 'c', message: 'x' }, /kind/],
    [{ type: 'event', ts: 1_700_000_000, kind: 'log', component: 'c', message: 'x', level: 'loud' }, /level/],
    [{ type: 'span', trace_id: 't', span_id: 's', name: 'n', component: 'c', start: 1_700_000_000, duration_ms: -1 }, /duration_ms/],
    [{ type: 'span', trace_id: 't', span_id: 's', name: 'n', component: 'c', start: 1_700_000_000, duration_ms: 1, status: 'meh' }, /status/],
  ])('rejects %j with a reason naming the field', (raw, reason) => {
    expect(() => normaliseRecord(raw)).toThrow(reason);
  });

  // The hand-written metric fast path must never accept what the schema refuses, and must
  // produce the same record as the slow path where both accept.
  it('fast path agrees with the zod schema on a spread of metric inputs', () => {
    const base = { type: 'metric', ts: 1_700_000_000, name: 'cpu', value: 0.5, component: 'worker' };
    const variants: Record<string, unknown>[] = [
      base,
      { ...base, labels: {} },
      { ...base, labels: { z: 'a', a: 'z' } },
      { ...base, labels: { n: 5, t: true } },
      { ...base, labels: { '': 'x' } },
      { ...base, labels: { a: 'x'.repeat(257) } },
      { ...base, labels: null },
      { ...base, labels: [] },
      { ...base, value: Infinity },
      { ...base, value: null },
      { ...base, name: 'x'.repeat(257) },
      { ...base, component: '' },
      { ...base, ts: '2026-01-01T00:00:00Z' },
      { ...base, ts: 'not a time' },
      { ...base, ts: -1 },
      { ...base, ts: null },
      { ...base, extra: 1 },
      { ...base, unit: 'ms' },
      { ...base, unit: '{request}/s' },
      { ...base, unit: '' },
      { ...base, unit: 'a b' },
      { ...base, unit: 'é' },
      { ...base, unit: 'x'.repeat(63) },
      { ...base, unit: 'x'.repeat(64) },
      { ...base, unit: null },
      { ...base, unit: 1 },
    ];
    for (const raw of variants) {
      const schemaAccepts = metricInput.safeParse(raw).success;
      let fastResult: unknown = null;
      let threw = false;
      try {
        fastResult = normaliseRecord(raw);
      } catch {
        threw = true;
      }
      if (!schemaAccepts) {
        expect(threw, JSON.stringify(raw)).toBe(true);
        continue;
      }
      // Schema-valid but with a bad timestamp is still refused, by the timestamp rule.
      let tsValid = true;
      try {
        parseTimestamp((raw as { ts: unknown }).ts);
      } catch {
        tsValid = false;
      }
      expect(threw, JSON.stringify(raw)).toBe(!tsValid);
      if (tsValid) {
        const labels = (raw.labels ?? {}) as Record<string, unknown>;
        const expectedLabels = Object.fromEntries(Object.keys(labels).sort().map((k) => [k, String(labels[k])]));
        const { unit, ...rest } = raw;
        const expected: Record<string, unknown> = { ...rest, ts: parseTimestamp((raw as { ts: unknown }).ts), labels: expectedLabels };
        if (unit) expected.unit = unit;
        expect(fastResult).toEqual(expected);
      }
    }
  });
});
