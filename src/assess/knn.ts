/**
 * Exact k-nearest neighbours (Euclidean) by blocked distance matrices, and kNN cell-type accuracy.
 *
 * Exact brute force is used on purpose: with plain 2-D matmuls it costs n² d flops (44,500 cells × 50
 * PCs ≈ 0.2 TFLOP, seconds on wasm) and gives the same neighbours on every run, unlike approximate
 * search. The same graph feeds UMAP (see umap.ts), kNN accuracy and scib's graph
 * connectivity.
 */
import { PreparedRows } from "./linalg.js";

/** k nearest neighbours of every row. */
export interface KnnGraph {
  n: number;
  /** neighbours per row (the row itself excluded). */
  k: number;
  /** neighbour indices `[n, k]`, nearest first (ties by lower index). */
  indices: Int32Array;
  /** Euclidean distances `[n, k]`, ascending. */
  distances: Float32Array;
}

/**
 * Exact kNN of each row of X `[n, d]` among all other rows (the row itself is never its own neighbour).
 * @param opts.k neighbours per row (default 15; capped at n − 1).
 * @param opts.blockRows rows per distance block (default: ~64 MB of distances).
 * @throws Error when n < 2.
 */
export function exactKnn(
  x: Float32Array | PreparedRows,
  n: number,
  d: number,
  opts: { k?: number; blockRows?: number; onProgress?: (done: number) => void } = {},
): KnnGraph {
  const part = exactKnnRows(x, n, d, 0, n, opts);
  return { n, k: part.k, indices: part.indices, distances: part.distances };
}

/**
 * The rows `[r0, r1)` of {@link exactKnn}'s graph (neighbours among all n rows), so that a graph can
 * be computed in parts on several threads and concatenated: identical to the same rows of the whole.
 * @returns `indices` / `distances` `[r1 − r0, k]`.
 * @throws Error when n < 2 or the range is outside [0, n].
 */
export function exactKnnRows(
  x: Float32Array | PreparedRows,
  n: number,
  d: number,
  r0: number,
  r1: number,
  opts: { k?: number; blockRows?: number; onProgress?: (done: number) => void } = {},
): { k: number; indices: Int32Array; distances: Float32Array } {
  if (n < 2) throw new Error(`kNN needs at least 2 cells, got ${n}`);
  if (!(0 <= r0 && r0 <= r1 && r1 <= n)) throw new Error(`exactKnnRows: rows [${r0}, ${r1}) outside [0, ${n})`);
  const k = Math.min(opts.k ?? 15, n - 1);
  const prep = x instanceof PreparedRows ? x : new PreparedRows(x, n, d);
  const block = opts.blockRows ?? Math.max(1, Math.min(n, Math.floor(16_000_000 / n)));
  const indices = new Int32Array((r1 - r0) * k);
  const distances = new Float32Array((r1 - r0) * k);
  const hd = new Float64Array(k);
  const hi = new Int32Array(k);
  const buf = new Float32Array(block * n);
  try {
    for (let b0 = r0; b0 < r1; b0 += block) {
      const b1 = Math.min(r1, b0 + block);
      const dist = prep.sqDists(b0, b1, 0, n, buf);
      for (let i = b0; i < b1; i++) {
        // sorted insertion into a small buffer (k ≤ ~50); most candidates fail the first comparison
        // against the current k-th distance, so the insertion is rarely called
        let size = 0;
        let worst = Infinity;
        const off = (i - b0) * n;
        for (let j = 0; j < n; j++) {
          const v = dist[off + j];
          if (v < worst && j !== i) {
            size = insertTopK(hd, hi, size, k, v, j);
            if (size === k) worst = hd[k - 1];
          }
        }
        for (let t = 0; t < k; t++) {
          indices[(i - r0) * k + t] = hi[t];
          distances[(i - r0) * k + t] = Math.sqrt(hd[t]);
        }
      }
      opts.onProgress?.(b1);
    }
  } finally {
    if (!(x instanceof PreparedRows)) prep.dispose();
  }
  return { k, indices, distances };
}

/**
 * kNN classification accuracy of cell-type labels: each evaluated cell gets the majority label of its
 * k nearest neighbours (Euclidean; ties between labels broken by the summed rank of the neighbours,
 * i.e. the nearer label wins), and the accuracy is the fraction predicted right.
 *
 * Leave-one-out by default (every cell is predicted from all other cells). Held-out mode: with
 * `trainMask`, cells with `trainMask[i] === false` are predicted from the cells with `true` only.
 * As used in Kedzierska et al. 2023 / scGPT-style zero-shot evaluation of cell embeddings.
 *
 * @param x embeddings `[n, d]`, row-major float32.
 * @param labels cell-type label per row, length n.
 * @param opts.k neighbours (default 15).
 * @param opts.knn a precomputed leave-one-out graph with at least k neighbours (ignored with trainMask).
 * @returns accuracy in [0, 1].
 * @throws Error on length mismatches or when there is nothing to predict from / to.
 */
