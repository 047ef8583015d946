/**
 * Cell-level objectives added to a token objective (issue 17 §3, `training.objectives`): the
 * {@link CellObjective} wraps the encoding's token objective (mlm, denoise) and adds the targets of
 * the cell heads (`src/model/cell-heads.ts`) to each collated batch; the model's `CompositeHead`
 * sums the weighted terms.
 *
 * - `bottleneck` (scVI / scPRINT): the decoder's genes are the dataset's `training.bottleneck.genes`
 *   highly variable genes (Seurat flavour, `src/assess/hvg.ts`, over every tokenized cell's gene
 *   tokens and counts, as scanpy runs on the whole AnnData before scVI), recorded in the checkpoint
 *   (`cellfm.cell.bottleneck.genes`, token ids). A cell's target is its raw counts of those genes and
 *   its library size their sum. The counts come from the tokens: rank tokens and counts tokens carry
 *   every expressed gene's count, binned tokens their `counts` column. Tokens made with
 *   `--top-genes` keep only a few genes per cell, so they are refused.
 *   With `training.bottleneck.batch_key` (scvi-tools' `batch_key`), the decoder also reads the cell's
 *   batch (a one-hot of that obs column, carried in the tokenized dataset: `cellfm tokenize --carry`),
 *   so the batch's effect on the counts is the decoder's to explain, not the cell embedding's. The
 *   categories (sorted) are recorded in the checkpoint (`cellfm.cell.bottleneck.batches`).
 * - `mvc` (scGPT GEPC / MVC, `src/model/cell-heads.ts` `MvcHead`): each scored gene's value predicted
 *   from the cell embedding and the gene's identity. The scored positions are the token objective's
 *   (as scGPT scores the masked positions, `scgpt/trainer.py@cebd6fa`: `criterion_gep_gepc(
 *   output_dict["mvc_output"], target_values, masked_positions)`): mlm → the masked genes, denoise →
 *   every context gene; without a token term (weight 0) every context gene, which the model reads
 *   unmasked, so the cell embedding must carry every gene's value (an autoencoder through one vector).
 *   The gene of a masked gene token is its label. The value is the encoding's (`Encoding.mvcTarget`):
 *   binned → the bin (scGPT), counts → log1p(count), rank → log1p(count / n_counts × 10⁴); a padding
 *   gene the cell does not express (`training.pad_with_unexpressed`) has value 0; special tokens are
 *   never scored. Baseline: each gene's mean value over the training cells that express it (the
 *   global mean for genes none expresses), squared error at the same positions.
 * - With the token objective's weight 0 (e.g. `{ bottleneck: 1 }`), cells are collated without
 *   masking or noise (the model reads the cell as it is), and every cell counts as one loss unit
 *   (its first token is its loss position).
 *
 * - `contrastive` (SimCLR NT-Xent / scPRINT, `src/model/cell-heads.ts` `ContrastiveHead`): each cell
 *   gets two views, each one draw of the encoding's denoising input (`src/encoding/*.ts` `noisy`: the
 *   cell's counts downsampled at `training.contrastive.noise` with `training.contrastive.downsample`;
 *   rank re-ranks every stored gene's downsampled count and truncates, binned re-bins, value
 *   encodings draw a random context of `max_length` genes per view), drawn from the run's generator
 *   after the token objective's draws (resume is exact). The views are rows of the same batch:
 *   `[block 0 | first views | second views]` (`cellBlocks` 3), block 0 being the token objective's
 *   batch (or the plain cells for the bottleneck); with neither, block 0 is the first views
 *   (`cellBlocks` 2) and each cell's loss position its first view's first token. Negatives come from
 *   the cell's group (`training.contrastive.group` consecutive cells, default the micro-batch),
 *   which data-parallel shards never split (`src/train/parallel.ts`).
 *
 * The bottleneck's baseline (eval.json): a per-gene negative binomial with mean = the gene's share of
 * the training cells' counts × the cell's library size, and a method-of-moments dispersion per gene;
 * the contrastive term's: embeddings that tell no cell apart, log(2g − 1) per view.
 */
import * as tf from "@tensorflow/tfjs-core";
import { GeneMoments, seuratHvg } from "../../assess/hvg.js";
import type { CellModel, ForwardContext } from "../../model/bert.js";
import { encodingByName, RANK } from "../../encoding/index.js";
import type { MvcTarget } from "../../encoding/types.js";
import type { BertConfig } from "../../model/config.js";
import { type BottleneckDecoder, type CellSpec, cellsOf, type ClsSource, CompositeHead, type ContrastiveProjection, type Pooling } from "../../model/cell-heads.js";
import { padRows, type PaddedRows } from "../../model/batch.js";
import type { DownsampleMethod } from "../downsample.js";
import type { NoisyContext, NoisyInput } from "./inputs.js";
import type { ObjectiveContext } from "./index.js";
import { nbNllF64, type Likelihood } from "../../model/likelihoods.js";
import { DropoutContext } from "../../model/ops.js";
import { readScalars } from "../../webgpu.js";
import type { Rng } from "../../rng.js";
import { sampleGenes, type GeneSampleOptions } from "../../encoding/gene-set.js";
import { truncateCell } from "../../encoding/rank.js";
import { batchTensors, disposeBatch } from "../grad-protocol.js";
import type { BaselineResult, CollatedBatch, Objective, TrainCell } from "./types.js";
import { readTokenizedDataset } from "../../data/tokenized.js";
import type { ObsTable } from "../../data/types.js";

