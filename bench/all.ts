/**
 * `npm run bench`: every `bench:*` script of package.json, one after another (they measure
 * speed, so never two at once), each as its own child process from the build made once up front.
 * Each bench prints its own tables (kept in bench/out/<name>.log) and one `BENCH {...}` line per
 * figure (bench/result.ts); this gathers those lines into one table on stdout. Progress goes to
 * stderr.
 *
 * `npm run bench -- mcp ingest` runs only the named benches. The exit code is 1 when a bench
 * failed to run or printed no results; a missed target is a result, shown in the table.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseResults, type BenchResult } from './result.js';

function findProjectRoot(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'bench'))) return dir;
    if (dirname(dir) === dir) return resolve(start, '..');
  }
}

const root = findProjectRoot(dirname(fileURLToPath(import.meta.url)));
const logDir = join(root, 'bench', 'out');

interface Bench {
  name: string;
  /** The compiled script, relative to the project root, as the npm script runs it. */
  script: string;
}

/** `bench:x` scripts of the form `npm run build && node dist/bench/x.js`, in package.json order. */
function benchesFromPackage(): Bench[] {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const benches: Bench[] = [];
  for (const [key, command] of Object.entries(pkg.scripts)) {
    const name = /^bench:(.+)$/.exec(key)?.[1];
    if (!name) continue;
    const script = /(?:^|&&)\s*node\s+(dist\/bench\/[\w.-]+\.js)\s*$/.exec(command)?.[1];
    if (!script) throw new Error(`package.json scripts.${key}: expected "npm run build && node dist/bench/<name>.js", got "${command}"`);
    benches.push({ name, script });
  }
  return benches;
}

interface Outcome {
  bench: Bench;
  seconds: number;
  results: BenchResult[];
  failure?: string;
}

function run(bench: Bench): Promise<Outcome> {
  const started = performance.now();
  const log = createWriteStream(join(logDir, `${bench.name}.log`));
  let stdout = '';
  let stderrTail = '';
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, [join(root, bench.script)], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      log.write(d);
    });
    child.stderr.on('data', (d: Buffer) => {
      stderrTail = (stderrTail + d.toString()).slice(-2000);
      log.write(d);
    });
    const finish = (failure?: string) => {
      log.end();
      const seconds = (performance.now() - started) / 1000;
      let results: BenchResult[] = [];
      try {
        results = parseResults(stdout);
      } catch (err) {
        failure ??= (err as Error).message;
      }
      if (!failure && results.length === 0) failure = 'printed no BENCH result lines';
      resolvePromise({ bench, seconds, results, ...(failure ? { failure } : {}) });
    };
    child.on('error', (err) => finish(`could not start: ${err.message}`));
    child.on('close', (code, signal) => {
      if (code === 0) return finish();
      const lastLine = stderrTail.trim().split('\n').filter(Boolean).slice(-1)[0] ?? '';
      finish(`exit ${code ?? signal}${lastLine ? `: ${lastLine}` : ''}`);
    });
  });
}

/** Table cells may not hold a pipe or a line break. */
function cell(text: string | undefined): string {
  return (text ?? '').replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');
}

async function main(): Promise<void> {
  const all = benchesFromPackage();
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((w) => !all.some((b) => b.name === w));
  if (unknown.length) throw new Error(`unknown bench ${unknown.join(', ')}; known: ${all.map((b) => b.name).join(', ')}`);
  const benches = wanted.length ? all.filter((b) => wanted.includes(b.name)) : all;
  const missing = benches.filter((b) => !existsSync(join(root, b.script)));
  if (missing.length) throw new Error(`${missing.map((b) => b.script).join(', ')} missing: run npm run build (npm run bench does)`);
  mkdirSync(logDir, { recursive: true });

  const outcomes: Outcome[] = [];
  for (const bench of benches) {
    process.stderr.write(`bench:${bench.name} (load ${loadavg()[0]!.toFixed(1)}) ... `);
    const outcome = await run(bench);
    outcomes.push(outcome);
    process.stderr.write(
      `${outcome.seconds.toFixed(0)} s, ${outcome.results.length} results${outcome.failure ? `, FAILED (${outcome.failure})` : ''}` +
        ` (output in bench/out/${bench.name}.log)\n`,
    );
  }

  console.log('| bench | measure | value | baseline | ratio | target | verdict |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const { bench, results, failure } of outcomes) {
    for (const r of results) {
      const verdict = r.ok === undefined ? '' : r.ok ? 'ok' : 'MISSED';
      console.log(`| ${cell(r.bench)} | ${cell(r.measure)} | ${cell(r.value)} | ${cell(r.baseline)} | ${cell(r.ratio)} | ${cell(r.target)} | ${verdict} |`);
    }
    if (failure) console.log(`| ${cell(bench.name)} | (did not finish) | | | | | FAILED: ${cell(failure)} |`);
  }
  const seconds = outcomes.reduce((sum, o) => sum + o.seconds, 0);
  const met = outcomes.flatMap((o) => o.results).filter((r) => r.ok === true).length;
  const missed = outcomes.flatMap((o) => o.results).filter((r) => r.ok === false).length;
  const failed = outcomes.filter((o) => o.failure).length;
  console.log(`\n${outcomes.length} benches in ${(seconds / 60).toFixed(1)} min: ${met} targets met, ${missed} missed${failed ? `, ${failed} benches failed` : ''}`);
  if (failed) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
