/**
 * Expressions in directives: `{{ ... }}` templates holding CEL (Common Expression Language),
 * evaluated by @marcbachmann/cel-js — parsed into an AST and interpreted, never `eval`/`Function`,
 * no access to anything but the variables given (an object's prototype is not reachable: a
 * field is read only when it is the value's own key).
 *
 * Variables: `inputs` (typed from the directive's declared inputs), `steps` (`steps.<name>.output`,
 * `.outcome`), `run` (`id`, `directive`, `mode`), and inside a `foreach` step `item` and `index`.
 *
 * - A string that is exactly one `{{ expr }}` takes the expression's value (any JSON type).
 * - Text with `{{ expr }}` inside is interpolated; each expression must yield a scalar.
 * - A condition (`if`) must be exactly one `{{ expr }}` yielding a boolean (or a YAML boolean).
 * Substituted values are data: the result of a substitution is never scanned again.
 */
import { Environment, type ASTNode } from '@marcbachmann/cel-js';
import { FORBIDDEN_KEYS, type InputSpec, type InputType } from './schema.js';

const MAX_EXPRESSION_CHARS = 2000;
const CEL_TYPES: Record<InputType, string> = {
  string: 'string',
  number: 'double',
  integer: 'int',
  boolean: 'bool',
  array: 'list',
  object: 'map',
};
/** Regular expressions can take exponential time on a crafted input; `matches` is not offered. */
const REFUSED_FUNCTIONS = new Set(['matches']);

export class ExpressionError extends Error {}

export interface TemplatePart {
  text?: string;
  expression?: string;
}

/** Splits text into literal parts and `{{ expression }}` parts; throws on an unclosed `{{`. */
export function splitTemplate(text: string): TemplatePart[] {
  const parts: TemplatePart[] = [];
  let at = 0;
  while (at < text.length) {
    const open = text.indexOf('{{', at);
    if (open < 0) {
      parts.push({ text: text.slice(at) });
      break;
    }
    if (open > at) parts.push({ text: text.slice(at, open) });
    const close = text.indexOf('}}', open + 2);
    if (close < 0) throw new ExpressionError(`unclosed "{{" at character ${open + 1}`);
    const expression = text.slice(open + 2, close).trim();
    if (expression === '') throw new ExpressionError(`empty "{{ }}" at character ${open + 1}`);
    if (expression.length > MAX_EXPRESSION_CHARS) throw new ExpressionError(`expression longer than ${MAX_EXPRESSION_CHARS} characters`);
    parts.push({ expression });
    at = close + 2;
  }
  return parts;
}

export function hasTemplate(text: string): boolean {
  return text.includes('{{');
}

export interface ExpressionScope {
  /** Step names that exist in the directive (a reference to any other is an error). */
  stepNames: ReadonlySet<string>;
  /** Inside a foreach step: `item` and `index` are defined. */
  inForeach: boolean;
}

/** Values an expression sees. */
export interface ExpressionContext {
  inputs: Record<string, unknown>;
  steps: Record<string, { output: unknown; outcome: string }>;
  run: { id: string; directive: string; mode: string };
  item?: unknown;
  index?: number;
}

type CompiledExpression = ReturnType<Environment['parse']>;

/** The expressions of one directive, checked against its declared inputs. */
export class DirectiveExpressions {
  private readonly env: Environment;
  private readonly cache = new Map<string, CompiledExpression>();

  constructor(private readonly inputSpecs: Record<string, InputSpec>) {
    const schema: Record<string, string> = {};
    for (const [name, spec] of Object.entries(inputSpecs)) schema[name] = CEL_TYPES[spec.type];
    const env = new Environment({
      limits: { maxAstNodes: 400, maxDepth: 24, maxListElements: 100, maxMapEntries: 100, maxCallArguments: 8 },
      homogeneousAggregateLiterals: false,
    });
    env.registerVariable({ name: 'inputs', schema });
    env.registerVariable('steps', 'map');
    env.registerVariable('run', 'map');
    env.registerVariable('item', 'dyn');
    env.registerVariable('index', 'int');
    this.env = env;
  }

