/**
 * `npm run bench:mcp`: round-trip latency (p50, p99) and calls per second of a cheap read-only
 * tool over stdio, against the reference server `@modelcontextprotocol/server-everything` and
 * its `echo` tool as the peer, measured in the same run.
 *
 * Each server is its own child process behind the SDK's StdioClientTransport, with one SDK
 * Client per server in this process, and the client lists the tools first as an agent does (so
 * it validates Kiwi's structured answers against their output schemas, which the echo tool has
 * none of). Kiwi's tool is `list_series` with `limit: 1` on a store holding one small series:
 * a count and one indexed page of the series table, the series' first and last points by
 * primary key, and an answer checked against its output schema; Kiwi also records every call
 * into its own store (self-telemetry), which is part of what is measured. A second Kiwi, with
 * `--no-self-telemetry`, is measured beside them as context, not as the result, and so is a
 * fixed-page server (bench/fixed-page-server.ts): the SDK with list_series' own schemas answering
 * Kiwi's page without reading anything, which shows what the protocol charges for that shape of
 * answer and so how much of the gap is Kiwi's own work.
 *
 * The servers are measured in alternating blocks (the order rotated every round), so machine
 * noise on these shared cores falls on all of them alike: first one call at a time, then with
 * CONCURRENCY calls in flight.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { Store } from '../src/store/store.js';
import { reportResult } from './result.js';

const ROUNDS = Number(process.env.BENCH_MCP_ROUNDS ?? 24);
const BLOCK = Number(process.env.BENCH_MCP_BLOCK ?? 250);
const WARMUP = 1_000;
const CONCURRENCY = 4;
const TARGET_RATIO = 1.2;

function findProjectRoot(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'node_modules'))) return dir;
    if (dirname(dir) === dir) return resolve(start, '..');
  }
}

const root = findProjectRoot(dirname(fileURLToPath(import.meta.url)));
const cli = join(root, 'dist', 'src', 'cli.js');
const peerDir = join(root, 'node_modules', '@modelcontextprotocol', 'server-everything');
const dir = mkdtempSync(join(tmpdir(), 'kiwi-bench-mcp-'));

type ToolResult = Awaited<ReturnType<Client['callTool']>>;

interface Server {
  label: string;
  tool: string;
  args: Record<string, unknown>;
  client: Client;
  transport: StdioClientTransport;
  stderr: string;
  /** Throws unless the answer is what this server should have said. */
  check: (result: ToolResult) => void;
  sequential: number[];
  sequentialMs: number;
  concurrent: number[];
  concurrentMs: number;
}

function packageVersion(path: string): string {
  return (JSON.parse(readFileSync(join(path, 'package.json'), 'utf8')) as { version: string }).version;
}

/** The peer's entry point, from its package.json `bin` (one entry) rather than a guessed path. */
function peerEntry(): string {
  const pkg = JSON.parse(readFileSync(join(peerDir, 'package.json'), 'utf8')) as { bin: string | Record<string, string> };
  const bin = typeof pkg.bin === 'string' ? pkg.bin : Object.values(pkg.bin)[0];
  if (!bin) throw new Error(`${peerDir}/package.json has no bin entry`);
  return join(peerDir, bin);
}

async function start(
  label: string,
  args: string[],
  tool: string,
  toolArgs: Record<string, unknown>,
  check: Server['check'],
): Promise<Server> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args,
    env: { ...process.env } as Record<string, string>,
    stderr: 'pipe',
  });
  const server: Server = {
    label,
    tool,
    args: toolArgs,
    client: new Client({ name: 'kiwi-bench-mcp', version: '1.0.0' }),
    transport,
    stderr: '',
    check,
    sequential: [],
    sequentialMs: 0,
    concurrent: [],
    concurrentMs: 0,
  };
  // Keep the pipe drained (a full stderr pipe would stall the server) and the tail for errors.
  transport.stderr?.on('data', (d: Buffer) => (server.stderr = (server.stderr + d.toString()).slice(-4000)));
  try {
    await server.client.connect(transport);
    const { tools } = await server.client.listTools();
    const described = tools.find((t) => t.name === tool);
    if (!described) throw new Error(`${label} has no tool ${tool}`);
    if (described.annotations?.readOnlyHint !== true) throw new Error(`${label}: ${tool} is not marked read-only`);
  } catch (err) {
    throw new Error(`${label} did not start: ${(err as Error).message}\n${server.stderr}`);
  }
  return server;
}

async function call(server: Server): Promise<number> {
  const t = performance.now();
  const result = await server.client.callTool({ name: server.tool, arguments: server.args });
  const ms = performance.now() - t;
  server.check(result);
  return ms;
}

