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
 * Binned models read the scGPT bins (the model's `cellfm.head.n_bins` of them) of the cell's
 * downsampled counts over all its nonzero benchmark genes (as tokenized for training), whatever the
 * context. The contexts are predicted by `src/denoise/predict.ts` (`predictMeans`), as `cellfm denoise`.
 * Genes outside every context keep their downsampled input value (a zero stays zero): the model is
 * scored only on what it changed, so a model that returned its input would score exactly 0.
 *
 * The library size given to the head is the context's downsampled total (the original is unknown at
 * prediction time); one constant factor across all cells, so the pooled Spearman is unaffected.
 */
import { encodingByName, ENCODINGS } from "../encoding/index.js";
import type { CellModel } from "../model/bert.js";
import { DenoiseHead } from "../model/value-model.js";
import { tokenHeadOf } from "../model/cell-heads.js";
import { makeRng } from "../rng.js";
import { predictMeans } from "../denoise/predict.js";
import type { DenseCounts } from "./denoise.js";

/** Model encodings {@link predictCounts} can feed (manifest names): every encoding in the registry. */
export const PREDICTABLE_ENCODINGS: readonly string[] = ENCODINGS.map((e) => e.name);

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
  /**
   * binned: total bins including bin 0 ({@link predictCounts}: the model's `cellfm.head.n_bins`, the
   * bins it was trained on; {@link buildContexts}: default 51, scGPT's).
   */
  nBins?: number;
  /** seed of the context shuffling (and of the binned encoding's tie spreading). */
  seed?: number;
  /** padded tokens per forward pass (default 16,384; does not change the result). */
  maxTokensPerBatch?: number;
}

interface Context {
  cell: number;
  cols: Int32Array;
  ids: Int32Array;
  values: Float32Array;
  lib: number;
}

/** The contexts the model reads for every cell (see the module comment; the choice is the encoding's, `src/encoding/`). */
export function buildContexts(noisy: DenseCounts, encoding: string, o: PredictOptions): Context[] {
  const { nCells: n, nGenes: g } = noisy;
  if (o.geneTokens.length !== g) throw new Error(`predictCounts: ${o.geneTokens.length} gene tokens for ${g} benchmark genes`);
  if (!(o.maxLength >= 1)) throw new Error(`predictCounts: maxLength must be >= 1, got ${o.maxLength}`);
  const enc = encodingByName(encoding);
  if (!enc) throw new Error(`predictCounts: no benchmark input for encoding "${encoding}" (supported: ${PREDICTABLE_ENCODINGS.join(", ")})`);
  const seed = o.seed ?? 0;
  const rng = makeRng(`${seed}:denoise-contexts`);
  const out: Context[] = [];
  for (let i = 0; i < n; i++) {
    const row = noisy.data.subarray(i * g, (i + 1) * g);
    const nz: number[] = [];
    for (let j = 0; j < g; j++) if (row[j] > 0) nz.push(j);
    if (nz.length === 0) continue; // nothing left of the cell: the input (all zero) stands
    const { groups, valueOf } = enc.benchmarkContexts(row, nz, i, o.geneTokens, rng, { ...o, seed });
    for (const cols of groups) {
      const counts = Float32Array.from(cols, (j) => row[j]);
      let lib = 0;
      for (const v of counts) lib += v;
      out.push({ cell: i, cols, ids: Int32Array.from(cols, (j) => o.geneTokens[j]), values: Float32Array.from(cols, valueOf), lib });
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
  if (!(tokenHeadOf(model.head) instanceof DenoiseHead)) throw new Error(`predictCounts: the model (${model.spec.architecture}) has no count head; only objective denoise predicts counts`);
  // binned: the bins the model was trained on (its cellfm.head.n_bins), not the default
  const nBins = o.nBins ?? (typeof model.spec.head?.n_bins === "number" ? model.spec.head.n_bins : undefined);
  const contexts = buildContexts(noisy, encoding, { ...o, nBins });
  const mus = predictMeans(
    model,
    contexts.map((c) => ({ ids: c.ids, values: c.values, libSize: c.lib })),
    { maxTokensPerBatch: o.maxTokensPerBatch },
  );
  const pred = { nCells: noisy.nCells, nGenes: noisy.nGenes, data: Float32Array.from(noisy.data) };
  contexts.forEach((c, k) => {
    const m = mus[k];
    c.cols.forEach((j, q) => {
      const v = m[q];
      if (!Number.isFinite(v)) throw new Error(`predictCounts: the model predicted a non-finite mean (${v}) for cell ${c.cell}, gene column ${j}`);
      pred.data[c.cell * noisy.nGenes + j] = v;
    });
  });
  return pred;
}
