/**
 * BERT encoder ({@link BertModel}) + one pretraining head, in TensorFlow.js, driven by one
 * {@link BertConfig}; {@link BertForMaskedLM} is HuggingFace's `BertForMaskedLM` (= `self.bert` +
 * `self.cls`). Post-LayerNorm blocks as in `transformers/models/bert/modeling_bert.py`
 * (the architecture of Geneformer, reference-spec §1b):
 *
 *   embeddings = LayerNorm(word[ids] + position[0..L) + token_type[0]) → dropout
 *   layer      = x1 = LayerNorm(x + dropout(Wo·attention(x)));  x2 = LayerNorm(x1 + dropout(W2·act(W1·x1)))
 *   MLM head   = LayerNorm(act(Wt·h)) · word_embeddingsᵀ + bias   (decoder tied to the word embeddings)
 *
 * Weights live in {@link BertForMaskedLM.weights} under HF `BertForMaskedLM` names. Dense weights
 * are stored `[in, out]` internally (the layout the fast wasm matmul wants); {@link exportWeights} /
 * {@link importWeights} convert to and from the PyTorch/HF layout `[out, in]` used in safetensors.
 *
 * A model ({@link CellModel}) = {@link BertModel} (one {@link InputEmbedding} + the transformer
 * layers → hidden states) + one {@link Head} (a loss on the hidden states). Other encodings (value
 * bins, raw counts) and heads (ZINB) plug in without touching the encoder; embedding extraction
 * uses {@link BertModel} only. Models are built from a checkpoint's config by `./factory.ts`. All math goes through `./ops.ts` (fast on wasm, same code on cpu/tensorflow).
 */
import * as tf from "@tensorflow/tfjs-core";
import { type BertConfig, validateBertConfig } from "./config.js";
import { bertLayerOp } from "./layer_op.js";
import { RANK } from "../encoding/rank.js";
import type { CellSpec } from "./cell-heads.js";
import { attention, DropoutContext, gatherRows, layerNorm, linear, sparseSoftmaxCrossEntropy, tiedDecoder } from "./ops.js";

/** One padded batch of cells. */
export interface ModelBatch {
  /** Token ids, int32 `[batch, seqLen]`, right-padded with `pad_token_id`. */
  inputIds: tf.Tensor2D;
  /** 1 = real token, 0 = padding; float32 `[batch, seqLen]`. */
  attentionMask: tf.Tensor2D;
  /**
   * Per-token input values, float32 `[batch, seqLen]` (bin index or raw count), for encodings that
   * carry expression values; absent for rank-value tokens.
   */
  values?: tf.Tensor2D;
}

/**
 * What a head's loss is computed against, as plain arrays (so it can be posted to a worker):
 * the flat positions `b * seqLen + i` that carry a loss term and, per position, an integer label
 * and/or a float target; optionally one float per cell (e.g. library size).
 */
export interface LossTargets {
  /** Flat positions `b * seqLen + i` with a loss term, ascending. */
  positions: Int32Array;
  /** Integer target per position (MLM: original token id or value bin). */
  labels?: Int32Array;
  /** Float target per position (count regression, original counts). */
  targets?: Float32Array;
  /** One float per cell `[batch]` (e.g. the cell's library size). */
  cellScalars?: Float32Array;
}

/** Masked-token targets for {@link BertForMaskedLM.mlmLoss}. */
export interface MaskedTargets extends LossTargets {
  /** Original token id at each chosen position (same length as `positions`). */
  labels: Int32Array;
}

/** Options of a forward pass. */
export interface ForwardOptions {
  /** Apply dropout (training mode). */
  training: boolean;
  /** Base seed of the dropout masks (same seed → same masks on the same backend). */
  dropoutSeed?: number;
  /** Also return the hidden states of every layer (index 0 = embedding output). */
  outputHiddenStates?: boolean;
  /** Run only the first n transformer layers (embedding extraction from a lower layer). */
  numLayers?: number;
}

/** Result of {@link BertForMaskedLM.forward}. */
export interface ForwardOutput {
  /** Output of the last layer run, `[batch, seqLen, hidden]`. */
  lastHiddenState: tf.Tensor3D;
  /** With `outputHiddenStates`: index 0 = embedding output, i = output of layer i; each `[batch, seqLen, hidden]`. */
  hiddenStates?: tf.Tensor3D[];
}

/** Variables of one model, keyed by HF names; dense weights are flagged to be transposed in HF layout. */
export class ParamStore {
  private static nextId = 0;
  /** HF name → variable. */
  readonly vars = new Map<string, tf.Variable>();
  /** HF names whose tensor is stored `[in, out]` here and `[out, in]` in HF files. */
  readonly transposedInHF = new Set<string>();
  private readonly byTfName = new Map<string, string>();
  private readonly uid = ParamStore.nextId++;
  private n = 0;

