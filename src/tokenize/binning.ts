/**
 * scGPT-style per-cell value binning (Cui et al., Nature Methods 2024), seeded.
 *
 * Reference: bowang-lab/scGPT `scgpt/preprocess.py@cebd6fa` — `Preprocessor` (binning step) and
 * `_digitize(x, bins, side="both")`; the same function bins on the fly in
 * `scgpt/data_collator.py`. Per cell, over its **nonzero** values only:
 *
 * 1. x = log1p(count / n_counts × 10,000) (scGPT bins the log1p of the total-count-normalised layer);
 * 2. edges = `np.quantile(x, np.linspace(0, 1, n_bins − 1))` (NumPy's default "linear" method;
 *    duplicate edges are kept on purpose);
 * 3. for each value v: lo = #edges ≤ v (`np.digitize(v, edges)`), hi = #edges < v
 *    (`np.digitize(v, edges, right=True)`), bin = ceil(u·(hi − lo) + lo), u ~ U[0, 1).
 *    Without a tie at an edge this is lo; a value equal to an edge (common: all genes with count 1)
 *    is spread uniformly over the bins that edge spans. Nonzero values land in 1 … n_bins − 1,
 *    zero stays bin 0.
 *
 * scGPT draws u from NumPy's global, unseeded generator; cellfm draws it from a generator seeded
 * per cell ({@link cellBinningRng}), so a cell's bins never depend on the other cells, the batch or the
 * file it came in. Arithmetic is float64 (scGPT works on the float32 layer, so a value within a float32
 * rounding of an interpolated edge may land one bin apart; exact ties — the case that matters — are the same).
 */
import { makeRng, type Rng } from "../rng.js";

/** scGPT's default number of bins (bin 0 = zero count, bins 1 … 50 for nonzero values). */
export const DEFAULT_N_BINS = 51;

/** Target sum of scGPT's total-count normalisation (`normalize_total=1e4`). */
export const BINNING_TARGET_SUM = 10_000;

/**
 * `np.linspace(0, 1, n)`: `i · (1 / (n − 1))` for i < n − 1, and exactly 1 last (NumPy's formula,
 * so the quantile positions match bit for bit).
 * @param n number of points, ≥ 2.
 * @returns `[n]` float64.
 */
export function linspace01(n: number): Float64Array {
  if (!Number.isInteger(n) || n < 2) throw new Error(`linspace01: need an integer n >= 2, got ${n}`);
  const out = new Float64Array(n);
  const step = 1 / (n - 1);
  for (let i = 0; i < n - 1; i++) out[i] = i * step;
  out[n - 1] = 1;
  return out;
}

/**
 * `np.quantile(sorted, q)` with NumPy's default "linear" method (virtual index (n − 1)·q,
 * interpolation `_lerp`: a + (b − a)·t for t < 0.5, b − (b − a)·(1 − t) otherwise), for values already
 * sorted ascending. Reference: numpy `numpy/lib/_function_base_impl.py` (`_quantile`, `_lerp`).
 * @param sorted `[n]` float64, ascending, n ≥ 1.
 * @param q `[k]` probabilities in [0, 1].
 * @returns `[k]` float64 quantiles.
 * @throws Error on an empty input.
 */
export function quantilesSorted(sorted: ArrayLike<number>, q: ArrayLike<number>): Float64Array {
  const n = sorted.length;
  if (n === 0) throw new Error("quantilesSorted: no values");
  const out = new Float64Array(q.length);
  for (let i = 0; i < q.length; i++) {
    const h = (n - 1) * q[i];
    if (h >= n - 1) {
      out[i] = sorted[n - 1];
      continue;
    }
    if (h <= 0) {
      out[i] = sorted[0];
      continue;
    }
    const j = Math.floor(h);
    const t = h - j;
    const a = sorted[j];
    const b = sorted[j + 1];
    const d = b - a;
    out[i] = t >= 0.5 ? b - d * (1 - t) : a + d * t;
  }
  return out;
}

/** Number of `edges` (ascending) that are ≤ v (`strict` false) or < v (`strict` true). Binary search. */
function countEdges(edges: Float64Array, v: number, strict: boolean): number {
  let lo = 0;
  let hi = edges.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (strict ? edges[mid] < v : edges[mid] <= v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Bin positive values of one cell scGPT's way (steps 2–3 above).
 * @param x `[m]` float64 values, all > 0 and finite (the cell's transformed nonzero values, any order).
 * @param rng uniform generator for the tie spreading; exactly one draw per value, in input order.
 * @param nBins total number of bins including bin 0 (default 51), ≥ 3.
 * @returns `[m]` int32 bins in 1 … nBins − 1, aligned with `x`.
 * @throws Error on a non-positive or non-finite value, or a bad `nBins`.
 */
export function binPositiveValues(x: ArrayLike<number>, rng: Rng, nBins = DEFAULT_N_BINS): Int32Array {
  if (!Number.isInteger(nBins) || nBins < 3) throw new Error(`n_bins must be an integer >= 3, got ${nBins}`);
  const m = x.length;
  const bins = new Int32Array(m);
  if (m === 0) return bins;
  const sorted = Float64Array.from(x);
  for (let i = 0; i < m; i++) {
    if (!(sorted[i] > 0) || !Number.isFinite(sorted[i])) throw new Error(`binning: value ${sorted[i]} at position ${i} is not a positive finite number`);
  }
  sorted.sort();
  const edges = quantilesSorted(sorted, linspace01(nBins - 1));
  for (let i = 0; i < m; i++) {
    const v = x[i];
    const lo = countEdges(edges, v, false);
    const hi = countEdges(edges, v, true);
    const u = rng();
    bins[i] = Math.ceil(u * (hi - lo) + lo);
  }
  return bins;
}

/**
 * The per-cell generator of the tie spreading: seedrandom's Alea seeded with `"<seed>:<cellId>"`.
 * Depends on nothing but the cell id and the seed (not on the cell's position, batch or file).
 */
export function cellBinningRng(seed: number, cellId: string): Rng {
  return makeRng(`${seed}:${cellId}`);
}

/**
 * Bin one cell's nonzero counts (scGPT binning with x = log1p(count / nCounts × 10,000)).
 * @param counts `[m]` raw counts of the cell's nonzero genes (the genes to bin; zeros are not passed), > 0.
 * @param nCounts the cell's library size (obs `n_counts` or the row sum over all genes), > 0.
 * @param rng per-cell generator, e.g. {@link cellBinningRng}; one draw per count, in order.
 * @param nBins total bins including bin 0 (default 51).
 * @returns `[m]` int32 bins in 1 … nBins − 1, aligned with `counts`.
 * @throws Error on a non-positive count or library size.
 */
export function binCounts(counts: ArrayLike<number>, nCounts: number, rng: Rng, nBins = DEFAULT_N_BINS): Int32Array {
  if (!(nCounts > 0) || !Number.isFinite(nCounts)) throw new Error(`binning: library size ${nCounts} is not a positive finite number`);
  const x = new Float64Array(counts.length);
  for (let i = 0; i < counts.length; i++) x[i] = Math.log1p((counts[i] / nCounts) * BINNING_TARGET_SUM);
  return binPositiveValues(x, rng, nBins);
}
