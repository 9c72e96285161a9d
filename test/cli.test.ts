import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Store } from '../src/store/store.js';
import { runCli, startCli, waitForExit } from './helpers/cli.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir();
const metricLine = (i: number) => JSON.stringify({ type: 'metric', ts: 1_700_000_000 + i, name: 'm', value: i, component: 'c' });

describe('kiwi --help', () => {
  it('describes every command and each command its flags', async () => {
    const main = await runCli(['--help']);
    expect(main.code).toBe(0);
    const commands = ['serve', 'ingest', 'generate', 'detect', 'prune', 'settings', 'demo'];
    for (const command of commands) expect(main.stdout).toMatch(new RegExp(`^  ${command} `, 'm'));
    for (const command of commands) {
      const help = await runCli([command, '--help']);
      expect(help.code, command).toBe(0);
      expect(help.stdout, command).toMatch(new RegExp(`^usage: kiwi ${command}`, 'm'));
      expect(help.stdout, command).toMatch(/^flags:/m);
    }
    const serveHelp = (await runCli(['serve', '--help'])).stdout;
    for (const flag of ['--db', '--http', '--port', '--host', '--allowed-hosts', '--self-interval']) expect(serveHelp).toContain(flag);
  });

  it('refuses unknown commands and flags with usage, exit 2', async () => {
    const unknown = await runCli(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    const badFlag = await runCli(['ingest', '--colour', 'x.jsonl']);
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr).toMatch(/--colour/);
    expect(badFlag.stderr).toMatch(/usage: kiwi ingest/);
    const nothing = await runCli([]);
    expect(nothing).toMatchObject({ code: 2, stdout: '' });
    expect(nothing.stderr).toMatch(/^kiwi \d+\.\d+\.\d+: .*\n[^]*kiwi serve/);
  });

  it('names a flag given where it would do nothing, instead of ignoring it', async () => {
    const port = await runCli(['serve', '--port', '9000']);
    expect(port.code).toBe(2);
    expect(port.stderr).toContain('kiwi serve: --port has no effect without --http (stdio has no port)');
    const mixed = await runCli(['detect', '--csv', 'x.csv', '--out', '-', '--component', 'api', '--lookback', '2h']);
    expect(mixed.code).toBe(2);
    expect(mixed.stderr).toContain('kiwi detect: --lookback, --component have no effect with --csv (it scores the file alone)');
  });
});

