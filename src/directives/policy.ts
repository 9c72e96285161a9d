/**
 * The server's directive policy: which principal is granted which permission, who may approve,
 * how long an undecided run waits, per-directive rate limits, the webhook allow-list and the
 * environment scripts see. Read from a YAML or JSON file (`--policy FILE`, else `KIWI_POLICY`);
 * without one, every principal is granted read-only (`read:metrics`) and nothing else.
 */
import { readFileSync } from 'node:fs';
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
  readonly approvalTtlMs: number;
  readonly webhookTimeoutMs: number;

  constructor(
    readonly config: PolicyConfig,
    readonly source: string,
  ) {
    this.approvalTtlMs = parseDurationText(config.approval.ttl);
    this.webhookTimeoutMs = parseDurationText(config.webhooks.timeout);
  }

  static readOnly(): Policy {
    return new Policy(policySchema.parse({}), 'default (read-only)');
  }

  /** `file`, else `KIWI_POLICY`, else the read-only default. Throws `file: reason` on a bad file. */
  static load(file: string | undefined = process.env.KIWI_POLICY || undefined): Policy {
    if (!file) return Policy.readOnly();
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
    return new Policy(parsed.data, file);
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

/** `*` matches anything; `agent:*` matches any principal starting with `agent:`; otherwise exact. */
export function matchPrincipal(pattern: string, principal: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('*')) return principal.startsWith(pattern.slice(0, -1));
  return pattern === principal;
}

export function isAgent(principal: string): boolean {
  return principal.startsWith('agent:');
}
