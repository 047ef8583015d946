import { describe, it, expect, beforeAll } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { openCounts } from "../../src/data/open.js";
import { writeEmbeddings } from "../../src/data/embeddings.js";
import { runAssessment } from "../../src/assess/run.js";
import { main } from "../../src/cli.js";

const TINY = "data/tiny.h5ad";
let dir: string;
let embFile: string;
let cellTypes: string[];
let ids0: string[];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-assess-"));
  // A real "embedding" of tiny.h5ad: log1p counts of the first 24 genes, carrying obs (cells in reverse order).
  const src = await openCounts(TINY);
  const d = 24;
  const n = src.nCells;
  const data = new Float32Array(n * d);
  for (const ch of src.chunks(128)) {
    for (let r = 0; r < ch.nCells; r++) {
      for (let p = ch.indptr[r]; p < ch.indptr[r + 1]; p++) {
        if (ch.indices[p] < d) data[(n - 1 - (ch.start + r)) * d + ch.indices[p]] = Math.log1p(ch.data[p]);
      }
    }
  }
  ids0 = [...src.obs.index];
  const ids = [...src.obs.index].reverse();
  cellTypes = [...(src.obs.columns.cell_type as string[])];
  embFile = path.join(dir, "genes24.arrow");
  writeEmbeddings(embFile, { cellIds: ids, dim: d, data, obs: { index: ids, columns: { cell_type: [...cellTypes].reverse() } }, meta: { source: "test" } });
  src.close();
});

