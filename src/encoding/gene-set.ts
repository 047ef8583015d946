/**
 * The choice of a cell's context genes for the gene-set encodings (`binned`, `counts`): the model
 * has no position, so a context is any subset of the cell's genes. Training draws a fixed context
 * of `max_length` genes ({@link sampleGenes}); inference, denoising, gene networks and the compare
 * benchmark choose theirs below, each seeded so a cell's context depends only on the cell.
 *
 * Reference: scPRINT's collator, jkobject/scDataLoader `scdataloader/collator.py@831fabd` (`how="random
 * expr"`, `max_len=2200` in scPRINT `config/base.yml`): a cell expressing more than `max_length` genes
 * gets `max_length` of them uniformly without replacement; a cell expressing fewer keeps all of them and,
 * with `padWithUnexpressed` (scPRINT's default), is filled up to `max_length` with genes it does not
 * express, drawn uniformly without replacement, with value 0 — so the model also sees zeros. Without
 * padding the context is just the expressed genes (scGPT's default, `include_zero_gene=False`).
 *
 * The chosen genes keep the order they have in the tokenized dataset (ascending token id), the padding
 * genes follow in ascending token id, so the output depends only on the cell and the generator.
 * Training draws from the epoch's generator (a new subset each epoch); embedding uses
 * {@link cellSamplingRng} so a cell's context does not depend on its batch.
 */
import { makeRng, type Rng } from "../rng.js";
import type { BenchmarkContextOptions } from "./types.js";
import { topByRankValue } from "./rank.js";

/** scPRINT's context size (`max_len: 2200`). */
export const SCPRINT_MAX_LENGTH = 2200;

/** One cell's context. */
export interface GeneSample {
  /** token ids, `[k]` int32, k ≤ maxLength: the chosen expressed genes, then the padding genes. */
  ids: Int32Array;
  /** values aligned with `ids`, `[k]` float32 (the cell's values; 0 for padding genes). */
  values: Float32Array;
  /** how many leading entries are expressed genes (the rest is padding). */
  nExpressed: number;
}

/** Options of {@link sampleGenes}. */
export interface GeneSampleOptions {
  /** context size, a positive integer. */
  maxLength: number;
  /** fill short cells with unexpressed genes (value 0) up to maxLength (scPRINT); default false. */
  padWithUnexpressed?: boolean;
  /**
   * candidate genes for padding, distinct token ids (e.g. the dataset's `manifest.measured_tokens`: only
   * genes the input measured, so a 0 means "not expressed", not "not measured"). Required with padding.
   */
  pool?: Int32Array;
}

/**
 * `k` distinct positions out of `n`, uniformly without replacement, ascending (partial Fisher–Yates
 * over an index array: k draws).
 */
function choosePositions(rng: Rng, n: number, k: number): Int32Array {
  const idx = new Int32Array(n);
  for (let i = 0; i < n; i++) idx[i] = i;
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(rng() * (n - i));
    const t = idx[i];
    idx[i] = idx[j];
    idx[j] = t;
  }
  return idx.subarray(0, k).sort();
}

/**
 * Choose one cell's context genes.
 * @param ids `[m]` int32 token ids of the cell's expressed genes (as stored; distinct).
 * @param values `[m]` float32 values aligned with `ids` (counts or bins).
 * @param rng generator (training: the epoch's; embedding: {@link cellSamplingRng}).
 * @returns the context; when m ≤ maxLength and no padding, the input genes unchanged (copied).
 *   Padding stops early when the pool has fewer unexpressed genes than needed.
 * @throws Error on a bad maxLength, mismatched lengths, or padding without a pool.
 */
export function sampleGenes(ids: Int32Array, values: Float32Array, opts: GeneSampleOptions, rng: Rng): GeneSample {
  const { maxLength } = opts;
  if (!Number.isInteger(maxLength) || maxLength < 1) throw new Error(`max_length must be a positive integer, got ${maxLength}`);
  if (ids.length !== values.length) throw new Error(`sampleGenes: ${ids.length} ids but ${values.length} values`);
  const m = ids.length;
  if (m >= maxLength) {
    if (m === maxLength) return { ids: ids.slice(), values: values.slice(), nExpressed: m };
    const pos = choosePositions(rng, m, maxLength);
    const outIds = new Int32Array(maxLength);
    const outVals = new Float32Array(maxLength);
    for (let i = 0; i < maxLength; i++) {
      outIds[i] = ids[pos[i]];
      outVals[i] = values[pos[i]];
    }
    return { ids: outIds, values: outVals, nExpressed: maxLength };
  }
  if (!opts.padWithUnexpressed) return { ids: ids.slice(), values: values.slice(), nExpressed: m };
  const pool = opts.pool;
  if (!pool) throw new Error("pad_with_unexpressed needs the pool of candidate genes (the dataset's measured_tokens)");
  const expressed = new Set<number>(ids);
  const need = maxLength - m;
  let padIds: Int32Array;
  if (2 * (maxLength + 1) <= pool.length) {
    // rejection from the pool (distinct ids): at most half of it is ever taken, so < 2 draws per gene
    const taken = new Set<number>();
    const out: number[] = [];
    while (out.length < need) {
      const t = pool[Math.floor(rng() * pool.length)];
      if (expressed.has(t) || taken.has(t)) continue;
      taken.add(t);
      out.push(t);
    }
    padIds = Int32Array.from(out).sort();
  } else {
    const cand: number[] = [];
    for (const t of pool) if (!expressed.has(t)) cand.push(t);
    const pick = choosePositions(rng, cand.length, Math.min(need, cand.length));
    padIds = Int32Array.from(pick, (p) => cand[p]).sort();
  }
  const k = padIds.length;
  const outIds = new Int32Array(m + k);
  outIds.set(ids);
  outIds.set(padIds, m);
  const outVals = new Float32Array(m + k);
  outVals.set(values);
  return { ids: outIds, values: outVals, nExpressed: m };
}

