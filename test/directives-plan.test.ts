/**
 * What a plan promises and what validation catches before it: a plan checks every value it can
 * know (constants, inputs, run) as the step will, so a clean plan does not fail at execute on one of
 * them; a step may read only the outputs of steps that ran before it; one schema error does not hide
 * the others; and a nested directive holds its own target's lock until the outer run ends.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DirectiveEngine, interruptRuns } from '../src/directives/engine.js';
import { DirectiveLibrary } from '../src/directives/library.js';
import { formatDiagnostic, loadDirectiveText } from '../src/directives/load.js';
import { packagedDir } from '../src/directives/service.js';
import { validateDirective } from '../src/directives/validate.js';
import { createMcpServer } from '../src/mcp/server.js';
import { inProcessToolCaller } from '../src/mcp/tools/directives.js';
import { capabilitiesWithToolFallback, type CapabilityRegistry, type ToolCaller } from '../src/directives/registry.js';
import { readSetting } from '../src/settings.js';
import { Store } from '../src/store/store.js';
import { directiveSetup, policy, type DirectiveSetup } from './helpers/directives.js';
import { pollUntil } from './helpers/poll.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir('kiwi-directives-plan-');
const stores: Store[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

function setup(options: Parameters<typeof directiveSetup>[2] = {}): DirectiveSetup {
  return directiveSetup(tempDir(), (store) => stores.push(store), options);
}

/** A setup whose tool steps reach Kiwi's own tools, as the server's do. */
/**
 * An engine whose tool steps call Kiwi's own tools in-process; with `capabilities`, detect, explain
 * and forecast are those given, else reached through their tools.
 */
function withTools(capabilities?: CapabilityRegistry): DirectiveSetup & { tools: ToolCaller } {
  const s = setup();
  const tools = inProcessToolCaller(() => createMcpServer(s.store, null));
  const engine = new DirectiveEngine({
    store: s.store,
    library: new DirectiveLibrary(s.directives),
    scriptsDir: s.scripts,
    policy: policy(),
    tools,
    ...(capabilities ? { capabilities: capabilitiesWithToolFallback(capabilities, tools) } : {}),
  });
  return { ...s, engine, tools };
}

const head = (name: string, permissions = '[read:metrics, write:settings, write:events]') =>
  `name: ${name}\nversion: 1.0.0\ndescription: test\npermissions: ${permissions}\n`;

interface Planned {
  path: string;
  inputs: unknown;
  error: string | null;
}
const planOf = (run: { plan: unknown }) => run.plan as Planned[];
const errorsOf = (run: { plan: unknown }) => planOf(run).flatMap((p) => (p.error === null ? [] : [`${p.path}: ${p.error}`]));

function validateText(s: DirectiveSetup, text: string, file = 'x.yaml'): string[] {
  const library = new DirectiveLibrary(s.directives);
  return validateDirective(loadDirectiveText(text, file), { library, scriptsDir: s.scripts, tools: [] }).map(formatDiagnostic);
}

