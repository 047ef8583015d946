/**
 * The `cellfm embed` stage: checkpoint + tokenized dataset (or raw counts, tokenized here with the
 * checkpoint's dictionary) → cell embeddings (Arrow IPC; with `h5ad`, a copy of the input AnnData with
 * the embedding in `obsm["X_cellfm"]` and provenance in `uns["cellfm_embed"]`).
 * The data registry check follows scvi-tools: the dictionary recorded in the checkpoint must match
 * the data's.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import cliProgress from "cli-progress";
import { type BackendChoice, initBackend } from "../backend.js";
import { writeEmbeddings } from "../data/embeddings.js";
import { openCounts, sourceFileFor } from "../data/open.js";
import { readTokenizedDataset, readTokenizedManifest, readTokenizedRange } from "../data/tokenized.js";
import type { ObsTable, ObsValues } from "../data/types.js";
import { assertWritable, sha256File } from "../io.js";
import { contextGeneMask } from "../model/value-model.js";
import type { Pooling } from "../model/cell-heads.js";
import { cellfmVersion, type CellfmMeta, readCheckpoint } from "../model/checkpoint.js";
import { loadGeneformerDictionaries } from "../tokenize/dictionaries.js";
import { tokenizeCounts } from "../tokenize/geneformer.js";
import { availableCores, checkThreadCount } from "../threads.js";
import { shardRange, type Shard } from "../shard.js";
import { embedCellsAsync } from "./embed.js";
import { RANK_ENCODING } from "../model/bert.js";
import { cellSamplingRng, sampleGenes } from "../train/gene-sampling.js";
import { embedCellsParallel } from "./parallel.js";
import { writeEmbeddingH5ad } from "./h5ad-writer.js";
import { withOutputLocks } from "../lock.js";
import { isHdf5File } from "../data/h5ad.js";
import { addObsm, addUnsStrings, writeH5adCopy } from "../data/h5ad-copy.js";

/**
 * `--h5ad`: a copy of the AnnData the cells come from with `obsm[key]` (cells without an embedding —
 * another shard, or dropped for having no known expressed gene — get NaN rows, counted in
 * `uns["cellfm_embed"]`), or, where there is no such `.h5ad`, an AnnData of obs and `obsm[key]`.
 */
async function writeH5adOutput(
  o: EmbedRunOptions,
  e: { cellIds: string[]; obs: ObsTable; data: Float32Array; dim: number; meta: Record<string, string>; source: { path: string; sha256: string } },
  log: (l: string) => void,
): Promise<void> {
  const key = o.obsmKey ?? "X_cellfm";
  const src = e.source.path;
  let copyOf: string | undefined;
  if (src && fs.existsSync(src) && fs.statSync(src).isFile() && isHdf5File(src)) {
    if (!e.source.sha256 || (await sha256File(src)) === e.source.sha256) copyOf = src;
    else log(`note: ${src} changed since it was tokenized; --h5ad ${o.h5ad} holds obs and obsm["${key}"] only`);
  } else if (src) log(`note: no .h5ad to copy (the cells come from ${src}); --h5ad ${o.h5ad} holds obs and obsm["${key}"] only`);
  if (copyOf && path.resolve(o.h5ad!) === path.resolve(copyOf)) {
    throw new Error(`--h5ad ${o.h5ad} is the AnnData the cells come from; write the copy under another name (nothing was written)`);
  }
  if (!copyOf) {
    await writeEmbeddingH5ad(o.h5ad!, { obs: e.obs, embedding: e.data, dim: e.dim, key, uns: e.meta }, { force: o.force });
    return;
  }
  const adata = await openCounts(copyOf, { allowNonInteger: true });
  const index = adata.obs.index;
  adata.close();
  const row = new Map<string, number>();
  e.cellIds.forEach((id, i) => row.set(id, i));
  const full = new Float32Array(index.length * e.dim).fill(NaN);
  let missing = 0;
  for (let c = 0; c < index.length; c++) {
    const r = row.get(index[c]);
    if (r === undefined) missing++;
    else full.set(e.data.subarray(r * e.dim, (r + 1) * e.dim), c * e.dim);
  }
  if (missing === index.length) throw new Error(`${copyOf}: none of its ${index.length} obs names has an embedding; were the tokens made from another file?`);
  if (missing > 0) log(`warning: ${missing} of ${index.length} cells of ${copyOf} have no embedding (another shard, or no known expressed gene): NaN rows in obsm["${key}"]`);
  await writeH5adCopy(
    copyOf,
    o.h5ad!,
    (h5) => {
      addObsm(h5, o.h5ad!, key, full, index.length, e.dim);
      addUnsStrings(h5, "cellfm_embed", { ...e.meta, obsm_key: key, cells_without_embedding: String(missing) });
    },
    { force: o.force },
  );
}

