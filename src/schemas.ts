/** JSON Schemas generated from the zod schemas that are their source of truth (`npm run schemas`). */
import { z } from 'zod';
import { recordInput } from './ingest/records.js';

export function telemetryRecordJsonSchema(): Record<string, unknown> {
  return {
    title: 'Kiwi telemetry record (one JSONL line)',
    ...z.toJSONSchema(recordInput, { target: 'draft-2020-12', io: 'input' }),
  };
}

/** File name under schemas/ → its content, as written by `npm run schemas`. */
export function generatedSchemas(): Record<string, string> {
  return { 'telemetry-record.schema.json': `${JSON.stringify(telemetryRecordJsonSchema(), null, 2)}\n` };
}
