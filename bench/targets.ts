/**
 * The targets, checked: each figure is printed with "met" or "not met by X%" (how far
 * above its limit it is).
 */

/** "met" when `value` ≤ `limit` (≥ with "at least"), else "not met by 12%". */
export function verdict(value: number, limit: number, bound: "at most" | "at least" = "at most"): string {
  if (bound === "at least") return value >= limit ? "met" : `not met by ${((1 - value / limit) * 100).toFixed(0)}%`;
  return value <= limit ? "met" : `not met by ${((value / limit - 1) * 100).toFixed(0)}%`;
}

/** A table row: what, the measured figure, the target, the verdict. */
export function targetRow(what: string, value: number, limit: number, format: (n: number) => string, bound: "at most" | "at least" = "at most"): string[] {
  return [what, format(value), `${bound === "at most" ? "≤" : "≥"} ${format(limit)}`, verdict(value, limit, bound)];
}

/** "×1.23" */
export const times = (n: number): string => `×${n.toFixed(2)}`;
/** "12.3 s" */
export const seconds = (n: number): string => `${n.toFixed(1)} s`;