/** Total tokens from which `workers: auto` uses worker threads. */
export const AUTO_WORKERS_MIN_TOKENS = 262144;

/** Options of {@link embedToFile} (mirrors `cellfm embed`). */
export interface EmbedRunOptions {
  /** checkpoint folder (`config.json` + `model.safetensors`). */
  checkpoint: string;
  /** tokenized dataset folder (with `manifest.json`), or an `.h5ad` file / 10x folder of raw counts. */
  input: string;
  /** output Arrow IPC file. */
  output: string;
  /**
   * transformer layer, Geneformer's emb_layer (`--hidden-layer`; −1 = second-to-last layer; 0 = last).
   * Default: 0 for a model trained with cell-level objectives (`cellfm.cell`: its cell embedding is
   * trained on the last layer), else −1.
   */
  layer?: number;
  /** Pooling (default: the checkpoint's `cellfm.cell.pooling`, else mean). */
  pool?: Pooling;
  /**
   * also write an AnnData file: a copy of the input `.h5ad` (of a tokenized folder: of the `.h5ad` it
   * was tokenized from, when that file is still there unchanged) with the embedding in
   * `obsm[obsmKey]`; else (10x input, source gone) an AnnData with obs and `obsm[obsmKey]` only.
   */
  h5ad?: string;
  /** obsm key of the embedding in `h5ad` (default "X_cellfm"). */
  obsmKey?: string;
  /** raw-count `.h5ad` input: read the counts from `layers/<countsLayer>` (`--layer counts`). */
  countsLayer?: string;
  /** raw-count `.h5ad` input: read the counts from `raw/X`. */
  useRaw?: boolean;
  backend?: BackendChoice;
  /** token budget per forward pass (default 16,384). */
  maxTokensPerBatch?: number;
  /**
   * worker threads (each its own backend and model copy); 0 or undefined = auto: one per core on
   * wasm/cpu when the input has ≥ 262,144 tokens (starting a worker costs seconds), else 1 (in-process;
   * tfjs-node threads internally). Results do not depend on it.
   */
  workers?: number;
  /** raw-count inputs: var column with gene IDs (as `cellfm tokenize --id-column`). */
  idColumn?: string;
  /**
   * embed only slice k of N of the input's cells (`src/shard.ts`: of the tokenized dataset's cells, or
   * of the raw-count file's cells); `cellfm merge` joins the N files into the unsharded result.
   */
  shard?: Shard;
  force?: boolean;
  quiet?: boolean;
  /** Called with progress/info lines (default: stderr unless quiet). */
  log?: (line: string) => void;
}

/** What {@link embedToFile} did. */
export interface EmbedRunSummary {
  nCells: number;
  dim: number;
  layer: number;
  pool: Pooling;
  backend: string;
  seconds: number;
  cellsPerSecond: number;
  truncatedCells: number;
  workers: number;
  /** raw-count input only: genes of the input known / unknown to the checkpoint's dictionary. */
  genesKnown?: number;
  genesUnknown?: number;
}

function checkDictionary(ck: CellfmMeta, data: { name: string; sha256: string } | undefined, what: string, ckDir: string): void {
  if (!data || !ck.dictionary) return;
  if (ck.dictionary.sha256 && data.sha256 && ck.dictionary.sha256 !== data.sha256) {
    throw new Error(
      `${what} was tokenized with dictionary ${data.name} (sha256 ${data.sha256.slice(0, 12)}…) but checkpoint ${ckDir} ` +
        `was trained with ${ck.dictionary.name} (sha256 ${ck.dictionary.sha256.slice(0, 12)}…); re-tokenize the data with the checkpoint's dictionary`,
    );
  }
}