describe('plan checks the values a step will pass', () => {
  it('the shipped flaky_connection_response with window "1h": plan names search_events\' from, execute is refused', async () => {
    const store = new Store(join(tempDir(), 'kiwi.db'));
    stores.push(store);
    const engine = new DirectiveEngine({
      store,
      library: new DirectiveLibrary(packagedDir('directives')),
      scriptsDir: packagedDir('scripts'),
      policy: policy(),
      tools: inProcessToolCaller(() => createMcpServer(store, null)),
    });
    const inputs = { component: 'mcp-github', window: '1h' };
    const plan = await engine.run({ directive: 'flaky_connection_response', inputs, principal: 'cli:ops' });
    const expected = 'steps[0]: from: "1h" is a duration, not a time; for 1h ago write -1h';
    expect(errorsOf(plan)).toEqual([expected]);
    expect(plan.error).toBe(`plan: ${expected}`);
    expect(plan.next).toBe('fix the errors above before executing');

    const refused = await engine.run({ directive: 'flaky_connection_response', inputs, principal: 'cli:ops', mode: 'execute', approve: true });
    expect(refused).toMatchObject({ status: 'failed', error: `plan: ${expected}`, steps: [] });
    expect(store.listAudit(20).map((a) => a.action)).toContain('directive.refused');

    // the value as the directive means it plans cleanly
    const good = await engine.run({ directive: 'flaky_connection_response', inputs: { ...inputs, window: '-1h' }, principal: 'cli:ops' });
    expect(errorsOf(good)).toEqual([]);
    expect(good.error).toBeNull();
  });

  it('an action: each known value is checked even when another waits for an earlier output, and nothing runs', async () => {
    const s = setup();
    s.write(
      'acts',
      `${head('acts')}inputs:
  level: { type: string }
  at: { type: string, default: -5m }
  pause: { type: string, default: 1s }
steps:
  - name: first
    action: events.log
    inputs: { message: first }
  - name: second
    action: events.log
    inputs: { message: "after {{ steps.first.output.message }}", level: "{{ inputs.level }}" }
  - action: verify
    inputs: { signal: error_rate, component: svc, below: 0.5, at: "{{ inputs.at }}" }
  - action: wait
    inputs: { duration: "{{ inputs.pause }}" }
`,
    );
    const bad = { level: 'loud', at: '1h', pause: '90s' };
    const plan = await s.engine.run({ directive: 'acts', inputs: bad, principal: 'cli:t' });
    expect(errorsOf(plan)).toEqual([
      expect.stringMatching(/^steps\[1\]: level: Invalid option: expected one of "trace"\|/),
      'steps[2]: at: "1h" is a duration, not a time; for 1h ago write -1h',
      "steps[3]: duration: wait duration 90s is not shorter than the default step timeout (60s), so the step would always time out; raise the step's timeout: above 90s (at most 10m)",
    ]);
    // the value that waits for steps.first is shown as such, and nothing is said of it
    expect(planOf(plan)[1]!.inputs).toEqual({ message: { deferred: 'after {{ steps.first.output.message }}' }, level: 'loud' });

    const refused = await s.engine.run({ directive: 'acts', inputs: bad, principal: 'cli:t', mode: 'execute' });
    expect(refused.status).toBe('failed');
    expect(refused.error).toMatch(/^plan: steps\[1\]: level: .*; steps\[2\]: at: .*; steps\[3\]: duration: /);
    expect(s.store.searchEvents({}, 10).events).toEqual([]);

    const good = await s.engine.run({ directive: 'acts', inputs: { level: 'warn' }, principal: 'cli:t' });
    expect(errorsOf(good)).toEqual([]);
  });

  it('verify: what a signal needs is checked at plan when its inputs are known', async () => {
    const s = setup();
    s.write('v', `${head('v')}inputs:\n  signal: { type: string }\nsteps:\n  - action: verify\n    inputs: { signal: "{{ inputs.signal }}", below: 1 }\n`);
    const plan = await s.engine.run({ directive: 'v', inputs: { signal: 'anomaly' }, principal: 'cli:t' });
    expect(errorsOf(plan)).toEqual(['steps[0]: anomaly_id: required for signal anomaly']);
  });

  it("a tool step's arguments from earlier outputs are left to execute; the known ones are checked", async () => {
    const s = withTools();
    s.write(
      't',
      `${head('t')}inputs:\n  limit: { type: integer, default: 5 }\nsteps:
  - name: mark
    action: events.log
    inputs: { message: mark, kind: connection, component: svc }
  - name: since
    tool: search_events
    inputs: { kind: connection, from: "{{ steps.mark.output.ts }}", limit: "{{ inputs.limit }}" }
`,
    );
    const bad = await s.engine.run({ directive: 't', inputs: { limit: 0 }, principal: 'cli:t' });
    expect(errorsOf(bad)).toEqual(['steps[1]: limit: Too small: expected number to be >=1']);

    const plan = await s.engine.run({ directive: 't', principal: 'cli:t' });
    expect(errorsOf(plan)).toEqual([]);
    expect(planOf(plan)[1]!.inputs).toEqual({ kind: 'connection', from: { deferred: '{{ steps.mark.output.ts }}' }, limit: 5 });
    const run = await s.engine.run({ directive: 't', principal: 'cli:t', mode: 'execute' });
    expect(run.status).toBe('succeeded');
    expect((run.steps as { output: { events: unknown[] } }[])[1]!.output.events).toHaveLength(1);
  });

  it('durations the tools parse themselves (lookback, bucket, horizon) are checked as the tools read them', async () => {
    const s = withTools();
    s.write(
      'd',
      `${head('d', '[read:metrics, call:tool]')}inputs:\n  span: { type: string, default: 60m }\nsteps:
  - tool: detect_anomalies
    inputs: { lookback: "{{ inputs.span }}" }
  - tool: query_metrics
    inputs: { name: kiwi.x, bucket: "{{ inputs.span }}" }
  - tool: forecast_failure
    inputs: { target: memory, horizon: "{{ inputs.span }}" }
  - tool: forecast_failure
    inputs: { target: memory, horizon: 2 }
`,
    );
    const plan = await s.engine.run({ directive: 'd', inputs: { span: '60' }, principal: 'cli:t' });
    const unit = '"60" has no unit; write it as 500ms, 90s, 15m, 2h or 7d';
    expect(errorsOf(plan)).toEqual([`steps[0]: lookback: ${unit}`, `steps[1]: bucket: ${unit}`, `steps[2]: horizon: ${unit}`]);
    // what the tool itself says when called with it
    const called = await s.engine.run({ directive: 'd', inputs: { span: 'soon' }, principal: 'cli:t' });
    const notDuration = '"soon" is not a positive duration such as 90s, 15m, 2h or 7d';
    expect(errorsOf(called)).toEqual([`steps[0]: lookback: ${notDuration}`, `steps[1]: bucket: ${notDuration}`, `steps[2]: horizon: ${notDuration}`]);
    const direct = await inProcessToolCaller(() => createMcpServer(s.store, null)).call('detect_anomalies', { lookback: 'soon' }, new AbortController().signal);
    expect(direct).toMatchObject({ isError: true, text: `lookback: ${notDuration}` });

    const good = await s.engine.run({ directive: 'd', principal: 'cli:t' });
    expect(errorsOf(good)).toEqual([]);
    const run = await s.engine.run({ directive: 'd', principal: 'cli:t', mode: 'execute', approve: true });
    expect(run.status).toBe('succeeded');
  });
});

