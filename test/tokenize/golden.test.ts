import { describe, expect, it } from "vitest";
import * as fs from "node:fs";
import { openCounts } from "../../src/data/open.js";
import { loadGeneformerDictionaries } from "../../src/tokenize/dictionaries.js";
import { tokenizeCounts, rankValueOrder } from "../../src/tokenize/geneformer.js";

interface GoldenCell {
  cell: string;
  length: number;
  input_ids: number[];
}
const G = "test/fixtures/golden";
function golden(name: string): GoldenCell[] {
  return fs.readFileSync(`${G}/${name}`, "utf8").trim().split("\n").map((l) => JSON.parse(l) as GoldenCell);
}
function goldenSummary(name: string) {
  return JSON.parse(fs.readFileSync(`${G}/${name}`, "utf8"));
}

const cases: [string, string, string][] = [
  ["data/tiny.h5ad", "tiny", "tiny.summary.json"],
  [`${G}/synth_float32.h5ad`, "golden_float32", "golden_float32.summary.json"],
  [`${G}/synth_int64.h5ad`, "golden_float32", "golden_float32.summary.json"],
];

describe("Geneformer tokenizer reproduces the golden files exactly", () => {
  for (const [input, gold, summaryFile] of cases) {
    for (const version of ["V1", "V2"] as const) {
      it(`${input} ${version}`, async () => {
        const src = await openCounts(input);
        const { cells, summary } = tokenizeCounts(src, { modelVersion: version });
        src.close();
        const exp = golden(`${gold}.${version.toLowerCase()}.jsonl`);
        expect(cells.length).toBe(exp.length);
        for (let i = 0; i < exp.length; i++) {
          expect(cells[i].cellId).toBe(exp[i].cell);
          expect(cells[i].length).toBe(exp[i].length);
          // compare as arrays (one assertion per cell keeps the failure message readable)
          expect(Array.from(cells[i].inputIds)).toEqual(exp[i].input_ids);
        }
        const gs = goldenSummary(summaryFile);
        const gv = gs.versions[version.toLowerCase()];
        expect(summary.genes_matched).toBe(gv.genes_matched);
        expect(summary.summed_groups).toBe(gv.summed_groups);
        expect(summary.columns_in_summed_groups).toBe(gv.columns_in_summed_groups);
        expect(summary.cells_written).toBe(gv.cells_written);
        expect(summary.cells_dropped_empty).toEqual(gv.cells_dropped_empty);
        expect(summary.cells_truncated).toBe(gv.cells_truncated);
        expect(summary.cells_with_exact_value_ties).toBe(gv.cells_with_exact_value_ties);
        expect([summary.length_min, summary.length_median, summary.length_max]).toEqual([gv.length_min, gv.length_median, gv.length_max]);
        expect(summary.cells_failing_filter_pass).toBe(gs.cells_failing_filter_pass);
        expect(summary.filter_pass_present).toBe(gs.filter_pass_present);
        expect(summary.n_counts_source).toBe(gs.n_counts_source);
        expect(summary.dictionaries.tokens.sha256).toBe(gv.dictionaries_sha256.tokens);
        expect(summary.dictionaries.medians.sha256).toBe(gv.dictionaries_sha256.medians);
        expect(summary.dictionaries.mapping.sha256).toBe(gv.dictionaries_sha256.mapping);
      });
    }
  }

  it("chunk size never changes the output", async () => {
    const src = await openCounts(`${G}/synth_float32.h5ad`);
    const ref = tokenizeCounts(src, { modelVersion: "V2", chunkSize: 512 });
    for (const chunkSize of [1, 7, 64]) {
      const r = tokenizeCounts(src, { modelVersion: "V2", chunkSize });
      expect(r.cells.map((c) => c.cellId)).toEqual(ref.cells.map((c) => c.cellId));
      expect(r.cells.map((c) => Array.from(c.inputIds))).toEqual(ref.cells.map((c) => Array.from(c.inputIds)));
      expect(r.summary).toEqual(ref.summary);
    }
    src.close();
  });

  it("10x folder and h5ad give identical tokens on tiny, with labels carried", async () => {
    const a = await openCounts("data/tiny.h5ad");
    const b = await openCounts("data/tiny_mtx", { obsTsv: "data/tiny_mtx/tiny_labels.tsv" });
    for (const v of ["V1", "V2"] as const) {
      const ra = tokenizeCounts(a, { modelVersion: v, carry: ["cell_type"] });
      const rb = tokenizeCounts(b, { modelVersion: v, carry: ["cell_type", "batch"], chunkSize: 33 });
      expect(rb.cells.map((c) => Array.from(c.inputIds))).toEqual(ra.cells.map((c) => Array.from(c.inputIds)));
      expect(rb.obs.cell_type).toEqual(ra.obs.cell_type);
      expect(new Set(rb.obs.batch as string[])).toEqual(new Set(["pbmc3k"]));
    }
  });
});

describe("rank-value ordering", () => {
  it("sorts by value descending and breaks exact ties by ascending token id", () => {
    const out = rankValueOrder(Int32Array.of(50, 7, 9, 8, 300), Float64Array.of(2, 5, 5, 1, 5));
    expect(Array.from(out)).toEqual([7, 9, 300, 50, 8]);
  });

  it("orders values that differ only in their last bits (packed-key fix-up path)", () => {
    const x = 1.2345678901234567;
    const y = x + Number.EPSILON; // same 48-bit prefix, larger
    const out = rankValueOrder(Int32Array.of(3, 4, 5), Float64Array.of(x, y, x));
    expect(Array.from(out)).toEqual([4, 3, 5]);
  });

  it("matches a plain comparator sort on random values with many ties", () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    for (let trial = 0; trial < 50; trial++) {
      const m = 1 + Math.floor(rnd() * 3000);
      const toks = new Int32Array(m);
      const used = new Set<number>();
      for (let i = 0; i < m; i++) {
        let t: number;
        do t = Math.floor(rnd() * 25000); while (used.has(t));
        used.add(t);
        toks[i] = t;
      }
      const vals = Float64Array.from({ length: m }, () => (rnd() < 0.3 ? Math.floor(rnd() * 5) : rnd() * 100) / (1 + Math.floor(rnd() * 3)));
      const idx = Array.from({ length: m }, (_, i) => i).sort((a, b) => vals[b] - vals[a] || toks[a] - toks[b]);
      expect(Array.from(rankValueOrder(toks, vals, 2048))).toEqual(idx.slice(0, 2048).map((i) => toks[i]));
    }
  });

  it("loads both dictionaries with their special tokens and sizes", () => {
    const v1 = loadGeneformerDictionaries("V1");
    const v2 = loadGeneformerDictionaries("V2");
    expect([v1.vocabSize, v1.medians.size, v1.maxGenes]).toEqual([25426, 25424, 2048]);
    expect([v2.vocabSize, v2.special.cls, v2.special.eos, v2.maxGenes]).toEqual([20275, 2, 3, 4094]);
    // 173,697 mapping rows, restricted to targets in the token dictionary (reference __init__)
    expect(v2.mapping.size).toBe(91753);
    expect(v2.mapping.get("CD3E")).toBe("ENSG00000198851"); // V2 maps upper-cased symbols too
    expect(v1.mapping.get("CD3E")).toBeUndefined();
  });
});
