/** analyze_root_cause: ranked, evidenced causes of an anomaly or a symptom, with a narrative. */
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { CreateMessageResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { ANALYSIS_LIMITS } from '../../explain/analyze.js';
import { CONTEXT_LIMITS } from '../../explain/context.js';
import type { SamplingReply, SamplingRequest } from '../../explain/llm.js';
import { explainSymptom } from '../../explain/service.js';
import { DERIVED_METRICS, type Explained } from '../../explain/types.js';
import type { Store } from '../../store/store.js';
import { formatDuration, iso } from '../../time.js';
import { timeInput } from '../arguments.js';
import { suggestionText } from '../../remedies.js';
import { answer, suggestedActionShape, truncate } from '../format.js';

const nullableNumber = z.number().nullable();

const contextEventShape = z.object({
  at: z.string(),
  kind: z.string(),
  component: z.string(),
  level: z.string(),
  message: z.string(),
  attrs: z.record(z.string(), z.unknown()),
});

const candidateShape = z.object({
  component: z.string(),
  metric: z.string().describe('The strongest signal: a metric name or a derived signal'),
  score: z.number().describe('0..1, candidates are sorted by it'),
  confidence: z.number().describe("0..1: this candidate's share of the evidence, discounted when the evidence is weak"),
  evidence: z.object({
    summary: z.string(),
    deviation: z
      .object({
        signal: z.string(),
        baseline: nullableNumber,
        current: nullableNumber,
        z: nullableNumber,
        direction: z.enum(['up', 'down']).nullable(),
        unit: z.string().nullable(),
      })
      .nullable()
      .describe('How far the strongest signal moved from its own baseline'),
    onset: z.object({ at: z.string(), relative_to_symptom_ms: z.number() }).nullable().describe('When it started, relative to the symptom'),
    correlation: nullableNumber.describe('Pearson correlation with the symptom series (end of the baseline and the window)'),
    signals: z.array(
      z.object({
        kind: z.string(),
        name: z.string(),
        strength: z.number(),
        z: nullableNumber,
        baseline: nullableNumber,
        current: nullableNumber,
        onset: z.string().nullable(),
        detail: z.string(),
      }),
    ),
    changes: z.array(z.object({ kind: z.string(), at: z.string(), minutes_before_symptom: z.number().describe('negative: the change came after the symptom began, within its onset'), message: z.string() })),
    explains: z.array(z.object({ component: z.string(), what: z.enum(['latency', 'errors']), share: z.number() })),
    explained_by: z.array(z.object({ component: z.string(), what: z.enum(['latency', 'errors']), share: z.number() })),
    is_symptom_component: z.boolean(),
  }),
});

const outputSchema = {
  symptom: z.object({
    anomaly_id: z.string().nullable(),
    anomaly_type: z.string().nullable(),
    component: z.string().nullable(),
    metric: z.string().nullable(),
    description: z.string(),
    start: z.string(),
    end: z.string(),
    baseline_start: z.string(),
    baseline_end: z.string(),
  }),
  candidates: z.array(candidateShape),
  narrative: z.string().describe('The root cause in words'),
  next_steps: z.array(z.string()),
  suggested_action: suggestedActionShape,
  narrative_confidence: z.number(),
  source: z.enum(['sampling', 'anthropic', 'deterministic']).describe('Who wrote the narrative'),
  model: z.string().nullable(),
  fallbacks: z.array(z.string()).describe('Why earlier narrative sources were not used'),
  context: z.object({
    recent_logs: z.array(contextEventShape),
    affected_threads: z.array(
      z.object({
        trace_id: z.string(),
        component: z.string(),
        name: z.string(),
        at: z.string(),
        duration_ms: z.number(),
        status: z.string(),
        error_type: z.string().nullable(),
        calls: z.array(z.object({ component: z.string(), name: z.string(), duration_ms: z.number(), status: z.string() })),
        events: z.array(z.object({ at: z.string(), kind: z.string(), component: z.string(), level: z.string(), message: z.string() })),
      }),
    ),
    mcp_status: z.array(z.object({ component: z.string(), state: z.string(), since: z.string(), disconnects_in_window: z.number() })),
    changes: z.array(contextEventShape),
    signatures: z.array(
      z.object({
        component: z.string(),
        template: z.string(),
        example: z.string(),
        baseline_count: z.number(),
        window_count: z.number(),
        first_seen: z.string(),
        is_new: z.boolean(),
      }),
    ),
  }),
  considered: z.object({ series: z.number(), spans: z.number(), error_events: z.number(), components: z.number() }),
  bucket: z.string(),
  notes: z.array(z.string()),
  elapsed_ms: z.number(),
};

/** The tool's structured answer from the service's result. */
export function explainedToStructured(result: Explained) {
  const s = result.symptom;
  return {
    symptom: {
      anomaly_id: s.anomaly_id,
      anomaly_type: s.anomaly_type,
      component: s.component,
      metric: s.metric,
      description: s.description,
      start: iso(s.start),
      end: iso(s.end),
      baseline_start: iso(s.baseline_start),
      baseline_end: iso(s.baseline_end),
    },
    candidates: result.candidates,
    narrative: result.narrative.root_cause,
    next_steps: result.narrative.next_steps,
    suggested_action: result.suggested_action,
    narrative_confidence: result.narrative.confidence,
    source: result.source,
    model: result.model,
    fallbacks: result.fallbacks,
    context: result.context,
    considered: result.considered,
    bucket: formatDuration(result.bucket_ms),
    notes: result.notes,
    elapsed_ms: Math.round(result.elapsed_ms),
  };
}

/** The compact text rendering (also what `kiwi explain` prints). */
export function renderExplained(result: Explained): string {
  const s = result.symptom;
  const lines = [
    `root cause of ${s.description}`,
    `window ${iso(s.start)} .. ${iso(s.end)}, baseline ${iso(s.baseline_start)} .. ${iso(s.baseline_end)}`,
    ...(result.candidates.length ? result.candidates : []).map(
      (c, i) => `${i + 1}. ${c.component}  score ${c.score}  confidence ${c.confidence}  [${c.metric}] ${truncate(c.evidence.summary, 240)}`,
    ),
    ...(result.candidates.length ? [] : ['no candidate: nothing moved and nothing changed']),
    `narrative (${result.source}${result.model ? `, ${result.model}` : ''}): ${result.narrative.root_cause}`,
    ...result.narrative.next_steps.map((step) => `- ${step}`),
  ];
  if (result.suggested_action) lines.push(`suggested: ${suggestionText(result.suggested_action)}`);
  if (result.context.changes.length) {
    lines.push('changes shortly before:', ...result.context.changes.slice(0, 5).map((c) => `  ${c.at} ${c.kind} ${c.component}: ${truncate(c.message, 160)}`));
  }
  if (result.fallbacks.length) lines.push(`narrative fallbacks: ${result.fallbacks.join('; ')}`);
  lines.push(...result.notes);
  return lines.join('\n');
}

export function registerExplainTools(server: McpServer, store: Store): void {
  server.registerTool(
    'analyze_root_cause',
    {
      title: 'Analyze root cause',
      description:
        'Ranked, evidenced candidate causes of an anomaly (anomaly_id) or a symptom (start, optional end, component, metric; ' +
        'optional baseline_start/baseline_end, default the day before start). Every metric series, the span call graph (a ' +
        "callee's latency or failures that explain its caller's), new or grown error signatures, permission denials, MCP " +
        'disconnects, and config/deploy/policy/directive/settings changes in the hour before the start are weighed; each ' +
        'candidate carries how far it moved from its own baseline, when it started relative to the symptom and how it ' +
        'correlates with it. suggested_action names the directive that acts on the most likely cause, with its inputs (null: none ' +
        'does; the next steps say what a person should revert). A narrative (root cause, next steps) is written by the client\'s model ' +
        'through MCP sampling when offered, else the Anthropic API when ANTHROPIC_API_KEY is set, else deterministically; ' +
        '`source` says which. Bounded: at most 20 candidates (limit, default 5) with 5 signals each, ' +
        `${CONTEXT_LIMITS.logs} recent logs, ${CONTEXT_LIMITS.threads} affected threads, ${CONTEXT_LIMITS.changes} changes, ` +
        `${CONTEXT_LIMITS.signatures} signatures; messages cut at ${CONTEXT_LIMITS.messageChars} characters; secrets redacted.`,
      inputSchema: {
        anomaly_id: z.string().min(1).optional().describe('An anomaly from detect_anomalies; its component, metric and times are used'),
        component: z.string().min(1).optional().describe('Where the symptom shows'),
        metric: z
          .string()
          .min(1)
          .optional()
          .describe(`A stored metric name, or one of ${DERIVED_METRICS.join(', ')} (from spans and events)`),
        start: timeInput.optional().describe('When the symptom started (required without anomaly_id)'),
        end: timeInput.optional().describe('Default: the newest data'),
        baseline_start: timeInput.optional(),
        baseline_end: timeInput.optional(),
        limit: z.number().int().min(1).max(ANALYSIS_LIMITS.candidates).default(ANALYSIS_LIMITS.defaultCandidates),
        narrative: z.boolean().default(true).describe('false: skip the LLM and write the deterministic summary'),
      },
      outputSchema,
      annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: true },
    },
    async (args, extra) => {
      if (args.anomaly_id === undefined && args.start === undefined) throw new Error('start: required (or give anomaly_id)');
      const offersSampling = server.server.getClientCapabilities()?.sampling !== undefined;
      const sampling = offersSampling
        ? async (request: SamplingRequest, timeoutMs: number): Promise<SamplingReply> =>
            extra.sendRequest({ method: 'sampling/createMessage', params: request }, CreateMessageResultSchema, { timeout: timeoutMs })
        : null;
      const result = await explainSymptom(
        store,
        {
          anomaly_id: args.anomaly_id,
          component: args.component,
          metric: args.metric,
          start: args.start,
          end: args.end,
          baseline_start: args.baseline_start,
          baseline_end: args.baseline_end,
        },
        // cancelled or closing: stop the API request rather than pay for an answer nobody reads
        { limit: args.limit, sampling, llm: args.narrative, signal: extra.signal },
      );
      return answer(explainedToStructured(result), renderExplained(result));
    },
  );
}
