import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { generatedSchemas } from '../src/schemas.js';

describe('schemas/', () => {
  it('holds exactly what the zod sources generate (run `npm run schemas` after changing them)', () => {
    for (const [name, content] of Object.entries(generatedSchemas())) {
      expect(readFileSync(new URL(`../schemas/${name}`, import.meta.url), 'utf8'), name).toBe(content);
    }
  });

  it('describes the three record types for editors', () => {
    const schema = JSON.parse(generatedSchemas()['telemetry-record.schema.json']!) as { oneOf: { properties: { type: { const: string } }; required: string[] }[] };
    expect(schema.oneOf.map((s) => s.properties.type.const)).toEqual(['metric', 'event', 'span']);
    expect(schema.oneOf[0]!.required).toEqual(expect.arrayContaining(['type', 'ts', 'name', 'value', 'component']));
  });
});
