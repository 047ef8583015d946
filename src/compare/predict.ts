/**
 * Count prediction of a denoising model for the benchmark (`./bench.ts`): the model reads each
 * held-out cell's **downsampled** counts and its count head's mean μ (`DenoiseHead.params`, ZINB / NB /
 * Poisson mean = softmax over the context genes × library size) replaces the input on the genes it saw.
 *
 * Which genes a model sees (its context, at most `maxLength` genes, as in training):
 * - counts (and binned) encodings, no position embedding: the cell's downsampled-nonzero benchmark genes,
 *   shuffled (seeded) and cut into contexts of at most `maxLength` genes, so every expressed gene is
 *   predicted once (training draws a random subset of expressed genes per pass; scPRINT's collator
 *   `how="random expr"`);
 * - counts / binned models trained on `cellfm tokenize --top-genes K` tokens: only the cell's K
 *   downsampled-nonzero genes ranked first by downsampled count / gene median (the genes they were
 *   trained on), cut into contexts of at most `maxLength` as above;
 * - rank encoding (position = rank): the top `maxLength` genes ranked by downsampled count / gene
 *   median (Geneformer's rank-value order, what `RankDenoiseObjective` feeds in training).
 * Binned models read the scGPT bins of the cell's downsampled counts over all its nonzero benchmark
 * genes (as tokenized for training), whatever the context.
 * Genes outside every context keep their downsampled input value (a zero stays zero): the model is
 * scored only on what it changed, so a model that returned its input would score exactly 0.
 *
 * The library size given to the head is the context's downsampled total (the original is unknown at
 * prediction time); one constant factor across all cells, so the pooled Spearman is unaffected.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { CellModel, ForwardContext, ModelBatch } from "../model/bert.js";
import { RANK_ENCODING } from "../model/bert.js";
import { BINNED_ENCODING, COUNTS_ENCODING } from "../model/factory.js";
import { DropoutContext } from "../model/ops.js";
import { DenoiseHead } from "../model/value-model.js";
import { tokenHeadOf } from "../model/cell-heads.js";
import { makeRng } from "../rng.js";
import { binCounts, DEFAULT_N_BINS } from "../tokenize/binning.js";
import { rankValueOrder } from "../tokenize/geneformer.js";
import type { DenseCounts } from "./denoise.js";

/** Model encodings {@link predictCounts} can feed (manifest names). */
export const PREDICTABLE_ENCODINGS: readonly string[] = [COUNTS_ENCODING, RANK_ENCODING, BINNED_ENCODING];

/** Whether a model of this encoding × objective predicts counts the benchmark can score. */
export function canPredictCounts(encoding: string, objective: string): boolean {
  return objective === "denoise" && PREDICTABLE_ENCODINGS.includes(encoding);
}

/** Options of {@link predictCounts}. */
export interface PredictOptions {
  /** genes per context (the training runs' `data.max_length`, at most the position table for rank). */
  maxLength: number;
  /** token id of every benchmark gene (column), ≥ 0. */
  geneTokens: Int32Array;
  /** rank encoding and `topGenes`: nonzero median per token id (Geneformer's gene_median dictionary). */
  tokenMedian?: Float64Array;
  /** counts / binned models trained on `--top-genes K` tokens: K (the dataset manifest's `top_genes`). */
  topGenes?: number;
  /** seed of the context shuffling (and of the binned encoding's tie spreading). */
  seed?: number;
  /** contexts per forward pass (default 32). */
  batchSize?: number;
}

interface Context {
  cell: number;
  cols: Int32Array;
  ids: Int32Array;
  values: Float32Array;
  lib: number;
}

/** Fisher–Yates shuffle in place with a seeded stream. */
function shuffle(a: Int32Array, rng: () => number): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}

