import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { MIGRATIONS } from './migrations.js';

export type SqliteDatabase = Database.Database;

export const DEFAULT_DB_PATH = './.kiwi/kiwi.db';

/** `--db` wins, then `KIWI_DB`, then `./.kiwi/kiwi.db`. */
export function resolveDbPath(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  return resolve(flag ?? env.KIWI_DB ?? DEFAULT_DB_PATH);
}

/**
 * The write-ahead log is cut back to this size whenever a checkpoint empties it: without a limit
 * SQLite reuses the file from its start and never shrinks it, so one large transaction (a big
 * ingest batch, a prune) would leave a -wal that large for as long as a server keeps the store open.
 */
export const WAL_SIZE_LIMIT_BYTES = 32 * 1024 * 1024;

/**
 * Opens (creating when needed) a Kiwi database file and brings its schema up to date.
 * WAL lets a server and a `kiwi ingest` share one file: readers never block, and a writer waits
 * up to `busyTimeoutMs` for the other to finish its transaction.
 */
export function openDatabase(path: string, busyTimeoutMs = 10_000): SqliteDatabase {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path, { timeout: busyTimeoutMs });
  try {
    // A new file keeps the page links that let pruning hand freed pages back to the filesystem
    // (`Store.reclaimFreePages`). It must be set before the first page is written, and switching
    // to WAL writes it; on an existing file the mode is left as it is (only VACUUM changes it).
    if (db.pragma('page_count', { simple: true }) === 0) db.pragma('auto_vacuum = INCREMENTAL');
    db.pragma('journal_mode = WAL');
    db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
    // NORMAL in WAL mode survives a process crash; only an OS crash can lose the last commits.
    db.pragma('synchronous = NORMAL');
    db.pragma('temp_store = MEMORY');
    // 64 MiB of page cache (the default is 2 MiB): batched inserts across many series touch many pages.
    db.pragma('cache_size = -65536');
    migrate(db);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

export function schemaVersion(db: SqliteDatabase): number {
  return db.pragma('user_version', { simple: true }) as number;
}

function migrate(db: SqliteDatabase): void {
  if (schemaVersion(db) === MIGRATIONS.length) return;
  // IMMEDIATE takes the write lock first, so two processes opening a new file migrate it once.
  db.transaction(() => {
    const current = schemaVersion(db);
    if (current > MIGRATIONS.length) {
      throw new Error(
        `database schema version ${current} is newer than this Kiwi understands (${MIGRATIONS.length}); upgrade Kiwi`,
      );
    }
    for (let version = current; version < MIGRATIONS.length; version++) {
      db.exec(MIGRATIONS[version]!);
    }
    db.pragma(`user_version = ${MIGRATIONS.length}`);
  }).immediate();
}
