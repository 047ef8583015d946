/**
 * BERT encoder + MLM head (HuggingFace `BertForMaskedLM`), in TensorFlow.js, driven by one
 * {@link BertConfig}. Post-LayerNorm blocks as in `transformers/models/bert/modeling_bert.py`
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
 * The input embedding and the output head are small interfaces ({@link InputEmbedding},
 * {@link Head}) so other encodings (value bins, raw counts) and heads (ZINB) plug in without
 * touching the encoder. All math goes through `./ops.ts` (fast on wasm, same code on cpu/tensorflow).
 */
import * as tf from "@tensorflow/tfjs-core";
import { type BertConfig, validateBertConfig } from "./config.js";
import { bertLayerOp } from "./layer_op.js";
import { attention, DropoutContext, gatherRows, layerNorm, linear, sparseSoftmaxCrossEntropy, tiedDecoder } from "./ops.js";

/** One padded batch of cells. */
export interface ModelBatch {
  /** Token ids, int32 `[batch, seqLen]`, right-padded with `pad_token_id`. */
  inputIds: tf.Tensor2D;
  /** 1 = real token, 0 = padding; float32 `[batch, seqLen]`. */
  attentionMask: tf.Tensor2D;
}

/** Masked-token targets for {@link BertForMaskedLM.mlmLoss}. */
export interface MaskedTargets {
  /** Flat positions `b * seqLen + i` of the chosen (masked) tokens. */
  positions: Int32Array;
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

