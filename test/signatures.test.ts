import { describe, expect, it } from 'vitest';
import { groupSignatures, messageTemplate } from '../src/detect/signatures.js';

describe('messageTemplate', () => {
  it.each([
    ['upstream timeout after 30000 ms calling web_search (request 7f3a9c01)', 'upstream timeout after <num> ms calling web_search (request <hex>)'],
    ['upstream timeout after 1200ms calling web_search (request 0a1b2c3d4e)', 'upstream timeout after <num>ms calling web_search (request <hex>)'],
    ["TypeError: Cannot read properties of undefined (reading 'hunks') in apply_patch for PR #3954", "TypeError: Cannot read properties of undefined (reading 'hunks') in apply_patch for PR #<num>"],
    ["ENOENT: no such file or directory, open '/srv/workspaces/ws-1234/src/main.ts'", "ENOENT: no such file or directory, open '<path>'"],
    ['model call failed: 529 overloaded (request req_9f8e7d6c5b4a, attempt 2/3)', 'model call failed: <num> overloaded (request req_<id>, attempt <num>/<num>)'],
    ['connect 10.0.0.12:5432 at 2026-01-01T10:00:00Z by bob@example.com (123e4567-e89b-12d3-a456-426614174000)', 'connect <ip> at <time> by <email> (<uuid>)'],
    ['fetch failed: HTTP 503 from https://docs.example.org/p/77 ', 'fetch failed: HTTP <num> from <url>'],
  ])('masks the variable parts of %j', (message, template) => {
    expect(messageTemplate(message)).toBe(template);
  });

  it('keeps words, codes and quoted names that tell errors apart', () => {
    expect(messageTemplate('mcp-github disconnected: EPIPE')).toBe('mcp-github disconnected: EPIPE');
    expect(messageTemplate("reading 'hunks'")).not.toBe(messageTemplate("reading 'files'"));
    expect(messageTemplate('HTTP v2 endpoint')).toBe('HTTP v2 endpoint');
  });
});

describe('groupSignatures', () => {
  it('counts messages per template, most frequent first, with first and last time', () => {
    const groups = groupSignatures([
      { ts: 5, message: 'job 123 failed: upstream 503' },
      { ts: 1, message: 'job 456 failed: upstream 503' },
      { ts: 9, message: 'job 789 failed: upstream 503' },
      { ts: 3, message: 'disk full on /var/lib/data' },
    ]);
    expect(groups).toEqual([
      { template: 'job <num> failed: upstream <num>', count: 3, first_ts: 1, last_ts: 9, example: 'job 123 failed: upstream 503' },
      { template: 'disk full on <path>', count: 1, first_ts: 3, last_ts: 3, example: 'disk full on /var/lib/data' },
    ]);
  });
});
