/**
 * scGPT's binned values (Cui et al., Nature Methods 2024; `src/tokenize/binning.ts`): each of a cell's
 * expressed genes carries the bin of log1p(count / total × 10⁴) among the cell's own quantiles
 * (bins 1..n_bins−1, bin 0 = not expressed); the model reads gene identity + a bin embedding, with
 * no position (`GeneValueEmbeddings`). The dataset also stores the raw counts (`counts` column), for
 * denoising. Contexts are gene sets (`./gene-set.ts`).
 */
import type { EmbeddingFactory, ModelSpec } from "../model/bert.js";
import { BinHead, GeneValueEmbeddings } from "../model/value-model.js";
import { makeRng } from "../rng.js";
import { binCounts, DEFAULT_N_BINS } from "../tokenize/binning.js";
import { coveringSetContexts, listSetContext, setBenchmarkGroups, setInferenceContext } from "./gene-set.js";
import { binnedNoisyInput, geneSetCells, geneSetSampling, noiseOf } from "../train/objectives/inputs.js";
import { binTarget } from "../train/objectives/targets.js";
import { denoiseModel, geneIdentityOf, nBinsOf } from "./models.js";
import type { Encoding } from "./types.js";

const embedding = (spec: ModelSpec): EmbeddingFactory => (c, p) =>
  new GeneValueEmbeddings(c, p, { kind: "bins", nBins: nBinsOf(spec, DEFAULT_N_BINS) }, geneIdentityOf(spec));

export const BINNED = {
  key: "binned",
  name: "scgpt-binned",
  source: "scGPT binned values (Cui et al. 2024)",
  valuesKind: "bin",
  readsValues: true,
  defaults: { n_bins: DEFAULT_N_BINS },
  // scGPT's GEPC regresses the bin itself (its target_values are the binned values; MSE)
  mvcTarget: {
    description: "the gene's bin (0 = not expressed), regressed as a number, as scGPT's GEPC",
    of(values: Float32Array | undefined): Float32Array {
      if (!values) throw new Error("mvc on binned tokens needs their bins (the values column)");
      return values;
    },
  },
  models: {
    mlm: { architecture: "CellfmForMaskedBins", embedding, head: (spec) => (c, p) => new BinHead(c, p, nBinsOf(spec, DEFAULT_N_BINS)) },
    denoise: denoiseModel("CellfmForDenoising", embedding),
  },
  masked(o, where) {
    const sampling = geneSetSampling(o, where);
    if (o.manifest.values_kind !== "bin") throw new Error(`${o.tokens}: binned MLM needs bin values; run cellfm tokenize --encoding binned`);
    return { cells: geneSetCells("mlm", sampling, "cellfm tokenize --encoding binned"), target: binTarget(o.manifest.n_bins ?? DEFAULT_N_BINS, o.training.mask_probability) };
  },
  noisy(o, where) {
    const sampling = geneSetSampling(o, where);
    const m = o.manifest;
    if (m.values_kind !== "bin" || !m.columns.some((c) => c.name === "counts")) {
      throw new Error(
        `${o.tokens}: training.objective denoise on binned tokens needs the bins and the raw counts per token (counts column); re-run cellfm tokenize --encoding binned with this cellfm version`,
      );
    }
    return binnedNoisyInput(sampling, m.n_bins ?? DEFAULT_N_BINS, noiseOf(o));
  },
  inferenceContext: setInferenceContext,
  coveringContexts: coveringSetContexts,
  listContext: listSetContext,
  benchmarkContexts(row, nz, cell, geneTokens, rng, o) {
    const groups = setBenchmarkGroups(row, nz, geneTokens, rng, o);
    // the cell's bins over all its nonzero benchmark genes, as the tokenizer bins a cell
    let total = 0;
    for (const j of nz) total += row[j];
    const bins = binCounts(Float64Array.from(nz, (j) => row[j]), total, makeRng(`${o.seed}:bins:${cell}`), o.nBins ?? DEFAULT_N_BINS);
    const binOfCol = new Map(nz.map((j, q) => [j, bins[q]]));
    return { groups, valueOf: (j) => binOfCol.get(j)! };
  },
} as const satisfies Encoding<"binned">;
