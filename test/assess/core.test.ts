import { describe, it, expect, beforeAll } from "vitest";
import { PCA } from "ml-pca";
import { initBackend } from "../../src/backend.js";
import { medianInPlace, median, averageRanks, aucLess, Histogram1D, histogramAuc } from "../../src/assess/stats.js";
import { selectCells } from "../../src/assess/select.js";
import { GeneMoments, seuratHvg } from "../../src/assess/hvg.js";
import { rankStandardize, spearmanDirect } from "../../src/assess/spearman.js";
import { exactKnn, knnAccuracy } from "../../src/assess/knn.js";
import { silhouetteScore, batchAsw, graphConnectivity, nmi, ari, kmeansClusters } from "../../src/assess/metrics.js";
import { withinBetweenMedians } from "../../src/assess/pairs.js";
import { pca, matmul, PreparedRows, symmetricEigen } from "../../src/assess/linalg.js";
import { makeRng } from "../../src/rng.js";

beforeAll(async () => {
  await initBackend("wasm");
});

describe("stats", () => {
  it("exact medians by quickselect (odd, even, duplicates)", () => {
    expect(medianInPlace(Float32Array.from([5, 1, 3]))).toBe(3);
    expect(medianInPlace(Float32Array.from([4, 1, 3, 2]))).toBe(2.5);
    expect(median([2, 2, 2, 9])).toBe(2);
    const r = makeRng(3);
    const a = Array.from({ length: 1001 }, () => Math.floor(r() * 50));
    const sorted = [...a].sort((x, y) => x - y);
    expect(median(a)).toBe(sorted[500]);
    const b = a.slice(0, 1000);
    const sb = [...b].sort((x, y) => x - y);
    expect(median(b)).toBe((sb[499] + sb[500]) / 2);
  });
  it("average ranks for ties (scipy rankdata 'average')", () => {
    expect(Array.from(averageRanks([10, 20, 10, 30, 20, 20]))).toEqual([1.5, 4, 1.5, 6, 4, 4]);
  });
  it("Mann-Whitney AUC and its histogram approximation", () => {
    expect(aucLess([1, 2], [3, 4])).toBe(1);
    expect(aucLess([3, 4], [1, 2])).toBe(0);
    expect(aucLess([1, 3], [2, 3])).toBe(0.625); // pairs: 1<2,1<3,3>2,3=3 → (1+1+0+0.5)/4
    const hw = new Histogram1D(0, 10, 10);
    const hb = new Histogram1D(0, 10, 10);
    [0.5, 1.5].forEach((v) => hw.add(v));
    [5.5, 1.2].forEach((v) => hb.add(v));
    expect(histogramAuc(hw, hb)).toBeCloseTo((1 + 1 + 1 + 0.5) / 4);
  });
});

describe("selection", () => {
  const labels = [...Array(30).fill("A"), ...Array(12).fill("B"), ...Array(5).fill("C"), ...Array(20).fill("D")];
  it("keeps types with ≥ minCells, samples perType with a seed, groups rows by type", () => {
    const s = selectCells(labels, { minCells: 12, perType: 10, seed: 1 });
    expect(s.kept.map((k) => k.type)).toEqual(["A", "B", "D"]);
    expect(s.dropped).toEqual([{ type: "C", nCells: 5, nSelected: 0 }]);
    expect(s.rows.length).toBe(30);
    expect(s.kept.map((k) => k.offset)).toEqual([0, 10, 20]);
    for (let i = 0; i < 30; i++) expect(labels[s.rows[i]]).toBe(s.labels[i]);
    expect(new Set(s.rows).size).toBe(30);
    const again = selectCells(labels, { minCells: 12, perType: 10, seed: 1 });
    expect(Array.from(again.rows)).toEqual(Array.from(s.rows));
    const other = selectCells(labels, { minCells: 12, perType: 10, seed: 2 });
    expect(Array.from(other.rows)).not.toEqual(Array.from(s.rows));
  });
  it("errors when fewer than 2 types pass", () => {
    expect(() => selectCells(labels, { minCells: 25, labelName: "cell_type" })).toThrow(/only 1 cell type\(s\) of "cell_type".*A \(30\)/);
  });
});

