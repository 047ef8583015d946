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
 * - {@link CountsMlmObjective} (`scprint-counts` + `mlm`): masked value regression; each context
 *   value is masked with probability `mask_probability` (the count encoder's learned mask vector
 *   replaces it), the head predicts log1p(count), loss = squared error at the masked positions;
 *   baseline = the training cells' per-gene mean of log1p(count) (`init_output_bias: unigram` starts
 *   the head's per-gene offset there).
 * - {@link BinnedDenoiseObjective} (`scgpt-binned` + `denoise`): the cell's raw counts (the binned
 *   dataset's `counts` column) are downsampled and re-binned (scGPT binning of the downsampled
 *   counts); the head predicts the original counts as for `counts` + `denoise`.
 *
 * All choose each cell's context with `src/encoding/gene-set.ts` (`data.max_length` genes: all expressed
 * genes when fewer, else a random subset drawn from the training stream, so a new one each time the
 * cell comes round; `training.pad_with_unexpressed` adds unexpressed measured genes with value 0).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { CellModel } from "../../model/bert.js";
import type { BertConfig } from "../../model/config.js";
import { nbNllF64, type Likelihood } from "../../model/likelihoods.js";
import type { Rng } from "../../rng.js";
import { downsampleCounts, type DownsampleMethod } from "../downsample.js";
import { sampleGenes, type GeneSampleOptions } from "../../encoding/gene-set.js";
import { padRows } from "../../model/batch.js";
import { rankValueOrder } from "../../tokenize/geneformer.js";
import { binCounts } from "../../tokenize/binning.js";
import type { BaselineResult, CollatedBatch, Objective, TrainCell } from "./types.js";