  constructor(private readonly seed: number, private readonly std: number) {}

  /**
   * Create a variable. `init`: "normal" = N(0, initializer_range) seeded, "ones", "zeros".
   * `opts.trainable: false` makes a fixed tensor (a frozen gene-embedding table, the genomic-position
   * table): saved with the weights, never given a gradient or an optimizer update.
   */
  add(name: string, shape: number[], init: "normal" | "ones" | "zeros", opts: { linear?: boolean; trainable?: boolean } = {}): tf.Variable {
    if (this.vars.has(name)) throw new Error(`duplicate weight name ${name}`);
    const seed = this.seed * 1000 + this.n++;
    const t = tf.tidy(() =>
      init === "normal" ? tf.randomNormal(shape, 0, this.std, "float32", seed) : init === "ones" ? tf.ones(shape) : tf.zeros(shape),
    );
    const tfName = `cellfm${this.uid}/${name}`;
    const v = tf.variable(t, opts.trainable ?? true, tfName);
    t.dispose();
    this.vars.set(name, v);
    this.byTfName.set(tfName, name);
    if (opts.linear) this.transposedInHF.add(name);
    return v;
  }

  /** HF name of a tfjs variable name (as keys of `tf.variableGrads`). */
  hfName(tfName: string): string {
    const n = this.byTfName.get(tfName);
    if (n === undefined) throw new Error(`unknown variable ${tfName}`);
    return n;
  }
}

/** Carries dropout state and config through one forward pass. */
export interface ForwardContext {
  config: BertConfig;
  dropout: DropoutContext;
}

/**
 * Turns a batch into the encoder's input states. Implementations: {@link BertEmbeddings}
 * (Geneformer rank-value tokens); value-binned or raw-count encoders.
 */
export interface InputEmbedding {
  /** @returns `[batch * seqLen, hidden]` (rows in batch-major order), after LayerNorm and dropout. */
  forward(batch: ModelBatch, ctx: ForwardContext): tf.Tensor2D;
  /** The gene-token embedding table `[vocab_size, hidden]`, when there is one (tied MLM decoders). */
  readonly word?: tf.Variable;
  /**
   * The gene-identity embedding of token ids `[N]` → `[N, hidden]`: the gene's own input vector,
   * without value, position, LayerNorm or dropout (scGPT's gene token embedding, read by the `mvc`
   * decoder, `./cell-heads.ts`).
   */
  geneIdentity(ids: tf.Tensor1D): tf.Tensor2D;
}

/**
 * A pretraining head on the encoder output. `TTarget` is what the loss needs (e.g. masked positions
 * and labels for MLM; counts and library sizes for ZINB).
 */
export interface Head<TTarget extends LossTargets = LossTargets> {
  /**
   * Check a target against a batch of `batch × seqLen` tokens before any tensor is made.
   * @throws Error naming the bad position or label
   */
  check(target: TTarget, batch: number, seqLen: number): void;
  /**
   * @param hidden last hidden state `[batch * seqLen, hidden]`
   * @param batch the batch the hidden states came from (attention mask, values)
   * @returns scalar loss (mean over the target's positions)
   */
  loss(hidden: tf.Tensor2D, target: TTarget, batch: ModelBatch, ctx: ForwardContext): tf.Scalar;
  /**
   * Optional, for a loss made of named terms (`./cell-heads.ts` `CompositeHead`): the loss and each
   * term's scalar (as the loss weighs it, before its weight), from one forward pass.
   */
  lossWithTerms?(hidden: tf.Tensor2D, target: TTarget, batch: ModelBatch, ctx: ForwardContext): { loss: tf.Scalar; terms: Map<string, tf.Scalar> };
}

/** Word + learned position + token-type(0) embeddings → LayerNorm → dropout (HF `BertEmbeddings`). */
export class BertEmbeddings implements InputEmbedding {
  readonly word: tf.Variable;
  readonly position: tf.Variable;
  readonly tokenType: tf.Variable;
  readonly lnWeight: tf.Variable;
  readonly lnBias: tf.Variable;

  constructor(c: BertConfig, p: ParamStore) {
    const H = c.hidden_size;
    this.word = p.add("bert.embeddings.word_embeddings.weight", [c.vocab_size, H], "normal");
    this.position = p.add("bert.embeddings.position_embeddings.weight", [c.max_position_embeddings, H], "normal");
    this.tokenType = p.add("bert.embeddings.token_type_embeddings.weight", [c.type_vocab_size, H], "normal");
    this.lnWeight = p.add("bert.embeddings.LayerNorm.weight", [H], "ones");
    this.lnBias = p.add("bert.embeddings.LayerNorm.bias", [H], "zeros");
  }

