/**
 * Directive tools (list, validate, run, runs), the resources `kiwi://directives/{name}` and
 * `kiwi://runs/{id}`, and the `author_directive` prompt. `tool` steps reach Kiwi's own tools
 * through an in-process MCP client connected to a sibling server over the same store.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { ResourceTemplate, type McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { firstOf, type RunView, type PlannedStep, type StepRecord, type ToolArgumentChecker } from '../../directives/engine.js';
import { formatDiagnostic } from '../../directives/load.js';
import type { Policy } from '../../directives/policy.js';
import { capabilitiesWithToolFallback, type CapabilityRegistry, type ToolCaller, type ToolInfo } from '../../directives/registry.js';
import { directiveJsonSchema } from '../../directives/schema.js';
import { DirectiveService } from '../../directives/service.js';
import { parentRunId, RUN_STATUSES, type DirectiveRunRow } from '../../store/directives.js';
import type { Store } from '../../store/store.js';
import { iso, parseTimeInput } from '../../time.js';
import { answer, truncate } from '../format.js';
import type { KiwiMcpServer } from '../server.js';
import { ArgumentsError, timeInput } from '../arguments.js';

const LIMITS = {
  directives: 100,
  runs: 100,
  planShown: 200,
  stepsShown: 200,
  stepJsonChars: 4000,
  yamlChars: 256 * 1024,
} as const;

export interface DirectiveToolOptions {
  /** A sibling server over the same store, for `tool` steps (created on first use). */
  createServer?: () => KiwiMcpServer;
  capabilities?: CapabilityRegistry;
  directivesDir?: string;
  scriptsDir?: string;
  policy?: Policy;
  /**
   * How long run_directive waits for an executing run before answering with it still running
   * (default ANSWER_WITHIN_MS): hosts time requests out (the SDK client after 60 s), and a verify
   * step waits minutes. The run goes on; get_directive_run follows it.
   */
  answerWithinMs?: number;
}

export const ANSWER_WITHIN_MS = 20_000;

/**
 * Kiwi's tools through an in-process client, connected lazily; the tool list is cached. It checks a
 * tool's arguments without calling it, on the server's own argument schemas (see checkArguments).
 */
export function inProcessToolCaller(createServer: () => KiwiMcpServer): ToolCaller & ToolArgumentChecker {
  let sibling: KiwiMcpServer | null = null;
  let client: Promise<Client> | null = null;
  let tools: Promise<ToolInfo[]> | null = null;
  const serverOf = () => (sibling ??= createServer());
  const connect = () => {
    client ??= (async () => {
      const server = serverOf();
      const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
      await server.connect(serverSide);
      const c = new Client({ name: 'kiwi-directive', version: '0.1.0' });
      await c.connect(clientSide);
      return c;
    })();
    return client;
  };
  return {
    list() {
      tools ??= connect().then(async (c) => {
        const out: ToolInfo[] = [];
        let cursor: string | undefined;
        do {
          const page = await c.listTools(cursor ? { cursor } : {});
          for (const t of page.tools) {
            const readOnly = t.annotations?.readOnlyHint === true;
            out.push({ name: t.name, readOnly, destructive: t.annotations?.destructiveHint ?? !readOnly, inputs: Object.keys(t.inputSchema.properties ?? {}) });
          }
          cursor = page.nextCursor;
        } while (cursor);
        return out;
      });
      return tools;
    },
    async call(name, args, signal) {
      const c = await connect();
      const result = await c.callTool({ name, arguments: args }, undefined, { signal, timeout: 600_000 });
      const text = Array.isArray(result.content)
        ? result.content.map((p) => (p && typeof p === 'object' && 'text' in p ? String(p.text) : '')).join('\n')
        : '';
      return {
        structured: (result.structuredContent as Record<string, unknown> | undefined) ?? null,
        text,
        isError: result.isError === true,
      };
    },
    check(name, args) {
      return serverOf().checkArguments(name, args);
    },
  };
}

