/** Shaping tool answers: complete structured content plus a compact text rendering. */
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { formatBytes as formatBinaryBytes, toSignificant } from '../stats/precision.js';

export function answer<T extends Record<string, unknown>>(structured: T, text: string): CallToolResult & { structuredContent: T } {
  return { structuredContent: structured, content: [{ type: 'text', text }] };
}

/** Six significant digits: enough for any figure a model reasons about, and fewer tokens. */
export function round(value: number): number;
export function round(value: number | null): number | null;
export function round(value: number | null): number | null {
  return value === null ? null : toSignificant(value, 6);
}

export function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** Attributes as JSON, cut to `max` characters (the cut form is a string, flagged as such). */
export function boundedAttrs(attrs: Record<string, unknown>, max: number): Record<string, unknown> {
  const json = JSON.stringify(attrs);
  if (json.length <= max) return attrs;
  return { _truncated: truncate(json, max) };
}

export function formatBytes(bytes: number | null): string {
  return bytes === null ? '-' : formatBinaryBytes(bytes);
}

export function labelText(component: string, labels: Record<string, string>): string {
  const parts = [component, ...Object.entries(labels).map(([k, v]) => `${k}=${v}`)];
  return `{${parts.join(', ')}}`;
}

/** A directive to run about a finding, as detection, root-cause analysis and forecasting all answer it. */
export const suggestedActionShape = z
  .object({
    directive: z.string().describe('The directive to run (run_directive name)'),
    inputs: z.record(z.string(), z.union([z.string(), z.number()])).describe('Its inputs, as run_directive takes them'),
    reason: z.string(),
  })
  .nullable()
  .describe('null: no directive acts on this; read the root cause and its next steps');
