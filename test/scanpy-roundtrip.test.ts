/**
 * A user's own AnnData, the scanpy way, end to end (issue 19's done-test): a file shaped like what
 * scanpy users have — log-normalised `X`, raw counts in `layers["counts"]`, gene symbols as the var
 * index, categorical obs, `obsm["X_pca"]` — made from the bundled pbmc3k, goes through
 * tokenize → train (tiny, denoise objective) → embed into a copy of itself → assess next to its own
 * `obsm["X_pca"]` → denoise → grn with the documented flags only, and anndata (Debian
 * `python3-anndata`, where installed) reads every `.h5ad` written without a warning.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import h5wasm from "h5wasm/node";
import type { Dataset as H5Dataset, Group as H5Group } from "h5wasm/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../src/cli.js";
import { h5Ready } from "../src/data/h5ad.js";
import { pca } from "../src/assess/linalg.js";
import { useBackend } from "./model/helpers.js";

/** A Python with anndata, or undefined (the checks below are then skipped with a note). */
function anndataPython(): string | undefined {
  for (const py of [process.env.CELLFM_PYTHON, "/usr/bin/python3", "python3"]) {
    if (!py) continue;
    const r = spawnSync(py, ["-c", "import anndata"], { encoding: "utf8" });
    if (r.status === 0) return py;
  }
  return undefined;
}
const py = anndataPython();
if (!py) console.warn("anndata checks skipped: no python3 with anndata (Debian: apt-get install python3-anndata)");

/** Read `files` with anndata, warnings as errors; returns a one-line summary per file. */
function readWithAnndata(files: string[]): string[] {
  const code = [
    "import sys, warnings",
    "import anndata",
    "warnings.simplefilter('error')",
    "for f in sys.argv[1:]:",
    "    a = anndata.read_h5ad(f)",
    "    print(f, a.n_obs, a.n_vars, ','.join(sorted(a.obsm.keys())), ','.join(sorted(a.layers.keys())), str(a.obs['cell_type'].dtype) if 'cell_type' in a.obs else '-')",
  ].join("\n");
  const r = spawnSync(py!, ["-c", code, ...files], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`anndata could not read without warnings:\n${r.stderr}`);
  return r.stdout.trim().split("\n");
}

let dir: string;
let mine: string;

/**
 * Make the scanpy-shaped file from the bundled pbmc3k (index = symbols, categorical obs written by
 * anndata): the counts go to layers["counts"], X becomes log1p(counts / n_counts × 10,000) on the
 * same sparsity pattern (scanpy's normalize_total + log1p), obsm["X_pca"] the top 20 principal
 * components of the 500 most variable log-normalised genes.
 */
async function scanpyShaped(file: string): Promise<void> {
  fs.copyFileSync("data/pbmc3k_seurat.h5ad", file);
  await h5Ready();
  const h5 = new h5wasm.File(file, "a");
  try {
    const X = h5.get("X") as H5Group;
    const data = (X.get("data") as H5Dataset).value as Float32Array;
    const indices = (X.get("indices") as H5Dataset).value as Int32Array;
    const indptr = (X.get("indptr") as H5Dataset).value as BigInt64Array | Int32Array;
    const shape = (X.attrs["shape"].value as ArrayLike<number | bigint>);
    const [nCells, nGenes] = [Number(shape[0]), Number(shape[1])];
    const layers = (h5.get("layers") as H5Group | null) ?? h5.create_group("layers");
    const C = layers.create_group("counts");
    C.create_attribute("encoding-type", "csr_matrix");
    C.create_attribute("encoding-version", "0.1.0");
    C.create_attribute("shape", new BigInt64Array([BigInt(nCells), BigInt(nGenes)]));
    C.create_dataset({ name: "data", data: Float32Array.from(data) });
    C.create_dataset({ name: "indices", data: Int32Array.from(indices) });
    C.create_dataset({ name: "indptr", data: indptr });
    const logn = new Float32Array(data.length);
    for (let c = 0; c < nCells; c++) {
      const a = Number(indptr[c]), b = Number(indptr[c + 1]);
      let total = 0;
      for (let k = a; k < b; k++) total += data[k];
      for (let k = a; k < b; k++) logn[k] = Math.log1p((data[k] / total) * 1e4);
    }
    (X.get("data") as H5Dataset).write_slice([[0, logn.length]], logn);
    // obsm["X_pca"]: 20 components of the 500 most variable genes
    const sum = new Float64Array(nGenes), sq = new Float64Array(nGenes);
    for (let k = 0; k < logn.length; k++) {
      sum[indices[k]] += logn[k];
      sq[indices[k]] += logn[k] * logn[k];
    }
    const variance = Array.from(sum, (s, g) => sq[g] / nCells - (s / nCells) ** 2);
    const top = variance.map((v, g) => [v, g]).sort((p, q) => q[0] - p[0]).slice(0, 500).map((p) => p[1]);
    const col = new Int32Array(nGenes).fill(-1);
    top.forEach((g, j) => (col[g] = j));
    const dense = new Float32Array(nCells * top.length);
    for (let c = 0; c < nCells; c++) {
      for (let k = Number(indptr[c]); k < Number(indptr[c + 1]); k++) if (col[indices[k]] >= 0) dense[c * top.length + col[indices[k]]] = logn[k];
    }
    const p = pca(dense, nCells, top.length, 20, { seed: 0 });
    const obsm = (h5.get("obsm") as H5Group | null) ?? h5.create_group("obsm");
    const d = obsm.create_dataset({ name: "X_pca", data: Float32Array.from(p.scores), shape: [nCells, 20], dtype: "<f" });
    d.create_attribute("encoding-type", "array");
    d.create_attribute("encoding-version", "0.2.0");
  } finally {
    h5.close();
  }
}

