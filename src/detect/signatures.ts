/**
 * Error signatures: messages grouped into templates with their variable parts masked, so that
 * "timeout after 30000 ms calling web_search (request 7f3a9c01)" and the same line with other
 * numbers and ids count as one kind of error. Quoted words and identifiers stay: they are what
 * tells one error from another (`reading 'hunks'`).
 */

const MASKS: [RegExp, string][] = [
  [/\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/gi, '<uuid>'],
  [/\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?/g, '<time>'],
  [/\b[\w.+-]+@[\w-]+(\.[\w-]+)+\b/g, '<email>'],
  [/\bhttps?:\/\/[^\s"'<>)]+/g, '<url>'],
  [/\b\d{1,3}(\.\d{1,3}){3}(:\d+)?\b/g, '<ip>'],
  // hex ids of 6+ characters with a digit and a letter (all digits is a number; all letters, a word)
  [/\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{6,}\b/gi, '<hex>'],
  // ids glued to a prefix: req_9f8e7d6c5b4a, sess-a1b2c3d4
  [/(?<=[a-z][_-])(?=[0-9a-z]*\d)[0-9a-z]{6,}\b/gi, '<id>'],
  [/(?:^|(?<=[\s(=:'"]))(?:\/[\w.@-]+){2,}\/?/g, '<path>'],
  [/(?<![\w<])[-+]?\d+(\.\d+)?(e[-+]?\d+)?(?![\w>])/gi, '<num>'],
  [/(?<![\w<])\d+(\.\d+)?(?=[a-z]+\b)/gi, '<num>'],
];

/** The message with its variable parts masked. */
export function messageTemplate(message: string): string {
  let template = message.length > 2000 ? message.slice(0, 2000) : message;
  for (const [pattern, mask] of MASKS) template = template.replace(pattern, mask);
  return template.replace(/\s+/g, ' ').trim();
}

export interface SignatureCount {
  template: string;
  count: number;
  first_ts: number;
  last_ts: number;
  /** One real message of this kind. */
  example: string;
}

/** Groups messages by template, most frequent first. */
export function groupSignatures(messages: Iterable<{ ts: number; message: string }>): SignatureCount[] {
  const byTemplate = new Map<string, SignatureCount>();
  for (const { ts, message } of messages) {
    const template = messageTemplate(message);
    const existing = byTemplate.get(template);
    if (existing) {
      existing.count++;
      if (ts < existing.first_ts) existing.first_ts = ts;
      if (ts > existing.last_ts) existing.last_ts = ts;
    } else {
      byTemplate.set(template, { template, count: 1, first_ts: ts, last_ts: ts, example: message });
    }
  }
  return [...byTemplate.values()].sort((a, b) => b.count - a.count || a.first_ts - b.first_ts);
}
