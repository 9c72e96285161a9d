#!/usr/bin/env node
/** The `kiwi` command line. Each command's `--help` describes its flags. */
import { isEntryPoint } from './cli/entry.js';
import { existsSync, writeFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { parseIncidentList, writeScenario } from './generate/index.js';
import { createKiwi, type Kiwi } from './index.js';
import { formatIngestError, formatWritten, ingestFile, ingestStream, type IngestSummary } from './ingest/ingest.js';
import { log } from './log.js';
import { DEFAULT_HTTP_PORT, startHttp, type RunningHttp } from './mcp/http.js';
import { DEFAULT_OTLP_PORT } from './ingest/otlp/defaults.js';
import { SERVER_INFO } from './mcp/server.js';
import { LineStdioTransport } from './mcp/stdio.js';
import { pruneByRetention, SETTINGS, writeSetting, readSetting, isSettingKey, type SettingKey } from './settings.js';
import { resolveDbPath } from './store/database.js';
import { formatBytes } from './stats/precision.js';
import { Store, StoreMaintenanceError, type VacuumResult } from './store/store.js';
import { mcpServers, remedyForAnomaly, suggestionText } from './remedies.js';
import { iso, parseDuration, parseTimeInput } from './time.js';
import { runDemo } from './cli/demo.js';
import { scoreCsvFile } from './detect/csv.js';
import { explainSymptom } from './explain/service.js';
import { explainedToStructured, renderExplained } from './mcp/tools/explain.js';
import { DIRECTIVE_FLAGS, DIRECTIVE_OPTIONS, DIRECTIVE_USAGE, directiveCommand } from './cli/directive.js';
import { ANOMALY_TYPES } from './detect/context.js';
import { describeOutcomes, detectAnomalies, isAnomalyType } from './detect/service.js';
import { forecastFailure } from './forecast/service.js';
import { FORECAST_TARGETS, type ForecastTarget } from './forecast/types.js';
import { renderForecastText } from './mcp/tools/forecast.js';

type Options = NonNullable<ParseArgsConfig['options']>;
type Values = Record<string, string | boolean | string[] | undefined>;

export interface Command {
  summary: string;
  usage: string;
  options: Options;
  /** One line per flag, shown by --help. */
  flags: [string, string][];
  run(values: Values, positionals: string[]): Promise<number>;
}

class UsageError extends Error {}

const DB_FLAG: [string, string] = ['--db PATH', 'database file (default: $KIWI_DB, else ./.kiwi/kiwi.db)'];

/** Every command, its flags and its help: also read by the configuration reference generator. */
export const commands: Record<string, Command> = {
  serve: {
    summary: 'run the MCP server (stdio by default, or Streamable HTTP)',
    usage:
      'kiwi serve [--db PATH] [--http [--port N] [--host H] [--allowed-hosts LIST]] [--policy FILE] [--directives DIR] [--scripts DIR] ' +
      '[--self-interval 10s] [--no-self-telemetry]',
    options: {
      db: { type: 'string' },
      policy: { type: 'string' },
      directives: { type: 'string' },
      scripts: { type: 'string' },
      http: { type: 'boolean' },
      port: { type: 'string' },
      host: { type: 'string' },
      'allowed-hosts': { type: 'string' },
      'self-interval': { type: 'string' },
      'no-self-telemetry': { type: 'boolean' },
    },
    flags: [
      DB_FLAG,
      ['--http', 'serve MCP over Streamable HTTP at /mcp instead of stdio, and OTLP/HTTP at /v1/traces, /v1/metrics, /v1/logs'],
      ['--port N', `HTTP port (default ${DEFAULT_HTTP_PORT}; 0 picks a free one)`],
      ['--host H', 'HTTP listen address (default 127.0.0.1); anything but loopback requires $KIWI_TOKEN'],
      ['--allowed-hosts LIST', 'comma-separated extra host names accepted in the Host header'],
      ...DIRECTIVE_FLAGS.filter(([flag]) => /^--(policy|directives|scripts) /.test(flag)),
      ['--self-interval DURATION', 'how often Kiwi samples its own process, e.g. 10s (default: setting telemetry.self_interval_ms)'],
      ['--no-self-telemetry', "don't record Kiwi's own operations and process samples"],
    ],
    run: serve,
  },
  ingest: {
    summary: 'load telemetry files (JSONL or CSV) into the store',
    usage: 'kiwi ingest FILE... [--db PATH] [--strict] [--format jsonl|csv]    (FILE "-" reads stdin)',
    options: { db: { type: 'string' }, strict: { type: 'boolean' }, format: { type: 'string' } },
    flags: [
      DB_FLAG,
      ['--strict', 'reject a whole file, writing nothing of it, when any line is bad'],
      ['--format jsonl|csv', 'input format (default: from the file name, else from the first line)'],
    ],
    run: ingest,
  },
  generate: {
    summary: 'write realistic telemetry of a small agent platform, with optional incidents',
    usage: 'kiwi generate --out FILE.jsonl [--days N] [--seed S] [--incidents LIST] [--end TIME] [--step DURATION] [--utc-offset H]',
    options: {
      out: { type: 'string' },
      days: { type: 'string' },
      seed: { type: 'string' },
      incidents: { type: 'string' },
      end: { type: 'string' },
      step: { type: 'string' },
      'utc-offset': { type: 'string' },
    },
    flags: [
      ['--out FILE', 'JSONL output; the ground truth goes beside it as FILE.truth.json'],
      ['--days N', 'days of history, fractions allowed (default 7)'],
      ['--seed S', 'random seed; the same options give the same bytes (default 1)'],
      [
        '--incidents LIST',
        'comma-separated: latency_spike, error_spike, permission_spike, memory_leak, flaky_connection; each may take @OFFSET, e.g. memory_leak@-6h',
      ],
      ['--end TIME', 'end of the data (default: now, floored to the step); ISO 8601 or epoch'],
      ['--step DURATION', 'metric sampling step (default 60s)'],
      ['--utc-offset H', "the simulated users' UTC offset in hours: their day peaks at 16:00 local time (default 0)"],
    ],
    run: generate,
  },
  detect: {
    summary: 'find anomalies in the store (as the detect_anomalies tool does), or score a timestamp,value CSV causally',
    usage: 'kiwi detect [--db PATH] [--lookback 60m] [--at TIME] [--component C] [--type T,...] [--sensitivity S] [--json] | kiwi detect --csv FILE --out FILE',
    options: {
      db: { type: 'string' },
      lookback: { type: 'string' },
      at: { type: 'string' },
      component: { type: 'string' },
      type: { type: 'string' },
      sensitivity: { type: 'string' },
      json: { type: 'boolean' },
      csv: { type: 'string' },
      out: { type: 'string' },
    },
    flags: [
      DB_FLAG,
      ['--lookback DURATION', 'window to judge, ending at --at (default 60m)'],
      ['--at TIME', 'end of the window (default now): ISO 8601, epoch, or relative like -2h'],
      ['--component C', 'only this component'],
      ['--type T,...', `only these types: ${ANOMALY_TYPES.join(', ')}`],
      ['--sensitivity S', '0..1 (default: setting detect.sensitivity, 0.5)'],
      ['--json', 'print the full result as JSON'],
      ['--csv FILE', 'instead: score a CSV with a header naming timestamp and value (other columns ignored)'],
      ['--out FILE', "with --csv: write timestamp,value,anomaly_score,anomaly (score in [0,1]; anomaly is Kiwi's own 0/1 decision); - for stdout"],
    ],
    run: detect,
  },
  prune: {
    summary: 'apply retention now: roll up and delete data older than the retention settings, and shrink the file by what they held',
    usage: 'kiwi prune [--vacuum] [--db PATH]',
    options: { db: { type: 'string' }, vacuum: { type: 'boolean' } },
    flags: [
      DB_FLAG,
      [
        '--vacuum',
        'then rewrite the whole file (VACUUM): every free page goes back to the filesystem, and a store made before Kiwi shrank ' +
          'its files is converted so that each prune does. Needs the store to itself (stop kiwi serve, otlp and ingest first), ' +
          'and free disk space and memory about the size of the data kept',
      ],
    ],
    run: prune,
  },
  audit: {
    summary: 'read the audit trail: every setting change, directive run, step, approval, undo and anomaly update, newest first',
    usage: 'kiwi audit [--action A] [--target T] [--actor P] [--since TIME] [--limit N] [--json] [--db PATH]',
    options: {
      db: { type: 'string' },
      action: { type: 'string' },
      target: { type: 'string' },
      actor: { type: 'string' },
      since: { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'boolean' },
    },
    flags: [
      DB_FLAG,
      ['--action A', 'one action (directive.undo), or all under a prefix ending in a dot (directive.)'],
      ['--target T', 'what was acted on: a run id, a setting key, an anomaly id'],
      ['--actor P', 'who acted, e.g. cli:alice, agent:claude, kiwi'],
      ['--since TIME', 'at or after: ISO 8601, epoch, or relative like -24h'],
      ['--limit N', 'entries to print (default 50)'],
      ['--json', 'one JSON object per line'],
    ],
    run: audit,
  },
  settings: {
    summary: "read or change Kiwi's runtime settings (changes are kept with history and audited)",
    usage: 'kiwi settings [list] | kiwi settings set KEY VALUE [--reason TEXT] | kiwi settings reset KEY   [--db PATH]',
    options: { db: { type: 'string' }, reason: { type: 'string' } },
    flags: [DB_FLAG, ['--reason TEXT', 'why, kept in the history and the audit trail']],
    run: settings,
  },
  otlp: {
    summary: 'receive OpenTelemetry (OTLP/HTTP: traces, metrics, logs) into the store, without MCP',
    usage: 'kiwi otlp [--port 4318] [--host H] [--allowed-hosts LIST] [--db PATH]',
    options: { db: { type: 'string' }, port: { type: 'string' }, host: { type: 'string' }, 'allowed-hosts': { type: 'string' } },
    flags: [
      DB_FLAG,
      ['--port N', `port (default ${DEFAULT_OTLP_PORT}, the OTLP/HTTP default; 0 picks a free one)`],
      ['--host H', 'listen address (default 127.0.0.1); anything but loopback requires $KIWI_TOKEN'],
      ['--allowed-hosts LIST', 'comma-separated extra host names accepted in the Host header'],
    ],
    run: otlp,
  },
  directive: {
    summary: 'validate, plan, run, approve or reject YAML directives; list their runs',
    usage: DIRECTIVE_USAGE,
    options: DIRECTIVE_OPTIONS,
    flags: DIRECTIVE_FLAGS,
    run: directiveCommand,
  },
  explain: {
    summary: 'rank the likely root causes of an anomaly or a symptom, with evidence and a narrative',
    usage:
      'kiwi explain (--anomaly ID | --start TIME [--end TIME] [--component C] [--metric M]) [--baseline-start TIME --baseline-end TIME] [--limit N] [--json] [--no-llm] [--model M] [--db PATH]',
    options: {
      db: { type: 'string' },
      anomaly: { type: 'string' },
      component: { type: 'string' },
      metric: { type: 'string' },
      start: { type: 'string' },
      end: { type: 'string' },
      'baseline-start': { type: 'string' },
      'baseline-end': { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'boolean' },
      'no-llm': { type: 'boolean' },
      model: { type: 'string' },
    },
    flags: [
      DB_FLAG,
      ['--anomaly ID', 'explain a stored anomaly (its component, metric and times)'],
      ['--start TIME', 'when the symptom started: ISO 8601, epoch, or relative like -30m'],
      ['--end TIME', 'end of the symptom window (default: the newest data)'],
      ['--component C', 'where the symptom shows'],
      ['--metric M', 'a stored metric name, or latency, errors, denials, disconnects, requests'],
      ['--baseline-start TIME', 'a window known to be normal (default: the day before --start)'],
      ['--baseline-end TIME', 'end of that window'],
      ['--limit N', 'candidates shown (default 5, at most 20)'],
      ['--json', 'print the full result as JSON (the analyze_root_cause tool\'s structured answer)'],
      ['--no-llm', 'write the deterministic summary; do not call the Anthropic API'],
      ['--model M', 'Anthropic model for the narrative (default: setting explain.llm_model); needs $ANTHROPIC_API_KEY'],
    ],
    run: explainCommand,
  },
  forecast: {
    summary: 'forecast failures: time to out-of-memory, latency spikes, connection drops, error-budget burn',
    usage: 'kiwi forecast [--target memory|latency|connection|error_budget|all] [--component C] [--horizon 24h] [--chart FILE.png] [--json] [--db PATH]',
    options: {
      db: { type: 'string' },
      target: { type: 'string' },
      component: { type: 'string' },
      horizon: { type: 'string' },
      chart: { type: 'string' },
      json: { type: 'boolean' },
    },
    flags: [
      DB_FLAG,
      ['--target T', 'memory, latency, connection, error_budget or all (default all)'],
      ['--component C', 'one component (default: every component with the data)'],
      ['--horizon D', 'how far ahead, e.g. 6h, 2d (default 24h for memory and error_budget, 1h for latency and connection)'],
      ['--chart FILE', 'write the most urgent forecast\'s chart as PNG (with several targets: FILE gets the first, FILE-<target>.png the rest)'],
      ['--json', 'print the forecast_failure tool\'s structured answer as JSON'],
    ],
    run: forecastCommand,
  },
  demo: {
    summary: 'seed a store with a generated week, start `kiwi serve`, and walk a real MCP session against it',
    usage: 'kiwi demo [--dir DIR] [--days N] [--seed S]',
    options: { dir: { type: 'string' }, days: { type: 'string' }, seed: { type: 'string' } },
    flags: [
      ['--dir DIR', 'where the demo store and files go (default ./demo-out)'],
      ['--days N', 'days of generated history (default 7)'],
      ['--seed S', 'random seed (default 7)'],
    ],
    run: async (values) =>
      (
        await runDemo({
          dir: (values.dir as string | undefined) ?? 'demo-out',
          days: values.days === undefined ? 7 : Number(values.days),
          seed: intFlag(values, 'seed', 7),
        })
      ).code,
  },
};

function intFlag(values: Values, name: string, fallback: number): number {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n)) throw new UsageError(`--${name}: ${JSON.stringify(raw)} is not a whole number`);
  return n;
}

