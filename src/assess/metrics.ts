/**
 * Standard embedding metrics (Kedzierska et al. 2023; scib, Luecken et al. 2022, `scib/metrics/*`):
 * silhouette width on cell-type labels (ASW), batch ASW, graph connectivity, NMI and ARI of a k-means
 * clustering against the labels. Inputs are row-major float32 matrices `[n, d]`; distances Euclidean.
 */
import { kmeans } from "ml-kmeans";
import { PreparedRows } from "./linalg.js";
import { makeRng } from "../rng.js";
import type { KnnGraph } from "./knn.js";

function codes(labels: readonly string[]): { code: Int32Array; names: string[] } {
  const map = new Map<string, number>();
  const code = new Int32Array(labels.length);
  labels.forEach((l, i) => {
    let c = map.get(l);
    if (c === undefined) map.set(l, (c = map.size));
    code[i] = c;
  });
  return { code, names: [...map.keys()] };
}

/**
 * Per-cell silhouette widths s(i) = (b − a) / max(a, b), where a is the mean distance to the other
 * cells of its own label and b the smallest mean distance to the cells of another label
 * (Rousseeuw 1987; as `sklearn.metrics.silhouette_samples`, s = 0 for a label with a single cell).
 * Distances are computed in row blocks (never the full n × n matrix).
 * @returns float64 `[n]`; all zeros when there is only one label.
 */
export function silhouetteSamples(x: Float32Array | PreparedRows, n: number, d: number, labels: readonly string[]): Float64Array {
  if (labels.length !== n) throw new Error(`silhouette: ${labels.length} labels for ${n} cells`);
  const { code, names } = codes(labels);
  const L = names.length;
  const s = new Float64Array(n);
  if (L < 2) return s;
  const size = new Float64Array(L);
  for (const c of code) size[c]++;
  const prep = x instanceof PreparedRows ? x : new PreparedRows(x, n, d);
  const block = Math.max(1, Math.min(n, Math.floor(16_000_000 / n)));
  const sums = new Float64Array(L);
  const buf = new Float32Array(block * n);
  try {
    for (let r0 = 0; r0 < n; r0 += block) {
      const r1 = Math.min(n, r0 + block);
      const sq = prep.sqDists(r0, r1, 0, n, buf);
      for (let i = r0; i < r1; i++) {
        sums.fill(0);
        const off = (i - r0) * n;
        for (let j = 0; j < n; j++) sums[code[j]] += Math.sqrt(sq[off + j]);
        const own = code[i];
        if (size[own] < 2) continue;
        const a = sums[own] / (size[own] - 1);
        let b = Infinity;
        for (let c = 0; c < L; c++) if (c !== own && size[c] > 0) b = Math.min(b, sums[c] / size[c]);
        const m = Math.max(a, b);
        s[i] = m > 0 ? (b - a) / m : 0;
      }
    }
  } finally {
    if (!(x instanceof PreparedRows)) prep.dispose();
  }
  return s;
}

/**
 * Average silhouette width on labels (sklearn `silhouette_score`, Euclidean).
 * @returns `{ raw, scaled }` with scaled = (raw + 1) / 2 as scib's `silhouette(..., scale=True)`.
 */
export function silhouetteScore(x: Float32Array | PreparedRows, n: number, d: number, labels: readonly string[]): { raw: number; scaled: number } {
  const s = silhouetteSamples(x, n, d, labels);
  let m = 0;
  for (const v of s) m += v;
  m /= n;
  return { raw: m, scaled: (m + 1) / 2 };
}

/**
 * scib batch ASW (`scib.metrics.silhouette_batch`, scale=True): within each cell type, the silhouette
 * of the batch labels, per cell 1 − |s|, averaged per type, then averaged over types. Types with a single
 * batch, or with as many batches as cells, are skipped (as scib). 1 = batches well mixed.
 * @returns the score, or NaN when no type has ≥ 2 batches.
 */
export function batchAsw(x: Float32Array, n: number, d: number, labels: readonly string[], batches: readonly string[]): { score: number; perType: Record<string, number> } {
  const byType = new Map<string, number[]>();
  labels.forEach((l, i) => {
    let a = byType.get(l);
    if (!a) byType.set(l, (a = []));
    a.push(i);
  });
  const perType: Record<string, number> = {};
  for (const [t, rows] of byType) {
    const b = rows.map((r) => batches[r]);
    const nb = new Set(b).size;
    if (nb === 1 || nb === rows.length) continue;
    const sub = new Float32Array(rows.length * d);
    rows.forEach((r, i) => sub.set(x.subarray(r * d, r * d + d), i * d));
    const s = silhouetteSamples(sub, rows.length, d, b);
    let m = 0;
    for (const v of s) m += 1 - Math.abs(v);
    perType[t] = m / rows.length;
  }
  const vals = Object.values(perType);
  return { score: vals.length ? vals.reduce((a, v) => a + v, 0) / vals.length : NaN, perType };
}