const plannedStep = z.object({
  path: z.string(),
  phase: z.string(),
  name: z.string(),
  kind: z.string(),
  ref: z.string(),
  runs: z.enum(['yes', 'no', 'at run time']),
  condition: z.string().nullable(),
  inputs: z.unknown(),
  foreach: z.union([z.number(), z.string()]).nullable(),
  permissions: z.array(z.string()),
  granted: z.boolean(),
  destructive: z.boolean(),
  reversible: z.boolean(),
  description: z.string().nullable(),
  error: z.string().nullable(),
});

const stepRecord = z.object({
  path: z.string(),
  phase: z.string(),
  name: z.string(),
  kind: z.string(),
  ref: z.string(),
  item_index: z.number().nullable(),
  inputs: z.unknown(),
  output: z.unknown(),
  outcome: z.string(),
  error: z.string().nullable(),
  attempts: z.number(),
  started_at: z.string(),
  duration_ms: z.number(),
});

const PARENT = "the run this is part of (a nested directive's hold on its target, whose steps are recorded in that run); null for a run of its own";

const runShape = {
  id: z.string(),
  parent: z.string().nullable().describe(PARENT),
  directive: z.string(),
  version: z.string().nullable(),
  mode: z.enum(['plan', 'execute']),
  status: z.enum(RUN_STATUSES),
  target: z.string(),
  inputs: z.record(z.string(), z.unknown()).describe('secret inputs appear as ***'),
  plan: z.array(plannedStep).describe(`at most ${LIMITS.planShown} entries`),
  plan_total: z.number(),
  steps: z.array(stepRecord).describe(`what ran: at most ${LIMITS.stepsShown}, each step's inputs and output cut to ${LIMITS.stepJsonChars} characters of JSON`),
  steps_total: z.number(),
  requested_by: z.string().nullable(),
  approved_by: z.string().nullable(),
  error: z.string().nullable(),
  idempotency_key: z.string().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
  expires_at: z.string().nullable(),
  finished_at: z.string().nullable(),
  replayed: z.boolean(),
  next: z.string().nullable(),
};

function boundJson(value: unknown): unknown {
  const json = JSON.stringify(value ?? null);
  return json.length <= LIMITS.stepJsonChars ? (value ?? null) : { truncated: truncate(json, LIMITS.stepJsonChars) };
}

export function runStructured(run: DirectiveRunRow & Partial<Pick<RunView, 'replayed' | 'next'>>) {
  const plan = (Array.isArray(run.plan) ? (run.plan as PlannedStep[]) : []).map((p) => ({ ...p, inputs: boundJson(p.inputs) }));
  const steps = (run.steps as StepRecord[]).map((s) => ({ ...s, inputs: boundJson(s.inputs), output: boundJson(s.output) }));
  return {
    id: run.id,
    parent: parentRunId(run.id),
    directive: run.directive,
    version: run.version,
    mode: run.mode,
    status: run.status,
    target: run.target,
    inputs: run.inputs,
    plan: plan.slice(0, LIMITS.planShown),
    plan_total: plan.length,
    steps: steps.slice(0, LIMITS.stepsShown),
    steps_total: steps.length,
    requested_by: run.requested_by,
    approved_by: run.approved_by,
    error: run.error,
    idempotency_key: run.idempotency_key,
    created_at: iso(run.created_at),
    updated_at: iso(run.updated_at),
    expires_at: run.expires_at === null ? null : iso(run.expires_at),
    finished_at: run.finished_at === null ? null : iso(run.finished_at),
    replayed: run.replayed ?? false,
    next: run.next ?? null,
  };
}

/**
 * For a nested directive's hold on its target (a run row of it, see parentRunId): the run it is
 * part of, where its steps are recorded, and how to see that run (`show`); null for a run of its own.
 */
export function partOfRun(service: DirectiveService, id: string, show: (parent: string) => string): string | null {
  const parent = parentRunId(id);
  if (parent === null) return null;
  const outer = service.engine.getRun(parent);
  return `part of run ${parent}${outer ? ` (${outer.directive})` : ''}, where its steps are recorded: ${show(parent)}`;
}

