/** forecast_failure: what will break and when, with an interval, a confidence and a chart. */
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { DEFAULT_HORIZON_HOURS, FORECAST_LIMITS, forecastFailure, MEMORY_METRIC, type ForecastRequest } from '../../forecast/service.js';
import { FORECAST_TARGETS, type Forecast, type ForecastTarget } from '../../forecast/types.js';
import type { Store } from '../../store/store.js';
import { SELF_METRICS } from '../../ingest/self.js';
import { suggestionText } from '../../remedies.js';
import { suggestedActionShape } from '../format.js';
import { boundedDuration, readDuration, type DurationBounds } from '../arguments.js';

const estimate = z.object({ estimate: z.number(), lower: z.number().nullable(), upper: z.number().nullable() });

export const forecastSchema = z.object({
  target: z.enum(FORECAST_TARGETS),
  component: z.string(),
  status: z.enum(['ok', 'insufficient_history']),
  model: z.string(),
  data_span: z.object({ from: z.string(), to: z.string(), points: z.number() }).nullable(),
  horizon_hours: z.number(),
  confidence: z.enum(['high', 'medium', 'low']).nullable(),
  confidence_basis: z.string(),
  hours_to_failure: z.number().optional().describe('hours until the forecast failure; absent when none is forecast'),
  summary: z.string(),
  suggested_action: suggestedActionShape,
  needs: z.object({ need: z.string(), have: z.string() }).optional(),
  memory: z
    .object({
      will_oom: z.boolean(),
      hours_to_oom: estimate.nullable(),
      current_memory_mb: z.number(),
      baseline_memory_mb: z.number(),
      growth_mb_per_hour: estimate,
      trend_p_value: z.number(),
      limit_mb: z.number(),
      limit_source: z.enum(['setting', 'host_total_memory']),
      memory_at_horizon_mb: estimate,
      fitted_from: z.string(),
      restarts_seen: z.number(),
    })
    .optional(),
  latency: z
    .object({
      statistic: z.literal('p95'),
      bucket_minutes: z.number(),
      current_ms: z.number(),
      threshold_ms: z.number(),
      predicted_latency: estimate,
      predicted: z.array(z.object({ at: z.string(), ms: z.number(), lower: z.number().nullable(), upper: z.number().nullable() })),
      spike_probability: z.number(),
      seasonal: z.boolean(),
    })
    .optional(),
  connection: z
    .object({
      connected: z.boolean(),
      current_uptime_hours: z.number(),
      mtbf_hours: z.number().nullable(),
      failures_seen: z.number(),
      probability: estimate.nullable(),
      may_fail_soon: z.boolean(),
      weibull_shape: z.number().nullable(),
    })
    .optional(),
  error_budget: z
    .object({
      objective_error_rate: z.number(),
      window_days: z.number(),
      requests_in_window: z.number(),
      errors_in_window: z.number(),
      budget_errors: z.number(),
      budget_remaining_fraction: z.number(),
      current_error_rate: estimate,
      burn_rate: estimate,
      hours_to_exhaustion: estimate.nullable(),
      will_exhaust: z.boolean(),
    })
    .optional(),
});

/**
 * A metric name given instead of a target (as directives do) picks the target that reads it. Only
 * memory is forecast from a metric series; latency and the error budget read request spans, of
 * which the request duration and error metrics are the summary, and connections read connection
 * events. Names are matched exactly (and `*.duration` as the OpenTelemetry name of a request
 * duration), not by words, so `mcp.connection.errors` is not mistaken for the error budget.
 */
function targetForMetric(metric: string): ForecastTarget {
  if (metric === MEMORY_METRIC) return 'memory';
  if (metric === SELF_METRICS.operationDuration || metric.endsWith('.duration')) return 'latency';
  if (metric === SELF_METRICS.operationErrors) return 'error_budget';
  throw new Error(
    `metric: "${metric}" is not one forecasting reads: memory reads ${MEMORY_METRIC}, latency request durations (*.duration), ` +
      `error_budget ${SELF_METRICS.operationErrors} and request spans, connection connection events; give target instead`,
  );
}

/** The furthest horizon the forecasting service takes, as a duration argument's bounds. */
const HORIZON_BOUNDS: DurationBounds = { max: `${FORECAST_LIMITS.maxHorizonHours}h` };

function horizonHours(value: string | number | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'number') return value;
  try {
    return readDuration(value, HORIZON_BOUNDS) / 3_600_000;
  } catch (err) {
    throw new Error(`horizon: ${(err as Error).message}`);
  }
}

