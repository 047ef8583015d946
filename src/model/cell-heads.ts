/**
 * The cell embedding as a first-class output, and the cell-level objectives that train it (issue 17
 * §2–3; reference-spec §1f):
 *
 * - {@link poolCells}: one vector per cell from the encoder's token states, `model.pooling`:
 *   `mean` over the real tokens (Geneformer's `emb_mode="cell"`), `max` over them (per hidden unit),
 *   or `cls` (the state at position 0: Geneformer V2 / scGPT read the `<cls>` token there).
 * - {@link BottleneckHead} (`bottleneck`, scVI's decoder on the transformer's cell embedding; scPRINT's
 *   "generation" task): from the pooled cell embedding alone, h = act(W₁c + b₁), ρ = softmax(W₂h + b₂)
 *   over a fixed gene set (the dataset's highly variable genes), mean μ = ρ × the cell's library
 *   size over those genes, gene-wise dispersion θ_g = exp(min(v_g, 15)) (scVI `dispersion="gene"`),
 *   zero-inflation logits W₃h + b₃ (ZINB); loss = the ZINB / NB / Poisson negative log-likelihood
 *   (`./likelihoods.ts`) of the cell's counts of those genes, averaged over cells and genes (nats per
 *   gene, so its scale is that of the token objectives'; scVI sums over genes), without scVI's KL term
 *   (a deterministic encoder). scvi-tools `src/scvi/module/_vae.py`, `src/scvi/nn/_base_components.py`
 *   (`DecoderSCVI`). With a batch key (scvi-tools `batch_key`), the decoder also reads a one-hot of the
 *   cell's batch, as scVI's `DecoderSCVI` / `LinearDecoderSCVI` do (`FCLayers` with `n_cat_list`):
 *   the product of the one-hot with a `[nBatches, ·]` matrix is added to the hidden layer's
 *   pre-activation (`mlp`) or to the gene logits and, for ZINB, the zero-inflation logits (`linear`),
 *   so the counts' batch effect is explained by the decoder and the cell embedding need not hold it.
 * - {@link MvcHead} (`mvc`, scGPT's GEPC / MVC): each scored context gene's value predicted from the
 *   pooled cell embedding and the gene's identity embedding by an inner product (scGPT
 *   `scgpt/model/model.py`, `MVCDecoder`); squared error, a mean over the scored positions. Which
 *   positions and what value per encoding: `src/train/objectives/cell.ts`.
 * - {@link ContrastiveHead} (`contrastive`, SimCLR's NT-Xent / scPRINT's contrastive term): the two
 *   views of each cell pulled together, the other views of its group pushed apart, at temperature τ.
 * - {@link CompositeHead}: Σ_k w_k · term_k, the token objective's head (optional) plus the cell heads;
 *   every term's value is available separately ({@link CompositeHead.terms}) for logs and eval.json.
 *
 * Data-parallel training weights each shard's loss by its share of the micro-batch's loss positions
 * (`src/train/parallel.ts`); a cell term is a mean over cells, so each shard's cell term is scaled by
 * (positions of the micro-batch ÷ the shard's) × (the shard's cells ÷ the micro-batch's) (MVC: its
 * own positions in place of cells), carried in
 * {@link CellTargets.unitTotals}: the combined loss and gradient are then the whole micro-batch's.
 * The contrastive term is no mean of per-cell terms (each view's loss depends on its group's other
 * views), so shards hold whole groups ({@link CellTargets.cellGroups}); within a shard it is again a
 * sum over the shard's views, scaled the same way.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { BertConfig } from "./config.js";
import type { ForwardContext, Head, InputEmbedding, LossTargets, ModelBatch, ParamStore } from "./bert.js";
import { dispersionFromRaw, type Likelihood, nbNll, poissonNll, zinbNll } from "./likelihoods.js";
import { gatherRows, gelu, linear, matmul2d, sparseSoftmaxCrossEntropy, type Activation } from "./ops.js";

/** `model.pooling` choices. */
export const POOLINGS = ["mean", "max", "cls"] as const;
export type Pooling = (typeof POOLINGS)[number];

