/**
 * The registry of pretraining objectives: which encoding × objective pairs cellfm trains, and the
 * one function that makes the {@link Objective} for a pair. `cellfm train` and `cellfm compare`
 * validate their configs against {@link SUPPORTED_PAIRS}.
 */
import { BINNED, COUNTS, ENCODINGS, RANK } from "../../encoding/index.js";
import type { TokenizedManifest } from "../../data/tokenized.js";
import type { Vocabulary } from "../../tokenize/dictionaries.js";
import type { TrainingSection } from "../config.js";
import { RankMlmObjective } from "./mlm.js";
import { BinnedDenoiseObjective, BinnedMlmObjective, CountsMlmObjective, DenoiseObjective, RankDenoiseObjective } from "./values.js";
import { loadGeneformerDictionaries } from "../../tokenize/dictionaries.js";
import type { Objective } from "./types.js";

export type { BaselineResult, CollatedBatch, Objective, TrainCell } from "./types.js";

/** One supported pair: the tokenized dataset's `encoding` and `training.objective`. */
export interface ObjectivePair {
  encoding: string;
  objective: string;
}

/** Every encoding × objective pair cellfm can train: each encoding's models (`src/encoding/`), by objective. */
export const SUPPORTED_PAIRS: readonly ObjectivePair[] = ["mlm", "denoise"].flatMap((objective) =>
  ENCODINGS.filter((e) => objective in e.models).map((e) => ({ encoding: e.name, objective })),
);

/** True when `encoding` × `objective` is in {@link SUPPORTED_PAIRS}. */
export function isSupportedPair(encoding: string, objective: string): boolean {
  return SUPPORTED_PAIRS.some((p) => p.encoding === encoding && p.objective === objective);
}

/**
 * @throws Error naming both when the pair is not supported, listing the supported pairs.
 * @param where prefix of the message (e.g. the config file)
 */
export function assertSupportedPair(encoding: string, objective: string, where = "config"): void {
  if (isSupportedPair(encoding, objective)) return;
  const list = SUPPORTED_PAIRS.map((p) => `${p.encoding} + ${p.objective}`).join(", ");
  throw new Error(`${where}: training.objective "${objective}" is not supported with encoding "${encoding}" (supported: ${list})`);
}

/** What an objective needs to know about the data and the run. */
export interface ObjectiveContext {
  /** Vocabulary of the tokenized dataset (size, special ids). */
  vocabulary: Vocabulary;
  /** The `training:` section. */
  training: TrainingSection;
  /** Tokens per cell (`data.max_length`, at most the model's position table for rank tokens). */
  maxLength: number;
  /** The tokenized dataset's manifest (values kind, bins, measured genes). */
  manifest: TokenizedManifest;
  /** The tokenized dataset folder (for messages). */
  tokens: string;
}

/**
 * The objective for a pair.
 * @throws Error naming both when the pair is not supported.
 */
export function makeObjective(encoding: string, objective: string, ctx: ObjectiveContext, where = "config"): Objective {
  assertSupportedPair(encoding, objective, where);
  const t = ctx.training, m = ctx.manifest;
  if (encoding === RANK.name && objective === "mlm") {
    return new RankMlmObjective(
      {
        vocabSize: ctx.vocabulary.size,
        mlmProbability: t.mask_probability,
        padTokenId: ctx.vocabulary.pad,
        maskTokenId: ctx.vocabulary.mask,
      },
      { maxLength: ctx.maxLength, eosId: ctx.vocabulary.eos },
    );
  }
  if (encoding === RANK.name && objective === "denoise") {
    if (m.values_kind !== "count" || (m.model_version !== "V1" && m.model_version !== "V2")) {
      throw new Error(`${ctx.tokens}: rank tokens without their raw counts; re-run cellfm tokenize --encoding rank with this cellfm version (it stores the counts)`);
    }
    const d = loadGeneformerDictionaries(m.model_version);
    const med = new Float64Array(ctx.vocabulary.size).fill(1);
    for (const [gene, id] of d.tokens) {
      const v = d.medians.get(gene);
      if (v !== undefined && v > 0 && id < med.length) med[id] = v;
    }
    return new RankDenoiseObjective(ctx.maxLength, ctx.vocabulary.pad, t.likelihood, t.noise, t.downsample, med);
  }
  const sampling = {
    maxLength: ctx.maxLength,
    padWithUnexpressed: t.pad_with_unexpressed,
    pool: m.measured_tokens ? Int32Array.from(m.measured_tokens) : undefined,
  };
  if (t.pad_with_unexpressed && !sampling.pool) {
    throw new Error(`${where}: training.pad_with_unexpressed needs ${ctx.tokens}/manifest.json measured_tokens; re-tokenize with this cellfm version`);
  }
  if (encoding === BINNED.name && objective === "mlm") {
    if (m.values_kind !== "bin") throw new Error(`${ctx.tokens}: binned MLM needs bin values; run cellfm tokenize --encoding binned`);
    return new BinnedMlmObjective(sampling, ctx.vocabulary.pad, m.n_bins ?? BINNED.defaults.n_bins, t.mask_probability);
  }
  if (encoding === COUNTS.name && objective === "mlm") {
    if (m.values_kind !== "count") throw new Error(`${ctx.tokens}: masked value regression needs raw counts; run cellfm tokenize --encoding counts`);
    return new CountsMlmObjective(sampling, ctx.vocabulary.pad, t.mask_probability);
  }
  if (encoding === BINNED.name && objective === "denoise") {
    if (m.values_kind !== "bin" || !m.columns.some((c) => c.name === "counts")) {
      throw new Error(
        `${ctx.tokens}: training.objective denoise on binned tokens needs the bins and the raw counts per token (counts column); re-run cellfm tokenize --encoding binned with this cellfm version`,
      );
    }
    return new BinnedDenoiseObjective(sampling, ctx.vocabulary.pad, t.likelihood, t.noise, t.downsample, m.n_bins ?? BINNED.defaults.n_bins);
  }
  if (objective === "denoise") {
    if (m.values_kind !== "count") {
      throw new Error(`${ctx.tokens}: training.objective denoise needs raw counts and library sizes (values column of counts); run cellfm tokenize --encoding counts`);
    }
    return new DenoiseObjective(sampling, ctx.vocabulary.pad, t.likelihood, t.noise, t.downsample);
  }
  throw new Error(`${where}: no objective implementation for ${encoding} + ${objective}`);
}