describe('plan: what detect, explain and forecast pass on to their tools', () => {
  it('a duration or time the tool would refuse fails the plan, naming the step, not the execute', async () => {
    const s = withTools({});
    const { engine, tools } = s;
    s.write(
      'd',
      `${head('d', '[read:metrics]')}inputs:\n  span: { type: string, default: 60m }\n  ahead: { type: string, default: 6h }\n  since: { type: string, default: -2h }\nsteps:
  - name: find
    action: detect
    inputs: { lookback: "{{ inputs.span }}", at: "{{ inputs.since }}" }
  - name: why
    action: explain
    inputs: { component: worker, start: "{{ inputs.since }}" }
    continue_on_error: true
  - name: ahead
    action: forecast
    inputs: { target: memory, horizon: "{{ inputs.ahead }}" }
`,
    );
    const bad = await engine.run({ directive: 'd', inputs: { span: '60', ahead: '60d', since: 'yesterday' }, principal: 'cli:t' });
    const notTime = 'timestamp "yesterday" is neither ISO 8601 nor an epoch number';
    expect(errorsOf(bad)).toEqual([
      `steps[0]: lookback: "60" has no unit; write it as 500ms, 90s, 15m, 2h or 7d; at: ${notTime}`,
      `steps[1]: start: ${notTime}`,
      'steps[2]: horizon: must be at most 720h',
    ]);
    expect(bad.next).toBe('fix the errors above before executing');
    // execute is refused before any step runs
    const refused = await engine.run({ directive: 'd', inputs: { span: '60', ahead: '60d', since: 'yesterday' }, principal: 'cli:t', mode: 'execute' });
    expect(refused).toMatchObject({ status: 'failed', steps: [] });
    // what the tools themselves say when called with them
    const call = (name: string, args: Record<string, unknown>) => tools.call(name, args, new AbortController().signal);
    expect(await call('detect_anomalies', { lookback: '60' })).toMatchObject({ isError: true, text: 'lookback: "60" has no unit; write it as 500ms, 90s, 15m, 2h or 7d' });
    expect(await call('forecast_failure', { target: 'memory', horizon: '60d' })).toMatchObject({ isError: true, text: 'horizon: must be at most 720h' });

    const good = await engine.run({ directive: 'd', principal: 'cli:t' });
    expect(errorsOf(good)).toEqual([]);
    // (on an empty store root-cause analysis finds nothing to explain: a failure of its own, not of its arguments)
    const run = await engine.run({ directive: 'd', principal: 'cli:t', mode: 'execute' });
    expect(run.steps.map((r) => (r as { outcome: string }).outcome)).toEqual(['ok', expect.any(String), 'ok']);
    expect((run.steps as { error: string | null }[])[1]!.error ?? '').not.toMatch(/^analyze_root_cause: start:/);
  });

  it('an injected capability takes its own inputs: they are not checked as the tool its name shares would check them', async () => {
    const seen: Record<string, unknown>[] = [];
    const s = withTools({
      detect: async (input) => {
        seen.push(input);
        return { anomalies: [] };
      },
    });
    const { engine } = s;
    s.write('d', `${head('d', '[read:metrics]')}steps:
  - name: find
    action: detect
    inputs: { lookback: "60" }
`);
    const planned = await engine.run({ directive: 'd', principal: 'cli:t' });
    expect(errorsOf(planned)).toEqual([]);
    const run = await engine.run({ directive: 'd', principal: 'cli:t', mode: 'execute' });
    expect(run.status).toBe('succeeded');
    expect(seen).toEqual([{ lookback: '60' }]);
  });

  it("query_metrics' narrowest bucket and forecast_failure's furthest horizon are checked as the tools check them", async () => {
    const s = withTools();
    s.write(
      'd',
      `${head('d', '[read:metrics]')}steps:
  - tool: query_metrics
    inputs: { name: kiwi.x, bucket: 500ms }
  - tool: forecast_failure
    inputs: { target: memory, horizon: 1000 }
  - tool: forecast_failure
    inputs: { target: memory, horizon: 31d }
  - tool: query_metrics
    inputs: { name: kiwi.x, bucket: 1s }
  - tool: forecast_failure
    inputs: { target: memory, horizon: 720 }
`,
    );
    const plan = await s.engine.run({ directive: 'd', principal: 'cli:t' });
    expect(errorsOf(plan)).toEqual(['steps[0]: bucket: must be at least 1s', 'steps[1]: horizon: must be at most 720 hours', 'steps[2]: horizon: must be at most 720h']);
    const direct = await inProcessToolCaller(() => createMcpServer(s.store, null)).call('query_metrics', { name: 'kiwi.x', bucket: '500ms' }, new AbortController().signal);
    expect(direct).toMatchObject({ isError: true, text: 'bucket: must be at least 1s' });
  });
});

