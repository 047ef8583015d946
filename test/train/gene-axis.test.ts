/**
 * The gene axis of training (issue 9 §4) on real cells (data/tiny.h5ad, 300 PBMCs, counts encoding):
 * external gene vectors (frozen / trainable, missing genes learned / dropped, saved in the checkpoint),
 * the genomic-position encoding, and held-out genes (never in a training batch; scored in eval.json).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initBackend } from "../../src/backend.js";
import { readEmbeddings } from "../../src/data/embeddings.js";
import { readGenomicPositions, tokenPositionTable } from "../../src/data/genomic-positions.js";
import { readTokenizedDataset } from "../../src/data/tokenized.js";
import { embedCells } from "../../src/embed/embed.js";
import { embedToFile } from "../../src/embed/run.js";
import { readCheckpoint } from "../../src/model/checkpoint.js";
import { buildModel } from "../../src/model/factory.js";
import { GENE_HAS_VECTOR, GENE_VECTORS, GENOMIC_POSITIONS, GeneValueEmbeddings } from "../../src/model/value-model.js";
import { makeRng } from "../../src/rng.js";
import { tokenizeToDataset } from "../../src/tokenize/run.js";
import { denoiseToFile } from "../../src/denoise/run.js";
import { openH5ad } from "../../src/data/h5ad.js";
import { loadGeneformerDictionaries } from "../../src/tokenize/dictionaries.js";
import { loadTrainConfig, parseTrainConfig } from "../../src/train/config.js";
import { train } from "../../src/train/loop.js";
import { cellSamplingRng, sampleGenes } from "../../src/encoding/gene-set.js";
import type { CollatedBatch } from "../../src/train/objectives/index.js";
import { TINY_MODEL } from "./helpers.js";

let root: string;
let tokens: string;
let rankTokens: string;
let binnedTokens: string;
/** gene vector file: 8-d seeded random vectors for ~85% of the dataset's genes (Ensembl ids). */
let vecFile: string;
let fileVectors: Map<number, Float32Array>;
const DIM = 8;