/** The raw counts of a dataset cell's tokens (rank / counts: the values; binned: the counts column). */
export function tokenCounts(values: Float32Array | undefined, counts: Float32Array | undefined, valuesKind: string | undefined): Float32Array | undefined {
  if (counts) return counts;
  return valuesKind === "count" ? values : undefined;
}

/**
 * The bottleneck's genes: the `nGenes` Seurat-flavour highly variable genes (token ids, ascending)
 * over the given cells' gene tokens and counts; special tokens never count.
 */
export function bottleneckGenes(cells: readonly { ids: Int32Array; counts: Float32Array }[], vocabSize: number, nGenes: number, special: ReadonlySet<number>): Int32Array {
  const m = new GeneMoments(vocabSize);
  for (const c of cells) {
    const keep: number[] = [];
    for (let i = 0; i < c.ids.length; i++) if (!special.has(c.ids[i])) keep.push(i);
    m.addCell(
      keep.map((i) => c.ids[i]),
      keep.map((i) => c.counts[i]),
      0,
      keep.length,
    );
  }
  const seen = new Uint8Array(vocabSize);
  for (const c of cells) for (const t of c.ids) if (!special.has(t)) seen[t] = 1;
  const { mean, variance } = m.meanVar();
  // only genes seen in some cell are candidates (the vocabulary has ~25k, a dataset far fewer)
  const cand = Int32Array.from({ length: vocabSize }, (_, g) => g).filter((g) => seen[g]);
  const hv = seuratHvg(Float64Array.from(cand, (g) => mean[g]), Float64Array.from(cand, (g) => variance[g]), nGenes);
  return Int32Array.from(hv.genes, (j) => cand[j]).sort();
}

/** Options of {@link CellObjective}. */
export interface CellObjectiveOptions {
  /** weight per term (the token objective under its own name). */
  objectives: Record<string, number>;
  pooling: Pooling;
  /** `cls` pooling: a learned `<cls>` the encoder prepends, or the tokens' own (Geneformer V2 rank); see {@link clsSourceOf}. */
  cls?: ClsSource;
  /** the decoder's genes and likelihood; `targets`: every dataset cell's gene tokens and counts (the source of each cell's target). */
  bottleneck?: {
    genes: Int32Array;
    likelihood: Likelihood;
    decoder: BottleneckDecoder;
    targets?: readonly { ids: Int32Array; counts: Float32Array }[];
    /** the decoder's batch covariate: the obs column, its categories and each dataset cell's index into them. */
    batch?: { key: string; categories: string[]; codes: Int32Array };
  };
  /** the token objective's encoding and the context choice when it does not collate (weight 0). */
  encoding: string;
  padId: number;
  maxLength: number;
  eosId?: number;
  /** the vocabulary's `<cls>` (Geneformer V2 rank cells start with it). */
  clsId?: number;
  sampling: GeneSampleOptions;
  /** the tokenized dataset's `values_kind`. */
  valuesKind?: string;
  /** the contrastive term: its views (the encoding's denoising input at the term's noise) and options. */
  contrastive?: ContrastiveOptions & { views: NoisyInput };
  /** special token ids (pad, mask, cls, eos): never an `mvc` position. */
  special?: readonly number[];
}

/** `training.contrastive` (see the module comment). */
export interface ContrastiveOptions {
  /** τ of the NT-Xent. */
  temperature: number;
  projection: ContrastiveProjection;
  /** each view's downsampling: noise level and method. */
  noise: number;
  downsample: DownsampleMethod;
  /** cells per group of negatives (consecutive cells of a micro-batch); undefined: the whole micro-batch. */
  group?: number;
}

/** A token objective plus cell-level terms (module comment). */
export class CellObjective implements Objective {
  readonly name: string;
  readonly lossDescription: string;
  readonly head?: Record<string, unknown>;
  readonly spec: { cell: CellSpec };
  private readonly tokenOn: boolean;
  private readonly column = new Map<number, number>();
  /** the encoding's `mvc` value, when the term is on. */
  private readonly mvc?: MvcTarget;
  private readonly special: Set<number>;