describe('validation: a step reads only outputs that exist when it runs', () => {
  it('names a step that runs later, the step itself, and the other branch, at the line of the expression', () => {
    const s = setup();
    const errors = validateText(
      s,
      `${head('order', '[write:events]')}steps:
  - name: early
    action: events.log
    inputs: { message: "{{ steps.late.output.message }}" }
  - name: itself
    action: events.log
    inputs: { message: "{{ steps.itself.outcome }}" }
  - name: pick
    conditional:
      if: "{{ steps.yes.outcome == 'ok' }}"
      then:
        - name: yes
          action: events.log
          inputs: { message: "{{ steps.early.output.message }}" }
      else:
        - name: no
          action: events.log
          inputs: { message: "{{ steps.yes.output.message }}" }
  - name: late
    action: events.log
    inputs: { message: "{{ steps.no.outcome }} {{ steps.tidy.outcome }}" }
rollback:
  - name: undo_note
    action: events.log
    inputs: { message: "{{ steps.late.outcome }} {{ steps.tidy.outcome }}" }
finally:
  - name: tidy
    action: events.log
    inputs: { message: "{{ steps.late.outcome }} {{ steps.undo_note.outcome }}" }
  - action: events.log
    inputs: { message: "{{ steps.ghost.outcome }}" }
`,
    );
    expect(errors).toEqual([
      'x.yaml:8:24: step "late" runs later (steps[3], line 23): its output does not exist yet here in "steps.late.output.message"',
      'x.yaml:11:24: step "itself" is this step: its output exists only once it has run in "steps.itself.outcome"',
      'x.yaml:14:11: step "yes" runs later (steps[2].conditional.then[0], line 16): its output does not exist yet here in "steps.yes.outcome == \'ok\'"',
      'x.yaml:22:30: step "yes" (steps[2].conditional.then[0], line 16) is in the other branch of the conditional at steps[2]: it never runs in the same run as this one in "steps.yes.output.message"',
      'x.yaml:25:24: step "tidy" runs later (finally[0], line 31): its output does not exist yet here in "steps.tidy.outcome"',
      'x.yaml:29:24: step "tidy" runs later (finally[0], line 31): its output does not exist yet here in "steps.tidy.outcome"',
      'x.yaml:35:24: unknown step "ghost" in "steps.ghost.outcome"',
    ]);
  });

  it("a nested directive's steps are its own: the outer directive reads them through the directive step's output", () => {
    const s = setup();
    s.write('inner', `${head('inner', '[write:events]')}steps:\n  - name: deep\n    action: events.log\n    inputs: { message: deep }\n`);
    expect(
      validateText(
        s,
        `${head('outer', '[write:events]')}steps:
  - name: sub
    directive: inner
  - action: events.log
    inputs: { message: "{{ steps.sub.output.steps.deep.message }} {{ steps.deep.outcome }}" }
`,
      ),
    ).toEqual(['x.yaml:9:24: unknown step "deep" in "steps.deep.outcome"']);
  });
});