function durationFlag(values: Values, name: string): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  try {
    return parseDuration(String(raw));
  } catch (err) {
    throw new UsageError(`--${name}: ${(err as Error).message}`);
  }
}

function mainHelp(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  return [
    `kiwi ${SERVER_INFO.version}: a self-managing observability server for agent systems, spoken over MCP`,
    '',
    'usage: kiwi <command> [flags]      kiwi <command> --help',
    '',
    'commands:',
    ...Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    'environment: KIWI_DB (database file), KIWI_TOKEN (HTTP bearer token), KIWI_LOG_LEVEL (debug|info|warn|error|silent)',
  ].join('\n');
}

function commandHelp(name: string, c: Command): string {
  const width = Math.max(...c.flags.map(([f]) => f.length), 9);
  return [`kiwi ${name}: ${c.summary}`, '', `usage: ${c.usage}`, '', 'flags:', ...c.flags.map(([f, d]) => `  ${f.padEnd(width)}  ${d}`), `  ${'--help'.padEnd(width)}  this text`].join('\n');
}

// ------------------------------------------------------------------ commands

/**
 * The largest MCP message read from stdin: above what ingest_telemetry accepts (10 MB of text,
 * which JSON escaping can make up to six times longer). A longer one is answered with an error.
 */
const STDIO_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** A flag given where it would do nothing is a mistake to name, not to ignore. */
function refuseFlags(values: Values, names: readonly string[], context: string): void {
  const given = names.filter((n) => values[n] !== undefined);
  if (given.length) throw new UsageError(`${given.map((n) => `--${n}`).join(', ')} ${given.length === 1 ? 'has' : 'have'} no effect ${context}`);
}