beforeAll(async () => {
  await initBackend("wasm");
  root = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-geneaxis-"));
  tokens = path.join(root, "counts");
  rankTokens = path.join(root, "rank");
  await tokenizeToDataset({ input: "data/tiny.h5ad", output: tokens, modelVersion: "V1", encoding: "counts", quiet: true, hashSource: false });
  await tokenizeToDataset({ input: "data/tiny.h5ad", output: rankTokens, modelVersion: "V1", encoding: "rank", quiet: true, hashSource: false });
  binnedTokens = path.join(root, "binned");
  await tokenizeToDataset({ input: "data/tiny.h5ad", output: binnedTokens, modelVersion: "V1", encoding: "binned", quiet: true, hashSource: false });
  const ds = readTokenizedDataset(tokens);
  const byId = new Map<number, string>();
  for (const [g, t] of loadGeneformerDictionaries("V1").tokens) byId.set(t, g);
  const rng = makeRng("gene-axis-test");
  fileVectors = new Map();
  const lines = ["gene_id\t" + Array.from({ length: DIM }, (_, j) => `d${j}`).join("\t")];
  for (const t of ds.manifest.measured_tokens!) {
    if (rng() < 0.15) continue; // ~15% without a vector
    const v = Float32Array.from({ length: DIM }, () => rng() * 2 - 1);
    fileVectors.set(t, v);
    lines.push(`${byId.get(t)}\t${Array.from(v, (x) => x.toFixed(6)).join("\t")}`);
  }
  vecFile = path.join(root, "genes.tsv");
  fs.writeFileSync(vecFile, lines.join("\n") + "\n");
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const cfg = (out: string, model: Record<string, unknown>, data: Record<string, unknown> = {}, tok = tokens, training: Record<string, unknown> = {}) =>
  parseTrainConfig(
    {
      model: { ...TINY_MODEL, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0, ...model },
      data: { tokens: tok, max_length: 64, val_fraction: 0.2, ...data },
      training: { objective: "denoise", batch_size: 16, max_tokens_per_batch: 1024, max_steps: 3, log_every: 5, seed: 7, lr: 3e-3, ...training },
      output: { dir: path.join(root, out) },
      backend: "wasm",
    },
    "test.yaml",
  );

function tensorOf(dir: string, name: string): Float32Array {
  const ck = readCheckpoint(dir);
  try {
    return ck.model.weights.get(name)!.dataSync().slice() as Float32Array;
  } finally {
    ck.model.dispose();
  }
}

describe("model.gene_embeddings, model.genomic_positions, data.split.genes", () => {
  it("the config: a path or a mapping (defaults frozen, learned), split.cells = val_fraction, bad keys named", () => {
    const a = cfg("x", { gene_embeddings: "genes.tsv" });
    expect(a.model.gene_embeddings).toEqual({ path: path.resolve("genes.tsv"), trainable: false, missing: "learned" });
    expect(a.data.split).toEqual({ cells: 0.2, genes: 0 });
    const b = cfg("x", { gene_embeddings: { path: "g.arrow", trainable: true, missing: "drop" }, genomic_positions: true }, { val_fraction: undefined, split: { cells: 0.1, genes: 0.1 } });
    expect(b.model.gene_embeddings).toMatchObject({ trainable: true, missing: "drop" });
    expect(b.model.genomic_positions).toBe(true);
    expect(cfg("x", { genomic_positions: { scale: 0.1 } }).model.genomic_positions).toEqual({ scale: 0.1 });
    expect(b.data.val_fraction).toBe(0.1);
    const demo = loadTrainConfig("configs/gene-axis-demo.yaml");
    expect(demo.model.gene_embeddings?.path).toBe(path.resolve("data/genes/pca16_pbmc4k.tsv"));
    expect(demo.data.split).toEqual({ cells: 0.1, genes: 0.1 });
    expect(() => cfg("x", { gene_embeddings: "g.csv" })).toThrow(/model\.gene_embeddings\.path: expected a \.tsv or \.arrow file/);
    expect(() => cfg("x", { gene_embeddings: { path: "g.tsv", missing: "zero" } })).toThrow(/model\.gene_embeddings\.missing: expected one of learned \| drop/);
    expect(() => cfg("x", { genomic_positions: "yes" })).toThrow(/model\.genomic_positions: expected true, false or \{ scale: <positive number> \}/);
    expect(() => cfg("x", {}, { split: { cells: 0.3 } })).toThrow(/data\.split\.cells: 0\.3 conflicts with data\.val_fraction 0\.2/);
    expect(() => cfg("x", {}, { val_fraction: undefined, split: { cells: 0, genes: 0.1 } })).toThrow(/data\.split\.genes: held-out genes are scored on held-out cells/);
  });

  it("a bad gene-embedding file fails before training, naming the key and the line; rank tokens are refused", async () => {
    const bad = path.join(root, "bad.tsv");
    fs.writeFileSync(bad, "ENSG00000187634\t1\t2\t3\nENSG00000188976\t1\t2\n");
    await expect(train(cfg("bad1", { gene_embeddings: bad }), { quiet: true, handleSigint: false })).rejects.toThrow(
      /test\.yaml: model\.gene_embeddings\.path: .*bad\.tsv:2: gene ENSG00000188976 has 2 values, expected 3/,
    );
    fs.writeFileSync(bad, "ENSG00000187634\t1\t2\nENSG00000187634\t1\t2\n");
    await expect(train(cfg("bad2", { gene_embeddings: bad }), { quiet: true, handleSigint: false })).rejects.toThrow(/bad\.tsv:2: duplicate gene ENSG00000187634 \(first on line 1\)/);
    fs.writeFileSync(bad, "ENSG00000187634\t1\tx\n");
    await expect(train(cfg("bad3", { gene_embeddings: bad }), { quiet: true, handleSigint: false })).rejects.toThrow(/bad\.tsv:1: gene ENSG00000187634, value 2 "x" is not a finite number/);
    await expect(train(cfg("bad4", { gene_embeddings: path.join(root, "none.tsv") }), { quiet: true, handleSigint: false })).rejects.toThrow(/model\.gene_embeddings\.path: .*none\.tsv: gene-embeddings file not found/);
    for (const d of ["bad1", "bad2", "bad3", "bad4"]) expect(fs.existsSync(path.join(root, d))).toBe(false); // nothing written
    await expect(
      train(cfg("bad5", { genomic_positions: true }, {}, rankTokens, { objective: "mlm" }), { quiet: true, handleSigint: false }),
    ).rejects.toThrow(/model\.genomic_positions: only for the binned and counts encodings/);
  });

  it("frozen vectors + genomic positions + held-out genes: table unchanged, held-out genes in no training batch, eval.json scores them; the checkpoint embeds without the file", async () => {
    const own = path.join(root, "own.tsv");
    fs.copyFileSync(vecFile, own);
    const seen = new Set<number>();
    const r = await train(cfg("frozen", { gene_embeddings: own, genomic_positions: { scale: 0.5 } }, { split: { genes: 0.2 } }), {
      quiet: true,
      handleSigint: false,
      onBatch: (b: CollatedBatch) => {
        for (let i = 0; i < b.inputIds.length; i++) if (b.attentionMask[i] > 0) seen.add(b.inputIds[i]);
      },
    });
    const run = JSON.parse(fs.readFileSync(path.join(r.outputDir, "run.json"), "utf8"));
    const held: number[] = run.held_out_genes;
    expect(held.length).toBeGreaterThan(10);
    for (const g of held) {
      expect(seen.has(g)).toBe(false); // never in a training context
      expect(fileVectors.has(g)).toBe(true); // only genes with a vector are held out
    }
    const ev = JSON.parse(fs.readFileSync(path.join(r.outputDir, "eval.json"), "utf8"));
    const nGenes = readTokenizedDataset(tokens).manifest.measured_tokens!.length;
    expect(ev.gene_axis).toMatchObject({ n_dataset_genes: nGenes, n_with_vector: fileVectors.size, n_without_vector: nGenes - fileVectors.size, missing: "learned", n_held_out_genes: held.length });
    expect(ev.gene_axis.n_placed + ev.gene_axis.n_unplaced).toBe(nGenes);
    const h = ev.held_out_genes;
    expect(h.n_genes).toBe(held.length);
    expect(h.n_positions).toBeGreaterThan(0);
    for (const k of ["model_loss", "baseline_loss", "initial_loss", "improvement"]) expect(Number.isFinite(h[k])).toBe(true);
    expect(h.baseline_name).toBe("per_gene_nb");

    // the frozen table is the file's vectors (one global scale), unchanged by training, inside the checkpoint
    const cfgJson = JSON.parse(fs.readFileSync(path.join(r.checkpoint, "config.json"), "utf8"));
    const ge = cfgJson.cellfm.gene_embeddings;
    expect(ge).toMatchObject({ dim: DIM, trainable: false, missing: "learned", source: "own.tsv" });
    expect(ge.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(cfgJson.cellfm.genomic_positions).toMatchObject({ n_placed: ev.gene_axis.n_placed, scale: 0.5, same_position_bp: 10000 });
    const H = TINY_MODEL.hidden_size;
    const sin = tokenPositionTable(loadGeneformerDictionaries("V1").tokens, 25426, H, readGenomicPositions()).table;
    const pe = tensorOf(r.checkpoint, GENOMIC_POSITIONS);
    for (const t of held.slice(0, 20)) for (let j = 0; j < H; j++) expect(pe[t * H + j]).toBeCloseTo(0.5 * sin[t * H + j], 6);
    const table = tensorOf(r.checkpoint, GENE_VECTORS);
    const has = tensorOf(r.checkpoint, GENE_HAS_VECTOR);
    for (const [t, v] of [...fileVectors].slice(0, 50)) {
      expect(has[t]).toBe(1);
      for (let j = 0; j < DIM; j++) expect(table[t * DIM + j]).toBeCloseTo(v[j] * ge.scale, 5);
    }

    // embed from the checkpoint alone (file gone) = the loaded model's embeddings
    fs.rmSync(own);
    const out = path.join(root, "frozen.arrow");
    await embedToFile({ checkpoint: r.checkpoint, input: tokens, output: out, quiet: true, backend: "wasm" });
    const e = readEmbeddings(out);
    const ck = readCheckpoint(r.checkpoint);
    const ds = readTokenizedDataset(tokens);
    // the contexts embed uses: a subset of max_position_embeddings genes seeded by the cell id
    const ctx = [0, 1, 2].map((i) => sampleGenes(ds.inputIds[i], ds.values![i], { maxLength: 64 }, cellSamplingRng(0, ds.cellIds[i])));
    const mine = embedCells(ck.model, ctx.map((c) => c.ids), { values: ctx.map((c) => c.values) });
    ck.model.dispose();
    for (let k = 0; k < 3 * H; k++) expect(Math.abs(e.data[k] - mine[k])).toBeLessThan(1e-5);
    expect(e.data.every((x) => Number.isFinite(x))).toBe(true);
  });

  it("trainable vectors change; missing: drop removes genes without a vector from training and embedding", async () => {
    const seen = new Set<number>();
    const r = await train(cfg("trainable", { gene_embeddings: { path: vecFile, trainable: true, missing: "drop" } }), {
      quiet: true,
      handleSigint: false,
      onBatch: (b) => {
        for (let i = 0; i < b.inputIds.length; i++) if (b.attentionMask[i] > 0) seen.add(b.inputIds[i]);
      },
    });
    for (const g of seen) expect(fileVectors.has(g)).toBe(true);
    const ck = readCheckpoint(r.checkpoint);
    expect(ck.model.weights.has("bert.embeddings.word_embeddings.weight")).toBe(false); // no learned row for anyone
    const table = ck.model.weights.get(GENE_VECTORS)!.dataSync();
    const scale = (ck.cellfm.gene_embeddings as { scale: number }).scale;
    let maxDiff = 0;
    for (const [t, v] of fileVectors) for (let j = 0; j < DIM; j++) maxDiff = Math.max(maxDiff, Math.abs(table[t * DIM + j] - v[j] * scale));
    expect(maxDiff).toBeGreaterThan(1e-4); // trained
    ck.model.dispose();
    const out = path.join(root, "drop.arrow");
    const s = await embedToFile({ checkpoint: r.checkpoint, input: tokens, output: out, quiet: true, backend: "wasm" });
    expect(s.nCells).toBe(300);
    // cellfm denoise leaves genes without a vector out of every context: they keep their observed counts
    const den = path.join(root, "drop-denoised.h5ad");
    const d = await denoiseToFile({ checkpoint: r.checkpoint, input: "data/tiny.h5ad", output: den, backend: "wasm", quiet: true });
    const tokenOf = loadGeneformerDictionaries("V1").tokens;
    const outFile = await openH5ad(den);
    const inCtx = outFile.var.columns["denoised_in_context"] as ArrayLike<number>;
    let dropped = 0;
    outFile.var.index.forEach((g, c) => {
      const t = tokenOf.get(g);
      if (inCtx[c]) expect(t !== undefined && fileVectors.has(t)).toBe(true);
      else if (t !== undefined && !fileVectors.has(t)) dropped++;
    });
    expect(dropped).toBeGreaterThan(0);
    expect(d.genesInContext).toBeGreaterThan(0);
    outFile.close();
  });

  it("binned + mlm with gene vectors and held-out genes: eval.json scores the held-out genes' masked bins; --resume stays exact", async () => {
    const r = await train(cfg("binned-run", { gene_embeddings: vecFile, genomic_positions: true }, { split: { genes: 0.2 } }, binnedTokens, { objective: "mlm", max_steps: 2 }), {
      quiet: true,
      handleSigint: false,
    });
    const h = r.eval!.held_out_genes!;
    expect(h.baseline_name).toBe("bin_frequency");
    expect(h.n_positions).toBeGreaterThan(0);
    expect(Number.isFinite(h.model_loss)).toBe(true);
    const c = cfg("resume", { gene_embeddings: vecFile, genomic_positions: true }, { split: { genes: 0.2 } }, tokens, { max_steps: 4, save_every: 2 });
    const straight = await train(cfg("resume0", { gene_embeddings: vecFile, genomic_positions: true }, { split: { genes: 0.2 } }, tokens, { max_steps: 4 }), { quiet: true, handleSigint: false });
    const a = await train(c, { quiet: true, handleSigint: false, stopAfter: 2 });
    const b = await train(c, { quiet: true, handleSigint: false, resume: true });
    expect([...a.losses, ...b.losses]).toEqual(straight.losses);
  });

  it("workers 2 with a frozen table: the same losses as one worker, and the table still unchanged", async () => {
    const one = await train(cfg("w1", { gene_embeddings: vecFile, genomic_positions: true }, {}, tokens, { max_steps: 2, weight_decay: 0.1 }), { quiet: true, handleSigint: false });
    const two = await train(cfg("w2", { gene_embeddings: vecFile, genomic_positions: true }, {}, tokens, { max_steps: 2, weight_decay: 0.1, workers: 2 }), { quiet: true, handleSigint: false });
    two.losses.forEach((l, i) => expect(Math.abs(l - one.losses[i])).toBeLessThan(1e-4));
    const ck = readCheckpoint(two.checkpoint);
    const table = ck.model.weights.get(GENE_VECTORS)!.dataSync();
    const scale = (ck.cellfm.gene_embeddings as { scale: number }).scale;
    for (const [t, v] of [...fileVectors].slice(0, 50)) for (let j = 0; j < DIM; j++) expect(table[t * DIM + j]).toBeCloseTo(v[j] * scale, 5);
    ck.model.dispose();
  });

  it("genomic positions change the token states; genes sharing a position get the same table row", () => {
    const config = { ...TINY_MODEL, vocab_size: 25426, hidden_act: "relu" as const, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0, layer_norm_eps: 1e-12, pad_token_id: 0, type_vocab_size: 2, initializer_range: 0.02 };
    const spec = { encoding: "scprint-counts", objective: "denoise", head: { likelihood: "zinb" } };
    const plain = buildModel(config, spec, { seed: 3 });
    const withPos = buildModel(config, { ...spec, genomic_positions: true }, { seed: 3 });
    const dict = loadGeneformerDictionaries("V1").tokens;
    const tp = tokenPositionTable(dict, 25426, TINY_MODEL.hidden_size, readGenomicPositions());
    (withPos.embeddings as GeneValueEmbeddings).setGenomicPositions(tp.table);
    // two vocabulary genes sharing a genomic position
    const byPos = new Map<number, number>();
    let pair: [number, number] | undefined;
    for (const [, t] of dict) {
      const p = tp.positionOfToken[t];
      if (p === 0) continue;
      const o = byPos.get(p);
      if (o !== undefined && o !== t) {
        pair = [o, t];
        break;
      }
      byPos.set(p, t);
    }
    expect(pair).toBeDefined();
    const H = TINY_MODEL.hidden_size;
    const tab = withPos.weights.get(GENOMIC_POSITIONS)!.dataSync();
    for (let j = 0; j < H; j++) expect(tab[pair![0] * H + j]).toBe(tab[pair![1] * H + j]);
    expect(withPos.trainableVariables().length).toBe(plain.trainableVariables().length); // the table is fixed
    const cells = [Int32Array.from([pair![0], 500, 900]), Int32Array.from([pair![1], 500, 900])];
    const values = [Float32Array.from([3, 1, 2]), Float32Array.from([3, 1, 2])];
    const a = embedCells(plain, cells, { values, layer: -1 }); // layer −1 of 1 = the input embedding output
    const b = embedCells(withPos, cells, { values, layer: -1 });
    let diff = 0;
    for (let k = 0; k < a.length; k++) diff = Math.max(diff, Math.abs(a[k] - b[k]));
    expect(diff).toBeGreaterThan(1e-3);
    plain.dispose();
    withPos.dispose();
    expect(tf.memory().numTensors).toBeGreaterThan(0);
  });
});