  constructor(readonly token: Objective, readonly o: CellObjectiveOptions) {
    this.name = token.name;
    this.head = token.head;
    this.tokenOn = (o.objectives[token.name] ?? 0) > 0;
    const terms = Object.entries(o.objectives).filter(([, w]) => w > 0);
    if (terms.length === 0) throw new Error("training.objectives: give at least one term a weight > 0");
    const described: Record<string, string> = {
      [token.name]: token.lossDescription,
      bottleneck: "bottleneck NLL (nats per gene)",
      mvc: "mvc squared error (per scored gene)",
      contrastive: "contrastive NT-Xent (nats per view)",
    };
    this.lossDescription = terms.map(([k, w]) => `${w} × ${described[k] ?? k}`).join(" + ");
    if ((o.objectives.contrastive ?? 0) > 0 && !o.contrastive) throw new Error("training.objectives.contrastive: the contrastive term needs its views (training.contrastive)");
    o.bottleneck?.genes.forEach((g, j) => this.column.set(g, j));
    this.special = new Set(o.special ?? []);
    if ((o.objectives.mvc ?? 0) > 0) {
      const enc = encodingByName(o.encoding);
      if (!enc) throw new Error(`training.objectives.mvc: unknown encoding "${o.encoding}"`);
      this.mvc = enc.mvcTarget;
    }
    this.spec = {
      cell: {
        pooling: o.pooling,
        ...(o.cls ? { cls: o.cls } : {}),
        objectives: o.objectives,
        ...(o.bottleneck
          ? {
              bottleneck: {
                genes: Array.from(o.bottleneck.genes),
                likelihood: o.bottleneck.likelihood,
                decoder: o.bottleneck.decoder,
                selection: "seurat-flavour highly variable genes of the tokenized dataset",
                ...(o.bottleneck.batch ? { batch_key: o.bottleneck.batch.key, batches: o.bottleneck.batch.categories } : {}),
              },
            }
          : {}),
        ...(this.mvc
          ? { mvc: { target: this.mvc.description, positions: this.tokenOn ? `the ${token.name} objective's scored positions (mlm: the masked genes; denoise: every context gene)` : "every context gene" } }
          : {}),
        ...(o.contrastive ? { contrastive: contrastiveSpec(o.contrastive) } : {}),
      },
    };
  }

  cellFromDataset(inputIds: Int32Array, values: Float32Array | undefined, nCounts: number | undefined, counts?: Float32Array, index?: number): TrainCell {
    const c = this.tokenOn || this.o.encoding !== RANK.name ? this.token.cellFromDataset(inputIds, values, nCounts, counts) : { inputIds: truncateCell(inputIds, this.o.maxLength, this.o.eosId) };
    if (this.o.bottleneck) {
      // the cell's counts of every expressed gene: from the targets' dataset (by index) or its own tokens
      const src = index !== undefined && this.o.bottleneck.targets ? this.o.bottleneck.targets[index] : { ids: inputIds, counts: tokenCounts(values, counts, this.o.valuesKind) };
      const raw = src.counts;
      if (!raw) throw new Error("training.objectives.bottleneck: the tokens carry no counts (rank and counts tokens carry them, binned tokens a counts column); re-tokenize with this cellfm version");
      const idx: number[] = [], val: number[] = [];
      let lib = 0;
      for (let i = 0; i < src.ids.length; i++) {
        const j = this.column.get(src.ids[i]);
        if (j !== undefined && raw[i] > 0) {
          idx.push(j);
          val.push(raw[i]);
          lib += raw[i];
        }
      }
      c.cellTarget = { idx: Int32Array.from(idx), val: Float32Array.from(val), lib };
      const bk = this.o.bottleneck.batch;
      if (bk) {
        if (index === undefined) throw new Error(`training.bottleneck.batch_key: a cell outside the tokenized dataset has no "${bk.key}" value`);
        c.cellTarget.batch = bk.codes[index];
      }
    }
    if (this.mvc) c.mvc = { ids: inputIds, target: this.mvc.of(values, nCounts) };
    if (this.o.contrastive) c.viewCell = this.o.contrastive.views.cellFromDataset(inputIds, values, nCounts, counts);
    return c;
  }

  /** The cell's rows in a batch: the token objective's (or the plain cell's) and, with the contrastive term, its two views (at most). */
  contextLength(cell: TrainCell): number {
    const c = this.o.contrastive;
    return (this.hasBase ? this.token.contextLength(cell) : 0) + (c ? 2 * c.views.contextLength(cell.viewCell!) : 0);
  }

  /** Whether a batch has block 0 of its own (the token objective's or the plain cells), not only the two views. */
  private get hasBase(): boolean {
    return this.tokenOn || !!this.o.bottleneck || !!this.mvc || !this.o.contrastive;
  }

