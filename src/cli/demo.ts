/**
 * `kiwi demo` (`npm run demo`): the loop an agent lives, against a real `kiwi serve` over stdio.
 *
 * A fresh store is seeded with a generated week of an agent platform with five incidents, up to
 * 15 minutes ago. A real MCP client then detects, explains each anomaly, forecasts, and runs a
 * directive (plan, execute, approval by a human at the command line). The demo also plays the
 * simulated platform: when Kiwi raises mcp-search's timeout, the platform's next 15 minutes are
 * written without the latency incident, and detection shows it healed while the rest stay open.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import {
  DEFAULT_OFFSETS_MS,
  EXPECTED_ANOMALY,
  generateRecords,
  INCIDENT_TYPES,
  offsetPlacing,
  WORKER_MEMORY_LIMIT_BYTES,
  writeScenario,
  type IncidentType,
  type ScenarioOptions,
  type ScenarioTruth,
} from '../generate/index.js';
import { ingestFile } from '../ingest/ingest.js';
import type { TelemetryRecord } from '../ingest/records.js';
import { SERVER_INFO } from '../mcp/server.js';
import { readSetting, writeSetting } from '../settings.js';
import { Store } from '../store/store.js';

export interface DemoOptions {
  dir: string;
  days: number;
  seed: number;
  /** Lines of each answer's text shown in the transcript. */
  maxLines?: number;
  out?: (text: string) => void;
}

export interface DemoOutcome {
  truth: ScenarioTruth;
  /** What detect_anomalies found first. */
  detected: { id: string; type: string; component: string; severity: string }[];
  /** Per injected incident: the anomaly found for it and the top root-cause candidate. */
  incidents: { type: IncidentType; anomaly_id: string | null; root_cause: string; top_candidate: string | null; source: string | null }[];
  /** The worker's out-of-memory forecast against the generator's truth. */
  oom: { forecast_hours: number | null; true_hours: number; error: number | null };
  directive: { run_id: string; planned: string; after_execute: string; final: string; timeout_before: unknown; timeout_after: unknown; audited: string[] };
  /** After the fix: latency anomalies closed, and what stays open. */
  healed: { resolved: string[]; still_open: string[] };
  kiwi_requests: number;
  charts: string[];
}

const MINUTE = 60_000;
/** The incidents are seen up to this long ago; the platform's recovery fills the gap. */
const RECOVERY_MS = 15 * MINUTE;

/** How to start this same Kiwi as a child process (built JS, or TS through tsx in development). */
export function kiwiCommand(): { command: string; args: string[] } {
  const cli = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../cli.ts' : '../cli.js', import.meta.url));
  const args = cli.endsWith('.ts') ? ['--import', 'tsx', cli] : [cli];
  return { command: process.execPath, args };
}

const DEMO_POLICY = `# Written by kiwi demo: what the demo's agent and its operator may do.
grants:
  "*": [read:metrics]
  "agent:kiwi-demo": [read:metrics, write:settings, write:anomalies, write:events, execute:script, call:tool]
  "cli:*": [read:metrics, write:settings, write:anomalies, write:events, execute:script, call:tool]
approval:
  agents_may_approve: false
`;

type Structured = Record<string, unknown>;