export function knnAccuracy(
  x: Float32Array,
  n: number,
  d: number,
  labels: readonly string[],
  opts: { k?: number; trainMask?: readonly boolean[]; knn?: KnnGraph } = {},
): number {
  if (labels.length !== n) throw new Error(`knnAccuracy: ${labels.length} labels for ${n} cells`);
  const k = opts.k ?? 15;
  if (opts.trainMask) {
    const mask = opts.trainMask;
    if (mask.length !== n) throw new Error(`knnAccuracy: trainMask has ${mask.length} entries for ${n} cells`);
    const train: number[] = [];
    const test: number[] = [];
    for (let i = 0; i < n; i++) (mask[i] ? train : test).push(i);
    if (train.length === 0 || test.length === 0) throw new Error("knnAccuracy: trainMask must mark at least one train and one held-out cell");
    const kk = Math.min(k, train.length);
    const xt = gatherRows(x, d, train);
    const prep = new PreparedRows(xt, train.length, d);
    let right = 0;
    try {
      const hd = new Float64Array(kk);
      const hi = new Int32Array(kk);
      const q = gatherRows(x, d, test);
      const qn = new Float64Array(test.length);
      for (let i = 0; i < test.length; i++) {
        let s = 0;
        for (let j = 0; j < d; j++) s += q[i * d + j] * q[i * d + j];
        qn[i] = s;
      }
      // distances test × train via a prepared matrix of the train rows
      const block = Math.max(1, Math.floor(16_000_000 / train.length));
      for (let t0 = 0; t0 < test.length; t0 += block) {
        const t1 = Math.min(test.length, t0 + block);
        const g = dotsAgainst(prep, q.subarray(t0 * d, t1 * d), t1 - t0);
        for (let i = t0; i < t1; i++) {
          let size = 0;
          const off = (i - t0) * train.length;
          for (let j = 0; j < train.length; j++) {
            size = insertTopK(hd, hi, size, kk, qn[i] + prep.sqNorms[j] - 2 * g[off + j], j);
          }
          const nb: string[] = [];
          for (let t = 0; t < size; t++) nb.push(labels[train[hi[t]]]);
          if (majority(nb) === labels[test[i]]) right++;
        }
      }
    } finally {
      prep.dispose();
    }
    return right / test.length;
  }
  const g = opts.knn && opts.knn.k >= Math.min(k, n - 1) ? opts.knn : exactKnn(x, n, d, { k });
  const kk = Math.min(k, g.k);
  let right = 0;
  const nb: string[] = new Array(kk);
  for (let i = 0; i < n; i++) {
    for (let t = 0; t < kk; t++) nb[t] = labels[g.indices[i * g.k + t]];
    if (majority(nb) === labels[i]) right++;
  }
  return right / n;
}

/** Majority label of neighbours listed nearest first; ties → the label whose neighbours are nearer (smaller rank sum). */
export function majority(nb: readonly string[]): string {
  const count = new Map<string, number>();
  const rankSum = new Map<string, number>();
  nb.forEach((l, r) => {
    count.set(l, (count.get(l) ?? 0) + 1);
    rankSum.set(l, (rankSum.get(l) ?? 0) + r);
  });
  let best = "";
  let bc = -1;
  let br = Infinity;
  for (const [l, c] of count) {
    const r = rankSum.get(l)!;
    if (c > bc || (c === bc && r < br)) {
      best = l;
      bc = c;
      br = r;
    }
  }
  return best;
}

function gatherRows(x: Float32Array, d: number, rows: readonly number[]): Float32Array {
  const out = new Float32Array(rows.length * d);
  rows.forEach((r, i) => out.set(x.subarray(r * d, r * d + d), i * d));
  return out;
}

function dotsAgainst(prep: PreparedRows, q: Float32Array, m: number): Float32Array {
  // Reuse PreparedRows' matmul path by building a tiny prepared view: q · X^T
  return prep.dotsWith(q, m);
}

/**
 * Insert candidate neighbour `j` at distance `v` into the ascending top-k lists `hd`/`hi` holding
 * `size` entries; returns the new size (at most k). Ties keep the earlier candidate first.
 */
function insertTopK(hd: Float64Array, hi: Int32Array, size: number, k: number, v: number, j: number): number {
  if (size === k && v >= hd[k - 1]) return size;
  let p = size < k ? size++ : k - 1;
  while (p > 0 && hd[p - 1] > v) {
    hd[p] = hd[p - 1];
    hi[p] = hi[p - 1];
    p--;
  }
  hd[p] = v;
  hi[p] = j;
  return size;
}
