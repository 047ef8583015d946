/**
 * The interface every pretraining objective implements (`masked.ts`, `denoise.ts`). The training loop, the
 * data-parallel code and the gradient workers only talk to this interface: an objective turns
 * cells into collated batches (inputs + loss targets as plain arrays), knows its baseline, how to
 * initialise the output bias and the FLOPs of its head. The loss itself is computed by the model's
 * head (`src/model/bert.ts` `Head`), from the batch's {@link LossTargets}.
 */
import type { PaddedRows } from "../../model/batch.js";
import type { LossTargets } from "../../model/bert.js";
import type { CellTargets } from "../../model/cell-heads.js";
import type { BertConfig } from "../../model/config.js";
import type { CellModel } from "../../model/bert.js";
import type { Rng } from "../../rng.js";

/** One training cell as the loop holds it (already truncated to the model's length). */
export interface TrainCell {
  /** Token ids, int32 `[length]` (special tokens included when the encoding has them). */
  inputIds: Int32Array;
  /** Per-token values `[length]` (bin index or raw count), for encodings that carry them. */
  values?: Float32Array;
  /** The cell's total count (library size), when the dataset records it. */
  nCounts?: number;
  /** `binned` datasets: the raw count of each token `[length]` (the dataset's `counts` column). */
  counts?: Float32Array;
  /** Cell-level objectives: the bottleneck's target, the cell's counts of its genes (columns `idx`, counts `val`), their sum and, with a batch key, its batch index. */
  cellTarget?: { idx: Int32Array; val: Float32Array; lib: number; batch?: number };
  /** Cell-level objectives: the `mvc` value of each of the cell's stored genes (`ids`, aligned `target`). */
  mvc?: { ids: Int32Array; target: Float32Array };
  /** Contrastive: the cell as its views are drawn from (the encoding's denoising input reads it: every stored gene with its count). */
  viewCell?: TrainCell;
}

/**
 * A collated micro-batch as flat typed arrays (row-major `[batch, seqLen]`), right-padded; plain
 * data, so it can be split by cells ({@link sliceCells}) and posted to a worker thread.
 */
export interface CollatedBatch extends PaddedRows, LossTargets, CellTargets {
  /** Input ids (after masking, if any), int32 `[batch * seqLen]`; `seqLen` = the longest cell. */
  inputIds: Int32Array;
  /** Input values (after masking/noise), float32 `[batch * seqLen]`, for encodings that carry them. */
  values?: Float32Array;
}

/** A baseline loss on the validation batches, written to eval.json next to the model's loss. */
export interface BaselineResult {
  /** Short name, e.g. "unigram". */
  name: string;
  /** Mean loss (nats per scored position) of the baseline at the same positions. */
  loss: number;
  /** How the baseline is defined (one sentence, for eval.json). */
  description: string;
  /** Extra eval.json fields (kept for compatibility, e.g. `unigram_loss`). */
  extra?: Record<string, number>;
}

/** A pretraining objective (see the module comment). */
export interface Objective {
  /** `training.objective` value ("mlm", "denoise"). */
  readonly name: string;
  /** What the loss measures, for logs (e.g. "masked-token cross-entropy"). */
  readonly lossDescription: string;
  /**
   * True when a scored position's gene is its label, not its input id (masked gene tokens: the input
   * there is `<mask>` or a random token); held-out-gene evaluation then selects positions by label.
   */
  readonly labelIsGene?: boolean;
  /** Head options recorded in config.json `cellfm.head` (e.g. `{ likelihood: "zinb" }`). */
  readonly head?: Record<string, unknown>;
  /**
   * One training cell from the dataset's columns (rank: truncated to the context; value encodings:
   * kept whole, the context is sampled at collate time).
   */
  cellFromDataset(inputIds: Int32Array, values: Float32Array | undefined, nCounts: number | undefined, counts?: Float32Array, index?: number): TrainCell;
  /** Tokens the cell has in a batch (for length-grouped batch planning). */
  contextLength(cell: TrainCell): number;
  /**
   * Collate cells into one batch, drawing masks / noise from `rng` (advanced by the draws).
   * @throws Error for an empty batch or an empty cell
   */
  collate(cells: readonly TrainCell[], rng: Rng): CollatedBatch;
  /** Baseline loss at the validation batches' positions, from the training cells. */
  baseline(trainCells: readonly TrainCell[], valBatches: readonly CollatedBatch[]): BaselineResult;
  /** Set the head's output bias from the training cells (`training.init_output_bias`), if it has one. */
  initOutputBias(model: CellModel, trainCells: readonly TrainCell[], mode: string): void;
  /** Forward FLOPs of the head for one batch (3 × for training is applied by the caller). */
  headFlops(config: BertConfig, batch: CollatedBatch): number;
  /** Extra fields of the model spec (config.json `cellfm`), e.g. the cell block of cell-level objectives. */
  readonly spec?: Record<string, unknown>;
}
