/**
 * Denoising (`training.objective: denoise`, scPRINT, Kalfon et al. 2025) on any encoding: the encoding's
 * {@link NoisyInput} turns each cell's downsampled counts into the model input (counts: the
 * downsampled counts; binned: their bins; rank: their rank order), and the head predicts the
 * **original** counts of every context gene (ZINB / NB / Poisson, `training.likelihood`); loss = mean
 * NLL over the context genes; baseline = a per-gene NB fitted on the training cells (below).
 */
import type { CellModel } from "../../model/bert.js";
import type { BertConfig } from "../../model/config.js";
import { nbNllF64, type Likelihood } from "../../model/likelihoods.js";
import { padRows } from "../../model/batch.js";
import type { Rng } from "../../rng.js";
import type { NoisyContext, NoisyInput } from "./inputs.js";
import type { BaselineResult, CollatedBatch, Objective, TrainCell } from "./types.js";

/** Denoising: an encoding's noisy input, the original counts as targets (see the module comment). */
export class DenoiseObjective implements Objective {
  readonly name = "denoise";
  readonly lossDescription = "negative log-likelihood of the original counts (nats per context gene)";
  readonly head: Record<string, unknown>;

  constructor(
    private readonly input: NoisyInput,
    private readonly padId: number,
    likelihood: Likelihood,
  ) {
    this.head = { likelihood, ...(input.head ?? {}) };
  }

  cellFromDataset(inputIds: Int32Array, values: Float32Array | undefined, nCounts: number | undefined, counts?: Float32Array): TrainCell {
    return this.input.cellFromDataset(inputIds, values, nCounts, counts);
  }

  contextLength(cell: TrainCell): number {
    return this.input.contextLength(cell);
  }

  collate(cells: readonly TrainCell[], rng: Rng): CollatedBatch {
    return this.scored(this.input.contexts(cells, rng));
  }

  /** The batch of noisy inputs scored against the original counts at every context position. */
  private scored(ctx: NoisyContext[]): CollatedBatch {
    const r = padRows(
      ctx.map((c) => c.ids),
      ctx.map((c) => c.values),
      this.padId,
      undefined,
      "collate",
    );
    const b: CollatedBatch = { batch: r.batch, seqLen: r.seqLen, inputIds: r.inputIds, attentionMask: r.attentionMask, values: r.values, positions: new Int32Array(0), realTokens: r.realTokens };
    const pos: number[] = [], tgt: number[] = [];
    const lib = new Float32Array(ctx.length);
    ctx.forEach((c, k) => {
      let s = 0;
      for (let i = 0; i < c.ids.length; i++) {
        pos.push(k * b.seqLen + i);
        tgt.push(c.orig[i]);
        s += c.orig[i];
      }
      // library size of the context: the original counts of the genes the model sees
      lib[k] = s;
    });
    b.positions = Int32Array.from(pos);
    b.targets = Float32Array.from(tgt);
    b.cellScalars = lib;
    return b;
  }

  /**
   * Per-gene NB fitted on the training cells: gene share p_g = Σ_c x_cg / Σ_c n_c (n_c the cell's
   * stored counts; raw counts, also for binned cells), dispersion by moments over all training cells (zeros included), θ_g = m²/(v − m)
   * clipped to [1e-3, 1e4] (1e4, i.e. ~Poisson, when v ≤ m). At a held-out position μ = p_g /
   * Σ_{g' in context} p_g' × the context library size — the model's form with gene-only logits.
   */
  baseline(trainCells: readonly TrainCell[], valBatches: readonly CollatedBatch[]): BaselineResult {
    let V = 1;
    for (const b of valBatches) for (const g of b.inputIds) V = Math.max(V, g + 1);
    for (const c of trainCells) for (const g of c.inputIds) V = Math.max(V, g + 1);
    const sum = new Float64Array(V), sq = new Float64Array(V);
    let tot = 0;
    for (const c of trainCells) {
      const raw = (c.counts ?? c.values)!; // binned cells: the raw counts, not the bins
      c.inputIds.forEach((g, i) => {
        const x = raw[i];
        sum[g] += x;
        sq[g] += x * x;
        tot += x;
      });
    }
    const nC = trainCells.length;
    const share = Float64Array.from(sum, (s) => (s + 1e-3) / (tot + 1e-3 * V));
    const theta = Float64Array.from(sum, (s, g) => {
      const m = s / nC, v = sq[g] / nC - m * m;
      return v > m ? Math.min(1e4, Math.max(1e-3, (m * m) / (v - m))) : 1e4;
    });
    let nll = 0, n = 0;
    for (const b of valBatches) {
      const L = b.seqLen;
      for (let k = 0; k < b.batch; k++) {
        let z = 0;
        for (let i = 0; i < L; i++) if (b.attentionMask[k * L + i] > 0) z += share[b.inputIds[k * L + i]];
        for (let j = 0; j < b.positions.length; j++) {
          const p = b.positions[j];
          if (Math.floor(p / L) !== k) continue;
          const g = b.inputIds[p];
          nll += nbNllF64(b.targets![j], (share[g] / z) * b.cellScalars![k], theta[g]);
          n++;
        }
      }
    }
    return {
      name: "per_gene_nb",
      loss: n ? nll / n : NaN,
      description:
        "per-gene NB fitted on the training cells (gene share of the counts, moment dispersion); mean = share / context share sum x the context library size; NB NLL at the same context genes",
    };
  }

  initOutputBias(_model: CellModel, _cells: readonly TrainCell[], mode: string): void {
    if (mode === "unigram") throw new Error("training.init_output_bias: unigram is for objective mlm; denoise starts from zeros");
  }

  headFlops(config: BertConfig, batch: CollatedBatch): number {
    const H = config.hidden_size;
    return batch.positions.length * (2 * H * H + 6 * H);
  }
}
