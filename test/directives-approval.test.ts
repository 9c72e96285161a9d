/**
 * A directive nested in another needs what it would need on its own: approval for what it may
 * change (its steps, its rollback, whether or not its inputs are known at plan time), a valid
 * definition, and room under its rate limit. And a plan's refusal never quotes a secret input.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { readSetting } from '../src/settings.js';
import { Store } from '../src/store/store.js';
import { directiveSetup, policy, type DirectiveSetup } from './helpers/directives.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir('kiwi-directives-approval-');
const stores: Store[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

/** Every permission, but a human must approve what changes something. */
const HUMAN_APPROVES = { approval: { self_approval: false } };

function setup(config: Record<string, unknown> = HUMAN_APPROVES): DirectiveSetup {
  return directiveSetup(tempDir(), (store) => stores.push(store), { policy: policy(config) });
}

const head = (name: string, permissions = '[read:metrics, write:settings, write:events]') =>
  `name: ${name}\nversion: 1.0.0\ndescription: test\npermissions: ${permissions}\n`;

/** Opens the circuit breaker of `comp`. */
const SETTER = `${head('setter')}inputs:\n  comp: { type: string }\ntarget: "{{ inputs.comp }}"
steps:
  - name: open
    action: settings.set
    inputs: { key: mcp.circuit_breaker, component: "{{ inputs.comp }}", value: open }
`;

const execute = (s: DirectiveSetup, directive: string, inputs: Record<string, unknown> = {}) =>
  s.engine.run({ directive, inputs, principal: 'cli:alice', mode: 'execute' });

describe('a nested directive needs the approval it would need on its own', () => {
  it('when its inputs come from an earlier step, so its steps cannot be planned', async () => {
    const s = setup();
    s.write('setter', SETTER);
    s.write(
      'deferred',
      `${head('deferred')}steps:
  - name: pick
    action: events.log
    inputs: { message: picking, attrs: { component: mcp-github } }
  - name: sub
    directive: setter
    inputs: { comp: "{{ steps.pick.output.id != '' ? 'mcp-github' : 'none' }}" }
`,
    );
    const run = await execute(s, 'deferred');
    expect(run.status).toBe('awaiting_approval');
    expect(readSetting(s.store, 'mcp.circuit_breaker')).toEqual({});
  });

  it('when only its rollback changes something, under continue_on_error', async () => {
    const s = setup();
    s.write(
      'rbsetter',
      `${head('rbsetter')}steps:
  - name: note
    action: events.log
    inputs: { message: trying }
  - name: check
    action: verify
    inputs: { signal: metric, metric: none, component: x, below: 1 }
rollback:
  - name: breaker
    action: settings.set
    inputs: { key: mcp.circuit_breaker, component: mcp-search, value: open }
`,
    );
    s.write('callrb', `${head('callrb')}steps:\n  - name: sub\n    directive: rbsetter\n    continue_on_error: true\n`);
    const alone = await execute(s, 'rbsetter');
    expect(alone.status).toBe('awaiting_approval');
    const nested = await execute(s, 'callrb');
    expect(nested.status).toBe('awaiting_approval');
    expect((nested.plan as { path: string }[]).map((p) => p.path)).toContain('steps[0]>rollback[0]');
    expect(readSetting(s.store, 'mcp.circuit_breaker')).toEqual({});
  });
});

it('a nested directive that is invalid on its own is refused, and nothing runs', async () => {
  const s = setup({});
  // verify needs read:metrics, which it does not declare
  s.write('undeclared', `${head('undeclared', '[write:settings]')}steps:
  - name: set
    action: settings.set
    inputs: { key: mcp.circuit_breaker, component: a, value: open }
  - name: check
    action: verify
    inputs: { signal: metric, metric: none, component: x, below: 1 }
`);
  s.write('wrapper', `${head('wrapper')}steps:\n  - name: sub\n    directive: undeclared\n`);
  const run = await s.engine.run({ directive: 'wrapper', inputs: {}, principal: 'cli:alice', mode: 'execute', approve: true });
  expect(run.status).toBe('failed');
  expect(run.error).toMatch(/directive undeclared is invalid: .*read:metrics/);
  expect(readSetting(s.store, 'mcp.circuit_breaker')).toEqual({});
});

it("wrapping a directive does not lift its rate limit", async () => {
  const s = setup({ rate_limits: { setter: { runs: 1, per: '1h' } } });
  s.write('setter', SETTER);
  s.write('outer', `${head('outer')}steps:\n  - name: sub\n    directive: setter\n    inputs: { comp: a }\n`);
  const run = (comp: string) => s.engine.run({ directive: 'outer', inputs: {}, principal: 'cli:alice', mode: 'execute', approve: true }).then((r) => [r.status, r.error, comp]);
  expect((await run('first'))[0]).toBe('succeeded');
  const second = await run('second');
  expect(second[0]).not.toBe('succeeded');
  expect(String(second[1])).toMatch(/rate limit: setter ran 1 times in the last 3600 s; the policy allows 1/);
});

it('a plan that refuses a secret input does not quote it in the run, its error or the audit trail', async () => {
  const s = setup({});
  s.write(
    'leaky',
    `${head('leaky')}inputs:\n  api_key: { type: string, secret: true }
steps:
  - name: check
    action: verify
    inputs: { signal: metric, metric: none, component: x, below: 1, at: "{{ inputs.api_key }}" }
`,
  );
  const run = await s.engine.run({ directive: 'leaky', inputs: { api_key: 'SuperSecretValue123' }, principal: 'cli:alice', mode: 'execute', approve: true });
  expect(run.status).toBe('failed');
  expect(run.error).toMatch(/^plan: steps\[0\]: /);
  const everything = JSON.stringify(run) + JSON.stringify(s.store.searchAudit({}, 100));
  expect(everything).not.toContain('SuperSecretValue123');
});
