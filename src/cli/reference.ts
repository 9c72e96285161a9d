/**
 * `npm run reference`: writes docs/REFERENCE.md (the tools, resources and prompts an MCP client sees) and
 * docs/CONFIGURATION.md (commands and flags, environment variables, settings, the directive policy file).
 * Both are generated from the registered schemas and tables, and test/reference.test.ts fails when the
 * checked-in files differ from what this produces, so they cannot drift from the code.
 */
import { isEntryPoint } from './entry.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { stringify as toYaml } from 'yaml';
import { z } from 'zod';
import { commands } from '../cli.js';
import { policySchema } from '../directives/policy.js';
import { PERMISSIONS, type Permission } from '../directives/schema.js';
import { createMcpServer } from '../mcp/server.js';
import { SETTINGS } from '../settings.js';
import { Store } from '../store/store.js';

// ------------------------------------------------------------------ JSON Schema → readable tables

/** The subset of JSON Schema that zod emits for Kiwi's schemas. */
interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  enum?: unknown[];
  const?: unknown;
  default?: unknown;
  description?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  additionalProperties?: JsonSchema | boolean;
  propertyNames?: JsonSchema;
  pattern?: string;
  format?: string;
}

interface FieldRow {
  field: string;
  type: string;
  required: boolean;
  default: unknown;
  description: string;
}

