/**
 * The directives folder: `<name>.yaml` (or `.yml`) files, loaded on demand and cached by
 * modification time, watched so a server notices files added, changed or removed while it runs.
 */
import { readdirSync, readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { log } from '../log.js';
import { failedLoad, loadDirectiveText, MAX_DIRECTIVE_BYTES, sizeMessage, type LoadedDirective } from './load.js';
import type { StepDefinition } from './schema.js';

export interface LibraryEntry {
  name: string;
  file: string;
  loaded: LoadedDirective;
}

export const MAX_DIRECTIVE_FILES = 500;

export class DirectiveLibrary {
  private readonly cache = new Map<string, { mtimeMs: number; size: number; loaded: LoadedDirective }>();

  constructor(readonly dir: string) {}

  /** Every directive file in the folder (at most 500), sorted by name. */
  list(): LibraryEntry[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return [];
    }
    return names
      .filter((n) => ['.yaml', '.yml'].includes(extname(n)) && !n.startsWith('.'))
      .sort()
      .slice(0, MAX_DIRECTIVE_FILES)
      .map((n) => this.entry(join(this.dir, n)))
      .filter((e): e is LibraryEntry => e !== null);
  }

  get(name: string): LibraryEntry | null {
    if (!/^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(name)) return null;
    for (const ext of ['.yaml', '.yml']) {
      const entry = this.entry(join(this.dir, `${name}${ext}`));
      if (entry) return entry;
    }
    return null;
  }

  private entry(file: string): LibraryEntry | null {
    let stat;
    try {
      stat = statSync(file);
    } catch {
      return null;
    }
    if (!stat.isFile()) return null;
    const name = basename(file, extname(file));
    const cached = this.cache.get(file);
    if (cached && cached.mtimeMs === stat.mtimeMs && cached.size === stat.size) return { name, file, loaded: cached.loaded };
    // an oversized file is refused without reading it
    const loaded =
      stat.size > MAX_DIRECTIVE_BYTES ? failedLoad(file, sizeMessage(stat.size)) : loadDirectiveText(readFileSync(file, 'utf8'), file);
    this.cache.set(file, { mtimeMs: stat.mtimeMs, size: stat.size, loaded });
    return { name, file, loaded };
  }

  /** Calls `onChange` (debounced) when the folder changes; returns a function that stops watching. */
  watch(onChange: () => void): () => void {
    let watcher: FSWatcher;
    try {
      watcher = watch(this.dir, { persistent: false });
    } catch (err) {
      log.warn('cannot watch the directives folder; new files are seen on the next list', { dir: this.dir, error: (err as Error).message });
      return () => {};
    }
    let timer: NodeJS.Timeout | null = null;
    watcher.on('change', () => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        timer = null;
        onChange();
      }, 100);
      timer.unref();
    });
    watcher.on('error', (err) => log.warn('directives folder watch failed', { error: err.message }));
    return () => {
      if (timer) clearTimeout(timer);
      watcher.close();
    };
  }
}

export interface StepVisit {
  step: StepDefinition;
  /** YAML path of the step, e.g. ['steps', 2, 'conditional', 'then', 0]. */
  path: (string | number)[];
}

/** Every step of a list, conditionals' branches included, in document order. */
export function walkSteps(steps: readonly StepDefinition[] | undefined, path: (string | number)[], out: StepVisit[] = []): StepVisit[] {
  (steps ?? []).forEach((step, i) => {
    const here = [...path, i];
    out.push({ step, path: here });
    if (step.conditional) {
      walkSteps(step.conditional.then, [...here, 'conditional', 'then'], out);
      walkSteps(step.conditional.else, [...here, 'conditional', 'else'], out);
    }
  });
  return out;
}

export function allSteps(d: { steps: StepDefinition[]; rollback?: StepDefinition[]; finally?: StepDefinition[] }): StepVisit[] {
  return [...walkSteps(d.steps, ['steps']), ...walkSteps(d.rollback, ['rollback']), ...walkSteps(d.finally, ['finally'])];
}
