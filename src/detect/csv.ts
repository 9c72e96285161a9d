/**
 * `kiwi detect --csv IN --out OUT`: scores a `timestamp,value` CSV causally, row by row, as Kiwi
 * would live, and writes `timestamp,value,anomaly_score,anomaly` (anomaly = Kiwi's own 0/1
 * decision). Rows that cannot be read are reported as `file:line: reason` and left out.
 *
 * The file is read as bytes. A line that is plain ASCII without quotes (nearly every line of
 * nearly every file) is scored without turning it into strings: its two fields are found between
 * commas, the usual timestamp shape and plain decimals are read from the bytes (giving exactly
 * what parseTimestamp and Number give, or handing the text over to them), and the output line is
 * assembled in a byte buffer. Any other line (the header, quoted fields, non-ASCII text) takes the
 * general path through strings. Both paths write the same bytes for the same line.
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

const NEWLINE = 10;
const CARRIAGE_RETURN = 13;
const QUOTE = 34;
const PLUS = 43;
const COMMA = 44;
const MINUS = 45;
const POINT = 46;
const COLON = 58;
const DIGIT_ZERO = 48;
const SPACE = 32;
const LETTER_T = 84;
const LETTER_Z = 90;

/** Bytes read per chunk; small enough that a chunk's lines die young instead of burdening the GC. */
const READ_CHUNK = 1 << 16;

/** The bytes String.prototype.trim removes that are ASCII: tab, line feed, vertical tab, form feed, carriage return, space. */
function isAsciiSpace(byte: number): boolean {
  return byte === SPACE || (byte >= 9 && byte <= 13);
}

/** 10^0 .. 10^15, each exact as a double (built by multiplying, which is exact here). */
const POWERS_OF_TEN = new Float64Array(16);
POWERS_OF_TEN[0] = 1;
for (let k = 1; k < POWERS_OF_TEN.length; k++) POWERS_OF_TEN[k] = (POWERS_OF_TEN[k - 1] as number) * 10;

/**
 * Number(text) for a plain decimal in bytes[start, end): an optional sign, digits, an optional
 * point and more digits, at most 15 digits in all. Its value is m / 10^k with m and 10^k both exact
 * doubles, and one IEEE division rounds that correctly, as Number does (Clinger's fast path).
 * NaN for any other text (exponents, more digits, hexadecimal, ...): the caller then uses Number.
 */
export function plainDecimal(bytes: Uint8Array, start: number, end: number): number {
  let i = start;
  const sign = bytes[i];
  if (sign === MINUS || sign === PLUS) i++;
  let mantissa = 0;
  let digits = 0;
  let fractionDigits = 0;
  let seenPoint = false;
  for (; i < end; i++) {
    const digit = (bytes[i] as number) - DIGIT_ZERO;
    if (digit >= 0 && digit <= 9) {
      mantissa = mantissa * 10 + digit;
      digits++;
      if (seenPoint) fractionDigits++;
    } else if (digit === POINT - DIGIT_ZERO && !seenPoint) {
      seenPoint = true;
    } else {
      return NaN;
    }
  }
  if (digits === 0 || digits > 15) return NaN;
  const magnitude = mantissa / (POWERS_OF_TEN[fractionDigits] as number);
  return sign === MINUS ? -magnitude : magnitude;
}

/**
 * Writes `score.toFixed(6)` as ASCII at bytes[at..] and returns the end, for a score in [0, 1]:
 * the digits are those of round-half-up(score * 1e6). The product is within 2^-33 of the exact
 * one, so away from a tie it rounds the same way; within 1e-6 of a tie (and outside [0, 1]) this
 * returns -1 and the caller uses toFixed itself.
 */