  /** Without the token term: the cells as they are (rank: the top genes; values: a sampled context), no masking. */
  private plain(cells: readonly TrainCell[], rng: Rng): CollatedBatch {
    const ctx = cells.map((c) => (this.o.encoding === RANK.name || !c.values ? { ids: c.inputIds, values: c.values } : sampleGenes(c.inputIds, c.values, this.o.sampling, rng)));
    const B = ctx.length;
    if (B === 0) throw new Error("collate: empty batch");
    let L = 0, real = 0;
    for (const c of ctx) {
      if (c.ids.length === 0) throw new Error("collate: a cell has no tokens");
      L = Math.max(L, c.ids.length);
      real += c.ids.length;
    }
    const inputIds = new Int32Array(B * L).fill(this.o.padId);
    const attentionMask = new Float32Array(B * L);
    const hasValues = this.o.encoding !== RANK.name;
    const values = hasValues ? new Float32Array(B * L) : undefined;
    ctx.forEach((c, b) => {
      inputIds.set(c.ids, b * L);
      if (values && c.values) values.set(c.values.subarray(0, c.ids.length), b * L);
      attentionMask.fill(1, b * L, b * L + c.ids.length);
    });
    const out: CollatedBatch = { batch: B, seqLen: L, inputIds, attentionMask, positions: Int32Array.from({ length: B }, (_, b) => b * L), realTokens: real };
    if (values) out.values = values;
    return out;
  }

  collate(cells: readonly TrainCell[], rng: Rng): CollatedBatch {
    const base = this.hasBase ? (this.tokenOn ? this.token.collate(cells, rng) : this.plain(cells, rng)) : undefined;
    // mvc's targets are block 0's (before the views are added and its positions re-indexed)
    if (base && this.mvc) this.addMvcTargets(base, cells);
    const b = this.o.contrastive ? this.withViews(base, cells, rng) : base!;
    if (this.o.bottleneck) {
      const G = this.o.bottleneck.genes.length;
      const x = new Float32Array(cells.length * G);
      const lib = new Float32Array(cells.length);
      cells.forEach((c, k) => {
        const t = c.cellTarget!;
        t.idx.forEach((j, q) => (x[k * G + j] = t.val[q]));
        lib[k] = t.lib;
      });
      b.cellCounts = x;
      b.cellLibrary = lib;
      if (this.o.bottleneck.batch) b.cellBatch = Int32Array.from(cells, (c) => c.cellTarget!.batch!);
    }
    b.unitTotals = { positions: b.positions.length, cells: cells.length, ...(this.mvc ? { mvc: b.mvcPositions!.length } : {}) };
    return b;
  }

  /**
   * A rank view with its cell's `<cls>` first and `<eos>` last (Geneformer V2 cells), which the
   * downsampling drops (their count is 0), so `cls` pooling reads `<cls>` in every row; within `max_length`.
   */
  private keepSpecials(v: NoisyContext, cell: Int32Array): NoisyContext {
    if (this.o.encoding !== RANK.name || cell.length === 0) return v;
    const head = this.o.clsId !== undefined && cell[0] === this.o.clsId && v.ids[0] !== this.o.clsId ? 1 : 0;
    const tail = this.o.eosId !== undefined && cell[cell.length - 1] === this.o.eosId && v.ids[v.ids.length - 1] !== this.o.eosId ? 1 : 0;
    if (!head && !tail) return v;
    const k = Math.min(v.ids.length, this.o.maxLength - head - tail);
    const ids = new Int32Array(head + k + tail), values = new Float32Array(head + k + tail), orig = new Float32Array(head + k + tail);
    if (head) ids[0] = this.o.clsId!;
    ids.set(v.ids.subarray(0, k), head);
    values.set(v.values.subarray(0, k), head);
    orig.set(v.orig.subarray(0, k), head);
    if (tail) ids[head + k] = this.o.eosId!;
    return { ids, values, orig };
  }

  /**
   * The batch with the contrastive views (module comment): rows [block 0 (`base`, when there is one) |
   * first views | second views], all padded to one length, `base`'s loss positions re-indexed; without
   * a base, block 0 is the first views and each cell's loss position its first view's first token.
   * Each view is one draw of the encoding's denoising input from `rng`, first views before second.
   */
  private withViews(base: CollatedBatch | undefined, cells: readonly TrainCell[], rng: Rng): CollatedBatch {
    const c = this.o.contrastive!;
    const n = cells.length;
    if (n === 0) throw new Error("collate: empty batch");
    const viewCells = cells.map((x) => x.viewCell!);
    const draw = () => c.views.contexts(viewCells, rng).map((v, k) => this.keepSpecials(v, viewCells[k].inputIds));
    const views: NoisyContext[] = [...draw(), ...draw()];
    const rows = base ? unpad(base) : { ids: [], values: undefined };
    const hasValues = base ? !!base.values : this.o.encoding !== RANK.name;
    const r = padRows(
      [...rows.ids, ...views.map((v) => v.ids)],
      hasValues ? [...(rows.values ?? []), ...views.map((v) => v.values)] : undefined,
      this.o.padId,
      undefined,
      "collate",
    );
    const out: CollatedBatch = { ...(base ?? {}), ...r, positions: new Int32Array(0) };
    const reindex = (q: Int32Array, L0: number) => Int32Array.from(q, (p) => Math.floor(p / L0) * r.seqLen + (p % L0));
    if (base) out.positions = reindex(base.positions, base.seqLen);
    else out.positions = Int32Array.from({ length: n }, (_, k) => k * r.seqLen);
    // the mvc positions (block 0) too
    if (base?.mvcPositions) out.mvcPositions = reindex(base.mvcPositions, base.seqLen);
    out.cellBlocks = base ? 3 : 2;
    out.viewBlocks = base ? [1, 2] : [0, 1];
    const g = c.group ?? n;
    out.cellGroups = Int32Array.from({ length: n }, (_, k) => Math.floor(k / g));
    return out;
  }

