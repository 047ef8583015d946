import { describe, expect, it } from "vitest";
import { main } from "../src/cli.js";

describe("cli", () => {
  it("rejects an unknown command with a clear message", async () => {
    await expect(main(["no-such-command"])).rejects.toThrow(/Unknown argument|command/);
  });
});
