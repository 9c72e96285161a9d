/**
 * Scripts a directive calls: a file inside the scripts folder (no `..`, no absolute path; symlinks
 * resolved and the real path checked again), run as a child process without a shell (an argument
 * array, `shell: false`), inputs as JSON on stdin, a JSON value on stdout, a scrubbed environment,
 * a timeout and an output cap. `.mjs`/`.js`/`.cjs` run under this Node; any other file must be
 * executable and is run directly.
 */
import { spawn } from 'node:child_process';
import { closeSync, constants, accessSync, openSync, readSync, realpathSync, statSync } from 'node:fs';
import { extname, isAbsolute, relative, resolve, sep } from 'node:path';
import { FORBIDDEN_KEYS } from './schema.js';

export class ScriptRefError extends Error {}

/** The real path of a script reference, or a ScriptRefError saying why it is refused. */
export function resolveScript(scriptsDir: string, ref: string): string {
  if (ref.includes('\0')) throw new ScriptRefError('script path contains a NUL byte');
  if (isAbsolute(ref) || /^[A-Za-z]:[\\/]/.test(ref) || ref.startsWith('\\')) {
    throw new ScriptRefError(`script "${ref}" is an absolute path; name a file inside scripts/`);
  }
  if (ref.split(/[\\/]/).some((segment) => segment === '..')) {
    throw new ScriptRefError(`script "${ref}" climbs out with ".."; name a file inside scripts/`);
  }
  let root: string;
  try {
    root = realpathSync(scriptsDir);
  } catch {
    throw new ScriptRefError(`scripts folder ${scriptsDir} does not exist`);
  }
  let real: string;
  try {
    real = realpathSync(resolve(root, ref));
  } catch {
    throw new ScriptRefError(`script "${ref}" not found in ${scriptsDir}`);
  }
  const rel = relative(root, real);
  if (rel === '' || rel.startsWith(`..${sep}`) || rel === '..' || isAbsolute(rel)) {
    throw new ScriptRefError(`script "${ref}" resolves to ${real}, outside ${root} (a symlink escape)`);
  }
  if (!statSync(real).isFile()) throw new ScriptRefError(`script "${ref}" is not a regular file`);
  if (!NODE_EXTENSIONS.has(extname(real))) {
    try {
      accessSync(real, constants.X_OK);
    } catch {
      throw new ScriptRefError(`script "${ref}" is neither a .mjs/.js/.cjs file nor executable`);
    }
    // A #! line saved with Windows line endings names "/bin/sh\r", which the system reports as
    // ENOENT for the script itself: say what is wrong instead.
    const head = readFirstLine(real);
    if (head.startsWith('#!') && head.endsWith('\r')) {
      throw new ScriptRefError(`script "${ref}" has Windows line endings (CRLF): its #! line names "${head.slice(2).trim()}\\r"; save it with LF endings`);
    }
  }
  return real;
}

const NODE_EXTENSIONS = new Set(['.mjs', '.js', '.cjs']);

export interface ScriptRun {
  path: string;
  input: unknown;
  timeoutMs: number;
  maxOutputBytes: number;
  env: Record<string, string>;
  cwd: string;
  signal: AbortSignal;
}

export interface ScriptResult {
  output: unknown;
  stderr: string;
  exitCode: number;
  durationMs: number;
}

const STDERR_KEEP = 4000;

/** Runs a resolved script. Rejects with a clear reason on a timeout, an oversized output, a non-zero exit or non-JSON output. */
export function runScript(run: ScriptRun): Promise<ScriptResult> {
  const started = performance.now();
  const [command, args] = NODE_EXTENSIONS.has(extname(run.path)) ? [process.execPath, [run.path]] : [run.path, []];
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, {
      shell: false,
      cwd: run.cwd,
      env: { PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8', ...run.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      // its own process group, so a timeout kills whatever the script started too
      detached: true,
    });
    let stdout: Buffer[] = [];
    let stdoutBytes = 0;
    let stderr = '';
    let failure: Error | null = null;
    let settled = false;

    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };
    const fail = (err: Error) => {
      if (!failure) failure = err;
      killGroup();
    };
    const timer = setTimeout(() => fail(new Error(`script timed out after ${run.timeoutMs} ms and was killed`)), run.timeoutMs);
    const onAbort = () => fail(new Error(`script stopped: ${(run.signal.reason as Error | undefined)?.message ?? 'aborted'}`));
    run.signal.addEventListener('abort', onAbort, { once: true });

    child.stdout.on('data', (chunk: Buffer) => {
      stdoutBytes += chunk.length;
      if (stdoutBytes > run.maxOutputBytes) {
        stdout = [];
        fail(new Error(`script wrote more than ${run.maxOutputBytes} bytes to stdout and was killed`));
        return;
      }
      if (!failure) stdout.push(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < STDERR_KEEP) stderr += chunk.toString('utf8').slice(0, STDERR_KEEP - stderr.length);
    });
    child.stdin.on('error', () => {
      // a script that exits without reading its stdin is not an error in itself
    });
    child.on('error', (err) => fail(new Error(`script could not start: ${err.message}`)));
    child.on('close', (code, signal) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      run.signal.removeEventListener('abort', onAbort);
      const durationMs = performance.now() - started;
      if (failure) return reject(failure);
      if (code !== 0) {
        const why = signal ? `was killed by ${signal}` : `exited with code ${code}`;
        return reject(new Error(`script ${why}${stderr ? `: ${stderr.trim().slice(0, 500)}` : ''}`));
      }
      const text = Buffer.concat(stdout).toString('utf8').trim();
      let output: unknown = null;
      if (text !== '') {
        try {
          output = JSON.parse(text);
        } catch {
          return reject(new Error(`script stdout is not JSON: ${text.slice(0, 200)}`));
        }
        const bad = forbiddenKey(output);
        if (bad) return reject(new Error(`script output has the key "${bad}", which is not allowed`));
      }
      resolvePromise({ output, stderr, exitCode: 0, durationMs });
    });
    child.stdin.end(JSON.stringify(run.input));
  });
}

/** The first key anywhere in a JSON value that reaches the object prototype, or null. */
export function forbiddenKey(value: unknown, depth = 0): string | null {
  if (depth > 64 || value === null || typeof value !== 'object') return null;
  if (Array.isArray(value)) {
    for (const v of value) {
      const bad = forbiddenKey(v, depth + 1);
      if (bad) return bad;
    }
    return null;
  }
  for (const [k, v] of Object.entries(value)) {
    if (FORBIDDEN_KEYS.has(k)) return k;
    const bad = forbiddenKey(v, depth + 1);
    if (bad) return bad;
  }
  return null;
}

/** The first line of a file (at most 256 bytes), its \r kept. */
function readFirstLine(path: string): string {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(256);
    const n = readSync(fd, buffer, 0, buffer.length, 0);
    const text = buffer.subarray(0, n).toString('latin1');
    const end = text.indexOf('\n');
    return end < 0 ? text : text.slice(0, end);
  } finally {
    closeSync(fd);
  }
}