export function renderRun(run: ReturnType<typeof runStructured>): string {
  const lines = [
    `run ${run.id}: ${run.directive} ${run.version ?? ''} (${run.mode}) — ${run.status.toUpperCase()}${run.replayed ? ' (existing run for this idempotency key)' : ''}`,
    `target ${run.target}; requested by ${run.requested_by ?? '-'}${run.approved_by ? `, approved by ${run.approved_by}` : ''}; inputs ${truncate(JSON.stringify(run.inputs), 300)}`,
  ];
  if (run.plan.length) {
    lines.push('plan:');
    for (const p of run.plan) {
      const flags = [p.permissions.join(',') || 'no permission', p.granted ? '' : 'NOT GRANTED', p.destructive ? 'destructive' : '', p.reversible ? 'reversible' : '']
        .filter(Boolean)
        .join(' ');
      lines.push(
        `  ${p.path} ${p.name} [${p.kind} ${p.ref}] runs: ${p.runs}${p.condition ? ` (if ${p.condition})` : ''}${p.foreach !== null ? ` foreach: ${p.foreach}` : ''} — ${flags}` +
          (p.description ? `\n      ${truncate(p.description, 200)}` : '') +
          (p.error ? `\n      ERROR: ${p.error}` : ''),
      );
    }
    if (run.plan_total > run.plan.length) lines.push(`  … ${run.plan_total - run.plan.length} more`);
  }
  if (run.steps.length) {
    lines.push('steps:');
    for (const s of run.steps) {
      lines.push(
        `  ${s.phase === 'steps' ? '' : `[${s.phase}] `}${s.path} ${s.name} ${s.ref}${s.item_index !== null ? ` #${s.item_index}` : ''}: ${s.outcome} (${Math.round(s.duration_ms)} ms${s.attempts > 1 ? `, ${s.attempts} attempts` : ''})` +
          (s.error ? ` — ${truncate(s.error, 300)}` : s.output !== null ? ` → ${truncate(JSON.stringify(s.output), 200)}` : ''),
      );
    }
    if (run.steps_total > run.steps.length) lines.push(`  … ${run.steps_total - run.steps.length} more`);
  }
  if (run.error) lines.push(`error: ${run.error}`);
  if (run.next) lines.push(`next: ${run.next}`);
  return lines.join('\n');
}

const AUTHOR_GUIDE = `A Kiwi directive is a YAML file in the directives folder, named <name>.yaml. Start it with
# yaml-language-server: $schema=../schemas/directive.schema.json

Fields: name (= file name), version (semver), description, inputs (name: {type: string|number|integer|boolean|array|object,
default, enum, required, description, secret}), permissions (every permission a step needs), target (optional, e.g.
"{{ inputs.component }}": one run per directive and target at a time), steps, rollback (run after a failure once the applied
changes are undone), finally (always run).

A step has exactly one of: action (built-in), script (file in scripts/, JSON on stdin and stdout, no shell), tool (one of
Kiwi's MCP tools; read-only tools need read:metrics, others call:tool), directive (another directive, depth-limited, no
cycles), conditional: { if, then: [steps], else: [steps] }. Per step: name (read later as steps.<name>.output), inputs,
if, timeout (default 60s, at most 10m), retries (0-5), continue_on_error, foreach (a list or "{{ expression }}"; item and index).

Expressions are CEL inside {{ }}: "{{ inputs.anomaly_type == 'latency_spike' }}", "{{ steps.detect.output.anomalies }}",
"{{ size(steps.find.output.events) > 3 }}". A condition is exactly one {{ }} yielding a boolean. Inputs typed integer are
int, number is double; JSON numbers from step outputs are int when whole. No matches() (regular expressions).

Built-in actions and permissions: settings.set {key, value, component?} and settings.revert {key} (write:settings,
destructive, undone automatically on failure); anomaly.update {id, status, note} (write:anomalies, destructive, undone);
events.log {message, kind, level, component, attrs} (write:events); notify.webhook {url, body} (net:webhook; the URL must
be in the policy allow-list); wait {duration}; verify {signal: metric|latency_p95_ms|error_rate|anomaly, component, metric,
stat, window, delay, below, above, anomaly_id} (read:metrics; fails the step when not healed); detect, explain, forecast
(read:metrics; the analysis capabilities). Scripts need execute:script and are destructive. Destructive steps need approval.

Loop: write the YAML, call validate_directive with yaml=<text>, fix every file:line:column error, repeat until it is clean;
then run_directive with mode=plan and read the plan before mode=execute.`;

