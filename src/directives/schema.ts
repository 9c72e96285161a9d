/**
 * The directive format. This zod schema is the source of truth: the engine parses with it and
 * `schemas/directive.schema.json` (for editors) is generated from it by `npm run schemas`.
 */
import { z } from 'zod';

/** Identifiers: directive, input and step names. Letters, digits and `_`, starting with a letter. */
export const IDENTIFIER = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;

/** Keys refused anywhere in a directive or in run inputs: they reach JavaScript's object prototype. */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

export const PERMISSIONS = [
  'read:metrics',
  'write:settings',
  'write:anomalies',
  'write:events',
  'net:webhook',
  'execute:script',
  'call:tool',
] as const;
export type Permission = (typeof PERMISSIONS)[number];

export const INPUT_TYPES = ['string', 'number', 'integer', 'boolean', 'array', 'object'] as const;
export type InputType = (typeof INPUT_TYPES)[number];

const identifier = (what: string) =>
  z.string().regex(IDENTIFIER, `${what} must start with a letter and use only letters, digits and _ (at most 64)`);

/** A duration: milliseconds, or a number with a unit (`500ms`, `30s`, `5m`, `1h`). */
export const durationSchema = z
  .union([z.number().int().min(0), z.string().regex(/^\d+(?:\.\d+)?\s*(ms|s|m|h)$/, 'a duration such as 500ms, 30s, 5m or 1h')])
  .describe('milliseconds, or a number with a unit: 500ms, 30s, 5m, 1h');

const inputSpec = z
  .object({
    type: z.enum(INPUT_TYPES).describe('JSON type of the value; in expressions: string, double, int, bool, list, map'),
    description: z.string().max(2000).optional(),
    default: z.unknown().optional().describe('Used when the caller gives no value; must match type and enum'),
    enum: z.array(z.union([z.string(), z.number(), z.boolean()])).min(1).max(100).optional(),
    required: z.boolean().optional().describe('The caller must give a value (default: false unless no default)'),
    secret: z.boolean().optional().describe('Masked as *** in plans, runs, audit and logs'),
    minimum: z.number().optional(),
    maximum: z.number().optional(),
    max_length: z.number().int().min(0).optional(),
  })
  .strict();
export type InputSpec = z.infer<typeof inputSpec>;

const stepInputs = z
  .record(z.string(), z.unknown())
  .describe('Values passed to the step; strings may hold {{ expression }} templates (substituted values are data, never evaluated again)');

/** Fields every step kind shares. */
const commonStepFields = {
  name: identifier('step name').optional().describe('Later steps read this step as steps.<name>.output'),
  description: z.string().max(2000).optional(),
  if: z
    .union([z.boolean(), z.string()])
    .optional()
    .describe('Run the step only when this is true: one "{{ expression }}" yielding a boolean'),
  timeout: durationSchema.optional().describe('Per attempt; default 60s, at most 10m'),
  retries: z.number().int().min(0).max(5).optional().describe('Extra attempts after a failure (default 0)'),
  continue_on_error: z.boolean().optional().describe('A failure is recorded but the run goes on (no rollback)'),
  foreach: z
    .union([z.string(), z.array(z.unknown()).max(100)])
    .optional()
    .describe('Run the step once per element (at most 100): a list or "{{ expression }}"; item and index name the element'),
  inputs: stepInputs.optional(),
};

export interface StepDefinition {
  name?: string;
  description?: string;
  if?: boolean | string;
  timeout?: number | string;
  retries?: number;
  continue_on_error?: boolean;
  foreach?: string | unknown[];
  inputs?: Record<string, unknown>;
  action?: string;
  script?: string;
  tool?: string;
  directive?: string;
  conditional?: { if: boolean | string; then: StepDefinition[]; else?: StepDefinition[] };
}

export const STEP_KINDS = ['action', 'script', 'tool', 'directive', 'conditional'] as const;
export type StepKind = (typeof STEP_KINDS)[number];

export const stepSchema: z.ZodType<StepDefinition> = z
  .object({
    ...commonStepFields,
    action: z.string().min(1).optional().describe('A built-in action, e.g. settings.set, verify, notify.webhook'),
    script: z.string().min(1).optional().describe('A file under scripts/, run without a shell, JSON on stdin and stdout'),
    tool: z.string().min(1).optional().describe("One of Kiwi's own MCP tools"),
    directive: identifier('directive name').optional().describe('Another directive, run as part of this one'),
    get conditional() {
      return z
        .object({
          if: z.union([z.boolean(), z.string()]).describe('One "{{ expression }}" yielding a boolean'),
          then: z.array(stepSchema).min(1),
          else: z.array(stepSchema).optional(),
        })
        .strict()
        .optional();
    },
  })
  .strict()
  .superRefine((step, ctx) => {
    const kinds = STEP_KINDS.filter((k) => step[k] !== undefined);
    if (kinds.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message:
          kinds.length === 0
            ? `a step needs exactly one of ${STEP_KINDS.join(', ')}`
            : `a step has exactly one kind; this one has ${kinds.join(' and ')}`,
      });
    }
    if (step.conditional !== undefined && (step.inputs !== undefined || step.foreach !== undefined || step.retries !== undefined)) {
      ctx.addIssue({ code: 'custom', message: 'a conditional step takes no inputs, foreach or retries (put them on its inner steps)' });
    }
  })
  .meta({ id: 'DirectiveStep', description: 'One step: exactly one of action, script, tool, directive or conditional' });

export const directiveSchema = z
  .object({
    name: identifier('name'),
    version: z
      .string()
      .regex(/^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$/, 'version must be semantic, e.g. 1.0.0')
      .describe('Semantic version of this directive'),
    description: z.string().min(1).max(4000),
    inputs: z.record(identifier('input name'), inputSpec).optional(),
    permissions: z
      .array(z.enum(PERMISSIONS))
      .optional()
      .describe('Everything the steps may need; the server policy must also grant each one'),
    target: z
      .string()
      .max(500)
      .optional()
      .describe('What the run acts on, e.g. "{{ inputs.component }}": one run per directive and target at a time (default: the directive)'),
    steps: z.array(stepSchema).min(1).max(200),
    rollback: z.array(stepSchema).max(50).optional().describe('Run after a failed step, once the applied changes are undone'),
    finally: z.array(stepSchema).max(50).optional().describe('Always run at the end, success or failure'),
  })
  .strict();

export type DirectiveDefinition = z.infer<typeof directiveSchema>;

/** The JSON Schema editors use (yaml-language-server, VS Code): generated from `directiveSchema`. */
export function directiveJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(directiveSchema, { target: 'draft-2020-12', io: 'input', unrepresentable: 'any' }) as Record<string, unknown> & {
    $defs?: Record<string, Record<string, unknown>>;
  };
  // "exactly one kind" is a zod refinement; say it in JSON Schema terms too, so editors flag it
  const step = schema.$defs?.DirectiveStep;
  if (step) step.oneOf = STEP_KINDS.map((kind) => ({ required: [kind] }));
  return { $id: 'https://kiwi-mcp.dev/schemas/directive.schema.json', title: 'Kiwi directive', ...schema };
}
