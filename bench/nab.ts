/**
 * NAB quality bench: runs the univariate detector over the dev part of the Numenta Anomaly
 * Benchmark with its one default configuration, writes NAB results files, and scores them with
 * the benchmark's own scorer twice: the NAB protocol (threshold optimised over the whole set)
 * and as shipped (Kiwi's own 0/1 decisions, scored at 0.5).
 *
 * Usage: npx tsx bench/nab.ts [--nab DIR] [--out DIR] [--python PATH]
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_DETECTOR_CONFIG, UnivariateDetector } from "../src/detect/univariate.js";

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

/** NAB timestamps are wall-clock "YYYY-MM-DD HH:MM:SS"; read them as UTC. */
function parseTimestamp(text: string): number {
  return Date.parse(`${text.trim().replace(" ", "T")}Z`);
}

function listCsvFiles(root: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(root)) {
    const path = join(root, entry);
    if (statSync(path).isDirectory()) found.push(...listCsvFiles(path));
    else if (entry.endsWith(".csv")) found.push(path);
  }
  return found.sort();
}

interface SeriesFile {
  relativePath: string;
  timestamps: string[];
  values: number[];
}

function readSeries(path: string): SeriesFile {
  const lines = readFileSync(path, "utf8").split(/\r?\n/);
  const header = (lines[0] ?? "").split(",");
  const timestampColumn = header.indexOf("timestamp");
  const valueColumn = header.indexOf("value");
  if (timestampColumn < 0 || valueColumn < 0) throw new Error(`${path}: expected columns timestamp,value`);
  const timestamps: string[] = [];
  const values: number[] = [];
  for (const line of lines.slice(1)) {
    if (line.trim() === "") continue;
    const cells = line.split(",");
    timestamps.push(cells[timestampColumn] ?? "");
    values.push(Number(cells[valueColumn]));
  }
  return { relativePath: relative(dataRoot, path), timestamps, values };
}

function runDetector(): { rows: number; seconds: number } {
  const files = listCsvFiles(dataRoot).map(readSeries);
  let rows = 0;
  let seconds = 0;
  for (const file of files) {
    const n = file.values.length;
    const scores = new Float64Array(n);
    const decisions = new Uint8Array(n);
    const timestamps = file.timestamps.map(parseTimestamp);
    const started = performance.now();
    const detector = new UnivariateDetector(DEFAULT_DETECTOR_CONFIG);
    for (let i = 0; i < n; i++) {
      const verdict = detector.update(timestamps[i] as number, file.values[i] as number);
      scores[i] = verdict.score;
      decisions[i] = verdict.anomaly;
    }
    seconds += (performance.now() - started) / 1000;
    rows += n;
    const scoreLines = ["timestamp,value,anomaly_score,anomaly"];
    const decisionLines = ["timestamp,value,anomaly_score,anomaly"];
    for (let i = 0; i < n; i++) {
      const prefix = `${file.timestamps[i]},${file.values[i]}`;
      scoreLines.push(`${prefix},${(scores[i] as number).toFixed(6)},${decisions[i]}`);
      decisionLines.push(`${prefix},${decisions[i]},${decisions[i]}`);
    }
    for (const [dir, lines] of [[scoresDir, scoreLines], [decisionsDir, decisionLines]] as const) {
      const target = join(dir, file.relativePath);
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, `${lines.join("\n")}\n`);
    }
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
  console.log(`\nthroughput: ${rowsPerSecond} rows/s (${rows} rows, detector only, one core)`);
}

main();
