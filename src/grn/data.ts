/**
 * Cells and genes of a gene-network run (scPRINT `scprint/tasks/grn.py: GNInfer`, reference-spec §1d):
 * the cells of one cell type capped by a seeded choice, and a fixed gene list (highly variable genes,
 * a user file, or the genes expressed in enough of the cells) mapped to the model's vocabulary, with
 * the genes that do not map named.
 */
import * as fs from "node:fs";
import { GeneMoments, seuratHvg, TARGET_SUM } from "../assess/hvg.js";
import { looksLikeEnsembl, resolveGeneIds } from "../data/genes.js";
import type { CountMatrixSource, ObsValues } from "../data/types.js";
import { packagePath } from "../io.js";
import { makeRng, shuffle } from "../rng.js";
import { readTextTable } from "../data/table.js";

/** Labels of an obs column as strings (NaN / missing → ""). */
export function obsStrings(v: ObsValues): string[] {
  if (Array.isArray(v)) return (v as (string | boolean)[]).map((x) => String(x));
  return Array.from(v as Float64Array, (x) => (Number.isNaN(x) ? "" : String(x)));
}

/** The cells of one network. */
export interface CellGroup {
  /** cell-type label. */
  type: string;
  /** cells of this type in the data. */
  nOfType: number;
  /** chosen source rows, ascending. */
  rows: Int32Array;
}

/**
 * Choose the cells of each requested type: all of them, or `maxCells` drawn without replacement with
 * `makeRng("<seed>:<type>")` (so a type's cells do not depend on which other types are asked for).
 * @param types requested labels, or `"all"` for every label (sorted; types with fewer than `minCells`
 *   cells are then skipped and returned in `skipped`).
 * @throws Error naming the type when a requested type is absent or has fewer than `minCells` cells
 *   (listing the available types with their counts), or when "all" leaves no type.
 */
export function chooseCells(
  labels: readonly string[],
  types: readonly string[] | "all",
  opts: { maxCells?: number; minCells: number; seed: number; labelName: string },
): { groups: CellGroup[]; skipped: { type: string; nCells: number }[] } {
  const byType = new Map<string, number[]>();
  labels.forEach((l, i) => {
    if (l === "") return;
    let a = byType.get(l);
    if (!a) byType.set(l, (a = []));
    a.push(i);
  });
  const avail = () =>
    [...byType.entries()]
      .sort((a, b) => b[1].length - a[1].length)
      .map(([t, r]) => `${t} (${r.length})`)
      .join(", ");
  const skipped: { type: string; nCells: number }[] = [];
  let want: string[];
  if (types === "all") {
    want = [...byType.keys()].sort();
    want = want.filter((t) => {
      const n = byType.get(t)!.length;
      if (n >= opts.minCells) return true;
      skipped.push({ type: t, nCells: n });
      return false;
    });
    if (want.length === 0) throw new Error(`no cell type of "${opts.labelName}" has at least ${opts.minCells} cells (--min-cells); types: ${avail()}`);
  } else {
    want = [...new Set(types)];
    for (const t of want) {
      const r = byType.get(t);
      if (!r) throw new Error(`cell type "${t}" is not in obs column "${opts.labelName}" (types: ${avail()})`);
      if (r.length < opts.minCells) {
        throw new Error(`cell type "${t}" has ${r.length} cells, fewer than --min-cells ${opts.minCells} needed for a network`);
      }
    }
  }
  const groups = want.map((t) => {
    const all = Int32Array.from(byType.get(t)!);
    let rows = all;
    if (opts.maxCells !== undefined && all.length > opts.maxCells) {
      shuffle(makeRng(`${opts.seed}:${t}`), all);
      rows = all.slice(0, opts.maxCells).sort();
    }
    return { type: t, nOfType: byType.get(t)!.length, rows };
  });
  return { groups, skipped };
}

/** Chosen cells in CSR form (rows in the order asked), with their total counts over all genes. */
export interface CellCounts {
  rows: Int32Array;
  indptr: Int32Array;
  indices: Int32Array;
  data: Float64Array;
  /** total count per cell over all var genes (n_counts). */
  totals: Float64Array;
  nGenes: number;
}

/** Read the given source rows (ascending) into memory, one pass over the source's chunks. */
export function readCells(src: CountMatrixSource, rows: Int32Array): CellCounts {
  const want = new Map<number, number>();
  rows.forEach((r, i) => want.set(r, i));
  const parts: { i: number; idx: Int32Array; val: Float64Array }[] = [];
  for (const ch of src.chunks(512)) {
    for (let r = 0; r < ch.nCells; r++) {
      const i = want.get(ch.start + r);
      if (i === undefined) continue;
      const a = ch.indptr[r], b = ch.indptr[r + 1];
      parts.push({ i, idx: ch.indices.slice(a, b), val: ch.data.slice(a, b) });
    }
  }
  parts.sort((x, y) => x.i - y.i);
  const nnz = parts.reduce((s, p) => s + p.idx.length, 0);
  const indptr = new Int32Array(rows.length + 1), indices = new Int32Array(nnz), data = new Float64Array(nnz), totals = new Float64Array(rows.length);
  let pos = 0;
  parts.forEach((p, k) => {
    indices.set(p.idx, pos);
    data.set(p.val, pos);
    pos += p.idx.length;
    indptr[k + 1] = pos;
    let t = 0;
    for (const v of p.val) t += v;
    totals[k] = t;
  });
  return { rows, indptr, indices, data, totals, nGenes: src.nGenes };
}

