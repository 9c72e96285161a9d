import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { describe, expect, it } from 'vitest';
import { commands } from '../src/cli.js';
import { ENVIRONMENT, generatedReference } from '../src/cli/reference.js';
import { createMcpServer } from '../src/mcp/server.js';
import { Store } from '../src/store/store.js';

const root = fileURLToPath(new URL('..', import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sourceFiles(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
  );
}

/** Names read as `env.X`, `process.env.X`, `(… ?? process.env).X` or `env['X']`; assignments (`env.X = …`) are writes, not reads. */
function environmentReadsInSource(): Map<string, string[]> {
  const reads = new Map<string, string[]>();
  for (const file of sourceFiles(join(root, 'src'))) {
    const text = readFileSync(file, 'utf8');
    const names = [
      ...[...text.matchAll(/\benv\)?\.([A-Z][A-Z0-9_]*)\b(?!\s*=(?!=))/g)].map((m) => m[1]!),
      ...[...text.matchAll(/\benv\[\s*['"]([A-Z][A-Z0-9_]*)['"]\s*\](?!\s*=(?!=))/g)].map((m) => m[1]!),
    ];
    for (const name of names) reads.set(name, [...(reads.get(name) ?? []), relative(root, file)]);
  }
  return reads;
}

describe('docs/REFERENCE.md and docs/CONFIGURATION.md', () => {
  it('are exactly what the registered schemas and tables generate', async () => {
    const generated = await generatedReference();
    expect(Object.keys(generated)).toEqual(['REFERENCE.md', 'CONFIGURATION.md']);
    for (const [name, content] of Object.entries(generated)) {
      const checkedIn = readFileSync(join(root, 'docs', name), 'utf8');
      expect(checkedIn, `docs/${name} is out of date: run \`npm run reference\` and commit the result`).toBe(content);
      // nothing of this machine or this run leaks in
      expect(content).not.toContain(tmpdir());
      expect(content).not.toContain(root);
      expect(content).not.toMatch(/\d{4}-\d\d-\d\dT\d\d:\d\d/);
    }
  });

  it('gives every tool a section with a row for each of its arguments, in the order a client lists them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiwi-reference-test-'));
    const store = new Store(join(dir, 'kiwi.db'));
    const client = new Client({ name: 'reference-test', version: '1.0.0' });
    try {
      const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
      await createMcpServer(store, null).connect(serverSide);
      await client.connect(clientSide);
      const { tools } = await client.listTools();
      const { prompts } = await client.listPrompts();
      const reference = (await generatedReference())['REFERENCE.md']!;
      const sections = reference.split(/^### /m).slice(1);
      const toolSections = sections.slice(0, tools.length);
      expect(toolSections.map((s) => s.slice(0, s.indexOf('\n')))).toEqual(tools.map((t) => t.name));
      tools.forEach((tool, i) => {
        const section = toolSections[i]!;
        expect(section, tool.name).toContain(tool.description!.slice(0, 60));
        for (const field of Object.keys(tool.inputSchema.properties ?? {})) expect(section, `${tool.name}.${field}`).toContain(`| \`${field}\` |`);
        for (const field of Object.keys(tool.outputSchema?.properties ?? {})) expect(section, `${tool.name} result ${field}`).toContain(`| \`${field}\` |`);
      });
      expect(sections.slice(tools.length).map((s) => s.slice(0, s.indexOf('\n')))).toEqual(prompts.map((p) => p.name));
    } finally {
      await client.close();
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('documents every environment variable the source reads, and none it no longer reads', () => {
    const reads = environmentReadsInSource();
    const documented = ENVIRONMENT.map((v) => v.name);
    const undocumented = [...reads.keys()].filter((name) => !documented.includes(name));
    expect(undocumented, `read in ${undocumented.map((n) => `${n} (${reads.get(n)!.join(', ')})`).join('; ')} but not in ENVIRONMENT of src/cli/reference.ts`).toEqual([]);
    expect(documented.filter((name) => !reads.has(name)), 'in ENVIRONMENT but no longer read anywhere in src/').toEqual([]);
  });

  it("documents every flag each command parses: each option is named in the command's flag list", () => {
    for (const [name, command] of Object.entries(commands)) {
      const named = new Set(command.flags.flatMap(([flag]) => [...flag.matchAll(/--([a-z][a-z0-9-]*)/g)].map((m) => m[1]!)));
      const parsed = Object.keys(command.options);
      expect(parsed.filter((option) => !named.has(option)), `kiwi ${name}: parsed but not described in its flags`).toEqual([]);
      expect([...named].filter((flag) => !parsed.includes(flag)), `kiwi ${name}: described but not parsed`).toEqual([]);
    }
  });
});
