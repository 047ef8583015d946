/**
 * UMAP (McInnes, Healy & Melville 2018) on typed arrays, seeded, on an exact kNN graph computed by
 * {@link exactKnn}. A port of umap-learn's algorithm (umap-learn 0.5, `umap/umap_.py`
 * `smooth_knn_dist`, `compute_membership_strengths`, `fuzzy_simplicial_set`, `make_epochs_per_sample`,
 * `simplicial_set_embedding`, and `umap/layouts.py` `optimize_layout_euclidean`):
 *
 * 1. fuzzy simplicial set: per cell the distance ρ to its nearest neighbour and a bandwidth σ found by
 *    binary search so that Σ exp(−(d − ρ)/σ) = log2(k); memberships w = exp(−(d − ρ)/σ); symmetrised by
 *    the fuzzy union w_ij + w_ji − w_ij·w_ji;
 * 2. edges with w < max(w)/epochs are dropped; each edge is sampled every max(w)/w epochs;
 * 3. SGD: per sampled edge an attractive step on both ends and 5 negative samples (uniform random
 *    cells) with a repulsive step; gradients clipped at ±4; learning rate 1 decaying linearly to 0.
 *    a, b of the low-dimensional kernel 1/(1 + a d^{2b}) from min_dist 0.1, spread 1 (curve fit:
 *    umap-js `findABParams`, a ≈ 1.57, b ≈ 0.894).
 *
 * Parameters are umap-learn's defaults (n_neighbors 15, min_dist 0.1, 200 epochs above 10,000 cells,
 * 500 otherwise). Differences from umap-learn: the layout is initialised uniformly at random (in
 * [0, 10] per axis, as umap-learn's `init="random"`) instead of umap-learn's spectral initialisation;
 * the initial layout and the seeds of umap-learn's `tau_rand_int` (negative samples) come from
 * seedrandom's Alea ({@link makeRng}), so coordinates are not bit-equal to umap-learn's. The same seed gives the same coordinates on every run and in any worker thread.
 *
 * This replaced umap-js's epoch loop (number[][] rows, two `Math.pow` per sample), which took ~12 min
 * for one 5-D layout of 44,500 cells; umap-js is still used for `findABParams` and as the reference in
 * the tests.
 */
import { findABParams } from "umap-js/dist/umap.js";
import { makeRng } from "../rng.js";
import { exactKnn, type KnnGraph } from "./knn.js";

/** UMAP settings shared by {@link runUmap} and {@link umapFromKnn}. */
export interface UmapOptions {
  /** output dimensions (default 2). */
  nComponents?: number;
  /** neighbours including the cell itself, as umap-learn's n_neighbors (default 15). */
  nNeighbors?: number;
  /** seed of the random init and negative sampling (default 0). */
  seed?: number;
  /** SGD epochs (default umap-learn's rule: 500 up to 10,000 cells, else 200). */
  nEpochs?: number;
  /** progress callback (epoch, total). */
  onEpoch?: (e: number, total: number) => void;
}

/** The symmetric fuzzy graph as a list of directed edges (both directions present), row-major. */
export interface FuzzyGraph {
  n: number;
  /** source cell of each edge. */
  head: Int32Array;
  /** target cell of each edge. */
  tail: Int32Array;
  /** membership strength in (0, 1]. */
  weight: Float64Array;
}

const SMOOTH_K_TOLERANCE = 1e-5;
const MIN_K_DIST_SCALE = 1e-3;

/**
 * umap-learn's `smooth_knn_dist` with local_connectivity 1 and bandwidth 1, for a graph that excludes
 * the cell itself (umap-learn's first neighbour is the cell at distance 0; it is accounted for here).
 * @returns ρ (distance to the nearest non-identical neighbour) and σ per cell, float64 `[n]`.
 */
