/**
 * Retries `attempt` until `done` holds for its result, or `timeoutMs` passes; returns the last
 * result either way, so the caller's assertion reports what was actually seen.
 */
export async function pollUntil<T>(
  attempt: () => T | Promise<T>,
  done: (value: T) => boolean,
  { timeoutMs = 5_000, intervalMs = 25 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await attempt();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
