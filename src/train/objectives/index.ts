/**
 * The registry of pretraining objectives: one implementation per objective (`./masked.ts`,
 * `./denoise.ts`), parameterised by the encoding (`src/encoding/`: how it reads cells, what a masked
 * position predicts, its denoising input). The trainable encoding × objective pairs are the encodings'
 * models; `cellfm train` and `cellfm compare` validate their configs against {@link SUPPORTED_PAIRS}.
 */
import { encodingByName, ENCODINGS, type Encoding } from "../../encoding/index.js";
import type { TokenizedManifest } from "../../data/tokenized.js";
import type { Vocabulary } from "../../tokenize/dictionaries.js";
import type { TrainingSection } from "../config.js";
import { DenoiseObjective } from "./denoise.js";
import { MaskedObjective } from "./masked.js";
import { OBJECTIVE_NAMES, type ObjectiveName } from "./names.js";
import type { Objective } from "./types.js";

export type { BaselineResult, CollatedBatch, Objective, TrainCell } from "./types.js";
export { OBJECTIVE_NAMES, type ObjectiveName } from "./names.js";

/** One supported pair: the tokenized dataset's `encoding` and `training.objective`. */
export interface ObjectivePair {
  encoding: string;
  objective: string;
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

/** Each objective, built from an encoding's parts. */
const OBJECTIVES: Record<ObjectiveName, (enc: Encoding, ctx: ObjectiveContext, where: string) => Objective> = {
  mlm(enc, ctx, where) {
    const { cells, target } = enc.masked(ctx, where);
    return new MaskedObjective(cells, target, ctx.vocabulary.pad);
  },
  denoise: (enc, ctx, where) => new DenoiseObjective(enc.noisy(ctx, where), ctx.vocabulary.pad, ctx.training.likelihood),
};

/** Every encoding × objective pair cellfm can train: each encoding's models (`src/encoding/`), by objective. */
export const SUPPORTED_PAIRS: readonly ObjectivePair[] = OBJECTIVE_NAMES.flatMap((objective) =>
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

/**
 * The objective for a pair.
 * @throws Error naming both when the pair is not supported, or naming the dataset when it lacks what
 *   the objective reads (bins, raw counts, measured genes).
 */
export function makeObjective(encoding: string, objective: string, ctx: ObjectiveContext, where = "config"): Objective {
  assertSupportedPair(encoding, objective, where);
  return OBJECTIVES[objective as ObjectiveName](encodingByName(encoding)!, ctx, where);
}
