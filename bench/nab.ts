/**
 * NAB quality bench: runs `kiwi detect --csv` (the univariate detector, its one default
 * configuration) over the dev part of the Numenta Anomaly Benchmark, and scores the results with
 * the benchmark's own scorer twice: the NAB protocol (threshold optimised over the whole set)
 * and as shipped (Kiwi's own 0/1 decisions, scored at 0.5).
 *
 * Usage: npx tsx bench/nab.ts [--nab DIR] [--out DIR] [--python PATH]
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_DETECTOR_CONFIG } from "../src/detect/univariate.js";
import { reportResult } from "./result.js";

/** The folder holding package.json, found upwards from this file (works from bench/ and dist/bench/). */
function findProjectRoot(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "package.json"))) return dir;
    if (dirname(dir) === dir) return resolve(start, "..");
  }
}

const projectRoot = findProjectRoot(dirname(fileURLToPath(import.meta.url)));

function option(name: string, fallback: string): string {
  const at = process.argv.indexOf(name);
  const value = at >= 0 ? process.argv[at + 1] : undefined;
  return value ?? fallback;
}

const nabRoot = resolve(projectRoot, option("--nab", "../shared/bench/nab"));
const outRoot = resolve(projectRoot, option("--out", "bench/out/nab"));
const python = option("--python", "/usr/bin/python3");
const dataRoot = join(nabRoot, "data");
const labelsPath = join(nabRoot, "labels", "windows.json");
const scoresDir = join(outRoot, "scores");
const decisionsDir = join(outRoot, "decisions");

function listCsvFiles(root: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(root)) {
    const path = join(root, entry);
    if (statSync(path).isDirectory()) found.push(...listCsvFiles(path));
    else if (entry.endsWith(".csv")) found.push(path);
  }
  return found.sort();
}

const cli = join(projectRoot, "dist", "src", "cli.js");
/** The published NAB standard-profile score of Numenta HTM, the figure the README compares against. */
const NUMENTA_HTM_STANDARD = 67.2;

/**
 * Scores every file with `kiwi detect --csv` exactly as a user runs it (the built CLI, one
 * process per file), then derives the as-shipped file: Kiwi's own 0/1 decision as the score.
 */
function runDetector(): { rows: number; seconds: number } {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build (npm run bench:nab does)`);
  let rows = 0;
  let seconds = 0;
  for (const path of listCsvFiles(dataRoot)) {
    const relativePath = relative(dataRoot, path);
    const scored = join(scoresDir, relativePath);
    mkdirSync(dirname(scored), { recursive: true });
    const output = execFileSync(process.execPath, [cli, "detect", "--csv", path, "--out", scored], { encoding: "utf8" });
    const match = /: (\d+) rows scored, \d+ anomalies, 0 rejected \(([\d,]+) rows\/s\)/.exec(output);
    if (!match) throw new Error(`unexpected output from kiwi detect --csv ${path}: ${output}`);
    const n = Number(match[1]);
    rows += n;
    seconds += n / Number(match[2]!.replace(/,/g, ""));
    const [header, ...lines] = readFileSync(scored, "utf8").trimEnd().split("\n");
    const decisions = lines.map((line) => {
      const cells = line.split(",");
      const decision = cells[3];
      return `${cells[0]},${cells[1]},${decision},${decision}`;
    });
    const target = join(decisionsDir, relativePath);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, `${[header, ...decisions].join("\n")}\n`);
  }
  return { rows, seconds };
}

interface ProfileResult {
  score: number;
  threshold: number;
  windowsDetected: number;
  windows: number;
  falsePositiveRows: number;
}

function score(resultsDir: string, extraArgs: string[], jsonPath: string): Map<string, ProfileResult> {
  const output = execFileSync(python, [join(nabRoot, "score.py"), dataRoot, labelsPath, resultsDir, "--json", jsonPath, ...extraArgs], {
    encoding: "utf8",
  });
  process.stdout.write(output.split("\n").map((line) => (line ? `    ${line}` : line)).join("\n"));
  const parsed = JSON.parse(readFileSync(jsonPath, "utf8")) as {
    windows: number;
    profiles: Record<string, { score: number; threshold: number; windows_detected: number; fp_rows: number }>;
  };
  const results = new Map<string, ProfileResult>();
  for (const [profile, result] of Object.entries(parsed.profiles)) {
    results.set(profile, {
      score: result.score,
      threshold: result.threshold,
      windowsDetected: result.windows_detected,
      windows: parsed.windows,
      falsePositiveRows: result.fp_rows,
    });
  }
  return results;
}

function main(): void {
  console.log(`NAB dev set: ${nabRoot}`);
  console.log(`detector configuration: ${JSON.stringify(DEFAULT_DETECTOR_CONFIG)}`);
  const { rows, seconds } = runDetector();
  const rowsPerSecond = Math.round(rows / seconds);
  console.log(`scored ${rows} rows in ${seconds.toFixed(2)} s (${rowsPerSecond} rows/s); results under ${outRoot}`);
  console.log("\nscore.py, NAB protocol (threshold optimised over the set):");
  const protocol = score(scoresDir, [], join(outRoot, "protocol.json"));
  console.log("\nscore.py, as shipped (Kiwi's own decisions at threshold 0.5):");
  const shipped = score(decisionsDir, ["--threshold", "0.5"], join(outRoot, "as-shipped.json"));

  const rowsOut: string[] = [];
  rowsOut.push("| profile | NAB protocol | as shipped (threshold 0.5) |");
  rowsOut.push("| --- | --- | --- |");
  for (const [profile, result] of protocol) {
    const fixed = shipped.get(profile);
    const describe = (r: ProfileResult | undefined): string =>
      r ? `${r.score.toFixed(2)} (${r.windowsDetected}/${r.windows} windows, ${r.falsePositiveRows} FP rows)` : "n/a";
    rowsOut.push(`| ${profile} | ${describe(result)} thr ${result.threshold.toFixed(3)} | ${describe(fixed)} |`);
  }
  console.log(`\n${rowsOut.join("\n")}`);
  console.log(`\nthroughput: ${rowsPerSecond} rows/s (${rows} rows through kiwi detect --csv, read, scored and written; process start-up excluded)`);
  const standard = protocol.get("standard");
  const standardShipped = shipped.get("standard");
  if (standard) {
    reportResult({
      bench: "nab",
      measure: "NAB score, standard profile, NAB protocol",
      value: standard.score.toFixed(1),
      baseline: `${NUMENTA_HTM_STANDARD} (Numenta HTM, published)`,
      ratio: `${(standard.score / NUMENTA_HTM_STANDARD).toFixed(2)}x`,
      target: ">= 70",
      ok: standard.score >= 70,
    });
  }
  if (standardShipped) {
    reportResult({
      bench: "nab",
      measure: "NAB score, standard profile, as shipped (threshold 0.5)",
      value: standardShipped.score.toFixed(1),
      baseline: `${NUMENTA_HTM_STANDARD} (Numenta HTM, published)`,
      ratio: `${(standardShipped.score / NUMENTA_HTM_STANDARD).toFixed(2)}x`,
      target: ">= 60",
      ok: standardShipped.score >= 60,
    });
  }
}

main();