describe("runAssessment on data/tiny.h5ad (6 types x 50 cells)", () => {
  it("writes report.md, report.html, metrics.json and PNG/SVG figures with sensible numbers", async () => {
    const out = path.join(dir, "report");
    const r = await runAssessment({
      input: TINY,
      embeddings: [embFile],
      label: "cell_type",
      batch: "batch",
      output: out,
      minCells: 50,
      perType: 40,
      nHvg: 300,
      quiet: true,
      umapEpochs: 60,
      kmeansRestarts: 2,
      threads: 2,
      backend: "wasm",
    });
    for (const f of ["report.md", "report.html", "metrics.json", "figures/within_between.png", "figures/within_between.svg", "figures/sparsity.png", "figures/umap_hvg_celltype.png", "figures/umap_genes24_celltype.png", "figures/joint_umap_hvg_vs_spearman.png", "figures/joint_umap_hvg_vs_umap_genes24.png"]) {
      expect(fs.existsSync(path.join(out, f)), f).toBe(true);
    }
    const png = fs.readFileSync(path.join(out, "figures/within_between.png"));
    expect(png.subarray(1, 4).toString()).toBe("PNG");
    expect(r.kept.map((k) => k.type)).toEqual(["B", "CD14+ Mono", "CD8 T", "FCGR3A+ Mono", "NK", "Naive CD4 T"]);
    expect(r.nSelected).toBe(240);
    expect(r.settings.nHvg).toBe(300);
    expect(r.measures.map((m) => m.id)).toEqual(["umap_hvg", "spearman", "space_hvg", "umap_genes24", "space_genes24"]);
    // real PBMC types separate: within < between for the expression measures, good kNN accuracy
    for (const id of ["umap_hvg", "spearman", "space_hvg"]) {
      const m = r.measures.find((x) => x.id === id)!;
      expect(m.medianWithin).toBeLessThan(m.medianBetween);
      expect(m.aucPairs).toBeGreaterThan(0.7);
      expect(Object.keys(m.within)).toHaveLength(6);
      expect(Object.keys(m.between)).toHaveLength(15);
    }
    const hvg = r.metrics.find((m) => m.id === "hvg")!;
    expect(hvg.knnAccuracy).toBeGreaterThan(0.7);
    expect(hvg.aswScaled).toBeCloseTo((hvg.aswRaw + 1) / 2, 10);
    expect(hvg.kmeansNmi).toBeGreaterThan(0.4);
    // linear probe: fitted on 80 % of the selection, scored on 20 % (seeded, stratified), HVG + PCA separates the types
    expect(r.probe).toMatchObject({ nTrain: 192, nTest: 48 });
    expect(hvg.probeAccuracy).toBeGreaterThan(0.7);
    expect(hvg.probeMacroF1).toBeGreaterThan(0.6);
    expect(r.metrics.find((m) => m.id === "genes24")!.probeAccuracy).toBeGreaterThan(0);
    // tiny has one batch: batch metrics are undefined (NaN), the report says so
    expect(Number.isNaN(hvg.batchAsw)).toBe(true);
    const md = fs.readFileSync(path.join(out, "report.md"), "utf8");
    expect(md).toContain("## Reading");
    expect(md).toContain("Within < between");
    expect(md).toContain("genes24");
    const html = fs.readFileSync(path.join(out, "report.html"), "utf8");
    expect(html).toContain("<svg");
    expect(html).not.toContain("src=\"figures/");
    const json = JSON.parse(fs.readFileSync(path.join(out, "metrics.json"), "utf8"));
    expect(json.measures[0].within.B).toBeTypeOf("number");
    // same seed → same selection, UMAPs, medians and metrics, whether on 2 worker threads or on the main thread
    const again = await runAssessment({ input: TINY, embeddings: [embFile], label: "cell_type", batch: "batch", output: path.join(dir, "again"), minCells: 50, perType: 40, nHvg: 300, quiet: true, umapEpochs: 60, kmeansRestarts: 2, threads: 1 });
    expect(again.measures).toEqual(r.measures);
    expect(again.metrics).toEqual(r.metrics);
    expect(md).toContain("linear probe accuracy");
    // held-out cells given (a training run's validation cells): scored on all of them, selected or not
    const heldOut = ids0.filter((_, i) => i % 5 === 0);
    const h = await runAssessment({ input: TINY, embeddings: [embFile], label: "cell_type", output: path.join(dir, "heldout"), minCells: 50, perType: 40, nHvg: 300, quiet: true, umapEpochs: 20, kmeansRestarts: 1, threads: 1, heldOutCells: heldOut });
    expect(h.probe!.nTest).toBe(heldOut.length);
    expect(h.probe!.nTrain).toBeGreaterThan(240 - heldOut.length - 1);
    expect(h.metrics[0].probeAccuracy).toBeGreaterThan(0.7);
    // the same metrics as without it, except the probe
    expect(h.metrics.map((m) => m.knnAccuracy)).toEqual(r.metrics.map((m) => m.knnAccuracy));
  });

  it("CLI: bad input gives clear errors and writes nothing", async () => {
    const out = path.join(dir, "bad");
    const run = (extra: string[], minCells = "50") => main(["assess", "--input", TINY, "--output", out, "--quiet", "--min-cells", minCells, ...extra]);
    await expect(run(["--label", "celltype"])).rejects.toThrow(/obs has no column "celltype" \(--label\); available columns: cell_type, batch/);
    await expect(run(["--batch", "donor"])).rejects.toThrow(/obs has no column "donor" \(--batch\)/);
    await expect(run([], "51")).rejects.toThrow(/only 0 cell type\(s\) of "cell_type" have at least 51 cells; need 2/);
    const other = path.join(dir, "other.arrow");
    writeEmbeddings(other, { cellIds: ["x", "y"], dim: 2, data: new Float32Array(4) });
    await expect(run(["--embeddings", other])).rejects.toThrow(/other\.arrow: 300 of the 300 selected cells .* have no embedding .* 0 of 300 data cell ids/);
    await expect(run(["--embeddings", path.join(dir, "missing.arrow")])).rejects.toThrow(/missing\.arrow does not exist/);
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith("bad"))).toEqual([]);
    fs.mkdirSync(out);
    await expect(run([])).rejects.toThrow(/already exists; pass --force/);
  });
});
