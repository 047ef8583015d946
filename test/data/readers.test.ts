import { describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as path from "node:path";
import { openCounts } from "../../src/data/open.js";
import { resolveGeneIds, looksLikeEnsembl } from "../../src/data/genes.js";
import type { CountMatrixSource } from "../../src/data/types.js";
import { tmpDir, writeDenseAsH5ad, knownGenes } from "./helpers.js";

function dense(src: CountMatrixSource, chunkSize = 100): number[][] {
  const out: number[][] = [];
  for (const c of src.chunks(chunkSize)) {
    for (let r = 0; r < c.nCells; r++) {
      const row = new Array(src.nGenes).fill(0);
      for (let k = c.indptr[r]; k < c.indptr[r + 1]; k++) row[c.indices[k]] = c.data[k];
      out.push(row);
    }
  }
  return out;
}

describe("h5ad reader", () => {
  it("reads the bundled pbmc3k: shape, categorical obs, var columns and CSR chunks", async () => {
    const src = await openCounts("data/pbmc3k_seurat.h5ad");
    expect([src.nCells, src.nGenes]).toEqual([2638, 13714]);
    const ct = src.obs.columns.cell_type as string[];
    expect(ct).toHaveLength(2638);
    expect(new Set(ct).size).toBe(9);
    expect(ct).toContain("B");
    expect(src.obs.columns.batch[0]).toBe("pbmc3k");
    const ens = src.var.columns.ensembl_id as string[];
    expect(ens.filter((s) => s === "").length).toBe(508);
    expect(src.var.index[0]).toMatch(/^[A-Z0-9.-]+$/);
    let cells = 0;
    let nnz = 0;
    for (const c of src.chunks(1000)) {
      expect(c.start).toBe(cells);
      expect(c.indptr[0]).toBe(0);
      expect(c.indptr[c.nCells]).toBe(c.data.length);
      cells += c.nCells;
      nnz += c.data.length;
    }
    expect(cells).toBe(2638);
    expect(nnz).toBe(2238732);
    src.close();
  });

  it("reads string and numeric obs columns, layers and dtypes from a written file", async () => {
    const dir = tmpDir();
    const f = path.join(dir, "a.h5ad");
    const genes = knownGenes(4);
    await writeDenseAsH5ad(f, [[1, 0, 2, 0], [0, 0, 0, 5], [3, 3, 0, 0]], genes, {
      obs: {
        donor: ["d1", "d2", "d1"],
        n_counts: Float64Array.of(3, 5, 6),
        group: { categories: ["x", "y"], codes: Int8Array.of(1, -1, 0) },
      },
      dtype: "<i",
    });
    const src = await openCounts(f);
    expect(src.obs.index).toEqual(["cell0", "cell1", "cell2"]);
    expect(src.obs.columns.donor).toEqual(["d1", "d2", "d1"]);
    expect(Array.from(src.obs.columns.n_counts as Float64Array)).toEqual([3, 5, 6]);
    expect(src.obs.columns.group).toEqual(["y", "", "x"]);
    expect(dense(src, 2)).toEqual([[1, 0, 2, 0], [0, 0, 0, 5], [3, 3, 0, 0]]);
    await expect(openCounts(f, { layer: "counts" })).rejects.toThrow(/no "layers\/counts" matrix/);
  });

  it("10x folder and h5ad give the same matrix, obs labels from a TSV", async () => {
    const a = await openCounts("data/tiny.h5ad");
    const b = await openCounts("data/tiny_mtx", { obsTsv: "data/tiny_mtx/tiny_labels.tsv" });
    expect(b.nCells).toBe(a.nCells);
    expect(b.var.columns.ensembl_id).toEqual(a.var.columns.ensembl_id);
    expect(b.obs.index).toEqual(a.obs.index);
    expect(b.obs.columns.cell_type).toEqual(a.obs.columns.cell_type);
    expect(dense(b, 77)).toEqual(dense(a, 300));
  });
});

describe("bad input", () => {
  it("names a missing file and a file that is not HDF5", async () => {
    await expect(openCounts("no/such/file.h5ad")).rejects.toThrow(/no\/such\/file\.h5ad: file or folder not found/);
    const dir = tmpDir();
    const f = path.join(dir, "notes.h5ad");
    fs.writeFileSync(f, "cell,gene,count\n");
    await expect(openCounts(f)).rejects.toThrow(/notes\.h5ad: not an HDF5\/AnnData/);
    await expect(openCounts(dir)).rejects.toThrow(/not a 10x Matrix Market folder/);
  });

  it.each([
    ["negative", -1, /cell 1 \("cell1"\) has a negative count \(-1\)/],
    ["NaN", NaN, /cell 1 \("cell1"\) has a NaN count/],
    ["non-integer", 0.5, /cell 1 \("cell1"\) has a non-integer count \(0\.5\).*--layer.*--allow-non-integer/],
  ])("rejects %s counts naming the file and cell", async (_name, bad, re) => {
    const dir = tmpDir();
    const f = path.join(dir, "bad.h5ad");
    await writeDenseAsH5ad(f, [[1, 2, 0], [0, bad, 3]], knownGenes(3));
    const src = await openCounts(f);
    expect(() => dense(src)).toThrow(re);
    expect(() => dense(src)).toThrow(/bad\.h5ad/);
  });

  it("accepts non-integer counts with allowNonInteger", async () => {
    const dir = tmpDir();
    const f = path.join(dir, "soup.h5ad");
    await writeDenseAsH5ad(f, [[1.5, 2, 0]], knownGenes(3));
    const src = await openCounts(f, { allowNonInteger: true });
    expect(dense(src)).toEqual([[1.5, 2, 0]]);
  });
});

describe("gene IDs", () => {
  it("recognises Ensembl IDs and maps unique symbols through the bundled table", () => {
    expect(looksLikeEnsembl("ENSG00000187608")).toBe(true);
    expect(looksLikeEnsembl("ensg00000187608.3")).toBe(true);
    expect(looksLikeEnsembl("ISG15")).toBe(false);
    const r = resolveGeneIds({ index: ["ISG15", "CD3E", "NOT_A_GENE_XYZ", "ENSG00000187608.7"], columns: {} });
    expect(r.source).toBe("var index");
    expect(r.ids).toEqual(["ENSG00000187608", "ENSG00000198851", "", "ENSG00000187608"]);
    expect(r.fromSymbols).toBe(2);
    expect(r.versionStripped).toBe(1);
    expect(() => resolveGeneIds({ index: ["a"], columns: {} }, { idColumn: "gene_ids", file: "x.h5ad" })).toThrow(/x\.h5ad: no var column "gene_ids"/);
  });
});

describe("h5ad matrix layouts", () => {
  it("reads dense layers/<name>, CSC raw/X and nullable-boolean obs; X with log-normalised values is refused", async () => {
    const h5wasm = (await import("h5wasm/node")).default;
    await h5wasm.ready;
    const dir = tmpDir();
    const f = path.join(dir, "layouts.h5ad");
    const genes = knownGenes(3);
    const counts = [[1, 0, 2], [0, 0, 5], [3, 3, 0], [0, 7, 0]];
    // X holds log1p-normalised values (non-integer), as many published files do
    await writeDenseAsH5ad(f, counts.map((r) => r.map((x) => Math.log1p(x))), genes, { obs: {} });
    const h5 = new h5wasm.File(f, "a");
    const layers = h5.get("layers") as import("h5wasm/node").Group;
    layers.create_dataset({ name: "counts", data: Int32Array.from(counts.flat()), shape: [4, 3] });
    const raw = h5.create_group("raw");
    const X = raw.create_group("X");
    X.create_attribute("encoding-type", "csc_matrix");
    X.create_attribute("encoding-version", "0.1.0");
    X.create_attribute("shape", new BigInt64Array([4n, 3n]));
    // CSC: per gene column, rows with nonzeros
    X.create_dataset({ name: "indptr", data: Int32Array.of(0, 2, 4, 6) });
    X.create_dataset({ name: "indices", data: Int32Array.of(0, 2, 2, 3, 0, 1) });
    X.create_dataset({ name: "data", data: Float32Array.of(1, 3, 3, 7, 2, 5) });
    const rv = raw.create_group("var");
    rv.create_attribute("encoding-type", "dataframe");
    rv.create_attribute("_index", "_index");
    rv.create_dataset({ name: "_index", data: genes });
    const obs = h5.get("obs") as import("h5wasm/node").Group;
    const flag = obs.create_group("flag");
    flag.create_attribute("encoding-type", "nullable-boolean");
    flag.create_dataset({ name: "values", data: Uint8Array.of(1, 0, 1, 1) });
    flag.create_dataset({ name: "mask", data: Uint8Array.of(0, 0, 0, 1) });
    h5.close();

    const x = await openCounts(f);
    expect(() => dense(x)).toThrow(/non-integer count .*--layer/);
    const layer = await openCounts(f, { layer: "counts" });
    expect(dense(layer, 3)).toEqual(counts);
    expect(layer.obs.columns.flag).toEqual([true, false, true, false]);
    const rawSrc = await openCounts(f, { useRaw: true });
    expect(dense(rawSrc, 3)).toEqual(counts);
    expect(rawSrc.var.index).toEqual(genes);
  });
});

describe("10x reader variants", () => {
  it("reads gzip files, Cell Ranger 2 genes.tsv, unsorted entries and sums repeated entries", async () => {
    const zlib = await import("node:zlib");
    const dir = tmpDir();
    const g = knownGenes(3);
    // genes x cells, 1-based; entries out of order, (gene 1, cell 2) given twice
    const mtx = ["%%MatrixMarket matrix coordinate integer general", "% test", "3 2 5", "3 2 4", "1 1 2", "1 2 1", "2 1 7", "1 2 2", ""].join("\n");
    fs.writeFileSync(path.join(dir, "matrix.mtx.gz"), zlib.gzipSync(mtx));
    fs.writeFileSync(path.join(dir, "genes.tsv"), g.map((id, i) => `${id}\tSYM${i}`).join("\n") + "\n");
    fs.writeFileSync(path.join(dir, "barcodes.tsv.gz"), zlib.gzipSync("AAA-1\nCCC-1\n"));
    const src = await openCounts(dir);
    expect(src.obs.index).toEqual(["AAA-1", "CCC-1"]);
    expect(src.var.columns.gene_symbol).toEqual(["SYM0", "SYM1", "SYM2"]);
    expect(dense(src, 1)).toEqual([[2, 7, 0], [3, 0, 4]]);
  });

  it("names a missing barcodes file and a count mismatch", async () => {
    const dir = tmpDir();
    fs.writeFileSync(path.join(dir, "matrix.mtx"), "%%MatrixMarket matrix coordinate integer general\n2 2 1\n1 1 1\n");
    fs.writeFileSync(path.join(dir, "features.tsv"), "ENSG00000187608\tISG15\tGene Expression\n");
    await expect(openCounts(dir)).rejects.toThrow(/no barcodes\.tsv/);
    fs.writeFileSync(path.join(dir, "barcodes.tsv"), "A\nB\n");
    await expect(openCounts(dir)).rejects.toThrow(/matrix\.mtx: 2 genes but .*features\.tsv has 1 rows/);
  });
});
