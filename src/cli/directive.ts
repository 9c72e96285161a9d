/** `kiwi directive validate|list|run|approve|reject|runs|show`: the directives capability from a shell. */
import { inProcessToolCaller, partOfRun, renderRun, runStructured } from '../mcp/tools/directives.js';
import { createMcpServer } from '../mcp/server.js';
import { formatDiagnostic } from '../directives/load.js';
import { Policy } from '../directives/policy.js';
import { capabilitiesWithToolFallback } from '../directives/registry.js';
import { coerceInputPairs, DirectiveService } from '../directives/service.js';
import { resolveDbPath } from '../store/database.js';
import { parentRunId, RUN_STATUSES, type RunStatus } from '../store/directives.js';
import { Store } from '../store/store.js';
import { iso } from '../time.js';

export const DIRECTIVE_USAGE =
  'kiwi directive validate FILE... | list | run NAME [--input K=V]... [--mode plan|execute] [--approve] [--idempotency-key K] | ' +
  'approve RUN_ID [--input K=V for secret inputs] | reject RUN_ID [--reason TEXT] | runs [--directive NAME] [--status S] [--limit N] | show RUN_ID';

export const DIRECTIVE_OPTIONS = {
  db: { type: 'string' },
  policy: { type: 'string' },
  directives: { type: 'string' },
  scripts: { type: 'string' },
  input: { type: 'string', multiple: true },
  mode: { type: 'string' },
  approve: { type: 'boolean' },
  'idempotency-key': { type: 'string' },
  reason: { type: 'string' },
  directive: { type: 'string' },
  status: { type: 'string' },
  limit: { type: 'string' },
  json: { type: 'boolean' },
} as const;

export const DIRECTIVE_FLAGS: [string, string][] = [
  ['--db PATH', 'database file (default: $KIWI_DB, else ./.kiwi/kiwi.db)'],
  ['--policy FILE', 'permission policy, YAML or JSON (default: $KIWI_POLICY, else read-only)'],
  ['--directives DIR', 'directives folder (default: $KIWI_DIRECTIVES, else the shipped directives/)'],
  ['--scripts DIR', 'scripts folder (default: $KIWI_SCRIPTS, else the shipped scripts/)'],
  ['--input K=V', 'a directive input (repeat); numbers, booleans and JSON arrays/objects by the declared type'],
  ['--mode plan|execute', 'plan (default) lists what would run and changes nothing; execute runs it'],
  ['--approve', "approve destructive steps yourself (only where the policy's approval.self_approval allows)"],
  ['--idempotency-key K', 'a second run with the same key returns the first instead of running again'],
  ['--reason TEXT', 'why a run is rejected'],
  ['--directive NAME, --status S, --limit N', 'filters for `runs`'],
  ['--json', 'print the run as JSON'],
];

type Values = Record<string, string | boolean | string[] | undefined>;

const principal = () => `cli:${process.env.USER ?? process.env.USERNAME ?? 'user'}`;

class Usage extends Error {}

export async function directiveCommand(values: Values, args: string[]): Promise<number> {
  const [action, ...rest] = args;
  try {
    return await dispatch(action, rest, values);
  } catch (err) {
    if (err instanceof Usage) {
      process.stderr.write(`kiwi directive: ${err.message}\nusage: ${DIRECTIVE_USAGE}\n`);
      return 2;
    }
    throw err;
  }
}