describe('kiwi ingest', () => {
  it('ingests files, reports bad lines as file:line: reason on stderr, exits 1 when any was rejected', async () => {
    const dir = tempDir();
    const db = join(dir, 'kiwi.db');
    const good = join(dir, 'good.jsonl');
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(good, [metricLine(1), metricLine(2)].join('\n'));
    writeFileSync(bad, [metricLine(3), '{"type":"metric"}', metricLine(4)].join('\n'));
    const ok = await runCli(['ingest', good, '--db', db]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('accepted 2, rejected 0');
    const mixed = await runCli(['ingest', bad, '--db', db]);
    expect(mixed.code).toBe(1);
    expect(mixed.stderr).toMatch(new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2: `, 'm'));
    expect(mixed.stdout).toContain('accepted 2, rejected 1');
    const store = new Store(db);
    expect(store.readPoints(store.findSeries({}).series[0]!.id, 0, 2e12).values).toEqual([1, 2, 3, 4]);
    store.close();
  });

  it('with --strict writes nothing of a file with a bad line', async () => {
    const dir = tempDir();
    const db = join(dir, 'kiwi.db');
    const file = join(dir, 'mixed.jsonl');
    writeFileSync(file, [metricLine(1), 'garbage', metricLine(2)].join('\n'));
    const result = await runCli(['ingest', file, '--db', db, '--strict']);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('strict: file rejected, nothing written');
    const store = new Store(db);
    expect(store.findSeries({}).total).toBe(0);
    store.close();
  });

  it('reads stdin for "-", CSV too, and takes the database from KIWI_DB', async () => {
    const db = join(tempDir(), 'env.db');
    const csv = 'timestamp,component,metric,value\n2026-01-01T00:00:00Z,api,cpu,0.5\n2026-01-01T00:01:00Z,api,cpu,0.7\n';
    const result = await runCli(['ingest', '-', '--format', 'csv'], { input: csv, env: { KIWI_DB: db } });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('<stdin>: accepted 2, rejected 0');
    const store = new Store(db);
    expect(store.findSeries({ name: 'cpu', component: 'api' }).total).toBe(1);
    store.close();
  });

  it('says which file cannot be read, and goes on with the others', async () => {
    const dir = tempDir();
    const good = join(dir, 'good.jsonl');
    writeFileSync(good, metricLine(1));
    const result = await runCli(['ingest', join(dir, 'nope.jsonl'), good, '--db', join(dir, 'kiwi.db')]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/nope\.jsonl: cannot read \(ENOENT\)/);
    expect(result.stdout).toContain('good.jsonl: accepted 1');
  });
});

describe('kiwi settings and prune', () => {
  it('lists, sets with a reason, refuses bad values, and resets', async () => {
    const db = join(tempDir(), 'kiwi.db');
    const list = await runCli(['settings', '--db', db]);
    expect(list.stdout).toMatch(/^retention\.raw_days = 30 \(default\)/m);
    const set = await runCli(['settings', 'set', 'retention.raw_days', '7', '--reason', 'small disk', '--db', db]);
    expect(set.code).toBe(0);
    expect(set.stdout).toBe('retention.raw_days: 30 (default) -> 7\n');
    const bad = await runCli(['settings', 'set', 'retention.raw_days', '"a week"', '--db', db]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/retention\.raw_days: /);
    const unknown = await runCli(['settings', 'set', 'nope', '1', '--db', db]);
    expect(unknown.stderr).toMatch(/unknown setting "nope"/);
    const reset = await runCli(['settings', 'reset', 'retention.raw_days', '--db', db]);
    expect(reset).toMatchObject({ code: 0, stdout: 'retention.raw_days: 7 -> 30 (default)\n' });
    const store = new Store(db);
    expect(store.settingHistory('retention.raw_days').map((h) => h.reason)).toEqual([null, 'small disk']);
    store.close();
    const prune = await runCli(['prune', '--db', db]);
    expect(prune.code).toBe(0);
    expect(prune.stdout).toMatch(/^rolled up 0 minutes, deleted 0 points/);

    // the audit trail can be read without SQL: newest first, filtered by action (or a prefix), actor and time
    const audit = await runCli(['audit', '--action', 'settings.change', '--json', '--db', db]);
    expect(audit.code).toBe(0);
    const entries = audit.stdout.trim().split('\n').map((l) => JSON.parse(l) as { action: string; target: string; details: { new_value: unknown; reason: unknown } });
    expect(entries.map((e) => [e.action, e.target, e.details.new_value, e.details.reason])).toEqual([
      ['settings.change', 'retention.raw_days', null, null],
      ['settings.change', 'retention.raw_days', 7, 'small disk'],
    ]);
    const byPrefix = await runCli(['audit', '--action', 'settings.', '--limit', '1', '--db', db]);
    expect(byPrefix.stdout).toMatch(/^\S+Z cli:\S+ settings\.change retention\.raw_days \{"old_value":7,"new_value":null/);
    expect(byPrefix.stdout.trim().split('\n')).toHaveLength(1);
    const nobody = await runCli(['audit', '--actor', 'agent:nobody', '--since=-1h', '--db', db]);
    expect(nobody).toMatchObject({ code: 0, stdout: '' });
    // a relative time may follow its flag as its own word
    const lastHour = await runCli(['audit', '--action', 'settings.change', '--since', '-1h', '--limit', '1', '--db', db]);
    expect(lastHour).toMatchObject({ code: 0, stdout: byPrefix.stdout });
  });
});

describe('commands that read a store', () => {
  it('refuse a --db with no store behind it instead of creating an empty one', async () => {
    const dir = tempDir();
    const typo = join(dir, 'nested', 'kiwi.bd');
    for (const command of ['detect', 'explain', 'forecast', 'prune', 'audit']) {
      const args = command === 'explain' ? [command, '--start=-1h', '--db', typo] : [command, '--db', typo];
      const result = await runCli(args);
      expect(result.code, command).toBe(2);
      expect(result.stderr, command).toContain(`kiwi ${command}: no store at ${typo} (--db, else $KIWI_DB`);
    }
    expect(existsSync(join(dir, 'nested'))).toBe(false);
  });
});

describe('kiwi generate', () => {
  it('writes the same bytes for the same seed and end, with ground truth beside them', async () => {
    const dir = tempDir();
    const args = (out: string, seed: string) => ['generate', '--days', '1', '--seed', seed, '--end', '2026-03-01T00:00:00Z', '--incidents', 'latency_spike,memory_leak@-6h', '--out', out];
    const a = await runCli(args(join(dir, 'a.jsonl'), '3'));
    const b = await runCli(args(join(dir, 'b.jsonl'), '3'));
    const c = await runCli(args(join(dir, 'c.jsonl'), '4'));
    expect([a.code, b.code, c.code]).toEqual([0, 0, 0]);
    expect(a.stdout).toMatch(/records, 1 days ending 2026-03-01T00:00:00.000Z, seed 3, incidents: latency_spike, memory_leak/);
    const bytes = (name: string) => readFileSync(join(dir, name), 'utf8');
    expect(bytes('a.jsonl')).toBe(bytes('b.jsonl'));
    expect(bytes('a.jsonl')).not.toBe(bytes('c.jsonl'));
    const truth = JSON.parse(bytes('a.truth.json')) as { incidents: { type: string; root_cause: { component: string } }[] };
    expect(truth.incidents.map((i) => [i.type, i.root_cause.component])).toEqual([
      ['latency_spike', 'mcp-search'],
      ['memory_leak', 'worker'],
    ]);
    // what it writes, kiwi ingests without a single rejected line
    const ingest = await runCli(['ingest', join(dir, 'a.jsonl'), '--db', join(dir, 'kiwi.db'), '--strict']);
    expect(ingest.code).toBe(0);
    expect(ingest.stdout).toMatch(/rejected 0/);
  });

  it('refuses bad options with the option named', async () => {
    const out = join(tempDir(), 'x.jsonl');
    expect((await runCli(['generate', '--out', out, '--incidents', 'meteor_strike'])).stderr).toMatch(/--incidents: .*meteor_strike/);
    expect((await runCli(['generate', '--out', out, '--days', 'two'])).stderr).toMatch(/--days: "two" is not a positive number of days/);
    expect((await runCli(['generate', '--out', out, '--days=-1'])).stderr).toMatch(/--days: /);
    const partDay = await runCli(['generate', '--out', out, '--days', '0.25', '--end', '2026-03-01T00:00:00Z']);
    expect(partDay.stdout).toMatch(/0\.25 days ending/);
    expect((await runCli(['generate', '--out', out, '--end', 'later'])).stderr).toMatch(/--end: /);
    expect((await runCli(['generate'])).stderr).toMatch(/--out FILE is required/);
  });
});

describe('kiwi detect --csv', () => {
  it('scores every row causally, flags an injected spike, and reports unreadable rows', async () => {
    const dir = tempDir();
    const input = join(dir, 'series.csv');
    const rows = ['timestamp,value'];
    for (let i = 0; i < 3000; i++) {
      const noise = Math.sin(i * 12.9898) * 0.5; // deterministic jitter
      const value = i === 2500 ? 60 : 20 + 5 * Math.sin((2 * Math.PI * i) / 288) + noise;
      rows.push(`${new Date(Date.UTC(2026, 0, 1) + i * 300_000).toISOString()},${value.toFixed(3)}`);
    }
    rows.splice(1000, 0, 'not-a-time,1', '2026-02-01T00:00:00Z,lots');
    writeFileSync(input, rows.join('\n'));
    const out = join(dir, 'scored.csv');
    const result = await runCli(['detect', '--csv', input, '--out', out]);
    expect(result.code).toBe(1); // two rows could not be read
    expect(result.stderr).toContain(`${input}:1001: timestamp "not-a-time"`);
    expect(result.stderr).toContain(`${input}:1002: value "lots" is not a number`);
    expect(result.stdout).toMatch(/3000 rows scored, \d+ anomalies, 2 rejected/);
    const scored = readFileSync(out, 'utf8').trim().split('\n');
    expect(scored[0]).toBe('timestamp,value,anomaly_score,anomaly');
    expect(scored).toHaveLength(3001);
    const spike = scored[2501]!.split(',');
    expect(spike[1]).toBe('60.000');
    expect(Number(spike[2])).toBeGreaterThanOrEqual(0.5);
    expect(spike[3]).toBe('1');
    const flagged = scored.slice(1).filter((line) => line.endsWith(',1')).length;
    expect(flagged).toBeLessThanOrEqual(3);
    for (const line of scored.slice(1)) {
      const score = Number(line.split(',')[2]);
      expect(score >= 0 && score <= 1).toBe(true);
    }
  });

  it('writes to stdout with --out -, and stops quietly when its reader goes away (as under | head)', async () => {
    const dir = tempDir();
    const input = join(dir, 'long.csv');
    const start = Date.UTC(2026, 0, 1);
    writeFileSync(input, ['timestamp,value', ...Array.from({ length: 200_000 }, (_, i) => `${new Date(start + i * 60_000).toISOString()},${i % 50}`)].join('\n'));
    const child = startCli(['detect', '--csv', input, '--out', '-']);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const [first] = (await once(child.stdout!, 'data')) as [Buffer];
    expect(first.toString()).toMatch(/^timestamp,value,anomaly_score,anomaly\n2026-01-01T00:00:00.000Z,0,/);
    child.stdout!.destroy(); // the reader is gone: the next write fails with EPIPE
    expect(await waitForExit(child)).toEqual({ code: 0, signal: null });
    expect(stderr).toBe('');
  });

  it('needs both --csv and --out', async () => {
    const result = await runCli(['detect', '--csv', 'x.csv']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--csv FILE and --out FILE are required together/);
  });
});
