/**
 * The machine-readable line every bench prints beside its own table, so `npm run bench`
 * (bench/all.ts) can gather all of them into one table without parsing prose:
 *
 *   BENCH {"bench":"ingest","measure":"...","value":"...","baseline":"...","ratio":"0.51x","target":">= 0.5x","ok":true}
 */

export interface BenchResult {
  /** The bench's short name: `ingest` for `npm run bench:ingest`. */
  bench: string;
  measure: string;
  /** Kiwi's figure with its unit, as a reader should see it. */
  value: string;
  /** The baseline measured in the same run (or the published figure compared against), with its unit. */
  baseline?: string;
  /** value / baseline (or the comparison the target is stated in). */
  ratio?: string;
  target?: string;
  /** Whether the target was met; absent when the measure has no target of its own. */
  ok?: boolean;
}

export const BENCH_PREFIX = 'BENCH ';

export function reportResult(result: BenchResult): void {
  console.log(`${BENCH_PREFIX}${JSON.stringify(result)}`);
}

/** The results in one child's output; lines that are not BENCH lines are ignored. */
export function parseResults(output: string): BenchResult[] {
  const results: BenchResult[] = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith(BENCH_PREFIX)) continue;
    const parsed = JSON.parse(line.slice(BENCH_PREFIX.length)) as Partial<BenchResult>;
    if (typeof parsed.bench !== 'string' || typeof parsed.measure !== 'string' || typeof parsed.value !== 'string') {
      throw new Error(`malformed bench line (bench, measure and value are required strings): ${line}`);
    }
    results.push(parsed as BenchResult);
  }
  return results;
}
