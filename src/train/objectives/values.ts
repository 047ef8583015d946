/**
 * Objectives on the value-keeping encodings (issue 9 §3):
 *
 * - {@link BinnedMlmObjective} (`scgpt-binned` + `mlm`): each context position is masked with
 *   probability `mask_probability` (its value replaced by the <mask> value; the gene identity stays,
 *   as scGPT masks values, not genes); loss = cross-entropy over the n_bins bins at the masked
 *   positions; baseline = the training cells' bin frequencies (add-one smoothing).
 * - {@link DenoiseObjective} (`scprint-counts` + `denoise`, scPRINT): the input counts are downsampled
 *   (`../downsample.ts`: scPRINT's method or binomial thinning, `training.noise`), the head predicts the
 *   **original** counts of every context gene (ZINB / NB / Poisson, `training.likelihood`); loss = mean
 *   NLL over the context genes; baseline = a per-gene NB fitted on the training cells (below).
 *
 * Both choose each cell's context with `../gene-sampling.ts` (`data.max_length` genes: all expressed
 * genes when fewer, else a random subset drawn from the training stream, so a new one each time the
 * cell comes round; `training.pad_with_unexpressed` adds unexpressed measured genes with value 0).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { CellModel } from "../../model/bert.js";
import type { BertConfig } from "../../model/config.js";
import { nbNllF64, type Likelihood } from "../../model/likelihoods.js";
import type { Rng } from "../../rng.js";
import { downsampleCounts, type DownsampleMethod } from "../downsample.js";
import { sampleGenes, type GeneSampleOptions } from "../gene-sampling.js";
import { rankValueOrder } from "../../tokenize/geneformer.js";
import type { BaselineResult, CollatedBatch, Objective, TrainCell } from "./types.js";

/** Pad per-cell (ids, values) into a collated batch; `values` after masking/noise. */
function pad(cells: { ids: Int32Array; values: Float32Array }[], padId: number): CollatedBatch {
  if (cells.length === 0) throw new Error("collate: empty batch");
  let seqLen = 0, realTokens = 0;
  for (const c of cells) {
    if (c.ids.length === 0) throw new Error("collate: a cell has no tokens");
    seqLen = Math.max(seqLen, c.ids.length);
    realTokens += c.ids.length;
  }
  const B = cells.length;
  const inputIds = new Int32Array(B * seqLen).fill(padId);
  const attentionMask = new Float32Array(B * seqLen);
  const values = new Float32Array(B * seqLen);
  cells.forEach((c, b) => {
    inputIds.set(c.ids, b * seqLen);
    values.set(c.values, b * seqLen);
    attentionMask.fill(1, b * seqLen, b * seqLen + c.ids.length);
  });
  return { batch: B, seqLen, inputIds, attentionMask, values, positions: new Int32Array(0), realTokens };
}

/** Shared: dataset cells with values, sampled to a context per draw. */
abstract class ValueObjective implements Objective {
  abstract readonly name: string;
  abstract readonly lossDescription: string;
  abstract readonly head: Record<string, unknown>;

  constructor(
    readonly sampling: GeneSampleOptions,
    protected readonly padId: number,
    private readonly needs: string,
  ) {}

  cellFromDataset(inputIds: Int32Array, values: Float32Array | undefined, nCounts: number | undefined): TrainCell {
    if (!values) throw new Error(`training.objective ${this.name} needs the dataset's values column (${this.needs})`);
    return { inputIds, values, nCounts };
  }

  contextLength(cell: TrainCell): number {
    return this.sampling.padWithUnexpressed ? this.sampling.maxLength : Math.min(cell.inputIds.length, this.sampling.maxLength);
  }

  protected context(cell: TrainCell, rng: Rng): { ids: Int32Array; values: Float32Array } {
    const s = sampleGenes(cell.inputIds, cell.values!, this.sampling, rng);
    return { ids: s.ids, values: s.values };
  }

  abstract collate(cells: readonly TrainCell[], rng: Rng): CollatedBatch;
  abstract baseline(trainCells: readonly TrainCell[], valBatches: readonly CollatedBatch[]): BaselineResult;
  abstract initOutputBias(model: CellModel, trainCells: readonly TrainCell[], mode: string): void;
  abstract headFlops(config: BertConfig, batch: CollatedBatch): number;
}

/** Masked bin prediction on scGPT-binned values. */
export class BinnedMlmObjective extends ValueObjective {
  readonly name = "mlm";
  readonly lossDescription = "masked-bin cross-entropy (nats per masked value)";
  readonly head: Record<string, unknown>;

  constructor(sampling: GeneSampleOptions, padId: number, private readonly nBins: number, private readonly maskProbability: number) {
    super(sampling, padId, "cellfm tokenize --encoding binned");
    this.head = { n_bins: nBins };
  }

  collate(cells: readonly TrainCell[], rng: Rng): CollatedBatch {
    const ctx = cells.map((c) => this.context(c, rng));
    const b = pad(ctx, this.padId);
    const pos: number[] = [], lab: number[] = [];
    ctx.forEach((c, k) => {
      for (let i = 0; i < c.ids.length; i++) {
        if (rng() < this.maskProbability) {
          pos.push(k * b.seqLen + i);
          lab.push(Math.round(c.values[i]));
        }
      }
    });
    if (pos.length === 0) {
      const k = Math.floor(rng() * ctx.length), i = Math.floor(rng() * ctx[k].ids.length);
      pos.push(k * b.seqLen + i);
      lab.push(Math.round(ctx[k].values[i]));
    }
    for (const p of pos) b.values![p] = -1; // the <mask> value
    b.positions = Int32Array.from(pos);
    b.labels = Int32Array.from(lab);
    return b;
  }

