/**
 * Directive runs that outlive their request or their process: run_directive answers a long run
 * while it runs; a Kiwi that stops rolls back what its runs applied; a process killed mid-run
 * leaves the undo of its changes, which the next process applies.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Policy } from '../src/directives/policy.js';
import { DirectiveService } from '../src/directives/service.js';
import { createKiwi } from '../src/index.js';
import { readSetting } from '../src/settings.js';
import { DirectiveRunStore, type DirectiveRunRow } from '../src/store/directives.js';
import { Store } from '../src/store/store.js';
import { startCli, waitForExit } from './helpers/cli.js';
import { pollUntil } from './helpers/poll.js';
import { connectInProcess } from './helpers/mcp.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir('kiwi-interrupted-');

/** Raises retention.raw_days to 3, then waits a minute: long enough to be interrupted. */
const SLOW_CHANGE = `name: slow_change
version: 1.0.0
description: raise the raw retention, then wait before anything checks it
permissions: [write:settings]
steps:
  - name: raise
    action: settings.set
    inputs: { key: retention.raw_days, value: 3, reason: test }
  - name: settle
    action: wait
    inputs: { duration: 60s }
    timeout: 2m
`;

function setup(): { dir: string; db: string; directives: string; policy: string; env: NodeJS.ProcessEnv } {
  const dir = tempDir();
  const directives = join(dir, 'directives');
  mkdirSync(directives);
  writeFileSync(join(directives, 'slow_change.yaml'), SLOW_CHANGE);
  const policy = join(dir, 'policy.yaml');
  writeFileSync(policy, 'grants:\n  "*": [read:metrics, write:settings]\napproval:\n  agents_may_approve: true\n');
  const db = join(dir, 'kiwi.db');
  return { dir, db, directives, policy, env: { KIWI_DB: db, KIWI_DIRECTIVES: directives, KIWI_POLICY: policy, USER: 'alice' } };
}

/** The store as another process sees it: the run and the setting it changed. */
function readBack(db: string, runId?: string): { run: DirectiveRunRow | null; rawDays: number; audit: string[] } {
  const store = new Store(db);
  try {
    const runs = new DirectiveRunStore(store.db);
    const run = runId ? runs.get(runId) : (runs.list({ directive: 'slow_change' }, 1)[0] ?? null);
    const audit = store.listAudit(100).filter((a) => a.target === run?.id).map((a) => a.action);
    return { run, rawDays: readSetting(store, 'retention.raw_days'), audit };
  } finally {
    store.close();
  }
}

