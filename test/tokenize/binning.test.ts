import { describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as path from "node:path";
import { openCounts } from "../../src/data/open.js";
import { readTokenizedDataset } from "../../src/data/tokenized.js";
import type { CountMatrixSource, CsrChunk } from "../../src/data/types.js";
import type { Rng } from "../../src/rng.js";
import { binCounts, binPositiveValues, cellBinningRng, linspace01, quantilesSorted } from "../../src/tokenize/binning.js";
import { tokenizeCounts, type TokenizedCell } from "../../src/tokenize/geneformer.js";
import { tokenizeToDataset } from "../../src/tokenize/run.js";
import { tmpDir } from "../data/helpers.js";

/** A generator that returns the given uniforms in order. */
function fixedRng(us: number[]): Rng {
  let i = 0;
  const f = (() => us[i++]) as Rng;
  f.state = () => ({ i });
  return f;
}

describe("scGPT binning (hand-computed)", () => {
  it("counts 1,1,1,2,4 of a cell with n_counts 10: the tied 1s spread over bins 1..25, 2 -> 37, max -> 50", () => {
    // x = log1p(c / 10 * 1e4): a = log1p(1000) (x3), b = log1p(2000), c = log1p(4000); sorted [a,a,a,b,c], n = 5.
    // Edge k sits at virtual index h = 4k/49: h <= 2 (k <= 24) gives a exactly, so 25 edges equal a;
    // h < 3 (k <= 36) gives edges below b, none equal to b; edge 49 = c, edge 48 (h = 3.92) lies below c.
    // a: lo = #edges <= a = 25, hi = #edges < a = 0 -> bin = ceil(u * (0 - 25) + 25)
    // b: lo = hi = 37 -> 37;  c: lo = 50, hi = 49 -> ceil(50 - u) = 50 for every u in [0, 1).
    const us = [0, 0.5, 0.99, 0.3, 0.7];
    const bins = binCounts([1, 1, 1, 2, 4], 10, fixedRng(us));
    expect(Array.from(bins)).toEqual([25, 13, 1, 37, 50]); // ceil(25) = 25, ceil(12.5) = 13, ceil(0.25) = 1
  });

  it("quantile edges and digitize match NumPy 2.4 (np.quantile / np.digitize) bit for bit", () => {
    // x = log1p([3,1,1,7,2,1,12] / 40 * 1e4); values printed by NumPy 2.4.6
    const x = [3, 1, 1, 7, 2, 1, 12].map((c) => Math.log1p((c / 40) * 1e4));
    const e = quantilesSorted(Float64Array.from(x).sort(), linspace01(50));
    const idx = [0, 1, 10, 17, 25, 33, 40, 48, 49];
    expect(idx.map((i) => e[i])).toEqual([
      5.5254529391317835, 5.5254529391317835, 5.5254529391317835, 5.5818736054136675, 6.24138974704482, 6.655958169336449,
      7.381561038355064, 7.940730415258181, 8.006700845440367,
    ]);
    // np.digitize(x, e) = lo and np.digitize(x, e, right=True) = hi: [33,17,17,41,25,17,50] / [33,0,0,41,25,0,49]
    expect(Array.from(binCounts([3, 1, 1, 7, 2, 1, 12], 40, fixedRng(Array(7).fill(0))))).toEqual([33, 17, 17, 41, 25, 17, 50]);
    expect(Array.from(binCounts([3, 1, 1, 7, 2, 1, 12], 40, fixedRng(Array(7).fill(1 - 1e-12))))).toEqual([33, 1, 1, 41, 25, 1, 50]);
  });

  it("linspace01 equals NumPy's linspace(0, 1, 50) formula; a cell with one gene: all 50 edges tie, bin uniform in 1..50", () => {
    const l = linspace01(50);
    expect(l[0]).toBe(0);
    expect(l[49]).toBe(1);
    expect(l[7]).toBe(7 * (1 / 49));
    expect(Array.from(binPositiveValues([2.5], fixedRng([0.4])))).toEqual([30]); // ceil(0.4 * (0 - 50) + 50)
    expect(Array.from(binPositiveValues([], fixedRng([])))).toEqual([]);
  });

  it("rejects bad inputs with a clear message", () => {
    expect(() => binCounts([1, 0], 10, fixedRng([0, 0]))).toThrow(/not a positive finite number/);
    expect(() => binCounts([1], 0, fixedRng([0]))).toThrow(/library size 0/);
    expect(() => binPositiveValues([1], fixedRng([0]), 2)).toThrow(/n_bins must be an integer >= 3/);
  });

  it("the per-cell generator depends on the seed and the cell id only", () => {
    const a = cellBinningRng(7, "AAAC-1");
    const b = cellBinningRng(7, "AAAC-1");
    const c = cellBinningRng(8, "AAAC-1");
    const va = [a(), a(), a()];
    expect([b(), b(), b()]).toEqual(va);
    expect([c(), c(), c()]).not.toEqual(va);
  });
});

/** A source showing only the given rows of `src` (in that order), materialised in memory. */
function subsetSource(src: CountMatrixSource, rows: number[]): CountMatrixSource {
  const all: { idx: number[]; val: number[] }[] = [];
  for (const ch of src.chunks(4096)) {
    for (let r = 0; r < ch.nCells; r++) {
      const idx: number[] = [];
      const val: number[] = [];
      for (let k = ch.indptr[r]; k < ch.indptr[r + 1]; k++) {
        idx.push(ch.indices[k]);
        val.push(ch.data[k]);
      }
      all.push({ idx, val });
    }
  }
  const picked = rows.map((r) => all[r]);
  const cols: Record<string, string[] | Float64Array | boolean[]> = {};
  for (const [k, v] of Object.entries(src.obs.columns)) {
    cols[k] = v instanceof Float64Array ? Float64Array.from(rows, (r) => v[r]) : (rows.map((r) => (v as string[])[r]) as string[]);
  }
  return {
    path: src.path,
    nCells: rows.length,
    nGenes: src.nGenes,
    obs: { index: rows.map((r) => src.obs.index[r]), columns: cols },
    var: src.var,
    *chunks(size = 512): Iterable<CsrChunk> {
      for (let s = 0; s < rows.length; s += size) {
        const part = picked.slice(s, s + size);
        const indptr = new Float64Array(part.length + 1);
        part.forEach((p, i) => (indptr[i + 1] = indptr[i] + p.idx.length));
        yield {
          start: s,
          nCells: part.length,
          indptr,
          indices: Int32Array.from(part.flatMap((p) => p.idx)),
          data: Float64Array.from(part.flatMap((p) => p.val)),
        };
      }
    },
    close() {},
  };
}

function byId(cells: TokenizedCell[]): Map<string, TokenizedCell> {
  return new Map(cells.map((c) => [c.cellId, c]));
}

describe("tokenize --encoding binned / counts on the bundled tiny.h5ad", () => {
  it("bins do not change when cells are added, removed or reordered, or with the chunk size", async () => {
    const src = await openCounts("data/tiny.h5ad");
    const full = tokenizeCounts(src, { modelVersion: "V1", encoding: "binned", seed: 3 });
    const n = src.nCells;
    const rows = Array.from({ length: n }, (_, i) => n - 1 - i).filter((i) => i % 3 !== 1); // reversed, a third removed
    const sub = tokenizeCounts(subsetSource(src, rows), { modelVersion: "V1", encoding: "binned", seed: 3, chunkSize: 7 });
    src.close();
    const ref = byId(full.cells);
    expect(sub.cells.length).toBeGreaterThan(100);
    let tiedCells = 0;
    for (const c of sub.cells) {
      const r = ref.get(c.cellId)!;
      expect(Array.from(c.inputIds)).toEqual(Array.from(r.inputIds));
      expect(Array.from(c.values)).toEqual(Array.from(r.values));
      expect(c.nCounts).toBe(r.nCounts);
      if (new Set(c.values).size < c.values.length) tiedCells++;
    }
    expect(tiedCells).toBe(sub.cells.length); // ties on edges are the rule, so the seeding is exercised
    // another seed changes tied bins, never the genes
    const src2 = await openCounts("data/tiny.h5ad");
    const other = tokenizeCounts(src2, { modelVersion: "V1", encoding: "binned", seed: 4 });
    src2.close();
    expect(other.cells.map((c) => Array.from(c.inputIds))).toEqual(full.cells.map((c) => Array.from(c.inputIds)));
    expect(other.cells.map((c) => Array.from(c.values))).not.toEqual(full.cells.map((c) => Array.from(c.values)));
  });

  it("binned/counts keep every expressed vocabulary gene in ascending token order; rank values are the counts", async () => {
    const src = await openCounts("data/tiny.h5ad");
    const rank = tokenizeCounts(src, { modelVersion: "V2" });
    const counts = tokenizeCounts(src, { modelVersion: "V2", encoding: "counts" });
    const binned = tokenizeCounts(src, { modelVersion: "V2", encoding: "binned" });
    src.close();
    expect(counts.summary.encoding).toBe("counts");
    expect(counts.summary.cells_truncated).toBe(0);
    const cr = byId(counts.cells);
    for (const r of rank.cells) {
      const c = cr.get(r.cellId)!;
      // counts: strictly ascending token ids, positive integer counts, no special tokens
      for (let i = 1; i < c.length; i++) expect(c.inputIds[i]).toBeGreaterThan(c.inputIds[i - 1]);
      const countOf = new Map<number, number>();
      c.inputIds.forEach((t, i) => countOf.set(t, c.values[i]));
      // rank: <cls> ... <eos> with value 0, every gene token carries its raw count
      expect([r.values[0], r.values[r.length - 1]]).toEqual([0, 0]);
      for (let i = 1; i < r.length - 1; i++) expect(r.values[i]).toBe(countOf.get(r.inputIds[i]));
      expect(r.nCounts).toBe(c.nCounts);
      // no cell of tiny is truncated: rank and counts hold the same genes
      expect(Array.from(r.inputIds.subarray(1, r.length - 1)).sort((x, y) => x - y)).toEqual(Array.from(c.inputIds));
    }
    for (const b of binned.cells) {
      const c = cr.get(b.cellId)!;
      expect(Array.from(b.inputIds)).toEqual(Array.from(c.inputIds));
      expect(Math.min(...b.values)).toBeGreaterThanOrEqual(1);
      expect(Math.max(...b.values)).toBe(50); // in tiny every cell's largest count is unique, so it lands in the top bin
      // bins are monotone in the count: a larger count never gets a lower bin
      const pairs = Array.from(c.values, (v, i) => [v, b.values[i]]).sort((p, q) => p[0] - q[0]);
      for (let i = 1; i < pairs.length; i++) if (pairs[i][0] > pairs[i - 1][0]) expect(pairs[i][1]).toBeGreaterThanOrEqual(pairs[i - 1][1]);
    }
  });

  it("writes values, n_counts and the binning settings to the dataset, and reads them back", async () => {
    const dir = tmpDir();
    const out = path.join(dir, "binned");
    await tokenizeToDataset({ input: "data/tiny.h5ad", output: out, modelVersion: "V1", encoding: "binned", seed: 5, quiet: true, hashSource: false, carry: ["cell_type"] });
    const ds = readTokenizedDataset(out);
    expect(ds.manifest.encoding).toBe("scgpt-binned");
    expect([ds.manifest.values_kind, ds.manifest.n_bins, ds.manifest.binning_seed]).toEqual(["bin", 51, 5]);
    expect(ds.values).toHaveLength(ds.cellIds.length);
    expect(ds.nCounts).toHaveLength(ds.cellIds.length);
    const measured = ds.manifest.measured_tokens!;
    expect(measured.length).toBe(JSON.parse(fs.readFileSync(path.join(out, "summary.json"), "utf8")).genes_matched);
    for (let i = 1; i < measured.length; i++) expect(measured[i]).toBeGreaterThan(measured[i - 1]);
    const measuredSet = new Set(measured);
    for (const ids of ds.inputIds) for (const t of ids) expect(measuredSet.has(t)).toBe(true);
    const src = await openCounts("data/tiny.h5ad");
    const mem = tokenizeCounts(src, { modelVersion: "V1", encoding: "binned", seed: 5 });
    src.close();
    mem.cells.forEach((c, i) => {
      expect(Array.from(ds.values![i])).toEqual(Array.from(c.values));
      expect(ds.nCounts![i]).toBe(c.nCounts);
    });
    const rankOut = path.join(dir, "rank");
    await tokenizeToDataset({ input: "data/tiny.h5ad", output: rankOut, modelVersion: "V1", quiet: true, hashSource: false });
    const rk = readTokenizedDataset(rankOut);
    expect(rk.manifest.encoding).toBe("geneformer-rank-value");
    expect(rk.manifest.values_kind).toBe("count");
    expect(rk.manifest.n_bins).toBeUndefined();
    expect(rk.manifest.columns.map((c) => c.name)).toEqual(["cell_id", "input_ids", "length", "values", "n_counts"]);
  });
});

describe("tokenized dataset: n_counts column", () => {
  it("stores a carried obs n_counts once, next to the library sizes, and refuses different numbers", async () => {
    const { writeTokenizedDataset } = await import("../../src/data/tokenized.js");
    const dir = tmpDir();
    const meta = { encoding: "scprint-counts", values_kind: "count" as const };
    writeTokenizedDataset(path.join(dir, "a"), {
      meta,
      cellIds: ["c1", "c2"],
      inputIds: [Int32Array.of(5, 9), Int32Array.of(7)],
      values: [Float32Array.of(2, 1), Float32Array.of(4)],
      nCounts: Float64Array.of(10, 20),
      obs: { n_counts: Float64Array.of(10, 20), cell_type: ["T", "B"] },
    });
    const ds = readTokenizedDataset(path.join(dir, "a"));
    expect(Array.from(ds.nCounts!)).toEqual([10, 20]);
    expect(Array.from(ds.obs.columns.n_counts as Float64Array)).toEqual([10, 20]);
    expect(ds.manifest.columns.filter((c) => c.name === "n_counts")).toHaveLength(1);
    expect(Array.from(ds.values![0])).toEqual([2, 1]);
    expect(() =>
      writeTokenizedDataset(path.join(dir, "b"), {
        meta,
        cellIds: ["c1"],
        inputIds: [Int32Array.of(5)],
        nCounts: Float64Array.of(10),
        obs: { n_counts: Float64Array.of(11) },
      }),
    ).toThrow(/n_counts differs from the library sizes at cell c1/);
  });
});