export function smoothKnnDist(knn: KnnGraph, nNeighbors: number): { rho: Float64Array; sigma: Float64Array } {
  const { n, k } = knn;
  const kk = Math.min(k, nNeighbors - 1);
  const target = Math.log2(kk + 1);
  const rho = new Float64Array(n);
  const sigma = new Float64Array(n);
  let meanAll = 0;
  for (let i = 0; i < n; i++) for (let t = 0; t < kk; t++) meanAll += knn.distances[i * k + t];
  meanAll /= n * (kk + 1);
  for (let i = 0; i < n; i++) {
    const off = i * k;
    let sum = 0;
    for (let t = 0; t < kk; t++) {
      const v = knn.distances[off + t];
      sum += v;
      if (rho[i] === 0 && v > 0) rho[i] = v; // distances ascend: first non-zero
    }
    let lo = 0;
    let hi = Infinity;
    let mid = 1;
    for (let it = 0; it < 64; it++) {
      let psum = 0;
      for (let t = 0; t < kk; t++) {
        const dd = knn.distances[off + t] - rho[i];
        psum += dd > 0 ? Math.exp(-dd / mid) : 1;
      }
      if (Math.abs(psum - target) < SMOOTH_K_TOLERANCE) break;
      if (psum > target) {
        hi = mid;
        mid = (lo + hi) / 2;
      } else {
        lo = mid;
        mid = hi === Infinity ? mid * 2 : (lo + hi) / 2;
      }
    }
    const floor = MIN_K_DIST_SCALE * (rho[i] > 0 ? sum / (kk + 1) : meanAll);
    sigma[i] = mid < floor ? floor : mid;
  }
  return { rho, sigma };
}

/**
 * umap-learn's `fuzzy_simplicial_set` (set_op_mix_ratio 1: fuzzy union) from an exact kNN graph.
 * @param knn graph without self-neighbours; its first `nNeighbors − 1` neighbours are used.
 * @returns directed edges i → j for every j with a non-zero symmetric membership, sorted by (i, j).
 */
export function fuzzySimplicialSet(knn: KnnGraph, nNeighbors: number): FuzzyGraph {
  const { n, k } = knn;
  const kk = Math.min(k, nNeighbors - 1);
  const { rho, sigma } = smoothKnnDist(knn, nNeighbors);
  // forward memberships w[i, t] of i → knn.indices[i, t]
  const w = new Float64Array(n * kk);
  for (let i = 0; i < n; i++) {
    for (let t = 0; t < kk; t++) {
      const dd = knn.distances[i * k + t] - rho[i];
      w[i * kk + t] = dd <= 0 || sigma[i] === 0 ? 1 : Math.exp(-dd / sigma[i]);
    }
  }
  // incoming lists (counting sort by target)
  const inPtr = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) for (let t = 0; t < kk; t++) inPtr[knn.indices[i * k + t] + 1]++;
  for (let i = 0; i < n; i++) inPtr[i + 1] += inPtr[i];
  const inSrc = new Int32Array(n * kk);
  const inW = new Float64Array(n * kk);
  const fill = inPtr.slice(0, n);
  for (let i = 0; i < n; i++) {
    for (let t = 0; t < kk; t++) {
      const j = knn.indices[i * k + t];
      inSrc[fill[j]] = i;
      inW[fill[j]++] = w[i * kk + t];
    }
  }
  // per row: union of forward and incoming columns, w_ij + w_ji − w_ij w_ji, columns ascending
  const head: number[] = [];
  const tail: number[] = [];
  const weight: number[] = [];
  const cols: number[] = [];
  const vals = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    vals.clear();
    for (let t = 0; t < kk; t++) vals.set(knn.indices[i * k + t], w[i * kk + t]);
    for (let p = inPtr[i]; p < inPtr[i + 1]; p++) {
      const j = inSrc[p];
      const a = vals.get(j);
      vals.set(j, a === undefined ? inW[p] : a + inW[p] - a * inW[p]);
    }
    cols.length = 0;
    for (const j of vals.keys()) if (j !== i && vals.get(j)! > 0) cols.push(j);
    cols.sort((x, y) => x - y);
    for (const j of cols) {
      head.push(i);
      tail.push(j);
      weight.push(vals.get(j)!);
    }
  }
  return { n, head: Int32Array.from(head), tail: Int32Array.from(tail), weight: Float64Array.from(weight) };
}

