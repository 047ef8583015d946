/**
 * The one check that a block of numbers is finite, used wherever numbers enter or leave cellfm
 * (checkpoint weights and optimizer moments when read, embeddings before they are written or
 * scored): a NaN or ±Inf is an error naming where it is, never a silent result.
 */

/** Index of the first NaN/±Inf in `x`, or −1 when every value is finite. */
export function firstNonFinite(x: ArrayLike<number>): number {
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    // v - v is NaN exactly for NaN and ±Inf, and cheaper than Number.isFinite in a hot loop
    if (v - v !== 0) return i;
  }
  return -1;
}

/**
 * Throw when `x` holds a NaN or ±Inf.
 * @param what names the values in the message, e.g. `"run/final/model.safetensors: tensor bert.pooler.dense.weight"`
 * @param hint what the user can do, appended to the message
 * @throws Error `"<what>: <count> non-finite values (first: NaN at index i) ..."`
 */
export function assertFinite(x: ArrayLike<number>, what: string, hint = ""): void {
  const i = firstNonFinite(x);
  if (i < 0) return;
  let n = 0;
  for (let j = i; j < x.length; j++) if (x[j] - x[j] !== 0) n++;
  throw new Error(`${what}: ${n} non-finite value${n === 1 ? "" : "s"} of ${x.length} (first: ${x[i]} at index ${i})${hint ? "; " + hint : ""}`);
}
