import type { CommandModule } from "yargs";

/** `cellfm tokenize` — placeholder until the stage lands. */
export const tokenizeCommand: CommandModule = {
  command: "tokenize",
  describe: "(tokenize: not implemented yet)",
  handler: () => {
    throw new Error("cellfm tokenize is not implemented yet");
  },
};

/** `cellfm medians` — placeholder until the stage lands. */
export const mediansCommand: CommandModule = {
  command: "medians",
  describe: "(medians: not implemented yet)",
  handler: () => {
    throw new Error("cellfm medians is not implemented yet");
  },
};
