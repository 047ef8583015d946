/**
 * Geneformer rank-value encoding (Theodoris et al., Nature 2023; Chen et al. 2024 for V2).
 * Reference: Geneformer `geneformer/tokenizer.py@05fcbeb` — `rank_genes`, `tokenize_cell`,
 * `sum_ensembl_ids`, `TranscriptomeTokenizer.tokenize_anndata` — with these rules
 * (made exact where upstream leaves them implicit):
 *
 * - value(cell, gene) = ((count / n_counts) * 10000) / nonzero_median, evaluated left to right in
 *   float64; only nonzero counts take part;
 * - `n_counts` from `obs["n_counts"]` when present, else the row sum over all var columns;
 * - with `obs["filter_pass"]`, only cells whose value equals 1 are kept;
 * - input IDs are upper-cased and mapped through the version's mapping table; columns mapping to the
 *   same gene have their counts summed (also two identical input IDs);
 * - genes ranked by value descending, exact ties by ascending token id;
 * - V1: first 2,048 tokens; V2: `<cls>` + first 4,094 + `<eos>`; cells with no kept gene are dropped.
 *
 * The same gene mapping, count summing, `n_counts` and `filter_pass` rules feed the `binned` (scGPT)
 * and `counts` (scPRINT) encodings ({@link TokenEncoding}); every encoding also returns a per-token
 * value and each cell's library size.
 *
 * The hot path uses typed arrays only (no per-gene objects): per cell, a 32-bit key per expressed gene
 * (the inverted high word of its float64 value) is LSD-radix-sorted with the token id as payload, then
 * the rare runs of equal keys (values within ~1e-6 relative) are re-sorted exactly, so the order equals
 * a full (value desc, token asc) comparator sort. Output for a block of cells goes into one flat
 * int32 buffer.
 */
import type { CountMatrixSource, CsrChunk, ObsValues } from "../data/types.js";
import { nonHumanSpecies, resolveGeneIds } from "../data/genes.js";
import { loadGeneformerDictionaries, type GeneformerDictionaries, type GeneformerVersion } from "./dictionaries.js";
import { binCounts, cellBinningRng, DEFAULT_N_BINS } from "./binning.js";

/**
 * Token encodings of `cellfm tokenize --encoding`:
 * - `rank`: Geneformer rank-value encoding (this module), `values` = raw count of each token (0 for `<cls>`/`<eos>`);
 * - `binned`: scGPT value binning (`./binning.ts`), `values` = bin index (1 … n_bins − 1);
 * - `counts`: scPRINT-style raw counts, `values` = raw count.
 *
 * For `binned` and `counts` a cell is all its nonzero genes that are in the vocabulary, in
 * ascending token id order (gene order carries no meaning for these encodings; token-id order does not
 * depend on the input's column order), no special tokens and no truncation (the `max_length` gene
 * sampling happens when training or embedding).
 */
export type TokenEncoding = "rank" | "binned" | "counts";

/** `manifest.json` `encoding` string of each {@link TokenEncoding}. */
export const ENCODING_NAMES: Record<TokenEncoding, string> = {
  rank: "geneformer-rank-value",
  binned: "scgpt-binned",
  counts: "scprint-counts",
};

/** The {@link TokenEncoding} of a manifest `encoding` string, or undefined when it is none of them. */
export function encodingFromManifest(name: string): TokenEncoding | undefined {
  for (const [k, v] of Object.entries(ENCODING_NAMES)) if (v === name) return k as TokenEncoding;
  return undefined;
}

/** Options of {@link GeneformerTokenizer} / {@link tokenizeCounts}. */
export interface GeneformerTokenizeOptions {
  /** "V1" (gc30M, 2,048 tokens) or "V2" (gc104M, `<cls>` + 4,094 + `<eos>`). */
  modelVersion: GeneformerVersion;
  /** dictionaries to use (default: the bundled ones for `modelVersion`). */
  dictionaries?: GeneformerDictionaries;
  /** var column holding gene IDs (default `ensembl_id`; falls back to the var index when absent). */
  idColumn?: string;
  /** obs columns copied to the output for each kept cell. */
  carry?: string[];
  /** cells per block read from the source (default 512). Never changes the output. */
  chunkSize?: number;
  /** nonzero medians replacing the dictionary's (Ensembl ID → median), e.g. from `cellfm medians`. */
  medians?: Map<string, number>;
  /** minimum fraction of var genes that must be known to the token dictionary (default 0.5). */
  minKnownFraction?: number;
  /** token encoding (default `rank`, Geneformer's). */
  encoding?: TokenEncoding;
  /** `binned`: total bins including bin 0 (default 51). */
  nBins?: number;
  /** `binned`: seed of the per-cell tie-spreading generator (with the cell id; default 0). */
  seed?: number;
  /**
   * `binned` / `counts`: keep only each cell's `topGenes` genes that Geneformer's rank-value encoding puts
   * first (largest count / n_counts × 10,000 / nonzero median, ties by token id), still stored in
   * ascending token id order; binned values are computed over all the cell's expressed genes first.
   * So a value model reads the same genes as a rank model truncated to `topGenes` tokens, and an
   * encoding comparison is not confounded by which genes each model sees. Default: every expressed gene.
   */
  topGenes?: number;
}

