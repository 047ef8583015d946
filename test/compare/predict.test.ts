/**
 * The denoising benchmark's model input: which genes each model reads (counts: every downsampled-
 * nonzero gene once, in contexts of at most max_length; rank: the top max_length by count / median)
 * and the prediction (μ of the count head on those genes, the input elsewhere).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { buildContexts, predictCounts } from "../../src/compare/predict.js";
import type { DenseCounts } from "../../src/compare/denoise.js";
import { buildModel } from "../../src/model/factory.js";
import { predictMeans } from "../../src/denoise/predict.js";
import { TINY, useBackend } from "../model/helpers.js";

beforeAll(async () => {
  await useBackend("cpu");
});

// 3 cells × 8 genes; cell 1 lost every count in the downsampling
const noisy: DenseCounts = {
  nCells: 3,
  nGenes: 8,
  data: Float32Array.from([
    [4, 0, 1, 2, 0, 7, 1, 3],
    [0, 0, 0, 0, 0, 0, 0, 0],
    [0, 5, 0, 0, 2, 0, 0, 0],
  ].flat()),
};
const geneTokens = Int32Array.from([10, 11, 12, 13, 14, 15, 16, 17]);

describe("denoising benchmark prediction", () => {
  it("counts: every downsampled-nonzero gene is read exactly once, in contexts of at most max_length", () => {
    const ctx = buildContexts(noisy, "scprint-counts", { maxLength: 4, geneTokens, seed: 3 });
    expect(ctx.filter((c) => c.cell === 1)).toHaveLength(0);
    const c0 = ctx.filter((c) => c.cell === 0);
    expect(c0.map((c) => c.ids.length)).toEqual([4, 2]);
    expect(c0.flatMap((c) => Array.from(c.cols)).sort()).toEqual([0, 2, 3, 5, 6, 7]);
    for (const c of ctx) {
      expect(Array.from(c.ids)).toEqual(Array.from(c.cols, (j) => geneTokens[j]));
      expect(Array.from(c.values)).toEqual(Array.from(c.cols, (j) => noisy.data[c.cell * 8 + j]));
      expect(c.lib).toBe(Array.from(c.values).reduce((a, b) => a + b, 0));
    }
  });

  it("rank: the top max_length genes by downsampled count / gene median, in rank order", () => {
    const med = new Float64Array(20).fill(1);
    med[15] = 100; // gene 5 (count 7) falls behind gene 0 (count 4) and gene 7 (count 3)
    const ctx = buildContexts(noisy, "geneformer-rank-value", { maxLength: 3, geneTokens, tokenMedian: med });
    expect(Array.from(ctx[0].cols)).toEqual([0, 7, 3]);
    expect(ctx.map((c) => c.cell)).toEqual([0, 2]);
  });

  it("counts / binned trained on --top-genes K: only the top K by downsampled count / median, cut into max_length contexts; bins over the whole cell", () => {
    const med = new Float64Array(20).fill(1);
    med[15] = 100; // gene 5 (count 7) falls behind genes 0, 7, 3
    const ctx = buildContexts(noisy, "scprint-counts", { maxLength: 2, geneTokens, tokenMedian: med, topGenes: 3, seed: 1 });
    const c0 = ctx.filter((c) => c.cell === 0);
    expect(c0.map((c) => c.ids.length)).toEqual([2, 1]);
    expect(c0.flatMap((c) => Array.from(c.cols)).sort()).toEqual([0, 3, 7]);
    expect(ctx.filter((c) => c.cell === 2).flatMap((c) => Array.from(c.cols)).sort()).toEqual([1, 4]); // fewer than K: all
    expect(() => buildContexts(noisy, "scprint-counts", { maxLength: 2, geneTokens, topGenes: 3 })).toThrow(/gene medians/);
    // binned: a gene's bin does not depend on which context it falls in (bins of the cell's 6 nonzero genes)
    const b1 = buildContexts(noisy, "scgpt-binned", { maxLength: 2, geneTokens, seed: 1 });
    const b2 = buildContexts(noisy, "scgpt-binned", { maxLength: 8, geneTokens, seed: 1 });
    const binOf = (cs: typeof b1) => new Map(cs.filter((c) => c.cell === 0).flatMap((c) => Array.from(c.cols, (j, q) => [j, c.values[q]] as const)));
    const whole = binOf(b2);
    expect(whole.size).toBe(6);
    expect(whole.get(5)).toBe(50); // the cell's largest count is in the top bin
    expect(binOf(b1)).toEqual(whole);
  });

  it("predicts μ on the genes read (summing to each context's input total) and keeps the input elsewhere", () => {
    const model = buildModel({ ...TINY, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 }, { encoding: "scprint-counts", objective: "denoise", head: { likelihood: "zinb" } }, { seed: 1 });
    const pred = predictCounts(model, "scprint-counts", noisy, { maxLength: 4, geneTokens, seed: 3 });
    const ctx = buildContexts(noisy, "scprint-counts", { maxLength: 4, geneTokens, seed: 3 });
    for (const c of ctx) {
      const s = Array.from(c.cols).reduce((a, j) => a + pred.data[c.cell * 8 + j], 0);
      expect(s).toBeCloseTo(c.lib, 3);
    }
    // untouched: the empty cell and the zeros
    expect(Array.from(pred.data.subarray(8, 16))).toEqual(new Array(8).fill(0));
    expect(pred.data[1]).toBe(0);
    expect(pred.data[2 * 8]).toBe(0);
    // an untrained head is not the input: it changes the values it predicts
    expect(Array.from(pred.data.subarray(0, 8))).not.toEqual(Array.from(noisy.data.subarray(0, 8)));
    model.dispose();
    const mlm = buildModel(TINY, { encoding: "geneformer-rank-value", objective: "mlm" });
    expect(() => predictCounts(mlm, "geneformer-rank-value", noisy, { maxLength: 4, geneTokens })).toThrow(/has no count head/);
    mlm.dispose();
  });

  it("binned: the benchmark bins a cell with the model's n_bins (cellfm.head.n_bins), not scGPT's default 51", () => {
    const b5 = buildContexts(noisy, "scgpt-binned", { maxLength: 8, geneTokens, seed: 1, nBins: 5 });
    const b51 = buildContexts(noisy, "scgpt-binned", { maxLength: 8, geneTokens, seed: 1 });
    expect(Math.max(...b5.flatMap((c) => Array.from(c.values)))).toBe(4);
    expect(Math.max(...b51.flatMap((c) => Array.from(c.values)))).toBe(50);
    const model = buildModel(
      { ...TINY, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 },
      { encoding: "scgpt-binned", objective: "denoise", head: { likelihood: "nb", n_bins: 5 } },
      { seed: 2 },
    );
    const pred = predictCounts(model, "scgpt-binned", noisy, { maxLength: 8, geneTokens, seed: 1 });
    const mu = predictMeans(model, b5.map((c) => ({ ids: c.ids, values: c.values, libSize: c.lib })));
    b5.forEach((c, k) => c.cols.forEach((j, q) => expect(pred.data[c.cell * 8 + j]).toBe(mu[k][q])));
    model.dispose();
  });
});