  /** The word-embedding rows of `ids` (no position: the rank is the position, not the gene). */
  geneIdentity(ids: tf.Tensor1D): tf.Tensor2D {
    return gatherRows(this.word as tf.Tensor2D, ids);
  }

  forward(batch: ModelBatch, ctx: ForwardContext): tf.Tensor2D {
    const [B, L] = batch.inputIds.shape;
    const H = ctx.config.hidden_size;
    if (L > ctx.config.max_position_embeddings) {
      throw new Error(`sequence length ${L} exceeds max_position_embeddings (${ctx.config.max_position_embeddings})`);
    }
    const ids = tf.reshape(batch.inputIds, [B * L]) as tf.Tensor1D;
    const w = gatherRows(this.word as tf.Tensor2D, ids);
    const posType = tf.add(tf.slice(this.position, [0, 0], [L, H]), tf.slice(this.tokenType, [0, 0], [1, H])); // [L, H]
    const x = tf.reshape(tf.add(tf.reshape(w, [B, L, H]), posType), [B * L, H]) as tf.Tensor2D;
    const y = layerNorm(x, this.lnWeight as tf.Tensor1D, this.lnBias as tf.Tensor1D, ctx.config.layer_norm_eps);
    return ctx.dropout.apply(y, ctx.config.hidden_dropout_prob);
  }
}

/** One post-LN transformer block (HF `BertLayer`). */
export class BertLayer {
  readonly w: Record<string, tf.Variable> = {};

  constructor(private readonly c: BertConfig, p: ParamStore, index: number) {
    const H = c.hidden_size, I = c.intermediate_size;
    const pre = `bert.encoder.layer.${index}.`;
    const lin = (key: string, name: string, inp: number, out: number) => {
      this.w[key + "W"] = p.add(`${pre}${name}.weight`, [inp, out], "normal", { linear: true });
      this.w[key + "B"] = p.add(`${pre}${name}.bias`, [out], "zeros");
    };
    const ln = (key: string, name: string) => {
      this.w[key + "G"] = p.add(`${pre}${name}.weight`, [H], "ones");
      this.w[key + "B"] = p.add(`${pre}${name}.bias`, [H], "zeros");
    };
    lin("q", "attention.self.query", H, H);
    lin("k", "attention.self.key", H, H);
    lin("v", "attention.self.value", H, H);
    lin("o", "attention.output.dense", H, H);
    ln("ln1", "attention.output.LayerNorm");
    lin("i", "intermediate.dense", H, I);
    lin("f", "output.dense", I, H);
    ln("ln2", "output.LayerNorm");
  }

  /**
   * The layer as one op with a hand-written backward pass (`./layer_op.ts`); the default path.
   * @param x `[batch * seqLen, hidden]`
   * @param maskBias additive attention bias `[batch, 1, 1, seqLen]` (0 for real keys, −1e9 for padding)
   */
  forward(x: tf.Tensor2D, maskBias: tf.Tensor4D, B: number, L: number, ctx: ForwardContext): tf.Tensor2D {
    const c = this.c;
    const on = ctx.dropout.training && (c.attention_probs_dropout_prob > 0 || c.hidden_dropout_prob > 0);
    return bertLayerOp(x, this.w, maskBias, {
      batch: B,
      seqLen: L,
      hidden: c.hidden_size,
      heads: c.num_attention_heads,
      act: c.hidden_act,
      eps: c.layer_norm_eps,
      dropout: on
        ? {
            attnRate: c.attention_probs_dropout_prob,
            hiddenRate: c.hidden_dropout_prob,
            seeds: [ctx.dropout.nextSeed(), ctx.dropout.nextSeed(), ctx.dropout.nextSeed()],
          }
        : null,
    });
  }

