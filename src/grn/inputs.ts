/**
 * Model inputs of a gene-network run, for every encoding a checkpoint can have, built the way the
 * encoding's training and `cellfm embed` build them (reference-spec §1a, §1c, §1d):
 *
 * - `geneformer-rank-value` (Geneformer): the cell's ranked genes, truncated to
 *   `max_position_embeddings` (V2 keeps `<eos>` last); token ids only. Positions carry the rank, so the
 *   input cannot be reordered or filtered: list genes outside the cell's top genes are absent.
 * - `scgpt-binned` (scGPT) and `scprint-counts` (scPRINT): the cell's expressed vocabulary genes with
 *   their value (bin index from `cellfm tokenize --encoding binned`'s per-cell binning over all the
 *   cell's nonzero genes, or the raw count). These models have no position embedding and were trained
 *   on a uniform random subset of the expressed genes (`src/encoding/gene-set.ts`), so the context
 *   of a network run is chosen for the gene list: the cell's expressed **list** genes first (all of
 *   them when they fit in `max_position_embeddings`, else a uniform subset), then, while room is left,
 *   a uniform subset of its other expressed genes, so each cell has as many genes as in training. The
 *   subsets are seeded by the cell id only ({@link cellSamplingRng}), as `cellfm embed` seeds them.
 *   Unexpressed genes are never added (training adds them only with `training.pad_with_unexpressed`).
 *
 * The batch builder pads as the objectives' collate does (`src/train/objectives/*.ts`): ids padded
 * with `pad_token_id`, attention mask 1 on real tokens, values padded with 0.
 */
import type { CountMatrixSource } from "../data/types.js";
import { BINNED, encodingByKey, encodingOf, type EncodingKey } from "../encoding/index.js";
import { padRows, toModelBatch } from "../model/batch.js";
import type { ModelBatch } from "../model/bert.js";
import type { LoadedCheckpoint } from "../model/checkpoint.js";
import { loadGeneformerDictionaries } from "../tokenize/dictionaries.js";
import { GeneformerTokenizer } from "../tokenize/geneformer.js";
import type { CellInput } from "./attention.js";

/** One tokenized cell: its id, tokens and (value encodings) per-token values. */
export interface GrnCellTokens {
  cellId: string;
  /** token ids `[m]` int32 (rank: truncated to the model's length; value encodings: all expressed genes). */
  ids: Int32Array;
  /** per-token values `[m]` (bin index or raw count); absent for rank-value tokens. */
  values?: Float32Array;
}

/** How the cells of a checkpoint are tokenized. */
export interface GrnTokenization {
  /** tokenizer encoding. */
  encoding: EncodingKey;
  /** binned: total bins including bin 0 (the checkpoint's `cellfm.head.n_bins`, default 51). */
  nBins?: number;
  /** binned: seed of the tie spreading (`cellfm tokenize --seed`, default 0). */
  binningSeed?: number;
}

/**
 * The tokenization of a checkpoint's encoding.
 * @throws Error naming the encoding when `cellfm grn` has no input builder for it.
 */
export function tokenizationOf(ck: LoadedCheckpoint, binningSeed = 0): GrnTokenization {
  const enc = encodingOf(ck, "cellfm grn: checkpoint");
  if (enc.valuesKind !== "bin") return { encoding: enc.key };
  const nb = ck.cellfm.head?.n_bins ?? BINNED.defaults.n_bins;
  if (!Number.isInteger(nb) || (nb as number) < 3) throw new Error(`cellfm.head.n_bins: expected an integer >= 3, got ${JSON.stringify(nb)}`);
  return { encoding: enc.key, nBins: nb as number, binningSeed };
}

/**
 * Tokenize the chosen source rows with the checkpoint's dictionary and encoding (one pass over the
 * source's chunks).
 * @param rows source rows, ascending.
 * @param allowed value encodings: tokens a context may hold (`contextGeneMask` of the model; genes
 *   without an external vector under `missing: "drop"`), as training and `cellfm embed` filter them.
 * @returns row → tokens; rows whose tokenization is empty (no expressed vocabulary gene) are absent.
 */
