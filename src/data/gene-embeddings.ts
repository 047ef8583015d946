/**
 * External gene embeddings (`model.gene_embeddings: file.tsv | file.arrow`): one vector per gene, e.g.
 * ESM2 protein embeddings as scPRINT uses (cantinilab/scPRINT `scprint/tokenizers/protein_embedder.py`,
 * frozen, reduced to the hidden size) or UCE / rosa-style gene vectors.
 *
 * Formats:
 * - **TSV**: one gene per line, `gene_id<TAB>v1<TAB>v2 …`; an optional header line whose second field is
 *   not a number (e.g. `gene_id dim_0 dim_1 …`); blank lines and lines starting with `#` are skipped.
 * - **Arrow IPC file** (pyarrow `feather.write_feather(df)` / `pa.ipc.new_file`): a utf8 id column
 *   (`gene_id`, `ensembl_id`, `gene`, `gene_symbol` or else the first utf8 column) and either one
 *   list / fixed-size-list float column (the vector) or every other column numeric (one per dimension).
 *
 * Gene ids are Ensembl IDs (any case, version suffix ignored) or gene symbols, mapped to Ensembl IDs
 * through the bundled table as the tokenizer does (`./genes.ts`). {@link matchGeneEmbeddings} lines the
 * vectors up with a token vocabulary and reports the vocabulary genes without a vector.
 */
import * as fs from "node:fs";
import { tableFromIPC } from "./arrow.js";
import type { Vector } from "apache-arrow";
import { loadSymbolTable, looksLikeEnsembl } from "./genes.js";
import { readTextTable } from "./table.js";

/** Gene vectors as read from a file. */
export interface GeneEmbeddings {
  /** file the vectors came from. */
  file: string;
  /** gene ids as written in the file, `[n]`. */
  ids: string[];
  /** vector width. */
  dim: number;
  /** row-major `[n × dim]` float32; gene i is `vectors[i·dim .. (i+1)·dim)`. */
  vectors: Float32Array;
}

function parseNumber(s: string): number {
  const t = s.trim();
  if (t === "") return NaN;
  return Number(t);
}

/**
 * Read a gene-embeddings TSV.
 * @throws Error naming the file and line for a wrong width, a duplicate gene, a non-number or a
 *   non-finite value, and for a file with no vectors.
 */
export function readGeneEmbeddingsTsv(file: string): GeneEmbeddings {
  const table = readTextTable(file, "gene-embeddings file", { comments: true });
  const ids: string[] = [];
  const seen = new Map<string, number>();
  let dim = -1;
  let vectors = new Float32Array(1024);
  let n = 0;
  for (let ri = 0; ri < table.rows.length; ri++) {
    const f = table.rows[ri];
    const lineNo = table.lines[ri];
    // header: names in place of numbers, or an empty first field (pandas to_csv with the index)
    if (ri === 0 && f.length > 1 && (Number.isNaN(parseNumber(f[1])) || f[0] === "")) continue;
    const id = f[0].trim();
    if (id === "") throw new Error(`${file}:${lineNo}: empty gene id`);
    if (f.length < 2) throw new Error(`${file}:${lineNo}: gene ${id} has no values`);
    const width = f.length - 1;
    if (dim < 0) dim = width;
    else if (width !== dim) throw new Error(`${file}:${lineNo}: gene ${id} has ${width} values, expected ${dim} (the width of the first vector)`);
    const prev = seen.get(id);
    if (prev !== undefined) throw new Error(`${file}:${lineNo}: duplicate gene ${id} (first on line ${prev})`);
    seen.set(id, lineNo);
    if ((n + 1) * dim > vectors.length) {
      const grown = new Float32Array(Math.max(2 * vectors.length, (n + 1) * dim));
      grown.set(vectors);
      vectors = grown;
    }
    for (let j = 0; j < dim; j++) {
      const v = parseNumber(f[j + 1]);
      if (!Number.isFinite(v)) throw new Error(`${file}:${lineNo}: gene ${id}, value ${j + 1} "${f[j + 1]}" is not a finite number`);
      vectors[n * dim + j] = v;
    }
    ids.push(id);
    n++;
  }
  if (n === 0) throw new Error(`${file}: no gene vectors found`);
  return { file, ids, dim, vectors: vectors.slice(0, n * dim) };
}