describe("Seurat HVG (scanpy flavor='seurat')", () => {
  it("accumulates mean and unbiased variance of normalised counts", () => {
    const m = new GeneMoments(2, 10);
    // cell 1: counts [1, 3] (total 4) → normalised [2.5, 7.5]; cell 2: [2, 0] → [10, 0]
    m.addCell([0, 1], [1, 3], 0, 2);
    m.addCell([0], [2], 0, 1);
    const { mean, variance } = m.meanVar();
    expect(mean[0]).toBeCloseTo(6.25);
    expect(variance[0]).toBeCloseTo(((2.5 - 6.25) ** 2 + (10 - 6.25) ** 2) / 1);
    expect(mean[1]).toBeCloseTo(3.75);
  });
  it("one bin: normalised dispersion is the z-score of log dispersion", () => {
    const E = Math.E;
    const r = seuratHvg(Float64Array.from([1, 1, 1, 1]), Float64Array.from([1, E, E * E, E ** 3]), 2, 1);
    const sd = Math.sqrt(5 / 3);
    expect(Array.from(r.dispersionsNorm).map((v) => +v.toFixed(6))).toEqual([-1.5, -0.5, 0.5, 1.5].map((v) => +(v / sd).toFixed(6)));
    expect(Array.from(r.genes)).toEqual([2, 3]);
  });
  it("20 bins: a gene alone in its bin gets 1; pairs get ±1/√2; zero-variance genes are NaN", () => {
    // means: two genes at log1p(mean)=0.1, one at 5, one zero-variance gene at 0.1
    const m0 = Math.expm1(0.1);
    const m2 = Math.expm1(5);
    const mean = Float64Array.from([m0, m0, m2, m0]);
    const variance = Float64Array.from([2 * m0, 4 * m0, 3 * m2, 0]);
    const r = seuratHvg(mean, variance, 2);
    expect(r.dispersions[0]).toBeCloseTo(Math.log(2));
    expect(r.dispersionsNorm[0]).toBeCloseTo(-Math.SQRT1_2);
    expect(r.dispersionsNorm[1]).toBeCloseTo(Math.SQRT1_2);
    expect(r.dispersionsNorm[2]).toBeCloseTo(1);
    expect(Number.isNaN(r.dispersionsNorm[3])).toBe(true);
    expect(Array.from(r.genes)).toEqual([1, 2]);
    expect(Array.from(seuratHvg(mean, variance, 10).genes)).toEqual([0, 1, 2, 3]);
  });
});

describe("Spearman with ties", () => {
  it("rank-standardised dot products equal the direct formula", () => {
    const r = makeRng(7);
    const n = 6;
    const p = 40;
    const x = new Float32Array(n * p);
    for (let i = 0; i < x.length; i++) x[i] = r() < 0.5 ? 0 : Math.floor(r() * 4); // many ties and zeros
    const { ranks, constantRows } = rankStandardize(x, n, p);
    expect(constantRows).toBe(0);
    const g = matmul(ranks, n, p, (() => { const t = new Float32Array(p * n); for (let i = 0; i < n; i++) for (let j = 0; j < p; j++) t[j * n + i] = ranks[i * p + j]; return t; })(), n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
      const direct = spearmanDirect(x.subarray(i * p, i * p + p), x.subarray(j * p, j * p + p));
      expect(g[i * n + j]).toBeCloseTo(direct, 5);
    }
    expect(spearmanDirect([1, 2, 3, 4], [1, 2, 4, 3])).toBeCloseTo(0.8); // 1 − 6·2/(4·15)
    expect(spearmanDirect([0, 0, 1, 2], [0, 1, 1, 2])).toBeCloseTo(3.75 / 4.5); // ranks (1.5,1.5,3,4),(1,2.5,2.5,4), centred dot 3.75, norms² 4.5
  });
  it("a constant row gets zeros", () => {
    const { ranks, constantRows } = rankStandardize(new Float32Array([0, 0, 0, 1, 2, 3]), 2, 3);
    expect(constantRows).toBe(1);
    expect(Array.from(ranks.subarray(0, 3))).toEqual([0, 0, 0]);
  });
});

