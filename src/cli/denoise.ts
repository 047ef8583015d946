/** `cellfm denoise`: parse and validate arguments, call the denoising stage (`src/denoise/run.ts`). */
import type { Argv, CommandModule } from "yargs";
import { LAYER_DESCRIBE, USE_RAW_DESCRIBE } from "./common.js";
import { BACKEND_CHOICES, type BackendChoice } from "../backend.js";

interface DenoiseArgs {
  checkpoint: string;
  input: string;
  layer?: string;
  "use-raw"?: boolean;
  output: string;
  backend: BackendChoice;
  "max-tokens": number;
  "id-column"?: string;
  force?: boolean;
  quiet?: boolean;
}

/** `cellfm denoise` — the predicted mean expression of a denoise-trained model as layers["denoised"]. */
export const denoiseCommand: CommandModule<object, DenoiseArgs> = {
  command: "denoise",
  describe: "Denoise raw counts with a denoise-trained checkpoint: .h5ad in, a copy with layers['denoised'] (predicted mean counts) out",
  builder: (y: Argv) =>
    y
      .option("checkpoint", { alias: "c", type: "string", demandOption: true, describe: "checkpoint folder of a model trained with training.objective: denoise" })
      .option("layer", { type: "string", describe: LAYER_DESCRIBE })
      .option("use-raw", { type: "boolean", describe: USE_RAW_DESCRIBE })
      .option("input", { alias: "i", type: "string", demandOption: true, describe: ".h5ad file with raw counts in X" })
      .option("output", { alias: "o", type: "string", demandOption: true, describe: "output .h5ad: the input with layers['denoised'] and var['denoised_in_context'] added" })
      .option("backend", { choices: BACKEND_CHOICES, default: "auto" as BackendChoice, describe: "TensorFlow.js backend" })
      .option("max-tokens", { type: "number", default: 16384, describe: "padded tokens per forward pass (memory bound; does not change the result)" })
      .option("id-column", { type: "string", describe: "var column with gene IDs (default: ensembl_id, else the var index)" })
      .option("force", { type: "boolean", describe: "replace an existing output" })
      .option("quiet", { alias: "q", type: "boolean", describe: "no progress bar or messages" })
      .check((a) => {
        if (!(a["max-tokens"] >= 1)) throw new Error(`--max-tokens must be >= 1 (got ${a["max-tokens"]})`);
        return true;
      }) as unknown as Argv<DenoiseArgs>,
  handler: async (a) => {
    const { denoiseToFile } = await import("../denoise/run.js"); // loaded only when the command runs
    const s = await denoiseToFile({
      checkpoint: a.checkpoint,
      input: a.input,
      layer: a.layer,
      useRaw: a["use-raw"],
      output: a.output,
      backend: a.backend,
      maxTokensPerBatch: a["max-tokens"],
      idColumn: a["id-column"],
      force: a.force,
      quiet: a.quiet,
    });
    if (!a.quiet) {
      console.log(
        `denoised ${s.cellsDenoised} of ${s.nCells} cells (${s.encoding} + ${s.likelihood}; ${s.genesInContext} of ${s.nGenes} genes in the vocabulary; ` +
          `${s.entriesDenoised} nonzero entries predicted, ${s.entriesKept} kept as observed) on ${s.backend} in ${s.seconds.toFixed(1)} s -> ${a.output}`,
      );
    }
  },
};
