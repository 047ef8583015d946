import { describe, expect, it } from "vitest";
import * as path from "node:path";
import { openCounts } from "../../src/data/open.js";
import { readTokenizedDataset } from "../../src/data/tokenized.js";
import { tokenizeCounts, type TokenizedCell } from "../../src/tokenize/geneformer.js";
import { tokenizeToDataset } from "../../src/tokenize/run.js";
import { tmpDir } from "../data/helpers.js";

const byId = (cells: TokenizedCell[]) => new Map(cells.map((c) => [c.cellId, c]));
const sorted = (a: ArrayLike<number>) => Array.from(a).sort((x, y) => x - y);

describe("tokenize --top-genes (binned / counts keep the genes a rank model reads)", () => {
  it("each cell keeps exactly the genes of its first K rank-value tokens, in ascending token id, with its own counts and whole-cell bins", async () => {
    const K = 64;
    const src = await openCounts("data/tiny.h5ad");
    const rank = tokenizeCounts(src, { modelVersion: "V1" });
    const counts = tokenizeCounts(src, { modelVersion: "V1", encoding: "counts" });
    const top = tokenizeCounts(src, { modelVersion: "V1", encoding: "counts", topGenes: K });
    const binned = tokenizeCounts(src, { modelVersion: "V1", encoding: "binned", seed: 2 });
    const binnedTop = tokenizeCounts(src, { modelVersion: "V1", encoding: "binned", seed: 2, topGenes: K });
    src.close();
    const all = byId(counts.cells), bAll = byId(binned.cells), bTop = byId(binnedTop.cells);
    expect(top.cells.map((c) => c.cellId)).toEqual(rank.cells.map((c) => c.cellId));
    let cut = 0;
    for (const [i, r] of rank.cells.entries()) {
      const t = top.cells[i];
      // V1 rank tokens are the genes in rank-value order: the first K are the ones kept
      expect(Array.from(t.inputIds)).toEqual(sorted(r.inputIds.subarray(0, K)));
      for (let q = 1; q < t.length; q++) expect(t.inputIds[q]).toBeGreaterThan(t.inputIds[q - 1]);
      const c = all.get(t.cellId)!;
      const countOf = new Map(Array.from(c.inputIds, (g, q) => [g, c.values[q]]));
      t.inputIds.forEach((g, q) => expect(t.values[q]).toBe(countOf.get(g)));
      expect(t.nCounts).toBe(c.nCounts); // the library size is still the whole cell's
      if (c.length > K) cut++;
      else expect(Array.from(t.inputIds)).toEqual(Array.from(c.inputIds));
      // binned: same genes, and each kept gene has the bin it has among all the cell's genes
      const bt = bTop.get(t.cellId)!, ba = bAll.get(t.cellId)!;
      expect(Array.from(bt.inputIds)).toEqual(Array.from(t.inputIds));
      const binOf = new Map(Array.from(ba.inputIds, (g, q) => [g, ba.values[q]]));
      bt.inputIds.forEach((g, q) => expect(bt.values[q]).toBe(binOf.get(g)));
      expect(Array.from(bt.counts!)).toEqual(Array.from(t.values));
    }
    expect(cut).toBeGreaterThan(100); // most tiny cells express more than 64 genes: the selection is exercised
    expect(top.summary.cells_truncated).toBe(cut);
    expect(counts.summary.cells_truncated).toBe(0);
  });

  it("records top_genes in the manifest, gives the same dataset with 1 or 2 threads, and refuses rank or a bad K", async () => {
    const dir = tmpDir();
    const a = path.join(dir, "a"), b = path.join(dir, "b");
    await tokenizeToDataset({ input: "data/tiny.h5ad", output: a, modelVersion: "V1", encoding: "counts", topGenes: 32, chunkSize: 16, threads: 1, quiet: true, hashSource: false });
    await tokenizeToDataset({ input: "data/tiny.h5ad", output: b, modelVersion: "V1", encoding: "counts", topGenes: 32, chunkSize: 16, threads: 2, quiet: true, hashSource: false });
    const da = readTokenizedDataset(a), db = readTokenizedDataset(b);
    expect(da.manifest.top_genes).toBe(32);
    expect(Math.max(...da.inputIds.map((x) => x.length))).toBe(32);
    expect(db.inputIds.map((x) => Array.from(x))).toEqual(da.inputIds.map((x) => Array.from(x)));
    expect(db.values!.map((x) => Array.from(x))).toEqual(da.values!.map((x) => Array.from(x)));
    const src = await openCounts("data/tiny.h5ad");
    try {
      expect(() => tokenizeCounts(src, { modelVersion: "V1", topGenes: 32 })).toThrow(/--top-genes is for the binned and counts encodings/);
      expect(() => tokenizeCounts(src, { modelVersion: "V1", encoding: "counts", topGenes: 0 })).toThrow(/--top-genes must be a positive integer, got 0/);
    } finally {
      src.close();
    }
  });
});
