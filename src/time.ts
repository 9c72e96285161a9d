/** Durations (`90s`, `15m`, `2h`, `7d`) and points in time as the tools and the CLI accept them. */
import { parseTimestamp } from './ingest/records.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?$/;

/**
 * A positive duration with its unit: `500ms`, `90s`, `15m`, `1.5h`, `7d`, `2w`. A bare number is
 * refused: `lookback: "60"` read as 60 ms gave an empty window and a false all-clear.
 */
export function parseDuration(text: string): number {
  const m = DURATION.exec(text.trim());
  if (m && m[2] === undefined) throw new Error(`${JSON.stringify(text)} has no unit; write it as 500ms, 90s, 15m, 2h or 7d`);
  return durationMs(text, m);
}

/** As parseDuration, but a bare number is milliseconds (directive and policy durations, where that is documented). */
export function parseDurationOrMs(text: string): number {
  return durationMs(text, DURATION.exec(text.trim()));
}

function durationMs(text: string, m: RegExpExecArray | null): number {
  const ms = m ? Math.round(Number(m[1]) * UNIT_MS[m[2] ?? 'ms']!) : Number.NaN;
  if (!(ms > 0)) throw new Error(`${JSON.stringify(text)} is not a positive duration such as 90s, 15m, 2h or 7d`);
  return ms;
}

/**
 * A point in time: `now`, a relative `-15m` / `-2h` (before `now`), an ISO 8601 string, or an
 * epoch number (seconds below 1e11, else milliseconds).
 */
export function parseTimeInput(input: string | number, now: number = Date.now()): number {
  if (typeof input === 'string') {
    const text = input.trim();
    if (text === 'now') return now;
    const relative = text.startsWith('-') ? DURATION.exec(text.slice(1)) : null;
    if (relative) {
      if (relative[2] === undefined) throw new Error(`${JSON.stringify(text)} has no unit; write it as -90s, -15m, -2h or -7d`);
      const at = now - durationMs(text, relative);
      // as absolute times are: anything before 1970 is a mistake
      if (at < 0) throw new Error(`${JSON.stringify(text)} reaches before 1970`);
      return at;
    }
    // "60m" for "60 minutes ago": say how a relative time is written rather than that it is no timestamp
    const unsigned = DURATION.exec(text);
    if (unsigned && unsigned[2] !== undefined) throw new Error(`${JSON.stringify(text)} is a duration, not a time; for ${text} ago write -${text}`);
  }
  return parseTimestamp(input);
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** The largest of the usual widths that is at most `ms` (for human-friendly bucket sizes). */
const NICE_WIDTHS = [1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800].map(
  (s) => s * 1000,
);
export function niceWidthAtLeast(ms: number): number {
  return NICE_WIDTHS.find((w) => w >= ms) ?? Math.ceil(ms / 86_400_000) * 86_400_000;
}

export function formatDuration(ms: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