/**
 * scib graph connectivity (`scib.metrics.graph_connectivity`): on the (symmetrised) kNN graph of all
 * cells, for each cell type take the subgraph induced by its cells and the fraction of them in its
 * largest connected component; average over types. 1 = every type is one connected piece.
 */
export function graphConnectivity(graph: KnnGraph, labels: readonly string[]): { score: number; perType: Record<string, number> } {
  const n = graph.n;
  const parent = new Int32Array(n);
  for (let i = 0; i < n; i++) parent[i] = i;
  const find = (a: number): number => {
    while (parent[a] !== a) {
      parent[a] = parent[parent[a]];
      a = parent[a];
    }
    return a;
  };
  for (let i = 0; i < n; i++) {
    for (let t = 0; t < graph.k; t++) {
      const j = graph.indices[i * graph.k + t];
      if (labels[i] !== labels[j]) continue; // induced subgraph of the type
      const a = find(i);
      const b = find(j);
      if (a !== b) parent[a] = b;
    }
  }
  const comp = new Map<string, Map<number, number>>();
  for (let i = 0; i < n; i++) {
    let m = comp.get(labels[i]);
    if (!m) comp.set(labels[i], (m = new Map()));
    const r = find(i);
    m.set(r, (m.get(r) ?? 0) + 1);
  }
  const perType: Record<string, number> = {};
  for (const [t, m] of comp) {
    let tot = 0;
    let best = 0;
    for (const c of m.values()) {
      tot += c;
      best = Math.max(best, c);
    }
    perType[t] = best / tot;
  }
  const vals = Object.values(perType);
  return { score: vals.reduce((a, v) => a + v, 0) / vals.length, perType };
}

function contingency(a: readonly string[], b: readonly string[]): { table: Float64Array; ra: number; rb: number; n: number } {
  if (a.length !== b.length) throw new Error(`labelings have different lengths (${a.length} vs ${b.length})`);
  const ca = codes(a);
  const cb = codes(b);
  const ra = ca.names.length;
  const rb = cb.names.length;
  const table = new Float64Array(ra * rb);
  for (let i = 0; i < a.length; i++) table[ca.code[i] * rb + cb.code[i]]++;
  return { table, ra, rb, n: a.length };
}

/**
 * Normalised mutual information with arithmetic-mean normalisation, NMI = I(U;V) / ((H(U) + H(V)) / 2)
 * (sklearn `normalized_mutual_info_score` default; natural log). 1 when both labelings are identical up
 * to renaming; 1 when both have a single class (sklearn's convention).
 */
export function nmi(a: readonly string[], b: readonly string[]): number {
  const { table, ra, rb, n } = contingency(a, b);
  const pa = new Float64Array(ra);
  const pb = new Float64Array(rb);
  for (let i = 0; i < ra; i++) for (let j = 0; j < rb; j++) {
    pa[i] += table[i * rb + j];
    pb[j] += table[i * rb + j];
  }
  if ((ra === 1 && rb === 1) || n === 0) return 1;
  const h = (p: Float64Array) => {
    let s = 0;
    for (const c of p) if (c > 0) s -= (c / n) * Math.log(c / n);
    return s;
  };
  let mi = 0;
  for (let i = 0; i < ra; i++) for (let j = 0; j < rb; j++) {
    const c = table[i * rb + j];
    if (c > 0) mi += (c / n) * Math.log((c * n) / (pa[i] * pb[j]));
  }
  const ha = h(pa);
  const hb = h(pb);
  const denom = (ha + hb) / 2;
  return denom > 0 ? Math.max(0, mi) / denom : 1;
}

/**
 * Adjusted Rand index (Hubert & Arabie 1985; sklearn `adjusted_rand_score`): 1 for identical
 * partitions, ~0 for random ones, can be negative.
 */
export function ari(a: readonly string[], b: readonly string[]): number {
  const { table, ra, rb, n } = contingency(a, b);
  const c2 = (x: number) => (x * (x - 1)) / 2;
  let sumComb = 0;
  const pa = new Float64Array(ra);
  const pb = new Float64Array(rb);
  for (let i = 0; i < ra; i++) for (let j = 0; j < rb; j++) {
    const c = table[i * rb + j];
    sumComb += c2(c);
    pa[i] += c;
    pb[j] += c;
  }
  let sa = 0;
  let sb = 0;
  for (const v of pa) sa += c2(v);
  for (const v of pb) sb += c2(v);
  const expected = (sa * sb) / c2(n);
  const max = (sa + sb) / 2;
  if (max === expected) return 1;
  return (sumComb - expected) / (max - expected);
}

