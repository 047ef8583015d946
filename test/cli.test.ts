import { describe, expect, it } from "vitest";
import { main } from "../src/cli.js";

describe("cli", () => {
  it("rejects an unknown command with a clear message", async () => {
    await expect(main(["no-such-command"])).rejects.toThrow(/Unknown argument|command/);
  });
});

describe("cellfm assess flags", () => {
  it("refuses --threads 0 before reading anything, naming the flag", async () => {
    await expect(
      main(["assess", "--input", "data/tiny.h5ad", "--output", "/tmp/cellfm-never-written", "--threads", "0", "--quiet"]),
    ).rejects.toThrow(/--threads must be an integer >= 1/);
  });
});
