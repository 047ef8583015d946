/**
 * The `cellfm denoise` stage: a denoise-trained checkpoint + an `.h5ad` of raw counts → a copy of
 * the file with the model's predicted mean expression (the count head's μ, in counts) as
 * `layers["denoised"]`. Everything else of the input (X, obs, var, obsm, uns, ...) is copied
 * unchanged; cells and genes are those of the input, in its order.
 *
 * What is predicted (the model only sees genes of its vocabulary, in contexts of at most
 * `max_position_embeddings` genes):
 * - each cell is tokenized with the checkpoint's encoding and dictionary (as `cellfm tokenize`);
 * - `scprint-counts` / `scgpt-binned`: the context is all of the cell's expressed genes that are in
 *   the vocabulary; a cell with more of them than `max_position_embeddings` is split into
 *   ⌈n / max⌉ contexts of near-equal size by a shuffle seeded by the cell id, so every expressed
 *   gene is predicted exactly once and the result depends only on the cell;
 *   A checkpoint trained on `cellfm tokenize --top-genes K` tokens (its `cellfm.top_genes`) reads
 *   only each cell's K genes that rank-value encoding puts first, as it was trained;
 * - `geneformer-rank-value`: the context is the cell's top-ranked genes (up to
 *   `max_position_embeddings`, special tokens left out), as the model was trained;
 * - the library size of a context is the cell's observed total over the context's genes, so the
 *   denoised values of a context sum to the observed counts of those genes (denoising redistributes
 *   counts between a cell's genes; it does not change its depth).
 *
 * Entries that keep their observed value: genes outside the vocabulary (var column
 * `denoised_in_context` = 0), genes a rank model did not see in that cell (beyond its top
 * `max_position_embeddings`; a `top_genes` value model: beyond its top K), and cells the tokenizer dropped (no expressed gene in the vocabulary).
 * Genes not expressed in a cell stay 0 (the contexts hold the expressed genes only), so
 * `layers["denoised"]` is a CSR matrix with exactly X's nonzero pattern. Where several var columns
 * map to one gene (summed when tokenizing), the gene's μ is shared between them in proportion to
 * their observed counts.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import cliProgress from "cli-progress";
import type { Group as H5Group } from "h5wasm/node";
import { type BackendChoice, initBackend } from "../backend.js";
import { isHdf5File, openH5ad } from "../data/h5ad.js";
import { addUnsStrings, encodeAs, topGroup, writeH5adCopy } from "../data/h5ad-copy.js";
import { assertWritable } from "../io.js";
import { cellfmVersion, readCheckpoint } from "../model/checkpoint.js";
import { RANK_ENCODING } from "../model/bert.js";
import { loadGeneformerDictionaries } from "../tokenize/dictionaries.js";
import { encodingFromManifest, GeneformerTokenizer, type FlatTokenizedChunk } from "../tokenize/geneformer.js";
import { cellSamplingRng } from "../train/gene-sampling.js";
import { BINNED_ENCODING } from "../model/factory.js";
import { contextGeneMask } from "../model/value-model.js";
import { type DenoiseInput, predictMeans } from "./predict.js";
import { withOutputLocks } from "../lock.js";

/** Name of the layer written. */
export const DENOISED_LAYER = "denoised";
/** var column: 1 = the gene is in the model's vocabulary (predicted where the cell expresses it). */
export const IN_CONTEXT_COLUMN = "denoised_in_context";

/** Options of {@link denoiseToFile} (mirrors `cellfm denoise`). */
export interface DenoiseRunOptions {
  /** checkpoint folder of a denoise-trained model. */
  checkpoint: string;
  /** `.h5ad` with raw counts in X. */
  input: string;
  /** output `.h5ad` (a copy of the input with `layers["denoised"]`). */
  output: string;
  /** var column with gene IDs (as `cellfm tokenize --id-column`). */
  idColumn?: string;
  /** read the counts from `layers/<layer>` instead of X (scanpy files: `counts`). */
  layer?: string;
  /** read the counts from `raw/X` (its genes must be var's). */
  useRaw?: boolean;
  backend?: BackendChoice;
  /** padded tokens per forward pass (default 16,384; does not change the result). */
  maxTokensPerBatch?: number;
  force?: boolean;
  quiet?: boolean;
  log?: (line: string) => void;
}

/** What {@link denoiseToFile} did. */
export interface DenoiseRunSummary {
  nCells: number;
  nGenes: number;
  /** cells with at least one predicted gene. */
  cellsDenoised: number;
  /** var columns in the model's vocabulary. */
  genesInContext: number;
  /** nonzero entries replaced by the prediction / kept at their observed value. */
  entriesDenoised: number;
  entriesKept: number;
  /** contexts (forward-pass rows) run. */
  contexts: number;
  encoding: string;
  likelihood: string;
  backend: string;
  seconds: number;
}

