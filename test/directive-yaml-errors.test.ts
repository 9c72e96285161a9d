import { afterEach, describe, expect, it, vi } from 'vitest';
import { formatDiagnostic, loadDirectiveText } from '../src/directives/load.js';

// Line numbers below refer to this text: 1 name, 4 permissions, 7 action, 8 inputs, 9 lookback.
const base = `name: adv_test
version: 1.0.0
description: test
permissions: [read:metrics]
steps:
  - name: detect
    action: detect
    inputs:
      lookback: 1h
`;

const diagnostics = (text: string) => loadDirectiveText(text, '<yaml>').errors.map(formatDiagnostic);

describe('YAML syntax errors: a plain message at the line to fix', () => {
  it('the base text is a valid directive (so each case below breaks exactly one thing)', () => {
    expect(diagnostics(base)).toEqual([]);
  });

  it('a key indented too far is reported once, at its own line, without parser jargon', () => {
    // was: <yaml>:7:13: Nested mappings are not allowed in compact mappings + Implicit keys need to be on a single line
    expect(diagnostics(base.replace('    inputs:', '     inputs:'))).toEqual([
      '<yaml>:8:6: "inputs:" is indented more than "action:" on line 7, so it reads as part of that value; indent both the same',
    ]);
    expect(diagnostics('steps:\n  - name: x\n       action: y\n')).toEqual([
      '<yaml>:3:8: "action:" is indented more than "name:" on line 2, so it reads as part of that value; indent both the same',
    ]);
  });

  it('an unclosed quote is reported where it was opened', () => {
    // was: <yaml>:10:1: Missing closing "quote
    expect(diagnostics(base.replace('lookback: 1h', 'lookback: "1h'))).toEqual(['<yaml>:9:17: this " is never closed (no matching ")']);
    expect(diagnostics(base.replace('lookback: 1h', "lookback: '1h"))).toEqual(["<yaml>:9:17: this ' is never closed (no matching ')"]);
    // An unclosed quote the parser stops at the end of its line, and one that looks closed but is escaped.
    expect(diagnostics('a: "abc\nb: 1\nc: "d"\n')).toEqual(['<yaml>:1:4: this " is never closed (no matching ")']);
    expect(diagnostics("a: 'it''s'\nb: 'x''\n")).toEqual(["<yaml>:2:4: this ' is never closed (no matching ')"]);
  });

  it('an unclosed [ or { is reported where it was opened, not at the end of input', () => {
    // was: <yaml>:5:1: Flow sequence in block collection must be sufficiently indented and end with a ]
    expect(diagnostics(base.replace('[read:metrics]', '[read:metrics'))).toEqual([
      '<yaml>:4:14: this [ is never closed (no matching ]; a ] on a later line must be indented more than this line)',
    ]);
    expect(diagnostics(base.replace('    inputs:\n      lookback: 1h', '    inputs: {lookback: 1h'))).toEqual([
      '<yaml>:8:13: this { is never closed (no matching }; a } on a later line must be indented more than this line)',
    ]);
    // The follow-on "Block collections are not allowed within flow collections" inside it is dropped.
    expect(diagnostics('name: a\nsteps: [\n  - x\n')).toEqual([
      '<yaml>:2:8: this [ is never closed (no matching ]; a ] on a later line must be indented more than this line)',
    ]);
  });

  it('a second document is one plain message naming the line that starts it', () => {
    // was: <yaml>:10:1: Source contains multiple documents; please use YAML.parseAllDocuments()
    expect(diagnostics(`${base}---\n${base}`)).toEqual(['<yaml>:10:1: a directive file holds one YAML document; line 10 starts another (---)']);
    // A leading --- is fine; only the second document is an error.
    expect(diagnostics(`---\n${base}`)).toEqual([]);
  });

  it('5,000-deep nesting is one message naming the limit, at the first level past it', () => {
    // was: 35 copies of <yaml>:3:8xx: Maximum call stack size exceeded
    const deep = `name: x\nsteps:\n  - ${'['.repeat(5000)}${']'.repeat(5000)}\n`;
    expect(diagnostics(deep)).toEqual(['<yaml>:3:36: nesting deeper than 32 levels']);
    // Unclosed as well: one message, not one per unclosed bracket.
    expect(diagnostics(`name: x\nsteps:\n  - ${'['.repeat(50_000)}\n`)).toEqual(['<yaml>:3:36: nesting deeper than 32 levels']);
  });

  it('other common mistakes get plain messages', () => {
    expect(diagnostics(base.replace('    action: detect', '\taction: detect'))).toEqual(['<yaml>:7:1: a tab is used for indentation; YAML indents with spaces only']);
    expect(diagnostics(base.replace('description: test', 'description: a: b'))).toEqual(['<yaml>:3:14: this value contains ": "; put the value in quotes']);
    expect(diagnostics(base.replace('version: 1.0.0', 'version: 1.0.0\nversion: 2.0.0'))).toEqual(['<yaml>:3:1: key "version" appears twice in the same mapping']);
    expect(diagnostics('name: a\nfoo\nb: 1\n')).toEqual(['<yaml>:2:1: expected "key: value" but this line has no ":" after the key']);
  });
});

describe('a parser that throws', () => {
  afterEach(() => {
    vi.doUnmock('yaml');
    vi.resetModules();
  });

  it('still yields one diagnostic instead of throwing', async () => {
    vi.resetModules();
    vi.doMock('yaml', async (importOriginal) => ({
      ...(await importOriginal<typeof import('yaml')>()),
      parseDocument: () => {
        throw new RangeError('Maximum call stack size exceeded');
      },
    }));
    const load = await import('../src/directives/load.js');
    expect(load.loadDirectiveText(base, 'x.yaml').errors.map(load.formatDiagnostic)).toEqual([
      'x.yaml:1:1: nesting deeper than 32 levels (the YAML parser ran out of stack)',
    ]);
  });
});
