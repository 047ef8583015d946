/**
 * 10x Genomics Matrix Market folder reader (Cell Ranger `filtered_feature_bc_matrix/` layout):
 * `matrix.mtx[.gz]` (genes × cells, coordinate format, 1-based), `features.tsv[.gz]` (Cell Ranger ≥ 3:
 * gene id, symbol, feature type) or `genes.tsv[.gz]` (Cell Ranger 2: gene id, symbol), and
 * `barcodes.tsv[.gz]`. Only "Gene Expression" features are read when `features.tsv` lists others
 * (CITE-seq "Antibody Capture", CRISPR guides...): {@link CountMatrixSource.notes} says how many
 * were left out. The matrix is transposed to cells × genes CSR in memory (10x folders are
 * small compared with the `.h5ad` corpora the chunked reader is for).
 * Format: https://math.nist.gov/MatrixMarket/formats.html and the Cell Ranger output docs.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { validateCounts, type OpenCountsOptions } from "./h5ad.js";
import { readObsTable as readObsTsv } from "./table.js";
import { selectedBlocks, type ChunkSelection, type CountMatrixSource, type CsrChunk, type ObsTable, type VarTable } from "./types.js";

function findFile(dir: string, names: string[]): string | undefined {
  for (const n of names) {
    for (const cand of [n, `${n}.gz`]) {
      const p = path.join(dir, cand);
      if (fs.existsSync(p)) return p;
    }
  }
  return undefined;
}

function readText(file: string): string {
  const buf = fs.readFileSync(file);
  return (file.endsWith(".gz") ? zlib.gunzipSync(buf) : buf).toString("utf8");
}

function lines(text: string): string[] {
  const out = text.split(/\r?\n/);
  while (out.length > 0 && out[out.length - 1] === "") out.pop();
  return out;
}

/** True when `dir` looks like a 10x Matrix Market folder. */
export function isMtxFolder(dir: string): boolean {
  return fs.existsSync(dir) && fs.statSync(dir).isDirectory() && findFile(dir, ["matrix.mtx"]) !== undefined;
}

/** Per-cell annotations of a 10x folder (`--obs`): CSV or TSV, quoted or not (src/data/table.ts). */
export { readObsTsv };

/** Cell Ranger's feature type of RNA counts (`features.tsv` column 3); CITE-seq adds "Antibody Capture", CRISPR screens "CRISPR Guide Capture". */
export const GENE_EXPRESSION = "Gene Expression";

/**
 * Rows of `features.tsv` to keep when it lists other feature types than {@link GENE_EXPRESSION}
 * (their counts are not RNA, and antibody rows are often named like genes, e.g. CD3E): the
 * Gene Expression rows and a count of the others by type; undefined when every row is kept.
 */
export function geneExpressionRows(feats: string[][]): { rows: number[]; leftOut: string } | undefined {
  if (!feats.some((f) => f.length > 2 && f[2] !== GENE_EXPRESSION)) return undefined;
  const rows: number[] = [];
  const others = new Map<string, number>();
  feats.forEach((f, i) => {
    const t = f[2] ?? GENE_EXPRESSION;
    if (t === GENE_EXPRESSION) rows.push(i);
    else others.set(t, (others.get(t) ?? 0) + 1);
  });
  return { rows, leftOut: [...others].map(([t, n]) => `${n} ${t}`).join(", ") };
}

/**
 * Open a 10x Matrix Market folder as a {@link CountMatrixSource}.
 * @param opts.obsTsv optional TSV of cell annotations keyed by barcode (carried like AnnData obs).
 * @throws Error naming the folder/file when a file is missing or malformed.
 */