const ID_COLUMNS = ["gene_id", "ensembl_id", "gene", "gene_symbol", "gene_name"];

/**
 * Read a gene-embeddings Arrow IPC file (layouts in the module comment).
 * @throws Error naming the file and row for a missing id column, mixed layouts, a wrong width,
 *   a duplicate gene or a null / non-finite value.
 */
export function readGeneEmbeddingsArrow(file: string): GeneEmbeddings {
  if (!fs.existsSync(file)) throw new Error(`${file}: gene-embeddings file not found`);
  let table;
  try {
    table = tableFromIPC(fs.readFileSync(file));
  } catch (e) {
    throw new Error(`${file}: not an Arrow IPC file (${(e as Error).message})`);
  }
  const fields = table.schema.fields;
  const isUtf8 = (t: { toString(): string }) => /^(Large)?Utf8$/i.test(String(t));
  const idField = fields.find((f) => ID_COLUMNS.includes(f.name) && isUtf8(f.type)) ?? fields.find((f) => isUtf8(f.type));
  if (!idField) throw new Error(`${file}: no utf8 gene id column (expected one of ${ID_COLUMNS.join(", ")})`);
  const others = fields.filter((f) => f !== idField);
  const listField = others.find((f) => /List/.test(String(f.type)));
  const ids = Array.from(table.getChild(idField.name)!, (v, i) => {
    if (v === null || v === undefined || String(v).trim() === "") throw new Error(`${file}: row ${i + 1}: empty gene id in column ${idField.name}`);
    return String(v).trim();
  });
  const n = ids.length;
  if (n === 0) throw new Error(`${file}: no gene vectors found`);
  let dim: number;
  let vectors: Float32Array;
  if (listField) {
    if (others.length > 1) throw new Error(`${file}: a vector column (${listField.name}) and other columns (${others.filter((f) => f !== listField).map((f) => f.name).join(", ")}); give one layout`);
    const col = table.getChild(listField.name)!;
    dim = -1;
    vectors = new Float32Array(0);
    for (let i = 0; i < n; i++) {
      const row = col.get(i) as Vector | null;
      if (row === null) throw new Error(`${file}: row ${i + 1} (gene ${ids[i]}): null vector`);
      const arr = Array.from(row as unknown as Iterable<number | null>);
      if (dim < 0) {
        dim = arr.length;
        vectors = new Float32Array(n * dim);
      } else if (arr.length !== dim) throw new Error(`${file}: row ${i + 1} (gene ${ids[i]}) has ${arr.length} values, expected ${dim}`);
      for (let j = 0; j < dim; j++) {
        const v = arr[j];
        if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`${file}: row ${i + 1} (gene ${ids[i]}), value ${j + 1} (${String(v)}) is not a finite number`);
        vectors[i * dim + j] = v;
      }
    }
  } else {
    const bad = others.find((f) => !/^(Float|Int|Uint)/.test(String(f.type)));
    if (bad) throw new Error(`${file}: column ${bad.name} (${String(bad.type)}) is not numeric`);
    dim = others.length;
    if (dim === 0) throw new Error(`${file}: no vector columns next to ${idField.name}`);
    vectors = new Float32Array(n * dim);
    others.forEach((f, j) => {
      const col = table.getChild(f.name)!;
      for (let i = 0; i < n; i++) {
        const v = col.get(i) as number | bigint | null;
        const x = typeof v === "bigint" ? Number(v) : v;
        if (typeof x !== "number" || !Number.isFinite(x)) throw new Error(`${file}: row ${i + 1} (gene ${ids[i]}), column ${f.name} (${String(v)}) is not a finite number`);
        vectors[i * dim + j] = x;
      }
    });
  }
  const seen = new Map<string, number>();
  ids.forEach((id, i) => {
    const prev = seen.get(id);
    if (prev !== undefined) throw new Error(`${file}: row ${i + 1}: duplicate gene ${id} (first in row ${prev})`);
    seen.set(id, i + 1);
  });
  return { file, ids, dim, vectors };
}

