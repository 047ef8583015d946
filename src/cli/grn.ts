/**
 * `cellfm grn`: cell-type-specific gene networks from a checkpoint's attention (scPRINT), scored
 * against a ground truth next to baselines. Parses and validates flags, then calls `runGrn`
 * (src/grn/run.ts).
 *
 * Examples
 *   cellfm grn --checkpoint runs/demo/model/final --input data/pbmc3k_seurat.h5ad --label cell_type \
 *     --cell-type "CD14+ Mono" --genes hvg:2000 --truth data/grn/trrust_v2_human.tsv --output grn/
 *   cellfm grn --checkpoint ckpt --input data.h5ad --cell-type all --heads select --truth data/grn/trrust_v2_human.tsv --output grn_all/
 *   cellfm grn --input data.h5ad --cell-type B --truth data/grn/trrust_v2_human.tsv --output coexpr/   # baselines only
 */
import type { Argv, CommandModule } from "yargs";
import { LAYER_DESCRIBE, USE_RAW_DESCRIBE } from "./common.js";
import { BACKEND_CHOICES, type BackendChoice } from "../backend.js";

interface GrnArgs {
  checkpoint?: string;
  input: string;
  layer?: string;
  "use-raw"?: boolean;
  output: string;
  label: string;
  "cell-type": string[];
  "max-cells": number;
  "min-cells": number;
  genes: string;
  method: "qk" | "attention";
  heads: string;
  filter: string;
  "tf-only"?: boolean;
  truth?: string;
  untrained?: boolean;
  baselines: boolean;
  seed: number;
  "dense-max": number;
  "max-edges": number;
  "id-column"?: string;
  "binning-seed": number;
  workers?: number;
  backend: BackendChoice;
  "max-tokens": number;
  force?: boolean;
  quiet?: boolean;
}

/** `cellfm grn` command module. */
export const grnCommand: CommandModule<object, GrnArgs> = {
  command: "grn",
  describe: "Gene networks from attention (scPRINT), per cell type, scored by EPR and AUPRC against a ground truth next to random and co-expression baselines",
  builder: (y: Argv) =>
    y
      .option("checkpoint", { alias: "c", type: "string", describe: "checkpoint folder (omit for baselines only)" })
      .option("layer", { type: "string", describe: LAYER_DESCRIBE })
      .option("use-raw", { type: "boolean", describe: USE_RAW_DESCRIBE })
      .option("input", { alias: "i", type: "string", demandOption: true, describe: ".h5ad file or 10x folder of raw counts" })
      .option("output", { alias: "o", type: "string", demandOption: true, describe: "output folder (grn.json, scores.tsv, <cell type>/edges.tsv|.arrow, matrix.tsv)" })
      .option("label", { type: "string", default: "cell_type", describe: "obs column with cell types" })
      .option("cell-type", { type: "string", array: true, demandOption: true, describe: 'cell type(s) to build networks for (one network each; several: --cell-type B "CD14+ Mono"), or "all"' })
      .option("max-cells", { type: "number", default: 1000, describe: "at most this many cells per network (seeded choice)" })
      .option("min-cells", { type: "number", default: 20, describe: "a cell type needs at least this many cells" })
      .option("genes", { type: "string", default: "hvg:2000", describe: "gene list: hvg:N (Seurat HVGs of the type's cells), file:genes.txt (Ensembl IDs or symbols), expressed:F (expressed in >= a fraction F of the cells)" })
      .option("method", { choices: ["qk", "attention"] as const, default: "qk" as const, describe: "qk: softmax of mean Q and K per gene (scPRINT default, scales); attention: mean of the per-cell attention matrices" })
      .option("heads", { type: "string", default: "mean", describe: "head aggregation: mean, max, select (non-negative fit to --truth on half the edges, scored on the other half), or layer:head,... (0-based)" })
      .option("filter", { type: "string", default: "none", describe: "none, thresh (entries below 1/n_genes dropped), top-k:K (K largest per row)" })
      .option("tf-only", { type: "boolean", describe: "keep only rows of regulators named in --truth" })
      .option("truth", { type: "string", describe: "ground-truth TSV of regulator -> target edges, e.g. data/grn/trrust_v2_human.tsv" })
      .option("untrained", { type: "boolean", describe: "also score the same architecture with untrained weights (the checkpoint's training seed)" })
      .option("baselines", { type: "boolean", default: true, describe: "score random and co-expression (|Spearman|) networks on the same cells and genes (--no-baselines to skip)" })
      .option("seed", { type: "number", default: 0, describe: "seed of the cell choice, the random baseline and the head-selection split" })
      .option("dense-max", { type: "number", default: 500, describe: "also write the dense matrix for gene lists of at most this many genes" })
      .option("max-edges", { type: "number", default: 100000, describe: "edges written to edges.tsv/.arrow: the largest this many (0 = all nonzero entries)" })
      .option("id-column", { type: "string", describe: "var column with gene IDs" })
      .option("binning-seed", { type: "number", default: 0, describe: "binned checkpoints: the seed the training data was binned with (cellfm tokenize --seed)" })
      .option("workers", { alias: "threads", type: "number", describe: "threads for extraction, each with its own model copy (default: every core for large runs, else 1)" })
      .option("backend", { choices: BACKEND_CHOICES, default: "auto" as BackendChoice, describe: "TensorFlow.js backend" })
      .option("max-tokens", { type: "number", default: 8192, describe: "padded tokens per forward pass (memory bound; does not change the result)" })
      .option("force", { type: "boolean", describe: "replace an existing output folder" })
      .option("quiet", { alias: "q", type: "boolean", describe: "no progress output" })
      .check((a) => {
        if (!Number.isInteger(a["max-edges"]) || a["max-edges"] < 0) throw new Error(`--max-edges must be an integer >= 0 (got ${a["max-edges"]})`);
        for (const key of ["max-cells", "min-cells", "dense-max", "max-tokens"] as const) {
          if (!Number.isInteger(a[key]) || a[key] < 1) throw new Error(`--${key} must be a positive integer (got ${a[key]})`);
        }
        if (!Number.isInteger(a.seed)) throw new Error(`--seed must be an integer (got ${a.seed})`);
        if (!Number.isInteger(a["binning-seed"])) throw new Error(`--binning-seed must be an integer (got ${a["binning-seed"]})`);
        return true;
      }) as unknown as Argv<GrnArgs>,
  handler: async (a) => {
    const { runGrn } = await import("../grn/run.js"); // loaded only when the command runs
    const types = a["cell-type"].map((t) => t.trim()).filter((t) => t !== "");
    const s = await runGrn({
      checkpoint: a.checkpoint,
      input: a.input,
      layer: a.layer,
      useRaw: a["use-raw"],
      output: a.output,
      label: a.label,
      cellTypes: types.length === 1 && types[0] === "all" ? "all" : types,
      maxCells: a["max-cells"],
      minCells: a["min-cells"],
      genes: a.genes,
      method: a.method,
      heads: a.heads,
      filter: a.filter,
      tfOnly: a["tf-only"],
      truth: a.truth,
      untrained: a.untrained,
      baselines: a.baselines,
      seed: a.seed,
      denseMax: a["dense-max"],
      maxEdges: a["max-edges"],
      idColumn: a["id-column"],
      binningSeed: a["binning-seed"],
      workers: a.workers,
      backend: a.backend,
      maxTokensPerBatch: a["max-tokens"],
      force: a.force,
      quiet: a.quiet,
    });
    if (!a.quiet) console.log(`${s.networks.length} network(s) in ${s.seconds.toFixed(1)} s -> ${a.output} (scores in ${a.output}/scores.tsv)`);
  },
};
