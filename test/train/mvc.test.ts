/**
 * The `mvc` cell objective (scGPT GEPC / MVC) on real cells (data/tiny.h5ad, 300 PBMCs): the
 * positions and values it scores per encoding, the data-parallel gradient, training end to end with
 * its baseline in eval.json, the checkpoint and `cellfm embed`, and an exact resume.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initBackend } from "../../src/backend.js";
import { readTokenizedDataset } from "../../src/data/tokenized.js";
import { readEmbeddings } from "../../src/data/embeddings.js";
import { embedToFile } from "../../src/embed/run.js";
import { buildModel } from "../../src/model/factory.js";
import { makeRng } from "../../src/rng.js";
import { tokenizeToDataset } from "../../src/tokenize/run.js";
import { vocabularyOf } from "../../src/tokenize/dictionaries.js";
import { batchTensors, disposeBatch } from "../../src/train/grad-protocol.js";
import { train } from "../../src/train/loop.js";
import { makeObjective } from "../../src/train/objectives/index.js";
import { withCellObjectives } from "../../src/train/objectives/cell.js";
import { DataParallel, shardBatch } from "../../src/train/parallel.js";
import { parseTrainConfig } from "../../src/train/config.js";
import { TINY_MODEL } from "./helpers.js";

let root: string;
const tokens: Record<string, string> = {};
beforeAll(async () => {
  await initBackend("wasm");
  root = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-mvc-"));
  for (const e of ["rank", "binned", "counts"] as const) {
    tokens[e] = path.join(root, e);
    await tokenizeToDataset({ input: "data/tiny.h5ad", output: tokens[e], modelVersion: "V1", encoding: e, quiet: true, hashSource: false });
  }
}, 60_000);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const cfg = (tok: string, out: string, training: Record<string, unknown>, model: Record<string, unknown> = {}) =>
  parseTrainConfig(
    {
      model: { ...TINY_MODEL, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0, ...model },
      data: { tokens: tok, max_length: 32, val_fraction: 0.2 },
      training: { batch_size: 16, max_tokens_per_batch: 1024, warmup_steps: 2, log_every: 2, seed: 7, lr: 3e-3, bottleneck: { genes: 100 }, ...training },
      output: { dir: path.join(root, out) },
      backend: "wasm",
    },
    "test.yaml",
  );

/** The objective of a run, as `cellfm train` builds it, and a few of the dataset's cells. */
function objectiveOf(enc: string, training: Record<string, unknown>, pooling: "mean" | "max" = "mean", n = 6) {
  const ds = readTokenizedDataset(tokens[enc]);
  const c = cfg(tokens[enc], "x", { max_steps: 1, ...training }, { pooling });
  const vocabulary = vocabularyOf(ds.manifest, tokens[enc]);
  const sampling = { maxLength: 32 };
  const token = makeObjective(ds.manifest.encoding, c.training.objective, { vocabulary, training: c.training, maxLength: 32, manifest: ds.manifest, tokens: tokens[enc] });
  const obj = withCellObjectives(token, {
    objectives: c.training.objectives,
    pooling,
    bottleneck: c.training.bottleneck,
    encoding: ds.manifest.encoding,
    manifest: ds.manifest,
    tokens: tokens[enc],
    vocabulary,
    maxLength: 32,
    sampling,
    dataset: ds,
  });
  const cells = Array.from({ length: n }, (_, i) => obj.cellFromDataset(ds.inputIds[i], ds.values?.[i], ds.nCounts?.[i], ds.counts?.[i], i));
  return { ds, obj, cells };
}

describe("mvc: what it scores", () => {
  it("binned + mlm: the masked positions, their genes and bins (scGPT's GEPC target)", () => {
    const { obj, cells } = objectiveOf("binned", { objectives: { mlm: 1, mvc: 1 } });
    const b = obj.collate(cells, makeRng("t"));
    expect(Array.from(b.mvcPositions!)).toEqual(Array.from(b.positions));
    expect(Array.from(b.mvcGenes!)).toEqual(Array.from(b.positions, (q) => b.inputIds[q]));
    expect(Array.from(b.mvcTargets!)).toEqual(Array.from(b.labels!)); // the masked bins
  });

  it("counts + mlm: log1p(count) at the masked positions, the masked value regression's target", () => {
    const { obj, cells } = objectiveOf("counts", { objectives: { mlm: 1, mvc: 1 } });
    const b = obj.collate(cells, makeRng("t"));
    expect(Array.from(b.mvcPositions!)).toEqual(Array.from(b.positions));
    expect(Array.from(b.mvcTargets!)).toEqual(Array.from(b.targets!));
  });

  it("rank + mlm: a masked gene token's label, valued log1p(count / n_counts × 1e4); alone: every real token", () => {
    const { ds, obj, cells } = objectiveOf("rank", { objectives: { mlm: 1, mvc: 1 } });
    const b = obj.collate(cells, makeRng("t"));
    expect(Array.from(b.mvcGenes!)).toEqual(Array.from(b.labels!));
    b.mvcPositions!.forEach((q, j) => {
      const k = Math.floor(q / b.seqLen), g = b.mvcGenes![j];
      const i = ds.inputIds[k].indexOf(g);
      const want = Math.log1p((ds.values![k][i] / ds.nCounts![k]) * 1e4);
      expect(Math.abs(b.mvcTargets![j] - want)).toBeLessThan(1e-5);
    });
    const alone = objectiveOf("rank", { objectives: { mvc: 1 } });
    const a = alone.obj.collate(alone.cells, makeRng("t"));
    const real: number[] = [];
    a.attentionMask.forEach((m, q) => m > 0 && real.push(q));
    expect(Array.from(a.mvcPositions!)).toEqual(real);
    expect(a.unitTotals).toEqual({ positions: a.batch, cells: a.batch, mvc: real.length });
    expect(alone.obj.spec.cell).toMatchObject({ objectives: { mvc: 1 }, mvc: { positions: "every context gene" } });
  });
});

