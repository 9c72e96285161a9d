import { describe, expect, it } from 'vitest';
import { deterministicNarrative, parseNarrative } from '../src/explain/narrative.js';
import { REDACTED, redact, redactText } from '../src/explain/redact.js';
import type { Analysis } from '../src/explain/types.js';
import { seededNormal } from '../src/stats/random.js';
import { mad, sortedCopy } from '../src/stats/robust.js';
import { countShiftZ, firstPersistentRun, madOfSorted, pearson, rateShiftZ, robustScale, windowShift } from '../src/stats/shift.js';

describe('robust shift of a window against its baseline', () => {
  const normal = seededNormal(3);
  const baseline = Array.from({ length: 500 }, () => 100 + 2 * normal());

  it('measures the move in robust sigmas and finds when it started', () => {
    const window = Array.from({ length: 60 }, (_, i) => (i < 20 ? 100 + 2 * normal() : 130 + 2 * normal()));
    const shift = windowShift(baseline, window);
    expect(shift.baseline.median).toBeCloseTo(100, 0);
    expect(shift.baseline.sigma).toBeGreaterThan(1.5);
    expect(shift.baseline.sigma).toBeLessThan(2.5);
    expect(shift.z).toBeGreaterThan(12);
    expect(shift.onsetIndex).toBe(20);
    expect(shift.medianZ).toBeGreaterThan(10);
  });

  it('does not count a single outlier as a move', () => {
    const window = Array.from({ length: 60 }, (_, i) => (i === 30 ? 500 : 100 + 2 * normal()));
    const shift = windowShift(baseline, window);
    expect(Math.abs(shift.z)).toBeLessThan(4);
    expect(shift.onsetIndex).toBe(-1);
  });

  it('gives a signed z for a fall', () => {
    const window = Array.from({ length: 30 }, () => 80 + 2 * normal());
    expect(windowShift(baseline, window).z).toBeLessThan(-8);
  });

  it('floors the scale of a flat baseline at a share of its level', () => {
    const flat = Array.from({ length: 100 }, () => 1e8);
    const scale = robustScale(flat);
    expect(scale.floored).toBe(true);
    expect(scale.sigma).toBe(1e6);
    // a change of a few bytes in a 100 MB series is not a move; 20 % is
    expect(Math.abs(windowShift(flat, [1e8 + 5, 1e8 + 7, 1e8 + 6]).z)).toBeLessThan(0.001);
    expect(windowShift(flat, [1.2e8, 1.2e8, 1.2e8]).z).toBeCloseTo(20, 5);
    expect(robustScale([0, 0, 0, 0]).sigma).toBe(1e-9);
  });

  it('computes the MAD of sorted values exactly as the sorting MAD does', () => {
    const random = seededNormal(11);
    for (const n of [1, 2, 3, 4, 7, 10, 101, 1000]) {
      const values = Array.from({ length: n }, () => Math.round(random() * 10) / 2);
      const sorted = sortedCopy(values);
      for (const center of [sorted[Math.floor(n / 2)]!, 0.3, -100, 100]) {
        expect(madOfSorted(sorted, center)).toBeCloseTo(mad(values, center), 12);
      }
    }
    expect(madOfSorted([], 0)).toBeNaN();
  });

  it('rejects empty input', () => {
    expect(() => windowShift([], [1])).toThrow(RangeError);
  });

  it('finds the first persistent run', () => {
    expect(firstPersistentRun([0, 5, 0, 0, 4, 4, 0], 3)).toBe(4);
    expect(firstPersistentRun([0, 0, 0, 5], 3)).toBe(3);
    expect(firstPersistentRun([0, 0, 0], 3)).toBe(-1);
    expect(firstPersistentRun([0, -6, -6, 0], 3)).toBe(1);
  });
});

describe('pearson', () => {
  it('is 1 for lines, -1 for opposite lines, null when undefined, and skips NaN pairs', () => {
    expect(pearson([1, 2, 3, 4], [2, 4, 6, 8])).toBeCloseTo(1, 12);
    expect(pearson([1, 2, 3, 4], [8, 6, 4, 2])).toBeCloseTo(-1, 12);
    expect(pearson([1, 1, 1, 1], [1, 2, 3, 4])).toBeNull();
    expect(pearson([1, 2], [1, 2])).toBeNull();
    expect(pearson([1, Number.NaN, 3, 4, 5], [2, 100, 6, 8, 10])).toBeCloseTo(1, 12);
  });
});