/** The contexts the model reads for every cell (see the module comment). */
export function buildContexts(noisy: DenseCounts, encoding: string, o: PredictOptions): Context[] {
  const { nCells: n, nGenes: g } = noisy;
  if (o.geneTokens.length !== g) throw new Error(`predictCounts: ${o.geneTokens.length} gene tokens for ${g} benchmark genes`);
  if (!(o.maxLength >= 1)) throw new Error(`predictCounts: maxLength must be >= 1, got ${o.maxLength}`);
  const rng = makeRng(`${o.seed ?? 0}:denoise-contexts`);
  const out: Context[] = [];
  for (let i = 0; i < n; i++) {
    const row = noisy.data.subarray(i * g, (i + 1) * g);
    const nz: number[] = [];
    let total = 0;
    for (let j = 0; j < g; j++) {
      if (row[j] > 0) {
        nz.push(j);
        total += row[j];
      }
    }
    if (nz.length === 0) continue; // nothing left of the cell: the input (all zero) stands
    const groups: Int32Array[] = [];
    const topByRankValue = (k: number): Int32Array => {
      if (!o.tokenMedian) throw new Error("predictCounts: ranking genes by rank-value needs the gene medians (tokenMedian)");
      const toks = Int32Array.from(nz, (j) => o.geneTokens[j]);
      const key = Float64Array.from(nz, (j) => row[j] / (o.tokenMedian![o.geneTokens[j]] || 1));
      const order = rankValueOrder(toks, key, k);
      const colOf = new Map<number, number>(nz.map((j) => [o.geneTokens[j], j]));
      return Int32Array.from(order, (t) => colOf.get(t)!);
    };
    if (encoding === RANK_ENCODING) {
      groups.push(topByRankValue(o.maxLength));
    } else {
      const perm = o.topGenes !== undefined ? topByRankValue(o.topGenes).sort() : Int32Array.from(nz);
      shuffle(perm, rng);
      for (let s = 0; s < perm.length; s += o.maxLength) groups.push(perm.slice(s, s + o.maxLength));
    }
    // binned: the cell's bins over all its nonzero benchmark genes, as the tokenizer bins a cell
    let binOfCol: Map<number, number> | undefined;
    if (encoding === BINNED_ENCODING) {
      const bins = binCounts(Float64Array.from(nz, (j) => row[j]), total, makeRng(`${o.seed ?? 0}:bins:${i}`), DEFAULT_N_BINS);
      binOfCol = new Map(nz.map((j, q) => [j, bins[q]]));
    }
    for (const cols of groups) {
      const counts = Float32Array.from(cols, (j) => row[j]);
      let lib = 0;
      for (const v of counts) lib += v;
      const values = binOfCol ? Float32Array.from(cols, (j) => binOfCol!.get(j)!) : counts;
      out.push({ cell: i, cols, ids: Int32Array.from(cols, (j) => o.geneTokens[j]), values, lib });
    }
  }
  return out;
}

/**
 * Predict the full counts of the benchmark cells from their downsampled counts.
 * @param model a model with a count head (objective denoise), trained or not.
 * @param encoding the model's input encoding (manifest name, `model.spec.encoding`).
 * @param noisy downsampled counts `[cells, genes]` on the benchmark genes.
 * @returns predictions, same shape: μ on the genes in a context, the input elsewhere.
 * @throws Error when the model has no count head, the encoding cannot be fed, or μ is not finite.
 */
export function predictCounts(model: CellModel, encoding: string, noisy: DenseCounts, o: PredictOptions): DenseCounts {
  const head = tokenHeadOf(model.head);
  if (!(head instanceof DenoiseHead)) throw new Error(`predictCounts: the model (${model.spec.architecture}) has no count head; only objective denoise predicts counts`);
  if (!PREDICTABLE_ENCODINGS.includes(encoding)) throw new Error(`predictCounts: no benchmark input for encoding "${encoding}" (supported: ${PREDICTABLE_ENCODINGS.join(", ")})`);
  const pred = { nCells: noisy.nCells, nGenes: noisy.nGenes, data: Float32Array.from(noisy.data) };
  const contexts = buildContexts(noisy, encoding, o);
  const bs = o.batchSize ?? 32;
  const pad = model.config.pad_token_id ?? 0;
  const ctx: ForwardContext = { config: model.config, dropout: new DropoutContext(false, 0) };
  for (let s = 0; s < contexts.length; s += bs) {
    const part = contexts.slice(s, s + bs);
    const B = part.length;
    const L = part.reduce((m, c) => Math.max(m, c.ids.length), 0);
    const ids = new Int32Array(B * L).fill(pad);
    const mask = new Float32Array(B * L);
    const vals = new Float32Array(B * L);
    part.forEach((c, b) => {
      ids.set(c.ids, b * L);
      vals.set(c.values, b * L);
      mask.fill(1, b * L, b * L + c.ids.length);
    });
    const mu = tf.tidy(() => {
      const batch: ModelBatch = { inputIds: tf.tensor2d(ids, [B, L], "int32"), attentionMask: tf.tensor2d(mask, [B, L]), values: tf.tensor2d(vals, [B, L]) };
      model.bert.checkBatch(batch);
      const [h] = model.bert.encode(batch, ctx, model.config.num_hidden_layers, false);
      return head.params(h, batch, tf.tensor1d(Float32Array.from(part, (c) => c.lib)), ctx).mu;
    });
    const m = mu.dataSync();
    mu.dispose();
    part.forEach((c, b) => {
      c.cols.forEach((j, k) => {
        const v = m[b * L + k];
        if (!Number.isFinite(v)) throw new Error(`predictCounts: the model predicted a non-finite mean (${v}) for cell ${c.cell}, gene column ${j}`);
        pred.data[c.cell * noisy.nGenes + j] = v;
      });
    });
  }
  return pred;
}