function progress(total: number, quiet: boolean): { update(n: number): void; stop(): void } {
  if (quiet || !process.stderr.isTTY) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    { format: "denoise [{bar}] {percentage}% | {value}/{total} cells | ETA {eta_formatted}", stream: process.stderr, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0);
  return { update: (n) => bar.update(n), stop: () => bar.stop() };
}

/** One tokenized cell's contexts, with the original count of each context gene. */
interface CellContexts {
  inputs: DenoiseInput[];
  orig: Float32Array[];
}

/**
 * The contexts of one tokenized cell (see the module comment).
 * @param ids, values, counts the cell's tokens, input values, and raw count per token
 */
export function cellContexts(ids: Int32Array, values: Float32Array, counts: Float32Array, cellId: string, encoding: string, maxLen: number): CellContexts {
  const make = (pos: ArrayLike<number>): { input: DenoiseInput; orig: Float32Array } => {
    const orig = Float32Array.from(pos, (p) => counts[p]);
    let lib = 0;
    for (const x of orig) lib += x;
    return { input: { ids: Int32Array.from(pos, (p) => ids[p]), values: Float32Array.from(pos, (p) => values[p]), libSize: lib }, orig };
  };
  const parts: ArrayLike<number>[] = [];
  if (encoding === RANK_ENCODING) {
    const keep: number[] = [];
    for (let i = 0; i < ids.length && keep.length < maxLen; i++) if (counts[i] > 0) keep.push(i); // special tokens carry 0
    if (keep.length) parts.push(keep);
  } else {
    const n = ids.length;
    const nParts = Math.ceil(n / maxLen);
    if (nParts <= 1) {
      if (n) parts.push(Int32Array.from({ length: n }, (_, i) => i));
    } else {
      const order = Int32Array.from({ length: n }, (_, i) => i);
      const rng = cellSamplingRng(0, cellId);
      for (let i = n - 1; i > 0; i--) {
        const j = Math.floor(rng() * (i + 1));
        const t = order[i];
        order[i] = order[j];
        order[j] = t;
      }
      for (let k = 0; k < nParts; k++) parts.push(order.slice(Math.floor((k * n) / nParts), Math.floor(((k + 1) * n) / nParts)).sort());
    }
  }
  const out: CellContexts = { inputs: [], orig: [] };
  for (const p of parts) {
    const m = make(p);
    if (m.input.libSize > 0) {
      out.inputs.push(m.input);
      out.orig.push(m.orig);
    }
  }
  return out;
}

function attrValue(g: H5Group, name: string): unknown {
  const a = (g.attrs as Record<string, { value: unknown } | undefined>)[name];
  return a?.value;
}


/**
 * Denoise every cell of `input` and write the copy with `layers["denoised"]`.
 * @throws Error (nothing written) when the output exists without `force`, the checkpoint was not
 *   trained with objective `denoise` (its objective named), the input is not an `.h5ad` or already
 *   has `layers["denoised"]` / var `denoised_in_context`, the checkpoint's dictionary is not the
 *   bundled one, fewer than 50% of the genes are known, or a prediction is not finite.
 */
export async function denoiseToFile(o: DenoiseRunOptions): Promise<DenoiseRunSummary> {
  return withOutputLocks(() => denoiseToFileLocked(o));
}