/** Pad per-cell (ids, values) into a collated batch; `values` after masking/noise. */
function pad(cells: { ids: Int32Array; values: Float32Array }[], padId: number): CollatedBatch {
  const p = padRows(
    cells.map((c) => c.ids),
    cells.map((c) => c.values),
    padId,
    undefined,
    "collate",
  );
  return { batch: p.batch, seqLen: p.seqLen, inputIds: p.inputIds, attentionMask: p.attentionMask, values: p.values, positions: new Int32Array(0), realTokens: p.realTokens };
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

  cellFromDataset(inputIds: Int32Array, values: Float32Array | undefined, nCounts: number | undefined, counts?: Float32Array): TrainCell {
    if (!values) throw new Error(`training.objective ${this.name} needs the dataset's values column (${this.needs})`);
    return counts ? { inputIds, values, nCounts, counts } : { inputIds, values, nCounts };
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

/**
 * Masked value regression on raw counts (`scprint-counts` + `mlm`): masked positions' inputs are the
 * <mask> value (−1: the count encoder's mask vector), targets log1p(original count).
 */
export class CountsMlmObjective extends ValueObjective {
  readonly name = "mlm";
  readonly lossDescription = "masked-value squared error of log1p(count) (per masked value)";
  readonly head: Record<string, unknown> = { target: "log1p" };

  constructor(sampling: GeneSampleOptions, padId: number, private readonly maskProbability: number) {
    super(sampling, padId, "cellfm tokenize --encoding counts");
  }

  collate(cells: readonly TrainCell[], rng: Rng): CollatedBatch {
    const ctx = cells.map((c) => this.context(c, rng));
    const b = pad(ctx, this.padId);
    const pos: number[] = [], tgt: number[] = [];
    ctx.forEach((c, k) => {
      for (let i = 0; i < c.ids.length; i++) {
        if (rng() < this.maskProbability) {
          pos.push(k * b.seqLen + i);
          tgt.push(Math.log1p(c.values[i]));
        }
      }
    });
    if (pos.length === 0) {
      const k = Math.floor(rng() * ctx.length), i = Math.floor(rng() * ctx[k].ids.length);
      pos.push(k * b.seqLen + i);
      tgt.push(Math.log1p(ctx[k].values[i]));
    }
    for (const p of pos) b.values![p] = -1; // the <mask> value
    b.positions = Int32Array.from(pos);
    b.targets = Float32Array.from(tgt);
    return b;
  }

  /** Per-gene mean of log1p(count) over the training cells' stored (expressed) values; the global mean for unseen genes. */
  private geneMeans(trainCells: readonly TrainCell[], minSize: number): { mean: Float64Array; global: number } {
    let V = minSize;
    for (const c of trainCells) for (const g of c.inputIds) V = Math.max(V, g + 1);
    const sum = new Float64Array(V), n = new Float64Array(V);
    let tot = 0, cnt = 0;
    for (const c of trainCells) {
      c.inputIds.forEach((g, i) => {
        const y = Math.log1p(c.values![i]);
        sum[g] += y;
        n[g]++;
        tot += y;
        cnt++;
      });
    }
    const global = cnt ? tot / cnt : 0;
    return { mean: Float64Array.from(sum, (s, g) => (n[g] > 0 ? s / n[g] : global)), global };
  }

  baseline(trainCells: readonly TrainCell[], valBatches: readonly CollatedBatch[]): BaselineResult {
    let V = 1;
    for (const b of valBatches) for (const g of b.inputIds) V = Math.max(V, g + 1);
    const { mean, global } = this.geneMeans(trainCells, V);
    let sse = 0, sseGlobal = 0, n = 0;
    for (const b of valBatches) {
      b.positions.forEach((p, j) => {
        const y = b.targets![j];
        sse += (y - mean[b.inputIds[p]]) ** 2;
        sseGlobal += (y - global) ** 2;
        n++;
      });
    }
    return {
      name: "per_gene_mean",
      loss: n ? sse / n : NaN,
      description:
        "per-gene mean: each masked value predicted by its gene's mean log1p(count) over the training cells that express it (the global mean for genes no training cell expresses); squared error at the same fixed mask",
      extra: { global_mean_loss: n ? sseGlobal / n : NaN },
    };
  }

  initOutputBias(model: CellModel, trainCells: readonly TrainCell[], mode: string): void {
    if (mode !== "unigram") return;
    const gb = model.weights.get("cls.values.gene_bias");
    if (!gb) throw new Error("init_output_bias: the model has no cls.values.gene_bias");
    const V = gb.shape[0];
    const { mean } = this.geneMeans(trainCells, V);
    if (mean.length > V) throw new Error(`init_output_bias: token id ${mean.length - 1} outside the model's vocabulary (${V})`);
    tf.tidy(() => gb.assign(tf.tensor1d(Float32Array.from(mean))));
  }

  headFlops(config: BertConfig, batch: CollatedBatch): number {
    const H = config.hidden_size;
    return batch.positions.length * (2 * H * H + 2 * H);
  }
}

/**
 * Denoising on scGPT-binned tokens (`scgpt-binned` + `denoise`): each time a cell is used, its raw
 * counts (the dataset's `counts` column, all its stored genes) are downsampled as for `counts`, the
 * downsampled nonzero counts are binned again over the cell (scGPT's per-cell quantile bins of
 * log1p(count / total × 10⁴), ties spread with the training generator; genes downsampled to 0 get
 * bin 0 and stay in the cell), then the context is chosen; the head predicts the original counts.
 */
export class BinnedDenoiseObjective extends DenoiseObjective {
  constructor(
    sampling: GeneSampleOptions,
    padId: number,
    likelihood: Likelihood,
    noise: number,
    method: DownsampleMethod,
    private readonly nBins: number,
  ) {
    super(sampling, padId, likelihood, noise, method, "cellfm tokenize --encoding binned (this cellfm version stores the raw counts)");
    (this.head as Record<string, unknown>).n_bins = nBins;
  }

  override cellFromDataset(inputIds: Int32Array, values: Float32Array | undefined, nCounts: number | undefined, counts?: Float32Array): TrainCell {
    if (!counts) {
      throw new Error("training.objective denoise on binned tokens needs the raw counts per token (the dataset's counts column); re-run cellfm tokenize --encoding binned with this cellfm version");
    }
    return super.cellFromDataset(inputIds, values, nCounts, counts);
  }

  override collate(cells: readonly TrainCell[], rng: Rng): CollatedBatch {
    const ctx: { ids: Int32Array; values: Float32Array; orig: Float32Array }[] = [];
    for (const c of cells) {
      const raw = c.counts!;
      const ds = downsampleCounts(raw, this.noise, this.method, rng);
      const nz: number[] = [];
      let total = 0;
      for (let i = 0; i < ds.length; i++) if (ds[i] > 0) (nz.push(i), (total += ds[i]));
      const bins = new Float32Array(ds.length);
      if (nz.length) {
        const b = binCounts(Float64Array.from(nz, (i) => ds[i]), total, rng, this.nBins);
        nz.forEach((i, k) => (bins[i] = b[k]));
      }
      // the context: positions into the cell (padding genes, if any, follow with value and count 0)
      const where = Float32Array.from({ length: raw.length }, (_, i) => i);
      const s = sampleGenes(c.inputIds, where, this.sampling, rng);
      const values = new Float32Array(s.ids.length), orig = new Float32Array(s.ids.length);
      for (let j = 0; j < s.nExpressed; j++) {
        values[j] = bins[s.values[j]];
        orig[j] = raw[s.values[j]];
      }
      ctx.push({ ids: s.ids, values, orig });
    }
    return this.scored(ctx);
  }
}
