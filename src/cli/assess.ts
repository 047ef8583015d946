import type { CommandModule } from "yargs";

/** `cellfm assess` — placeholder until the stage lands. */
export const assessCommand: CommandModule = {
  command: "assess",
  describe: "(assess: not implemented yet)",
  handler: () => {
    throw new Error("cellfm assess is not implemented yet");
  },
};