/**
 * The store for a command that reads what is there (detect, explain, forecast, prune): a path
 * with no database behind it is a mistyped --db or KIWI_DB, not a wish for an empty store.
 */
function openExistingStore(values: Values): Store {
  const path = resolveDbPath(values.db as string | undefined);
  if (!existsSync(path)) {
    throw new UsageError(
      `no store at ${path} (--db, else $KIWI_DB, else ./.kiwi/kiwi.db); a store is created by kiwi ingest, kiwi serve or kiwi otlp`,
    );
  }
  return new Store(path);
}

async function serve(values: Values): Promise<number> {
  if (!values.http) refuseFlags(values, ['port', 'host', 'allowed-hosts'], 'without --http (stdio has no port)');
  const selfIntervalMs = durationFlag(values, 'self-interval');
  const kiwi = createKiwi({
    db: values.db as string | undefined,
    selfTelemetry: values['no-self-telemetry'] !== true,
    selfIntervalMs,
    policy: values.policy as string | undefined,
    directivesDir: values.directives as string | undefined,
    scriptsDir: values.scripts as string | undefined,
  });
  const retention = setInterval(() => runPrune(kiwi), 3_600_000);
  retention.unref();
  runPrune(kiwi);

  let http: RunningHttp | null = null;
  let stopping: Promise<void> | null = null;
  // Set before anything closes: closing the server closes its transport, whose onclose must not stop again.
  let shuttingDown = false;
  const stop = (reason: string) => {
    shuttingDown = true;
    stopping ??= (async () => {
      log.info(`shutting down (${reason})`);
      clearInterval(retention);
      if (http) await http.close();
      await kiwi.close();
    })();
    return stopping;
  };

  if (values.http) {
    const port = values.port === undefined ? DEFAULT_HTTP_PORT : intFlag(values, 'port', DEFAULT_HTTP_PORT);
    const token = process.env.KIWI_TOKEN || undefined;
    try {
      http = await startHttp({
        host: (values.host as string | undefined) ?? '127.0.0.1',
        port,
        token,
        allowedHosts: (values['allowed-hosts'] as string | undefined)?.split(',').map((h) => h.trim()).filter(Boolean),
        createServer: kiwi.createServer,
        sessionIdleMs: readSetting(kiwi.store, 'http.session_idle_ms'),
        // Loaded only here: stdio never pays for the protobuf code.
        otlp: new (await import('./ingest/otlp/receiver.js')).OtlpReceiver(kiwi.store),
      });
    } catch (err) {
      await kiwi.close();
      throw err;
    }
    // The one line a launcher may read to find the port; stdout is not the protocol here.
    process.stdout.write(`kiwi listening on ${http.url}\n`);
    log.info(`MCP over HTTP at ${http.url}; OTLP/HTTP at ${http.baseUrl}/v1/{traces,metrics,logs}`, { db: kiwi.store.path, token: token ? 'required' : 'not set' });
  } else {
    await kiwi.server.connect(new LineStdioTransport(STDIO_MAX_MESSAGE_BYTES));
    kiwi.server.server.onerror = (error) => log.error(`MCP over stdio: ${error.message}`);
    // The transport closes itself when the client stops reading its stdout: shut down as on stdin's end.
    kiwi.server.server.onclose = () => {
      if (!shuttingDown) void stop('the client stopped reading').then(() => process.exit(0));
    };
    process.stdin.once('end', () => void stop('stdin closed').then(() => process.exit(0)));
    log.info('MCP over stdio', { db: kiwi.store.path });
  }

  // Exit once stopped, as on stdin's end: work left behind (an API request a tool was waiting on)
  // must not keep a stopped server alive.
  await new Promise<void>(() => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.once(signal, () => void stop(signal).then(() => process.exit(0)));
    }
  });
  return 0;
}

