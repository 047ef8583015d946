import { describe, it, expect, beforeAll, afterAll } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../../src/backend.js";
import { tokenizeToDataset } from "../../src/tokenize/run.js";
import { train } from "../../src/train/loop.js";
import { parseTrainConfig } from "../../src/train/config.js";
import { ContrastiveHead } from "../../src/model/cell-heads.js";
import { readCheckpoint } from "../../src/model/checkpoint.js";
import { shardBatch } from "../../src/train/parallel.js";
import type { CollatedBatch } from "../../src/train/objectives/types.js";
import { TINY_MODEL } from "./helpers.js";

let root: string;
let rank: string;
let counts: string;

beforeAll(async () => {
  await initBackend("wasm");
  root = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-contrastive-"));
  rank = path.join(root, "rank");
  counts = path.join(root, "counts");
  // the 300 real PBMCs of data/tiny.h5ad: rank tokens (every expressed gene with its count) and raw counts
  await tokenizeToDataset({ input: "data/tiny.h5ad", output: rank, modelVersion: "V1", carry: ["cell_type"], quiet: true });
  await tokenizeToDataset({ input: "data/tiny.h5ad", output: counts, modelVersion: "V1", encoding: "counts", quiet: true });
}, 60_000);

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function cfg(out: string, training: Record<string, unknown>, tokens = rank) {
  return parseTrainConfig(
    {
      model: { ...TINY_MODEL, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0, pooling: "mean" },
      data: { tokens, max_length: 32, val_fraction: 0.2 },
      training: { batch_size: 16, max_tokens_per_batch: 4096, warmup_steps: 2, log_every: 2, seed: 7, bottleneck: { genes: 200 }, ...training },
      output: { dir: path.join(root, out) },
      backend: "wasm",
    },
    "test.yaml",
  );
}

/** NT-Xent in float64, straight from its definition (SimCLR eq. 1), summed over the 2n anchors. */
function ntXent(v: number[][], groups: number[], tau: number): number {
  const m = v.length, n = m / 2;
  const z = v.map((r) => {
    const s = Math.sqrt(r.reduce((a, x) => a + x * x, 0));
    return r.map((x) => x / s);
  });
  let sum = 0;
  for (let i = 0; i < m; i++) {
    const p = i < n ? i + n : i - n;
    let den = 0;
    for (let j = 0; j < m; j++) if (j !== i && groups[j % n] === groups[i % n]) den += Math.exp(z[i].reduce((a, x, k) => a + x * z[j][k], 0) / tau);
    sum += -(z[i].reduce((a, x, k) => a + x * z[p][k], 0) / tau - Math.log(den));
  }
  return sum;
}

describe("ContrastiveHead", () => {
  it("is SimCLR's NT-Xent over each group's views (float64 reference), log(2g − 1) per view when nothing is told apart", () => {
    const params = { add: () => undefined } as never;
    const head = new ContrastiveHead({ hidden_size: 4 } as never, params, 0.2, "none");
    const v = Array.from({ length: 6 }, (_, i) => [Math.sin(i + 1), Math.cos(2 * i), i / 3 - 1, 0.5]);
    for (const groups of [[0, 0, 0], [0, 0, 1]]) {
      const got = tf.tidy(() => head.lossSum(tf.tensor2d(v), Int32Array.from(groups)).dataSync()[0]);
      expect(got).toBeCloseTo(ntXent(v, groups, 0.2), 4);
    }
    const same = Array.from({ length: 8 }, () => [1, 2, 3, 4]);
    const uniform = tf.tidy(() => head.lossSum(tf.tensor2d(same), new Int32Array(4)).dataSync()[0]);
    expect(uniform / 8).toBeCloseTo(Math.log(7), 4);
    expect(() => new ContrastiveHead({ hidden_size: 4 } as never, params, 0, "none")).toThrow(/temperature must be a positive number/);
  });
});

