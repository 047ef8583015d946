/**
 * Data-parallel training (training.workers): sharding a micro-batch by cells, combining the
 * shards' gradients, and the training loop with worker threads, on the 300 real PBMC cells of
 * data/tiny.h5ad (Geneformer V1 tokens from test/fixtures/golden/tiny.v1.jsonl) and a tiny BERT.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initBackend } from "../../src/backend.js";
import { BertForMaskedLM } from "../../src/model/bert.js";
import { GENEFORMER_V1_6L } from "../../src/model/config.js";
import { makeRng } from "../../src/rng.js";
import { parseTrainConfig, type TrainConfig } from "../../src/train/config.js";
import { defaultWorkers, MIN_PARALLEL_STEP_FLOPS, train } from "../../src/train/loop.js";
import { collateMlm, type MlmBatch } from "../../src/train/masking.js";
import { truncateCell } from "../../src/encoding/rank.js";
import { DataParallel, shardBatch } from "../../src/train/parallel.js";
import { tinyTrainConfig, writeGoldenTokens, TINY_MODEL } from "./helpers.js";

let tmp: string;
let tokens: string;
let cells: Int32Array[];

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-parallel-"));
  tokens = path.join(tmp, "tokens");
  cells = writeGoldenTokens(tokens);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function cfg(out: string, training: Record<string, unknown>, model: Record<string, unknown> = {}): TrainConfig {
  return tinyTrainConfig(tokens, tmp, out, { lr: 3e-3, ...training }, model);
}

/** A collated batch of real cells of different lengths (truncated to 12..64 tokens). */
function realBatch(n: number, seed = 1, maxLen = 64): MlmBatch {
  const lens = [64, 60, 52, 40, 33, 25, 18, 12];
  const picked = Array.from({ length: n }, (_, i) => truncateCell(cells[i * 7], Math.round((lens[i % lens.length] * maxLen) / 64)));
  return collateMlm(picked, makeRng(seed), { vocabSize: 25426, mlmProbability: 0.15 });
}

describe("shardBatch", () => {
  it("splits by cells with balanced tokens; shards are the same cells, masks and labels re-padded", () => {
    const mb = realBatch(8);
    const shards = shardBatch(mb, 2, 123);
    expect(shards).toHaveLength(2);
    const [a, b] = shards.map((s) => s.batch);
    expect(a.batch + b.batch).toBe(8);
    expect(a.realTokens + b.realTokens).toBe(mb.realTokens);
    // token balance: of the 304 tokens, the cut nearest to 152 is 64+60+52 = 176 | 40+33+25+18+12 = 128
    expect([a.realTokens, b.realTokens]).toEqual([176, 128]);
    expect([a.batch, b.batch]).toEqual([3, 5]);
    expect([a.seqLen, b.seqLen]).toEqual([64, 40]); // each re-padded to its own longest cell
    expect(a.positions.length + b.positions.length).toBe(mb.positions.length);
    // every masked position maps to the same (cell, offset), with the same input id and label
    let p = 0;
    let cellOffset = 0;
    for (const s of [a, b]) {
      for (let j = 0; j < s.positions.length; j++, p++) {
        const cell = Math.floor(s.positions[j] / s.seqLen) + cellOffset;
        const i = s.positions[j] % s.seqLen;
        expect(cell * mb.seqLen + i).toBe(mb.positions[p]);
        expect(s.labels[j]).toBe(mb.labels[p]);
        expect(s.inputIds[s.positions[j]]).toBe(mb.inputIds[mb.positions[p]]);
      }
      cellOffset += s.batch;
    }
    expect(shards[0].dropoutSeed).toBe(123); // shard 0 = the single-thread seed
    expect(shards[1].dropoutSeed).not.toBe(123);
    expect(shardBatch(mb, 2, 123)[1].dropoutSeed).toBe(shards[1].dropoutSeed);
  });

  it("gives one shard per cell at most (a 1-cell micro-batch stays on rank 0)", () => {
    expect(shardBatch(realBatch(1), 2, 5)).toHaveLength(1);
    expect(shardBatch(realBatch(3), 8, 5).map((s) => s.batch.batch)).toEqual([1, 1, 1]);
  });
});

