/**
 * Input encodings that keep the expression values, and the heads that predict them (issue 9 §2–3):
 *
 * - {@link GeneValueEmbeddings}: token state = gene-identity embedding + value embedding (+ genomic
 *   position) → LayerNorm → dropout, **no learned absolute position** (gene order carries no meaning).
 *   The gene identity is a learned row per gene or, with external gene vectors (`model.gene_embeddings`,
 *   see {@link GeneIdentityOptions}), a learned linear projection of the gene's vector. The value embedding is
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

/**
 * Gene-identity options of {@link GeneValueEmbeddings} (config.json `cellfm.gene_embeddings` /
 * `cellfm.genomic_positions`).
 */
export interface GeneIdentityOptions {
  /**
   * External gene vectors (`model.gene_embeddings`): a `[vocab_size, dim]` table (rows of genes without
   * a vector are 0) projected to the hidden size by a learned linear layer (UCE / rosa style; scPRINT
   * instead average-pools ESM2 vectors, reference-spec §1d). `trainable: false` keeps the table fixed
   * (scPRINT's `freeze_embeddings`), the projection is always learned. `missing: "learned"`: a gene
   * without a vector uses its own learned row of `word_embeddings` (as without external vectors);
   * `"drop"`: no such row exists and those genes must be kept out of the contexts (the training loop
   * and `cellfm embed` do so, see {@link contextGeneMask}).
   */
  vectors?: { dim: number; trainable: boolean; missing: "learned" | "drop" };
  /**
   * Add the fixed sinusoidal genomic-position table `[vocab_size, hidden]` (`src/data/genomic-positions.ts`,
   * reference-spec §1d: genes within 10 kb share a position) to the token state; genes without a
   * location have a zero row.
   */
  genomicPositions?: boolean;
}

/** Weight names of the gene-identity tables (HF-style names in model.safetensors). */
export const GENE_VECTORS = "bert.embeddings.gene_vectors.weight";
export const GENE_HAS_VECTOR = "bert.embeddings.gene_vectors.has_vector";
export const GENE_PROJECTION = "bert.embeddings.gene_projection.weight";
export const GENOMIC_POSITIONS = "bert.embeddings.genomic_position_embeddings.weight";

/** Gene identity (+ genomic position) + value embeddings → LayerNorm → dropout (no position embedding). */
export class GeneValueEmbeddings implements InputEmbedding {
  /** The learned per-gene rows `[vocab_size, hidden]`; absent with external vectors and `missing: "drop"`. */
  readonly word?: tf.Variable;
  private readonly w: Record<string, tf.Variable> = {};

