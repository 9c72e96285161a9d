/**
 * The narrative: what an LLM is shown (a bounded, redacted brief of the ranked evidence), what
 * it must answer (JSON with root_cause, next_steps, confidence), and the
 * deterministic summary written when no LLM is reachable or its answer is unusable.
 */
import { z } from 'zod';
import { iso } from '../time.js';
import { redact } from './redact.js';
import { grownMemory } from './remedy.js';
import { MOVED_Z, round3 } from './strength.js';
import type { Analysis, Candidate, Narrative } from './types.js';

export const NARRATIVE_LIMITS = {
  briefChars: 12_000,
  rootCauseChars: 2000,
  steps: 8,
  stepChars: 500,
  maxTokens: 1024,
} as const;

export const narrativeSchema = z
  .object({
    root_cause: z.string().trim().min(1).max(NARRATIVE_LIMITS.rootCauseChars),
    next_steps: z.array(z.string().trim().min(1).max(NARRATIVE_LIMITS.stepChars)).min(1).max(NARRATIVE_LIMITS.steps),
    confidence: z.number().min(0).max(1),
  })
  .strict();

/** JSON Schema of the answer, for APIs that constrain output to a schema. */
export const NARRATIVE_JSON_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['root_cause', 'next_steps', 'confidence'],
  properties: {
    root_cause: { type: 'string', description: 'One or two sentences: which component and what change or fault, with the evidence.' },
    next_steps: { type: 'array', items: { type: 'string' }, description: 'Concrete checks or actions, most useful first (1-8).' },
    confidence: { type: 'number', description: 'How sure, 0..1, given the evidence.' },
  },
} as const;

export const SYSTEM_PROMPT =
  'You are a site-reliability engineer explaining an incident on an agent platform (agents, the MCP servers they call, ' +
  'a permission layer, worker processes). You are given the ranked, deterministic evidence of a root-cause analysis. ' +
  'Explain it: name the most likely root cause and why, citing the evidence (how far it moved from its baseline, when ' +
  'it started relative to the symptom, changes just before). Do not invent facts beyond the evidence; if the evidence ' +
  'is weak, say so and lower the confidence. Answer with one JSON object only, no prose around it, with exactly these ' +
  'keys: root_cause (string), next_steps (array of 1-8 strings: checks or actions, such as a rollback to perform or ' +
  'the Kiwi directive in the evidence\'s directive_that_acts), confidence (number 0..1).';

function candidateBrief(c: Candidate) {
  const e = c.evidence;
  return {
    component: c.component,
    metric: c.metric,
    score: c.score,
    confidence: c.confidence,
    summary: e.summary,
    deviation: e.deviation,
    onset_relative_to_symptom_s: e.onset ? round3(e.onset.relative_to_symptom_ms / 1000) : null,
    correlation_with_symptom: e.correlation,
    changes_before: e.changes,
    explains: e.explains,
    explained_by: e.explained_by,
    other_signals: e.signals.slice(1, 4).map((s) => s.detail),
  };
}

/** The evidence an LLM reads: redacted, at most `NARRATIVE_LIMITS.briefChars` characters. */
export function buildBrief(analysis: Analysis): string {
  const s = analysis.symptom;
  const full = {
    symptom: {
      description: s.description,
      component: s.component,
      metric: s.metric,
      anomaly_type: s.anomaly_type,
      window: `${iso(s.start)} .. ${iso(s.end)}`,
      baseline: `${iso(s.baseline_start)} .. ${iso(s.baseline_end)}`,
    },
    candidates: analysis.candidates.map(candidateBrief),
    directive_that_acts: analysis.suggested_action,
    new_or_grown_error_signatures: analysis.context.signatures,
    changes_shortly_before: analysis.context.changes,
    mcp_status: analysis.context.mcp_status,
    affected_threads: analysis.context.affected_threads,
    recent_warnings_and_errors: analysis.context.recent_logs,
  };
  const brief = redact(full);
  // drop the bulkiest context first until it fits
  const shrinkers: (() => void)[] = [
    () => (brief.recent_warnings_and_errors = brief.recent_warnings_and_errors.slice(0, 5)),
    () => (brief.affected_threads = brief.affected_threads.slice(0, 2)),
    () => (brief.candidates = brief.candidates.slice(0, 3)),
    () => (brief.affected_threads = []),
    () => (brief.recent_warnings_and_errors = []),
    () => (brief.new_or_grown_error_signatures = brief.new_or_grown_error_signatures.slice(0, 3)),
  ];
  let text = JSON.stringify(brief);
  for (const shrink of shrinkers) {
    if (text.length <= NARRATIVE_LIMITS.briefChars) break;
    shrink();
    text = JSON.stringify(brief);
  }
  return text.length <= NARRATIVE_LIMITS.briefChars ? text : text.slice(0, NARRATIVE_LIMITS.briefChars);
}