/** One tokenized cell. */
export interface TokenizedCell {
  /** obs name. */
  cellId: string;
  /** token ids, `[length]` int32 (V2: starts with `<cls>`, ends with `<eos>`). */
  inputIds: Int32Array;
  /** number of tokens. */
  length: number;
  /** row of the cell in the source matrix. */
  obsRow: number;
  /** per-token values aligned with `inputIds` (see {@link FlatTokenizedChunk.values}), float32. */
  values: Float32Array;
  /** the cell's library size. */
  nCounts: number;
  /** `binned` only: raw count per token, aligned with `inputIds`. */
  counts?: Float32Array;
}

/** A tokenized block in flat form: kept cell i has tokens `ids[offsets[i] .. offsets[i+1])`. */
export interface FlatTokenizedChunk {
  cellIds: string[];
  /** source row of each kept cell, `[nKept]`. */
  obsRows: Int32Array;
  /** `[nKept + 1]`, offsets[0] = 0. */
  offsets: Int32Array;
  /** all token ids of the block, int32. */
  ids: Int32Array;
  /**
   * per-token value, aligned with `ids`, float32: the raw count (summed over var columns mapping to
   * the gene) for `rank` and `counts` (0 for `<cls>`/`<eos>`), the bin index for `binned`.
   */
  values: Float32Array;
  /** library size of each kept cell (obs `n_counts` or the row sum over all var columns), `[nKept]` float64. */
  nCounts: Float64Array;
  /** `binned` only: the raw count of each token, aligned with `ids` (so denoising can downsample and re-bin). */
  counts?: Float32Array;
  /** what happened to the block's cells (counted into the summary by {@link GeneformerTokenizer.record}). */
  stats: ChunkStats;
}

/** Per-block counts of a {@link FlatTokenizedChunk}; adding them up over blocks gives the summary. */
export interface ChunkStats {
  /** obs names of cells dropped because no nonzero gene is in the dictionary, in order. */
  droppedEmpty: string[];
  failingFilter: number;
  truncated: number;
  withTies: number;
}

/** What happened while tokenizing (printed by `cellfm tokenize`, saved as `summary.json`). */
export interface TokenizeSummary {
  input: string;
  /** `--encoding` (rank, binned, counts). */
  encoding: TokenEncoding;
  model_version: GeneformerVersion;
  n_cells: number;
  n_vars: number;
  /** where gene IDs came from. */
  gene_id_source: string;
  /** distinct dictionary genes matched (var genes collapsing to one gene count once). */
  genes_matched: number;
  /** var genes (columns) whose (mapped) ID is in the token dictionary. */
  var_genes_matched: number;
  /** var genes not in the token dictionary (incl. empty IDs). */
  genes_unknown: number;
  /** var genes mapped from a gene symbol via the bundled symbol table. */
  genes_from_symbols: number;
  /** groups of ≥ 2 var genes that map to one gene (counts summed), and the genes in them. */
  summed_groups: number;
  columns_in_summed_groups: number;
  /** "obs" (obs["n_counts"]) or "row sum of all var columns". */
  n_counts_source: string;
  filter_pass_present: boolean;
  cells_failing_filter_pass: number;
  cells_written: number;
  /** obs names of cells dropped because no nonzero gene is in the dictionary. */
  cells_dropped_empty: string[];
  /** rank: cells with more genes than fit (V1 2,048; V2 4,094); binned/counts: cells with more than `--top-genes` (0 without it). */
  cells_truncated: number;
  /** cells with at least one exact tie between expressed genes' values (broken by token id). */
  cells_with_exact_value_ties: number;
  length_min: number;
  length_median: number;
  length_max: number;
  dictionaries: GeneformerDictionaries["files"];
  /** source of the medians: the bundled dictionary or a user file. */
  medians_source: string;
  /** `--shard k/N`: which slice of the input's cells (`n_cells` counts the slice). */
  shard?: { index: number; count: number; cell_start: number; cell_end: number; n_cells_input: number };
}

