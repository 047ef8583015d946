/**
 * `cellfm tokenize` and `cellfm medians`: parse and validate arguments, call the stage
 * (`src/tokenize/run.ts`), print the summary.
 */
import type { Argv, CommandModule } from "yargs";
import { LAYER_DESCRIBE, USE_RAW_DESCRIBE } from "./common.js";
import { parseShard } from "../shard.js";
import { checkThreadCount } from "../threads.js";

// The stage is imported when the command runs, not when the CLI starts, so other commands do not pay
// for loading h5wasm and apache-arrow (and `cellfm tokenize` does not pay for the model stack).
const stage = () => import("../tokenize/run.js");

interface TokenizeArgs {
  input: string;
  output: string;
  "model-version": "V1" | "V2";
  carry?: string[];
  "id-column"?: string;
  layer?: string;
  "use-raw"?: boolean;
  medians?: string;
  obs?: string;
  "chunk-size": number;
  "allow-non-integer"?: boolean;
  shard?: string;
  workers?: number;
  force?: boolean;
  quiet?: boolean;
  encoding: "rank" | "binned" | "counts";
  "n-bins": number;
  seed: number;
  "top-genes"?: number;
}

function splitList(v: unknown): string[] | undefined {
  if (v === undefined) return undefined;
  const arr = Array.isArray(v) ? v : [v];
  return arr.flatMap((x) => String(x).split(",")).map((s) => s.trim()).filter((s) => s !== "");
}

/** `cellfm tokenize` — rank-value (Geneformer), binned (scGPT) or raw-count (scPRINT) encoding of an `.h5ad` file or 10x folder into a tokenized dataset. */
export const tokenizeCommand: CommandModule<object, TokenizeArgs> = {
  command: "tokenize",
  describe: "Tokenize raw counts (.h5ad or 10x folder) into a tokenized dataset (Arrow shards): Geneformer rank-value (default), scGPT bins or raw counts",
  builder: (y: Argv) =>
    y
      .option("input", { alias: "i", type: "string", demandOption: true, describe: ".h5ad file or 10x Matrix Market folder (raw counts, cells x genes)" })
      .option("output", { alias: "o", type: "string", demandOption: true, describe: "output folder (Arrow IPC shards + manifest.json + summary.json)" })
      .option("encoding", {
        choices: ["rank", "binned", "counts"] as const,
        default: "rank" as const,
        describe: "rank: Geneformer rank-value; binned: scGPT per-cell bins of log1p(count / n_counts x 1e4); counts: raw counts (scPRINT). binned/counts keep every expressed gene (or --top-genes)",
      })
      .option("n-bins", { type: "number", default: 51, describe: "binned: number of bins including bin 0 (scGPT: 51)" })
      .option("seed", { type: "number", default: 0, describe: "binned: seed of the per-cell tie spreading (combined with each cell id)" })
      .option("top-genes", {
        type: "number",
        describe: "binned/counts: keep each cell's K genes Geneformer ranks first (count / n_counts x 1e4 / nonzero median): the genes a rank model with max_length K reads",
      })
      .option("model-version", { choices: ["V1", "V2"] as const, default: "V1" as const, describe: "Geneformer dictionaries: V1 (gc30M, 2,048 tokens) or V2 (gc104M, <cls> + 4,094 + <eos>)" })
      .option("carry", { type: "string", array: true, describe: "obs columns to carry into the dataset (comma-separated or repeated)" })
      .option("id-column", { type: "string", describe: 'var column with gene IDs (default "ensembl_id", else the var index; "index" forces the index)' })
      .option("layer", { type: "string", describe: LAYER_DESCRIBE })
      .option("use-raw", { type: "boolean", describe: USE_RAW_DESCRIBE })
      .option("medians", { type: "string", describe: "nonzero-median TSV (from `cellfm medians`) replacing the dictionary's medians" })
      .option("obs", { type: "string", describe: "10x folders: per-cell annotations, CSV or TSV (quoted or not; pandas to_csv, R write.table), first column = barcode" })
      .option("chunk-size", { type: "number", default: 512, describe: "cells per block read (does not change the output)" })
      .option("allow-non-integer", { type: "boolean", describe: "accept non-integer counts" })
      .option("shard", { type: "string", describe: "k/N: tokenize only slice k (0-based) of N of the cells; `cellfm merge` joins the N outputs" })
      .option("workers", { alias: "threads", type: "number", describe: "worker threads (default: the machine's cores, at most 8; 1 for inputs under 20M stored values and 10x folders); does not change the output" })
      .option("force", { type: "boolean", describe: "replace an existing output folder" })
      .option("quiet", { alias: "q", type: "boolean", describe: "no progress bar or summary" })
      .check((a) => {
        if (a.workers !== undefined) checkThreadCount(a.workers, "--workers");
        if (a.shard !== undefined) parseShard(String(a.shard));
        return true;
      }) as unknown as Argv<TokenizeArgs>,
  handler: async (a) => {
    const { tokenizeToDataset, formatTokenizeSummary } = await stage();
    const { summary, seconds } = await tokenizeToDataset({
      input: a.input,
      output: a.output,
      modelVersion: a["model-version"],
      carry: splitList(a.carry),
      idColumn: a["id-column"],
      layer: a.layer,
      useRaw: a["use-raw"],
      medians: a.medians,
      obsTsv: a.obs,
      chunkSize: a["chunk-size"],
      allowNonInteger: a["allow-non-integer"],
      shard: a.shard === undefined ? undefined : parseShard(String(a.shard)),
      threads: a.workers,
      force: a.force,
      quiet: a.quiet,
      encoding: a.encoding,
      nBins: a["n-bins"],
      seed: a.seed,
      topGenes: a["top-genes"],
    });
    if (!a.quiet) console.log(formatTokenizeSummary(summary, a.output, seconds));
  },
};

