/**
 * The denoising benchmark of `cellfm compare`, following scPRINT's protocol
 * (cantinilab/scPRINT `scprint/tasks/denoise.py`, `Denoiser.__call__` with `downsample_expr=0.7`
 * as in its `default_benchmark`): held-out cells are downsampled (by default 70 % of their counts
 * removed), a model predicts the counts from the downsampled cells, and the prediction is scored by
 * the Spearman correlation with the full (not downsampled) counts over the entries that are truly
 * nonzero, pooled over all cells and genes (scPRINT's `spearmanr(... [true != 0])`). The reported
 * score is the improvement over the downsampled input itself (`reco2full − noisy2full`), so
 * returning the input unchanged scores 0 and only a model that restores information scores > 0.
 *
 * Baselines: the downsampled input (score 0 by definition) and kNN smoothing (scPRINT's
 * `withknn` comparison; Wagner et al. 2018 kNN-smoothing): every cell replaced by the average of
 * itself and its k − 1 nearest cells in the PCA space of the downsampled data
 * (normalize_total 1e4 + log1p, HVGs, PCA).
 *
 * Matrices are dense, cells × genes, row-major Float32Array of raw counts.
 */
import { exactKnn } from "../assess/knn.js";
import { pca } from "../assess/linalg.js";
import { GeneMoments, seuratHvg, TARGET_SUM } from "../assess/hvg.js";
import { spearmanDirect } from "../assess/spearman.js";
import type { CountMatrixSource } from "../data/types.js";

/** Dense counts of some cells on some genes. */
export interface DenseCounts {
  nCells: number;
  nGenes: number;
  /** cells × genes, row-major, raw counts (float32). */
  data: Float32Array;
}

/** Scores of one prediction (scPRINT's metric names). */
export interface DenoiseScore {
  /** Spearman ρ of the prediction with the full counts over the truly nonzero entries. */
  reco2full: number;
  /** Spearman ρ of the downsampled input with the full counts over the same entries. */
  noisy2full: number;
  /** reco2full − noisy2full: > 0 = the prediction restores information the downsampling removed. */
  improvement: number;
  /** truly nonzero entries scored. */
  nEntries: number;
}

/**
 * Spearman ρ (average ranks for ties) between `a` and `b` over the entries where `ref` is nonzero.
 * @param a, b, ref same length. @returns ρ; NaN when fewer than 2 entries or a side is constant.
 * @throws Error on different lengths.
 */
export function spearmanOnNonzero(a: ArrayLike<number>, b: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (a.length !== b.length || a.length !== ref.length) throw new Error(`spearmanOnNonzero: lengths differ (${a.length}, ${b.length}, ${ref.length})`);
  let n = 0;
  for (let i = 0; i < ref.length; i++) if (ref[i] !== 0) n++;
  const xa = new Float64Array(n);
  const xb = new Float64Array(n);
  for (let i = 0, j = 0; i < ref.length; i++) {
    if (ref[i] === 0) continue;
    xa[j] = a[i];
    xb[j++] = b[i];
  }
  return n < 2 ? NaN : spearmanDirect(xa, xb);
}

/**
 * Score a denoising prediction against the full counts (scPRINT `Denoiser`: reco2full, noisy2full).
 * @param full the original counts; `noisy` their downsampled version; `predicted` the model's
 *   prediction from `noisy` (any scale: only ranks matter). All the same shape.
 * @throws Error when shapes differ, a prediction is not finite, or a correlation is undefined.
 */
export function denoiseScore(full: DenseCounts, noisy: DenseCounts, predicted: DenseCounts): DenoiseScore {
  for (const [name, m] of [["downsampled", noisy], ["predicted", predicted]] as const) {
    if (m.nCells !== full.nCells || m.nGenes !== full.nGenes) {
      throw new Error(`denoise: ${name} counts are ${m.nCells} × ${m.nGenes}, the full counts ${full.nCells} × ${full.nGenes}`);
    }
  }
  for (let i = 0; i < predicted.data.length; i++) {
    if (!Number.isFinite(predicted.data[i])) throw new Error(`denoise: the prediction is not finite (${predicted.data[i]}) at cell ${Math.floor(i / full.nGenes)}, gene ${i % full.nGenes}`);
  }
  const reco2full = spearmanOnNonzero(predicted.data, full.data, full.data);
  const noisy2full = spearmanOnNonzero(noisy.data, full.data, full.data);
  let nEntries = 0;
  for (const v of full.data) if (v !== 0) nEntries++;
  // a constant prediction has no ranks: it carries no information, scored as ρ = 0
  const r = Number.isNaN(reco2full) && nEntries >= 2 ? 0 : reco2full;
  if (!Number.isFinite(r) || !Number.isFinite(noisy2full)) {
    throw new Error(`denoise: Spearman correlation undefined (${nEntries} nonzero entries; the downsampled input may be constant)`);
  }
  return { reco2full: r, noisy2full, improvement: r - noisy2full, nEntries };
}

