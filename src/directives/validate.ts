/**
 * Checks beyond the schema, each placed at file:line:column: unknown actions, scripts, tools and
 * directives; script paths outside scripts/; permissions a step needs but the directive does not
 * declare; expressions that do not parse, name unknown inputs or steps, read a step whose output
 * does not exist yet where they are evaluated, or have the wrong type; duplicate step names;
 * directive cycles; a wait or verify delay its step's timeout cannot hold; a step timeout without
 * a unit. A file that fails the schema is still checked in the parts that passed it, so one
 * mistake does not hide the others; at most MAX_DIAGNOSTICS are reported.
 */
import { z } from 'zod';
import { isSettingKey, SETTINGS } from '../settings.js';
import { ACTIONS, MAX_WAIT_MS } from './actions.js';
import { parseDurationText } from './duration.js';
import { DirectiveExpressions, hasTemplate, type ExpressionScope } from './expressions.js';
import { allSteps, type DirectiveLibrary, type StepVisit } from './library.js';
import { formatDiagnostic, formatYamlPath, type Diagnostic, type LoadedDirective, type PartialDirective, type YamlPath } from './load.js';
import { CAPABILITY_TOOLS, isCapabilityName, REFUSED_TOOLS, type ToolInfo } from './registry.js';
import type { DirectiveDefinition, InputSpec, Permission, StepDefinition, StepKind } from './schema.js';
import { resolveScript, ScriptRefError } from './scripts.js';

export const MAX_STEP_TIMEOUT_MS = 10 * 60_000;
export const DEFAULT_STEP_TIMEOUT_MS = 60_000;
export const MAX_DIRECTIVE_DEPTH = 4;
/** Diagnostics reported for one file; past it, one more says how many were left out. */
export const MAX_DIAGNOSTICS = 20;

export interface ValidationContext {
  library: DirectiveLibrary;
  scriptsDir: string;
  tools: readonly ToolInfo[];
}

/** What a step is and what it needs. `permissions` is empty for conditionals and permission-free actions. */
export interface StepNeeds {
  kind: StepKind;
  ref: string;
  permissions: Permission[];
  destructive: boolean;
  reversible: boolean;
}

export function stepKind(step: StepDefinition): StepKind {
  if (step.action !== undefined) return 'action';
  if (step.script !== undefined) return 'script';
  if (step.tool !== undefined) return 'tool';
  if (step.directive !== undefined) return 'directive';
  return 'conditional';
}

/** Needs of a step; throws a message when its reference is unknown. */
export function stepNeeds(step: StepDefinition, ctx: { library: DirectiveLibrary; tools: readonly ToolInfo[] }): StepNeeds {
  const kind = stepKind(step);
  switch (kind) {
    case 'action': {
      const action = ACTIONS[step.action!];
      if (!action || action.internal) throw new Error(`unknown action "${step.action}"; known: ${publicActions().join(', ')}`);
      return { kind, ref: step.action!, permissions: action.permission ? [action.permission] : [], destructive: action.destructive, reversible: action.reversible };
    }
    case 'script':
      return { kind, ref: step.script!, permissions: ['execute:script'], destructive: true, reversible: false };
    case 'tool': {
      if (REFUSED_TOOLS.has(step.tool!)) throw new Error(`tool "${step.tool}" cannot be called from a step; use a directive step`);
      const tool = ctx.tools.find((t) => t.name === step.tool);
      if (!tool) throw new Error(`unknown tool "${step.tool}"; known: ${ctx.tools.map((t) => t.name).join(', ') || '(none)'}`);
      // Any tool that is not read-only changes something (update_anomaly is not marked destructive,
      // yet changes an anomaly), and a tool call is never undone: it needs approval.
      return {
        kind,
        ref: tool.name,
        permissions: [tool.readOnly ? 'read:metrics' : 'call:tool'],
        destructive: !tool.readOnly,
        reversible: false,
      };
    }
    case 'directive': {
      const child = ctx.library.get(step.directive!);
      if (!child) throw new Error(`unknown directive "${step.directive}" (no ${step.directive}.yaml in ${ctx.library.dir})`);
      if (!child.loaded.directive) throw new Error(`directive "${step.directive}" is invalid: ${child.loaded.errors.map(formatDiagnostic)[0]}`);
      // destructive when anything it may run is (its steps, rollback, finally, and directives it nests):
      // an outer run that calls it needs the approval it would need on its own
      return {
        kind,
        ref: step.directive!,
        permissions: [...(child.loaded.directive.permissions ?? [])],
        destructive: holdsDestructive(child.loaded.directive, ctx, new Set([step.directive!])),
        reversible: false,
      };
    }
    default:
      return { kind, ref: 'conditional', permissions: [], destructive: false, reversible: false };
  }
}

