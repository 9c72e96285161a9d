import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { formatIngestError, ingestFile, ingestStream, ingestText, ingestValues, splitCsvLine } from '../src/ingest/ingest.js';
import { Store } from '../src/store/store.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir();

function openStore(): Store {
  return new Store(join(tempDir(), 'kiwi.db'));
}

const GOOD_METRIC = '{"type":"metric","ts":1700000000,"name":"process.memory.usage","value":1.5e8,"component":"worker"}';
const GOOD_EVENT = '{"type":"event","ts":"2026-01-01T00:00:00Z","kind":"error","component":"api","level":"error","message":"boom"}';
const GOOD_SPAN =
  '{"type":"span","trace_id":"t1","span_id":"s1","parent_id":null,"name":"tools/call x","component":"mcp","start":1700000000000,"duration_ms":12.5,"status":"ok"}';

describe('JSONL', () => {
  it('keeps good lines, reports each bad one as source:line: reason', () => {
    const store = openStore();
    const text = [
      GOOD_METRIC,
      '',
      '{"type":"metric","ts":1700000000,"name":"m","value":"high","component":"w"}',
      GOOD_EVENT,
      'not json at all',
      GOOD_SPAN,
      '{"type":"log","ts":1}',
      '{"type":"metric","ts":"last tuesday","name":"m","value":1,"component":"w"}',
      '[1,2,3]',
      '{"type":"event","ts":1700000000,"kind":"log","component":"w","message":"x","level":"shout"}',
    ].join('\n');
    const summary = ingestText(store, text, 'telemetry.jsonl');
    expect(summary).toMatchObject({ format: 'jsonl', accepted: 3, rejected: 6, written: { metrics: 1, events: 1, spans: 1 } });
    expect(summary.errors.map(formatIngestError)).toEqual([
      expect.stringMatching(/^telemetry\.jsonl:3: value: /),
      expect.stringMatching(/^telemetry\.jsonl:5: invalid JSON/),
      expect.stringMatching(/^telemetry\.jsonl:7: "type" must be "metric", "event" or "span" \(got "log"\)/),
      expect.stringMatching(/^telemetry\.jsonl:8: ts: timestamp "last tuesday"/),
      expect.stringMatching(/^telemetry\.jsonl:9: record must be a JSON object/),
      expect.stringMatching(/^telemetry\.jsonl:10: level: /),
    ]);
    expect(store.findSeries({}).total).toBe(1);
    expect(store.searchEvents({}, 10).events.map((e) => e.message)).toEqual(['boom']);
    expect(store.listSpans({}, 10).map((s) => s.span_id)).toEqual(['s1']);
    store.close();
  });

  it('in strict mode writes nothing when any line is bad, everything when none is', () => {
    const store = openStore();
    const bad = ingestText(store, [GOOD_METRIC, GOOD_EVENT, '{oops'].join('\n'), 'a.jsonl', { strict: true });
    expect(bad).toMatchObject({ accepted: 2, rejected: 1, written: { metrics: 0, events: 0, spans: 0 }, strict: true });
    expect(store.findSeries({}).total).toBe(0);
    expect(store.searchEvents({}, 10).events).toEqual([]);
    const good = ingestText(store, [GOOD_METRIC, GOOD_EVENT, GOOD_SPAN].join('\n'), 'b.jsonl', { strict: true });
    expect(good.written).toEqual({ metrics: 1, events: 1, spans: 1, unchanged: 0 });
    // the same records again are already stored as sent: nothing is written, and the summary says so
    const again = ingestText(store, [GOOD_METRIC, GOOD_EVENT, GOOD_SPAN].join('\n'), 'b.jsonl');
    expect(again.written).toEqual({ metrics: 0, events: 0, spans: 0, unchanged: 3 });
    // a new value for a stored point replaces it, and counts as written
    const corrected = JSON.stringify({ ...(JSON.parse(GOOD_METRIC) as object), value: 12345 });
    expect(ingestText(store, corrected, 'c.jsonl').written).toEqual({ metrics: 1, events: 0, spans: 0, unchanged: 0 });
    store.close();
  });

  it('accepts CRLF line ends and a last line without a newline', () => {
    const store = openStore();
    const summary = ingestText(store, `${GOOD_METRIC}\r\n${GOOD_EVENT}\r\n${GOOD_SPAN}`, 'crlf.jsonl');
    expect(summary).toMatchObject({ accepted: 3, rejected: 0 });
    store.close();
  });

  it('refuses a line over 1 MiB without losing its neighbours', () => {
    const store = openStore();
    const huge = `{"type":"event","ts":1700000000,"kind":"log","component":"w","message":"${'x'.repeat(1100 * 1024)}"}`;
    const summary = ingestText(store, [GOOD_METRIC, huge, GOOD_EVENT].join('\n'), 'big.jsonl');
    expect(summary.accepted).toBe(2);
    expect(formatIngestError(summary.errors[0]!)).toMatch(/^big\.jsonl:2: line longer than 1048576 bytes/);
    store.close();
  });

  it('counts every rejected line but lists at most maxErrors', () => {
    const store = openStore();
    const summary = ingestText(store, Array(30).fill('nope').join('\n'), 'x.jsonl', { maxErrors: 5 });
    expect(summary).toMatchObject({ rejected: 30, errors_truncated: true });
    expect(summary.errors).toHaveLength(5);
    store.close();
  });

  it('writes in batches: a stream larger than one batch lands whole', async () => {
    const store = openStore();
    const lines = Array.from({ length: 2500 }, (_, i) => `{"type":"metric","ts":${1_700_000_000_000 + i},"name":"m","value":${i},"component":"w"}`);
    const summary = await ingestStream(store, Readable.from([lines.join('\n')]), 'stream', { batchSize: 1000 });
    expect(summary.written.metrics).toBe(2500);
    const id = store.findSeries({}).series[0]!.id;
    expect(store.readPoints(id, 0, 2e12).values.length).toBe(2500);
    store.close();
  });
});

