/**
 * Input encodings that keep the expression values, and the heads that predict them (issue 9 §2–3):
 *
 * - {@link GeneValueEmbeddings}: token state = gene-identity embedding + value embedding → LayerNorm →
 *   dropout, **no learned absolute position** (gene order carries no meaning). The value embedding is
 *   a table of bin embeddings (scGPT `binned`, bins 0..n_bins−1; reference-spec §1c) or an MLP on
 *   log2(1 + count), 1 → hidden → hidden with ReLU (scPRINT `counts`, reference-spec §1d). A negative
 *   value marks a masked value (MLM): it gets a learned mask row / vector instead.
 * - {@link BinHead}: masked value prediction, cross-entropy over the n_bins bins at masked positions.
 * - {@link DenoiseHead}: scPRINT's count head, for every context gene of a cell: mean = softmax over
 *   the cell's context genes × the cell's library size, dispersion θ = exp(min(v, 15)) per cell and
 *   gene, zero-inflation logit ψ; loss = mean ZINB (or NB, Poisson) negative log-likelihood of the
 *   original counts (`./likelihoods.ts`, scVI's stable forms).
 *
 * Weight names follow HF conventions (`bert.embeddings.*`, `cls.*`) so the folder stays a readable
 * safetensors checkpoint; `transformers` has no class for these models (config.json `architectures`
 * names cellfm's).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { BertConfig } from "./config.js";
import type { ForwardContext, Head, InputEmbedding, LossTargets, ModelBatch, ParamStore } from "./bert.js";
import { dispersionFromRaw, type Likelihood, nbNll, poissonNll, zinbNll } from "./likelihoods.js";
import { gatherRows, layerNorm, linear, sparseSoftmaxCrossEntropy } from "./ops.js";

/** How {@link GeneValueEmbeddings} encodes values. */
export type ValueEncoding = { kind: "bins"; nBins: number } | { kind: "counts" };

/** Gene identity + value embeddings → LayerNorm → dropout (no position embedding). */
export class GeneValueEmbeddings implements InputEmbedding {
  readonly word: tf.Variable;
  private readonly w: Record<string, tf.Variable> = {};

  constructor(c: BertConfig, p: ParamStore, private readonly enc: ValueEncoding) {
    const H = c.hidden_size;
    this.word = p.add("bert.embeddings.word_embeddings.weight", [c.vocab_size, H], "normal");
    if (enc.kind === "bins") {
      // row n_bins = the <mask> value
      this.w.bins = p.add("bert.embeddings.value_embeddings.weight", [enc.nBins + 1, H], "normal");
    } else {
      this.w.w1 = p.add("bert.embeddings.value_encoder.dense1.weight", [1, H], "normal", { linear: true });
      this.w.b1 = p.add("bert.embeddings.value_encoder.dense1.bias", [H], "zeros");
      this.w.w2 = p.add("bert.embeddings.value_encoder.dense2.weight", [H, H], "normal", { linear: true });
      this.w.b2 = p.add("bert.embeddings.value_encoder.dense2.bias", [H], "zeros");
      this.w.mask = p.add("bert.embeddings.value_encoder.mask_embedding", [H], "normal");
    }
    this.w.lnG = p.add("bert.embeddings.LayerNorm.weight", [H], "ones");
    this.w.lnB = p.add("bert.embeddings.LayerNorm.bias", [H], "zeros");
  }

  /**
   * @param batch ids `[B, L]` and values `[B, L]` (bin index or raw count; < 0 = masked)
   * @throws Error when the batch has no values
   */
  forward(batch: ModelBatch, ctx: ForwardContext): tf.Tensor2D {
    if (!batch.values) throw new Error("this model's input encoding needs per-token values (the tokenized dataset's values column)");
    const [B, L] = batch.inputIds.shape;
    const N = B * L;
    const ids = tf.reshape(batch.inputIds, [N]) as tf.Tensor1D;
    const v = tf.reshape(batch.values, [N, 1]) as tf.Tensor2D;
    const masked = tf.cast(tf.less(v, 0), "float32") as tf.Tensor2D; // [N, 1]
    const gene = gatherRows(this.word as tf.Tensor2D, ids);
    let value: tf.Tensor2D;
    if (this.enc.kind === "bins") {
      const nb = this.enc.nBins;
      // bin indices from the (input, non-differentiable) values; negative = the <mask> row
      const vals = batch.values.dataSync();
      const idx = tf.tensor1d(
        Int32Array.from(vals, (x) => (x < 0 ? nb : Math.min(nb - 1, Math.round(x)))),
        "int32",
      );
      value = gatherRows(this.w.bins as tf.Tensor2D, idx);
    } else {
      const x = tf.div(tf.log1p(tf.relu(v)), Math.LN2) as tf.Tensor2D; // log2(1 + count)
      const h1 = linear(x, this.w.w1 as tf.Tensor2D, this.w.b1 as tf.Tensor1D, "relu");
      const h2 = linear(h1, this.w.w2 as tf.Tensor2D, this.w.b2 as tf.Tensor1D);
      value = tf.add(tf.mul(h2, tf.sub(1, masked)), tf.mul(tf.reshape(this.w.mask, [1, -1]), masked)) as tf.Tensor2D;
    }
    const y = layerNorm(tf.add(gene, value) as tf.Tensor2D, this.w.lnG as tf.Tensor1D, this.w.lnB as tf.Tensor1D, ctx.config.layer_norm_eps);
    return ctx.dropout.apply(y, ctx.config.hidden_dropout_prob);
  }
}

