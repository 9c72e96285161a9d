/**
 * Streams the records of a scenario, step by step, in time order (metric ts, event ts, span start).
 * Randomness comes from streams derived per step and per thread (see rng.ts), so an incident only
 * changes what it touches: the same seed with and without an incident gives the same traffic.
 */
import type { EventLevel, EventRecord, MetricRecord, SpanRecord, TelemetryRecord } from '../ingest/records.js';
import { buildPlan, workerBaseline, type Plan, type ScenarioOptions } from './plan.js';
import { Rng } from './rng.js';
import {
  ABORT_AFTER_DENIAL,
  ABORT_AFTER_TOOL_ERROR,
  AGENT_PROFILES,
  AGENT_SIGNATURES,
  BASE_AGENT_ERROR_RATE,
  BASE_DENY_RATE,
  BASE_TOOL_ERROR_RATE,
  CALLS_PER_THREAD_WEIGHTS,
  COMPONENTS,
  CONNECTION_CLOSED,
  INFO_LOGS,
  MCP_SERVERS,
  METRIC_CPU,
  METRIC_MEMORY,
  METRIC_TOKENS,
  MIB_BYTES,
  MODEL_SIGMA,
  NEW_SIGNATURE,
  PROCESS_PROFILE,
  SERVER_LATENCY,
  SERVER_SIGNATURES,
  TOOLS,
  WORKER,
  WORKER_ERRORS_PER_HOUR,
  WORKER_HEAP,
  WORKER_MEMORY_LIMIT_BYTES,
  WORKER_SIGNATURES,
  agentRate,
  dailyLoad,
  type AgentProfile,
  type Signature,
} from './topology.js';

const HOUR = 3_600_000;

export function* generateRecords(options: ScenarioOptions): Generator<TelemetryRecord> {
  yield* new Simulation(buildPlan(options)).run();
}

/** One metric series of a scenario, in time order: what a store would hold for it. */
export function generatedSeries(options: ScenarioOptions, name: string, component: string): { ts: number[]; values: number[] } {
  const ts: number[] = [];
  const values: number[] = [];
  for (const r of generateRecords(options)) {
    if (r.type === 'metric' && r.name === name && r.component === component) {
      ts.push(r.ts);
      values.push(r.value);
    }
  }
  return { ts, values };
}

function timeOf(record: TelemetryRecord): number {
  return record.type === 'span' ? record.start : record.ts;
}

function event(ts: number, kind: string, component: string, level: EventLevel, message: string, attrs: Record<string, unknown>): EventRecord {
  return { type: 'event', ts, kind, component, level, message, attrs };
}

function metric(ts: number, name: string, value: number, component: string, labels: Record<string, string> = {}): MetricRecord {
  return { type: 'metric', ts, name, value, component, labels };
}

const round1 = (x: number): number => Math.round(x * 10) / 10;

class Simulation {
  private readonly plan: Plan;
  private readonly scheduled: EventRecord[];
  private readonly heapRng: Rng;
  private heap = 0;
  private gcHeadroom = 0;
  private residue = 0;
  private nextKill = 0;

  constructor(plan: Plan) {
    this.plan = plan;
    this.scheduled = this.scheduleEvents();
    this.heapRng = Rng.derive(plan.seed, 'worker-heap', plan.startMs);
  }

  *run(): Generator<TelemetryRecord> {
    const { startMs, endMs, stepMs } = this.plan;
    let pending: TelemetryRecord[] = [];
    let nextScheduled = 0;
    for (let t = startMs; t < endMs; t += stepMs) {
      const batch: TelemetryRecord[] = [];
      const threads: TelemetryRecord[] = [];
      const tokens = this.threads(t, threads);
      this.metrics(t, tokens, batch);
      while (nextScheduled < this.scheduled.length && (this.scheduled[nextScheduled]?.ts ?? Infinity) < t + stepMs) {
        const e = this.scheduled[nextScheduled++];
        if (e) batch.push(e);
      }
      this.backgroundEvents(t, batch);
      for (const r of threads) batch.push(r);

      // Threads outlive their step; keep what belongs to later steps so the output stays in time order.
      pending = pending.length === 0 ? batch : pending.concat(batch);
      pending.sort((a, b) => timeOf(a) - timeOf(b));
      const limit = t + stepMs;
      let cut = 0;
      while (cut < pending.length && timeOf(pending[cut] as TelemetryRecord) < limit) cut++;
      for (let i = 0; i < cut; i++) yield pending[i] as TelemetryRecord;
      pending = pending.slice(cut);
    }
    for (const r of pending) yield r;
  }

