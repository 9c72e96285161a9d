/**
 * Diagnostics go to stderr, never stdout: on stdio, stdout carries only the MCP protocol.
 * `KIWI_LOG_LEVEL` = debug | info | warn | error | silent (default info).
 *
 * Sinks (`addLogSink`) see every line as well, whatever `KIWI_LOG_LEVEL` says: the MCP layer uses
 * one to send lines to sessions that asked for them with `logging/setLevel`, at their own level.
 */
const LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
type Level = (typeof LEVELS)[number];
export type LogLevel = Exclude<Level, 'silent'>;
export type LogFields = Record<string, unknown>;
/** Takes a line as it is logged; must not block. What it throws is ignored. */
export type LogSink = (level: LogLevel, message: string, fields: LogFields | undefined) => void;

let warnedLevel: string | null = null;
const sinks = new Set<LogSink>();
/** True while sinks take a line: a line they log themselves goes to stderr only, never round again. */
let delivering = false;

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

function write(level: LogLevel, message: string, fields?: LogFields): void {
  if (LEVELS.indexOf(level) >= threshold()) {
    const suffix = fields && Object.keys(fields).length ? ` ${JSON.stringify(fields)}` : '';
    process.stderr.write(`${new Date().toISOString()} kiwi ${level}: ${message}${suffix}\n`);
  }
  if (sinks.size === 0 || delivering) return;
  delivering = true;
  try {
    for (const sink of sinks) {
      try {
        sink(level, message, fields);
      } catch {
        // a sink's failure is its own; the line still reached stderr and the other sinks
      }
    }
  } finally {
    delivering = false;
  }
}

/** Whether a line at `level` would go anywhere (stderr or a sink): lets a caller skip building its fields. */
function wants(level: LogLevel): boolean {
  return sinks.size > 0 || LEVELS.indexOf(level) >= threshold();
}

/** Adds a sink for every line from now on; returns the function that removes it. */
export function addLogSink(sink: LogSink): () => void {
  sinks.add(sink);
  return () => {
    sinks.delete(sink);
  };
}

export const log = {
  debug: (message: string, fields?: LogFields) => write('debug', message, fields),
  info: (message: string, fields?: LogFields) => write('info', message, fields),
  warn: (message: string, fields?: LogFields) => write('warn', message, fields),
  error: (message: string, fields?: LogFields) => write('error', message, fields),
  wants,
};
