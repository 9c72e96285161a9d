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
 * into its own store (self-telemetry), which is part of what is measured. Measured beside them as
 * context, not as the result: a second Kiwi with `--no-self-telemetry`; the peer's own read tool
 * with an output schema (`get-structured-content`), the like-for-like reference for a tool that
 * answers structured content; and a fixed-page server (bench/fixed-page-server.ts), the SDK with
 * list_series' own schemas answering Kiwi's page without reading anything, which shows what the
 * protocol charges for that shape of answer and so how much of the gap is Kiwi's own work.
 *
 * The servers are measured in alternating blocks (the order rotated every round), so machine
 * noise on these shared cores falls on all of them alike: first one call at a time, then with
 * CONCURRENCY calls in flight.
 *
 * Where the scheduler puts each process decides a round trip more than any code does: a server
 * woken on the client's core answers in about a third of the time of one woken on an idle core,
 * and left to itself the scheduler keeps a process on one side or the other for seconds at a
 * time, so unpinned runs gave the same server 1.1x one run and 2x the next. So on Linux, with
 * `taskset` and two CPUs allowed, every process is pinned and each layout is measured in turn:
 * `same core` (client and server share one CPU: the round trip is the CPU work of both) and
 * `separate cores` (the server on the other CPU: the round trip adds waking it). The target is
 * judged in both. Without `taskset` the run is one `unpinned` layout and says so.
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
const MODES = ['sequential', 'concurrent'] as const;
type Mode = (typeof MODES)[number];

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

/** Where the client and the servers run: both CPUs given, or null when left to the scheduler. */
interface Layout {
  name: 'same core' | 'separate cores' | 'unpinned';
  clientCpu: number | null;
  serverCpu: number | null;
}

interface Timings {
  latencies: number[];
  ms: number;
}

interface Server {
  label: string;
  tool: string;
  args: Record<string, unknown>;
  client: Client;
  transport: StdioClientTransport;
  stderr: string;
  /** Throws unless the answer is what this server should have said. */
  check: (result: ToolResult) => void;
  /** By layout name, then mode. */
  timings: Map<string, Record<Mode, Timings>>;
}

