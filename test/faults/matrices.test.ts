/**
 * Fault injection, count matrices (issue 20 §4): structurally invalid `.h5ad` matrices are refused
 * naming the file, the element and the first bad index; valid but unusual ones (a gene stored twice
 * in a row, a CITE-seq 10x folder, zero-count cells) are read right; data the reader cannot decode
 * (lzf, float16), counts only in raw/X, mouse IDs and repeated cell ids get one line saying what to
 * do. Each refusal: exit code 1, one line, every pre-existing file unchanged. Cells: data/tiny.h5ad.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { openCounts } from "../../src/data/open.js";
import { readTokenizedDataset } from "../../src/data/tokenized.js";
import { knownGenes, writeDenseAsH5ad } from "../data/helpers.js";
import { TINY_MODEL } from "../train/helpers.js";
import { tinyCsr, toCsc, writeRawH5ad, type RawH5ad } from "./h5.js";
import { cli, expectRefused, tmpDir } from "./helpers.js";

let root: string;
let tiny: Awaited<ReturnType<typeof tinyCsr>>;
let outs = 0;
/** `cellfm tokenize` of `input` into a fresh folder (which a refusal must not create). */
const tok = (input: string, extra: string[] = []) => ["tokenize", "-i", input, "-o", path.join(root, `never-${++outs}`), "-q", ...extra];

