/**
 * Reading a directive file: YAML (the `yaml` package's document API, which keeps each node's
 * source range) checked against the zod schema, every error placed at `file:line:column`.
 */
import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, Parser, parseDocument, type Document, type Node, type YAMLError } from 'yaml';
import { z } from 'zod';
import { directiveSchema, FORBIDDEN_KEYS, IDENTIFIER, type DirectiveDefinition, type InputSpec, type Permission, type StepDefinition } from './schema.js';

export const MAX_DIRECTIVE_BYTES = 256 * 1024;
export const MAX_YAML_DEPTH = 32;
/** Aliases expanded when building the value: a handful is reuse, thousands is an alias bomb. */
export const MAX_ALIAS_COUNT = 50;
const DEPTH_MESSAGE = `nesting deeper than ${MAX_YAML_DEPTH} levels`;

export interface Diagnostic {
  file: string;
  line: number;
  column: number;
  message: string;
}

export function formatDiagnostic(d: Diagnostic): string {
  return `${d.file}:${d.line}:${d.column}: ${d.message}`;
}

export type YamlPath = readonly (string | number)[];

/** A path as the schema's messages write it: `steps[2].conditional.then[0]`. */
export function formatYamlPath(path: YamlPath): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

/**
 * A file that is YAML but fails the schema, as far as it passed it: what failed is left out and
 * named, so the checks beyond the schema skip what they cannot judge and still run on the rest
 * (one mistake does not hide the others). A failed step keeps only its name (later references to
 * it are not "unknown") and its conditional's branches, whose steps stand or fall on their own.
 */
export interface PartialDirective {
  directive: DirectiveDefinition;
  /** Top-level fields with a schema error in them: name, version, inputs, permissions, target, steps, ... */
  failedFields: ReadonlySet<string>;
  /** Inputs whose declaration failed: left out of `directive.inputs`. */
  failedInputs: ReadonlySet<string>;
  /** Steps with a schema error of their own (not only in a conditional's branches), as formatYamlPath writes their path. */
  failedSteps: ReadonlySet<string>;
}

export interface LoadedDirective {
  file: string;
  text: string;
  /** Present when the file parsed and matched the schema. */
  directive: DirectiveDefinition | null;
  /** Present when the file parsed as YAML but failed the schema. */
  partial: PartialDirective | null;
  errors: Diagnostic[];
  /** Line and column (1-based) of the node at `path`, or of its nearest existing ancestor. */
  locate(path: YamlPath): { line: number; column: number };
}

/** A directive that could not be read at all: one diagnostic at the top of the file. */
export function failedLoad(file: string, message: string, text = ''): LoadedDirective {
  return { file, text, directive: null, partial: null, errors: [{ file, line: 1, column: 1, message }], locate: () => ({ line: 1, column: 1 }) };
}

export function sizeMessage(bytes: number): string {
  return `file is ${(bytes / 1024 / 1024).toFixed(1)} MB; a directive may be at most ${MAX_DIRECTIVE_BYTES / 1024} KiB`;
}

