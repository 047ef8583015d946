/**
 * Shared data shapes. Cells are rows, genes are columns (AnnData's cells × genes orientation).
 */

/** One obs (or var) column, in cell order. Categorical columns are stored decoded as strings. */
export type ObsValues = string[] | Float64Array | boolean[];

/** Per-cell annotations (AnnData `obs`), cell order; `index` holds the obs names (cell ids). */
export interface ObsTable {
  /** obs names (cell barcodes / ids), length nCells. */
  index: string[];
  /** column name → values, each of length nCells. */
  columns: Record<string, ObsValues>;
}

/** Per-gene annotations (AnnData `var`); `index` holds the var names. */
export interface VarTable {
  /** var names, length nGenes. */
  index: string[];
  /** column name → values, each of length nGenes (strings for text columns). */
  columns: Record<string, string[] | Float64Array>;
}

/**
 * A block of consecutive cells in compressed sparse row (CSR) form.
 * Row r of the block is cell `start + r`; its nonzero genes are
 * `indices[indptr[r] .. indptr[r+1])` with counts `data[...]` (float64, raw counts).
 */
export interface CsrChunk {
  /** index of the block's first cell in the whole matrix. */
  start: number;
  /** number of cells in the block. */
  nCells: number;
  /** row pointers, length nCells + 1, relative to this block (indptr[0] === 0). */
  indptr: Float64Array;
  /** gene (column) index of each stored value, int32. */
  indices: Int32Array;
  /** stored values as float64 (counts), same length as indices. */
  data: Float64Array;
}

/**
 * Which chunks {@link CountMatrixSource.chunks} yields: cells `[start, end)` (default all) cut into
 * blocks of `chunkSize` starting at `start`; of those, only block numbers `b` with
 * `b % stride === phase` (default every block). Used by `--shard` (a cell range) and by the
 * tokenizer's worker threads (every W-th block each).
 */
export interface ChunkSelection {
  start?: number;
  end?: number;
  stride?: number;
  phase?: number;
}

/** The blocks `[a, b)` of cells a {@link ChunkSelection} picks (validated). */
export function selectedBlocks(nCells: number, chunkSize: number, sel: ChunkSelection = {}): [number, number][] {
  if (!(chunkSize >= 1)) throw new Error(`chunk size must be >= 1 (got ${chunkSize})`);
  const start = sel.start ?? 0;
  const end = sel.end ?? nCells;
  const stride = sel.stride ?? 1;
  const phase = sel.phase ?? 0;
  if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start <= end && end <= nCells)) {
    throw new Error(`cell range [${start}, ${end}) is not within [0, ${nCells}]`);
  }
  if (!(Number.isInteger(stride) && stride >= 1 && Number.isInteger(phase) && phase >= 0 && phase < stride)) {
    throw new Error(`chunk stride ${stride} / phase ${phase} invalid`);
  }
  const out: [number, number][] = [];
  for (let a = start, b = 0; a < end; a += chunkSize, b++) if (b % stride === phase) out.push([a, Math.min(end, a + chunkSize)]);
  return out;
}

/**
 * An opened single-cell count matrix (cells × genes) that yields cells in chunks,
 * so memory stays bounded whatever the file size.
 */
export interface CountMatrixSource {
  /** path the data came from. */
  readonly path: string;
  readonly nCells: number;
  readonly nGenes: number;
  readonly obs: ObsTable;
  readonly var: VarTable;
  /** Yields consecutive CSR blocks of at most `chunkSize` cells, in cell order (optionally a selection of them). */
  chunks(chunkSize?: number, select?: ChunkSelection): Iterable<CsrChunk>;
  /** Releases file handles. */
  close(): void;
  /** What the reader left out or changed, one sentence each (e.g. a 10x folder's non-RNA features), for the log. */
  readonly notes?: string[];
}