beforeAll(async () => {
  root = tmpDir("matrices");
  tiny = await tinyCsr();
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** tiny.h5ad's matrix with one thing changed. */
function variant(change: (m: RawH5ad) => void): RawH5ad {
  const m: RawH5ad = {
    ...tiny,
    indptr: Array.from(tiny.indptr),
    indices: Array.from(tiny.indices),
    data: Array.from(tiny.data),
    varColumns: { ensembl_id: [...tiny.varColumns!.ensembl_id] },
    obsCategorical: { cell_type: { ...tiny.obsCategorical!.cell_type, codes: [...tiny.obsCategorical!.cell_type.codes] } },
  };
  change(m);
  return m;
}

function tokensOf(dir: string): string {
  const ds = readTokenizedDataset(dir);
  return ds.inputIds.map((c, i) => `${ds.cellIds[i]}:${Array.from(c).join(",")}`).join("\n");
}

describe("structurally invalid sparse matrices are refused: file, element, first bad index", () => {
  const nnzAt = (m: RawH5ad, row: number) => (m.indptr as number[])[row];
  it.each([
    ["a column index >= n_genes", (m: RawH5ad) => ((m.indices as number[])[nnzAt(m, 7) + 1] = m.shape[1]), (m: RawH5ad) => ["X/indices", `first bad index ${nnzAt(m, 7) + 1}`, "gene (column) index"]],
    ["a negative column index", (m: RawH5ad) => ((m.indices as number[])[nnzAt(m, 12)] = -1), (m: RawH5ad) => ["X/indices", `first bad index ${nnzAt(m, 12)}`, "= -1"]],
    ["a non-monotonic indptr", (m: RawH5ad) => ((m.indptr as number[])[10] = (m.indptr as number[])[9] - 1), () => ["X/indptr", "not monotonic", "first bad index 10"]],
    ["an indptr that ends before the stored values", (m: RawH5ad) => ((m.indptr as number[])[m.shape[0]] -= 5), () => ["X/indptr", "ends at"]],
    ["a shape attribute with more genes than var", (m: RawH5ad) => (m.shape = [m.shape[0], m.shape[1] + 3]), (m: RawH5ad) => [`var has ${m.shape[1] - 3} rows`, `shape attribute says ${m.shape[1]} genes`]],
    ["a shape attribute with fewer cells than indptr", (m: RawH5ad) => (m.shape = [m.shape[0] - 1, m.shape[1]]), (m: RawH5ad) => ["X/indptr", `has ${m.shape[0] + 2} entries`, `${m.shape[0]} cells`]],
    ["a var column shorter than the gene axis", (m: RawH5ad) => m.varColumns!.ensembl_id.pop(), (m: RawH5ad) => [`var column "ensembl_id" has ${m.shape[1] - 1} values`, `${m.shape[1]} genes`]],
  ] as const)("%s", async (name, change, expected) => {
    const f = path.join(root, `${name.replace(/\W+/g, "-")}.h5ad`);
    const m = variant(change);
    await writeRawH5ad(f, m);
    await expectRefused(tok(f), [f, ...expected(m)], [f]);
    // every command that reads counts goes through the same reader
    await expectRefused(["medians", "-i", f, "-o", path.join(root, `never-${++outs}.tsv`), "-q"], [f, expected(m)[0]], [f]);
  });

  it("CSC matrices too: a cell (row) index >= n_cells is refused; a valid CSC gives the CSR's tokens", async () => {
    const ok = path.join(root, "csc.h5ad");
    await writeRawH5ad(ok, toCsc(variant(() => undefined)));
    const [a, b] = [path.join(root, "csc-tok"), path.join(root, "csr-tok")];
    expect((await cli(["tokenize", "-i", ok, "-o", a, "-q"])).code).toBe(0);
    expect((await cli(["tokenize", "-i", "data/tiny.h5ad", "-o", b, "-q"])).code).toBe(0);
    expect(tokensOf(a)).toBe(tokensOf(b));
    const bad = path.join(root, "csc-bad.h5ad");
    const m = toCsc(variant(() => undefined));
    (m.indices as number[])[40] = m.shape[0] + 2;
    await writeRawH5ad(bad, m);
    await expectRefused(tok(bad), [bad, "X/indices[40]", "cell (row) index", "first bad index 40"], [bad]);
  });

  it("a categorical code beyond its categories names the column, the code and its position", async () => {
    const f = path.join(root, "bad-code.h5ad");
    const m = variant((x) => (x.obsCategorical!.cell_type.codes[17] = 40));
    await writeRawH5ad(f, m);
    const n = m.obsCategorical!.cell_type.categories.length;
    await expectRefused(tok(f, ["--carry", "cell_type"]), [f, "obs/cell_type/codes[17] = 40", `${n} categories`, "first bad index 17"], [f]);
  });
});

describe("valid but unusual matrices are read right", () => {
  it("a gene stored twice in a row (non-canonical CSR) is summed, as scipy does: same tokens as the canonical file", async () => {
    // every cell's first stored count c >= 2 is split into 1 + (c - 1), the second part appended out of order
    const dup = variant((m) => {
      const ip = [0], ix: number[] = [], dv: number[] = [];
      for (let r = 0; r < m.shape[0]; r++) {
        const a = tiny.indptr[r], b = tiny.indptr[r + 1];
        let split = -1;
        for (let k = a; k < b; k++) {
          if (split < 0 && tiny.data[k] >= 2) {
            split = k;
            ix.push(tiny.indices[k]);
            dv.push(1);
          } else {
            ix.push(tiny.indices[k]);
            dv.push(tiny.data[k]);
          }
        }
        if (split >= 0) {
          ix.push(tiny.indices[split]);
          dv.push(tiny.data[split] - 1);
        }
        ip.push(ix.length);
      }
      Object.assign(m, { indptr: ip, indices: ix, data: dv });
    });
    expect(dup.indices.length).toBeGreaterThan(tiny.indices.length + 250);
    const fDup = path.join(root, "dup.h5ad"), fRef = path.join(root, "ref.h5ad");
    await writeRawH5ad(fDup, dup);
    await writeRawH5ad(fRef, variant(() => undefined));
    for (const enc of ["rank", "counts"]) {
      const [a, b] = [path.join(root, `dup-${enc}`), path.join(root, `ref-${enc}`)];
      expect((await cli(["tokenize", "-i", fDup, "-o", a, "-q", "--encoding", enc])).code).toBe(0);
      expect((await cli(["tokenize", "-i", fRef, "-o", b, "-q", "--encoding", enc])).code).toBe(0);
      expect(tokensOf(a)).toBe(tokensOf(b));
      if (enc === "counts") expect(readTokenizedDataset(a).values!.map((v) => Array.from(v).join())).toEqual(readTokenizedDataset(b).values!.map((v) => Array.from(v).join()));
    }
  });

  it("a 10x CITE-seq folder: only Gene Expression rows are read, the others counted and named", async () => {
    const genes = knownGenes(40);
    const cells = 25;
    const write = (dir: string, antibodies: boolean) => {
      fs.mkdirSync(dir);
      const feats = genes.map((g) => `${g}\t${g}\tGene Expression`);
      const lines: string[] = [];
      const nFeat = genes.length + (antibodies ? 3 : 0);
      for (let c = 0; c < cells; c++) {
        for (let g = 0; g < genes.length; g++) if ((c * 7 + g * 3) % 5 < 2) lines.push(`${g + 1} ${c + 1} ${1 + ((c + g) % 6)}`);
        if (antibodies) for (let a = 0; a < 3; a++) lines.push(`${genes.length + a + 1} ${c + 1} ${500 + c * 10 + a}`);
      }
      if (antibodies) feats.push("CD3E\tCD3E\tAntibody Capture", "MS4A1\tMS4A1\tAntibody Capture", "CD14\tCD14\tAntibody Capture");
      fs.writeFileSync(path.join(dir, "features.tsv"), feats.join("\n") + "\n");
      fs.writeFileSync(path.join(dir, "barcodes.tsv"), Array.from({ length: cells }, (_, c) => `BC${c}-1`).join("\n") + "\n");
      fs.writeFileSync(path.join(dir, "matrix.mtx"), `%%MatrixMarket matrix coordinate integer general\n${nFeat} ${cells} ${lines.length}\n${lines.join("\n")}\n`);
    };
    const cite = path.join(root, "cite"), rna = path.join(root, "rna");
    write(cite, true);
    write(rna, false);
    const src = await openCounts(cite);
    expect(src.nGenes).toBe(genes.length);
    expect(src.notes?.join(" ")).toMatch(/left out 3 of 43 features that are not "Gene Expression" \(3 Antibody Capture\)/);
    src.close();
    const [a, b] = [path.join(root, "cite-tok"), path.join(root, "rna-tok")];
    expect((await cli(["tokenize", "-i", cite, "-o", a, "-q"])).code).toBe(0);
    expect((await cli(["tokenize", "-i", rna, "-o", b, "-q"])).code).toBe(0);
    expect(tokensOf(a)).toBe(tokensOf(b));
  });

  it("zero-count cells: tokenize drops them and says so, embed and assess run (the dropped cells left out, named)", async () => {
    const f = path.join(root, "zeros.h5ad");
    const zero = [3, 150, 299];
    const m = variant((x) => {
      const ip = [0], ix: number[] = [], dv: number[] = [];
      for (let r = 0; r < x.shape[0]; r++) {
        if (!zero.includes(r)) for (let k = tiny.indptr[r]; k < tiny.indptr[r + 1]; k++) (ix.push(tiny.indices[k]), dv.push(tiny.data[k]));
        ip.push(ix.length);
      }
      Object.assign(x, { indptr: ip, indices: ix, data: dv });
    });
    await writeRawH5ad(f, m);
    const toks = path.join(root, "zeros-tok");
    expect((await cli(["tokenize", "-i", f, "-o", toks, "-q", "--carry", "cell_type"])).code).toBe(0);
    expect(readTokenizedDataset(toks).cellIds).toHaveLength(297);
    const cfg = path.join(root, "zeros.yaml");
    fs.writeFileSync(
      cfg,
      stringify({ model: TINY_MODEL, data: { tokens: toks, max_length: 64, val_fraction: 0.2 }, training: { batch_size: 16, eval_cells: 16, max_steps: 1 }, output: { dir: path.join(root, "zeros-run") }, backend: "wasm" }),
    );
    expect((await cli(["train", "--config", cfg, "--quiet"])).code).toBe(0);
    const emb = path.join(root, "zeros.arrow");
    expect((await cli(["embed", "-c", path.join(root, "zeros-run", "final"), "-i", toks, "-o", emb, "-q"])).code).toBe(0);
    const out = path.join(root, "zeros-assess");
    const r = await cli(["assess", "--input", f, "--embeddings", emb, "--output", out, "-q", "--min-cells", "20", "--n-hvg", "200"]);
    expect(r.message).toBe("");
    expect(r.code).toBe(0);
    const metrics = JSON.parse(fs.readFileSync(path.join(out, "metrics.json"), "utf8"));
    expect(JSON.stringify(metrics)).toContain("zero counts");
  });
});

describe("data the reader cannot take: one line naming the file and what to do", () => {
  it("lzf compression names the filter and how to rewrite the file", async () => {
    const f = path.resolve("test/fixtures/faults/lzf.h5ad");
    await expectRefused(tok(f), [f, "X/data", '"lzf" filter', "not support", 'adata.write_h5ad(path, compression="gzip")'], [f]);
  });

  it("lzf on an obs column: named when the column is read (--carry)", async () => {
    const f = path.resolve("test/fixtures/faults/lzf-obs.h5ad");
    await expectRefused(tok(f, ["--carry", "cell_type"]), [f, "obs/cell_type", '"lzf" filter'], [f]);
  });

  it("float16 X names the file and the element", async () => {
    const f = path.resolve("test/fixtures/faults/float16.h5ad");
    await expectRefused(tok(f), [f, "X/data", "float16", 'astype("float32")'], [f]);
  });

  it("counts only in raw/X: the hint is --use-raw, which then reads them", async () => {
    const f = path.join(root, "raw-only.h5ad");
    await writeRawH5ad(f, variant((m) => (m.key = "raw/X")));
    await expectRefused(tok(f), [f, 'no "X" matrix', '"raw/X"', "--use-raw"], [f]);
    expect((await cli(["tokenize", "-i", f, "-o", path.join(root, "raw-tok"), "-q", "--use-raw"])).code).toBe(0);
    expect(readTokenizedDataset(path.join(root, "raw-tok")).cellIds).toHaveLength(300);
  });

  it("mouse Ensembl IDs are told they look like mouse and the dictionaries are human", async () => {
    const f = path.join(root, "mouse.h5ad");
    const ids = ["ENSMUSG00000000001", "ENSMUSG00000000028", "ENSMUSG00000000031", "ENSMUSG00000000037"];
    await writeDenseAsH5ad(f, [[1, 2, 3, 4], [0, 1, 5, 2]], ids);
    await expectRefused(tok(f), [f, "mouse", "4 of 4", "human"], [f]);
  });

  it("repeated cell ids are refused when the input is read, before anything is written", async () => {
    const f = path.join(root, "dup-ids.h5ad");
    await writeRawH5ad(f, variant((m) => (m.obsIndex = m.obsIndex.map((id, i) => (i === 41 ? m.obsIndex[7] : id)))));
    const args = tok(f);
    await expectRefused(args, [f, `"${tiny.obsIndex[7]}"`, "rows 7 and 41", "obs_names_make_unique"], [f]);
    expect(fs.existsSync(args[4])).toBe(false);
  });
});
