import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PlainTimestampReader, plainDecimal, scoreCsvFile, writeFixed6 } from '../src/detect/csv.js';
import { UnivariateDetector } from '../src/detect/univariate.js';
import { splitCsvLine } from '../src/ingest/line-parser.js';
import { parseTimestamp } from '../src/ingest/records.js';
import { seededRandom } from '../src/stats/random.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir();

const ascii = (text: string): Buffer => Buffer.from(text, 'latin1');

/**
 * The detector's CSV contract, written the plain way: decode the whole file, split it into lines
 * and fields as strings, and format with toFixed. The byte path must write exactly this.
 */
function referenceScore(path: string): { text: string; rows: number; anomalies: number; errors: string[] } {
  const detector = new UnivariateDetector();
  const out: string[] = [];
  const errors: string[] = [];
  let columns: { ts: number; value: number } | null = null;
  let rows = 0;
  let anomalies = 0;
  const lines = readFileSync(path, 'utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  lines.forEach((raw, index) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() === '') return;
    let fields: string[];
    if (columns !== null && !line.includes('"')) {
      fields = line.split(',').map((field, i) => (i === columns?.ts || i === columns?.value ? field.trim() : field));
    } else {
      try {
        fields = splitCsvLine(line);
      } catch (err) {
        return errors.push(`${path}:${index + 1}: ${(err as Error).message}`);
      }
    }
    if (columns === null) {
      const names = fields.map((f) => f.toLowerCase());
      columns = { ts: names.indexOf('timestamp'), value: names.indexOf('value') };
      return out.push('timestamp,value,anomaly_score,anomaly');
    }
    const tsText = fields[columns.ts];
    const valueText = fields[columns.value];
    if (tsText === undefined || valueText === undefined) return errors.push(`${path}:${index + 1}: missing timestamp or value field`);
    let ts: number;
    try {
      ts = parseTimestamp(tsText);
    } catch (err) {
      return errors.push(`${path}:${index + 1}: ${(err as Error).message}`);
    }
    const value = Number(valueText);
    if (valueText.trim() === '' || !Number.isFinite(value)) return errors.push(`${path}:${index + 1}: value ${JSON.stringify(valueText)} is not a number`);
    const verdict = detector.update(ts, value);
    rows++;
    anomalies += verdict.anomaly;
    out.push(`${tsText},${valueText},${verdict.score.toFixed(6)},${verdict.anomaly}`);
  });
  return { text: `${out.join('\n')}\n`, rows, anomalies, errors };
}