/** Per-column gene plan: token id (or -1) and whether any token is shared by several columns. */
export interface GenePlan {
  colToken: Int32Array;
  /** nonzero median per token id (NaN where not used), float64. */
  tokenMedian: Float64Array;
  needsSum: boolean;
  /** distinct tokens matched. */
  genesMatched: number;
  /** var columns matched. */
  columnsMatched: number;
  summedGroups: number;
  columnsInSummedGroups: number;
  genesFromSymbols: number;
  source: string;
}

/**
 * Map var genes to tokens (reference `sum_ensembl_ids` + `genelist_dict` filtering).
 * @throws Error if a used gene has no median, or fewer than `minKnownFraction` of genes are known.
 */
export function planGenes(
  v: CountMatrixSource["var"],
  dict: GeneformerDictionaries,
  opts: { idColumn?: string; file?: string; medians?: Map<string, number>; minKnownFraction?: number } = {},
): GenePlan {
  const { sourceToken, medianOfToken, names } = dict.lookup;
  const res = resolveGeneIds(v, { idColumn: opts.idColumn, file: opts.file, acceptAsIs: (up) => sourceToken.has(up) });
  const n = res.ids.length;
  const colToken = new Int32Array(n).fill(-1);
  const tokenMedian = new Float64Array(dict.vocabSize).fill(NaN);
  const perToken = new Map<number, number>();
  let matched = 0;
  for (let c = 0; c < n; c++) {
    const id = res.ids[c];
    if (id === "") continue;
    // = tokens.get(mapping.get(ID)) and medians.get(target): the mapping only has targets in the token dictionary
    const t = sourceToken.get(id.toUpperCase());
    if (t === undefined) continue;
    const target = names[t];
    const m = opts.medians ? opts.medians.get(target) : Number.isNaN(medianOfToken[t]) ? undefined : medianOfToken[t];
    if (m === undefined) {
      if (opts.medians) continue; // a user median table without this gene: the gene is not used
      throw new Error(`Geneformer ${dict.version} dictionaries: gene ${target} has a token but no nonzero median`);
    }
    colToken[c] = t;
    tokenMedian[t] = m;
    matched++;
    perToken.set(t, (perToken.get(t) ?? 0) + 1);
  }
  let groups = 0;
  let inGroups = 0;
  for (const k of perToken.values()) {
    if (k > 1) {
      groups++;
      inGroups += k;
    }
  }
  const minFrac = opts.minKnownFraction ?? 0.5;
  if (n > 0 && matched < minFrac * n) {
    const other = nonHumanSpecies(res.ids);
    if (other) {
      throw new Error(
        `${opts.file ?? "input"}: the genes look like ${other.species} (${other.count} of ${n} IDs from ${res.source} are ${other.prefix}… Ensembl IDs) ` +
          `but the Geneformer ${dict.version} dictionaries are human (only ${matched} genes matched); map the genes to their human orthologs first ` +
          `(e.g. with Ensembl BioMart) and give the human Ensembl IDs`,
      );
    }
    throw new Error(
      `${opts.file ?? "input"}: only ${matched} of ${n} genes (${((100 * matched) / n).toFixed(1)}%) from ${res.source} are in the Geneformer ${dict.version} dictionary ` +
        `(${res.empty} empty IDs, ${res.fromSymbols} mapped from symbols); expected Ensembl IDs or gene symbols. ` +
        `Pick the var column with Ensembl IDs using --id-column <name> (or --id-column index for the var index)`,
    );
  }
  return {
    colToken,
    tokenMedian,
    needsSum: groups > 0,
    genesMatched: perToken.size,
    columnsMatched: matched,
    summedGroups: groups,
    columnsInSummedGroups: inGroups,
    genesFromSymbols: res.fromSymbols,
    source: res.source,
  };
}

/**
 * Reusable scratch buffers of the per-cell ranking: a 32-bit sort key per gene (the inverted high word
 * of the float64 value: sign, exponent and 20 mantissa bits, so ascending key = descending value) and
 * the gene's token id as payload.
 */