/** Parses directive text. Never throws: every problem is a diagnostic. */
export function loadDirectiveText(text: string, file: string): LoadedDirective {
  const lineCounter = new LineCounter();
  const errors: Diagnostic[] = [];
  const at = (offset: number) => {
    const pos = lineCounter.linePos(offset);
    return { line: pos.line, column: pos.col };
  };
  const empty = (message: string) => failedLoad(file, message, text);

  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_DIRECTIVE_BYTES) return failedLoad(file, sizeMessage(bytes));

  let doc: Document.Parsed;
  try {
    doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false, version: '1.2', strict: true });
  } catch (err) {
    // The parser turns its own stack overflows into errors; this is the backstop that keeps "never throws" true.
    return empty(err instanceof RangeError ? `${DEPTH_MESSAGE} (the YAML parser ran out of stack)` : `YAML could not be parsed: ${firstLine(String((err as Error)?.message ?? err))}`);
  }
  const locate = (path: YamlPath) => at(nodeAt(doc, path).range?.[0] ?? 0);
  const result: LoadedDirective = { file, text, directive: null, partial: null, errors, locate };

  const syntax = describeYamlErrors(text, [...doc.errors, ...doc.warnings], doc.contents, (offset) => at(offset).line);
  const seen = new Set<string>();
  for (const s of syntax.sort((a, b) => a.offset - b.offset)) {
    const d = { file, ...at(s.offset), message: s.message };
    const key = formatDiagnostic(d);
    if (!seen.has(key)) errors.push(d);
    seen.add(key);
  }
  if (errors.length) return result;
  if (!doc.contents) return empty('the file is empty; a directive is a YAML mapping with name, version, description and steps');

  // Structure first, before any value is built: depth, and keys that reach the object prototype.
  const structural = checkStructure(doc.contents, 0);
  for (const s of structural) errors.push({ file, ...at(s.offset), message: s.message });
  if (errors.length) return result;

  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    const firstAlias = findAlias(doc.contents);
    return {
      ...result,
      errors: [{ file, ...at(firstAlias ?? 0), message: `${firstLine((err as Error).message)} (at most ${MAX_ALIAS_COUNT} alias expansions)` }],
    };
  }

  const parsed = directiveSchema.safeParse(value, { reportInput: true });
  if (!parsed.success) {
    for (const issue of parsed.error.issues) errors.push({ file, ...issuePosition(issue, doc, at), message: issueMessage(issue) });
    errors.sort((a, b) => a.line - b.line || a.column - b.column);
    result.partial = partialDirective(value, parsed.error.issues);
    return result;
  }
  result.directive = parsed.data;
  return result;
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** What of `value` passed the schema, given the schema's issues (see PartialDirective); null when it is not a mapping. */
function partialDirective(value: unknown, issues: readonly Issue[]): PartialDirective | null {
  if (!isMapping(value)) return null;
  const paths = issues.map((issue) => issue.path.filter((p): p is string | number => typeof p !== 'symbol'));
  const startsWith = (path: YamlPath, prefix: YamlPath) => path.length >= prefix.length && prefix.every((segment, i) => path[i] === segment);
  const failedAt = (prefix: YamlPath) => paths.some((p) => startsWith(p, prefix));
  const failedFields = new Set(paths.flatMap((p) => (typeof p[0] === 'string' ? [p[0]] : [])));
  const text = (key: string) => (!failedFields.has(key) && typeof value[key] === 'string' ? value[key] : '');

  const failedInputs = new Set<string>();
  const inputs: Record<string, InputSpec> = {};
  if (isMapping(value.inputs)) {
    for (const [name, spec] of Object.entries(value.inputs)) {
      if (failedAt(['inputs', name])) failedInputs.add(name);
      else inputs[name] = spec as InputSpec;
    }
  }

  const failedSteps = new Set<string>();
  const stepsAt = (list: unknown, path: YamlPath): StepDefinition[] => (Array.isArray(list) ? list.map((step, i) => stepAt(step, [...path, i])) : []);
  const stepAt = (step: unknown, path: YamlPath): StepDefinition => {
    if (!isMapping(step)) {
      failedSteps.add(formatYamlPath(path));
      return {};
    }
    const branches = [[...path, 'conditional', 'then'], [...path, 'conditional', 'else']];
    const inBranchStep = (p: YamlPath) => branches.some((branch) => startsWith(p, branch) && p.length > branch.length);
    const own = paths.some((p) => startsWith(p, path) && !inBranchStep(p));
    const c = isMapping(step.conditional) ? step.conditional : null;
    const conditional = c && {
      if: typeof c.if === 'boolean' || typeof c.if === 'string' ? c.if : true,
      then: stepsAt(c.then, branches[0]!),
      ...(c.else === undefined ? {} : { else: stepsAt(c.else, branches[1]!) }),
    };
    if (!own) return { ...(step as StepDefinition), ...(conditional ? { conditional } : {}) };
    failedSteps.add(formatYamlPath(path));
    const name = typeof step.name === 'string' && IDENTIFIER.test(step.name) ? step.name : undefined;
    return { ...(name === undefined ? {} : { name }), ...(conditional ? { conditional } : {}) };
  };

  const directive: DirectiveDefinition = {
    name: text('name'),
    version: text('version'),
    description: text('description'),
    inputs,
    permissions: Array.isArray(value.permissions) ? (value.permissions.filter((_, i) => !failedAt(['permissions', i])) as Permission[]) : [],
    ...(failedFields.has('target') || typeof value.target !== 'string' ? {} : { target: value.target }),
    steps: stepsAt(value.steps, ['steps']),
    rollback: stepsAt(value.rollback, ['rollback']),
    finally: stepsAt(value.finally, ['finally']),
  };
  return { directive, failedFields, failedInputs, failedSteps };
}