describe("cellfm train with the contrastive term", () => {
  it("contrastive alone on rank tokens: learns below log(2B − 1), eval.json holds it next to its baseline, the checkpoint records it", async () => {
    const r = await train(cfg("c", { max_steps: 12, lr: 3e-3, objectives: { contrastive: 1 }, contrastive: { temperature: 0.5 } }), { quiet: true });
    const t = r.eval!.terms!;
    expect(Object.keys(t)).toEqual(["contrastive"]);
    // 60 validation cells in batches of 16: groups of 16 (and one of 12), log(31) and log(23) per view
    expect(t.contrastive.baseline_name).toBe("uniform");
    expect(t.contrastive.baseline_loss).toBeCloseTo((48 * Math.log(31) + 12 * Math.log(23)) / 60, 4);
    expect(t.contrastive.model_loss).toBeLessThan(t.contrastive.baseline_loss - 0.3);
    const ck = JSON.parse(fs.readFileSync(path.join(r.checkpoint, "config.json"), "utf8"));
    expect(ck.cellfm.cell.contrastive).toMatchObject({ temperature: 0.5, projection: "mlp", noise: 0.6, downsample: "scprint" });
    const rows = fs.readFileSync(path.join(r.outputDir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(rows[0].val_contrastive).toBeTypeOf("number");
    expect(rows.filter((x) => x.train_contrastive !== undefined).length).toBeGreaterThan(3);
    // the checkpoint loads with its projection head (embed reads it)
    const m = readCheckpoint(r.checkpoint);
    expect([...m.model.weights.keys()]).toContain("cls.contrastive.projection.dense.weight");
    m.model.dispose();
  }, 120_000);

  it("batches: the two views follow block 0; shards hold whole groups of negatives", async () => {
    const seen: CollatedBatch[] = [];
    await train(cfg("views", { max_steps: 1, objectives: { mlm: 1, contrastive: 0.1 }, contrastive: { group: 5 } }), { quiet: true, onBatch: (b) => seen.push(b) });
    const b = seen[0];
    expect(b.cellBlocks).toBe(3);
    expect(b.viewBlocks).toEqual([1, 2]);
    expect(b.batch).toBe(48);
    expect(Array.from(b.cellGroups!)).toEqual(Array.from({ length: 16 }, (_, k) => Math.floor(k / 5)));
    // masked positions only in block 0
    for (const p of b.positions) expect(p).toBeLessThan(16 * b.seqLen);
    // the views are downsampled cells: not the masked rows, and the two views of a cell differ
    const row = (r: number) => Array.from(b.inputIds.subarray(r * b.seqLen, (r + 1) * b.seqLen));
    expect(Array.from({ length: 16 }, (_, k) => row(16 + k).join() !== row(32 + k).join()).some(Boolean)).toBe(true);
    const shards = shardBatch(b, 2, 1);
    expect(shards.length).toBe(2);
    const cells = shards.map((s) => s.batch.batch / 3);
    expect(cells[0] % 5).toBe(0);
    expect(cells[0] + cells[1]).toBe(16);
    expect(shards.map((s) => s.batch.positions.length).reduce((a, c) => a + c)).toBe(b.positions.length);
    expect(shards[1].batch.cellGroups![0]).not.toBe(shards[0].batch.cellGroups![cells[0] - 1]);
    // one group: one shard
    expect(shardBatch({ ...b, cellGroups: new Int32Array(16) }, 2, 1).length).toBe(1);
  }, 60_000);

  it("mlm + bottleneck + mvc + contrastive: workers 2 gives the losses of workers 1; resume is exact", async () => {
    const training = { max_steps: 4, objectives: { mlm: 1, bottleneck: 0.5, mvc: 0.5, contrastive: 0.1 }, contrastive: { group: 8 } };
    const one = await train(cfg("w1", { ...training, workers: 1 }), { quiet: true });
    const two = await train(cfg("w2", { ...training, workers: 2 }), { quiet: true });
    for (let i = 0; i < 4; i++) expect(Math.abs(two.losses[i] - one.losses[i])).toBeLessThan(1e-4);
    expect(Object.keys(one.eval!.terms!).sort()).toEqual(["bottleneck", "contrastive", "mlm", "mvc"]);
    // 60 validation cells, batches of 16 and 12 in groups of 8: groups of 8 and one of 4
    expect(one.eval!.terms!.contrastive.baseline_loss).toBeCloseTo((56 * Math.log(15) + 4 * Math.log(7)) / 60, 4);
    const c = cfg("resume", { ...training, workers: 1 });
    await train(c, { quiet: true, handleSigint: false, stopAfter: 2 });
    const rest = await train(c, { quiet: true, handleSigint: false, resume: true });
    expect(rest.losses.slice(-2).map((x) => x.toFixed(6))).toEqual(one.losses.slice(2).map((x) => x.toFixed(6)));
  }, 180_000);

  it("Geneformer V2 rank cells: every view keeps the cell's <cls> first and <eos> last", async () => {
    const v2 = path.join(root, "v2-tokens");
    await tokenizeToDataset({ input: "data/tiny.h5ad", output: v2, modelVersion: "V2", quiet: true });
    const seen: CollatedBatch[] = [];
    await train(cfg("v2", { max_steps: 1, objectives: { contrastive: 1 } }, v2), { quiet: true, onBatch: (b) => seen.push(b) });
    const b = seen[0];
    expect(b.cellBlocks).toBe(2);
    for (let r = 0; r < b.batch; r++) {
      const row = b.inputIds.subarray(r * b.seqLen, (r + 1) * b.seqLen);
      const len = b.attentionMask.subarray(r * b.seqLen, (r + 1) * b.seqLen).reduce((x, m) => x + m, 0);
      expect(row[0]).toBe(2);
      expect(row[len - 1]).toBe(3);
      expect(len).toBeLessThanOrEqual(32);
    }
  }, 60_000);

  it("counts tokens with denoise: each view is a random context of downsampled counts", async () => {
    const r = await train(cfg("cd", { max_steps: 2, objective: "denoise", objectives: { denoise: 1, contrastive: 0.5 } }, counts), { quiet: true });
    expect(Object.keys(r.eval!.terms!)).toEqual(["denoise", "contrastive"]);
    expect(Number.isFinite(r.eval!.terms!.contrastive.model_loss)).toBe(true);
  }, 60_000);
});
