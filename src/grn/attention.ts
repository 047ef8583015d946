/**
 * Gene networks from a transformer's attention, the two ways scPRINT computes them
 * (`scprint/tasks/grn.py: GNInfer`, `scprint/model/utils.py`; reference-spec §1d):
 *
 * - **(a) "qk-mean"** (scPRINT's default, `shared_qk=True`): for every layer, head and gene of the
 *   list, the query and key vectors are averaged over the cells in whose input the gene appears;
 *   per layer and head A = softmax_row(Q̄ K̄ᵀ / √d_head) over the list's genes. Memory
 *   O(layers × genes × hidden); scales to many genes.
 * - **(b) "attention-mean"** (`shared_qk=False`): every cell's own softmaxed attention matrix
 *   (over its whole input), restricted to the list's genes, averaged over the cells in which both
 *   genes appear.
 *
 * Queries and keys are recomputed from the hidden state at the input of each layer and the layer's
 * weights under their HuggingFace names (`bert.encoder.layer.N.attention.self.query.weight`, ...),
 * so extraction works for any input embedding (rank tokens, value bins, counts): the caller supplies
 * the batches and, per cell, which gene of the list sits at each input position. Nothing of size
 * cells × heads × genes × genes is ever held: (a) keeps per-gene sums, (b) accumulates one
 * genes × genes matrix per head (or one in all for mean/subset aggregation).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { CellModel, ModelBatch } from "../model/bert.js";

/** What extraction needs of a model. */
export interface AttentionModel {
  numLayers: number;
  numHeads: number;
  hidden: number;
  maxLength: number;
  /**
   * Hidden states at the input of every layer for one batch: element l is the input of layer l
   * (element 0 = the embedding output), each `[batch, seqLen, hidden]`. The caller disposes them.
   */
  layerInputs(batch: ModelBatch): tf.Tensor3D[];
  /** Query/key weights of layer l, `[in, out]` row-major (x · W + b), and biases `[out]`. */
  qk(layer: number): { wq: Float32Array; bq: Float32Array; wk: Float32Array; bk: Float32Array };
}

/**
 * Wrap a model: hidden states from its public forward pass (`outputHiddenStates`), query/key weights
 * by their HF names from `exportWeights()` (PyTorch layout `[out, in]`, transposed here).
 * @throws Error when a layer's attention weights are missing ("a checkpoint without attention").
 */
export function attentionModelOf(model: CellModel): AttentionModel {
  const c = model.config;
  const hf = model.exportWeights();
  const H = c.hidden_size;
  const get = (name: string, shape: number[]) => {
    const t = hf[name];
    if (!t) throw new Error(`the model has no attention weights (${name} missing): cellfm grn needs a transformer with self-attention`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) throw new Error(`${name} has shape [${t.shape}], expected [${shape}]`);
    return t.data;
  };
  const qk: { wq: Float32Array; bq: Float32Array; wk: Float32Array; bk: Float32Array }[] = [];
  const tr = (w: Float32Array) => {
    const o = new Float32Array(H * H);
    for (let i = 0; i < H; i++) for (let j = 0; j < H; j++) o[j * H + i] = w[i * H + j]; // [out, in] → [in, out]
    return o;
  };
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `bert.encoder.layer.${l}.attention.self.`;
    qk.push({
      wq: tr(get(p + "query.weight", [H, H])),
      bq: Float32Array.from(get(p + "query.bias", [H])),
      wk: tr(get(p + "key.weight", [H, H])),
      bk: Float32Array.from(get(p + "key.bias", [H])),
    });
  }
  return {
    numLayers: c.num_hidden_layers,
    numHeads: c.num_attention_heads,
    hidden: H,
    maxLength: c.max_position_embeddings,
    layerInputs(batch) {
      // the last layer's output is no layer's input: run the first num_hidden_layers − 1 layers only
      const out = model.forward(batch, { training: false, outputHiddenStates: true, numLayers: c.num_hidden_layers - 1 });
      return out.hiddenStates!;
    },
    qk: (l) => qk[l],
  };
}

/** One cell's input as extraction sees it. */
export interface CellInput {
  /** input length (real tokens). */
  length: number;
  /** gene-list index at each input position, -1 where the token is not a list gene (special tokens, other genes). */
  geneAt: Int32Array;
}

/** Options shared by both methods. */
export interface ExtractOptions {
  /** padded tokens per forward pass (default 8,192). */
  maxTokensPerBatch?: number;
  /** called after each batch with cells done and total. */
  onProgress?: (done: number, total: number) => void;
}

