/**
 * The webgpu backend (issue 18 §2) against wasm, on a software Vulkan driver: Chromium's SwiftShader
 * (Debian `chromium` + `libvulkan1`, installed by .ci/run). Tiny models on real cells (data/tiny.h5ad):
 * every encoding × objective (all three likelihoods, so lgamma/digamma and the hand-written gradients)
 * gives the same loss, gradients, AdamW update and embeddings as wasm within 1e-4 relative; `cellfm
 * train` on webgpu gives wasm's losses (and, with the bottleneck, its terms), resumes exactly, and its
 * checkpoint embeds as on wasm.
 * SwiftShader emulates a GPU on the CPU (slow), so the models and batches are small.
 * Without an adapter the tests are skipped with the reason printed.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initBackend } from "../../src/backend.js";
import { readTokenizedDataset } from "../../src/data/tokenized.js";
import { embedCells, embedCellsAsync } from "../../src/embed/embed.js";
import { CELLFM_STATE_FILE } from "../../src/model/checkpoint.js";
import { buildModel } from "../../src/model/factory.js";
import { makeRng } from "../../src/rng.js";
import { vocabularyOf } from "../../src/tokenize/dictionaries.js";
import { tokenizeToDataset } from "../../src/tokenize/run.js";
import { parseTrainConfig } from "../../src/train/config.js";
import { batchTensors, disposeBatch } from "../../src/train/grad-protocol.js";
import { makeObjective } from "../../src/train/objectives/index.js";
import { AdamW } from "../../src/train/optimizer.js";
import { train } from "../../src/train/loop.js";
import { embedToFile } from "../../src/embed/run.js";
import { readEmbeddings } from "../../src/data/embeddings.js";
import { probeWebGPU, readScalars, SWIFTSHADER_ICD } from "../../src/webgpu.js";
import { TINY_MODEL } from "../train/helpers.js";

if (!process.env.VK_ICD_FILENAMES && fs.existsSync(SWIFTSHADER_ICD)) process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
const adapter = probeWebGPU();
const skipReason = adapter
  ? undefined
  : `no WebGPU adapter (install Debian chromium + libvulkan1 for SwiftShader at ${SWIFTSHADER_ICD}, or set VK_ICD_FILENAMES)`;
if (skipReason) console.log(`webgpu tests skipped: ${skipReason}`);

/** The rows of a run's metrics.jsonl. */
function readMetrics(dir: string): Record<string, number>[] {
  return fs.readFileSync(path.join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
}

/** Largest |a − b| over max(|a|) of the reference, with a floor so exact-zero gradients compare absolutely. */
function relDiff(ref: ArrayLike<number>, got: ArrayLike<number>, floor: number): number {
  expect(got.length).toBe(ref.length);
  let d = 0, m = 0;
  for (let i = 0; i < ref.length; i++) {
    d = Math.max(d, Math.abs(ref[i] - got[i]));
    m = Math.max(m, Math.abs(ref[i]));
  }
  return d / Math.max(m, floor);
}

const PAIRS = [
  ["rank", "mlm", {}],
  ["rank", "denoise", { likelihood: "poisson" }],
  ["binned", "mlm", {}],
  ["binned", "denoise", { likelihood: "zinb" }],
  ["counts", "mlm", {}],
  ["counts", "denoise", { likelihood: "nb" }],
] as const;

interface Result {
  loss: number;
  grads: Map<string, Float32Array>;
  updated: Map<string, Float32Array>;
  emb: Float32Array;
}

let root: string;
const tokens: Record<string, string> = {};

describe.skipIf(skipReason !== undefined)(`webgpu on ${adapter ? `${adapter.vendor} ${adapter.architecture}` : "no adapter"}`, () => {
  beforeAll(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-webgpu-"));
    for (const e of ["binned", "counts", "rank"] as const) {
      tokens[e] = path.join(root, e);
      await tokenizeToDataset({ input: "data/tiny.h5ad", output: tokens[e], modelVersion: "V1", encoding: e, quiet: true, hashSource: false });
    }
  });
  afterAll(() => root && fs.rmSync(root, { recursive: true, force: true }));

  /**
   * Loss, gradients, one AdamW step and embeddings of a tiny model (seed 3) of one pair on the active
   * backend, all read asynchronously. The AdamW step applies `stepGrads` when given (the reference's
   * gradients: Adam's first step is ±lr·sign(g), so a gradient element that is 0 up to rounding
   * would flip it), else the gradients just computed.
   */
  async function runPair(
    enc: "rank" | "binned" | "counts",
    objective: "mlm" | "denoise",
    training: Record<string, unknown>,
    stepGrads?: Map<string, Float32Array>,
  ): Promise<Result> {
    const ds = readTokenizedDataset(tokens[enc]);
    const c = parseTrainConfig(
      { model: { ...TINY_MODEL, hidden_act: "gelu" }, data: { tokens: tokens[enc], max_length: 32 }, training: { objective, max_steps: 1, ...training }, output: { dir: path.join(root, "x") } },
      "test.yaml",
    );
    const obj = makeObjective(ds.manifest.encoding, objective, {
      vocabulary: vocabularyOf(ds.manifest, tokens[enc]),
      training: c.training,
      maxLength: 32,
      manifest: ds.manifest,
      tokens: tokens[enc],
    });
    const model = buildModel({ ...c.model, vocab_size: vocabularyOf(ds.manifest, tokens[enc]).size } as never, { encoding: ds.manifest.encoding, objective, head: obj.head }, { seed: 3 });
    try {
      const cells = Array.from({ length: 4 }, (_, i) => obj.cellFromDataset(ds.inputIds[i], ds.values?.[i], ds.nCounts?.[i], ds.counts?.[i]));
      const mb = obj.collate(cells, makeRng("webgpu-test"));
      const t = batchTensors(mb);
      // training mode: dropout masks are drawn in JS from the seed, so they match across backends
      const { loss, grads } = model.lossTensorAndGrads(t, mb, { training: true, dropoutSeed: 11 });
      disposeBatch(t);
      const names = [...grads.keys()];
      const [lossV, ...gv] = await Promise.all([loss.data(), ...names.map((k) => grads.get(k)!.data())]);
      loss.dispose();
      const opt = new AdamW(model.trainableWeights, { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.01 });
      const applied = stepGrads ? new Map([...stepGrads].map(([k, g]) => [k, tf.tensor(g, grads.get(k)!.shape)])) : grads;
      opt.applyGradients(applied, 1e-3);
      tf.dispose([...grads.values(), ...(applied !== grads ? applied.values() : [])]);
      const wNames = [...model.trainableWeights.keys()];
      const wv = await Promise.all(wNames.map((k) => model.trainableWeights.get(k)!.data()));
      opt.dispose();
      const ids = ds.inputIds.slice(4, 9).map((x) => x.slice(0, 20));
      const values = ds.values ? ds.values.slice(4, 9).map((x) => x.slice(0, 20)) : undefined;
      const emb = await embedCellsAsync(model, ids, { values, layer: 0, maxTokensPerBatch: 40 });
      return {
        loss: lossV[0],
        grads: new Map(names.map((k, i) => [k, gv[i] as Float32Array])),
        updated: new Map(wNames.map((k, i) => [k, wv[i] as Float32Array])),
        emb,
      };
    } finally {
      model.dispose();
    }
  }

  it("every encoding x objective: loss, gradients, AdamW step and embeddings equal wasm within 1e-4", async () => {
    await initBackend("wasm");
    const ref: Result[] = [];
    for (const [enc, objective, training] of PAIRS) ref.push(await runPair(enc, objective, training));
    const info = await initBackend("webgpu", { webgpu: true });
    expect(info.name).toBe("webgpu");
    for (const [k, [enc, objective, training]] of PAIRS.entries()) {
      const got = await runPair(enc, objective, training, ref[k].grads);
      const tag = `${enc} + ${objective}`;
      const r = ref[k];
      expect(Math.abs(got.loss - r.loss) / Math.abs(r.loss), `${tag} loss ${got.loss} vs ${r.loss}`).toBeLessThan(1e-4);
      expect(Number.isFinite(got.loss)).toBe(true);
      let gmax = 0;
      for (const g of r.grads.values()) for (const x of g) gmax = Math.max(gmax, Math.abs(x));
      expect([...got.grads.keys()].sort()).toEqual([...r.grads.keys()].sort());
      // per tensor, against its largest element or a tenth of the model's largest gradient, whichever is
      // larger: a gradient that is 0 up to float32 rounding (e.g. a bias whose terms cancel) is noise
      for (const [name, g] of r.grads) expect(relDiff(g, got.grads.get(name)!, 0.1 * gmax), `${tag} grad ${name}`).toBeLessThan(1e-4);
      for (const [name, w] of r.updated) expect(relDiff(w, got.updated.get(name)!, 1e-3), `${tag} AdamW ${name}`).toBeLessThan(1e-4);
      expect(relDiff(r.emb, got.emb, 1e-6), `${tag} embeddings`).toBeLessThan(1e-4);
    }
  });

  it("trains on webgpu with wasm's losses (1e-4), resumes exactly, and embeds from the checkpoint", async () => {
    const cfg = (out: string, backend: "wasm" | "webgpu") =>
      parseTrainConfig(
        {
          model: { ...TINY_MODEL, hidden_act: "gelu" },
          data: { tokens: tokens.binned, max_length: 32, val_fraction: 0.05 },
          training: { objective: "mlm", batch_size: 4, max_steps: 4, save_every: 2, warmup_steps: 1, log_every: 1, eval_every: 0, eval_cells: 8, seed: 5, workers: 2 },
          output: { dir: path.join(root, out) },
          backend,
        },
        "test.yaml",
      );
    const quiet = { quiet: true, handleSigint: false } as const;
    const ref = await train(cfg("t-wasm", "wasm"), { ...quiet, workers: 1 });
    const straight = await train(cfg("t-gpu", "webgpu"), quiet);
    expect(straight.backend.name).toBe("webgpu");
    straight.losses.forEach((l, i) => expect(Math.abs(l - ref.losses[i]) / ref.losses[i], `step ${i + 1}`).toBeLessThan(1e-4));
    expect(Math.abs(straight.eval!.model_loss - ref.eval!.model_loss) / ref.eval!.model_loss).toBeLessThan(1e-4);
    // workers: 2 in the config is a CPU knob: one process on the GPU
    expect(JSON.parse(fs.readFileSync(path.join(straight.checkpoint, CELLFM_STATE_FILE), "utf8")).workers).toBe(1);
    const c = cfg("t-gpu-resume", "webgpu");
    const a = await train(c, { ...quiet, stopAfter: 2 });
    const b = await train(c, { ...quiet, resume: true });
    expect([...a.losses, ...b.losses]).toEqual(straight.losses);
    const e = await embedToFile({ checkpoint: straight.checkpoint, input: tokens.binned, output: path.join(root, "e.arrow"), quiet: true, backend: "webgpu", shard: { index: 0, count: 60 }, workers: 2 });
    expect(e.workers).toBe(1);
    const w = await embedToFile({ checkpoint: straight.checkpoint, input: tokens.binned, output: path.join(root, "w.arrow"), quiet: true, backend: "wasm", shard: { index: 0, count: 60 }, workers: 1 });
    expect(relDiff(readEmbeddings(path.join(root, "w.arrow")).data, readEmbeddings(path.join(root, "e.arrow")).data, 1e-6)).toBeLessThan(1e-4);
    expect(w.nCells).toBe(e.nCells);
  });

  // a cell-level term: each step reads the loss, both terms and the gradient norm at once; evaluateTerms reads once
  it("trains MLM + the bottleneck on webgpu with wasm's losses and terms (1e-4)", async () => {
    const cfg = (out: string, backend: "wasm" | "webgpu") =>
      parseTrainConfig(
        {
          model: { ...TINY_MODEL, hidden_act: "gelu", pooling: "max" },
          data: { tokens: tokens.binned, max_length: 32, val_fraction: 0.05 },
          training: {
            objective: "mlm",
            objectives: { mlm: 1, bottleneck: 1 },
            bottleneck: { genes: 50, likelihood: "nb", decoder: "linear" },
            batch_size: 4,
            grad_accumulation: 2,
            max_steps: 2,
            warmup_steps: 1,
            log_every: 1,
            eval_every: 0,
            eval_cells: 8,
            seed: 5,
          },
          output: { dir: path.join(root, out) },
          backend,
        },
        "test.yaml",
      );
    const quiet = { quiet: true, handleSigint: false } as const;
    const ref = await train(cfg("b-wasm", "wasm"), { ...quiet, workers: 1 });
    const got = await train(cfg("b-gpu", "webgpu"), quiet);
    const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);
    got.losses.forEach((l, i) => expect(rel(l, ref.losses[i]), `step ${i + 1}`).toBeLessThan(1e-4));
    const trainTerms = (dir: string) => readMetrics(dir).flatMap((r) => [r.train_mlm, r.train_bottleneck]).filter((x) => x !== undefined);
    const refTerms = trainTerms(ref.outputDir);
    expect(refTerms.length).toBe(4);
    trainTerms(got.outputDir).forEach((v, i) => expect(rel(v, refTerms[i]), `train term ${i}`).toBeLessThan(1e-4));
    for (const k of ["mlm", "bottleneck"]) expect(rel(got.eval!.terms![k].model_loss, ref.eval!.terms![k].model_loss), `eval ${k}`).toBeLessThan(1e-4);
  });

  // last: the device error it provokes stays recorded for the rest of the process
  it("a WebGPU device error (tfjs's AddN over the storage-buffer limit) fails the next read instead of passing wrong numbers", async () => {
    await initBackend("webgpu", { webgpu: true });
    const xs = Array.from({ length: 12 }, (_, i) => tf.fill([4], i));
    const s = tf.addN(xs);
    await expect(readScalars([tf.sum(s) as tf.Scalar])).rejects.toThrow(/WebGPU device error .*storage buffers/);
    tf.dispose([...xs, s]);
  });
});

describe("embedCellsAsync", () => {
  it("equals embedCells on wasm", async () => {
    await initBackend("wasm");
    const model = buildModel({ ...TINY_MODEL, vocab_size: 50, hidden_act: "relu", hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 } as never, { encoding: "geneformer-rank-value", objective: "mlm" }, { seed: 1 });
    const cells = Array.from({ length: 7 }, (_, i) => Int32Array.from({ length: 5 + 3 * i }, (_, j) => 3 + ((i * 7 + j * 5) % 47)));
    expect(await embedCellsAsync(model, cells, { maxTokensPerBatch: 40 })).toEqual(embedCells(model, cells, { maxTokensPerBatch: 40 }));
    model.dispose();
  });
});