export class RankScratch {
  keys = new Uint32Array(1024);
  toks = new Int32Array(1024);
  private keys2 = new Uint32Array(1024);
  private toks2 = new Int32Array(1024);
  private readonly count = new Int32Array(4 * 256);
  private readonly f64 = new Float64Array(1);
  private readonly f64Words = new Uint32Array(this.f64.buffer);
  private readonly hiIndex = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0; // little-endian: high word is [1]
  /** value of each token in the current cell (indexed by token id). */
  valueOfToken: Float64Array;
  constructor(vocabSize: number) {
    this.valueOfToken = new Float64Array(vocabSize);
  }
  ensure(n: number): void {
    if (this.keys.length < n) {
      let cap = this.keys.length;
      while (cap < n) cap *= 2;
      this.keys = new Uint32Array(cap);
      this.toks = new Int32Array(cap);
      this.keys2 = new Uint32Array(cap);
      this.toks2 = new Int32Array(cap);
    }
  }
  /** Set gene slot i: its value (positive, finite float64) and token id. */
  setKey(i: number, value: number, token: number): void {
    this.valueOfToken[token] = value;
    this.f64[0] = value;
    this.keys[i] = (0xffffffff - this.f64Words[this.hiIndex]) >>> 0;
    this.toks[i] = token;
  }
  /**
   * Set slots 0 … m−1 from a cell's genes: value = ((count / n) × 10,000) / median, in float64, left to
   * right (Geneformer's normalisation), for tokens `toks[i]` with counts `cnts[i]` and library size `n`.
   */
  setKeys(toks: Int32Array, cnts: Float64Array, m: number, n: number, tokenMedian: Float64Array): void {
    for (let i = 0; i < m; i++) {
      const t = toks[i];
      this.setKey(i, ((cnts[i] / n) * 10000) / tokenMedian[t], t);
    }
  }
  /**
   * LSD radix sort (4 passes of 8 bits of key − min, passes where every key has the same digit skipped) of the first
   * `m` keys, carrying the tokens. Stable. Afterwards `keys`/`toks` hold the sorted order. The four
   * byte histograms are built in one read of the keys.
   */
  radixSort(m: number): void {
    let k = this.keys;
    let t = this.toks;
    let k2 = this.keys2;
    let t2 = this.toks2;
    const count = this.count;
    count.fill(0);
    // digits of (key − smallest key): same order, and a cell's values rarely span more than 2^24 key
    // steps (16 binades), so the top digit is constant and its pass skipped (3 passes instead of 4)
    let min = k[0];
    for (let i = 1; i < m; i++) if (k[i] < min) min = k[i];
    for (let i = 0; i < m; i++) {
      const d = (k[i] - min) >>> 0;
      count[d & 255]++;
      count[256 + ((d >>> 8) & 255)]++;
      count[512 + ((d >>> 16) & 255)]++;
      count[768 + (d >>> 24)]++;
    }
    for (let pass = 0; pass < 4; pass++) {
      const shift = pass * 8;
      const base = pass * 256;
      if (count[base + ((((k[0] - min) >>> 0) >>> shift) & 255)] === m) continue; // every key has this digit
      let sum = 0;
      for (let b = base; b < base + 256; b++) {
        const c = count[b];
        count[b] = sum;
        sum += c;
      }
      for (let i = 0; i < m; i++) {
        const key = k[i];
        const j = count[base + ((((key - min) >>> 0) >>> shift) & 255)]++;
        k2[j] = key;
        t2[j] = t[i];
      }
      const tk = k;
      k = k2;
      k2 = tk;
      const tt = t;
      t = t2;
      t2 = tt;
    }
    this.keys = k;
    this.toks = t;
    this.keys2 = k2;
    this.toks2 = t2;
  }
}

// Per-cell loops of GeneformerTokenizer.encodeChunk, as small functions: each is called once per cell,
// so V8 optimises them after a few cells instead of re-compiling (OSR) the whole block loop, which
// dominated a small input's tokenizing time (first block ~4x slower than the next ones).

/** Sum of `data[a .. b)` (a cell's library size when obs has no n_counts). */
function rowSum(data: Float64Array, a: number, b: number): number {
  let n = 0;
  for (let k = a; k < b; k++) n += data[k];
  return n;
}

/** Out-parameter of {@link gatherRowCounted}: the row sum. */
const rowTotal = new Float64Array(1);

/**
 * Nonzero stored values of `[a, b)` in known genes: tokens into `toks`, counts into `cnts` (returns how
 * many), `countOf[token] = count` for them, and `total[0]` = the sum of
 * every stored value of `[a, b)` (the same left-to-right float64 sum as {@link rowSum}), in one pass.
 */
function gatherRowCounted(
  indices: Int32Array,
  data: Float64Array,
  a: number,
  b: number,
  colToken: Int32Array,
  toks: Int32Array,
  cnts: Float64Array,
  countOf: Float64Array,
  total: Float64Array,
): number {
  let m = 0;
  let n = 0;
  for (let k = a; k < b; k++) {
    const x = data[k];
    n += x;
    if (x === 0) continue;
    const t = colToken[indices[k]];
    if (t < 0) continue;
    toks[m] = t;
    cnts[m++] = x;
    countOf[t] = x;
  }
  total[0] = n;
  return m;
}

/**
 * {@link gatherRowCounted} without `countOf` and the row sum, when several columns map to one token: their counts are summed (in column order)
 * into `acc` (all zero before and after), tokens in order of first appearance.
 */
