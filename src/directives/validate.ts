/**
 * Checks beyond the schema, each placed at file:line:column: unknown actions, scripts, tools and
 * directives; script paths outside scripts/; permissions a step needs but the directive does not
 * declare; expressions that do not parse, name unknown inputs or steps, or have the wrong type;
 * duplicate step names; directive cycles; a wait or verify delay its step's timeout cannot hold;
 * a step timeout without a unit.
 */
import { z } from 'zod';
import { isSettingKey, SETTINGS } from '../settings.js';
import { ACTIONS, MAX_WAIT_MS } from './actions.js';
import { parseDurationText } from './duration.js';
import { DirectiveExpressions, hasTemplate, type ExpressionScope } from './expressions.js';
import { allSteps, type DirectiveLibrary, type StepVisit } from './library.js';
import { formatDiagnostic, type Diagnostic, type LoadedDirective, type YamlPath } from './load.js';
import { CAPABILITY_NAMES, CAPABILITY_TOOLS, REFUSED_TOOLS, type CapabilityName, type ToolInfo } from './registry.js';
import type { DirectiveDefinition, InputSpec, Permission, StepDefinition, StepKind } from './schema.js';
import { resolveScript, ScriptRefError } from './scripts.js';

export const MAX_STEP_TIMEOUT_MS = 10 * 60_000;
export const DEFAULT_STEP_TIMEOUT_MS = 60_000;
export const MAX_DIRECTIVE_DEPTH = 4;

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
      return { kind, ref: step.directive!, permissions: [...(child.loaded.directive.permissions ?? [])], destructive: false, reversible: false };
    }
    default:
      return { kind, ref: 'conditional', permissions: [], destructive: false, reversible: false };
  }
}

function publicActions(): string[] {
  return Object.entries(ACTIONS)
    .filter(([, a]) => !a.internal)
    .map(([n]) => n);
}