/** log1p(counts / cell total × 1e4) of a dense matrix (scanpy normalize_total + log1p). */
export function logNormalize(m: DenseCounts): Float32Array {
  const out = new Float32Array(m.data.length);
  for (let i = 0; i < m.nCells; i++) {
    let tot = 0;
    for (let g = 0; g < m.nGenes; g++) tot += m.data[i * m.nGenes + g];
    const f = tot > 0 ? TARGET_SUM / tot : 0;
    for (let g = 0; g < m.nGenes; g++) out[i * m.nGenes + g] = Math.log1p(m.data[i * m.nGenes + g] * f);
  }
  return out;
}

/**
 * kNN smoothing baseline: each cell's counts replaced by the mean over itself and its k − 1 nearest
 * cells, neighbours found by Euclidean distance in the PCA (`nPcs`) of the log-normalised `noisy` data.
 * @returns smoothed counts, same shape as `noisy`.
 * @throws Error when there are fewer than 2 cells.
 */
export function knnSmooth(noisy: DenseCounts, opts: { k?: number; nPcs?: number; seed?: number } = {}): DenseCounts {
  const { nCells: n, nGenes: g } = noisy;
  if (n < 2) throw new Error(`knnSmooth: need at least 2 cells, got ${n}`);
  const k = Math.max(1, Math.min(opts.k ?? 10, n));
  const x = logNormalize(noisy);
  const pc = pca(x, n, g, opts.nPcs ?? 50, { seed: opts.seed ?? 0 });
  const out = new Float32Array(n * g);
  const graph = k > 1 ? exactKnn(pc.scores, n, pc.nComponents, { k: k - 1 }) : undefined;
  for (let i = 0; i < n; i++) {
    const row = out.subarray(i * g, i * g + g);
    const members = [i, ...(graph ? Array.from(graph.indices.subarray(i * graph.k, i * graph.k + graph.k)) : [])];
    for (const j of members) {
      const src = noisy.data.subarray(j * g, j * g + g);
      for (let t = 0; t < g; t++) row[t] += src[t];
    }
    for (let t = 0; t < g; t++) row[t] /= members.length;
  }
  return { nCells: n, nGenes: g, data: out };
}

/**
 * Read the benchmark's cells: the highly variable genes over all cells (Seurat flavour, as
 * `cellfm assess`) and the dense raw counts of the cells `rows` on them (scPRINT scores its
 * 4,000–8,000 most variable genes).
 * @param rows cell indices (ascending or not) into the source. @param nHvg genes kept.
 * @param eligible when given, HVGs are chosen among these var columns only (1 = eligible): the genes
 *   every model can read (a known, unique token), so no scored gene is invisible to a model.
 * @returns counts `[rows.length, nHvg]` and the gene (var) indices, in HVG order.
 * @throws Error when no gene is eligible.
 */
export function readBenchmarkCells(src: CountMatrixSource, rows: ArrayLike<number>, nHvg: number, eligible?: Uint8Array): { counts: DenseCounts; genes: Int32Array } {
  const want = new Map<number, number>();
  Array.from(rows).forEach((r, i) => want.set(r, i));
  const moments = new GeneMoments(src.nGenes);
  const kept: { idx: Int32Array; val: Float64Array }[] = new Array(want.size);
  for (const ch of src.chunks(1024)) {
    for (let r = 0; r < ch.nCells; r++) {
      const lo = ch.indptr[r];
      const hi = ch.indptr[r + 1];
      moments.addCell(ch.indices, ch.data, lo, hi);
      const at = want.get(ch.start + r);
      if (at !== undefined) kept[at] = { idx: ch.indices.slice(lo, hi), val: ch.data.slice(lo, hi) };
    }
  }
  const mv = moments.meanVar();
  let genes: Int32Array;
  if (eligible) {
    const pool: number[] = [];
    for (let gi = 0; gi < src.nGenes; gi++) if (eligible[gi]) pool.push(gi);
    if (pool.length === 0) throw new Error("denoise: no gene of the data is known to the models' vocabulary");
    const sub = seuratHvg(Float64Array.from(pool, (gi) => mv.mean[gi]), Float64Array.from(pool, (gi) => mv.variance[gi]), nHvg).genes;
    genes = Int32Array.from(sub, (k) => pool[k]);
  } else {
    genes = seuratHvg(mv.mean, mv.variance, nHvg).genes;
  }
  const col = new Int32Array(src.nGenes).fill(-1);
  genes.forEach((gi, j) => (col[gi] = j));
  const p = genes.length;
  const data = new Float32Array(kept.length * p);
  kept.forEach((c, i) => {
    for (let t = 0; t < c.idx.length; t++) {
      const j = col[c.idx[t]];
      if (j >= 0) data[i * p + j] = c.val[t];
    }
  });
  return { counts: { nCells: kept.length, nGenes: p, data }, genes };
}
