/**
 * The input ceiling of an arm (issue 17 §4): what its input alone gives, with no model. Each cell
 * becomes the bag of the context genes the arm's model reads (the same genes `cellfm embed` gives
 * it), with their values, and the bags go through PCA to 50 dimensions; `compare` scores that
 * representation like every other, so a reader sees what the model added over the genes it read.
 *
 * Values per encoding: rank tokens carry no value, a context gene counts 1 (its order is left
 * out); binned tokens their bin; counts tokens log1p(count). Columns are the
 * {@link CEILING_MAX_GENES} genes found in most contexts (ties: lower token id), so the covariance
 * stays small (`src/assess/linalg.ts` `pca`).
 */
import { readTokenizedDataset } from "../data/tokenized.js";
import { pca } from "../assess/linalg.js";
import { RANK_ENCODING } from "../model/bert.js";
import { COUNTS_ENCODING } from "../model/factory.js";
import { vocabularyOf } from "../tokenize/dictionaries.js";
import { cellSamplingRng, sampleGenes } from "../train/gene-sampling.js";

/** Genes (columns) of the bag at most. */
export const CEILING_MAX_GENES = 3000;

/** Result of {@link inputCeiling}: one row per tokenized cell. */
export interface InputCeiling {
  cellIds: string[];
  dim: number;
  /** `[nCells, dim]` row-major. */
  data: Float32Array;
  /** genes that are columns of the bag. */
  nGenes: number;
}

/**
 * The context genes of one cell as the arm's model reads them when embedding: rank tokens, the
 * first `maxLength` gene tokens (special tokens left out); value encodings, `sampleGenes` with the
 * cell's embedding generator (every gene when the cell has ≤ maxLength).
 */
function contextOf(encoding: string, ids: Int32Array, values: Float32Array | undefined, cellId: string, maxLength: number, special: Set<number>): { ids: Int32Array; values: Float32Array } {
  if (encoding === RANK_ENCODING) {
    const genes = Array.from(ids).filter((t) => !special.has(t)).slice(0, maxLength);
    return { ids: Int32Array.from(genes), values: new Float32Array(genes.length).fill(1) };
  }
  if (!values) throw new Error(`input ceiling: the ${encoding} tokens have no values column`);
  const s = sampleGenes(ids, values, { maxLength }, cellSamplingRng(0, cellId));
  return { ids: s.ids, values: encoding === COUNTS_ENCODING ? s.values.map((v) => Math.log1p(v)) : s.values };
}

/**
 * Bag of each cell's context genes → PCA.
 * @param tokens a tokenized dataset folder (`cellfm tokenize`)
 * @param maxLength genes per context (the arm's `data.max_length`, at most its position table)
 * @throws Error when the dataset has fewer than 2 cells or value tokens lack values.
 */
export function inputCeiling(tokens: string, opts: { maxLength: number; nComponents?: number; seed?: number; maxGenes?: number }): InputCeiling {
  const ds = readTokenizedDataset(tokens);
  const n = ds.cellIds.length;
  if (n < 2) throw new Error(`input ceiling: ${tokens} has ${n} cell(s), needs at least 2`);
  const enc = ds.manifest.encoding;
  const v = vocabularyOf(ds.manifest, tokens);
  const special = new Set([v.pad, v.mask, v.cls, v.eos].filter((t): t is number => t !== undefined));
  const ctx = ds.inputIds.map((ids, i) => contextOf(enc, ids, ds.values?.[i], ds.cellIds[i], opts.maxLength, special));
  const freq = new Map<number, number>();
  for (const c of ctx) for (const t of c.ids) freq.set(t, (freq.get(t) ?? 0) + 1);
  const genes = [...freq.keys()].sort((a, b) => freq.get(b)! - freq.get(a)! || a - b).slice(0, opts.maxGenes ?? CEILING_MAX_GENES);
  const col = new Map(genes.map((g, j) => [g, j]));
  const G = genes.length;
  const x = new Float32Array(n * G);
  ctx.forEach((c, i) => c.ids.forEach((t, k) => {
    const j = col.get(t);
    if (j !== undefined) x[i * G + j] = c.values[k];
  }));
  const p = pca(x, n, G, opts.nComponents ?? 50, { seed: opts.seed ?? 0 });
  return { cellIds: ds.cellIds, dim: p.nComponents, data: p.scores, nGenes: G };
}