/** Every diagnostic for a loaded directive (schema errors first; semantic checks only when the schema passed). */
export function validateDirective(loaded: LoadedDirective, ctx: ValidationContext, expectedName?: string): Diagnostic[] {
  if (!loaded.directive) return loaded.errors;
  const d = loaded.directive;
  const diagnostics: Diagnostic[] = [];
  const report = (path: YamlPath, message: string) => diagnostics.push({ file: loaded.file, ...loaded.locate(path), message });

  if (expectedName !== undefined && d.name !== expectedName) {
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

  const steps = allSteps(d);
  const names = new Map<string, StepVisit>();
  for (const visit of steps) {
    const name = visit.step.name;
    if (name === undefined) continue;
    if (names.has(name)) report([...visit.path, 'name'], `step name "${name}" is used twice`);
    else names.set(name, visit);
  }

  const expressions = new DirectiveExpressions(inputs);
  const stepNames = new Set(names.keys());
  const declared = new Set<Permission>(d.permissions ?? []);
  const checkTemplate = (value: unknown, path: YamlPath, scope: ExpressionScope, condition = false) => {
    if (typeof value === 'boolean' && condition) return;
    if (typeof value === 'string') {
      if (!condition && !hasTemplate(value)) return;
      for (const error of expressions.check(value, scope, condition)) report(path, error);
    } else if (Array.isArray(value)) {
      value.forEach((v, i) => checkTemplate(v, [...path, i], scope));
    } else if (value !== null && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) checkTemplate(v, [...path, k], scope);
    }
  };

  if (d.target !== undefined) checkTemplate(d.target, ['target'], { stepNames: new Set(), inForeach: false });

  for (const { step, path } of steps) {
    const scope: ExpressionScope = { stepNames, inForeach: step.foreach !== undefined };
    if (step.if !== undefined) checkTemplate(step.if, [...path, 'if'], { stepNames, inForeach: false }, true);
    if (step.conditional) checkTemplate(step.conditional.if, [...path, 'conditional', 'if'], { stepNames, inForeach: false }, true);
    if (typeof step.foreach === 'string') {
      const errors = expressions.check(step.foreach, { stepNames, inForeach: false }, false);
      for (const e of errors) report([...path, 'foreach'], e);
      if (!hasTemplate(step.foreach)) report([...path, 'foreach'], 'foreach takes a list or one "{{ expression }}" yielding a list');
    }
    if (step.inputs) checkTemplate(step.inputs, [...path, 'inputs'], scope);
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
    if (timeoutMs !== null && step.action !== undefined) checkWaitFitsTimeout(step, path, timeoutMs, report);

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
      if (!declared.has(permission)) {
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
  return diagnostics.sort((a, b) => a.line - b.line || a.column - b.column);
}

/** For actions: unknown input keys, missing required keys, and literal values of the wrong type. */
function checkActionInputs(step: StepDefinition, path: YamlPath, report: (path: YamlPath, message: string) => void): void {
  const action = ACTIONS[step.action!]!;
  const shape = action.inputs.shape as Record<string, z.ZodType>;
  const loose = action.inputs.def.catchall !== undefined && !(action.inputs.def.catchall instanceof z.ZodNever);
  const given = step.inputs ?? {};
  for (const [key, value] of Object.entries(given)) {
    const field = shape[key];
    if (!field) {
      if (!loose) report([...path, 'inputs', key], `${step.action} takes no input "${key}"; it takes ${Object.keys(shape).join(', ')}`);
      continue;
    }
    if (containsTemplate(value)) continue;
    const parsed = field.safeParse(value);
    if (!parsed.success) report([...path, 'inputs', key], `${key}: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  }
  for (const [key, field] of Object.entries(shape)) {
    if (!(key in given) && !field.safeParse(undefined).success) report([...path, 'inputs'], `${step.action} needs input "${key}"`);
  }
  if (step.action!.startsWith('settings.') && typeof given.key === 'string' && !hasTemplate(given.key) && !isSettingKey(given.key)) {
    report([...path, 'inputs', 'key'], `unknown setting "${given.key}"; known: ${Object.keys(SETTINGS).join(', ')}`);
  }
}

/**
 * A `wait` (its duration) or a `verify` (its delay) that takes as long as its step may would always
 * time out: reported at the step, naming the timeout to raise. Templated durations are decided at
 * run time and not checked here. A verify's window is not waited for: it looks back over stored data.
 */
function checkWaitFitsTimeout(step: StepDefinition, path: YamlPath, timeoutMs: number, report: (path: YamlPath, message: string) => void): void {
  const field = step.action === 'wait' ? 'duration' : step.action === 'verify' ? 'delay' : null;
  if (field === null) return;
  const value = step.inputs?.[field];
  if ((typeof value !== 'string' && typeof value !== 'number') || (typeof value === 'string' && hasTemplate(value))) return;
  let ms: number;
  try {
    ms = parseDurationText(value);
  } catch {
    return; // checkActionInputs reports a malformed duration
  }
  const shown = typeof value === 'number' ? `${value} ms` : value;
  if (ms > MAX_WAIT_MS) {
    report(path, `${step.action} ${field} ${shown} is longer than ${MAX_WAIT_MS / 60_000} minutes, the most a ${step.action} may take`);
    return;
  }
  if (ms < timeoutMs) return;
  const limit = step.timeout === undefined ? `the default step timeout (${DEFAULT_STEP_TIMEOUT_MS / 1000}s)` : `its timeout (${String(step.timeout)})`;
  report(
    path,
    `${step.action} ${field} ${shown} is not shorter than ${limit}, so the step would always time out; ` +
      `raise the step's timeout: above ${shown} (at most ${MAX_STEP_TIMEOUT_MS / 60_000}m)`,
  );
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

function isCapabilityName(action: string): action is CapabilityName {
  return (CAPABILITY_NAMES as readonly string[]).includes(action);
}
