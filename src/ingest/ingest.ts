/**
 * File and text ingestion: JSONL records or long-form CSV, validated line by line, written in
 * batched transactions. A bad line is reported as `source:line: reason` and the good lines are
 * kept; in strict mode any bad line means nothing at all is written.
 *
 * Files are parsed in a worker thread while the main thread writes (see parse-worker.ts);
 * text, stdin and strict mode are parsed in-thread by the same `LineParser`.
 */
import { existsSync } from 'node:fs';
import { access } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { NOTHING_WRITTEN, type Store, type WriteSummary } from '../store/store.js';
import {
  LineParser,
  type FromWorker,
  type IngestError,
  type IngestFormat,
  type ParsedBatch,
  type ParseWorkerInput,
  type ToWorker,
} from './line-parser.js';

export { MAX_LINE_BYTES, splitCsvLine, type IngestError, type IngestFormat } from './line-parser.js';

export interface IngestOptions {
  /** Reject the whole input, writing nothing, when any line is bad. */
  strict?: boolean;
  /** `auto` decides from the file name, then from the first non-blank line. */
  format?: IngestFormat | 'auto';
  /** Records per transaction (non-strict mode). */
  batchSize?: number;
  /** How many error lines the summary keeps (all are counted). */
  maxErrors?: number;
  /** Parse files on a worker thread when the compiled worker is available (default true). */
  useWorker?: boolean;
}

export interface IngestSummary {
  source: string;
  format: IngestFormat | null;
  accepted: number;
  rejected: number;
  /** What reached the store, by record type (0 everywhere when strict mode rejected the input). */
  written: WriteSummary;
  errors: IngestError[];
  /** More lines were rejected than `errors` lists. */
  errors_truncated: boolean;
  strict: boolean;
}

export const DEFAULT_BATCH_SIZE = 20_000;
const DEFAULT_MAX_ERRORS = 100;

/** The compiled worker, present when running from dist/ (not when tests run the TS sources). */
const WORKER_URL = new URL('./parse-worker.js', import.meta.url);
const workerBuilt = existsSync(fileURLToPath(WORKER_URL));

export function formatIngestError(e: IngestError): string {
  return `${e.source}:${e.line}: ${e.reason}`;
}

/** `wrote 3 points, 1 events, 0 spans`, and how many records were already stored as sent. */
export function formatWritten(w: WriteSummary): string {
  return `wrote ${w.metrics} points, ${w.events} events, ${w.spans} spans${w.unchanged ? ` (${w.unchanged} already stored as sent)` : ''}`;
}

/** Applies parsed batches to the store and adds them up into a summary. */
class BatchWriter {
  private readonly seriesIds: number[] = [];
  private readonly held: ParsedBatch[] = [];
  readonly summary: IngestSummary;

  constructor(
    private readonly store: Store,
    source: string,
    private readonly strict: boolean,
  ) {
    this.summary = {
      source,
      format: null,
      accepted: 0,
      rejected: 0,
      written: { ...NOTHING_WRITTEN },
      errors: [],
      errors_truncated: false,
      strict,
    };
  }

  /** Counts a batch, and writes it now (or, in strict mode, holds it until the end). */
  take(batch: ParsedBatch): void {
    const s = this.summary;
    s.format = batch.format ?? s.format;
    s.accepted += batch.accepted;
    s.rejected += batch.rejected;
    s.errors.push(...batch.errors);
    s.errors_truncated ||= batch.errorsTruncated;
    if (this.strict) this.held.push(batch);
    else this.write(batch);
  }

  finish(): IngestSummary {
    if (this.strict && this.summary.rejected === 0 && this.held.length > 0) {
      this.store.inTransaction(() => this.held.forEach((b) => this.write(b)));
    }
    this.held.length = 0;
    return this.summary;
  }