/** Cell-level objectives (`training.objectives` keys besides the token objective). */
export const CELL_OBJECTIVES = ["bottleneck", "mvc", "contrastive"] as const;
export type CellObjectiveName = (typeof CELL_OBJECTIVES)[number];

/** What the cell heads need besides the token objective's targets. */
export interface CellTargets {
  /** Bottleneck: counts of the decoder's genes per cell, `[batch × nGenes]` row-major. */
  cellCounts?: Float32Array;
  /** Bottleneck: each cell's library size over the decoder's genes `[batch]` (sum of `cellCounts`' row). */
  cellLibrary?: Float32Array;
  /** MVC: the flat positions `b * seqLen + i` it scores, ascending `[N]`. */
  mvcPositions?: Int32Array;
  /** MVC: the gene (token id) at each scored position `[N]` (a masked gene token's label, not `<mask>`). */
  mvcGenes?: Int32Array;
  /** MVC: the encoding's value of that gene in the cell `[N]` (bin, log1p count, log1p normalised count). */
  mvcTargets?: Float32Array;
  /** Bottleneck with a batch key: each cell's batch as an index into the spec's `batches` `[batch]`. */
  cellBatch?: Int32Array;
  /**
   * The micro-batch a shard came from: its loss positions, cells and MVC positions (set by collate; a
   * shard keeps them), so a shard's cell terms can be scaled to the micro-batch's (module comment).
   */
  unitTotals?: { positions: number; cells: number; mvc?: number };
  /**
   * Rows per cell (default 1): the batch's rows are `cellBlocks` blocks of one row per cell (block j,
   * cell k = row j·cells + k). Block 0 holds the cells as the token objective and the bottleneck read
   * them; the contrastive views add blocks ({@link viewBlocks}).
   */
  cellBlocks?: number;
  /** Contrastive: the blocks of a cell's two views (`[1, 2]`, or `[0, 1]` when block 0 is the first view). */
  viewBlocks?: [number, number];
  /** Contrastive: each cell's group `[cells]` (consecutive cells; negatives come from the anchor's group only). */
  cellGroups?: Int32Array;
}

/** Cells of a batch of `rows` rows ({@link CellTargets.cellBlocks} rows per cell). */
export function cellsOf(rows: number, t: Pick<CellTargets, "cellBlocks">): number {
  return rows / (t.cellBlocks ?? 1);
}

/**
 * Pool token states to one vector per cell.
 * @param hidden `[batch * seqLen, hidden]` (batch-major)
 * @param weights `[batch, seqLen]`: 1 for tokens that enter the pool (real tokens; special tokens may be left out), else 0
 * @returns `[batch, hidden]`. `cls` reads position 0 whatever the weights. A cell without a pooled
 *   token gets NaN (mean) or a very negative number (max); callers keep such cells out.
 */
export function poolCells(hidden: tf.Tensor2D, weights: tf.Tensor2D, pooling: Pooling): tf.Tensor2D {
  const [B, L] = weights.shape;
  const H = hidden.shape[1];
  const h = tf.reshape(hidden, [B, L, H]);
  if (pooling === "cls") return tf.reshape(tf.slice(h, [0, 0, 0], [B, 1, H]), [B, H]);
  const w = tf.expandDims(weights, 2); // [B, L, 1]
  if (pooling === "max") return tf.max(tf.add(tf.mul(h, w), tf.mul(tf.sub(w, 1), 1e9)), 1) as tf.Tensor2D;
  return tf.div(tf.sum(tf.mul(h, w), 1), tf.sum(w, 1)) as tf.Tensor2D;
}

/** scVI's decoder on the cell embedding (module comment). */
export class BottleneckHead {
  private readonly w: Record<string, tf.Variable> = {};

