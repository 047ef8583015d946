import { beforeAll, describe, expect, it } from "vitest";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../../src/backend.js";
import { BertForMaskedLM, type ModelBatch } from "../../src/model/bert.js";
import { validateBertConfig } from "../../src/model/config.js";
import { attentionMeans, attentionModelOf, type AttentionSums, type CellInput, qkHeadNetwork, qkMeans, type QkSums } from "../../src/grn/attention.js";
import { dealCells, sumOn, sumParallel } from "../../src/grn/parallel.js";
import { headWeights, nnls, parseHeads } from "../../src/grn/heads.js";
import { makeRng, shuffle } from "../../src/rng.js";
import { dense, layerNorm as layerNormRef } from "./float64-reference.js";

beforeAll(async () => {
  await initBackend("wasm");
});

const H = 8, NH = 2, D = H / NH, NL = 2, V = 30;
const config = validateBertConfig({
  vocab_size: V,
  hidden_size: H,
  num_hidden_layers: NL,
  num_attention_heads: NH,
  intermediate_size: 16,
  hidden_act: "relu",
  max_position_embeddings: 16,
  hidden_dropout_prob: 0,
  attention_probs_dropout_prob: 0,
  initializer_range: 0.5, // large weights: attention far from uniform
});

// 7 cells, each a distinct set of tokens 2..29 of varying length; the gene list is tokens 5..14
const rng = makeRng(7);
const cellsTok: Int32Array[] = Array.from({ length: 7 }, (_, i) => {
  const all = Int32Array.from({ length: 28 }, (_, t) => t + 2);
  shuffle(rng, all);
  return all.slice(0, 6 + i);
});
const listTokens = [5, 6, 7, 8, 9, 10, 11, 12, 13, 14];
const n = listTokens.length;
const tokToGene = new Int32Array(V).fill(-1);
listTokens.forEach((t, j) => (tokToGene[t] = j));
const cells: CellInput[] = cellsTok.map((x) => ({ length: x.length, geneAt: Int32Array.from(x, (t) => tokToGene[t]) }));
const makeBatch = (idx: number[], L: number): ModelBatch => {
  const a = new Int32Array(idx.length * L), m = new Float32Array(idx.length * L);
  idx.forEach((ci, b) => {
    a.set(cellsTok[ci], b * L);
    m.fill(1, b * L, b * L + cellsTok[ci].length);
  });
  return { inputIds: tf.tensor2d(a, [idx.length, L], "int32"), attentionMask: tf.tensor2d(m, [idx.length, L]) };
};

const layerNorm = (x: Float64Array, rows: number, g: Float32Array, b: Float32Array) => layerNormRef(x, rows, H, g, b, config.layer_norm_eps);