function firstLine(message: string): string {
  return message.split('\n')[0] ?? message;
}

interface StructuralError {
  offset: number;
  message: string;
}

/**
 * The `yaml` package's parse errors, reworded for someone editing the file: a plain message at the
 * line to fix (an unclosed quote or bracket at its opening, a mis-indented key at its own line),
 * follow-on errors that one mistake causes dropped, and the library's text kept only as a fallback.
 */
function describeYamlErrors(text: string, yamlErrors: readonly YAMLError[], contents: unknown, lineOf: (offset: number) => number): StructuralError[] {
  let errs = [...yamlErrors];
  const out: StructuralError[] = [];

  // Too deep: the composer overflows its stack and reports it once per level it unwinds. Say it once,
  // at the first node past the limit (the partial tree is there; checkStructure stops at the limit).
  const exhausted = errs.filter((e) => e.code === 'RESOURCE_EXHAUSTION');
  if (exhausted.length) {
    const deep = checkStructure(contents, 0).find((s) => s.message === DEPTH_MESSAGE);
    const offset = deep?.offset ?? exhausted.reduce((min, e) => Math.min(min, e.pos[0]), text.length);
    out.push({ offset, message: DEPTH_MESSAGE });
    errs = errs.filter((e) => e.code !== 'RESOURCE_EXHAUSTION' && e.pos[0] < offset);
  }

  // Unclosed quotes and brackets: the library notices where the input ran out; report where it was opened.
  const handled = new Set<YAMLError>();
  const unclosedRanges: [number, number][] = [];
  if (errs.some(isUnclosedError)) {
    const openers = unclosedOpeners(text);
    const used = new Set<Opener>();
    for (const e of errs) {
      const char = isUnclosedError(e);
      if (!char) continue;
      const opener = openers.filter((o) => o.char === char && o.offset < e.pos[0] && !used.has(o)).pop();
      if (!opener) continue;
      used.add(opener);
      handled.add(e);
      unclosedRanges.push([opener.offset, e.pos[0]]);
      const close = CLOSERS[char];
      const indent = e.code === 'BAD_INDENT' ? `; a ${close} on a later line must be indented more than this line` : '';
      out.push({ offset: opener.offset, message: `this ${char} is never closed (no matching ${close}${indent})` });
    }
  }

  const tabLines = new Set(errs.filter((e) => e.code === 'TAB_AS_INDENT').map((e) => lineStart(text, e.pos[0])));
  const multilineKeys = errs.filter((e) => e.code === 'MULTILINE_IMPLICIT_KEY');
  for (const e of errs) {
    if (handled.has(e)) continue;
    // Follow-on errors inside an unclosed quote or bracket say nothing the unclosed error does not.
    if (!isUnclosedError(e) && unclosedRanges.some(([from, to]) => e.pos[0] > from && e.pos[0] <= to)) continue;
    const described = describeYamlError(text, e, multilineKeys, tabLines, lineOf);
    if (described) out.push(described);
  }
  return out;
}

interface Opener {
  char: '"' | "'" | '[' | '{';
  offset: number;
}

const CLOSERS = { '"': '"', "'": "'", '[': ']', '{': '}' } as const;

/** The character whose closing the error says is missing, or null if it is some other error. */
function isUnclosedError(e: YAMLError): Opener['char'] | null {
  if (e.code !== 'MISSING_CHAR' && e.code !== 'BAD_INDENT') return null;
  if (/closing "quote/.test(e.message)) return '"';
  if (/closing 'quote/.test(e.message)) return "'";
  if (/end with a \]/.test(e.message)) return '[';
  if (/end with a \}/.test(e.message)) return '{';
  return null;
}

