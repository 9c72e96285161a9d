/** Argument schemas several tool groups share. */
import { z } from 'zod';
import type { ToolArgumentProblem } from '../directives/engine.js';
import { parseDuration, parseTimeInput } from '../time.js';

const TIME_FORMS = 'ISO 8601, epoch seconds or milliseconds, "now", or relative like "-15m", "-2h", "-7d"';

/**
 * A point in time as the tools take it (read by parseTimeInput). Its own message when neither
 * form fits, where zod would say only "Invalid input".
 */
export const timeInput = z.union([z.string(), z.number()], { error: `expected a time: ${TIME_FORMS}` }).describe(TIME_FORMS);

/**
 * A duration with its unit as the tools take it (`15m`, `6h`; read by parseDuration, which refuses a
 * bare number). The schema is a string: what parseDuration refuses, the handler reports, and a
 * directive's plan finds it beforehand (argumentProblems).
 */
export const durationInput = z.string();

/** The shortest and longest a duration argument may be, as durations (`1s`, `720h`): what the tool says it must be. */
export interface DurationBounds {
  min?: string;
  max?: string;
}

const boundsOf = new WeakMap<object, DurationBounds>();

/**
 * A duration argument (as durationInput) that must lie within `bounds`: the handler reads it with
 * readDuration and the same bounds, and a directive's plan finds a value out of them (argumentProblems).
 */
export function boundedDuration(bounds: DurationBounds): z.ZodString {
  const schema = z.string();
  boundsOf.set(schema.def, bounds);
  return schema;
}

/** A duration argument's milliseconds (parseDuration), refused outside `bounds`. */
export function readDuration(text: string, bounds: DurationBounds = {}): number {
  const ms = parseDuration(text);
  if (bounds.min !== undefined && ms < parseDuration(bounds.min)) throw new Error(`must be at least ${bounds.min}`);
  if (bounds.max !== undefined && ms > parseDuration(bounds.max)) throw new Error(`must be at most ${bounds.max}`);
  return ms;
}

/**
 * A refusal of arguments taken together (say, two sources where one is taken), where there is no
 * one argument to name as `field: reason`: like that convention, it is the caller's mistake.
 */
export class ArgumentsError extends Error {}

/**
 * Whether an argument's schema is `shared` (optional, with a default or described anew: those wrap
 * or clone it), or a union with it as one option (`horizon`: a duration or a number of hours).
 */
function reads(schema: z.ZodType, shared: (option: z.ZodType) => boolean): boolean {
  let inner: z.ZodType = schema;
  while (inner instanceof z.ZodOptional || inner instanceof z.ZodDefault) inner = inner.unwrap() as z.ZodType;
  return shared(inner) || (inner instanceof z.ZodUnion && inner.options.some((option) => shared(option as z.ZodType)));
}

const isTime = (schema: z.ZodType) => schema.def === timeInput.def;
const isDuration = (schema: z.ZodType) => schema.def === durationInput.def || boundsOf.has(schema.def);

/** The bounds of a duration argument made by boundedDuration; none for durationInput. */
function durationBounds(schema: z.ZodType): DurationBounds {
  let found: DurationBounds = {};
  reads(schema, (option) => {
    const bounds = boundsOf.get(option.def);
    if (bounds) found = bounds;
    return bounds !== undefined;
  });
  return found;
}

/**
 * What a tool would refuse in `args` before doing anything, found without calling it (a directive's
 * plan asks): its argument schema, each time argument read by parseTimeInput and each duration
 * (a string) by readDuration with its bounds, as the handlers read them. Each problem names its argument.
 */
export function argumentProblems(schema: z.ZodType, args: Record<string, unknown>, now = Date.now()): ToolArgumentProblem[] {
  const parsed = schema.safeParse(args);
  const problems: ToolArgumentProblem[] = parsed.success ? [] : parsed.error.issues.map((i) => ({ argument: i.path.map(String).join('.'), message: i.message }));
  const shape = schema instanceof z.ZodObject ? (schema.shape as Record<string, z.ZodType>) : {};
  for (const [name, field] of Object.entries(shape)) {
    const value = args[name];
    if ((typeof value !== 'string' && typeof value !== 'number') || problems.some((p) => p.argument === name)) continue;
    try {
      if (reads(field, isTime)) parseTimeInput(value, now);
      else if (typeof value === 'string' && reads(field, isDuration)) readDuration(value, durationBounds(field));
    } catch (err) {
      problems.push({ argument: name, message: (err as Error).message });
    }
  }
  return problems;
}
