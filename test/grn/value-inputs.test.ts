import { beforeAll, describe, expect, it } from "vitest";
import { initBackend } from "../../src/backend.js";
import { validateBertConfig } from "../../src/model/config.js";
import { buildModel } from "../../src/model/factory.js";
import { BINNED, COUNTS } from "../../src/encoding/index.js";
import { attentionMeans, attentionModelOf, qkHeadNetwork, qkMeans } from "../../src/grn/attention.js";
import { cellInputs, type GrnCellTokens, listContext, tokenizeRows } from "../../src/grn/inputs.js";
import { openCounts } from "../../src/data/open.js";
import { packagePath } from "../../src/io.js";
import type { LoadedCheckpoint } from "../../src/model/checkpoint.js";
import { makeRng, shuffle } from "../../src/rng.js";
import { dense, layerNorm as layerNormRef } from "./float64-reference.js";

beforeAll(async () => {
  await initBackend("wasm");
});

const H = 8, NH = 2, D = H / NH, NL = 2, V = 30, I = 16, MAXLEN = 12, NB = 6;
const config = validateBertConfig({
  vocab_size: V,
  hidden_size: H,
  num_hidden_layers: NL,
  num_attention_heads: NH,
  intermediate_size: I,
  hidden_act: "relu",
  max_position_embeddings: MAXLEN,
  hidden_dropout_prob: 0,
  attention_probs_dropout_prob: 0,
  initializer_range: 0.5, // large weights: attention far from uniform
});

// 8 cells of 5..19 expressed genes (distinct tokens 2..29, ascending as the tokenizer stores them)
const rng = makeRng(11);
const listTokens = Int32Array.from({ length: 14 }, (_, j) => 5 + j); // tokens 5..18
const isList = (t: number) => t >= 5 && t <= 18;
const raw: { ids: Int32Array; counts: Float32Array; bins: Float32Array }[] = Array.from({ length: 8 }, (_, i) => {
  const all = Int32Array.from({ length: 28 }, (_, t) => t + 2);
  shuffle(rng, all);
  const ids = all.slice(0, 5 + 2 * i).sort();
  return {
    ids,
    counts: Float32Array.from(ids, () => 1 + Math.floor(rng() * 40)),
    bins: Float32Array.from(ids, () => 1 + Math.floor(rng() * (NB - 1))),
  };
});
const tokensFor = (kind: "binned" | "counts") =>
  new Map<number, GrnCellTokens>(raw.map((c, r) => [r, { cellId: `cell${r}`, ids: c.ids, values: kind === "binned" ? c.bins : c.counts }]));

const layerNorm = (x: Float64Array, rows: number, g: Float32Array, b: Float32Array) => layerNormRef(x, rows, H, g, b, config.layer_norm_eps);

