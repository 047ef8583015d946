import { describe, it, expect, beforeAll } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../../src/backend.js";
import { tokenizeToDataset } from "../../src/tokenize/run.js";
import { train } from "../../src/train/loop.js";
import { parseTrainConfig } from "../../src/train/config.js";
import { poolCells } from "../../src/model/cell-heads.js";
import { readCheckpoint } from "../../src/model/checkpoint.js";
import { embedCells } from "../../src/embed/embed.js";
import { embedToFile } from "../../src/embed/run.js";
import { readEmbeddings } from "../../src/data/embeddings.js";
import { readTokenizedDataset } from "../../src/data/tokenized.js";
import { readSafetensors, toFloat32 } from "../../src/model/safetensors.js";
import { batchCovariate } from "../../src/train/objectives/cell.js";
import { TINY_MODEL } from "./helpers.js";

let root: string;
let tokens: string;

beforeAll(async () => {
  await initBackend("wasm");
  root = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-cellobj-"));
  tokens = path.join(root, "tokens");
  // the 300 real PBMCs of data/tiny.h5ad as rank tokens (every expressed gene with its count)
  await tokenizeToDataset({ input: "data/tiny.h5ad", output: tokens, modelVersion: "V1", carry: ["cell_type"], quiet: true });
}, 60_000);

function cfg(out: string, training: Record<string, unknown>, model: Record<string, unknown> = {}) {
  return parseTrainConfig(
    {
      model: { ...TINY_MODEL, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0, ...model },
      data: { tokens, max_length: 32, val_fraction: 0.2 },
      training: { batch_size: 16, max_tokens_per_batch: 1024, warmup_steps: 2, log_every: 2, seed: 7, bottleneck: { genes: 200 }, ...training },
      output: { dir: path.join(root, out) },
      backend: "wasm",
    },
    "test.yaml",
  );
}

describe("poolCells", () => {
  it("mean and max over real tokens only, cls = position 0; max's gradient reaches the maximal token", () => {
    // 2 cells × 3 positions × 2 units; cell 1 has one padded position holding a large value
    const h = tf.tensor2d([[1, 5], [3, 2], [2, 2], [4, 0], [0, 1], [9, 9]]);
    const w = tf.tensor2d([[1, 1, 1], [1, 1, 0]]);
    expect(Array.from(poolCells(h, w, "mean").dataSync())).toEqual([2, 3, 2, 0.5]);
    expect(Array.from(poolCells(h, w, "max").dataSync())).toEqual([3, 5, 4, 1]);
    expect(Array.from(poolCells(h, w, "cls").dataSync())).toEqual([1, 5, 4, 0]);
    const g = tf.grad((x: tf.Tensor) => tf.sum(poolCells(x as tf.Tensor2D, w, "max")))(h);
    expect(Array.from(g.dataSync())).toEqual([0, 1, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0]);
  });
});

