/**
 * UMAP (McInnes et al. 2018) via umap-js, seeded, on an exact kNN graph computed by {@link exactKnn}
 * (umap-js `setPrecomputedKNN`; its own NN-descent is slower and approximate at 44,500 cells).
 * Parameters are umap-learn's defaults (n_neighbors 15, min_dist 0.1, 200 epochs above 10,000 cells,
 * 500 below ~2,500). Difference from umap-learn: umap-js initialises the layout at random (no
 * spectral initialisation).
 */
import { UMAP } from "umap-js";
import { makeRng } from "../rng.js";
import { exactKnn, type KnnGraph } from "./knn.js";

/**
 * Embed X `[n, d]` into `nComponents` dimensions.
 * @param opts.knn precomputed graph of X (≥ nNeighbors − 1 neighbours, self excluded); computed if absent.
 * @param opts.onEpoch progress callback (epoch, total).
 * @returns coordinates `[n, nComponents]` float32.
 * @throws Error when n ≤ nNeighbors (umap-js needs more points than neighbours).
 */
export function runUmap(
  x: Float32Array,
  n: number,
  d: number,
  opts: { nComponents?: number; nNeighbors?: number; seed?: number; knn?: KnnGraph; nEpochs?: number; onEpoch?: (e: number, total: number) => void } = {},
): Float32Array {
  const nNeighbors = Math.min(opts.nNeighbors ?? 15, n - 1);
  const nComponents = opts.nComponents ?? 2;
  if (n <= nNeighbors || n < 3) throw new Error(`UMAP needs more than ${nNeighbors} cells, got ${n}`);
  const k = nNeighbors - 1;
  const g = opts.knn && opts.knn.k >= k ? opts.knn : exactKnn(x, n, d, { k });
  const idx: number[][] = new Array(n);
  const dist: number[][] = new Array(n);
  for (let i = 0; i < n; i++) {
    const a = [i];
    const b = [0];
    for (let t = 0; t < k; t++) {
      a.push(g.indices[i * g.k + t]);
      b.push(g.distances[i * g.k + t]);
    }
    idx[i] = a;
    dist[i] = b;
  }
  const umap = new UMAP({ nComponents, nNeighbors, minDist: 0.1, random: makeRng(`umap-${opts.seed ?? 0}`), nEpochs: opts.nEpochs });
  umap.setPrecomputedKNN(idx, dist);
  // umap-js only needs X for its length once the kNN graph is given
  const placeholder: number[][] = Array.from({ length: n }, () => []);
  const epochs = umap.initializeFit(placeholder);
  for (let e = 0; e < epochs; e++) {
    umap.step();
    opts.onEpoch?.(e + 1, epochs);
  }
  const emb = umap.getEmbedding();
  const out = new Float32Array(n * nComponents);
  for (let i = 0; i < n; i++) for (let c = 0; c < nComponents; c++) out[i * nComponents + c] = emb[i][c];
  return out;
}