describe("cellfm grn inputs of value-keeping encodings", () => {
  it("the context holds the expressed list genes first, fills with other expressed genes, and is seeded by the cell id", () => {
    for (const c of tokensFor("counts").values()) {
      const ctx = listContext(c, isList, MAXLEN, 0);
      const nListExpr = Array.from(c.ids).filter(isList).length;
      expect(ctx.ids.length).toBe(Math.min(c.ids.length, MAXLEN));
      expect(ctx.nList).toBe(Math.min(nListExpr, MAXLEN));
      expect(Array.from(ctx.ids).filter(isList).length).toBe(ctx.nList); // no list gene dropped while others kept
      for (let i = 1; i < ctx.ids.length; i++) expect(ctx.ids[i]).toBeGreaterThan(ctx.ids[i - 1]);
      ctx.ids.forEach((t, i) => expect(ctx.values[i]).toBe(c.values![c.ids.indexOf(t)])); // values travel with their gene
      expect(listContext(c, isList, MAXLEN, 0)).toEqual(ctx);
    }
    const big = tokensFor("counts").get(7)!; // 19 genes: a seed-dependent subset of 12
    const a = listContext(big, () => true, MAXLEN, 0), b = listContext(big, () => true, MAXLEN, 1);
    expect(a.ids.length).toBe(MAXLEN);
    expect(Array.from(a.ids)).not.toEqual(Array.from(b.ids));
  });

  it("tokenizes cells with the checkpoint's encoding and keeps genes a model cannot represent out of the contexts", async () => {
    const src = await openCounts(packagePath("data", "tiny.h5ad"));
    try {
      const ck = { cellfm: { model_version: "V1" }, config: { max_position_embeddings: 64 } } as unknown as LoadedCheckpoint;
      const rows = Int32Array.from({ length: 10 }, (_, i) => i);
      const all = tokenizeRows(src, rows, ck, { encoding: "counts" }, undefined);
      expect(all.size).toBe(10);
      const c0 = all.get(0)!;
      expect(c0.values!.length).toBe(c0.ids.length);
      for (const v of c0.values!) expect(v).toBeGreaterThan(0); // raw counts of expressed genes
      // a mask allowing every other token of cell 0 (e.g. genes with an external vector, missing: "drop")
      const allowed = new Uint8Array(25426);
      c0.ids.forEach((t, j) => (allowed[t] = j % 2 === 0 ? 1 : 0));
      const masked = tokenizeRows(src, rows, ck, { encoding: "counts" }, undefined, allowed).get(0)!;
      expect(Array.from(masked.ids)).toEqual(Array.from(c0.ids).filter((_, j) => j % 2 === 0));
      expect(Array.from(masked.values!)).toEqual(Array.from(c0.values!).filter((_, j) => j % 2 === 0));
      const binned = tokenizeRows(src, rows, ck, { encoding: "binned", nBins: 51, binningSeed: 0 }, undefined).get(0)!;
      expect(Array.from(binned.ids)).toEqual(Array.from(c0.ids));
      for (const v of binned.values!) expect(v >= 1 && v <= 50 && Number.isInteger(v)).toBe(true);
    } finally {
      src.close();
    }
  });

  for (const [encoding, objective, kind, head] of [
    [BINNED.name, "mlm", "binned", { n_bins: NB }],
    [COUNTS.name, "denoise", "counts", { likelihood: "zinb" }],
  ] as const) {
    it(`${kind}: extraction matches a direct computation from the model's weights (values embedded as in training)`, () => {
      const model = buildModel(config, { encoding, objective, head }, { seed: 3 });
      const w = model.exportWeights();
      const W = (name: string) => {
        if (!w[name]) throw new Error(`no weight ${name}`);
        return w[name].data;
      };
      const { cells, ids, values, makeBatch } = cellInputs(tokensFor(kind), Int32Array.from(raw.keys()), listTokens, {
        vocabSize: V, padId: 0, encoding: kind, maxLength: MAXLEN,
      });
      expect(values).toBeDefined();
      const n = listTokens.length;
      // direct forward pass, one cell at a time, in float64 from the HF-layout weights
      const qs: Float64Array[][] = [], ks: Float64Array[][] = [];
      ids.forEach((tok, ci) => {
        const L = tok.length, val = values![ci];
        const x0 = new Float64Array(L * H);
        const word = W("bert.embeddings.word_embeddings.weight");
        for (let t = 0; t < L; t++) {
          let vrow: Float64Array;
          if (kind === "binned") {
            const bins = W("bert.embeddings.value_embeddings.weight");
            vrow = Float64Array.from({ length: H }, (_, d) => bins[val[t] * H + d]);
          } else {
            const xl = Math.log2(1 + val[t]);
            const h1 = dense(Float64Array.of(xl), 1, W("bert.embeddings.value_encoder.dense1.weight"), W("bert.embeddings.value_encoder.dense1.bias"), 1, H).map((a) => Math.max(0, a));
            vrow = dense(h1, 1, W("bert.embeddings.value_encoder.dense2.weight"), W("bert.embeddings.value_encoder.dense2.bias"), H, H);
          }
          for (let d = 0; d < H; d++) x0[t * H + d] = word[tok[t] * H + d] + vrow[d];
        }
        let x = layerNorm(x0, L, W("bert.embeddings.LayerNorm.weight"), W("bert.embeddings.LayerNorm.bias"));
        qs.push([]);
        ks.push([]);
        for (let l = 0; l < NL; l++) {
          const p = `bert.encoder.layer.${l}.`;
          const q = dense(x, L, W(p + "attention.self.query.weight"), W(p + "attention.self.query.bias"), H, H);
          const k = dense(x, L, W(p + "attention.self.key.weight"), W(p + "attention.self.key.bias"), H, H);
          const v = dense(x, L, W(p + "attention.self.value.weight"), W(p + "attention.self.value.bias"), H, H);
          qs[ci].push(q);
          ks[ci].push(k);
          const ctx = new Float64Array(L * H);
          for (let h = 0; h < NH; h++) for (let i = 0; i < L; i++) {
            const s = Array.from({ length: L }, (_, j) => {
              let z = 0;
              for (let d = 0; d < D; d++) z += q[i * H + h * D + d] * k[j * H + h * D + d];
              return z / Math.sqrt(D);
            });
            const mx = Math.max(...s), e = s.map((z) => Math.exp(z - mx)), Z = e.reduce((a, b) => a + b, 0);
            for (let d = 0; d < D; d++) for (let j = 0; j < L; j++) ctx[i * H + h * D + d] += (e[j] / Z) * v[j * H + h * D + d];
          }
          const ao = dense(ctx, L, W(p + "attention.output.dense.weight"), W(p + "attention.output.dense.bias"), H, H);
          const x1 = layerNorm(x.map((a, i) => a + ao[i]), L, W(p + "attention.output.LayerNorm.weight"), W(p + "attention.output.LayerNorm.bias"));
          const inter = dense(x1, L, W(p + "intermediate.dense.weight"), W(p + "intermediate.dense.bias"), H, I).map((a) => Math.max(0, a));
          const f = dense(inter, L, W(p + "output.dense.weight"), W(p + "output.dense.bias"), I, H);
          x = layerNorm(x1.map((a, i) => a + f[i]), L, W(p + "output.LayerNorm.weight"), W(p + "output.LayerNorm.bias"));
        }
      });
      const am = attentionModelOf(model);
      const a = qkMeans(am, cells, n, makeBatch, { maxTokensPerBatch: 30 }); // several padded batches
      const b = attentionMeans(am, cells, n, makeBatch, { perHead: true, maxTokensPerBatch: 30 });
      let diffA = 0, diffB = 0;
      const geneAt = ids.map((tok) => Array.from(tok, (t) => (isList(t) ? t - 5 : -1)));
      for (let l = 0; l < NL; l++) for (let h = 0; h < NH; h++) {
        const qbar = new Float64Array(n * D), kbar = new Float64Array(n * D), gc = new Float64Array(n);
        const sum = new Float64Array(n * n), cnt = new Float64Array(n * n);
        ids.forEach((tok, ci) => {
          const L = tok.length, q = qs[ci][l], k = ks[ci][l];
          geneAt[ci].forEach((gi, i) => {
            if (gi < 0) return;
            gc[gi]++;
            for (let d = 0; d < D; d++) (qbar[gi * D + d] += q[i * H + h * D + d]), (kbar[gi * D + d] += k[i * H + h * D + d]);
            const s = Array.from({ length: L }, (_, j) => {
              let z = 0;
              for (let d = 0; d < D; d++) z += q[i * H + h * D + d] * k[j * H + h * D + d];
              return z / Math.sqrt(D);
            });
            const mx = Math.max(...s), e = s.map((z) => Math.exp(z - mx)), Z = e.reduce((x, y) => x + y, 0);
            geneAt[ci].forEach((gj, j) => {
              if (gj < 0) return;
              sum[gi * n + gj] += e[j] / Z;
              cnt[gi * n + gj]++;
            });
          });
        });
        const got = b.networks[l * NH + h];
        for (let e = 0; e < n * n; e++) diffB = Math.max(diffB, Math.abs(got[e] - (cnt[e] ? sum[e] / cnt[e] : 0)));
        const present = [...Array(n).keys()].filter((g) => gc[g] > 0);
        const net = qkHeadNetwork(a, l, h);
        for (const i of present) {
          const s = present.map((j) => {
            let z = 0;
            for (let d = 0; d < D; d++) z += (qbar[i * D + d] / gc[i]) * (kbar[j * D + d] / gc[j]);
            return z / Math.sqrt(D);
          });
          const mx = Math.max(...s), e = s.map((z) => Math.exp(z - mx)), Z = e.reduce((x, y) => x + y, 0);
          present.forEach((j, t) => (diffA = Math.max(diffA, Math.abs(net[i * n + j] - e[t] / Z))));
        }
        expect(Array.from(a.count)).toEqual(Array.from(gc));
      }
      expect(diffA).toBeLessThan(1e-4);
      expect(diffB).toBeLessThan(1e-4);
      // the values matter: the same genes with other values give other attention
      const { makeBatch: mb2 } = cellInputs(
        new Map([...tokensFor(kind)].map(([r, c]) => [r, { ...c, values: Float32Array.from(c.values!, (v) => (kind === "binned" ? NB - v : 41 - v)) }])),
        Int32Array.from(raw.keys()), listTokens, { vocabSize: V, padId: 0, encoding: kind, maxLength: MAXLEN },
      );
      const a2 = qkMeans(am, cells, n, mb2, {});
      const n1 = qkHeadNetwork(a, 1, 0);
      const d2 = Math.max(...Array.from(qkHeadNetwork(a2, 1, 0), (v, e) => Math.abs(v - n1[e])));
      expect(d2).toBeGreaterThan(1e-3);
      model.dispose();
    });
  }
});
