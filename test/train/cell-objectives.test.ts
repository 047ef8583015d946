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
import { buildModel } from "../../src/model/factory.js";
import { CLS_TOKEN } from "../../src/model/bert.js";
import { clsSourceOf } from "../../src/train/objectives/cell.js";
import { padRows } from "../../src/model/batch.js";
import { batchTensors, disposeBatch } from "../../src/train/grad-protocol.js";
import { DataParallel, shardBatch } from "../../src/train/parallel.js";
import type { CollatedBatch } from "../../src/train/objectives/types.js";

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

describe("the learned <cls>'s ops", () => {
  it("concat's gradient goes to each input's own slice (src/model/gradients.ts)", () => {
    const a = tf.tensor3d([[[1, 2]], [[3, 4]]]); // [2, 1, 2]
    const b = tf.tensor3d([[[5, 6], [7, 8]], [[9, 10], [11, 12]]]); // [2, 2, 2]
    const w = tf.tensor3d(Array.from({ length: 12 }, (_, i) => i + 1), [2, 3, 2]);
    const [ga, gb] = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.concat([x, y], 1), w)))([a, b]);
    expect(Array.from(ga.dataSync())).toEqual([1, 2, 7, 8]);
    expect(Array.from(gb.dataSync())).toEqual([3, 4, 5, 6, 9, 10, 11, 12]);
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

  it("cls pooling on V1 rank tokens: a learned <cls> is trained, stored in the checkpoint and read by embed; its embeddings do not depend on batch composition or padding; workers 2 = workers 1", async () => {
    const one = await train(cfg("cls1", { max_steps: 4, objectives: { mlm: 1, bottleneck: 1 }, workers: 1 }, { pooling: "cls" }), { quiet: true });
    const two = await train(cfg("cls2", { max_steps: 4, objectives: { mlm: 1, bottleneck: 1 }, workers: 2 }, { pooling: "cls" }), { quiet: true });
    for (let i = 0; i < 4; i++) expect(Math.abs(two.losses[i] - one.losses[i])).toBeLessThan(1e-4);
    expect(one.eval!.pooling).toBe("cls");
    const conf = JSON.parse(fs.readFileSync(path.join(one.checkpoint, "config.json"), "utf8"));
    expect(conf.cellfm.cell.cls).toBe("learned");
    const ck = readCheckpoint(one.checkpoint);
    const init = buildModel(ck.config, ck.model.spec, { seed: 7 });
    const clsW = ck.model.weights.get(CLS_TOKEN)!;
    expect(clsW.shape).toEqual([1, 32]);
    // trained: it moved from its initial value (the gradient reaches it through the bottleneck)
    expect(Array.from(clsW.dataSync())).not.toEqual(Array.from(init.weights.get(CLS_TOKEN)!.dataSync()));
    init.dispose();
    const ds = readTokenizedDataset(tokens);
    const cells = ds.inputIds.slice(0, 12).map((c) => c.slice(0, 20 + (c.length % 12)));
    const all = embedCells(ck.model, cells, { pool: "cls", layer: 0 });
    const alone = embedCells(ck.model, [cells[5]], { pool: "cls", layer: 0 });
    const small = embedCells(ck.model, cells, { pool: "cls", layer: 0, maxTokensPerBatch: 40 });
    const pos0 = embedCells(ck.model, [cells[5]], { pool: "mean", layer: 0 });
    const H = ck.config.hidden_size;
    for (let j = 0; j < H; j++) expect(Math.abs(all[5 * H + j] - alone[j])).toBeLessThan(1e-5);
    for (let i = 0; i < all.length; i++) expect(Math.abs(all[i] - small[i])).toBeLessThan(1e-5);
    expect(Array.from(alone)).not.toEqual(Array.from(pos0));
    // cellfm embed reads the pooling and the <cls> from the checkpoint; it cuts cells to max_position_embeddings (64)
    // gene tokens: the <cls> takes no position row, so a 64-token cell + <cls> runs
    const f = path.join(root, "cls.arrow");
    const s = await embedToFile({ checkpoint: one.checkpoint, input: tokens, output: f, quiet: true, workers: 1 });
    expect(s.pool).toBe("cls");
    const e = readEmbeddings(f);
    const first = ds.inputIds[0].slice(0, 64);
    expect(first.length).toBe(64);
    const direct = embedCells(ck.model, [first], { pool: "cls", layer: 0 });
    for (let j = 0; j < H; j++) expect(Math.abs(e.data[j] - direct[j])).toBeLessThan(1e-5);
    ck.model.dispose();
  }, 120_000);

  it("cls pooling on binned tokens: the learned <cls> has no value input; a checkpoint without cellfm.cell.cls still reads position 0", async () => {
    // Geneformer V2 rank tokens start with their own <cls>; every other encoding gets a learned one
    expect(clsSourceOf("geneformer-rank-value", "V2", 2)).toBe("token");
    expect(clsSourceOf("geneformer-rank-value", "V1", undefined)).toBe("learned");
    expect(clsSourceOf("scgpt-binned", "V2", 2)).toBe("learned");
    const binned = path.join(root, "binned");
    await tokenizeToDataset({ input: "data/tiny.h5ad", output: binned, modelVersion: "V1", encoding: "binned", quiet: true, hashSource: false });
    const c = cfg("clsb", { max_steps: 3, objectives: { mlm: 1, bottleneck: 1 } }, { pooling: "cls" });
    c.data.tokens = binned;
    const r = await train(c, { quiet: true });
    expect(Number.isFinite(r.eval!.terms!.bottleneck.model_loss)).toBe(true);
    const ck = readCheckpoint(r.checkpoint);
    expect(ck.model.spec.cell!.cls).toBe("learned");
    expect(ck.model.bert.cls).toBeDefined();
    // an older checkpoint's spec (no cls key): no learned <cls>, cls pooling reads position 0
    const { cls: _c, ...old } = ck.model.spec.cell!;
    const m = buildModel(ck.config, { ...ck.model.spec, cell: old }, { seed: 1 });
    expect(m.bert.cls).toBeUndefined();
    expect(m.weights.has(CLS_TOKEN)).toBe(false);
    m.dispose();
    ck.model.dispose();
  }, 120_000);

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

describe("data-parallel cell-level terms", () => {
  it("a shard without a masked token still gives its cells' bottleneck term: workers 2 = workers 1 in loss, terms and gradient", async () => {
    const ds = readTokenizedDataset(tokens);
    const genes = [...new Set(Array.from(ds.inputIds[0].slice(0, 30)))].sort((a, b) => a - b);
    const G = genes.length;
    const ids = ds.inputIds.slice(0, 4).map((c) => c.slice(0, 24 + 4 * (c.length % 3)));
    const rows = padRows(ids, undefined, 0);
    const L = rows.seqLen;
    // masked positions in cells 0 and 1 only: the second shard (cells 2, 3) has none
    const positions = Int32Array.from([1, 5, L + 2]);
    const labels = Int32Array.from(positions, (q) => rows.inputIds[q]);
    const cellCounts = new Float32Array(4 * G);
    ids.forEach((c, b) => c.forEach((t, i) => genes.includes(t) && (cellCounts[b * G + genes.indexOf(t)] = ds.values![b][i])));
    const cellLibrary = Float32Array.from({ length: 4 }, (_, b) => cellCounts.subarray(b * G, (b + 1) * G).reduce((a, x) => a + x, 0));
    const mb: CollatedBatch = { ...rows, positions, labels, cellCounts, cellLibrary, unitTotals: { positions: positions.length, cells: 4 } };
    const spec = {
      encoding: "geneformer-rank-value",
      objective: "mlm",
      cell: { pooling: "mean" as const, objectives: { mlm: 1, bottleneck: 2 }, bottleneck: { genes, likelihood: "nb" as const } },
    };
    const model = buildModel({ ...TINY_MODEL, vocab_size: 25426, hidden_act: "relu", hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 } as never, spec, { seed: 5 });
    const t = batchTensors(mb);
    const ref = model.lossAndGrads(t, mb, { training: false });
    disposeBatch(t);
    const shards = shardBatch(mb, 2, 1, false);
    expect(shards.map((x) => x.batch.batch)).toEqual([2, 2]);
    expect(shards[1].batch.positions.length).toBe(0);
    const dp = await DataParallel.start(model, { workers: 2, backend: "wasm" });
    try {
      dp.syncWeights();
      const got = await dp.lossAndGrads(shards);
      expect(Math.abs(got.loss - ref.loss)).toBeLessThan(1e-4);
      expect(Math.abs(got.terms!.mlm - ref.terms!.mlm)).toBeLessThan(1e-4);
      expect(Math.abs(got.terms!.bottleneck - ref.terms!.bottleneck)).toBeLessThan(1e-4);
      for (const [k, g] of ref.grads) {
        const d = tf.tidy(() => tf.max(tf.abs(tf.sub(g, got.grads.get(k)!))).dataSync()[0]);
        expect(d, k).toBeLessThan(1e-5);
      }
      tf.dispose([...got.grads.values(), ...ref.grads.values()]);
    } finally {
      await dp.dispose();
      model.dispose();
    }
  }, 60_000);
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
