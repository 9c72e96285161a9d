/**
 * A nested directive (a `directive:` step) behaves as a run of it would: when it fails it leaves
 * nothing of itself applied (its changes undone, its rollback run), whatever the outer step's
 * continue_on_error says and however it fails (a step, the directive step's timeout); when it
 * succeeded, a later failure of the outer run undoes its changes with the rest. Its lock row is
 * listed as part of its outer run, and asking for it points there.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { interruptRuns } from '../src/directives/engine.js';
import { createMcpServer } from '../src/mcp/server.js';
import { readSetting, writeSetting } from '../src/settings.js';
import { Store } from '../src/store/store.js';
import { runCli } from './helpers/cli.js';
import { directiveSetup, policy, type DirectiveSetup } from './helpers/directives.js';
import { connectInProcess } from './helpers/mcp.js';
import { pollUntil } from './helpers/poll.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir('kiwi-directives-nested-');
const stores: Store[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

function setup(options: Parameters<typeof directiveSetup>[2] = {}): DirectiveSetup {
  return directiveSetup(tempDir(), (store) => stores.push(store), options);
}

const head = (name: string) => `name: ${name}\nversion: 1.0.0\ndescription: test\npermissions: [read:metrics, write:settings, write:events]\n`;
const NOT_VERIFIED = '    action: verify\n    inputs: { signal: metric, metric: none, component: x, below: 1 }\n';

/** raise sets mcp.timeout_ms for the component; `then` follows it; its rollback and finally log events. */
const inner = (then: string) => `${head('inner')}inputs:\n  component: { type: string }\ntarget: "{{ inputs.component }}"
steps:
  - name: raise
    action: settings.set
    inputs: { key: mcp.timeout_ms, component: "{{ inputs.component }}", value: 30000 }
${then}rollback:
  - action: events.log
    inputs: { message: "inner rollback on {{ inputs.component }}" }
finally:
  - action: events.log
    inputs: { message: "inner finally on {{ inputs.component }}" }
`;

/** sub runs inner (with `subExtra` on its step); `then` follows it; its rollback logs an event. */
const outer = (subExtra: string, then: string) => `${head('outer')}inputs:\n  component: { type: string }\nsteps:
  - name: sub
    directive: inner
    inputs: { component: "{{ inputs.component }}" }
${subExtra}${then}rollback:
  - action: events.log
    inputs: { message: outer rollback }
`;

const execute = (s: DirectiveSetup, directive = 'outer') =>
  s.engine.run({ directive, inputs: { component: 'svc' }, principal: 'cli:t', mode: 'execute', approve: true });
const trail = (run: { steps: unknown[] }) => (run.steps as { phase: string; path: string; outcome: string }[]).map((r) => `${r.phase} ${r.path} ${r.outcome}`);
const messages = (s: DirectiveSetup) =>
  s.store
    .searchEvents({ kinds: ['directive'] }, 50)
    .events.map((e) => e.message)
    .reverse();