/** How the gene list is chosen (`--genes`). */
export type GeneSpec = { kind: "hvg"; n: number } | { kind: "file"; path: string } | { kind: "expressed"; minFraction: number };

/**
 * Parse `--genes`: `hvg:N` (Seurat highly variable genes of the network's cells), `file:genes.txt`
 * (one Ensembl ID or symbol per line), `expressed:F` (genes expressed in at least a fraction F of
 * the network's cells, F in (0, 1]).
 * @throws Error quoting the value on anything else.
 */
export function parseGeneSpec(s: string): GeneSpec {
  const m = /^(hvg|file|expressed):(.+)$/.exec(s.trim());
  if (!m) throw new Error(`--genes "${s}": expected hvg:N, file:genes.txt or expressed:F`);
  if (m[1] === "hvg") {
    const n = Number(m[2]);
    if (!Number.isInteger(n) || n < 2) throw new Error(`--genes "${s}": N must be an integer >= 2`);
    return { kind: "hvg", n };
  }
  if (m[1] === "expressed") {
    const f = Number(m[2]);
    if (!(f > 0 && f <= 1)) throw new Error(`--genes "${s}": F must be a fraction in (0, 1]`);
    return { kind: "expressed", minFraction: f };
  }
  return { kind: "file", path: m[2] };
}

let ensemblToSymbol: Map<string, string> | undefined;
function symbolOfEnsembl(): Map<string, string> {
  if (ensemblToSymbol) return ensemblToSymbol;
  const file = packagePath("data", "genes", "human_genes.tsv");
  const ls = fs.readFileSync(file, "utf8").split("\n");
  const h = ls[0].split("\t");
  const ie = h.indexOf("ensembl_id"), is = h.indexOf("gene_symbol");
  ensemblToSymbol = new Map();
  for (let i = 1; i < ls.length; i++) {
    const f = ls[i].split("\t");
    if (f[ie] && f[is]) ensemblToSymbol.set(f[ie], f[is]);
  }
  return ensemblToSymbol;
}

/** Per var column: Ensembl ID ("" unknown) and gene symbol ("" unknown). */
export interface VarGenes {
  ids: string[];
  symbols: string[];
  idSource: string;
}

/**
 * Gene IDs and symbols of the var columns: IDs as `cellfm tokenize` resolves them; symbols from the
 * var column `gene_symbol` when present, else the var index when it is not Ensembl IDs, else the
 * bundled Ensembl → symbol table (`data/genes/human_genes.tsv`).
 */
export function varGenes(src: CountMatrixSource, idColumn?: string): VarGenes {
  const res = resolveGeneIds(src.var, { idColumn, file: src.path });
  const symCol = src.var.columns.gene_symbol;
  let symbols: string[];
  if (Array.isArray(symCol)) symbols = symCol.map((s) => s ?? "");
  else {
    const table = symbolOfEnsembl();
    symbols = src.var.index.map((v, c) => (looksLikeEnsembl(v) ? (table.get(res.ids[c]) ?? "") : v));
  }
  return { ids: res.ids, symbols, idSource: res.source };
}

/** The fixed gene list of one network. */
export interface GeneList {
  /** var column of each gene. */
  cols: Int32Array;
  /** Ensembl ID of each gene. */
  ids: string[];
  /** gene symbol of each gene ("" unknown). */
  symbols: string[];
  /** vocabulary token of each gene (-1 without a vocabulary). */
  tokens: Int32Array;
  /** genes asked for (before mapping). */
  requested: number;
  /** genes asked for that are not in the vocabulary (symbol or ID, as given). */
  notInVocabulary: string[];
  /** genes of a `file:` list that are not in the input at all. */
  notInInput: string[];
  /** genes dropped because another var column maps to the same token. */
  duplicates: string[];
}

/**
 * Choose the gene list for one group of cells and map it to the vocabulary.
 * @param colToken vocabulary token per var column (-1 = not in the vocabulary), or null (no model:
 *   every gene with an Ensembl ID or symbol counts as mapped).
 * @throws Error when fewer than half of the requested genes are in the vocabulary (naming the first
 *   missing ones), when a `file:` list is missing or empty, or when fewer than 2 genes remain.
 */