/** The generator of a cell's context when embedding: depends on the seed and the cell id only. */
export function cellSamplingRng(seed: number, cellId: string): Rng {
  return makeRng(`${seed}:genes:${cellId}`);
}

/**
 * A gene-set cell's one inference context (`cellfm embed`, gene networks without a list): all its
 * genes up to `maxLength`, else a uniform subset seeded by the cell id only.
 * @throws Error when `values` is missing.
 */
export function setInferenceContext(ids: Int32Array, values: Float32Array | undefined, o: { maxLength: number; cellId: string }): { ids: Int32Array; values: Float32Array } {
  if (!values) throw new Error(`cell ${o.cellId}: a value encoding needs per-token values`);
  const s = sampleGenes(ids, values, { maxLength: o.maxLength }, cellSamplingRng(0, o.cellId));
  return { ids: s.ids, values: s.values };
}

/**
 * Contexts covering all of a gene-set cell's tokens exactly once (`cellfm denoise`): one context when
 * they fit in `maxLength`, else ⌈n / maxLength⌉ contexts of near-equal size from a shuffle seeded by
 * the cell id (each ascending), so the result depends only on the cell.
 * @returns positions into the cell's tokens per context.
 */
export function coveringSetContexts(counts: Float32Array, o: { maxLength: number; cellId: string }): Int32Array[] {
  const n = counts.length;
  const nParts = Math.ceil(n / o.maxLength);
  if (nParts <= 1) return n ? [Int32Array.from({ length: n }, (_, i) => i)] : [];
  const order = Int32Array.from({ length: n }, (_, i) => i);
  const rng = cellSamplingRng(0, o.cellId);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  const parts: Int32Array[] = [];
  for (let k = 0; k < nParts; k++) parts.push(order.slice(Math.floor((k * n) / nParts), Math.floor(((k + 1) * n) / nParts)).sort());
  return parts;
}

/**
 * A gene-set cell's context for a gene list (`cellfm grn`): its expressed list genes (a uniform
 * subset when more than `maxLength`), then a uniform subset of its other genes up to `maxLength`; in
 * ascending token order. Subsets are seeded by `seed` and the cell id.
 * @param isListToken true for the tokens of the gene list.
 * @throws Error when the cell has no values.
 */
export function listSetContext(
  cell: { cellId: string; ids: Int32Array; values?: Float32Array },
  isListToken: (t: number) => boolean,
  maxLength: number,
  seed: number,
): { ids: Int32Array; values: Float32Array; nList: number } {
  if (!cell.values) throw new Error(`cell ${cell.cellId}: a value encoding needs per-token values`);
  const inList: number[] = [], other: number[] = [];
  cell.ids.forEach((t, i) => (isListToken(t) ? inList : other).push(i));
  const rng = cellSamplingRng(seed, cell.cellId);
  // k of the positions `pos`, uniformly (all of them when k = |pos|)
  const pick = (pos: number[], k: number) =>
    k <= 0 || pos.length === 0
      ? { ids: new Int32Array(0), values: new Float32Array(0) }
      : sampleGenes(Int32Array.from(pos, (i) => cell.ids[i]), Float32Array.from(pos, (i) => cell.values![i]), { maxLength: k }, rng);
  const a = pick(inList, Math.min(inList.length, maxLength));
  const b = pick(other, Math.min(other.length, maxLength - a.ids.length));
  const m = a.ids.length + b.ids.length;
  const order = Array.from({ length: m }, (_, i) => i);
  const idAt = (i: number) => (i < a.ids.length ? a.ids[i] : b.ids[i - a.ids.length]);
  const valAt = (i: number) => (i < a.ids.length ? a.values[i] : b.values[i - a.ids.length]);
  order.sort((x, y) => idAt(x) - idAt(y));
  return { ids: Int32Array.from(order, idAt), values: Float32Array.from(order, valAt), nList: a.ids.length };
}

/** Fisher–Yates shuffle in place with a seeded stream. */
function shuffle(a: Int32Array, rng: () => number): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}

/**
 * A gene-set cell's benchmark contexts (`cellfm compare`'s denoising benchmark): its nonzero columns
 * (with `topGenes`: only the `topGenes` first by rank value, as `--top-genes` tokens), shuffled with
 * the benchmark's stream and cut into contexts of at most `maxLength`, so every gene is predicted once.
 * @returns columns per context.
 */
export function setBenchmarkGroups(row: Float32Array, nz: number[], geneTokens: Int32Array, rng: Rng, o: BenchmarkContextOptions): Int32Array[] {
  const perm = o.topGenes !== undefined ? topByRankValue(row, nz, geneTokens, o.tokenMedian, o.topGenes).sort() : Int32Array.from(nz);
  shuffle(perm, rng);
  const groups: Int32Array[] = [];
  for (let s = 0; s < perm.length; s += o.maxLength) groups.push(perm.slice(s, s + o.maxLength));
  return groups;
}
