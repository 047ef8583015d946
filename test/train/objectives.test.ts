/**
 * Objectives on the value-keeping encodings (issue 9 §3, §6) on real cells (data/tiny.h5ad, 300
 * PBMCs): binned MLM and counts denoising train, beat their baselines, give the one-worker gradient
 * with 2 workers, resume exactly, and refuse unsupported pairs / datasets without values by name.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initBackend } from "../../src/backend.js";
import { readTokenizedDataset } from "../../src/data/tokenized.js";
import { buildModel } from "../../src/model/factory.js";
import { readCheckpoint } from "../../src/model/checkpoint.js";
import { embedCells } from "../../src/embed/embed.js";
import { embedToFile } from "../../src/embed/run.js";
import { readEmbeddings } from "../../src/data/embeddings.js";
import { makeRng } from "../../src/rng.js";
import { tokenizeToDataset } from "../../src/tokenize/run.js";
import { batchTensors, disposeBatch } from "../../src/train/grad-protocol.js";
import { train } from "../../src/train/loop.js";
import { assertSupportedPair, makeObjective } from "../../src/train/objectives/index.js";
import { DataParallel, shardBatch } from "../../src/train/parallel.js";
import { vocabularyOf } from "../../src/tokenize/dictionaries.js";
import { parseTrainConfig } from "../../src/train/config.js";
import { TINY_MODEL, writeGoldenTokens } from "./helpers.js";

let root: string;
const tokens: Record<string, string> = {};
beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-obj-"));
  for (const e of ["binned", "counts", "rank"] as const) {
    tokens[e] = path.join(root, e);
    await tokenizeToDataset({ input: "data/tiny.h5ad", output: tokens[e], modelVersion: "V1", encoding: e, quiet: true, hashSource: false });
  }
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const cfg = (tok: string, out: string, training: Record<string, unknown>) =>
  parseTrainConfig(
    {
      model: { ...TINY_MODEL, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 },
      data: { tokens: tok, max_length: 64, val_fraction: 0.2 },
      training: { batch_size: 16, max_tokens_per_batch: 1024, warmup_steps: 2, log_every: 5, seed: 7, lr: 3e-3, ...training },
      output: { dir: path.join(root, out) },
      backend: "wasm",
    },
    "test.yaml",
  );

describe("value objectives on real cells", () => {
  it("counts + denoise (ZINB) beats the per-gene NB baseline; workers 2 gives the same losses", async () => {
    const r = await train(cfg(tokens.counts, "den1", { objective: "denoise", max_steps: 40 }), { quiet: true, handleSigint: false });
    expect(r.eval!.encoding).toBe("scprint-counts");
    expect(r.eval!.baseline_name).toBe("per_gene_nb");
    expect(r.eval!.model_loss).toBeLessThan(r.eval!.baseline_loss);
    expect(r.eval!.model_loss).toBeLessThan(r.eval!.initial_loss!);
    const cj = JSON.parse(fs.readFileSync(path.join(r.checkpoint, "config.json"), "utf8"));
    expect(cj.architectures).toEqual(["CellfmForDenoising"]);
    expect(cj.cellfm.head).toEqual({ likelihood: "zinb" });
    const r2 = await train(cfg(tokens.counts, "den2", { objective: "denoise", max_steps: 4, workers: 2 }), { quiet: true, handleSigint: false });
    r2.losses.forEach((l, i) => expect(Math.abs(l - r.losses[i])).toBeLessThan(1e-4));
  });

  it("rank + denoise: ranks from the downsampled counts, beats the per-gene NB baseline", async () => {
    const r = await train(cfg(tokens.rank, "rankden", { objective: "denoise", max_steps: 80 }), { quiet: true, handleSigint: false });
    expect(r.eval!.encoding).toBe("geneformer-rank-value");
    expect(r.eval!.model_loss).toBeLessThan(r.eval!.baseline_loss);
  });

  it("binned + mlm beats the bin-frequency baseline (output bias at bin frequencies)", async () => {
    const r = await train(cfg(tokens.binned, "bin", { objective: "mlm", max_steps: 60, init_output_bias: "unigram" }), { quiet: true, handleSigint: false });
    expect(r.eval!.baseline_name).toBe("bin_frequency");
    expect(r.eval!.model_loss).toBeLessThan(r.eval!.baseline_loss);
  });

  it("counts + mlm (masked log1p regression) beats the per-gene mean baseline; binned + denoise (re-binned downsampled counts) beats the per-gene NB", async () => {
    const r = await train(cfg(tokens.counts, "cmlm", { objective: "mlm", max_steps: 40, init_output_bias: "unigram" }), { quiet: true, handleSigint: false });
    expect(r.eval!.baseline_name).toBe("per_gene_mean");
    expect(r.eval!.model_loss).toBeLessThan(r.eval!.baseline_loss);
    expect(JSON.parse(fs.readFileSync(path.join(r.checkpoint, "config.json"), "utf8")).architectures).toEqual(["CellfmForMaskedValues"]);
    const d = await train(cfg(tokens.binned, "bden", { objective: "denoise", max_steps: 40 }), { quiet: true, handleSigint: false });
    expect(d.eval!.encoding).toBe("scgpt-binned");
    expect(d.eval!.baseline_name).toBe("per_gene_nb");
    expect(d.eval!.model_loss).toBeLessThan(d.eval!.baseline_loss);
    expect(JSON.parse(fs.readFileSync(path.join(d.checkpoint, "config.json"), "utf8")).cellfm.head).toEqual({ likelihood: "zinb", n_bins: 51 });
  });

  it("--resume is exact for denoise (the context sampling and downsampling draws come from the saved generator)", async () => {
    const c = cfg(tokens.counts, "res", { objective: "denoise", max_steps: 4, save_every: 2 });
    const straight = await train(cfg(tokens.counts, "res0", { objective: "denoise", max_steps: 4 }), { quiet: true, handleSigint: false });
    const a = await train(c, { quiet: true, handleSigint: false, stopAfter: 2 });
    const b = await train(c, { quiet: true, handleSigint: false, resume: true });
    expect([...a.losses, ...b.losses]).toEqual(straight.losses);
  });

  it("--resume is exact for binned mlm, rank denoise, counts mlm and binned denoise; embed refuses a folder of another encoding or dictionary, naming both", async () => {
    const cks: Record<string, string> = {};
    for (const [enc, objective] of [["binned", "mlm"], ["rank", "denoise"], ["counts", "mlm"], ["binned", "denoise"]] as const) {
      const tr = { objective, max_steps: 2, save_every: 1 };
      const straight = await train(cfg(tokens[enc], `rs0-${enc}-${objective}`, tr), { quiet: true, handleSigint: false });
      const c = cfg(tokens[enc], `rs-${enc}-${objective}`, tr);
      const a = await train(c, { quiet: true, handleSigint: false, stopAfter: 1 });
      const b = await train(c, { quiet: true, handleSigint: false, resume: true });
      expect([...a.losses, ...b.losses], `${enc} + ${objective}`).toEqual(straight.losses);
      cks[`${enc}-${objective}`] = straight.checkpoint;
    }
    await expect(embedToFile({ checkpoint: cks["counts-mlm"], input: tokens.binned, output: path.join(root, "x.arrow"), quiet: true, backend: "wasm" })).rejects.toThrow(
      /has encoding scgpt-binned but checkpoint .* expects scprint-counts/,
    );
    const golden = path.join(root, "golden-emb");
    writeGoldenTokens(golden); // same encoding, dictionary recorded with another sha256
    await expect(embedToFile({ checkpoint: cks["rank-denoise"], input: golden, output: path.join(root, "y.arrow"), quiet: true, backend: "wasm" })).rejects.toThrow(
      /was tokenized with dictionary token_dictionary_gc30M.pkl \(sha256 golden-test…\) but checkpoint .* was trained with token_dictionary_gc30M.* \(sha256 [0-9a-f]{12}…\)/,
    );
  });

  it("embeddings of binned and counts models do not depend on batch composition or padding (< 1e-5), and embed writes them, with 2 worker threads as with 1", async () => {
    for (const enc of ["binned", "counts"] as const) {
      const objective = enc === "counts" ? "denoise" : "mlm";
      const r = await train(cfg(tokens[enc], `emb-${enc}`, { objective, max_steps: 2 }), { quiet: true, handleSigint: false });
      const ck = readCheckpoint(r.checkpoint);
      const ds = readTokenizedDataset(tokens[enc]);
      const cells = ds.inputIds.slice(0, 5).map((c) => c.slice(0, 40));
      const values = ds.values!.slice(0, 5).map((v) => v.slice(0, 40));
      const all = embedCells(ck.model, cells, { values, layer: 0 });
      const H = ck.config.hidden_size;
      for (const i of [0, 3]) {
        const one = embedCells(ck.model, [cells[i]], { values: [values[i]], layer: 0 });
        for (let k = 0; k < H; k++) expect(Math.abs(one[k] - all[i * H + k])).toBeLessThan(1e-5);
      }
      ck.model.dispose();
      const out = path.join(root, `emb-${enc}.arrow`);
      const sum = await embedToFile({ checkpoint: r.checkpoint, input: tokens[enc], output: out, quiet: true, backend: "wasm", workers: 1 });
      expect(sum.nCells).toBe(ds.cellIds.length);
      // worker threads get the values with the ids: the same embeddings as in-process
      const sum2 = await embedToFile({ checkpoint: r.checkpoint, input: tokens[enc], output: out + ".w2", quiet: true, backend: "wasm", workers: 2, maxTokensPerBatch: 2048 });
      expect(sum2.workers).toBe(2);
      const e1 = readEmbeddings(out), e2 = readEmbeddings(out + ".w2");
      expect(e2.cellIds).toEqual(e1.cellIds);
      let dmax = 0;
      for (let k = 0; k < e1.data.length; k++) dmax = Math.max(dmax, Math.abs(e1.data[k] - e2.data[k]));
      expect(dmax).toBeLessThan(1e-5);
      await expect(embedToFile({ checkpoint: r.checkpoint, input: "data/tiny.h5ad", output: out + "2", quiet: true, backend: "wasm" })).rejects.toThrow(
        new RegExp(`tokenize data/tiny.h5ad with cellfm tokenize --encoding ${enc}`),
      );
    }
  });

  it("the data-parallel gradient of value models equals the whole micro-batch's (denoise nb, binned mlm)", async () => {
    await initBackend("wasm");
    for (const [enc, objective, training] of [
      ["counts", "denoise", { likelihood: "nb" }],
      ["binned", "mlm", {}],
      ["rank", "denoise", { likelihood: "poisson" }],
      ["counts", "mlm", {}],
      ["binned", "denoise", {}],
    ] as const) {
      const ds = readTokenizedDataset(tokens[enc]);
      const c = cfg(tokens[enc], "dp", { objective, max_steps: 1, ...training });
      const obj = makeObjective(ds.manifest.encoding, objective, {
        vocabulary: vocabularyOf(ds.manifest, tokens[enc]),
        training: c.training,
        maxLength: 64,
        manifest: ds.manifest,
        tokens: tokens[enc],
      });
      const model = buildModel({ ...TINY_MODEL, vocab_size: 25426, hidden_act: "relu", hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 } as never, {
        encoding: ds.manifest.encoding,
        objective,
        head: obj.head,
      }, { seed: 3 });
      const cells = Array.from({ length: 6 }, (_, i) => obj.cellFromDataset(ds.inputIds[i], ds.values![i], ds.nCounts?.[i], ds.counts?.[i]));
      const mb = obj.collate(cells, makeRng("dp"));
      const t = batchTensors(mb);
      const ref = model.lossAndGrads(t, mb, { training: false });
      disposeBatch(t);
      const dp = await DataParallel.start(model, { workers: 2, backend: "wasm" });
      try {
        dp.syncWeights();
        const got = await dp.lossAndGrads(shardBatch(mb, 2, 1, false));
        expect(Math.abs(got.loss - ref.loss)).toBeLessThan(1e-4);
        for (const [k, g] of ref.grads) {
          const d = tf.tidy(() => tf.max(tf.abs(tf.sub(g, got.grads.get(k)!))).dataSync()[0]);
          expect(d, k).toBeLessThan(1e-5);
        }
        tf.dispose([...got.grads.values(), ...ref.grads.values()]);
      } finally {
        await dp.dispose();
        model.dispose();
      }
    }
  });

  it("refuses an unsupported pair naming both, and denoise on rank tokens without counts says which tokenize to run", async () => {
    const rank = path.join(root, "golden");
    writeGoldenTokens(rank);
    expect(() => assertSupportedPair("scgpt-binned", "contrastive", "test.yaml")).toThrow(
      /test\.yaml: training\.objective "contrastive" is not supported with encoding "scgpt-binned" \(supported: .*scprint-counts \+ mlm/,
    );
    await expect(train(cfg(rank, "bad2", { objective: "denoise", max_steps: 1 }), { quiet: true })).rejects.toThrow(/rank tokens without their raw counts; re-run cellfm tokenize --encoding rank/);
    // binned tokens without the raw counts per token (written before the counts column existed)
    const ds = readTokenizedDataset(tokens.binned);
    const manifest = { ...ds.manifest, columns: ds.manifest.columns.filter((c) => c.name !== "counts") };
    const ctx = { vocabulary: vocabularyOf(ds.manifest, tokens.binned), training: cfg(tokens.binned, "x", { objective: "denoise", max_steps: 1 }).training, maxLength: 64, manifest, tokens: tokens.binned };
    expect(() => makeObjective("scgpt-binned", "denoise", ctx)).toThrow(/needs the bins and the raw counts per token \(counts column\); re-run cellfm tokenize --encoding binned/);
    expect(() => makeObjective("scprint-counts", "mlm", { ...ctx, manifest: ds.manifest })).toThrow(/masked value regression needs raw counts; run cellfm tokenize --encoding counts/);
  });
});
