/**
 * Diagnostics go to stderr, never stdout: on stdio, stdout carries only the MCP protocol.
 * `KIWI_LOG_LEVEL` = debug | info | warn | error | silent (default info).
 */
const LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
type Level = (typeof LEVELS)[number];

let warnedLevel: string | null = null;

function threshold(): number {
  const wanted = (process.env.KIWI_LOG_LEVEL ?? 'info') as Level;
  const index = LEVELS.indexOf(wanted);
  if (index >= 0) return index;
  if (warnedLevel !== wanted) {
    warnedLevel = wanted;
    process.stderr.write(`${new Date().toISOString()} kiwi warn: KIWI_LOG_LEVEL=${JSON.stringify(wanted)} is not one of ${LEVELS.join(', ')}; using info\n`);
  }
  return 1;
}

function write(level: Exclude<Level, 'silent'>, message: string, fields?: Record<string, unknown>): void {
  if (LEVELS.indexOf(level) < threshold()) return;
  const suffix = fields && Object.keys(fields).length ? ` ${JSON.stringify(fields)}` : '';
  process.stderr.write(`${new Date().toISOString()} kiwi ${level}: ${message}${suffix}\n`);
}

export const log = {
  debug: (message: string, fields?: Record<string, unknown>) => write('debug', message, fields),
  info: (message: string, fields?: Record<string, unknown>) => write('info', message, fields),
  warn: (message: string, fields?: Record<string, unknown>) => write('warn', message, fields),
  error: (message: string, fields?: Record<string, unknown>) => write('error', message, fields),
};