describe("distances, kNN and metrics", () => {
  // 1-D points: A at 0, 1; B at 4, 5
  const x = Float32Array.from([0, 1, 4, 5]);
  const labels = ["A", "A", "B", "B"];
  it("blocked squared distances match the definition (tf and JS paths)", () => {
    const r = makeRng(1);
    const n = 50;
    const d = 7;
    const y = Float32Array.from({ length: n * d }, () => r());
    const p = new PreparedRows(y, n, d);
    const sq = p.sqDists(3, 9, 10, 40);
    p.dispose();
    let s = 0;
    for (let k = 0; k < d; k++) s += (y[5 * d + k] - y[20 * d + k]) ** 2;
    expect(sq[(5 - 3) * 30 + (20 - 10)]).toBeCloseTo(s, 4);
  });
  it("exact kNN and leave-one-out / held-out kNN accuracy", () => {
    const g = exactKnn(x, 4, 1, { k: 2 });
    expect(Array.from(g.indices)).toEqual([1, 2, 0, 2, 3, 1, 2, 1]);
    expect(Array.from(g.distances)).toEqual([1, 4, 1, 3, 1, 3, 1, 4]);
    expect(knnAccuracy(x, 4, 1, labels, { k: 1 })).toBe(1);
    // k=3 from 4 points: each point sees 1 same + 2 other → majority wrong
    expect(knnAccuracy(x, 4, 1, labels, { k: 3 })).toBe(0);
    // held out: predict cell 1 (at 1) and 3 (at 5) from cells 0 and 2
    expect(knnAccuracy(x, 4, 1, labels, { k: 1, trainMask: [true, false, true, false] })).toBe(1);
    expect(knnAccuracy(Float32Array.from([0, 4.6, 4, 5]), 4, 1, labels, { k: 1, trainMask: [true, false, true, false] })).toBe(0.5);
  });
  it("silhouette on a hand-computed set", () => {
    const s = silhouetteScore(x, 4, 1, labels);
    const expected = (7 / 9 + 5 / 7) / 2;
    expect(s.raw).toBeCloseTo(expected, 6);
    expect(s.scaled).toBeCloseTo((expected + 1) / 2, 6);
  });
  it("batch ASW: perfectly mixed batches score 1, separated ones less", () => {
    const pts = Float32Array.from([0, 0, 1, 1, 10, 10, 11, 11]);
    const t = ["A", "A", "A", "A", "B", "B", "B", "B"];
    const mixed = ["b1", "b2", "b1", "b2", "b1", "b2", "b1", "b2"];
    // mixed: each cell has a = 1 (same batch at the other position), b = 0.5 → s = −0.5 → 1 − |s| = 0.5
    expect(batchAsw(pts, 8, 1, t, mixed).score).toBeCloseTo(0.5, 6);
    // split: a = 0, b = 1 → s = 1 → 0 (batches fully separated)
    const split = ["b1", "b1", "b2", "b2", "b1", "b1", "b2", "b2"];
    expect(batchAsw(pts, 8, 1, t, split).score).toBeCloseTo(0, 6);
  });
  it("graph connectivity counts the largest same-type component", () => {
    const g = { n: 4, k: 1, indices: Int32Array.from([1, 0, 0, 1]), distances: new Float32Array(4) };
    // A = {0,1} connected; B = {2,3} whose neighbours are A cells → 2 singletons
    expect(graphConnectivity(g, labels).score).toBeCloseTo((1 + 0.5) / 2);
  });
  it("NMI and ARI on known cases (sklearn values)", () => {
    expect(nmi(["a", "a", "b", "b"], ["x", "x", "y", "y"])).toBeCloseTo(1);
    expect(ari(["a", "a", "b", "b"], ["y", "y", "x", "x"])).toBeCloseTo(1);
    expect(nmi(["0", "0", "1", "1"], ["0", "0", "1", "2"])).toBeCloseTo(0.8, 6);
    expect(ari(["0", "0", "1", "1"], ["0", "0", "1", "2"])).toBeCloseTo(0.5714285714, 6);
    expect(ari(["0", "0", "0", "1", "1", "1"], ["0", "0", "1", "1", "2", "2"])).toBeCloseTo(0.24242424, 6);
  });
  it("k-means recovers well separated clusters", () => {
    const r = makeRng(5);
    const pts = new Float32Array(60 * 2);
    const lab: string[] = [];
    for (let i = 0; i < 60; i++) {
      const c = i % 3;
      pts[i * 2] = c * 10 + r();
      pts[i * 2 + 1] = r();
      lab.push(String(c));
    }
    const km = kmeansClusters(pts, 60, 2, 3, { seed: 1 });
    expect(ari(km.clusters, lab)).toBeCloseTo(1);
  });
  it("within/between medians per type pair", () => {
    const pts = Float32Array.from([0, 1, 3, 10, 12]);
    const r = withinBetweenMedians({ data: pts, d: 1 }, ["A", "A", "A", "B", "B"]);
    expect(r.within.get("A")).toBe(2);
    expect(r.within.get("B")).toBe(2);
    expect(r.between.get("A|B")).toBe(9.5);
    // A = {1, 3, 12}, B = {0, 10}: between 1,9,3,7,12,2 → 5; within A 2,11,9 → 9; within B 10
    const viaFn = withinBetweenMedians((i, j) => Math.abs(pts[i] - pts[j]), ["B", "A", "A", "B", "A"]);
    expect(viaFn.between.get("A|B")).toBe(5);
    expect(viaFn.within.get("A")).toBe(9);
    expect(viaFn.within.get("B")).toBe(10);
  });
});