/** The CPUs this process may run on, from `taskset`; null where there is no `taskset`. */
function allowedCpus(): number[] | null {
  if (process.platform !== 'linux') return null;
  try {
    const out = execFileSync('taskset', ['-cp', String(process.pid)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const list = out.slice(out.lastIndexOf(':') + 1).trim();
    return list.split(',').flatMap((part) => {
      const [from, to] = part.split('-').map(Number) as [number, number?];
      return Array.from({ length: (to ?? from) - from + 1 }, (_, i) => from + i);
    });
  } catch {
    return null;
  }
}

function layouts(): Layout[] {
  const cpus = allowedCpus();
  if (!cpus || cpus.length < 2) return [{ name: 'unpinned', clientCpu: null, serverCpu: null }];
  const [a, b] = cpus as [number, number];
  return [
    { name: 'same core', clientCpu: a, serverCpu: a },
    { name: 'separate cores', clientCpu: a, serverCpu: b },
  ];
}

/** Every thread of `pid` onto `cpu`. */
function pin(pid: number, cpu: number): void {
  execFileSync('taskset', ['-a', '-cp', String(cpu), String(pid)], { stdio: 'ignore' });
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
    timings: new Map(),
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

function timingsOf(server: Server, layout: Layout): Record<Mode, Timings> {
  let t = server.timings.get(layout.name);
  if (!t) server.timings.set(layout.name, (t = { sequential: { latencies: [], ms: 0 }, concurrent: { latencies: [], ms: 0 } }));
  return t;
}

async function call(server: Server): Promise<number> {
  const t = performance.now();
  const result = await server.client.callTool({ name: server.tool, arguments: server.args });
  const ms = performance.now() - t;
  server.check(result);
  return ms;
}

async function sequentialBlock(server: Server, n: number, into: Timings): Promise<void> {
  const started = performance.now();
  for (let i = 0; i < n; i++) into.latencies.push(await call(server));
  into.ms += performance.now() - started;
}

async function concurrentBlock(server: Server, n: number, into: Timings): Promise<void> {
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, w) => {
      for (let i = w; i < n; i += CONCURRENCY) into.latencies.push(await call(server));
    }),
  );
  into.ms += performance.now() - started;
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

function checkStructuredPeer(result: ToolResult): void {
  const weather = result.structuredContent as { temperature?: number } | undefined;
  if (result.isError || typeof weather?.temperature !== 'number') throw new Error(`unexpected get-structured-content answer: ${JSON.stringify(result).slice(0, 300)}`);
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

interface Stats {
  p50: number;
  p99: number;
  perSecond: number;
}

function statsOf(server: Server, layout: Layout, mode: Mode): Stats {
  const { latencies, ms } = timingsOf(server, layout)[mode];
  return { p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), perSecond: latencies.length / (ms / 1000) };
}

async function measure(servers: Server[], layout: Layout): Promise<void> {
  if (layout.clientCpu !== null) pin(process.pid, layout.clientCpu);
  if (layout.serverCpu !== null) {
    for (const s of servers) pin(s.transport.pid!, layout.serverCpu);
  }
  const discard = (): Timings => ({ latencies: [], ms: 0 });
  for (const s of servers) await sequentialBlock(s, WARMUP, discard());
  for (const s of servers) await concurrentBlock(s, WARMUP / 4, discard());
  for (let round = 0; round < ROUNDS; round++) {
    const order = servers.map((_, i) => servers[(i + round) % servers.length]!);
    for (const s of order) await sequentialBlock(s, BLOCK, timingsOf(s, layout).sequential);
    for (const s of order) await concurrentBlock(s, BLOCK, timingsOf(s, layout).concurrent);
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
    servers.push(
      await start(
        `server-everything ${packageVersion(peerDir)}`,
        [peerEntry(), 'stdio'],
        'get-structured-content',
        { location: 'Chicago' },
        checkStructuredPeer,
      ),
    );
    const kiwiPage = await servers[0]!.client.callTool({ name: 'list_series', arguments: kiwiArgs });
    servers.push(
      await start('SDK, fixed page (context)', [join(root, 'dist', 'bench', 'fixed-page-server.js'), JSON.stringify(kiwiPage)], 'list_series', kiwiArgs, checkKiwi),
    );
    const [kiwi, kiwiQuiet, peer, structuredPeer, fixedPage] = servers as [Server, Server, Server, Server, Server];

    const runLayouts = layouts();
    const loadBefore = loadavg();
    for (const layout of runLayouts) await measure(servers, layout);
    const loadAfter = loadavg();

    const ms = (x: number) => `${x.toFixed(3)} ms`;
    const rate = (x: number) => `${Math.round(x).toLocaleString('en')} calls/s`;
    const pinning = runLayouts
      .map((l) => (l.clientCpu === null ? `${l.name} (taskset unavailable: the scheduler placed every process)` : `${l.name} (client on CPU ${l.clientCpu}, servers on CPU ${l.serverCpu})`))
      .join(', then ');
    console.log(
      `servers over stdio, one SDK ${packageVersion(join(root, 'node_modules', '@modelcontextprotocol', 'sdk'))} client each, node ${process.version}; ` +
        `per layout ${ROUNDS} rounds of ${BLOCK} calls per server and mode, alternating, after ${WARMUP} warm-up calls`,
    );
    console.log(`layouts: ${pinning}`);
    console.log(`machine: load average ${loadBefore[0]!.toFixed(1)} before, ${loadAfter[0]!.toFixed(1)} after (1 min), 2 cores shared with other work`);
    console.log('');
    console.log('| layout | server | tool | in flight | p50 | p99 | calls/s | p50 / peer p50 | p50 / fixed page p50 | target |');
    console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const layout of runLayouts) {
      for (const mode of MODES) {
        const peerStats = statsOf(peer, layout, mode);
        const fixedStats = statsOf(fixedPage, layout, mode);
        for (const s of servers) {
          const st = statsOf(s, layout, mode);
          const ratio = st.p50 / peerStats.p50;
          const isResult = s === kiwi && mode === 'sequential';
          const target = isResult ? `<= ${TARGET_RATIO}x ${ratio <= TARGET_RATIO ? 'ok' : 'MISSED'}` : '';
          const overFixed = s === fixedPage || s === peer ? '' : `${(st.p50 / fixedStats.p50).toFixed(2)}x`;
          console.log(
            `| ${layout.name} | ${s.label} | ${s.tool} | ${mode === 'sequential' ? 1 : CONCURRENCY} | ${ms(st.p50)} | ${ms(st.p99)} | ${rate(st.perSecond)} | ` +
              `${s === peer ? '(peer)' : `${ratio.toFixed(2)}x`} | ${overFixed} | ${target} |`,
          );
        }
      }
    }

    const peerName = 'server-everything echo';
    for (const layout of runLayouts) {
      const seq = statsOf(kiwi, layout, 'sequential');
      const seqPeer = statsOf(peer, layout, 'sequential');
      const seqQuiet = statsOf(kiwiQuiet, layout, 'sequential');
      const seqFixed = statsOf(fixedPage, layout, 'sequential');
      const conc = statsOf(kiwi, layout, 'concurrent');
      const concPeer = statsOf(peer, layout, 'concurrent');
      const at = `, ${layout.name}`;
      reportResult({
        bench: 'mcp',
        measure: `stdio round trip p50, list_series limit 1, one call in flight${at}`,
        value: ms(seq.p50),
        baseline: `${ms(seqPeer.p50)} (${peerName})`,
        ratio: `${(seq.p50 / seqPeer.p50).toFixed(2)}x`,
        target: `<= ${TARGET_RATIO}x`,
        ok: seq.p50 / seqPeer.p50 <= TARGET_RATIO,
      });
      reportResult({
        bench: 'mcp',
        measure: `stdio round trip p99, one call in flight${at}`,
        value: ms(seq.p99),
        baseline: `${ms(seqPeer.p99)} (${peerName})`,
        ratio: `${(seq.p99 / seqPeer.p99).toFixed(2)}x`,
      });
      reportResult({
        bench: 'mcp',
        measure: `calls/s, ${CONCURRENCY} calls in flight${at}`,
        value: rate(conc.perSecond),
        baseline: `${rate(concPeer.perSecond)} (${peerName})`,
        ratio: `${(conc.perSecond / concPeer.perSecond).toFixed(2)}x`,
      });
      const seqStructured = statsOf(structuredPeer, layout, 'sequential');
      reportResult({
        bench: 'mcp',
        measure: `stdio round trip p50 against the peer's structured read tool (context)${at}`,
        value: ms(seq.p50),
        baseline: `${ms(seqStructured.p50)} (server-everything get-structured-content)`,
        ratio: `${(seq.p50 / seqStructured.p50).toFixed(2)}x`,
      });
      reportResult({
        bench: 'mcp',
        measure: `stdio round trip p50, SDK answering a fixed list_series page (context)${at}`,
        value: ms(seqFixed.p50),
        baseline: `${ms(seqPeer.p50)} (${peerName})`,
        ratio: `${(seqFixed.p50 / seqPeer.p50).toFixed(2)}x`,
      });
      reportResult({
        bench: 'mcp',
        measure: `stdio round trip p50, Kiwi over that fixed page (context)${at}`,
        value: ms(seq.p50),
        baseline: `${ms(seqFixed.p50)} (SDK, fixed page)`,
        ratio: `${(seq.p50 / seqFixed.p50).toFixed(2)}x`,
      });
      reportResult({
        bench: 'mcp',
        measure: `stdio round trip p50 with --no-self-telemetry (context)${at}`,
        value: ms(seqQuiet.p50),
        baseline: `${ms(seqPeer.p50)} (${peerName})`,
        ratio: `${(seqQuiet.p50 / seqPeer.p50).toFixed(2)}x`,
      });
    }
    await Promise.allSettled(servers.map((s) => s.client.close()));
    const kiwiCalls = [...kiwi.timings.values()].reduce(
      (sum, t) => sum + WARMUP + WARMUP / 4 + t.sequential.latencies.length + t.concurrent.latencies.length,
      0,
    );
    // one call more: the page the fixed-page server answers with
    reportSelfTelemetry(dbOn, 1 + kiwiCalls);
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
