/**
 * The `tokenize` and `medians` stages as library functions (the CLI only parses arguments and calls
 * these): stream a count matrix through the Geneformer tokenizer into a tokenized dataset folder, or
 * compute corpus nonzero medians into a TSV. Nothing is written when an input is bad.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { Worker } from "node:worker_threads";
import { createRequire } from "node:module";
import type cliProgressType from "cli-progress";
import { openCounts, sourceFileFor } from "../data/open.js";
import { TokenizedDatasetWriter, type TokenizedManifest } from "../data/tokenized.js";
import { openH5ad } from "../data/h5ad.js";
import { assertWritable, sha256File, writeFileAtomic } from "../io.js";
import { readMediansTsv } from "./dictionaries.js";
import { ENCODING_NAMES, GeneformerTokenizer, type TokenEncoding, type TokenizeSummary } from "./geneformer.js";
import { computeNonzeroMedians, formatMediansTsv, type MediansResult } from "./medians.js";
import { TokenizeWorkers } from "./parallel.js";
import { selectedBlocks } from "../data/types.js";
import { shardRange, type Shard } from "../shard.js";
import { availableCores, checkThreadCount } from "../threads.js";
import { withOutputLocks } from "../lock.js";


// Works whether the eval'd worker is treated as CommonJS or as an ES module (e.g. under --input-type=module).
const HASH_WORKER = `
(async () => {
  const { parentPort, workerData } = await import("node:worker_threads");
  const { createHash } = await import("node:crypto");
  const fs = await import("node:fs");
  const h = createHash("sha256");
  const fd = fs.openSync(workerData, "r");
  const buf = Buffer.allocUnsafe(1 << 22);
  let n;
  while ((n = fs.readSync(fd, buf, 0, buf.length, null)) > 0) h.update(buf.subarray(0, n));
  fs.closeSync(fd);
  parentPort.postMessage(h.digest("hex"));
})().catch((e) => { throw e; });
`;

/**
 * sha256 of a file computed in a worker thread, so hashing a large input overlaps with tokenizing
 * it (on a second core). Falls back to the main thread if workers are unavailable.
 */
export function sha256FileInWorker(file: string): { result: Promise<string>; cancel: () => void } {
  let w: Worker | undefined;
  const result = new Promise<string>((resolve, reject) => {
    try {
      w = new Worker(HASH_WORKER, { eval: true, workerData: file });
    } catch {
      sha256File(file).then(resolve, reject);
      return;
    }
    w.once("message", (m) => resolve(String(m)));
    w.once("error", reject);
    w.once("exit", (code) => {
      if (code !== 0) reject(new Error(`hashing ${file} failed (worker exit ${code})`));
    });
  });
  result.catch(() => undefined); // the caller awaits it later; avoid an unhandled rejection meanwhile
  return { result, cancel: () => void w?.terminate() };
}