  /**
   * The `mvc` positions, genes and values of a collated batch (module comment): the token objective's
   * positions (their label when it is the gene), else every real token; special tokens left out.
   */
  private addMvcTargets(b: CollatedBatch, cells: readonly TrainCell[]): void {
    const L = b.seqLen;
    const pos: number[] = [], gene: number[] = [];
    if (this.tokenOn) {
      b.positions.forEach((q, j) => {
        const g = this.token.labelIsGene ? b.labels![j] : b.inputIds[q];
        if (!this.special.has(g)) (pos.push(q), gene.push(g));
      });
    } else {
      for (let q = 0; q < b.batch * L; q++) if (b.attentionMask[q] > 0 && !this.special.has(b.inputIds[q])) (pos.push(q), gene.push(b.inputIds[q]));
    }
    const target = new Float32Array(pos.length);
    let row = -1, value = new Map<number, number>();
    pos.forEach((q, j) => {
      const k = Math.floor(q / L);
      if (k !== row) {
        // positions are ascending: one lookup table per cell
        row = k;
        const m = cells[k].mvc!;
        value = new Map();
        m.ids.forEach((g, i) => value.set(g, m.target[i]));
      }
      target[j] = value.get(gene[j]) ?? 0; // a padding gene the cell does not express
    });
    b.mvcPositions = Int32Array.from(pos);
    b.mvcGenes = Int32Array.from(gene);
    b.mvcTargets = target;
  }

  baseline(trainCells: readonly TrainCell[], valBatches: readonly CollatedBatch[]): BaselineResult {
    // the weighted sum of the terms' baselines, as the model's loss is the weighted sum of its terms
    const terms = this.termBaselines(trainCells, valBatches);
    const names = Object.keys(terms);
    const loss = names.reduce((a, k) => a + (this.o.objectives[k] ?? 0) * terms[k].loss, 0);
    return {
      name: names.join("+"),
      loss,
      description: names.map((k) => `${this.o.objectives[k]} × ${k}: ${terms[k].description}`).join("; "),
      ...(this.tokenOn ? { extra: this.token.baseline(trainCells, valBatches).extra } : {}),
    };
  }

  /** The baseline of each term with one (the token objective's, the bottleneck's per-gene NB). */
  termBaselines(trainCells: readonly TrainCell[], valBatches: readonly CollatedBatch[]): Record<string, BaselineResult> {
    const out: Record<string, BaselineResult> = {};
    if (this.tokenOn) out[this.token.name] = this.token.baseline(trainCells, valBatches);
    if (this.o.bottleneck) out.bottleneck = bottleneckBaseline(trainCells, valBatches, this.o.bottleneck.genes.length);
    if (this.mvc) out.mvc = mvcBaseline(trainCells, valBatches);
    if (this.o.contrastive) out.contrastive = contrastiveBaseline(valBatches);
    return out;
  }

  initOutputBias(model: CellModel, trainCells: readonly TrainCell[], mode: string): void {
    if (this.tokenOn) this.token.initOutputBias(model, trainCells, mode);
  }

  headFlops(config: BertConfig, batch: CollatedBatch): number {
    const H = config.hidden_size, G = this.o.bottleneck?.genes.length ?? 0, n = cellsOf(batch.batch, batch);
    // the bottleneck's decoder; mvc: two H × H products per scored gene (query, W) and its inner
    // product with every cell; the contrastive projection (2 H × H per view) and similarities (2n × 2n × H)
    const mvc = this.mvc ? (batch.mvcPositions?.length ?? 0) * (4 * H * H + 2 * H * n) : 0;
    const contrastive = this.o.contrastive ? 2 * 2 * n * (this.o.contrastive.projection === "mlp" ? 2 * H * H : 0) + 2 * (2 * n) ** 2 * H : 0;
    return (this.tokenOn ? this.token.headFlops(config, batch) : 0) + (G > 0 ? 2 * n * (H * H + 2 * H * G) : 0) + mvc + contrastive;
  }
}

