/**
 * Gene identifiers: Geneformer's dictionaries are keyed by Ensembl gene IDs, but many `.h5ad` files
 * carry gene symbols. This module picks the ID column and maps symbols to Ensembl IDs through the
 * bundled table `data/genes/human_genes.tsv` (GENCODE/HGNC; see `data/genes/README` for provenance).
 * Only symbols that name exactly one Ensembl gene are mapped (ambiguous symbols stay unknown).
 */
import * as fs from "node:fs";
import { packagePath } from "../io.js";
import type { VarTable } from "./types.js";

/** Ensembl gene ID (any species prefix, optional version suffix), case-insensitive. */
const ENSEMBL_RE = /^ENS[A-Z]*G\d{6,}(\.\d+)?$/i;

/** True when `id` looks like an Ensembl gene ID (e.g. `ENSG00000187608`, `ensg00000187608.5`). */
export function looksLikeEnsembl(id: string): boolean {
  return ENSEMBL_RE.test(id);
}

/**
 * Ensembl gene-ID prefixes of other species than human (Ensembl stable ID prefixes,
 * ensembl.org/info/genome/stable_ids/prefixes.html): the bundled dictionaries are human, so data
 * of these species match almost no gene and need mapping to human orthologs first.
 */
const SPECIES_PREFIXES: [prefix: string, species: string][] = [
  ["ENSMUSG", "mouse"],
  ["ENSRNOG", "rat"],
  ["ENSDARG", "zebrafish"],
  ["ENSMMUG", "macaque"],
  ["ENSSSCG", "pig"],
  ["ENSGALG", "chicken"],
  ["ENSBTAG", "cow"],
  ["ENSCAFG", "dog"],
];

/**
 * The non-human species most gene IDs of `ids` belong to, by Ensembl prefix (e.g. ENSMUSG: mouse),
 * or undefined when fewer than half of the IDs carry one such prefix.
 */
export function nonHumanSpecies(ids: readonly string[]): { species: string; prefix: string; count: number } | undefined {
  const counts = new Map<string, number>();
  for (const id of ids) {
    const up = id.slice(0, 7).toUpperCase();
    for (const [p] of SPECIES_PREFIXES) if (up === p) counts.set(p, (counts.get(p) ?? 0) + 1);
  }
  const best = [...counts].sort((a, b) => b[1] - a[1])[0];
  if (!best || best[1] < ids.length / 2) return undefined;
  return { prefix: best[0], species: SPECIES_PREFIXES.find(([p]) => p === best[0])![1], count: best[1] };
}

let symbolTable: Map<string, string> | undefined;

/**
 * Upper-cased gene symbol → Ensembl ID, from `data/genes/human_genes.tsv` (columns `ensembl_id`,
 * `gene_symbol`, ...). Symbols shared by several Ensembl genes are left out. Cached.
 */
export function loadSymbolTable(file = packagePath("data", "genes", "human_genes.tsv")): Map<string, string> {
  if (symbolTable && file === packagePath("data", "genes", "human_genes.tsv")) return symbolTable;
  if (!fs.existsSync(file)) throw new Error(`${file}: gene table not found`);
  const ls = fs.readFileSync(file, "utf8").split("\n");
  const header = ls[0].split("\t");
  const ie = header.indexOf("ensembl_id");
  const is = header.indexOf("gene_symbol");
  if (ie < 0 || is < 0) throw new Error(`${file}: needs columns ensembl_id and gene_symbol`);
  const map = new Map<string, string>();
  const ambiguous = new Set<string>();
  for (let i = 1; i < ls.length; i++) {
    const f = ls[i].split("\t");
    const sym = (f[is] ?? "").toUpperCase();
    const id = f[ie];
    if (!sym || !id) continue;
    const prev = map.get(sym);
    if (prev !== undefined && prev !== id) ambiguous.add(sym);
    else map.set(sym, id);
  }
  for (const s of ambiguous) map.delete(s);
  if (file === packagePath("data", "genes", "human_genes.tsv")) symbolTable = map;
  return map;
}

/** Result of {@link resolveGeneIds}. */
export interface GeneIdResolution {
  /** per var column: Ensembl ID (or the raw ID when it is a key the caller accepts), "" when unknown. */
  ids: string[];
  /** where the IDs came from, e.g. `var column "ensembl_id"` or `var index`. */
  source: string;
  /** number of genes whose symbol was mapped through the bundled table. */
  fromSymbols: number;
  /** number of Ensembl IDs whose version suffix (`.5`) was removed. */
  versionStripped: number;
  /** number of genes with an empty ID. */
  empty: number;
}

/**
 * Choose gene IDs for every var entry.
 * - `idColumn` (default `ensembl_id`) if var has it; otherwise the var index (an explicitly named column
 *   that does not exist is an error).
 * - Ensembl IDs are kept (version suffix stripped); other values are treated as gene symbols: kept as is
 *   when `acceptAsIs(upperCased)` says the tokenizer knows them (e.g. V2's mapping contains symbols),
 *   else mapped through the bundled symbol table (unique matches only), else "".
 * @throws Error naming `file` and the var columns when an explicit `idColumn` is missing.
 */
export function resolveGeneIds(
  v: VarTable,
  opts: { idColumn?: string; file?: string; acceptAsIs?: (upper: string) => boolean } = {},
): GeneIdResolution {
  const col = opts.idColumn ?? "ensembl_id";
  let raw: string[];
  let source: string;
  if (col in v.columns) {
    const c = v.columns[col];
    if (!Array.isArray(c)) throw new Error(`${opts.file ?? "input"}: var column "${col}" is numeric, not gene IDs`);
    raw = c;
    source = `var column "${col}"`;
  } else if (opts.idColumn !== undefined && opts.idColumn !== "ensembl_id" && opts.idColumn !== "index") {
    throw new Error(
      `${opts.file ?? "input"}: no var column "${col}" (var columns: ${Object.keys(v.columns).join(", ") || "none"}; use --id-column index for the var index)`,
    );
  } else {
    raw = v.index;
    source = "var index";
  }
  let symbols: Map<string, string> | undefined;
  let fromSymbols = 0;
  let versionStripped = 0;
  let empty = 0;
  const ids = raw.map((r) => {
    const s = (r ?? "").trim();
    if (s === "" || s === "nan" || s === "NaN") {
      empty++;
      return "";
    }
    if (looksLikeEnsembl(s)) {
      const dot = s.indexOf(".");
      if (dot > 0) {
        versionStripped++;
        return s.slice(0, dot);
      }
      return s;
    }
    const up = s.toUpperCase();
    if (opts.acceptAsIs?.(up)) return s;
    symbols ??= loadSymbolTable();
    const e = symbols.get(up);
    if (e !== undefined) {
      fromSymbols++;
      return e;
    }
    return "";
  });
  return { ids, source, fromSymbols, versionStripped, empty };
}