function runPrune(kiwi: Kiwi): void {
  try {
    const result = pruneByRetention(kiwi.store);
    if (Object.values(result).some((n) => n > 0)) log.info('retention applied', { ...result });
  } catch (err) {
    log.warn('retention pass failed; will retry', { error: (err as Error).message });
  }
}

async function ingest(values: Values, files: string[]): Promise<number> {
  if (files.length === 0) throw new UsageError('name at least one FILE (or - for stdin)');
  const format = values.format as string | undefined;
  if (format !== undefined && format !== 'jsonl' && format !== 'csv') throw new UsageError('--format must be jsonl or csv');
  const store = new Store(resolveDbPath(values.db as string | undefined));
  let rejected = 0;
  try {
    for (const file of files) {
      const options = { strict: values.strict === true, format: (format ?? 'auto') as 'jsonl' | 'csv' | 'auto' };
      let summary: IngestSummary;
      try {
        summary = file === '-' ? await ingestStream(store, process.stdin, '<stdin>', options) : await ingestFile(store, file, options);
      } catch (err) {
        process.stderr.write(`${(err as Error).message}\n`);
        rejected++;
        continue;
      }
      for (const e of summary.errors) process.stderr.write(`${formatIngestError(e)}\n`);
      if (summary.errors_truncated) process.stderr.write(`${file}: … more errors not shown\n`);
      const strictNote = summary.strict && summary.rejected > 0 ? ' (strict: file rejected, nothing written)' : '';
      process.stdout.write(`${summary.source}: accepted ${summary.accepted}, rejected ${summary.rejected}${strictNote}; ${formatWritten(summary.written)}\n`);
      rejected += summary.rejected;
    }
  } finally {
    store.close();
  }
  return rejected > 0 ? 1 : 0;
}

