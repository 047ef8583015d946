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
  /** Yields consecutive CSR blocks of at most `chunkSize` cells, in cell order. */
  chunks(chunkSize?: number): Iterable<CsrChunk>;
  /** Releases file handles. */
  close(): void;
}
