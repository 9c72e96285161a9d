/** JSON Schemas generated from the zod schemas that are their source of truth (`npm run schemas`). */
import { z } from 'zod';
import { recordInput } from './ingest/records.js';
import { directiveJsonSchema } from './directives/schema.js';

export function telemetryRecordJsonSchema(): Record<string, unknown> {
  return {
    title: 'Kiwi telemetry record (one JSONL line)',
    ...z.toJSONSchema(recordInput, { target: 'draft-2020-12', io: 'input' }),
  };
}

/** File name under schemas/ → its content, as written by `npm run schemas`. */
export function generatedSchemas(): Record<string, string> {
  return {
    'telemetry-record.schema.json': `${JSON.stringify(telemetryRecordJsonSchema(), null, 2)}\n`,
    'directive.schema.json': `${JSON.stringify(directiveJsonSchema(), null, 2)}\n`,
  };
}