function gatherRowSummed(
  indices: Int32Array,
  data: Float64Array,
  a: number,
  b: number,
  colToken: Int32Array,
  acc: Float64Array,
  touched: Int32Array,
  toks: Int32Array,
  cnts: Float64Array,
): number {
  let m = 0;
  for (let k = a; k < b; k++) {
    const x = data[k];
    if (x === 0) continue;
    const t = colToken[indices[k]];
    if (t < 0) continue;
    if (acc[t] === 0) touched[m++] = t;
    acc[t] += x;
  }
  for (let i = 0; i < m; i++) {
    const t = touched[i];
    toks[i] = t;
    cnts[i] = acc[t];
    acc[t] = 0;
  }
  return m;
}

/** `countOf[toks[i]] = cnts[i]` for i < m. */
function scatter(toks: Int32Array, cnts: Float64Array, m: number, countOf: Float64Array): void {
  for (let i = 0; i < m; i++) countOf[toks[i]] = cnts[i];
}

/** `values[q] = countOf[ids[q]]` for q in `[from, to)`. */
function gatherValues(ids: Int32Array, values: Float32Array, from: number, to: number, countOf: Float64Array): void {
  for (let q = from; q < to; q++) values[q] = countOf[ids[q]];
}

/**
 * Rank `m` genes set with {@link RankScratch.setKey}: token ids in order of value descending, exact
 * ties by ascending token id, written into `out` (first `min(m, out.length)` entries).
 * A radix sort on the 32-bit key prefix, then runs of equal prefixes (values within ~1e-6 of each other,
 * rare) are re-sorted exactly by (value desc, token asc) — so the result equals a full comparator sort.
 * @returns whether the cell had an exact value tie between two genes.
 */
export function rankKeyed(s: RankScratch, m: number, out: Int32Array): boolean {
  if (m === 0) return false;
  s.radixSort(m);
  const k = s.keys;
  const t = s.toks;
  const val = s.valueOfToken;
  const lim = Math.min(m, out.length);
  let ties = false;
  let i = 0;
  while (i < m) {
    const key = k[i];
    let j = i + 1;
    while (j < m && k[j] === key) j++;
    if (j - i > 1) {
      const run = Array.from(t.subarray(i, j));
      run.sort((a, b) => val[b] - val[a] || a - b);
      for (let q = 1; q < run.length; q++) if (val[run[q]] === val[run[q - 1]]) ties = true;
      for (let q = i; q < j && q < lim; q++) out[q] = run[q - i];
    } else if (i < lim) out[i] = t[i];
    i = j;
  }
  return ties;
}

/**
 * Pure per-cell rank-value encoding: given a cell's expressed gene tokens and their values
 * (already median-scaled), return token ids sorted by value descending, ties by ascending token id,
 * truncated to `maxGenes`. Used by tests and by callers tokenizing single cells.
 * @param tokens `[m]` token ids (distinct); @param values `[m]` float64 values.
 */
export function rankValueOrder(tokens: Int32Array, values: Float64Array, maxGenes = Infinity): Int32Array {
  const m = tokens.length;
  const out = new Int32Array(Math.min(m, maxGenes));
  let maxTok = 0;
  for (let i = 0; i < m; i++) maxTok = Math.max(maxTok, tokens[i]);
  const s = new RankScratch(maxTok + 1);
  s.ensure(m);
  for (let i = 0; i < m; i++) s.setKey(i, values[i], tokens[i]);
  rankKeyed(s, m, out);
  return out;
}

/** Read a numeric obs column as float64 (booleans 1/0; strings NaN, so `"1"` never passes `filter_pass`). */
function obsNumbers(v: ObsValues): Float64Array {
  if (v instanceof Float64Array) return v;
  return Float64Array.from(v as (string | boolean)[], (x) => (typeof x === "boolean" ? (x ? 1 : 0) : NaN));
}

/**
 * Streaming Geneformer tokenizer for one source: feed it the source's chunks in order
 * ({@link tokenizeChunk}), then read {@link summary}.
 */
export class GeneformerTokenizer {
  readonly dict: GeneformerDictionaries;
  readonly plan: GenePlan;
  private readonly nCountsObs?: Float64Array;
  private readonly filterPass?: Float64Array;
  private readonly scratch: RankScratch;
  private readonly acc: Float64Array;
  private readonly touched: Int32Array;
  private readonly countOfToken: Float64Array;
  private readonly binOf: Float32Array;
  readonly encoding: TokenEncoding;
  readonly nBins: number;
  readonly seed: number;
  /** `binned` / `counts`: genes kept per cell (see {@link GeneformerTokenizeOptions.topGenes}); Infinity = all. */
  readonly topGenes: number;
  private tokScratch = new Int32Array(1024);
  private valScratch = new Float64Array(1024);
  private readonly lengths: number[] = [];
  private readonly droppedEmpty: string[] = [];
  private failingFilter = 0;
  private truncated = 0;
  private withTies = 0;
  readonly carry: string[];