  /** Connection, change and OOM events known in advance, in time order. */
  private scheduleEvents(): EventRecord[] {
    const { startMs, endMs } = this.plan;
    const out: EventRecord[] = [];
    for (const server of MCP_SERVERS) {
      out.push(event(startMs, 'connection', server, 'info', `${server} connected`, { state: 'connected', reason: 'startup' }));
    }
    for (const c of this.plan.changes) out.push(event(c.ts, c.kind, c.component, 'info', c.message, { ...c.attrs }));
    for (const o of this.plan.flaky?.outages ?? []) {
      out.push(event(o.startMs, 'connection', 'mcp-github', 'warn', `mcp-github disconnected: ${o.reason}`, { state: 'disconnected', reason: o.reason }));
      if (o.endMs < endMs) {
        const downtime = o.endMs - o.startMs;
        out.push(
          event(o.endMs, 'connection', 'mcp-github', 'info', `mcp-github connected (reconnected after ${(downtime / 1000).toFixed(1)} s)`, {
            state: 'connected',
            reason: 'reconnected',
            downtime_ms: downtime,
          }),
        );
      }
    }
    const rng = Rng.derive(this.plan.seed, 'oom');
    for (const kill of this.plan.leak?.killsMs ?? []) {
      const pid = rng.int(2000, 60000);
      out.push(
        event(kill, 'error', WORKER, 'error', `worker process ${pid} killed: out of memory (limit ${WORKER_MEMORY_LIMIT_BYTES} bytes)`, {
          'error.type': 'oom_killed',
        }),
      );
      out.push(event(kill + 1500, 'log', WORKER, 'info', `worker restarted as process ${rng.int(2000, 60000)}`, {}));
    }
    out.sort((a, b) => a.ts - b.ts);
    return out.filter((e) => e.ts >= startMs && e.ts < endMs);
  }

  private metrics(t: number, tokens: Map<string, { input: number; output: number }>, out: TelemetryRecord[]): void {
    const rng = Rng.derive(this.plan.seed, 'metrics', t);
    const load = dailyLoad(t, this.plan.utcOffsetHours);
    for (const { name } of COMPONENTS) {
      const profile = PROCESS_PROFILE[name];
      if (!profile) continue;
      const memoryNoise = rng.normal();
      const cpuNoise = rng.normal();
      const memory =
        name === WORKER ? this.workerMemory(t, load, out) : profile.memoryBytes + profile.memoryLoadBytes * load + memoryNoise * 0.8 * MIB_BYTES;
      out.push(metric(t, METRIC_MEMORY, Math.round(memory), name));
      const cpu = Math.min(1, Math.max(0.002, profile.cpuIdle + profile.cpuLoad * load + cpuNoise * 0.01));
      out.push(metric(t, METRIC_CPU, Math.round(cpu * 10000) / 10000, name));
    }
    for (const agent of AGENT_PROFILES) {
      const used = tokens.get(agent.name) ?? { input: 0, output: 0 };
      out.push(metric(t, METRIC_TOKENS, used.input, agent.name, { 'gen_ai.token.type': 'input' }));
      out.push(metric(t, METRIC_TOKENS, used.output, agent.name, { 'gen_ai.token.type': 'output' }));
    }
  }

  /**
   * Worker heap: a post-GC baseline (growing during a memory leak) plus what was allocated since
   * the last collection; a collection runs when that allocation reaches a jittered headroom, or
   * when the heap reaches the memory limit (so near the limit collections come faster).
   */
  private workerMemory(t: number, load: number, out: TelemetryRecord[]): number {
    const rng = this.heapRng;
    const { stepMs } = this.plan;
    const alloc = ((WORKER_HEAP.allocIdleBytesPerMin + WORKER_HEAP.allocLoadBytesPerMin * load) * stepMs) / 60_000;
    const kills = this.plan.leak?.killsMs ?? [];
    if (t === this.plan.startMs) {
      this.gcHeadroom = rng.range(WORKER_HEAP.gcHeadroomMinBytes, WORKER_HEAP.gcHeadroomMaxBytes);
      this.heap = rng.range(0, this.gcHeadroom);
      this.residue = rng.normal() * WORKER_HEAP.residueSdBytes;
      while (this.nextKill < kills.length && (kills[this.nextKill] ?? Infinity) <= t) this.nextKill++;
    } else {
      this.heap += alloc;
    }
    const kill = kills[this.nextKill];
    if (kill !== undefined && kill <= t) {
      this.nextKill++;
      this.heap = (alloc * (t - kill)) / stepMs;
      this.gcHeadroom = rng.range(WORKER_HEAP.gcHeadroomMinBytes, WORKER_HEAP.gcHeadroomMaxBytes);
      this.residue = Math.abs(rng.normal()) * WORKER_HEAP.residueSdBytes;
    }
    const baseline = workerBaseline(this.plan, t);
    const trigger = Math.min(baseline + this.gcHeadroom, WORKER_MEMORY_LIMIT_BYTES) - baseline;
    if (this.heap >= trigger) {
      const freed = baseline + this.residue + this.heap;
      this.heap = Math.min(this.heap - trigger, alloc);
      this.gcHeadroom = rng.range(WORKER_HEAP.gcHeadroomMinBytes, WORKER_HEAP.gcHeadroomMaxBytes);
      this.residue = rng.normal() * WORKER_HEAP.residueSdBytes;
      const after = baseline + this.residue + this.heap;
      const pauseMs = rng.int(20, 90);
      out.push(
        event(t, 'log', WORKER, 'info', `gc: reclaimed ${Math.round((freed - after) / MIB_BYTES)} MiB in ${pauseMs} ms (heap ${Math.round(after / MIB_BYTES)} MiB after)`, {}),
      );
    }
    const noise = rng.normal() * 0.3 * MIB_BYTES;
    return Math.min(WORKER_MEMORY_LIMIT_BYTES, baseline + this.residue + this.heap + noise);
  }