describe('kiwi detect --csv byte path', () => {
  it('reads plain decimals exactly as Number does, and hands every other text back', () => {
    const random = seededRandom(5);
    const texts = ['0', '-0', '+0', '.5', '5.', '-.25', '+7', '00012.5000', '123456789012345', '0.00000000000001', '999999999999999'];
    for (let i = 0; i < 20_000; i++) {
      const digits = 1 + Math.floor(random() * 15);
      let text = '';
      for (let d = 0; d < digits; d++) text += String(Math.floor(random() * 10));
      const point = Math.floor(random() * (digits + 1));
      text = `${random() < 0.3 ? '-' : ''}${text.slice(0, point)}${random() < 0.8 ? '.' : ''}${text.slice(point)}`;
      texts.push(text);
    }
    for (const text of texts) expect(Object.is(plainDecimal(ascii(text), 0, text.length), Number(text)), text).toBe(true);
    // Shapes Number reads differently (or that need more than one rounding) are refused, not guessed.
    for (const text of ['1e3', '1234567890123456', '0x1F', 'Infinity', '', '-', '.', '1.2.3', '1_0', '--1', ' 1', '1 ']) {
      expect(plainDecimal(ascii(text), 0, text.length), text).toBeNaN();
    }
    const inside = ascii('x,-12.75,y');
    expect(plainDecimal(inside, 2, 8)).toBe(-12.75);
  });

  it('formats scores exactly as toFixed(6), ties and all', () => {
    const random = seededRandom(9);
    const scores = [0, -0, 1, 0.5, 0.4995, 0.0000005, 0.9999995, 0.0000015, 0.1234565, 1e-7, 0.99999949999, Number.MIN_VALUE];
    for (let i = 0; i < 50_000; i++) scores.push(random());
    // values next to a rounding tie at the sixth decimal, on both sides
    for (let i = 0; i < 5_000; i++) {
      const tie = (Math.floor(random() * 1e6) + 0.5) / 1e6;
      scores.push(tie, tie + 1e-17, tie - 1e-17, tie + 1e-12, tie - 1e-12);
    }
    const bytes = new Uint8Array(16);
    let fallbacks = 0;
    for (const score of scores) {
      const end = writeFixed6(bytes, 2, score);
      if (end < 0) {
        fallbacks++;
        continue;
      }
      expect(Buffer.from(bytes.subarray(2, end)).toString('latin1'), String(score)).toBe(score.toFixed(6));
    }
    expect(fallbacks).toBeLessThan(scores.length / 2); // ties fall back; ordinary scores do not
    for (const outside of [NaN, -0.1, 1.0000001, Infinity]) expect(writeFixed6(bytes, 0, outside)).toBe(-1);
  });

  it('reads the usual timestamp shape exactly as parseTimestamp does, and hands other shapes back', () => {
    const reader = new PlainTimestampReader();
    const read = (text: string): number | string => {
      const bytes = ascii(text);
      let ms = reader.read(bytes, 0, bytes.length);
      if (Number.isNaN(ms)) {
        try {
          ms = parseTimestamp(text);
        } catch (err) {
          return (err as Error).message;
        }
        reader.learn(bytes, 0, bytes.length, ms);
      }
      return ms;
    };
    const expected = (text: string): number | string => {
      try {
        return parseTimestamp(text);
      } catch (err) {
        return (err as Error).message;
      }
    };
    const texts: string[] = [];
    for (let t = Date.UTC(2016, 1, 28, 22); t < Date.UTC(2016, 2, 1, 2); t += 7 * 60_000 + 13_007) {
      const iso = new Date(t).toISOString();
      texts.push(iso, iso.replace('T', ' ').slice(0, 19), iso.slice(0, 19), iso.slice(0, 19) + 'Z', iso.slice(0, 23));
    }
    texts.push(
      '2016-02-29 24:00:00', // the general parser reads 24:00 as the next midnight
      '2016-02-29 23:60:00',
      '2016-02-29 23:59:60',
      '2016-02-29 2a:00:00',
      '2016-02-29 12:00:00.1a3',
      '2016-02-29 12:00:00z',
      '2016-02-29 12:00:00+01:00',
      '2015-02-29 12:00:00',
      '2015-02-28 12:00:00',
      '2199-12-31 23:59:59',
      '2200-01-01 00:00:00',
      '2200-01-01 00:00:01', // outside the accepted range, on a day whose midnight is inside it
      '2200-01-01 00:00:00',
      '1970-01-01 00:00:00',
      '1969-12-31 23:59:59',
      '1456790400',
    );
    let hits = 0;
    for (const text of texts) {
      const before = reader.read(ascii(text), 0, text.length);
      if (!Number.isNaN(before)) hits++;
      expect(read(text), text).toStrictEqual(expected(text));
    }
    expect(hits).toBeGreaterThan(texts.length / 2); // the day is remembered, not parsed every time
  });

  it('writes exactly what the string-based reference writes, over chunk boundaries and odd lines', async () => {
    const dir = tempDir();
    const path = join(dir, 'mixed.csv');
    const random = seededRandom(17);
    const lines = ['\ufeffid,Value,note,TIMESTAMP'];
    const start = Date.UTC(2025, 2, 30, 20);
    for (let i = 0; i < 6000; i++) {
      const t = start + i * 60_000;
      const iso = new Date(t).toISOString();
      const value = 50 + 10 * Math.sin(i / 30) + 3 * (random() - 0.5) + (i === 5000 ? 80 : 0);
      const ts = [iso, iso.replace('T', ' ').slice(0, 19), ` ${iso.slice(0, 19)} `, String(t / 1000), iso.replace('Z', '+00:00')][i % 5];
      const valueText = [value.toFixed(3), String(value), value.toExponential(6), ` ${value.toFixed(1)}\t`][i % 4];
      let line = `${i},${valueText},n${i},${ts}`;
      if (i % 101 === 3) line = `${i},"${valueText}","a, quoted ""note""",${ts}`;
      if (i % 211 === 5) line = `${i},${valueText},naïve,${ts}`;
      if (i % 307 === 7) line = `${i},lots,x,${ts}`;
      if (i % 401 === 9) line = `${i},${valueText},x,2025-02-30 00:00:00`;
      if (i % 503 === 11) line = `${i},${valueText}`;
      if (i % 601 === 13) line = '  \t';
      if (i % 701 === 15) line = `${i},"unterminated,x,${ts}`;
      if (i % 2 === 0) line += '\r';
      lines.push(line);
    }
    writeFileSync(path, lines.join('\n')); // no line feed after the last line
    expect(readFileSync(path).length).toBeGreaterThan(3 * 65_536); // several read chunks
    const out = join(dir, 'scored.csv');
    const summary = await scoreCsvFile(path, out);
    const reference = referenceScore(path);
    expect(summary.rows).toBe(reference.rows);
    expect(summary.anomalies).toBe(reference.anomalies);
    expect(summary.errors).toEqual(reference.errors.slice(0, 100));
    expect(summary.rejected).toBe(reference.errors.length);
    expect(reference.errors.length).toBeGreaterThan(20);
    expect(reference.anomalies).toBeGreaterThan(0);
    expect(readFileSync(out, 'utf8')).toBe(reference.text);
  });
});