/**
 * Per-gene mean baseline of `mvc` (module comment): mean squared error over the validation batches'
 * `mvc` positions; `extra.global_mean_loss` with one mean for every gene.
 */
export function mvcBaseline(trainCells: readonly TrainCell[], valBatches: readonly CollatedBatch[]): BaselineResult {
  const sum = new Map<number, { s: number; n: number }>();
  let tot = 0, cnt = 0;
  for (const c of trainCells) {
    c.mvc!.ids.forEach((g, i) => {
      const y = c.mvc!.target[i];
      const e = sum.get(g) ?? { s: 0, n: 0 };
      e.s += y;
      e.n++;
      sum.set(g, e);
      tot += y;
      cnt++;
    });
  }
  const global = cnt ? tot / cnt : 0;
  let sse = 0, sseGlobal = 0, n = 0;
  for (const b of valBatches) {
    b.mvcPositions!.forEach((_, j) => {
      const y = b.mvcTargets![j], e = sum.get(b.mvcGenes![j]);
      sse += (y - (e ? e.s / e.n : global)) ** 2;
      sseGlobal += (y - global) ** 2;
      n++;
    });
  }
  return {
    name: "per_gene_mean",
    loss: n ? sse / n : NaN,
    description: "per-gene mean: each scored gene's value predicted by its mean over the training cells that express it (the global mean for genes none does); squared error at the same positions",
    extra: { global_mean_loss: n ? sseGlobal / n : NaN },
  };
}

/**
 * Per-gene NB baseline of the bottleneck (module comment): mean nats per gene over the validation
 * batches' cells.
 */
export function bottleneckBaseline(trainCells: readonly TrainCell[], valBatches: readonly CollatedBatch[], G: number): BaselineResult {
  const share = new Float64Array(G);
  let libTotal = 0;
  for (const c of trainCells) {
    const t = c.cellTarget!;
    t.idx.forEach((j, q) => (share[j] += t.val[q]));
    libTotal += t.lib;
  }
  for (let j = 0; j < G; j++) share[j] = libTotal > 0 ? share[j] / libTotal : 0;
  // method of moments: Σ (x − μ)² − μ = Σ μ² / θ
  const num = new Float64Array(G), den = new Float64Array(G);
  for (const c of trainCells) {
    const t = c.cellTarget!;
    const x = new Float64Array(G);
    t.idx.forEach((j, q) => (x[j] = t.val[q]));
    for (let j = 0; j < G; j++) {
      const mu = share[j] * t.lib;
      num[j] += mu * mu;
      den[j] += (x[j] - mu) ** 2 - mu;
    }
  }
  const theta = Float64Array.from(num, (v, j) => (den[j] > 0 ? Math.min(1e6, Math.max(1e-3, v / den[j])) : 1e6));
  let sum = 0, n = 0;
  for (const b of valBatches) {
    for (let k = 0; k < cellsOf(b.batch, b); k++) {
      const lib = b.cellLibrary![k];
      for (let j = 0; j < G; j++) sum += nbNllF64(b.cellCounts![k * G + j], Math.max(share[j] * lib, 1e-8), theta[j]);
      n += G;
    }
  }
  return {
    name: "per_gene_nb",
    loss: n > 0 ? sum / n : NaN,
    description: "per-gene negative binomial: mean = the gene's share of the training cells' counts × the cell's library size over the bottleneck genes, dispersion by moments",
  };
}

/**
 * The contrastive term's baseline (eval.json): embeddings that tell no cell apart (all similarities
 * equal), ℓ = log(2g − 1) per view for a group of g cells, averaged over the validation batches' views.
 */
export function contrastiveBaseline(valBatches: readonly CollatedBatch[]): BaselineResult {
  let sum = 0, n = 0;
  for (const b of valBatches) {
    const size = new Map<number, number>();
    for (const g of b.cellGroups!) size.set(g, (size.get(g) ?? 0) + 1);
    for (const g of b.cellGroups!) {
      sum += 2 * Math.log(2 * size.get(g)! - 1);
      n += 2;
    }
  }
  return {
    name: "uniform",
    loss: n > 0 ? sum / n : NaN,
    description: "embeddings that tell no cell apart: every candidate view equally similar, log(2g − 1) nats per view for a group of g cells (log(2B − 1) for one group of B)",
  };
}

/** The rows of a padded batch without their padding (ids, and values when it has them). */
function unpad(b: PaddedRows): { ids: Int32Array[]; values?: Float32Array[] } {
  const L = b.seqLen;
  const len = (r: number) => {
    let k = 0;
    while (k < L && b.attentionMask[r * L + k] > 0) k++;
    return k;
  };
  const ids: Int32Array[] = [], values: Float32Array[] = [];
  for (let r = 0; r < b.batch; r++) {
    const k = len(r);
    ids.push(b.inputIds.slice(r * L, r * L + k));
    if (b.values) values.push(b.values.slice(r * L, r * L + k));
  }
  return b.values ? { ids, values } : { ids };
}