/** umap-learn's default number of epochs. */
export function defaultEpochs(n: number): number {
  return n <= 10_000 ? 500 : 200;
}

/**
 * umap-learn's `optimize_layout_euclidean` (move_other, negative_sample_rate 5, gamma 1, initial
 * alpha 1, gradient clip ±4), in place on `emb` `[n, dim]` (float32, as umap-learn).
 * @param epochsPerSample per edge, how many epochs between two samples (≥ 1).
 * @param rngState state of umap-learn's `tau_rand_int` for the negative samples (3 × uint32, each
 *   ≥ 16; advanced in place).
 */
export function optimizeLayoutEuclidean(
  emb: Float32Array,
  n: number,
  dim: number,
  head: Int32Array,
  tail: Int32Array,
  epochsPerSample: Float64Array,
  nEpochs: number,
  a: number,
  b: number,
  rngState: Uint32Array,
  onEpoch?: (e: number, total: number) => void,
): void {
  let tau0 = rngState[0] | 0;
  let tau1 = rngState[1] | 0;
  let tau2 = rngState[2] | 0;
  const negativeSampleRate = 5;
  const gamma = 1;
  const initialAlpha = 1;
  const nEdges = head.length;
  const epochsPerNegative = epochsPerSample.map((e) => e / negativeSampleRate);
  const nextSample = Float64Array.from(epochsPerSample);
  const nextNegative = Float64Array.from(epochsPerNegative);
  const clip = (v: number) => (v > 4 ? 4 : v < -4 ? -4 : v);
  let alpha = initialAlpha;
  for (let epoch = 0; epoch < nEpochs; epoch++) {
    for (let e = 0; e < nEdges; e++) {
      if (nextSample[e] > epoch) continue;
      const j = head[e];
      const k = tail[e];
      const cj = j * dim;
      const ck = k * dim;
      let d2 = 0;
      for (let c = 0; c < dim; c++) {
        const diff = emb[cj + c] - emb[ck + c];
        d2 += diff * diff;
      }
      // attraction: −2ab d^{2(b−1)} / (1 + a d^{2b})
      let g = 0;
      if (d2 > 0) {
        const pb = Math.exp(b * Math.log(d2)); // d2^b (exp∘log: 2× faster than Math.pow in V8)
        g = (-2 * a * b * (pb / d2)) / (a * pb + 1);
      }
      for (let c = 0; c < dim; c++) {
        const gd = clip(g * (emb[cj + c] - emb[ck + c])) * alpha;
        emb[cj + c] += gd;
        emb[ck + c] -= gd;
      }
      nextSample[e] += epochsPerSample[e];
      const nNeg = Math.floor((epoch - nextNegative[e]) / epochsPerNegative[e]);
      for (let p = 0; p < nNeg; p++) {
        // umap-learn's tau_rand_int (Tausworthe generator, L'Ecuyer 1996) modulo n
        // (states kept as int32 bit patterns so V8 keeps them small integers)
        tau0 = ((tau0 & -2) << 12) ^ (((tau0 << 13) ^ tau0) >>> 19);
        tau1 = ((tau1 & -8) << 4) ^ (((tau1 << 2) ^ tau1) >>> 25);
        tau2 = ((tau2 & -16) << 17) ^ (((tau2 << 3) ^ tau2) >>> 11);
        const kn = ((tau0 ^ tau1 ^ tau2) >>> 0) % n;
        const co = kn * dim;
        let s2 = 0;
        for (let c = 0; c < dim; c++) {
          const diff = emb[cj + c] - emb[co + c];
          s2 += diff * diff;
        }
        // repulsion: 2γb / ((0.001 + d²)(1 + a d^{2b}))
        // (coincident points, or the cell itself: no move, as umap-learn)
        if (s2 > 0) {
          const gr = (2 * gamma * b) / ((0.001 + s2) * (a * Math.exp(b * Math.log(s2)) + 1));
          for (let c = 0; c < dim; c++) emb[cj + c] += clip(gr * (emb[cj + c] - emb[co + c])) * alpha;
        }
      }
      if (nNeg > 0) nextNegative[e] += nNeg * epochsPerNegative[e];
    }
    alpha = initialAlpha * (1 - (epoch + 1) / nEpochs);
    onEpoch?.(epoch + 1, nEpochs);
  }
  rngState[0] = tau0;
  rngState[1] = tau1;
  rngState[2] = tau2;
}