  /** Create a variable. `init`: "normal" = N(0, initializer_range) seeded, "ones", "zeros". */
  add(name: string, shape: number[], init: "normal" | "ones" | "zeros", opts: { linear?: boolean } = {}): tf.Variable {
    if (this.vars.has(name)) throw new Error(`duplicate weight name ${name}`);
    const seed = this.seed * 1000 + this.n++;
    const t = tf.tidy(() =>
      init === "normal" ? tf.randomNormal(shape, 0, this.std, "float32", seed) : init === "ones" ? tf.ones(shape) : tf.zeros(shape),
    );
    const tfName = `cellfm${this.uid}/${name}`;
    const v = tf.variable(t, true, tfName);
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
 * (Geneformer rank-value tokens); later value-binned or raw-count encoders.
 */
export interface InputEmbedding {
  /** @returns `[batch * seqLen, hidden]` (rows in batch-major order), after LayerNorm and dropout. */
  forward(batch: ModelBatch, ctx: ForwardContext): tf.Tensor2D;
}

/**
 * A pretraining head on the encoder output. `TTarget` is what the loss needs (e.g. masked positions
 * and labels for MLM; counts for ZINB).
 */
export interface Head<TTarget> {
  /**
   * @param hidden last hidden state `[batch * seqLen, hidden]`
   * @returns scalar loss
   */
  loss(hidden: tf.Tensor2D, target: TTarget, ctx: ForwardContext): tf.Scalar;
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

  loss(hidden: tf.Tensor2D, target: MaskedTargets, ctx: ForwardContext): tf.Scalar {
    if (target.positions.length !== target.labels.length) {
      throw new Error(`masked positions (${target.positions.length}) and labels (${target.labels.length}) differ in length`);
    }
    if (target.positions.length === 0) throw new Error("mlmLoss needs at least one masked position");
    const rows = gatherRows(hidden, tf.tensor1d(target.positions, "int32"));
    return sparseSoftmaxCrossEntropy(this.logits(rows, ctx), tf.tensor1d(target.labels, "int32"));
  }
}

/** A tensor in HF/PyTorch layout, ready for safetensors. */
export interface HFTensor {
  shape: number[];
  data: Float32Array;
}

/**
 * HuggingFace `BertForMaskedLM` in TensorFlow.js: {@link BertEmbeddings} → N × {@link BertLayer} →
 * {@link MlmHead}. Source: `transformers/models/bert/modeling_bert.py`; Geneformer uses it unchanged.
 */
export class BertForMaskedLM {
  /** Validated configuration. */
  readonly config: BertConfig;
  /** All trainable weights keyed by HF names (dense weights stored `[in, out]`). */
  readonly weights: Map<string, tf.Variable>;
  readonly embeddings: InputEmbedding & BertEmbeddings;
  readonly layers: BertLayer[];
  readonly head: MlmHead;
  private readonly params: ParamStore;

  /**
   * @param config model config (validated again here)
   * @param opts.seed seed of the initial weights: N(0, initializer_range) for matrices and embeddings,
   *   LayerNorm weight 1 / bias 0, biases 0 (HF `_init_weights`). Default 0.
   */
  constructor(config: BertConfig, opts: { seed?: number } = {}) {
    this.config = validateBertConfig(config);
    this.params = new ParamStore(opts.seed ?? 0, this.config.initializer_range);
    this.weights = this.params.vars;
    this.embeddings = new BertEmbeddings(this.config, this.params);
    this.layers = [];
    for (let l = 0; l < this.config.num_hidden_layers; l++) this.layers.push(new BertLayer(this.config, this.params, l));
    this.head = new MlmHead(this.config, this.params, this.embeddings.word);
  }

  /** Number of scalar parameters (tied decoder counted once). */
  get numParameters(): number {
    let n = 0;
    for (const v of this.weights.values()) n += v.size;
    return n;
  }

  /** Additive attention bias `[batch, 1, 1, seqLen]`: 0 for real tokens, −1e9 for padding. */
  private maskBias(mask: tf.Tensor2D): tf.Tensor4D {
    const [B, L] = mask.shape;
    return tf.reshape(tf.mul(tf.sub(1, mask), -1e9), [B, 1, 1, L]);
  }

  private checkBatch(batch: ModelBatch): void {
    const s = batch.inputIds.shape, m = batch.attentionMask.shape;
    if (s.length !== 2 || m.length !== 2 || s[0] !== m[0] || s[1] !== m[1]) {
      throw new Error(`inputIds ${JSON.stringify(s)} and attentionMask ${JSON.stringify(m)} must both be [batch, seqLen]`);
    }
    if (batch.inputIds.dtype !== "int32") throw new Error(`inputIds must be int32, got ${batch.inputIds.dtype}`);
  }

  /** Encoder output `[batch*seqLen, hidden]` (flat) and optionally all hidden states (flat). */
  private encode(batch: ModelBatch, ctx: ForwardContext, numLayers: number, keepAll: boolean): tf.Tensor2D[] {
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

  /**
   * Masked-language-model loss: mean cross-entropy (nats) over the masked positions; the vocabulary
   * logits are computed only for the gathered rows at those positions.
   * @throws Error if a position is outside `[0, batch*seqLen)` or a label outside `[0, vocab_size)`.
   */
  mlmLoss(batch: ModelBatch, masked: MaskedTargets, opts: { training: boolean; dropoutSeed?: number }): tf.Scalar {
    this.checkBatch(batch);
    const [B, L] = batch.inputIds.shape;
    for (const p of masked.positions) if (p < 0 || p >= B * L) throw new Error(`masked position ${p} outside [0, ${B * L})`);
    for (const t of masked.labels) if (t < 0 || t >= this.config.vocab_size) throw new Error(`label ${t} outside [0, ${this.config.vocab_size})`);
    return tf.tidy(() => {
      const ctx: ForwardContext = { config: this.config, dropout: new DropoutContext(opts.training, opts.dropoutSeed) };
      const [x] = this.encode(batch, ctx, this.config.num_hidden_layers, false);
      return this.head.loss(x, masked, ctx);
    });
  }

  /**
   * Loss and gradients of {@link mlmLoss} w.r.t. every trainable weight (via `tf.variableGrads`).
   * @returns the loss (number) and gradients keyed by HF weight name (internal layout, caller disposes).
   */
  lossAndGrads(
    batch: ModelBatch,
    masked: MaskedTargets,
    opts: { training: boolean; dropoutSeed?: number },
  ): { loss: number; grads: Map<string, tf.Tensor> } {
    const { value, grads } = tf.variableGrads(() => this.mlmLoss(batch, masked, opts), this.trainableVariables());
    const loss = value.dataSync()[0];
    value.dispose();
    const out = new Map<string, tf.Tensor>();
    for (const [k, g] of Object.entries(grads)) out.set(this.params.hfName(k), g);
    return { loss, grads: out };
  }

  /** Trainable variables (same order as {@link weights}). */
  trainableVariables(): tf.Variable[] {
    return [...this.weights.values()];
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