/** Whether any step a directive may run changes something (conditional branches and nested directives included). */
function holdsDestructive(directive: DirectiveDefinition, ctx: { library: DirectiveLibrary; tools: readonly ToolInfo[] }, visiting: Set<string>): boolean {
  return allSteps(directive).some(({ step }) => {
    if (step.conditional) return false; // its branches are visited as steps of their own
    if (stepKind(step) === 'directive') {
      if (visiting.has(step.directive!)) return false; // a cycle: refused when planned
      const child = ctx.library.get(step.directive!)?.loaded.directive;
      return child ? holdsDestructive(child, ctx, new Set([...visiting, step.directive!])) : false;
    }
    try {
      return stepNeeds(step, ctx).destructive;
    } catch {
      return false; // an unknown reference: the step itself reports it
    }
  });
}

function publicActions(): string[] {
  return Object.entries(ACTIONS)
    .filter(([, a]) => !a.internal)
    .map(([n]) => n);
}

/**
 * Every diagnostic for a loaded directive, in file order, at most MAX_DIAGNOSTICS (and one saying
 * how many more): YAML and schema errors, and the checks beyond the schema on what passed it.
 */
export function validateDirective(loaded: LoadedDirective, ctx: ValidationContext, expectedName?: string): Diagnostic[] {
  const source: PartialDirective | null = loaded.directive
    ? { directive: loaded.directive, failedFields: new Set(), failedInputs: new Set(), failedSteps: new Set() }
    : loaded.partial;
  if (!source) return bounded(loaded.errors);
  const { directive: d, failedFields, failedInputs, failedSteps } = source;
  const diagnostics: Diagnostic[] = [...loaded.errors];
  const report = (path: YamlPath, message: string) => diagnostics.push({ file: loaded.file, ...loaded.locate(path), message });

  if (expectedName !== undefined && !failedFields.has('name') && d.name !== expectedName) {
    report(['name'], `name "${d.name}" does not match the file name "${expectedName}"`);
  }

  const inputs = d.inputs ?? {};
  for (const [name, spec] of Object.entries(inputs)) {
    if (spec.default !== undefined) {
      const problem = inputValueProblem(spec, spec.default);
      if (problem) report(['inputs', name, 'default'], `default: ${problem}`);
    }
    if (spec.secret && spec.type !== 'string') report(['inputs', name, 'secret'], 'only string inputs can be secret');
  }

  const steps = placeSteps(d);
  const names = new Map<string, PlacedStep>();
  for (const visit of steps) {
    const name = visit.step.name;
    if (name === undefined) continue;
    if (names.has(name)) report([...visit.path, 'name'], `step name "${name}" is used twice`);
    else names.set(name, visit);
  }

  const expressions = new DirectiveExpressions(inputs);
  // an input that failed the schema is left out of `inputs`: what its expressions would say of it is not news
  const aboutFailedInput = (error: string) => [...failedInputs].some((name) => new RegExp(`\\binputs\\.${name}\\b|No such key: ${name}\\b`).test(error));
  // permissions that failed the schema may be the one a step needs: "not declared" would be wrong
  const declared = failedFields.has('permissions') ? null : new Set<Permission>(d.permissions ?? []);
  const checkTemplate = (value: unknown, path: YamlPath, scope: ExpressionScope, at: PlacedStep | null, condition = false) => {
    if (typeof value === 'boolean' && condition) return;
    if (typeof value === 'string') {
      if (!condition && !hasTemplate(value)) return;
      for (const error of expressions.check(value, scope, condition)) {
        if (!aboutFailedInput(error)) report(path, stepOrderMessage(error, at, names, loaded));
      }
    } else if (Array.isArray(value)) {
      value.forEach((v, i) => checkTemplate(v, [...path, i], scope, at));
    } else if (value !== null && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) checkTemplate(v, [...path, k], scope, at);
    }
  };

  if (d.target !== undefined && !failedFields.has('target')) checkTemplate(d.target, ['target'], { stepNames: new Set(), inForeach: false }, null);

  for (const placed of steps) {
    const { step, path } = placed;
    if (failedSteps.has(formatYamlPath(path))) continue; // the schema error is reported; its name still counts above
    // only the steps that ran before this one have output here
    const stepNames = placed.before;
    const scope: ExpressionScope = { stepNames, inForeach: step.foreach !== undefined };
    if (step.if !== undefined) checkTemplate(step.if, [...path, 'if'], { stepNames, inForeach: false }, placed, true);
    if (step.conditional) checkTemplate(step.conditional.if, [...path, 'conditional', 'if'], { stepNames, inForeach: false }, placed, true);
    if (typeof step.foreach === 'string') {
      const errors = expressions.check(step.foreach, { stepNames, inForeach: false }, false);
      for (const e of errors) if (!aboutFailedInput(e)) report([...path, 'foreach'], stepOrderMessage(e, placed, names, loaded));
      if (!hasTemplate(step.foreach)) report([...path, 'foreach'], 'foreach takes a list or one "{{ expression }}" yielding a list');
    }
    if (step.inputs) checkTemplate(step.inputs, [...path, 'inputs'], scope, placed);
    let timeoutMs: number | null = step.timeout === undefined ? DEFAULT_STEP_TIMEOUT_MS : null;
    if (typeof step.timeout === 'number') {
      // a bare number would be milliseconds: `timeout: 10` meant 10 s and gave 10 ms
      report([...path, 'timeout'], `timeout: ${step.timeout} has no unit; write it with one, e.g. ${step.timeout}s, ${step.timeout}ms or ${step.timeout}m`);
    } else if (step.timeout !== undefined) {
      try {
        const ms = parseDurationText(step.timeout);
        if (ms > MAX_STEP_TIMEOUT_MS || ms <= 0) report([...path, 'timeout'], `timeout must be between 1 ms and ${MAX_STEP_TIMEOUT_MS / 60_000} minutes`);
        else timeoutMs = ms;
      } catch (err) {
        report([...path, 'timeout'], (err as Error).message);
      }
    }
    if (timeoutMs !== null && step.action !== undefined) {
      const wait = waitProblem(step, step.inputs, timeoutMs);
      if (wait) report(path, wait.message);
    }

    let needs: StepNeeds;
    try {
      needs = stepNeeds(step, ctx);
    } catch (err) {
      report([...path, stepKind(step)], (err as Error).message);
      continue;
    }
    if (needs.kind === 'script') {
      try {
        resolveScript(ctx.scriptsDir, step.script!);
      } catch (err) {
        if (err instanceof ScriptRefError) report([...path, 'script'], err.message);
        else throw err;
      }
    }
    if (needs.kind === 'action') checkActionInputs(step, path, report);
    // A tool step, or an action reached through a tool, takes that tool's arguments: a misspelt one
    // would fail only at execute (the tools refuse unknown arguments), so it is named here.
    const toolName = needs.kind === 'tool' ? step.tool! : needs.kind === 'action' && isCapabilityName(step.action!) ? CAPABILITY_TOOLS[step.action] : undefined;
    const takes = toolName === undefined ? undefined : ctx.tools.find((t) => t.name === toolName)?.inputs;
    if (takes !== undefined) {
      for (const key of Object.keys(step.inputs ?? {})) {
        if (!takes.includes(key)) report([...path, 'inputs', key], `${needs.kind === 'tool' ? `tool "${toolName}"` : step.action} takes no input "${key}"; it takes ${takes.join(', ') || 'none'}`);
      }
    }
    for (const permission of needs.permissions) {
      if (declared !== null && !declared.has(permission)) {
        const why = needs.kind === 'directive' ? `directive "${needs.ref}" declares it` : `${needs.kind} "${needs.ref}" needs it`;
        report([...path, needs.kind], `permission "${permission}" is not declared in permissions (${why})`);
      }
    }
    if (needs.kind === 'directive') {
      const cycle = findCycle(d.name, step.directive!, ctx.library);
      if (cycle) report([...path, 'directive'], `directive cycle: ${cycle.join(' -> ')}`);
      else {
        const depth = directiveDepth(step.directive!, ctx.library, new Set([d.name]));
        if (depth + 1 > MAX_DIRECTIVE_DEPTH) {
          report([...path, 'directive'], `directives nest ${depth + 1} deep through "${step.directive}"; at most ${MAX_DIRECTIVE_DEPTH}`);
        }
      }
    }
  }
  return bounded(diagnostics.sort((a, b) => a.line - b.line || a.column - b.column));
}

