/**
 * The server's directive policy: which principal is granted which permission, who may approve,
 * how long an undecided run waits, per-directive rate limits, the webhook allow-list and the
 * environment scripts see. Read from a YAML or JSON file (`--policy FILE`, else `KIWI_POLICY`), and
 * again whenever that file changes; without one, every principal is granted read-only (`read:metrics`) and nothing else.
 */
import { readFileSync, statSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { parseDurationText } from './duration.js';
import { durationSchema, PERMISSIONS, type Permission } from './schema.js';

const rateLimit = z.object({ runs: z.number().int().min(0).max(100_000), per: durationSchema }).strict();

export const policySchema = z
  .object({
    grants: z
      .record(z.string().min(1), z.array(z.enum(PERMISSIONS)))
      .default({ '*': ['read:metrics'] })
      .describe('principal pattern ("*", "agent:*", "cli:alice") → permissions; a principal gets the union of every pattern it matches'),
    approval: z
      .object({
        agents_may_approve: z.boolean().default(false).describe('approve: true in run_directive counts only when this is true'),
        self_approval: z.boolean().default(true).describe('may the principal who requested a run approve it (agents also need agents_may_approve)'),
        ttl: durationSchema.default('1h').describe('an undecided run expires (is denied) after this long'),
      })
      .strict()
      .default({ agents_may_approve: false, self_approval: true, ttl: '1h' }),
    rate_limits: z
      .record(z.string(), rateLimit)
      .default({ '*': { runs: 30, per: '1h' } })
      .describe('directive name (or "*") → at most `runs` executions per window'),
    webhooks: z
      .object({
        allow: z.array(z.string().url()).default([]).describe('URL prefixes notify.webhook may post to'),
        timeout: durationSchema.default('5s'),
      })
      .strict()
      .default({ allow: [], timeout: '5s' }),
    scripts: z
      .object({
        max_output_bytes: z.number().int().min(1024).max(64 * 1024 * 1024).default(1024 * 1024),
        env: z.record(z.string().regex(/^[A-Z_][A-Z0-9_]*$/), z.string()).default({}).describe('extra variables scripts see'),
      })
      .strict()
      .default({ max_output_bytes: 1024 * 1024, env: {} }),
  })
  .strict();

export type PolicyConfig = z.infer<typeof policySchema>;

export class Policy {
  #config: PolicyConfig;
  #approvalTtlMs = 0;
  #webhookTimeoutMs = 0;
  /** The policy file as last read (absent for a policy given as an object), to notice when it changes. */
  #file: { path: string; stamp: string } | null = null;

  constructor(
    config: PolicyConfig,
    readonly source: string,
  ) {
    this.#config = config;
    this.#derive();
  }

  static readOnly(): Policy {
    return new Policy(policySchema.parse({}), 'default (read-only)');
  }

  /**
   * `file`, else `KIWI_POLICY`, else the read-only default. Throws `file: reason` on a bad file.
   * A policy read from a file follows the file: an operator's edit (a grant revoked) is in force
   * from the next check on, without a restart, in every process that reads it. An edit that makes
   * the file invalid, or removes it, refuses every check until it is fixed rather than keep grants
   * the operator may have meant to take away.
   */
  static load(file: string | undefined = process.env.KIWI_POLICY || undefined): Policy {
    if (!file) return Policy.readOnly();
    const stamp = fileStamp(file);
    const policy = new Policy(readPolicyFile(file), file);
    policy.#file = { path: file, stamp };
    return policy;
  }

  get config(): PolicyConfig {
    this.#follow();
    return this.#config;
  }

  get approvalTtlMs(): number {
    this.#follow();
    return this.#approvalTtlMs;
  }

  get webhookTimeoutMs(): number {
    this.#follow();
    return this.#webhookTimeoutMs;
  }

  #derive(): void {
    this.#approvalTtlMs = parseDurationText(this.#config.approval.ttl);
    this.#webhookTimeoutMs = parseDurationText(this.#config.webhooks.timeout);
  }

  /** Re-reads the file when it changed since it was last read (a stat per check: microseconds). */
  #follow(): void {
    const file = this.#file;
    if (!file) return;
    let stamp: string;
    try {
      stamp = fileStamp(file.path);
    } catch (err) {
      throw new Error(`${file.path}: the policy file can no longer be read (${(err as Error).message}); nothing is granted until it is restored`);
    }
    if (stamp === file.stamp) return;
    let config: PolicyConfig;
    try {
      config = readPolicyFile(file.path);
    } catch (err) {
      throw new Error(`the policy file changed and is not valid: ${(err as Error).message}; nothing is granted until it is fixed`);
    }
    this.#config = config;
    this.#derive();
    file.stamp = stamp;
  }

  granted(principal: string, permission: Permission): boolean {
    for (const [pattern, permissions] of Object.entries(this.config.grants)) {
      if (matchPrincipal(pattern, principal) && permissions.includes(permission)) return true;
    }
    return false;
  }

  rateLimit(directive: string): { runs: number; perMs: number } | null {
    const limit = this.config.rate_limits[directive] ?? this.config.rate_limits['*'];
    return limit ? { runs: limit.runs, perMs: parseDurationText(limit.per) } : null;
  }

  webhookAllowed(url: URL): boolean {
    const text = url.href;
    return this.config.webhooks.allow.some((prefix) => {
      const allowed = new URL(prefix);
      return url.origin === allowed.origin && text.startsWith(allowed.href);
    });
  }
}

/** What changes when the file is rewritten or replaced: its inode, size and modification time. */
function fileStamp(file: string): string {
  const stat = statSync(file);
  return `${stat.ino}:${stat.size}:${stat.mtimeMs}`;
}

function readPolicyFile(file: string): PolicyConfig {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(file, 'utf8'), { maxAliasCount: 10, uniqueKeys: true });
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message.split('\n')[0]}`);
  }
  const parsed = policySchema.safeParse(raw ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`${file}: ${issue.path.join('.') || 'policy'}: ${issue.message}`);
  }
  return parsed.data;
}

/** `*` matches anything; `agent:*` matches any principal starting with `agent:`; otherwise exact. */
export function matchPrincipal(pattern: string, principal: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('*')) return principal.startsWith(pattern.slice(0, -1));
  return pattern === principal;
}

export function isAgent(principal: string): boolean {
  return principal.startsWith('agent:');
}
