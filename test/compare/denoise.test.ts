/**
 * The denoising benchmark's scoring (scPRINT scprint/tasks/denoise.py: Spearman with the full counts
 * over the truly nonzero entries; reported as the improvement over the downsampled input) and the
 * kNN-smoothing baseline.
 */
import { describe, expect, it } from "vitest";
import { denoiseScore, knnSmooth, spearmanOnNonzero, type DenseCounts } from "../../src/compare/denoise.js";

const dense = (nCells: number, nGenes: number, v: number[]): DenseCounts => ({ nCells, nGenes, data: Float32Array.from(v) });

describe("denoising score", () => {
  it("is zero for the identity prediction on undownsampled input, and for returning the downsampled input", () => {
    const full = dense(2, 4, [5, 0, 2, 1, 0, 3, 1, 7]);
    const s = denoiseScore(full, full, full);
    expect(s.reco2full).toBeCloseTo(1, 12);
    expect(s.noisy2full).toBeCloseTo(1, 12);
    expect(s.improvement).toBe(0);
    expect(s.nEntries).toBe(6);
    const noisy = dense(2, 4, [2, 0, 2, 0, 0, 1, 0, 4]);
    expect(denoiseScore(full, noisy, noisy).improvement).toBe(0);
  });

  it("matches a hand-computed Spearman over the truly nonzero entries", () => {
    // full nonzero entries (cell-major): 5, 2, 1, 3, 1, 7  (the zeros at [0,1] and [1,0] are not scored)
    const full = dense(2, 4, [5, 0, 2, 1, 0, 3, 1, 7]);
    // prediction on those entries: 4, 9, 1, 3, 2, 8 (its values on the zero entries must not matter)
    const pred = dense(2, 4, [4, 100, 9, 1, -50, 3, 2, 8]);
    // ranks of full  (5,2,1,3,1,7): 5, 3, 1.5, 4, 1.5, 6
    // ranks of pred  (4,9,1,3,2,8): 4, 6, 1, 3, 2, 5
    // Pearson of the rank vectors: d = rank − 3.5
    //   full: 1.5, −0.5, −2, 0.5, −2, 2.5   pred: 0.5, 2.5, −2.5, −0.5, −1.5, 1.5
    //   Σ ab = 0.75 − 1.25 + 5 − 0.25 + 3 + 3.75 = 11;  Σ a² = 17.5 − 0.5 (ties) = 17;  Σ b² = 17.5
    const rho = 11 / Math.sqrt(17 * 17.5);
    expect(spearmanOnNonzero(pred.data, full.data, full.data)).toBeCloseTo(rho, 12);
    const noisy = dense(2, 4, [5, 0, 2, 1, 0, 3, 1, 7]); // = full: noisy2full = 1
    const s = denoiseScore(full, noisy, pred);
    expect(s.reco2full).toBeCloseTo(rho, 12);
    expect(s.improvement).toBeCloseTo(rho - 1, 12);
  });

  it("refuses a non-finite prediction and a shape mismatch", () => {
    const full = dense(1, 3, [1, 2, 3]);
    expect(() => denoiseScore(full, full, dense(1, 3, [1, NaN, 3]))).toThrow(/not finite \(NaN\) at cell 0, gene 1/);
    expect(() => denoiseScore(full, dense(1, 2, [1, 2]), full)).toThrow(/downsampled counts are 1 × 2/);
  });

  it("kNN smoothing averages each cell with its k − 1 nearest cells in PCA space", () => {
    // two groups of identical profiles: smoothing within a group leaves them unchanged
    const a = [10, 0, 5, 0];
    const b = [0, 8, 0, 4];
    const noisy = dense(6, 4, [...a, ...a, ...a, ...b, ...b, ...b]);
    const s = knnSmooth(noisy, { k: 3, nPcs: 2 });
    expect(Array.from(s.data.subarray(0, 4))).toEqual(a);
    expect(Array.from(s.data.subarray(12, 16))).toEqual(b);
    // k = 1: the cell alone
    const one = knnSmooth(dense(2, 2, [1, 2, 3, 4]), { k: 1, nPcs: 1 });
    expect(Array.from(one.data)).toEqual([1, 2, 3, 4]);
  });
});