  /**
   * @param decoder `mlp`: one hidden layer act(W₁c + b₁) before the gene logits (scVI's `DecoderSCVI`);
   *   `linear`: the gene logits are W₂c + b₂ (scVI's `LinearDecoderSCVI`, LDVAE), so the cell embedding
   *   must hold the expression program linearly
   */
  constructor(
    c: BertConfig,
    p: ParamStore,
    readonly nGenes: number,
    readonly likelihood: Likelihood,
    readonly decoder: BottleneckDecoder = "mlp",
    readonly nBatches = 0,
  ) {
    if (!Number.isInteger(nGenes) || nGenes < 1) throw new Error(`bottleneck: expected a positive number of genes, got ${nGenes}`);
    if (!Number.isInteger(nBatches) || nBatches < 0) throw new Error(`bottleneck: expected a number of batches >= 0, got ${nBatches}`);
    const H = c.hidden_size;
    if (decoder === "mlp") {
      this.w.dW = p.add("cls.bottleneck.transform.dense.weight", [H, H], "normal", { linear: true });
      this.w.dB = p.add("cls.bottleneck.transform.dense.bias", [H], "zeros");
    }
    this.w.oW = p.add("cls.bottleneck.decoder.weight", [H, nGenes], "normal", { linear: true });
    this.w.oB = p.add("cls.bottleneck.decoder.bias", [nGenes], "zeros");
    this.w.theta = p.add("cls.bottleneck.dispersion", [nGenes], "zeros");
    if (likelihood === "zinb") {
      this.w.pW = p.add("cls.bottleneck.dropout.weight", [H, nGenes], "normal", { linear: true });
      this.w.pB = p.add("cls.bottleneck.dropout.bias", [nGenes], "zeros");
    }
    // the one-hot batch's weights (scVI's covariate columns of the decoder's first layer); from zeros,
    // so the decoder starts batch-agnostic
    if (nBatches > 0) {
      this.w.bW = p.add(decoder === "mlp" ? "cls.bottleneck.transform.batch.weight" : "cls.bottleneck.decoder.batch.weight", [nBatches, decoder === "mlp" ? H : nGenes], "zeros");
      if (likelihood === "zinb" && decoder === "linear") this.w.bP = p.add("cls.bottleneck.dropout.batch.weight", [nBatches, nGenes], "zeros");
    }
  }

  /** The cells' batch indices `[batch]` (undefined without a batch key). */
  private batchIdx(t: CellTargets): tf.Tensor1D | undefined {
    return this.nBatches > 0 ? tf.tensor1d(t.cellBatch!, "int32") : undefined;
  }

  /** Per-cell mean NLL over the genes, `[batch]`. */
  nllPerCell(cell: tf.Tensor2D, t: CellTargets, ctx: ForwardContext): tf.Tensor1D {
    const B = cell.shape[0], G = this.nGenes;
    const s = this.batchIdx(t);
    // with a batch key: + onehot(batch) · W_batch (= W_batch's row of the cell's batch), on the hidden
    // pre-activation (mlp) or the gene logits (linear)
    const plus = (x: tf.Tensor2D, w: tf.Variable | undefined): tf.Tensor2D => (s && w ? tf.add(x, gatherRows(w as tf.Tensor2D, s)) : x);
    const act = ctx.config.hidden_act;
    const h =
      this.decoder !== "mlp"
        ? cell
        : s
          ? activate(plus(linear(cell, this.w.dW as tf.Tensor2D, this.w.dB as tf.Tensor1D), this.w.bW), act)
          : linear(cell, this.w.dW as tf.Tensor2D, this.w.dB as tf.Tensor1D, act);
    const logits = plus(linear(h, this.w.oW as tf.Tensor2D, this.w.oB as tf.Tensor1D), this.decoder === "linear" ? this.w.bW : undefined);
    const rho = tf.softmax(logits);
    const mu = tf.mul(rho, tf.tensor2d(t.cellLibrary!, [B, 1]));
    const x = tf.tensor2d(t.cellCounts!, [B, G]);
    // (a product with ones, not broadcastTo: cellfm registers no Tile gradient, src/model/gradients.ts)
    const theta = tf.mul(tf.ones([B, 1]), tf.reshape(dispersionFromRaw(this.w.theta), [1, G]));
    const nll =
      this.likelihood === "zinb"
        ? zinbNll(x, mu, theta, plus(linear(h, this.w.pW as tf.Tensor2D, this.w.pB as tf.Tensor1D), this.w.bP))
        : this.likelihood === "nb"
          ? nbNll(x, mu, theta)
          : poissonNll(x, mu);
    return tf.mean(nll, 1) as tf.Tensor1D;
  }

