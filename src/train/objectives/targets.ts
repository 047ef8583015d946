/**
 * What a masked position predicts, per encoding (the encoding's target transform) — the one part of
 * masked modelling (`./masked.ts`) that differs between encodings:
 *
 * - {@link tokenTarget} (rank-value tokens, Geneformer): the gene token itself is masked as HF
 *   `DataCollatorForLanguageModeling` does (`../masking.ts`: 80 % `<mask>`, 10 % a random token, 10 %
 *   unchanged); loss = cross-entropy over the vocabulary; baseline = the unigram gene frequency.
 * - {@link binTarget} (scGPT bins): the value is masked (the gene identity stays, as scGPT masks
 *   values, not genes); target = the bin, cross-entropy over the n_bins bins; baseline = the training
 *   cells' bin frequencies (add-one smoothing).
 * - {@link log1pTarget} (scPRINT raw counts): the value is masked (the count encoder's learned mask
 *   vector replaces it); target = log1p(count), squared error; baseline = the training cells'
 *   per-gene mean of log1p(count) (`init_output_bias: unigram` starts the head's per-gene offset there).
 *
 * Value targets mask each context position with probability `mask_probability` (its value replaced
 * by the <mask> value −1); at least one position per batch.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { CellModel } from "../../model/bert.js";
import type { BertConfig } from "../../model/config.js";
import { padRows } from "../../model/batch.js";
import type { Rng } from "../../rng.js";
import { mlmHeadFlops } from "../flops.js";
import { collateMlm, type MaskingOptions } from "../masking.js";
import type { BaselineResult, CollatedBatch, TrainCell } from "./types.js";

/** One cell's training context: token ids and (value encodings) their values. */
export interface Context {
  ids: Int32Array;
  values?: Float32Array;
}

/** The encoding-specific part of masked modelling. */
export interface MaskedTarget {
  /** what the loss measures, for logs. */
  readonly lossDescription: string;
  /** the label of a scored position is its gene (masked gene tokens), see `Objective.labelIsGene`. */
  readonly labelIsGene?: boolean;
  /** head options recorded in config.json `cellfm.head` (absent: none). */
  readonly head?: Record<string, unknown>;
  /** pad the contexts and mask them, drawing from `rng`. @throws Error for an empty batch or cell */
  collate(contexts: readonly Context[], padId: number, rng: Rng): CollatedBatch;
  baseline(trainCells: readonly TrainCell[], valBatches: readonly CollatedBatch[]): BaselineResult;
  initOutputBias(model: CellModel, trainCells: readonly TrainCell[], mode: string): void;
  headFlops(config: BertConfig, batch: CollatedBatch): number;
}

// ---- gene tokens (rank) -------------------------------------------------------------------------

/**
 * Token counts over cells, `[vocabSize]` float64, and their total.
 * @throws Error when a token id is outside [0, vocabSize).
 */
export function tokenCounts(cells: Iterable<Int32Array>, vocabSize: number): { counts: Float64Array; total: number } {
  const counts = new Float64Array(vocabSize);
  let total = 0;
  for (const c of cells) {
    for (const t of c) {
      if (t < 0 || t >= vocabSize) throw new Error(`token id ${t} outside [0, ${vocabSize})`);
      counts[t]++;
    }
    total += c.length;
  }
  return { counts, total };
}

/** Log unigram probabilities with add-one (Laplace) smoothing, `[vocabSize]` float32. */
export function logUnigram(counts: Float64Array, total: number): Float32Array {
  const V = counts.length;
  const out = new Float32Array(V);
  const denom = total + V;
  for (let i = 0; i < V; i++) out[i] = Math.log((counts[i] + 1) / denom);
  return out;
}

/**
 * Unigram baseline: predict every masked gene from its frequency among the training cells' tokens,
 * with add-one (Laplace) smoothing over the vocabulary; returns the mean cross-entropy (nats) of the
 * labels at the same fixed masked positions.
 */