export function writeFixed6(bytes: Uint8Array, at: number, score: number): number {
  if (!(score >= 0 && score <= 1)) return -1;
  const scaled = score * 1e6;
  const whole = Math.floor(scaled);
  const fraction = scaled - whole;
  if (Math.abs(fraction - 0.5) < 1e-6) return -1;
  let micros = fraction > 0.5 ? whole + 1 : whole;
  bytes[at] = micros >= 1e6 ? DIGIT_ZERO + 1 : DIGIT_ZERO;
  bytes[at + 1] = POINT;
  micros %= 1e6;
  for (let i = at + 7; i > at + 1; i--) {
    const digit = micros % 10;
    bytes[i] = DIGIT_ZERO + digit;
    micros = (micros - digit) / 10;
  }
  return at + 8;
}

/**
 * Time of day in ms of `YYYY-MM-DD[ T]HH:MM:SS[.fff][Z]` in bytes[start, end) (the shapes
 * parseTimestamp reads without a regular expression), or NaN for any other text or an hour,
 * minute or second out of range.
 */
function plainTimeOfDay(bytes: Uint8Array, start: number, end: number): number {
  const length = end - start;
  if (length !== 19 && length !== 20 && length !== 23 && length !== 24) return NaN;
  const separator = bytes[start + 10];
  if (bytes[start + 4] !== MINUS || bytes[start + 7] !== MINUS || (separator !== SPACE && separator !== LETTER_T)) return NaN;
  if (bytes[start + 13] !== COLON || bytes[start + 16] !== COLON) return NaN;
  let timeLength = 19;
  let millis = 0;
  if (length >= 23) {
    if (bytes[start + 19] !== POINT) return NaN;
    millis = twoDigits(bytes, start + 20) * 10 + oneDigit(bytes, start + 22);
    timeLength = 23;
  }
  if (length === timeLength + 1 ? bytes[start + timeLength] !== LETTER_Z : length !== timeLength) return NaN;
  const hour = twoDigits(bytes, start + 11);
  const minute = twoDigits(bytes, start + 14);
  const second = twoDigits(bytes, start + 17);
  // NaN (a non-digit) fails every comparison, so it fails this test too.
  if (!(hour <= 23 && minute <= 59 && second <= 59 && millis >= 0)) return NaN;
  return ((hour * 60 + minute) * 60 + second) * 1000 + millis;
}

function oneDigit(bytes: Uint8Array, at: number): number {
  const digit = (bytes[at] as number) - DIGIT_ZERO;
  return digit >= 0 && digit <= 9 ? digit : NaN;
}

function twoDigits(bytes: Uint8Array, at: number): number {
  return oneDigit(bytes, at) * 10 + oneDigit(bytes, at + 1);
}

/**
 * parseTimestamp for the usual timestamp shape, read from bytes. The date (the first ten
 * characters) is read by parseTimestamp itself, once per day seen, and the time of day added to
 * it: the same integer sum Date.UTC computes. A day is remembered only when both its ends are
 * accepted, so the range check cannot differ within it.
 */
export class PlainTimestampReader {
  private readonly day = new Uint8Array(10);
  private dayMs = NaN;

  /** Epoch ms, or NaN: then the caller uses parseTimestamp and tells `learn` its answer. */
  read(bytes: Uint8Array, start: number, end: number): number {
    if (Number.isNaN(this.dayMs)) return NaN;
    const day = this.day;
    for (let i = 0; i < 10; i++) if (bytes[start + i] !== day[i]) return NaN;
    return this.dayMs + plainTimeOfDay(bytes, start, end);
  }

