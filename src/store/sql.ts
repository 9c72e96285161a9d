/** Small helpers for building SQL with parameters (used only inside src/store/). */

/** A growing list of SQL conditions and their parameters. */
export class Conditions {
  readonly parts: string[] = [];
  readonly params: (string | number)[] = [];
  add(sql: string, ...params: (string | number)[]): void {
    this.parts.push(sql);
    this.params.push(...params);
  }
  clause(): string {
    return this.parts.length ? `WHERE ${this.parts.join(' AND ')}` : '';
  }
}

export function placeholders(n: number): string {
  return Array.from({ length: n }, () => '?').join(', ');
}

export function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}
