/**
 * `cellfm compare --config configs/compare.yaml --output runs/compare [--arms a,b] [--batch col] [--input x.h5ad]
 * [--force] [--workers N] [--backend ...] [--quiet]`: validate the whole comparison, then call
 * {@link runCompare}; re-running the same command skips finished arms and resumes an interrupted one.
 */
import type { CommandModule } from "yargs";
import { BACKEND_CHOICES, type BackendChoice } from "../backend.js";

interface CompareArgs {
  config: string;
  output: string;
  arms?: string;
  batch?: string;
  input?: string;
  force?: boolean;
  workers?: number;
  backend?: string;
  quiet?: boolean;
}

/** `cellfm compare`. */
export const compareCommand: CommandModule<object, CompareArgs> = {
  command: "compare",
  describe: "Train one model per arm (encoding × objective) on the same cells and token budget, assess them side by side with HVG + PCA",
  builder: (y) =>
    y
      .option("config", { alias: "c", type: "string", demandOption: true, describe: "comparison config YAML (e.g. configs/compare-demo.yaml)" })
      .option("output", { alias: "o", type: "string", demandOption: true, describe: "output folder (one subfolder per arm); re-run to continue" })
      .option("arms", { type: "string", describe: "run only these arms (comma-separated names)" })
      .option("batch", { type: "string", describe: "obs column with batches (overrides data.batch): batch ASW, graph connectivity" })
      .option("input", { alias: "i", type: "string", describe: "data file (overrides data.input): .h5ad or 10x folder of raw counts" })
      .option("force", { type: "boolean", describe: "start over: the previous comparison is replaced once the new one has a result (kept if it fails first); files cellfm did not write are never deleted" })
      .option("workers", { alias: "threads", type: "number", describe: "override training.workers of every arm" })
      .option("backend", { type: "string", choices: BACKEND_CHOICES as unknown as string[], describe: "override the config's backend" })
      .option("quiet", { type: "boolean", describe: "no progress lines" }) as never,
  handler: async (a) => {
    const { loadCompareConfig } = await import("../compare/config.js");
    const { runCompare } = await import("../compare/run.js");
    const arms = a.arms ? a.arms.split(",").map((s) => s.trim()).filter(Boolean) : undefined;
    const config = loadCompareConfig(a.config, { arms, batch: a.batch, input: a.input });
    const r = await runCompare({ config, output: a.output, force: a.force, workers: a.workers, backend: a.backend as BackendChoice | undefined, quiet: a.quiet });
    if (r.interrupted) {
      console.log(`interrupted; continue with the same command: cellfm compare --config ${a.config} --output ${a.output}${a.arms ? ` --arms ${a.arms}` : ""}`);
      process.exitCode = 130;
      return;
    }
    for (const line of r.reading) console.log(`- ${line}`);
    console.log(`\nreport: ${r.output}/report.md (report.html, compare.json)`);
  },
};