describe('CSV', () => {
  it('reads long-form CSV, extra columns becoming labels, quoted fields allowed', () => {
    const store = openStore();
    const csv = [
      'timestamp,component,metric,value,region,host',
      '2026-01-01T00:00:00Z,api,http.server.request.duration,0.25,eu,a',
      '1767225660,api,http.server.request.duration,0.5,eu,',
      '"2026-01-01 00:02:00","api","http.server.request.duration","0.75","eu","b, the second"',
    ].join('\n');
    const summary = ingestText(store, csv, 'latency.csv');
    expect(summary).toMatchObject({ format: 'csv', accepted: 3, rejected: 0 });
    const labels = store.findSeries({}).series.map((s) => s.labels);
    expect(labels).toHaveLength(3);
    expect(labels).toEqual(
      expect.arrayContaining([{ region: 'eu' }, { host: 'a', region: 'eu' }, { host: 'b, the second', region: 'eu' }]),
    );
    store.close();
  });

  it('reports bad rows by line and a bad header once', () => {
    const store = openStore();
    const csv = [
      'timestamp,component,metric,value',
      '2026-01-01T00:00:00Z,api,cpu,0.5',
      '2026-01-01T00:01:00Z,api,cpu',
      '2026-01-01T00:02:00Z,api,cpu,lots',
      'yesterday,api,cpu,1',
      '2026-01-01T00:03:00Z,api,cpu,"1',
      '2026-01-01T00:04:00Z,,cpu,1',
    ].join('\n');
    const summary = ingestText(store, csv, 'cpu.csv');
    expect(summary.accepted).toBe(1);
    expect(summary.errors.map(formatIngestError)).toEqual([
      'cpu.csv:3: expected 4 fields as in the header, found 3',
      'cpu.csv:4: value: "lots" is not a number',
      expect.stringMatching(/^cpu\.csv:5: ts: timestamp "yesterday"/),
      'cpu.csv:6: unterminated quoted field',
      expect.stringMatching(/^cpu\.csv:7: component: /),
    ]);
    const noHeader = ingestText(store, 'time,comp,value\n1,2,3\n4,5,6', 'h.csv');
    // the header is the one error; the rows under it point to it instead of being read as headers in turn
    expect(noHeader.errors.map(formatIngestError)).toEqual([
      'h.csv:1: CSV header must name timestamp,component,metric,value (missing: timestamp, component, metric)',
      'h.csv:2: not read: the CSV header on line 1 is invalid',
      'h.csv:3: not read: the CSV header on line 1 is invalid',
    ]);
    expect(noHeader).toMatchObject({ accepted: 0, rejected: 3 });
    store.close();
  });

  it('refuses a record more than a day ahead of the clock, naming it, and keeps one an hour ahead', () => {
    const store = openStore();
    const at = (ms: number) => JSON.stringify({ type: 'metric', ts: ms, name: 'm', component: 'c', value: 1 });
    const summary = ingestText(store, [at(Date.now() + 3_600_000), at(Date.UTC(2062, 10, 21))].join('\n'), 'f.jsonl');
    expect(summary).toMatchObject({ accepted: 1, rejected: 1 });
    expect(formatIngestError(summary.errors[0]!)).toMatch(
      /^f\.jsonl:2: ts: 2062-11-21T00:00:00\.000Z is more than a day ahead of this machine's clock \(.+\); check its unit or time zone$/,
    );
    store.close();
  });

  it('reads past a byte-order mark at the start of the text', () => {
    const store = openStore();
    const jsonl = ingestText(store, `\uFEFF${JSON.stringify({ type: 'metric', ts: 1_700_000_000_000, name: 'm', component: 'c', value: 1 })}\n`, 'bom.jsonl');
    const csv = ingestText(store, '\uFEFFtimestamp,component,metric,value\n2026-01-01T00:00:00Z,c,m,2\n', 'bom.csv');
    expect([jsonl.accepted, jsonl.rejected, csv.accepted, csv.rejected]).toEqual([1, 0, 1, 0]);
    // and past Excel's separator hint before the header
    const hinted = ingestText(store, 'sep=,\ntimestamp,component,metric,value\n2026-01-01T00:00:00Z,c,m,3\n', 'excel.csv');
    expect([hinted.accepted, hinted.rejected]).toEqual([1, 0]);
    store.close();
  });

  it('splits quoted fields per RFC 4180', () => {
    expect(splitCsvLine('a,"b,c","d ""e""",')).toEqual(['a', 'b,c', 'd "e"', '']);
    expect(() => splitCsvLine('"a"b,c')).toThrow(/after a closing quote/);
  });
});

