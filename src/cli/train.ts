/**
 * `cellfm train [--config configs/X.yaml] [--tokens DIR] [--output DIR] [--set key.path=value ...]
 * [--resume] [--force] [--backend ...] [--max-steps N] [--workers N] [--quiet]`: read the config
 * (default: the bundled configs/demo.yaml), apply the overrides, validate, call {@link train}, print
 * where the final checkpoint and the evaluation are.
 */
import * as os from "node:os";
import type { CommandModule } from "yargs";
import { BACKEND_CHOICES, type BackendChoice } from "../backend.js";
import { packagePath } from "../io.js";

interface TrainArgs {
  config: string;
  tokens?: string;
  output?: string;
  set?: string[];
  resume?: boolean;
  force?: boolean;
  backend?: string;
  "max-steps"?: number;
  workers?: number;
  quiet?: boolean;
}

/** `cellfm train`. */
export const trainCommand: CommandModule<object, TrainArgs> = {
  command: "train",
  describe: "Pretrain a BERT encoder on a tokenized dataset: masked-gene modelling (Geneformer/scGPT MLM) or count denoising (scPRINT), per training.objective",
  builder: (y) =>
    y
      .option("config", { alias: "c", type: "string", default: packagePath("configs", "demo.yaml"), defaultDescription: "the bundled configs/demo.yaml", describe: "training config YAML" })
      .option("tokens", { alias: "i", type: "string", describe: "tokenized dataset folder from cellfm tokenize (overrides data.tokens)" })
      .option("output", { alias: "o", type: "string", describe: "run folder: checkpoints, metrics, eval.json (overrides output.dir)" })
      .option("set", { type: "string", array: true, describe: "override a config key, validated like the file: --set training.max_steps=100 --set training.objective=denoise (repeatable)" })
      .option("resume", { type: "boolean", describe: "continue from the newest checkpoint in the output folder" })
      .option("force", { type: "boolean", describe: "start over: the previous run is replaced once the new one has a checkpoint (kept if it fails first); files cellfm did not write are never deleted" })
      .option("backend", { type: "string", choices: BACKEND_CHOICES as unknown as string[], describe: "override the config's backend" })
      .option("max-steps", { type: "number", describe: "override training.max_steps" })
      .option("workers", { alias: "threads", type: "number", describe: "override training.workers (data-parallel threads incl. the main one; wasm/cpu)" })
      .option("quiet", { type: "boolean", describe: "no progress bar or log lines" }) as never,
  handler: async (a) => {
    // the stage is loaded only when the command runs, so other commands start fast
    const { loadTrainConfigWith } = await import("../train/overrides.js");
    const { train } = await import("../train/loop.js");
    const config = loadTrainConfigWith(a.config, { tokens: a.tokens, output: a.output, set: a.set });
    const r = await train(config, {
      resume: a.resume,
      force: a.force,
      backend: a.backend as BackendChoice | undefined,
      maxSteps: a["max-steps"],
      workers: a.workers,
      quiet: a.quiet,
    });
    if (r.interrupted) {
      console.log(`interrupted at step ${r.step}/${r.totalSteps}; checkpoint: ${r.checkpoint}`);
      const again = [
        ...(a.config !== packagePath("configs", "demo.yaml") ? ["--config", a.config] : []),
        ...(a.tokens ? ["--tokens", a.tokens] : []),
        ...(a.output ? ["--output", a.output] : []),
        ...(a.set ?? []).flatMap((x) => ["--set", x]),
      ];
      console.log(`continue with: cellfm train ${[...again, "--resume"].join(" ")}`);
      // 128 + the signal's number, as a shell reports a job stopped by it (SIGINT 130, SIGTERM 143, SIGHUP 129)
      process.exitCode = 128 + (r.signal ? os.constants.signals[r.signal] : os.constants.signals.SIGINT);
      return;
    }
    const e = r.eval!;
    console.log(`trained ${r.step} steps on backend ${r.backend.name}`);
    console.log(
      `held-out ${e.objective} loss (${e.n_cells} cells, ${e.n_masked} scored positions): model ${e.model_loss.toFixed(4)} nats, ` +
        `${e.baseline_name} baseline ${e.baseline_loss.toFixed(4)} nats (${e.improvement >= 0 ? "model better by" : "model WORSE by"} ${Math.abs(e.improvement).toFixed(4)})`,
    );
    const h = e.held_out_genes;
    if (h?.model_loss !== undefined) {
      console.log(
        `held-out genes (${h.n_genes} genes never trained on; ${h.n_positions} positions in the held-out cells): model ${h.model_loss.toFixed(4)} nats, ` +
          `${h.baseline_name} baseline ${h.baseline_loss!.toFixed(4)} nats (${h.improvement! >= 0 ? "model better by" : "model WORSE by"} ${Math.abs(h.improvement!).toFixed(4)})`,
      );
    }
    console.log(`evaluation: ${r.outputDir}/eval.json`);
    console.log(`metrics: ${r.outputDir}/metrics.jsonl`);
    console.log(`final checkpoint: ${r.checkpoint}`);
  },
};