  /**
   * The same layer composed of tfjs ops with tape gradients (reference for tests; more memory).
   * Dropout masks differ from {@link forward}'s.
   */
  forwardComposite(x: tf.Tensor2D, maskBias: tf.Tensor4D, B: number, L: number, ctx: ForwardContext): tf.Tensor2D {
    const c = this.c, w = this.w as Record<string, tf.Tensor>;
    const H = c.hidden_size, NH = c.num_attention_heads, D = H / NH;
    const q = tf.mul(linear(x, w.qW as tf.Tensor2D, w.qB as tf.Tensor1D), 1 / Math.sqrt(D));
    const k = linear(x, w.kW as tf.Tensor2D, w.kB as tf.Tensor1D);
    const v = linear(x, w.vW as tf.Tensor2D, w.vB as tf.Tensor1D);
    // Per (cell, head) plain 2-D matmuls: the only matmul shape wasm runs fast.
    const qh = tf.reshape(tf.transpose(tf.reshape(q, [B, L, NH, D]), [0, 2, 1, 3]), [B * NH, L, D]) as tf.Tensor3D;
    const kT = tf.reshape(tf.transpose(tf.reshape(k, [B, L, NH, D]), [0, 2, 3, 1]), [B * NH, D, L]) as tf.Tensor3D;
    const vh = tf.reshape(tf.transpose(tf.reshape(v, [B, L, NH, D]), [0, 2, 1, 3]), [B * NH, L, D]) as tf.Tensor3D;
    const rate = c.attention_probs_dropout_prob;
    const drop = ctx.dropout.training && rate > 0 ? { rate, seed: ctx.dropout.nextSeed() } : null;
    const ctxs = attention(qh, kT, vh, maskBias, drop); // [B*NH, L, D]
    const merged = tf.reshape(tf.transpose(tf.reshape(ctxs, [B, NH, L, D]), [0, 2, 1, 3]), [B * L, H]) as tf.Tensor2D;
    const attnOut = linear(merged, w.oW as tf.Tensor2D, w.oB as tf.Tensor1D);
    const x1 = layerNorm(
      tf.add(x, ctx.dropout.apply(attnOut, c.hidden_dropout_prob)) as tf.Tensor2D,
      w.ln1G as tf.Tensor1D,
      w.ln1B as tf.Tensor1D,
      c.layer_norm_eps,
    );
    const inter = linear(x1, w.iW as tf.Tensor2D, w.iB as tf.Tensor1D, c.hidden_act);
    const ffn = linear(inter, w.fW as tf.Tensor2D, w.fB as tf.Tensor1D);
    return layerNorm(
      tf.add(x1, ctx.dropout.apply(ffn, c.hidden_dropout_prob)) as tf.Tensor2D,
      w.ln2G as tf.Tensor1D,
      w.ln2B as tf.Tensor1D,
      c.layer_norm_eps,
    );
  }
}

/**
 * MLM head (HF `BertOnlyMLMHead`): transform = LayerNorm(act(dense(h))), decoder tied to the word
 * embeddings, plus `cls.predictions.bias`. Logits are computed only at the masked positions.
 */
export class MlmHead implements Head<MaskedTargets> {
  readonly dW: tf.Variable;
  readonly dB: tf.Variable;
  readonly lnG: tf.Variable;
  readonly lnB: tf.Variable;
  readonly bias: tf.Variable;

  constructor(c: BertConfig, p: ParamStore, private readonly wordEmbeddings: tf.Variable) {
    const H = c.hidden_size;
    this.dW = p.add("cls.predictions.transform.dense.weight", [H, H], "normal", { linear: true });
    this.dB = p.add("cls.predictions.transform.dense.bias", [H], "zeros");
    this.lnG = p.add("cls.predictions.transform.LayerNorm.weight", [H], "ones");
    this.lnB = p.add("cls.predictions.transform.LayerNorm.bias", [H], "zeros");
    this.bias = p.add("cls.predictions.bias", [c.vocab_size], "zeros");
  }

  /** Logits `[rows, vocab]` of hidden rows `[rows, hidden]`. */
  logits(rows: tf.Tensor2D, ctx: ForwardContext): tf.Tensor2D {
    const t = linear(rows, this.dW as tf.Tensor2D, this.dB as tf.Tensor1D, ctx.config.hidden_act);
    const h = layerNorm(t, this.lnG as tf.Tensor1D, this.lnB as tf.Tensor1D, ctx.config.layer_norm_eps);
    return tiedDecoder(h, this.wordEmbeddings as tf.Tensor2D, this.bias as tf.Tensor1D);
  }

  check(target: MaskedTargets, batch: number, seqLen: number): void {
    if (!target.labels || target.positions.length !== target.labels.length) {
      throw new Error(`masked positions (${target.positions.length}) and labels (${target.labels?.length ?? 0}) differ in length`);
    }
    if (target.positions.length === 0) throw new Error("mlmLoss needs at least one masked position");
    for (const p of target.positions) if (p < 0 || p >= batch * seqLen) throw new Error(`masked position ${p} outside [0, ${batch * seqLen})`);
    const V = this.bias.shape[0];
    for (const t of target.labels) if (t < 0 || t >= V) throw new Error(`label ${t} outside [0, ${V})`);
  }