export function unigramLoss(trainCells: Iterable<Int32Array>, vocabSize: number, batches: readonly { labels?: Int32Array }[]): number {
  const { counts, total } = tokenCounts(trainCells, vocabSize);
  const logp = logUnigram(counts, total);
  let sum = 0;
  let n = 0;
  for (const b of batches) {
    for (const lab of b.labels ?? []) {
      sum -= logp[lab];
      n++;
    }
  }
  return n > 0 ? sum / n : NaN;
}

/** Masked gene tokens (Geneformer): the target is the token id (reference-spec §1b). */
export function tokenTarget(masking: MaskingOptions): MaskedTarget {
  return {
    lossDescription: "masked-token cross-entropy (nats per masked gene)",
    labelIsGene: true,
    collate: (contexts, _padId, rng) =>
      collateMlm(
        contexts.map((c) => c.ids),
        rng,
        masking,
      ),
    baseline(trainCells, valBatches) {
      const loss = unigramLoss(
        trainCells.map((c) => c.inputIds),
        masking.vocabSize,
        valBatches,
      );
      return {
        name: "unigram",
        loss,
        description:
          "unigram: each masked gene predicted from its frequency among the training cells' tokens (add-one smoothing over the vocabulary), same fixed mask",
        extra: { unigram_loss: loss },
      };
    },
    initOutputBias(model, trainCells, mode) {
      if (mode !== "unigram") return;
      const bias = model.weights.get("cls.predictions.bias");
      if (!bias) throw new Error("init_output_bias: the model has no cls.predictions.bias");
      const { counts, total } = tokenCounts(
        trainCells.map((c) => c.inputIds),
        masking.vocabSize,
      );
      tf.tidy(() => bias.assign(tf.tensor1d(logUnigram(counts, total), "float32")));
    },
    headFlops: (config, batch) => mlmHeadFlops(config, batch.positions.length),
  };
}

// ---- masked values (binned, counts) ---------------------------------------------------------------

/**
 * Pad value contexts and mask each position with probability `p` (at least one per batch): the
 * masked input value becomes −1 (the <mask> value), `target(v)` of the original value is recorded
 * as an integer label or a float target.
 */
function maskValues(contexts: readonly Context[], padId: number, rng: Rng, p: number, target: (v: number) => number, into: "labels" | "targets"): CollatedBatch {
  const r = padRows(
    contexts.map((c) => c.ids),
    contexts.map((c) => c.values!),
    padId,
    undefined,
    "collate",
  );
  const b: CollatedBatch = { batch: r.batch, seqLen: r.seqLen, inputIds: r.inputIds, attentionMask: r.attentionMask, values: r.values, positions: new Int32Array(0), realTokens: r.realTokens };
  const pos: number[] = [], tgt: number[] = [];
  contexts.forEach((c, k) => {
    for (let i = 0; i < c.ids.length; i++) {
      if (rng() < p) {
        pos.push(k * b.seqLen + i);
        tgt.push(target(c.values![i]));
      }
    }
  });
  if (pos.length === 0) {
    const k = Math.floor(rng() * contexts.length), i = Math.floor(rng() * contexts[k].ids.length);
    pos.push(k * b.seqLen + i);
    tgt.push(target(contexts[k].values![i]));
  }
  for (const q of pos) b.values![q] = -1; // the <mask> value
  b.positions = Int32Array.from(pos);
  if (into === "labels") b.labels = Int32Array.from(tgt);
  else b.targets = Float32Array.from(tgt);
  return b;
}