  constructor(c: BertConfig, p: ParamStore, private readonly enc: ValueEncoding, readonly identity: GeneIdentityOptions = {}) {
    const H = c.hidden_size;
    const vec = identity.vectors;
    if (vec && !(Number.isInteger(vec.dim) && vec.dim > 0)) throw new Error(`cellfm.gene_embeddings.dim: expected a positive integer, got ${JSON.stringify(vec.dim)}`);
    if (!vec || vec.missing === "learned") this.word = p.add("bert.embeddings.word_embeddings.weight", [c.vocab_size, H], "normal");
    if (vec) {
      this.w.vectors = p.add(GENE_VECTORS, [c.vocab_size, vec.dim], "zeros", { trainable: vec.trainable });
      this.w.has = p.add(GENE_HAS_VECTOR, [c.vocab_size, 1], "zeros", { trainable: false });
      this.w.projW = p.add(GENE_PROJECTION, [vec.dim, H], "normal", { linear: true });
      this.w.projB = p.add("bert.embeddings.gene_projection.bias", [H], "zeros");
    }
    if (identity.genomicPositions) this.w.genomic = p.add(GENOMIC_POSITIONS, [c.vocab_size, H], "zeros", { trainable: false });
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
   * Fill the external gene-vector table (after building a fresh model; a checkpoint restores it with
   * the other weights).
   * @param table `[vocab_size × dim]` row-major float32 (0 rows for genes without a vector)
   * @param has `[vocab_size]`, 1 where the gene has a vector
   * @throws Error when the model has no gene vectors or a size does not match
   */
  setGeneVectors(table: Float32Array, has: Uint8Array): void {
    const v = this.w.vectors, h = this.w.has;
    if (!v || !h) throw new Error("setGeneVectors: this model was built without model.gene_embeddings");
    const [V, D] = v.shape;
    if (table.length !== V * D || has.length !== V) throw new Error(`setGeneVectors: expected a ${V} x ${D} table and ${V} flags, got ${table.length} values and ${has.length} flags`);
    tf.tidy(() => {
      v.assign(tf.tensor2d(table, [V, D]));
      h.assign(tf.tensor2d(Float32Array.from(has), [V, 1]));
    });
  }

  /** Fill the genomic-position table, `[vocab_size × hidden]` row-major float32. */
  setGenomicPositions(table: Float32Array): void {
    const g = this.w.genomic;
    if (!g) throw new Error("setGenomicPositions: this model was built without model.genomic_positions");
    if (table.length !== g.size) throw new Error(`setGenomicPositions: expected ${g.size} values, got ${table.length}`);
    tf.tidy(() => g.assign(tf.tensor2d(table, g.shape as [number, number])));
  }

  /**
   * Tokens that may enter a context, `[vocab_size]` (1 = allowed), or undefined when every token may:
   * with external vectors and `missing: "drop"`, only genes with a vector.
   */
  allowedTokens(): Uint8Array | undefined {
    if (!this.identity.vectors || this.identity.vectors.missing !== "drop") return undefined;
    return Uint8Array.from(this.w.has.dataSync(), (x) => (x > 0 ? 1 : 0));
  }

  /** Gene-identity state of flat token ids `[N]` → `[N, hidden]` (with the genomic position, if any). */
  geneIdentity(ids: tf.Tensor1D): tf.Tensor2D {
    let gene: tf.Tensor2D;
    if (this.w.vectors) {
      const proj = linear(gatherRows(this.w.vectors as tf.Tensor2D, ids), this.w.projW as tf.Tensor2D, this.w.projB as tf.Tensor1D);
      if (this.word) {
        const has = gatherRows(this.w.has as tf.Tensor2D, ids); // [N, 1]
        gene = tf.add(tf.mul(proj, has), tf.mul(gatherRows(this.word as tf.Tensor2D, ids), tf.sub(1, has))) as tf.Tensor2D;
      } else gene = proj;
    } else gene = gatherRows(this.word as tf.Tensor2D, ids);
    if (this.w.genomic) gene = tf.add(gene, gatherRows(this.w.genomic as tf.Tensor2D, ids)) as tf.Tensor2D;
    return gene;
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
    const gene = this.geneIdentity(ids);
    let value: tf.Tensor2D;
    if (this.enc.kind === "bins") {
      const nb = this.enc.nBins;
      // bin indices from the (input, non-differentiable) values, on the device (webgpu has no sync
      // read): negative = the <mask> row nb, else round(x) capped at nb − 1 (bins are integers)
      const vf = tf.reshape(batch.values, [N]);
      const idx = tf.cast(tf.where(tf.less(vf, 0), tf.fill([N], nb), tf.minimum(tf.floor(tf.add(vf, 0.5)), nb - 1)), "int32") as tf.Tensor1D;
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

/**
 * The tokens a model's contexts may hold (`[vocab_size]`, 1 = allowed), or undefined when any token
 * may: a model with external gene vectors and `missing: "drop"` has no representation for genes
 * without a vector, so every caller that builds contexts (training, `cellfm embed`) removes them.
 */
export function contextGeneMask(embedding: InputEmbedding): Uint8Array | undefined {
  return embedding instanceof GeneValueEmbeddings ? embedding.allowedTokens() : undefined;
}

/**
 * Copy the gene-identity tables (external gene vectors and their flags, genomic positions) of one
 * model into another built from the same spec, e.g. an untrained copy of a trained model: those
 * tables come from files, not from the weight initialiser (a trainable vector table is copied as
 * trained).
 */
export function copyGeneTables(from: { weights: Map<string, tf.Variable> }, to: { weights: Map<string, tf.Variable> }): void {
  for (const name of [GENE_VECTORS, GENE_HAS_VECTOR, GENOMIC_POSITIONS]) {
    const a = from.weights.get(name), b = to.weights.get(name);
    if (a && b) b.assign(a);
  }
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