/** The checkpoint's record of the contrastive term (config.json `cellfm.cell.contrastive`). */
function contrastiveSpec(c: ContrastiveOptions): NonNullable<CellSpec["contrastive"]> {
  return {
    temperature: c.temperature,
    projection: c.projection,
    views: `two draws of the encoding's denoising input per cell: counts downsampled (${c.downsample}, noise ${c.noise}), value encodings a random context each`,
    noise: c.noise,
    downsample: c.downsample,
    ...(c.group !== undefined ? { group: c.group } : {}),
  };
}

/**
 * Held-out value of every term (no dropout), each a mean over its own units (the token objective's
 * positions, cells), over fixed batches.
 */
export async function evaluateTerms(model: CellModel, batches: readonly CollatedBatch[]): Promise<Record<string, number>> {
  const head = model.head;
  if (!(head instanceof CompositeHead)) return {};
  const pending: { k: string; units: number; v: tf.Scalar }[] = [];
  const sums = new Map<string, { s: number; n: number }>();
  try {
    for (const b of batches) {
      const t = batchTensors(b);
      try {
        let keys: string[] = [];
        const vals = tf.tidy(() => {
          const ctx: ForwardContext = { config: model.config, dropout: new DropoutContext(false) };
          const [x] = model.bert.encode(t, ctx, model.config.num_hidden_layers, false);
          const terms = [...head.terms(x, b, t, ctx, false)];
          keys = terms.map(([k]) => k);
          return terms.map(([, v]) => v as tf.Scalar);
        });
        const cells = cellsOf(b.batch, b);
        for (const [i, k] of keys.entries()) {
          const units = k === "bottleneck" ? cells : k === "contrastive" ? 2 * cells : k === "mvc" ? b.mvcPositions!.length : b.positions.length;
          pending.push({ k, units, v: vals[i] });
        }
      } finally {
        disposeBatch(t);
      }
    }
    // one asynchronous read for every batch and term (webgpu has no synchronous read)
    const read = await readScalars(pending.map((p) => p.v));
    pending.forEach(({ k, units }, i) => {
      const e = sums.get(k) ?? { s: 0, n: 0 };
      e.s += read[i] * units;
      e.n += units;
      sums.set(k, e);
    });
  } finally {
    tf.dispose(pending.map((p) => p.v));
  }
  return Object.fromEntries([...sums].map(([k, e]) => [k, e.s / e.n]));
}

/**
 * Where `cls` pooling's `<cls>` comes from for a tokenized dataset: Geneformer V2 rank tokens start
 * with their own `<cls>` (the tokenizer writes it, `src/tokenize/geneformer.ts`), so it is read at
 * position 0, as Geneformer V2's `emb_mode="cls"`; every other encoding (V1 rank, binned, counts)
 * gets a learned `<cls>` prepended by the encoder (`BertModel.addClsToken`), as scGPT prepends its `<cls>`.
 */
export function clsSourceOf(encoding: string, modelVersion: string | undefined, clsId: number | undefined): ClsSource {
  return encoding === RANK.name && modelVersion === "V2" && clsId !== undefined ? "token" : "learned";
}

/**
 * The decoder's batch covariate (scvi-tools `batch_key`): the categories of the obs column `key`
 * carried in the tokenized dataset (sorted, as strings) and each cell's index into them.
 * @throws Error naming the tokens folder when the column is not carried, or has a single value.
 */
export function batchCovariate(key: string, dataset: { cellIds: string[]; obs?: ObsTable }, tokens: string): { key: string; categories: string[]; codes: Int32Array } {
  const col = dataset.obs?.columns[key];
  if (!col) {
    const carried = Object.keys(dataset.obs?.columns ?? {});
    throw new Error(
      `training.bottleneck.batch_key: ${tokens} carries no obs column "${key}" (carried: ${carried.join(", ") || "none"}); re-tokenize with --carry ${key}`,
    );
  }
  const values = Array.from(col as ArrayLike<unknown>, (v) => String(v));
  const categories = [...new Set(values)].sort();
  if (categories.length < 2) throw new Error(`training.bottleneck.batch_key: obs column "${key}" of ${tokens} has a single value (${categories[0] ?? "none"}); there is no batch to condition on`);
  const index = new Map(categories.map((c, i) => [c, i]));
  return { key, categories, codes: Int32Array.from(values, (v) => index.get(v)!) };
}

/**
 * Wrap the token objective of a run in a {@link CellObjective} when the config asks for cell-level
 * objectives (`training.objectives`) or a pooling (`model.pooling`); otherwise return it unchanged.
 * @param cells every tokenized cell's gene tokens and the dataset's columns (for the bottleneck's genes)
 * @throws Error when the bottleneck is asked for on tokens without every expressed gene's count.
 */