  private write(batch: ParsedBatch): void {
    for (const key of batch.newKeys) this.seriesIds.push(this.store.seriesIdFor(key.name, key.component, key.labels));
    if (batch.ts.length === 0 && batch.records.length === 0) return;
    const written = this.store.writeColumnar({ ...batch, seriesIds: this.seriesIds });
    this.summary.written.metrics += written.metrics;
    this.summary.written.events += written.events;
    this.summary.written.spans += written.spans;
    this.summary.written.unchanged += written.unchanged;
  }
}

function parserFor(source: string, options: IngestOptions): LineParser {
  return new LineParser(source, options.format ?? 'auto', options.batchSize ?? DEFAULT_BATCH_SIZE, options.maxErrors ?? DEFAULT_MAX_ERRORS);
}

function feedLines(parser: LineParser, writer: BatchWriter, lines: Iterable<string>, firstLine: number): number {
  let lineNumber = firstLine;
  for (const line of lines) {
    const batch = parser.pushLine(line, ++lineNumber);
    if (batch) writer.take(batch);
  }
  return lineNumber;
}

export async function ingestStream(store: Store, input: Readable, source: string, options: IngestOptions = {}): Promise<IngestSummary> {
  const parser = parserFor(source, options);
  const writer = new BatchWriter(store, source, options.strict ?? false);
  input.setEncoding('utf8');
  let lineNumber = 0;
  let rest = '';
  for await (const chunk of input as AsyncIterable<string>) {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop()!;
    lineNumber = feedLines(parser, writer, lines, lineNumber);
  }
  if (rest !== '') feedLines(parser, writer, [rest], lineNumber);
  writer.take(parser.finish());
  return writer.finish();
}

export async function ingestFile(store: Store, path: string, options: IngestOptions = {}): Promise<IngestSummary> {
  try {
    await access(path);
  } catch (err) {
    throw new Error(`${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  if (options.strict || options.useWorker === false || !workerBuilt) {
    const { createReadStream } = await import('node:fs');
    return ingestStream(store, createReadStream(path, { highWaterMark: 1 << 20 }), path, options);
  }
  return ingestFileOnWorker(store, path, options);
}

function ingestFileOnWorker(store: Store, path: string, options: IngestOptions): Promise<IngestSummary> {
  const writer = new BatchWriter(store, path, false);
  const input: ParseWorkerInput = {
    path,
    source: path,
    format: options.format ?? 'auto',
    batchSize: options.batchSize ?? DEFAULT_BATCH_SIZE,
    maxErrors: options.maxErrors ?? DEFAULT_MAX_ERRORS,
  };
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_URL, { workerData: input });
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      void worker.terminate();
      fn();
    };
    worker.on('message', (message: FromWorker) => {
      if (message.type === 'failed') return settle(() => reject(new Error(message.message)));
      try {
        writer.take(message);
      } catch (err) {
        return settle(() => reject(err as Error));
      }
      if (message.final) return settle(() => resolve(writer.finish()));
      worker.postMessage({ type: 'written' } satisfies ToWorker);
    });
    worker.on('error', (err) => settle(() => reject(err)));
    worker.on('exit', (code) => settle(() => reject(new Error(`${path}: the parsing worker stopped (exit ${code}) before the end of the file`))));
  });
}

export function ingestText(store: Store, text: string, source: string, options: IngestOptions = {}): IngestSummary {
  const parser = parserFor(source, options);
  const writer = new BatchWriter(store, source, options.strict ?? false);
  feedLines(parser, writer, text.split('\n'), 0);
  writer.take(parser.finish());
  return writer.finish();
}

export function ingestValues(store: Store, values: readonly unknown[], source: string, options: IngestOptions = {}): IngestSummary {
  const parser = parserFor(source, options);
  const writer = new BatchWriter(store, source, options.strict ?? false);
  values.forEach((value, i) => {
    const batch = parser.pushValue(value, i + 1);
    if (batch) writer.take(batch);
  });
  writer.take(parser.finish());
  return writer.finish();
}