describe('rate and count shifts', () => {
  it('is about zero for equal rates and signed by the direction of the change', () => {
    expect(Math.abs(rateShiftZ(10, 1000, 20, 2000))).toBeLessThan(1e-9);
    expect(rateShiftZ(50, 1000, 20, 2000)).toBeGreaterThan(5);
    expect(rateShiftZ(2, 1000, 40, 2000)).toBeLessThan(-3);
  });

  it('grows with the evidence, and stays small for a few events', () => {
    const small = rateShiftZ(2, 100, 1, 100);
    const large = rateShiftZ(20, 1000, 10, 1000);
    expect(small).toBeLessThan(1.5);
    expect(large).toBeGreaterThan(small);
    // a short baseline proves less than a long one
    expect(rateShiftZ(30, 100, 1, 100)).toBeLessThan(rateShiftZ(30, 100, 100, 10_000));
  });

  it('is finite for a rate that was zero and is now high', () => {
    const z = rateShiftZ(85, 100, 0, 5000);
    expect(Number.isFinite(z)).toBe(true);
    expect(z).toBeGreaterThan(15);
  });

  it('judges counts per exposure, new events against half an event', () => {
    expect(countShiftZ(14, 3, 0, 24)).toBeGreaterThan(5);
    expect(countShiftZ(1, 3, 0, 24)).toBeLessThan(2);
    expect(Math.abs(countShiftZ(8, 1, 8, 1))).toBeLessThan(1e-9);
    expect(countShiftZ(0, 1, 10, 1)).toBeLessThan(-3);
  });
});

describe('redaction', () => {
  it('replaces secrets in text', () => {
    const text = redactText(
      'login failed password=hunter2 token: abc123xyz Authorization: Bearer eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl ' +
        'key sk-ant-api03-AAAAAAAAAAAAAAAAAAAA aws AKIAABCDEFGHIJKLMNOP gh ghp_0123456789abcdefghij0123 ' +
        'url postgres://admin:s3cret@db.internal:5432/app',
    );
    for (const secret of ['hunter2', 'abc123xyz', 'eyJhbGciOi', 'sk-ant-api03', 'AKIAABCDEFGHIJKLMNOP', 'ghp_0123', 's3cret']) {
      expect(text).not.toContain(secret);
    }
    expect(text).toContain('login failed');
    expect(text).toContain('db.internal:5432/app');
  });

  it('replaces values under secret keys, and both values of a change to a secret setting', () => {
    const out = redact({
      api_key: 'k-1',
      accessToken: 't-1',
      'x-api-key': 'k-2',
      nested: { db_password: 'p', note: 'password: hunter2' },
      key: 'db.password',
      old_value: 'old-secret',
      new_value: 'new-secret',
      author: 'ops-bot',
      tokens_used: 12,
    });
    expect(out).toEqual({
      api_key: REDACTED,
      accessToken: REDACTED,
      'x-api-key': REDACTED,
      nested: { db_password: REDACTED, note: `password: ${REDACTED}` },
      key: 'db.password',
      old_value: REDACTED,
      new_value: REDACTED,
      author: 'ops-bot',
      tokens_used: 12,
    });
  });

  it('leaves an ordinary setting change readable', () => {
    expect(redact({ key: 'max_concurrency', old_value: 16, new_value: 2 })).toEqual({ key: 'max_concurrency', old_value: 16, new_value: 2 });
  });
});

describe('parsing the narrative an LLM returns', () => {
  const good = { root_cause: 'x broke', next_steps: ['roll back'], confidence: 0.7 };

  it('accepts the JSON object, bare or in a code fence or with prose around it', () => {
    expect(parseNarrative(JSON.stringify(good))).toEqual(good);
    expect(parseNarrative('```json\n' + JSON.stringify(good) + '\n```')).toEqual(good);
    expect(parseNarrative('Here it is: ' + JSON.stringify(good) + ' hope it helps')).toEqual(good);
  });

  it('says what is wrong with an unusable answer', () => {
    expect(() => parseNarrative('I think the database is slow.')).toThrow(/no JSON object/);
    expect(() => parseNarrative('{"root_cause": "x", ')).toThrow(/no JSON object|not valid JSON/);
    expect(() => parseNarrative('{"root_cause": }')).toThrow(/not valid JSON/);
    expect(() => parseNarrative(JSON.stringify({ ...good, confidence: 7 }))).toThrow(/confidence/);
    expect(() => parseNarrative(JSON.stringify({ ...good, next_steps: [] }))).toThrow(/next_steps/);
    expect(() => parseNarrative(JSON.stringify({ ...good, extra: 1 }))).toThrow(/schema/);
  });
});

describe('the deterministic narrative', () => {
  it('says when there is nothing to explain', () => {
    const analysis = {
      symptom: { description: 'latency of api', start: 0, end: 1, baseline_start: -1, baseline_end: 0 },
      candidates: [],
      context: { recent_logs: [], affected_threads: [], mcp_status: [], changes: [], signatures: [] },
    } as unknown as Analysis;
    const n = deterministicNarrative(analysis);
    expect(n.root_cause).toMatch(/No root cause found for latency of api/);
    expect(n.confidence).toBe(0);
    expect(n.next_steps.length).toBeGreaterThan(0);
  });
});