describe("attention extraction", () => {
  it("matches a direct computation from the model's weights (the probabilities reproduce the next layer)", () => {
    const model = new BertForMaskedLM(config, { seed: 3 });
    const w = model.exportWeights();
    const W = (name: string) => w[name].data;
    // direct: per cell, per layer, per head attention P over the cell's input; check it drives the layer
    const probs: Float64Array[][][] = []; // [cell][layer][head] → [len, len]
    const qs: Float64Array[][] = [], ks: Float64Array[][] = []; // [cell][layer] → [len, H]
    for (const [ci, tok] of cellsTok.entries()) {
      const L = tok.length;
      const out = model.forward(
        { inputIds: tf.tensor2d(tok, [1, L], "int32"), attentionMask: tf.ones([1, L]) as tf.Tensor2D },
        { training: false, outputHiddenStates: true },
      );
      const hs = out.hiddenStates!.map((t) => Float64Array.from(t.dataSync()));
      out.hiddenStates!.forEach((t) => t.dispose());
      probs.push([]);
      qs.push([]);
      ks.push([]);
      for (let l = 0; l < NL; l++) {
        const p = `bert.encoder.layer.${l}.`;
        const x = hs[l];
        const q = dense(x, L, W(p + "attention.self.query.weight"), W(p + "attention.self.query.bias"), H, H);
        const k = dense(x, L, W(p + "attention.self.key.weight"), W(p + "attention.self.key.bias"), H, H);
        const v = dense(x, L, W(p + "attention.self.value.weight"), W(p + "attention.self.value.bias"), H, H);
        qs[ci].push(q);
        ks[ci].push(k);
        const ctx = new Float64Array(L * H);
        probs[ci].push([]);
        for (let h = 0; h < NH; h++) {
          const P = new Float64Array(L * L);
          for (let i = 0; i < L; i++) {
            let mx = -Infinity;
            for (let j = 0; j < L; j++) {
              let s = 0;
              for (let d = 0; d < D; d++) s += q[i * H + h * D + d] * k[j * H + h * D + d];
              P[i * L + j] = s / Math.sqrt(D);
              mx = Math.max(mx, P[i * L + j]);
            }
            let z = 0;
            for (let j = 0; j < L; j++) z += (P[i * L + j] = Math.exp(P[i * L + j] - mx));
            for (let j = 0; j < L; j++) P[i * L + j] /= z;
            for (let d = 0; d < D; d++) {
              let s = 0;
              for (let j = 0; j < L; j++) s += P[i * L + j] * v[j * H + h * D + d];
              ctx[i * H + h * D + d] = s;
            }
          }
          probs[ci][l].push(P);
        }
        const ao = dense(ctx, L, W(p + "attention.output.dense.weight"), W(p + "attention.output.dense.bias"), H, H);
        const x1 = layerNorm(x.map((a, i) => a + ao[i]), L, W(p + "attention.output.LayerNorm.weight"), W(p + "attention.output.LayerNorm.bias"));
        const inter = dense(x1, L, W(p + "intermediate.dense.weight"), W(p + "intermediate.dense.bias"), H, 16).map((a) => Math.max(0, a));
        const f = dense(inter, L, W(p + "output.dense.weight"), W(p + "output.dense.bias"), 16, H);
        const x2 = layerNorm(x1.map((a, i) => a + f[i]), L, W(p + "output.LayerNorm.weight"), W(p + "output.LayerNorm.bias"));
        for (let i = 0; i < x2.length; i++) expect(Math.abs(x2[i] - hs[l + 1][i])).toBeLessThan(2e-4);
      }
    }

    const before = tf.memory().numTensors;
    const am = attentionModelOf(model);
    // method (b): mean over cells where both genes appear, per head
    const b = attentionMeans(am, cells, n, makeBatch, { perHead: true, maxTokensPerBatch: 20 });
    const bMean = attentionMeans(am, cells, n, makeBatch, { perHead: false, maxTokensPerBatch: 1000 });
    // method (a): mean q, k per gene over the cells holding it, softmax over the list genes
    const a = qkMeans(am, cells, n, makeBatch, { maxTokensPerBatch: 13 });
    expect(tf.memory().numTensors).toBe(before);

    let maxDiffB = 0, maxDiffMean = 0, maxDiffA = 0;
    const meanDirect = new Float64Array(n * n);
    for (let l = 0; l < NL; l++) {
      for (let h = 0; h < NH; h++) {
        const sum = new Float64Array(n * n), cnt = new Float64Array(n * n);
        const qbar = new Float64Array(n * D), kbar = new Float64Array(n * D), gc = new Float64Array(n);
        cellsTok.forEach((tok, ci) => {
          tok.forEach((ti, i) => {
            const gi = tokToGene[ti];
            if (gi < 0) return;
            gc[gi]++;
            for (let d = 0; d < D; d++) {
              qbar[gi * D + d] += qs[ci][l][i * H + h * D + d];
              kbar[gi * D + d] += ks[ci][l][i * H + h * D + d];
            }
            tok.forEach((tj, j) => {
              const gj = tokToGene[tj];
              if (gj < 0) return;
              sum[gi * n + gj] += probs[ci][l][h][i * tok.length + j];
              cnt[gi * n + gj]++;
            });
          });
        });
        const got = b.networks[l * NH + h];
        for (let e = 0; e < n * n; e++) {
          const want = cnt[e] ? sum[e] / cnt[e] : 0;
          meanDirect[e] += want / (NL * NH);
          maxDiffB = Math.max(maxDiffB, Math.abs(got[e] - want));
        }
        // (a) direct
        const present = [...Array(n).keys()].filter((g) => gc[g] > 0);
        for (const g of present) for (let d = 0; d < D; d++) {
          qbar[g * D + d] /= gc[g];
          kbar[g * D + d] /= gc[g];
        }
        const net = qkHeadNetwork(a, l, h);
        for (const i of present) {
          const logits = present.map((j) => {
            let s = 0;
            for (let d = 0; d < D; d++) s += qbar[i * D + d] * kbar[j * D + d];
            return s / Math.sqrt(D);
          });
          const mx = Math.max(...logits);
          const ex = logits.map((x) => Math.exp(x - mx));
          const z = ex.reduce((x, y) => x + y, 0);
          present.forEach((j, t) => (maxDiffA = Math.max(maxDiffA, Math.abs(net[i * n + j] - ex[t] / z))));
        }
        for (let g = 0; g < n; g++) if (!gc[g]) for (let j = 0; j < n; j++) expect(net[g * n + j]).toBe(0);
      }
    }
    for (let e = 0; e < n * n; e++) maxDiffMean = Math.max(maxDiffMean, Math.abs(bMean.networks[0][e] - meanDirect[e]));
    expect(maxDiffB).toBeLessThan(1e-5);
    expect(maxDiffMean).toBeLessThan(1e-5);
    expect(maxDiffA).toBeLessThan(1e-5);
    // the pair counts are co-occurrences over cells
    expect(b.pairCount[0]).toBe(cellsTok.filter((t) => t.includes(5)).length);
    model.dispose();
  });

  it("a model without attention weights is refused", () => {
    const model = new BertForMaskedLM(config, { seed: 1 });
    const fake = Object.create(model) as BertForMaskedLM;
    fake.exportWeights = () => {
      const w = model.exportWeights();
      delete w["bert.encoder.layer.1.attention.self.key.weight"];
      return w;
    };
    expect(() => attentionModelOf(fake)).toThrow(/no attention weights \(bert\.encoder\.layer\.1\.attention\.self\.key\.weight missing\)/);
    model.dispose();
  });
});

