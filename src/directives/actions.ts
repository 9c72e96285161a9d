/**
 * Built-in actions. Each declares the permission it needs, whether it is destructive (needs
 * approval), and — when it changes state — returns its inverse, which the engine applies in
 * reverse order when a later step fails.
 */
import { ANOMALY_STATUSES, AnomalyStore } from '../store/anomalies.js';
import { z } from 'zod';
import { EVENT_LEVELS, normaliseRecord } from '../ingest/records.js';
import { isSettingKey, SETTINGS, writeSetting } from '../settings.js';
import type { DirectiveRunStore } from '../store/directives.js';
import type { Store } from '../store/store.js';
import { parseTimeInput } from '../time.js';
import { parseDurationText } from './duration.js';
import type { Policy } from './policy.js';
import type { CapabilityName, CapabilityRegistry } from './registry.js';
import { durationSchema, type Permission } from './schema.js';

export interface ActionContext {
  store: Store;
  runs: DirectiveRunStore;
  policy: Policy;
  capabilities: CapabilityRegistry;
  principal: string;
  runId: string;
  directive: string;
  signal: AbortSignal;
  /**
   * The run's masker: secret inputs become ***. Applied to the text an action stores (event
   * messages and attributes, a setting change's reason, an anomaly's note); values that must stay
   * real (a setting's value, a webhook's body, a script's stdin) are not masked.
   */
  mask: (value: unknown) => unknown;
}

/** An applied change's inverse: an action and its inputs. */
export interface Undo {
  action: string;
  inputs: Record<string, unknown>;
  description: string;
}

export interface ActionResult {
  output: unknown;
  undo?: Undo;
}

export interface ActionDefinition<S extends z.ZodObject = z.ZodObject> {
  description: string;
  permission: Permission | null;
  destructive: boolean;
  /** Changes state and returns its inverse. */
  reversible: boolean;
  /** Not callable from YAML: used only to undo. */
  internal?: boolean;
  inputs: S;
  run(ctx: ActionContext, inputs: z.infer<S>): Promise<ActionResult>;
  /** One line saying what it would do, read-only (plan mode). */
  describe?(ctx: Pick<ActionContext, 'store' | 'runs' | 'policy'>, inputs: z.infer<S>): string;
}

function define<S extends z.ZodObject>(definition: ActionDefinition<S>): ActionDefinition {
  return definition as unknown as ActionDefinition;
}

export const MAX_WAIT_MS = 5 * 60_000;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason as Error);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

// ------------------------------------------------------------------ settings

function currentSetting(store: Store, key: string): unknown {
  if (!isSettingKey(key)) throw new Error(`unknown setting "${key}"; known: ${Object.keys(SETTINGS).join(', ')}`);
  return store.getSetting(key)?.value ?? SETTINGS[key].default;
}

function isRecordSetting(key: string): boolean {
  if (!isSettingKey(key)) return false;
  const d = SETTINGS[key].default as unknown;
  return d !== null && typeof d === 'object' && !Array.isArray(d);
}

/** The whole new value of `key` after setting `value` (for a component, or the whole key); undefined = default. */
function nextSettingValue(store: Store, key: string, component: string | undefined, value: unknown): unknown {
  if (component === undefined) return value === null ? undefined : value;
  if (!isRecordSetting(key)) throw new Error(`component: setting "${key}" is one value, not one per component`);
  const current = { ...(currentSetting(store, key) as Record<string, unknown>) };
  if (value === null || value === undefined) delete current[component];
  else current[component] = value;
  return current;
}

function settingPart(store: Store, key: string, component: string | undefined): unknown {
  const current = currentSetting(store, key);
  if (component === undefined) return current;
  return (current as Record<string, unknown>)[component] ?? null;
}

const settingTarget = (key: string, component?: string) => (component === undefined ? key : `${key}[${component}]`);