describe('at run time, the steps of the branch not taken are skipped', () => {
  it('a later step reads them as it reads a step whose if was false; the run shows them skipped', async () => {
    const s = setup();
    s.write(
      'branches',
      `${head('branches', '[write:events]')}inputs:\n  go: { type: boolean }\nsteps:
  - name: pick
    conditional:
      if: "{{ inputs.go }}"
      then:
        - name: yes
          action: events.log
          inputs: { message: yes }
      else:
        - name: no
          action: events.log
          inputs: { message: no }
        - name: deeper
          conditional:
            if: "{{ true }}"
            then:
              - name: deep
                action: events.log
                inputs: { message: deep }
  - name: after
    action: events.log
    inputs: { message: "yes={{ steps.yes.outcome }} no={{ steps.no.outcome }} deep={{ steps.deep.outcome }}" }
  - name: only_if_no
    if: "{{ steps.no.outcome == 'ok' }}"
    action: events.log
    inputs: { message: "no said {{ steps.no.output.message }}" }
`,
    );
    const run = await s.engine.run({ directive: 'branches', inputs: { go: true }, principal: 'cli:t', mode: 'execute' });
    expect(run.error).toBeNull();
    expect(run.status).toBe('succeeded');
    expect((run.steps as { path: string; name: string; outcome: string }[]).map((r) => `${r.path} ${r.name} ${r.outcome}`)).toEqual([
      'steps[0] pick ok',
      'steps[0].else[0] no skipped',
      'steps[0].else[1] deeper skipped',
      'steps[0].else[1].then[0] deep skipped',
      'steps[0].then[0] yes ok',
      'steps[1] after ok',
      'steps[2] only_if_no skipped',
    ]);
    expect(s.store.searchEvents({ kinds: ['directive'] }, 10).events.map((e) => e.message).reverse()).toEqual(['yes', 'yes=ok no=skipped deep=skipped']);

    const other = await s.engine.run({ directive: 'branches', inputs: { go: false }, principal: 'cli:t', mode: 'execute' });
    expect(other.error).toBeNull();
    expect(other.status).toBe('succeeded');
    expect(s.store.searchEvents({ kinds: ['directive'] }, 4).events.map((e) => e.message).reverse()).toEqual(['no', 'deep', 'yes=skipped no=ok deep=ok', 'no said no']);
  });

  it('a conditional whose condition fails under continue_on_error takes neither branch: both read as skipped', async () => {
    const s = setup();
    s.write(
      'broken',
      `${head('broken', '[write:events]')}steps:
  - name: first
    action: events.log
    inputs: { message: first }
  - name: pick
    continue_on_error: true
    conditional:
      if: "{{ steps.first.output.nope > 1 }}"
      then:
        - name: yes
          action: events.log
          inputs: { message: yes }
  - action: events.log
    inputs: { message: "pick={{ steps.pick.outcome }} yes={{ steps.yes.outcome }}" }
`,
    );
    const run = await s.engine.run({ directive: 'broken', principal: 'cli:t', mode: 'execute' });
    expect(run.error).toBeNull();
    expect(run.status).toBe('succeeded');
    expect((run.steps as { path: string; outcome: string }[]).map((r) => `${r.path} ${r.outcome}`)).toEqual(['steps[0] ok', 'steps[1] failed', 'steps[1].then[0] skipped', 'steps[2] ok']);
    expect(s.store.searchEvents({ kinds: ['directive'] }, 1).events[0]!.message).toBe('pick=failed yes=skipped');
  });
});