  check(t: CellTargets, B: number): void {
    if (!t.cellCounts || t.cellCounts.length !== B * this.nGenes) throw new Error(`bottleneck: expected ${B} × ${this.nGenes} gene counts, got ${t.cellCounts?.length ?? 0}`);
    if (!t.cellLibrary || t.cellLibrary.length !== B) throw new Error(`bottleneck: expected ${B} library sizes, got ${t.cellLibrary?.length ?? 0}`);
    for (const x of t.cellCounts) if (!(x >= 0) || !Number.isFinite(x)) throw new Error(`bottleneck: count ${x} is not a finite number >= 0`);
    if (this.nBatches > 0) {
      if (!t.cellBatch || t.cellBatch.length !== B) throw new Error(`bottleneck: the decoder is conditioned on the batch; expected ${B} batch indices, got ${t.cellBatch?.length ?? 0}`);
      for (const b of t.cellBatch) if (!(b >= 0 && b < this.nBatches)) throw new Error(`bottleneck: batch index ${b} outside [0, ${this.nBatches})`);
    }
  }
}

/** τ of `training.contrastive.temperature`: scPRINT's (`cce_temp = 0.2`, scprint/model/model.py@4acc1a4), inside SimCLR's 0.1–0.5. */
export const DEFAULT_CONTRASTIVE_TEMPERATURE = 0.2;

/** `training.contrastive.projection` choices (see {@link ContrastiveHead}). */
export const CONTRASTIVE_PROJECTIONS = ["mlp", "none"] as const;
export type ContrastiveProjection = (typeof CONTRASTIVE_PROJECTIONS)[number];

/**
 * `contrastive` (SimCLR's NT-Xent, Chen et al. 2020, "A Simple Framework for Contrastive Learning of
 * Visual Representations", eq. 1; scPRINT's contrastive cell-embedding term, cantinilab/scPRINT
 * `scprint/model/model.py@4acc1a4` "TASK 4" with `scprint/model/loss.py` `contrastive_loss`): the two
 * views of each of n cells are pooled to c (`[2n, H]`), optionally projected by SimCLR's g(·)
 * (`mlp`: W₂·ReLU(W₁c + b₁) + b₂, H → H → H; the loss is on g(c), the cell embedding stays c),
 * normalised z = g(c)/‖g(c)‖, and for every anchor i (each view of each cell, 2n anchors)
 *
 *   ℓ_i = −log [ exp(z_i·z_p(i)/τ) / Σ_{j ≠ i, j in i's group} exp(z_i·z_j/τ) ]
 *
 * with p(i) the other view of the same cell: the positive is the cell's other view, the negatives
 * are both views of every other cell of the anchor's group (2g − 2 for a group of g cells). This is
 * SimCLR's symmetric 2n-view form; scPRINT's `contrastive_loss` is one direction of it without the
 * same-view negatives (an n × n cross-entropy). Untrained (all similarities equal) ℓ_i = log(2g − 1).
 */
export class ContrastiveHead {
  private readonly w: Record<string, tf.Variable> = {};

  /**
   * @param temperature τ > 0 (`training.contrastive.temperature`)
   * @throws Error on τ ≤ 0
   */
  constructor(c: BertConfig, p: ParamStore, readonly temperature: number, readonly projection: ContrastiveProjection) {
    if (!(temperature > 0) || !Number.isFinite(temperature)) throw new Error(`contrastive: temperature must be a positive number, got ${temperature}`);
    const H = c.hidden_size;
    if (projection === "mlp") {
      this.w.pW = p.add("cls.contrastive.projection.dense.weight", [H, H], "normal", { linear: true });
      this.w.pB = p.add("cls.contrastive.projection.dense.bias", [H], "zeros");
      this.w.oW = p.add("cls.contrastive.projection.decoder.weight", [H, H], "normal", { linear: true });
      this.w.oB = p.add("cls.contrastive.projection.decoder.bias", [H], "zeros");
    }
  }