/** The first MAX_DIAGNOSTICS, and one more at the next saying how many are left out. */
function bounded(diagnostics: Diagnostic[]): Diagnostic[] {
  if (diagnostics.length <= MAX_DIAGNOSTICS) return diagnostics;
  const next = diagnostics[MAX_DIAGNOSTICS]!;
  const left = diagnostics.length - MAX_DIAGNOSTICS;
  return [...diagnostics.slice(0, MAX_DIAGNOSTICS), { ...next, message: `and ${left} more problem${left > 1 ? 's' : ''} from here on, not shown; fix these first` }];
}

/** A step with where it runs: `before` holds the names of the steps that have run (or may have) when it starts. */
interface PlacedStep extends StepVisit {
  before: ReadonlySet<string>;
  /** The conditional branches it is inside, outermost first: the conditional's path and the branch. */
  branches: readonly { at: string; branch: 'then' | 'else' }[];
}

/**
 * Every step in file order with the steps whose output exists when it runs: the main steps before
 * it (a step after a conditional may read either branch's steps: one of them may have run), but not
 * those of the other branch of a conditional it is in (they never run in the same run), nor itself.
 * `rollback` steps may read any main step and the rollback steps before them; `finally` steps any
 * main or rollback step and the finally steps before them. A nested directive's steps are its own
 * (read through the directive step's output) and are checked in its file.
 */
