/**
 * Lines (JSONL or long-form CSV) or decoded values in, validated batches out. No I/O and no
 * store: the same parser runs on the main thread and in the file-ingest worker. Metric points
 * come out columnar (series key index, time, value) so a batch crosses threads without cloning
 * each record.
 */
import type { EventRecord, Labels, SpanRecord, TelemetryRecord } from './records.js';
import { normaliseRecord } from './records.js';

export type IngestFormat = 'jsonl' | 'csv';

export interface IngestError {
  source: string;
  line: number;
  reason: string;
}

export interface SeriesKey {
  name: string;
  component: string;
  labels: Labels;
}

export interface ParsedBatch {
  type: 'batch';
  format: IngestFormat | null;
  /** Series first seen in this batch; their indexes continue from the previous batch's. */
  newKeys: SeriesKey[];
  keyIndex: Int32Array<ArrayBuffer>;
  ts: Float64Array<ArrayBuffer>;
  values: Float64Array<ArrayBuffer>;
  records: (EventRecord | SpanRecord)[];
  /** [component, first ts, last ts] seen in this batch. */
  components: [string, number, number][];
  /** [series key index, unit]: a unit this batch sends for a series, where it differs from the last one sent for it. */
  units: [number, string][];
  accepted: number;
  rejected: number;
  errors: IngestError[];
  errorsTruncated: boolean;
  final: boolean;
}

export type ToWorker = { type: 'written' };
export type FromWorker = ParsedBatch | { type: 'failed'; message: string };

export interface ParseWorkerInput {
  path: string;
  source: string;
  format: IngestFormat | 'auto';
  batchSize: number;
  maxErrors: number;
}

export const MAX_LINE_BYTES = 1024 * 1024;
const CSV_REQUIRED = ['timestamp', 'component', 'metric', 'value'] as const;

export function formatFromName(name: string): IngestFormat | null {
  const lower = name.toLowerCase();
  if (lower.endsWith('.csv')) return 'csv';
  if (lower.endsWith('.jsonl') || lower.endsWith('.ndjson') || lower.endsWith('.json')) return 'jsonl';
  return null;
}

/** Splits one CSV line (RFC 4180 quoting, no line breaks inside fields). */
export function splitCsvLine(line: string): string[] {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    let field = '';
    if (line[i] === '"') {
      i++;
      for (;;) {
        const q = line.indexOf('"', i);
        if (q < 0) throw new Error('unterminated quoted field');
        field += line.slice(i, q);
        if (line[q + 1] === '"') {
          field += '"';
          i = q + 2;
        } else {
          i = q + 1;
          break;
        }
      }
      if (i < line.length && line[i] !== ',') throw new Error('text after a closing quote');
    } else {
      const comma = line.indexOf(',', i);
      field = comma < 0 ? line.slice(i) : line.slice(i, comma);
      i = comma < 0 ? line.length : comma;
    }
    fields.push(field.trim());
    if (i >= line.length) return fields;
    i++; // past the comma
  }
}

export class LineParser {
  private format: IngestFormat | null;
  private csvColumns: string[] | null = null;
  /**
   * The clock records are held to (a day's tolerance ahead), read once a batch: reading it per
   * record was a third of a metric line's normalising time.
   */
  private clock = Date.now();
  /** Where a CSV header that could not be read was: the rows under it are refused with a pointer to it. */
  private csvHeaderFailedAt: number | null = null;
  private readonly keyIndexes = new Map<string, number>();
  /** Per series key index: the last unit a record sent for it (so a unit repeated on every line is passed on once). */
  private readonly keyUnits: (string | undefined)[] = [];
  private errorsKept = 0;
  private current = this.emptyBatch();
  private keyIndex: Int32Array<ArrayBuffer>;
  private ts: Float64Array<ArrayBuffer>;
  private values: Float64Array<ArrayBuffer>;
  private points = 0;
  private readonly components = new Map<string, [number, number]>();

  constructor(
    readonly source: string,
    format: IngestFormat | 'auto',
    private readonly batchSize: number,
    private readonly maxErrors: number,
  ) {
    this.format = format === 'auto' ? formatFromName(source) : format;
    this.current.format = this.format;
    this.keyIndex = new Int32Array(batchSize);
    this.ts = new Float64Array(batchSize);
    this.values = new Float64Array(batchSize);
  }

  /** Takes one line; returns a batch when it has `batchSize` records. */
  pushLine(rawLine: string, lineNumber: number): ParsedBatch | null {
    let line = rawLine.charCodeAt(rawLine.length - 1) === 13 ? rawLine.slice(0, -1) : rawLine;
    // A byte-order mark, as some editors and Excel write: invisible in an error message, so taken off.
    if (lineNumber === 1 && line.charCodeAt(0) === 0xfeff) line = line.slice(1);
    // Excel's separator hint ("sep=,") before a CSV header: not data, and not the header either.
    if (lineNumber === 1 && /^sep=.$/i.test(line)) return null;
    if (line.trim() === '') return null;
    if (this.format === null) {
      this.format = line.trimStart().startsWith('{') ? 'jsonl' : 'csv';
      this.current.format = this.format;
    }
    try {
      if (line.length > MAX_LINE_BYTES / 4 && Buffer.byteLength(line) > MAX_LINE_BYTES) {
        throw new Error(`line longer than ${MAX_LINE_BYTES} bytes`);
      }
      const record = this.format === 'jsonl' ? this.parseJsonLine(line) : this.parseCsvLine(line, lineNumber);
      if (record) return this.accept(record);
    } catch (err) {
      this.reject(lineNumber, (err as Error).message);
    }
    return null;
  }