function checkPositions(t: LossTargets, B: number, L: number): void {
  if (t.positions.length === 0) throw new Error("the batch has no position with a loss term");
  for (const p of t.positions) if (p < 0 || p >= B * L) throw new Error(`loss position ${p} outside [0, ${B * L})`);
}

/** Masked value prediction over bins: LayerNorm(act(dense(h))) → n_bins logits, cross-entropy. */
export class BinHead implements Head {
  private readonly w: Record<string, tf.Variable> = {};

  constructor(c: BertConfig, p: ParamStore, private readonly nBins: number) {
    const H = c.hidden_size;
    this.w.dW = p.add("cls.bins.transform.dense.weight", [H, H], "normal", { linear: true });
    this.w.dB = p.add("cls.bins.transform.dense.bias", [H], "zeros");
    this.w.lnG = p.add("cls.bins.transform.LayerNorm.weight", [H], "ones");
    this.w.lnB = p.add("cls.bins.transform.LayerNorm.bias", [H], "zeros");
    this.w.oW = p.add("cls.bins.decoder.weight", [H, nBins], "normal", { linear: true });
    this.w.bias = p.add("cls.bins.bias", [nBins], "zeros");
  }

  check(t: LossTargets, B: number, L: number): void {
    checkPositions(t, B, L);
    if (!t.labels || t.labels.length !== t.positions.length) throw new Error("masked bins: one label per masked position is needed");
    for (const l of t.labels) if (l < 0 || l >= this.nBins) throw new Error(`bin label ${l} outside [0, ${this.nBins})`);
  }

  loss(hidden: tf.Tensor2D, t: LossTargets, _b: ModelBatch, ctx: ForwardContext): tf.Scalar {
    const rows = gatherRows(hidden, tf.tensor1d(t.positions, "int32"));
    const h = layerNorm(
      linear(rows, this.w.dW as tf.Tensor2D, this.w.dB as tf.Tensor1D, ctx.config.hidden_act),
      this.w.lnG as tf.Tensor1D,
      this.w.lnB as tf.Tensor1D,
      ctx.config.layer_norm_eps,
    );
    const logits = linear(h, this.w.oW as tf.Tensor2D, this.w.bias as tf.Tensor1D);
    return sparseSoftmaxCrossEntropy(logits, tf.tensor1d(t.labels!, "int32"));
  }
}

/**
 * scPRINT-style count head: act(dense(h)) → 3 numbers per token (mean logit, raw dispersion,
 * zero-inflation logit). The targets give the original count at every scored position and the
 * library size of every cell (`cellScalars`); the mean of gene g in cell c is
 * softmax_c(mean logits over c's real tokens)_g × library size_c.
 */
export class DenoiseHead implements Head {
  private readonly w: Record<string, tf.Variable> = {};

  constructor(c: BertConfig, p: ParamStore, readonly likelihood: Likelihood) {
    const H = c.hidden_size;
    this.w.dW = p.add("cls.denoise.transform.dense.weight", [H, H], "normal", { linear: true });
    this.w.dB = p.add("cls.denoise.transform.dense.bias", [H], "zeros");
    this.w.oW = p.add("cls.denoise.decoder.weight", [H, 3], "normal", { linear: true });
    this.w.oB = p.add("cls.denoise.decoder.bias", [3], "zeros");
  }

  check(t: LossTargets, B: number, L: number): void {
    checkPositions(t, B, L);
    if (!t.targets || t.targets.length !== t.positions.length) throw new Error("denoise: one original count per scored position is needed");
    if (!t.cellScalars || t.cellScalars.length !== B) throw new Error(`denoise: one library size per cell is needed (${B} cells)`);
    for (const x of t.targets) if (!(x >= 0) || !Number.isFinite(x)) throw new Error(`denoise: original count ${x} is not a finite number >= 0`);
  }

