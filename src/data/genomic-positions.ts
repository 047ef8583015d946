/**
 * Genomic-position encoding of genes (scPRINT, Kalfon et al. 2025): genes near each other on a
 * chromosome share a position, and a fixed sinusoidal table turns the position into a vector that is
 * added to the gene's token state.
 *
 * Reference: jkobject/scDataLoader `scdataloader/datamodule.py@673b83f` (gene positions: genes sorted by
 * chromosome name, then start; a running integer is increased whenever the chromosome changes or the
 * start lies more than 10,000 bp past the previous gene's start, so genes closer than 10 kb share a
 * position) and cantinilab/scPRINT `scprint/model/encoders.py@6bbe1a7` (`PositionalEncoding`: the
 * Transformer sinusoid, base 10,000, indexed by that integer).
 *
 * Locations come from the bundled `data/genes/human_genes.tsv` (GENCODE v44: `chromosome`, `start`).
 * Chromosome names are ordered as strings ("1" < "10" < … < "2" < … < "MT" < "X" < "Y"), as a pandas
 * sort of the name column does. Positions start at 1; genes without a location get position 0 and a
 * zero vector (no position information), and are counted.
 */
import * as fs from "node:fs";
import { packagePath } from "../io.js";

/** Genes closer than this (bp, start to previous start) share a position. */
export const SAME_POSITION_BP = 10_000;

/** Ensembl ID → genomic position (≥ 1), from a gene table with `ensembl_id`, `chromosome`, `start`. */
export interface GenomicPositions {
  position: Map<string, number>;
  /** largest position. */
  maxPosition: number;
  /** genes of the table without a chromosome or start. */
  unplaced: number;
}

/**
 * Compute the positions from a gene table (default: the bundled `data/genes/human_genes.tsv`).
 * @throws Error naming the file when a column is missing or a start is not a non-negative integer.
 */
export function readGenomicPositions(file = packagePath("data", "genes", "human_genes.tsv")): GenomicPositions {
  if (!fs.existsSync(file)) throw new Error(`${file}: gene table not found`);
  const lines = fs.readFileSync(file, "utf8").split(/\r?\n/);
  const header = lines[0].split("\t");
  const ie = header.indexOf("ensembl_id");
  const ic = header.indexOf("chromosome");
  const is = header.indexOf("start");
  if (ie < 0 || ic < 0 || is < 0) throw new Error(`${file}: needs the columns ensembl_id, chromosome and start (header: ${header.join(", ")})`);
  const genes: { id: string; chrom: string; start: number }[] = [];
  let unplaced = 0;
  for (let li = 1; li < lines.length; li++) {
    if (lines[li] === "") continue;
    const f = lines[li].split("\t");
    const id = (f[ie] ?? "").trim();
    const chrom = (f[ic] ?? "").trim();
    const startText = (f[is] ?? "").trim();
    if (id === "") continue;
    if (chrom === "" || startText === "") {
      unplaced++;
      continue;
    }
    const start = Number(startText);
    if (!Number.isInteger(start) || start < 0) throw new Error(`${file}:${li + 1}: start "${startText}" of ${id} is not a non-negative integer`);
    genes.push({ id: id.toUpperCase(), chrom, start });
  }
  genes.sort((a, b) => (a.chrom < b.chrom ? -1 : a.chrom > b.chrom ? 1 : a.start - b.start));
  const position = new Map<string, number>();
  let pos = 0;
  let prevChrom: string | undefined;
  let prevStart = -Infinity;
  for (const g of genes) {
    if (g.chrom !== prevChrom || g.start - prevStart > SAME_POSITION_BP) pos++;
    prevChrom = g.chrom;
    prevStart = g.start;
    position.set(g.id, pos);
  }
  return { position, maxPosition: pos, unplaced };
}

/**
 * The fixed sinusoidal table: row p, column 2i = sin(p·w_i), column 2i+1 = cos(p·w_i),
 * w_i = exp(−2i·ln(10000)/d) (Vaswani et al. 2017; scPRINT `PositionalEncoding`).
 * @param nPositions rows (positions 0 … nPositions − 1).
 * @param dim vector width (odd widths drop the last cosine).
 * @returns `[nPositions × dim]` float32, row-major.
 */
export function sinusoidalTable(nPositions: number, dim: number): Float32Array {
  if (!Number.isInteger(nPositions) || nPositions < 1 || !Number.isInteger(dim) || dim < 1) {
    throw new Error(`sinusoidalTable: need positive integer sizes, got ${nPositions} x ${dim}`);
  }
  const out = new Float32Array(nPositions * dim);
  for (let i = 0; 2 * i < dim; i++) {
    const w = Math.exp((2 * i * -Math.log(10000)) / dim);
    for (let p = 0; p < nPositions; p++) {
      out[p * dim + 2 * i] = Math.sin(p * w);
      if (2 * i + 1 < dim) out[p * dim + 2 * i + 1] = Math.cos(p * w);
    }
  }
  return out;
}

/** Genomic-position vectors of a token vocabulary. */
export interface TokenPositionTable {
  /** `[vocabSize × dim]` float32; zero rows for tokens without a location (and special tokens). */
  table: Float32Array;
  /** genomic position of each token (0 = none), `[vocabSize]` int32. */
  positionOfToken: Int32Array;
  /** vocabulary genes without a location (special tokens not listed). */
  unplaced: string[];
}

/**
 * The per-token genomic-position table of a vocabulary (Ensembl ID → token id), for adding to the
 * token state of the `binned` / `counts` encodings.
 * @param vocab Ensembl ID → token id; @param vocabSize rows; @param dim hidden size.
 */
export function tokenPositionTable(vocab: Map<string, number>, vocabSize: number, dim: number, positions = readGenomicPositions()): TokenPositionTable {
  const pe = sinusoidalTable(positions.maxPosition + 1, dim);
  const table = new Float32Array(vocabSize * dim);
  const positionOfToken = new Int32Array(vocabSize);
  const unplaced: string[] = [];
  for (const [ens, t] of vocab) {
    if (t < 0 || t >= vocabSize) throw new Error(`tokenPositionTable: token id ${t} of ${ens} is outside 0 … ${vocabSize - 1}`);
    const p = positions.position.get(ens.toUpperCase().replace(/\.\d+$/, ""));
    if (p === undefined) {
      if (!ens.startsWith("<")) unplaced.push(ens); // special tokens have no location and are not counted
      continue;
    }
    positionOfToken[t] = p;
    table.set(pe.subarray(p * dim, (p + 1) * dim), t * dim);
  }
  return { table, positionOfToken, unplaced };
}
