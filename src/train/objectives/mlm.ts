/**
 * Masked-language-model objective on Geneformer rank-value tokens (reference-spec §1b): cells are
 * masked as HF `DataCollatorForLanguageModeling` does (`../masking.ts`), the head predicts the
 * masked gene tokens (cross-entropy over the vocabulary), the baseline is the unigram gene
 * frequency, and the output bias can start at the log unigram frequencies.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { CellModel } from "../../model/bert.js";
import type { BertConfig } from "../../model/config.js";
import type { Rng } from "../../rng.js";
import { mlmHeadFlops } from "../flops.js";
import { collateMlm, type MaskingOptions } from "../masking.js";
import { truncateCell } from "../../encoding/rank.js";
import type { BaselineResult, CollatedBatch, Objective, TrainCell } from "./types.js";

/**
 * Token counts over cells, `[vocabSize]` float64, and their total.
 * @throws Error when a token id is outside [0, vocabSize).
 */
export function tokenCounts(cells: Iterable<Int32Array>, vocabSize: number): { counts: Float64Array; total: number } {
  const counts = new Float64Array(vocabSize);
  let total = 0;
  for (const c of cells) {
    for (const t of c) {
      if (t < 0 || t >= vocabSize) throw new Error(`token id ${t} outside [0, ${vocabSize})`);
      counts[t]++;
    }
    total += c.length;
  }
  return { counts, total };
}

/** Log unigram probabilities with add-one (Laplace) smoothing, `[vocabSize]` float32. */
export function logUnigram(counts: Float64Array, total: number): Float32Array {
  const V = counts.length;
  const out = new Float32Array(V);
  const denom = total + V;
  for (let i = 0; i < V; i++) out[i] = Math.log((counts[i] + 1) / denom);
  return out;
}

/**
 * Unigram baseline: predict every masked gene from its frequency among the training cells' tokens,
 * with add-one (Laplace) smoothing over the vocabulary; returns the mean cross-entropy (nats) of the
 * labels at the same fixed masked positions.
 */
export function unigramLoss(trainCells: Iterable<Int32Array>, vocabSize: number, batches: readonly { labels?: Int32Array }[]): number {
  const { counts, total } = tokenCounts(trainCells, vocabSize);
  const logp = logUnigram(counts, total);
  let sum = 0;
  let n = 0;
  for (const b of batches) {
    for (const lab of b.labels ?? []) {
      sum -= logp[lab];
      n++;
    }
  }
  return n > 0 ? sum / n : NaN;
}

/** Masked gene-token prediction on rank-value tokens (Geneformer). */
export class RankMlmObjective implements Objective {
  readonly name = "mlm";
  readonly lossDescription = "masked-token cross-entropy (nats per masked gene)";

  /**
   * @param masking vocabulary size, mask probability and the `<pad>`/`<mask>` ids (from the dataset's dictionary)
   * @param context longest cell (tokens kept: the highest-ranked) and the `<eos>` id kept last (V2)
   */
  constructor(
    private readonly masking: MaskingOptions,
    private readonly context: { maxLength: number; eosId?: number },
  ) {}

  cellFromDataset(inputIds: Int32Array): TrainCell {
    return { inputIds: truncateCell(inputIds, this.context.maxLength, this.context.eosId) };
  }

  contextLength(cell: TrainCell): number {
    return cell.inputIds.length;
  }

  collate(cells: readonly TrainCell[], rng: Rng): CollatedBatch {
    return collateMlm(
      cells.map((c) => c.inputIds),
      rng,
      this.masking,
    );
  }

  baseline(trainCells: readonly TrainCell[], valBatches: readonly CollatedBatch[]): BaselineResult {
    const loss = unigramLoss(
      trainCells.map((c) => c.inputIds),
      this.masking.vocabSize,
      valBatches,
    );
    return {
      name: "unigram",
      loss,
      description:
        "unigram: each masked gene predicted from its frequency among the training cells' tokens (add-one smoothing over the vocabulary), same fixed mask",
      extra: { unigram_loss: loss },
    };
  }

  initOutputBias(model: CellModel, trainCells: readonly TrainCell[], mode: string): void {
    if (mode !== "unigram") return;
    const bias = model.weights.get("cls.predictions.bias");
    if (!bias) throw new Error("init_output_bias: the model has no cls.predictions.bias");
    const { counts, total } = tokenCounts(
      trainCells.map((c) => c.inputIds),
      this.masking.vocabSize,
    );
    tf.tidy(() => bias.assign(tf.tensor1d(logUnigram(counts, total), "float32")));
  }

  headFlops(config: BertConfig, batch: CollatedBatch): number {
    return mlmHeadFlops(config, batch.positions.length);
  }
}