async function sequentialBlock(server: Server, n: number, into: number[]): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < n; i++) into.push(await call(server));
  return performance.now() - started;
}

async function concurrentBlock(server: Server, n: number, into: number[]): Promise<number> {
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, w) => {
      for (let i = w; i < n; i += CONCURRENCY) into.push(await call(server));
    }),
  );
  return performance.now() - started;
}

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

function seedStore(db: string): void {
  const file = join(dir, 'seed.jsonl');
  // The last hour: older points would be rolled up by the retention pass `kiwi serve` runs at start.
  const T0 = Date.now() - 3600_000;
  const lines = Array.from({ length: 360 }, (_, i) =>
    JSON.stringify({ type: 'metric', ts: T0 + i * 10_000, name: 'bench.latency', component: 'api', labels: { route: '/a' }, value: 100 + (i % 7) }),
  );
  writeFileSync(file, lines.join('\n') + '\n');
  execFileSync(process.execPath, [cli, 'ingest', file, '--db', db], { stdio: ['ignore', 'ignore', 'pipe'] });
}

function checkKiwi(result: ToolResult): void {
  const answer = result.structuredContent as { series?: { name: string; last_value: number | null }[] } | undefined;
  const first = answer?.series?.[0];
  if (result.isError || first?.name !== 'bench.latency' || first.last_value === null) {
    throw new Error(`unexpected list_series answer: ${JSON.stringify(result).slice(0, 300)}`);
  }
}

function checkEcho(result: ToolResult): void {
  const content = result.content as { type: string; text?: string }[];
  if (result.isError || content[0]?.text !== 'Echo: ping') throw new Error(`unexpected echo answer: ${JSON.stringify(result).slice(0, 300)}`);
}

/** Self-telemetry is part of what was measured: show that Kiwi did record every call. */
function reportSelfTelemetry(db: string, calls: number): void {
  const store = new Store(db);
  try {
    const recorded = store.requestStats('kiwi', 0, Date.now() + 1).count;
    console.log(`\nKiwi recorded ${recorded.toLocaleString('en')} spans in its own store for ${calls.toLocaleString('en')} tools/call requests`);
    if (recorded !== calls) throw new Error(`self-telemetry recorded ${recorded} calls of ${calls}`);
  } finally {
    store.close();
  }
}