function placeSteps(d: Pick<DirectiveDefinition, 'steps' | 'rollback' | 'finally'>): PlacedStep[] {
  const out: PlacedStep[] = [];
  const walk = (steps: readonly StepDefinition[], path: YamlPath, branches: PlacedStep['branches'], done: Set<string>) => {
    steps.forEach((step, i) => {
      const here = [...path, i];
      out.push({ step, path: here, before: new Set(done), branches });
      if (step.conditional) {
        const at = formatYamlPath(here);
        const afterThen = new Set(done);
        const afterElse = new Set(done);
        walk(step.conditional.then, [...here, 'conditional', 'then'], [...branches, { at, branch: 'then' }], afterThen);
        walk(step.conditional.else ?? [], [...here, 'conditional', 'else'], [...branches, { at, branch: 'else' }], afterElse);
        for (const name of [...afterThen, ...afterElse]) done.add(name);
      }
      if (step.name !== undefined) done.add(step.name);
    });
  };
  const done = new Set<string>();
  walk(d.steps, ['steps'], [], done);
  walk(d.rollback ?? [], ['rollback'], [], done);
  walk(d.finally ?? [], ['finally'], [], done);
  return out;
}

/**
 * An expression's "unknown step" error about a step that does exist, said as what is wrong: it runs
 * later, it is this step, or it is in the other branch of a conditional. `at` is the step the
 * expression belongs to (null: the target, decided before any step runs). Other errors pass as they are.
 */