describe("PCA", () => {
  it("matches ml-pca (explained variance, scores up to sign) and Jacobi eigenvalues", () => {
    const r = makeRng(11);
    const n = 120;
    const d = 40;
    const x = new Float32Array(n * d);
    for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) x[i * d + j] = (i % 4) * (j % 3) + r() * (1 + j / 10);
    const mine = pca(x, n, d, 5);
    const rows: number[][] = [];
    for (let i = 0; i < n; i++) rows.push(Array.from(x.subarray(i * d, i * d + d)));
    const ref = new PCA(rows);
    ref.getExplainedVariance().slice(0, 5).forEach((v, c) => expect(mine.explainedVarianceRatio[c]).toBeCloseTo(v, 4));
    const sc = ref.predict(rows, { nComponents: 3 }).to2DArray();
    for (let c = 0; c < 3; c++) {
      const sign = Math.sign(sc[0][c] * mine.scores[c]) || 1;
      for (let i = 0; i < n; i++) expect(mine.scores[i * 5 + c]).toBeCloseTo(sign * sc[i][c], 2);
    }
    const e = symmetricEigen(Float64Array.from([2, 1, 1, 2]), 2);
    expect(Array.from(e.values)).toEqual([3, 1].map((v) => expect.closeTo(v, 10)) as unknown as number[]);
  });
});

describe("k-means, large-problem path", () => {
  it("the blocked-matmul Lloyd path recovers separated clusters too", () => {
    const r = makeRng(9);
    const n = 3000;
    const d = 40;
    const k = 5; // n·d·k = 6·10⁵… force the large path by making the problem big enough
    const big = 450; // 3000 × 40 × 450 > 5e7
    const pts = new Float32Array(n * d);
    const lab: string[] = [];
    for (let i = 0; i < n; i++) {
      const c = i % k;
      for (let j = 0; j < d; j++) pts[i * d + j] = (j === c ? 20 : 0) + r();
      lab.push(String(c));
    }
    const km = kmeansClusters(pts, n, d, big, { seed: 1, restarts: 1, maxIterations: 5 });
    // with 450 clusters for 5 groups, no cluster may mix groups
    const mixed = new Map<string, Set<string>>();
    km.clusters.forEach((c, i) => {
      if (!mixed.has(c)) mixed.set(c, new Set());
      mixed.get(c)!.add(lab[i]);
    });
    expect([...mixed.values()].every((s) => s.size === 1)).toBe(true);
    const km5 = kmeansClusters(pts, n, d, k, { seed: 1, restarts: 2 });
    expect(ari(km5.clusters, lab)).toBeCloseTo(1);
  });
});