describe("DataParallel", () => {
  it("combined loss and gradients of 2 ranks equal the whole micro-batch's, also with an empty shard", async () => {
    await initBackend("wasm");
    const model = new BertForMaskedLM({ ...GENEFORMER_V1_6L, ...TINY_MODEL, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 }, { seed: 3 });
    const dp = await DataParallel.start(model, { workers: 2, backend: "wasm" });
    try {
      expect(DataParallel.live).toBe(1);
      dp.syncWeights();
      const whole = (mb: MlmBatch) => {
        const t = { inputIds: tf.tensor2d(mb.inputIds, [mb.batch, mb.seqLen], "int32"), attentionMask: tf.tensor2d(mb.attentionMask, [mb.batch, mb.seqLen]) };
        const r = model.lossAndGrads(t, mb, { training: false });
        tf.dispose([t.inputIds, t.attentionMask]);
        return r;
      };
      const maxDiff = (a: Map<string, tf.Tensor>, b: Map<string, tf.Tensor>) => {
        let d = 0;
        for (const [k, g] of a) d = Math.max(d, tf.tidy(() => tf.max(tf.abs(tf.sub(g, b.get(k)!))).dataSync()[0]));
        return d;
      };
      const mb = realBatch(8);
      const ref = whole(mb);
      for (let rep = 0; rep < 2; rep++) {
        const got = await dp.lossAndGrads(shardBatch(mb, 2, 1, false));
        expect(got.nMasked).toBe(mb.positions.length);
        expect(Math.abs(got.loss - ref.loss)).toBeLessThan(1e-5);
        expect(maxDiff(got.grads, ref.grads)).toBeLessThan(1e-6);
        tf.dispose([...got.grads.values()]);
      }
      // the worker follows weight updates
      tf.tidy(() => model.weights.get("cls.predictions.bias")!.assign(tf.randomNormal([25426], 0, 1, "float32", 9)));
      dp.syncWeights();
      const ref2 = whole(mb);
      expect(Math.abs(ref2.loss - ref.loss)).toBeGreaterThan(0.01);
      const got2 = await dp.lossAndGrads(shardBatch(mb, 2, 1, false));
      expect(Math.abs(got2.loss - ref2.loss)).toBeLessThan(1e-5);
      expect(maxDiff(got2.grads, ref2.grads)).toBeLessThan(1e-6);
      // a shard with no masked position has weight 0 and is skipped; the other shard's gradient is the answer
      const onlyFirst: MlmBatch = { ...mb, positions: mb.positions.filter((p) => p < 2 * mb.seqLen), labels: mb.labels.filter((_, i) => mb.positions[i] < 2 * mb.seqLen) };
      const ref3 = whole(onlyFirst);
      const sh = shardBatch(onlyFirst, 2, 1, false);
      expect(sh[1].batch.positions.length).toBe(0);
      const got3 = await dp.lossAndGrads(sh);
      expect(got3.loss).toBeCloseTo(ref3.loss, 5);
      expect(maxDiff(got3.grads, ref3.grads)).toBeLessThan(1e-6);
      tf.dispose([...ref.grads.values(), ...ref2.grads.values(), ...ref3.grads.values(), ...got2.grads.values(), ...got3.grads.values()]);
    } finally {
      await dp.dispose();
      model.dispose();
    }
    expect(DataParallel.live).toBe(0);
  });
});