/** A number with thousands separators, written out by hand so no locale data can change it. */
function grouped(n: number): string {
  if (!Number.isInteger(n) || Math.abs(n) < 10_000) return String(n);
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

function code(text: string): string {
  const fence = text.includes('`') ? '`` ' : '`';
  return `${fence}${text}${fence === '`' ? '`' : ' ``'}`;
}

/** Range constraints as text, e.g. "1–20", "≥ 0", "> 0, ≤ 3,650". Bounds that only say "a safe integer" are left out. */
function rangeText(low: number | undefined, lowExclusive: boolean, high: number | undefined, highExclusive: boolean): string {
  const lowText = low === undefined || low <= Number.MIN_SAFE_INTEGER ? undefined : grouped(low);
  const highText = high === undefined || high >= Number.MAX_SAFE_INTEGER ? undefined : grouped(high);
  if (lowText !== undefined && highText !== undefined && !lowExclusive && !highExclusive) return `${lowText}–${highText}`;
  return [lowText === undefined ? '' : `${lowExclusive ? '>' : '≥'} ${lowText}`, highText === undefined ? '' : `${highExclusive ? '<' : '≤'} ${highText}`]
    .filter(Boolean)
    .join(', ');
}

/** `X or null` → X, so nested objects are walked whether or not they may be null. */
function nonNull(schema: JsonSchema): JsonSchema {
  const variants = schema.anyOf ?? schema.oneOf;
  if (variants) {
    const rest = variants.filter((v) => v.type !== 'null');
    if (rest.length === 1) return rest[0]!;
  }
  return schema;
}

function isRecord(schema: JsonSchema): boolean {
  return schema.properties === undefined && typeof schema.additionalProperties === 'object';
}

function typeText(schema: JsonSchema): string {
  if (schema.const !== undefined) return code(JSON.stringify(schema.const));
  if (schema.enum) return schema.enum.map((v) => code(typeof v === 'string' ? v : JSON.stringify(v))).join(' | ');
  const variants = schema.anyOf ?? schema.oneOf;
  if (variants) return [...new Set(variants.map(typeText))].join(' or ');
  const types = Array.isArray(schema.type) ? schema.type : schema.type === undefined ? [] : [schema.type];
  if (types.length === 0) return 'any';
  return types.map((type) => singleTypeText(type, schema)).join(' or ');
}

function singleTypeText(type: string, schema: JsonSchema): string {
  const parts: string[] = [];
  switch (type) {
    case 'number':
    case 'integer': {
      const low = schema.exclusiveMinimum ?? schema.minimum;
      const high = schema.exclusiveMaximum ?? schema.maximum;
      parts.push(type, rangeText(low, schema.exclusiveMinimum !== undefined, high, schema.exclusiveMaximum !== undefined));
      break;
    }
    case 'string': {
      parts.push('string');
      if (schema.format) parts.push(`(${schema.format})`);
      if (schema.minLength === 1 && schema.maxLength === undefined) parts.unshift('non-empty');
      else {
        const length = rangeText(schema.minLength, false, schema.maxLength, false);
        if (length) parts.push(`${length} chars`);
      }
      if (schema.pattern) parts.push(`matching ${code(schema.pattern)}`);
      break;
    }
    case 'array': {
      const items = schema.items ? nonNull(schema.items) : undefined;
      const itemText = !items ? 'any' : items.properties ? 'object' : typeText(schema.items!);
      parts.push(`array of ${/ \| | or /.test(itemText) ? `(${itemText})` : itemText}`);
      const count = rangeText(schema.minItems, false, schema.maxItems, false);
      if (count) parts.push(`(${count} items)`);
      break;
    }
    case 'object': {
      if (isRecord(schema)) {
        const values = schema.additionalProperties as JsonSchema;
        const valueText = values.properties ? 'object' : Object.keys(values).length === 0 ? 'any' : typeText(values);
        parts.push(`map of ${schema.propertyNames ? typeText(schema.propertyNames) : 'string'} → ${valueText}`);
      } else parts.push('object');
      break;
    }
    default:
      parts.push(type);
  }
  return parts.filter(Boolean).join(' ');
}

function descriptionOf(schema: JsonSchema): string {
  if (schema.description) return schema.description;
  for (const variant of schema.anyOf ?? schema.oneOf ?? []) if (variant.description) return variant.description;
  return '';
}

/** One row per field; nested objects follow as `a.b`, items of arrays of objects as `a[].b`, values of maps as `a.{key}.b`. */
function fieldRows(schema: JsonSchema, prefix = ''): FieldRow[] {
  const rows: FieldRow[] = [];
  const required = new Set(schema.required ?? []);
  for (const [name, property] of Object.entries(schema.properties ?? {})) {
    const path = `${prefix}${name}`;
    rows.push({ field: path, type: typeText(property), required: required.has(name), default: property.default, description: descriptionOf(property) });
    rows.push(...childRows(property, path));
  }
  return rows;
}

function childRows(property: JsonSchema, path: string): FieldRow[] {
  const core = nonNull(property);
  if (core.properties) return fieldRows(core, `${path}.`);
  if (core.items) {
    const items = nonNull(core.items);
    if (items.properties) return fieldRows(items, `${path}[].`);
  }
  if (isRecord(core)) {
    const values = nonNull(core.additionalProperties as JsonSchema);
    if (values.properties) return fieldRows(values, `${path}.{key}.`);
  }
  return [];
}

/** Text in markdown outside code spans: `*`, `<` and `>` would format or vanish as HTML, so they are escaped. */
function prose(text: string): string {
  return text
    .split(/(`[^`]*`)/)
    .map((part, i) => (i % 2 === 1 ? part : part.replace(/\\/g, '\\\\').replace(/\*/g, '\\*').replace(/</g, '&lt;').replace(/>/g, '&gt;')))
    .join('');
}

function cell(text: string): string {
  return text.trim().replace(/\s*\n\s*/g, ' ').replace(/\|/g, '\\|');
}

/** A markdown table; a column named in `droppable` is left out when it is empty in every row. */
function table(headers: string[], rows: string[][], droppable: string[] = []): string {
  const keep = headers.map((header, c) => !droppable.includes(header) || rows.some((row) => (row[c] ?? '') !== ''));
  const pick = (values: string[]) => values.filter((_, c) => keep[c]);
  return [
    `| ${pick(headers).join(' | ')} |`,
    `| ${pick(headers).map(() => '---').join(' | ')} |`,
    ...rows.map((row) => `| ${pick(row.map(cell)).join(' | ')} |`),
  ].join('\n');
}

function schemaTable(schema: JsonSchema, requiredHeader: 'required' | 'always'): string {
  const rows = fieldRows(schema).map((row) => [
    code(row.field),
    row.type,
    row.required ? 'yes' : '',
    row.default === undefined ? '' : code(JSON.stringify(row.default)),
    prose(row.description),
  ]);
  return table(['field', 'type', requiredHeader, 'default', 'description'], rows, ['default', 'description']);
}

// ------------------------------------------------------------------ docs/REFERENCE.md

interface ListedTool {
  name: string;
  title?: string;
  description?: string;
  inputSchema: JsonSchema;
  outputSchema?: JsonSchema;
  annotations?: Record<string, unknown>;
}

/** Variables that would point the server at other directives, scripts or policy than the shipped ones. */
const LOCAL_OVERRIDES = ['KIWI_DIRECTIVES', 'KIWI_SCRIPTS', 'KIWI_POLICY'] as const;

/** What a real MCP client lists from a Kiwi server on a fresh store, with the shipped directives. */
async function listServer() {
  const saved = LOCAL_OVERRIDES.map((name) => [name, process.env[name]] as const);
  for (const name of LOCAL_OVERRIDES) delete process.env[name];
  const dir = mkdtempSync(join(tmpdir(), 'kiwi-reference-'));
  const store = new Store(join(dir, 'reference.db'));
  const client = new Client({ name: 'kiwi-reference', version: '1.0.0' });
  try {
    const server = createMcpServer(store, null);
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await server.connect(serverSide);
    await client.connect(clientSide);
    const capabilities = client.getServerCapabilities() ?? {};
    return {
      info: client.getServerVersion(),
      instructions: client.getInstructions(),
      capabilities: capabilities as Record<string, unknown>,
      tools: (await client.listTools()).tools as ListedTool[],
      resources: capabilities.resources ? (await client.listResources()).resources : [],
      templates: capabilities.resources ? (await client.listResourceTemplates()).resourceTemplates : [],
      prompts: capabilities.prompts ? (await client.listPrompts()).prompts : [],
    };
  } finally {
    await client.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
    for (const [name, value] of saved) if (value !== undefined) process.env[name] = value;
  }
}

function annotationText(annotations: Record<string, unknown> | undefined): string {
  const hints = Object.entries(annotations ?? {}).filter(([key]) => key !== 'title');
  return hints.length ? hints.map(([key, value]) => code(`${key}: ${JSON.stringify(value)}`)).join(' · ') : 'no annotations';
}

export async function referenceMarkdown(): Promise<string> {
  const listed = await listServer();
  const out: string[] = [];
  const capabilityNames = Object.keys(listed.capabilities).join(', ');
  out.push(
    '# Kiwi MCP reference',
    '',
    '<!-- Generated by `npm run reference` (src/cli/reference.ts). Do not edit: test/reference.test.ts fails when this file differs from what the server registers. -->',
    '',
    `What an MCP client sees when it connects to \`kiwi serve\`: the answers to \`tools/list\`, \`resources/list\`, ` +
      '`resources/templates/list` and `prompts/list` from a server on a fresh store with the shipped `directives/`. ' +
      'Command-line flags, environment variables, settings and the policy file are in [CONFIGURATION.md](CONFIGURATION.md).',
    '',
    `Server \`${listed.info?.name ?? '?'}\` ${listed.info?.version ?? '?'}; capabilities: ${capabilityNames}. Its instructions to the model:`,
    '',
    `> ${prose(listed.instructions ?? '(none)')}`,
    '',
    'How to read the field tables: `a.b` is field `b` of object `a`; `a[].b` is field `b` of each item of array `a`; ' +
      '`a.{key}.b` is field `b` of each value of map `a`. In arguments, *required* fields must be given and the others take ' +
      'their *default* when there is one. In results (`structuredContent`, which every tool returns beside a compact text), ' +
      '*always* marks the fields present in every answer; they may still be `null` where the type says so. ' +
      'Annotations are hints for the client: `readOnlyHint` (changes nothing), `destructiveHint` (may change or remove something), ' +
      '`idempotentHint` (repeating the call has no further effect), `openWorldHint` (reaches beyond Kiwi and its store).',
    '',
    '## Tools',
    '',
    ...listed.tools.map((tool) => `- [${tool.name}](#${tool.name}): ${prose(tool.title ?? '')}`),
    '',
  );
  for (const tool of listed.tools) {
    out.push(`### ${tool.name}`, '', `**${prose(tool.title ?? tool.name)}** · ${annotationText(tool.annotations)}`, '', prose(tool.description ?? '(no description)'), '');
    const hasArguments = Object.keys(tool.inputSchema.properties ?? {}).length > 0;
    out.push('Arguments:', '', hasArguments ? schemaTable(tool.inputSchema, 'required') : 'none.', '');
    out.push('Result:', '', tool.outputSchema ? schemaTable(tool.outputSchema, 'always') : 'text only (no output schema).', '');
  }

  out.push('## Resources', '');
  if (listed.resources.length) {
    out.push(
      table(
        ['URI', 'name', 'title', 'MIME type', 'description'],
        listed.resources.map((r) => [code(r.uri), r.name, prose(r.title ?? ''), r.mimeType ?? '', prose(r.description ?? '')]),
      ),
      '',
    );
  } else out.push('None listed.', '');
  out.push('## Resource templates', '');
  if (listed.templates.length) {
    out.push(
      table(
        ['URI template', 'name', 'title', 'MIME type', 'description'],
        listed.templates.map((t) => [code(t.uriTemplate), t.name, prose(t.title ?? ''), t.mimeType ?? '', prose(t.description ?? '')]),
      ),
      '',
    );
  } else out.push('None.', '');

  out.push('## Prompts', '');
  if (listed.prompts.length === 0) out.push('None.', '');
  for (const prompt of listed.prompts) {
    out.push(`### ${prompt.name}`, '', `**${prose(prompt.title ?? prompt.name)}**`, '', prose(prompt.description ?? '(no description)'), '');
    const args = prompt.arguments ?? [];
    out.push(
      'Arguments:',
      '',
      args.length ? table(['argument', 'required', 'description'], args.map((a) => [code(a.name), a.required ? 'yes' : '', prose(a.description ?? '')])) : 'none.',
      '',
    );
  }
  return `${out.join('\n').replace(/\n{3,}/g, '\n\n').trimEnd()}\n`;
}

// ------------------------------------------------------------------ docs/CONFIGURATION.md

export interface EnvironmentVariable {
  name: string;
  readBy: string;
  description: string;
}

/**
 * Every environment variable Kiwi reads. test/reference.test.ts scans src/ for reads of process.env and fails
 * when a variable read there is missing here, or one listed here is no longer read.
 */
export const ENVIRONMENT: EnvironmentVariable[] = [
  { name: 'KIWI_DB', readBy: 'every command with `--db`', description: 'database file; `--db` wins; default `./.kiwi/kiwi.db` (relative to the working directory)' },
  {
    name: 'KIWI_TOKEN',
    readBy: '`serve --http`, `otlp`',
    description: 'bearer token every HTTP request must carry (`Authorization: Bearer …`); required when listening on anything but loopback',
  },
  { name: 'KIWI_LOG_LEVEL', readBy: 'all', description: '`debug`, `info` (default), `warn`, `error` or `silent`; for stderr (never stdout); an MCP client sets its own level with `logging/setLevel` and receives lines as notifications' },
  {
    name: 'KIWI_POLICY',
    readBy: '`serve`, `directive`',
    description: 'directive policy file, YAML or JSON (format below); `--policy` wins; without one every principal gets `read:metrics` only',
  },
  { name: 'KIWI_DIRECTIVES', readBy: '`serve`, `directive`', description: 'directives folder; `--directives` wins; default the shipped `directives/`' },
  { name: 'KIWI_SCRIPTS', readBy: '`serve`, `directive`', description: 'folder of the scripts directives may run; `--scripts` wins; default the shipped `scripts/`' },
  {
    name: 'ANTHROPIC_API_KEY',
    readBy: '`analyze_root_cause`, `explain`',
    description: 'when set, root-cause narratives may be written by the Anthropic API (model: setting `explain.llm_model`) when the MCP client offers no sampling; unset: a deterministic summary',
  },
  { name: 'ANTHROPIC_BASE_URL', readBy: '`analyze_root_cause`, `explain`', description: 'another endpoint for the Anthropic API (a proxy or a local stand-in)' },
  { name: 'USER', readBy: '`detect`, `settings`, `directive`', description: 'names the command-line principal in the audit trail and the policy: `cli:$USER`' },
  { name: 'USERNAME', readBy: '`directive`', description: 'used for `cli:…` when `USER` is not set (Windows)' },
];

/** What each permission a policy grants lets a directive step do. Typed by Permission, so a new one cannot go undescribed. */
const PERMISSION_NOTES: Record<Permission, string> = {
  'read:metrics': 'read telemetry and anomalies; the `detect`, `explain`, `forecast` and `verify` actions; read-only tool steps',
  'write:settings': '`settings.set` and `settings.revert` (destructive, undone automatically when the run fails)',
  'write:anomalies': '`anomaly.update` (destructive, undone automatically when the run fails)',
  'write:events': '`events.log`',
  'net:webhook': '`notify.webhook`, only to URLs under a prefix in `webhooks.allow`',
  'execute:script': 'script steps (destructive: they need approval)',
  'call:tool': 'tool steps that call a Kiwi tool which is not read-only',
};

/** Variables a directive's script steps see: nothing of the server's own environment is passed on. */
const SCRIPT_ENVIRONMENT: [string, string][] = [
  ['PATH', '`/usr/local/bin:/usr/bin:/bin`'],
  ['LANG', '`C.UTF-8`'],
  ['KIWI_RUN_ID', 'the run'],
  ['KIWI_DIRECTIVE', 'the directive running the step'],
  ['KIWI_ACTIONS_DIR', "`actions/` beside the database file, where scripts leave requests for the platform (not set for an in-memory store)"],
  ['(policy `scripts.env`)', 'each extra variable the policy names'],
];

function settingsSection(): string[] {
  const out = [
    '## Settings',
    '',
    'Runtime settings live in the database, so they apply to every process using it and survive restarts. ' +
      'Change them with `kiwi settings set KEY VALUE [--reason TEXT]` (VALUE is JSON, else a string), `kiwi settings reset KEY`, ' +
      'or a directive step `settings.set`; every change is validated, kept with its history and audited. `kiwi settings list` shows the current values. ' +
      'A per-component setting is one map from component to value.',
    '',
  ];
  const rows = Object.entries(SETTINGS).map(([key, setting]) => [
    code(key),
    typeText(z.toJSONSchema(setting.schema) as JsonSchema),
    code(JSON.stringify(setting.default)),
    prose(setting.description),
  ]);
  out.push(table(['key', 'type', 'default', 'description'], rows), '');
  return out;
}

function policySection(): string[] {
  const schema = z.toJSONSchema(policySchema, { io: 'input' }) as JsonSchema;
  return [
    '## Directive policy file',
    '',
    'Who may do what with directives (`run_directive`, `kiwi directive`). A YAML or JSON file named by `--policy FILE` or `KIWI_POLICY`; ' +
      'every key is optional and unknown keys are refused with `file: path: reason`. A principal is `agent:<client name>` for an MCP client ' +
      'and `cli:$USER` on the command line; a pattern is `*`, a prefix ending in `*` (`agent:*`), or an exact principal. ' +
      'Durations are milliseconds or a number with a unit (`500ms`, `30s`, `5m`, `1h`). A running Kiwi follows the file: an edit is in force ' +
      'from the next check, without a restart; a file made invalid or removed grants nothing until it is fixed.',
    '',
    schemaTable(schema, 'required'),
    '',
    'With no file, the policy is:',
    '',
    '```yaml',
    toYaml(policySchema.parse({})).trimEnd(),
    '```',
    '',
    'Permissions:',
    '',
    table(['permission', 'lets a step'], PERMISSIONS.map((p) => [code(p), PERMISSION_NOTES[p]])),
    '',
    'A script step runs with only these environment variables:',
    '',
    table(['variable', 'value'], SCRIPT_ENVIRONMENT.map(([name, value]) => [name.startsWith('(') ? name : code(name), value])),
    '',
  ];
}

export function configurationMarkdown(): string {
  const names = Object.keys(commands);
  const out: string[] = [
    '# Kiwi configuration reference',
    '',
    '<!-- Generated by `npm run reference` (src/cli/reference.ts). Do not edit: test/reference.test.ts fails when this file differs from the code. -->',
    '',
    'Everything that configures Kiwi: command-line flags (from the command table in `src/cli.ts`), environment variables, ' +
      'runtime settings (`src/settings.ts`) and the directive policy file (`src/directives/policy.ts`). A flag wins over its ' +
      'environment variable, which wins over the default. The MCP tools, resources and prompts are in [REFERENCE.md](REFERENCE.md).',
    '',
    '## Commands',
    '',
    '`kiwi --help` lists the commands, `kiwi <command> --help` shows one command\'s flags, `kiwi --version` prints the version. ' +
      'Exit codes: 0 success, 1 failure (or rejected input), 2 a usage error.',
    '',
    table(['command', 'what it does'], names.map((name) => [`[${name}](#kiwi-${name})`, prose(commands[name]!.summary)])),
    '',
  ];
  for (const name of names) {
    const command = commands[name]!;
    out.push(`### kiwi ${name}`, '', `${prose(command.summary.charAt(0).toUpperCase() + command.summary.slice(1))}.`, '', '```', command.usage, '```', '');
    out.push(table(['flag', 'meaning'], [...command.flags.map(([flag, meaning]) => [code(flag), prose(meaning)]), [code('--help'), 'this help']]), '');
  }
  out.push(
    '## Environment variables',
    '',
    table(['variable', 'read by', 'meaning'], ENVIRONMENT.map((v) => [code(v.name), v.readBy, prose(v.description)])),
    '',
    ...settingsSection(),
    ...policySection(),
  );
  return `${out.join('\n').replace(/\n{3,}/g, '\n\n').trimEnd()}\n`;
}

/** File name under docs/ → its content. */
export async function generatedReference(): Promise<Record<string, string>> {
  return { 'REFERENCE.md': await referenceMarkdown(), 'CONFIGURATION.md': configurationMarkdown() };
}

if (isEntryPoint(import.meta.url)) {
  const docs = new URL('../../../docs/', import.meta.url);
  for (const [name, content] of Object.entries(await generatedReference())) {
    writeFileSync(fileURLToPath(new URL(name, docs)), content);
    process.stdout.write(`wrote docs/${name} (${content.length.toLocaleString('en')} characters)\n`);
  }
}
