import { describe, it, expect } from "vitest";
import { fitLogisticRegression, linearProbe, macroF1, predictLogistic, probeCells } from "../../src/assess/probe.js";
import { makeRng } from "../../src/rng.js";

/** Penalised multinomial NLL of sklearn's LogisticRegression (C), on standardised features, computed directly. */
function penalisedNll(x: Float64Array, n: number, d: number, y: Int32Array, K: number, W: Float64Array, b: Float64Array, C: number): number {
  let f = 0;
  for (let i = 0; i < n; i++) {
    const l = Array.from({ length: K }, (_, k) => b[k] + Array.from({ length: d }, (_, j) => x[i * d + j] * W[j * K + k]).reduce((a, v) => a + v, 0));
    const m = Math.max(...l);
    f += m + Math.log(l.reduce((a, v) => a + Math.exp(v - m), 0)) - l[y[i]];
  }
  return f + W.reduce((a, v) => a + v * v, 0) / (2 * C);
}

function blobs(n: number, d: number, K: number, sep: number, seed: number): { x: Float32Array; y: Int32Array } {
  const r = makeRng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const centres = Array.from({ length: K }, () => Array.from({ length: d }, () => gauss() * sep));
  const x = new Float32Array(n * d), y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = i % K;
    for (let j = 0; j < d; j++) x[i * d + j] = centres[y[i]][j] + gauss();
  }
  return { x, y };
}

describe("logistic regression (sklearn defaults: multinomial, L2, C = 1)", () => {
  it("reaches the minimum: every coordinate step raises the penalised NLL, and the gradient tolerance is met", () => {
    const n = 90, d = 4, K = 3;
    const { x, y } = blobs(n, d, K, 1.0, 7);
    const m = fitLogisticRegression(x, n, d, y, K);
    expect(m.converged).toBe(true);
    // the features the model saw (standardised with the fitted mean/scale)
    const z = Float64Array.from(x, (v, t) => (v - m.mean[t % d]) / m.scale[t % d]);
    const f0 = penalisedNll(z, n, d, y, K, m.W, m.b, 1);
    const h = 1e-4;
    for (let t = 0; t < d * K + K; t++) {
      for (const s of [h, -h]) {
        const W = m.W.slice(), b = m.b.slice();
        if (t < d * K) W[t] += s;
        else b[t - d * K] += s;
        expect(penalisedNll(z, n, d, y, K, W, b, 1)).toBeGreaterThan(f0 - 1e-9);
      }
    }
    // central differences of the objective are ~0 at the solution
    for (let t = 0; t < d * K; t++) {
      const Wp = m.W.slice(), Wm = m.W.slice();
      Wp[t] += 1e-3;
      Wm[t] -= 1e-3;
      expect(Math.abs(penalisedNll(z, n, d, y, K, Wp, m.b, 1) - penalisedNll(z, n, d, y, K, Wm, m.b, 1)) / 2e-3).toBeLessThan(1e-3);
    }
  });

  it("stronger L2 (smaller C) shrinks the weights; separable classes are predicted perfectly; same input → same model", () => {
    const n = 120, d = 6, K = 4;
    const { x, y } = blobs(n, d, K, 4, 3);
    const a = fitLogisticRegression(x, n, d, y, K);
    const b = fitLogisticRegression(x, n, d, y, K, { C: 0.01 });
    const norm = (w: Float64Array) => Math.sqrt(w.reduce((s, v) => s + v * v, 0));
    expect(norm(b.W)).toBeLessThan(norm(a.W));
    expect(Array.from(predictLogistic(a, x, n))).toEqual(Array.from(y));
    expect(fitLogisticRegression(x, n, d, y, K)).toEqual(a);
  });

  it("rejects bad input with one-line errors", () => {
    expect(() => fitLogisticRegression(new Float32Array(2), 1, 2, new Int32Array(1), 2)).toThrow(/at least 2 training rows/);
    expect(() => fitLogisticRegression(new Float32Array(4), 2, 2, Int32Array.from([0, 5]), 2)).toThrow(/label 5 outside/);
    expect(() => fitLogisticRegression(Float32Array.from([0, NaN, 1, 1]), 2, 2, Int32Array.from([0, 1]), 2)).toThrow(/not finite/);
  });
});

describe("macro-F1 and the probe", () => {
  it("macro-F1 as sklearn f1_score(average='macro')", () => {
    // truth 0,0,1,1,2 / pred 0,1,1,1,0: F1(0) = 2·1/(2+1+1) = 0.5, F1(1) = 2·2/(4+1) = 0.8, F1(2) = 0
    expect(macroF1(Int32Array.from([0, 0, 1, 1, 2]), Int32Array.from([0, 1, 1, 1, 0]))).toBeCloseTo((0.5 + 0.8 + 0) / 3, 12);
    expect(macroF1(Int32Array.from([1, 1]), Int32Array.from([1, 1]))).toBe(1);
  });

  it("fits on training rows only and scores the held-out rows", () => {
    const n = 200, d = 5, K = 4;
    const { x, y } = blobs(n, d, K, 3, 11);
    const labels = Array.from(y, (c) => `type${c}`);
    const isTest = Array.from({ length: n }, (_, i) => i % 5 === 0);
    const r = linearProbe(x, n, d, labels, isTest);
    expect(r.nTrain).toBe(160);
    expect(r.nTest).toBe(40);
    expect(r.accuracy).toBeGreaterThan(0.9);
    // noise features: chance level (4 classes)
    const noise = blobs(n, d, K, 0, 12).x;
    expect(linearProbe(noise, n, d, labels, isTest).accuracy).toBeLessThan(0.5);
    expect(() => linearProbe(x, n, d, labels, new Array(n).fill(false))).toThrow(/training and held-out cells/);
  });

  it("splits: held-out ids (selected or not, kept types only) or a seeded stratified 20 %", () => {
    const allLabels = ["A", "A", "A", "B", "B", "B", "C", "A", "B"];
    const ids = allLabels.map((_, i) => `c${i}`);
    const sel = { rows: Int32Array.from([0, 1, 2, 3, 4, 5]), labels: ["A", "A", "A", "B", "B", "B"], kept: [{ type: "A" }, { type: "B" }] };
    const h = probeCells(sel, allLabels, ids, new Set(["c1", "c6", "c7", "c8"]), makeRng(1));
    expect(Array.from(h.extraRows)).toEqual([7, 8]); // c6 is of a type not kept
    expect(h.extraLabels).toEqual(["A", "B"]);
    expect(h.isTest).toEqual([false, true, false, false, false, false, true, true]);
    const s = probeCells(sel, allLabels, ids, undefined, makeRng(1));
    expect(s.extraRows.length).toBe(0);
    expect(s.isTest.filter(Boolean).length).toBe(2); // one of each type (round(3 × 0.2) → at least 1)
    expect(s.isTest).toEqual(probeCells(sel, allLabels, ids, undefined, makeRng(1)).isTest);
    expect(() => probeCells(sel, allLabels, ids, new Set(["zz"]), makeRng(1))).toThrow(/no cell to score/);
  });
});