  constructor(
    private readonly source: CountMatrixSource,
    private readonly opts: GeneformerTokenizeOptions,
  ) {
    this.encoding = opts.encoding ?? "rank";
    if (!(this.encoding in ENCODING_NAMES)) throw new Error(`unknown encoding "${String(this.encoding)}" (expected rank, binned or counts)`);
    this.nBins = opts.nBins ?? DEFAULT_N_BINS;
    if (!Number.isInteger(this.nBins) || this.nBins < 3) throw new Error(`--n-bins must be an integer >= 3, got ${this.nBins}`);
    this.seed = opts.seed ?? 0;
    if (!Number.isSafeInteger(this.seed)) throw new Error(`--seed must be an integer, got ${this.seed}`);
    if (opts.topGenes !== undefined) {
      if (this.encoding === "rank") {
        throw new Error("--top-genes is for the binned and counts encodings; a rank model keeps its top genes with data.max_length");
      }
      if (!Number.isInteger(opts.topGenes) || opts.topGenes < 1) throw new Error(`--top-genes must be a positive integer, got ${opts.topGenes}`);
    }
    this.topGenes = opts.topGenes ?? Infinity;
    this.dict = opts.dictionaries ?? loadGeneformerDictionaries(opts.modelVersion);
    if (this.dict.version !== opts.modelVersion) {
      throw new Error(`dictionaries are for ${this.dict.version}, but model version ${opts.modelVersion} was asked for`);
    }
    this.carry = opts.carry ?? [];
    for (const c of this.carry) {
      if (!(c in source.obs.columns)) {
        throw new Error(
          `${source.path}: --carry column "${c}" is not in obs (obs columns: ${Object.keys(source.obs.columns).join(", ") || "none"})`,
        );
      }
    }
    this.plan = planGenes(source.var, this.dict, {
      idColumn: opts.idColumn,
      file: source.path,
      medians: opts.medians,
      minKnownFraction: opts.minKnownFraction,
    });
    const oc = source.obs.columns;
    if ("n_counts" in oc) this.nCountsObs = obsNumbers(oc.n_counts);
    if ("filter_pass" in oc) this.filterPass = obsNumbers(oc.filter_pass);
    this.scratch = new RankScratch(this.dict.vocabSize);
    this.acc = new Float64Array(this.dict.vocabSize);
    this.touched = new Int32Array(this.dict.vocabSize);
    this.countOfToken = new Float64Array(this.dict.vocabSize);
    this.binOf = new Float32Array(this.encoding === "binned" ? this.dict.vocabSize : 0);
  }

  /**
   * Tokenize one CSR block (cells `chunk.start ..`), in order; dropped/filtered cells are omitted.
   * Output is flat (one int32 buffer for the block): kept cell i has tokens `ids[offsets[i] .. offsets[i+1])`.
   * The block is counted into {@link summary}.
   */
  tokenizeChunkFlat(chunk: CsrChunk): FlatTokenizedChunk {
    return this.record(this.encodeChunk(chunk));
  }

  /**
   * Count a block tokenized by {@link encodeChunk} (here or by another tokenizer of the same source, e.g.
   * in a worker thread) into {@link summary}. Blocks must be recorded in cell order.
   */
  record(f: FlatTokenizedChunk): FlatTokenizedChunk {
    for (let i = 0; i + 1 < f.offsets.length; i++) this.lengths.push(f.offsets[i + 1] - f.offsets[i]);
    for (const c of f.stats.droppedEmpty) this.droppedEmpty.push(c);
    this.failingFilter += f.stats.failingFilter;
    this.truncated += f.stats.truncated;
    this.withTies += f.stats.withTies;
    return f;
  }