async function generate(values: Values): Promise<number> {
  const out = values.out as string | undefined;
  if (!out) throw new UsageError('--out FILE is required');
  const stepMs = durationFlag(values, 'step') ?? 60_000;
  let end: number;
  try {
    end = values.end === undefined ? Date.now() : parseTimeInput(String(values.end));
  } catch (err) {
    throw new UsageError(`--end: ${(err as Error).message}`);
  }
  end = Math.floor(end / stepMs) * stepMs;
  let incidents;
  try {
    incidents = values.incidents === undefined ? [] : parseIncidentList(String(values.incidents));
  } catch (err) {
    throw new UsageError(`--incidents: ${(err as Error).message}`);
  }
  const days = values.days === undefined ? 7 : Number(values.days);
  if (!(days > 0)) throw new UsageError(`--days: ${JSON.stringify(values.days)} is not a positive number of days`);
  const seed = intFlag(values, 'seed', 1);
  const utcOffsetHours = values['utc-offset'] === undefined ? 0 : Number(values['utc-offset']);
  if (!(utcOffsetHours >= -12 && utcOffsetHours <= 14)) throw new UsageError('--utc-offset must be a number of hours from -12 to 14');
  const started = performance.now();
  const { lines, truthPath } = await writeScenario({ days, seed, end, stepMs, incidents, utcOffsetHours }, out);
  process.stdout.write(
    `${out}: ${lines} records, ${days} days ending ${iso(end)}, seed ${seed}, ` +
      `incidents: ${incidents.length ? incidents.map((i) => i.type).join(', ') : 'none'} ` +
      `(${((performance.now() - started) / 1000).toFixed(1)} s)\nground truth: ${truthPath}\n`,
  );
  return 0;
}