export function chooseGenes(spec: GeneSpec, cells: CellCounts, vg: VarGenes, colToken: Int32Array | null, what: string): GeneList {
  const nG = cells.nGenes, nC = cells.rows.length;
  const label = (c: number) => vg.symbols[c] || vg.ids[c] || `column ${c}`;
  let requested: number[] = [];
  const notInInput: string[] = [];
  if (spec.kind === "hvg" || spec.kind === "expressed") {
    const nExpr = new Int32Array(nG);
    for (let p = 0; p < cells.indices.length; p++) if (cells.data[p] > 0) nExpr[cells.indices[p]]++;
    if (spec.kind === "expressed") {
      for (let c = 0; c < nG; c++) if (nExpr[c] > 0 && nExpr[c] >= spec.minFraction * nC) requested.push(c);
    } else {
      const mom = new GeneMoments(nG, TARGET_SUM);
      for (let i = 0; i < nC; i++) mom.addCell(cells.indices, cells.data, cells.indptr[i], cells.indptr[i + 1]);
      const { mean, variance } = mom.meanVar();
      // genes never expressed in these cells carry no signal: not candidates
      const cand: number[] = [];
      for (let c = 0; c < nG; c++) if (nExpr[c] > 0) cand.push(c);
      const sel = seuratHvg(Float64Array.from(cand, (c) => mean[c]), Float64Array.from(cand, (c) => variance[c]), spec.n);
      requested = Array.from(sel.genes, (k) => cand[k]);
    }
  } else {
    // first column of a CSV or TSV (quoted or not), `#` lines skipped
    const names = readTextTable(spec.path, "gene list", { comments: true }).rows.map((r) => r[0]).filter((s) => s !== "");
    if (names.length === 0) throw new Error(`gene list ${spec.path} is empty`);
    const byKey = new Map<string, number>();
    for (let c = nG - 1; c >= 0; c--) {
      if (vg.ids[c]) byKey.set(vg.ids[c].toUpperCase(), c);
      if (vg.symbols[c]) byKey.set(vg.symbols[c].toUpperCase(), c);
    }
    const seen = new Set<number>();
    for (const nm of names) {
      const key = (looksLikeEnsembl(nm) ? nm.replace(/\.\d+$/, "") : nm).toUpperCase();
      const c = byKey.get(key);
      if (c === undefined) notInInput.push(nm);
      else if (!seen.has(c)) {
        seen.add(c);
        requested.push(c);
      }
    }
  }
  const notInVocabulary: string[] = [];
  const duplicates: string[] = [];
  const kept: number[] = [];
  const usedTok = new Set<number>();
  for (const c of requested) {
    const t = colToken ? colToken[c] : -1;
    if (colToken ? t < 0 : !(vg.ids[c] || vg.symbols[c])) {
      notInVocabulary.push(label(c));
      continue;
    }
    if (colToken) {
      if (usedTok.has(t)) {
        duplicates.push(label(c));
        continue;
      }
      usedTok.add(t);
    }
    kept.push(c);
  }
  const asked = requested.length + notInInput.length;
  if (asked > 0 && kept.length < 0.5 * asked) {
    const miss = [...notInInput, ...notInVocabulary];
    throw new Error(
      `${what}: only ${kept.length} of ${asked} genes are in the model's vocabulary (under half); not mapped: ` +
        `${miss.slice(0, 20).join(", ")}${miss.length > 20 ? `, … (${miss.length} in all)` : ""}`,
    );
  }
  if (kept.length < 2) throw new Error(`${what}: fewer than 2 genes in the list (${kept.length})`);
  return {
    cols: Int32Array.from(kept),
    ids: kept.map((c) => vg.ids[c]),
    symbols: kept.map((c) => vg.symbols[c]),
    tokens: Int32Array.from(kept, (c) => (colToken ? colToken[c] : -1)),
    requested: asked,
    notInVocabulary,
    notInInput,
    duplicates,
  };
}

/**
 * Normalised expression of the list's genes: counts × 10,000 / the cell's total over all genes
 * (scanpy `normalize_total`), as `[cells, genes]` float32.
 */
export function expressionMatrix(cells: CellCounts, genes: GeneList): Float32Array {
  const nC = cells.rows.length, n = genes.cols.length;
  const colPos = new Int32Array(cells.nGenes).fill(-1);
  genes.cols.forEach((c, j) => (colPos[c] = j));
  const x = new Float32Array(nC * n);
  for (let i = 0; i < nC; i++) {
    const f = cells.totals[i] > 0 ? TARGET_SUM / cells.totals[i] : 0;
    for (let p = cells.indptr[i]; p < cells.indptr[i + 1]; p++) {
      const j = colPos[cells.indices[p]];
      if (j >= 0) x[i * n + j] += cells.data[p] * f;
    }
  }
  return x;
}