  /** Mean μ, dispersion θ and zero-inflation logit ψ of every token, each `[B, L]` (padding μ = 0). */
  params(hidden: tf.Tensor2D, batch: ModelBatch, libSize: tf.Tensor1D, ctx: ForwardContext): { mu: tf.Tensor2D; theta: tf.Tensor2D; psi: tf.Tensor2D } {
    const [B, L] = batch.inputIds.shape;
    const h = linear(hidden, this.w.dW as tf.Tensor2D, this.w.dB as tf.Tensor1D, ctx.config.hidden_act);
    const o = linear(h, this.w.oW as tf.Tensor2D, this.w.oB as tf.Tensor1D); // [B*L, 3]
    const col = (k: number) => tf.reshape(tf.slice(o, [0, k], [B * L, 1]), [B, L]) as tf.Tensor2D;
    const logits = tf.add(col(0), tf.mul(tf.sub(1, batch.attentionMask), -1e9)) as tf.Tensor2D;
    const mu = tf.mul(tf.softmax(logits), tf.reshape(libSize, [B, 1])) as tf.Tensor2D;
    return { mu, theta: dispersionFromRaw(col(1)) as tf.Tensor2D, psi: col(2) };
  }

  loss(hidden: tf.Tensor2D, t: LossTargets, batch: ModelBatch, ctx: ForwardContext): tf.Scalar {
    const [B, L] = batch.inputIds.shape;
    const x = new Float32Array(B * L), w = new Float32Array(B * L);
    t.positions.forEach((p, j) => {
      x[p] = t.targets![j];
      w[p] = 1;
    });
    const { mu, theta, psi } = this.params(hidden, batch, tf.tensor1d(t.cellScalars!, "float32"), ctx);
    const xt = tf.tensor2d(x, [B, L]);
    const nll =
      this.likelihood === "zinb" ? zinbNll(xt, mu, theta, psi) : this.likelihood === "nb" ? nbNll(xt, mu, theta) : poissonNll(xt, mu);
    return tf.div(tf.sum(tf.mul(nll, tf.tensor2d(w, [B, L]))), t.positions.length) as tf.Scalar;
  }
}

/**
 * Masked value regression (issue 9 §3, `counts` + `mlm`): LayerNorm(act(dense(h))) → one number per
 * masked position, plus a learned per-gene offset of the masked gene (`cls.values.gene_bias`, like
 * the MLM output bias: `training.init_output_bias: unigram` starts it at the training cells'
 * per-gene means, so the model starts at the per-gene-mean baseline); the sum is the predicted
 * log1p(count); loss = mean squared error against the targets (log1p of the masked original
 * counts) at the masked positions.
 */
export class ValueRegressionHead implements Head {
  private readonly w: Record<string, tf.Variable> = {};

  constructor(c: BertConfig, p: ParamStore) {
    const H = c.hidden_size;
    this.w.dW = p.add("cls.values.transform.dense.weight", [H, H], "normal", { linear: true });
    this.w.dB = p.add("cls.values.transform.dense.bias", [H], "zeros");
    this.w.lnG = p.add("cls.values.transform.LayerNorm.weight", [H], "ones");
    this.w.lnB = p.add("cls.values.transform.LayerNorm.bias", [H], "zeros");
    this.w.oW = p.add("cls.values.decoder.weight", [H, 1], "normal", { linear: true });
    this.w.bias = p.add("cls.values.bias", [1], "zeros");
    this.w.geneBias = p.add("cls.values.gene_bias", [c.vocab_size], "zeros");
  }

  check(t: LossTargets, B: number, L: number): void {
    checkPositions(t, B, L);
    if (!t.targets || t.targets.length !== t.positions.length) throw new Error("masked values: one target per masked position is needed");
    for (const x of t.targets) if (!Number.isFinite(x)) throw new Error(`masked values: target ${x} is not a finite number`);
  }

  /** Predicted log1p(count) at `positions` (rows of the flattened `[B * L]` batch), `[n]`. */
  predict(hidden: tf.Tensor2D, batch: ModelBatch, positions: Int32Array, ctx: ForwardContext): tf.Tensor1D {
    const pos = tf.tensor1d(positions, "int32");
    const rows = gatherRows(hidden, pos);
    const genes = tf.gather(tf.reshape(batch.inputIds, [-1]), pos) as tf.Tensor1D;
    const offset = gatherRows(tf.reshape(this.w.geneBias, [-1, 1]) as tf.Tensor2D, genes);
    const h = layerNorm(
      linear(rows, this.w.dW as tf.Tensor2D, this.w.dB as tf.Tensor1D, ctx.config.hidden_act),
      this.w.lnG as tf.Tensor1D,
      this.w.lnB as tf.Tensor1D,
      ctx.config.layer_norm_eps,
    );
    return tf.reshape(tf.add(linear(h, this.w.oW as tf.Tensor2D, this.w.bias as tf.Tensor1D), offset), [-1]) as tf.Tensor1D;
  }

  loss(hidden: tf.Tensor2D, t: LossTargets, batch: ModelBatch, ctx: ForwardContext): tf.Scalar {
    const y = this.predict(hidden, batch, t.positions, ctx);
    return tf.mean(tf.square(tf.sub(y, tf.tensor1d(t.targets!, "float32")))) as tf.Scalar;
  }
}