describe('a nested directive that fails leaves nothing of itself applied', () => {
  it('under continue_on_error: its change is undone and its rollback runs, then the outer run goes on', async () => {
    const s = setup();
    s.write('inner', inner(`  - name: check\n${NOT_VERIFIED}`));
    s.write('outer', outer('    continue_on_error: true\n', '  - action: events.log\n    inputs: { message: outer goes on }\n'));
    const run = await execute(s);
    expect(run.status).toBe('succeeded');
    expect(readSetting(s.store, 'mcp.timeout_ms')).toEqual({});
    expect(trail(run)).toEqual([
      'steps inner>steps[0] ok',
      'steps inner>steps[1] failed',
      'undo inner>undo ok',
      'rollback inner>rollback[0] ok',
      'finally inner>finally[0] ok',
      'steps steps[0] failed',
      'steps steps[1] ok',
      'rollback rollback[0] skipped',
    ]);
    expect(messages(s)).toEqual(['inner rollback on svc', 'inner finally on svc', 'outer goes on']);
    const step = (run.steps as { path: string; error: string | null }[]).find((r) => r.path === 'steps[0]')!;
    expect(step.error).toMatch(/^inner>steps\[1\] \(check\) failed: not verified: .*; its changes rolled back$/);
    // its lock row says what became of it, not the outer run's success
    const lock = s.engine.runs.get(`${run.id}.1`)!;
    expect(lock).toMatchObject({ directive: 'inner', target: 'svc', status: 'rolled_back' });
    expect(lock.error).toMatch(new RegExp(`^as part of run ${run.id}: inner>steps\\[1\\] \\(check\\) failed: not verified: .*; changes rolled back$`));
    // the audit has the change and its undo, both under the outer run, before it finished
    const audit = s.store
      .listAudit(50)
      .filter((a) => a.target === run.id)
      .map((a) => a.action)
      .reverse();
    expect(audit).toEqual(['directive.start', 'directive.step', 'directive.undo', 'directive.step', 'directive.step', 'directive.step', 'directive.finish']);
  });

  it('without continue_on_error: the inner undoes and rolls back first, then the outer run does; each rollback runs once', async () => {
    const s = setup();
    s.write('inner', inner(`  - name: check\n${NOT_VERIFIED}`));
    s.write('outer', outer('', ''));
    const run = await execute(s);
    expect(run.status).toBe('rolled_back');
    expect(readSetting(s.store, 'mcp.timeout_ms')).toEqual({});
    expect(trail(run)).toEqual([
      'steps inner>steps[0] ok',
      'steps inner>steps[1] failed',
      'undo inner>undo ok',
      'rollback inner>rollback[0] ok',
      'finally inner>finally[0] ok',
      'steps steps[0] failed',
      'rollback rollback[0] ok',
    ]);
    expect(messages(s)).toEqual(['inner rollback on svc', 'inner finally on svc', 'outer rollback']);
  });

  it("when the directive step's timeout passes: its steps stop, its change is undone, and nothing is applied after the outer run ends", async () => {
    const s = setup();
    s.write('inner', inner('  - action: wait\n    inputs: { duration: 1500ms }\n  - name: late\n    action: settings.set\n    inputs: { key: detect.sensitivity, value: 0.9 }\n'));
    s.write('outer', outer('    timeout: 600ms\n    continue_on_error: true\n', ''));
    const run = await execute(s);
    expect(run.error).toBeNull();
    expect(run.status).toBe('succeeded');
    expect(trail(run)).toEqual([
      'steps inner>steps[0] ok',
      'steps inner>steps[1] failed',
      'steps inner>steps[2] skipped',
      'undo inner>undo ok',
      'rollback inner>rollback[0] ok',
      'finally inner>finally[0] ok',
      'steps steps[0] failed',
      'rollback rollback[0] skipped',
    ]);
    expect((run.steps as { error: string | null }[])[1]!.error).toBe('timed out after 600 ms');
    // the wait would have ended by now and the late change been made, had the nested directive gone on
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(readSetting(s.store, 'mcp.timeout_ms')).toEqual({});
    expect(readSetting(s.store, 'detect.sensitivity')).toBe(0.5);
    expect(s.engine.runs.get(run.id)!.steps).toHaveLength(8);
  });

  it('a change someone made since is left as it is: the nested directive, its lock and the outer run say its rollback is incomplete', async () => {
    const s = setup();
    s.write('inner', inner('  - action: verify\n    inputs: { signal: metric, metric: none, component: x, below: 1, delay: 400ms }\n'));
    s.write('outer', outer('    continue_on_error: true\n', ''));
    const running = execute(s);
    await pollUntil(() => readSetting(s.store, 'mcp.timeout_ms'), (v) => JSON.stringify(v) === '{"svc":30000}');
    writeSetting(s.store, 'mcp.timeout_ms', { svc: 500 }, 'cli:someone');
    const run = await running;
    expect(readSetting(s.store, 'mcp.timeout_ms')).toEqual({ svc: 500 });
    expect(trail(run)).toEqual([
      'steps inner>steps[0] ok',
      'steps inner>steps[1] failed',
      'undo inner>undo failed',
      'rollback inner>rollback[0] ok',
      'finally inner>finally[0] ok',
      'steps steps[0] failed',
      'rollback rollback[0] skipped',
    ]);
    const stepError = (run.steps as { error: string | null }[])[5]!.error!;
    expect(stepError).toMatch(/; its rollback incomplete: restore mcp\.timeout_ms\[svc\] to null: .+$/);
    expect(s.engine.runs.get(`${run.id}.1`)).toMatchObject({ status: 'failed', error: expect.stringMatching(/; rollback incomplete: restore mcp\.timeout_ms/) });
    // the run went on, but it did not undo all it applied: not a success, and the finish audit says the same
    expect(run.status).toBe('failed');
    expect(run.error).toBe(`steps[0] (sub) failed: ${stepError}`);
    const finish = s.store.listAudit(50).find((a) => a.target === run.id && a.action === 'directive.finish')!;
    expect(finish.details).toMatchObject({ status: 'failed', error: run.error });
  });

  it('without continue_on_error, a nested rollback that is incomplete fails the outer run rather than rolling it back', async () => {
    const s = setup();
    s.write('inner', inner('  - action: verify\n    inputs: { signal: metric, metric: none, component: x, below: 1, delay: 400ms }\n'));
    s.write('outer', outer('', ''));
    const running = execute(s);
    await pollUntil(() => readSetting(s.store, 'mcp.timeout_ms'), (v) => JSON.stringify(v) === '{"svc":30000}');
    writeSetting(s.store, 'mcp.timeout_ms', { svc: 500 }, 'cli:someone');
    const run = await running;
    expect(readSetting(s.store, 'mcp.timeout_ms')).toEqual({ svc: 500 });
    expect(run.status).toBe('failed');
    expect(run.error).toMatch(/^steps\[0\] \(sub\) failed: inner>steps\[1\] .*; its rollback incomplete: restore mcp\.timeout_ms\[svc\] to null: .+; other changes rolled back$/);
    expect(s.store.listAudit(50).find((a) => a.target === run.id && a.action === 'directive.finish')!.details).toMatchObject({ status: 'failed', error: run.error });
  });

  it('when the run is interrupted during it: it undoes and rolls back before the outer run does', async () => {
    const s = setup();
    s.write('inner', inner('  - action: wait\n    timeout: 2m\n    inputs: { duration: 60s }\n'));
    s.write('outer', outer('', ''));
    const running = execute(s);
    await pollUntil(() => readSetting(s.store, 'mcp.timeout_ms'), (v) => JSON.stringify(v) === '{"svc":30000}');
    await interruptRuns('test', { store: s.store });
    const run = await running;
    expect(run.status).toBe('rolled_back');
    expect(readSetting(s.store, 'mcp.timeout_ms')).toEqual({});
    expect(trail(run)).toEqual([
      'steps inner>steps[0] ok',
      'steps inner>steps[1] failed',
      'undo inner>undo ok',
      'rollback inner>rollback[0] ok',
      'finally inner>finally[0] ok',
      'steps steps[0] failed',
      'rollback rollback[0] ok',
    ]);
    expect(messages(s)).toEqual(['inner rollback on svc', 'inner finally on svc', 'outer rollback']);
    expect(s.engine.runs.get(`${run.id}.1`)).toMatchObject({ status: 'rolled_back', error: expect.stringMatching(/: interrupted: test; changes rolled back$/) });
  });

  it("one that succeeded is undone with the outer run when a later step fails; its lock closes with the outer outcome", async () => {
    const s = setup();
    s.write('inner', inner(''));
    s.write('outer', outer('', `  - name: check\n${NOT_VERIFIED}`));
    const run = await execute(s);
    expect(run.status).toBe('rolled_back');
    expect(readSetting(s.store, 'mcp.timeout_ms')).toEqual({});
    expect(trail(run)).toEqual([
      'steps inner>steps[0] ok',
      'rollback inner>rollback[0] skipped',
      'finally inner>finally[0] ok',
      'steps steps[0] ok',
      'steps steps[1] failed',
      'undo undo ok',
      'rollback rollback[0] ok',
    ]);
    // it did not fail: its own rollback is not run, the outer one is
    expect(messages(s)).toEqual(['inner finally on svc', 'outer rollback']);
    expect(s.engine.runs.get(`${run.id}.1`)).toMatchObject({ status: 'rolled_back', error: expect.stringMatching(new RegExp(`^as part of run ${run.id}: steps\\[1\\] \\(check\\) failed`)) });
  });
});

