/**
 * Open a count matrix whatever its format: an AnnData `.h5ad` file (chunked HDF5 reads) or a 10x
 * Matrix Market folder. Counts are validated while chunking (negative, NaN, non-integer → an error
 * naming the file and the cell).
 */
import * as fs from "node:fs";
import { openH5ad, type OpenCountsOptions } from "./h5ad.js";
import { isMtxFolder, openMtx } from "./mtx.js";
import type { CountMatrixSource } from "./types.js";

export type { OpenCountsOptions } from "./h5ad.js";

/**
 * Open `.h5ad` file or 10x folder `path` as cells × genes raw counts.
 * @param opts.layer `layers/<name>` instead of `X` (h5ad only); `useRaw`: `raw/X`; `allowNonInteger`;
 *   `obsTsv`: per-cell annotation TSV for 10x folders (first column barcode).
 * @throws Error naming the path: missing, not HDF5/AnnData, not a 10x folder, missing layer.
 */
export async function openCounts(path: string, opts: OpenCountsOptions & { obsTsv?: string } = {}): Promise<CountMatrixSource> {
  if (!fs.existsSync(path)) throw new Error(`${path}: file or folder not found`);
  let src: CountMatrixSource;
  if (fs.statSync(path).isDirectory()) {
    if (!isMtxFolder(path)) throw new Error(`${path}: a folder, but not a 10x Matrix Market folder (no matrix.mtx[.gz])`);
    if (opts.layer || opts.useRaw) throw new Error(`${path}: --layer/--use-raw apply to .h5ad files only`);
    src = openMtx(path, opts);
  } else {
    if (opts.obsTsv) throw new Error(`--obs applies to 10x folders only (${path} is a file)`);
    src = await openH5ad(path, opts);
  }
  try {
    checkUniqueCellIds(path, src.obs.index);
  } catch (e) {
    src.close();
    throw e;
  }
  return src;
}

/**
 * Cell ids (the obs index, a 10x folder's barcodes) must be unique: outputs (tokens, embeddings)
 * are keyed by them, and AnnData only warns about repeats.
 * @param where what holds the ids, for the message; `fix` how to make them unique.
 * @throws Error naming the file, the first repeated id, both rows and how many ids repeat.
 */
export function checkUniqueCellIds(
  file: string,
  ids: readonly string[],
  where = "the obs index",
  fix = "make them unique first, e.g. in Python adata.obs_names_make_unique()",
): void {
  const first = new Map<string, number>();
  let repeated = 0;
  let example: { id: string; a: number; b: number } | undefined;
  for (let i = 0; i < ids.length; i++) {
    const a = first.get(ids[i]);
    if (a === undefined) first.set(ids[i], i);
    else {
      repeated++;
      example ??= { id: ids[i], a, b: i };
    }
  }
  if (example) {
    throw new Error(
      `${file}: cell id "${example.id}" appears more than once in ${where} (rows ${example.a} and ${example.b}; ${repeated} repeated row${repeated === 1 ? "" : "s"} in all); ` +
        `cell ids must be unique: ${fix}`,
    );
  }
}

/** The input file (or 10x matrix file) whose bytes identify the data, for checksums. */
export function sourceFileFor(path: string): string {
  if (fs.statSync(path).isDirectory()) {
    for (const n of ["matrix.mtx", "matrix.mtx.gz"]) {
      const p = `${path}/${n}`;
      if (fs.existsSync(p)) return p;
    }
  }
  return path;
}
