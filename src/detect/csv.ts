/**
 * `kiwi detect --csv IN --out OUT`: scores a `timestamp,value` CSV causally, row by row, as Kiwi
 * would live, and writes `timestamp,value,anomaly_score,anomaly` (anomaly = Kiwi's own 0/1
 * decision). Rows that cannot be read are reported as `file:line: reason` and left out.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { splitCsvLine } from '../ingest/line-parser.js';
import { parseTimestamp } from '../ingest/records.js';
import { UnivariateDetector, type DetectorConfig } from './univariate.js';

export interface CsvScoreSummary {
  rows: number;
  anomalies: number;
  rejected: number;
  /** `file:line: reason`, at most `maxErrors`. */
  errors: string[];
}

/** The `index`-th comma-separated field of an unquoted line, or undefined when the line is shorter. */
function fieldAt(line: string, index: number): string | undefined {
  let start = 0;
  for (let i = 0; i < index; i++) {
    const comma = line.indexOf(',', start);
    if (comma < 0) return undefined;
    start = comma + 1;
  }
  const end = line.indexOf(',', start);
  return end < 0 ? line.slice(start) : line.slice(start, end);
}

export async function scoreCsvFile(
  inPath: string,
  outPath: string,
  config: Partial<DetectorConfig> = {},
  maxErrors = 100,
): Promise<CsvScoreSummary> {
  const input = createReadStream(inPath, { encoding: 'utf8', highWaterMark: 1 << 20 });
  await once(input, 'open').catch((err: NodeJS.ErrnoException) => {
    throw new Error(`${inPath}: cannot read (${err.code ?? err.message})`);
  });
  const output = createWriteStream(outPath);
  const detector = new UnivariateDetector(config);
  const summary: CsvScoreSummary = { rows: 0, anomalies: 0, rejected: 0, errors: [] };
  let columns: { ts: number; value: number } | null = null;
  let lineNumber = 0;
  let rest = '';
  let out: string[] = [];

  const reject = (reason: string) => {
    summary.rejected++;
    if (summary.errors.length < maxErrors) summary.errors.push(`${inPath}:${lineNumber}: ${reason}`);
  };
  const handle = (raw: string) => {
    lineNumber++;
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() === '') return;
    if (columns !== null && !line.includes('"')) {
      // Most files quote nothing: take the two fields between commas, without splitting the line.
      const tsText = fieldAt(line, columns.ts);
      const valueText = fieldAt(line, columns.value);
      if (tsText === undefined || valueText === undefined) return reject('missing timestamp or value field');
      return score(tsText.trim(), valueText.trim());
    }
    let fields: string[];
    try {
      fields = splitCsvLine(line);
    } catch (err) {
      return reject((err as Error).message);
    }
    if (columns === null) {
      const names = fields.map((f) => f.toLowerCase());
      columns = { ts: names.indexOf('timestamp'), value: names.indexOf('value') };
      if (columns.ts < 0 || columns.value < 0) throw new Error(`${inPath}:1: header must name timestamp and value columns`);
      out.push('timestamp,value,anomaly_score,anomaly');
      return;
    }
    const tsText = fields[columns.ts];
    const valueText = fields[columns.value];
    if (tsText === undefined || valueText === undefined) return reject('missing timestamp or value field');
    return score(tsText, valueText);
  };
  const score = (tsText: string, valueText: string) => {
    let ts: number;
    try {
      ts = parseTimestamp(tsText);
    } catch (err) {
      return reject((err as Error).message);
    }
    const value = Number(valueText);
    if (valueText.trim() === '' || !Number.isFinite(value)) return reject(`value ${JSON.stringify(valueText)} is not a number`);
    const verdict = detector.update(ts, value);
    summary.rows++;
    summary.anomalies += verdict.anomaly;
    out.push(`${tsText},${valueText},${verdict.score.toFixed(6)},${verdict.anomaly}`);
  };

  const flush = async () => {
    if (out.length === 0) return;
    if (!output.write(`${out.join('\n')}\n`)) await once(output, 'drain');
    out = [];
  };

  try {
    for await (const chunk of input as AsyncIterable<string>) {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop()!;
      for (const line of lines) handle(line);
      await flush();
    }
    if (rest !== '') handle(rest);
    await flush();
  } finally {
    output.end();
    await once(output, 'finish');
  }
  if (columns === null) throw new Error(`${inPath}: empty file, expected a header timestamp,value`);
  return summary;
}