async function dispatch(action: string | undefined, rest: string[], values: Values): Promise<number> {
  if (!action) throw new Usage('name an action');
  const store = new Store(resolveDbPath(values.db as string | undefined));
  const tools = inProcessToolCaller(() => createMcpServer(store, null));
  try {
    const service = new DirectiveService({
      store,
      directivesDir: values.directives as string | undefined,
      scriptsDir: values.scripts as string | undefined,
      policy: Policy.load(values.policy as string | undefined),
      capabilities: capabilitiesWithToolFallback({}, tools),
      tools,
    });
    const print = (run: Parameters<typeof runStructured>[0]) => {
      const structured = runStructured(run);
      process.stdout.write(`${values.json ? JSON.stringify(structured, null, 2) : renderRun(structured)}\n`);
      return ['failed', 'denied', 'rolled_back', 'rejected', 'expired'].includes(run.status) ? 1 : 0;
    };
    switch (action) {
      case 'validate': {
        if (rest.length === 0) throw new Usage('validate needs at least one FILE');
        const diagnostics = await service.validateFiles(rest);
        for (const d of diagnostics) process.stderr.write(`${formatDiagnostic(d)}\n`);
        const bad = new Set(diagnostics.map((d) => d.file));
        for (const file of rest) if (!bad.has(file)) process.stdout.write(`${file}: valid\n`);
        return diagnostics.length ? 1 : 0;
      }
      case 'list': {
        const list = await service.list();
        for (const d of list) {
          process.stdout.write(`${d.name} ${d.version ?? '?'}${d.valid ? '' : ' (INVALID)'}: ${d.description ?? ''}\n`);
          for (const e of d.errors.slice(0, 5)) process.stdout.write(`    ${d.file}:${e}\n`);
        }
        return list.every((d) => d.valid) ? 0 : 1;
      }
      case 'run': {
        const [name] = rest;
        if (!name) throw new Usage('run needs a directive NAME');
        const mode = (values.mode as string | undefined) ?? 'plan';
        if (mode !== 'plan' && mode !== 'execute') throw new Usage('--mode must be plan or execute');
        const specs = service.library.get(name)?.loaded.directive?.inputs ?? {};
        const inputs = coerceInputPairs((values.input as string[] | undefined) ?? [], specs);
        const run = await rollingBackOnSignal((signal) =>
          service.run({
            directive: name,
            inputs,
            mode,
            approve: values.approve === true,
            principal: principal(),
            idempotencyKey: values['idempotency-key'] as string | undefined,
            signal,
          }),
        );
        return print(run);
      }
      case 'approve': {
        const [id] = rest;
        if (!id) throw new Usage('approve needs a RUN_ID');
        const run = service.engine.getRun(id);
        const specs = run ? (service.library.get(run.directive)?.loaded.directive?.inputs ?? {}) : {};
        const secrets = coerceInputPairs((values.input as string[] | undefined) ?? [], specs);
        return print(await rollingBackOnSignal((signal) => service.approve(id, principal(), secrets, signal)));
      }
      case 'reject': {
        const [id] = rest;
        if (!id) throw new Usage('reject needs a RUN_ID');
        print(service.reject(id, principal(), values.reason as string | undefined));
        return 0;
      }
      case 'show': {
        const [id] = rest;
        if (!id) throw new Usage('show needs a RUN_ID');
        const run = service.engine.getRun(id);
        if (!run) throw new Error(`no run "${id}"`);
        print({ ...run, next: partOfRun(service, id, (parent) => `kiwi directive show ${parent}`) });
        return 0;
      }
      case 'runs': {
        const status = values.status as string | undefined;
        if (status !== undefined && !RUN_STATUSES.includes(status as RunStatus)) throw new Usage(`--status must be one of ${RUN_STATUSES.join(', ')}`);
        const limit = values.limit === undefined ? 20 : Number(values.limit);
        if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new Usage('--limit must be a whole number from 1 to 1000');
        service.engine.sweepExpired();
        for (const r of service.engine.runs.list({ directive: values.directive as string | undefined, status }, limit)) {
          const parent = parentRunId(r.id);
          process.stdout.write(
            `${iso(r.created_at)} ${r.id} ${r.directive} ${r.mode} ${r.status} target=${r.target} by ${r.requested_by ?? '-'}` +
              `${parent ? ` (part of run ${parent})` : ''}${r.error ? ` — ${r.error.slice(0, 160)}` : ''}\n`,
          );
        }
        return 0;
      }
      default:
        throw new Usage(`unknown action "${action}"`);
    }
  } finally {
    store.close();
  }
}

/**
 * Runs `start` with a signal that Ctrl-C or SIGTERM aborts: instead of killing the process
 * mid-step, the run stops and rolls back what it applied (it ends rolled_back and is printed).
 * A signal that comes before the run starts executing stops it too.
 */
async function rollingBackOnSignal<T>(start: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`kiwi directive: ${signal}: stopping the run and rolling back what it applied\n`);
    controller.abort(new Error(`kiwi directive received ${signal}`));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return await start(controller.signal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
