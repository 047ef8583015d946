/** The side-by-side table's best-value marks. */
import { describe, expect, it } from "vitest";
import { bestPerColumn, columns } from "../../src/compare/report.js";

const row = (name: string, v: Record<string, number | undefined>) => ({
  name,
  kind: "trained" as const,
  values: Object.fromEntries(Object.entries(v).map(([k, x]) => [k, x === undefined ? undefined : { mean: x }])),
});

describe("compare report: best value per column", () => {
  it("marks the highest kNN, the lowest within/between, and the batch gap closest to 0 (not the most negative)", () => {
    const cols = columns(true);
    expect(cols.map((c) => c.id)).toContain("batch_gap");
    const rows = [
      row("a", { knn: 0.5, ratio_umap: 0.9, batch_gap: -30.19 }),
      row("b", { knn: 0.7, ratio_umap: 0.3, batch_gap: 2.5 }),
      row("c", { knn: 0.6, ratio_umap: 0.8, batch_gap: 0.25 }),
      row("d", { knn: 0.1, ratio_umap: 1.2, batch_gap: undefined }), // types not apart: no ratio
    ];
    const best = bestPerColumn(rows, cols);
    expect(best.knn).toBe(1);
    expect(best.ratio_umap).toBe(1);
    expect(best.batch_gap).toBe(2);
  });
});
