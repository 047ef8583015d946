/**
 * Cell selection as in the study (the 2023 MIT 6.S898 study "Examining assumptions in scRNA-seq foundation model pre-training"; docs/assess.md): keep the cell types with at least `minCells`
 * cells and sample `perType` cells from each with a seeded generator.
 */
import { makeRng, shuffle } from "../rng.js";

/** One cell type's outcome in {@link selectCells}. */
export interface TypeCount {
  type: string;
  /** cells of this type in the data. */
  nCells: number;
  /** cells sampled (0 for dropped types). */
  nSelected: number;
}

/** Result of {@link selectCells}. */
export interface Selection {
  /** selected cell rows, grouped by kept type (types in `kept` order), ascending row within a type. */
  rows: Int32Array;
  /** label of each selected row (same order as `rows`). */
  labels: string[];
  /** kept types, sorted by name, with the offset of their block in `rows`. */
  kept: (TypeCount & { offset: number })[];
  /** dropped types (fewer than minCells cells), sorted by name. */
  dropped: TypeCount[];
}

/**
 * Keep types with ≥ `minCells` cells and sample min(`perType`, nCells) cells of each, without
 * replacement, with `makeRng(seed)` (one Fisher–Yates shuffle per type, types in name order, so the
 * sample of a type does not depend on which other types exist only through their names' order).
 * Empty/missing labels ("" ) are never kept.
 * @param labels cell-type label of every cell (length nCells).
 * @throws Error when fewer than 2 types pass the threshold (the message lists the largest types).
 */
export function selectCells(
  labels: readonly string[],
  opts: { minCells?: number; perType?: number; seed?: number | string; labelName?: string } = {},
): Selection {
  const minCells = opts.minCells ?? 500;
  const perType = opts.perType ?? minCells;
  if (!(minCells >= 1) || !(perType >= 1)) throw new Error(`--min-cells and --per-type must be ≥ 1 (got ${minCells}, ${perType})`);
  const byType = new Map<string, number[]>();
  labels.forEach((l, i) => {
    if (l === "" || l == null) return;
    let a = byType.get(l);
    if (!a) byType.set(l, (a = []));
    a.push(i);
  });
  const types = [...byType.keys()].sort();
  const keptTypes = types.filter((t) => byType.get(t)!.length >= minCells);
  if (keptTypes.length < 2) {
    const largest = types
      .map((t) => `${t} (${byType.get(t)!.length})`)
      .sort((a, b) => Number(b.match(/\((\d+)\)$/)![1]) - Number(a.match(/\((\d+)\)$/)![1]))
      .slice(0, 8);
    throw new Error(
      `only ${keptTypes.length} cell type(s) of "${opts.labelName ?? "label"}" have at least ${minCells} cells; need 2 ` +
        `(largest: ${largest.join(", ") || "none"}); lower --min-cells`,
    );
  }
  const rng = makeRng(opts.seed ?? 0);
  const rows: number[] = [];
  const outLabels: string[] = [];
  const kept: (TypeCount & { offset: number })[] = [];
  for (const t of keptTypes) {
    const cells = Int32Array.from(byType.get(t)!);
    shuffle(rng, cells);
    const take = Array.from(cells.subarray(0, Math.min(perType, cells.length))).sort((a, b) => a - b);
    kept.push({ type: t, nCells: cells.length, nSelected: take.length, offset: rows.length });
    for (const r of take) {
      rows.push(r);
      outLabels.push(t);
    }
  }
  const dropped = types.filter((t) => byType.get(t)!.length < minCells).map((t) => ({ type: t, nCells: byType.get(t)!.length, nSelected: 0 }));
  return { rows: Int32Array.from(rows), labels: outLabels, kept, dropped };
}