  /** Takes one decoded value (the MCP tool's `records`); `position` names it in errors. */
  pushValue(value: unknown, position: number): ParsedBatch | null {
    try {
      return this.accept(normaliseRecord(value, this.clock));
    } catch (err) {
      this.reject(position, (err as Error).message);
      return null;
    }
  }

  /** The last batch (possibly empty), marked final. */
  finish(): ParsedBatch {
    const batch = this.cut();
    batch.final = true;
    return batch;
  }

  private parseJsonLine(line: string): TelemetryRecord {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      throw new Error(`invalid JSON (${(err as Error).message})`);
    }
    return normaliseRecord(value, this.clock);
  }

  private parseCsvLine(line: string, lineNumber: number): TelemetryRecord | null {
    if (this.csvHeaderFailedAt !== null) throw new Error(`not read: the CSV header on line ${this.csvHeaderFailedAt} is invalid`);
    const fields = splitCsvLine(line);
    if (this.csvColumns === null) {
      try {
        this.csvColumns = readCsvHeader(fields);
      } catch (err) {
        this.csvHeaderFailedAt = lineNumber;
        throw err;
      }
      return null;
    }
    const columns = this.csvColumns;
    if (fields.length !== columns.length) {
      throw new Error(`expected ${columns.length} fields as in the header, found ${fields.length}`);
    }
    const row: Record<string, string> = {};
    columns.forEach((column, i) => (row[column] = fields[i]!));
    const value = row.value!.trim();
    if (value === '' || Number.isNaN(Number(value))) throw new Error(`value: ${JSON.stringify(row.value)} is not a number`);
    const labels: Record<string, string> = {};
    for (const column of columns) {
      if (!(CSV_REQUIRED as readonly string[]).includes(column) && row[column] !== '') labels[column] = row[column]!;
    }
    return normaliseRecord({ type: 'metric', ts: row.timestamp, name: row.metric, component: row.component, value: Number(value), labels }, this.clock);
  }

  private accept(record: TelemetryRecord): ParsedBatch | null {
    const batch = this.current;
    batch.accepted++;
    if (record.type === 'metric') {
      let labelsJson = '{}';
      for (const _ in record.labels) {
        labelsJson = JSON.stringify(record.labels);
        break;
      }
      const key = `${record.name}\u0000${record.component}\u0000${labelsJson}`;
      let index = this.keyIndexes.get(key);
      if (index === undefined) {
        index = this.keyIndexes.size;
        this.keyIndexes.set(key, index);
        batch.newKeys.push({ name: record.name, component: record.component, labels: record.labels });
      }
      if (record.unit !== undefined && this.keyUnits[index] !== record.unit) {
        this.keyUnits[index] = record.unit;
        batch.units.push([index, record.unit]);
      }
      this.keyIndex[this.points] = index;
      this.ts[this.points] = record.ts;
      this.values[this.points] = record.value;
      this.points++;
      this.seen(record.component, record.ts);
    } else {
      batch.records.push(record);
      this.seen(record.component, record.type === 'span' ? record.start : record.ts);
    }
    return this.points + batch.records.length >= this.batchSize ? this.cut() : null;
  }

  private seen(component: string, ts: number): void {
    const range = this.components.get(component);
    if (!range) this.components.set(component, [ts, ts]);
    else {
      if (ts < range[0]) range[0] = ts;
      if (ts > range[1]) range[1] = ts;
    }
  }

  private reject(line: number, reason: string): void {
    const batch = this.current;
    batch.rejected++;
    if (this.errorsKept < this.maxErrors) {
      batch.errors.push({ source: this.source, line, reason });
      this.errorsKept++;
    } else {
      batch.errorsTruncated = true;
    }
  }

  private cut(): ParsedBatch {
    this.clock = Date.now();
    const batch = this.current;
    batch.keyIndex = this.keyIndex.slice(0, this.points);
    batch.ts = this.ts.slice(0, this.points);
    batch.values = this.values.slice(0, this.points);
    batch.components = [...this.components].map(([name, [first, last]]) => [name, first, last]);
    this.components.clear();
    this.points = 0;
    this.current = this.emptyBatch();
    this.current.format = this.format;
    return batch;
  }

  private emptyBatch(): ParsedBatch {
    return {
      type: 'batch',
      format: null,
      newKeys: [],
      keyIndex: new Int32Array(0),
      ts: new Float64Array(0),
      values: new Float64Array(0),
      records: [],
      components: [],
      units: [],
      accepted: 0,
      rejected: 0,
      errors: [],
      errorsTruncated: false,
      final: false,
    };
  }
}

function readCsvHeader(fields: string[]): string[] {
  const columns = fields.map((f) => f.toLowerCase());
  const missing = CSV_REQUIRED.filter((c) => !columns.includes(c));
  if (missing.length) throw new Error(`CSV header must name ${CSV_REQUIRED.join(',')} (missing: ${missing.join(', ')})`);
  const duplicate = columns.find((c, i) => columns.indexOf(c) !== i);
  if (duplicate) throw new Error(`CSV header names column "${duplicate}" twice`);
  return columns;
}
