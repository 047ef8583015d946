/**
 * UMAP (typed-array port of umap-learn) against umap-js on real data, determinism, and the same
 * layout from a worker thread; the all-pairs scan on 2 worker threads equals the single-thread scan.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { UMAP } from "umap-js";
import { initBackend } from "../../src/backend.js";
import { openCounts } from "../../src/data/open.js";
import { GeneMoments, seuratHvg, TARGET_SUM } from "../../src/assess/hvg.js";
import { pca } from "../../src/assess/linalg.js";
import { exactKnn, knnAccuracy, type KnnGraph } from "../../src/assess/knn.js";
import { umapFromKnn, fuzzySimplicialSet } from "../../src/assess/umap.js";
import { AssessPool } from "../../src/assess/parallel.js";
import { measureFromSpec, scanPairs, type MeasureSpec, type TypeBlock } from "../../src/assess/pairs.js";
import { rankStandardize } from "../../src/assess/spearman.js";
import { makeRng } from "../../src/rng.js";

let x: Float32Array; // pbmc3k: PCA-50 of 2,000 HVGs of log-normalised counts
let n: number;
let labels: string[];
let g: KnnGraph;
let pool: AssessPool;

beforeAll(async () => {
  await initBackend("wasm");
  const src = await openCounts("data/pbmc3k_seurat.h5ad");
  n = src.nCells;
  labels = (src.obs.columns.cell_type as string[]).map(String);
  const mom = new GeneMoments(src.nGenes);
  const rows: { idx: Int32Array; val: Float32Array }[] = [];
  for (const ch of src.chunks(1024)) {
    for (let r = 0; r < ch.nCells; r++) {
      const lo = ch.indptr[r];
      const hi = ch.indptr[r + 1];
      mom.addCell(ch.indices, ch.data, lo, hi);
      let tot = 0;
      for (let p = lo; p < hi; p++) tot += ch.data[p];
      rows.push({ idx: ch.indices.slice(lo, hi), val: Float32Array.from(ch.data.slice(lo, hi), (v) => Math.log1p((v * TARGET_SUM) / tot)) });
    }
  }
  src.close();
  const mv = mom.meanVar();
  const hvg = seuratHvg(mv.mean, mv.variance, 2000);
  const col = new Int32Array(src.nGenes).fill(-1);
  hvg.genes.forEach((gene, j) => (col[gene] = j));
  const p = hvg.genes.length;
  const X = new Float32Array(n * p);
  rows.forEach((r, i) => r.idx.forEach((gene, t) => col[gene] >= 0 && (X[i * p + col[gene]] = r.val[t])));
  x = pca(X, n, p, 50, { seed: 0 }).scores;
  g = exactKnn(x, n, 50, { k: 15 });
  pool = await AssessPool.start(2, "wasm");
});

afterAll(async () => {
  await pool?.close();
});

/** umap-js on the same exact kNN graph (what cellfm used before). */
function umapJs(dim: number, seed: number, nEpochs: number): Float32Array {
  const idx: number[][] = [];
  const dist: number[][] = [];
  for (let i = 0; i < n; i++) {
    idx.push([i, ...Array.from(g.indices.subarray(i * g.k, i * g.k + 14))]);
    dist.push([0, ...Array.from(g.distances.subarray(i * g.k, i * g.k + 14))]);
  }
  const u = new UMAP({ nComponents: dim, nNeighbors: 15, minDist: 0.1, random: makeRng(`umap-${seed}`), nEpochs });
  u.setPrecomputedKNN(idx, dist);
  const epochs = u.initializeFit(Array.from({ length: n }, () => []));
  for (let e = 0; e < epochs; e++) u.step();
  return Float32Array.from(u.getEmbedding().flat());
}

/** Trustworthiness (Venna & Kaski 2001, as sklearn.manifold.trustworthiness) of a layout of x, k neighbours. */
function trustworthiness(emb: Float32Array, dim: number, k = 15): number {
  const ge = exactKnn(emb, n, dim, { k });
  const d = new Float64Array(n);
  let penalty = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let c = 0; c < 50; c++) s += (x[i * 50 + c] - x[j * 50 + c]) ** 2;
      d[j] = s;
    }
    for (let t = 0; t < k; t++) {
      const j = ge.indices[i * k + t];
      let rank = 0; // rank of j among i's neighbours in the original space (1 = nearest)
      for (let m = 0; m < n; m++) if (m !== i && (d[m] < d[j] || (d[m] === d[j] && m <= j))) rank++;
      if (rank > k) penalty += rank - k;
    }
  }
  return 1 - (2 / (n * k * (2 * n - 3 * k - 1))) * penalty;
}

