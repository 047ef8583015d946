/**
 * Corpus nonzero medians: for every gene, the median of `count / n_counts * 10000` over the cells
 * where the gene's count is nonzero — the normaliser of Geneformer's rank-value encoding
 * (Theodoris et al. 2023, Methods; Geneformer `geneformer/gene_median_dictionary` built with
 * `examples/obtain_nonzero_median_digests.ipynb`, which used a t-digest per gene).
 *
 * Two methods, chosen by the corpus size: exact (every nonzero value kept per gene in float64, then
 * the median with NumPy's convention — mean of the two middle values for an even count) when the total
 * number of nonzeros is at most `exactLimit`; otherwise a streaming t-digest per gene (`tdigest`
 * package, Dunning's merging digest), so memory stays bounded whatever the corpus size.
 */
import { createRequire } from "node:module";
import type { TDigest } from "tdigest";

// tdigest is loaded when a t-digest is first needed (inputs over the exact limit), not when
// `cellfm tokenize` imports this module
const requireCjs = createRequire(import.meta.url);
let TDigestClass: typeof TDigest | undefined;
function newDigest(): TDigest {
  TDigestClass ??= (requireCjs("tdigest") as { TDigest: typeof TDigest }).TDigest;
  return new TDigestClass();
}
import { resolveGeneIds } from "../data/genes.js";
import type { CountMatrixSource } from "../data/types.js";

/** Options of {@link computeNonzeroMedians}. */
export interface MediansOptions {
  /** var column with gene IDs (default `ensembl_id`, else the var index; symbols mapped to Ensembl). */
  idColumn?: string;
  /** cells per block (default 512). */
  chunkSize?: number;
  /** use the exact method when the corpus has at most this many nonzeros (default 20,000,000 ≈ 160 MB). */
  exactLimit?: number;
  /** called after each block with the number of cells done so far. */
  onProgress?: (cellsDone: number) => void;
}

/** Result: gene ID → nonzero median, plus how it was computed. */
export interface MediansResult {
  medians: Map<string, number>;
  method: "exact" | "tdigest";
  nCells: number;
  nNonzeros: number;
  nGenes: number;
}

/**
 * Compute per-gene nonzero medians over several sources (opened lazily with `open`, one at a time).
 * Genes are identified by Ensembl ID when one is known, else by their raw var ID.
 * @param sources functions opening each input in turn (so only one is open at a time).
 * @param totalNonzeros an upper bound of all stored values (to choose the method before reading).
 */
export async function computeNonzeroMedians(
  sources: (() => Promise<CountMatrixSource>)[],
  totalNonzeros: number,
  opts: MediansOptions = {},
): Promise<MediansResult> {
  const exact = totalNonzeros <= (opts.exactLimit ?? 20_000_000);
  const slot = new Map<string, number>();
  const names: string[] = [];
  // exact: growable float64 buffers per gene; t-digest: one digest per gene
  let bufs: Float64Array[] = [];
  let lens: number[] = [];
  const digests: TDigest[] = [];
  let nCells = 0;
  let nnz = 0;
  for (const open of sources) {
    const src = await open();
    try {
      const res = resolveGeneIds(src.var, { idColumn: opts.idColumn, file: src.path });
      const colSlot = new Int32Array(src.nGenes);
      for (let c = 0; c < src.nGenes; c++) {
        const id = res.ids[c] !== "" ? res.ids[c].toUpperCase() : src.var.index[c];
        let s = slot.get(id);
        if (s === undefined) {
          s = names.length;
          slot.set(id, s);
          names.push(id);
          if (exact) {
            bufs.push(new Float64Array(16));
            lens.push(0);
          } else digests.push(newDigest());
        }
        colSlot[c] = s;
      }
      const nObs = "n_counts" in src.obs.columns && src.obs.columns.n_counts instanceof Float64Array ? src.obs.columns.n_counts : undefined;
      const chunkVals = new Map<number, number[]>();
      for (const chunk of src.chunks(opts.chunkSize ?? 512)) {
        const { indptr, indices, data } = chunk;
        for (let r = 0; r < chunk.nCells; r++) {
          const a = indptr[r];
          const b = indptr[r + 1];
          let n = 0;
          if (nObs) n = nObs[chunk.start + r];
          else for (let k = a; k < b; k++) n += data[k];
          if (!(n > 0)) continue;
          for (let k = a; k < b; k++) {
            const x = data[k];
            if (x === 0) continue;
            const v = (x / n) * 10000;
            const s = colSlot[indices[k]];
            nnz++;
            if (exact) {
              let buf = bufs[s];
              if (lens[s] === buf.length) {
                const nb = new Float64Array(buf.length * 2);
                nb.set(buf);
                bufs[s] = buf = nb;
              }
              buf[lens[s]++] = v;
            } else {
              let l = chunkVals.get(s);
              if (!l) chunkVals.set(s, (l = []));
              l.push(v);
            }
          }
        }
        if (!exact) {
          for (const [s, l] of chunkVals) digests[s].push(l);
          chunkVals.clear();
        }
        nCells += chunk.nCells;
        opts.onProgress?.(nCells);
      }
    } finally {
      src.close();
    }
  }
  const medians = new Map<string, number>();
  for (let s = 0; s < names.length; s++) {
    if (exact) {
      const n = lens[s];
      if (n === 0) continue;
      const v = bufs[s].subarray(0, n).sort();
      medians.set(names[s], n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2);
    } else {
      const d = digests[s];
      if (d.size() === 0) continue;
      d.compress();
      medians.set(names[s], d.percentile(0.5) as number);
    }
  }
  bufs = [];
  lens = [];
  return { medians, method: exact ? "exact" : "tdigest", nCells, nNonzeros: nnz, nGenes: names.length };
}

/** Format medians as the TSV Geneformer's bundled tables use: `ensembl_id\tnonzero_median`, shortest round-trip decimal. */
export function formatMediansTsv(medians: Map<string, number>): string {
  const lines = ["ensembl_id\tnonzero_median"];
  for (const [id, m] of medians) lines.push(`${id}\t${m}`);
  return lines.join("\n") + "\n";
}