describe("a nested directive's finally", () => {
  it('that fails fails the outer run, as a failing finally of its own would, and undoes nothing', async () => {
    const s = setup();
    s.write('inner', inner('').replace('finally:\n', `finally:\n  - name: inner_cleanup\n${NOT_VERIFIED}`));
    s.write('outer', outer('', ''));
    const run = await execute(s);
    expect(run.status).toBe('failed');
    expect(run.error).toMatch(/^finally: inner>finally\[0\] \(inner_cleanup\) failed: not verified/);
    // the change stays, as a run whose finally step failed leaves its changes
    expect(readSetting(s.store, 'mcp.timeout_ms')).toEqual({ svc: 30000 });
    expect(messages(s)).toEqual(['inner finally on svc']);
  });
});

describe('a nested directive\'s lock row is shown as part of its outer run', () => {
  it('list_directive_runs and get_directive_run mark it with its parent and point there', async () => {
    const s = setup();
    s.write('inner', inner(''));
    s.write('outer', outer('', ''));
    const run = await execute(s);
    expect(run.status).toBe('succeeded');
    const lockId = `${run.id}.1`;
    const client = await connectInProcess(createMcpServer(s.store, null, { directivesDir: s.directives, scriptsDir: s.scripts }));
    try {
      const list = await client.callTool({ name: 'list_directive_runs', arguments: {} });
      const runs = (list.structuredContent as { runs: { id: string; directive: string; parent: string | null }[] }).runs;
      expect(runs.map((r) => [r.id, r.directive, r.parent])).toEqual(
        expect.arrayContaining([
          [run.id, 'outer', null],
          [lockId, 'inner', run.id],
        ]),
      );
      const text = (list.content as { text: string }[])[0]!.text;
      expect(text).toContain(`${lockId} inner execute succeeded target=svc (part of run ${run.id})`);
      expect(text).not.toContain(`${run.id} outer execute succeeded target=outer (part of`);

      const got = await client.callTool({ name: 'get_directive_run', arguments: { id: lockId } });
      expect(got.isError).toBeFalsy();
      expect(got.structuredContent).toMatchObject({ id: lockId, directive: 'inner', parent: run.id, status: 'succeeded' });
      expect((got.structuredContent as { next: string }).next).toBe(
        `part of run ${run.id} (outer), where its steps are recorded: get_directive_run {"id": "${run.id}"}`,
      );
      expect((got.content as { text: string }[])[0]!.text).toContain(`next: part of run ${run.id} (outer)`);
      const outerRun = await client.callTool({ name: 'get_directive_run', arguments: { id: run.id } });
      expect(outerRun.structuredContent).toMatchObject({ id: run.id, parent: null, next: null });
    } finally {
      await client.close();
    }
  });

  it("counts in its directive's rate limit: it acted on its target as a run of it would", async () => {
    const s = setup({ policy: policy({ rate_limits: { inner: { runs: 1, per: '1h' } } }) });
    s.write('inner', inner(''));
    s.write('outer', outer('', ''));
    expect((await execute(s)).status).toBe('succeeded');
    await expect(execute(s, 'inner')).rejects.toThrow('rate limit: inner ran 1 times in the last 3600 s; the policy allows 1');
  });

  it('`kiwi directive runs` says so, and `kiwi directive show` points to the outer run', async () => {
    const s = setup();
    s.write('inner', inner(''));
    s.write('outer', outer('', ''));
    const policyFile = join(s.dir, 'policy.yaml');
    writeFileSync(policyFile, 'grants:\n  "cli:*": [read:metrics, write:settings, write:events]\n');
    const env = { KIWI_DB: join(s.dir, 'kiwi.db'), KIWI_DIRECTIVES: s.directives, KIWI_SCRIPTS: s.scripts, KIWI_POLICY: policyFile, USER: 'alice' };
    const ran = await runCli(['directive', 'run', 'outer', '--input', 'component=svc', '--mode', 'execute', '--approve', '--json'], { env });
    expect(ran.code).toBe(0);
    const id = (JSON.parse(ran.stdout) as { id: string }).id;

    const runs = await runCli(['directive', 'runs'], { env });
    expect(runs.code).toBe(0);
    expect(runs.stdout).toMatch(new RegExp(`^\\S+ ${id}\\.1 inner execute succeeded target=svc by cli:alice \\(part of run ${id}\\)$`, 'm'));
    expect(runs.stdout).toMatch(new RegExp(`^\\S+ ${id} outer execute succeeded target=outer by cli:alice$`, 'm'));

    const shown = await runCli(['directive', 'show', `${id}.1`], { env });
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(`next: part of run ${id} (outer), where its steps are recorded: kiwi directive show ${id}`);
  });
});