  loss(hidden: tf.Tensor2D, target: MaskedTargets, _batch: ModelBatch, ctx: ForwardContext): tf.Scalar {
    const rows = gatherRows(hidden, tf.tensor1d(target.positions, "int32"));
    return sparseSoftmaxCrossEntropy(this.logits(rows, ctx), tf.tensor1d(target.labels, "int32"));
  }
}

/** Result of {@link CellModel.lossAndGrads}. */
export interface LossAndGrads {
  /** The loss (mean over the target's positions, or the weighted sum of the head's terms). */
  loss: number;
  /** Gradient per trainable weight, keyed by HF name (internal layout; the caller disposes them). */
  grads: Map<string, tf.Tensor>;
  /** Each named term of the head ({@link Head.lossWithTerms}), e.g. `{ mlm, bottleneck }`, before its weight. */
  terms?: Record<string, number>;
}

/** A tensor in HF/PyTorch layout, ready for safetensors. */
export interface HFTensor {
  shape: number[];
  data: Float32Array;
}

/** Builds the input embedding of a model (its weights are created first, under `bert.embeddings.*`). */
export type EmbeddingFactory = (config: BertConfig, params: ParamStore) => InputEmbedding;
/** Builds the head of a model (its weights are created last); gets the input embedding (tied decoders). */
export type HeadFactory<T extends LossTargets> = (config: BertConfig, params: ParamStore, embedding: InputEmbedding) => Head<T>;

/**
 * The encoder (HF `BertModel` without pooler): one {@link InputEmbedding} → N × {@link BertLayer}
 * → hidden states. No head: this is what embedding extraction runs.
 */
export class BertModel {
  readonly embeddings: InputEmbedding;
  readonly layers: BertLayer[] = [];

  /**
   * @param config validated model config
   * @param params the owning model's weight store (embedding weights are created first, then the layers)
   * @param embedding builds the input embedding
   */
  constructor(readonly config: BertConfig, params: ParamStore, embedding: EmbeddingFactory) {
    this.embeddings = embedding(config, params);
    for (let l = 0; l < config.num_hidden_layers; l++) this.layers.push(new BertLayer(config, params, l));
  }

  /** Additive attention bias `[batch, 1, 1, seqLen]`: 0 for real tokens, −1e9 for padding. */
  private maskBias(mask: tf.Tensor2D): tf.Tensor4D {
    const [B, L] = mask.shape;
    return tf.reshape(tf.mul(tf.sub(1, mask), -1e9), [B, 1, 1, L]);
  }

  /**
   * Check the shapes and dtypes of a batch.
   * @throws Error when ids, mask (and values) are not all `[batch, seqLen]` or ids are not int32.
   */
  checkBatch(batch: ModelBatch): void {
    const s = batch.inputIds.shape, m = batch.attentionMask.shape;
    if (s.length !== 2 || m.length !== 2 || s[0] !== m[0] || s[1] !== m[1]) {
      throw new Error(`inputIds ${JSON.stringify(s)} and attentionMask ${JSON.stringify(m)} must both be [batch, seqLen]`);
    }
    if (batch.inputIds.dtype !== "int32") throw new Error(`inputIds must be int32, got ${batch.inputIds.dtype}`);
    if (batch.values && (batch.values.shape[0] !== s[0] || batch.values.shape[1] !== s[1])) {
      throw new Error(`values ${JSON.stringify(batch.values.shape)} must have the shape of inputIds ${JSON.stringify(s)}`);
    }
  }

  /**
   * Encoder states, flat `[batch*seqLen, hidden]`: the last layer run, or (with `keepAll`) the
   * embedding output followed by every layer's output. Call inside a `tf.tidy`.
   */
  encode(batch: ModelBatch, ctx: ForwardContext, numLayers: number, keepAll: boolean): tf.Tensor2D[] {
    const [B, L] = batch.inputIds.shape;
    const bias = this.maskBias(batch.attentionMask);
    let x = this.embeddings.forward(batch, ctx);
    const all = keepAll ? [x] : [];
    for (let l = 0; l < numLayers; l++) {
      x = this.layers[l].forward(x, bias, B, L, ctx);
      if (keepAll) all.push(x);
    }
    return keepAll ? all : [x];
  }