/** Per-layer query and key sums per gene, for method (a). */
export interface QkMeans {
  n: number;
  numLayers: number;
  numHeads: number;
  hidden: number;
  /** cells in whose input each gene appears (a gene appears at most once per cell). */
  count: Int32Array;
  /** per layer: mean query vector per gene, `[n, hidden]` (zeros where count is 0). */
  q: Float32Array[];
  /** per layer: mean key vector per gene, `[n, hidden]`. */
  k: Float32Array[];
}

function projections(am: AttentionModel, x: tf.Tensor3D, l: number): { q: Float32Array; k: Float32Array } {
  const [B, L, H] = x.shape;
  const w = am.qk(l);
  const [q, k] = tf.tidy(() => {
    const x2 = tf.reshape(x, [B * L, H]) as tf.Tensor2D;
    return [
      tf.add(tf.matMul(x2, tf.tensor2d(w.wq, [H, H])), tf.tensor1d(w.bq)),
      tf.add(tf.matMul(x2, tf.tensor2d(w.wk, [H, H])), tf.tensor1d(w.bk)),
    ];
  });
  const out = { q: q.dataSync() as Float32Array, k: k.dataSync() as Float32Array };
  q.dispose();
  k.dispose();
  return out;
}

/** Attention scores one forward pass may hold per layer (batch × heads × L²), 2^24 floats = 64 MiB. */
export const ATTENTION_BUDGET = 2 ** 24;

/**
 * Padded batches, cells sorted by length (longest first): each batch holds at most `maxTokens`
 * padded tokens and at most {@link ATTENTION_BUDGET} attention scores per layer (the forward pass
 * keeps every layer's scores until it returns, so long cells get small batches).
 */
export function planAttentionBatches(lengths: readonly number[], maxTokens: number, numHeads: number): number[][] {
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b] - lengths[a] || a - b);
  const batches: number[][] = [];
  let i = 0;
  while (i < order.length) {
    const L = Math.max(1, lengths[order[i]]); // longest of the batch: cells are sorted
    const cap = Math.max(1, Math.min(Math.floor(maxTokens / L), Math.floor(ATTENTION_BUDGET / (numHeads * L * L))));
    batches.push(order.slice(i, i + cap));
    i += cap;
  }
  return batches;
}

/** Run the cells through the model in padded batches; `visit(batchCells, L, layerInputs)` per batch. */
function forEachBatch(
  am: AttentionModel,
  cells: readonly CellInput[],
  makeBatch: (idx: number[], L: number) => ModelBatch,
  opts: ExtractOptions,
  visit: (idx: number[], L: number, l: number, q: Float32Array, k: Float32Array) => void,
): void {
  for (const [i, c] of cells.entries()) {
    if (c.length > am.maxLength) throw new Error(`cell ${i} has ${c.length} tokens, more than max_position_embeddings (${am.maxLength})`);
    if (c.geneAt.length < c.length) throw new Error(`cell ${i}: geneAt shorter than the input`);
  }
  const batches = planAttentionBatches(cells.map((c) => c.length), opts.maxTokensPerBatch ?? 8192, am.numHeads);
  let done = 0;
  for (const idx of batches) {
    const L = Math.max(1, ...idx.map((i) => cells[i].length));
    const batch = makeBatch(idx, L);
    let hs: tf.Tensor3D[] = [];
    try {
      hs = am.layerInputs(batch);
      for (let l = 0; l < am.numLayers; l++) {
        const { q, k } = projections(am, hs[l], l);
        visit(idx, L, l, q, k);
      }
    } finally {
      for (const t of hs) t.dispose();
      batch.inputIds.dispose();
      batch.attentionMask.dispose();
      for (const v of Object.values(batch)) if (v instanceof tf.Tensor && !v.isDisposed) v.dispose();
    }
    done += idx.length;
    opts.onProgress?.(done, cells.length);
  }
}

/**
 * Method (a), first step: mean query and key vector of every list gene per layer over the cells
 * whose input holds it.
 * @param n number of genes in the list.
 * @param makeBatch builds the padded model batch of the given cells (padded length L).
 */
export function qkMeans(am: AttentionModel, cells: readonly CellInput[], n: number, makeBatch: (idx: number[], L: number) => ModelBatch, opts: ExtractOptions = {}): QkMeans {
  return qkFinish(qkSums(am, cells, n, makeBatch, opts), am.numHeads);
}