function applySetting(ctx: ActionContext, key: string, component: string | undefined, value: unknown, reason: string): ActionResult {
  const before = settingPart(ctx.store, key, component);
  const keyWasSet = ctx.store.getSetting(key) !== null;
  const change = writeSetting(ctx.store, key, nextSettingValue(ctx.store, key, component, value), ctx.principal, ctx.mask(reason) as string);
  const after = settingPart(ctx.store, key, component);
  return {
    output: { key, component: component ?? null, old_value: before, new_value: after, history_id: change.id },
    undo: {
      action: 'settings.restore',
      // restoring a whole key that had its default resets it, leaving no stored value behind;
      // `expected` is what this run set: the undo puts `value` back only while it is still there
      inputs: { key, component: component ?? null, value: component === undefined && !keyWasSet ? null : before, expected: after, run_id: ctx.runId },
      description: `restore ${settingTarget(key, component)} to ${JSON.stringify(before)}`,
    },
  };
}

/** JSON with every object's keys sorted, so values equal but for key order compare equal. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

function sameValue(a: unknown, b: unknown): boolean {
  return canonicalJson(a ?? null) === canonicalJson(b ?? null);
}

function changedBy(actor: string | null | undefined, ts: number | null | undefined): string {
  if (!actor) return 'someone else';
  return `${actor}${ts ? ` at ${new Date(ts).toISOString()}` : ''}`;
}

// ------------------------------------------------------------------ verify

const verifyInputs = z
  .object({
    signal: z.enum(['metric', 'latency_p95_ms', 'error_rate', 'anomaly']),
    component: z.string().min(1).optional(),
    metric: z.string().min(1).optional().describe('signal metric: the series name'),
    labels: z.record(z.string(), z.string()).optional(),
    stat: z.enum(['avg', 'min', 'max', 'last', 'p95']).default('avg'),
    window: durationSchema.default('5m'),
    delay: durationSchema.default(0),
    below: z.number().optional(),
    above: z.number().optional(),
    anomaly_id: z.string().min(1).optional(),
    at: z
      .union([z.string(), z.number()])
      .superRefine((at, ctx) => {
        // read as run() reads it, so a plan reports a time execute would refuse
        try {
          parseTimeInput(at);
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: (err as Error).message });
        }
      })
      .optional()
      .describe('end of the window (default now)'),
  })
  .strict()
  // what the signal needs: in the schema, so a plan whose inputs are all known reports it
  .superRefine((inputs, ctx) => {
    const need = (field: string, message: string) => ctx.addIssue({ code: 'custom', path: field ? [field] : [], message });
    if (inputs.signal === 'anomaly') {
      if (!inputs.anomaly_id) need('anomaly_id', 'required for signal anomaly');
      return;
    }
    if (!inputs.component) need('component', `required for signal ${inputs.signal}`);
    if (inputs.signal === 'metric' && !inputs.metric) need('metric', 'required for signal metric');
    if (inputs.below === undefined && inputs.above === undefined) need('', 'give below or above (or both)');
  });

function readSignal(store: Store, inputs: z.infer<typeof verifyInputs>, from: number, to: number): number | null {
  if (inputs.signal === 'latency_p95_ms' || inputs.signal === 'error_rate') {
    const stats = store.requestStats(inputs.component!, from, to);
    if (stats.count === 0) return null;
    return inputs.signal === 'error_rate' ? stats.error_rate : stats.p95_ms;
  }
  const { series } = store.findSeries({ name: inputs.metric!, component: inputs.component, labels: inputs.labels }, 20);
  const values: number[] = [];
  let last: { ts: number; value: number } | null = null;
  for (const s of series) {
    const { ts, values: v } = store.readPoints(s.id, from, to);
    values.push(...v);
    const i = ts.length - 1;
    if (i >= 0 && (!last || ts[i]! > last.ts)) last = { ts: ts[i]!, value: v[i]! };
  }
  if (values.length === 0) return null;
  switch (inputs.stat) {
    case 'min':
      return Math.min(...values);
    case 'max':
      return Math.max(...values);
    case 'last':
      return last!.value;
    case 'p95': {
      const sorted = [...values].sort((a, b) => a - b);
      return sorted[Math.min(sorted.length - 1, Math.floor(0.95 * (sorted.length - 1)))]!;
    }
    default:
      return values.reduce((a, b) => a + b, 0) / values.length;
  }
}

// ------------------------------------------------------------------ capabilities

function capabilityAction(name: CapabilityName, description: string) {
  return define({
    description,
    permission: 'read:metrics',
    destructive: false,
    reversible: false,
    inputs: z.looseObject({}),
    async run(ctx, inputs) {
      const capability = ctx.capabilities[name];
      if (!capability) throw new Error(`capability "${name}" is not available in this server`);
      const output = await capability({ ...inputs }, ctx.signal);
      if (output === null || typeof output !== 'object') throw new Error(`capability "${name}" returned ${typeof output}, not an object`);
      return { output };
    },
    describe: () => `call the ${name} capability`,
  });
}

// ------------------------------------------------------------------ the catalogue

export const ACTIONS: Record<string, ActionDefinition> = {
  'settings.set': define({
    description: "Set one of Kiwi's runtime settings (with component: one entry of a per-component setting). Undone by restoring the previous value.",
    permission: 'write:settings',
    destructive: true,
    reversible: true,
    inputs: z
      .object({
        key: z.string().min(1),
        value: z.unknown().describe('the new value; null resets to the default (or removes the component entry)'),
        component: z.string().min(1).optional(),
        reason: z.string().max(500).optional(),
      })
      .strict(),
    async run(ctx, inputs) {
      return applySetting(ctx, inputs.key, inputs.component, inputs.value, inputs.reason ?? `directive ${ctx.directive} run ${ctx.runId}`);
    },
    describe(ctx, inputs) {
      const before = settingPart(ctx.store, inputs.key, inputs.component);
      // validates without writing: the same checks writeSetting makes
      const next = nextSettingValue(ctx.store, inputs.key, inputs.component, inputs.value);
      if (next !== undefined && isSettingKey(inputs.key)) {
        const parsed = SETTINGS[inputs.key].schema.safeParse(next);
        if (!parsed.success) throw new Error(`${inputs.key}: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
      }
      return `set ${settingTarget(inputs.key, inputs.component)}: ${JSON.stringify(before)} -> ${JSON.stringify(inputs.value)}`;
    },
  }),

  'settings.revert': define({
    description: "Put a setting back to the value it had before its latest change (from the settings history). Undone by restoring the value it replaced.",
    permission: 'write:settings',
    destructive: true,
    reversible: true,
    inputs: z.object({ key: z.string().min(1), reason: z.string().max(500).optional() }).strict(),
    async run(ctx, inputs) {
      currentSetting(ctx.store, inputs.key);
      const latest = ctx.store.settingHistory(inputs.key, 1)[0];
      if (!latest) throw new Error(`${inputs.key}: never changed, nothing to revert`);
      return applySetting(ctx, inputs.key, undefined, latest.old_value, inputs.reason ?? `revert by directive ${ctx.directive} run ${ctx.runId}`);
    },
    describe(ctx, inputs) {
      const latest = ctx.store.settingHistory(inputs.key, 1)[0];
      return latest
        ? `revert ${inputs.key}: ${JSON.stringify(currentSetting(ctx.store, inputs.key))} -> ${JSON.stringify(latest.old_value ?? 'default')}`
        : `revert ${inputs.key}: never changed (the step will fail)`;
    },
  }),

  'settings.restore': define({
    description: 'Internal: the inverse of settings.set / settings.revert.',
    permission: 'write:settings',
    destructive: true,
    reversible: false,
    internal: true,
    inputs: z
      .object({
        key: z.string(),
        component: z.string().nullable(),
        value: z.unknown(),
        /** What the run set. Absent only in undo records stored before it was recorded: those restore unconditionally. */
        expected: z.unknown().optional(),
        run_id: z.string(),
      })
      .strict(),
    async run(ctx, inputs) {
      const component = inputs.component ?? undefined;
      // Checked and written in one transaction: another process sharing the store cannot slip a change in between.
      return ctx.store.inTransaction(() => {
        if (inputs.expected !== undefined) {
          const current = settingPart(ctx.store, inputs.key, component);
          if (!sameValue(current, inputs.expected)) {
            const latest = ctx.store.settingHistory(inputs.key, 1)[0];
            throw new Error(
              `${settingTarget(inputs.key, component)} is ${JSON.stringify(current)} now, not the ${JSON.stringify(inputs.expected)} this run set ` +
                `(changed by ${changedBy(latest?.actor, latest?.ts)}): left as it is`,
            );
          }
        }
        const result = applySetting(ctx, inputs.key, component, inputs.value, `rollback of directive run ${inputs.run_id}`);
        return { output: result.output };
      });
    },
  }),

  'anomaly.update': define({
    description: 'Change an anomaly’s status (open, acknowledged, resolved) and note. Undone by restoring the previous status and note.',
    permission: 'write:anomalies',
    destructive: true,
    reversible: true,
    inputs: z
      .object({
        id: z.string().min(1),
        status: z.enum(['open', 'acknowledged', 'resolved']).optional(),
        note: z.string().max(2000).optional(),
      })
      .strict(),
    async run(ctx, inputs) {
      const anomalies = new AnomalyStore(ctx.store);
      const before = anomalies.get(inputs.id);
      if (!before) throw new Error(`id: no anomaly "${inputs.id}"`);
      const note = inputs.note === undefined ? undefined : (ctx.mask(inputs.note) as string);
      const after = anomalies.setStatus(inputs.id, inputs.status ?? before.status, ctx.principal, note, { run_id: ctx.runId });
      return {
        output: { id: inputs.id, old_status: before.status, status: after.status, note: after.note },
        undo: {
          action: 'anomaly.restore',
          // `expected`: what this run left; the undo puts the old status and note back only while it is still there
          inputs: { id: inputs.id, status: before.status, note: before.note, expected: { status: after.status, note: after.note } },
          description: `restore anomaly ${inputs.id} to ${before.status}`,
        },
      };
    },
    describe(ctx, inputs) {
      const before = new AnomalyStore(ctx.store).get(inputs.id);
      return before
        ? `anomaly ${inputs.id} (${before.type} on ${before.component}): ${before.status} -> ${inputs.status ?? before.status}`
        : `anomaly ${inputs.id}: not found (the step will fail)`;
    },
  }),

  'anomaly.restore': define({
    description: 'Internal: the inverse of anomaly.update.',
    permission: 'write:anomalies',
    destructive: true,
    reversible: false,
    internal: true,
    inputs: z
      .object({
        id: z.string(),
        status: z.enum(ANOMALY_STATUSES),
        note: z.string().nullable(),
        /** What the run left. Absent only in undo records stored before it was recorded: those restore unconditionally. */
        expected: z.object({ status: z.enum(ANOMALY_STATUSES), note: z.string().nullable() }).strict().optional(),
      })
      .strict(),
    async run(ctx, inputs) {
      return ctx.store.inTransaction(() => {
        const anomalies = new AnomalyStore(ctx.store);
        if (inputs.expected) {
          const current = anomalies.get(inputs.id);
          if (!current) throw new Error(`anomaly ${inputs.id} no longer exists: nothing to restore`);
          if (current.status !== inputs.expected.status || current.note !== inputs.expected.note) {
            const last = ctx.store.latestAudit('anomaly.update', inputs.id);
            const what = (a: { status: string; note: string | null }) => `${a.status}${a.note === null ? '' : ` (note ${JSON.stringify(a.note)})`}`;
            throw new Error(
              `anomaly ${inputs.id} is ${what(current)} now, not the ${what(inputs.expected)} this run set ` +
                `(changed by ${changedBy(last?.actor, last?.ts ?? current.updated_at)}): left as it is`,
            );
          }
        }
        anomalies.setStatus(inputs.id, inputs.status, ctx.principal, inputs.note, { run_id: ctx.runId, restored: true });
        return { output: { id: inputs.id, status: inputs.status } };
      });
    },
  }),

  'events.log': define({
    description: 'Write an event to the store (kind directive by default, component kiwi).',
    permission: 'write:events',
    destructive: false,
    reversible: false,
    inputs: z
      .object({
        message: z.string().min(1).max(4000),
        kind: z.string().regex(/^[a-z][a-z0-9_.-]*$/).default('directive'),
        level: z.enum(EVENT_LEVELS).default('info'),
        component: z.string().min(1).default('kiwi'),
        attrs: z.record(z.string(), z.unknown()).default({}),
      })
      .strict(),
    async run(ctx, inputs) {
      const ts = Date.now();
      // the events table is readable by any read-only client (search_events): secrets are masked
      const message = ctx.mask(inputs.message) as string;
      const component = ctx.mask(inputs.component) as string;
      const record = normaliseRecord({
        type: 'event',
        ts,
        kind: inputs.kind,
        level: inputs.level,
        component,
        message,
        attrs: { ...(ctx.mask(inputs.attrs) as Record<string, unknown>), 'kiwi.directive': ctx.directive, 'kiwi.run_id': ctx.runId },
      });
      ctx.store.writeRecords([record]);
      return { output: { ts: new Date(ts).toISOString(), kind: inputs.kind, component, message } };
    },
    describe: (_ctx, inputs) => `log ${inputs.kind} event on ${inputs.component}: ${inputs.message.slice(0, 120)}`,
  }),

  'notify.webhook': define({
    description: 'POST JSON to an allow-listed URL (policy webhooks.allow), with a timeout; redirects are not followed.',
    permission: 'net:webhook',
    destructive: false,
    reversible: false,
    inputs: z
      .object({
        url: z.string().url(),
        body: z.unknown().default({}),
        headers: z.record(z.string().regex(/^[A-Za-z0-9-]+$/), z.string().max(1000)).default({}),
      })
      .strict(),
    async run(ctx, inputs) {
      const url = new URL(inputs.url);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`url: only http and https, not ${url.protocol}`);
      if (!ctx.policy.webhookAllowed(url)) throw new Error(`url: ${url.origin} is not in the policy's webhooks.allow list`);
      // A timer and a controller, not AbortSignal.any([..., AbortSignal.timeout(ms)]): on Node 20 the
      // combined signal holds the timeout signal weakly, and once collected it never fires.
      const timeoutMs = ctx.policy.webhookTimeoutMs;
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(new Error(`webhook: no answer within ${timeoutMs} ms (policy webhooks.timeout)`)), timeoutMs);
      const onAbort = () => controller.abort(ctx.signal.reason);
      if (ctx.signal.aborted) onAbort();
      else ctx.signal.addEventListener('abort', onAbort, { once: true });
      try {
        const response = await fetch(url, {
          method: 'POST',
          headers: { ...inputs.headers, 'content-type': 'application/json', 'user-agent': 'kiwi-directive' },
          body: JSON.stringify(inputs.body),
          redirect: 'error',
          signal: controller.signal,
        });
        const text = (await response.text()).slice(0, 2000);
        if (!response.ok) throw new Error(`webhook answered ${response.status}: ${text.slice(0, 200)}`);
        return { output: { status: response.status, body: text } };
      } finally {
        clearTimeout(timer);
        ctx.signal.removeEventListener('abort', onAbort);
      }
    },
    describe: (ctx, inputs) => {
      let allowed = false;
      try {
        allowed = ctx.policy.webhookAllowed(new URL(inputs.url));
      } catch {
        // an invalid URL fails the step; the plan says so below
      }
      return `POST to ${inputs.url}${allowed ? '' : ' (NOT in the webhook allow-list: the step will fail)'}`;
    },
  }),

  wait: define({
    description: `Pause the run (at most ${MAX_WAIT_MS / 60_000} minutes).`,
    permission: null,
    destructive: false,
    reversible: false,
    inputs: z.object({ duration: durationSchema }).strict(),
    async run(ctx, inputs) {
      const ms = parseDurationText(inputs.duration);
      if (ms > MAX_WAIT_MS) throw new Error(`duration: at most ${MAX_WAIT_MS / 60_000} minutes`);
      await sleep(ms, ctx.signal);
      return { output: { waited_ms: ms } };
    },
    describe: (_ctx, inputs) => `wait ${inputs.duration}`,
  }),

  verify: define({
    description:
      'After an optional delay, re-check a signal over a window ending now (or at): a metric (stat of a series), latency_p95_ms or error_rate of a component’s requests, or an anomaly (healed = resolved). Fails the step when not healed (below/above not met) or when there is no data.',
    permission: 'read:metrics',
    destructive: false,
    reversible: false,
    inputs: verifyInputs,
    async run(ctx, inputs) {
      const delay = parseDurationText(inputs.delay);
      if (delay > MAX_WAIT_MS) throw new Error(`delay: at most ${MAX_WAIT_MS / 60_000} minutes`);
      if (delay > 0) await sleep(delay, ctx.signal);
      // the schema made sure the signal has what it needs
      if (inputs.signal === 'anomaly') {
        const anomaly = new AnomalyStore(ctx.store).get(inputs.anomaly_id!);
        if (!anomaly) throw new Error(`anomaly_id: no anomaly "${inputs.anomaly_id}"`);
        if (anomaly.status !== 'resolved') throw new Error(`not healed: anomaly ${anomaly.id} is still ${anomaly.status}`);
        return { output: { healed: true, anomaly_id: anomaly.id, status: anomaly.status } };
      }
      const to = inputs.at === undefined ? Date.now() : parseTimeInput(inputs.at);
      const from = to - parseDurationText(inputs.window);
      const value = readSignal(ctx.store, inputs, from, to);
      const what = inputs.signal === 'metric' ? `${inputs.stat} ${inputs.metric} of ${inputs.component}` : `${inputs.signal} of ${inputs.component}`;
      if (value === null) throw new Error(`not verified: no data for ${what} over the window`);
      const healed = (inputs.below === undefined || value < inputs.below) && (inputs.above === undefined || value > inputs.above);
      if (!healed) {
        const bound = [inputs.below !== undefined ? `below ${inputs.below}` : '', inputs.above !== undefined ? `above ${inputs.above}` : ''].filter(Boolean).join(' and ');
        throw new Error(`not healed: ${what} is ${Number(value.toPrecision(6))}, not ${bound}`);
      }
      return { output: { healed: true, value, signal: inputs.signal, component: inputs.component } };
    },
    describe: (_ctx, inputs) =>
      `verify ${inputs.signal}${inputs.metric ? ` ${inputs.metric}` : ''}${inputs.component ? ` of ${inputs.component}` : ''}${inputs.anomaly_id ? ` ${inputs.anomaly_id}` : ''}` +
      `${inputs.below !== undefined ? ` < ${inputs.below}` : ''}${inputs.above !== undefined ? ` > ${inputs.above}` : ''}`,
  }),

  detect: capabilityAction('detect', 'Find anomalies (the detection capability); output as the capability returns it, e.g. { anomalies: [...] }.'),
  explain: capabilityAction('explain', 'Rank root causes of one anomaly (the root-cause capability), e.g. input { anomaly_id }.'),
  forecast: capabilityAction('forecast', 'Forecast failures (the forecasting capability), e.g. time to out-of-memory.'),
};

export function publicActionNames(): string[] {
  return Object.entries(ACTIONS)
    .filter(([, a]) => !a.internal)
    .map(([name]) => name);
}
