/**
 * Plan and execute directives. A run is planned first (inputs resolved, conditions decided where
 * they can be, every step that could run listed with what it needs), then — in execute mode —
 * checked against the policy (each denial stored as a `permission` event), held for approval when
 * a step is destructive, and executed step by step with timeouts and retries. A failing step
 * undoes the changes applied so far (each state-changing action returns its inverse), then runs
 * the directive's `rollback` steps; `finally` steps always run. Every run is stored and audited.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { normaliseRecord } from '../ingest/records.js';
import { log } from '../log.js';
import { DirectiveRunStore, isUniqueViolation, nestedRunId, parentRunId, type DirectiveRunRow, type RunningRun, type RunStatus } from '../store/directives.js';
import type { Store } from '../store/store.js';
import { ACTIONS, canonicalJson, type ActionContext, type ActionResult, type Undo } from './actions.js';
import { DirectiveExpressions, hasTemplate, type ExpressionContext } from './expressions.js';
import type { DirectiveLibrary } from './library.js';
import { formatDiagnostic } from './load.js';
import { isAgent, type Policy } from './policy.js';
import { CAPABILITY_TOOLS, isCapabilityName, reachesTool, type CapabilityRegistry, type ToolCaller, type ToolInfo } from './registry.js';
import { FORBIDDEN_KEYS, type DirectiveDefinition, type Permission, type StepDefinition, type StepKind } from './schema.js';
import { forbiddenKey, resolveScript, runScript } from './scripts.js';
import {
  actionInputProblems,
  DEFAULT_STEP_TIMEOUT_MS,
  inputValueProblem,
  MAX_DIRECTIVE_DEPTH,
  stepKind,
  stepNeeds,
  stepTimeoutMs,
  validateDirective,
  waitProblem,
} from './validate.js';

export const MAX_STEPS_PER_RUN = 500;
export const MAX_FOREACH_ITEMS = 100;
export const MAX_INPUT_BYTES = 64 * 1024;
const MASK = '***';
/** A run of another host left `running` this long is abandoned: thirty heartbeats missed. */
const STALE_RUN_MS = 30 * 60_000;

/** This process as the owner of the runs it executes: another process on the host can tell when it has stopped. */
const OWNER = `${hostname()}:${process.pid}`;

/** Runs this process is executing, by id: what interruptRuns stops. */
const inFlight = new Map<string, { store: Store; controller: AbortController; done: Promise<unknown> }>();

/**
 * Stops this process's running directives before it exits: the step under way is aborted, the
 * changes applied so far are undone and the directives' rollback and finally steps run, as when a
 * step fails. Waits up to `waitMs` for them; a run still unfinished then is left to
 * DirectiveEngine.recoverInterrupted in the next process, which undoes its recorded changes.
 */
export async function interruptRuns(reason: string, options: { store?: Store; waitMs?: number } = {}): Promise<number> {
  const waitMs = options.waitMs ?? 30_000;
  const runs = [...inFlight.values()].filter((r) => options.store === undefined || r.store === options.store);
  for (const run of runs) run.controller.abort(new Error(`interrupted: ${reason}`));
  await firstOf(Promise.allSettled(runs.map((r) => r.done)), waitMs);
  return runs.length;
}

/** The promise's value if it settles within `ms`, else null (it goes on; the wait keeps no process alive). */
export async function firstOf<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), ms);
    timer.unref();
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Target locks of nested directives (their run rows) held by runs this process is executing. */
const heldLocks = new Set<string>();

/** Runs this process is recovering (recoverInterrupted), so a second call does not take them over again. */
const recovering = new Set<string>();

/** How often a run in flight marks itself alive (updated_at), so another host's Kiwi never takes it for abandoned. */
const HEARTBEAT_MS = 60_000;

/**
 * Whether a running run was left by a process that stopped. Its owner is `host:pid`: on this host
 * the pid says so (alive: never taken over; gone: abandoned). Another host's run, or one with no
 * owner, is abandoned once it has not moved for STALE_RUN_MS, while a live run's heartbeat moves it
 * every HEARTBEAT_MS. (A pid the system gave to another process since keeps its run held: rare,
 * and the safe side.)
 */
function abandoned(run: RunningRun, now: number): boolean {
  if (recovering.has(run.id)) return false;
  if (run.owner === OWNER) return !inFlight.has(run.id) && !heldLocks.has(run.id);
  const at = run.owner?.lastIndexOf(':') ?? -1;
  const pid = run.owner === null ? NaN : Number(run.owner.slice(at + 1));
  if (run.owner !== null && run.owner.slice(0, at) === hostname() && Number.isInteger(pid) && pid > 0) {
    try {
      process.kill(pid, 0);
      return false;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return true;
    }
  }
  return now - run.updated_at > STALE_RUN_MS;
}

/** Thrown when this process finds that another one took its run over (see abandoned): it stops without touching it. */
class RunTakenOver extends Error {}

export type Phase = 'steps' | 'undo' | 'rollback' | 'finally';

export interface PlannedStep {
  path: string;
  phase: Phase;
  name: string;
  kind: StepKind;
  ref: string;
  /** yes: runs; no: its condition is false; at run time: depends on earlier steps' outputs. */
  runs: 'yes' | 'no' | 'at run time';
  condition: string | null;
  inputs: unknown;
  foreach: number | 'at run time' | null;
  permissions: Permission[];
  granted: boolean;
  destructive: boolean;
  reversible: boolean;
  description: string | null;
  error: string | null;
}

export interface StepRecord {
  path: string;
  phase: Phase;
  name: string;
  kind: StepKind | 'undo';
  ref: string;
  item_index: number | null;
  inputs: unknown;
  output: unknown;
  outcome: 'ok' | 'failed' | 'skipped' | 'denied';
  error: string | null;
  attempts: number;
  started_at: string;
  duration_ms: number;
}

export interface RunRequest {
  directive: string;
  inputs?: Record<string, unknown>;
  mode?: 'plan' | 'execute';
  principal: string;
  approve?: boolean;
  idempotencyKey?: string;
  /** Called once the run holds its lock and starts executing, with its id (an answer may not wait for the end). */
  onStart?: (runId: string) => void;
  /** Aborting it interrupts the run as interruptRuns does (rolled back); already aborted, it does nothing before it ends. */
  signal?: AbortSignal;
}

export interface RunView extends DirectiveRunRow {
  /** The run already existed under this idempotency key; nothing ran again. */
  replayed: boolean;
  /** What happens next, in words (approval command, expiry). */
  next: string | null;
}

/** One argument a tool would refuse, found without calling it: `argument` is its name (or a dotted path into it). */
export interface ToolArgumentProblem {
  argument: string;
  message: string;
}

/**
 * A tool caller that can also say what a tool would refuse in its arguments without calling it: its
 * input schema, and what its handler parses itself (times) with the same function. Plan uses it to
 * check `tool` steps; a caller without it leaves their arguments to the tool at execute.
 */
export interface ToolArgumentChecker {
  check(name: string, args: Record<string, unknown>): ToolArgumentProblem[];
}

export interface EngineOptions {
  store: Store;
  library: DirectiveLibrary;
  scriptsDir: string;
  policy: Policy;
  capabilities?: CapabilityRegistry;
  tools?: (ToolCaller & Partial<ToolArgumentChecker>) | null;
  /** Given to scripts as KIWI_ACTIONS_DIR: where they leave requests for the platform (e.g. restarts). */
  actionsDir?: string;
}

class StepFailed extends Error {
  constructor(
    readonly path: string,
    message: string,
    /** A nested directive in it failed and could not undo all it had applied (its rollback is incomplete). */
    readonly leftApplied = false,
  ) {
    super(message);
  }
}

/** Whom an action runs for: its directive, principal and run, and the run's masker of secret inputs. */
interface ActionAs {
  directive: string;
  principal: string;
  runId: string;
  mask: (value: unknown) => unknown;
}

interface Frame {
  directive: DirectiveDefinition;
  expressions: DirectiveExpressions;
  context: ExpressionContext;
  depth: number;
  stack: string[];
  prefix: string;
  /** A nested directive's: aborted when its main steps must stop (the run is interrupted, its directive step timed out); else the run's `interrupted`. */
  signal?: AbortSignal;
}