describe('validation: one mistake does not hide the others', () => {
  it('a schema error and the checks beyond the schema are reported together, each at its line', () => {
    const s = setup();
    const errors = validateText(
      s,
      `name: three
version: 1.0
description: test
permissions: [read:metrics]
steps:
  - name: a
    action: wiat
  - name: b
    action: settings.set
    inputs: { key: mcp.timeout_ms, value: 1 }
  - name: c
    action: events.log
    bogus: 1
    inputs: { message: "{{ steps.nowhere.output }}" }
  - action: wait
    inputs: { duration: "{{ steps.c.output }}" }
`,
    );
    expect(errors).toEqual([
      'x.yaml:2:10: version: Invalid input: expected string, received number',
      expect.stringMatching(/^x\.yaml:7:13: unknown action "wiat"; known: /),
      'x.yaml:9:13: permission "write:settings" is not declared in permissions (action "settings.set" needs it)',
      'x.yaml:13:5: steps[2]: unknown field "bogus"',
    ]);
  });

  it('what failed the schema is not blamed again: a misspelt permission or a bad input declaration', () => {
    const s = setup();
    expect(
      validateText(
        s,
        `name: p
version: 1.0.0
description: test
inputs:
  level: { type: strin }
permissions: [write:event]
steps:
  - action: events.log
    inputs: { message: "{{ inputs.level }}", kind: "{{ inputs.nokey }}" }
`,
      ),
    ).toEqual([
      'x.yaml:5:18: inputs.level.type: Invalid option: expected one of "string"|"number"|"integer"|"boolean"|"array"|"object"',
      expect.stringMatching(/^x\.yaml:6:15: permissions\[0\]: Invalid option: /),
      'x.yaml:9:52: No such key: nokey in "inputs.nokey"',
    ]);
  });

  it('reports at most 20, and says how many more there are', () => {
    const s = setup();
    const steps = Array.from({ length: 25 }, (_, i) => `  - action: nope${i}\n`).join('');
    const errors = validateText(s, `${head('many')}steps:\n${steps}`);
    expect(errors).toHaveLength(21);
    expect(errors[19]).toMatch(/^x\.yaml:25:13: unknown action "nope19"/);
    expect(errors[20]).toBe('x.yaml:26:13: and 5 more problems from here on, not shown; fix these first');
  });
});