  private logFreq(trainCells: readonly TrainCell[]): Float32Array {
    const n = new Float64Array(this.nBins);
    let total = 0;
    for (const c of trainCells) {
      for (const v of c.values!) {
        const k = Math.round(v);
        if (k < 0 || k >= this.nBins) throw new Error(`bin ${v} outside [0, ${this.nBins})`);
        n[k]++;
        total++;
      }
    }
    return Float32Array.from(n, (x) => Math.log((x + 1) / (total + this.nBins)));
  }

  baseline(trainCells: readonly TrainCell[], valBatches: readonly CollatedBatch[]): BaselineResult {
    const lp = this.logFreq(trainCells);
    let sum = 0, n = 0;
    for (const b of valBatches) for (const l of b.labels ?? []) (sum -= lp[l]), n++;
    return {
      name: "bin_frequency",
      loss: n ? sum / n : NaN,
      description:
        "bin frequency: each masked value predicted from the frequency of its bin among the training cells' stored values (add-one smoothing over the bins), same fixed mask",
    };
  }

  initOutputBias(model: CellModel, trainCells: readonly TrainCell[], mode: string): void {
    if (mode !== "unigram") return;
    const bias = model.weights.get("cls.bins.bias");
    if (!bias) throw new Error("init_output_bias: the model has no cls.bins.bias");
    tf.tidy(() => bias.assign(tf.tensor1d(this.logFreq(trainCells))));
  }

  headFlops(config: BertConfig, batch: CollatedBatch): number {
    const H = config.hidden_size;
    return batch.positions.length * (2 * H * H + 2 * H * this.nBins);
  }
}

/** scPRINT denoising: downsampled counts in, the original counts' distribution out. */
export class DenoiseObjective extends ValueObjective {
  readonly name = "denoise";
  readonly lossDescription = "negative log-likelihood of the original counts (nats per context gene)";
  readonly head: Record<string, unknown>;

  constructor(
    sampling: GeneSampleOptions,
    padId: number,
    likelihood: Likelihood,
    protected readonly noise: number,
    protected readonly method: DownsampleMethod,
    needs = "cellfm tokenize --encoding counts",
  ) {
    super(sampling, padId, needs);
    this.head = { likelihood };
  }

  collate(cells: readonly TrainCell[], rng: Rng): CollatedBatch {
    const ctx = cells.map((c) => this.context(c, rng));
    return this.scored(ctx.map((c) => ({ ids: c.ids, values: downsampleCounts(c.values, this.noise, this.method, rng), orig: c.values })));
  }

  /** The batch of noisy inputs scored against the original counts at every context position. */
  protected scored(ctx: { ids: Int32Array; values: Float32Array; orig: Float32Array }[]): CollatedBatch {
    const b = pad(ctx, this.padId);
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
   * stored counts), dispersion by moments over all training cells (zeros included), θ_g = m²/(v − m)
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
      c.inputIds.forEach((g, i) => {
        const x = c.values![i];
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

/**
 * Denoising on rank-value tokens (issue 9 §3: "for rank, the ranks come from the downsampled
 * counts"): the cell's stored genes are downsampled, genes left at 0 drop out, the rest are
 * re-ranked by downsampled count / gene median (Geneformer's order; the per-cell n_counts scaling
 * does not change it) and cut to `max_length`; the head predicts the original counts of the genes
 * in the input (mean = softmax over them × their original total).
 */
export class RankDenoiseObjective extends DenoiseObjective {
  /** @param medians nonzero median per token id (Geneformer's gene_median file; 1 where unknown) */
  constructor(
    maxLength: number,
    padId: number,
    likelihood: Likelihood,
    noise: number,
    method: DownsampleMethod,
    private readonly medians: Float64Array,
  ) {
    super({ maxLength }, padId, likelihood, noise, method, "cellfm tokenize --encoding rank (this cellfm version stores the counts)");
  }

  override collate(cells: readonly TrainCell[], rng: Rng): CollatedBatch {
    const ctx: { ids: Int32Array; values: Float32Array; orig: Float32Array }[] = [];
    for (const c of cells) {
      const ds = downsampleCounts(c.values!, this.noise, this.method, rng);
      const keep: number[] = [];
      for (let i = 0; i < ds.length; i++) if (ds[i] > 0) keep.push(i);
      if (keep.length === 0) keep.push(0); // every gene dropped: keep the top one (its input value is 0)
      const toks = Int32Array.from(keep, (i) => c.inputIds[i]);
      const key = Float64Array.from(keep, (i) => ds[i] / (this.medians[c.inputIds[i]] || 1));
      const order = rankValueOrder(toks, key, this.sampling.maxLength);
      const where = new Map<number, number>();
      keep.forEach((i) => where.set(c.inputIds[i], i));
      ctx.push({
        ids: order,
        values: Float32Array.from(order, (t) => ds[where.get(t)!]),
        orig: Float32Array.from(order, (t) => c.values![where.get(t)!]),
      });
    }
    return this.scored(ctx);
  }

  override contextLength(cell: TrainCell): number {
    return Math.min(cell.inputIds.length, this.sampling.maxLength);
  }
}