interface RunState {
  run: DirectiveRunRow;
  /** Aborted by interruptRuns: the main steps stop; undo, rollback and finally still run. */
  interrupted: AbortSignal;
  principal: string;
  records: StepRecord[];
  applied: Undo[];
  mask: (value: unknown) => unknown;
  executed: number;
  tools: readonly ToolInfo[];
  /** Target locks taken by nested directives, by directive and target: their run rows' ids. */
  locks: Map<string, string>;
  /** Lock rows of nested directives that failed (and rolled back) in their last call: what each row closes with. */
  nestedFailures: Map<string, { status: RunStatus; error: string }>;
  /**
   * Failures the run went on after (continue_on_error) of steps whose nested directive could not
   * undo all it had applied, as `path (name) failed: ...`: the run cannot end succeeded or rolled_back.
   */
  leftApplied: string[];
  /** Errors of nested directives' finally steps: they fail the run as its own finally steps' do. */
  nestedFinallyErrors: string[];
}

/** Audit details a log line repeats: what happened, never what a step read or wrote. */
const AUDIT_LOG_FIELDS = ['status', 'error', 'reason', 'step', 'ref', 'approved_by', 'requested_by', 'expires_at', 'steps', 'undone', 'runs', 'limit', 'per_ms'] as const;
/** Audit actions logged as warnings: something was refused, expired or undone. */
const AUDIT_WARNINGS = new Set([
  'directive.refused',
  'directive.denied',
  'directive.rate_limited',
  'directive.self_approval_refused',
  'directive.approval_refused',
  'directive.expired',
  'directive.interrupted',
  'directive.undo',
]);

export class DirectiveEngine {
  readonly runs: DirectiveRunStore;
  private readonly store: Store;
  private readonly library: DirectiveLibrary;
  private readonly scriptsDir: string;
  private readonly policy: Policy;
  private readonly capabilities: CapabilityRegistry;
  private readonly tools: (ToolCaller & Partial<ToolArgumentChecker>) | null;
  private readonly actionsDir: string | undefined;

  constructor(options: EngineOptions) {
    this.store = options.store;
    this.runs = new DirectiveRunStore(options.store.db);
    this.library = options.library;
    this.scriptsDir = options.scriptsDir;
    this.policy = options.policy;
    this.capabilities = options.capabilities ?? {};
    this.tools = options.tools ?? null;
    this.actionsDir = options.actionsDir;
  }

  async toolList(): Promise<readonly ToolInfo[]> {
    return this.tools ? this.tools.list() : [];
  }

  /** Expires undecided runs whose deadline passed (deny by default); audited. */
  sweepExpired(now = Date.now()): number {
    const expired = this.runs.expireDue(now);
    for (const run of expired) {
      this.audit({ actor: 'kiwi', action: 'directive.expired', target: run.id, details: { directive: run.directive, requested_by: run.requested_by } });
    }
    return expired.length;
  }

  getRun(id: string): DirectiveRunRow | null {
    this.sweepExpired();
    return this.runs.get(id);
  }

  // ---------------------------------------------------------------- request

  async run(request: RunRequest): Promise<RunView> {
    this.sweepExpired();
    await this.recoverInterrupted();
    const mode = request.mode ?? 'plan';
    const { directive, tools } = await this.loadValid(request.directive);
    const inputs = resolveInputs(directive, request.inputs ?? {});
    const mask = masker(directive, inputs);
    const now = Date.now();

    if (request.idempotencyKey !== undefined) {
      const existing = this.runs.byIdempotencyKey(directive.name, request.idempotencyKey);
      if (existing) {
        // A replay answers the same request again; the same key with other inputs is a mistake, not a replay.
        if (canonicalJson([mode, mask(inputs)]) !== canonicalJson([existing.mode, existing.inputs])) {
          throw new Error(
            `idempotency_key: "${request.idempotencyKey}" was used for run ${existing.id} (${existing.mode}, inputs ${JSON.stringify(existing.inputs)}); ` +
              'this request differs, so use a new key',
          );
        }
        return { ...existing, replayed: true, next: `run ${existing.id} already exists under this idempotency key; nothing ran again` };
      }
    }

    const id = randomUUID();
    const frame = this.topFrame(directive, inputs, id, mode);
    const target = this.renderTarget(frame);
    const plan = this.planDirective(frame, request.principal, tools);
    const planErrors = plan.filter((p) => p.error !== null && p.runs !== 'no');
    const base: DirectiveRunRow = {
      id,
      directive: directive.name,
      version: directive.version,
      mode,
      status: 'planned',
      target,
      inputs: mask(inputs) as Record<string, unknown>,
      plan: mask(plan),
      steps: [],
      requested_by: request.principal,
      approved_by: null,
      // masked as the plan is: a check that refuses a value quotes it, and a secret input may be that value
      error: planErrors.length ? (mask(`plan: ${planErrors.map((p) => `${p.path}: ${p.error}`).join('; ')}`) as string) : null,
      idempotency_key: request.idempotencyKey ?? null,
      created_at: now,
      updated_at: now,
      expires_at: null,
      finished_at: now,
    };

    if (mode === 'plan') {
      this.insert(base);
      this.audit({ actor: request.principal, action: 'directive.plan', target: id, details: { directive: directive.name, inputs: base.inputs } });
      // executing would be refused: say so here rather than invite an execute that is denied
      const denied = this.deniedPermissions(plan.filter((p) => p.runs !== 'no'), request.principal);
      const next = planErrors.length
        ? 'fix the errors above before executing'
        : denied.length
          ? `execute would be denied: ${describeDenied(denied)} not granted to ${request.principal} by the policy (${this.policy.source}); ask an operator to grant it`
          : 'run again with mode execute to apply it';
      return { ...base, replayed: false, next };
    }

    if (planErrors.length) {
      const failed = { ...base, status: 'failed' as const };
      this.insert(failed);
      this.audit({ actor: request.principal, action: 'directive.refused', target: id, details: { directive: directive.name, error: failed.error } });
      return { ...failed, replayed: false, next: null };
    }

    this.checkRateLimit(directive.name, request.principal, now);

    const mayRun = plan.filter((p) => p.runs !== 'no');
    const denied = this.deniedPermissions(mayRun, request.principal);
    if (denied.length) {
      for (const { step, perm } of denied) this.recordPermission('deny', request.principal, perm, step.ref, id, directive.name);
      const deniedRun: DirectiveRunRow = {
        ...base,
        status: 'denied',
        error: `permission denied: ${describeDenied(denied)} not granted to ${request.principal} by the policy (${this.policy.source})`,
      };
      this.insert(deniedRun);
      this.audit({ actor: request.principal, action: 'directive.denied', target: id, details: { directive: directive.name, error: deniedRun.error } });
      return { ...deniedRun, replayed: false, next: 'ask an operator to grant the permission in the policy file' };
    }

    const needsApproval = mayRun.some((p) => p.destructive);
    let approvedBy: string | null = null;
    if (needsApproval && request.approve) {
      const refusal = this.approvalRefusal(request.principal, request.principal);
      if (refusal === null) approvedBy = request.principal;
      else if (isAgent(request.principal)) {
        this.audit({ actor: request.principal, action: 'directive.self_approval_refused', target: id, details: { reason: refusal } });
      } else throw new Error(`approve: ${refusal}`);
    }

    if (needsApproval && approvedBy === null) {
      const waiting: DirectiveRunRow = { ...base, status: 'awaiting_approval', expires_at: now + this.policy.approvalTtlMs, finished_at: null };
      this.insertHoldingLock(waiting);
      this.audit({ actor: request.principal, action: 'directive.awaiting_approval', target: id, details: { directive: directive.name, target, expires_at: waiting.expires_at } });
      const destructive = mayRun.filter((p) => p.destructive).map((p) => `${p.path} ${p.ref}`);
      return {
        ...waiting,
        replayed: false,
        next:
          `destructive steps (${destructive.join(', ')}) need approval: a human runs \`kiwi directive approve ${id}\` under this policy (--policy FILE or KIWI_POLICY) ` +
          `(or \`kiwi directive reject ${id}\`) before ${new Date(waiting.expires_at!).toISOString()}, when it expires`,
      };
    }

    const running: DirectiveRunRow = { ...base, status: 'running', approved_by: approvedBy, finished_at: null };
    this.insertHoldingLock(running);
    this.audit({
      actor: request.principal,
      action: 'directive.start',
      target: id,
      details: { directive: directive.name, target, approved_by: approvedBy, inputs: running.inputs },
    });
    const execution = this.execute(running, frame, request.principal, tools, request.signal);
    request.onStart?.(id);
    const finished = await execution;
    return { ...finished, replayed: false, next: null };
  }

