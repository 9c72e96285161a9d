/** Directives end to end: the built `kiwi serve` over stdio with a real MCP client, and the `kiwi directive` command. */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { ResourceListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, assertBuilt, runCli } from './helpers/cli.js';

type ToolResult = Awaited<ReturnType<Client['callTool']>>;
const text = (r: ToolResult) => (r.content as { type: string; text: string }[])[0]!.text;
const structured = <T>(r: ToolResult) => r.structuredContent as T;

const SET_RETENTION = `# yaml-language-server: $schema=../schemas/directive.schema.json
name: set_retention
version: 1.0.0
description: Change how long raw telemetry is kept, after counting the series (a tool step).
inputs:
  days: { type: integer, minimum: 1, maximum: 365 }
permissions: [read:metrics, write:settings]
steps:
  - name: series
    tool: list_series
    inputs: { limit: 5 }
  - name: set
    action: settings.set
    inputs: { key: retention.raw_days, value: "{{ inputs.days }}", reason: "{{ steps.series.output.total }} series" }
`;

describe('directives over MCP and the command line', () => {
  let dir: string;
  let env: Record<string, string>;
  let client: Client;
  let listChanged = 0;

  beforeAll(async () => {
    assertBuilt();
    dir = mkdtempSync(join(tmpdir(), 'kiwi-directives-e2e-'));
    mkdirSync(join(dir, 'directives'));
    mkdirSync(join(dir, 'scripts'));
    writeFileSync(join(dir, 'directives', 'set_retention.yaml'), SET_RETENTION);
    copyFileSync(new URL('../directives/triage_incident.yaml', import.meta.url), join(dir, 'directives', 'triage_incident.yaml'));
    writeFileSync(join(dir, 'policy.yaml'), 'grants:\n  "*": [read:metrics]\n  "agent:*": [read:metrics, write:settings]\n  "cli:*": [read:metrics, write:settings]\n');
    env = {
      ...(process.env as Record<string, string>),
      KIWI_LOG_LEVEL: 'warn',
      KIWI_DB: join(dir, 'kiwi.db'),
      KIWI_DIRECTIVES: join(dir, 'directives'),
      KIWI_SCRIPTS: join(dir, 'scripts'),
      KIWI_POLICY: join(dir, 'policy.yaml'),
      USER: 'alice',
    };
    // the server is given its folders and policy by flags, the command line below by the environment
    const { KIWI_DIRECTIVES: directives, KIWI_SCRIPTS: scripts, KIWI_POLICY: policy, ...serverEnv } = env;
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [CLI, 'serve', '--no-self-telemetry', '--directives', directives!, '--scripts', scripts!, '--policy', policy!],
      env: serverEnv,
      stderr: 'pipe',
    });
    client = new Client({ name: 'e2e-agent', version: '1.0.0' });
    client.setNotificationHandler(ResourceListChangedNotificationSchema, () => {
      listChanged++;
    });
    await client.connect(transport);
  });

  afterAll(async () => {
    await client?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lists and validates directives', async () => {
    const list = structured<{ directives: { name: string; valid: boolean }[] }>(await client.callTool({ name: 'list_directives', arguments: {} }));
    expect(list.directives.map((d) => [d.name, d.valid])).toEqual([
      ['set_retention', true],
      ['triage_incident', true],
    ]);
    const bad = await client.callTool({
      name: 'validate_directive',
      arguments: { yaml: 'name: x\nversion: 1.0.0\ndescription: d\nsteps:\n  - action: settings.set\n    inputs: { key: a, value: 1 }\n  - tool: run_directive\n' },
    });
    const result = structured<{ valid: boolean; errors: string[]; error_count: number }>(bad);
    expect(result.valid).toBe(false);
    expect(result.errors).toEqual([
      '<yaml>:5:13: permission "write:settings" is not declared in permissions (action "settings.set" needs it)',
      expect.stringMatching(/^<yaml>:6:20: unknown setting "a"; known: retention\.raw_days, /),
      '<yaml>:7:11: tool "run_directive" cannot be called from a step; use a directive step',
    ]);
    // the arguments a tool step, or an action reached through a tool, passes are the tool's own
    const misspelt = await client.callTool({
      name: 'validate_directive',
      arguments: {
        yaml: 'name: x\nversion: 1.0.0\ndescription: d\npermissions: [read:metrics]\nsteps:\n  - action: detect\n    inputs: { lookbackk: 1h }\n  - tool: list_series\n    inputs: { limit: 5, offest: 5 }\n',
      },
    });
    expect(structured<{ errors: string[] }>(misspelt).errors).toEqual([
      '<yaml>:7:26: detect takes no input "lookbackk"; it takes lookback, at, component, types, sensitivity, limit',
      '<yaml>:9:33: tool "list_series" takes no input "offest"; it takes name, name_prefix, component, limit, offset',
    ]);
  });

  it('an agent plans, then asks to execute; its own approval does not count; a human approves from the CLI', async () => {
    const plan = structured<{ status: string; plan: { ref: string; runs: string }[] }>(
      await client.callTool({ name: 'run_directive', arguments: { name: 'set_retention', inputs: { days: 9 } } }),
    );
    expect(plan.status).toBe('planned');
    expect(plan.plan.map((p) => p.ref)).toEqual(['list_series', 'settings.set']);

    const asked = await client.callTool({ name: 'run_directive', arguments: { name: 'set_retention', inputs: { days: 9 }, mode: 'execute', approve: true } });
    const waiting = structured<{ id: string; status: string; requested_by: string; next: string }>(asked);
    expect(waiting).toMatchObject({ status: 'awaiting_approval', requested_by: 'agent:e2e-agent' });
    expect(text(asked)).toContain(`kiwi directive approve ${waiting.id}`);

    const busy = await client.callTool({ name: 'run_directive', arguments: { name: 'set_retention', inputs: { days: 10 }, mode: 'execute' } });
    expect(busy.isError).toBe(true);
    expect(text(busy)).toMatch(/already awaiting_approval for target "set_retention"/);

    // a shell without the server's policy: the read-only default would deny the step, so the approval is refused, not spent
    const unpoliced = await runCli(['directive', 'approve', waiting.id], { env: { ...env, KIWI_POLICY: '' } });
    expect(unpoliced.code).toBe(1);
    expect(unpoliced.stderr).toMatch(/default \(read-only\)\) does not grant agent:e2e-agent write:settings .*The run still awaits approval/);

    const approved = await runCli(['directive', 'approve', waiting.id], { env });
    expect(approved.stderr).toBe('');
    expect(approved.code).toBe(0);
    expect(approved.stdout).toMatch(/SUCCEEDED/);

    const run = structured<{ status: string; approved_by: string; steps: { name: string; outcome: string; output: Record<string, unknown> }[] }>(
      await client.callTool({ name: 'get_directive_run', arguments: { id: waiting.id } }),
    );
    expect(run).toMatchObject({ status: 'succeeded', approved_by: 'cli:alice' });
    expect(run.steps.map((s) => [s.name, s.outcome])).toEqual([
      ['series', 'ok'],
      ['set', 'ok'],
    ]);
    expect(run.steps[1]!.output).toMatchObject({ key: 'retention.raw_days', old_value: 30, new_value: 9 });
    const settings = await runCli(['settings', 'list'], { env });
    expect(settings.stdout).toMatch(/retention\.raw_days = 9 \(set by agent:e2e-agent/);

    const resource = await client.readResource({ uri: `kiwi://runs/${waiting.id}` });
    expect(JSON.parse((resource.contents[0] as { text: string }).text)).toMatchObject({ id: waiting.id, status: 'succeeded' });
    const runs = structured<{ runs: { id: string; created_at: string }[] }>(await client.callTool({ name: 'list_directive_runs', arguments: { directive: 'set_retention' } }));
    expect(runs.runs.map((r) => r.id)).toContain(waiting.id);
    // a run's created_at as shown pages on from it, as the epoch next_before does
    const newest = runs.runs[0]!;
    const after = structured<{ runs: { id: string }[] }>(await client.callTool({ name: 'list_directive_runs', arguments: { directive: 'set_retention', before: newest.created_at } }));
    expect(after.runs.map((r) => r.id)).toEqual(runs.runs.slice(1).map((r) => r.id));
  });

  it('a permission the policy does not grant is denied and stored as a permission event', async () => {
    const run = structured<{ status: string; error: string }>(
      await client.callTool({ name: 'run_directive', arguments: { name: 'triage_incident', mode: 'execute' } }),
    );
    expect(run.status).toBe('denied');
    expect(run.error).toMatch(/write:events .* not granted to agent:e2e-agent/);
    const events = structured<{ events: { attrs: Record<string, unknown> }[] }>(
      await client.callTool({ name: 'search_events', arguments: { kind: 'permission', from: '-1h' } }),
    );
    expect(events.events).toContainEqual(
      expect.objectContaining({ attrs: expect.objectContaining({ decision: 'deny', principal: 'agent:e2e-agent', tool: 'events.log', permission: 'write:events' }) }),
    );
  });

  it('serves each directive as a resource, offers the authoring prompt, and notices new files', async () => {
    const templates = await client.listResourceTemplates();
    expect(templates.resourceTemplates.map((t) => t.uriTemplate)).toEqual(expect.arrayContaining(['kiwi://directives/{name}', 'kiwi://runs/{id}']));
    const yaml = await client.readResource({ uri: 'kiwi://directives/set_retention' });
    expect((yaml.contents[0] as { text: string }).text).toBe(SET_RETENTION);
    // an unknown name is the caller's invalid parameter (not an internal error), its echo bounded
    await expect(client.readResource({ uri: `kiwi://directives/${'n'.repeat(5000)}` })).rejects.toThrow(/-32602: no directive "n{99}…"$/);
    await expect(client.readResource({ uri: 'kiwi://runs/nope' })).rejects.toThrow(/-32602: no run "nope"$/);
    const prompt = await client.getPrompt({ name: 'author_directive', arguments: { goal: 'open the breaker of a flaky server' } });
    const promptText = (prompt.messages[0]!.content as { text: string }).text;
    expect(promptText).toContain('open the breaker of a flaky server');
    expect(promptText).toContain('validate_directive');
    expect(promptText).toContain('"DirectiveStep"');
    // prompt arguments are checked as tool arguments are, not passed into the instructions as given
    await expect(client.getPrompt({ name: 'author_directive', arguments: { goal: ' ' } })).rejects.toThrow(/say what the directive should do/);
    await expect(client.getPrompt({ name: 'weekly_health_review', arguments: { days: '-5' } })).rejects.toThrow(/a whole number of days from 1 to 999/);
    await expect(client.getPrompt({ name: 'triage_incident', arguments: { lookback: 'yesterday-ish' } })).rejects.toThrow(/a duration with its unit/);
    const review = await client.getPrompt({ name: 'weekly_health_review', arguments: { days: '14' } });
    expect((review.messages[0]!.content as { text: string }).text).toContain('"since": "-14d"');
    const triage = await client.getPrompt({ name: 'triage_incident', arguments: { component: 'odd "name"', lookback: '30m' } });
    expect((triage.messages[0]!.content as { text: string }).text).toContain('detect_anomalies {"lookback": "30m", "component": "odd \\"name\\""}');

    const before = listChanged;
    writeFileSync(join(dir, 'directives', 'added_later.yaml'), SET_RETENTION.replace('name: set_retention', 'name: added_later'));
    const deadline = Date.now() + 10_000;
    while (listChanged === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(listChanged).toBeGreaterThan(before);
    const { resources } = await client.listResources();
    expect(resources.map((r) => r.uri)).toContain('kiwi://directives/added_later');
  });

  it('shipped directives run on the real detection, root-cause and forecasting tools (reached through the registry fallback)', async () => {
    const shippedEnv = {
      ...env,
      KIWI_DB: join(dir, 'leak.db'),
      KIWI_DIRECTIVES: new URL('../directives/', import.meta.url).pathname,
      KIWI_SCRIPTS: new URL('../scripts/', import.meta.url).pathname,
    };
    writeFileSync(join(dir, 'ops.yaml'), 'grants:\n  "cli:*": [read:metrics, write:events, write:anomalies, execute:script]\n');
    const data = join(dir, 'leak.jsonl');
    expect((await runCli(['generate', '--out', data, '--days', '1', '--seed', '5', '--incidents', 'memory_leak'], { env: shippedEnv })).code).toBe(0);
    expect((await runCli(['ingest', data], { env: shippedEnv })).code).toBe(0);
    expect((await runCli(['settings', 'set', 'forecast.memory_limit_bytes', '{"worker":2147483648}'], { env: shippedEnv })).code).toBe(0);

    const triage = await runCli(['directive', 'run', 'triage_incident', '--mode', 'execute', '--policy', join(dir, 'ops.yaml'), '--json'], { env: shippedEnv });
    expect(triage.stderr).toBe('');
    const triageRun = JSON.parse(triage.stdout) as { status: string; steps: { name: string; outcome: string; output: unknown }[] };
    expect(triageRun.status).toBe('succeeded');
    expect(JSON.stringify(triageRun.steps[0]!.output)).toMatch(/"type":"memory_leak","severity":"\w+","status":"open","component":"worker"/);
    expect(triageRun.steps.filter((s) => s.name === 'explain').every((s) => s.outcome === 'ok')).toBe(true);

    const leak = await runCli(['directive', 'run', 'memory_leak_response', '--mode', 'execute', '--approve', '--input', 'hours_threshold=72', '--policy', join(dir, 'ops.yaml'), '--json'], {
      env: shippedEnv,
    });
    expect(leak.stderr).toBe('');
    const leakRun = JSON.parse(leak.stdout) as { id: string; status: string; steps: { name: string; outcome: string }[] };
    expect(leakRun.status).toBe('succeeded');
    expect(leakRun.steps.map((s) => s.name)).toEqual(expect.arrayContaining(['memory', 'forecast', 'restart', 'record']));
    const request = JSON.parse(readFileSync(join(dir, 'actions', 'restart-worker.json'), 'utf8')) as Record<string, unknown>;
    expect(request).toMatchObject({ action: 'restart', component: 'worker', run_id: leakRun.id });
  });

  it('kiwi directive validate prints file:line:column and exits non-zero', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'name: bad\nversion: 1.0.0\ndescription: d\nsteps:\n  - action: wait\n    if: "{{ inputs.nope }}"\n    inputs: { duration: 1s }\n');
    const result = await runCli(['directive', 'validate', bad, join(dir, 'directives', 'set_retention.yaml')], { env });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`${bad}:6:9: No such key: nope in "inputs.nope"\n`);
    expect(result.stdout).toBe(`${join(dir, 'directives', 'set_retention.yaml')}: valid\n`);
    const shipped = await runCli(['directive', 'validate', ...['auto_heal_anomaly', 'proactive_scale', 'triage_incident', 'memory_leak_response', 'flaky_connection_response'].map((n) => new URL(`../directives/${n}.yaml`, import.meta.url).pathname)], {
      env: { ...env, KIWI_DIRECTIVES: new URL('../directives/', import.meta.url).pathname, KIWI_SCRIPTS: new URL('../scripts/', import.meta.url).pathname },
    });
    expect(shipped.stderr).toBe('');
    expect(shipped.code).toBe(0);
  });
});
