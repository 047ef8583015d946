/**
 * `cellfm assess`: the 2023 study "Examining assumptions in scRNA-seq foundation model pre-training" (MIT 6.S898; method in docs/assess.md) (within/between cell-type distances for UMAP of HVG
 * expression, Spearman rank correlation and UMAP of each embedding) plus standard embedding metrics,
 * figures and a report. Parses and validates flags, then calls `runAssessment` (src/assess/run.ts).
 *
 * Examples
 *   # bundled tiny data (6 types × 50 cells)
 *   cellfm assess --input data/tiny.h5ad --label cell_type --min-cells 50 --output report/
 *   # three PBMC studies, batch effects (users have their own copy of the file)
 *   cellfm assess --input pbmc_three_studies.h5ad --label cell_type --batch batch \
 *     --min-cells 200 --output report_pbmc3/
 *   # with embeddings from `cellfm embed`
 *   cellfm assess --input data.h5ad --embeddings gf.arrow scprint.arrow --embedding-names geneformer scprint \
 *     --label cell_type --output report/
 */
import type { Argv, CommandModule } from "yargs";
import { LAYER_DESCRIBE, USE_RAW_DESCRIBE } from "./common.js";
import { BACKEND_CHOICES, type BackendChoice } from "../backend.js";
import { checkThreadCount } from "../threads.js";

interface AssessArgs {
  input: string;
  embeddings?: string[];
  "embedding-names"?: string[];
  label: string;
  batch?: string;
  output: string;
  "min-cells": number;
  "per-type"?: number;
  "n-top-genes": number;
  obsm?: string[];
  pca: boolean;
  seed: number;
  layer?: string;
  "use-raw"?: boolean;
  "n-neighbors": number;
  backend: BackendChoice;
  workers?: number;
  "allow-input-mismatch"?: boolean;
  "held-out-cells"?: string;
  force?: boolean;
  quiet?: boolean;
}

/** `cellfm assess` command module. */
export const assessCommand: CommandModule<object, AssessArgs> = {
  command: "assess",
  describe: "Assess how well expression, rank correlation and embeddings separate cell types (within/between distances, kNN/ASW/NMI/ARI, batch metrics); writes a report",
  builder: (y: Argv) =>
    y
      .option("input", { alias: "i", type: "string", demandOption: true, describe: ".h5ad file or 10x folder of raw counts" })
      .option("embeddings", { alias: "e", type: "string", array: true, describe: "embeddings to score next to HVG + PCA: Arrow files from `cellfm embed`, or .h5ad files with --obsm (cell ids must cover the selected cells)" })
      .option("obsm", { type: "string", array: true, describe: "obsm keys to score of each .h5ad in --embeddings, comma-separated (e.g. X_cellfm,X_scVI,X_pca): one report row each" })
      .option("embedding-names", { type: "string", array: true, describe: "display names for the embeddings, one per row (default: file names; obsm keys)" })
      .option("label", { alias: "label-key", type: "string", default: "cell_type", describe: "obs column with cell types (scIB: label_key)" })
      .option("batch", { alias: "batch-key", type: "string", describe: "obs column with batches (scIB: batch_key; adds batch ASW, graph connectivity and cross-batch distances)" })
      .option("output", { alias: "o", type: "string", demandOption: true, describe: "output folder (report.md, report.html, metrics.json, figures/)" })
      .option("min-cells", { type: "number", default: 100, describe: "keep cell types with at least this many cells" })
      .option("per-type", { type: "number", describe: "cells sampled per kept type (default: --min-cells)" })
      .option("n-top-genes", { alias: "n-hvg", type: "number", default: 2000, describe: "number of highly variable genes (Seurat flavour; scanpy: n_top_genes)" })
      .option("pca", { type: "boolean", default: true, describe: "PCA to 50 dimensions before the HVG UMAP (--no-pca: the study's exact setting)" })
      .option("seed", { type: "number", default: 0, describe: "seed for sampling, UMAP and k-means" })
      .option("layer", { type: "string", describe: LAYER_DESCRIBE })
      .option("use-raw", { type: "boolean", describe: USE_RAW_DESCRIBE })
      .option("n-neighbors", { alias: "k", type: "number", default: 15, describe: "neighbours for kNN accuracy, UMAP and graph connectivity" })
      .option("backend", { choices: BACKEND_CHOICES, default: "auto" as BackendChoice, describe: "TensorFlow.js backend for the matrix products" })
      .option("workers", { alias: "threads", type: "number", describe: "worker threads for the kNN graphs, UMAP layouts and all-pairs scan (default: the machine's cores, at most one per 2 GiB of RAM; results do not depend on it)" })
      .option("held-out-cells", { type: "string", describe: "text file of cell ids (one per line) held out from training: the linear probe is fitted on the other selected cells and scored on these (default: a seeded 80/20 split of the selected cells of each type)" })
      .option("force", { type: "boolean", describe: "replace an existing output folder" })
      .option("allow-input-mismatch", { type: "boolean", describe: "score embeddings that record another source file than --input (by default an error)" })
      .option("quiet", { alias: "q", type: "boolean", describe: "no progress output" })
      .check((a) => {
        for (const key of ["min-cells", "n-top-genes", "n-neighbors"] as const) {
          if (!Number.isInteger(a[key]) || a[key] < 1) throw new Error(`--${key} must be a positive integer (got ${a[key]})`);
        }
        if (a.workers !== undefined) checkThreadCount(a.workers, "--workers");
        if (a["per-type"] !== undefined && (!Number.isInteger(a["per-type"]) || a["per-type"] < 1)) {
          throw new Error(`--per-type must be a positive integer (got ${a["per-type"]})`);
        }
        return true;
      }),
  handler: async (a) => {
    const { runAssessment } = await import("../assess/run.js"); // loaded only when the command runs
    const { readCellIdList } = await import("../assess/probe.js");
    await runAssessment({
      input: a.input,
      embeddings: a.embeddings,
      embeddingNames: a["embedding-names"],
      label: a.label,
      batch: a.batch,
      output: a.output,
      minCells: a["min-cells"],
      perType: a["per-type"],
      nHvg: a["n-top-genes"],
      obsm: a.obsm?.flatMap((x) => x.split(",")).map((x) => x.trim()).filter((x) => x !== ""),
      pca: a.pca,
      seed: a.seed,
      layer: a.layer,
      useRaw: a["use-raw"],
      k: a["n-neighbors"],
      backend: a.backend,
      threads: a.workers,
      allowInputMismatch: a["allow-input-mismatch"],
      heldOutCells: a["held-out-cells"] !== undefined ? readCellIdList(a["held-out-cells"]) : undefined,
      force: a.force,
      quiet: a.quiet,
    });
  },
};