describe("mvc: data-parallel gradient", () => {
  it("2 shards give the whole micro-batch's loss and gradient (rank mvc alone, binned mlm + mvc, counts denoise + bottleneck + mvc)", async () => {
    for (const [enc, training, pooling] of [
      ["rank", { objectives: { mvc: 1 } }, "max"],
      ["binned", { objectives: { mlm: 1, mvc: 1 } }, "mean"],
      ["counts", { objective: "denoise", likelihood: "nb", objectives: { denoise: 1, bottleneck: 0.5, mvc: 1 } }, "mean"],
    ] as const) {
      const { ds, obj, cells } = objectiveOf(enc, training, pooling);
      const model = buildModel({ ...TINY_MODEL, vocab_size: 25426, hidden_act: "relu", hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 } as never, {
        encoding: ds.manifest.encoding,
        objective: obj.name,
        ...(obj.head ? { head: obj.head } : {}),
        ...obj.spec,
      } as never, { seed: 3 });
      const mb = obj.collate(cells, makeRng("dp"));
      const t = batchTensors(mb);
      const ref = model.lossAndGrads(t, mb, { training: false });
      disposeBatch(t);
      const dp = await DataParallel.start(model, { workers: 2, backend: "wasm" });
      try {
        dp.syncWeights();
        const got = await dp.lossAndGrads(shardBatch(mb, 2, 1, false));
        // binned: squared errors of bins (0..50) make a loss of hundreds, so the float32 tolerance is relative
        const tol = 1e-6 * Math.max(1, Math.abs(ref.loss));
        expect(Math.abs(got.loss - ref.loss), `${enc} ${ref.loss}`).toBeLessThan(10 * tol);
        expect([...ref.grads.keys()].some((k) => k.startsWith("cls.mvc_decoder."))).toBe(true);
        for (const [k, g] of ref.grads) {
          const d = tf.tidy(() => tf.max(tf.abs(tf.sub(g, got.grads.get(k)!))).dataSync()[0]);
          expect(d, `${enc} ${k}`).toBeLessThan(tol);
        }
        tf.dispose([...got.grads.values(), ...ref.grads.values()]);
      } finally {
        await dp.dispose();
        model.dispose();
      }
    }
  }, 60_000);
});

describe("cellfm train with mvc", () => {
  it("mvc alone on rank tokens: learns, eval.json and metrics.jsonl hold the term and its per-gene-mean baseline, the checkpoint records it, embed reads it", async () => {
    const r = await train(cfg(tokens.rank, "alone", { max_steps: 12, eval_every: 6, objectives: { mvc: 1 } }, { pooling: "max" }), { quiet: true, handleSigint: false });
    const m = r.eval!.terms!.mvc;
    expect(Object.keys(r.eval!.terms!)).toEqual(["mvc"]);
    expect(m.model_loss).toBeLessThan(m.initial_loss!);
    expect(m.baseline_name).toBe("per_gene_mean");
    expect(Number.isFinite(m.baseline_loss)).toBe(true);
    const rows = fs.readFileSync(path.join(r.outputDir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(rows[0].val_mvc).toBeTypeOf("number");
    const ck = JSON.parse(fs.readFileSync(path.join(r.checkpoint, "config.json"), "utf8"));
    expect(ck.cellfm.cell.objectives).toEqual({ mvc: 1 });
    expect(ck.cellfm.cell.mvc.target).toMatch(/log1p\(count \/ n_counts/);
    const f = path.join(root, "alone.arrow");
    const s = await embedToFile({ checkpoint: r.checkpoint, input: tokens.rank, output: f, quiet: true, workers: 1 });
    expect(s.pool).toBe("max");
    expect(readEmbeddings(f).data.every(Number.isFinite)).toBe(true);
  }, 120_000);

  it("binned mlm + mvc resumes exactly, workers 2 gives the losses of workers 1", async () => {
    const t = { max_steps: 4, save_every: 2, objectives: { mlm: 1, mvc: 1 } };
    const straight = await train(cfg(tokens.binned, "straight", t), { quiet: true, handleSigint: false });
    const c = cfg(tokens.binned, "halves", t);
    await train(c, { quiet: true, handleSigint: false, stopAfter: 2 });
    const second = await train(c, { quiet: true, handleSigint: false, resume: true });
    expect(second.losses).toEqual(straight.losses.slice(2));
    expect(second.eval!.terms).toEqual(straight.eval!.terms);
    const two = await train(cfg(tokens.binned, "two", { ...t, workers: 2 }), { quiet: true, handleSigint: false });
    for (let i = 0; i < 4; i++) expect(Math.abs(two.losses[i] - straight.losses[i])).toBeLessThan(1e-5 * straight.losses[i]);
    const e = straight.eval!;
    expect(e.model_loss).toBeCloseTo(e.terms!.mlm.model_loss + e.terms!.mvc.model_loss, 4);
    // each term's training loss in metrics.jsonl, combined over the shards as the loss is
    const rows = (r: { outputDir: string }) => fs.readFileSync(path.join(r.outputDir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((x) => x.train_mvc !== undefined);
    const [r1, r2] = [rows(straight), rows(two)];
    expect(r1.length).toBeGreaterThan(0);
    r1.forEach((x, i) => {
      expect(Math.abs(x.loss - (x.train_mlm + x.train_mvc))).toBeLessThan(1e-5 * x.loss);
      expect(Math.abs(r2[i].train_mvc - x.train_mvc)).toBeLessThan(1e-5 * x.train_mvc);
    });
  }, 120_000);
});
