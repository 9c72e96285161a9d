/**
 * The directive policy follows its file: a grant an operator revokes is gone for a running
 * `kiwi serve` at its next check, without a restart; a file made invalid grants nothing until it
 * is fixed. The built server over stdio with a real MCP client, and the policy class on real files.
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { describe, expect, it, onTestFinished } from 'vitest';
import { Policy } from '../src/directives/policy.js';
import { CLI, assertBuilt } from './helpers/cli.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir('kiwi-policy-reload-');

const SET_RETENTION = `name: set_retention
version: 1.0.0
description: Change how long raw telemetry is kept.
inputs:
  days: { type: integer, minimum: 1, maximum: 365 }
permissions: [write:settings]
steps:
  - name: set
    action: settings.set
    inputs: { key: retention.raw_days, value: "{{ inputs.days }}", reason: test }
`;
const GRANTED = 'grants:\n  "*": [read:metrics]\n  "agent:*": [read:metrics, write:settings]\napproval:\n  agents_may_approve: true\n';
const REVOKED = 'grants:\n  "*": [read:metrics]\napproval:\n  agents_may_approve: true\n';

/** Replaces the file as editors do: a new file renamed over the old one. */
function replace(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

type Run = { status: string; error: string | null };

describe('the policy file, edited while Kiwi runs', () => {
  it('a revoked grant is refused by the running server at once, and an invalid file grants nothing', async () => {
    assertBuilt();
    const dir = tempDir();
    mkdirSync(join(dir, 'directives'));
    mkdirSync(join(dir, 'scripts'));
    writeFileSync(join(dir, 'directives', 'set_retention.yaml'), SET_RETENTION);
    const policy = join(dir, 'policy.yaml');
    writeFileSync(policy, GRANTED);
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [CLI, 'serve', '--db', join(dir, 'kiwi.db'), '--no-self-telemetry', '--directives', join(dir, 'directives'), '--scripts', join(dir, 'scripts'), '--policy', policy],
      env: { ...(process.env as Record<string, string>), KIWI_LOG_LEVEL: 'warn' },
      stderr: 'pipe',
    });
    const client = new Client({ name: 'ops-agent', version: '1.0.0' });
    await client.connect(transport);
    onTestFinished(() => client.close());
    const execute = async (days: number) => {
      const result = await client.callTool({ name: 'run_directive', arguments: { name: 'set_retention', inputs: { days }, mode: 'execute', approve: true } });
      return { result, run: result.structuredContent as Run | undefined, text: (result.content as { text: string }[])[0]!.text };
    };

    expect((await execute(20)).run?.status).toBe('succeeded');

    replace(policy, REVOKED);
    const revoked = await execute(21);
    expect(revoked.run?.status).toBe('denied');
    expect(revoked.run?.error).toMatch(/permission denied: .*write:settings.* not granted to agent:ops-agent/);

    replace(policy, 'grants: [this is not a map\n');
    const broken = await execute(22);
    // refused before any step ran, saying which file to fix
    expect(broken.run?.status).toBe('failed');
    expect(broken.run?.error).toMatch(/^plan: steps\[0\]: the policy file changed and is not valid: .*policy\.yaml: .*line 2.*nothing is granted until it is fixed/);
    // the server keeps serving
    expect((await client.callTool({ name: 'list_directives', arguments: {} })).isError).toBeFalsy();

    replace(policy, GRANTED);
    expect((await execute(23)).run?.status).toBe('succeeded');
  }, 60_000);

  it('Policy.load follows the file; one given as an object does not change', () => {
    const file = join(tempDir(), 'policy.yaml');
    writeFileSync(file, GRANTED);
    const policy = Policy.load(file);
    expect(policy.granted('agent:x', 'write:settings')).toBe(true);
    replace(file, REVOKED.replace('agents_may_approve: true', 'agents_may_approve: false\n  ttl: 10m'));
    expect(policy.granted('agent:x', 'write:settings')).toBe(false);
    expect(policy.approvalTtlMs).toBe(600_000);
    expect(policy.config.approval.agents_may_approve).toBe(false);

    rmSync(file);
    expect(() => policy.granted('agent:x', 'read:metrics')).toThrow(/can no longer be read.*nothing is granted until it is restored/);

    const fixed = new Policy(Policy.readOnly().config, 'given');
    expect(fixed.granted('agent:x', 'read:metrics')).toBe(true);
  });
});
