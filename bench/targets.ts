/**
 * The targets, checked: each figure is printed with "met" or "not met by X%" (how far
 * above its limit it is).
 */

/** "met" when `value` ≤ `limit`, else "not met by 12%". */
export function verdict(value: number, limit: number): string {
  return value <= limit ? "met" : `not met by ${((value / limit - 1) * 100).toFixed(0)}%`;
}

/** A table row: what, the measured figure, the target, the verdict. */
export function targetRow(what: string, value: number, limit: number, format: (n: number) => string): string[] {
  return [what, format(value), `≤ ${format(limit)}`, verdict(value, limit)];
}

/** "×1.23" */
export const times = (n: number): string => `×${n.toFixed(2)}`;
/** "12.3 s" */
export const seconds = (n: number): string => `${n.toFixed(1)} s`;