  private compile(expression: string): CompiledExpression {
    let compiled = this.cache.get(expression);
    if (!compiled) {
      try {
        compiled = this.env.parse(expression);
      } catch (err) {
        throw new ExpressionError(`${celMessage(err)} in "${expression}"`);
      }
      this.cache.set(expression, compiled);
    }
    return compiled;
  }

  /** Errors in a template (a value or, with `condition`, an `if`); empty when it is sound. */
  check(value: string | boolean, scope: ExpressionScope, condition: boolean): string[] {
    if (typeof value === 'boolean') return condition ? [] : [];
    let parts: TemplatePart[];
    try {
      parts = splitTemplate(value);
    } catch (err) {
      return [(err as Error).message];
    }
    const expressions = parts.filter((p) => p.expression !== undefined);
    if (condition && (parts.length !== 1 || expressions.length !== 1)) {
      return [`a condition must be exactly one "{{ expression }}" with nothing outside the braces, got ${JSON.stringify(value)}`];
    }
    const errors: string[] = [];
    for (const { expression } of expressions) {
      let compiled: CompiledExpression;
      try {
        compiled = this.compile(expression!);
      } catch (err) {
        errors.push((err as Error).message);
        continue;
      }
      const refErrors = referenceErrors(compiled.ast, scope);
      if (refErrors.length) {
        errors.push(...refErrors.map((e) => `${e} in "${expression}"`));
        continue;
      }
      const checked = compiled.check();
      if (!checked.valid) {
        errors.push(`${celMessage(checked.error)} in "${expression}"`);
        continue;
      }
      if (condition && checked.type !== 'bool' && checked.type !== 'dyn') {
        errors.push(`a condition must yield a boolean; "${expression}" yields ${checked.type}`);
      }
      if (!condition && parts.length > 1 && /^(list|map)/.test(checked.type ?? '')) {
        errors.push(`"${expression}" yields a ${checked.type} and cannot be placed inside text; make it the whole value`);
      }
    }
    return errors;
  }

  /** The value of a condition: a boolean, or an error (never silently true). */
  condition(value: string | boolean, context: ExpressionContext): boolean {
    if (typeof value === 'boolean') return value;
    const parts = splitTemplate(value);
    const only = parts[0];
    if (parts.length !== 1 || only?.expression === undefined) {
      throw new ExpressionError(`a condition must be exactly one "{{ expression }}", got ${JSON.stringify(value)}`);
    }
    const result = this.evaluate(only.expression, context);
    if (typeof result !== 'boolean') {
      throw new ExpressionError(`condition "${only.expression}" yielded ${describe(result)}, not a boolean`);
    }
    return result;
  }

  /** Substitutes every template in a value (deeply); the results are data and are not scanned again. */
  render(value: unknown, context: ExpressionContext): unknown {
    if (typeof value === 'string') return this.renderString(value, context);
    if (Array.isArray(value)) return value.map((v) => this.render(v, context));
    if (value !== null && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) {
        if (FORBIDDEN_KEYS.has(k)) throw new ExpressionError(`key "${k}" is not allowed`);
        out[k] = this.render(v, context);
      }
      return out;
    }
    return value;
  }

  private renderString(text: string, context: ExpressionContext): unknown {
    if (!hasTemplate(text)) return text;
    const parts = splitTemplate(text);
    if (parts.length === 1 && parts[0]!.expression !== undefined) return this.evaluate(parts[0]!.expression, context);
    let out = '';
    for (const part of parts) {
      if (part.text !== undefined) {
        out += part.text;
        continue;
      }
      const result = this.evaluate(part.expression!, context);
      if (result !== null && typeof result === 'object') {
        throw new ExpressionError(`"${part.expression}" yielded ${describe(result)}, which cannot be placed inside text`);
      }
      out += String(result);
    }
    return out;
  }

  /** Evaluates one expression; the result is plain JSON data. */
  evaluate(expression: string, context: ExpressionContext): unknown {
    const compiled = this.compile(expression);
    const celContext: Record<string, unknown> = {
      inputs: this.celInputs(context.inputs),
      steps: toCel(context.steps),
      run: toCel(context.run),
      item: context.item === undefined ? null : toCel(context.item),
      index: BigInt(context.index ?? 0),
    };
    let result: unknown;
    try {
      result = compiled(celContext);
    } catch (err) {
      throw new ExpressionError(`${celMessage(err)} in "${expression}"`);
    }
    if (result instanceof Promise) throw new ExpressionError(`"${expression}" is asynchronous, which expressions may not be`);
    return fromCel(result, expression);
  }

  private celInputs(inputs: Record<string, unknown>): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [name, spec] of Object.entries(this.inputSpecs)) {
      const value = inputs[name];
      if (value === undefined) continue;
      if (spec.type === 'integer' && typeof value === 'number') out[name] = BigInt(value);
      else if (spec.type === 'number') out[name] = value;
      else out[name] = toCel(value);
    }
    return out;
  }
}

