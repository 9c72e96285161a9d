/** Shared scales and wording for signals. */
import { formatBytes, toSignificant } from '../stats/precision.js';

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

/** The unit of a metric from its name, where the conventions say it (docs/TELEMETRY.md). */
export function unitOf(name: string): string | null {
  if (/memory|bytes|\.size$/.test(name)) return 'By';
  if (/duration|delay|latency|\blat_/.test(name)) return 's';
  if (/utilization|ratio|rate$/.test(name)) return '1';
  return null;
}

export function formatValue(value: number | null, unit: string | null): string {
  if (value === null || !Number.isFinite(value)) return '-';
  if (unit === 'By') return formatBytes(value);
  if (unit === 'ms') return `${round3(value)} ms`;
  if (unit === 's') return `${round3(value)} s`;
  if (unit === '%') return `${round3(value * 100)}%`;
  return String(round3(value));
}

export function round3(value: number): number {
  return toSignificant(value, 3);
}

export function labelled(name: string, labels: Record<string, string>): string {
  const entries = Object.entries(labels);
  return entries.length ? `${name}{${entries.map(([k, v]) => `${k}=${v}`).join(',')}}` : name;
}
