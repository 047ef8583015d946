/**
 * `cellfm denoise` on real cells (data/tiny.h5ad, 300 PBMCs): a tiny counts + denoise model trained
 * a few steps writes layers["denoised"] with X's cells, genes and nonzero pattern, finite and >= 0,
 * X unchanged, summing per context to the observed counts; an MLM checkpoint is refused by name.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import h5wasm from "h5wasm/node";
import type { Dataset as H5Dataset, Group as H5Group } from "h5wasm/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { h5Ready, openH5ad } from "../../src/data/h5ad.js";
import { cellContexts, denoiseToFile } from "../../src/denoise/run.js";
import { tokenizeToDataset } from "../../src/tokenize/run.js";
import { readTokenizedDataset } from "../../src/data/tokenized.js";
import { train } from "../../src/train/loop.js";
import { parseTrainConfig } from "../../src/train/config.js";
import { TINY_MODEL } from "../train/helpers.js";

let root: string;
const ckpt: Record<string, string> = {};
const cfg = (tok: string, out: string, objective: string) =>
  parseTrainConfig(
    {
      model: { ...TINY_MODEL, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 },
      data: { tokens: tok, max_length: 64, val_fraction: 0.2 },
      training: { objective, batch_size: 16, max_tokens_per_batch: 1024, warmup_steps: 1, log_every: 5, seed: 7, lr: 3e-3, max_steps: 3 },
      output: { dir: path.join(root, out) },
      backend: "wasm",
    },
    "test.yaml",
  );

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-denoise-"));
  for (const [enc, objective] of [["counts", "denoise"], ["binned", "mlm"]] as const) {
    const tok = path.join(root, enc);
    await tokenizeToDataset({ input: "data/tiny.h5ad", output: tok, modelVersion: "V1", encoding: enc, quiet: true, hashSource: false });
    ckpt[enc] = (await train(cfg(tok, `run-${enc}`, objective), { quiet: true, handleSigint: false })).checkpoint;
  }
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function readCsr(file: string, key: string): { indptr: number[]; indices: Int32Array; data: Float32Array; shape: number[] } {
  const h5 = new h5wasm.File(file, "r");
  try {
    const g = h5.get(key) as H5Group;
    const shape = Array.from((g.attrs["shape"].value as BigInt64Array), Number);
    return {
      indptr: Array.from((g.get("indptr") as H5Dataset).value as ArrayLike<number | bigint>, Number),
      indices: Int32Array.from((g.get("indices") as H5Dataset).value as ArrayLike<number>),
      data: Float32Array.from((g.get("data") as H5Dataset).value as ArrayLike<number>),
      shape,
    };
  } finally {
    h5.close();
  }
}

describe("cellfm denoise", () => {
  it("writes layers['denoised'] (X's shape and nonzero pattern, finite, >= 0), keeps X, marks the genes in the vocabulary", async () => {
    const out = path.join(root, "den.h5ad");
    const s = await denoiseToFile({ checkpoint: ckpt.counts, input: "data/tiny.h5ad", output: out, backend: "wasm", quiet: true });
    await h5Ready();
    const src = await openH5ad("data/tiny.h5ad");
    const X: { row: number; col: number; x: number }[] = [];
    for (const ch of src.chunks(512)) {
      for (let r = 0; r < ch.nCells; r++) for (let e = ch.indptr[r]; e < ch.indptr[r + 1]; e++) X.push({ row: ch.start + r, col: ch.indices[e], x: ch.data[e] });
    }
    expect(s.nCells).toBe(src.nCells);
    expect(s.nGenes).toBe(src.nGenes);
    const d = readCsr(out, "layers/denoised");
    expect(d.shape).toEqual([src.nCells, src.nGenes]);
    expect(d.data.length).toBe(X.length);
    expect(d.indptr.length).toBe(src.nCells + 1);
    let changed = 0, badCol = 0, bad = 0;
    X.forEach((e, i) => {
      if (d.indices[i] !== e.col) badCol++;
      if (!(Number.isFinite(d.data[i]) && d.data[i] >= 0)) bad++;
      if (Math.abs(d.data[i] - e.x) > 1e-3) changed++;
    });
    expect(badCol).toBe(0);
    expect(bad).toBe(0);
    expect(changed).toBeGreaterThan(X.length / 4); // the model's means, not a copy of X
    expect(s.entriesDenoised).toBeGreaterThan(0);
    expect(s.entriesDenoised + s.entriesKept).toBe(X.length);
    // each cell's context genes sum to their observed total (tiny cells have < 64 genes: one context)
    const inVocab = await openH5ad(out);
    const col = inVocab.var.columns["denoised_in_context"] as Float64Array;
    expect(col.length).toBe(src.nGenes);
    expect(col.reduce((a, b) => a + b, 0)).toBe(s.genesInContext);
    const cell0 = X.filter((e) => e.row === 0);
    let obs0 = 0, den0 = 0;
    cell0.forEach((e, j) => {
      if (col[e.col]) {
        obs0 += e.x;
        den0 += d.data[j];
      }
    });
    // X of the output equals the input's
    let k = 0, diff = 0;
    for (const ch of inVocab.chunks(512)) for (const x of ch.data) if (x !== X[k++].x) diff++;
    expect(k).toBe(X.length);
    expect(diff).toBe(0);
    inVocab.close();
    src.close();
    expect(Math.abs(den0 - obs0) / obs0).toBeLessThan(1e-4);
    await expect(denoiseToFile({ checkpoint: ckpt.counts, input: "data/tiny.h5ad", output: out, backend: "wasm", quiet: true })).rejects.toThrow(/already exists; pass --force/);
    await expect(denoiseToFile({ checkpoint: ckpt.counts, input: out, output: path.join(root, "again.h5ad"), backend: "wasm", quiet: true })).rejects.toThrow(
      /already has layers\["denoised"\]/,
    );
  });

  it("a model trained on --top-genes K tokens records K and denoises each cell's K top-ranked genes only", async () => {
    const tok = path.join(root, "counts-top");
    await tokenizeToDataset({ input: "data/tiny.h5ad", output: tok, modelVersion: "V1", encoding: "counts", topGenes: 16, quiet: true, hashSource: false });
    const ck = (await train(cfg(tok, "run-counts-top", "denoise"), { quiet: true, handleSigint: false })).checkpoint;
    const meta = JSON.parse(fs.readFileSync(path.join(ck, "config.json"), "utf8")).cellfm;
    expect(meta.top_genes).toBe(16);
    const s = await denoiseToFile({ checkpoint: ck, input: "data/tiny.h5ad", output: path.join(root, "den-top.h5ad"), backend: "wasm", quiet: true });
    const ds = readTokenizedDataset(tok);
    const want = ds.inputIds.reduce((a, ids) => a + ids.length, 0); // the K top genes of every cell (all of them when fewer)
    expect(want).toBeLessThan(16 * ds.inputIds.length + 1);
    expect(s.entriesDenoised).toBe(want);
    // the same data without the selection: every expressed vocabulary gene is denoised
    const all = await denoiseToFile({ checkpoint: ckpt.counts, input: "data/tiny.h5ad", output: path.join(root, "den-all.h5ad"), backend: "wasm", quiet: true });
    expect(all.entriesDenoised).toBeGreaterThan(2 * want);
  });

  it("refuses a checkpoint not trained to denoise, naming its objective; nothing is written", async () => {
    const out = path.join(root, "mlm.h5ad");
    await expect(denoiseToFile({ checkpoint: ckpt.binned, input: "data/tiny.h5ad", output: out, backend: "wasm", quiet: true })).rejects.toThrow(
      /trained with objective "mlm" \(encoding scgpt-binned\); cellfm denoise needs a checkpoint trained with training.objective: denoise/,
    );
    expect(fs.existsSync(out)).toBe(false);
  });

  it("splits a cell with more genes than the context into seeded parts covering every gene once", () => {
    const n = 150;
    const ids = Int32Array.from({ length: n }, (_, i) => 10 + i);
    const counts = Float32Array.from({ length: n }, (_, i) => 1 + (i % 5));
    const a = cellContexts(ids, counts, counts, "cellA", "scprint-counts", 64);
    expect(a.inputs.map((x) => x.ids.length)).toEqual([50, 50, 50]);
    const seen = new Set<number>();
    for (const x of a.inputs) for (const t of x.ids) seen.add(t);
    expect(seen.size).toBe(n);
    expect(cellContexts(ids, counts, counts, "cellA", "scprint-counts", 64).inputs[0].ids).toEqual(a.inputs[0].ids);
    expect(cellContexts(ids, counts, counts, "cellB", "scprint-counts", 64).inputs[0].ids).not.toEqual(a.inputs[0].ids);
    // rank: the top genes only, special tokens (count 0) left out
    const r = cellContexts(Int32Array.from([2, 5, 6, 7]), new Float32Array(4), Float32Array.from([0, 3, 2, 1]), "c", "geneformer-rank-value", 2);
    expect(Array.from(r.inputs[0].ids)).toEqual([5, 6]);
    expect(r.inputs[0].libSize).toBe(5);
  });
});
