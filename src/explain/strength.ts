/** Shared scales and wording for signals. */
import { median } from '../stats/robust.js';
import { formatBytes, toSignificant } from '../stats/precision.js';
import { DEFAULT_SCALE_FLOOR, windowShift, type WindowShift } from '../stats/shift.js';

/** |z| at which a signal counts as having moved. */
export const MOVED_Z = 3;

/**
 * Ranking strength of a z: linear up to 10, logarithmic above, so a metric that moved by a
 * thousand sigmas does not drown every other kind of evidence, yet the order is kept.
 */
export function strengthOf(z: number): number {
  const magnitude = Math.abs(z);
  if (!Number.isFinite(magnitude)) return 60;
  return magnitude <= 10 ? magnitude : 10 * (1 + Math.log(magnitude / 10));
}

/**
 * How far a window of a measured level (a metric, a latency) moved from its baseline, with the
 * baseline's scale floored at 1 % of the larger of the two levels, the window's median as well as
 * the baseline's. A flat baseline (a gauge at 0, a wrapper with no own time) shows no noise at
 * all, and its noise at another level is unseen: noise that grows with the level (1 % of it, the
 * floor the baseline's own level already gets) is the least that can be assumed there. A series
 * that sat at zero and moved then reads about 100 sigmas, not 10^10, and the same jump reads
 * about the same size up as down.
 */
export function levelShift(baseline: ArrayLike<number>, window: ArrayLike<number>): WindowShift {
  const level = Math.abs(median(window));
  return windowShift(baseline, window, {
    onsetZ: MOVED_Z,
    floor: { absolute: Math.max(DEFAULT_SCALE_FLOOR.absolute, DEFAULT_SCALE_FLOOR.relative * level) },
  });
}

/**
 * How far a window of counts per bucket (spans per bucket) moved from its baseline, with the
 * baseline's scale floored at the Poisson standard deviation of its mean count, and of one event
 * per bucket at least: independent arrivals vary at least that much from bucket to bucket, and a
 * count knows nothing finer than one event. A component silent in the baseline that makes 16
 * calls a bucket reads z 16, not 16 / 1e-9.
 */
export function countShift(baseline: ArrayLike<number>, window: ArrayLike<number>): WindowShift {
  let sum = 0;
  for (let i = 0; i < baseline.length; i++) sum += baseline[i] as number;
  const mean = baseline.length ? sum / baseline.length : 0;
  return windowShift(baseline, window, { onsetZ: MOVED_Z, floor: { absolute: Math.sqrt(Math.max(1, mean)) } });
}

/**
 * The unit of a metric guessed from its name, where the conventions say it (docs/TELEMETRY.md):
 * for a series stored without a unit only.
 */
export function unitOf(name: string): string | null {
  if (/memory|bytes|\.size$/.test(name)) return 'By';
  if (/duration|delay|latency|\blat_/.test(name)) return 's';
  if (/utilization|ratio|rate$/.test(name)) return '1';
  return null;
}

/**
 * A value in its UCUM unit, for reading: bytes scaled (`1.5 MiB`), `%` after the number, nothing
 * for a dimensionless `1`, an annotation without its braces (`{request}/s` reads `request/s`).
 */
export function formatValue(value: number | null, unit: string | null): string {
  if (value === null || !Number.isFinite(value)) return '-';
  if (unit === 'By') return formatBytes(value);
  if (unit === '%') return `${round3(value)}%`;
  if (unit === null || unit === '' || unit === '1') return String(round3(value));
  return `${round3(value)} ${unit.replace(/[{}]/g, '')}`;
}

export function round3(value: number): number {
  return toSignificant(value, 3);
}

export function labelled(name: string, labels: Record<string, string>): string {
  const entries = Object.entries(labels);
  return entries.length ? `${name}{${entries.map(([k, v]) => `${k}=${v}`).join(',')}}` : name;
}