describe("DataParallel with 1, 2, 3 and 4 ranks", () => {
  // issue 8: with 3+ ranks syncWeights read a buffer after transferring it (detached ArrayBuffer)
  for (const backend of ["cpu", "wasm"] as const) {
    it(`gives the whole micro-batch's loss and gradient on ${backend}, before and after a weight update`, async () => {
      await initBackend(backend);
      const model = new BertForMaskedLM({ ...GENEFORMER_V1_6L, ...TINY_MODEL, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 }, { seed: 3 });
      const mb = realBatch(8, 4, backend === "cpu" ? 16 : 64); // the pure-JS backend is slow
      const whole = () => {
        const t = { inputIds: tf.tensor2d(mb.inputIds, [mb.batch, mb.seqLen], "int32"), attentionMask: tf.tensor2d(mb.attentionMask, [mb.batch, mb.seqLen]) };
        const r = model.lossAndGrads(t, mb, { training: false });
        tf.dispose([t.inputIds, t.attentionMask]);
        return r;
      };
      const dps = await Promise.all([1, 2, 3, 4].map((workers) => DataParallel.start(model, { workers, backend })));
      try {
        for (let round = 0; round < 2; round++) {
          if (round === 1) tf.tidy(() => model.weights.get("cls.predictions.bias")!.assign(tf.randomNormal([25426], 0, 1, "float32", 11)));
          const ref = whole();
          for (const dp of dps) {
            dp.syncWeights();
            const got = await dp.lossAndGrads(shardBatch(mb, dp.size, 1, false));
            expect(Math.abs(got.loss - ref.loss), `${dp.size} ranks, round ${round}`).toBeLessThan(1e-5);
            for (const [k, g] of ref.grads) {
              // float summation order differs with the shards: relative to the gradient's size
              const [d, m] = tf.tidy(() => [tf.max(tf.abs(tf.sub(g, got.grads.get(k)!))).dataSync()[0], tf.max(tf.abs(g)).dataSync()[0]]);
              expect(d, `${k}, ${dp.size} ranks`).toBeLessThanOrEqual(1e-6 + 1e-5 * m);
            }
            tf.dispose([...got.grads.values()]);
          }
          tf.dispose([...ref.grads.values()]);
        }
      } finally {
        await Promise.all(dps.map((d) => d.dispose()));
        model.dispose();
        await initBackend("wasm");
      }
      expect(DataParallel.live).toBe(0);
    });
  }
});

describe("defaultWorkers (training.workers absent)", () => {
  it("is every core on wasm/cpu, at most the cells of a step; 1 on tensorflow and for tiny steps", () => {
    const was = process.env.CELLFM_MAX_THREADS;
    process.env.CELLFM_MAX_THREADS = "3";
    try {
      expect(defaultWorkers("wasm", 12, 1e11)).toBe(3);
      expect(defaultWorkers("cpu", 12, 1e11)).toBe(3);
      expect(defaultWorkers("wasm", 2, 1e11)).toBe(2); // a rank needs a cell
      expect(defaultWorkers("tensorflow", 12, 1e11)).toBe(1);
      expect(defaultWorkers("webgpu", 12, 1e11)).toBe(1); // one GPU, one process
      expect(defaultWorkers("wasm", 12, MIN_PARALLEL_STEP_FLOPS / 2)).toBe(1);
      expect(defaultWorkers("wasm", 12, NaN)).toBe(1);
    } finally {
      if (was === undefined) delete process.env.CELLFM_MAX_THREADS;
      else process.env.CELLFM_MAX_THREADS = was;
    }
  });
});

