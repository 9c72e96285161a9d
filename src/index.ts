/**
 * Embedding API: `createKiwi()` opens a store and returns an MCP server a host can connect to
 * any transport in-process (e.g. the SDK's InMemoryTransport).
 */
import { interruptRuns } from './directives/engine.js';
import { Policy } from './directives/policy.js';
import { DirectiveService } from './directives/service.js';
import { log } from './log.js';
import { SelfTelemetry } from './ingest/self.js';
import { createMcpServer, type KiwiMcpServer } from './mcp/server.js';
import { readSetting } from './settings.js';
import { resolveDbPath } from './store/database.js';
import { Store } from './store/store.js';

export interface KiwiOptions {
  /** Database file; default `KIWI_DB`, else `./.kiwi/kiwi.db`. */
  db?: string;
  /** Record Kiwi's own operations and sample its process (default true). */
  selfTelemetry?: boolean;
  /** Sampling interval of Kiwi's own process; default the `telemetry.self_interval_ms` setting. */
  selfIntervalMs?: number;
  /** Longest Kiwi's own telemetry is buffered before it is written; default the `telemetry.self_flush_ms` setting. */
  selfFlushMs?: number;
  /** Directive permission policy file, YAML or JSON; default `KIWI_POLICY`, else read-only. Followed: an edit is in force from the next check. */
  policy?: string;
  /** Directives folder; default `KIWI_DIRECTIVES`, else the shipped `directives/`. */
  directivesDir?: string;
  /** Scripts folder; default `KIWI_SCRIPTS`, else the shipped `scripts/`. */
  scriptsDir?: string;
  /** How long run_directive waits for an executing run before answering with it still running (default 20 s). */
  directiveAnswerWithinMs?: number;
}

export interface Kiwi {
  server: KiwiMcpServer;
  store: Store;
  /** Another server over the same store, for hosts that serve several sessions at once; close() closes it too. */
  createServer(): KiwiMcpServer;
  /** Closes every server it made and the store; safe to call twice. */
  close(): Promise<void>;
}

export function createKiwi(options: KiwiOptions = {}): Kiwi {
  // A bad policy file fails here, before a store is opened, rather than at the first directive.
  const directives = {
    policy: Policy.load(options.policy),
    directivesDir: options.directivesDir,
    scriptsDir: options.scriptsDir,
    answerWithinMs: options.directiveAnswerWithinMs,
  };
  const store = new Store(resolveDbPath(options.db));
  const telemetry =
    options.selfTelemetry === false
      ? null
      : new SelfTelemetry(
          store,
          options.selfIntervalMs ?? readSetting(store, 'telemetry.self_interval_ms'),
          options.selfFlushMs ?? readSetting(store, 'telemetry.self_flush_ms'),
        );
  if (telemetry) {
    // Written at once, so Kiwi is a component of its own store from the start.
    telemetry.sample();
    telemetry.flush();
    telemetry.start();
  }
  // Every server handed out is closed with Kiwi: one left open would answer from a closed store.
  const open = new Set<KiwiMcpServer>();
  const createServer = () => {
    const created = createMcpServer(store, telemetry, directives);
    open.add(created);
    const previous = created.server.onclose;
    created.server.onclose = () => {
      open.delete(created);
      previous?.();
    };
    return created;
  };
  const server = createServer();
  // A run a stopped process left half done is undone now, not at the next run of a directive.
  new DirectiveService({ store, policy: directives.policy, directivesDir: directives.directivesDir, scriptsDir: directives.scriptsDir })
    .engine.recoverInterrupted()
    .catch((err: unknown) => log.warn(`could not recover interrupted directive runs: ${(err as Error).message}`));
  let closed = false;
  return {
    server,
    store,
    createServer,
    async close() {
      if (closed) return;
      closed = true;
      // Runs under way are stopped and rolled back while the store is still open.
      await interruptRuns('Kiwi is stopping', { store });
      telemetry?.stop();
      await Promise.all([server, ...open].map((s) => s.close()));
      store.close();
    },
  };
}

export { Store } from './store/store.js';
export { SelfTelemetry, SELF_COMPONENT } from './ingest/self.js';
export { ingestFile, ingestText, ingestValues, type IngestSummary } from './ingest/ingest.js';
export type { TelemetryRecord, MetricRecord, EventRecord, SpanRecord } from './ingest/records.js';