export async function runDemo(options: DemoOptions): Promise<{ code: number; outcome: DemoOutcome }> {
  const out = options.out ?? ((text: string) => process.stdout.write(`${text}\n`));
  const maxLines = options.maxLines ?? 12;
  const dir = resolve(options.dir);
  const db = join(dir, 'kiwi.db');
  mkdirSync(dir, { recursive: true });
  for (const suffix of ['', '-wal', '-shm']) rmSync(db + suffix, { force: true });
  const policyPath = join(dir, 'policy.yaml');
  writeFileSync(policyPath, DEMO_POLICY);

  // ------------------------------------------------------------ the platform's week, up to 15 minutes ago
  const now = Math.floor(Date.now() / MINUTE) * MINUTE;
  const seenUntil = now - RECOVERY_MS;
  // 15:00 for the simulated users: a busy afternoon, whatever the hour here
  const utcOffsetHours = offsetPlacing(now, 15);
  const scenario: ScenarioOptions = {
    days: options.days,
    seed: options.seed,
    end: seenUntil,
    stepMs: MINUTE,
    incidents: INCIDENT_TYPES.map((type) => ({ type })),
    utcOffsetHours,
  };
  const started = performance.now();
  const scenarioFile = join(dir, 'scenario.jsonl');
  const { lines, truthPath } = await writeScenario(scenario, scenarioFile);
  const truth = JSON.parse(readFileSync(truthPath, 'utf8')) as ScenarioTruth;
  const store = new Store(db);
  const ingested = await ingestFile(store, scenarioFile);
  writeSetting(store, 'forecast.memory_limit_bytes', { worker: WORKER_MEMORY_LIMIT_BYTES }, 'demo', "the worker's container limit");
  out(`# Kiwi ${SERVER_INFO.version} demo`);
  out(
    `A generated agent platform (3 agents, 3 MCP servers, a permission layer, a worker): ${options.days} days up to 15 min ago, ` +
      `${lines} records with ${INCIDENT_TYPES.join(', ')} injected; ground truth in ${truthPath}.`,
  );
  out(
    `Ingested ${ingested.written.metrics} points, ${ingested.written.events} events, ${ingested.written.spans} spans into ${db} ` +
      `(${((performance.now() - started) / 1000).toFixed(1)} s).`,
  );

  // ------------------------------------------------------------ an agent connects
  const { command, args } = kiwiCommand();
  const transport = new StdioClientTransport({
    command,
    args: [...args, 'serve', '--db', db],
    env: { ...process.env, KIWI_LOG_LEVEL: 'warn', KIWI_POLICY: policyPath } as Record<string, string>,
    stderr: 'inherit',
  });
  const client = new Client({ name: 'kiwi-demo', version: SERVER_INFO.version });
  await client.connect(transport);
  out(`\nAn agent (MCP client "kiwi-demo") started \`kiwi serve\` over stdio.`);

  const show = (text: string, limit = maxLines) => {
    const all = text.split('\n');
    for (const line of all.slice(0, limit)) out(`  ${line}`);
    if (all.length > limit) out(`  … ${all.length - limit} more lines`);
  };
  const call = async (name: string, toolArgs: Structured, limit = maxLines): Promise<CallToolResult & { structuredContent?: Structured }> => {
    out(`\n> ${name} ${JSON.stringify(toolArgs)}`);
    const result = (await client.callTool({ name, arguments: toolArgs })) as CallToolResult & { structuredContent?: Structured };
    const text = result.content.find((c): c is { type: 'text'; text: string } => c.type === 'text')?.text ?? '';
    show(text, limit);
    if (result.isError) throw new Error(`${name} failed: ${text}`);
    return result;
  };

  const charts: string[] = [];
  try {
    // 1. what is wrong
    const detection = (await call('detect_anomalies', {}, 16)).structuredContent!;
    type Suggested = { directive: string; inputs: Structured } | null;
    const detected = (detection.anomalies as { id: string; type: string; component: string; severity: string; suggested_action: Suggested }[]).map(
      ({ id, type, component, severity, suggested_action }) => ({ id, type, component, severity, suggested_action }),
    );

    // 2. why: one root-cause analysis per injected incident's anomaly
    const incidents: DemoOutcome['incidents'] = [];
    for (const incident of truth.incidents) {
      const expected = EXPECTED_ANOMALY[incident.type];
      const anomaly = detected.find((a) => a.type === expected.type && a.component === expected.component);
      if (!anomaly) {
        out(`\n(no ${expected.type} on ${expected.component} was detected for the injected ${incident.type})`);
        incidents.push({ type: incident.type, anomaly_id: null, root_cause: incident.root_cause.component, top_candidate: null, source: null });
        continue;
      }
      const explained = (await call('analyze_root_cause', { anomaly_id: anomaly.id, limit: 3 }, 6)).structuredContent!;
      const candidates = explained.candidates as { component: string }[];
      incidents.push({
        type: incident.type,
        anomaly_id: anomaly.id,
        root_cause: incident.root_cause.component,
        top_candidate: candidates[0]?.component ?? null,
        source: typeof explained.source === 'string' ? explained.source : null,
      });
    }

    // 3. what breaks next
    const forecast = await call('forecast_failure', { target: 'all', horizon: '24h' }, 14);
    const pngs = forecast.content.filter((c): c is { type: 'image'; data: string; mimeType: string } => c.type === 'image');
    const chartMeta = (forecast.structuredContent!.charts as { target: string; component: string }[]) ?? [];
    pngs.forEach((png, i) => {
      const meta = chartMeta[i];
      const file = join(dir, `forecast-${meta?.target ?? i}-${meta?.component ?? 'chart'}.png`);
      writeFileSync(file, Buffer.from(png.data, 'base64'));
      charts.push(file);
    });
    if (charts.length) out(`  charts: ${charts.join(', ')}`);
    const memory = (forecast.structuredContent!.forecasts as { target: string; component: string; memory?: { hours_to_oom: { estimate: number } | null } }[]).find(
      (f) => f.target === 'memory' && f.component === 'worker',
    );
    const leak = truth.incidents.find((i) => i.type === 'memory_leak');
    const oomAt = leak && 'oom_at_ms' in leak.details ? (leak.details.oom_at_ms as number) : null;
    const trueHours = oomAt === null ? NaN : (oomAt - seenUntil) / 3_600_000;
    const forecastHours = memory?.memory?.hours_to_oom?.estimate ?? null;
    // hours_to_oom is counted from the worker's latest data point: the end of the week seen
    const oom = { forecast_hours: forecastHours, true_hours: trueHours, error: forecastHours === null ? null : (forecastHours - trueHours) / trueHours };

    // 4. act: run what detection suggests for the latency spike on mcp-search (with a short verify delay for the demo)
    const suggested = detected.find((a) => a.type === 'latency_spike' && a.component === 'mcp-search')?.suggested_action ?? null;
    if (!suggested) throw new Error('demo: no directive is suggested for the latency spike on mcp-search');
    const directiveInputs = { ...suggested.inputs, verify_delay: '5s' };
    const planned = (await call('run_directive', { name: suggested.directive, inputs: directiveInputs }, 12)).structuredContent!;
    const executing = (await call('run_directive', { name: suggested.directive, inputs: directiveInputs, mode: 'execute' }, 6)).structuredContent!;
    const runId = String(executing.id);
    const timeoutBefore = readSetting(store, 'mcp.timeout_ms')['mcp-search'] ?? null;

    out(`\n$ kiwi directive approve ${runId}     # a human operator approves at the command line (same KIWI_POLICY as the server)`);
    const approval = runCli([...args, 'directive', 'approve', runId, '--db', db], policyPath);
    // the simulated platform reacts to Kiwi's change: its next 15 minutes run without the latency incident
    const reacted = await platformReacts(store, scenario, seenUntil, now);
    const approved = await approval;
    show(approved.stdout.trim(), 2);
    if (approved.stderr.trim()) show(approved.stderr.trim(), 5);
    out(
      reacted
        ? `  [simulated platform] mcp-search picked up the new timeout; its next 15 minutes written without the latency incident`
        : '  [simulated platform] no change from Kiwi: its next 15 minutes are not written',
    );

    const finished = (await call('get_directive_run', { id: runId }, 2)).structuredContent!;
    for (const step of (finished.steps as { name: string; ref: string; outcome: string; duration_ms: number; error: string | null }[]).slice(0, 10)) {
      out(`    ${step.name} (${step.ref}): ${step.outcome}, ${Math.round(step.duration_ms)} ms${step.error ? ` — ${step.error}` : ''}`);
    }
    const timeoutAfter = readSetting(store, 'mcp.timeout_ms')['mcp-search'] ?? null;
    const audited = store
      .listAudit(200)
      .filter((a) => JSON.stringify(a.details).includes(runId) || a.target === runId)
      .map((a) => a.action);

    // 5. healed? judge the latency since the fix (the platform's recovery), then what is still open
    await call('detect_anomalies', { lookback: `${RECOVERY_MS / MINUTE}m`, types: ['latency_spike'] }, 8);
    const open = (await call('list_anomalies', {}, 10)).structuredContent!;
    const openIds = new Set((open.anomalies as { id: string }[]).map((a) => a.id));
    const stillOpen = (open.anomalies as { type: string; component: string }[]).map((a) => `${a.type}|${a.component}`);
    // healed: what was found at first and is no longer open (resolved by the directive or by detection)
    const resolved = detected.filter((a) => !openIds.has(a.id)).map((a) => `${a.type}|${a.component}`);

    // 6. Kiwi about Kiwi: this very session is in its own telemetry (the health tool writes Kiwi's buffered calls first)
    const health = (await call('get_system_health', { component: 'kiwi' }, 4)).structuredContent!;
    const kiwi = (health.components as { requests: { count: number } | null }[])[0];

    const outcome: DemoOutcome = {
      truth,
      detected,
      incidents,
      oom,
      directive: {
        run_id: runId,
        planned: String(planned.status),
        after_execute: String(executing.status),
        final: String(finished.status),
        timeout_before: timeoutBefore,
        timeout_after: timeoutAfter,
        audited,
      },
      healed: { resolved, still_open: stillOpen },
      kiwi_requests: kiwi?.requests?.count ?? 0,
      charts,
    };
    summarise(outcome, out);
    return { code: 0, outcome };
  } finally {
    await client.close();
    store.close();
  }
}

