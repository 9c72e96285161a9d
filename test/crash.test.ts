/**
 * Durability with real processes on one SQLite file: an ingest killed mid-file leaves exactly
 * its committed batches (and an intact database), a re-run completes it without duplicates, and
 * a server recording its own telemetry shares the file with an ingest that runs alongside it.
 */
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { describe, expect, it } from 'vitest';
import { DEFAULT_BATCH_SIZE } from '../src/ingest/ingest.js';
import { Store } from '../src/store/store.js';
import { killedAfterEachTest, runCli, startCli, waitForExit, startListening } from './helpers/cli.js';
import { useTempDir } from './helpers/tmp.js';

const tempDir = useTempDir('kiwi-crash-');

const children = killedAfterEachTest();

const MINUTE = 60_000;
/** Recent enough that a server's retention pass at start-up leaves every point alone. */
const BASE = Math.floor((Date.now() - 60 * MINUTE) / MINUTE) * MINUTE;
const SERIES = 4;

/**
 * Line i (0-based) is the point value i at BASE + i ms on series `c{i % 4}`: every stored point
 * says which line it came from.
 */
async function writeMetricsFile(path: string, lines: number): Promise<void> {
  const out = createWriteStream(path);
  const chunk = 10_000;
  for (let start = 0; start < lines; start += chunk) {
    let text = '';
    for (let i = start; i < Math.min(lines, start + chunk); i++) {
      text += `{"type":"metric","ts":${BASE + i},"name":"crash.test.value","component":"c${i % SERIES}","value":${i}}\n`;
    }
    if (!out.write(text)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
  }
  await new Promise<void>((resolve, reject) => {
    out.once('error', reject);
    out.end(resolve);
  });
}

/**
 * Points of the file's series committed so far, read through a read-only connection of this
 * process (WAL: it never blocks the writer).
 */
function committedPoints(db: string): number | null {
  if (!existsSync(db)) return null;
  let conn: Database.Database | undefined;
  try {
    conn = new Database(db, { readonly: true, fileMustExist: true });
    return conn
      .prepare("SELECT count(*) FROM points WHERE series_id IN (SELECT id FROM series WHERE name = 'crash.test.value')")
      .pluck()
      .get() as number;
  } catch {
    return null; // not created or not migrated yet
  } finally {
    conn?.close();
  }
}

/**
 * Whether another connection holds the database's write lock right now, i.e. a write
 * transaction is open (the store writes every batch in a BEGIN IMMEDIATE transaction).
 */
function writeTransactionOpen(db: string): boolean {
  const conn = new Database(db, { timeout: 0, fileMustExist: true });
  try {
    conn.exec('BEGIN IMMEDIATE');
    conn.exec('ROLLBACK');
    return false;
  } catch (err) {
    if ((err as { code?: string }).code === 'SQLITE_BUSY') return true;
    throw err;
  } finally {
    conn.close();
  }
}

/**
 * Polls until more than `after` points of the file are committed and the ingest is inside its
 * next write transaction, then SIGKILLs it there. Returns the points committed just before.
 */
async function killMidTransaction(child: ChildProcess, db: string, after: number, output: () => string): Promise<number> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`ingest finished before it could be killed: ${output()}`);
    if (Date.now() > deadline) throw new Error(`no kill point within 30 s: ${output()}`);
    const committed = committedPoints(db) ?? 0;
    if (committed > after && writeTransactionOpen(db)) {
      child.kill('SIGKILL');
      return committed;
    }
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

interface PointCheck {
  count: number;
  distinct: number;
  min: number | null;
  max: number | null;
  /** Points whose time, value and series do not all name the same line. */
  mismatched: number;
  series: number;
}

function checkPoints(store: Store): PointCheck {
  const row = store.db
    .prepare('SELECT count(*) AS count, count(DISTINCT value) AS distinct_values, min(value) AS min, max(value) AS max FROM points')
    .get() as { count: number; distinct_values: number; min: number | null; max: number | null };
  const mismatched = store.db
    .prepare(
      `SELECT count(*) FROM points p JOIN series s ON s.id = p.series_id
       WHERE p.ts != ? + CAST(p.value AS INTEGER) OR s.component != 'c' || (CAST(p.value AS INTEGER) % ${SERIES})
          OR s.name != 'crash.test.value'`,
    )
    .pluck()
    .get(BASE) as number;
  const series = store.db.prepare('SELECT count(*) FROM series').pluck().get() as number;
  return { count: row.count, distinct: row.distinct_values, min: row.min, max: row.max, mismatched, series };
}

