/** A number cut to `digits` significant digits: enough for any figure a reader reasons about, fewer tokens. */
export function toSignificant(value: number, digits = 6): number {
  return Number.isFinite(value) ? Number(value.toPrecision(digits)) : value;
}
