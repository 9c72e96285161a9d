import { createServer, type IncomingMessage, type Server } from 'node:http';
import { chmodSync, existsSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DirectiveEngine } from '../src/directives/engine.js';
import { DirectiveExpressions } from '../src/directives/expressions.js';
import { DirectiveLibrary } from '../src/directives/library.js';
import { formatDiagnostic, loadDirectiveText } from '../src/directives/load.js';
import { Policy } from '../src/directives/policy.js';
import type { ToolCaller } from '../src/directives/registry.js';
import { validateDirective } from '../src/directives/validate.js';
import { readSetting } from '../src/settings.js';
import { Store } from '../src/store/store.js';
import { directiveSetup, policy, type DirectiveSetup } from './helpers/directives.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir('kiwi-directives-');
const stores: Store[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

type Setup = DirectiveSetup;

function setup(options: Parameters<typeof directiveSetup>[2] = {}): Setup {
  return directiveSetup(tempDir(), (store) => stores.push(store), options);
}

function validate(s: Setup, name: string): string[] {
  const entry = new DirectiveLibrary(s.directives).get(name)!;
  return validateDirective(entry.loaded, { library: new DirectiveLibrary(s.directives), scriptsDir: s.scripts, tools: [] }, name).map(formatDiagnostic);
}

const head = (name: string, permissions = '[read:metrics, write:settings, write:events, execute:script, write:anomalies, net:webhook]') =>
  `name: ${name}\nversion: 1.0.0\ndescription: test\npermissions: ${permissions}\n`;

const permissionDenials = (store: Store) =>
  store.searchEvents({ kinds: ['permission'] }, 100).events.filter((e) => e.attrs.decision === 'deny');

describe('loading: YAML and schema errors carry file:line:column', () => {
  it('places schema errors on the offending node', () => {
    const r = loadDirectiveText('name: a\nversion: 1.0\ndescription: d\nsteps:\n  - action: wait\n    bogus: 1\n  - script: a.mjs\n    action: wait\n', 'd.yaml');
    expect(r.errors.map(formatDiagnostic)).toEqual([
      'd.yaml:2:10: version: Invalid input: expected string, received number',
      'd.yaml:6:5: steps[0]: unknown field "bogus"',
      'd.yaml:7:5: steps[1]: a step has exactly one kind; this one has action and script',
    ]);
  });

  it('reports YAML syntax errors with their position', () => {
    const r = loadDirectiveText('name: a\nsteps: [\n  - x\n', 'bad.yaml');
    expect(r.directive).toBeNull();
    expect(formatDiagnostic(r.errors[0]!)).toMatch(/^bad\.yaml:\d+:\d+: /);
  });

  it('refuses an alias bomb, a multi-megabyte file and deep nesting, each with a clear error', () => {
    const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]', ...'bcdefgh'.split('').map((c, i) => `${c}: &${c} [${Array(9).fill(`*${'abcdefgh'[i]}`).join(',')}]`), 'name: z'].join('\n');
    expect(loadDirectiveText(bomb, 'bomb.yaml').errors[0]!.message).toMatch(/alias/i);
    const big = `name: a\ndescription: "${'x'.repeat(3 * 1024 * 1024)}"\n`;
    expect(loadDirectiveText(big, 'big.yaml').errors.map(formatDiagnostic)).toEqual(['big.yaml:1:1: file is 3.0 MB; a directive may be at most 256 KiB']);
    const deep = `name: a\nx: ${'['.repeat(200)}${']'.repeat(200)}\n`;
    expect(loadDirectiveText(deep, 'deep.yaml').errors[0]!.message).toMatch(/nesting deeper than 32/);
  });

  it('refuses a multi-megabyte directive file on disk without reading it, and nothing runs', async () => {
    const s = setup();
    s.write('huge', `${head('huge')}steps:\n  - action: events.log\n    inputs: { message: "${'x'.repeat(4 * 1024 * 1024)}" }\n`);
    await expect(s.engine.run({ directive: 'huge', principal: 'cli:t', mode: 'execute' })).rejects.toThrow(/huge\.yaml:1:1: file is 4\.0 MB; a directive may be at most 256 KiB/);
    expect(s.store.searchEvents({}, 5).events).toEqual([]);
  });

  it('refuses __proto__ and constructor keys in YAML before building any value', () => {
    const r = loadDirectiveText(`${head('p')}steps:\n  - action: events.log\n    inputs:\n      message: hi\n      attrs:\n        __proto__: { polluted: true }\n        constructor: { prototype: { polluted: true } }\n`, 'p.yaml');
    expect(r.errors.map(formatDiagnostic)).toEqual([
      'p.yaml:10:9: key "__proto__" is not allowed (it reaches the object prototype)',
      'p.yaml:11:9: key "constructor" is not allowed (it reaches the object prototype)',
      'p.yaml:11:24: key "prototype" is not allowed (it reaches the object prototype)',
    ]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('validation', () => {
  it('finds unknown references, undeclared permissions, bad expressions and script escapes, each at its line', () => {
    const s = setup();
    s.script('ok.mjs', 'process.stdout.write("{}")');
    writeFileSync(join(s.dir, 'outside.mjs'), 'process.stdout.write("{}")');
    symlinkSync(join(s.dir, 'outside.mjs'), join(s.scripts, 'link.mjs'));
    s.write(
      'v',
      `name: v
version: 1.0.0
description: test
inputs:
  kind: { type: string, enum: [a, b] }
permissions: [read:metrics]
steps:
  - action: no.such.action
  - action: settings.set
    inputs: { key: retention.raw_days, value: 7 }
  - script: ../outside.mjs
  - script: /etc/passwd
  - script: link.mjs
  - tool: nope
  - directive: missing
  - action: wait
    if: "yes {{ inputs.kind == 'a' }}"
    inputs: { duration: 1s }
  - action: wait
    if: "{{ inputs.nokey == 'a' }}"
    inputs: { duration: 1s }
  - action: wait
    if: "{{ inputs.kind }}"
    inputs: { duration: 1s }
  - action: wait
    inputs: { duration: "{{ steps.ghost.output }}" }
`,
    );
    const errors = validate(s, 'v').map((e) => e.replace(s.directives, 'D').replace(s.scripts, 'S').replace(s.dir, 'T'));
    expect(errors).toEqual([
      expect.stringMatching(/^D\/v\.yaml:8:13: unknown action "no\.such\.action"/),
      'D/v.yaml:9:13: permission "write:settings" is not declared in permissions (action "settings.set" needs it)',
      'D/v.yaml:11:13: script "../outside.mjs" climbs out with ".."; name a file inside scripts/',
      'D/v.yaml:11:13: permission "execute:script" is not declared in permissions (script "../outside.mjs" needs it)',
      'D/v.yaml:12:13: script "/etc/passwd" is an absolute path; name a file inside scripts/',
      'D/v.yaml:12:13: permission "execute:script" is not declared in permissions (script "/etc/passwd" needs it)',
      expect.stringMatching(/^D\/v\.yaml:13:13: script "link\.mjs" resolves to .*outside\.mjs, outside .* \(a symlink escape\)$/),
      'D/v.yaml:13:13: permission "execute:script" is not declared in permissions (script "link.mjs" needs it)',
      'D/v.yaml:14:11: unknown tool "nope"; known: (none)',
      expect.stringMatching(/^D\/v\.yaml:15:16: unknown directive "missing"/),
      'D/v.yaml:17:9: a condition must be exactly one "{{ expression }}" with nothing outside the braces, got "yes {{ inputs.kind == \'a\' }}"',
      'D/v.yaml:20:9: No such key: nokey in "inputs.nokey == \'a\'"',
      'D/v.yaml:23:9: a condition must yield a boolean; "inputs.kind" yields string',
      'D/v.yaml:26:25: unknown step "ghost" in "steps.ghost.output"',
    ]);
  });

  it('refuses directive cycles, direct and indirect', () => {
    const s = setup();
    s.write('a', `${head('a')}steps:\n  - directive: b\n`);
    s.write('b', `${head('b')}steps:\n  - directive: a\n`);
    s.write('self', `${head('self')}steps:\n  - directive: self\n`);
    expect(validate(s, 'a')).toEqual([expect.stringMatching(/a\.yaml:6:16: directive cycle: a -> b -> a$/)]);
    expect(validate(s, 'self')).toEqual([expect.stringMatching(/self\.yaml:6:16: directive cycle: self -> self$/)]);
  });
});

describe('expressions', () => {
  const e = new DirectiveExpressions({ x: { type: 'string' }, n: { type: 'integer' } });
  const ctx = (x: string) => ({ inputs: { x, n: 3 }, steps: {}, run: { id: 'r', directive: 'd', mode: 'execute' } });

  it('treats substituted values as data: an input holding an expression is never evaluated', () => {
    const injected = "{{ inputs.n == 3 }}' || true || '";
    expect(e.condition("{{ inputs.x == 'safe' }}", ctx(injected))).toBe(false);
    expect(e.render({ message: 'got {{ inputs.x }}' }, ctx(injected))).toEqual({ message: `got ${injected}` });
    expect(e.render('{{ inputs.x }}', ctx('{{ inputs.n + 1 }}'))).toBe('{{ inputs.n + 1 }}');
  });

  it('never reaches the prototype and never makes an error silently true', () => {
    expect(() => e.evaluate('inputs.__proto__', ctx('a'))).toThrow(/No such key: __proto__/);
    expect(() => e.evaluate("inputs['constructor']", ctx('a'))).toThrow(/No such key: constructor/);
    expect(() => e.condition('{{ inputs.n }}', ctx('a'))).toThrow(/not a boolean/);
    expect(() => e.condition('{{ inputs.x == 1 }}', ctx('a'))).toThrow(/no such overload/);
    expect(() => e.condition('{{ nothing }}', ctx('a'))).toThrow(/Unknown variable: nothing/);
    expect(e.check("{{ inputs.x.matches('(a+)+$') }}", { stepNames: new Set(), inForeach: false }, true)[0]).toMatch(/matches\(\) is not allowed/);
  });
});

describe('plan and execute', () => {
  const healing = (verifyBelow: number) => `${head('heal')}inputs:
  component: { type: string }
target: "{{ inputs.component }}"
steps:
  - name: raise
    action: settings.set
    inputs: { key: mcp.timeout_ms, component: "{{ inputs.component }}", value: 30000 }
  - name: retention
    action: settings.set
    inputs: { key: retention.raw_days, value: 7 }
  - name: check
    action: verify
    inputs: { signal: metric, metric: cpu, component: "{{ inputs.component }}", window: 1h, below: ${verifyBelow} }
rollback:
  - action: events.log
    inputs: { message: "rolled back {{ inputs.component }}" }
finally:
  - action: events.log
    inputs: { message: "finished {{ inputs.component }}", kind: log }
`;

  function withCpu(s: Setup, value: number) {
    s.store.writeRecords([{ type: 'metric', ts: Date.now() - 60_000, name: 'cpu', component: 'svc', value, labels: {} }]);
  }

  it('plan lists exactly what would run and changes nothing', async () => {
    const s = setup();
    withCpu(s, 0.9);
    s.write('heal', healing(0.5));
    const before = s.store.listAudit(1000).length;
    const run = await s.engine.run({ directive: 'heal', inputs: { component: 'svc' }, principal: 'cli:t' });
    expect(run.status).toBe('planned');
    const plan = run.plan as { path: string; ref: string; runs: string; description: string | null; destructive: boolean; reversible: boolean }[];
    expect(plan.map((p) => [p.path, p.ref, p.runs])).toEqual([
      ['steps[0]', 'settings.set', 'yes'],
      ['steps[1]', 'settings.set', 'yes'],
      ['steps[2]', 'verify', 'yes'],
      ['rollback[0]', 'events.log', 'at run time'],
      ['finally[0]', 'events.log', 'yes'],
    ]);
    expect(plan[0]!.description).toBe('set mcp.timeout_ms[svc]: null -> 30000');
    expect(plan[0]!.destructive && plan[0]!.reversible).toBe(true);
    expect(readSetting(s.store, 'mcp.timeout_ms')).toEqual({});
    expect(s.store.searchEvents({}, 10).events).toEqual([]);
    expect(s.store.listAudit(1000).length).toBe(before + 1); // the plan itself is audited
  });

  it('a failing step undoes the applied changes in reverse, then runs rollback and finally', async () => {
    const s = setup();
    withCpu(s, 0.9);
    s.store.changeSetting('retention.raw_days', 20, 'cli:t');
    s.write('heal', healing(0.5));
    const run = await s.engine.run({ directive: 'heal', inputs: { component: 'svc' }, principal: 'cli:t', mode: 'execute', approve: true });
    expect(run.status).toBe('rolled_back');
    expect(run.error).toMatch(/steps\[2\] \(check\) failed: not healed: avg cpu of svc is 0\.9, not below 0\.5; changes rolled back/);
    const steps = run.steps as { path: string; phase: string; ref: string; outcome: string }[];
    expect(steps.map((r) => [r.phase, r.ref, r.outcome])).toEqual([
      ['steps', 'settings.set', 'ok'],
      ['steps', 'settings.set', 'ok'],
      ['steps', 'verify', 'failed'],
      ['undo', 'settings.restore', 'ok'],
      ['undo', 'settings.restore', 'ok'],
      ['rollback', 'events.log', 'ok'],
      ['finally', 'events.log', 'ok'],
    ]);
    expect(readSetting(s.store, 'mcp.timeout_ms')).toEqual({});
    expect(readSetting(s.store, 'retention.raw_days')).toBe(20);
    expect(s.store.searchEvents({ text: 'rolled back svc' }, 5).events).toHaveLength(1);
    expect(s.store.listAudit(100).map((a) => a.action)).toEqual(expect.arrayContaining(['directive.start', 'directive.step', 'directive.undo', 'directive.finish']));
  });

  it('a healed check keeps the changes', async () => {
    const s = setup();
    withCpu(s, 0.2);
    s.write('heal', healing(0.5));
    const run = await s.engine.run({ directive: 'heal', inputs: { component: 'svc' }, principal: 'cli:t', mode: 'execute', approve: true });
    expect(run.status).toBe('succeeded');
    expect(readSetting(s.store, 'mcp.timeout_ms')).toEqual({ svc: 30000 });
    expect(readSetting(s.store, 'retention.raw_days')).toBe(7);
    expect(s.store.settingHistory('mcp.timeout_ms')[0]!.actor).toBe('cli:t');
  });

  it('steps read earlier outputs; foreach, retries and continue_on_error behave', async () => {
    const s = setup();
    s.script('flaky.mjs', `import { existsSync, writeFileSync } from 'node:fs';
const marker = process.env.KIWI_ACTIONS_DIR + '.flaky';
if (!existsSync(marker)) { writeFileSync(marker, '1'); process.exit(1); }
process.stdout.write(JSON.stringify({ items: ['a', 'b', 'c'] }));`);
    s.write(
      'flow',
      `${head('flow')}steps:
  - name: list
    script: flaky.mjs
    retries: 1
  - name: each
    foreach: "{{ steps.list.output.items }}"
    action: events.log
    inputs: { message: "item {{ index }} is {{ item }}" }
  - name: broken
    action: anomaly.update
    continue_on_error: true
    inputs: { id: no-such-anomaly }
  - action: events.log
    if: "{{ steps.broken.outcome == 'failed' && size(steps.each.output) == 3 }}"
    inputs: { message: "went on after {{ steps.broken.outcome }}" }
`,
    );
    const run = await s.engine.run({ directive: 'flow', principal: 'cli:t', mode: 'execute', approve: true });
    expect(run.status).toBe('succeeded');
    const steps = run.steps as { name: string; outcome: string; attempts: number; item_index: number | null }[];
    expect(steps[0]).toMatchObject({ name: 'list', outcome: 'ok', attempts: 2 });
    expect(steps.filter((r) => r.name === 'each').map((r) => r.item_index)).toEqual([0, 1, 2]);
    expect(s.store.searchEvents({ text: 'item 1 is b' }, 5).events).toHaveLength(1);
    expect(s.store.searchEvents({ text: 'went on after failed' }, 5).events).toHaveLength(1);
  });
});

describe('scripts saved with Windows line endings', () => {
  it('are reported at validation, not as a file that does not exist at run time', () => {
    const s = setup();
    chmodSync(s.script('crlf.sh', '#!/bin/sh\r\necho "{}"\r\n'), 0o755);
    s.write('c', `${head('c', '[execute:script]')}steps:\n  - script: crlf.sh\n`);
    expect(validate(s, 'c').map((e) => e.replace(s.directives, 'D'))).toEqual([
      'D/c.yaml:6:13: script "crlf.sh" has Windows line endings (CRLF): its #! line names "/bin/sh\\r"; save it with LF endings',
    ]);
  });
});

describe('permissions, approval, locks, idempotency and rate limits', () => {
  const destructive = `${head('d')}inputs:\n  component: { type: string, default: svc }\ntarget: "{{ inputs.component }}"\nsteps:\n  - action: settings.set\n    inputs: { key: retention.raw_days, value: 9 }\n`;

  it('the default policy grants read-only: a write is denied, stored as a permission event, and nothing changes', async () => {
    const s = setup({ policy: Policy.readOnly() });
    s.write('d', destructive);
    // the plan already says so, rather than inviting an execute that is denied
    const plan = await s.engine.run({ directive: 'd', principal: 'agent:claude', mode: 'plan' });
    expect(plan.next).toMatch(/^execute would be denied: write:settings \(steps\[0\] settings.set\) not granted to agent:claude by the policy .*; ask an operator to grant it$/);
    const run = await s.engine.run({ directive: 'd', principal: 'agent:claude', mode: 'execute' });
    expect(run.status).toBe('denied');
    expect(run.error).toMatch(/write:settings .* not granted to agent:claude/);
    const denials = permissionDenials(s.store);
    expect(denials).toHaveLength(1);
    expect(denials[0]).toMatchObject({ kind: 'permission', level: 'warn', attrs: { decision: 'deny', principal: 'agent:claude', tool: 'settings.set', permission: 'write:settings' } });
    expect(readSetting(s.store, 'retention.raw_days')).toBe(30);
  });

  it('an agent cannot approve its own run unless the policy lets agents approve', async () => {
    const s = setup();
    s.write('d', destructive);
    const waiting = await s.engine.run({ directive: 'd', principal: 'agent:claude', mode: 'execute', approve: true });
    expect(waiting.status).toBe('awaiting_approval');
    expect(waiting.next).toMatch(/kiwi directive approve/);
    expect(readSetting(s.store, 'retention.raw_days')).toBe(30);
    await expect(s.engine.approve(waiting.id, 'agent:claude')).rejects.toThrow(/does not let agents approve/);
    const done = await s.engine.approve(waiting.id, 'cli:alice');
    expect(done).toMatchObject({ status: 'succeeded', approved_by: 'cli:alice', requested_by: 'agent:claude' });
    expect(readSetting(s.store, 'retention.raw_days')).toBe(9);

    const lenient = setup({ policy: policy({ approval: { agents_may_approve: true, self_approval: true } }) });
    lenient.write('d', destructive);
    const run = await lenient.engine.run({ directive: 'd', principal: 'agent:claude', mode: 'execute', approve: true });
    expect(run).toMatchObject({ status: 'succeeded', approved_by: 'agent:claude' });
  });

  it('approving under a policy that would deny the steps is refused, and the run keeps waiting', async () => {
    const s = setup();
    s.write('d', destructive);
    const waiting = await s.engine.run({ directive: 'd', principal: 'agent:claude', mode: 'execute' });
    expect(waiting.status).toBe('awaiting_approval');
    // the same store and directives, approved from a shell that was given no policy
    const bare = new DirectiveEngine({
      store: s.store,
      library: new DirectiveLibrary(s.directives),
      scriptsDir: s.scripts,
      policy: Policy.readOnly(),
      tools: null,
      actionsDir: join(s.dir, 'actions'),
    });
    await expect(bare.approve(waiting.id, 'cli:alice')).rejects.toThrow(
      /policy in force here \(.+\) does not grant agent:claude write:settings \(steps\[0\] settings\.set\); approve under the policy .*--policy FILE or KIWI_POLICY/,
    );
    expect(s.engine.getRun(waiting.id)!.status).toBe('awaiting_approval');
    expect(readSetting(s.store, 'retention.raw_days')).toBe(30);
    expect(s.store.listAudit(50).map((a) => a.action)).toContain('directive.approval_refused');
    const done = await s.engine.approve(waiting.id, 'cli:alice');
    expect(done).toMatchObject({ status: 'succeeded', approved_by: 'cli:alice' });
    expect(readSetting(s.store, 'retention.raw_days')).toBe(9);
  });

  it('self-approval is refused where the policy forbids it; reject and expiry deny by default', async () => {
    const s = setup({ policy: policy({ approval: { self_approval: false, ttl: 50 } }) });
    s.write('d', destructive);
    const first = await s.engine.run({ directive: 'd', principal: 'cli:bob', mode: 'execute', inputs: { component: 'a' } });
    await expect(s.engine.approve(first.id, 'cli:bob')).rejects.toThrow(/forbids approving one's own run/);
    expect(s.engine.reject(first.id, 'cli:alice', 'not now').status).toBe('rejected');
    const second = await s.engine.run({ directive: 'd', principal: 'cli:bob', mode: 'execute', inputs: { component: 'b' } });
    const deadline = Date.now() + 5000;
    while (Date.now() <= second.expires_at! && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await expect(s.engine.approve(second.id, 'cli:alice')).rejects.toThrow(/approval expired/);
    expect(s.engine.getRun(second.id)!.status).toBe('expired');
    expect(readSetting(s.store, 'retention.raw_days')).toBe(30);
  });

  it('one run per directive and target; idempotency keys replay; rate limits refuse', async () => {
    const s = setup({ policy: policy({ rate_limits: { d: { runs: 3, per: '1h' } } }) });
    s.write('d', destructive);
    const held = await s.engine.run({ directive: 'd', principal: 'cli:bob', mode: 'execute', inputs: { component: 'x' } });
    expect(held.status).toBe('awaiting_approval');
    await expect(s.engine.run({ directive: 'd', principal: 'cli:bob', mode: 'execute', inputs: { component: 'x' } })).rejects.toThrow(
      new RegExp(`already awaiting_approval for target "x" \\(run ${held.id}\\)`),
    );
    const other = await s.engine.run({ directive: 'd', principal: 'cli:bob', mode: 'execute', inputs: { component: 'y' }, idempotencyKey: 'k1' });
    const again = await s.engine.run({ directive: 'd', principal: 'cli:bob', mode: 'execute', inputs: { component: 'y' }, idempotencyKey: 'k1' });
    expect(again).toMatchObject({ id: other.id, replayed: true });
    // the same key with other inputs is a mistake to report, not the earlier run to hand back
    await expect(s.engine.run({ directive: 'd', principal: 'cli:bob', mode: 'execute', inputs: { component: 'q' }, idempotencyKey: 'k1' })).rejects.toThrow(
      new RegExp(`idempotency_key: "k1" was used for run ${other.id} \\(execute, inputs \\{"component":"y"\\}\\); this request differs`),
    );
    // inputs equal but for the order of an object's keys are the same request
    s.write('o', `${head('o', '[write:events]')}inputs:\n  labels: { type: object }\nsteps:\n  - action: events.log\n    inputs: { message: "{{ inputs.labels.a }}" }\n`);
    const first = await s.engine.run({ directive: 'o', principal: 'cli:bob', mode: 'execute', inputs: { labels: { a: '1', b: '2' } }, idempotencyKey: 'k2' });
    const reordered = await s.engine.run({ directive: 'o', principal: 'cli:bob', mode: 'execute', inputs: { labels: { b: '2', a: '1' } }, idempotencyKey: 'k2' });
    expect(reordered).toMatchObject({ id: first.id, replayed: true });
    await expect(s.engine.run({ directive: 'o', principal: 'cli:bob', mode: 'execute', inputs: { labels: { a: '1', b: '3' } }, idempotencyKey: 'k2' })).rejects.toThrow(/this request differs/);
    await s.engine.run({ directive: 'd', principal: 'cli:bob', mode: 'execute', inputs: { component: 'z' } });
    await expect(s.engine.run({ directive: 'd', principal: 'cli:bob', mode: 'execute', inputs: { component: 'w' } })).rejects.toThrow(/rate limit: d ran 3 times/);
  });

  it('inputs with prototype keys, unknown names or wrong types are refused before anything runs', async () => {
    const s = setup();
    s.write('d', destructive);
    const polluted = JSON.parse('{"component":"a","__proto__":{"polluted":true}}') as Record<string, unknown>;
    await expect(s.engine.run({ directive: 'd', principal: 'cli:t', inputs: polluted })).rejects.toThrow(/inputs: key "__proto__" is not allowed/);
    await expect(s.engine.run({ directive: 'd', principal: 'cli:t', inputs: { constructor: 'x' } })).rejects.toThrow(/key "constructor" is not allowed/);
    await expect(s.engine.run({ directive: 'd', principal: 'cli:t', inputs: { component: 5 } })).rejects.toThrow(/inputs\.component: expected string, got number/);
    await expect(s.engine.run({ directive: 'd', principal: 'cli:t', inputs: { other: 1 } })).rejects.toThrow(/inputs\.other: d has no such input/);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(s.engine.runs.list({}, 10)).toEqual([]);
  });

  it('secret inputs are masked in the run, its steps and the audit trail', async () => {
    const s = setup();
    s.write(
      'sec',
      `${head('sec')}inputs:\n  token: { type: string, secret: true }\nsteps:\n  - action: events.log\n    inputs: { message: "using {{ inputs.token }}" }\n`,
    );
    const run = await s.engine.run({ directive: 'sec', principal: 'cli:t', mode: 'execute', inputs: { token: 's3cr3t-value' } });
    expect(run.status).toBe('succeeded');
    const stored = JSON.stringify(s.engine.getRun(run.id)) + JSON.stringify(s.store.listAudit(100));
    expect(stored).not.toContain('s3cr3t-value');
    expect(stored).toContain('using ***');
  });
});

describe('scripts are contained', () => {
  it('shell metacharacters in inputs are data: no shell runs them', async () => {
    const s = setup();
    s.script('echo.mjs', 'let t="";process.stdin.on("data",d=>t+=d).on("end",()=>process.stdout.write(JSON.stringify({got: JSON.parse(t), env: Object.keys(process.env).sort()})))');
    s.write('sh', `${head('sh')}inputs:\n  arg: { type: string }\nsteps:\n  - name: echo\n    script: echo.mjs\n    inputs: { arg: "{{ inputs.arg }}" }\n`);
    const hostile = `x; touch ${join(s.dir, 'pwned')} && echo $(id) | cat > ${join(s.dir, 'pwned2')} \`reboot\``;
    process.env.KIWI_TEST_SECRET_ENV = 'leak';
    const run = await s.engine.run({ directive: 'sh', principal: 'cli:t', mode: 'execute', approve: true, inputs: { arg: hostile } });
    delete process.env.KIWI_TEST_SECRET_ENV;
    expect(run.status).toBe('succeeded');
    const output = (run.steps[0] as { output: { got: { arg: string }; env: string[] } }).output;
    expect(output.got.arg).toBe(hostile);
    expect(output.env).toEqual(['KIWI_ACTIONS_DIR', 'KIWI_DIRECTIVE', 'KIWI_RUN_ID', 'LANG', 'PATH']);
    expect(existsSync(join(s.dir, 'pwned'))).toBe(false);
    expect(existsSync(join(s.dir, 'pwned2'))).toBe(false);
  });

  it('a script that hangs past its timeout is killed, with its children, and the run rolls back', async () => {
    const s = setup();
    s.script('hang.mjs', `import { spawn } from 'node:child_process';
spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'inherit' });
setInterval(() => {}, 1000);`);
    s.write('h', `${head('h')}steps:\n  - action: settings.set\n    inputs: { key: retention.raw_days, value: 3 }\n  - script: hang.mjs\n    timeout: 500ms\n`);
    const started = Date.now();
    const run = await s.engine.run({ directive: 'h', principal: 'cli:t', mode: 'execute', approve: true });
    expect(run.status).toBe('rolled_back');
    expect(run.error).toMatch(/timed out after 500 ms/);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(readSetting(s.store, 'retention.raw_days')).toBe(30);
  });

  it('a script flooding stdout is killed at the output cap', async () => {
    const s = setup({ policy: policy({ scripts: { max_output_bytes: 64 * 1024, env: {} } }) });
    s.script('flood.mjs', 'const b = "x".repeat(65536); for (;;) process.stdout.write(b);');
    s.write('f', `${head('f')}steps:\n  - script: flood.mjs\n    timeout: 20s\n`);
    const run = await s.engine.run({ directive: 'f', principal: 'cli:t', mode: 'execute', approve: true });
    expect(run.status).toBe('rolled_back');
    expect(run.error).toMatch(/more than 65536 bytes to stdout and was killed/);
  });

  it('a symlink swapped in after validation is still refused at run time', async () => {
    const s = setup();
    s.script('ok.mjs', 'process.stdout.write("{}")');
    s.write('l', `${head('l')}steps:\n  - script: ok.mjs\n`);
    const planned = await s.engine.run({ directive: 'l', principal: 'cli:t' });
    expect(planned.status).toBe('planned');
    writeFileSync(join(s.dir, 'evil.mjs'), `require('fs').writeFileSync(${JSON.stringify(join(s.dir, 'evil-ran'))}, '1')`);
    const { rmSync } = await import('node:fs');
    rmSync(join(s.scripts, 'ok.mjs'));
    symlinkSync(join(s.dir, 'evil.mjs'), join(s.scripts, 'ok.mjs'));
    await expect(s.engine.run({ directive: 'l', principal: 'cli:t', mode: 'execute', approve: true })).rejects.toThrow(/symlink escape/);
    expect(existsSync(join(s.dir, 'evil-ran'))).toBe(false);
  });
});

describe('capabilities, tools, nested directives and webhooks', () => {
  it('passes inputs to the registry and its outputs to later steps; a hanging capability times out', async () => {
    const calls: Record<string, unknown>[] = [];
    const s = setup({
      capabilities: {
        detect: async (input) => {
          calls.push(input);
          return { anomalies: [{ id: `an-${String(input.component)}`, type: 'latency_spike', component: input.component, score: 0.93 }] };
        },
        explain: (input, signal) =>
          new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error(`explain of ${String(input.anomaly_id)} stopped`)))),
      },
    });
    s.write(
      'cap',
      `${head('cap')}inputs:\n  component: { type: string }\nsteps:
  - name: found
    action: detect
    inputs: { component: "{{ inputs.component }}", lookback: 1h }
  - name: note
    if: "{{ steps.found.output.anomalies[0].score > 0.9 }}"
    action: events.log
    inputs: { message: "top anomaly {{ steps.found.output.anomalies[0].id }}" }
  - name: why
    action: explain
    timeout: 300ms
    inputs: { anomaly_id: "{{ steps.found.output.anomalies[0].id }}" }
`,
    );
    const run = await s.engine.run({ directive: 'cap', principal: 'cli:t', mode: 'execute', inputs: { component: 'mcp-search' } });
    expect(calls).toEqual([{ component: 'mcp-search', lookback: '1h' }]);
    expect(s.store.searchEvents({ text: 'top anomaly an-mcp-search' }, 5).events).toHaveLength(1);
    expect(run.status).toBe('rolled_back');
    expect(run.error).toMatch(/steps\[2\] \(why\) failed: timed out after 300 ms/);
  });

  it('an absent capability fails its step with a clear error', async () => {
    const s = setup();
    s.write('nocap', `${head('nocap')}steps:\n  - action: forecast\n    inputs: { component: worker }\n`);
    const run = await s.engine.run({ directive: 'nocap', principal: 'cli:t', mode: 'execute' });
    expect(run.error).toMatch(/capability "forecast" is not available in this server/);
  });

  it('runs nested directives with the parent undo stack, and limits depth', async () => {
    const s = setup();
    s.write('child', `${head('child')}inputs:\n  days: { type: integer }\nsteps:\n  - name: set\n    action: settings.set\n    inputs: { key: retention.raw_days, value: "{{ inputs.days }}" }\n`);
    s.write('parent', `${head('parent')}steps:\n  - name: sub\n    directive: child\n    inputs: { days: 11 }\n  - action: verify\n    inputs: { signal: metric, metric: none, component: x, below: 1 }\n`);
    const run = await s.engine.run({ directive: 'parent', principal: 'cli:t', mode: 'execute', approve: true });
    expect((run.plan as { path: string; ref: string }[]).map((p) => p.ref)).toEqual(['child', 'settings.set', 'verify']);
    expect(run.status).toBe('rolled_back');
    expect((run.steps as { path: string }[]).map((r) => r.path)).toEqual(['child>steps[0]', 'steps[0]', 'steps[1]', 'undo']);
    expect(readSetting(s.store, 'retention.raw_days')).toBe(30);

    for (const [name, next] of [['l1', 'l2'], ['l2', 'l3'], ['l3', 'l4'], ['l4', 'l5']]) s.write(name!, `${head(name!)}steps:\n  - directive: ${next}\n`);
    s.write('l5', `${head('l5')}steps:\n  - action: wait\n    inputs: { duration: 1ms }\n`);
    expect(validate(s, 'l1')).toEqual([expect.stringMatching(/directives nest 5 deep through "l2"; at most 4/)]);
  });

  it('tool steps call Kiwi tools through the caller; run_directive is refused as a tool step', async () => {
    const received: [string, Record<string, unknown>][] = [];
    const tools: ToolCaller = {
      list: async () => [{ name: 'search_events', readOnly: true, destructive: false }, { name: 'run_directive', readOnly: false, destructive: true }],
      call: async (name, args) => {
        received.push([name, args]);
        return { structured: { events: [{ id: 1 }, { id: 2 }] }, text: '2 events', isError: false };
      },
    };
    const s = setup({ tools });
    s.write('t', `${head('t')}steps:\n  - name: ev\n    tool: search_events\n    inputs: { kind: connection }\n  - action: events.log\n    inputs: { message: "{{ size(steps.ev.output.events) }} events" }\n`);
    const run = await s.engine.run({ directive: 't', principal: 'cli:t', mode: 'execute' });
    expect(run.status).toBe('succeeded');
    expect(received).toEqual([['search_events', { kind: 'connection' }]]);
    expect(s.store.searchEvents({ text: '2 events' }, 5).events).toHaveLength(1);
    s.write('r', `${head('r', '[read:metrics, call:tool]')}steps:\n  - tool: run_directive\n    inputs: { name: r }\n`);
    await expect(s.engine.run({ directive: 'r', principal: 'cli:t' })).rejects.toThrow(/cannot be called from a step; use a directive step/);
  });

  it('webhooks post to allow-listed destinations only, with a timeout', async () => {
    const bodies: unknown[] = [];
    const server: Server = createServer((req: IncomingMessage, res) => {
      let text = '';
      req.on('data', (d: Buffer) => (text += d.toString()));
      req.on('end', () => {
        bodies.push(JSON.parse(text));
        if (req.url === '/slow') return; // never answers
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      const s = setup({ policy: policy({ webhooks: { allow: [`http://127.0.0.1:${port}/hooks/`], timeout: '300ms' } }) });
      const hook = (name: string, url: string) =>
        s.write(name, `${head(name)}steps:\n  - action: notify.webhook\n    inputs: { url: "${url}", body: { text: "hello {{ run.directive }}" } }\n`);
      hook('ok', `http://127.0.0.1:${port}/hooks/kiwi`);
      hook('elsewhere', `http://127.0.0.1:${port}/admin`);
      hook('slow', `http://127.0.0.1:${port}/hooks/../slow`);
      expect((await s.engine.run({ directive: 'ok', principal: 'cli:t', mode: 'execute' })).status).toBe('succeeded');
      expect(bodies).toEqual([{ text: 'hello ok' }]);
      const refused = await s.engine.run({ directive: 'elsewhere', principal: 'cli:t', mode: 'execute' });
      expect(refused.error).toMatch(/not in the policy's webhooks\.allow list/);
      const slow = await s.engine.run({ directive: 'slow', principal: 'cli:t', mode: 'execute' });
      expect(slow.error).toMatch(/not in the policy's webhooks\.allow list/);
      expect(bodies).toHaveLength(1);
    } finally {
      server.close();
    }
  });
});

describe('a run survives reading back', () => {
  it('stores inputs, output, duration and outcome of every step', async () => {
    const s = setup();
    s.write('w', `${head('w')}steps:\n  - name: pause\n    action: wait\n    inputs: { duration: 20ms }\n`);
    const run = await s.engine.run({ directive: 'w', principal: 'cli:t', mode: 'execute' });
    const stored = s.engine.getRun(run.id)!;
    const step = stored.steps[0] as { inputs: unknown; output: { waited_ms: number }; duration_ms: number; outcome: string };
    expect(step).toMatchObject({ inputs: { duration: '20ms' }, output: { waited_ms: 20 }, outcome: 'ok' });
    expect(step.duration_ms).toBeGreaterThanOrEqual(15);
    expect(readFileSync(join(s.directives, 'w.yaml'), 'utf8')).toContain('pause');
  });
});
