/**
 * scPRINT's raw counts (Kalfon et al., Nature Communications 2025): each expressed gene carries its
 * raw count; the model reads gene identity + an MLP of log2(1 + count), with no position
 * (`GeneValueEmbeddings`). Contexts are gene sets (`./gene-set.ts`), scPRINT's collator's
 * `how="random expr"`.
 */
import type { EmbeddingFactory, ModelSpec } from "../model/bert.js";
import { GeneValueEmbeddings, ValueRegressionHead } from "../model/value-model.js";
import { coveringSetContexts, listSetContext, setBenchmarkGroups, setInferenceContext } from "./gene-set.js";
import { countsNoisyInput, geneSetCells, geneSetSampling, noiseOf } from "../train/objectives/inputs.js";
import { log1pTarget } from "../train/objectives/targets.js";
import { denoiseModel, geneIdentityOf } from "./models.js";
import type { Encoding } from "./types.js";

const embedding = (spec: ModelSpec): EmbeddingFactory => (c, p) =>
  new GeneValueEmbeddings(c, p, { kind: "counts" }, geneIdentityOf(spec));

export const COUNTS = {
  key: "counts",
  name: "scprint-counts",
  source: "scPRINT raw counts (Kalfon et al. 2025)",
  valuesKind: "count",
  readsValues: true,
  defaults: {},
  // the masked value regression's target (log1pTarget), so mvc and mlm predict the same quantity
  mvcTarget: {
    description: "log1p(count): the gene's raw count, log1p-transformed",
    of(values: Float32Array | undefined): Float32Array {
      if (!values) throw new Error("mvc on counts tokens needs their raw counts (the values column)");
      return Float32Array.from(values, Math.log1p);
    },
  },
  models: {
    mlm: { architecture: "CellfmForMaskedValues", embedding, head: () => (c, p) => new ValueRegressionHead(c, p) },
    denoise: denoiseModel("CellfmForDenoising", embedding),
  },
  masked(o, where) {
    const sampling = geneSetSampling(o, where);
    if (o.manifest.values_kind !== "count") throw new Error(`${o.tokens}: masked value regression needs raw counts; run cellfm tokenize --encoding counts`);
    return { cells: geneSetCells("mlm", sampling, "cellfm tokenize --encoding counts"), target: log1pTarget(o.training.mask_probability) };
  },
  noisy(o, where) {
    const sampling = geneSetSampling(o, where);
    if (o.manifest.values_kind !== "count") {
      throw new Error(`${o.tokens}: training.objective denoise needs raw counts and library sizes (values column of counts); run cellfm tokenize --encoding counts`);
    }
    return countsNoisyInput(sampling, noiseOf(o));
  },
  inferenceContext: setInferenceContext,
  coveringContexts: coveringSetContexts,
  listContext: listSetContext,
  benchmarkContexts(row, nz, _cell, geneTokens, rng, o) {
    return { groups: setBenchmarkGroups(row, nz, geneTokens, rng, o), valueOf: (j) => row[j] };
  },
} as const satisfies Encoding<"counts">;
