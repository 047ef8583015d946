/**
 * Log-normalisation and Seurat-style highly variable genes, as scanpy does them:
 * `sc.pp.normalize_total(target_sum=1e4)`, `sc.pp.log1p`, then
 * `sc.pp.highly_variable_genes(flavor="seurat", n_top_genes=N)` (scanpy
 * `preprocessing/_highly_variable_genes.py`, `_highly_variable_genes_single_batch`).
 *
 * scanpy's seurat flavour undoes the log (`expm1`) before computing per-gene mean and variance, so
 * the statistics are those of the normalised counts (counts × 1e4 / cell total); we accumulate them
 * directly from the counts in one streaming pass (float64), which is the same arithmetic without the
 * log/expm1 round trip.
 */

/** Default total per cell after normalisation (scanpy `target_sum`). */
export const TARGET_SUM = 1e4;

/**
 * Streaming per-gene sums of normalised counts (counts × targetSum / cell total) over cells, for
 * {@link seuratHvg}. Cells with total 0 contribute zeros (as scanpy leaves them).
 */
export class GeneMoments {
  readonly sum: Float64Array;
  readonly sumSq: Float64Array;
  nCells = 0;
  constructor(readonly nGenes: number, readonly targetSum = TARGET_SUM) {
    this.sum = new Float64Array(nGenes);
    this.sumSq = new Float64Array(nGenes);
  }
  /** Add one cell given its nonzero genes `indices[lo..hi)` with raw counts `data[lo..hi)`. */
  addCell(indices: ArrayLike<number>, data: ArrayLike<number>, lo: number, hi: number): void {
    let total = 0;
    for (let p = lo; p < hi; p++) total += data[p];
    this.nCells++;
    if (total <= 0) return;
    const f = this.targetSum / total;
    for (let p = lo; p < hi; p++) {
      const v = data[p] * f;
      this.sum[indices[p]] += v;
      this.sumSq[indices[p]] += v * v;
    }
  }
  /** Per-gene mean and unbiased variance (ddof = 1, as scanpy's `_get_mean_var`). */
  meanVar(): { mean: Float64Array; variance: Float64Array } {
    const n = this.nCells;
    const mean = new Float64Array(this.nGenes);
    const variance = new Float64Array(this.nGenes);
    for (let g = 0; g < this.nGenes; g++) {
      const m = this.sum[g] / n;
      mean[g] = m;
      variance[g] = n > 1 ? ((this.sumSq[g] / n - m * m) * n) / (n - 1) : 0;
    }
    return { mean, variance };
  }
}

/** Per-gene statistics and the selection made by {@link seuratHvg}. */
export interface HvgResult {
  /** selected gene indices, ascending. */
  genes: Int32Array;
  /** log1p(mean) per gene (scanpy `means`). */
  means: Float64Array;
  /** log(variance / mean) per gene, NaN where the dispersion is 0 (scanpy `dispersions`). */
  dispersions: Float64Array;
  /** dispersion z-scored within its mean bin (scanpy `dispersions_norm`), NaN where undefined. */
  dispersionsNorm: Float64Array;
}

/**
 * Seurat-flavour highly variable genes from per-gene mean and variance of normalised counts.
 *
 * As scanpy: mean==0 → 1e-12; dispersion = var/mean; dispersion 0 → NaN; dispersion ← log(dispersion);
 * mean ← log1p(mean); genes binned by mean into `nBins` equal-width bins (pandas `cut`: edges
 * `linspace(min, max, nBins+1)` with the lowest edge lowered by 0.1 % of the range, right-closed);
 * within a bin, normalised dispersion = (dispersion − bin mean) / bin std (ddof = 1, NaNs skipped);
 * a bin with a single gene gets std := its mean and mean := 0 (scanpy's rule). The top `nTop` genes by
 * normalised dispersion are selected (NaN counts as 0, as scanpy's `nan_to_num`; ties broken by lower
 * gene index so exactly `nTop` genes are returned; scanpy may return more on exact ties).
 * @param nTop number of genes to select; all genes when nTop ≥ nGenes.
 */
export function seuratHvg(mean: Float64Array, variance: Float64Array, nTop: number, nBins = 20): HvgResult {
  const n = mean.length;
  const means = new Float64Array(n);
  const disp = new Float64Array(n);
  for (let g = 0; g < n; g++) {
    const m = mean[g] === 0 ? 1e-12 : mean[g];
    let dsp = variance[g] / m;
    if (dsp === 0) dsp = NaN;
    disp[g] = Math.log(dsp);
    means[g] = Math.log1p(m);
  }
  // pandas.cut(means, bins=nBins)
  let mn = Infinity;
  let mx = -Infinity;
  for (const v of means) {
    if (v < mn) mn = v;
    if (v > mx) mx = v;
  }
  const edges = new Float64Array(nBins + 1);
  if (mn === mx) {
    const lo = mn - 0.001 * Math.abs(mn) - (mn === 0 ? 0.001 : 0);
    const hi = mx + 0.001 * Math.abs(mx) + (mx === 0 ? 0.001 : 0);
    for (let b = 0; b <= nBins; b++) edges[b] = lo + ((hi - lo) * b) / nBins;
  } else {
    for (let b = 0; b <= nBins; b++) edges[b] = mn + ((mx - mn) * b) / nBins;
    edges[nBins] = mx;
    edges[0] -= (mx - mn) * 0.001;
  }
  const bin = new Int32Array(n);
  for (let g = 0; g < n; g++) {
    // right-closed (edges[b], edges[b+1]]
    let b = 0;
    while (b < nBins - 1 && means[g] > edges[b + 1]) b++;
    bin[g] = b;
  }
  const cnt = new Float64Array(nBins);
  const s1 = new Float64Array(nBins);
  for (let g = 0; g < n; g++) {
    if (Number.isNaN(disp[g])) continue;
    cnt[bin[g]]++;
    s1[bin[g]] += disp[g];
  }
  const bMean = new Float64Array(nBins);
  const bStd = new Float64Array(nBins);
  for (let b = 0; b < nBins; b++) bMean[b] = cnt[b] > 0 ? s1[b] / cnt[b] : NaN;
  const s2 = new Float64Array(nBins);
  for (let g = 0; g < n; g++) {
    if (Number.isNaN(disp[g])) continue;
    const d = disp[g] - bMean[bin[g]];
    s2[bin[g]] += d * d;
  }
  for (let b = 0; b < nBins; b++) {
    bStd[b] = cnt[b] > 1 ? Math.sqrt(s2[b] / (cnt[b] - 1)) : NaN;
    if (cnt[b] === 1) {
      // scanpy: one gene in the bin → std := mean, mean := 0 (normalised dispersion 1)
      bStd[b] = bMean[b];
      bMean[b] = 0;
    }
  }
  const norm = new Float64Array(n);
  for (let g = 0; g < n; g++) norm[g] = (disp[g] - bMean[bin[g]]) / bStd[bin[g]];
  const take = Math.min(nTop, n);
  const key = (g: number) => (Number.isNaN(norm[g]) ? 0 : norm[g]);
  const order = Array.from({ length: n }, (_, g) => g).sort((a, b) => key(b) - key(a) || a - b);
  const genes = Int32Array.from(order.slice(0, take)).sort();
  return { genes, means, dispersions: disp, dispersionsNorm: norm };
}
