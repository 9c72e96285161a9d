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
 * Opens (creating when needed) a Kiwi database file and brings its schema up to date.
 * WAL lets a server and a `kiwi ingest` share one file: readers never block, and a writer waits
 * up to `busyTimeoutMs` for the other to finish its transaction.
 */
export function openDatabase(path: string, busyTimeoutMs = 10_000): SqliteDatabase {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path, { timeout: busyTimeoutMs });
  try {
    db.pragma('journal_mode = WAL');
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
