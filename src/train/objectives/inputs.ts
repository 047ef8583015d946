/**
 * How training reads an encoding's cells — the encoding-specific inputs of the objectives
 * (`./masked.ts`, `./denoise.ts`); each encoding (`src/encoding/`) picks its own:
 *
 * - {@link rankCells}: rank-value tokens, truncated to `max_length` when read (the top genes; V2 keeps
 *   `<eos>` last); the context is the whole cell.
 * - {@link geneSetCells}: binned / counts cells kept whole; each draw chooses a context of
 *   `max_length` genes (`src/encoding/gene-set.ts` `sampleGenes`: all expressed genes when fewer, else
 *   a random subset from the training stream, so a new one each time the cell comes round;
 *   `training.pad_with_unexpressed` adds unexpressed measured genes with value 0).
 *
 * Denoising inputs (the model input from a cell's downsampled counts, `../downsample.ts`, with the
 * original counts as targets):
 * - {@link countsNoisyInput} (scPRINT): the context is drawn, its counts downsampled.
 * - {@link rankNoisyInput} (issue 9 §3: "for rank, the ranks come from the downsampled counts"): the
 *   cell's stored genes are downsampled, genes left at 0 drop out, the rest are re-ranked by
 *   downsampled count / gene median (Geneformer's order; the per-cell n_counts scaling does not change
 *   it) and cut to `max_length`.
 * - {@link binnedNoisyInput}: the cell's raw counts (the binned dataset's `counts` column, all its
 *   stored genes) are downsampled, the downsampled nonzero counts binned again over the cell (scGPT's
 *   per-cell quantile bins, ties spread with the training generator; genes downsampled to 0 get bin 0
 *   and stay in the cell), then the context is drawn.
 */
import { sampleGenes, type GeneSampleOptions } from "../../encoding/gene-set.js";
import { truncateCell } from "../../encoding/rank.js";
import type { Rng } from "../../rng.js";
import { binCounts } from "../../tokenize/binning.js";
import { rankValueOrder } from "../../tokenize/geneformer.js";
import { downsampleCounts, type DownsampleMethod } from "../downsample.js";
import type { Context } from "./targets.js";
import type { TrainCell } from "./types.js";

/** How an objective reads a dataset cell and draws its context. */
export interface CellReader {
  /** one training cell from the dataset's columns. @throws Error when a needed column is missing */
  cellFromDataset(inputIds: Int32Array, values: Float32Array | undefined, nCounts: number | undefined, counts?: Float32Array): TrainCell;
  /** tokens the cell has in a batch (for length-grouped batch planning). */
  contextLength(cell: TrainCell): number;
  /** the cell's context for one batch, drawing from `rng` (rank: the cell itself, no draw). */
  draw(cell: TrainCell, rng: Rng): Context;
}

/** A denoising input: the noisy model input and the original counts of each cell of a batch. */
export interface NoisyInput extends Omit<CellReader, "draw"> {
  /** head options the input adds to config.json `cellfm.head` (binned: `n_bins`). */
  readonly head?: Record<string, unknown>;
  /** the contexts of a batch: ids, noisy input values, original counts (targets), drawing from `rng`. */
  contexts(cells: readonly TrainCell[], rng: Rng): NoisyContext[];
}

/** One cell's denoising context. */
export interface NoisyContext {
  ids: Int32Array;
  values: Float32Array;
  orig: Float32Array;
}

/** Downsampling of a denoising input (`training.noise`, `training.downsample`). */
export interface Noise {
  noise: number;
  method: DownsampleMethod;
}

/** The downsampling of a run (`training.noise`, `training.downsample`). */
export function noiseOf(o: { training: { noise: number; downsample: DownsampleMethod } }): Noise {
  return { noise: o.training.noise, method: o.training.downsample };
}

/**
 * The gene-set context of a run: `max_length` genes, with `training.pad_with_unexpressed` the
 * dataset's measured genes as the padding pool.
 * @throws Error when padding is asked for and the manifest has no `measured_tokens`.
 */
export function geneSetSampling(
  o: { maxLength: number; training: { pad_with_unexpressed: boolean }; manifest: { measured_tokens?: number[] }; tokens: string },
  where: string,
): GeneSampleOptions {
  const sampling = {
    maxLength: o.maxLength,
    padWithUnexpressed: o.training.pad_with_unexpressed,
    pool: o.manifest.measured_tokens ? Int32Array.from(o.manifest.measured_tokens) : undefined,
  };
  if (o.training.pad_with_unexpressed && !sampling.pool) {
    throw new Error(`${where}: training.pad_with_unexpressed needs ${o.tokens}/manifest.json measured_tokens; re-tokenize with this cellfm version`);
  }
  return sampling;
}

/** Rank-value cells: truncated to `maxLength` when read, the context is the cell. */
export function rankCells(o: { maxLength: number; eosId?: number }): CellReader {
  return {
    cellFromDataset: (inputIds) => ({ inputIds: truncateCell(inputIds, o.maxLength, o.eosId) }),
    contextLength: (cell) => cell.inputIds.length,
    draw: (cell) => ({ ids: cell.inputIds }),
  };
}