export function renderForecastText(asOf: string, forecasts: readonly Forecast[], omitted: number): string {
  const lines = [`forecast as of ${asOf}`];
  for (const f of forecasts) {
    lines.push(`[${f.target}] ${f.summary}${f.confidence ? ` (confidence ${f.confidence})` : ''}`);
    if (f.suggested_action) lines.push(`    suggested: ${suggestionText(f.suggested_action)}`);
  }
  if (forecasts.length === 0) lines.push('nothing to forecast from: no memory series, requests or connection events');
  if (omitted > 0) lines.push(`${omitted} more forecasts not shown (at most ${FORECAST_LIMITS.perTarget} per target; name a component)`);
  return lines.join('\n');
}

export function registerForecastTools(server: McpServer, store: Store): void {
  server.registerTool(
    'forecast_failure',
    {
      title: 'Forecast failures',
      description:
        'What will break and when, per component: memory (time to out-of-memory against the per-component limit in setting ' +
        'forecast.memory_limit_bytes, else the host memory: will_oom, hours_to_oom with bounds, growth rate), latency (p95 over the next ' +
        'hour with a 95% interval and the probability of a spike above forecast.latency_spike_factor × now), connection (per MCP server: ' +
        'MTBF, current up-time, probability of a drop within the horizon from a fitted exponential/Weibull model), error_budget (hours ' +
        'until the budget of forecast.error_rate_objective over forecast.error_budget_window_days is spent at the current burn). ' +
        'Every forecast names its model, data span and confidence, and a suggested_action (a directive and its inputs) where a directive acts ' +
        'before the failure (memory, connection; null for latency and error_budget); with too little history it says what it ' +
        `needs. horizon defaults to ${DEFAULT_HORIZON_HOURS.memory} h for memory and error_budget, ${DEFAULT_HORIZON_HOURS.latency} h for ` +
        `latency and connection. At most ${FORECAST_LIMITS.perTarget} forecasts per target (most urgent first) and ${FORECAST_LIMITS.charts} ` +
        'PNG charts (actual, forecast, 95% band, threshold), one per target for its most urgent forecast.',
      inputSchema: {
        target: z.enum([...FORECAST_TARGETS, 'all']).default('all'),
        component: z.string().min(1).optional().describe('e.g. worker, mcp-github; default every component with the data'),
        horizon: z
          .union([boundedDuration(HORIZON_BOUNDS), z.number().positive().max(FORECAST_LIMITS.maxHorizonHours, { error: `must be at most ${FORECAST_LIMITS.maxHorizonHours} hours` })], {
            error: 'expected a duration such as 6h, 90m, 2d, or a positive number of hours',
          })
          .optional()
          .describe('how far ahead: a duration such as 6h, 90m, 2d, or a number of hours'),
        metric: z.string().optional().describe(`instead of target: the metric to forecast, e.g. ${MEMORY_METRIC}`),
        chart: z.boolean().default(true).describe('attach PNG charts'),
      },
      outputSchema: {
        as_of: z.string(),
        target: z.enum([...FORECAST_TARGETS, 'all']),
        forecasts: z.array(forecastSchema),
        omitted: z.number(),
        charts: z.array(z.object({ target: z.enum(FORECAST_TARGETS), component: z.string(), mime_type: z.literal('image/png') })),
      },
      annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    async (args): Promise<CallToolResult> => {
      const fromMetric = args.metric === undefined ? undefined : targetForMetric(args.metric);
      if (fromMetric !== undefined && args.target !== 'all' && fromMetric !== args.target) {
        throw new Error(`metric: "${args.metric}" is forecast by target ${fromMetric}, not ${args.target}; give one of them`);
      }
      const target = fromMetric ?? args.target;
      const request: ForecastRequest = { target, component: args.component, horizonHours: horizonHours(args.horizon), charts: args.chart ? undefined : 0 };
      const result = forecastFailure(store, request);
      const structured = {
        as_of: result.as_of,
        target,
        forecasts: result.forecasts,
        omitted: result.omitted,
        charts: result.charts.map((c) => ({ target: c.target, component: c.component, mime_type: 'image/png' as const })),
      };
      return {
        structuredContent: structured,
        content: [
          { type: 'text', text: renderForecastText(result.as_of, result.forecasts, result.omitted) },
          ...result.charts.map((c) => ({ type: 'image' as const, data: c.png.toString('base64'), mimeType: 'image/png' })),
        ],
      };
    },
  );
}