async function denoiseToFileLocked(o: DenoiseRunOptions): Promise<DenoiseRunSummary> {
  const log = o.log ?? ((l: string) => (o.quiet ? undefined : process.stderr.write(l + "\n")));
  assertWritable(o.output, o.force ?? false, {
    kind: "file",
    lock: "denoise",
    inputs: [
      { path: o.checkpoint, label: "--checkpoint" },
      { path: o.input, label: "--input" },
    ],
  });
  if (!fs.existsSync(o.input)) throw new Error(`input ${o.input} not found`);
  if (fs.statSync(o.input).isDirectory() || !isHdf5File(o.input)) {
    throw new Error(`--input ${o.input}: cellfm denoise reads an .h5ad file (the output is a copy of it with layers["${DENOISED_LAYER}"]); convert other formats to .h5ad first`);
  }
  const backend = await initBackend(o.backend ?? "auto");
  const ck = readCheckpoint(o.checkpoint);
  const model = ck.model;
  const t0 = performance.now();
  try {
    if (ck.cellfm.objective !== "denoise") {
      throw new Error(
        `checkpoint ${o.checkpoint} was trained with objective "${ck.cellfm.objective}" (encoding ${ck.cellfm.encoding}); ` +
          `cellfm denoise needs a checkpoint trained with training.objective: denoise`,
      );
    }
    const encoding = encodingFromManifest(ck.cellfm.encoding);
    if (!encoding) throw new Error(`checkpoint ${o.checkpoint}: unknown encoding ${ck.cellfm.encoding}`);
    const version = ck.cellfm.model_version === "V2" ? "V2" : "V1";
    const dict = loadGeneformerDictionaries(version);
    if (ck.cellfm.dictionary?.sha256 && ck.cellfm.dictionary.sha256 !== dict.files.tokens.sha256) {
      throw new Error(
        `checkpoint ${o.checkpoint} was trained with dictionary ${ck.cellfm.dictionary.name} (sha256 ${ck.cellfm.dictionary.sha256.slice(0, 12)}…), ` +
          `not the bundled ${dict.files.tokens.name}; cellfm denoise tokenizes with the bundled dictionaries`,
      );
    }
    const likelihood = String(ck.cellfm.head?.likelihood ?? "zinb");
    const nBins = typeof ck.cellfm.head?.n_bins === "number" ? (ck.cellfm.head.n_bins as number) : undefined;
    const maxLen = ck.config.max_position_embeddings;
    log(`backend: ${backend.name}; checkpoint ${ck.cellfm.encoding} + denoise (${likelihood}), contexts of at most ${maxLen} genes`);

    // --- predict, block by block ---------------------------------------------------------------
    const src = await openH5ad(o.input, { layer: o.layer, useRaw: o.useRaw });
    const countsKey = src.matrixKey;
    if (o.useRaw) {
      // layers have X's shape: raw/X with other genes than var cannot give one
      const x = await openH5ad(o.input);
      const nVar = x.nGenes;
      x.close();
      if (nVar !== src.nGenes) {
        src.close();
        throw new Error(`${o.input}: raw has ${src.nGenes} genes but var has ${nVar}; layers["${DENOISED_LAYER}"] must have X's shape, so denoise counts of X's genes (--layer NAME)`);
      }
    }
    let indptr: BigInt64Array, indices: Int32Array, data: Float32Array, inContext: Int8Array;
    let cellsDenoised = 0, entriesDenoised = 0, contexts = 0;
    const nCells = src.nCells, nGenes = src.nGenes;
    try {
      // a model trained on `--top-genes K` tokens reads each cell's K top-ranked genes; the others keep their observed value
      const topGenes = typeof ck.cellfm.top_genes === "number" ? ck.cellfm.top_genes : undefined;
      const tk = new GeneformerTokenizer(src, { modelVersion: version, dictionaries: dict, idColumn: o.idColumn, encoding, nBins, topGenes });
      const colToken = tk.plan.colToken;
      // a model trained with gene_embeddings.missing: drop has no representation for genes without a
      // vector: they stay out of every context (as in training and embed) and keep their observed value
      const allowed = contextGeneMask(model.embeddings);
      inContext = Int8Array.from(colToken, (t) => (t >= 0 && (!allowed || allowed[t]) ? 1 : 0));
      log(`${o.input}: ${tk.plan.columnsMatched} of ${nGenes} genes in the checkpoint's ${version} vocabulary (the others keep their observed value)`);
      let nnz = 0;
      for (const ch of src.chunks(1024)) nnz += ch.indices.length;
      indptr = new BigInt64Array(nCells + 1);
      indices = new Int32Array(nnz);
      data = new Float32Array(nnz);
      const muOf = new Float64Array(dict.vocabSize), origOf = new Float64Array(dict.vocabSize);
      const hit = new Uint8Array(dict.vocabSize);
      const bar = progress(nCells, o.quiet ?? false);
      let off = 0;
      for (const ch of src.chunks(256)) {
        const f: FlatTokenizedChunk = tk.tokenizeChunkFlat(ch);
        const perCell: CellContexts[] = [];
        const flat: DenoiseInput[] = [];
        for (let i = 0; i < f.cellIds.length; i++) {
          const a = f.offsets[i], b = f.offsets[i + 1];
          let ids = f.ids.subarray(a, b), vals = f.values.subarray(a, b);
          let counts = f.counts ? f.counts.subarray(a, b) : vals;
          if (allowed) {
            const keep: number[] = [];
            for (let j = 0; j < ids.length; j++) if (allowed[ids[j]]) keep.push(j);
            const i0 = ids, v0 = vals, c0 = counts;
            ids = Int32Array.from(keep, (j) => i0[j]);
            vals = Float32Array.from(keep, (j) => v0[j]);
            counts = Float32Array.from(keep, (j) => c0[j]);
          }
          const cc = cellContexts(ids, vals, counts, f.cellIds[i], ck.cellfm.encoding, maxLen);
          perCell.push(cc);
          for (const x of cc.inputs) flat.push(x);
        }
        const mus = predictMeans(model, flat, { maxTokensPerBatch: o.maxTokensPerBatch });
        contexts += flat.length;
        const rowOf = new Map<number, number>();
        for (let i = 0; i < f.obsRows.length; i++) rowOf.set(f.obsRows[i], i);
        let k = 0;
        for (let r = 0; r < ch.nCells; r++) {
          const row = ch.start + r;
          const ci = rowOf.get(row);
          const touched: number[] = [];
          if (ci !== undefined) {
            const cc = perCell[ci];
            for (let q = 0; q < cc.inputs.length; q++, k++) {
              const mu = mus[k];
              cc.inputs[q].ids.forEach((t, j) => {
                if (!Number.isFinite(mu[j]) || mu[j] < 0) {
                  throw new Error(`denoise: predicted mean ${mu[j]} of cell ${f.cellIds[ci]}, token ${t} is not a finite number >= 0 (a diverged checkpoint?)`);
                }
                muOf[t] = mu[j];
                origOf[t] = cc.orig[q][j];
                hit[t] = 1;
                touched.push(t);
              });
            }
            if (cc.inputs.length) cellsDenoised++;
          }
          for (let e = ch.indptr[r]; e < ch.indptr[r + 1]; e++) {
            const col = ch.indices[e], x = ch.data[e];
            const t = colToken[col];
            indices[off] = col;
            if (t >= 0 && hit[t] && origOf[t] > 0) {
              data[off] = (muOf[t] * x) / origOf[t];
              entriesDenoised++;
            } else data[off] = x;
            off++;
          }
          indptr[row + 1] = BigInt(off);
          for (const t of touched) hit[t] = 0;
        }
        bar.update(ch.start + ch.nCells);
      }
      bar.stop();
      if (off !== nnz) throw new Error(`denoise: read ${off} stored values of ${o.input}, expected ${nnz}`);
    } finally {
      src.close();
    }

    // --- write: a copy of the input + layers/denoised + var column + uns/cellfm_denoise -------------
    await writeH5adCopy(
      o.input,
      o.output,
      (h5) => {
        const layers = topGroup(h5, "layers");
        if (layers.keys().includes(DENOISED_LAYER)) {
          throw new Error(`${o.input} already has layers["${DENOISED_LAYER}"] (an earlier cellfm denoise output?); denoise the original file`);
        }
        const L = layers.create_group(DENOISED_LAYER);
        encodeAs(L, "csr_matrix", "0.1.0");
        L.create_attribute("shape", new BigInt64Array([BigInt(nCells), BigInt(nGenes)]));
        const chunk = [Math.max(1, Math.min(data.length, 1 << 20))];
        L.create_dataset({ name: "data", data, chunks: chunk, compression: "gzip", compression_opts: 4 } as never);
        L.create_dataset({ name: "indices", data: indices, chunks: chunk, compression: "gzip", compression_opts: 4 } as never);
        L.create_dataset({ name: "indptr", data: indptr });
        const v = h5.get("var") as H5Group | null;
        if (v) {
          if (v.keys().includes(IN_CONTEXT_COLUMN)) throw new Error(`${o.input} already has var column ${IN_CONTEXT_COLUMN} (an earlier cellfm denoise output?); denoise the original file`);
          // h5wasm cannot write HDF5 bool enums: stored as int8 0/1
          encodeAs(v.create_dataset({ name: IN_CONTEXT_COLUMN, data: inContext }), "array", "0.2.0");
          const prev = attrValue(v, "column-order");
          const cols = typeof prev === "string" ? [prev] : Array.isArray(prev) ? prev.map(String) : [];
          if (prev !== undefined) v.delete_attribute("column-order");
          v.create_attribute("column-order", [...cols, IN_CONTEXT_COLUMN]);
        }
        addUnsStrings(h5, "cellfm_denoise", {
          checkpoint: path.resolve(o.checkpoint),
          input: path.resolve(o.input),
          counts: countsKey,
          encoding: ck.cellfm.encoding,
          likelihood,
          max_context: String(maxLen),
          layer: DENOISED_LAYER,
          cellfm_version: cellfmVersion(),
          created: new Date().toISOString(),
        });
      },
      { force: o.force },
    );
    const entriesKept = data.length - entriesDenoised;
    return {
      nCells,
      nGenes,
      cellsDenoised,
      genesInContext: inContext.reduce((a, b) => a + b, 0),
      entriesDenoised,
      entriesKept,
      contexts,
      encoding: ck.cellfm.encoding,
      likelihood,
      backend: backend.name,
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    model.dispose();
  }
}

