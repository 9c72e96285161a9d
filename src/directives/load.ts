/**
 * Reading a directive file: YAML (the `yaml` package's document API, which keeps each node's
 * source range) checked against the zod schema, every error placed at `file:line:column`.
 */
import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { z } from 'zod';
import { directiveSchema, FORBIDDEN_KEYS, type DirectiveDefinition } from './schema.js';

export const MAX_DIRECTIVE_BYTES = 256 * 1024;
export const MAX_YAML_DEPTH = 32;
/** Aliases expanded when building the value: a handful is reuse, thousands is an alias bomb. */
export const MAX_ALIAS_COUNT = 50;

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

export interface LoadedDirective {
  file: string;
  text: string;
  /** Present when the file parsed and matched the schema. */
  directive: DirectiveDefinition | null;
  errors: Diagnostic[];
  /** Line and column (1-based) of the node at `path`, or of its nearest existing ancestor. */
  locate(path: YamlPath): { line: number; column: number };
}

/** A directive that could not be read at all: one diagnostic at the top of the file. */
export function failedLoad(file: string, message: string, text = ''): LoadedDirective {
  return { file, text, directive: null, errors: [{ file, line: 1, column: 1, message }], locate: () => ({ line: 1, column: 1 }) };
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

  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false, version: '1.2', strict: true });
  const locate = (path: YamlPath) => at(nodeAt(doc, path).range?.[0] ?? 0);
  const result: LoadedDirective = { file, text, directive: null, errors, locate };

  for (const e of [...doc.errors, ...doc.warnings]) {
    const pos = e.linePos?.[0] ?? at(e.pos[0]);
    errors.push({ file, line: pos.line, column: 'col' in pos ? pos.col : pos.column, message: firstLine(e.message) });
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
    return result;
  }
  result.directive = parsed.data;
  return result;
}

function firstLine(message: string): string {
  return message.split('\n')[0] ?? message;
}

interface StructuralError {
  offset: number;
  message: string;
}

function checkStructure(node: unknown, depth: number): StructuralError[] {
  const errors: StructuralError[] = [];
  const visit = (n: unknown, d: number): void => {
    if (errors.length >= 20) return;
    const offset = (n as Node | null)?.range?.[0] ?? 0;
    if (d > MAX_YAML_DEPTH) {
      errors.push({ offset, message: `nesting deeper than ${MAX_YAML_DEPTH} levels` });
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
  const where = path.length ? `${path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('')}: ` : '';
  if (issue.code === 'unrecognized_keys') return `${where}unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
  if (issue.code === 'invalid_type' && issue.input === undefined) return `${where}required field is missing (${issue.expected})`;
  return `${where}${issue.message}`;
}