  /**
   * Encoder forward pass.
   * @returns `lastHiddenState` `[batch, seqLen, hidden]` and, with `outputHiddenStates`, the states
   *   of the embedding output (index 0) and every layer run (index i). The caller disposes them.
   * @throws Error on a malformed batch or a sequence longer than `max_position_embeddings`.
   */
  forward(batch: ModelBatch, opts: ForwardOptions): ForwardOutput {
    this.checkBatch(batch);
    const nL = opts.numLayers ?? this.config.num_hidden_layers;
    if (!Number.isInteger(nL) || nL < 0 || nL > this.config.num_hidden_layers) {
      throw new Error(`numLayers must be in [0, ${this.config.num_hidden_layers}], got ${nL}`);
    }
    const [B, L] = batch.inputIds.shape, H = this.config.hidden_size;
    return tf.tidy(() => {
      const ctx: ForwardContext = { config: this.config, dropout: new DropoutContext(opts.training, opts.dropoutSeed) };
      const states = this.encode(batch, ctx, nL, !!opts.outputHiddenStates).map((s) => tf.reshape(s, [B, L, H]) as tf.Tensor3D);
      const out: ForwardOutput = { lastHiddenState: states[states.length - 1] };
      if (opts.outputHiddenStates) out.hiddenStates = states;
      return out as unknown as tf.TensorContainer;
    }) as unknown as ForwardOutput;
  }
}

/** What a {@link CellModel} is: its HF `architectures` entry and the cellfm task it was built for. */
export interface ModelSpec {
  /** HF `architectures[0]` written to config.json (e.g. "BertForMaskedLM"). */
  architecture: string;
  /** Input encoding (the tokenized dataset's `encoding`, e.g. "geneformer-rank-value"). */
  encoding: string;
  /** Pretraining objective ("mlm", "denoise"). */
  objective: string;
  /** Head options (e.g. `{ likelihood: "zinb" }`), as in config.json `cellfm.head`. */
  head?: Record<string, unknown>;
  /**
   * External gene vectors in the input embedding (binned / counts encodings), as config.json
   * `cellfm.gene_embeddings`: vector width `dim`, whether the table is trained, and what genes without
   * a vector get (`learned`: their own learned row; `drop`: removed from the contexts). Provenance
   * fields (source file, sha256, counts) pass through.
   */
  gene_embeddings?: { dim: number; trainable: boolean; missing: "learned" | "drop"; [extra: string]: unknown };
  /** Fixed sinusoidal genomic-position encoding added to the token state (config.json `cellfm.genomic_positions`). */
  genomic_positions?: boolean | Record<string, unknown>;
  /**
   * The cell embedding and the cell-level objectives (config.json `cellfm.cell`, `./cell-heads.ts`):
   * pooling, the weight of each loss term, the bottleneck decoder's genes. Absent: a token objective
   * only, mean pooling.
   */
  cell?: CellSpec;
}

/**
 * A pretraining model = {@link BertModel} (`bert`) + one {@link Head} (`head`), as HF
 * `BertForMaskedLM` = `self.bert` + `self.cls`. All weights live in one store under HF names.
 * Build one through `./factory.ts` (`buildModel`), which picks the embedding and head from the
 * config's `cellfm` block.
 */
export class CellModel<TTarget extends LossTargets = LossTargets> {
  /** Validated configuration. */
  readonly config: BertConfig;
  /** All trainable weights keyed by HF names (dense weights stored `[in, out]`). */
  readonly weights: Map<string, tf.Variable>;
  /** The encoder: input embedding + transformer layers. */
  readonly bert: BertModel;
  /** The pretraining head. */
  readonly head: Head<TTarget>;
  /** Architecture and task. */
  readonly spec: ModelSpec;
  private readonly params: ParamStore;

  /**
   * @param config model config (validated again here)
   * @param opts.seed seed of the initial weights: N(0, initializer_range) for matrices and embeddings,
   *   LayerNorm weight 1 / bias 0, biases 0 (HF `_init_weights`). Default 0.
   */
  constructor(
    config: BertConfig,
    opts: { seed?: number },
    spec: ModelSpec,
    embedding: EmbeddingFactory,
    head: HeadFactory<TTarget>,
  ) {
    this.config = validateBertConfig(config);
    this.spec = spec;
    this.params = new ParamStore(opts.seed ?? 0, this.config.initializer_range);
    this.weights = this.params.vars;
    this.bert = new BertModel(this.config, this.params, embedding);
    this.head = head(this.config, this.params, this.bert.embeddings);
  }

  /** The encoder's input embedding. */
  get embeddings(): InputEmbedding {
    return this.bert.embeddings;
  }

  /** The encoder's transformer layers. */
  get layers(): BertLayer[] {
    return this.bert.layers;
  }

  /** Number of scalar parameters (tied decoder counted once). */
  get numParameters(): number {
    let n = 0;
    for (const v of this.weights.values()) n += v.size;
    return n;
  }

  /** Encoder forward pass ({@link BertModel.forward}); the head is not run. */
  forward(batch: ModelBatch, opts: ForwardOptions): ForwardOutput {
    return this.bert.forward(batch, opts);
  }