/** Per-gene query/key sums of some cells (method a before averaging); sums of disjoint cell sets add up. */
export interface QkSums {
  n: number;
  hidden: number;
  /** cells whose input holds each gene. */
  count: Int32Array;
  /** per layer `[n, hidden]` float64 sums. */
  qs: Float64Array[];
  ks: Float64Array[];
}

/** Add `b` into `a` (sums over disjoint cell sets, e.g. from worker threads). */
export function addQkSums(a: QkSums, b: QkSums): void {
  for (let g = 0; g < a.n; g++) a.count[g] += b.count[g];
  a.qs.forEach((x, l) => {
    for (let i = 0; i < x.length; i++) x[i] += b.qs[l][i];
  });
  a.ks.forEach((x, l) => {
    for (let i = 0; i < x.length; i++) x[i] += b.ks[l][i];
  });
}

/** Means from sums (zeros where a gene occurred in no cell). */
export function qkFinish(s: QkSums, numHeads: number): QkMeans {
  const { n, hidden: H, count } = s;
  const mean = (a: Float64Array) => {
    const o = new Float32Array(n * H);
    for (let g = 0; g < n; g++) if (count[g] > 0) for (let d = 0; d < H; d++) o[g * H + d] = a[g * H + d] / count[g];
    return o;
  };
  return { n, numLayers: s.qs.length, numHeads, hidden: H, count, q: s.qs.map(mean), k: s.ks.map(mean) };
}

/** Method (a) sums over the given cells (see {@link qkMeans}). */
export function qkSums(am: AttentionModel, cells: readonly CellInput[], n: number, makeBatch: (idx: number[], L: number) => ModelBatch, opts: ExtractOptions = {}): QkSums {
  const H = am.hidden;
  const count = new Int32Array(n);
  const qs = Array.from({ length: am.numLayers }, () => new Float64Array(n * H));
  const ks = Array.from({ length: am.numLayers }, () => new Float64Array(n * H));
  forEachBatch(am, cells, makeBatch, opts, (idx, L, l, q, k) => {
    const qa = qs[l], ka = ks[l];
    idx.forEach((ci, b) => {
      const c = cells[ci];
      for (let t = 0; t < c.length; t++) {
        const g = c.geneAt[t];
        if (g < 0) continue;
        if (l === 0) count[g]++;
        const src = (b * L + t) * H, dst = g * H;
        for (let d = 0; d < H; d++) {
          qa[dst + d] += q[src + d];
          ka[dst + d] += k[src + d];
        }
      }
    });
  });
  return { n, hidden: H, count, qs, ks };
}

/**
 * Method (a), second step: the network of one layer and head, softmax_row(Q̄ K̄ᵀ / √d_head) over
 * the genes that appeared in some cell (rows and columns of the others are 0).
 * @returns `[n, n]` float32, rows sum to 1 over the present genes.
 */
export function qkHeadNetwork(m: QkMeans, layer: number, head: number): Float32Array {
  const { n, hidden: H, numHeads } = m;
  const D = H / numHeads;
  const present: number[] = [];
  for (let g = 0; g < n; g++) if (m.count[g] > 0) present.push(g);
  const p = present.length;
  const out = new Float32Array(n * n);
  if (p === 0) return out;
  const qh = new Float32Array(p * D), kt = new Float32Array(D * p);
  const q = m.q[layer], k = m.k[layer];
  present.forEach((g, i) => {
    for (let d = 0; d < D; d++) {
      qh[i * D + d] = q[g * H + head * D + d];
      kt[d * p + i] = k[g * H + head * D + d];
    }
  });
  const a = tf.tidy(() => tf.softmax(tf.mul(tf.matMul(tf.tensor2d(qh, [p, D]), tf.tensor2d(kt, [D, p])), 1 / Math.sqrt(D))));
  const v = a.dataSync() as Float32Array;
  a.dispose();
  for (let i = 0; i < p; i++) {
    const row = present[i] * n;
    for (let j = 0; j < p; j++) out[row + present[j]] = v[i * p + j];
  }
  return out;
}

/** Accumulated per-cell attention (method b). */
export interface AttentionMeans {
  n: number;
  numLayers: number;
  numHeads: number;
  /** cells in which both genes of a pair appear, `[n, n]`. */
  pairCount: Int32Array;
  /**
   * With `perHead`: mean attention per head, `heads[l * numHeads + h]` `[n, n]`; otherwise one
   * entry: the weighted sum over heads (weights `headWeights`) of the mean attention.
   */
  networks: Float32Array[];
}