/**
 * k-means clustering with `restarts` seeded restarts (k-means++ initialisation, Lloyd iterations); the
 * run with the smallest within-cluster sum of squares is kept.
 *
 * Small problems (n·d·k ≤ 5·10⁷) use ml-kmeans. Larger ones (the study's 44,500 cells × 89 types × 256-d
 * embedding is ~10⁹ flops per iteration, minutes per run in ml-kmeans' plain-JS distance loops) use
 * the same algorithm with the cell × centroid distances as one blocked matmul per iteration
 * (PreparedRows), k-means++ seeding (Arthur & Vassilvitskii 2007) and at most `maxIterations` steps.
 * @returns cluster id per row (as strings, for {@link nmi}/{@link ari}) and the inertia.
 */
export function kmeansClusters(x: Float32Array, n: number, d: number, k: number, opts: { seed?: number; restarts?: number; maxIterations?: number } = {}): { clusters: string[]; inertia: number } {
  const restarts = opts.restarts ?? 3;
  const kk = Math.min(k, n);
  if (n * d * kk <= 5e7) {
    const rows: number[][] = [];
    for (let i = 0; i < n; i++) rows.push(Array.from(x.subarray(i * d, i * d + d)));
    let best: { clusters: string[]; inertia: number } | undefined;
    for (let r = 0; r < restarts; r++) {
      const res = kmeans(rows, kk, { initialization: "kmeans++", seed: (opts.seed ?? 0) * 1000 + r + 1, maxIterations: opts.maxIterations ?? 100 });
      let inertia = 0;
      for (let i = 0; i < n; i++) {
        const c = res.centroids[res.clusters[i]];
        for (let j = 0; j < d; j++) inertia += (rows[i][j] - c[j]) ** 2;
      }
      if (!best || inertia < best.inertia) best = { clusters: res.clusters.map(String), inertia };
    }
    return best!;
  }
  const prep = new PreparedRows(x, n, d);
  let best: { clusters: string[]; inertia: number } | undefined;
  try {
    for (let r = 0; r < restarts; r++) {
      const rng = makeRng(`kmeans-${opts.seed ?? 0}-${r}`);
      // k-means++ seeding
      const centers = new Float32Array(kk * d);
      const dmin = new Float64Array(n).fill(Infinity);
      let pick = Math.floor(rng() * n);
      for (let c = 0; c < kk; c++) {
        centers.set(x.subarray(pick * d, pick * d + d), c * d);
        const g = prep.dotsWith(x.subarray(pick * d, pick * d + d), 1);
        let total = 0;
        for (let i = 0; i < n; i++) {
          const v = Math.max(0, prep.sqNorms[i] + prep.sqNorms[pick] - 2 * g[i]);
          if (v < dmin[i]) dmin[i] = v;
          total += dmin[i];
        }
        let u = rng() * total;
        pick = n - 1;
        for (let i = 0; i < n; i++) {
          u -= dmin[i];
          if (u <= 0) {
            pick = i;
            break;
          }
        }
      }
      const assign = new Int32Array(n).fill(-1);
      let inertia = Infinity;
      for (let it = 0; it < (opts.maxIterations ?? 100); it++) {
        // distances to centroids: ‖x‖² + ‖c‖² − 2 X·Cᵀ, one matmul (X rows × centroid columns)
        const cp = new PreparedRows(centers, kk, d);
        const g = new Float32Array(n * kk);
        const block = Math.max(1, Math.floor(8_000_000 / kk));
        for (let r0 = 0; r0 < n; r0 += block) {
          const r1 = Math.min(n, r0 + block);
          g.set(cp.dotsWith(x.subarray(r0 * d, r1 * d), r1 - r0), r0 * kk);
        }
        let changed = 0;
        inertia = 0;
        for (let i = 0; i < n; i++) {
          let bc = 0;
          let bv = Infinity;
          for (let c = 0; c < kk; c++) {
            const v = cp.sqNorms[c] - 2 * g[i * kk + c];
            if (v < bv) {
              bv = v;
              bc = c;
            }
          }
          inertia += Math.max(0, bv + prep.sqNorms[i]);
          if (assign[i] !== bc) changed++;
          assign[i] = bc;
        }
        cp.dispose();
        if (changed === 0) break;
        const sums = new Float64Array(kk * d);
        const cnt = new Float64Array(kk);
        for (let i = 0; i < n; i++) {
          const c = assign[i];
          cnt[c]++;
          for (let j = 0; j < d; j++) sums[c * d + j] += x[i * d + j];
        }
        for (let c = 0; c < kk; c++) {
          if (cnt[c] === 0) continue; // empty cluster keeps its centre
          for (let j = 0; j < d; j++) centers[c * d + j] = sums[c * d + j] / cnt[c];
        }
      }
      if (!best || inertia < best.inertia) best = { clusters: Array.from(assign, String), inertia };
    }
  } finally {
    prep.dispose();
  }
  return best!;
}