describe('files and values', () => {
  it('tells the format from the name, else from the first line', async () => {
    const dir = tempDir();
    const store = openStore();
    writeFileSync(join(dir, 'data.txt'), `${GOOD_METRIC}\n`);
    writeFileSync(join(dir, 'data2.txt'), 'timestamp,component,metric,value\n1700000000,a,b,1\n');
    expect((await ingestFile(store, join(dir, 'data.txt'))).format).toBe('jsonl');
    expect((await ingestFile(store, join(dir, 'data2.txt'))).format).toBe('csv');
    await expect(ingestFile(store, join(dir, 'missing.jsonl'))).rejects.toThrow(/missing\.jsonl: cannot read \(ENOENT\)/);
    store.close();
  });

  it('validates decoded values with their position', () => {
    const store = openStore();
    const summary = ingestValues(store, [JSON.parse(GOOD_METRIC), { type: 'metric' }, 'text'], 'records');
    expect(summary.accepted).toBe(1);
    expect(summary.errors.map(formatIngestError)).toEqual([
      expect.stringMatching(/^records:2: /),
      'records:3: record must be a JSON object',
    ]);
    store.close();
  });
});

describe('units', () => {
  const line = (ts: number, name: string, unit?: unknown) =>
    JSON.stringify({ type: 'metric', ts: 1_700_000_000 + ts, name, value: ts, component: 'api', ...(unit === undefined ? {} : { unit }) });

  it('stores the unit of a file\'s metric lines, the last one sent winning, across batches and in strict mode', async () => {
    const dir = tempDir();
    const file = join(dir, 'units.jsonl');
    writeFileSync(
      file,
      [
        line(0, 'latency', 'ms'),
        line(1, 'latency'),
        line(2, 'memory', 'By'),
        line(3, 'latency', 'ms'),
        line(4, 'plain'),
        line(5, 'latency', 's'),
        line(6, 'memory', ''),
        line(7, 'latency'),
      ].join('\n'),
    );
    for (const options of [{ batchSize: 2 }, { batchSize: 20_000 }, { strict: true, batchSize: 3 }]) {
      const store = openStore();
      const summary = await ingestFile(store, file, options);
      expect(summary, JSON.stringify(options)).toMatchObject({ accepted: 8, rejected: 0, written: { metrics: 8 } });
      expect(store.findSeries({}).series.map((s) => [s.name, s.unit])).toEqual([
        ['latency', 's'],
        ['memory', 'By'],
        ['plain', null],
      ]);
      store.close();
    }
  });

  it('refuses a bad unit with the source, line and field, and keeps the other lines', () => {
    const store = openStore();
    const text = [line(0, 'm', 'ms'), line(1, 'm', 'per cent'), line(2, 'm', ['ms']), line(3, 'm', 'x'.repeat(64)), line(4, 'm', 'µs')].join('\n');
    const summary = ingestText(store, text, 'units.jsonl');
    expect(summary).toMatchObject({ accepted: 1, rejected: 4 });
    expect(summary.errors.map(formatIngestError)).toEqual([
      'units.jsonl:2: unit: must be printable ASCII without spaces, a UCUM unit such as ms, s, By, 1 or {request}',
      'units.jsonl:3: unit: must be a string such as "ms", "By" or "{request}"',
      'units.jsonl:4: unit: must be at most 63 characters',
      'units.jsonl:5: unit: must be printable ASCII without spaces, a UCUM unit such as ms, s, By, 1 or {request}',
    ]);
    expect(store.findSeries({}).series).toMatchObject([{ name: 'm', unit: 'ms' }]);
    store.close();
  });

  it('takes a unit from records given as values (the ingest_telemetry tool)', () => {
    const store = openStore();
    const summary = ingestValues(store, [JSON.parse(line(0, 'm', '{request}')) as unknown, JSON.parse(line(1, 'm', 7)) as unknown], 'records');
    expect(summary.errors.map(formatIngestError)).toEqual(['records:2: unit: must be a string such as "ms", "By" or "{request}"']);
    expect(store.findSeries({}).series).toMatchObject([{ name: 'm', unit: '{request}' }]);
    store.close();
  });

  it('leaves CSV as it was: a unit column is a label like any other extra column', () => {
    const store = openStore();
    ingestText(store, 'timestamp,component,metric,value,unit\n1700000000,api,latency,12,ms\n', 'latency.csv');
    expect(store.findSeries({}).series).toMatchObject([{ name: 'latency', labels: { unit: 'ms' }, unit: null }]);
    store.close();
  });
});
