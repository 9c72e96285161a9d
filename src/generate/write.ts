/** JSONL output: one input-format line per record, streamed to disk, plus the truth file. */
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { TelemetryRecord } from '../ingest/records.js';
import { generateRecords } from './generator.js';
import type { ScenarioOptions } from './plan.js';
import { scenarioTruth } from './truth.js';

/** The input-format JSON line (no newline) for a normalised record; fields in a fixed order. */
export function recordToJsonLine(record: TelemetryRecord): string {
  switch (record.type) {
    case 'metric':
      return JSON.stringify({
        type: 'metric',
        ts: record.ts,
        name: record.name,
        value: record.value,
        component: record.component,
        labels: record.labels,
      });
    case 'event':
      return JSON.stringify({
        type: 'event',
        ts: record.ts,
        kind: record.kind,
        component: record.component,
        level: record.level,
        message: record.message,
        attrs: record.attrs,
      });
    case 'span':
      return JSON.stringify({
        type: 'span',
        trace_id: record.trace_id,
        span_id: record.span_id,
        parent_id: record.parent_id,
        name: record.name,
        component: record.component,
        start: record.start,
        duration_ms: record.duration_ms,
        status: record.status,
        attrs: record.attrs,
      });
  }
}

/** `out.jsonl` → `out.truth.json`; any other name gets `.truth.json` appended. */
export function truthPathFor(outPath: string): string {
  return outPath.endsWith('.jsonl') ? `${outPath.slice(0, -'.jsonl'.length)}.truth.json` : `${outPath}.truth.json`;
}

const CHUNK_CHARS = 1 << 20;

/** Streams the scenario to `outPath` as JSONL and writes its ground truth next to it. */
export async function writeScenario(options: ScenarioOptions, outPath: string): Promise<{ lines: number; truthPath: string }> {
  const truth = scenarioTruth(options); // validates the options before any file is touched
  const truthPath = truthPathFor(outPath);
  await mkdir(dirname(outPath), { recursive: true });
  const stream = createWriteStream(outPath, { encoding: 'utf8' });
  let failure: Error | null = null;
  stream.on('error', (err) => {
    failure = err;
  });
  let lines = 0;
  let chunk = '';
  try {
    for (const record of generateRecords(options)) {
      chunk += recordToJsonLine(record) + '\n';
      lines++;
      if (chunk.length >= CHUNK_CHARS) {
        if (failure) throw failure;
        const ok = stream.write(chunk);
        chunk = '';
        if (!ok) await once(stream, 'drain');
      }
    }
    if (chunk) stream.write(chunk);
    stream.end();
    await once(stream, 'finish');
  } catch (err) {
    stream.destroy();
    throw err;
  }
  if (failure) throw failure;
  await writeFile(truthPath, JSON.stringify(truth, null, 2) + '\n', 'utf8');
  return { lines, truthPath };
}

/** Writes a scenario straight into a store, in batched transactions, with no file in between. */
export function loadScenario(store: { writeRecords(records: TelemetryRecord[]): unknown }, options: ScenarioOptions, batchSize = 20_000): number {
  let batch: TelemetryRecord[] = [];
  let written = 0;
  for (const record of generateRecords(options)) {
    batch.push(record);
    if (batch.length === batchSize) {
      store.writeRecords(batch);
      written += batch.length;
      batch = [];
    }
  }
  store.writeRecords(batch);
  return written + batch.length;
}