  /** A human (or, where the policy lets it, an agent) approves a waiting run; it then executes here. */
  async approve(runId: string, approver: string, secretInputs: Record<string, unknown> = {}, signal?: AbortSignal): Promise<RunView> {
    this.sweepExpired();
    await this.recoverInterrupted();
    const run = this.runs.get(runId);
    if (!run) throw new Error(`run ${runId}: not found`);
    if (run.status === 'expired') throw new Error(`run ${runId}: approval expired at ${new Date(run.expires_at ?? 0).toISOString()}; request it again`);
    if (run.status !== 'awaiting_approval') throw new Error(`run ${runId}: is ${run.status}, not awaiting approval`);
    const refusal = this.approvalRefusal(approver, run.requested_by ?? '');
    if (refusal) {
      this.audit({ actor: approver, action: 'directive.approval_refused', target: runId, details: { reason: refusal } });
      throw new Error(`run ${runId}: ${refusal}`);
    }
    const { directive, tools } = await this.loadValid(run.directive);
    if (directive.version !== run.version) {
      throw new Error(`run ${runId}: ${run.directive} changed since it was planned (version ${run.version} -> ${directive.version}); reject it and plan again`);
    }
    const inputs: Record<string, unknown> = { ...run.inputs };
    for (const [name, spec] of Object.entries(directive.inputs ?? {})) {
      if (!spec.secret || inputs[name] === undefined) continue;
      if (secretInputs[name] === undefined) throw new Error(`inputs.${name}: secret inputs are not stored; give it again to approve`);
      inputs[name] = secretInputs[name];
    }
    const resolved = resolveInputs(directive, inputs);
    const frame = this.topFrame(directive, resolved, runId, 'execute');
    const replanned = this.planDirective(frame, run.requested_by ?? approver, tools);
    const sameSteps = JSON.stringify(replanned.map((p) => [p.path, p.ref, p.runs])) === JSON.stringify((run.plan as PlannedStep[]).map((p) => [p.path, p.ref, p.runs]));
    if (!sameSteps) throw new Error(`run ${runId}: the plan changed since it was requested (state or directive differs); reject it and plan again`);
    // The steps run as the requester under the policy of the process approving; were it a
    // different policy (a shell without --policy or KIWI_POLICY), the first step would be denied
    // and the approved run lost. Refuse instead, and leave the run waiting.
    const requester = run.requested_by ?? approver;
    const denied = this.deniedPermissions(replanned.filter((p) => p.runs !== 'no'), requester);
    if (denied.length) {
      const reason =
        `the policy in force here (${this.policy.source}) does not grant ${requester} ${describeDenied(denied)}; ` +
        'approve under the policy the run was requested with (--policy FILE or KIWI_POLICY). The run still awaits approval';
      this.audit({ actor: approver, action: 'directive.approval_refused', target: runId, details: { reason } });
      throw new Error(`run ${runId}: ${reason}`);
    }
    // An approver vouches for the destructive steps: they must hold those permissions themselves.
    const notApprovable = this.deniedPermissions(replanned.filter((p) => p.runs !== 'no' && p.destructive), approver);
    if (notApprovable.length) {
      const reason =
        `${approver} may not approve it: the policy (${this.policy.source}) does not grant ${approver} ${describeDenied(notApprovable)}; ` +
        'an approver must hold the permissions of the destructive steps. The run still awaits approval';
      this.audit({ actor: approver, action: 'directive.approval_refused', target: runId, details: { reason } });
      throw new Error(`run ${runId}: ${reason}`);
    }
    if (!this.runs.transition(runId, 'awaiting_approval', 'running', Date.now(), { approved_by: approver })) {
      throw new Error(`run ${runId}: someone else decided it first`);
    }
    this.audit({ actor: approver, action: 'directive.approved', target: runId, details: { directive: run.directive, requested_by: run.requested_by } });
    const running = { ...this.runs.get(runId)!, inputs: masker(directive, resolved)(resolved) as Record<string, unknown> };
    const finished = await this.execute(running, frame, run.requested_by ?? approver, tools, signal);
    return { ...finished, replayed: false, next: null };
  }

  reject(runId: string, principal: string, reason?: string): RunView {
    this.sweepExpired();
    const run = this.runs.get(runId);
    if (!run) throw new Error(`run ${runId}: not found`);
    if (!this.runs.transition(runId, 'awaiting_approval', 'rejected', Date.now(), { error: `rejected by ${principal}${reason ? `: ${reason}` : ''}`, finished: true })) {
      throw new Error(`run ${runId}: is ${run.status}, not awaiting approval`);
    }
    this.audit({ actor: principal, action: 'directive.rejected', target: runId, details: { reason: reason ?? null } });
    return { ...this.runs.get(runId)!, replayed: false, next: null };
  }

  /** Each permission a step that may run needs and the policy does not grant `principal`. */
  private deniedPermissions(steps: readonly PlannedStep[], principal: string): DeniedPermission[] {
    return steps.flatMap((step) => step.permissions.filter((perm) => !this.policy.granted(principal, perm)).map((perm) => ({ step, perm })));
  }

  private approvalRefusal(approver: string, requester: string): string | null {
    const { agents_may_approve, self_approval } = this.policy.config.approval;
    if (isAgent(approver) && !agents_may_approve) return `the policy (${this.policy.source}) does not let agents approve runs (approval.agents_may_approve is false); a human must run \`kiwi directive approve\``;
    if (approver === requester && !self_approval) return `${approver} requested this run and the policy forbids approving one's own run (approval.self_approval is false)`;
    return null;
  }

  // ---------------------------------------------------------------- loading

  private async loadValid(name: string): Promise<{ directive: DirectiveDefinition; tools: readonly ToolInfo[] }> {
    const entry = this.library.get(name);
    if (!entry) {
      const known = this.library.list().map((e) => e.name);
      throw new Error(`directive: unknown directive "${name}"; known: ${known.join(', ') || '(none)'}`);
    }
    const tools = await this.toolList();
    const diagnostics = validateDirective(entry.loaded, { library: this.library, scriptsDir: this.scriptsDir, tools }, entry.name);
    if (diagnostics.length || !entry.loaded.directive) {
      throw new Error(`directive ${name} is invalid:\n${diagnostics.map(formatDiagnostic).join('\n')}`);
    }
    return { directive: entry.loaded.directive, tools };
  }

  private topFrame(directive: DirectiveDefinition, inputs: Record<string, unknown>, runId: string, mode: string): Frame {
    return {
      directive,
      expressions: new DirectiveExpressions(directive.inputs ?? {}),
      context: { inputs, steps: {}, run: { id: runId, directive: directive.name, mode } },
      depth: 0,
      stack: [directive.name],
      prefix: '',
    };
  }

  private renderTarget(frame: Frame): string {
    if (frame.directive.target === undefined) return frame.directive.name;
    const value = frame.expressions.render(frame.directive.target, frame.context);
    if (typeof value !== 'string' && typeof value !== 'number') throw new Error(`target: must yield text, got ${JSON.stringify(value)}`);
    const text = String(value).slice(0, 200);
    if (text === '') throw new Error('target: yielded empty text');
    return text;
  }

  private insert(run: DirectiveRunRow): void {
    try {
      this.runs.insert(run);
    } catch (err) {
      if (isUniqueViolation(err) && run.idempotency_key !== null) throw new Error(`idempotency_key: "${run.idempotency_key}" is already used by another run of ${run.directive}`);
      throw err;
    }
  }

  /** Inserts an active run: the unique index on (directive, target) is the lock. */
  private insertHoldingLock(run: DirectiveRunRow): void {
    try {
      this.runs.insert(run);
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      if (run.idempotency_key !== null && this.runs.byIdempotencyKey(run.directive, run.idempotency_key)) {
        throw new Error(`idempotency_key: "${run.idempotency_key}" is already used by another run of ${run.directive}`);
      }
      const holder = this.runs.activeFor(run.directive, run.target);
      throw new Error(
        `target: ${run.directive} is already ${holder?.status ?? 'active'} for target "${run.target}" (${this.holderText(holder)}); one run per target at a time`,
      );
    }
  }

  /** The run holding a lock, for a refusal: a nested directive's lock names the run it is part of. */
  private holderText(holder: DirectiveRunRow | null): string {
    if (holder === null) return 'run ?';
    const parentId = parentRunId(holder.id);
    const parent = parentId === null ? null : this.runs.get(parentId);
    return parent ? `run ${parent.id} (${parent.directive}), which runs ${holder.directive} nested` : `run ${holder.id}`;
  }

  /**
   * A nested directive acts on its own target, so it takes that target's lock as a run of its own
   * would (no other run changes the target meanwhile) and holds it until the outer run ends: the
   * outer run's undo and rollback may still reach the nested changes. The lock is a run row of the
   * nested directive (id `<outer run id>.<n>`, see nestedRunId), closed when the outer run ends (releaseNested).
   */
  /** Throws (and audits) when `directive` already executed as often as the policy allows in its window. */
  private checkRateLimit(directive: string, principal: string, now: number): void {
    const limit = this.policy.rateLimit(directive);
    if (!limit) return;
    const recent = this.runs.executionsSince(directive, now - limit.perMs);
    if (recent < limit.runs) return;
    this.audit({ actor: principal, action: 'directive.rate_limited', target: directive, details: { runs: recent, limit: limit.runs, per_ms: limit.perMs } });
    throw new Error(`rate limit: ${directive} ran ${recent} times in the last ${limit.perMs / 1000} s; the policy allows ${limit.runs}`);
  }