/** Quotes and flow brackets that are opened and never closed, in source order. Walks the CST without recursion. */
function unclosedOpeners(text: string): Opener[] {
  const found: Opener[] = [];
  const stack: unknown[] = [];
  try {
    for (const token of new Parser().parse(text)) stack.push(token);
  } catch {
    return found;
  }
  while (stack.length) {
    const t = stack.pop();
    if (!t || typeof t !== 'object') continue;
    if (Array.isArray(t)) {
      stack.push(...t);
      continue;
    }
    const token = t as { type?: string; offset?: number; source?: string; start?: { offset: number }; end?: { type: string }[] };
    if ((token.type === 'double-quoted-scalar' || token.type === 'single-quoted-scalar') && typeof token.source === 'string') {
      if (!quoteClosed(token.source)) found.push({ char: token.source[0] as '"' | "'", offset: token.offset ?? 0 });
    } else if (token.type === 'flow-collection' && token.start) {
      const seq = (token.start as { type?: string }).type === 'flow-seq-start';
      if (!token.end?.some((x) => x.type === (seq ? 'flow-seq-end' : 'flow-map-end'))) found.push({ char: seq ? '[' : '{', offset: token.start.offset });
    }
    for (const v of Object.values(token)) if (v && typeof v === 'object') stack.push(v);
  }
  return found.sort((a, b) => a.offset - b.offset);
}

function quoteClosed(source: string): boolean {
  const body = source.slice(1);
  let run = 0;
  if (source[0] === '"') {
    if (!body.endsWith('"')) return false;
    for (let i = body.length - 2; i >= 0 && body[i] === '\\'; i--) run++;
    return run % 2 === 0; // an odd number of backslashes escapes the last "
  }
  for (let i = body.length - 1; i >= 0 && body[i] === "'"; i--) run++;
  return run % 2 === 1; // '' is an escaped quote inside a single-quoted string
}

function lineStart(text: string, offset: number): number {
  return text.lastIndexOf('\n', offset - 1) + 1;
}

