/** The one entry point the MCP tool and the CLI call: the deterministic analysis, then its narrative. */
import { readSetting } from '../settings.js';
import type { Store } from '../store/store.js';
import { analyzeRootCause, type AnalyzeOptions } from './analyze.js';
import { anthropicWriter, narrate, samplingWriter, type NarrativeSlot, type SamplingReply, type SamplingRequest } from './llm.js';
import type { Explained, SymptomInput } from './types.js';

export interface ExplainOptions extends AnalyzeOptions {
  /** Sends `sampling/createMessage` to the connected MCP client; null when it does not offer sampling. */
  sampling?: ((request: SamplingRequest, timeoutMs: number) => Promise<SamplingReply>) | null;
  /** false: the deterministic summary only. */
  llm?: boolean;
  /** Overrides the `explain.llm_model` setting. */
  model?: string;
  /** Where ANTHROPIC_API_KEY (and the SDK's ANTHROPIC_BASE_URL) are read; default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Aborts the narrative's API request (the MCP request was cancelled, or the server is closing). */
  signal?: AbortSignal;
}

export async function explainSymptom(store: Store, input: SymptomInput, options: ExplainOptions = {}): Promise<Explained> {
  const analysis = analyzeRootCause(store, input, options);
  const slots: NarrativeSlot[] = [];
  if (options.llm !== false) {
    const timeoutMs = readSetting(store, 'explain.llm_timeout_ms');
    slots.push(options.sampling ? samplingWriter(options.sampling, timeoutMs) : { unavailable: 'sampling: no connected client that offers it' });
    const apiKey = (options.env ?? process.env).ANTHROPIC_API_KEY;
    if (apiKey) {
      const baseURL = (options.env ?? process.env).ANTHROPIC_BASE_URL;
      slots.push(
        anthropicWriter({
          apiKey,
          model: options.model ?? readSetting(store, 'explain.llm_model'),
          timeoutMs,
          maxRetries: readSetting(store, 'explain.llm_max_retries'),
          ...(baseURL ? { baseURL } : {}),
          ...(options.signal ? { signal: options.signal } : {}),
        }),
      );
    } else slots.push({ unavailable: 'anthropic: ANTHROPIC_API_KEY is not set' });
  }
  const narration = await narrate(analysis, slots, options.signal);
  return { ...analysis, ...narration };
}