export function withCellObjectives(
  token: Objective,
  a: {
    objectives?: Record<string, number>;
    pooling?: Pooling;
    bottleneck: { genes: number; likelihood: Likelihood; decoder: BottleneckDecoder; counts_from?: string; batch_key?: string };
    contrastive?: ContrastiveOptions;
    /** the token objective's context (the contrastive views are the encoding's denoising input built from it). */
    context?: ObjectiveContext;
    /** prefix of messages (the config file). */
    where?: string;
    encoding: string;
    manifest: { values_kind?: string; top_genes?: number; model_version?: string };
    tokens: string;
    vocabulary: { size: number; pad: number; mask: number; cls?: number; eos?: number };
    maxLength: number;
    sampling: GeneSampleOptions;
    dataset: { cellIds: string[]; inputIds: Int32Array[]; values?: Float32Array[]; counts?: Float32Array[]; obs?: ObsTable };
  },
): Objective {
  if (!a.objectives && !a.pooling) return token;
  const objectives = a.objectives ?? { [token.name]: 1 };
  let bottleneck: CellObjectiveOptions["bottleneck"];
  let targetCells: { ids: Int32Array; counts: Float32Array }[] | undefined;
  if ((objectives.bottleneck ?? 0) > 0) {
    const from = a.bottleneck.counts_from;
    if (a.manifest.top_genes !== undefined && !from) {
      throw new Error(
        `training.objectives.bottleneck: ${a.tokens} keeps only each cell's top ${a.manifest.top_genes} genes (--top-genes), so it has no counts of the other genes to decode; ` +
          `tokenize without --top-genes, or give training.bottleneck.counts_from: a rank tokenization of the same cells`,
      );
    }
    let cells: { ids: Int32Array; counts?: Float32Array }[];
    if (from) {
      // the targets come from another tokenization of the same cells (e.g. rank tokens: every expressed gene's count)
      const other = readTokenizedDataset(from);
      const row = new Map(other.cellIds.map((id, i) => [id, i]));
      cells = a.dataset.cellIds.map((id) => {
        const i = row.get(id);
        if (i === undefined) throw new Error(`training.bottleneck.counts_from: cell ${id} of ${a.tokens} is not in ${from}`);
        return { ids: other.inputIds[i], counts: tokenCounts(other.values?.[i], other.counts?.[i], other.manifest.values_kind) };
      });
    } else cells = a.dataset.inputIds.map((ids, i) => ({ ids, counts: tokenCounts(a.dataset.values?.[i], a.dataset.counts?.[i], a.manifest.values_kind) }));
    if (cells.some((c) => !c.counts)) throw new Error(`training.objectives.bottleneck: ${from ?? a.tokens} has no raw counts per token; re-tokenize with this cellfm version`);
    targetCells = cells as { ids: Int32Array; counts: Float32Array }[];
    const special = new Set([a.vocabulary.pad, a.vocabulary.mask, a.vocabulary.cls, a.vocabulary.eos].filter((t): t is number => t !== undefined));
    const genes = bottleneckGenes(targetCells, a.vocabulary.size, a.bottleneck.genes, special);
    const batch = a.bottleneck.batch_key !== undefined ? batchCovariate(a.bottleneck.batch_key, a.dataset, a.tokens) : undefined;
    bottleneck = { genes, likelihood: a.bottleneck.likelihood, decoder: a.bottleneck.decoder, targets: targetCells, ...(batch ? { batch } : {}) };
  }
  let contrastive: CellObjectiveOptions["contrastive"];
  if ((objectives.contrastive ?? 0) > 0) {
    const c = a.contrastive, ctx = a.context;
    if (!c || !ctx) throw new Error("training.objectives.contrastive: training.contrastive and the objective context are needed");
    const enc = encodingByName(a.encoding);
    if (!enc) throw new Error(`training.objectives.contrastive: unknown encoding "${a.encoding}" of ${a.tokens}`);
    // each view: the encoding's denoising input (downsampled counts → its input) at the term's own noise
    const views = enc.noisy({ ...ctx, training: { ...ctx.training, noise: c.noise, downsample: c.downsample } }, a.where ?? "config");
    contrastive = { ...c, views };
  }
  const pooling = a.pooling ?? "mean";
  return new CellObjective(token, {
    objectives,
    contrastive,
    pooling,
    ...(pooling === "cls" ? { cls: clsSourceOf(a.encoding, a.manifest.model_version, a.vocabulary.cls) } : {}),
    bottleneck,
    encoding: a.encoding,
    padId: a.vocabulary.pad,
    maxLength: a.maxLength,
    eosId: a.vocabulary.eos,
    clsId: a.vocabulary.cls,
    sampling: a.sampling,
    valuesKind: a.manifest.values_kind,
    special: [a.vocabulary.pad, a.vocabulary.mask, a.vocabulary.cls, a.vocabulary.eos].filter((t): t is number => t !== undefined),
  });
}