  private lockNested(state: RunState, childFrame: Frame): string {
    const child = childFrame.directive;
    const target = this.renderTarget(childFrame);
    const key = `${child.name}\u0000${target}`;
    const taken = state.locks.get(key);
    if (taken !== undefined) return taken; // taken earlier in this run
    const now = Date.now();
    // nested, it acts as often as on its own: wrapping a directive does not lift its limit
    this.checkRateLimit(child.name, state.principal, now);
    const id = nestedRunId(state.run.id, state.locks.size + 1);
    const inputs = childFrame.context.inputs;
    try {
      this.runs.insert({
        id,
        directive: child.name,
        version: child.version,
        mode: 'execute',
        status: 'running',
        target,
        inputs: state.mask(masker(child, inputs)(inputs)) as Record<string, unknown>,
        plan: null,
        steps: [],
        requested_by: state.principal,
        approved_by: state.run.approved_by,
        error: null,
        idempotency_key: null,
        created_at: now,
        updated_at: now,
        expires_at: null,
        finished_at: null,
      });
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      const holder = this.runs.activeFor(child.name, target);
      throw new Error(
        `directive ${child.name}: already ${holder?.status ?? 'active'} for target "${target}" (${this.holderText(holder)}); one run per directive and target at a time`,
      );
    }
    this.runs.claim(id, OWNER, now);
    heldLocks.add(id);
    state.locks.set(key, id);
    return id;
  }

  /**
   * Closes the nested directives' lock rows: their targets are free again. A row closes with the
   * outer run's outcome, or with its directive's own when that failed (and rolled back) in its last call.
   */
  private releaseNested(state: RunState, status: RunStatus, error: string | null): void {
    for (const id of state.locks.values()) {
      const own = state.nestedFailures.get(id) ?? { status, error };
      this.runs.save(id, { status: own.status, steps: [], error: own.error === null ? null : `as part of run ${state.run.id}: ${own.error}`, finished: true }, Date.now(), OWNER);
      heldLocks.delete(id);
    }
  }

  /**
   * Finishes the runs a stopped process left `running` (see abandoned): undoes the changes each
   * recorded, newest first, and closes it as rolled_back, or failed when an undo failed; audited.
   * Its rollback and finally steps do not run: they were the stopped process's to run. Called
   * before every run and approval, so a stopped process holds no target's lock for long.
   */
  async recoverInterrupted(now = Date.now()): Promise<DirectiveRunRow[]> {
    const recovered: DirectiveRunRow[] = [];
    // a nested directive's lock last: its target stays taken until the outer run's undo is done
    const leftRuns = this.runs.running().sort((a, b) => Number(parentRunId(a.id) !== null) - Number(parentRunId(b.id) !== null));
    for (const left of leftRuns) {
      if (!abandoned(left, now) || !this.runs.takeOver(left, OWNER, now)) continue;
      recovering.add(left.id);
      try {
        const closed = await this.undoInterrupted(left);
        if (closed) recovered.push(closed);
      } finally {
        recovering.delete(left.id);
      }
    }
    return recovered;
  }

  /** Undoes what an interrupted run recorded and closes it; null when someone else closed it first. */
  private async undoInterrupted(left: RunningRun): Promise<DirectiveRunRow | null> {
    const as = { directive: left.directive, principal: left.requested_by ?? 'kiwi', runId: left.id, mask: (value: unknown) => value };
    const { undone, errors } = await this.undoChanges(as, 'kiwi', [...left.undo] as Undo[], 0);
    const parent = parentRunId(left.id);
    const error =
      `interrupted: the process running it (${left.owner ?? 'unknown'}) stopped; ` +
      (errors.length ? `rollback incomplete: ${errors.join('; ')}` : parent !== null ? `its changes are undone with run ${parent}` : `${undone.length} change(s) undone`);
    const status = errors.length ? 'failed' : 'rolled_back';
    if (!this.runs.transition(left.id, 'running', status, Date.now(), { error, finished: true })) return null;
    this.audit({ actor: 'kiwi', action: 'directive.interrupted', target: left.id, details: { directive: left.directive, owner: left.owner, status, undone } });
    log.warn(`directive run ${left.id} (${left.directive}) was left running by ${left.owner ?? 'a stopped process'}: ${error}`);
    return this.runs.get(left.id);
  }

  /**
   * An entry in the audit trail, and the same event as a log line (info, warn when something was
   * refused or undone), which MCP sessions that set a log level receive: a run's progress reaches
   * the agent that started it without polling. The line names the run, directive, actor, step and
   * outcome, never inputs or outputs.
   */
  private audit(entry: Parameters<Store['appendAudit']>[0]): void {
    this.store.appendAudit(entry);
    const details: Record<string, unknown> = entry.details ?? {};
    const fields: Record<string, unknown> = { run: entry.target ?? null, actor: entry.actor };
    for (const key of AUDIT_LOG_FIELDS) if (details[key] !== undefined && details[key] !== null) fields[key] = details[key];
    const line = `${entry.action}${typeof details.directive === 'string' ? ` ${details.directive}` : ''}`;
    if (AUDIT_WARNINGS.has(entry.action) || (entry.action === 'directive.finish' && details.status !== 'succeeded')) log.warn(line, fields);
    else log.info(line, fields);
  }

  private recordPermission(decision: 'allow' | 'deny', principal: string, permission: string, tool: string, runId: string, directive: string): void {
    try {
      this.store.writeRecords([
        normaliseRecord({
          type: 'event',
          ts: Date.now(),
          kind: 'permission',
          component: 'kiwi',
          level: decision === 'deny' ? 'warn' : 'info',
          message: `${decision} ${permission} for ${principal} on ${tool}`,
          attrs: { decision, principal, tool, permission, 'kiwi.directive': directive, 'kiwi.run_id': runId },
        }),
      ]);
    } catch (err) {
      log.warn('could not record a permission decision', { error: (err as Error).message });
    }
  }

  // ---------------------------------------------------------------- plan

  private planDirective(frame: Frame, principal: string, tools: readonly ToolInfo[]): PlannedStep[] {
    const out: PlannedStep[] = [];
    this.planSteps(frame, frame.directive.steps, 'steps', frame.prefix + 'steps', principal, tools, out, 'yes');
    this.planSteps(frame, frame.directive.rollback ?? [], 'rollback', frame.prefix + 'rollback', principal, tools, out, 'at run time');
    this.planSteps(frame, frame.directive.finally ?? [], 'finally', frame.prefix + 'finally', principal, tools, out, 'yes');
    return out;
  }