  /**
   * Σ_i ℓ_i over the 2n anchors (class comment).
   * @param views `[2n, H]`: rows 0…n−1 the first view of cells 0…n−1, rows n…2n−1 their second view
   * @param groups `[n]` each cell's group (negatives come from the anchor's group only)
   * @returns a scalar, nats summed over the anchors
   */
  lossSum(views: tf.Tensor2D, groups: Int32Array): tf.Scalar {
    const m = views.shape[0], n = m / 2;
    const g =
      this.projection === "mlp"
        ? linear(linear(views, this.w.pW as tf.Tensor2D, this.w.pB as tf.Tensor1D, "relu"), this.w.oW as tf.Tensor2D, this.w.oB as tf.Tensor1D)
        : views;
    const z = tf.mul(g, tf.rsqrt(tf.add(tf.sum(tf.square(g), 1, true), 1e-12))) as tf.Tensor2D;
    const sim = tf.div(matmul2d(z, tf.transpose(z)), this.temperature) as tf.Tensor2D;
    // the anchor itself and other groups' views are no candidates
    const block = new Float32Array(m * m);
    const labels = new Int32Array(m);
    for (let i = 0; i < m; i++) {
      labels[i] = i < n ? i + n : i - n;
      for (let j = 0; j < m; j++) if (i === j || groups[i % n] !== groups[j % n]) block[i * m + j] = -1e9;
    }
    const logits = tf.add(sim, tf.tensor2d(block, [m, m])) as tf.Tensor2D;
    return tf.mul(sparseSoftmaxCrossEntropy(logits, tf.tensor1d(labels, "int32")), m) as tf.Scalar;
  }

  check(t: CellTargets, B: number): void {
    const n = cellsOf(B, t);
    if (!t.viewBlocks || !t.cellBlocks || !Number.isInteger(n) || t.viewBlocks[1] !== t.viewBlocks[0] + 1 || t.viewBlocks[1] >= t.cellBlocks) {
      throw new Error(`contrastive: the batch needs two consecutive view blocks per cell (${B} rows, ${t.cellBlocks ?? 1} blocks, views ${t.viewBlocks ?? "none"})`);
    }
    if (!t.cellGroups || t.cellGroups.length !== n) throw new Error(`contrastive: expected ${n} cell groups, got ${t.cellGroups?.length ?? 0}`);
  }
}

/** `act(x)` for a hidden layer's activation (`linear` fuses it; here it follows an added batch term). */
function activate(x: tf.Tensor2D, act: Activation): tf.Tensor2D {
  return act === "relu" ? tf.relu(x) : act === "gelu" ? gelu(x) : x;
}

/**
 * scGPT's GEPC / MVC decoder, `arch_style="inner product"` (bowang-lab/scGPT
 * `scgpt/model/model.py@cebd6fa`, class `MVCDecoder`): for gene g of cell b, with e_g the gene's
 * identity embedding (`InputEmbedding.geneIdentity`, scGPT's `cur_gene_token_embs`) and c_b the
 * pooled cell embedding,
 *
 *   q_g = sigmoid(W_q e_g + b_q),   pred_bg = (W q_g) · c_b,
 *
 * W_q `[hidden, hidden]` with bias (`gene2query`), W `[hidden, hidden]` without (`W`). Every
 * predicted value passes through the one vector c_b, so the term trains the cell embedding.
 * Loss: squared error against the encoding's value (scGPT's `masked_mse_loss`), summed here; the
 * caller divides by the positions (module comment). scGPT's optional Bernoulli zero-probability
 * output (`explicit_zero_prob`) is left out: cellfm's contexts hold expressed genes unless
 * `training.pad_with_unexpressed`, so it would mostly learn a constant.
 */
export class MvcHead {
  private readonly w: Record<string, tf.Variable> = {};