export function openMtx(dir: string, opts: OpenCountsOptions & { obsTsv?: string } = {}): CountMatrixSource & { matrixFile: string } {
  if (!fs.existsSync(dir)) throw new Error(`${dir}: folder not found`);
  const mtxFile = findFile(dir, ["matrix.mtx"]);
  if (!mtxFile) throw new Error(`${dir}: no matrix.mtx[.gz] in this folder (not a 10x Matrix Market folder)`);
  const featFile = findFile(dir, ["features.tsv", "genes.tsv"]);
  if (!featFile) throw new Error(`${dir}: no features.tsv[.gz] or genes.tsv[.gz]`);
  const bcFile = findFile(dir, ["barcodes.tsv"]);
  if (!bcFile) throw new Error(`${dir}: no barcodes.tsv[.gz]`);

  const feats = lines(readText(featFile)).map((l) => l.split("\t"));
  const barcodes = lines(readText(bcFile)).map((l) => l.split("\t")[0]);
  const text = readText(mtxFile);
  let pos = 0;
  let headerSeen = false;
  let nRows = 0,
    nCols = 0,
    nnz = 0;
  let isPattern = false;
  // header and comments
  for (;;) {
    const end = text.indexOf("\n", pos);
    const line = text.slice(pos, end < 0 ? text.length : end).trim();
    pos = end < 0 ? text.length : end + 1;
    if (line.startsWith("%%MatrixMarket")) {
      const h = line.toLowerCase().split(/\s+/);
      if (h[1] !== "matrix" || h[2] !== "coordinate") throw new Error(`${mtxFile}: only coordinate Matrix Market files are supported`);
      isPattern = h[3] === "pattern";
      headerSeen = true;
      continue;
    }
    if (line.startsWith("%") || line === "") {
      if (pos >= text.length) throw new Error(`${mtxFile}: no size line`);
      continue;
    }
    const f = line.split(/\s+/).map(Number);
    [nRows, nCols, nnz] = f;
    break;
  }
  if (!headerSeen) throw new Error(`${mtxFile}: missing %%MatrixMarket header`);
  if (nRows !== feats.length) throw new Error(`${mtxFile}: ${nRows} genes but ${featFile} has ${feats.length} rows`);
  const kept = geneExpressionRows(feats);
  if (nCols !== barcodes.length) throw new Error(`${mtxFile}: ${nCols} cells but ${bcFile} has ${barcodes.length} rows`);
  const gi = new Int32Array(nnz);
  const ci = new Int32Array(nnz);
  const vv = new Float64Array(nnz);
  const body = text.slice(pos).split("\n");
  let k = 0;
  for (const raw of body) {
    if (raw.length === 0 || raw[0] === "%") continue;
    const f = raw.trim().split(/\s+/);
    if (f.length < 2 || f[0] === "") continue;
    if (k >= nnz) throw new Error(`${mtxFile}: more entries than the ${nnz} announced`);
    gi[k] = Number(f[0]) - 1;
    ci[k] = Number(f[1]) - 1;
    vv[k] = isPattern ? 1 : Number(f[2]);
    if (!(gi[k] >= 0 && gi[k] < nRows && ci[k] >= 0 && ci[k] < nCols)) throw new Error(`${mtxFile}: entry ${k + 1} out of range`);
    k++;
  }
  if (k !== nnz) throw new Error(`${mtxFile}: ${k} entries, header announced ${nnz}`);
  // transpose to cells × genes CSR, genes sorted within a cell
  const order = new Uint32Array(nnz);
  for (let i = 0; i < nnz; i++) order[i] = i;
  let sorted = true; // Cell Ranger writes entries cell by cell, genes ascending: then no sort is needed
  for (let i = 1; i < nnz && sorted; i++) sorted = ci[i] > ci[i - 1] || (ci[i] === ci[i - 1] && gi[i] > gi[i - 1]);
  if (!sorted) order.sort((a, b) => ci[a] - ci[b] || gi[a] - gi[b]);
  const indptr = new Float64Array(nCols + 1);
  const indicesAll = new Int32Array(nnz);
  const dataAll = new Float64Array(nnz);
  let w = 0;
  for (let j = 0; j < nnz; j++) {
    const i = order[j];
    if (w > 0 && j > 0 && ci[order[j - 1]] === ci[i] && gi[order[j - 1]] === gi[i]) {
      dataAll[w - 1] += vv[i]; // a repeated (gene, cell) entry: sum, as scipy's sum_duplicates does
      continue;
    }
    indicesAll[w] = gi[i];
    dataAll[w++] = vv[i];
    indptr[ci[i] + 1]++;
  }
  for (let c = 0; c < nCols; c++) indptr[c + 1] += indptr[c];
  let indices = indicesAll.subarray(0, w);
  let data = dataAll.subarray(0, w);
  let genes = feats;
  const notes: string[] = [];
  if (kept) {
    // keep the Gene Expression rows only, renumbered; the CSR stays sorted within each cell
    const newIndex = new Int32Array(nRows).fill(-1);
    kept.rows.forEach((r, i) => (newIndex[r] = i));
    let o = 0;
    let prev = 0;
    for (let c = 0; c < nCols; c++) {
      const end = indptr[c + 1];
      for (let k = prev; k < end; k++) {
        const g = newIndex[indices[k]];
        if (g < 0) continue;
        indices[o] = g;
        data[o++] = data[k];
      }
      prev = end;
      indptr[c + 1] = o;
    }
    indices = indices.subarray(0, o);
    data = data.subarray(0, o);
    genes = kept.rows.map((r) => feats[r]);
    notes.push(`${featFile}: left out ${nRows - kept.rows.length} of ${nRows} features that are not "Gene Expression" (${kept.leftOut}); only gene expression counts are tokenized`);
  }

  const varTable: VarTable = {
    index: genes.map((f) => f[0]),
    columns: {
      ensembl_id: genes.map((f) => f[0]),
      gene_symbol: genes.map((f) => f[1] ?? f[0]),
    },
  };
  if (genes.some((f) => f.length > 2)) varTable.columns.feature_type = genes.map((f) => f[2] ?? "");
  const obs: ObsTable = opts.obsTsv ? readObsTsv(opts.obsTsv, barcodes) : { index: barcodes, columns: {} };
  const allowNonInteger = opts.allowNonInteger ?? false;
  return {
    path: dir,
    nCells: nCols,
    nGenes: genes.length,
    notes,
    obs,
    var: varTable,
    matrixFile: mtxFile,
    *chunks(chunkSize = 512, select?: ChunkSelection): Iterable<CsrChunk> {
      for (const [a, b] of selectedBlocks(nCols, chunkSize, select)) {
        const lo = indptr[a];
        const hi = indptr[b];
        const ip = new Float64Array(b - a + 1);
        for (let r = 0; r <= b - a; r++) ip[r] = indptr[a + r] - lo;
        const chunk: CsrChunk = { start: a, nCells: b - a, indptr: ip, indices: indices.subarray(lo, hi), data: data.subarray(lo, hi) };
        validateCounts(mtxFile, chunk, (i) => barcodes[i], allowNonInteger);
        yield chunk;
      }
    },
    close() {},
  };
}