/**
 * Method (b): every cell's attention probabilities softmax(q·kᵀ/√d_head) over its whole input,
 * rows and columns of the list's genes kept, averaged over the cells in which both genes appear.
 * @param headWeights with `perHead` false: weight of each head (`[layers * heads]`) in the single
 *   accumulated network (e.g. 1/(L·H) for the mean, 1/|S| on a subset S).
 * @param perHead keep one accumulator per head (needed for max aggregation and head selection);
 *   memory layers × heads × n² × 4 bytes.
 */
export function attentionMeans(
  am: AttentionModel,
  cells: readonly CellInput[],
  n: number,
  makeBatch: (idx: number[], L: number) => ModelBatch,
  opts: ExtractOptions & { perHead: boolean; headWeights?: Float64Array },
): AttentionMeans {
  return attentionFinish(attentionSums(am, cells, n, makeBatch, opts), am.numLayers, am.numHeads);
}

/** Method (b) before averaging: co-occurrence counts and attention sums; sums of disjoint cell sets add up. */
export interface AttentionSums {
  n: number;
  pairCount: Int32Array;
  /** one `[n, n]` float64 sum per kept network (per head, or one weighted over heads). */
  sums: Float64Array[];
}

/** Add `b` into `a` (sums over disjoint cell sets). */
export function addAttentionSums(a: AttentionSums, b: AttentionSums): void {
  for (let i = 0; i < a.pairCount.length; i++) a.pairCount[i] += b.pairCount[i];
  a.sums.forEach((x, k) => {
    for (let i = 0; i < x.length; i++) x[i] += b.sums[k][i];
  });
}

/** Means from sums (0 for pairs that never co-occurred). */
export function attentionFinish(s: AttentionSums, numLayers: number, numHeads: number): AttentionMeans {
  const { n, pairCount } = s;
  const networks = s.sums.map((x) => {
    const o = new Float32Array(n * n);
    for (let i = 0; i < n * n; i++) if (pairCount[i] > 0) o[i] = x[i] / pairCount[i];
    return o;
  });
  return { n, numLayers, numHeads, pairCount, networks };
}

/** Method (b) sums over the given cells (see {@link attentionMeans}). */
export function attentionSums(
  am: AttentionModel,
  cells: readonly CellInput[],
  n: number,
  makeBatch: (idx: number[], L: number) => ModelBatch,
  opts: ExtractOptions & { perHead: boolean; headWeights?: Float64Array },
): AttentionSums {
  const NH = am.numHeads, H = am.hidden, D = H / NH, NL = am.numLayers;
  const nNet = opts.perHead ? NL * NH : 1;
  const sums = Array.from({ length: nNet }, () => new Float64Array(n * n));
  const pairCount = new Int32Array(n * n);
  const hw = opts.headWeights ?? new Float64Array(NL * NH).fill(1 / (NL * NH));
  if (!opts.perHead && hw.length !== NL * NH) throw new Error(`headWeights must have ${NL * NH} entries`);
  forEachBatch(am, cells, makeBatch, opts, (idx, L, l, q, k) => {
    idx.forEach((ci, b) => {
      const c = cells[ci];
      const pos: number[] = [];
      for (let t = 0; t < c.length; t++) if (c.geneAt[t] >= 0) pos.push(t);
      const m = pos.length, len = c.length;
      if (m === 0) return;
      const genes = pos.map((t) => c.geneAt[t]);
      if (l === 0) for (const gi of genes) for (const gj of genes) pairCount[gi * n + gj]++;
      for (let h = 0; h < NH; h++) {
        const w = opts.perHead ? 1 : hw[l * NH + h];
        if (w === 0) continue;
        const qh = new Float32Array(m * D), kt = new Float32Array(D * len);
        pos.forEach((t, i) => {
          const src = (b * L + t) * H + h * D;
          for (let d = 0; d < D; d++) qh[i * D + d] = q[src + d];
        });
        for (let t = 0; t < len; t++) {
          const src = (b * L + t) * H + h * D;
          for (let d = 0; d < D; d++) kt[d * len + t] = k[src + d];
        }
        const a = tf.tidy(() => tf.softmax(tf.mul(tf.matMul(tf.tensor2d(qh, [m, D]), tf.tensor2d(kt, [D, len])), 1 / Math.sqrt(D))));
        const v = a.dataSync() as Float32Array;
        a.dispose();
        const acc = sums[opts.perHead ? l * NH + h : 0];
        for (let i = 0; i < m; i++) {
          const row = genes[i] * n, vr = i * len;
          for (let j = 0; j < m; j++) acc[row + genes[j]] += w * v[vr + pos[j]];
        }
      }
    });
  });
  return { n, pairCount, sums };
}
