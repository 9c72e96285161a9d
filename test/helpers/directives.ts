/** A directive engine over a fresh store and folders, for tests that run directives in-process. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DirectiveEngine } from '../../src/directives/engine.js';
import { DirectiveLibrary } from '../../src/directives/library.js';
import { Policy, policySchema, type PolicyConfig } from '../../src/directives/policy.js';
import type { CapabilityRegistry, ToolCaller } from '../../src/directives/registry.js';
import { Store } from '../../src/store/store.js';

export const ALL_PERMISSIONS = ['read:metrics', 'write:settings', 'write:anomalies', 'write:events', 'net:webhook', 'execute:script', 'call:tool'] as const;

/** Every permission to every principal, unless `config` says otherwise. */
export function policy(config: Partial<Record<keyof PolicyConfig, unknown>> = {}): Policy {
  return new Policy(policySchema.parse({ grants: { '*': ALL_PERMISSIONS }, ...config }), 'test policy');
}

export interface DirectiveSetup {
  dir: string;
  store: Store;
  directives: string;
  scripts: string;
  engine: DirectiveEngine;
  /** Writes directives/<name>.yaml; returns its path. */
  write(name: string, yaml: string): string;
  /** Writes scripts/<name>; returns its path. */
  script(name: string, body: string): string;
}

/** In `dir`: directives/, scripts/ and a store (handed to `opened`, so the test can close it). */
export function directiveSetup(
  dir: string,
  opened: (store: Store) => void,
  options: { policy?: Policy; capabilities?: CapabilityRegistry; tools?: ToolCaller | null } = {},
): DirectiveSetup {
  const directives = join(dir, 'directives');
  const scripts = join(dir, 'scripts');
  mkdirSync(directives);
  mkdirSync(scripts);
  const store = new Store(join(dir, 'kiwi.db'));
  opened(store);
  const engine = new DirectiveEngine({
    store,
    library: new DirectiveLibrary(directives),
    scriptsDir: scripts,
    policy: options.policy ?? policy(),
    capabilities: options.capabilities,
    tools: options.tools ?? null,
    actionsDir: join(dir, 'actions'),
  });
  const writeIn = (folder: string, name: string, body: string) => {
    const file = join(folder, name);
    writeFileSync(file, body);
    return file;
  };
  return {
    dir,
    store,
    directives,
    scripts,
    engine,
    write: (name, yaml) => writeIn(directives, `${name}.yaml`, yaml),
    script: (name, body) => writeIn(scripts, name, body),
  };
}
