import { describe, expect, it } from "vitest";
import { main } from "../src/cli.js";

describe("cli", () => {
  it("rejects an unknown command with a clear message", async () => {
    await expect(main(["no-such-command"])).rejects.toThrow(/Unknown argument|command/);
  });
});

describe("cellfm assess flags", () => {
  it("refuses --workers 0 before reading anything, naming the flag", async () => {
    await expect(
      main(["assess", "--input", "data/tiny.h5ad", "--output", "/tmp/cellfm-never-written", "--workers", "0", "--quiet"]),
    ).rejects.toThrow(/--workers must be an integer >= 1/);
  });
});

describe("usage errors", () => {
  it("name the nearest option or command in one line, not the whole help", async () => {
    await expect(main(["embed", "-c", "x", "-i", "y", "-o", "z", "--layr", "counts"])).rejects.toThrow(
      /^unknown option --layr \(did you mean --layer\?\); cellfm embed --help lists the options$/,
    );
    await expect(main(["tokenize", "-i", "x", "-o", "y", "--use-ra"])).rejects.toThrow(/did you mean --use-raw\?/);
    await expect(main(["embd"])).rejects.toThrow(/unknown command; did you mean embed\?/);
    await expect(main(["tokenize", "-o", "y"])).rejects.toThrow(/^Missing required argument: input; cellfm tokenize --help lists the options$/);
  });

  it("the old spellings keep working: --threads for --workers, --n-hvg for --n-top-genes, -k for --n-neighbors", async () => {
    await expect(main(["assess", "-i", "data/tiny.h5ad", "-o", "/tmp/cellfm-never-written", "--threads", "0", "-q"])).rejects.toThrow(/--workers must be an integer >= 1/);
    await expect(main(["assess", "-i", "data/tiny.h5ad", "-o", "/tmp/cellfm-never-written", "--n-hvg", "0", "-q"])).rejects.toThrow(/--n-top-genes must be a positive integer/);
    await expect(main(["assess", "-i", "data/tiny.h5ad", "-o", "/tmp/cellfm-never-written", "-k", "0", "-q"])).rejects.toThrow(/--n-neighbors must be a positive integer/);
  });
});

describe("train overrides", () => {
  it("--tokens, --output and --set go through the file's validation, naming the key", async () => {
    const { loadTrainConfigWith } = await import("../src/train/overrides.js");
    const c = loadTrainConfigWith("configs/demo-cell.yaml", { tokens: "my/tokens", output: "my/run", set: ["training.max_steps=12", "model.hidden_size=64", "training.objectives.bottleneck=0.5"] }, "/base");
    expect(c.data.tokens).toBe("/base/my/tokens");
    expect(c.output.dir).toBe("/base/my/run");
    expect(c.training.max_steps).toBe(12);
    expect(c.model.hidden_size).toBe(64);
    expect(c.training.objectives).toEqual({ mlm: 1, bottleneck: 0.5 });
    // a token objective given in two places that disagree is an error, not a silent choice
    expect(() => loadTrainConfigWith("configs/demo-cell.yaml", { set: ["training.objective=denoise"] })).toThrow(/training\.objective: denoise conflicts with training\.objectives, which names mlm/);
    expect(() => loadTrainConfigWith("configs/demo.yaml", { set: ["training.max_stepz=12"] })).toThrow(/configs\/demo\.yaml \+ --set training\.max_stepz=12: training\.max_stepz: unknown key/);
    expect(() => loadTrainConfigWith("configs/demo.yaml", { set: ["training.lr=fast"] })).toThrow(/training\.lr: .*"fast"/);
    expect(() => loadTrainConfigWith("configs/demo.yaml", { set: ["training.max_steps"] })).toThrow(/--set training\.max_steps: expected key\.path=value/);
    expect(() => loadTrainConfigWith("configs/demo.yaml", { set: ["training.lr.x=1"] })).toThrow(/training\.lr is 0\.001, not a mapping/);
  });
});

describe("assess --embeddings", () => {
  it("a wrong file is one line naming it and what was expected", async () => {
    const fs = await import("node:fs");
    const os = await import("node:os");
    const path = await import("node:path");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-emb-"));
    const junk = path.join(dir, "emb.arrow");
    fs.writeFileSync(junk, "not arrow at all\n");
    const base = ["assess", "-i", "data/tiny.h5ad", "-o", path.join(dir, "out"), "-q"];
    await expect(main([...base, "-e", junk])).rejects.toThrow(/emb\.arrow: neither a cellfm embeddings file \(Arrow IPC from cellfm embed\) nor an \.h5ad with obsm embeddings$/);
    await expect(main([...base, "-e", "data/tiny.h5ad"])).rejects.toThrow(/tiny\.h5ad is an \.h5ad: name the embeddings to score with --obsm/);
    await expect(main([...base, "-e", "data/tiny.h5ad", "--obsm", "X_scVI"])).rejects.toThrow(/tiny\.h5ad: no obsm\["X_scVI"\] \(--obsm\); obsm keys in the file: none/);
    expect(fs.existsSync(path.join(dir, "out"))).toBe(false);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