  /** {@link tokenizeChunkFlat} without counting the block into the summary. */
  encodeChunk(chunk: CsrChunk): FlatTokenizedChunk {
    const stats: ChunkStats = { droppedEmpty: [], failingFilter: 0, truncated: 0, withTies: 0 };
    const { indptr, indices, data } = chunk;
    const { colToken, tokenMedian, needsSum } = this.plan;
    const s = this.scratch;
    const rank = this.encoding === "rank";
    const isV2 = rank && this.dict.version === "V2";
    const maxGenes = rank ? this.dict.maxGenes : Infinity;
    const cls = this.dict.special.cls ?? 2;
    const eos = this.dict.special.eos ?? 3;
    const countOf = this.countOfToken;
    // upper bound of the output size: every stored value kept, plus the special tokens
    let cap = 0;
    for (let r = 0; r < chunk.nCells; r++) cap += Math.min(indptr[r + 1] - indptr[r], maxGenes) + (isV2 ? 2 : 0);
    const ids = new Int32Array(cap);
    const values = new Float32Array(cap);
    const rawCounts = this.encoding === "binned" ? new Float32Array(cap) : undefined;
    const offsets = new Int32Array(chunk.nCells + 1);
    const obsRows = new Int32Array(chunk.nCells);
    const nCounts = new Float64Array(chunk.nCells);
    const cellIds: string[] = [];
    let nOut = 0;
    let pos = 0;
    const obsIndex = this.source.obs.index;
    for (let r = 0; r < chunk.nCells; r++) {
      const row = chunk.start + r;
      if (this.filterPass && this.filterPass[row] !== 1) {
        stats.failingFilter++;
        continue;
      }
      const a = indptr[r];
      const b = indptr[r + 1];
      // collect (token, count) of expressed known genes, and countOf[token] = count
      if (b - a > this.tokScratch.length) {
        this.tokScratch = new Int32Array(2 * (b - a));
        this.valScratch = new Float64Array(2 * (b - a));
      }
      const toks = this.tokScratch;
      const cnts = this.valScratch;
      let m: number;
      let n: number;
      if (needsSum) {
        n = this.nCountsObs ? this.nCountsObs[row] : rowSum(data, a, b);
        m = gatherRowSummed(indices, data, a, b, colToken, this.acc, this.touched, toks, cnts);
        scatter(toks, cnts, m, countOf);
      } else {
        // one pass: the row sum (every stored value, in order: the same float64 sum as rowSum) with the gather
        m = gatherRowCounted(indices, data, a, b, colToken, toks, cnts, countOf, rowTotal);
        n = this.nCountsObs ? this.nCountsObs[row] : rowTotal[0];
      }
      const cellId = obsIndex[row];
      if (m === 0) {
        stats.droppedEmpty.push(cellId);
        continue;
      }
      if (!(n > 0) || !Number.isFinite(n)) {
        throw new Error(`${this.source.path}: cell ${row} ("${cellId}") has n_counts = ${n}; expected a positive total count`);
      }
      if (rank) {
        s.ensure(m);
        s.setKeys(toks, cnts, m, n, tokenMedian);
        const kept = Math.min(m, maxGenes);
        if (m > maxGenes) stats.truncated++;
        if (isV2) values[pos] = 0; // <cls>
        if (isV2) ids[pos++] = cls;
        if (rankKeyed(s, m, ids.subarray(pos, pos + kept))) stats.withTies++;
        gatherValues(ids, values, pos, pos + kept, countOf);
        pos += kept;
        if (isV2) values[pos] = 0; // <eos>
        if (isV2) ids[pos++] = eos;
      } else {
        // all expressed vocabulary genes (or the top `topGenes` of them by rank-value), ascending token id;
        // sorted in place in the output when every gene is kept, in a copy when only the top ones are
        const select = m > this.topGenes;
        const all = select ? toks.slice(0, m) : ids.subarray(pos, pos + m);
        if (!select) all.set(toks.subarray(0, m));
        all.sort();
        const binned = this.encoding === "binned";
        if (binned) {
          // bins over every expressed gene of the cell (scGPT), before any gene selection
          const c64 = new Float64Array(m);
          for (let q = 0; q < m; q++) c64[q] = countOf[all[q]];
          const bins = binCounts(c64, n, cellBinningRng(this.seed, cellId), this.nBins);
          for (let q = 0; q < m; q++) this.binOf[all[q]] = bins[q];
        }
        let kept = all;
        if (select) {
          s.ensure(m);
          s.setKeys(toks, cnts, m, n, tokenMedian);
          kept = new Int32Array(this.topGenes);
          if (rankKeyed(s, m, kept)) stats.withTies++;
          kept.sort();
          stats.truncated++;
          ids.set(kept, pos);
        }
        const k = kept.length;
        for (let q = 0; q < k; q++) {
          const t = kept[q];
          values[pos + q] = binned ? this.binOf[t] : countOf[t];
          if (rawCounts) rawCounts[pos + q] = countOf[t];
        }
        pos += k;
      }
      offsets[nOut + 1] = pos;
      obsRows[nOut] = row;
      nCounts[nOut] = n;
      cellIds.push(cellId);
      nOut++;
    }
    return {
      cellIds,
      obsRows: obsRows.subarray(0, nOut),
      offsets: offsets.subarray(0, nOut + 1),
      ids: ids.subarray(0, pos),
      values: values.subarray(0, pos),
      nCounts: nCounts.subarray(0, nOut),
      ...(rawCounts ? { counts: rawCounts.subarray(0, pos) } : {}),
      stats,
    };
  }

