/**
 * Prompts that walk an agent through Kiwi's loop: detect, explain, forecast, act, check again.
 * They name tools and arguments exactly as registered, so an agent can follow them step by step.
 */
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';

function userMessage(text: string) {
  return { messages: [{ role: 'user' as const, content: { type: 'text' as const, text } }] };
}

export function registerLoopPrompts(server: McpServer): void {
  server.registerPrompt(
    'triage_incident',
    {
      title: 'Triage an incident',
      description:
        'Walks the incident loop: detect what is abnormal, find each anomaly\'s root cause, forecast what breaks next, plan and ' +
        'run the fitting directive, then check that it healed.',
      argsSchema: {
        component: z.string().optional().describe('Where the trouble shows, if known (e.g. mcp-search); default: everything'),
        lookback: z
          .string()
          .regex(/^\d+(\.\d+)?(ms|s|m|h|d|w)$/, 'a duration with its unit, e.g. 30m, 60m or 6h')
          .optional()
          .describe('How far back to judge, e.g. 30m, 60m, 6h (default 60m)'),
      },
    },
    async ({ component, lookback }) => {
      // JSON-quoted: the name goes into argument examples the agent copies
      const scope = component ? `, "component": ${JSON.stringify(component)}` : '';
      const window = lookback ?? '60m';
      return userMessage(
        [
          `Triage the current incident${component ? ` around ${component}` : ''} with Kiwi's tools, in this order, and report what you found and did.`,
          '',
          `1. detect_anomalies {"lookback": "${window}"${scope}}: list what is abnormal. Start with critical ones; note each anomaly's id, type, component and suggested_action (the directive that acts on it, or null).`,
          '2. For each anomaly worth acting on: analyze_root_cause {"anomaly_id": "<id>"}. Trust the ranked candidates and their evidence (deviation, onset relative to the symptom, changes just before); the narrative explains them. Tell a cause (a config change, a deploy, a policy change) from its effects (callers slowed or failing because of it). get_trace {"trace_id": "<id>"} shows one of the failed or slow requests the evidence lists as a call tree.',
          `3. forecast_failure {"target": "all"${scope}}: what breaks next and when (time to out-of-memory, spike and disconnect probabilities, error budget).`,
          '4. For the most urgent cause, take its suggested_action (from analyze_root_cause, detect_anomalies or forecast_failure): run_directive {"name": <suggested_action.directive>, "inputs": <suggested_action.inputs>} with mode "plan" first and read exactly what it would change; then mode "execute". Destructive steps wait for a human\'s approval (kiwi directive approve RUN_ID) unless the policy lets agents approve: say so to the user rather than retrying. A null suggested_action means no directive acts on it (an error spike or a policy change is reverted by a person): report the cause and its next steps instead of running something else.',
          '5. get_directive_run {"id": "<run id>"} to confirm every step succeeded (a failed verify step rolls the changes back).',
          `6. detect_anomalies again over a short window after the change (e.g. {"lookback": "10m"${scope}}) to see what healed: an anomaly is resolved only when the data since it was last seen shows it over, and "unconfirmed" lists those with too little data yet (wait and look again); list_anomalies shows what is still open.`,
          '',
          'If an anomaly is a false positive, mark it: update_anomaly {"id": "<id>", "action": "false_positive", "note": "<why>"}; detection learns from it.',
          'Finish with a short report: each anomaly, its root cause with the evidence, what was done (run ids), what is still open, and what to watch next.',
        ].join('\n'),
      );
    },
  );

  server.registerPrompt(
    'weekly_health_review',
    {
      title: 'Weekly health review',
      description:
        'Reviews the platform (and Kiwi itself) over a period: health per component, anomalies found and resolved, trends and ' +
        'forecasts, directive runs, and what to improve.',
      argsSchema: {
        days: z
          .string()
          .regex(/^[1-9]\d{0,2}$/, 'a whole number of days from 1 to 999, e.g. 7')
          .optional()
          .describe('How many days to review (default 7)'),
      },
    },
    async ({ days }) => {
      const span = `${days ?? 7}d`;
      return userMessage(
        [
          `Write a health review of the platform over the last ${span} using Kiwi's tools.`,
          '',
          '1. get_system_health {"window_minutes": 60}: the state of every component now, Kiwi included (it observes itself as component "kiwi").',
          `2. list_anomalies {"status": ["open", "acknowledged", "resolved", "false_positive"], "since": "-${span}", "limit": 100}: what went wrong, per component and type; which are still open; which were false positives.`,
          `3. query_metrics for the key series over the period with a coarse bucket, e.g. {"name": "process.memory.usage", "from": "-${span}", "bucket": "6h"} and {"name_prefix": "process.cpu", "from": "-${span}", "bucket": "6h"}: trends that are not anomalies yet.`,
          '4. forecast_failure {"target": "all", "horizon": "7d"}: what is likely to break in the coming week.',
          `5. list_directive_runs {"limit": 50}: what was done automatically or by agents, and whether it worked (rolled_back runs deserve a look).`,
          `6. search_events {"kind": ["deploy", "config"], "from": "-${span}", "limit": 100}: the changes made, to relate them to the anomalies.`,
          '',
          'Report: a summary in three lines; per component what went wrong and whether it is fixed; recurring problems and their root causes; the forecasts that need action, with their suggested_action (the directive and inputs to run); and Kiwi\'s own health (its latency, errors and memory).',
        ].join('\n'),
      );
    },
  );
}