  private backgroundEvents(t: number, out: TelemetryRecord[]): void {
    const { stepMs, seed } = this.plan;
    const rng = Rng.derive(seed, 'background', t);
    for (const { name, role } of COMPONENTS) {
      const logs = INFO_LOGS[role];
      const n = rng.poisson((logs.perHour * stepMs) / HOUR);
      for (let i = 0; i < n; i++) {
        const at = t + rng.int(0, stepMs - 1);
        out.push(event(at, 'log', name, 'info', rng.pick(logs.messages)(rng), {}));
      }
    }
    const errors = rng.poisson((WORKER_ERRORS_PER_HOUR * stepMs) / HOUR);
    for (let i = 0; i < errors; i++) {
      const at = t + rng.int(0, stepMs - 1);
      const sig = rng.pick(WORKER_SIGNATURES);
      out.push(event(at, 'error', WORKER, 'error', sig.message(rng, ''), { 'error.type': sig.errorType }));
    }
  }

  /** Simulates the threads started in [t, t + step); returns the tokens they used per agent. */
  private threads(t: number, out: TelemetryRecord[]): Map<string, { input: number; output: number }> {
    const { seed, stepMs } = this.plan;
    const tokens = new Map<string, { input: number; output: number }>();
    for (const agent of AGENT_PROFILES) {
      const arrivals = Rng.derive(seed, 'arrivals', agent.name, t);
      const n = arrivals.poisson((agentRate(agent, t + stepMs / 2, this.plan.utcOffsetHours) * stepMs) / 60_000);
      const offsets: number[] = [];
      for (let k = 0; k < n; k++) offsets.push(arrivals.int(0, stepMs - 1));
      offsets.sort((a, b) => a - b);
      const used = { input: 0, output: 0 };
      offsets.forEach((offset, k) => this.thread(agent, t + offset, Rng.derive(seed, 'thread', agent.name, t, k), out, used));
      tokens.set(agent.name, used);
    }
    return tokens;
  }