  constructor(c: BertConfig, p: ParamStore, private readonly embedding: InputEmbedding) {
    const H = c.hidden_size;
    this.w.qW = p.add("cls.mvc_decoder.gene2query.weight", [H, H], "normal", { linear: true });
    this.w.qB = p.add("cls.mvc_decoder.gene2query.bias", [H], "zeros");
    this.w.W = p.add("cls.mvc_decoder.W.weight", [H, H], "normal", { linear: true });
  }

  /**
   * Predicted values `[N]` of genes `genes` `[N]` in cells `rows` `[N]` (indices into `cell`'s rows).
   * @param cell pooled cell embeddings `[batch, hidden]`
   */
  predict(cell: tf.Tensor2D, genes: Int32Array, rows: Int32Array): tf.Tensor1D {
    const B = cell.shape[0], N = genes.length;
    const e = this.embedding.geneIdentity(tf.tensor1d(genes, "int32"));
    const q = tf.sigmoid(linear(e, this.w.qW as tf.Tensor2D, this.w.qB as tf.Tensor1D));
    const wq = matmul2d(q, this.w.W as tf.Tensor2D); // [N, H]
    // (W q_g) · c_b for every cell, then the row's own cell by a one-hot mask (no gather gradient needed)
    const all = matmul2d(wq, tf.transpose(cell)); // [N, B]
    const oneHot = new Float32Array(N * B);
    rows.forEach((r, j) => (oneHot[j * B + r] = 1));
    return tf.sum(tf.mul(all, tf.tensor2d(oneHot, [N, B])), 1) as tf.Tensor1D;
  }

  /** Σ over the batch's MVC positions of (pred − target)², a scalar. */
  sumSquaredError(cell: tf.Tensor2D, t: CellTargets, seqLen: number): tf.Scalar {
    const rows = Int32Array.from(t.mvcPositions!, (q) => Math.floor(q / seqLen));
    const pred = this.predict(cell, t.mvcGenes!, rows);
    return tf.sum(tf.square(tf.sub(pred, tf.tensor1d(t.mvcTargets!)))) as tf.Scalar;
  }

  check(t: CellTargets, B: number, L: number, vocabSize: number): void {
    const n = t.mvcPositions?.length ?? -1;
    if (n < 0 || t.mvcGenes?.length !== n || t.mvcTargets?.length !== n) throw new Error(`mvc: expected positions, genes and targets of one length, got ${n}, ${t.mvcGenes?.length}, ${t.mvcTargets?.length}`);
    t.mvcPositions!.forEach((q, j) => {
      if (q < 0 || q >= B * L) throw new Error(`mvc: position ${q} outside [0, ${B * L})`);
      if (t.mvcGenes![j] < 0 || t.mvcGenes![j] >= vocabSize) throw new Error(`mvc: gene ${t.mvcGenes![j]} outside the vocabulary [0, ${vocabSize})`);
      if (!Number.isFinite(t.mvcTargets![j])) throw new Error(`mvc: target ${t.mvcTargets![j]} is not finite`);
    });
  }
}

/** `training.bottleneck.decoder` choices (see {@link BottleneckHead}). */
export const BOTTLENECK_DECODERS = ["mlp", "linear"] as const;
export type BottleneckDecoder = (typeof BOTTLENECK_DECODERS)[number];

/** The cell block of a model spec (config.json `cellfm.cell`). */
export interface CellSpec {
  pooling: Pooling;
  /** weight of each term; the token objective's under its own name (`mlm`, `denoise`), absent or 0 = off. */
  objectives: Record<string, number>;
  /**
   * the bottleneck's decoder: genes (token ids of the dataset's HVGs) and likelihood; with a batch key,
   * the obs column (`batch_key`) and its categories in index order (`batches`), the decoder's one-hot.
   */
  bottleneck?: { genes: number[]; likelihood: Likelihood; decoder?: BottleneckDecoder; batch_key?: string; batches?: string[]; [extra: string]: unknown };
  /** the MVC term's target and positions, for the record (the head has no options). */
  mvc?: { target: string; positions: string };
  /** the contrastive term's temperature and projection head (and, for the record, how its views are drawn). */
  contrastive?: { temperature: number; projection: ContrastiveProjection; [extra: string]: unknown };
}