/** `steps.<name>` must name a step; `item`/`index` only inside foreach; refused functions. */
function referenceErrors(ast: ASTNode, scope: ExpressionScope): string[] {
  const errors: string[] = [];
  const visit = (node: ASTNode): void => {
    switch (node.op) {
      case 'id':
        if ((node.args === 'item' || node.args === 'index') && !scope.inForeach) {
          errors.push(`"${node.args}" is defined only in a foreach step`);
        }
        return;
      case '.':
      case '.?': {
        const [target, field] = node.args;
        if (target.op === 'id' && target.args === 'steps' && !scope.stepNames.has(field)) {
          errors.push(`unknown step "${field}"`);
        }
        visit(target);
        return;
      }
      case 'call':
        if (REFUSED_FUNCTIONS.has(node.args[0])) errors.push(`${node.args[0]}() is not allowed (regular expressions can take exponential time)`);
        node.args[1].forEach(visit);
        return;
      case 'rcall':
        if (REFUSED_FUNCTIONS.has(node.args[0])) errors.push(`${node.args[0]}() is not allowed (regular expressions can take exponential time)`);
        visit(node.args[1]);
        node.args[2].forEach(visit);
        return;
      case 'value':
        return;
      case 'list':
        node.args.forEach(visit);
        return;
      case 'map':
        for (const [k, v] of node.args) {
          visit(k);
          visit(v);
        }
        return;
      case '!_':
      case '-_':
        visit(node.args);
        return;
      default: {
        const args = node.args as unknown;
        if (Array.isArray(args)) for (const a of args) if (isAstNode(a)) visit(a);
      }
    }
  };
  visit(ast);
  return errors;
}

function isAstNode(value: unknown): value is ASTNode {
  return value !== null && typeof value === 'object' && 'op' in value && 'args' in value;
}

function celMessage(err: unknown): string {
  if (err && typeof err === 'object' && 'summary' in err && typeof err.summary === 'string') return err.summary;
  return err instanceof Error ? (err.message.split('\n')[0] ?? err.message) : String(err);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  return `${typeof value} ${JSON.stringify(value)}`;
}

/** JSON data → CEL values: whole numbers become int, others double; objects become maps of own keys. */
export function toCel(value: unknown): unknown {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? BigInt(value) : value;
  if (Array.isArray(value)) return value.map(toCel);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (FORBIDDEN_KEYS.has(k)) continue;
      out[k] = toCel(v);
    }
    return out;
  }
  return value;
}

/** CEL values → JSON data. */
export function fromCel(value: unknown, expression: string): unknown {
  if (typeof value === 'bigint') {
    const n = Number(value);
    if (!Number.isSafeInteger(n)) throw new ExpressionError(`"${expression}" yielded an integer too large for JSON`);
    return n;
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new ExpressionError(`"${expression}" yielded ${value}, not a finite number`);
    return value;
  }
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map((v) => fromCel(v, expression));
  if (value instanceof Map) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of value) {
      const key = String(fromCel(k, expression));
      if (FORBIDDEN_KEYS.has(key)) throw new ExpressionError(`"${expression}" yielded the key "${key}", which is not allowed`);
      out[key] = fromCel(v, expression);
    }
    return out;
  }
  if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (FORBIDDEN_KEYS.has(k)) throw new ExpressionError(`"${expression}" yielded the key "${k}", which is not allowed`);
      out[k] = fromCel(v, expression);
    }
    return out;
  }
  throw new ExpressionError(`"${expression}" yielded a value that is not JSON data (${Object.prototype.toString.call(value)})`);
}