  /** Tokenize one CSR block into per-cell arrays (views into one buffer); see {@link tokenizeChunkFlat}. */
  tokenizeChunk(chunk: CsrChunk): TokenizedCell[] {
    const f = this.tokenizeChunkFlat(chunk);
    const cells: TokenizedCell[] = new Array(f.cellIds.length);
    for (let i = 0; i < f.cellIds.length; i++) {
      const inputIds = f.ids.subarray(f.offsets[i], f.offsets[i + 1]);
      const values = f.values.subarray(f.offsets[i], f.offsets[i + 1]);
      cells[i] = { cellId: f.cellIds[i], inputIds, length: inputIds.length, obsRow: f.obsRows[i], values, nCounts: f.nCounts[i] };
      if (f.counts) cells[i].counts = f.counts.subarray(f.offsets[i], f.offsets[i + 1]);
    }
    return cells;
  }

  /** Carried obs values for the cells at the given source rows (in order). */
  carriedObsRows(rows: Int32Array): Record<string, ObsValues> {
    const out: Record<string, ObsValues> = {};
    for (const c of this.carry) {
      const col = this.source.obs.columns[c];
      if (col instanceof Float64Array) out[c] = Float64Array.from(rows, (r) => col[r]);
      else out[c] = Array.from(rows, (r) => (col as (string | boolean)[])[r]) as string[] | boolean[];
    }
    return out;
  }

  /** Carried obs values for the given cells (in order). */
  carriedObs(cells: TokenizedCell[]): Record<string, ObsValues> {
    const out: Record<string, ObsValues> = {};
    for (const c of this.carry) {
      const col = this.source.obs.columns[c];
      if (col instanceof Float64Array) out[c] = Float64Array.from(cells, (x) => col[x.obsRow]);
      else out[c] = cells.map((x) => (col as (string | boolean)[])[x.obsRow]) as string[] | boolean[];
    }
    return out;
  }

  /**
   * Summary so far (complete after the last chunk).
   * @param nCells cells of the input in scope (default all of the source's; a `--shard` gives its slice).
   */
  summary(nCells = this.source.nCells): TokenizeSummary {
    const L = Int32Array.from(this.lengths).sort();
    const n = L.length;
    const median = n === 0 ? 0 : n % 2 ? L[(n - 1) / 2] : (L[n / 2 - 1] + L[n / 2]) / 2;
    return {
      input: this.source.path,
      encoding: this.encoding,
      model_version: this.dict.version,
      n_cells: nCells,
      n_vars: this.source.nGenes,
      gene_id_source: this.plan.source,
      genes_matched: this.plan.genesMatched,
      var_genes_matched: this.plan.columnsMatched,
      genes_unknown: this.source.nGenes - this.plan.columnsMatched,
      genes_from_symbols: this.plan.genesFromSymbols,
      summed_groups: this.plan.summedGroups,
      columns_in_summed_groups: this.plan.columnsInSummedGroups,
      n_counts_source: this.nCountsObs ? "obs" : "row sum of all var columns",
      filter_pass_present: this.filterPass !== undefined,
      cells_failing_filter_pass: this.failingFilter,
      cells_written: n,
      cells_dropped_empty: [...this.droppedEmpty],
      cells_truncated: this.truncated,
      cells_with_exact_value_ties: this.withTies,
      length_min: n ? L[0] : 0,
      length_median: median,
      length_max: n ? L[n - 1] : 0,
      dictionaries: this.dict.files,
      medians_source: this.opts.medians ? "user" : this.dict.files.medians.name,
    };
  }
}

/**
 * Tokenize a whole source in memory (cells in input order). For large inputs stream with
 * {@link GeneformerTokenizer} and a dataset writer instead (what `cellfm tokenize` does).
 * @param range only cells `[start, end)` (default all).
 * @returns the kept cells, their carried obs columns and the summary.
 * @throws Error on a missing `--carry` column, < 50% known genes, or a non-positive n_counts.
 */
export function tokenizeCounts(
  source: CountMatrixSource,
  opts: GeneformerTokenizeOptions,
  range: { start: number; end: number } = { start: 0, end: source.nCells },
): { cells: TokenizedCell[]; obs: Record<string, ObsValues>; summary: TokenizeSummary } {
  const tk = new GeneformerTokenizer(source, opts);
  const cells: TokenizedCell[] = [];
  for (const chunk of source.chunks(opts.chunkSize ?? 512, range)) {
    for (const c of tk.tokenizeChunk(chunk)) cells.push(c);
  }
  return { cells, obs: tk.carriedObs(cells), summary: tk.summary(range.end - range.start) };
}