/**
 * UMAP layout of a precomputed kNN graph (`[n, k]`, self excluded, k ≥ nNeighbors − 1).
 * @returns coordinates `[n, nComponents]` float32.
 * @throws Error when n ≤ nNeighbors or the graph has too few neighbours.
 */
export function umapFromKnn(knn: KnnGraph, opts: UmapOptions = {}): Float32Array {
  const n = knn.n;
  const nNeighbors = Math.min(opts.nNeighbors ?? 15, n - 1);
  const dim = opts.nComponents ?? 2;
  if (n <= nNeighbors || n < 3) throw new Error(`UMAP needs more than ${nNeighbors} cells, got ${n}`);
  if (knn.k < nNeighbors - 1) throw new Error(`UMAP: the kNN graph has ${knn.k} neighbours, needs ${nNeighbors - 1}`);
  const nEpochs = opts.nEpochs ?? defaultEpochs(n);
  const g = fuzzySimplicialSet(knn, nNeighbors);
  // drop weak edges, then sample each edge every max(w)/w epochs (make_epochs_per_sample)
  let wmax = 0;
  for (const v of g.weight) if (v > wmax) wmax = v;
  const keep: number[] = [];
  for (let e = 0; e < g.weight.length; e++) if (g.weight[e] >= wmax / nEpochs) keep.push(e);
  const head = Int32Array.from(keep, (e) => g.head[e]);
  const tail = Int32Array.from(keep, (e) => g.tail[e]);
  const eps = Float64Array.from(keep, (e) => wmax / g.weight[e]);
  // random init in [−10, 10], rescaled to [0, 10] per axis (simplicial_set_embedding)
  const rng = makeRng(`umap-${opts.seed ?? 0}`);
  const emb = new Float32Array(n * dim);
  for (let t = 0; t < emb.length; t++) emb[t] = rng() * 20 - 10;
  for (let c = 0; c < dim; c++) {
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < n; i++) {
      lo = Math.min(lo, emb[i * dim + c]);
      hi = Math.max(hi, emb[i * dim + c]);
    }
    for (let i = 0; i < n; i++) emb[i * dim + c] = (10 * (emb[i * dim + c] - lo)) / (hi - lo || 1);
  }
  const { a, b } = findABParams(1, 0.1);
  const tau = Uint32Array.from({ length: 3 }, () => (Math.floor(rng() * 2 ** 32) | 16) >>> 0);
  optimizeLayoutEuclidean(emb, n, dim, head, tail, eps, nEpochs, a, b, tau, opts.onEpoch);
  return emb;
}

/**
 * Embed X `[n, d]` into `nComponents` dimensions.
 * @param opts.knn precomputed graph of X (≥ nNeighbors − 1 neighbours, self excluded); computed if absent.
 * @returns coordinates `[n, nComponents]` float32.
 * @throws Error when n ≤ nNeighbors.
 */
export function runUmap(x: Float32Array, n: number, d: number, opts: UmapOptions & { knn?: KnnGraph } = {}): Float32Array {
  const nNeighbors = Math.min(opts.nNeighbors ?? 15, n - 1);
  if (n <= nNeighbors || n < 3) throw new Error(`UMAP needs more than ${nNeighbors} cells, got ${n}`);
  const k = nNeighbors - 1;
  const g = opts.knn && opts.knn.k >= k ? opts.knn : exactKnn(x, n, d, { k });
  return umapFromKnn(g, { ...opts, nNeighbors });
}
