/**
 * `kiwi demo` (`npm run demo`): a fresh store seeded with a generated week of an agent platform
 * (all five incidents injected), then a real MCP client that spawns `kiwi serve` over stdio and
 * walks what an agent would ask, printing a compact transcript.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { INCIDENT_TYPES, writeScenario } from '../generate/index.js';
import { ingestFile } from '../ingest/ingest.js';
import { SERVER_INFO } from '../mcp/server.js';
import { Store } from '../store/store.js';

export interface DemoOptions {
  dir: string;
  days: number;
  seed: number;
  /** Lines of each answer's text shown in the transcript. */
  maxLines?: number;
  out?: (text: string) => void;
}

/** How to start this same Kiwi as a child process (built JS, or TS through tsx in development). */
export function kiwiCommand(): { command: string; args: string[] } {
  const cli = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../cli.ts' : '../cli.js', import.meta.url));
  const args = cli.endsWith('.ts') ? ['--import', 'tsx', cli] : [cli];
  return { command: process.execPath, args };
}

export async function runDemo(options: DemoOptions): Promise<number> {
  const out = options.out ?? ((text: string) => process.stdout.write(`${text}\n`));
  const maxLines = options.maxLines ?? 14;
  const dir = resolve(options.dir);
  const db = join(dir, 'kiwi.db');
  mkdirSync(dir, { recursive: true });
  for (const suffix of ['', '-wal', '-shm']) rmSync(db + suffix, { force: true });

  const stepMs = 60_000;
  const end = Math.floor(Date.now() / stepMs) * stepMs;
  const scenario = join(dir, 'scenario.jsonl');
  const started = performance.now();
  const { lines, truthPath } = await writeScenario(
    { days: options.days, seed: options.seed, end, stepMs, incidents: INCIDENT_TYPES.map((type) => ({ type })) },
    scenario,
  );
  out(`# Kiwi ${SERVER_INFO.version} demo`);
  out(`generated ${options.days} days of an agent platform with ${INCIDENT_TYPES.join(', ')}: ${lines} records -> ${scenario}`);
  out(`ground truth: ${truthPath}`);

  const store = new Store(db);
  const summary = await ingestFile(store, scenario);
  store.close();
  out(
    `ingested into ${db}: ${summary.written.metrics} points, ${summary.written.events} events, ${summary.written.spans} spans ` +
      `(${((performance.now() - started) / 1000).toFixed(1)} s so far)`,
  );

  const { command, args } = kiwiCommand();
  const transport = new StdioClientTransport({
    command,
    args: [...args, 'serve', '--db', db],
    env: { ...process.env, KIWI_LOG_LEVEL: 'warn' } as Record<string, string>,
    stderr: 'inherit',
  });
  const client = new Client({ name: 'kiwi-demo', version: SERVER_INFO.version });
  await client.connect(transport);
  const { tools } = await client.listTools();
  out(`\nconnected to \`kiwi serve\` over stdio; tools: ${tools.map((t) => t.name).join(', ')}`);

  const call = async (name: string, args: Record<string, unknown>) => {
    out(`\n> ${name} ${JSON.stringify(args)}`);
    const result = await client.callTool({ name, arguments: args });
    const text = (result.content as { type: string; text?: string }[]).find((c) => c.type === 'text')?.text ?? '';
    const shown = text.split('\n');
    for (const line of shown.slice(0, maxLines)) out(`  ${line}`);
    if (shown.length > maxLines) out(`  … ${shown.length - maxLines} more lines`);
    if (result.isError) out('  (the tool reported an error)');
    return result;
  };

  try {
    await call('get_system_health', {});
    await call('list_series', { name_prefix: 'process.memory' });
    await call('query_metrics', { name: 'process.memory.usage', component: 'worker', from: '-12h', bucket: '1h' });
    await call('search_events', { kind: 'error', min_level: 'error', limit: 5 });
    await call('search_events', { kind: 'connection', component: 'mcp-github', limit: 4 });
    await call('search_events', { kind: ['config', 'deploy'], from: '-2h' });
    await call('query_metrics', { name: 'not-a-metric', from: 'yesterday' });
    await call('get_system_health', { component: 'kiwi' });
  } finally {
    await client.close();
  }
  out(`\nThe session above is now part of Kiwi's own telemetry (component "kiwi") in ${db}.`);
  return 0;
}