/** The token objective's head of a model's head (inside a {@link CompositeHead}, its token head, if any). */
export function tokenHeadOf(head: Head): Head | undefined {
  return head instanceof CompositeHead ? head.token : head;
}

/** Rows `[a, a + n)` of a model batch (every tensor of it), as a batch of their own. */
function sliceRows(batch: ModelBatch, a: number, n: number): ModelBatch {
  const L = batch.inputIds.shape[1];
  const cut = (x: tf.Tensor2D) => tf.slice(x, [a, 0], [n, L]) as tf.Tensor2D;
  return { inputIds: cut(batch.inputIds), attentionMask: cut(batch.attentionMask), ...(batch.values ? { values: cut(batch.values) } : {}) };
}

/** Σ_k w_k · term_k over the token head (when its weight > 0) and the cell heads (module comment). */
export class CompositeHead implements Head<LossTargets & CellTargets> {
  readonly bottleneck?: BottleneckHead;
  readonly mvc?: MvcHead;
  readonly contrastive?: ContrastiveHead;
  readonly tokenWeight: number;
  private readonly vocabSize: number;

  /**
   * @param token the token objective's head (undefined: no token term)
   * @param tokenName its name (`mlm`, `denoise`), the key of its weight
   * @param embedding the model's input embedding (the MVC decoder reads its gene identities)
   */
  constructor(c: BertConfig, p: ParamStore, readonly token: Head | undefined, readonly tokenName: string, readonly cell: CellSpec, embedding?: InputEmbedding) {
    this.tokenWeight = token ? (cell.objectives[tokenName] ?? 0) : 0;
    this.vocabSize = c.vocab_size;
    if ((cell.objectives.bottleneck ?? 0) > 0) {
      if (!cell.bottleneck) throw new Error("cellfm.cell.bottleneck: the bottleneck objective needs its gene list");
      this.bottleneck = new BottleneckHead(c, p, cell.bottleneck.genes.length, cell.bottleneck.likelihood, cell.bottleneck.decoder ?? "mlp", cell.bottleneck.batches?.length ?? 0);
    }
    if ((cell.objectives.mvc ?? 0) > 0) {
      if (!embedding) throw new Error("mvc: the decoder needs the model's input embedding (its gene identities)");
      this.mvc = new MvcHead(c, p, embedding);
    }
    if ((cell.objectives.contrastive ?? 0) > 0) {
      if (!cell.contrastive) throw new Error("cellfm.cell.contrastive: the contrastive objective needs its temperature and projection");
      this.contrastive = new ContrastiveHead(c, p, cell.contrastive.temperature, cell.contrastive.projection);
    }
  }

  /** Names of the terms with a weight > 0, in loss order. */
  termNames(): string[] {
    return [...(this.token && this.tokenWeight > 0 ? [this.tokenName] : []), ...(this.bottleneck ? ["bottleneck"] : []), ...(this.mvc ? ["mvc"] : []), ...(this.contrastive ? ["contrastive"] : [])];
  }

  /** @param B rows of the batch ({@link CellTargets.cellBlocks} per cell) */
  check(t: LossTargets & CellTargets, B: number, L: number): void {
    const n = cellsOf(B, t);
    if (!Number.isInteger(n)) throw new Error(`${B} rows are not ${t.cellBlocks} blocks of cells`);
    // the token objective and the bottleneck read block 0
    if (this.token && this.tokenWeight > 0) this.token.check(t, n, L);
    else {
      if (t.positions.length === 0) throw new Error("the batch has no position with a loss term");
      for (const q of t.positions) if (q < 0 || q >= n * L) throw new Error(`loss position ${q} outside [0, ${n * L})`);
    }
    this.bottleneck?.check(t, n);
    this.mvc?.check(t, n, L, this.vocabSize);
    this.contrastive?.check(t, B);
  }