function progressBar(total: number, label: string, quiet: boolean): { update(n: number): void; stop(): void } {
  if (quiet || !process.stderr.isTTY) return { update() {}, stop() {} };
  // loaded only when a bar is shown (a terminal, no --quiet)
  const cliProgress = createRequire(import.meta.url)("cli-progress") as typeof cliProgressType;
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {percentage}% | {value}/{total} cells | {rate} cells/s | ETA {eta_formatted}`, stream: process.stderr, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  const t0 = Date.now();
  bar.start(total, 0, { rate: "0" });
  return {
    update(n: number) {
      bar.update(n, { rate: Math.round(n / Math.max(1e-3, (Date.now() - t0) / 1000)).toString() });
    },
    stop() {
      bar.stop();
    },
  };
}

/** Column names of a tokenized dataset that carried obs columns may not take. */
export const RESERVED_COLUMNS = ["cell_id", "input_ids", "length", "values"];

/** Options of {@link tokenizeToDataset} (mirrors `cellfm tokenize`). */
export interface TokenizeRunOptions {
  input: string;
  output: string;
  modelVersion: "V1" | "V2";
  carry?: string[];
  idColumn?: string;
  layer?: string;
  useRaw?: boolean;
  /** user nonzero-median TSV (from `cellfm medians`). */
  medians?: string;
  /** 10x folders: per-cell annotation TSV (first column barcode). */
  obsTsv?: string;
  chunkSize?: number;
  allowNonInteger?: boolean;
  force?: boolean;
  quiet?: boolean;
  /** compute the input's sha256 for the manifest (default true). */
  hashSource?: boolean;
  /** tokenize only this slice of the cells (see `src/shard.ts`); the manifest records it. */
  shard?: Shard;
  /**
   * threads (1 = no worker threads). Default: the machine's cores (at most {@link MAX_TOKENIZE_THREADS}),
   * or 1 for inputs with fewer than {@link PARALLEL_MIN_VALUES} stored values (starting a worker costs
   * more than it saves) and for 10x folders (parsed whole by each thread). Never changes the output.
   */
  threads?: number;
  /** token encoding: rank (Geneformer, default), binned (scGPT), counts (scPRINT). */
  encoding?: TokenEncoding;
  /** binned: total bins including bin 0 (default 51). */
  nBins?: number;
  /** binned: seed of the per-cell tie spreading (default 0). */
  seed?: number;
  /** binned/counts: keep each cell's top genes by rank-value (see `GeneformerTokenizeOptions.topGenes`). */
  topGenes?: number;
}

/** Most tokenizer threads by default: each opens the input and its dictionaries (~60 MB each). */
export const MAX_TOKENIZE_THREADS = 8;
/** Stored values (nonzeros) from which the tokenizer uses worker threads. */
export const PARALLEL_MIN_VALUES = 20_000_000;

/**
 * Tokenize `input` (`.h5ad` or 10x folder) into the tokenized dataset folder `output`
 * (Arrow IPC shards + `manifest.json` + `summary.json`), streaming chunk by chunk.
 * @throws Error (and writes nothing) on an existing output without `force`, a missing/bad input,
 *   bad counts, a missing `--carry` column or < 50% known genes.
 */
export async function tokenizeToDataset(o: TokenizeRunOptions): Promise<{ summary: TokenizeSummary; manifest: TokenizedManifest; seconds: number }> {
  return withOutputLocks(() => tokenizeToDatasetLocked(o));
}

async function tokenizeToDatasetLocked(o: TokenizeRunOptions): Promise<{ summary: TokenizeSummary; manifest: TokenizedManifest; seconds: number }> {
  const t0 = performance.now();
  const inputs = [
    { path: o.input, label: "--input" },
    ...(o.medians ? [{ path: o.medians, label: "--medians" }] : []),
    ...(o.obsTsv ? [{ path: o.obsTsv, label: "--obs-tsv" }] : []),
  ];
  assertWritable(o.output, o.force ?? false, { command: "tokenize", kind: "dir", inputs, lock: "tokenize" });
  for (const c of o.carry ?? []) {
    if (RESERVED_COLUMNS.includes(c)) {
      throw new Error(
        `--carry column "${c}" has the name of a tokenized-dataset column (${RESERVED_COLUMNS.join(", ")}); ` +
          `the obs names are stored as cell_id already — rename the obs column to carry it`,
      );
    }
  }
  const userMedians = o.medians ? readMediansTsv(o.medians) : undefined;
  const source = await openCounts(o.input, { layer: o.layer, useRaw: o.useRaw, allowNonInteger: o.allowNonInteger, obsTsv: o.obsTsv });
  if (!o.quiet) for (const n of source.notes ?? []) process.stderr.write(`note: ${n}\n`);
  try {
    const tk = new GeneformerTokenizer(source, {
      modelVersion: o.modelVersion,
      carry: o.carry,
      idColumn: o.idColumn,
      medians: userMedians?.medians,
      encoding: o.encoding,
      nBins: o.nBins,
      seed: o.seed,
      topGenes: o.topGenes,
    });
    const srcFile = sourceFileFor(o.input);
    const hash = o.hashSource === false ? { result: Promise.resolve(""), cancel: () => undefined } : sha256FileInWorker(srcFile);
    const source_ = { path: path.resolve(srcFile), sha256: "" };
    const writer = new TokenizedDatasetWriter(
      o.output,
      {
        encoding: ENCODING_NAMES[tk.encoding],
        model_version: o.modelVersion,
        dictionary: tk.dict.files.tokens,
        medians: o.medians ? { name: path.basename(o.medians), sha256: userMedians!.sha256 } : tk.dict.files.medians,
        source: source_,
        values_kind: tk.encoding === "binned" ? "bin" : "count",
        measured_tokens: Array.from(new Set(Array.from(tk.plan.colToken).filter((t) => t >= 0))).sort((a, b) => a - b),
        ...(tk.encoding === "binned" ? { n_bins: tk.nBins, binning_seed: tk.seed } : {}),
        ...(o.topGenes !== undefined ? { top_genes: o.topGenes } : {}),
        ...(o.shard ? { shard: { index: o.shard.index, count: o.shard.count } } : {}),
      },
      { force: o.force },
    );
    const { start, end } = shardRange(source.nCells, o.shard);
    const chunkSize = o.chunkSize ?? 512;
    const nBlocks = selectedBlocks(source.nCells, chunkSize, { start, end }).length;
    const threads = Math.max(1, Math.min(nBlocks, tokenizeThreads(o.threads, source, start, end)));
    const bar = progressBar(end - start, `tokenize ${o.modelVersion}`, o.quiet ?? false);
    let summary: TokenizeSummary;
    const pool =
      threads > 1
        ? new TokenizeWorkers(threads, {
            input: o.input,
            open: { layer: o.layer, useRaw: o.useRaw, allowNonInteger: o.allowNonInteger, obsTsv: o.obsTsv },
            tokenizer: { modelVersion: o.modelVersion, idColumn: o.idColumn, medians: userMedians?.medians, encoding: o.encoding, nBins: o.nBins, seed: o.seed, topGenes: o.topGenes },
            chunkSize,
            select: { start, end },
          })
        : undefined;
    try {
      // block b is tokenized by thread b % threads (0 = this one); blocks are written in order
      const own = source.chunks(chunkSize, { start, end, stride: threads, phase: 0 })[Symbol.iterator]();
      let done = 0;
      for (let b = 0; b < nBlocks; b++) {
        const phase = b % threads;
        const f = phase === 0 ? tk.tokenizeChunkFlat(own.next().value!) : tk.record(await pool!.next(phase));
        writer.append({
          cellIds: f.cellIds,
          flat: { offsets: f.offsets, values: f.ids },
          flatValues: f.values,
          nCounts: f.nCounts,
          flatCounts: f.counts,
          obs: tk.carriedObsRows(f.obsRows),
        });
        done = Math.min(end - start, done + chunkSize);
        bar.update(done);
      }
      summary = tk.summary(end - start);
      if (o.shard) summary = { ...summary, shard: { index: o.shard.index, count: o.shard.count, cell_start: start, cell_end: end, n_cells_input: source.nCells } };
      if (summary.cells_written === 0 && !o.shard) throw new Error(`${o.input}: no cell has a nonzero count in a known gene; nothing to write`);
    } catch (e) {
      bar.stop();
      hash.cancel();
      writer.abort();
      throw e;
    } finally {
      await pool?.close();
    }
    bar.stop();
    try {
      source_.sha256 = await hash.result;
    } catch (e) {
      writer.abort();
      throw e;
    }
    const seconds = (performance.now() - t0) / 1000;
    const full = { ...summary, carried_obs: o.carry ?? [], seconds: Number(seconds.toFixed(3)) };
    const manifest = writer.finish({ "summary.json": JSON.stringify(full, null, 2) + "\n" });
    return { summary, manifest, seconds };
  } finally {
    source.close();
  }
}

/** Threads for tokenizing cells `[start, end)` of `source` (see {@link TokenizeRunOptions.threads}). */
function tokenizeThreads(asked: number | undefined, source: { nCells: number; storedValues?: number }, start: number, end: number): number {
  if (asked !== undefined) return checkThreadCount(asked, "--threads");
  const n = Math.min(availableCores(), MAX_TOKENIZE_THREADS);
  // stored values in the range, estimated from the whole matrix (an h5ad knows its count without reading;
  // a 10x folder is parsed whole in memory, which each worker would repeat)
  const values = source.storedValues === undefined ? 0 : (source.storedValues * (end - start)) / Math.max(1, source.nCells);
  return values >= PARALLEL_MIN_VALUES ? n : 1;
}

/** Human-readable summary lines printed by `cellfm tokenize`. */
export function formatTokenizeSummary(s: TokenizeSummary, output: string, seconds?: number): string {
  const how = s.encoding === "rank" || s.encoding === undefined ? `Geneformer ${s.model_version}` : `${s.encoding} encoding (Geneformer ${s.model_version} vocabulary)`;
  const lines = [
    `tokenized ${s.input} (${s.n_cells} cells x ${s.n_vars} genes) with ${how} -> ${output}`,
    `  genes: ${s.genes_matched} matched (${s.var_genes_matched} var genes, ${s.genes_from_symbols} via symbols), ${s.genes_unknown} unknown; IDs from ${s.gene_id_source}` +
      (s.summed_groups ? `; ${s.summed_groups} genes summed from ${s.columns_in_summed_groups} var genes` : ""),
    `  cells: ${s.cells_written} kept, ${s.cells_dropped_empty.length} dropped (no known expressed gene` +
      (s.cells_dropped_empty.length ? `: ${s.cells_dropped_empty.slice(0, 5).join(", ")}${s.cells_dropped_empty.length > 5 ? ", ..." : ""}` : "") +
      ")" +
      (s.filter_pass_present ? `, ${s.cells_failing_filter_pass} failing filter_pass` : ""),
    `  n_counts: ${s.n_counts_source}`,
    s.encoding === "rank" || s.encoding === undefined
      ? `  length: min ${s.length_min}, median ${s.length_median}, max ${s.length_max}; ${s.cells_truncated} cells truncated; ${s.cells_with_exact_value_ties} with exact value ties`
      : `  genes per cell: min ${s.length_min}, median ${s.length_median}, max ${s.length_max} (all expressed vocabulary genes, no truncation)`,
  ];
  if (seconds !== undefined) lines.push(`  time: ${seconds.toFixed(2)} s (${Math.round(s.n_cells / Math.max(seconds, 1e-9))} cells/s)`);
  return lines.join("\n");
}

/** Options of {@link mediansToFile} (mirrors `cellfm medians`). */
export interface MediansRunOptions {
  inputs: string[];
  output: string;
  idColumn?: string;
  layer?: string;
  useRaw?: boolean;
  allowNonInteger?: boolean;
  chunkSize?: number;
  exactLimit?: number;
  force?: boolean;
  quiet?: boolean;
}

/**
 * Compute corpus nonzero medians of `inputs` and write them as a TSV (`ensembl_id\tnonzero_median`).
 * All inputs are opened (and checked) before any counting; nothing is written on error.
 */
export async function mediansToFile(o: MediansRunOptions): Promise<MediansResult> {
  return withOutputLocks(() => mediansToFileLocked(o));
}

async function mediansToFileLocked(o: MediansRunOptions): Promise<MediansResult> {
  assertWritable(o.output, o.force ?? false, { kind: "file", inputs: o.inputs.map((f) => ({ path: f, label: "--input" })), lock: "medians" });
  if (o.inputs.length === 0) throw new Error("give at least one --input");
  let total = 0;
  let cells = 0;
  for (const f of o.inputs) {
    if (fs.existsSync(f) && fs.statSync(f).isDirectory()) {
      const s = await openCounts(f, { allowNonInteger: o.allowNonInteger });
      let n = 0;
      for (const c of s.chunks(1 << 20)) n += c.data.length;
      total += n;
      cells += s.nCells;
      s.close();
    } else {
      const s = await openH5ad(f, { layer: o.layer, useRaw: o.useRaw, allowNonInteger: o.allowNonInteger });
      total += s.storedValues;
      cells += s.nCells;
      s.close();
    }
  }
  const bar = progressBar(cells, "medians", o.quiet ?? false);
  const opener = (f: string) => async () => openCounts(f, { layer: o.layer, useRaw: o.useRaw, allowNonInteger: o.allowNonInteger });
  try {
    const res = await computeNonzeroMedians(o.inputs.map(opener), total, {
      idColumn: o.idColumn,
      chunkSize: o.chunkSize,
      exactLimit: o.exactLimit,
      onProgress: (n) => bar.update(n),
    });
    bar.stop();
    writeFileAtomic(o.output, formatMediansTsv(res.medians));
    return res;
  } catch (e) {
    bar.stop();
    throw e;
  }
}
