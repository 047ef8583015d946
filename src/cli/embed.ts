/** `cellfm embed`: parse and validate arguments, call the embedding stage (`src/embed/run.ts`). */
import type { Argv, CommandModule } from "yargs";
import { LAYER_DESCRIBE, USE_RAW_DESCRIBE } from "./common.js";
import { BACKEND_CHOICES, type BackendChoice } from "../backend.js";
import { checkThreadCount } from "../threads.js";
import { parseShard } from "../shard.js";

interface EmbedArgs {
  checkpoint: string;
  input: string;
  output: string;
  "hidden-layer"?: number;
  layer?: string;
  "use-raw"?: boolean;
  pool?: "mean" | "max" | "cls";
  h5ad?: string;
  "obsm-key": string;
  backend: BackendChoice;
  "max-tokens": number;
  "id-column"?: string;
  workers: number;
  shard?: string;
  force?: boolean;
  quiet?: boolean;
}

/** `cellfm embed` — cell embeddings from a checkpoint (Geneformer's default: mean of layer −1). */
export const embedCommand: CommandModule<object, EmbedArgs> = {
  command: "embed",
  describe: "Embed cells with a trained checkpoint: tokenized folder or .h5ad in, Arrow (and optionally .h5ad) out",
  builder: (y: Argv) =>
    y
      .option("checkpoint", { alias: "c", type: "string", demandOption: true, describe: "checkpoint folder (config.json + model.safetensors)" })
      .option("input", { alias: "i", type: "string", demandOption: true, describe: "tokenized dataset folder, or .h5ad / 10x folder of raw counts (tokenized with the checkpoint's dictionary)" })
      .option("output", { alias: "o", type: "string", demandOption: true, describe: "output Arrow IPC file (cell_id, carried obs, embedding)" })
      .option("hidden-layer", { type: "number", describe: "transformer layer of the embedding (Geneformer's emb_layer): -1 = second-to-last, 0 = last (default: 0 for a model trained with cell-level objectives, else -1)" })
      .option("layer", { type: "string", describe: `${LAYER_DESCRIBE} (an integer here is the old spelling of --hidden-layer)` })
      .option("use-raw", { type: "boolean", describe: USE_RAW_DESCRIBE })
      .option("pool", { choices: ["mean", "max", "cls"] as const, describe: "mean or max over the cell's gene tokens, or the <cls> state (default: the checkpoint's model.pooling, else mean)" })
      .option("h5ad", { type: "string", describe: "also write a copy of the input AnnData (of a tokenized folder: of the .h5ad it came from) with the embedding in obsm[--obsm-key]" })
      .option("obsm-key", { type: "string", default: "X_cellfm", describe: "obsm key of the embedding in the --h5ad copy" })
      .option("backend", { choices: BACKEND_CHOICES, default: "auto" as BackendChoice, describe: "TensorFlow.js backend" })
      .option("max-tokens", { type: "number", default: 16384, describe: "padded tokens per forward pass (memory bound; does not change the result)" })
      .option("id-column", { type: "string", describe: "raw-count input: var column with gene IDs" })
      .option("workers", { alias: "threads", type: "number", default: 0, describe: "worker threads (0 = auto: one per core on wasm/cpu for inputs of >= 262,144 tokens, 1 on tfjs-node); does not change the result" })
      .option("shard", { type: "string", describe: "k/N: embed only slice k (0-based) of N of the input's cells; `cellfm merge` joins the N files" })
      .option("force", { type: "boolean", describe: "replace existing outputs" })
      .option("quiet", { alias: "q", type: "boolean", describe: "no progress bar or messages" })
      .check((a) => {
        if (a["hidden-layer"] !== undefined && !Number.isInteger(a["hidden-layer"])) throw new Error(`--hidden-layer must be an integer (got ${a["hidden-layer"]})`);
        checkThreadCount(a.workers, "--workers", 0);
        if (!(a["max-tokens"] >= 1)) throw new Error(`--max-tokens must be >= 1 (got ${a["max-tokens"]})`);
        if (a.shard !== undefined) parseShard(String(a.shard));
        return true;
      }) as unknown as Argv<EmbedArgs>,
  handler: async (a) => {
    const { embedToFile } = await import("../embed/run.js"); // loaded only when the command runs
    let hiddenLayer = a["hidden-layer"];
    let countsLayer = a.layer;
    if (countsLayer !== undefined && /^-?\d+$/.test(countsLayer.trim())) {
      // the old spelling: `--layer -1` was the transformer layer before --layer named an AnnData layer
      process.stderr.write(`cellfm embed: warning: --layer ${countsLayer} as a transformer layer is deprecated; use --hidden-layer ${countsLayer} (--layer now names the AnnData layer with the counts)\n`);
      hiddenLayer = Number(countsLayer);
      countsLayer = undefined;
    }
    const s = await embedToFile({
      checkpoint: a.checkpoint,
      input: a.input,
      output: a.output,
      layer: hiddenLayer,
      countsLayer,
      useRaw: a["use-raw"],
      pool: a.pool,
      h5ad: a.h5ad,
      obsmKey: a["obsm-key"],
      backend: a.backend,
      maxTokensPerBatch: a["max-tokens"],
      idColumn: a["id-column"],
      workers: a.workers,
      shard: a.shard === undefined ? undefined : parseShard(String(a.shard)),
      force: a.force,
      quiet: a.quiet,
    });
    if (!a.quiet) {
      console.log(
        `embedded ${s.nCells} cells (hidden size ${s.dim}, hidden layer ${s.layer}, ${s.pool} pooling) on ${s.backend} in ${s.seconds.toFixed(1)} s ` +
          `(${s.cellsPerSecond.toFixed(1)} cells/s${s.workers > 1 ? `, ${s.workers} workers` : ""}) -> ${a.output}` + (a.h5ad ? ` and ${a.h5ad}` : ""),
      );
    }
  },
};