/**
 * Gene-set cells (values kept whole, a context drawn per batch).
 * @param needs what produces the needed columns, for the message (e.g. "cellfm tokenize --encoding counts").
 */
export function geneSetCells(objective: string, sampling: GeneSampleOptions, needs: string): CellReader {
  return {
    cellFromDataset(inputIds, values, nCounts, counts) {
      if (!values) throw new Error(`training.objective ${objective} needs the dataset's values column (${needs})`);
      return counts ? { inputIds, values, nCounts, counts } : { inputIds, values, nCounts };
    },
    contextLength: (cell) => (sampling.padWithUnexpressed ? sampling.maxLength : Math.min(cell.inputIds.length, sampling.maxLength)),
    draw(cell, rng) {
      const s = sampleGenes(cell.inputIds, cell.values!, sampling, rng);
      return { ids: s.ids, values: s.values };
    },
  };
}

/** scPRINT denoising on raw counts: every context drawn first, then each context's counts downsampled. */
export function countsNoisyInput(sampling: GeneSampleOptions, noise: Noise): NoisyInput {
  const cells = geneSetCells("denoise", sampling, "cellfm tokenize --encoding counts");
  return {
    cellFromDataset: cells.cellFromDataset,
    contextLength: cells.contextLength,
    contexts(batch, rng) {
      const ctx = batch.map((c) => cells.draw(c, rng));
      return ctx.map((c) => ({ ids: c.ids, values: downsampleCounts(c.values!, noise.noise, noise.method, rng), orig: c.values! }));
    },
  };
}

/**
 * Denoising on rank-value tokens (see the module comment).
 * @param medians nonzero median per token id (Geneformer's gene_median file; 1 where unknown)
 */
export function rankNoisyInput(maxLength: number, medians: Float64Array, noise: Noise): NoisyInput {
  const cells = geneSetCells("denoise", { maxLength }, "cellfm tokenize --encoding rank (this cellfm version stores the counts)");
  return {
    cellFromDataset: cells.cellFromDataset,
    contextLength: (cell) => Math.min(cell.inputIds.length, maxLength),
    contexts(batch, rng) {
      const ctx: NoisyContext[] = [];
      for (const c of batch) {
        const ds = downsampleCounts(c.values!, noise.noise, noise.method, rng);
        const keep: number[] = [];
        for (let i = 0; i < ds.length; i++) if (ds[i] > 0) keep.push(i);
        if (keep.length === 0) keep.push(0); // every gene dropped: keep the top one (its input value is 0)
        const toks = Int32Array.from(keep, (i) => c.inputIds[i]);
        const key = Float64Array.from(keep, (i) => ds[i] / (medians[c.inputIds[i]] || 1));
        const order = rankValueOrder(toks, key, maxLength);
        const where = new Map<number, number>();
        keep.forEach((i) => where.set(c.inputIds[i], i));
        ctx.push({
          ids: order,
          values: Float32Array.from(order, (t) => ds[where.get(t)!]),
          orig: Float32Array.from(order, (t) => c.values![where.get(t)!]),
        });
      }
      return ctx;
    },
  };
}

/** Denoising on scGPT-binned tokens (see the module comment). */
export function binnedNoisyInput(sampling: GeneSampleOptions, nBins: number, noise: Noise): NoisyInput {
  const cells = geneSetCells("denoise", sampling, "cellfm tokenize --encoding binned (this cellfm version stores the raw counts)");
  return {
    head: { n_bins: nBins },
    cellFromDataset(inputIds, values, nCounts, counts) {
      if (!counts) {
        throw new Error("training.objective denoise on binned tokens needs the raw counts per token (the dataset's counts column); re-run cellfm tokenize --encoding binned with this cellfm version");
      }
      return cells.cellFromDataset(inputIds, values, nCounts, counts);
    },
    contextLength: cells.contextLength,
    contexts(batch, rng) {
      const ctx: NoisyContext[] = [];
      for (const c of batch) {
        const raw = c.counts!;
        const ds = downsampleCounts(raw, noise.noise, noise.method, rng);
        const nz: number[] = [];
        let total = 0;
        for (let i = 0; i < ds.length; i++) if (ds[i] > 0) (nz.push(i), (total += ds[i]));
        const bins = new Float32Array(ds.length);
        if (nz.length) {
          const b = binCounts(Float64Array.from(nz, (i) => ds[i]), total, rng, nBins);
          nz.forEach((i, k) => (bins[i] = b[k]));
        }
        // the context: positions into the cell (padding genes, if any, follow with value and count 0)
        const where = Float32Array.from({ length: raw.length }, (_, i) => i);
        const s = sampleGenes(c.inputIds, where, sampling, rng);
        const values = new Float32Array(s.ids.length), orig = new Float32Array(s.ids.length);
        for (let j = 0; j < s.nExpressed; j++) {
          values[j] = bins[s.values[j]];
          orig[j] = raw[s.values[j]];
        }
        ctx.push({ ids: s.ids, values, orig });
      }
      return ctx;
    },
  };
}
