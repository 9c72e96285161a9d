/**
 * A step that does not run reads the same however it came not to run: its `if` was false, its
 * branch was not taken, the run stopped before it (a step failed, the run was interrupted), or it
 * is a rollback step of a run that did not fail. It is recorded `skipped`, and a later step (a
 * rollback or finally step, typically) finds `outcome: 'skipped'` and a null output, never
 * "No such key".
 */
import { afterEach, describe, expect, it } from 'vitest';
import { interruptRuns } from '../src/directives/engine.js';
import { readSetting } from '../src/settings.js';
import { Store } from '../src/store/store.js';
import { directiveSetup, type DirectiveSetup } from './helpers/directives.js';
import { pollUntil } from './helpers/poll.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir('kiwi-directives-skipped-');
const stores: Store[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

function setup(): DirectiveSetup {
  return directiveSetup(tempDir(), (store) => stores.push(store));
}

const head = (name: string) => `name: ${name}\nversion: 1.0.0\ndescription: test\npermissions: [read:metrics, write:settings, write:events]\n`;
const NOT_VERIFIED = 'action: verify\n    inputs: { signal: metric, metric: none, component: x, below: 1 }';
const execute = (s: DirectiveSetup, directive: string) => s.engine.run({ directive, principal: 'cli:t', mode: 'execute', approve: true });
const trail = (run: { steps: unknown[] }) => (run.steps as { phase: string; path: string; name: string; outcome: string }[]).map((r) => `${r.phase} ${r.path} ${r.name} ${r.outcome}`);
const messages = (s: DirectiveSetup) =>
  s.store
    .searchEvents({ kinds: ['directive'] }, 50)
    .events.map((e) => e.message)
    .reverse();

/** Cleanup that reads main steps: `later` (and the conditional's `branch_step`) come after `gate`. */
const cleanup = `rollback:
  - name: undo_later
    if: "{{ steps.later.outcome == 'ok' }}"
    action: events.log
    inputs: { message: "later ran" }
  - action: events.log
    inputs: { message: "rollback: later {{ steps.later.outcome }}, output null {{ steps.later.output == null }}, branch {{ steps.branch_step.outcome }}" }
finally:
  - action: events.log
    inputs: { message: "finally: later {{ steps.later.outcome }}, undo_later {{ steps.undo_later.outcome }}" }
`;

describe('a main step the run never reached reads as skipped', () => {
  it('after a failure: rollback and finally steps read it (outcome skipped, output null) and test it', async () => {
    const s = setup();
    s.write(
      'd',
      `${head('d')}steps:
  - name: raise
    action: settings.set
    inputs: { key: retention.raw_days, value: 3 }
  - name: gate
    ${NOT_VERIFIED}
  - name: later
    action: events.log
    inputs: { message: later }
  - conditional:
      if: "{{ true }}"
      then:
        - name: branch_step
          action: events.log
          inputs: { message: branch }
${cleanup}`,
    );
    const run = await execute(s, 'd');
    expect(run.status).toBe('rolled_back');
    expect(run.error).toMatch(/^steps\[1\] \(gate\) failed: not verified: .*; changes rolled back$/);
    expect(trail(run)).toEqual([
      'steps steps[0] raise ok',
      'steps steps[1] gate failed',
      'steps steps[2] later skipped',
      'steps steps[3] step_steps_3 skipped',
      'steps steps[3].then[0] branch_step skipped',
      'undo undo restore retention.raw_days to 30 ok',
      'rollback rollback[0] undo_later skipped',
      'rollback rollback[1] step_rollback_1 ok',
      'finally finally[0] step_finally_0 ok',
    ]);
    expect(messages(s)).toEqual(['rollback: later skipped, output null true, branch skipped', 'finally: later skipped, undo_later skipped']);
    expect(s.engine.runs.get(run.id)!.steps).toEqual(run.steps);
  });

  it('after an interruption: the step under way fails, the ones after it are skipped, and finally reads them', async () => {
    const s = setup();
    s.write(
      'd',
      `${head('d')}steps:
  - name: raise
    action: settings.set
    inputs: { key: retention.raw_days, value: 3 }
  - name: settle
    action: wait
    inputs: { duration: 60s }
    timeout: 2m
  - name: later
    action: events.log
    inputs: { message: later }
  - conditional:
      if: "{{ true }}"
      then:
        - name: branch_step
          action: events.log
          inputs: { message: branch }
${cleanup}`,
    );
    const running = execute(s, 'd');
    await pollUntil(() => readSetting(s.store, 'retention.raw_days'), (days) => days === 3);
    await interruptRuns('test', { store: s.store });
    const run = await running;
    expect(run.status).toBe('rolled_back');
    expect(trail(run).filter((t) => t.startsWith('steps'))).toEqual([
      'steps steps[0] raise ok',
      'steps steps[1] settle failed',
      'steps steps[2] later skipped',
      'steps steps[3] step_steps_3 skipped',
      'steps steps[3].then[0] branch_step skipped',
    ]);
    expect(messages(s)).toEqual(['rollback: later skipped, output null true, branch skipped', 'finally: later skipped, undo_later skipped']);
  });

  it('inside a nested directive: its own rollback and finally read its unreached steps as skipped', async () => {
    const s = setup();
    s.write(
      'inner',
      `${head('inner')}steps:
  - name: gate
    ${NOT_VERIFIED}
  - name: later
    action: events.log
    inputs: { message: later }
  - conditional:
      if: "{{ true }}"
      then:
        - name: branch_step
          action: events.log
          inputs: { message: branch }
${cleanup}`,
    );
    s.write('outer', `${head('outer')}steps:\n  - name: sub\n    directive: inner\n    continue_on_error: true\n`);
    const run = await execute(s, 'outer');
    expect(run.status).toBe('succeeded');
    expect(trail(run).filter((t) => t.includes('inner>steps'))).toEqual([
      'steps inner>steps[0] gate failed',
      'steps inner>steps[1] later skipped',
      'steps inner>steps[2] step_inner_steps_2 skipped',
      'steps inner>steps[2].then[0] branch_step skipped',
    ]);
    expect(messages(s)).toEqual(['rollback: later skipped, output null true, branch skipped', 'finally: later skipped, undo_later skipped']);
  });
});

describe('the rollback steps of a run that did not fail read as skipped', () => {
  it('a finally step reads a rollback step of a run that succeeded', async () => {
    const s = setup();
    s.write(
      'd',
      `${head('d')}steps:
  - name: later
    action: events.log
    inputs: { message: later }
rollback:
  - name: undo_later
    action: events.log
    inputs: { message: "undo later" }
finally:
  - action: events.log
    inputs: { message: "finally: later {{ steps.later.outcome }}, undo_later {{ steps.undo_later.outcome }}, output null {{ steps.undo_later.output == null }}" }
`,
    );
    const run = await execute(s, 'd');
    expect(run.status).toBe('succeeded');
    expect(run.error).toBeNull();
    expect(trail(run)).toEqual([
      'steps steps[0] later ok',
      'rollback rollback[0] undo_later skipped',
      'finally finally[0] step_finally_0 ok',
    ]);
    expect(messages(s)).toEqual(['later', 'finally: later ok, undo_later skipped, output null true']);
  });
});
