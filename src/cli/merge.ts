/**
 * `cellfm merge`: join the outputs of `cellfm tokenize --shard k/N` (folders) or `cellfm embed --shard k/N`
 * (Arrow files) into one, in shard order (`src/data/merge.ts`).
 *
 * Example
 *   cellfm merge -i tokens_0 tokens_1 tokens_2 tokens_3 -o tokens/
 *   cellfm merge -i emb_*.arrow -o embeddings.arrow
 */
import type { Argv, CommandModule } from "yargs";

interface MergeArgs {
  input: string[];
  output: string;
  force?: boolean;
  quiet?: boolean;
}

/** `cellfm merge` command module. */
export const mergeCommand: CommandModule<object, MergeArgs> = {
  command: "merge",
  describe: "Join the outputs of --shard k/N runs (tokenized folders or embedding files) into one, in shard order",
  builder: (y: Argv) =>
    y
      .option("input", { alias: "i", type: "string", array: true, demandOption: true, describe: "the N shard outputs (any order), or datasets to concatenate in the given order" })
      .option("output", { alias: "o", type: "string", demandOption: true, describe: "merged tokenized folder or embedding file" })
      .option("force", { type: "boolean", describe: "replace an existing output" })
      .option("quiet", { alias: "q", type: "boolean", describe: "no summary line" }) as unknown as Argv<MergeArgs>,
  handler: async (a) => {
    const { mergeOutputs } = await import("../data/merge.js"); // loaded only when the command runs
    const s = mergeOutputs(a.input, a.output, { force: a.force });
    if (!a.quiet) console.log(`merged ${s.parts} ${s.kind === "tokenized" ? "tokenized datasets" : "embedding files"} (${s.nCells} cells) -> ${a.output}`);
  },
};