describe("cellfm train with training.objectives", () => {
  it("rejects unknown objectives, two token objectives, all-zero weights and bottleneck on --top-genes tokens", () => {
    expect(() => cfg("x", { max_steps: 1, objectives: { bottlenek: 1 } })).toThrow(/training\.objectives\.bottlenek: unknown objective \(choose from mlm, denoise, bottleneck, mvc/);
    expect(() => cfg("x", { max_steps: 1, objectives: { mlm: 1, denoise: 1 } })).toThrow(/give one token objective/);
    expect(() => cfg("x", { max_steps: 1, objectives: { mlm: 0, bottleneck: 0 } })).toThrow(/at least one objective a weight > 0/);
    expect(() => cfg("x", { max_steps: 1 }, { pooling: "sum" })).toThrow(/model\.pooling: expected one of mean \| max \| cls/);
  });

  it("bottleneck + max pooling: learns, eval.json and metrics.jsonl hold the term and its baseline, the checkpoint records pooling and genes, embed uses them", async () => {
    const r = await train(cfg("bn", { max_steps: 12, eval_every: 6, objectives: { bottleneck: 1 } }, { pooling: "max" }), { quiet: true });
    const ev = r.eval!;
    expect(ev.pooling).toBe("max");
    expect(Object.keys(ev.terms!)).toEqual(["bottleneck"]);
    const bn = ev.terms!.bottleneck;
    expect(bn.model_loss).toBeLessThan(bn.initial_loss!); // it learns
    expect(bn.baseline_name).toBe("per_gene_nb");
    expect(Number.isFinite(bn.baseline_loss)).toBe(true);
    const rows = fs.readFileSync(path.join(r.outputDir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(rows[0].val_bottleneck).toBeTypeOf("number");
    expect(rows.find((x) => x.step === 6).val_bottleneck).toBeLessThan(rows[0].val_bottleneck);
    const ck = JSON.parse(fs.readFileSync(path.join(r.checkpoint, "config.json"), "utf8"));
    expect(ck.cellfm.cell.pooling).toBe("max");
    expect(ck.cellfm.cell.objectives).toEqual({ bottleneck: 1 });
    expect(ck.cellfm.cell.bottleneck.genes).toHaveLength(200);
    expect(ck.cellfm.cell.bottleneck.likelihood).toBe("nb");
    // embed: max pooling of the last layer by default; --pool overrides
    const f = path.join(root, "bn.arrow");
    const s = await embedToFile({ checkpoint: r.checkpoint, input: tokens, output: f, quiet: true, workers: 1 });
    expect(s.pool).toBe("max");
    expect(s.layer).toBe(0);
    const m = await embedToFile({ checkpoint: r.checkpoint, input: tokens, output: path.join(root, "bn-mean.arrow"), pool: "mean", quiet: true, workers: 1 });
    expect(m.pool).toBe("mean");
    expect(readEmbeddings(f).data).not.toEqual(readEmbeddings(path.join(root, "bn-mean.arrow")).data);
  }, 120_000);

  it("max-pooled embeddings do not depend on batch composition or padding (< 1e-5)", async () => {
    const r = await train(cfg("bn2", { max_steps: 2, objectives: { bottleneck: 1 } }, { pooling: "max" }), { quiet: true });
    const ck = readCheckpoint(r.checkpoint);
    const ds = readTokenizedDataset(tokens);
    const cells = ds.inputIds.slice(0, 12).map((c) => c.slice(0, 20 + (c.length % 12)));
    const all = embedCells(ck.model, cells, { pool: "max", layer: 0 });
    const one = embedCells(ck.model, [cells[5]], { pool: "max", layer: 0 });
    const small = embedCells(ck.model, cells, { pool: "max", layer: 0, maxTokensPerBatch: 40 });
    const H = ck.config.hidden_size;
    for (let j = 0; j < H; j++) expect(Math.abs(all[5 * H + j] - one[j])).toBeLessThan(1e-5);
    for (let i = 0; i < all.length; i++) expect(Math.abs(all[i] - small[i])).toBeLessThan(1e-5);
    ck.model.dispose();
  }, 60_000);

  it("mlm + bottleneck: workers 2 gives the losses of workers 1, and both terms are evaluated", async () => {
    const one = await train(cfg("mb1", { max_steps: 4, objectives: { mlm: 1, bottleneck: 0.5 }, workers: 1 }, { pooling: "max" }), { quiet: true });
    const two = await train(cfg("mb2", { max_steps: 4, objectives: { mlm: 1, bottleneck: 0.5 }, workers: 2 }, { pooling: "max" }), { quiet: true });
    for (let i = 0; i < 4; i++) expect(Math.abs(two.losses[i] - one.losses[i])).toBeLessThan(1e-4);
    // each term's training value in metrics.jsonl: loss = Σ weight × term, the same with 2 workers
    const trainRows = (r: { outputDir: string }) =>
      fs.readFileSync(path.join(r.outputDir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((x) => x.loss !== undefined);
    const [r1, r2] = [trainRows(one), trainRows(two)];
    expect(r1.map((x) => x.step)).toEqual([2, 4]);
    r1.forEach((x, i) => {
      expect(x.train_mlm).toBeGreaterThan(0);
      expect(x.train_bottleneck).toBeGreaterThan(0);
      expect(Math.abs(x.loss - (x.train_mlm + 0.5 * x.train_bottleneck))).toBeLessThan(1e-5);
      expect(Math.abs(r2[i].train_mlm - x.train_mlm)).toBeLessThan(1e-4);
      expect(Math.abs(r2[i].train_bottleneck - x.train_bottleneck)).toBeLessThan(1e-4);
    });
    const t = one.eval!.terms!;
    expect(Object.keys(t)).toEqual(["mlm", "bottleneck"]);
    expect(t.mlm.weight).toBe(1);
    expect(t.bottleneck.weight).toBe(0.5);
    expect(one.eval!.model_loss).toBeCloseTo(t.mlm.model_loss + 0.5 * t.bottleneck.model_loss, 2);
    expect(t.mlm.baseline_name).toBe("unigram");
  }, 120_000);
});

// tiny.h5ad holds one batch; its cell_type column (6 values) stands in for a batch column here
describe("training.bottleneck.batch_key: the decoder conditioned on the batch (scvi-tools batch_key)", () => {
  it("names a missing or single-valued column, with the tokens folder and the fix", () => {
    const ds = { cellIds: ["a", "b", "c"], obs: { index: ["a", "b", "c"], columns: { study: ["s2", "s1", "s2"], one: ["x", "x", "x"] } } };
    expect(batchCovariate("study", ds, "tok")).toEqual({ key: "study", categories: ["s1", "s2"], codes: Int32Array.from([1, 0, 1]) });
    expect(() => batchCovariate("batch", ds, "tok")).toThrow('training.bottleneck.batch_key: tok carries no obs column "batch" (carried: study, one); re-tokenize with --carry batch');
    expect(() => batchCovariate("one", ds, "tok")).toThrow(/obs column "one" of tok has a single value \(x\)/);
  });

  it("linear decoder + ZINB: learns per-batch offsets, records the batches in the checkpoint; workers 2 gives the losses of workers 1", async () => {
    const bn = { genes: 200, likelihood: "zinb", decoder: "linear", batch_key: "cell_type" };
    const one = await train(cfg("bk1", { max_steps: 4, lr: 3e-3, objectives: { bottleneck: 1 }, bottleneck: bn, workers: 1 }, { pooling: "max" }), { quiet: true });
    const two = await train(cfg("bk2", { max_steps: 4, lr: 3e-3, objectives: { bottleneck: 1 }, bottleneck: bn, workers: 2 }, { pooling: "max" }), { quiet: true });
    for (let i = 0; i < 4; i++) expect(Math.abs(two.losses[i] - one.losses[i])).toBeLessThan(1e-4);
    const plain = await train(cfg("bk0", { max_steps: 4, lr: 3e-3, objectives: { bottleneck: 1 }, bottleneck: { ...bn, batch_key: undefined }, workers: 1 }, { pooling: "max" }), { quiet: true });
    expect(plain.losses[0]).toBeCloseTo(one.losses[0], 6); // the batch weights start at zero
    expect(plain.losses[3]).not.toBeCloseTo(one.losses[3], 6);
    const ck = JSON.parse(fs.readFileSync(path.join(one.checkpoint, "config.json"), "utf8"));
    expect(ck.cellfm.cell.bottleneck.batch_key).toBe("cell_type");
    expect(ck.cellfm.cell.bottleneck.batches).toEqual(["B", "CD14+ Mono", "CD8 T", "FCGR3A+ Mono", "NK", "Naive CD4 T"]);
    const st = readSafetensors(path.join(one.checkpoint, "model.safetensors"));
    for (const name of ["cls.bottleneck.decoder.batch.weight", "cls.bottleneck.dropout.batch.weight"]) {
      const w = toFloat32(st.tensors[name], name);
      expect(st.tensors[name].shape).toEqual([6, 200]);
      expect(w.some((x) => x !== 0)).toBe(true);
    }
    // the checkpoint loads (the batch weights' shapes come from the recorded batches) and embeds
    const f = path.join(root, "bk.arrow");
    expect((await embedToFile({ checkpoint: one.checkpoint, input: tokens, output: f, quiet: true, workers: 1 })).pool).toBe("max");
  }, 180_000);

  it("mlp decoder: --resume is exact (4 steps + --resume + 4 == 8 straight)", async () => {
    const tr = { max_steps: 8, lr: 3e-3, save_every: 4, objectives: { bottleneck: 1 }, bottleneck: { genes: 200, decoder: "mlp", batch_key: "cell_type" }, workers: 1 };
    const straight = await train(cfg("bkr0", tr, { pooling: "max" }), { quiet: true });
    const c = cfg("bkr", tr, { pooling: "max" });
    await train(c, { quiet: true, stopAfter: 4, handleSigint: false });
    const rest = await train(c, { quiet: true, resume: true, handleSigint: false });
    expect(rest.losses).toEqual(straight.losses.slice(4));
    const st = readSafetensors(path.join(straight.checkpoint, "model.safetensors"));
    expect(st.tensors["cls.bottleneck.transform.batch.weight"].shape).toEqual([6, 32]);
  }, 180_000);
});