  private planSteps(
    frame: Frame,
    steps: readonly StepDefinition[],
    phase: Phase,
    base: string,
    principal: string,
    tools: readonly ToolInfo[],
    out: PlannedStep[],
    parentRuns: PlannedStep['runs'],
  ): void {
    steps.forEach((step, i) => {
      const path = `${base}[${i}]`;
      const kind = stepKind(step);
      const entry: PlannedStep = {
        path,
        phase,
        name: step.name ?? autoName(path),
        kind,
        ref: '',
        runs: parentRuns,
        condition: null,
        inputs: null,
        foreach: null,
        permissions: [],
        granted: true,
        destructive: false,
        reversible: false,
        description: null,
        error: null,
      };
      out.push(entry);
      try {
        const needs = stepNeeds(step, { library: this.library, tools });
        Object.assign(entry, { ref: needs.ref, permissions: needs.permissions, destructive: needs.destructive, reversible: needs.reversible });
        entry.granted = needs.permissions.every((p) => this.policy.granted(principal, p));
        const condition = step.conditional ? step.conditional.if : step.if;
        if (condition !== undefined) {
          entry.condition = String(condition);
          const decided = this.decide(frame, condition);
          if (decided === false) entry.runs = 'no';
          else if (decided === null && entry.runs === 'yes') entry.runs = 'at run time';
        }
        if (step.conditional) {
          const decided = this.decide(frame, step.conditional.if);
          const thenRuns = entry.runs === 'no' ? 'no' : decided === null ? 'at run time' : decided && parentRuns === 'yes' ? 'yes' : decided ? parentRuns : 'no';
          const elseRuns = entry.runs === 'no' ? 'no' : decided === null ? 'at run time' : !decided && parentRuns === 'yes' ? 'yes' : !decided ? parentRuns : 'no';
          entry.runs = parentRuns;
          this.planSteps(frame, step.conditional.then, phase, `${path}.then`, principal, tools, out, thenRuns);
          this.planSteps(frame, step.conditional.else ?? [], phase, `${path}.else`, principal, tools, out, elseRuns);
          return;
        }
        if (entry.runs === 'no') return; // not rendered: its inputs may only make sense when it runs
        if (step.foreach !== undefined) {
          if (dependsOnSteps(step.foreach)) entry.foreach = 'at run time';
          else entry.foreach = this.foreachItems(frame, step.foreach).length;
        }
        entry.inputs = this.renderForPlan(frame, step.inputs ?? {}, step.foreach !== undefined);
        // Each value known now (constants, inputs, run) is checked as the step will check it, so a
        // clean plan does not fail at execute on one of them; a value waiting for an earlier step's
        // output is left to execute, and the plan shows it as deferred.
        const inputs = entry.inputs as Record<string, unknown>;
        if (kind === 'action') {
          const action = ACTIONS[needs.ref]!;
          const complete = !containsDeferred(inputs);
          const parsed = complete ? action.inputs.safeParse(inputs) : null;
          const problems = parsed === null ? actionInputProblems(needs.ref, inputs).map((p) => p.message) : parsed.success ? [] : parsed.error.issues.map(issueText);
          const wait = waitProblem(step, inputs, stepTimeoutMs(step));
          if (wait) problems.push(`${wait.field}: ${wait.message}`);
          // detect, explain and forecast reached through their tool: what it would refuse (a lookback without a unit, a horizon too far) fails here
          if (isCapabilityName(needs.ref) && reachesTool(this.capabilities[needs.ref])) problems.push(...this.toolArgumentProblems(CAPABILITY_TOOLS[needs.ref], inputs));
          if (problems.length) throw new Error(problems.join('; '));
          if (parsed?.success) entry.description = action.describe ? action.describe({ store: this.store, runs: this.runs, policy: this.policy }, parsed.data) : null;
        } else if (kind === 'script') {
          entry.description = `run scripts/${step.script} (no shell; inputs as JSON on stdin)`;
          resolveScript(this.scriptsDir, step.script!);
        } else if (kind === 'tool') {
          entry.description = `call Kiwi tool ${needs.ref}`;
          const problems = this.toolArgumentProblems(needs.ref, inputs);
          if (problems.length) throw new Error(problems.join('; '));
        } else if (kind === 'directive') {
          entry.description = `run directive ${needs.ref}`;
          this.planChild(frame, step, entry, principal, tools, out);
        }
      } catch (err) {
        entry.error = (err as Error).message;
      }
    });
  }

  /**
   * What the tool would refuse in the arguments known now, as `argument: reason`. Arguments waiting
   * for an earlier step's output are not passed, and nothing is said of them (not even "required").
   */
  private toolArgumentProblems(tool: string, inputs: Record<string, unknown>): string[] {
    if (!this.tools?.check) return [];
    const waiting = new Set(Object.keys(inputs).filter((key) => containsDeferred(inputs[key])));
    const known = Object.fromEntries(Object.entries(inputs).filter(([key]) => !waiting.has(key)));
    return this.tools
      .check(tool, known)
      .filter((p) => !waiting.has(p.argument.split('.')[0]!))
      .map((p) => (p.argument === '' ? p.message : `${p.argument}: ${p.message}`));
  }

  private planChild(frame: Frame, step: StepDefinition, entry: PlannedStep, principal: string, tools: readonly ToolInfo[], out: PlannedStep[]): void {
    if (frame.stack.includes(step.directive!)) throw new Error(`directive cycle: ${[...frame.stack, step.directive].join(' -> ')}`);
    if (frame.depth + 1 >= MAX_DIRECTIVE_DEPTH) throw new Error(`directives nest deeper than ${MAX_DIRECTIVE_DEPTH}`);
    // what would refuse it run alone refuses it nested, whether or not its inputs are known yet
    const loaded = this.library.get(step.directive!)!.loaded;
    const invalid = validateDirective(loaded, { library: this.library, scriptsDir: this.scriptsDir, tools }, step.directive);
    if (invalid.length) throw new Error(`directive ${step.directive} is invalid: ${invalid.map(formatDiagnostic).join('; ')}`);
    if (containsDeferred(entry.inputs)) return;
    const child = loaded.directive!;
    const childInputs = resolveInputs(child, entry.inputs as Record<string, unknown>);
    const childFrame = this.childFrame(frame, child, childInputs, `${entry.path}>`);
    const nested: PlannedStep[] = [];
    this.planSteps(childFrame, child.steps, 'steps', `${childFrame.prefix}steps`, principal, tools, nested, entry.runs);
    // a nested directive that fails runs its own rollback, which must be planned (and approved) as the top level's is
    this.planSteps(childFrame, child.rollback ?? [], 'rollback', `${childFrame.prefix}rollback`, principal, tools, nested, entry.runs === 'no' ? 'no' : 'at run time');
    this.planSteps(childFrame, child.finally ?? [], 'finally', `${childFrame.prefix}finally`, principal, tools, nested, entry.runs);
    out.push(...nested);
  }

  private childFrame(parent: Frame, child: DirectiveDefinition, inputs: Record<string, unknown>, prefix: string): Frame {
    return {
      directive: child,
      expressions: new DirectiveExpressions(child.inputs ?? {}),
      context: { inputs, steps: {}, run: parent.context.run },
      depth: parent.depth + 1,
      stack: [...parent.stack, child.name],
      prefix,
    };
  }

  /** true/false when the condition can be decided now; null when it reads earlier steps' outputs. */
  private decide(frame: Frame, condition: string | boolean): boolean | null {
    if (typeof condition === 'boolean') return condition;
    if (dependsOnSteps(condition)) return null;
    return frame.expressions.condition(condition, frame.context);
  }

  private renderForPlan(frame: Frame, value: unknown, inForeach: boolean): unknown {
    if (typeof value === 'string') {
      if (!hasTemplate(value)) return value;
      if (dependsOnSteps(value) || (inForeach && /\b(item|index)\b/.test(value))) return { deferred: value };
      return frame.expressions.render(value, frame.context);
    }
    if (Array.isArray(value)) return value.map((v) => this.renderForPlan(frame, v, inForeach));
    if (value !== null && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[k] = this.renderForPlan(frame, v, inForeach);
      return out;
    }
    return value;
  }

  private foreachItems(frame: Frame, foreach: string | unknown[]): unknown[] {
    const items = typeof foreach === 'string' ? frame.expressions.render(foreach, frame.context) : frame.expressions.render(foreach, frame.context);
    if (!Array.isArray(items)) throw new Error(`foreach: yielded ${items === null ? 'null' : typeof items}, not a list`);
    if (items.length > MAX_FOREACH_ITEMS) throw new Error(`foreach: ${items.length} items; at most ${MAX_FOREACH_ITEMS}`);
    return items;
  }

  // ---------------------------------------------------------------- execute

  private execute(run: DirectiveRunRow, frame: Frame, principal: string, tools: readonly ToolInfo[], stop?: AbortSignal): Promise<DirectiveRunRow> {
    const controller = new AbortController();
    const onStop = () => controller.abort(new Error(`interrupted: ${String((stop?.reason as Error | undefined)?.message ?? stop?.reason)}`));
    if (stop?.aborted) onStop();
    else stop?.addEventListener('abort', onStop, { once: true });
    this.runs.claim(run.id, OWNER, Date.now());
    const locks = new Map<string, string>();
    // a live run moves updated_at (and its nested directives' locks'), whatever its steps do, so no other host takes it for abandoned
    const heartbeat = setInterval(() => {
      for (const id of [run.id, ...locks.values()]) this.runs.touch(id, OWNER, Date.now());
    }, HEARTBEAT_MS);
    heartbeat.unref();
    const done = this.executeRun(run, frame, principal, tools, controller.signal, locks).finally(() => {
      clearInterval(heartbeat);
      stop?.removeEventListener('abort', onStop);
      inFlight.delete(run.id);
      // released by now, unless the run was taken over or failed unexpectedly: then recovery closes them
      for (const id of locks.values()) heldLocks.delete(id);
    });
    inFlight.set(run.id, { store: this.store, controller, done });
    return done;
  }

