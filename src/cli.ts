/**
 * The `cellfm` command line: thin wrappers that parse arguments, validate them and call one stage.
 * Each subcommand lives in `src/cli/<name>.ts`; the stages themselves never import the CLI.
 *
 * Start-up stays fast (`cellfm --help` and every command under 0.25 s before its work starts) only if
 * a command module imports nothing heavy at the top: yargs types, `../backend.js` (which loads
 * TensorFlow.js lazily) and small helpers such as `../shard.js`. The stage is imported inside the
 * handler: `const { runX } = await import("../x/run.js");`.
 */
import yargs from "yargs";
import { tokenizeCommand, mediansCommand } from "./cli/tokenize.js";
import { trainCommand } from "./cli/train.js";
import { embedCommand } from "./cli/embed.js";
import { assessCommand } from "./cli/assess.js";
import { mergeCommand } from "./cli/merge.js";
import { grnCommand } from "./cli/grn.js";
import { compareCommand } from "./cli/compare.js";

/** Run the CLI on `argv` (without `node` and the script path). Rejects on a usage or run error. */
export async function main(argv: string[]): Promise<void> {
  await yargs(argv)
    .scriptName("cellfm")
    .usage("$0 <command> [options]\n\nTrain and run single-cell transformer foundation models.")
    .command(tokenizeCommand)
    .command(mediansCommand)
    .command(trainCommand)
    .command(embedCommand)
    .command(assessCommand)
    .command(mergeCommand)
    .command(grnCommand)
    .command(compareCommand)
    .demandCommand(1, "name a command: tokenize, medians, train, embed, assess, merge, grn or compare")
    .strict()
    .help()
    .fail((msg, err, y) => {
      if (err) throw err;
      y.showHelp();
      throw new Error(msg);
    })
    .parseAsync();
}