interface MediansArgs {
  input: string[];
  output: string;
  "id-column"?: string;
  layer?: string;
  "use-raw"?: boolean;
  "allow-non-integer"?: boolean;
  "exact-limit"?: number;
  force?: boolean;
  quiet?: boolean;
}

/** `cellfm medians` — per-gene nonzero medians of counts / n_counts x 10,000 over a corpus. */
export const mediansCommand: CommandModule<object, MediansArgs> = {
  command: "medians",
  describe: "Compute per-gene nonzero medians (counts / n_counts x 10,000) over a corpus, for `tokenize --medians`",
  builder: (y: Argv) =>
    y
      .option("input", { alias: "i", type: "string", array: true, demandOption: true, describe: ".h5ad files or 10x folders" })
      .option("output", { alias: "o", type: "string", demandOption: true, describe: "output TSV (ensembl_id, nonzero_median)" })
      .option("id-column", { type: "string", describe: 'var column with gene IDs (default "ensembl_id", else the var index)' })
      .option("layer", { type: "string", describe: LAYER_DESCRIBE })
      .option("use-raw", { type: "boolean", describe: USE_RAW_DESCRIBE })
      .option("allow-non-integer", { type: "boolean", describe: "accept non-integer counts" })
      .option("exact-limit", { type: "number", describe: "exact medians up to this many nonzeros (default 20,000,000), t-digest above" })
      .option("force", { type: "boolean", describe: "replace an existing output file" })
      .option("quiet", { alias: "q", type: "boolean" }) as unknown as Argv<MediansArgs>,
  handler: async (a) => {
    const { mediansToFile } = await stage();
    const res = await mediansToFile({
      inputs: splitList(a.input) ?? [],
      output: a.output,
      idColumn: a["id-column"],
      layer: a.layer,
      useRaw: a["use-raw"],
      allowNonInteger: a["allow-non-integer"],
      exactLimit: a["exact-limit"],
      force: a.force,
      quiet: a.quiet,
    });
    if (!a.quiet) {
      console.log(`nonzero medians of ${res.nGenes} genes over ${res.nCells} cells (${res.nNonzeros} nonzeros, ${res.method}) -> ${a.output}`);
    }
  },
};