  /** The pooled cell embedding `[batch, hidden]` of the last layer's states. */
  pool(hidden: tf.Tensor2D, batch: ModelBatch): tf.Tensor2D {
    return poolCells(hidden, batch.attentionMask, this.cell.pooling);
  }

  /**
   * Every term as a scalar (each a mean over its own units: the token objective's positions, cells,
   * the contrastive term's 2 views × cells), with the data-parallel scale of a shard applied (module
   * comment) when `scaled`. The token head and the bottleneck see block 0 of the rows, the
   * contrastive term the view blocks ({@link CellTargets.cellBlocks}).
   */
  terms(hidden: tf.Tensor2D, t: LossTargets & CellTargets, batch: ModelBatch, ctx: ForwardContext, scaled = true): Map<string, tf.Scalar> {
    const out = new Map<string, tf.Scalar>();
    const [rows, L] = batch.inputIds.shape;
    const n = cellsOf(rows, t), H = hidden.shape[1];
    const base = rows === n ? { hidden, batch } : { hidden: tf.slice(hidden, [0, 0], [n * L, H]) as tf.Tensor2D, batch: sliceRows(batch, 0, n) };
    if (this.token && this.tokenWeight > 0) out.set(this.tokenName, this.token.loss(base.hidden, t, base.batch, ctx));
    const u = scaled ? t.unitTotals : undefined;
    // a cell term: a mean over the micro-batch's units, re-weighted for the shard's share of loss positions
    const cellScale = (units: number, perCell: number) => (u ? u.positions / t.positions.length / (u.cells * perCell) : 1 / units);
    const cell = this.bottleneck || this.mvc ? this.pool(base.hidden, base.batch) : undefined;
    if (this.bottleneck) {
      const perCell = this.bottleneck.nllPerCell(cell!, t, ctx);
      out.set("bottleneck", tf.mul(tf.sum(perCell), cellScale(n, 1)) as tf.Scalar);
    }
    if (this.contrastive) {
      // the two view blocks are consecutive rows: first views of cells 0…n−1, then their second views
      const v0 = t.viewBlocks![0] * n;
      const views = this.pool(tf.slice(hidden, [v0 * L, 0], [2 * n * L, H]) as tf.Tensor2D, sliceRows(batch, v0, 2 * n));
      out.set("contrastive", tf.mul(this.contrastive.lossSum(views, t.cellGroups!), cellScale(2 * n, 2)) as tf.Scalar);
    }
    if (this.mvc) {
      const n = t.mvcPositions!.length;
      const u = scaled ? t.unitTotals : undefined;
      // mean over the micro-batch's MVC positions, re-weighted for the shard's share of loss positions
      const scale = u ? u.positions / t.positions.length / u.mvc! : 1 / Math.max(1, n);
      const sse = n > 0 ? this.mvc.sumSquaredError(cell!, t, batch.inputIds.shape[1]) : tf.scalar(0);
      out.set("mvc", n > 0 ? (tf.mul(sse, scale) as tf.Scalar) : sse);
    }
    return out;
  }

  loss(hidden: tf.Tensor2D, t: LossTargets & CellTargets, batch: ModelBatch, ctx: ForwardContext): tf.Scalar {
    return this.lossWithTerms(hidden, t, batch, ctx).loss;
  }

  /** Σ_k w_k · term_k and the terms themselves (each as {@link terms} gives it, before its weight). */
  lossWithTerms(hidden: tf.Tensor2D, t: LossTargets & CellTargets, batch: ModelBatch, ctx: ForwardContext): { loss: tf.Scalar; terms: Map<string, tf.Scalar> } {
    let total: tf.Scalar | undefined;
    const terms = this.terms(hidden, t, batch, ctx);
    for (const [name, v] of terms) {
      const w = name === this.tokenName ? this.tokenWeight : this.cell.objectives[name];
      const term = tf.mul(v, w) as tf.Scalar;
      total = total ? (tf.add(total, term) as tf.Scalar) : term;
    }
    if (!total) throw new Error("training.objectives: no term has a weight > 0");
    return { loss: total, terms };
  }
}
