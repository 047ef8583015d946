import type { CommandModule } from "yargs";

/** `cellfm train` — placeholder until the stage lands. */
export const trainCommand: CommandModule = {
  command: "train",
  describe: "(train: not implemented yet)",
  handler: () => {
    throw new Error("cellfm train is not implemented yet");
  },
};
