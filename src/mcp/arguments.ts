/** Argument schemas several tool groups share. */
import { z } from 'zod';

const TIME_FORMS = 'ISO 8601, epoch seconds or milliseconds, "now", or relative like "-15m", "-2h", "-7d"';

/**
 * A point in time as the tools take it (read by parseTimeInput). Its own message when neither
 * form fits, where zod would say only "Invalid input".
 */
export const timeInput = z.union([z.string(), z.number()], { error: `expected a time: ${TIME_FORMS}` }).describe(TIME_FORMS);

/**
 * A refusal of arguments taken together (say, two sources where one is taken), where there is no
 * one argument to name as `field: reason`: like that convention, it is the caller's mistake.
 */
export class ArgumentsError extends Error {}