async function detect(values: Values): Promise<number> {
  if (values.csv !== undefined || values.out !== undefined) {
    refuseFlags(values, ['db', 'lookback', 'at', 'component', 'type', 'sensitivity', 'json'], 'with --csv (it scores the file alone)');
    return detectCsv(values);
  }
  const types = (values.type as string | undefined)?.split(',').map((t) => t.trim()).filter(Boolean) ?? [];
  const unknown = types.filter((t) => !isAnomalyType(t));
  if (unknown.length) throw new UsageError(`--type: unknown ${unknown.join(', ')}; known: ${ANOMALY_TYPES.join(', ')}`);
  let at: number | undefined;
  if (values.at !== undefined) {
    try {
      at = parseTimeInput(String(values.at));
    } catch (err) {
      throw new UsageError(`--at: ${(err as Error).message}`);
    }
  }
  let sensitivity: number | undefined;
  if (values.sensitivity !== undefined) {
    sensitivity = Number(values.sensitivity);
    if (!(sensitivity >= 0 && sensitivity <= 1)) throw new UsageError('--sensitivity must be a number from 0 to 1');
  }
  const store = openExistingStore(values);
  try {
    const result = detectAnomalies(store, {
      lookbackMs: durationFlag(values, 'lookback') ?? 3_600_000,
      ...(at !== undefined ? { now: at } : {}),
      ...(values.component !== undefined ? { component: String(values.component) } : {}),
      types: types.filter(isAnomalyType),
      ...(sensitivity !== undefined ? { sensitivity } : {}),
      actor: `cli:${process.env.USER ?? 'user'}`,
    });
    if (values.json) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      return 0;
    }
    process.stdout.write(`${result.anomalies.length} anomalies in ${iso(result.window.from)} .. ${iso(result.window.to)}\n`);
    const isMcpServer = mcpServers(store);
    for (const a of result.anomalies) {
      process.stdout.write(`${a.new ? 'NEW ' : ''}${a.severity.toUpperCase()} ${a.type} ${a.component} [${a.id}]: ${a.description}` +
        `${suggestedLine(a, isMcpServer)}\n`);
    }
    for (const line of describeOutcomes(result)) process.stdout.write(`${line}\n`);
  } finally {
    store.close();
  }
  return 0;
}

async function detectCsv(values: Values): Promise<number> {
  const csv = values.csv as string | undefined;
  const out = values.out as string | undefined;
  if (!csv || !out) throw new UsageError('--csv FILE and --out FILE are required together');
  const started = performance.now();
  const summary = await scoreCsvFile(csv, out);
  for (const error of summary.errors) process.stderr.write(`${error}\n`);
  const seconds = (performance.now() - started) / 1000;
  // with --out - the scores are stdout; the summary must not land among them
  (out === '-' ? process.stderr : process.stdout).write(
    `${out === '-' ? 'stdout' : out}: ${summary.rows} rows scored, ${summary.anomalies} anomalies, ${summary.rejected} rejected ` +
      `(${Math.round(summary.rows / seconds).toLocaleString('en')} rows/s)\n`,
  );
  return summary.rejected > 0 ? 1 : 0;
}

async function otlp(values: Values): Promise<number> {
  const store = new Store(resolveDbPath(values.db as string | undefined));
  const applyRetention = () => {
    try {
      pruneByRetention(store);
    } catch (err) {
      log.warn('retention pass failed; will retry', { error: (err as Error).message });
    }
  };
  applyRetention();
  const retention = setInterval(applyRetention, 3_600_000);
  retention.unref();
  const token = process.env.KIWI_TOKEN || undefined;
  let http: RunningHttp;
  try {
    http = await startHttp({
      host: (values.host as string | undefined) ?? '127.0.0.1',
      port: values.port === undefined ? DEFAULT_OTLP_PORT : intFlag(values, 'port', DEFAULT_OTLP_PORT),
      token,
      allowedHosts: (values['allowed-hosts'] as string | undefined)?.split(',').map((h) => h.trim()).filter(Boolean),
      otlp: new (await import('./ingest/otlp/receiver.js')).OtlpReceiver(store),
    });
  } catch (err) {
    clearInterval(retention);
    store.close();
    throw err;
  }
  // The one line a launcher may read to find the port.
  process.stdout.write(`kiwi otlp listening on ${http.baseUrl}\n`);
  log.info(`OTLP/HTTP at ${http.baseUrl}/v1/{traces,metrics,logs}`, { db: store.path, token: token ? 'required' : 'not set' });
  await new Promise<void>((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => resolve());
  });
  log.info('shutting down');
  clearInterval(retention);
  await http.close();
  store.close();
  return 0;
}