describe('crash safety', () => {
  it('an ingest killed mid-file keeps every committed batch whole, and a re-run completes it exactly once', async () => {
    const dir = tempDir();
    const file = join(dir, 'metrics.jsonl');
    const db = join(dir, 'kiwi.db');
    // 30 batches: the kill waits for a condition (a batch committed, the next one's transaction
    // open), and 30 leave room for two kills on a fast machine; if the ingest ever wins the race
    // the test fails saying so, and the file needs to grow.
    const TOTAL = 30 * DEFAULT_BATCH_SIZE;
    await writeMetricsFile(file, TOTAL);

    // Two crashes: the first once a batch is committed, the second (a re-run) once it has got
    // further than the first. Each kill lands while a batch's write transaction is open.
    let stored = 0;
    for (let round = 1; round <= 2; round++) {
      const child = startCli(['ingest', file, '--db', db]);
      children.push(child);
      let output = '';
      child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
      const seen = await killMidTransaction(child, db, stored, () => output);
      expect(await waitForExit(child)).toEqual({ code: null, signal: 'SIGKILL' });
      expect(output).not.toContain('accepted');

      const store = new Store(db);
      try {
        expect(store.integrityCheck(), `round ${round}`).toBe('ok');
        const after = checkPoints(store);
        // Killed mid-file: at least what was committed, not all of it.
        expect(after.count, `round ${round}`).toBeGreaterThanOrEqual(seen);
        expect(after.count, `round ${round}`).toBeGreaterThan(stored);
        expect(after.count, `round ${round}`).toBeLessThan(TOTAL);
        // Only whole batches (the open one left no trace), and they are exactly the first lines of the file.
        expect(after.count % DEFAULT_BATCH_SIZE, `round ${round}`).toBe(0);
        expect(after, `round ${round}`).toMatchObject({ distinct: after.count, min: 0, max: after.count - 1, mismatched: 0, series: SERIES });
        stored = after.count;
      } finally {
        store.close();
      }
    }

    // The same ingest again, to completion: idempotent, every line exactly once.
    const rerun = await runCli(['ingest', file, '--db', db]);
    expect(rerun.stderr).toBe('');
    expect(rerun.code).toBe(0);
    expect(rerun.stdout).toContain(`accepted ${TOTAL}, rejected 0`);
    const complete = new Store(db);
    try {
      expect(complete.integrityCheck()).toBe('ok');
      expect(checkPoints(complete)).toEqual({ count: TOTAL, distinct: TOTAL, min: 0, max: TOTAL - 1, mismatched: 0, series: SERIES });
      expect(complete.listComponents().map((c) => c.name)).toEqual(['c0', 'c1', 'c2', 'c3']);
    } finally {
      complete.close();
    }
  });

  it('a server recording its own telemetry and an ingest write the same file at once, and both succeed', async () => {
    const dir = tempDir();
    const file = join(dir, 'metrics.jsonl');
    const db = join(dir, 'kiwi.db');
    const TOTAL = 10 * DEFAULT_BATCH_SIZE;
    await writeMetricsFile(file, TOTAL);

    // The server samples itself every 100 ms and records a span per tool call, all into `db`.
    const served = await startListening(['serve', '--http', '--port', '0', '--db', db, '--self-interval', '100ms'], { KIWI_TOKEN: '' });
    const server = served.child;
    children.push(server);
    const url = served.url;
    const client = new Client({ name: 'crash-test', version: '0.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(url)));

    let callsDuringIngest = 0;
    try {
      const ingest = startCli(['ingest', file, '--db', db]);
      children.push(ingest);
      let ingestOut = '';
      let ingestErr = '';
      ingest.stdout!.on('data', (d: Buffer) => (ingestOut += d.toString()));
      ingest.stderr!.on('data', (d: Buffer) => (ingestErr += d.toString()));
      const ingestExit = waitForExit(ingest);
      let ingestDone = false;
      void ingestExit.then(() => (ingestDone = true));

      // While the ingest runs, the server writes too: tool calls (each recorded as a span) and its own samples.
      let overlapped = false;
      const deadline = Date.now() + 45_000;
      while (!ingestDone) {
        if (Date.now() > deadline) throw new Error('ingest did not finish within 45 s');
        const before = committedPoints(db) ?? 0;
        const result = await client.callTool({
          name: 'ingest_telemetry',
          arguments: { records: [{ type: 'metric', ts: BASE + callsDuringIngest, name: 'tool.write', component: 'server-side', value: callsDuringIngest }] },
        });
        expect(result.isError, JSON.stringify(result.content)).not.toBe(true);
        callsDuringIngest++;
        const after = committedPoints(db) ?? 0;
        // A server write in flight while an ingest batch committed, or one that landed mid-file.
        if (before < after || (after > 0 && after < TOTAL)) overlapped = true;
      }
      expect(await ingestExit).toEqual({ code: 0, signal: null });
      expect(ingestErr).toBe('');
      expect(ingestOut).toContain(`accepted ${TOTAL}, rejected 0; wrote ${TOTAL} points`);
      // The server did write while the ingest's batches were landing.
      expect(overlapped).toBe(true);
      expect(callsDuringIngest).toBeGreaterThan(0);

      // The server still answers, and sees what the other process wrote.
      const listed = await client.callTool({ name: 'list_series', arguments: { name: 'crash.test.value' } });
      expect(listed.isError).not.toBe(true);
      expect(listed.structuredContent).toMatchObject({ total: SERIES });
      const written = await client.callTool({ name: 'list_series', arguments: { name: 'tool.write' } });
      expect(written.structuredContent).toMatchObject({
        total: 1,
        series: [{ component: 'server-side', last_value: callsDuringIngest - 1 }],
      });
    } finally {
      await client.close();
    }

    server.kill('SIGTERM');
    expect(await waitForExit(server)).toEqual({ code: 0, signal: null });
    expect(served.stderr()).not.toMatch(/kiwi (error|warn):/);

    const store = new Store(db);
    try {
      expect(store.integrityCheck()).toBe('ok');
      const points = store.db
        .prepare(
          `SELECT count(*) AS count, count(DISTINCT value) AS distinct_values FROM points p JOIN series s ON s.id = p.series_id
           WHERE s.name = 'crash.test.value'`,
        )
        .get() as { count: number; distinct_values: number };
      expect(points).toEqual({ count: TOTAL, distinct_values: TOTAL });
      // Every tool call of the server is there as its own span, and its samples too.
      const spans = store.listSpans({ component: 'kiwi' }, 10_000);
      expect(spans.filter((s) => s.name === 'tools/call ingest_telemetry' && s.status === 'ok')).toHaveLength(callsDuringIngest);
      expect(spans.filter((s) => s.name === 'tools/call list_series' && s.status === 'ok')).toHaveLength(2);
      expect(spans).toHaveLength(callsDuringIngest + 2);
      const rss = store.findSeries({ name: 'process.memory.usage', component: 'kiwi' }).series[0];
      expect(rss).toBeDefined();
      expect(store.readPoints(rss!.id, 0, Date.now() + MINUTE).values.length).toBeGreaterThan(1);
    } finally {
      store.close();
    }
  });
});

describe('message size over stdio', () => {
  /** Sends JSON-RPC lines to a raw `kiwi serve` and reads its answers by id. */
  function rawSession(child: ChildProcess) {
    let buffered = '';
    const answers = new Map<number, unknown>();
    child.stdout!.on('data', (d: Buffer) => {
      buffered += d.toString();
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const message = JSON.parse(buffered.slice(0, newline)) as { id?: number };
        buffered = buffered.slice(newline + 1);
        if (typeof message.id === 'number') answers.set(message.id, message);
      }
    });
    return {
      send: (message: object) => child.stdin!.write(`${JSON.stringify(message)}\n`),
      answer: async (id: number) => {
        const deadline = Date.now() + 30_000;
        while (!answers.has(id)) {
          if (Date.now() > deadline) throw new Error(`no answer to request ${id}`);
          await new Promise((r) => setTimeout(r, 20));
        }
        return answers.get(id) as { result?: { isError?: boolean; content: { text: string }[] } };
      },
    };
  }

  it('answers an ingest at its own size limit, and refuses a message past the transport limit by its id, still serving', async () => {
    const db = join(tempDir(), 'kiwi.db');
    const server = startCli(['serve', '--db', db, '--no-self-telemetry'], { KIWI_LOG_LEVEL: 'info' });
    children.push(server);
    let stderr = '';
    server.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const session = rawSession(server);
    session.send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });
    await session.answer(1);
    session.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    session.send({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'ingest_telemetry', arguments: { records: [{ type: 'metric', ts: BASE, name: 'kept', component: 'c', value: 1 }] } } });
    expect((await session.answer(2)).result?.isError).toBeFalsy();

    // The largest text the tool takes, with quotes to escape: about 15 MB on the wire, past the SDK's 10 MiB buffer.
    const text = `{"a":"${'"'.repeat(5_000_000)}"}\n`.padEnd(10 * 1024 * 1024, 'x');
    session.send({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'ingest_telemetry', arguments: { jsonl: text } } });
    expect((await session.answer(3)).result?.content[0]!.text).toMatch(/line longer than/);

    // Past the transport's limit (id last, as the SDK's client writes it): an error for that request, and on it goes.
    session.send({ method: 'tools/call', params: { name: 'ingest_telemetry', arguments: { jsonl: 'x'.repeat(70 * 1024 * 1024) } }, jsonrpc: '2.0', id: 4 });
    const refused = (await session.answer(4)) as { error?: { code: number; message: string } };
    expect(refused.error).toEqual({
      code: -32600,
      message: expect.stringMatching(/^Request too large: a message of 73,400,\d+ bytes, over this server's limit of 67,108,864 bytes; send less per call/),
    });
    expect(stderr).toMatch(/kiwi error: MCP over stdio: skipped a message of 73,400,\d+ bytes, over this server's limit/);
    session.send({ jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'list_series', arguments: {} } });
    expect((await session.answer(5)).result).toMatchObject({ structuredContent: { total: 1, series: [{ name: 'kept' }] } });
    expect(server.exitCode).toBeNull();
  });
});
