/** `npm run schemas`: writes schemas/*.json from their zod sources. */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { generatedSchemas } from '../schemas.js';

const dir = new URL('../../../schemas/', import.meta.url);
for (const [name, content] of Object.entries(generatedSchemas())) {
  writeFileSync(fileURLToPath(new URL(name, dir)), content);
  process.stdout.write(`wrote schemas/${name}\n`);
}