async function explainCommand(values: Values): Promise<number> {
  if (values.anomaly === undefined && values.start === undefined) throw new UsageError('give --anomaly ID or --start TIME');
  const limit = intFlag(values, 'limit', 5);
  if (limit < 1 || limit > 20) throw new UsageError('--limit must be between 1 and 20');
  const store = openExistingStore(values);
  try {
    const text = (name: string) => values[name] as string | undefined;
    const result = await explainSymptom(
      store,
      {
        anomaly_id: text('anomaly'),
        component: text('component'),
        metric: text('metric'),
        start: text('start'),
        end: text('end'),
        baseline_start: text('baseline-start'),
        baseline_end: text('baseline-end'),
      },
      { limit, llm: values['no-llm'] !== true, model: text('model') },
    );
    process.stdout.write(`${values.json ? JSON.stringify(explainedToStructured(result), null, 2) : renderExplained(result)}\n`);
    return 0;
  } catch (err) {
    // the service names the field (start: ..., anomaly_id: ...); say it as the flag
    const message = (err as Error).message.replace(/^(anomaly_id|component|metric|start|end|baseline_start|baseline_end):/, (_, field: string) =>
      field === 'anomaly_id' ? '--anomaly:' : `--${field.replace('_', '-')}:`,
    );
    throw message === (err as Error).message ? err : new UsageError(message);
  } finally {
    store.close();
  }
}

async function forecastCommand(values: Values): Promise<number> {
  const target = (values.target as string | undefined) ?? 'all';
  if (target !== 'all' && !(FORECAST_TARGETS as readonly string[]).includes(target)) {
    throw new UsageError(`--target must be one of ${FORECAST_TARGETS.join(', ')} or all`);
  }
  const horizonMs = durationFlag(values, 'horizon');
  const store = openExistingStore(values);
  try {
    const chartPath = values.chart as string | undefined;
    const result = forecastFailure(store, {
      target: target as ForecastTarget | 'all',
      component: values.component as string | undefined,
      horizonHours: horizonMs === undefined ? undefined : horizonMs / 3_600_000,
      charts: chartPath ? undefined : 0,
    });
    if (values.json) process.stdout.write(`${JSON.stringify({ as_of: result.as_of, target, forecasts: result.forecasts, omitted: result.omitted }, null, 2)}\n`);
    else process.stdout.write(`${renderForecastText(result.as_of, result.forecasts, result.omitted)}\n`);
    if (chartPath) {
      if (result.charts.length === 0) process.stderr.write('no chart: no forecast had enough history\n');
      result.charts.forEach((chart, i) => {
        const path = i === 0 ? chartPath : chartPath.replace(/(\.png)?$/i, `-${chart.target}.png`);
        writeFileSync(path, chart.png);
        process.stderr.write(`chart (${chart.target}, ${chart.component}): ${path}\n`);
      });
    }
    return 0;
  } catch (err) {
    const message = (err as Error).message;
    throw /^(component|horizon):/.test(message) ? new UsageError(message) : err;
  } finally {
    store.close();
  }
}

async function prune(values: Values): Promise<number> {
  const store = openExistingStore(values);
  try {
    const before = store.sizeBytes();
    const result = pruneByRetention(store);
    const space = store.space();
    process.stdout.write(
      `rolled up ${result.points_rolled_up} minutes, deleted ${result.points_deleted} points, ${result.events_deleted} events, ` +
        `${result.spans_deleted} spans, ${result.rollups_deleted} roll-ups\n` +
        `file: ${formatBytes(before)} -> ${formatBytes(store.sizeBytes())} (database and -wal)\n`,
    );
    if (!values.vacuum) {
      const idle = space.free_pages * space.page_size;
      if (space.auto_vacuum !== 'incremental' && idle > 0) {
        process.stdout.write(
          `${formatBytes(idle)} of it holds no data, and only a VACUUM gives it back: this store was made before Kiwi shrank its files; ` +
            'run kiwi prune --vacuum once, with kiwi serve, otlp and ingest stopped\n',
        );
      }
      return 0;
    }
    let vacuumed: VacuumResult;
    try {
      vacuumed = store.vacuum();
    } catch (err) {
      if (!(err instanceof StoreMaintenanceError)) throw err;
      process.stderr.write(`kiwi prune: pruned, but not vacuumed: ${err.message}\n`);
      return 1;
    }
    const converted = vacuumed.auto_vacuum_before !== 'incremental' && vacuumed.auto_vacuum_after === 'incremental';
    process.stdout.write(
      `vacuumed: ${formatBytes(vacuumed.bytes_before)} -> ${formatBytes(vacuumed.bytes_after)}` +
        `${converted ? '; converted: from now on each prune gives freed space back to the filesystem' : ''}\n`,
    );
  } finally {
    store.close();
  }
  return 0;
}