describe('directive runs interrupted', () => {
  it('run_directive answers a long run while it runs; closing Kiwi rolls it back', async () => {
    const s = setup();
    const kiwi = createKiwi({ db: s.db, selfTelemetry: false, policy: s.policy, directivesDir: s.directives, directiveAnswerWithinMs: 300 });
    const defaultDays = readSetting(kiwi.store, 'retention.raw_days');
    const client = await connectInProcess(kiwi.server, 'agent');

    const answer = await client.callTool({ name: 'run_directive', arguments: { name: 'slow_change', mode: 'execute', approve: true } });
    const run = answer.structuredContent as { id: string; status: string; next: string; steps: { name: string; outcome: string }[] };
    expect(run.status).toBe('running');
    expect(run.next).toMatch(new RegExp(`^still running after 0.3 s .*get_directive_run \\{"id": "${run.id}"\\}`));
    expect(run.steps.map((step) => [step.name, step.outcome])).toEqual([['raise', 'ok']]);
    expect(readSetting(kiwi.store, 'retention.raw_days')).toBe(3);
    const followed = await client.callTool({ name: 'get_directive_run', arguments: { id: run.id } });
    expect((followed.structuredContent as { status: string }).status).toBe('running');

    await kiwi.close();
    const after = readBack(s.db, run.id);
    expect(after.run).toMatchObject({ status: 'rolled_back' });
    expect(after.run!.error).toMatch(/settle\) failed: interrupted: Kiwi is stopping; changes rolled back$/);
    expect(after.rawDays).toBe(defaultDays);
    expect(after.audit).toEqual(expect.arrayContaining(['directive.start', 'directive.step', 'directive.undo', 'directive.finish']));
  });

  it('Ctrl-C on `kiwi directive run` stops the run and rolls back what it applied', async () => {
    const s = setup();
    const child = startCli(['directive', 'run', 'slow_change', '--mode', 'execute', '--approve'], s.env);
    let stdout = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    await pollUntil(() => readBack(s.db).rawDays, (days) => days === 3, { timeoutMs: 20_000 });
    child.kill('SIGINT');
    expect(await waitForExit(child)).toEqual({ code: 1, signal: null });
    expect(stdout).toMatch(/— ROLLED_BACK/);
    expect(stdout).toMatch(/interrupted: kiwi directive received SIGINT; changes rolled back/);
    const after = readBack(s.db);
    expect(after.run!.status).toBe('rolled_back');
    expect(after.rawDays).not.toBe(3);
  });

  it('a run whose process is alive is never taken over, however long since it moved', async () => {
    const s = setup();
    const child = startCli(['directive', 'run', 'slow_change', '--mode', 'execute', '--approve'], s.env);
    await pollUntil(() => readBack(s.db).rawDays, (days) => days === 3, { timeoutMs: 20_000 });
    const store = new Store(s.db);
    try {
      const engine = new DirectiveService({ store, directivesDir: s.directives, policy: Policy.load(s.policy) }).engine;
      expect(await engine.recoverInterrupted(Date.now() + 31 * 60_000)).toEqual([]);
      expect(readBack(s.db)).toMatchObject({ run: { status: 'running' }, rawDays: 3 });
    } finally {
      store.close();
      child.kill('SIGINT');
      await waitForExit(child);
    }
  });

  it('an abandoned run is undone once, however many recoveries run at the same time', async () => {
    const s = setup();
    const child = startCli(['directive', 'run', 'slow_change', '--mode', 'execute', '--approve'], s.env);
    await pollUntil(() => readBack(s.db).rawDays, (days) => days === 3, { timeoutMs: 20_000 });
    child.kill('SIGKILL');
    await waitForExit(child);
    const store = new Store(s.db);
    try {
      const engine = new DirectiveService({ store, directivesDir: s.directives, policy: Policy.load(s.policy) }).engine;
      const [first, second] = await Promise.all([engine.recoverInterrupted(), engine.recoverInterrupted()]);
      expect(first.length + second.length).toBe(1);
      const after = readBack(s.db);
      expect(after.run).toMatchObject({ status: 'rolled_back' });
      expect(after.audit.filter((a) => a === 'directive.interrupted' || a === 'directive.undo')).toEqual(['directive.interrupted', 'directive.undo']);
    } finally {
      store.close();
    }
  });

  it('a run another host took over for abandoned is left to it: the old owner stops without writing over it', async () => {
    const s = setup();
    const kiwi = createKiwi({ db: s.db, selfTelemetry: false, policy: s.policy, directivesDir: s.directives, directiveAnswerWithinMs: 200 });
    const client = await connectInProcess(kiwi.server, 'agent');
    const answer = await client.callTool({ name: 'run_directive', arguments: { name: 'slow_change', mode: 'execute', approve: true } });
    const id = (answer.structuredContent as { id: string }).id;
    // as another host sees it: an owner it cannot check, silent for 31 minutes
    kiwi.store.db.prepare('UPDATE directive_runs SET owner = ?, updated_at = ? WHERE id = ?').run('other-host:1', Date.now() - 31 * 60_000, id);
    const engine = new DirectiveService({ store: kiwi.store, directivesDir: s.directives, policy: Policy.load(s.policy) }).engine;
    expect((await engine.recoverInterrupted()).map((r) => r.status)).toEqual(['rolled_back']);
    // nor may it record a change it made meanwhile over what the new owner left of the closed run
    const runs = new DirectiveRunStore(kiwi.store.db);
    const undoOf = () => kiwi.store.db.prepare('SELECT undo FROM directive_runs WHERE id = ?').pluck().get(id);
    const left = undoOf();
    expect(runs.saveUndo(id, [{ action: 'settings.restore', inputs: {}, description: 'late' }], Date.now(), `${hostname()}:${process.pid}`)).toBe(false);
    expect(undoOf()).toBe(left);
    await kiwi.close(); // the old owner's wait is interrupted; it must not finish the run its own way
    const after = readBack(s.db, id);
    expect(after.run!.error).toMatch(/^interrupted: the process running it \(other-host:1\) stopped; 1 change\(s\) undone$/);
    expect(after.audit.filter((a) => a === 'directive.finish')).toEqual([]);
  });

  it("a nested directive's rollback and finally do not run once another host took the run over", async () => {
    const s = setup();
    const step = (message: string) => `  - action: events.log\n    inputs: { message: ${message} }\n`;
    writeFileSync(
      join(s.directives, 'inner.yaml'),
      `${SLOW_CHANGE.replace('name: slow_change', 'name: inner').replace('[write:settings]', '[write:settings, write:events]')}rollback:\n${step('inner rollback')}finally:\n${step('inner finally')}`,
    );
    writeFileSync(
      join(s.directives, 'outer.yaml'),
      `name: outer\nversion: 1.0.0\ndescription: runs inner\npermissions: [write:settings, write:events]\nsteps:\n  - directive: inner\nrollback:\n${step('outer rollback')}finally:\n${step('outer finally')}`,
    );
    writeFileSync(s.policy, 'grants:\n  "*": [read:metrics, write:settings, write:events]\napproval:\n  agents_may_approve: true\n');
    const kiwi = createKiwi({ db: s.db, selfTelemetry: false, policy: s.policy, directivesDir: s.directives, directiveAnswerWithinMs: 200 });
    const client = await connectInProcess(kiwi.server, 'agent');
    const answer = await client.callTool({ name: 'run_directive', arguments: { name: 'outer', mode: 'execute', approve: true } });
    const id = (answer.structuredContent as { id: string }).id;
    await pollUntil(() => readSetting(kiwi.store, 'retention.raw_days'), (days) => days === 3, { timeoutMs: 10_000 });
    // as another host sees it: an owner it cannot check, silent for 31 minutes
    kiwi.store.db.prepare('UPDATE directive_runs SET owner = ?, updated_at = ? WHERE id = ?').run('other-host:1', Date.now() - 31 * 60_000, id);
    const engine = new DirectiveService({ store: kiwi.store, directivesDir: s.directives, policy: Policy.load(s.policy) }).engine;
    expect((await engine.recoverInterrupted()).map((r) => [r.id, r.status])).toEqual([[id, 'rolled_back']]);
    await kiwi.close(); // the old owner's wait is interrupted: it must stop, running none of the cleanup the new owner now has
    const store = new Store(s.db);
    try {
      expect(store.searchEvents({ kinds: ['directive'] }, 50).events.map((e) => e.message)).toEqual([]);
      const runs = new DirectiveRunStore(store.db);
      expect(runs.get(id)!.error).toMatch(/^interrupted: the process running it \(other-host:1\) stopped; 1 change\(s\) undone$/);
      expect(store.listAudit(100).filter((a) => a.target === id && a.action === 'directive.finish')).toEqual([]);
      expect(readSetting(store, 'retention.raw_days')).not.toBe(3);
    } finally {
      store.close();
    }
  });

  it('a run whose process was killed is undone by the next Kiwi on the store, and its target is free again', async () => {
    const s = setup();
    const child = startCli(['directive', 'run', 'slow_change', '--mode', 'execute', '--approve'], s.env);
    await pollUntil(() => readBack(s.db).rawDays, (days) => days === 3, { timeoutMs: 20_000 });
    child.kill('SIGKILL');
    await waitForExit(child);
    const left = readBack(s.db);
    expect(left.run!.status).toBe('running');
    expect(left.rawDays).toBe(3);

    const kiwi = createKiwi({ db: s.db, selfTelemetry: false, policy: s.policy, directivesDir: s.directives });
    try {
      await pollUntil(() => new DirectiveRunStore(kiwi.store.db).get(left.run!.id)!.status, (status) => status !== 'running', { timeoutMs: 10_000 });
      const after = readBack(s.db, left.run!.id);
      expect(after.run!.status).toBe('rolled_back');
      expect(after.run!.error).toMatch(/^interrupted: the process running it \(.+:\d+\) stopped; 1 change\(s\) undone$/);
      expect(after.rawDays).not.toBe(3);
      expect(after.audit).toEqual(expect.arrayContaining(['directive.undo', 'directive.interrupted']));
      expect(new DirectiveRunStore(kiwi.store.db).activeFor('slow_change', left.run!.target)).toBeNull();
    } finally {
      await kiwi.close();
    }
  });
});
