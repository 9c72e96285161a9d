#!/usr/bin/env node
// Asks the platform to restart a component: writes a restart request into $KIWI_ACTIONS_DIR,
// which the platform's supervisor watches. Kiwi runs this without a shell: JSON on stdin
// ({ component, graceful, reason }), JSON on stdout.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const input = JSON.parse(readFileSync(0, 'utf8') || '{}');
const component = input.component;
if (typeof component !== 'string' || !/^[A-Za-z0-9._-]{1,100}$/.test(component)) {
  process.stderr.write(`component must be a plain name (letters, digits, . _ -), got ${JSON.stringify(component)}\n`);
  process.exit(2);
}
const dir = process.env.KIWI_ACTIONS_DIR;
if (!dir) {
  process.stderr.write('KIWI_ACTIONS_DIR is not set: nowhere to leave the restart request\n');
  process.exit(3);
}
mkdirSync(dir, { recursive: true });
const request = {
  action: 'restart',
  component,
  graceful: input.graceful !== false,
  reason: typeof input.reason === 'string' ? input.reason.slice(0, 500) : null,
  run_id: process.env.KIWI_RUN_ID ?? null,
  requested_at: new Date().toISOString(),
};
const file = join(dir, `restart-${component}.json`);
writeFileSync(file, `${JSON.stringify(request, null, 2)}\n`);
process.stdout.write(JSON.stringify({ requested: true, file, ...request }));