/** Runs `kiwi ...` to completion with the demo's policy. */
function runCli(args: string[], policyPath: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, args, {
      env: { ...process.env, KIWI_LOG_LEVEL: 'warn', KIWI_POLICY: policyPath, USER: process.env.USER ?? 'operator' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
  });
}

/**
 * Plays the platform: waits (up to 30 s) for Kiwi to raise mcp-search's timeout, then writes the
 * platform's telemetry from `from` to `to`, the same generated platform with every incident but
 * the latency spike still going on.
 */
async function platformReacts(store: Store, scenario: ScenarioOptions, from: number, to: number): Promise<boolean> {
  const deadline = Date.now() + 30_000;
  while (readSetting(store, 'mcp.timeout_ms')['mcp-search'] === undefined) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
  const shift = to - (scenario.end as number);
  const continuing: ScenarioOptions = {
    ...scenario,
    end: to,
    incidents: (scenario.incidents ?? [])
      .filter((i) => i.type !== 'latency_spike')
      .map((i) => ({ type: i.type, offsetMs: (i.offsetMs ?? DEFAULT_OFFSETS_MS[i.type]) - shift })),
  };
  let batch: TelemetryRecord[] = [];
  for (const record of generateRecords(continuing)) {
    const ts = record.type === 'span' ? record.start : record.ts;
    if (ts < from) continue;
    batch.push(record);
    if (batch.length === 5000) {
      store.writeRecords(batch);
      batch = [];
    }
  }
  store.writeRecords(batch);
  return true;
}