describe("cellfm train with training.workers: 2", () => {
  it("gives the losses of workers: 1 (no dropout), and the same losses run to run", async () => {
    const noDropout = { hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 };
    const one = await train(cfg("w1", { max_steps: 5 }, noDropout), { quiet: true });
    // no workers given: a model this small trains on one rank (defaultWorkers)
    expect(JSON.parse(fs.readFileSync(path.join(one.outputDir, "run.json"), "utf8")).workers).toBe(1);
    const two = await train(cfg("w2", { max_steps: 5, workers: 2 }, noDropout), { quiet: true });
    expect(two.losses).toHaveLength(5);
    for (let i = 0; i < 5; i++) expect(Math.abs(two.losses[i] - one.losses[i])).toBeLessThan(1e-4);
    expect(Math.abs(two.eval!.model_loss - one.eval!.model_loss)).toBeLessThan(1e-3);
    expect(two.losses[4]).not.toBe(two.losses[0]); // it trains
    const run = JSON.parse(fs.readFileSync(path.join(two.outputDir, "run.json"), "utf8"));
    expect(run.workers).toBe(2);
    const st = JSON.parse(fs.readFileSync(path.join(two.checkpoint, "cellfm_state.json"), "utf8"));
    expect(st.workers).toBe(2);
    // with dropout (default 0.02): same seed + same workers -> identical losses
    const a = await train(cfg("dropA", { max_steps: 3, workers: 2 }), { quiet: true });
    const b = await train(cfg("dropB", { max_steps: 3, workers: 2 }), { quiet: true });
    expect(b.losses).toEqual(a.losses);
    expect(DataParallel.live).toBe(0);
  });

  it("resumes exactly: 4 steps + --resume + 4 == 8 straight, and notes a changed workers count", async () => {
    const straight = await train(cfg("rs", { max_steps: 8, save_every: 4, workers: 2 }), { quiet: true });
    const c = cfg("rh", { max_steps: 8, save_every: 4, workers: 2 });
    const first = await train(c, { quiet: true, stopAfter: 4 });
    expect(first.losses).toEqual(straight.losses.slice(0, 4));
    expect(DataParallel.live).toBe(0); // stopAfter stops the workers too
    const second = await train(c, { quiet: true, resume: true });
    expect(second.losses).toEqual(straight.losses.slice(4));
    expect(second.eval!.model_loss).toBe(straight.eval!.model_loss);
    // resuming checkpoint-4 with another workers count works and says so
    fs.rmSync(path.join(c.output.dir, "final"), { recursive: true });
    const lines: string[] = [];
    const third = await train(c, { resume: true, workers: 1, log: (l) => lines.push(l) });
    expect(third.step).toBe(8);
    expect(lines.join("\n")).toMatch(/trained with workers=2, this run uses workers=1.*not be bit-identical/);
    // without workers in the config or on the command line, a resume follows the checkpoint's count
    // (this tiny model alone would default to 1), so it is exact again
    fs.rmSync(path.join(c.output.dir, "final"), { recursive: true });
    const noW = { ...c, training: { ...c.training, workers: undefined } };
    const lines2: string[] = [];
    const fourth = await train(noW, { resume: true, log: (l) => lines2.push(l) });
    expect(lines2.join("\n")).not.toMatch(/trained with workers/);
    expect(fourth.losses).toEqual(straight.losses.slice(4));
  });

  it("works on the cpu backend too (which keeps the arrays it is given instead of copying)", async () => {
    const noDropout = { hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 };
    // small enough for the pure-JS backend: 16-token cells, 8 cells a batch, 8 validation cells
    const c = (out: string, workers: number) =>
      parseTrainConfig(
        {
          model: { ...TINY_MODEL, ...noDropout, max_position_embeddings: 16 },
          data: { tokens, max_length: 16, val_fraction: 0.2 },
          training: { batch_size: 8, max_steps: 3, eval_cells: 8, seed: 7, lr: 3e-3, workers },
          output: { dir: path.join(tmp, out) },
          backend: "cpu",
        },
        "test.yaml",
      );
    const one = await train(c("cpu1", 1), { quiet: true });
    const two = await train(c("cpu2", 2), { quiet: true });
    expect(two.backend.name).toBe("cpu");
    for (let i = 0; i < 3; i++) expect(Math.abs(two.losses[i] - one.losses[i])).toBeLessThan(1e-4);
    await initBackend("wasm"); // back to the backend of the other tests
  });

  it("stops its workers when the loop throws", async () => {
    const c = cfg("throws", { max_steps: 5, workers: 2 });
    await expect(
      train(c, {
        quiet: true,
        onStep: (m) => {
          if (m.step === 2) throw new Error("boom");
        },
      }),
    ).rejects.toThrow("boom");
    expect(DataParallel.live).toBe(0);
  });
});