function stepOrderMessage(error: string, at: PlacedStep | null, names: ReadonlyMap<string, PlacedStep>, loaded: LoadedDirective): string {
  const match = /^unknown step "([^"]+)"( in .*)$/s.exec(error);
  const target = match ? names.get(match[1]!) : undefined;
  if (!match || !target) return error;
  const [, name, rest] = match;
  const where = `${formatYamlPath(target.path)}, line ${loaded.locate(target.path).line}`;
  if (at === null) return `step "${name}" (${where}) has not run when the target is decided, before any step${rest}`;
  if (target === at) return `step "${name}" is this step: its output exists only once it has run${rest}`;
  const split = at.branches.find((mine) => target.branches.some((theirs) => theirs.at === mine.at && theirs.branch !== mine.branch));
  if (split) return `step "${name}" (${where}) is in the other branch of the conditional at ${split.at}: it never runs in the same run as this one${rest}`;
  return `step "${name}" runs later (${where}): its output does not exist yet here${rest}`;
}

/** For actions: unknown input keys, missing required keys, and literal values of the wrong type. */
function checkActionInputs(step: StepDefinition, path: YamlPath, report: (path: YamlPath, message: string) => void): void {
  const given = step.inputs ?? {};
  for (const problem of actionInputProblems(step.action!, given)) report([...path, 'inputs', ...(problem.key === null ? [] : [problem.key])], problem.message);
  if (step.action!.startsWith('settings.') && typeof given.key === 'string' && !hasTemplate(given.key) && !isSettingKey(given.key)) {
    report([...path, 'inputs', 'key'], `unknown setting "${given.key}"; known: ${Object.keys(SETTINGS).join(', ')}`);
  }
}

/**
 * What an action's input schema refuses in `given`, field by field: unknown keys, missing required
 * keys (key null), and values of the wrong type. A value holding a template (or, in a plan, waiting
 * for an earlier step's output) is not judged: it is known only when the step runs. Validation
 * reports these for the values written in the file, plan for the values rendered from the inputs.
 */
export function actionInputProblems(actionName: string, given: Record<string, unknown>): { key: string | null; message: string }[] {
  const action = ACTIONS[actionName]!;
  const shape = action.inputs.shape as Record<string, z.ZodType>;
  const loose = action.inputs.def.catchall !== undefined && !(action.inputs.def.catchall instanceof z.ZodNever);
  const problems: { key: string | null; message: string }[] = [];
  for (const [key, value] of Object.entries(given)) {
    const field = shape[key];
    if (!field) {
      if (!loose) problems.push({ key, message: `${actionName} takes no input "${key}"; it takes ${Object.keys(shape).join(', ')}` });
      continue;
    }
    if (containsTemplate(value)) continue;
    const parsed = field.safeParse(value);
    if (!parsed.success) problems.push({ key, message: `${key}: ${parsed.error.issues[0]?.message ?? 'invalid'}` });
  }
  for (const [key, field] of Object.entries(shape)) {
    if (!(key in given) && !field.safeParse(undefined).success) problems.push({ key: null, message: `${actionName} needs input "${key}"` });
  }
  return problems;
}

/**
 * Why a `wait` (its duration) or a `verify` (its delay) cannot run in its step: longer than a wait
 * may take, or as long as the step's timeout, so it would always time out (the message names the
 * timeout to raise); null when it fits, or is not known yet (a template, or in a plan a value
 * waiting for an earlier step). A verify's window is not waited for: it looks back over stored data.
 */