function summarise(o: DemoOutcome, out: (text: string) => void): void {
  const found = o.incidents.filter((i) => i.anomaly_id !== null).length;
  const first = o.incidents.filter((i) => i.top_candidate === i.root_cause).length;
  out('\n## What happened');
  out(`- detected ${found} of ${o.incidents.length} injected incidents with the right type and component (${o.detected.length} anomalies in all)`);
  out(`- root cause ranked first for ${first} of ${o.incidents.length}: ${o.incidents.map((i) => `${i.type} → ${i.top_candidate ?? 'none'}`).join(', ')}`);
  if (o.oom.forecast_hours !== null) {
    out(
      `- worker out of memory in ${o.oom.forecast_hours.toFixed(1)} h by the forecast, ${o.oom.true_hours.toFixed(1)} h by the generator's truth ` +
        `(${((o.oom.error ?? 0) * 100).toFixed(1)}%)`,
    );
  } else {
    out('- no out-of-memory forecast for the worker');
  }
  out(
    `- auto_heal_anomaly: ${o.directive.planned} → ${o.directive.after_execute} → approved → ${o.directive.final}; ` +
      `mcp.timeout_ms for mcp-search ${JSON.stringify(o.directive.timeout_before)} → ${JSON.stringify(o.directive.timeout_after)}; ` +
      `audited: ${[...new Set(o.directive.audited)].join(', ')}`,
  );
  out(`- healed: ${o.healed.resolved.join(', ') || 'nothing'}; still open: ${o.healed.still_open.join(', ') || 'nothing'}`);
  out(`- Kiwi served ${o.kiwi_requests} tool calls in this session before the health call and recorded each in its own telemetry`);
  if (o.charts.length) out(`- forecast charts: ${o.charts.join(', ')}`);
}