  /** Remembers the day of a timestamp of the usual shape that parseTimestamp read as `ms`. */
  learn(bytes: Uint8Array, start: number, end: number, ms: number): void {
    const timeOfDay = plainTimeOfDay(bytes, start, end);
    if (Number.isNaN(timeOfDay)) return;
    const date = Buffer.from(bytes.subarray(start, start + 10)).toString('latin1');
    try {
      if (parseTimestamp(`${date}T00:00:00Z`) !== ms - timeOfDay) return;
      parseTimestamp(`${date}T23:59:59.999Z`);
    } catch {
      return;
    }
    this.day.set(bytes.subarray(start, start + 10));
    this.dayMs = ms - timeOfDay;
  }
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
  const input = createReadStream(inPath, { highWaterMark: READ_CHUNK });
  await once(input, 'open').catch((err: NodeJS.ErrnoException) => {
    throw new Error(`${inPath}: cannot read (${err.code ?? err.message})`);
  });
  const toStdout = outPath === '-';
  const output = toStdout ? process.stdout : createWriteStream(outPath);
  const detector = new UnivariateDetector(config);
  const timestamps = new PlainTimestampReader();
  const summary: CsvScoreSummary = { rows: 0, anomalies: 0, rejected: 0, errors: [] };
  let columns: { ts: number; value: number } | null = null;
  let lineNumber = 0;
  let out = Buffer.allocUnsafe(2 * READ_CHUNK);
  let outLength = 0;

  const reserve = (bytes: number) => {
    if (outLength + bytes <= out.length) return;
    const larger = Buffer.allocUnsafe(Math.max(2 * out.length, outLength + bytes));
    out.copy(larger, 0, 0, outLength);
    out = larger;
  };
  const writeLine = (text: string) => {
    reserve(Buffer.byteLength(text) + 1);
    outLength += out.write(text, outLength);
    out[outLength++] = NEWLINE;
  };
  const copyBytes = (bytes: Uint8Array, start: number, end: number) => {
    for (let i = start; i < end; i++) out[outLength++] = bytes[i] as number;
  };

  const reject = (reason: string) => {
    summary.rejected++;
    if (summary.errors.length < maxErrors) summary.errors.push(`${inPath}:${lineNumber}: ${reason}`);
  };