export function waitProblem(step: StepDefinition, inputs: Record<string, unknown> | undefined, timeoutMs: number): { field: string; message: string } | null {
  const field = step.action === 'wait' ? 'duration' : step.action === 'verify' ? 'delay' : null;
  if (field === null) return null;
  const value = inputs?.[field];
  if ((typeof value !== 'string' && typeof value !== 'number') || (typeof value === 'string' && hasTemplate(value))) return null;
  let ms: number;
  try {
    ms = parseDurationText(value);
  } catch {
    return null; // the input schema reports a malformed duration
  }
  const shown = typeof value === 'number' ? `${value} ms` : value;
  if (ms > MAX_WAIT_MS) {
    return { field, message: `${step.action} ${field} ${shown} is longer than ${MAX_WAIT_MS / 60_000} minutes, the most a ${step.action} may take` };
  }
  if (ms < timeoutMs) return null;
  const limit = step.timeout === undefined ? `the default step timeout (${DEFAULT_STEP_TIMEOUT_MS / 1000}s)` : `its timeout (${String(step.timeout)})`;
  return {
    field,
    message:
      `${step.action} ${field} ${shown} is not shorter than ${limit}, so the step would always time out; ` +
      `raise the step's timeout: above ${shown} (at most ${MAX_STEP_TIMEOUT_MS / 60_000}m)`,
  };
}

/** How long one attempt of a step may take: its timeout (at most MAX_STEP_TIMEOUT_MS), else the default (a directive step: the most). */
export function stepTimeoutMs(step: StepDefinition): number {
  if (step.timeout !== undefined) return Math.min(parseDurationText(step.timeout), MAX_STEP_TIMEOUT_MS);
  return stepKind(step) === 'directive' ? MAX_STEP_TIMEOUT_MS : DEFAULT_STEP_TIMEOUT_MS;
}

function containsTemplate(value: unknown): boolean {
  if (typeof value === 'string') return hasTemplate(value);
  if (Array.isArray(value)) return value.some(containsTemplate);
  if (value !== null && typeof value === 'object') return Object.values(value).some(containsTemplate);
  return false;
}

/** The chain from `from` back to itself through directive steps, or null. */
export function findCycle(from: string, via: string, library: DirectiveLibrary): string[] | null {
  const seen = new Set<string>();
  const search = (name: string, chain: string[]): string[] | null => {
    if (name === from) return [...chain, name];
    if (seen.has(name)) return null;
    seen.add(name);
    const d = library.get(name)?.loaded.directive;
    if (!d) return null;
    for (const { step } of allSteps(d)) {
      if (step.directive === undefined) continue;
      const found = search(step.directive, [...chain, name]);
      if (found) return found;
    }
    return null;
  };
  return search(via, [from]);
}

function directiveDepth(name: string, library: DirectiveLibrary, visiting: Set<string>): number {
  if (visiting.has(name) || visiting.size > MAX_DIRECTIVE_DEPTH + 1) return 0;
  const d = library.get(name)?.loaded.directive;
  if (!d) return 1;
  let deepest = 0;
  visiting.add(name);
  for (const { step } of allSteps(d)) {
    if (step.directive !== undefined) deepest = Math.max(deepest, directiveDepth(step.directive, library, visiting));
  }
  visiting.delete(name);
  return 1 + deepest;
}

/** Why a value does not fit an input's declaration, or null. */
export function inputValueProblem(spec: InputSpec, value: unknown): string | null {
  const ok =
    (spec.type === 'string' && typeof value === 'string') ||
    (spec.type === 'number' && typeof value === 'number' && Number.isFinite(value)) ||
    (spec.type === 'integer' && typeof value === 'number' && Number.isSafeInteger(value)) ||
    (spec.type === 'boolean' && typeof value === 'boolean') ||
    (spec.type === 'array' && Array.isArray(value)) ||
    (spec.type === 'object' && value !== null && typeof value === 'object' && !Array.isArray(value));
  if (!ok) return `expected ${spec.type}, got ${value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value}`;
  if (spec.enum && !spec.enum.some((e) => e === value)) return `must be one of ${spec.enum.map((e) => JSON.stringify(e)).join(', ')}`;
  if (typeof value === 'number') {
    if (spec.minimum !== undefined && value < spec.minimum) return `must be at least ${spec.minimum}`;
    if (spec.maximum !== undefined && value > spec.maximum) return `must be at most ${spec.maximum}`;
  }
  if (typeof value === 'string' && spec.max_length !== undefined && value.length > spec.max_length) {
    return `must be at most ${spec.max_length} characters`;
  }
  return null;
}

export type { DirectiveDefinition };
