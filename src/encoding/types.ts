/**
 * What an input encoding is, in one interface: its names, what its tokens' values hold, its default
 * options, the models it builds (input embedding + head per objective) and how a cell's context
 * genes are chosen outside training (embedding, denoising, gene networks, the compare benchmark).
 *
 * One file per encoding (`./rank.ts`, `./binned.ts`, `./counts.ts`) implements it; `./index.ts` lists
 * them. A new encoding is one file and one row of that list (as a new likelihood is one key of
 * scvi-tools' `scvi/module/_vae.py` `gene_likelihood` switch).
 */
import type { CellModel, EmbeddingFactory, HeadFactory, LossTargets, ModelSpec } from "../model/bert.js";
import type { BertConfig } from "../model/config.js";
import type { Rng } from "../rng.js";
import type { ObjectiveContext } from "../train/objectives/index.js";
import type { CellReader, NoisyInput } from "../train/objectives/inputs.js";
import type { MaskedTarget } from "../train/objectives/targets.js";

/** A cell's context: token ids and their values, aligned (`[k]` each). */
export interface GeneContext {
  ids: Int32Array;
  values: Float32Array;
}

/**
 * A model an encoding builds for one objective: the HF `architectures[0]` it is saved under, its
 * input embedding and its token head (the factory adds cell-level heads, `src/model/factory.ts`).
 */
export interface EncodingModel {
  architecture: string;
  /** the input embedding (the spec is validated; `spec.head` holds the head options). */
  embedding(spec: ModelSpec): EmbeddingFactory;
  /** the token objective's head. */
  head(spec: ModelSpec): HeadFactory<LossTargets>;
  /** the same model as a class of its own, built when there are no cell-level heads (rank + mlm: HF `BertForMaskedLM`). */
  plain?(config: BertConfig, seed: number): CellModel;
}

/** Options of {@link Encoding.benchmarkContexts}. */
export interface BenchmarkContextOptions {
  /** genes per context. */
  maxLength: number;
  /** nonzero median per token id (rank-value order; required by rank and by `topGenes`). */
  tokenMedian?: Float64Array;
  /** value encodings trained on `--top-genes K` tokens: K. */
  topGenes?: number;
  /** binned: total bins including bin 0. */
  nBins?: number;
  /** seed of the binned encoding's tie spreading (with the cell index). */
  seed: number;
}

/** One cell's benchmark contexts: columns of the benchmark genes and the model input values of each. */
export interface BenchmarkContexts {
  /** columns (into the cell's row) per context. */
  groups: Int32Array[];
  /** model input value of column j (counts: the count; binned: its bin). */
  valueOf(j: number): number;
}

/** What the `mvc` term predicts per gene, for one encoding. */
export interface MvcTarget {
  /** the value, in words (config.json `cellfm.cell.mvc.target`, docs). */
  readonly description: string;
  /**
   * The value of each stored gene of a cell, `[m]` float32 aligned with the tokens.
   * @param values the tokens' stored values `[m]` (counts or bins); special tokens carry 0.
   * @param nCounts the cell's library size (obs `n_counts`), when the dataset has it.
   * @throws Error when the tokens carry no values.
   */
  of(values: Float32Array | undefined, nCounts: number | undefined): Float32Array;
}

/** An input encoding (see the module comment). */
export interface Encoding<K extends string = string> {
  /** short name: `cellfm tokenize --encoding`, compare arms (`rank`). */
  readonly key: K;
  /** name in a tokenized dataset's manifest.json and a checkpoint's `cellfm.encoding` (`geneformer-rank-value`). */
  readonly name: string;
  /** the model family and paper it follows, for messages and docs. */
  readonly source: string;
  /** what the tokens' `values` column holds (manifest `values_kind`). */
  readonly valuesKind: "count" | "bin";
  /**
   * whether the model reads per-token values; false for rank-value tokens, whose order (the position)
   * carries the value, so a context cannot be reordered or subsampled, only truncated.
   */
  readonly readsValues: boolean;
  /** default options of the tokenizer and the model (snake_case, as in manifest.json / `cellfm.head`). */
  readonly defaults: Readonly<{ n_bins?: number }>;
  /** the model of each objective this encoding trains (objective → model). */
  readonly models: Readonly<Record<string, EncodingModel>>;
  /**
   * The value the `mvc` cell objective predicts for each of a cell's stored genes
   * (`src/train/objectives/cell.ts`): scGPT's GEPC regresses the encoding's own value.
   */
  readonly mvcTarget: MvcTarget;
  /**
   * Masked modelling (`src/train/objectives/masked.ts`): how training reads this encoding's cells and
   * what a masked position predicts (the encoding's target transform: gene token, bin, log1p count).
   * @param where prefix of messages (the config file).
   * @throws Error naming the dataset when it lacks what is read.
   */
  masked(o: ObjectiveContext, where: string): { cells: CellReader; target: MaskedTarget };
  /**
   * Denoising (`src/train/objectives/denoise.ts`): the model input from a cell's downsampled counts.
   * @throws Error naming the dataset when it lacks the raw counts.
   */
  noisy(o: ObjectiveContext, where: string): NoisyInput;
  /**
   * The one context of a cell for inference (`cellfm embed`; a gene-network run's cells): depends
   * only on the cell (its id seeds any subset), not on its batch.
   * @param ids, values the cell's stored tokens and their values (values may be absent for rank tokens).
   * @returns the context; `values` only when the model reads them ({@link readsValues}).
   */
  inferenceContext(ids: Int32Array, values: Float32Array | undefined, o: { maxLength: number; cellId: string; eosId?: number }): { ids: Int32Array; values?: Float32Array };
  /**
   * Contexts that cover a cell's expressed genes for count prediction (`cellfm denoise`), as positions
   * into the cell's tokens.
   * @param counts raw count per token (special tokens carry 0).
   */
  coveringContexts(counts: Float32Array, o: { maxLength: number; cellId: string }): ArrayLike<number>[];
  /**
   * A gene-network run's context for a gene list (`cellfm grn`), or undefined when the encoding's
   * context cannot be chosen (rank: the cell's top genes, already truncated, are its context).
   */
  listContext?(cell: { cellId: string; ids: Int32Array; values?: Float32Array }, isListToken: (t: number) => boolean, maxLength: number, seed: number): GeneContext & { nList: number };
  /**
   * Benchmark contexts of one cell of downsampled counts (`cellfm compare`'s denoising benchmark).
   * @param row the cell's counts over the benchmark genes; `nz` its nonzero columns, ascending.
   * @param cell the cell's index (seeds the binning).
   * @param geneTokens token id of each column.
   * @param rng the benchmark's context stream (shared by the cells, advanced in cell order).
   */
  benchmarkContexts(row: Float32Array, nz: number[], cell: number, geneTokens: Int32Array, rng: Rng, o: BenchmarkContextOptions): BenchmarkContexts;
}
