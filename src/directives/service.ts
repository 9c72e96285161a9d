/**
 * The directives capability's entry point, shared by the MCP tools and the CLI: the directives
 * folder, validation, and the engine (plan, execute, approve, reject, runs).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Store } from '../store/store.js';
import { DirectiveEngine, type RunRequest, type RunView } from './engine.js';
import { DirectiveLibrary } from './library.js';
import { failedLoad, loadDirectiveText, MAX_DIRECTIVE_BYTES, sizeMessage, type Diagnostic } from './load.js';
import { Policy } from './policy.js';
import type { CapabilityRegistry, ToolCaller } from './registry.js';
import type { InputSpec, Permission } from './schema.js';
import { validateDirective } from './validate.js';

export interface DirectiveServiceOptions {
  store: Store;
  /** Default: `KIWI_DIRECTIVES`, else the `directives/` folder shipped with Kiwi. */
  directivesDir?: string;
  /** Default: `KIWI_SCRIPTS`, else the `scripts/` folder shipped with Kiwi. */
  scriptsDir?: string;
  /** Default: `Policy.load()` (`KIWI_POLICY`, else read-only). */
  policy?: Policy;
  capabilities?: CapabilityRegistry;
  tools?: ToolCaller | null;
  /** Default: `actions/` beside the database file. */
  actionsDir?: string;
}

export interface DirectiveSummary {
  name: string;
  file: string;
  version: string | null;
  description: string | null;
  inputs: Record<string, InputSpec>;
  permissions: Permission[];
  valid: boolean;
  errors: string[];
}

/** The folder Kiwi ships (`directives/`, `scripts/`), found from this module whether it runs from src/ or dist/. */
export function packagedDir(name: 'directives' | 'scripts'): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'kiwi-mcp') return join(dir, name);
      } catch {
        // not ours; keep climbing
      }
    }
    dir = dirname(dir);
  }
  return resolve(name);
}

export class DirectiveService {
  readonly library: DirectiveLibrary;
  readonly engine: DirectiveEngine;
  readonly scriptsDir: string;
  readonly policy: Policy;

  constructor(options: DirectiveServiceOptions) {
    const directivesDir = options.directivesDir ?? process.env.KIWI_DIRECTIVES ?? packagedDir('directives');
    this.scriptsDir = resolve(options.scriptsDir ?? process.env.KIWI_SCRIPTS ?? packagedDir('scripts'));
    this.library = new DirectiveLibrary(resolve(directivesDir));
    this.policy = options.policy ?? Policy.load();
    this.engine = new DirectiveEngine({
      store: options.store,
      library: this.library,
      scriptsDir: this.scriptsDir,
      policy: this.policy,
      capabilities: options.capabilities,
      tools: options.tools ?? null,
      actionsDir: options.actionsDir ?? (options.store.path === ':memory:' ? undefined : join(dirname(options.store.path), 'actions')),
    });
  }

  async list(): Promise<DirectiveSummary[]> {
    const tools = await this.engine.toolList();
    return this.library.list().map((entry) => {
      const errors = validateDirective(entry.loaded, { library: this.library, scriptsDir: this.scriptsDir, tools }, entry.name);
      const d = entry.loaded.directive;
      return {
        name: entry.name,
        file: entry.file,
        version: d?.version ?? null,
        description: d?.description ?? null,
        inputs: d?.inputs ?? {},
        permissions: d?.permissions ?? [],
        valid: errors.length === 0,
        errors: errors.map((e) => `${e.line}:${e.column}: ${e.message}`),
      };
    });
  }

  /** Validates files (any path; `directive` steps resolve against the directives folder). */
  async validateFiles(files: readonly string[]): Promise<Diagnostic[]> {
    const tools = await this.engine.toolList();
    const out: Diagnostic[] = [];
    for (const file of files) {
      let size: number;
      try {
        size = statSync(file).size;
      } catch (err) {
        out.push({ file, line: 1, column: 1, message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` });
        continue;
      }
      const loaded = size > MAX_DIRECTIVE_BYTES ? failedLoad(file, sizeMessage(size)) : loadDirectiveText(readFileSync(file, 'utf8'), file);
      const stem = basename(file, extname(file));
      out.push(...validateDirective(loaded, { library: this.library, scriptsDir: this.scriptsDir, tools }, stem));
    }
    return out;
  }

  async validateText(text: string, file = '<input>'): Promise<Diagnostic[]> {
    const tools = await this.engine.toolList();
    return validateDirective(loadDirectiveText(text, file), { library: this.library, scriptsDir: this.scriptsDir, tools });
  }

  yamlOf(name: string): string | null {
    const entry = this.library.get(name);
    return entry ? entry.loaded.text : null;
  }

  run(request: RunRequest): Promise<RunView> {
    return this.engine.run(request);
  }

  approve(runId: string, approver: string, secretInputs?: Record<string, unknown>, signal?: AbortSignal): Promise<RunView> {
    return this.engine.approve(runId, approver, secretInputs, signal);
  }

  reject(runId: string, principal: string, reason?: string): RunView {
    return this.engine.reject(runId, principal, reason);
  }
}

/** CLI `--input k=v` pairs → typed inputs: numbers, booleans and JSON arrays/objects by the declared type. */
export function coerceInputPairs(pairs: readonly string[], specs: Record<string, InputSpec>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`--input ${JSON.stringify(pair)}: expected KEY=VALUE`);
    const key = pair.slice(0, eq);
    const raw = pair.slice(eq + 1);
    const type = Object.hasOwn(specs, key) ? specs[key]!.type : 'string';
    out[key] = coerce(key, raw, type);
  }
  return out;
}

function coerce(key: string, raw: string, type: InputSpec['type']): unknown {
  switch (type) {
    case 'number':
    case 'integer': {
      const n = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(n)) throw new Error(`--input ${key}: ${JSON.stringify(raw)} is not a number`);
      return n;
    }
    case 'boolean':
      if (raw === 'true' || raw === 'false') return raw === 'true';
      throw new Error(`--input ${key}: ${JSON.stringify(raw)} is not true or false`);
    case 'array':
    case 'object':
      try {
        return JSON.parse(raw) as unknown;
      } catch {
        throw new Error(`--input ${key}: ${type} inputs are JSON, got ${JSON.stringify(raw)}`);
      }
    default:
      return raw;
  }
}
