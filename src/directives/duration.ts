/** Durations in directives and the policy: a number of milliseconds (0 allowed), or text such as `500ms`, `30s`, `5m`, `1h`. */
import { parseDurationOrMs } from '../time.js';

export function parseDurationText(value: number | string): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw new Error(`duration ${value} must be a non-negative number of milliseconds`);
    return value;
  }
  // "0s" is meaningful here (verify now, no delay); elsewhere a duration must be positive.
  if (/^0+(\.0+)?\s*(ms|s|m|h)?$/.test(value.trim())) return 0;
  return parseDurationOrMs(value);
}