describe('a nested directive holds its own target', () => {
  const inner = `${head('inner')}inputs:\n  component: { type: string }\ntarget: "{{ inputs.component }}"
steps:
  - name: raise
    action: settings.set
    inputs: { key: mcp.timeout_ms, component: "{{ inputs.component }}", value: 30000 }
finally:
  - action: events.log
    inputs: { message: "inner done on {{ inputs.component }}" }
`;
  const outer = (then: string) => `${head('outer')}inputs:\n  component: { type: string }\nsteps:
  - name: sub
    directive: inner
    inputs: { component: "{{ inputs.component }}" }
${then}`;

  it('from the nested step to the end of the outer run: another run of it on that target is refused, naming the outer run', async () => {
    const s = setup();
    s.write('inner', inner);
    s.write('outer', outer('  - action: wait\n    inputs: { duration: 400ms }\n'));
    const running = s.engine.run({ directive: 'outer', inputs: { component: 'svc' }, principal: 'cli:t', mode: 'execute', approve: true });
    const lock = await pollUntil(() => s.engine.runs.activeFor('inner', 'svc'), (row) => row !== null);
    const outerRun = s.engine.runs.list({ directive: 'outer' }, 1)[0]!;
    expect(lock).toMatchObject({ status: 'running', directive: 'inner', target: 'svc', inputs: { component: 'svc' } });
    expect(lock!.id.startsWith(`${outerRun.id}.`)).toBe(true);
    // the nested step is over (its setting is written) and the outer run still holds its target
    await pollUntil(() => readSetting(s.store, 'mcp.timeout_ms'), (v) => JSON.stringify(v) === '{"svc":30000}');
    await expect(s.engine.run({ directive: 'inner', inputs: { component: 'svc' }, principal: 'cli:t', mode: 'execute', approve: true })).rejects.toThrow(
      `target: inner is already running for target "svc" (run ${outerRun.id} (outer), which runs inner nested); one run per target at a time`,
    );
    const done = await running;
    expect(done.status).toBe('succeeded');
    expect(s.engine.runs.get(lock!.id)).toMatchObject({ status: 'succeeded', error: null });
    expect(s.engine.runs.activeFor('inner', 'svc')).toBeNull();
    const alone = await s.engine.run({ directive: 'inner', inputs: { component: 'svc' }, principal: 'cli:t', mode: 'execute', approve: true });
    expect(alone.status).toBe('succeeded');
  });

  it('a nested directive whose target another run holds fails its step, naming that run; nothing is changed', async () => {
    const s = setup();
    s.write('inner', inner);
    s.write('outer', outer(''));
    const held = await s.engine.run({ directive: 'inner', inputs: { component: 'svc' }, principal: 'cli:t', mode: 'execute' });
    expect(held.status).toBe('awaiting_approval');
    const run = await s.engine.run({ directive: 'outer', inputs: { component: 'svc' }, principal: 'cli:t', mode: 'execute', approve: true });
    expect(run.status).toBe('rolled_back');
    expect(run.error).toBe(
      `steps[0] (sub) failed: directive inner: already awaiting_approval for target "svc" (run ${held.id}); one run per directive and target at a time; changes rolled back`,
    );
    expect(readSetting(s.store, 'mcp.timeout_ms')).toEqual({});
    // another target is free
    const other = await s.engine.run({ directive: 'outer', inputs: { component: 'web' }, principal: 'cli:t', mode: 'execute', approve: true });
    expect(other.error).toBeNull();
    expect(other.status).toBe('succeeded');
  });

  it("the nested directive's finally runs when it ends, before the outer run's undo; its lock closes with the outer outcome", async () => {
    const s = setup();
    s.write('inner', inner);
    s.write('outer', outer('  - action: verify\n    inputs: { signal: metric, metric: none, component: x, below: 1 }\n'));
    const run = await s.engine.run({ directive: 'outer', inputs: { component: 'svc' }, principal: 'cli:t', mode: 'execute', approve: true });
    expect(run.status).toBe('rolled_back');
    expect((run.steps as { path: string; phase: string }[]).map((r) => `${r.phase} ${r.path}`)).toEqual([
      'steps inner>steps[0]',
      'finally inner>finally[0]',
      'steps steps[0]',
      'steps steps[1]',
      'undo undo',
    ]);
    expect(readSetting(s.store, 'mcp.timeout_ms')).toEqual({});
    const lock = s.engine.runs.list({ directive: 'inner' }, 5)[0]!;
    expect(lock).toMatchObject({ id: `${run.id}.1`, status: 'rolled_back' });
    expect(lock.error).toMatch(new RegExp(`^as part of run ${run.id}: steps\\[1\\] \\(step_steps_1\\) failed: not verified`));
  });

  it('a lock left by a stopped process is released by recovery, after the outer run is undone', async () => {
    const s = setup();
    s.write('inner', inner);
    s.write('outer', outer('  - action: wait\n    timeout: 2m\n    inputs: { duration: 60s }\n'));
    const running = s.engine.run({ directive: 'outer', inputs: { component: 'svc' }, principal: 'cli:t', mode: 'execute', approve: true });
    await pollUntil(() => readSetting(s.store, 'mcp.timeout_ms'), (v) => JSON.stringify(v) === '{"svc":30000}');
    // while its process runs it, nothing is taken over
    expect(await s.engine.recoverInterrupted()).toEqual([]);
    // as another host sees both rows: an owner it cannot check, silent for 31 minutes
    s.store.db.prepare("UPDATE directive_runs SET owner = 'other-host:1', updated_at = ? WHERE status = 'running'").run(Date.now() - 31 * 60_000);
    const recovered = await s.engine.recoverInterrupted();
    expect(recovered.map((r) => [r.directive, r.status])).toEqual([
      ['outer', 'rolled_back'],
      ['inner', 'rolled_back'],
    ]);
    expect(recovered[1]!.error).toMatch(new RegExp(`its changes are undone with run ${recovered[0]!.id}$`));
    expect(readSetting(s.store, 'mcp.timeout_ms')).toEqual({});
    expect(s.engine.runs.activeFor('inner', 'svc')).toBeNull();
    await interruptRuns('test over', { store: s.store });
    await running;
  });
});