function progress(total: number, quiet: boolean): { update(n: number): void; stop(): void } {
  if (quiet || !process.stderr.isTTY) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    { format: "embed [{bar}] {percentage}% | {value}/{total} cells | {rate} cells/s | ETA {eta_formatted}", stream: process.stderr, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  const t0 = Date.now();
  bar.start(total, 0, { rate: "0" });
  return {
    update: (n) => bar.update(n, { rate: Math.round(n / Math.max(1e-3, (Date.now() - t0) / 1000)).toString() }),
    stop: () => bar.stop(),
  };
}

/**
 * Embed every cell of `input` with the checkpoint's encoder and write the embeddings.
 * @throws Error (nothing written) when an output exists without `force`, the checkpoint is missing
 *   or corrupt, the data's dictionary differs from the checkpoint's, fewer than 50% of a raw-count
 *   input's genes are known to the checkpoint's dictionary, or the options are invalid.
 */
export async function embedToFile(o: EmbedRunOptions): Promise<EmbedRunSummary> {
  return withOutputLocks(() => embedToFileLocked(o));
}

async function embedToFileLocked(o: EmbedRunOptions): Promise<EmbedRunSummary> {
  const log = o.log ?? ((l: string) => (o.quiet ? undefined : process.stderr.write(l + "\n")));
  let layer = o.layer ?? -1;
  let pool: Pooling = o.pool ?? "mean";
  const inputs = [
    { path: o.checkpoint, label: "--checkpoint" },
    { path: o.input, label: "--input" },
  ];
  assertWritable(o.output, o.force ?? false, { kind: "file", inputs, lock: "embed" });
  if (o.h5ad) {
    assertWritable(o.h5ad, o.force ?? false, { kind: "file", inputs: [...inputs, { path: o.output, label: "--output" }], lock: "embed" });
  }
  if (!fs.existsSync(o.input)) throw new Error(`input ${o.input} not found`);
  const backend = await initBackend(o.backend ?? "auto", { webgpu: true });
  log(`backend: ${backend.name} (${backend.package}${backend.adapter ? `, ${backend.adapter}` : ""}); matmul kernels: ${backend.kernels}`);
  const ck = readCheckpoint(o.checkpoint);
  const model = ck.model;
  try {
    // a model trained with cell-level objectives: its own pooling of its last layer (--layer/--pool override)
    const cellSpec = model.spec.cell;
    if (cellSpec) {
      layer = o.layer ?? 0;
      pool = o.pool ?? cellSpec.pooling;
    }
    if (!Number.isInteger(layer) || layer > 0 || layer < -ck.config.num_hidden_layers) {
      throw new Error(`--layer must be an integer in [${-ck.config.num_hidden_layers}, 0]; got ${layer}`);
    }
    const version = ck.cellfm.model_version === "V2" ? "V2" : "V1";
    const dict = loadGeneformerDictionaries(version);
    if (dict.vocabSize !== ck.config.vocab_size && ck.cellfm.encoding === "geneformer-rank-value") {
      log(`note: checkpoint vocab_size ${ck.config.vocab_size} differs from the ${version} dictionary (${dict.vocabSize} tokens)`);
    }
    if (pool === "cls" && dict.special.cls === undefined) {
      throw new Error(`--pool cls needs a V2 model (cells start with <cls>); this checkpoint is ${version}: use --pool mean`);
    }
    let cellIds: string[];
    let cells: Int32Array[];
    let values: Float32Array[] | undefined;
    const valueEncoding = ck.cellfm.encoding !== RANK_ENCODING;
    let obs: ObsTable;
    let genesKnown: number | undefined, genesUnknown: number | undefined;
    // the counts the embeddings come from, so `assess` can check its --input is the same data
    let source: { path: string; sha256: string } = { path: "", sha256: "" };
    const isTokenized = fs.statSync(o.input).isDirectory() && fs.existsSync(path.join(o.input, "manifest.json"));
    if (isTokenized && (o.countsLayer !== undefined || o.useRaw)) {
      throw new Error(`--layer/--use-raw choose the counts of an .h5ad input; ${o.input} is already tokenized (give --layer to cellfm tokenize)`);
    }
    if (isTokenized) {
      // --shard reads only the record batches of its cells, so memory is bounded by the shard
      const nAll = readTokenizedManifest(o.input).shards.reduce((k, s) => k + s.n_cells, 0);
      const range = shardRange(nAll, o.shard);
      const ds = o.shard ? await readTokenizedRange(o.input, range.start, range.end) : readTokenizedDataset(o.input);
      if (ds.manifest.encoding !== ck.cellfm.encoding) {
        throw new Error(`${o.input} has encoding ${ds.manifest.encoding} but checkpoint ${o.checkpoint} expects ${ck.cellfm.encoding}`);
      }
      checkDictionary(ck.cellfm, ds.manifest.dictionary, o.input, o.checkpoint);
      if (valueEncoding && (ds.manifest.top_genes ?? null) !== ((ck.cellfm.top_genes as number | undefined) ?? null)) {
        const sel = (k: unknown) => (k === undefined || k === null ? "every expressed gene" : `the top ${k} genes by rank-value (--top-genes ${k})`);
        log(`warning: checkpoint ${o.checkpoint} was trained on ${sel(ck.cellfm.top_genes)} per cell, but ${o.input} holds ${sel(ds.manifest.top_genes)}; the embeddings read genes the model was not trained to read`);
      }
      const [start, end] = [0, ds.cellIds.length];
      cellIds = ds.cellIds.slice(start, end);
      cells = ds.inputIds.slice(start, end);
      if (valueEncoding) {
        if (!ds.values) throw new Error(`${o.input} has no values column; checkpoint ${o.checkpoint} (${ck.cellfm.encoding}) needs one`);
        // a fixed context per cell: all genes up to max_position_embeddings, else a subset seeded by the cell id only
        values = [];
        const all = ds.values.slice(start, end);
        // a model trained with gene_embeddings.missing: drop has no representation for genes without a vector
        const allowed = contextGeneMask(model.embeddings);
        cells = cells.map((c, i) => {
          let ids = c, vals = all[i];
          if (allowed) {
            const keep: number[] = [];
            for (let j = 0; j < ids.length; j++) if (allowed[ids[j]]) keep.push(j);
            ids = Int32Array.from(keep, (j) => c[j]);
            vals = Float32Array.from(keep, (j) => all[i][j]);
          }
          const s = sampleGenes(ids, vals, { maxLength: ck.config.max_position_embeddings }, cellSamplingRng(0, cellIds[i]));
          values!.push(s.values);
          return s.ids;
        });
      }
      obs = { index: cellIds, columns: {} };
      for (const [k, v] of Object.entries(ds.obs.columns)) obs.columns[k] = v.slice(start, end) as ObsValues;
      source = { path: ds.manifest.source?.path ?? "", sha256: ds.manifest.source?.sha256 ?? "" };
    } else {
      if (valueEncoding) {
        throw new Error(`checkpoint ${o.checkpoint} uses encoding ${ck.cellfm.encoding}: tokenize ${o.input} with cellfm tokenize --encoding ${ck.cellfm.encoding === "scgpt-binned" ? "binned" : "counts"} and embed the tokenized folder`);
      }
      if (ck.cellfm.dictionary?.sha256 && ck.cellfm.dictionary.sha256 !== dict.files.tokens.sha256) {
        throw new Error(
          `checkpoint ${o.checkpoint} was trained with dictionary ${ck.cellfm.dictionary.name} (sha256 ${ck.cellfm.dictionary.sha256.slice(0, 12)}…), ` +
            `not the bundled ${dict.files.tokens.name}; tokenize the data yourself with that dictionary and pass the tokenized folder`,
        );
      }
      const src = await openCounts(o.input, { layer: o.countsLayer, useRaw: o.useRaw });
      for (const n of src.notes ?? []) log(`note: ${n}`);
      source = { path: path.resolve(sourceFileFor(o.input)), sha256: await sha256File(sourceFileFor(o.input)) };
      try {
        const carry = Object.keys(src.obs.columns);
        const t = tokenizeCounts(src, { modelVersion: version, dictionaries: dict, carry, idColumn: o.idColumn }, shardRange(src.nCells, o.shard));
        genesKnown = t.summary.var_genes_matched;
        genesUnknown = t.summary.genes_unknown;
        log(
          `${o.input}: ${genesKnown} of ${t.summary.n_vars} genes known to the checkpoint's ${version} dictionary, ${genesUnknown} unknown (ignored); ` +
            `${t.summary.cells_written} cells tokenized` +
            (t.summary.cells_dropped_empty.length ? `, ${t.summary.cells_dropped_empty.length} dropped (no known expressed gene)` : ""),
        );
        cellIds = t.cells.map((c) => c.cellId);
        cells = t.cells.map((c) => c.inputIds);
        obs = { index: cellIds, columns: t.obs as Record<string, ObsValues> };
      } finally {
        src.close();
      }
    }
    // truncate to the model's position table (keep the highest-ranked genes; V2 keeps <eos> last)
    const maxLen = ck.config.max_position_embeddings;
    let truncated = 0;
    cells = cells.map((c) => {
      if (c.length <= maxLen) return c;
      truncated++;
      const t = c.slice(0, maxLen);
      if (dict.special.eos !== undefined && c[c.length - 1] === dict.special.eos) t[maxLen - 1] = dict.special.eos;
      return t;
    });
    if (truncated) log(`${truncated} cells longer than max_position_embeddings (${maxLen}) were truncated to their top-ranked genes`);
    const exclude = pool !== "cls" && dict.special.cls !== undefined ? [dict.special.cls, dict.special.eos!] : [];
    const bar = progress(cells.length, o.quiet ?? false);
    const t0 = performance.now();
    const totalTokens = cells.reduce((a, c) => a + c.length, 0);
    // worker threads are for one-thread CPU backends; tfjs-node threads its ops, and a GPU is one device
    const oneDevice = backend.name === "tensorflow" || backend.name === "webgpu";
    if (backend.name === "webgpu" && (o.workers ?? 0) > 1) log(`--workers ${o.workers} ignored on webgpu: one process drives the GPU`);
    const nWorkers =
      backend.name === "webgpu" ? 1 : o.workers && checkThreadCount(o.workers, "--workers", 0) > 0 ? o.workers : !oneDevice && totalTokens >= AUTO_WORKERS_MIN_TOKENS ? availableCores() : 1;
    const eopts = { layer, pool, excludeSpecial: exclude, maxTokensPerBatch: o.maxTokensPerBatch, values, onProgress: (d: number) => bar.update(d) };
    const data =
      nWorkers > 1
        ? await embedCellsParallel(o.checkpoint, cells, ck.config.hidden_size, { ...eopts, workers: nWorkers, backend: backend.name as BackendChoice })
        : await embedCellsAsync(model, cells, eopts);
    if (nWorkers > 1) log(`embedded with ${nWorkers} worker threads`);
    bar.stop();
    const seconds = (performance.now() - t0) / 1000;
    const dim = ck.config.hidden_size;
    const meta: Record<string, string> = {
      checkpoint: path.resolve(o.checkpoint),
      input: path.resolve(o.input),
      source: source.path,
      source_sha256: source.sha256,
      layer: String(layer),
      hidden_state_index: String(ck.config.num_hidden_layers + layer),
      pool,
      backend: backend.name,
      model_version: version,
      dictionary: JSON.stringify(ck.cellfm.dictionary ?? null),
      cellfm_version: cellfmVersion(),
      created: new Date().toISOString(),
      ...(o.shard ? { shard: JSON.stringify({ index: o.shard.index, count: o.shard.count }) } : {}),
    };
    writeEmbeddings(o.output, { cellIds, dim, data, obs, meta }, { force: o.force });
    if (o.h5ad) await writeH5adOutput(o, { cellIds, obs, data, dim, meta, source: isTokenized ? source : { path: path.resolve(o.input), sha256: "" } }, log);
    return {
      nCells: cells.length,
      dim,
      layer,
      pool,
      backend: backend.name,
      seconds,
      cellsPerSecond: cells.length / Math.max(seconds, 1e-9),
      truncatedCells: truncated,
      workers: nWorkers,
      genesKnown,
      genesUnknown,
    };
  } finally {
    model.dispose();
  }
}