  private async executeRun(
    run: DirectiveRunRow,
    frame: Frame,
    principal: string,
    tools: readonly ToolInfo[],
    interrupted: AbortSignal,
    locks: Map<string, string>,
  ): Promise<DirectiveRunRow> {
    const state: RunState = {
      run,
      interrupted,
      principal,
      records: [],
      applied: [],
      mask: masker(frame.directive, frame.context.inputs),
      executed: 0,
      tools,
      locks,
      nestedFailures: new Map(),
      leftApplied: [],
      nestedFinallyErrors: [],
    };
    let failure: Error | null = null;
    try {
      await this.executeSteps(frame, state, frame.directive.steps, 'steps', `${frame.prefix}steps`, false);
    } catch (err) {
      failure = err as Error;
    }
    try {
      return await this.finishRun(frame, state, failure);
    } catch (err) {
      if (!(err instanceof RunTakenOver)) throw err;
      // another process took it for abandoned and undid what it had recorded: leave the run to it
      log.warn(`directive run ${run.id} (${run.directive}): ${err.message}, which undid its recorded changes; stopped here`);
      return this.runs.get(run.id)!;
    }
  }

  /**
   * After the main steps: the undo and rollback when they failed, else the rollback steps recorded
   * skipped; the finally steps; then the outcome. A run that leaves applied a change it could not
   * undo (its own, or a nested directive's under continue_on_error) ends failed, never succeeded or
   * rolled_back. Throws RunTakenOver, without running more steps, once another process took the run.
   */
  private async finishRun(frame: Frame, state: RunState, failure: Error | null): Promise<DirectiveRunRow> {
    const { run, principal } = state;
    if (failure instanceof RunTakenOver) throw failure;
    const cleanupErrors: string[] = [];
    if (failure) {
      cleanupErrors.push(...(await this.undoApplied(frame, state)));
      cleanupErrors.push(...(await this.executeSteps(frame, state, frame.directive.rollback ?? [], 'rollback', `${frame.prefix}rollback`, true)));
    } else this.skipSteps(frame, state, 'rollback', [[frame.directive.rollback ?? [], `${frame.prefix}rollback`]]);
    const finallyErrors = [...state.nestedFinallyErrors, ...(await this.executeSteps(frame, state, frame.directive.finally ?? [], 'finally', `${frame.prefix}finally`, true))];

    let status: RunStatus = 'succeeded';
    const problems: string[] = [];
    if (failure) {
      const leftApplied = cleanupErrors.length > 0 || (failure instanceof StepFailed && failure.leftApplied) || state.leftApplied.length > 0;
      status = leftApplied ? 'failed' : 'rolled_back';
      // the failure names a nested directive's incomplete rollback itself; the rest is said here
      const cleanup = cleanupErrors.length ? `rollback incomplete: ${cleanupErrors.join('; ')}` : leftApplied ? 'other changes rolled back' : 'changes rolled back';
      problems.push(`${failure.message}; ${cleanup}`, ...state.leftApplied);
    } else if (state.leftApplied.length || finallyErrors.length) {
      status = 'failed';
      problems.push(...state.leftApplied);
      if (finallyErrors.length) problems.push(`finally: ${finallyErrors.join('; ')}`);
    }
    const error = problems.length ? (state.mask(problems.join('; ')) as string) : null;
    // only now, after the undo, rollback and finally steps: they may change the nested directives' targets
    this.releaseNested(state, status, error);
    if (!this.runs.save(run.id, { status, steps: state.records, error, finished: true }, Date.now(), OWNER)) return this.runs.get(run.id)!;
    this.audit({
      actor: principal,
      action: 'directive.finish',
      target: run.id,
      details: { directive: run.directive, status, error, steps: state.records.length, undone: state.records.filter((r) => r.phase === 'undo').length },
    });
    return this.runs.get(run.id)!;
  }

  /**
   * Runs steps in order. Main steps throw on the first failure, and the steps after it, never
   * reached, are recorded skipped (a rollback or finally step reads them as it reads a step whose
   * `if` was false); rollback/finally steps go on and return their errors. A takeover by another
   * process stops any of them.
   */
  private async executeSteps(frame: Frame, state: RunState, steps: readonly StepDefinition[], phase: Phase, base: string, keepGoing: boolean): Promise<string[]> {
    const errors: string[] = [];
    for (let i = 0; i < steps.length; i++) {
      try {
        if (phase === 'steps') (frame.signal ?? state.interrupted).throwIfAborted();
      } catch (err) {
        this.skipSteps(frame, state, phase, [[steps, base, i]]);
        throw err;
      }
      try {
        await this.executeStep(frame, state, steps[i]!, `${base}[${i}]`, phase, keepGoing);
      } catch (err) {
        if (err instanceof RunTakenOver) throw err;
        if (!keepGoing) {
          this.skipSteps(frame, state, phase, [[steps, base, i + 1]]);
          throw err;
        }
        errors.push((err as Error).message);
      }
    }
    return errors;
  }

  private async executeStep(frame: Frame, state: RunState, step: StepDefinition, path: string, phase: Phase, keepGoing: boolean): Promise<void> {
    const name = step.name ?? autoName(path);
    const kind = stepKind(step);
    const started = Date.now();
    const record = (r: Partial<StepRecord>): StepRecord => {
      const full: StepRecord = {
        path,
        phase,
        name,
        kind,
        ref: r.ref ?? '',
        item_index: null,
        inputs: null,
        output: null,
        outcome: 'ok',
        error: null,
        attempts: 0,
        started_at: new Date(started).toISOString(),
        duration_ms: Date.now() - started,
        ...r,
      };
      full.inputs = state.mask(full.inputs);
      full.output = state.mask(boundOutput(full.output));
      full.error = full.error === null ? null : (state.mask(full.error) as string);
      state.records.push(full);
      this.saveProgress(state);
      return full;
    };
    /** `leftApplied`: a nested directive in it could not undo all it had applied. */
    const fail = (message: string, partial: Partial<StepRecord> = {}, leftApplied = false): never => {
      record({ ...partial, outcome: partial.outcome ?? 'failed', error: message });
      frame.context.steps[name] = { output: null, outcome: 'failed' };
      // a conditional that failed took neither branch
      if (step.conditional) this.skipSteps(frame, state, phase, [[step.conditional.then, `${path}.then`], [step.conditional.else ?? [], `${path}.else`]]);
      const failure = `${path} (${name}) failed: ${message}`;
      if (step.continue_on_error && !keepGoing) {
        if (leftApplied) state.leftApplied.push(failure);
        return undefined as never;
      }
      throw new StepFailed(path, failure, leftApplied);
    };

    if (++state.executed > MAX_STEPS_PER_RUN) return fail(`more than ${MAX_STEPS_PER_RUN} steps in one run`);

    const condition = step.conditional ? step.conditional.if : step.if;
    if (condition !== undefined) {
      let holds: boolean;
      try {
        holds = frame.expressions.condition(condition, frame.context);
      } catch (err) {
        return fail(`if: ${(err as Error).message}`);
      }
      if (step.conditional) {
        record({ ref: 'conditional', output: { branch: holds ? 'then' : 'else' } });
        this.skipSteps(frame, state, phase, [holds ? [step.conditional.else ?? [], `${path}.else`] : [step.conditional.then, `${path}.then`]]);
        const branch = holds ? step.conditional.then : (step.conditional.else ?? []);
        const branchErrors = await this.executeSteps(frame, state, branch, phase, `${path}.${holds ? 'then' : 'else'}`, keepGoing);
        if (branchErrors.length) throw new Error(branchErrors.join('; '));
        return;
      }
      if (!holds) {
        record({ outcome: 'skipped', ref: step.action ?? step.script ?? step.tool ?? step.directive ?? '' });
        frame.context.steps[name] = { output: null, outcome: 'skipped' };
        return;
      }
    }

    let needs;
    try {
      needs = stepNeeds(step, { library: this.library, tools: state.tools });
    } catch (err) {
      return fail((err as Error).message);
    }
    for (const permission of needs.permissions) {
      const granted = this.policy.granted(state.principal, permission);
      this.recordPermission(granted ? 'allow' : 'deny', state.principal, permission, needs.ref, state.run.id, frame.directive.name);
      if (!granted) return fail(`permission ${permission} not granted to ${state.principal}`, { ref: needs.ref, outcome: 'denied' });
    }

    let items: unknown[] = [undefined];
    if (step.foreach !== undefined) {
      try {
        items = this.foreachItems(frame, step.foreach);
      } catch (err) {
        return fail((err as Error).message, { ref: needs.ref });
      }
    }
    const timeoutMs = stepTimeoutMs(step);
    const outputs: unknown[] = [];
    for (let index = 0; index < items.length; index++) {
      const itemStarted = Date.now();
      const context: ExpressionContext = step.foreach !== undefined ? { ...frame.context, item: items[index], index } : frame.context;
      let inputs: Record<string, unknown>;
      try {
        inputs = frame.expressions.render(step.inputs ?? {}, context) as Record<string, unknown>;
        const bad = forbiddenKey(inputs);
        if (bad) throw new Error(`inputs: key "${bad}" is not allowed`);
      } catch (err) {
        return fail(`inputs: ${(err as Error).message}`, { ref: needs.ref, item_index: step.foreach !== undefined ? index : null });
      }
      const attemptsAllowed = 1 + (step.retries ?? 0);
      let lastError: Error | null = null;
      let result: ActionResult | null = null;
      let attempts = 0;
      while (attempts < attemptsAllowed) {
        attempts++;
        try {
          const interrupted = phase === 'steps' ? (frame.signal ?? state.interrupted) : undefined;
          // a nested directive is waited for when stopped: it undoes, rolls back and ends before the step is done with
          result = await withTimeout(timeoutMs, (signal) => this.runOnce(frame, state, step, needs.ref, inputs, signal, timeoutMs), interrupted, kind === 'directive');
          break;
        } catch (err) {
          if (err instanceof RunTakenOver) throw err;
          lastError = err as Error;
          if (err instanceof StepFailed) break; // a nested directive already rolled its own way; don't retry it blindly
          if (phase === 'steps' && (frame.signal ?? state.interrupted).aborted) break;
          if (attempts < attemptsAllowed) await new Promise((r) => setTimeout(r, Math.min(250 * attempts, 2000)));
        }
      }
      const itemIndex = step.foreach !== undefined ? index : null;
      if (!result) {
        const leftApplied = lastError instanceof StepFailed && lastError.leftApplied;
        return fail(lastError?.message ?? 'failed', { ref: needs.ref, inputs, attempts, item_index: itemIndex, duration_ms: Date.now() - itemStarted }, leftApplied);
      }
      if (result.undo && phase === 'steps') {
        state.applied.push(result.undo);
        if (!this.runs.saveUndo(state.run.id, state.applied, Date.now(), OWNER)) {
          // taken over: the new owner undid what the run had recorded, which this change is not
          await this.undoApplied(frame, state, state.applied.length - 1);
          throw new RunTakenOver(`run ${state.run.id} was taken over by another process`);
        }
      }
      outputs.push(result.output);
      record({ ref: needs.ref, inputs, output: result.output, attempts, item_index: itemIndex, duration_ms: Date.now() - itemStarted });
      if (needs.permissions.some((p) => p !== 'read:metrics')) {
        this.audit({
          actor: state.principal,
          action: 'directive.step',
          target: state.run.id,
          details: { directive: frame.directive.name, step: path, kind, ref: needs.ref, inputs: state.mask(inputs), output: state.mask(boundOutput(result.output)) } as Record<string, unknown>,
        });
      }
    }
    frame.context.steps[name] = { output: step.foreach !== undefined ? outputs : outputs[0], outcome: 'ok' };
  }

