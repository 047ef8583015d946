/**
 * Masked modelling (`training.objective: mlm`) on any encoding: each batch draws every cell's
 * context (the encoding's {@link CellReader}), and the encoding's {@link MaskedTarget} masks it and
 * says what a masked position predicts (rank: the gene token, Geneformer; binned: the bin, scGPT;
 * counts: log1p(count)), its baseline, output-bias initialisation and head FLOPs.
 */
import type { CellModel } from "../../model/bert.js";
import type { BertConfig } from "../../model/config.js";
import type { Rng } from "../../rng.js";
import type { CellReader } from "./inputs.js";
import type { MaskedTarget } from "./targets.js";
import type { BaselineResult, CollatedBatch, Objective, TrainCell } from "./types.js";

/** Masked modelling: an encoding's cells and target (see the module comment). */
export class MaskedObjective implements Objective {
  readonly name = "mlm";
  readonly lossDescription: string;
  readonly head?: Record<string, unknown>;
  readonly labelIsGene: boolean;

  constructor(
    private readonly cells: CellReader,
    private readonly target: MaskedTarget,
    private readonly padId: number,
  ) {
    this.lossDescription = target.lossDescription;
    this.labelIsGene = target.labelIsGene === true;
    if (target.head) this.head = target.head;
  }

  cellFromDataset(inputIds: Int32Array, values: Float32Array | undefined, nCounts: number | undefined, counts?: Float32Array): TrainCell {
    return this.cells.cellFromDataset(inputIds, values, nCounts, counts);
  }

  contextLength(cell: TrainCell): number {
    return this.cells.contextLength(cell);
  }

  collate(cells: readonly TrainCell[], rng: Rng): CollatedBatch {
    const contexts = cells.map((c) => this.cells.draw(c, rng));
    return this.target.collate(contexts, this.padId, rng);
  }

  baseline(trainCells: readonly TrainCell[], valBatches: readonly CollatedBatch[]): BaselineResult {
    return this.target.baseline(trainCells, valBatches);
  }

  initOutputBias(model: CellModel, trainCells: readonly TrainCell[], mode: string): void {
    this.target.initOutputBias(model, trainCells, mode);
  }

  headFlops(config: BertConfig, batch: CollatedBatch): number {
    return this.target.headFlops(config, batch);
  }
}