beforeAll(async () => {
  await useBackend("wasm");
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-scanpy-"));
  mine = path.join(dir, "mine.h5ad");
  await scanpyShaped(mine);
}, 120_000);
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("a scanpy-shaped AnnData, end to end", () => {
  it("tokenize → train → embed into a copy → assess next to X_pca → denoise → grn, with documented flags", async () => {
    const at = (f: string) => path.join(dir, f);
    if (py) expect(readWithAnndata([mine])[0]).toMatch(/2638 13714 X_pca counts category/);
    // X is log-normalised: reading it as counts is refused with the one message that names the way out
    await expect(main(["tokenize", "-i", mine, "-o", at("never"), "--quiet"])).rejects.toThrow(/non-integer count .* --layer <name> \(e\.g\. --layer counts\) or --use-raw \(this file has layers\/counts\)/);
    await main(["tokenize", "-i", mine, "--layer", "counts", "-o", at("tokens"), "--carry", "cell_type", "--quiet"]);
    await main([
      "train", "--tokens", at("tokens"), "-o", at("model"), "--quiet", "--backend", "wasm", "--workers", "1",
      "--set", "training.objective=denoise", "--set", "training.init_output_bias=zeros", "--set", "training.max_steps=4", "--set", "training.eval_every=0", "--set", "training.save_every=0",
      "--set", "model.num_hidden_layers=1", "--set", "model.hidden_size=16", "--set", "model.num_attention_heads=2", "--set", "model.intermediate_size=32",
      "--set", "data.max_length=32", "--set", "model.max_position_embeddings=32", "--set", "training.eval_cells=32",
    ]);
    const ck = at("model/final");
    await main(["embed", "-c", ck, "-i", mine, "--layer", "counts", "-o", at("emb.arrow"), "--h5ad", at("mine_cellfm.h5ad"), "--backend", "wasm", "--quiet"]);
    await main([
      "assess", "-i", at("mine_cellfm.h5ad"), "--layer", "counts", "-e", at("mine_cellfm.h5ad"), "--obsm", "X_cellfm,X_pca",
      "--label", "cell_type", "--per-type", "30", "-o", at("assess"), "--backend", "wasm", "--quiet",
    ]);
    const metrics = JSON.parse(fs.readFileSync(at("assess/metrics.json"), "utf8"));
    expect(metrics.metrics.map((m: { name: string }) => m.name)).toEqual(expect.arrayContaining(["X_cellfm", "X_pca"]));
    await main(["denoise", "-c", ck, "-i", at("mine_cellfm.h5ad"), "--layer", "counts", "-o", at("mine_denoised.h5ad"), "--backend", "wasm", "--quiet"]);
    await main([
      "grn", "-c", ck, "-i", mine, "--layer", "counts", "--cell-type", "B", "--max-cells", "30", "--genes", "hvg:40",
      "-o", at("grn"), "--backend", "wasm", "--quiet",
    ]);
    expect(fs.existsSync(at("grn/grn.json"))).toBe(true);
    // cells from a 10x folder have no AnnData to copy: --h5ad holds obs and obsm only, still read without a warning
    await main(["tokenize", "-i", "data/tiny_mtx", "--obs", "data/tiny_mtx/tiny_labels.tsv", "--carry", "cell_type", "-o", at("tokens10x"), "--quiet"]);
    await main(["embed", "-c", ck, "-i", at("tokens10x"), "-o", at("e10x.arrow"), "--h5ad", at("e10x.h5ad"), "--backend", "wasm", "--quiet"]);
    if (py) {
      expect(readWithAnndata([at("e10x.h5ad")])[0]).toMatch(/ 300 0 X_cellfm  object/);
      const lines = readWithAnndata([at("mine_cellfm.h5ad"), at("mine_denoised.h5ad")]);
      expect(lines[0]).toMatch(/2638 13714 X_cellfm,X_pca counts category/);
      expect(lines[1]).toMatch(/2638 13714 X_cellfm,X_pca counts,denoised category/);
    }
  }, 300_000);
});