  /** Saves the steps recorded so far; stops the run when another process took it over. */
  private saveProgress(state: RunState): void {
    if (!this.runs.save(state.run.id, { status: 'running', steps: state.records, error: null, finished: false }, Date.now(), OWNER)) {
      throw new RunTakenOver(`run ${state.run.id} was taken over by another process`);
    }
  }

  /**
   * Records steps that do not run as skipped, as a step whose `if` is false is: those of a
   * conditional's branch not taken (and of the conditionals in it), the main steps after the one
   * that stopped the run (from `from` on), the rollback steps of a run that did not fail. A later
   * step reads its outcome as 'skipped' and its output as null, where it would otherwise find no such step.
   */
  private skipSteps(frame: Frame, state: RunState, phase: Phase, branches: [readonly StepDefinition[], string, from?: number][]): void {
    if (branches.every(([steps, , from = 0]) => steps.length <= from)) return;
    const now = new Date().toISOString();
    const skip = (steps: readonly StepDefinition[], base: string, from = 0): void =>
      steps.forEach((step, i) => {
        if (i < from) return;
        const path = `${base}[${i}]`;
        const name = step.name ?? autoName(path);
        const ref = step.conditional ? 'conditional' : (step.action ?? step.script ?? step.tool ?? step.directive ?? '');
        state.records.push({ path, phase, name, kind: stepKind(step), ref, item_index: null, inputs: null, output: null, outcome: 'skipped', error: null, attempts: 0, started_at: now, duration_ms: 0 });
        frame.context.steps[name] = { output: null, outcome: 'skipped' };
        if (step.conditional) {
          skip(step.conditional.then, `${path}.then`);
          skip(step.conditional.else ?? [], `${path}.else`);
        }
      });
    for (const [steps, base, from] of branches) skip(steps, base, from);
    this.saveProgress(state);
  }

  private async runOnce(frame: Frame, state: RunState, step: StepDefinition, ref: string, inputs: Record<string, unknown>, signal: AbortSignal, timeoutMs: number): Promise<ActionResult> {
    const kind = stepKind(step);
    if (kind === 'action') return this.runAction(frame, state, ref, inputs, signal);
    if (kind === 'script') {
      const path = resolveScript(this.scriptsDir, step.script!);
      const env: Record<string, string> = {
        ...this.policy.config.scripts.env,
        KIWI_RUN_ID: state.run.id,
        KIWI_DIRECTIVE: frame.directive.name,
      };
      if (this.actionsDir) env.KIWI_ACTIONS_DIR = this.actionsDir;
      const result = await runScript({
        path,
        input: inputs,
        timeoutMs,
        maxOutputBytes: this.policy.config.scripts.max_output_bytes,
        env,
        cwd: this.scriptsDir,
        signal,
      });
      return { output: result.output };
    }
    if (kind === 'tool') {
      if (!this.tools) throw new Error('no tool access in this engine');
      const result = await this.tools.call(ref, inputs, signal);
      if (result.isError) throw new Error(`${ref}: ${result.text.slice(0, 500)}`);
      return { output: result.structured ?? { text: result.text.slice(0, 4000) } };
    }
    // A nested directive: same run, same undo stack. It ends as a run of it would, as a called
    // function does, before the outer run goes on: when it fails it undoes its own changes and runs
    // its rollback (whatever the outer step's continue_on_error then does, nothing of it stays
    // applied), and its finally steps run. A change of it that stands is undone with the outer
    // run's, should that fail later. Its target stays locked until the outer run ends (lockNested).
    if (frame.stack.includes(ref)) throw new Error(`directive cycle: ${[...frame.stack, ref].join(' -> ')}`);
    if (frame.depth + 1 >= MAX_DIRECTIVE_DEPTH) throw new Error(`directives nest deeper than ${MAX_DIRECTIVE_DEPTH}`);
    const child = this.library.get(ref)?.loaded.directive;
    if (!child) throw new Error(`directive ${ref} is not available`);
    const childFrame: Frame = { ...this.childFrame(frame, child, resolveInputs(child, inputs), `${frame.prefix}${ref}>`), signal };
    const lock = this.lockNested(state, childFrame);
    const childMask = masker(child, childFrame.context.inputs);
    const parentMask = state.mask;
    state.mask = (v) => childMask(parentMask(v));
    const outerChanges = state.applied.length; // those below are the outer run's
    const leftBefore = state.leftApplied.length;
    let takenOver = false;
    try {
      try {
        await this.executeSteps(childFrame, state, child.steps, 'steps', `${childFrame.prefix}steps`, false);
        this.skipSteps(childFrame, state, 'rollback', [[child.rollback ?? [], `${childFrame.prefix}rollback`]]);
        state.nestedFailures.delete(lock);
      } catch (err) {
        if (err instanceof RunTakenOver) throw err;
        const cleanupErrors = await this.undoApplied(childFrame, state, outerChanges);
        cleanupErrors.push(...(await this.executeSteps(childFrame, state, child.rollback ?? [], 'rollback', `${childFrame.prefix}rollback`, true)));
        const failure = (err as Error).message;
        const incomplete = cleanupErrors.length ? `rollback incomplete: ${cleanupErrors.join('; ')}` : null;
        // what a step of it failed to undo, or one of its nested directives, stays applied too
        const leftApplied = incomplete !== null || (err instanceof StepFailed && err.leftApplied) || state.leftApplied.length > leftBefore;
        const rolledBack = leftApplied ? 'other changes rolled back' : 'changes rolled back';
        state.nestedFailures.set(lock, { status: leftApplied ? 'failed' : 'rolled_back', error: state.mask(`${failure}; ${incomplete ?? rolledBack}`) as string });
        throw new StepFailed(childFrame.prefix, state.mask(`${failure}; its ${incomplete ?? rolledBack}`) as string, leftApplied);
      }
    } catch (err) {
      // its steps, rollback and finally are no longer this process's to run: the new owner undid what the run recorded
      takenOver = err instanceof RunTakenOver;
      throw err;
    } finally {
      if (!takenOver) state.nestedFinallyErrors.push(...(await this.executeSteps(childFrame, state, child.finally ?? [], 'finally', `${childFrame.prefix}finally`, true)));
      state.mask = parentMask;
    }
    const outputs: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(childFrame.context.steps)) outputs[k] = v.output;
    return { output: { directive: ref, steps: outputs } };
  }

  private runAction(frame: Frame, state: RunState, name: string, inputs: Record<string, unknown>, signal: AbortSignal): Promise<ActionResult> {
    return this.runActionAs({ directive: frame.directive.name, principal: state.principal, runId: state.run.id, mask: state.mask }, name, inputs, signal);
  }

  private async runActionAs(
    as: ActionAs,
    name: string,
    inputs: Record<string, unknown>,
    signal: AbortSignal,
  ): Promise<ActionResult> {
    const action = ACTIONS[name];
    if (!action) throw new Error(`unknown action "${name}"`);
    const parsed = action.inputs.safeParse(inputs);
    if (!parsed.success) throw new Error(`inputs: ${parsed.error.issues.map(issueText).join('; ')}`);
    const ctx: ActionContext = {
      store: this.store,
      runs: this.runs,
      policy: this.policy,
      capabilities: this.capabilities,
      principal: as.principal,
      runId: as.runId,
      directive: as.directive,
      signal,
      mask: as.mask,
    };
    return action.run(ctx, parsed.data);
  }

  /** Applies the inverses of the changes made so far (those after the first `keep`), newest first. Returns the errors. */
  private async undoApplied(frame: Frame, state: RunState, keep = 0): Promise<string[]> {
    const as = { directive: frame.directive.name, principal: state.principal, runId: state.run.id, mask: state.mask };
    const { errors } = await this.undoChanges(as, state.principal, state.applied, keep, (undo, started, outcome, output, error) =>
      state.records.push({
        path: `${frame.prefix}undo`,
        phase: 'undo',
        name: undo.description,
        kind: 'undo',
        ref: undo.action,
        item_index: null,
        inputs: state.mask(undo.inputs),
        output,
        outcome,
        error,
        attempts: 1,
        started_at: new Date(started).toISOString(),
        duration_ms: Date.now() - started,
      }),
    );
    return errors;
  }

  /**
   * Applies the inverses in `changes` but the first `keep`, newest first, popping each and storing
   * what is left once it was tried (so a process that stops here leaves the rest to
   * recoverInterrupted); each undo is audited, and reported to `each` when given.
   */
  private async undoChanges(
    as: ActionAs,
    auditActor: string,
    changes: Undo[],
    keep: number,
    each?: (undo: Undo, started: number, outcome: 'ok' | 'failed', output: unknown, error: string | null) => void,
  ): Promise<{ undone: string[]; errors: string[] }> {
    const undone: string[] = [];
    const errors: string[] = [];
    while (changes.length > keep) {
      const undo = changes.pop()!;
      const started = Date.now();
      try {
        const result = await withTimeout(DEFAULT_STEP_TIMEOUT_MS, (signal) => this.runActionAs(as, undo.action, undo.inputs, signal));
        undone.push(undo.description);
        each?.(undo, started, 'ok', as.mask(result.output), null);
        this.audit({ actor: auditActor, action: 'directive.undo', target: as.runId, details: { undo: undo.description, inputs: as.mask(undo.inputs) } as Record<string, unknown> });
      } catch (err) {
        errors.push(`${undo.description}: ${(err as Error).message}`);
        each?.(undo, started, 'failed', null, (err as Error).message);
      }
      this.runs.saveUndo(as.runId, changes, Date.now(), OWNER);
    }
    return { undone, errors };
  }
}