  /**
   * The head's loss on the encoder output (mean over the target's positions).
   * @throws Error on a malformed batch or a target the head rejects (position or label out of range).
   */
  loss(batch: ModelBatch, target: TTarget, opts: { training: boolean; dropoutSeed?: number }): tf.Scalar {
    const ctx = this.checkedContext(batch, target, opts);
    return tf.tidy(() => {
      const [x] = this.bert.encode(batch, ctx, this.config.num_hidden_layers, false);
      return this.head.loss(x, target, batch, ctx);
    });
  }

  /** Check a batch and its target ({@link BertModel.checkBatch}, {@link Head.check}); the forward pass's context. */
  private checkedContext(batch: ModelBatch, target: TTarget, opts: { training: boolean; dropoutSeed?: number }): ForwardContext {
    this.bert.checkBatch(batch);
    const [B, L] = batch.inputIds.shape;
    this.head.check(target, B, L);
    return { config: this.config, dropout: new DropoutContext(opts.training, opts.dropoutSeed) };
  }

  /**
   * Loss and gradients of {@link loss} w.r.t. every trainable weight (via `tf.variableGrads`).
   * @returns the loss (number), gradients keyed by HF weight name (internal layout, caller disposes)
   *   and, for a head with named terms ({@link Head.lossWithTerms}), each term's value (read with the
   *   loss in one device read).
   */
  lossAndGrads(batch: ModelBatch, target: TTarget, opts: { training: boolean; dropoutSeed?: number }): LossAndGrads {
    const { loss, grads, terms } = this.lossTensorAndGrads(batch, target, opts);
    if (!terms) {
      const value = loss.dataSync()[0];
      loss.dispose();
      return { loss: value, grads };
    }
    const both = tf.tidy(() => tf.concat([tf.reshape(loss, [1]), terms.values]));
    const v = both.dataSync();
    tf.dispose([loss, terms.values, both]);
    return { loss: v[0], grads, terms: Object.fromEntries(terms.names.map((n, i) => [n, v[i + 1]])) };
  }

  /**
   * {@link lossAndGrads} without reading the loss: it stays a scalar tensor (caller disposes), so
   * nothing waits on the device (webgpu reads asynchronously, once per step). With a head of named
   * terms, `terms.values` `[nTerms]` holds each term's value in `terms.names` order (caller disposes;
   * read it with the loss, e.g. `tf.concat`, to keep one read per step).
   */
  lossTensorAndGrads(
    batch: ModelBatch,
    target: TTarget,
    opts: { training: boolean; dropoutSeed?: number },
  ): { loss: tf.Scalar; grads: Map<string, tf.Tensor>; terms?: { names: string[]; values: tf.Tensor1D } } {
    let terms: { names: string[]; values: tf.Tensor1D } | undefined;
    const f = (): tf.Scalar => {
      if (!this.head.lossWithTerms) return this.loss(batch, target, opts);
      const r = this.lossParts(batch, target, opts);
      // kept out of the tidy scopes of the forward pass; not on the loss's path, so no gradient flows through it
      terms = { names: [...r.terms.keys()], values: tf.keep(r.values) };
      return r.loss;
    };
    const { value, grads } = tf.variableGrads(f, this.trainableVariables());
    const out = new Map<string, tf.Tensor>();
    for (const [k, g] of Object.entries(grads)) out.set(this.params.hfName(k), g);
    return { loss: value, grads: out, ...(terms ? { terms } : {}) };
  }

  /** {@link loss} with each named term of the head as well, stacked `[nTerms]` (inside the caller's scope). */
  private lossParts(batch: ModelBatch, target: TTarget, opts: { training: boolean; dropoutSeed?: number }): { loss: tf.Scalar; terms: Map<string, tf.Scalar>; values: tf.Tensor1D } {
    const ctx = this.checkedContext(batch, target, opts);
    const [x] = this.bert.encode(batch, ctx, this.config.num_hidden_layers, false);
    const r = this.head.lossWithTerms!(x, target, batch, ctx);
    return { ...r, values: tf.stack([...r.terms.values()]) as tf.Tensor1D };
  }

  /** Trainable variables (same order as {@link weights}; fixed tables such as a frozen gene-embedding table are left out). */
  trainableVariables(): tf.Variable[] {
    return [...this.weights.values()].filter((v) => v.trainable);
  }

  /** The trainable weights by HF name (what the optimizer updates). */
  get trainableWeights(): Map<string, tf.Variable> {
    return new Map([...this.weights].filter(([, v]) => v.trainable));
  }

  /** True if `name` is a dense weight stored `[in, out]` here but `[out, in]` in HF files. */
  isTransposedInHF(name: string): boolean {
    return this.params.transposedInHF.has(name);
  }