async function main(): Promise<void> {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build (npm run bench:mcp does)`);
  if (!existsSync(peerDir)) throw new Error(`${peerDir} is missing: npm install (it is a devDependency)`);
  const dbOn = join(dir, 'kiwi.db');
  const dbOff = join(dir, 'kiwi-no-self.db');
  seedStore(dbOn);
  seedStore(dbOff);

  const kiwiArgs = { limit: 1 };
  const servers: Server[] = [];
  try {
    servers.push(await start('Kiwi', [cli, 'serve', '--db', dbOn], 'list_series', kiwiArgs, checkKiwi));
    servers.push(
      await start('Kiwi --no-self-telemetry', [cli, 'serve', '--db', dbOff, '--no-self-telemetry'], 'list_series', kiwiArgs, checkKiwi),
    );
    servers.push(await start(`server-everything ${packageVersion(peerDir)}`, [peerEntry(), 'stdio'], 'echo', { message: 'ping' }, checkEcho));
    const kiwiPage = await servers[0]!.client.callTool({ name: 'list_series', arguments: kiwiArgs });
    servers.push(
      await start('SDK, fixed page (context)', [join(root, 'dist', 'bench', 'fixed-page-server.js'), JSON.stringify(kiwiPage)], 'list_series', kiwiArgs, checkKiwi),
    );
    const [kiwi, kiwiQuiet, peer, fixedPage] = servers as [Server, Server, Server, Server];
    for (const s of servers) await sequentialBlock(s, WARMUP, []);
    for (const s of servers) await concurrentBlock(s, WARMUP / 4, []);

    const loadBefore = loadavg();
    for (let round = 0; round < ROUNDS; round++) {
      const order = servers.map((_, i) => servers[(i + round) % servers.length]!);
      for (const s of order) s.sequentialMs += await sequentialBlock(s, BLOCK, s.sequential);
      for (const s of order) s.concurrentMs += await concurrentBlock(s, BLOCK, s.concurrent);
    }
    const loadAfter = loadavg();

    const stats = (s: Server, mode: 'sequential' | 'concurrent') => {
      const latencies = s[mode];
      return {
        p50: quantile(latencies, 0.5),
        p99: quantile(latencies, 0.99),
        perSecond: latencies.length / (s[`${mode}Ms`] / 1000),
      };
    };
    const ms = (x: number) => `${x.toFixed(3)} ms`;
    const rate = (x: number) => `${Math.round(x).toLocaleString('en')} calls/s`;

    console.log(
      `servers over stdio, one SDK ${packageVersion(join(root, 'node_modules', '@modelcontextprotocol', 'sdk'))} client each, node ${process.version}; ` +
        `${ROUNDS} rounds of ${BLOCK} calls per server and mode, alternating, after ${WARMUP} warm-up calls`,
    );
    console.log(`machine: load average ${loadBefore[0]!.toFixed(1)} before, ${loadAfter[0]!.toFixed(1)} after (1 min), 2 cores shared with other work`);
    console.log('');
    console.log('| server | tool | in flight | p50 | p99 | calls/s | p50 / peer p50 | target |');
    console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const mode of ['sequential', 'concurrent'] as const) {
      const peerStats = stats(peer, mode);
      for (const s of servers) {
        const st = stats(s, mode);
        const ratio = st.p50 / peerStats.p50;
        const isResult = s === kiwi && mode === 'sequential';
        const target = isResult ? `<= ${TARGET_RATIO}x ${ratio <= TARGET_RATIO ? 'ok' : 'MISSED'}` : '';
        console.log(
          `| ${s.label} | ${s.tool} | ${mode === 'sequential' ? 1 : CONCURRENCY} | ${ms(st.p50)} | ${ms(st.p99)} | ${rate(st.perSecond)} | ` +
            `${s === peer ? '(peer)' : `${ratio.toFixed(2)}x`} | ${target} |`,
        );
      }
    }

    const seq = stats(kiwi, 'sequential');
    const seqPeer = stats(peer, 'sequential');
    const seqQuiet = stats(kiwiQuiet, 'sequential');
    const seqFixed = stats(fixedPage, 'sequential');
    const conc = stats(kiwi, 'concurrent');
    const concPeer = stats(peer, 'concurrent');
    const peerName = 'server-everything echo';
    reportResult({
      bench: 'mcp',
      measure: 'stdio round trip p50, list_series limit 1, one call in flight',
      value: ms(seq.p50),
      baseline: `${ms(seqPeer.p50)} (${peerName})`,
      ratio: `${(seq.p50 / seqPeer.p50).toFixed(2)}x`,
      target: `<= ${TARGET_RATIO}x`,
      ok: seq.p50 / seqPeer.p50 <= TARGET_RATIO,
    });
    reportResult({
      bench: 'mcp',
      measure: 'stdio round trip p99, one call in flight',
      value: ms(seq.p99),
      baseline: `${ms(seqPeer.p99)} (${peerName})`,
      ratio: `${(seq.p99 / seqPeer.p99).toFixed(2)}x`,
    });
    reportResult({
      bench: 'mcp',
      measure: 'calls/s, one call in flight',
      value: rate(seq.perSecond),
      baseline: `${rate(seqPeer.perSecond)} (${peerName})`,
      ratio: `${(seq.perSecond / seqPeer.perSecond).toFixed(2)}x`,
    });
    reportResult({
      bench: 'mcp',
      measure: `calls/s, ${CONCURRENCY} calls in flight`,
      value: rate(conc.perSecond),
      baseline: `${rate(concPeer.perSecond)} (${peerName})`,
      ratio: `${(conc.perSecond / concPeer.perSecond).toFixed(2)}x`,
    });
    reportResult({
      bench: 'mcp',
      measure: 'stdio round trip p50 with --no-self-telemetry (context)',
      value: ms(seqQuiet.p50),
      baseline: `${ms(seqPeer.p50)} (${peerName})`,
      ratio: `${(seqQuiet.p50 / seqPeer.p50).toFixed(2)}x`,
    });
    reportResult({
      bench: 'mcp',
      measure: 'stdio round trip p50, SDK answering a fixed list_series page (context)',
      value: ms(seqFixed.p50),
      baseline: `${ms(seqPeer.p50)} (${peerName})`,
      ratio: `${(seqFixed.p50 / seqPeer.p50).toFixed(2)}x`,
    });
    await Promise.allSettled(servers.map((s) => s.client.close()));
    // one call more: the page the fixed-page server answers with
    reportSelfTelemetry(dbOn, 1 + WARMUP + WARMUP / 4 + kiwi.sequential.length + kiwi.concurrent.length);
  } catch (err) {
    const tails = servers.map((s) => `--- ${s.label} stderr (tail):\n${s.stderr.trim() || '(empty)'}`).join('\n');
    throw new Error(`${(err as Error).message}\n${tails}`);
  } finally {
    await Promise.allSettled(servers.map((s) => s.client.close()));
  }
}

main()
  .then(() => rmSync(dir, { recursive: true, force: true }))
  .catch((err: unknown) => {
    rmSync(dir, { recursive: true, force: true });
    console.error(err);
    process.exit(1);
  });