/** Read `file.tsv` / `file.txt` or `file.arrow` / `file.feather` / `file.ipc` by extension. */
export function readGeneEmbeddings(file: string): GeneEmbeddings {
  if (/\.(arrow|feather|ipc)$/i.test(file)) return readGeneEmbeddingsArrow(file);
  if (/\.(tsv|txt|tab|csv)(\.gz)?$/i.test(file)) return readGeneEmbeddingsTsv(file);
  throw new Error(`${file}: gene embeddings must be a .tsv, .csv or .arrow file`);
}

/** Gene vectors lined up with a token vocabulary. */
export interface MatchedGeneEmbeddings {
  dim: number;
  /** `[vocabSize × dim]` float32; rows of tokens without a vector are 0. */
  table: Float32Array;
  /** 1 where the token has a vector, `[vocabSize]`. */
  has: Uint8Array;
  /** vocabulary genes (Ensembl IDs) without a vector; special tokens such as `<pad>` are not listed. */
  missing: string[];
  /** file ids matching no vocabulary gene (not in the vocabulary, or an unknown / ambiguous symbol). */
  unused: string[];
  /** file ids mapped from a gene symbol. */
  fromSymbols: number;
}

/**
 * Line gene vectors up with a vocabulary (Ensembl ID → token id, e.g. a Geneformer token dictionary).
 * File ids are upper-cased and stripped of an Ensembl version suffix; non-Ensembl ids are looked up as
 * symbols. Two file ids that resolve to the same gene are an error (naming both).
 * @param vocab Ensembl ID → token id (special tokens are simply absent).
 * @param vocabSize number of rows of the output table (> every token id).
 */
export function matchGeneEmbeddings(emb: GeneEmbeddings, vocab: Map<string, number>, vocabSize: number): MatchedGeneEmbeddings {
  const table = new Float32Array(vocabSize * emb.dim);
  const has = new Uint8Array(vocabSize);
  const byToken = new Map<number, string>();
  const unused: string[] = [];
  let symbols: Map<string, string> | undefined;
  let fromSymbols = 0;
  emb.ids.forEach((raw, i) => {
    const id = raw.toUpperCase();
    let ens: string | undefined;
    if (looksLikeEnsembl(id)) ens = id.replace(/\.\d+$/, "");
    else {
      symbols ??= loadSymbolTable();
      ens = symbols.get(id);
      if (ens !== undefined) fromSymbols++;
    }
    const t = ens === undefined ? undefined : vocab.get(ens);
    if (t === undefined) {
      unused.push(raw);
      return;
    }
    const prev = byToken.get(t);
    if (prev !== undefined) throw new Error(`${emb.file}: genes ${prev} and ${raw} are the same gene (${ens})`);
    byToken.set(t, raw);
    if (t >= vocabSize) throw new Error(`matchGeneEmbeddings: token id ${t} of ${ens} is not below the vocabulary size ${vocabSize}`);
    table.set(emb.vectors.subarray(i * emb.dim, (i + 1) * emb.dim), t * emb.dim);
    has[t] = 1;
  });
  const missing: string[] = [];
  for (const [ens, t] of vocab) if (!has[t] && !ens.startsWith("<")) missing.push(ens); // special tokens (<pad>, <mask>, ...) are no genes
  return { dim: emb.dim, table, has, missing, unused, fromSymbols };
}
