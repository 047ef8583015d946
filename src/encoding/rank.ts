/**
 * Geneformer's rank-value encoding (Theodoris et al., Nature 2023; tokenizer `src/tokenize/geneformer.ts`):
 * a cell is its genes ordered by count / n_counts × 10,000 / the gene's nonzero median, highest
 * first; the model reads token ids only and the learned absolute position carries the rank
 * (HF `BertForMaskedLM`). The stored `values` are the raw counts (for denoising and its benchmark),
 * never read by the model.
 *
 * A context cannot be reordered or subsampled, only truncated: every choice of context genes here
 * keeps the cell's top genes (V2 keeps `<eos>` last, as Geneformer's tokenizer truncates before
 * appending it).
 */
import { BertEmbeddings, BertForMaskedLM, MlmHead } from "../model/bert.js";
import { rankValueOrder } from "../tokenize/geneformer.js";
import { loadGeneformerDictionaries } from "../tokenize/dictionaries.js";
import { noiseOf, rankCells, rankNoisyInput } from "../train/objectives/inputs.js";
import { tokenTarget } from "../train/objectives/targets.js";
import { denoiseModel } from "./models.js";
import type { Encoding } from "./types.js";

/**
 * Truncate a cell to at most `maxLength` tokens, keeping the highest-ranked genes (rank-value
 * encoding puts them first). When the cell ends with `eosId` (Geneformer V2's `<eos>`) it is kept
 * as the last token, as V2's tokenizer truncates before appending `<eos>`.
 */
export function truncateCell(ids: Int32Array, maxLength: number, eosId?: number): Int32Array {
  if (ids.length <= maxLength) return ids;
  const out = ids.slice(0, maxLength);
  if (eosId !== undefined && ids[ids.length - 1] === eosId) out[maxLength - 1] = eosId;
  return out;
}

/**
 * The top `k` of a cell's nonzero columns by rank value (count / the gene's nonzero median),
 * Geneformer's order, as columns.
 * @throws Error when `tokenMedian` is missing.
 */
export function topByRankValue(row: Float32Array, nz: number[], geneTokens: Int32Array, tokenMedian: Float64Array | undefined, k: number): Int32Array {
  if (!tokenMedian) throw new Error("predictCounts: ranking genes by rank-value needs the gene medians (tokenMedian)");
  const toks = Int32Array.from(nz, (j) => geneTokens[j]);
  const key = Float64Array.from(nz, (j) => row[j] / (tokenMedian[geneTokens[j]] || 1));
  const order = rankValueOrder(toks, key, k);
  const colOf = new Map<number, number>(nz.map((j) => [geneTokens[j], j]));
  return Int32Array.from(order, (t) => colOf.get(t)!);
}

/**
 * The `mvc` value of rank tokens: how high the gene is expressed, log1p(count / n_counts × 10⁴) (the
 * cell's library size from obs `n_counts`, else the sum of its stored counts) — the log-normalised
 * expression scanpy's `normalize_total(target_sum=1e4)` + `log1p` gives, whose order within a cell is
 * close to the rank order the tokens carry (which also divides by the gene's median). Every context
 * gene of a rank cell is expressed, so "whether" carries no information; this says how much.
 */
export const RANK_MVC_TARGET = {
  description: "log1p(count / n_counts × 10^4): the gene's log-normalised expression in the cell",
  of(values: Float32Array | undefined, nCounts: number | undefined): Float32Array {
    if (!values) throw new Error("mvc on rank tokens needs their raw counts (the values column); re-run cellfm tokenize --encoding rank with this cellfm version");
    let lib = nCounts ?? 0;
    if (!(lib > 0)) for (const v of values) lib += v;
    const scale = lib > 0 ? 1e4 / lib : 0;
    return Float32Array.from(values, (v) => Math.log1p(v * scale));
  },
};

export const RANK = {
  key: "rank",
  name: "geneformer-rank-value",
  source: "Geneformer rank-value tokens (Theodoris et al. 2023)",
  valuesKind: "count",
  readsValues: false,
  defaults: {},
  mvcTarget: RANK_MVC_TARGET,
  models: {
    mlm: {
      architecture: "BertForMaskedLM",
      embedding: () => (c, p) => new BertEmbeddings(c, p),
      // the decoder is tied to the word embeddings, as HF BertForMaskedLM
      head: () => (c, p, emb) => new MlmHead(c, p, (emb as BertEmbeddings).word),
      plain: (config, seed) => new BertForMaskedLM(config, { seed }),
    },
    denoise: denoiseModel("CellfmRankForDenoising", () => (c, p) => new BertEmbeddings(c, p)),
  },
  masked: (o) => ({
    cells: rankCells({ maxLength: o.maxLength, eosId: o.vocabulary.eos }),
    target: tokenTarget({ vocabSize: o.vocabulary.size, mlmProbability: o.training.mask_probability, padTokenId: o.vocabulary.pad, maskTokenId: o.vocabulary.mask }),
  }),
  noisy(o) {
    const m = o.manifest;
    if (m.values_kind !== "count" || (m.model_version !== "V1" && m.model_version !== "V2")) {
      throw new Error(`${o.tokens}: rank tokens without their raw counts; re-run cellfm tokenize --encoding rank with this cellfm version (it stores the counts)`);
    }
    // the downsampled genes are ranked by count / nonzero median, as the tokenizer ranks
    const d = loadGeneformerDictionaries(m.model_version);
    const med = new Float64Array(o.vocabulary.size).fill(1);
    for (const [gene, id] of d.tokens) {
      const v = d.medians.get(gene);
      if (v !== undefined && v > 0 && id < med.length) med[id] = v;
    }
    return rankNoisyInput(o.maxLength, med, noiseOf(o));
  },
  inferenceContext(ids, _values, o) {
    // token ids only: the model does not read values
    return { ids: truncateCell(ids, o.maxLength, o.eosId) };
  },
  coveringContexts(counts, o) {
    // the cell's top-ranked genes the model was trained on; special tokens carry count 0
    const keep: number[] = [];
    for (let i = 0; i < counts.length && keep.length < o.maxLength; i++) if (counts[i] > 0) keep.push(i);
    return keep.length ? [keep] : [];
  },
  benchmarkContexts(row, nz, _cell, geneTokens, _rng, o) {
    // the top max_length genes by downsampled count / median, what RankDenoiseObjective feeds in training
    return { groups: [topByRankValue(row, nz, geneTokens, o.tokenMedian, o.maxLength)], valueOf: (j) => row[j] };
  },
} as const satisfies Encoding<"rank">;