/** Masked bins (scGPT): the target is the bin index, cross-entropy over `nBins` bins. */
export function binTarget(nBins: number, maskProbability: number): MaskedTarget {
  const logFreq = (trainCells: readonly TrainCell[]): Float32Array => {
    const n = new Float64Array(nBins);
    let total = 0;
    for (const c of trainCells) {
      for (const v of c.values!) {
        const k = Math.round(v);
        if (k < 0 || k >= nBins) throw new Error(`bin ${v} outside [0, ${nBins})`);
        n[k]++;
        total++;
      }
    }
    return Float32Array.from(n, (x) => Math.log((x + 1) / (total + nBins)));
  };
  return {
    lossDescription: "masked-bin cross-entropy (nats per masked value)",
    head: { n_bins: nBins },
    collate: (contexts, padId, rng) => maskValues(contexts, padId, rng, maskProbability, Math.round, "labels"),
    baseline(trainCells, valBatches) {
      const lp = logFreq(trainCells);
      let sum = 0, n = 0;
      for (const b of valBatches) for (const l of b.labels ?? []) (sum -= lp[l]), n++;
      return {
        name: "bin_frequency",
        loss: n ? sum / n : NaN,
        description:
          "bin frequency: each masked value predicted from the frequency of its bin among the training cells' stored values (add-one smoothing over the bins), same fixed mask",
      };
    },
    initOutputBias(model, trainCells, mode) {
      if (mode !== "unigram") return;
      const bias = model.weights.get("cls.bins.bias");
      if (!bias) throw new Error("init_output_bias: the model has no cls.bins.bias");
      tf.tidy(() => bias.assign(tf.tensor1d(logFreq(trainCells))));
    },
    headFlops(config, batch) {
      const H = config.hidden_size;
      return batch.positions.length * (2 * H * H + 2 * H * nBins);
    },
  };
}

/** Per-gene mean of log1p(count) over the training cells' stored (expressed) values; the global mean for unseen genes. */
function geneMeans(trainCells: readonly TrainCell[], minSize: number): { mean: Float64Array; global: number } {
  let V = minSize;
  for (const c of trainCells) for (const g of c.inputIds) V = Math.max(V, g + 1);
  const sum = new Float64Array(V), n = new Float64Array(V);
  let tot = 0, cnt = 0;
  for (const c of trainCells) {
    c.inputIds.forEach((g, i) => {
      const y = Math.log1p(c.values![i]);
      sum[g] += y;
      n[g]++;
      tot += y;
      cnt++;
    });
  }
  const global = cnt ? tot / cnt : 0;
  return { mean: Float64Array.from(sum, (s, g) => (n[g] > 0 ? s / n[g] : global)), global };
}

/** Masked value regression (scPRINT counts): the target is log1p(count), squared error. */
export function log1pTarget(maskProbability: number): MaskedTarget {
  return {
    lossDescription: "masked-value squared error of log1p(count) (per masked value)",
    head: { target: "log1p" },
    collate: (contexts, padId, rng) => maskValues(contexts, padId, rng, maskProbability, Math.log1p, "targets"),
    baseline(trainCells, valBatches) {
      let V = 1;
      for (const b of valBatches) for (const g of b.inputIds) V = Math.max(V, g + 1);
      const { mean, global } = geneMeans(trainCells, V);
      let sse = 0, sseGlobal = 0, n = 0;
      for (const b of valBatches) {
        b.positions.forEach((p, j) => {
          const y = b.targets![j];
          sse += (y - mean[b.inputIds[p]]) ** 2;
          sseGlobal += (y - global) ** 2;
          n++;
        });
      }
      return {
        name: "per_gene_mean",
        loss: n ? sse / n : NaN,
        description:
          "per-gene mean: each masked value predicted by its gene's mean log1p(count) over the training cells that express it (the global mean for genes no training cell expresses); squared error at the same fixed mask",
        extra: { global_mean_loss: n ? sseGlobal / n : NaN },
      };
    },
    initOutputBias(model, trainCells, mode) {
      if (mode !== "unigram") return;
      const gb = model.weights.get("cls.values.gene_bias");
      if (!gb) throw new Error("init_output_bias: the model has no cls.values.gene_bias");
      const V = gb.shape[0];
      const { mean } = geneMeans(trainCells, V);
      if (mean.length > V) throw new Error(`init_output_bias: token id ${mean.length - 1} outside the model's vocabulary (${V})`);
      tf.tidy(() => gb.assign(tf.tensor1d(Float32Array.from(mean))));
    },
    headFlops(config, batch) {
      const H = config.hidden_size;
      return batch.positions.length * (2 * H * H + 2 * H);
    },
  };
}
