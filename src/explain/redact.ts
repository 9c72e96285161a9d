/**
 * Secrets out: attribute values under secret-looking keys, and tokens, keys and passwords that
 * appear inside text, are replaced before evidence leaves Kiwi (to an LLM, or in an answer).
 */

export const REDACTED = '[redacted]';

/** Keys whose values are secrets: whole words of the key, or how it ends (camelCase `accessToken`). */
const SECRET_KEY_WORD =
  /(^|[^a-z0-9])(pass|password|passwd|pwd|passphrase|secret|token|apikey|api[_-]?key|access[_-]?key|private[_-]?key|credentials?|authorization|auth[_-]?token|cookie|set-cookie|session[_-]?id|client[_-]?secret|signature)([^a-z0-9]|$)/;
const SECRET_KEY_ENDING = /(token|secret|password|passwd|apikey|credentials?)$/;

const TEXT_PATTERNS: [RegExp, string][] = [
  [/\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{8,}/gi, `$1 ${REDACTED}`],
  [/\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}/g, REDACTED],
  [/\b(sk|pk|rk)-[A-Za-z0-9_-]{16,}/g, REDACTED],
  [/\bAKIA[0-9A-Z]{16}\b/g, REDACTED],
  [/\bgh[pousr]_[A-Za-z0-9]{20,}\b/g, REDACTED],
  [/\bxox[abprs]-[A-Za-z0-9-]{10,}/g, REDACTED],
  [/-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)/g, REDACTED],
  [
    /\b(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|client[_-]?secret|auth)(\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s,;&)]+)/gi,
    `$1$2${REDACTED}`,
  ],
  // credentials in a URL: scheme://user:password@host
  [/([a-z][a-z0-9+.-]*:\/\/[^/\s:@]+):[^@\s/]+@/gi, `$1:${REDACTED}@`],
];

export function isSecretKey(key: string): boolean {
  const k = key.toLowerCase();
  return SECRET_KEY_WORD.test(k) || SECRET_KEY_ENDING.test(k);
}

export function redactText(text: string): string {
  let out = text;
  for (const [pattern, replacement] of TEXT_PATTERNS) out = out.replace(pattern, replacement);
  return out;
}

/**
 * A deep copy with secrets replaced. An object that describes a change to a secret setting
 * (`{ key: "db.password", old_value, new_value }`) has the values redacted too.
 */
export function redact<T>(value: T, depth = 0): T {
  if (typeof value === 'string') return redactText(value) as T;
  if (value === null || typeof value !== 'object' || depth > 20) return value;
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1)) as T;
  const source = value as Record<string, unknown>;
  const secretSetting = typeof source.key === 'string' && isSecretKey(source.key);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(source)) {
    if (isSecretKey(k) || (secretSetting && /^(old_value|new_value|value)$/.test(k))) out[k] = REDACTED;
    else out[k] = redact(v, depth + 1);
  }
  return out as T;
}