  private inOutage(ts: number): boolean {
    const outages = this.plan.flaky?.outages;
    if (!outages) return false;
    let lo = 0;
    let hi = outages.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const o = outages[mid];
      if (!o) break;
      if (ts < o.startMs) hi = mid - 1;
      else if (ts >= o.endMs) lo = mid + 1;
      else return true;
    }
    return false;
  }

  /**
   * One agent thread: a root span, 1–3 tool calls each preceded by a permission decision, model
   * time before every call and after the last. A denied call never reaches its server (no tool
   * span). Each failure emits one error event where it originated.
   */
  private thread(agent: AgentProfile, t0: number, r: Rng, out: TelemetryRecord[], tokens: { input: number; output: number }): void {
    const { plan } = this;
    const traceId = r.hex(32);
    const rootId = r.hex(16);
    const calls = r.weighted(CALLS_PER_THREAD_WEIGHTS) + 1;
    const agentErrorU = r.next();
    const spikeU = r.next();
    const finalModelMs = Math.round(r.lognormal(agent.modelMedianMs, MODEL_SIGMA));
    let inputTokens = Math.round(r.lognormal(agent.inputTokensMedian, 0.4));
    const outputTokens = Math.round(r.lognormal(agent.outputTokensMedian, 0.5));
    // Message variable parts come from a side stream, so an error never shifts the thread's draws.
    const partsSeed = r.uint32();
    const parts = (): Rng => new Rng(partsSeed, t0, 0x9e3779b9, 0x243f6a88);

    const spans: TelemetryRecord[] = [];
    let cursor = t0;
    let failure: string | null = null;
    let lastTool = '';
    for (let i = 0; i < calls; i++) {
      const tool = TOOLS[r.weighted(agent.toolWeights)] ?? TOOLS[0];
      if (!tool) break;
      const gapMs = Math.round(r.lognormal(agent.modelMedianMs, MODEL_SIGMA));
      const z = r.normal();
      const errorU = r.next();
      const signatureU = r.next();
      const abortU = r.next();
      const denyU = r.next();
      const policyMs = r.int(1, 4);
      const spanId = r.hex(16);
      inputTokens += r.int(200, 900);
      lastTool = tool.name;
      cursor += gapMs;

      const spike = plan.permission;
      const spiking =
        spike !== undefined && agent.name === spike.principal && tool.name === spike.tool && cursor >= spike.effectMs;
      const denied = denyU < BASE_DENY_RATE || (spiking && denyU < spike.probability);
      const decision = denied ? 'deny' : 'allow';
      out.push(
        event(cursor, 'permission', 'policy', denied ? 'warn' : 'info', `${decision} ${tool.permission} for ${agent.name} on ${tool.name}`, {
          decision,
          principal: agent.name,
          tool: tool.name,
          permission: tool.permission,
          trace_id: traceId,
        }),
      );
      cursor += policyMs;
      if (denied) {
        if (abortU < ABORT_AFTER_DENIAL) {
          failure = 'permission_denied';
          break;
        }
        continue;
      }

      const server = tool.server;
      let duration: number;
      let errorType: string | null = null;
      let signature: Signature | null = null;
      if (server === 'mcp-github' && this.inOutage(cursor)) {
        duration = round1(0.5 + 30 * errorU);
        errorType = CONNECTION_CLOSED.errorType;
        signature = CONNECTION_CLOSED;
      } else {
        const latency = SERVER_LATENCY[server];
        duration = latency.medianMs * tool.latencyFactor * Math.exp(latency.sigma * z);
        if (server === 'mcp-search' && plan.latency && cursor >= plan.latency.effectMs) duration *= plan.latency.factor;
        duration = round1(duration);
        if (errorU < BASE_TOOL_ERROR_RATE) {
          const signatures = SERVER_SIGNATURES[server];
          signature = signatures[Math.floor(signatureU * signatures.length)] ?? null;
          errorType = signature?.errorType ?? 'error';
        }
      }
      const attrs: Record<string, unknown> = { 'mcp.method.name': 'tools/call', 'gen_ai.tool.name': tool.name };
      if (errorType) attrs['error.type'] = errorType;
      spans.push({
        type: 'span',
        trace_id: traceId,
        span_id: spanId,
        parent_id: rootId,
        name: `tools/call ${tool.name}`,
        component: server,
        start: cursor,
        duration_ms: duration,
        status: errorType ? 'error' : 'ok',
        attrs,
      });
      cursor = Math.ceil(cursor + duration);
      if (signature && errorType) {
        out.push(
          event(cursor, 'error', server, 'error', signature.message(parts(), tool.name), {
            'error.type': errorType,
            'gen_ai.tool.name': tool.name,
            trace_id: traceId,
          }),
        );
        if (abortU < ABORT_AFTER_TOOL_ERROR) {
          failure = errorType;
          break;
        }
      }
    }

    if (failure) {
      cursor += 5;
    } else {
      cursor += finalModelMs;
      const errorSpike = plan.errorSpike;
      let signature: Signature | null = null;
      if (errorSpike && agent.name === 'agent-coder' && t0 >= errorSpike.effectMs && spikeU < errorSpike.probability) {
        signature = NEW_SIGNATURE;
      } else if (agentErrorU < BASE_AGENT_ERROR_RATE) {
        signature = AGENT_SIGNATURES[Math.floor((agentErrorU / BASE_AGENT_ERROR_RATE) * AGENT_SIGNATURES.length)] ?? null;
      }
      if (signature) {
        failure = signature.errorType;
        out.push(event(cursor, 'error', agent.name, 'error', signature.message(parts(), lastTool), { 'error.type': failure, trace_id: traceId }));
      }
    }

    const attrs: Record<string, unknown> = { 'gen_ai.operation.name': 'invoke_agent', 'gen_ai.agent.name': agent.name };
    if (failure) attrs['error.type'] = failure;
    out.push({
      type: 'span',
      trace_id: traceId,
      span_id: rootId,
      parent_id: null,
      name: `invoke_agent ${agent.name}`,
      component: agent.name,
      start: t0,
      duration_ms: cursor - t0,
      status: failure ? 'error' : 'ok',
      attrs,
    } satisfies SpanRecord);
    for (const s of spans) out.push(s);
    tokens.input += inputTokens;
    tokens.output += failure ? Math.round(outputTokens / 3) : outputTokens;
  }
}
