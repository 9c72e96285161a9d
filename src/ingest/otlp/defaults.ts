/** OTLP receiver defaults, in a module of their own so the command line can show them without loading the receiver. */
export const DEFAULT_OTLP_PORT = 4318;
export const DEFAULT_OTLP_MAX_BODY = 16 * 1024 * 1024;