/** The key on the line holding `offset` ("  - name: x" gives "name"), shortened, or null. */
function keyOnLine(text: string, offset: number): string | null {
  const start = lineStart(text, offset);
  const end = text.indexOf('\n', start);
  const match = /^\s*(?:-\s+)*([^\s:#][^:#]*?)\s*:(?:\s|$)/.exec(text.slice(start, end < 0 ? undefined : end));
  if (!match) return null;
  const key = match[1]!;
  return key.length > 40 ? `${key.slice(0, 37)}...` : key;
}

const NO_COLON_MESSAGE = 'expected "key: value" but this line has no ":" after the key';

function describeYamlError(
  text: string,
  e: YAMLError,
  multilineKeys: YAMLError[],
  tabLines: Set<number>,
  lineOf: (offset: number) => number,
): StructuralError | null {
  const offset = e.pos[0];
  switch (e.code) {
    case 'MULTIPLE_DOCS': {
      const marker = text.startsWith('---', offset) ? ' (---)' : '';
      return { offset, message: `a directive file holds one YAML document; line ${lineOf(offset)} starts another${marker}` };
    }
    case 'TAB_AS_INDENT':
      return { offset, message: 'a tab is used for indentation; YAML indents with spaces only' };
    case 'DUPLICATE_KEY': {
      const key = keyOnLine(text, offset);
      return { offset, message: key ? `key "${key}" appears twice in the same mapping` : 'a key appears twice in the same mapping' };
    }
    case 'MULTILINE_IMPLICIT_KEY':
    case 'BLOCK_AS_IMPLICIT_KEY': {
      // A tab on that line is the real mistake, and it is already reported.
      if (tabLines.has(lineStart(text, offset))) return null;
      if (e.code === 'BLOCK_AS_IMPLICIT_KEY' && !/^Nested mappings/.test(e.message)) break;
      if (e.code === 'BLOCK_AS_IMPLICIT_KEY' && multilineKeys.some((m) => m.pos[0] === offset)) return null; // its MULTILINE twin says it
      if (e.code === 'MULTILINE_IMPLICIT_KEY') {
        // "foo\nb: 1" -- a line that is only a key runs into the next one.
        if (/^\s*(?:-\s+)*$/.test(text.slice(lineStart(text, offset), offset))) return { offset, message: NO_COLON_MESSAGE };
        // "action: detect\n     inputs:" -- the over-indented line continues the value above and turns it
        // into a multi-line key. Point at the over-indented line (where that key's ":" is), not the value.
        const bad = lineStart(text, e.pos[1]);
        const indent = /^[ ]*/.exec(text.slice(bad))![0].length;
        const aboveLine = lineOf(offset);
        const above = keyOnLine(text, offset);
        const mine = keyOnLine(text, bad);
        const what = mine ? `"${mine}:"` : 'this line';
        const than = above ? `"${above}:" on line ${aboveLine}` : `line ${aboveLine}`;
        return { offset: bad + indent, message: `${what} is indented more than ${than}, so it reads as part of that value; indent both the same` };
      }
      if (e.code === 'BLOCK_AS_IMPLICIT_KEY') return { offset, message: 'this value contains ": "; put the value in quotes' };
      break;
    }
    case 'MISSING_CHAR':
      if (/^Implicit map keys need to be followed by map values/.test(e.message)) return { offset, message: NO_COLON_MESSAGE };
      break;
    default:
      break;
  }
  return { offset, message: firstLine(e.message) };
}

function checkStructure(node: unknown, depth: number): StructuralError[] {
  const errors: StructuralError[] = [];
  const visit = (n: unknown, d: number): void => {
    if (errors.length >= 20) return;
    const offset = (n as Node | null)?.range?.[0] ?? 0;
    if (d > MAX_YAML_DEPTH) {
      errors.push({ offset, message: DEPTH_MESSAGE });
      return;
    }
    if (isMap(n)) {
      for (const pair of n.items) {
        const key = pair.key;
        if (!isScalar(key)) {
          errors.push({ offset: (key as Node | null)?.range?.[0] ?? offset, message: 'mapping keys must be plain scalars' });
          continue;
        }
        if (FORBIDDEN_KEYS.has(String(key.value))) {
          errors.push({ offset: key.range?.[0] ?? offset, message: `key "${String(key.value)}" is not allowed (it reaches the object prototype)` });
        }
        visit(pair.value, d + 1);
      }
    } else if (isSeq(n)) {
      for (const item of n.items) visit(item, d + 1);
    }
  };
  visit(node, depth);
  return errors;
}

function findAlias(node: unknown): number | null {
  if (isAlias(node)) return node.range?.[0] ?? null;
  if (isMap(node)) {
    for (const pair of node.items) {
      const found = findAlias(pair.value);
      if (found !== null) return found;
    }
  } else if (isSeq(node)) {
    for (const item of node.items) {
      const found = findAlias(item);
      if (found !== null) return found;
    }
  }
  return null;
}

/** The node at a path, or the nearest ancestor that exists. Returns the key node for `{ key: true }` segments. */
function nodeAt(doc: Document, path: YamlPath, wantKey = false): Node {
  let node = doc.contents as Node;
  for (let i = 0; i < path.length; i++) {
    const segment = path[i]!;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(segment));
      if (!pair) return node;
      if (wantKey && i === path.length - 1) return pair.key as Node;
      node = (pair.value as Node | null) ?? (pair.key as Node);
    } else if (isSeq(node) && typeof segment === 'number') {
      const item = node.items[segment] as Node | undefined;
      if (!item) return node;
      node = item;
    } else {
      return node;
    }
  }
  return node;
}

type Issue = z.core.$ZodIssue;

function issuePosition(issue: Issue, doc: Document, at: (offset: number) => { line: number; column: number }) {
  const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
  if (issue.code === 'unrecognized_keys' && issue.keys.length) {
    return at(nodeAt(doc, [...path, issue.keys[0]!], true).range?.[0] ?? 0);
  }
  if (issue.code === 'invalid_key') return at(nodeAt(doc, path, true).range?.[0] ?? 0);
  return at(nodeAt(doc, path).range?.[0] ?? 0);
}

function issueMessage(issue: Issue): string {
  const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
  const where = path.length ? `${formatYamlPath(path)}: ` : '';
  if (issue.code === 'unrecognized_keys') return `${where}unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
  if (issue.code === 'invalid_type' && issue.input === undefined) return `${where}required field is missing (${issue.expected})`;
  return `${where}${issue.message}`;
}