// ------------------------------------------------------------------ helpers

interface DeniedPermission {
  step: PlannedStep;
  perm: Permission;
}

function describeDenied(denied: readonly DeniedPermission[]): string {
  return [...new Set(denied.map((d) => `${d.perm} (${d.step.path} ${d.step.ref})`))].join(', ');
}

/** A schema issue of an action's inputs, as `argument: reason`. */
function issueText(issue: { path: readonly PropertyKey[]; message: string }): string {
  return `${issue.path.map(String).join('.') || '(inputs)'}: ${issue.message}`;
}

function autoName(path: string): string {
  return `step_${path.replace(/[^A-Za-z0-9]+/g, '_').replace(/^_+|_+$/g, '')}`;
}

function dependsOnSteps(value: unknown): boolean {
  if (typeof value === 'string') return /\bsteps\s*[.[]/.test(value);
  if (Array.isArray(value)) return value.some(dependsOnSteps);
  if (value !== null && typeof value === 'object') return Object.values(value).some(dependsOnSteps);
  return false;
}

function containsDeferred(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(containsDeferred);
  if (value !== null && typeof value === 'object') {
    if ('deferred' in value && Object.keys(value).length === 1) return true;
    return Object.values(value).some(containsDeferred);
  }
  return false;
}

/** Step outputs kept in a run: at most 32 KB of JSON each. */
function boundOutput(output: unknown): unknown {
  const json = JSON.stringify(output ?? null);
  if (json.length <= 32_768) return output ?? null;
  return { truncated: true, bytes: json.length, head: json.slice(0, 2000) };
}

/**
 * Runs `work` with a signal aborted after `ms`, or when `outer` aborts (with its reason), whichever
 * comes first; it rejects then, unless `waitForWork`: then `work` is to stop on the signal, and its
 * own outcome is awaited.
 */
export async function withTimeout<T>(ms: number, work: (signal: AbortSignal) => Promise<T>, outer?: AbortSignal, waitForWork = false): Promise<T> {
  outer?.throwIfAborted();
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let onOuterAbort: (() => void) | undefined;
  const timeout = new Promise<never>((_, reject) => {
    const stop = (err: Error) => {
      controller.abort(err);
      if (!waitForWork) reject(err);
    };
    timer = setTimeout(() => stop(new Error(`timed out after ${ms} ms`)), ms);
    if (outer) {
      onOuterAbort = () => stop(outer.reason instanceof Error ? outer.reason : new Error(String(outer.reason)));
      outer.addEventListener('abort', onOuterAbort, { once: true });
    }
  });
  try {
    return await Promise.race([work(controller.signal), timeout]);
  } finally {
    clearTimeout(timer);
    if (onOuterAbort) outer?.removeEventListener('abort', onOuterAbort);
  }
}

/** Validates and completes run inputs against the declaration: unknown, missing, mistyped and prototype keys are errors. */
export function resolveInputs(directive: DirectiveDefinition, given: Record<string, unknown>): Record<string, unknown> {
  if (given === null || typeof given !== 'object' || Array.isArray(given)) throw new Error('inputs: must be an object');
  const bad = forbiddenKey(given);
  if (bad) throw new Error(`inputs: key "${bad}" is not allowed`);
  if (JSON.stringify(given).length > MAX_INPUT_BYTES) throw new Error(`inputs: more than ${MAX_INPUT_BYTES / 1024} KiB`);
  const specs = directive.inputs ?? {};
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(given)) {
    if (FORBIDDEN_KEYS.has(key) || !Object.hasOwn(specs, key)) {
      throw new Error(`inputs.${key}: ${directive.name} has no such input; it takes ${Object.keys(specs).join(', ') || 'none'}`);
    }
  }
  for (const [name, spec] of Object.entries(specs)) {
    const value = Object.hasOwn(given, name) && given[name] !== undefined ? given[name] : spec.default;
    if (value === undefined) {
      if (spec.required ?? spec.default === undefined) throw new Error(`inputs.${name}: required${spec.description ? ` (${spec.description})` : ''}`);
      continue;
    }
    const problem = inputValueProblem(spec, value);
    if (problem) throw new Error(`inputs.${name}: ${problem}`);
    out[name] = value;
  }
  return out;
}

/** Replaces secret input values wherever they appear (inputs, outputs, errors). */
export function masker(directive: DirectiveDefinition, inputs: Record<string, unknown>): (value: unknown) => unknown {
  const secrets = Object.entries(directive.inputs ?? {})
    .filter(([name, spec]) => spec.secret && typeof inputs[name] === 'string' && (inputs[name] as string).length > 0)
    .map(([name]) => inputs[name] as string);
  if (secrets.length === 0) return (v) => v;
  const maskValue = (value: unknown): unknown => {
    if (typeof value === 'string') return secrets.reduce((text, secret) => text.split(secret).join(MASK), value);
    if (Array.isArray(value)) return value.map(maskValue);
    if (value !== null && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[k] = maskValue(v);
      return out;
    }
    return value;
  };
  return maskValue;
}