  /** Shape of weight `name` in HF layout. */
  hfShape(name: string): number[] {
    const v = this.weights.get(name);
    if (!v) throw new Error(`unknown weight ${name}`);
    return this.isTransposedInHF(name) ? [...v.shape].reverse() : [...v.shape];
  }

  /** All weights in HF/PyTorch layout (dense weights `[out, in]`), for safetensors. */
  exportWeights(): Record<string, HFTensor> {
    const out: Record<string, HFTensor> = {};
    for (const [name, v] of this.weights) {
      const t = this.isTransposedInHF(name) ? tf.transpose(v) : v;
      out[name] = { shape: [...t.shape], data: t.dataSync() as Float32Array };
      if (t !== v) t.dispose();
    }
    return out;
  }

  /** {@link exportWeights} with asynchronous reads (every backend, webgpu included); the reads are issued together. */
  async exportWeightsAsync(): Promise<Record<string, HFTensor>> {
    const names = [...this.weights.keys()];
    const ts = names.map((name) => {
      const v = this.weights.get(name)!;
      return this.isTransposedInHF(name) ? tf.transpose(v) : v;
    });
    try {
      const data = await Promise.all(ts.map((t) => t.data() as Promise<Float32Array>));
      return Object.fromEntries(names.map((name, i) => [name, { shape: [...ts[i].shape], data: data[i] }]));
    } finally {
      ts.forEach((t, i) => t !== this.weights.get(names[i]) && t.dispose());
    }
  }

  /**
   * Assign weights from HF-layout tensors. Every model weight must be present; extra HF entries
   * `cls.predictions.decoder.weight` (tied) / `.bias` (same as `cls.predictions.bias`) and
   * `bert.embeddings.position_ids` (a buffer) are ignored; `bert.pooler.*` is ignored too.
   * @param source where the tensors came from, used in error messages (e.g. a file path)
   * @throws Error naming the weight and `source` on a missing weight or a shape mismatch.
   */
  importWeights(tensors: Record<string, HFTensor>, source = "weights"): void {
    const ignorable = (n: string) =>
      n === "bert.embeddings.position_ids" || n.startsWith("cls.predictions.decoder.") || n.startsWith("bert.pooler.");
    for (const name of Object.keys(tensors)) {
      if (!this.weights.has(name) && !ignorable(name)) throw new Error(`${source}: unexpected weight ${name} (not in this model)`);
    }
    const plan: [tf.Variable, HFTensor, string][] = [];
    for (const [name, v] of this.weights) {
      const t = tensors[name];
      if (!t) throw new Error(`${source}: missing weight ${name}`);
      const want = this.hfShape(name);
      if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
        throw new Error(`${source}: weight ${name} has shape [${t.shape}] but the config needs [${want}]`);
      }
      plan.push([v, t, name]);
    }
    for (const [v, t, name] of plan) {
      tf.tidy(() => {
        const x = tf.tensor(t.data, t.shape, "float32");
        v.assign(this.isTransposedInHF(name) ? tf.transpose(x) : x);
      });
    }
  }

  /** Free every weight. The model is unusable afterwards. */
  dispose(): void {
    for (const v of this.weights.values()) v.dispose();
  }
}

/**
 * HuggingFace `BertForMaskedLM` in TensorFlow.js: {@link BertEmbeddings} → N × {@link BertLayer} →
 * {@link MlmHead}. Source: `transformers/models/bert/modeling_bert.py`; Geneformer uses it unchanged.
 */
export class BertForMaskedLM extends CellModel<MaskedTargets> {
  declare readonly head: MlmHead;

  /**
   * @param config model config (validated again here)
   * @param opts.seed seed of the initial weights (see {@link CellModel}). Default 0.
   */
  constructor(config: BertConfig, opts: { seed?: number } = {}) {
    super(
      config,
      opts,
      { architecture: RANK.models.mlm.architecture, encoding: RANK.name, objective: "mlm" },
      (c, p) => new BertEmbeddings(c, p),
      (c, p, emb) => new MlmHead(c, p, (emb as BertEmbeddings).word),
    );
  }

  /** The word + position + token-type embeddings. */
  override get embeddings(): BertEmbeddings {
    return this.bert.embeddings as BertEmbeddings;
  }

  /**
   * Masked-language-model loss: mean cross-entropy (nats) over the masked positions; the vocabulary
   * logits are computed only for the gathered rows at those positions.
   * @throws Error if a position is outside `[0, batch*seqLen)` or a label outside `[0, vocab_size)`.
   */
  mlmLoss(batch: ModelBatch, masked: MaskedTargets, opts: { training: boolean; dropoutSeed?: number }): tf.Scalar {
    return this.loss(batch, masked, opts);
  }
}
