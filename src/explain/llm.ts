/**
 * Who writes the narrative, in order: the connected MCP client's model (sampling), the
 * Anthropic API (when ANTHROPIC_API_KEY is set), else the deterministic summary. Each writer
 * that fails — unavailable, timed out, refused, or answered something unusable — is noted and
 * the next one is tried.
 */
import Anthropic from '@anthropic-ai/sdk';
import { log } from '../log.js';
import { buildBrief, deterministicNarrative, NARRATIVE_JSON_SCHEMA, NARRATIVE_LIMITS, parseNarrative, SYSTEM_PROMPT, userPrompt } from './narrative.js';
import type { Analysis, Narrative, NarrativeSource } from './types.js';

export interface LlmAnswer {
  text: string;
  model: string | null;
}

export interface NarrativeWriter {
  source: Exclude<NarrativeSource, 'deterministic'>;
  write(system: string, prompt: string): Promise<LlmAnswer>;
}

export interface NarrationResult {
  narrative: Narrative;
  source: NarrativeSource;
  model: string | null;
  fallbacks: string[];
}

/** Rejects with `message` if `promise` has not settled within `ms`. */
async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(message)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** What `sampling/createMessage` needs: the request as the MCP SDK sends it. */
export interface SamplingRequest {
  messages: { role: 'user'; content: { type: 'text'; text: string } }[];
  systemPrompt: string;
  maxTokens: number;
  includeContext: 'none';
  modelPreferences: { hints: { name: string }[]; intelligencePriority: number; speedPriority: number };
}

export interface SamplingReply {
  model: string;
  content: unknown;
}

/** Narrative through MCP sampling: `send` issues `sampling/createMessage` to the connected client. */
export function samplingWriter(send: (request: SamplingRequest, timeoutMs: number) => Promise<SamplingReply>, timeoutMs: number): NarrativeWriter {
  return {
    source: 'sampling',
    async write(system, prompt) {
      const reply = await withTimeout(
        send(
          {
            messages: [{ role: 'user', content: { type: 'text', text: prompt } }],
            systemPrompt: system,
            maxTokens: NARRATIVE_LIMITS.maxTokens,
            includeContext: 'none',
            modelPreferences: { hints: [{ name: 'claude' }], intelligencePriority: 0.7, speedPriority: 0.5 },
          },
          timeoutMs,
        ),
        timeoutMs + 1000,
        `timed out after ${timeoutMs} ms`,
      );
      const blocks = Array.isArray(reply.content) ? reply.content : [reply.content];
      const text = blocks
        .filter((b): b is { type: 'text'; text: string } => typeof b === 'object' && b !== null && (b as { type?: unknown }).type === 'text')
        .map((b) => b.text)
        .join('');
      if (!text) throw new Error('the client answered without text');
      return { text, model: reply.model };
    },
  };
}

export interface AnthropicOptions {
  apiKey: string;
  model: string;
  timeoutMs: number;
  maxRetries: number;
  /** Default: the SDK's (ANTHROPIC_BASE_URL, else the public API). */
  baseURL?: string;
  /** Aborts the request and its retries. */
  signal?: AbortSignal;
}

/** Narrative through the Anthropic Messages API, with the answer constrained to the narrative's JSON Schema. */
export function anthropicWriter(options: AnthropicOptions): NarrativeWriter {
  const client = new Anthropic({
    apiKey: options.apiKey,
    timeout: options.timeoutMs,
    maxRetries: options.maxRetries,
    ...(options.baseURL !== undefined ? { baseURL: options.baseURL } : {}),
  });
  return {
    source: 'anthropic',
    async write(system, prompt) {
      const message = await client.messages.create({
        model: options.model,
        max_tokens: NARRATIVE_LIMITS.maxTokens,
        system,
        messages: [{ role: 'user', content: prompt }],
        output_config: { format: { type: 'json_schema', schema: NARRATIVE_JSON_SCHEMA as unknown as Record<string, unknown> } },
      }, options.signal ? { signal: options.signal } : undefined);
      if (message.stop_reason === 'refusal') throw new Error('the model refused');
      if (message.stop_reason === 'max_tokens') throw new Error('the answer was cut at max_tokens');
      const text = message.content
        .filter((b): b is Anthropic.TextBlock => b.type === 'text')
        .map((b) => b.text)
        .join('');
      if (!text) throw new Error('the answer holds no text');
      return { text, model: message.model };
    },
  };
}

function describe(err: unknown): string {
  if (err instanceof Anthropic.APIConnectionTimeoutError) return 'timed out';
  if (err instanceof Anthropic.APIError && err.status !== undefined) return `HTTP ${err.status}: ${err.message}`;
  return (err as Error).message ?? String(err);
}

/** A narrative source in the order of preference: a writer to try, or why it is not available. */
export type NarrativeSlot = NarrativeWriter | { unavailable: string };

/**
 * Tries each source in order; the first usable answer wins, else the deterministic summary.
 * `fallbacks` lists, in order, why each source before the one that wrote was not used.
 */
export async function narrate(analysis: Analysis, slots: NarrativeSlot[], signal?: AbortSignal): Promise<NarrationResult> {
  const fallbacks: string[] = [];
  let prompt: string | null = null;
  for (const slot of slots) {
    if (signal?.aborted) {
      fallbacks.push('the request was cancelled');
      break;
    }
    if ('unavailable' in slot) {
      fallbacks.push(slot.unavailable);
      continue;
    }
    prompt ??= userPrompt(buildBrief(analysis));
    try {
      const answer = await slot.write(SYSTEM_PROMPT, prompt);
      return { narrative: parseNarrative(answer.text), source: slot.source, model: answer.model, fallbacks };
    } catch (err) {
      const reason = `${slot.source}: ${describe(err)}`;
      log.warn('narrative source failed; falling back', { reason });
      fallbacks.push(reason);
    }
  }
  return { narrative: deterministicNarrative(analysis), source: 'deterministic', model: null, fallbacks };
}