describe("extraction on two threads", () => {
  it("a worker thread's sums added to the main thread's equal one thread's (qk and per-head attention)", async () => {
    const model = new BertForMaskedLM(config, { seed: 3 });
    const am = attentionModelOf(model);
    const job = { n, cells, ids: cellsTok, padId: 0, maxTokensPerBatch: 20 };
    const source = { config, spec: { encoding: "geneformer-rank-value", objective: "mlm" }, seed: 3 }; // the worker builds the same weights
    const progress: number[] = [];
    const q1 = sumOn(am, { ...job, job: { method: "qk" } }) as QkSums;
    const q2 = (await sumParallel(am, source, { ...job, job: { method: "qk" } }, 2, "wasm", (d) => progress.push(d))) as QkSums;
    expect(Array.from(q2.count)).toEqual(Array.from(q1.count));
    for (let l = 0; l < NL; l++) for (let i = 0; i < q1.qs[l].length; i++) {
      expect(q2.qs[l][i]).toBeCloseTo(q1.qs[l][i], 9);
      expect(q2.ks[l][i]).toBeCloseTo(q1.ks[l][i], 9);
    }
    expect(progress[progress.length - 1]).toBe(cells.length);
    const a1 = sumOn(am, { ...job, job: { method: "attention", perHead: true } }) as AttentionSums;
    const a2 = (await sumParallel(am, source, { ...job, job: { method: "attention", perHead: true } }, 2, "wasm")) as AttentionSums;
    expect(Array.from(a2.pairCount)).toEqual(Array.from(a1.pairCount));
    expect(a2.sums.length).toBe(NL * NH);
    let d = 0;
    a1.sums.forEach((s, k) => s.forEach((v, i) => (d = Math.max(d, Math.abs(v - a2.sums[k][i])))));
    expect(d).toBeLessThan(1e-9);
    expect(a1.sums[0].some((v) => v > 0)).toBe(true);
    // the deal: every cell once, lengths balanced
    const shares = dealCells([5, 9, 1, 7, 3], 2);
    expect(shares.flat().sort()).toEqual([0, 1, 2, 3, 4]);
    expect(shares).toEqual([[0, 1, 2], [3, 4]]); // by length 9, 7, 5, 3, 1: cells 1, 0, 2 and 3, 4
    model.dispose();
  });
});

describe("heads", () => {
  it("parses mean, max, select and layer:head lists; refuses heads outside the model", () => {
    expect(parseHeads("mean").kind).toBe("mean");
    expect(parseHeads("3:1,5:0", 6, 4)).toEqual({ kind: "subset", heads: [[3, 1], [5, 0]] });
    expect(() => parseHeads("6:0", 6, 4)).toThrow(/outside the model/);
    expect(() => parseHeads("3-1")).toThrow(/layer:head/);
    const w = headWeights({ kind: "subset", heads: [[1, 0], [1, 0], [0, 1]] }, 2, 2);
    expect(Array.from(w)).toEqual([0, 0.5, 0.5, 0]);
  });
  it("non-negative least squares recovers non-negative weights and clips negative ones", () => {
    const r = makeRng(2);
    const rows = 200, p = 3;
    const x = new Float64Array(rows * p), y = new Float64Array(rows);
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < p; j++) x[i * p + j] = r();
      y[i] = 2 * x[i * p] + 0.5 * x[i * p + 1] - 1 * x[i * p + 2] + 3;
    }
    const w = nnls(x, y, new Float64Array(rows).fill(1), rows, p);
    expect(w[0]).toBeGreaterThan(1.5);
    expect(w[1]).toBeGreaterThan(0.2);
    expect(w[2]).toBe(0);
  });
});