  /** The general path, through strings. */
  const handleText = (raw: string) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() === '') return;
    if (columns !== null && !line.includes('"')) {
      // Most files quote nothing: take the two fields between commas, without splitting the line.
      const tsText = fieldAt(line, columns.ts);
      const valueText = fieldAt(line, columns.value);
      if (tsText === undefined || valueText === undefined) return reject('missing timestamp or value field');
      return scoreText(tsText.trim(), valueText.trim());
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
      writeLine('timestamp,value,anomaly_score,anomaly');
      return;
    }
    const tsText = fields[columns.ts];
    const valueText = fields[columns.value];
    if (tsText === undefined || valueText === undefined) return reject('missing timestamp or value field');
    return scoreText(tsText, valueText);
  };
  const scoreText = (tsText: string, valueText: string) => {
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
    writeLine(`${tsText},${valueText},${verdict.score.toFixed(6)},${verdict.anomaly}`);
  };

  /** One line, bytes[start, end) without its line feed: the byte path when it is plain ASCII without quotes. */
  const handleLine = (bytes: Buffer, start: number, end: number) => {
    lineNumber++;
    if (columns === null) return handleText(bytes.toString('utf8', start, end));
    const lineEnd = end > start && bytes[end - 1] === CARRIAGE_RETURN ? end - 1 : end;
    const tsColumn = columns.ts;
    const valueColumn = columns.value;
    let tsStart = -1;
    let tsEnd = -1;
    let valueStart = -1;
    let valueEnd = -1;
    let field = 0;
    let fieldStart = start;
    let blank = true;
    for (let i = start; i < lineEnd; i++) {
      const byte = bytes[i] as number;
      if (byte === COMMA) {
        if (field === tsColumn) {
          tsStart = fieldStart;
          tsEnd = i;
        } else if (field === valueColumn) {
          valueStart = fieldStart;
          valueEnd = i;
        }
        field++;
        fieldStart = i + 1;
        blank = false;
      } else if (byte === QUOTE || byte >= 0x80) {
        return handleText(bytes.toString('utf8', start, end));
      } else if (blank && !isAsciiSpace(byte)) {
        blank = false;
      }
    }
    if (blank) return;
    if (field === tsColumn) {
      tsStart = fieldStart;
      tsEnd = lineEnd;
    } else if (field === valueColumn) {
      valueStart = fieldStart;
      valueEnd = lineEnd;
    }
    if (tsStart < 0 || valueStart < 0) return reject('missing timestamp or value field');
    while (tsStart < tsEnd && isAsciiSpace(bytes[tsStart] as number)) tsStart++;
    while (tsEnd > tsStart && isAsciiSpace(bytes[tsEnd - 1] as number)) tsEnd--;
    while (valueStart < valueEnd && isAsciiSpace(bytes[valueStart] as number)) valueStart++;
    while (valueEnd > valueStart && isAsciiSpace(bytes[valueEnd - 1] as number)) valueEnd--;

    let ts = timestamps.read(bytes, tsStart, tsEnd);
    if (Number.isNaN(ts)) {
      try {
        ts = parseTimestamp(bytes.toString('latin1', tsStart, tsEnd));
      } catch (err) {
        return reject((err as Error).message);
      }
      timestamps.learn(bytes, tsStart, tsEnd, ts);
    }
    let value = plainDecimal(bytes, valueStart, valueEnd);
    if (Number.isNaN(value)) {
      const valueText = bytes.toString('latin1', valueStart, valueEnd);
      value = Number(valueText);
      if (valueText.trim() === '' || !Number.isFinite(value)) return reject(`value ${JSON.stringify(valueText)} is not a number`);
    }
    const verdict = detector.update(ts, value);
    summary.rows++;
    summary.anomalies += verdict.anomaly;

    reserve(tsEnd - tsStart + (valueEnd - valueStart) + 16);
    copyBytes(bytes, tsStart, tsEnd);
    out[outLength++] = COMMA;
    copyBytes(bytes, valueStart, valueEnd);
    out[outLength++] = COMMA;
    const scoreEnd = writeFixed6(out, outLength, verdict.score);
    if (scoreEnd >= 0) {
      outLength = scoreEnd;
    } else {
      const text = verdict.score.toFixed(6);
      reserve(text.length + 3);
      outLength += out.write(text, outLength, 'latin1');
    }
    out[outLength++] = COMMA;
    out[outLength++] = DIGIT_ZERO + verdict.anomaly;
    out[outLength++] = NEWLINE;
  };

  const flush = async () => {
    if (outLength === 0) return;
    const ready = out.subarray(0, outLength);
    out = Buffer.allocUnsafe(out.length);
    outLength = 0;
    if (!output.write(ready)) await once(output, 'drain');
  };

  try {
    /** Pieces of a line that began in an earlier chunk and has not ended yet. */
    let pending: Buffer[] = [];
    for await (const chunk of input as AsyncIterable<Buffer>) {
      let start = 0;
      let newline = chunk.indexOf(NEWLINE);
      if (newline >= 0 && pending.length > 0) {
        pending.push(chunk.subarray(0, newline));
        const line = Buffer.concat(pending);
        pending = [];
        handleLine(line, 0, line.length);
        start = newline + 1;
        newline = chunk.indexOf(NEWLINE, start);
      }
      while (newline >= 0) {
        handleLine(chunk, start, newline);
        start = newline + 1;
        newline = chunk.indexOf(NEWLINE, start);
      }
      if (start < chunk.length) pending.push(Buffer.from(chunk.subarray(start)));
      await flush();
    }
    if (pending.length > 0) {
      const line = Buffer.concat(pending);
      handleLine(line, 0, line.length);
    }
    await flush();
  } finally {
    // stdout stays open for whoever writes after us
    if (!toStdout) {
      output.end();
      await once(output, 'finish');
    }
  }
  if (columns === null) throw new Error(`${inPath}: empty file, expected a header timestamp,value`);
  return summary;
}