describe("UMAP (umap-learn's algorithm on typed arrays)", () => {
  it("matches umap-js's layout quality on pbmc3k (kNN label accuracy, trustworthiness)", () => {
    const ours = umapFromKnn(g, { nComponents: 2, seed: 0, nEpochs: 200 });
    const ref = umapJs(2, 0, 200);
    const accOurs = knnAccuracy(ours, n, 2, labels, { k: 15 });
    const accRef = knnAccuracy(ref, n, 2, labels, { k: 15 });
    const tOurs = trustworthiness(ours, 2);
    const tRef = trustworthiness(ref, 2);
    // measured: accuracy 0.894 vs 0.894, trustworthiness 0.914 vs 0.912; the PCA space itself: 0.907
    expect(accOurs).toBeGreaterThan(0.85);
    expect(Math.abs(accOurs - accRef)).toBeLessThan(0.03);
    expect(Math.abs(tOurs - tRef)).toBeLessThan(0.02);
    expect(tOurs).toBeGreaterThan(0.88);
  });

  it("fuzzy graph is symmetric with memberships in (0, 1]", () => {
    const fg = fuzzySimplicialSet(g, 15);
    const w = new Map<string, number>();
    for (let e = 0; e < fg.head.length; e++) w.set(`${fg.head[e]},${fg.tail[e]}`, fg.weight[e]);
    for (let e = 0; e < fg.head.length; e += 97) {
      expect(w.get(`${fg.tail[e]},${fg.head[e]}`)).toBe(fg.weight[e]);
      expect(fg.weight[e]).toBeGreaterThan(0);
      expect(fg.weight[e]).toBeLessThanOrEqual(1);
    }
    // each cell's nearest neighbour has membership 1 (d = ρ)
    expect(w.get(`0,${g.indices[0]}`)).toBe(1);
  });

  it("same seed → identical coordinates, on the main thread or a worker; another seed differs; kNN on workers", async () => {
    const a = umapFromKnn(g, { nComponents: 5, seed: 3, nEpochs: 30 });
    const b = umapFromKnn(g, { nComponents: 5, seed: 3, nEpochs: 30 });
    const [w1, w2] = await Promise.all([pool.umap(g, { nComponents: 5, seed: 3, nEpochs: 30 }), pool.umap(g, { nComponents: 5, seed: 4, nEpochs: 30 })]);
    expect(b).toEqual(a);
    expect(w1).toEqual(a);
    // the kNN graph split by rows over the 2 workers equals the single-thread graph
    expect(await pool.knn(x, n, 50, 15)).toEqual(g);
    expect(w2).not.toEqual(a);
    expect(a.length).toBe(n * 5);
    expect(a.every(Number.isFinite)).toBe(true);
  });
});

describe("all-pairs scan on worker threads", () => {
  it("equals the single-thread scan exactly (medians, batch medians, histograms) and medians are exact", async () => {
    // 5 cell types of pbmc3k × 40 cells, real PCA coordinates and Spearman ranks of the same rows
    const types = [...new Set(labels)].slice(0, 5);
    const rows = types.flatMap((t) => labels.flatMap((l, i) => (l === t ? [i] : [])).slice(0, 40));
    const m = rows.length;
    const xs = new Float32Array(m * 50);
    rows.forEach((r, i) => xs.set(x.subarray(r * 50, r * 50 + 50), i * 50));
    const u = umapFromKnn(exactKnn(xs, m, 50, { k: 15 }), { nComponents: 5, nEpochs: 50 });
    const { ranks } = rankStandardize(xs, m, 50);
    const specs: MeasureSpec[] = [
      { kind: "euclidean", id: "umap", label: "u", x: u, n: m, d: 5 },
      { kind: "spearman", id: "spearman", label: "s", x: ranks, n: m, d: 50 },
      { kind: "euclidean", id: "space", label: "p", x: xs, n: m, d: 50 },
    ];
    const blocks: TypeBlock[] = types.map((type, t) => ({ type, offset: t * 40, size: 40 }));
    const batches = rows.map((_, i) => `b${i % 3}`);
    const joints: [string, string][] = [["umap", "spearman"]];
    const measures = specs.map(measureFromSpec);
    const one = scanPairs(blocks, measures, joints, { batches });
    measures.forEach((q) => q.dispose?.());
    const two = await pool.scanPairs(blocks, specs, joints, { batches });
    expect(two).toEqual(one);
    // exact median of the 40 × 40 pairs between the first two types, by sorting
    const ds: number[] = [];
    for (let i = 0; i < 40; i++) {
      for (let j = 40; j < 80; j++) {
        let s = 0;
        for (let c = 0; c < 50; c++) s += (xs[i * 50 + c] - xs[j * 50 + c]) ** 2;
        ds.push(Math.sqrt(s));
      }
    }
    ds.sort((a, b) => a - b);
    const exact = (ds[799] + ds[800]) / 2;
    expect(one.summaries[2].between.get(`${types[0]}|${types[1]}`)).toBeCloseTo(exact, 3);
    expect(one.summaries[0].histWithin.total + one.summaries[0].histBetween.total).toBe((m * (m - 1)) / 2);
    expect([...one.summaries[0].withinSameBatch!.values()].every(Number.isFinite)).toBe(true);
  });
});