async function audit(values: Values): Promise<number> {
  const limit = intFlag(values, 'limit', 50);
  let since: number | undefined;
  if (values.since !== undefined) {
    try {
      since = parseTimeInput(values.since as string);
    } catch (err) {
      throw new UsageError(`--since: ${(err as Error).message}`);
    }
  }
  const store = openExistingStore(values);
  try {
    const filter = {
      ...(values.action !== undefined ? { action: values.action as string } : {}),
      ...(values.target !== undefined ? { target: values.target as string } : {}),
      ...(values.actor !== undefined ? { actor: values.actor as string } : {}),
      ...(since !== undefined ? { since } : {}),
    };
    for (const entry of store.searchAudit(filter, limit)) {
      const line = values.json
        ? JSON.stringify({ ...entry, ts: new Date(entry.ts).toISOString() })
        : `${new Date(entry.ts).toISOString()} ${entry.actor} ${entry.action}${entry.target ? ` ${entry.target}` : ''} ${JSON.stringify(entry.details)}`;
      process.stdout.write(`${line}\n`);
    }
  } finally {
    store.close();
  }
  return 0;
}

async function settings(values: Values, args: string[]): Promise<number> {
  const [action = 'list', key, raw] = args;
  const store = new Store(resolveDbPath(values.db as string | undefined));
  try {
    if (action === 'list') {
      for (const name of Object.keys(SETTINGS)) {
        if (!isSettingKey(name)) continue;
        const row = store.getSetting(name);
        process.stdout.write(
          `${name} = ${JSON.stringify(readSetting(store, name))}${row ? ` (set by ${row.updated_by} at ${iso(row.updated_at)})` : ' (default)'}\n` +
            `    ${SETTINGS[name].description}\n`,
        );
      }
      return 0;
    }
    if (action === 'set' || action === 'reset') {
      if (!key || (action === 'set' && raw === undefined)) throw new UsageError(`usage: ${commands.settings!.usage}`);
      let value: unknown;
      if (action === 'set') {
        try {
          value = JSON.parse(raw!);
        } catch {
          value = raw;
        }
      }
      const change = writeSetting(store, key, value, `cli:${process.env.USER ?? 'user'}`, values.reason as string | undefined);
      // writeSetting refused an unknown key, so the default exists; a value of null in a change means "the default"
      const shown = (v: unknown) => (v === null ? `${JSON.stringify(SETTINGS[key as SettingKey].default)} (default)` : JSON.stringify(v));
      process.stdout.write(`${key}: ${shown(change.old_value)} -> ${shown(change.new_value)}\n`);
      return 0;
    }
    throw new UsageError(`unknown settings action "${action}"; use list, set or reset`);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError((err as Error).message);
  } finally {
    store.close();
  }
}

// ------------------------------------------------------------------ entry

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    // asked for, help is the answer (stdout); with no command at all it is a usage error (stderr)
    (name === undefined ? process.stderr : process.stdout).write(`${mainHelp()}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(`${SERVER_INFO.version}\n`);
    return 0;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`kiwi: unknown command "${name}"\n\n${mainHelp()}\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${commandHelp(name, command)}\n`);
    return 0;
  }
  try {
    const { values, positionals } = parseArgs({ args: joinRelativeValues(rest, command.options), allowPositionals: true, options: command.options, strict: true });
    return await command.run(values as Values, positionals);
  } catch (err) {
    const usage = err instanceof UsageError || (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS');
    process.stderr.write(`kiwi ${name}: ${(err as Error).message}\n`);
    if (usage) process.stderr.write(`usage: ${command.usage}   (kiwi ${name} --help)\n`);
    return usage ? 2 : 1;
  }
}

/**
 * `--since -24h` as `--since=-24h`: parseArgs reads a value that begins with a dash as a flag, but
 * no flag begins with a dash and a digit, so after a flag that takes a value it is a relative time
 * or a negative number.
 */
function joinRelativeValues(args: string[], options: ParseArgsConfig['options']): string[] {
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const next = args[i + 1];
    const flag = arg.startsWith('--') && !arg.includes('=') ? options?.[arg.slice(2)] : undefined;
    if (flag?.type === 'string' && next !== undefined && /^-\d/.test(next)) {
      joined.push(`${arg}=${next}`);
      i++;
    } else {
      joined.push(arg);
    }
  }
  return joined;
}

if (isEntryPoint(import.meta.url)) {
  // `kiwi settings list | head -1`: a reader that stops early is not an error. (`serve` is left to
  // its transport: there a closed stdout means the client is gone, and the server shuts down cleanly.)
  if (process.argv[2] !== 'serve') {
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
    });
  }
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`kiwi: ${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 1;
    },
  );
}

function suggestedLine(anomaly: { id: string; type: string; component: string }, isMcpServer: (component: string) => boolean): string {
  const remedy = remedyForAnomaly(anomaly, isMcpServer);
  return remedy ? ` -> ${suggestionText(remedy)}` : '';
}
