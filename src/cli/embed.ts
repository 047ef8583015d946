import type { CommandModule } from "yargs";

/** `cellfm embed` — placeholder until the stage lands. */
export const embedCommand: CommandModule = {
  command: "embed",
  describe: "(embed: not implemented yet)",
  handler: () => {
    throw new Error("cellfm embed is not implemented yet");
  },
};