export function registerDirectiveTools(server: McpServer, store: Store, options: DirectiveToolOptions = {}): DirectiveService {
  const tools = options.createServer ? inProcessToolCaller(options.createServer) : null;
  const service = new DirectiveService({
    store,
    directivesDir: options.directivesDir,
    scriptsDir: options.scriptsDir,
    policy: options.policy,
    capabilities: capabilitiesWithToolFallback(options.capabilities ?? {}, tools),
    tools,
  });
  const principal = () => `agent:${server.server.getClientVersion()?.name ?? 'unknown'}`;

  server.registerTool(
    'list_directives',
    {
      title: 'List directives',
      description: `The directives in the directives folder (at most ${LIMITS.directives}): name, version, description, inputs, permissions, and whether each is valid (with its errors). Each one's YAML is the resource kiwi://directives/{name}.`,
      inputSchema: {},
      outputSchema: {
        directives: z.array(
          z.object({
            name: z.string(),
            version: z.string().nullable(),
            description: z.string().nullable(),
            inputs: z.record(z.string(), z.unknown()),
            permissions: z.array(z.string()),
            valid: z.boolean(),
            errors: z.array(z.string()),
          }),
        ),
        total: z.number(),
        folder: z.string(),
      },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async () => {
      const all = await service.list();
      const directives = all.slice(0, LIMITS.directives).map(({ file: _file, ...d }) => ({ ...d, errors: d.errors.slice(0, 10) }));
      const text = [
        `${all.length} directives in ${service.library.dir}`,
        ...directives.map(
          (d) =>
            `${d.name} ${d.version ?? ''}${d.valid ? '' : ' (INVALID)'}: ${truncate(d.description ?? '', 160)}\n    inputs: ${Object.keys(d.inputs).join(', ') || '-'}; permissions: ${d.permissions.join(', ') || '-'}` +
            (d.valid ? '' : `\n    ${d.errors.slice(0, 3).join('\n    ')}`),
        ),
      ].join('\n');
      return answer({ directives, total: all.length, folder: service.library.dir }, text);
    },
  );

  server.registerTool(
    'validate_directive',
    {
      title: 'Validate a directive',
      description:
        'Check a directive: give `yaml` (the text of a new one, at most 256 KiB) or `name` (one in the folder). Reports YAML and schema errors, ' +
        'unknown actions/scripts/tools/directives, script paths outside scripts/, undeclared permissions, bad expressions and cycles, each as line:column: message (at most 50).',
      inputSchema: {
        yaml: z.string().max(LIMITS.yamlChars).optional().describe('The directive as YAML text (to check a draft)'),
        name: z.string().max(64).optional().describe('Or the name of a directive in the directives folder'),
      },
      outputSchema: { valid: z.boolean(), errors: z.array(z.string()), error_count: z.number() },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async ({ yaml, name }) => {
      if ((yaml === undefined) === (name === undefined)) throw new ArgumentsError('give exactly one of yaml or name');
      let diagnostics;
      if (yaml !== undefined) diagnostics = await service.validateText(yaml, '<yaml>');
      else {
        const entry = service.library.get(name!);
        if (!entry) throw new Error(`name: no directive "${name}" in ${service.library.dir}`);
        diagnostics = await service.validateFiles([entry.file]);
      }
      const errors = diagnostics.slice(0, 50).map(formatDiagnostic);
      return answer(
        { valid: diagnostics.length === 0, errors, error_count: diagnostics.length },
        diagnostics.length === 0 ? 'valid' : `${diagnostics.length} error${diagnostics.length === 1 ? '' : 's'}:\n${errors.join('\n')}`,
      );
    },
  );

  server.registerTool(
    'run_directive',
    {
      title: 'Run a directive',
      description:
        'Plan (default) or execute a directive. mode=plan resolves inputs and conditions and lists exactly what would run, changing nothing. ' +
        "mode=execute checks each step's permission against the server policy (denials are recorded), and when a step is destructive the run " +
        'waits as awaiting_approval until a human runs `kiwi directive approve RUN_ID` (approve=true counts only where the policy lets agents approve). ' +
        'A failing step rolls back the changes applied so far. An executing run still going after ' +
        `${ANSWER_WITHIN_MS / 1000} s is answered as running (follow it with get_directive_run); if Kiwi stops, its changes are rolled back. ` +
        'One run per directive and target at a time; idempotency_key returns the earlier run instead of running again (the same key with other inputs or mode is refused). ' +
        `The answer lists at most ${LIMITS.planShown} plan entries and ${LIMITS.stepsShown} steps.`,
      inputSchema: {
        name: z.string().max(64).describe('The directive, as list_directives names it'),
        inputs: z.record(z.string(), z.unknown()).default({}).describe("Values for the directive's inputs"),
        mode: z.enum(['plan', 'execute']).default('plan').describe('plan lists exactly what would run and changes nothing; execute runs it'),
        approve: z.boolean().default(false).describe('approve destructive steps yourself; counts only where the policy allows agents to'),
        idempotency_key: z.string().min(1).max(200).optional(),
      },
      outputSchema: runShape,
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
    },
    async ({ name, inputs, mode, approve, idempotency_key }) => {
      const started: { id?: string } = {};
      const finished = service.run({
        directive: name,
        inputs,
        mode,
        approve,
        principal: principal(),
        idempotencyKey: idempotency_key,
        onStart: (id) => (started.id = id),
      });
      const waitMs = options.answerWithinMs ?? ANSWER_WITHIN_MS;
      const run = (await firstOf(finished, waitMs)) ?? (started.id === undefined ? await finished : null);
      if (run !== null) {
        const structured = runStructured(run);
        return answer(structured, renderRun(structured));
      }
      // still executing: answer now with what it has done; its outcome is stored as it finishes
      finished.catch(() => undefined);
      const id = started.id as string; // set: otherwise the run was awaited above
      const structured = runStructured({
        ...service.engine.getRun(id)!,
        next: `still running after ${waitMs / 1000} s (a step waits or verifies); call get_directive_run {"id": "${id}"} until its status is final`,
      });
      return answer(structured, renderRun(structured));
    },
  );

  server.registerTool(
    'get_directive_run',
    {
      title: 'Get a directive run',
      description: `One run: its plan, every step with inputs, output, duration and outcome, status and error. Also the resource kiwi://runs/{id}. At most ${LIMITS.stepsShown} steps shown.`,
      inputSchema: { id: z.string().max(100) },
      outputSchema: runShape,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async ({ id }) => {
      const run = service.engine.getRun(id);
      if (!run) throw new Error(`id: no run "${id}"`);
      const structured = runStructured({ ...run, next: partOfRun(service, id, (parent) => `get_directive_run {"id": "${parent}"}`) });
      return answer(structured, renderRun(structured));
    },
  );

  server.registerTool(
    'list_directive_runs',
    {
      title: 'List directive runs',
      description:
        `Runs newest first, optionally for one directive or status. limit default 20, at most ${LIMITS.runs}; pass next_before for the next page. ` +
        "A nested directive's hold on its target is listed as a run of it (and counts in its rate limit), with parent: the run it is part of.",
      inputSchema: {
        directive: z.string().max(64).optional(),
        status: z.enum(RUN_STATUSES).optional(),
        limit: z.number().int().min(1).max(LIMITS.runs).default(20),
        before: timeInput.optional().describe('created_at of the last run seen (next_before, or its created_at as shown): the page after it'),
      },
      outputSchema: {
        runs: z.array(
          z.object({
            id: z.string(),
            parent: z.string().nullable().describe(PARENT),
            directive: z.string(),
            mode: z.string(),
            status: z.string(),
            target: z.string(),
            requested_by: z.string().nullable(),
            approved_by: z.string().nullable(),
            error: z.string().nullable(),
            created_at: z.string(),
            steps: z.number(),
          }),
        ),
        next_before: z.number().nullable(),
      },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async ({ directive, status, limit, before }) => {
      service.engine.sweepExpired();
      let beforeMs: number | undefined;
      if (before !== undefined) {
        try {
          beforeMs = parseTimeInput(before);
        } catch (err) {
          throw new Error(`before: ${(err as Error).message}`);
        }
      }
      const rows = service.engine.runs.list({ directive, status }, limit + 1, beforeMs);
      const page = rows.slice(0, limit);
      const runs = page.map((r) => ({
        id: r.id,
        parent: parentRunId(r.id),
        directive: r.directive,
        mode: r.mode,
        status: r.status,
        target: r.target,
        requested_by: r.requested_by,
        approved_by: r.approved_by,
        error: r.error === null ? null : truncate(r.error, 300),
        created_at: iso(r.created_at),
        steps: r.steps.length,
      }));
      const nextBefore = rows.length > limit ? page[page.length - 1]!.created_at : null;
      const text = [
        `${runs.length} runs${nextBefore !== null ? ` (more: before=${nextBefore})` : ''}`,
        ...runs.map(
          (r) =>
            `${r.created_at} ${r.id} ${r.directive} ${r.mode} ${r.status} target=${r.target}${r.parent ? ` (part of run ${r.parent})` : ''}${r.error ? ` — ${truncate(r.error, 120)}` : ''}`,
        ),
      ].join('\n');
      return answer({ runs, next_before: nextBefore }, text);
    },
  );

  server.registerResource(
    'directive',
    new ResourceTemplate('kiwi://directives/{name}', {
      list: async () => ({
        resources: service.library.list().map((e) => ({
          uri: `kiwi://directives/${e.name}`,
          name: e.name,
          description: e.loaded.directive?.description ?? 'invalid directive',
          mimeType: 'application/yaml',
        })),
      }),
    }),
    { title: 'Directive', description: 'A directive’s YAML', mimeType: 'application/yaml' },
    async (uri, variables) => {
      const name = String(variables.name);
      const yaml = service.yamlOf(name);
      if (yaml === null) throw new McpError(ErrorCode.InvalidParams, `no directive "${truncate(name, 100)}"`);
      return { contents: [{ uri: uri.href, mimeType: 'application/yaml', text: yaml }] };
    },
  );

  server.registerResource(
    'directive-run',
    new ResourceTemplate('kiwi://runs/{id}', {
      list: async () => ({
        resources: service.engine.runs.list({}, 20).map((r) => ({
          uri: `kiwi://runs/${r.id}`,
          name: `${r.directive} ${r.status} ${iso(r.created_at)}`,
          mimeType: 'application/json',
        })),
      }),
    }),
    { title: 'Directive run', description: 'A directive run as JSON (the 20 latest are listed)', mimeType: 'application/json' },
    async (uri, variables) => {
      const run = service.engine.getRun(String(variables.id));
      if (!run) throw new McpError(ErrorCode.InvalidParams, `no run "${truncate(String(variables.id), 100)}"`);
      return { contents: [{ uri: uri.href, mimeType: 'application/json', text: JSON.stringify(runStructured(run), null, 2) }] };
    },
  );

  server.registerPrompt(
    'author_directive',
    {
      title: 'Write a directive',
      description: 'Guides writing a new directive: the format, the JSON Schema, an example, and the validate-until-clean loop.',
      argsSchema: {
        goal: z
          .string()
          .trim()
          .min(1, 'say what the directive should do')
          .describe('what the directive should do, e.g. "when mcp-search is slow, raise its timeout and verify"'),
      },
    },
    async ({ goal }) => {
      const example = service.yamlOf('auto_heal_anomaly') ?? service.library.list()[0]?.loaded.text ?? '';
      const schema = JSON.stringify(directiveJsonSchema());
      return {
        messages: [
          {
            role: 'user',
            content: {
              type: 'text',
              text:
                `Write a Kiwi directive that does this: ${goal}\n\n${AUTHOR_GUIDE}\n\n` +
                `Existing directives: ${service.library.list().map((e) => e.name).join(', ') || '(none)'}.\n\n` +
                `Example (auto_heal_anomaly.yaml):\n\`\`\`yaml\n${truncate(example, 6000)}\n\`\`\`\n\nJSON Schema:\n\`\`\`json\n${truncate(schema, 12000)}\n\`\`\``,
            },
          },
        ],
      };
    },
  );

  // directives added, changed or removed while the server runs: tell the client the list changed
  const stopWatching = service.library.watch(() => {
    if (server.isConnected()) server.sendResourceListChanged();
  });
  const previousOnClose = server.server.onclose;
  server.server.onclose = () => {
    stopWatching();
    previousOnClose?.();
  };
  return service;
}