export function userPrompt(brief: string): string {
  return `Evidence of the root-cause analysis (JSON):\n${brief}\n\nAnswer with the JSON object only.`;
}

/** Reads the model's answer: one JSON object, possibly in a code fence. Throws a reason when unusable. */
export function parseNarrative(text: string): Narrative {
  const trimmed = text.trim();
  const fenced = /^```(?:json)?\s*([\s\S]*?)\s*```$/.exec(trimmed);
  let body = fenced ? fenced[1]! : trimmed;
  if (!body.startsWith('{')) {
    const first = body.indexOf('{');
    const last = body.lastIndexOf('}');
    if (first < 0 || last <= first) throw new Error('the answer holds no JSON object');
    body = body.slice(first, last + 1);
  }
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (err) {
    throw new Error(`the answer is not valid JSON (${(err as Error).message})`);
  }
  const parsed = narrativeSchema.safeParse(value);
  if (!parsed.success) {
    throw new Error(`the answer does not match the schema: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  }
  return parsed.data;
}

/** The summary written without an LLM: the top candidate, its evidence, and steps that follow from its kind. */
export function deterministicNarrative(analysis: Analysis): Narrative {
  const [top, second] = analysis.candidates;
  if (!top) {
    return {
      root_cause: `No root cause found for ${analysis.symptom.description}: no signal moved from its baseline and no change was recorded shortly before the start.`,
      next_steps: [
        'Widen the window or give an explicit baseline (baseline_start, baseline_end) that is known to be normal.',
        'Check that the affected components send telemetry (get_system_health, list_series).',
      ],
      confidence: 0,
    };
  }
  const e = top.evidence;
  const parts = [`${top.component} is the most likely root cause (score ${top.score}, confidence ${top.confidence}): ${e.summary}.`];
  if (e.onset) {
    const seconds = Math.round(e.onset.relative_to_symptom_ms / 1000);
    parts.push(seconds <= 0 ? `It moved ${-seconds} s before the symptom's start.` : `It moved ${seconds} s after the symptom's start.`);
  }
  if (e.explains.length) parts.push(`It accounts for ${e.explains.map((x) => `${Math.round(x.share * 100)}% of ${x.component}'s ${x.what} change`).join(', ')}.`);
  if (second) parts.push(`Next candidate: ${second.component} (score ${second.score}, ${second.metric}).`);

  const steps: string[] = [];
  const change = e.changes[0];
  if (change) {
    steps.push(
      change.kind === 'deploy'
        ? `Review the deploy of ${top.component} at ${change.at} (${change.message}); roll it back if it was not intended.`
        : `Review the ${change.kind} on ${top.component} at ${change.at} (${change.message}); revert it if it was not intended.`,
    );
  }
  const kinds = new Set(e.signals.map((s) => s.kind));
  const signature = e.signals.find((s) => s.kind === 'signature');
  if (signature) steps.push(`Investigate the ${signature.detail}`);
  if (kinds.has('connection')) {
    steps.push(`Check ${top.component}'s network and process health; its connection keeps dropping.`);
  }
  if (kinds.has('permission')) steps.push(`Compare the current permission policy of ${top.component} with the previous version; denials rose.`);
  if (kinds.has('latency')) {
    steps.push(`Look at ${top.component}'s own processing time (its spans are slower, not its callees').`);
  }
  const memory = grownMemory(e.signals);
  if (memory) {
    steps.push(`Capture a heap profile of ${top.component}; memory grew (${memory.detail}).`);
  }
  if (analysis.context.affected_threads.length) steps.push('Read the affected threads in context.affected_threads for the failing calls.');
  if (steps.length === 0) steps.push(`Inspect ${top.component}'s ${top.metric}: ${e.summary}`);
  if (second) steps.push(`Rule out ${second.component}: ${second.evidence.summary}`);
  return {
    root_cause: parts.join(' '),
    next_steps: steps.slice(0, NARRATIVE_LIMITS.steps).map((s) => (s.length > NARRATIVE_LIMITS.stepChars ? `${s.slice(0, NARRATIVE_LIMITS.stepChars - 1)}…` : s)),
    confidence: top.confidence,
  };
}