export function tokenizeRows(
  src: CountMatrixSource,
  rows: Int32Array,
  ck: LoadedCheckpoint,
  tk: GrnTokenization,
  idColumn: string | undefined,
  allowed?: Uint8Array,
): Map<number, GrnCellTokens> {
  const version = ck.cellfm.model_version === "V2" ? "V2" : "V1";
  const dict = loadGeneformerDictionaries(version);
  const tokenizer = new GeneformerTokenizer(src, {
    modelVersion: version,
    dictionaries: dict,
    idColumn,
    minKnownFraction: 0,
    encoding: tk.encoding,
    nBins: tk.nBins,
    seed: tk.binningSeed,
  });
  const enc = encodingByKey(tk.encoding)!;
  const want = new Set(rows);
  const out = new Map<number, GrnCellTokens>();
  const maxLen = ck.config.max_position_embeddings;
  for (const ch of src.chunks(512)) {
    const f = tokenizer.tokenizeChunkFlat(ch);
    f.obsRows.forEach((r, i) => {
      if (!want.has(r)) return;
      const a = f.offsets[i], b = f.offsets[i + 1];
      if (b === a) return;
      let ids = f.ids.slice(a, b);
      if (enc.readsValues) {
        let values = f.values.slice(a, b);
        if (allowed) {
          // a model with external gene vectors and missing: "drop" has no state for genes without one
          const keep: number[] = [];
          ids.forEach((t, j) => allowed[t] && keep.push(j));
          if (keep.length === 0) return;
          ids = Int32Array.from(keep, (j) => ids[j]);
          values = Float32Array.from(keep, (j) => values[j]);
        }
        out.set(r, { cellId: f.cellIds[i], ids, values });
        return;
      }
      // token-only encodings: the encoding's one context (rank: the top genes, V2 keeps <eos> last)
      out.set(r, { cellId: f.cellIds[i], ids: enc.inferenceContext(ids, undefined, { maxLength: maxLen, cellId: f.cellIds[i], eosId: dict.special.eos }).ids });
    });
  }
  return out;
}

/** A value-encoding cell's context for a gene list (moved to `src/encoding/gene-set.ts`). */
export { listSetContext as listContext } from "../encoding/gene-set.js";

/**
 * The cells of one network as extraction inputs, and the batch builder.
 * @param tokens tokenized cells by source row ({@link tokenizeRows}); rows without tokens are left out.
 * @param listTokens vocabulary token of each list gene.
 * @param encoding tokenizer encoding of the checkpoint.
 * @param maxLength the model's `max_position_embeddings` (value encodings: the context size).
 * @param seed context seed of value encodings (default 0, as `cellfm embed`).
 */
export function cellInputs(
  tokens: Map<number, GrnCellTokens>,
  rows: Int32Array,
  listTokens: Int32Array,
  opts: { vocabSize: number; padId: number; encoding: EncodingKey; maxLength: number; seed?: number },
): { cells: CellInput[]; ids: Int32Array[]; values?: Float32Array[]; makeBatch: (idx: number[], L: number) => ModelBatch } {
  const tokToGene = new Int32Array(opts.vocabSize).fill(-1);
  listTokens.forEach((t, j) => {
    if (t >= 0 && t < opts.vocabSize) tokToGene[t] = j;
  });
  const enc = encodingByKey(opts.encoding)!;
  const valued = enc.readsValues;
  const ids: Int32Array[] = [];
  const values: Float32Array[] = [];
  const cells: CellInput[] = [];
  for (const r of rows) {
    const x = tokens.get(r);
    if (!x || x.ids.length === 0) continue;
    let id = x.ids;
    if (valued) {
      const c = enc.listContext!(x, (t) => t >= 0 && t < opts.vocabSize && tokToGene[t] >= 0, opts.maxLength, opts.seed ?? 0);
      id = c.ids;
      values.push(c.values);
    }
    ids.push(id);
    cells.push({ length: id.length, geneAt: Int32Array.from(id, (t) => (t >= 0 && t < opts.vocabSize ? tokToGene[t] : -1)) });
  }
  return { cells, ids, ...(valued ? { values } : {}), makeBatch: batchBuilder(ids, valued ? values : undefined, opts.padId) };
}

/**
 * The padded-batch builder over per-cell inputs ({@link padRows}: ids with `padId`, mask 1 on real
 * tokens, values (when given) with 0).
 * @returns `(idx, L)` → the batch of cells `idx` padded to length L (the caller disposes it).
 */
export function batchBuilder(ids: readonly Int32Array[], values: readonly Float32Array[] | undefined, padId: number): (idx: number[], L: number) => ModelBatch {
  return (idx, L) =>
    toModelBatch(
      padRows(
        idx.map((ci) => ids[ci]),
        values ? idx.map((ci) => values[ci]) : undefined,
        padId,
        L,
      ),
    );
}
