#!/usr/bin/env node
// Asks the platform to give a component more room before it fails: writes a scale request
// ({ component, memory_limit_bytes, replicas }) into $KIWI_ACTIONS_DIR. JSON on stdin and stdout.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const input = JSON.parse(readFileSync(0, 'utf8') || '{}');
const { component } = input;
if (typeof component !== 'string' || !/^[A-Za-z0-9._-]{1,100}$/.test(component)) {
  process.stderr.write(`component must be a plain name (letters, digits, . _ -), got ${JSON.stringify(component)}\n`);
  process.exit(2);
}
const positive = (v) => (Number.isFinite(v) && v > 0 ? v : null);
const memory = positive(input.memory_limit_bytes);
const replicas = Number.isInteger(input.replicas) && input.replicas > 0 && input.replicas <= 100 ? input.replicas : null;
if (memory === null && replicas === null) {
  process.stderr.write('give memory_limit_bytes (> 0) or replicas (1-100)\n');
  process.exit(2);
}
const dir = process.env.KIWI_ACTIONS_DIR;
if (!dir) {
  process.stderr.write('KIWI_ACTIONS_DIR is not set: nowhere to leave the scale request\n');
  process.exit(3);
}
mkdirSync(dir, { recursive: true });
const request = {
  action: 'scale',
  component,
  memory_limit_bytes: memory,
  replicas,
  reason: typeof input.reason === 'string' ? input.reason.slice(0, 500) : null,
  run_id: process.env.KIWI_RUN_ID ?? null,
  requested_at: new Date().toISOString(),
};
const file = join(dir, `scale-${component}.json`);
writeFileSync(file, `${JSON.stringify(request, null, 2)}\n`);
process.stdout.write(JSON.stringify({ requested: true, file, ...request }));
