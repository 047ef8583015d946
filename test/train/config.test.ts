import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { main } from "../../src/cli.js";
import { loadTrainConfig, parseTrainConfig, resolveModelSection } from "../../src/train/config.js";

const base = () => ({
  model: { preset: "geneformer-v1-6l" },
  data: { tokens: "runs/demo/tokens" },
  training: { max_steps: 10 },
  output: { dir: "runs/demo/model" },
});

function err(obj: unknown): string {
  try {
    parseTrainConfig(obj, "configs/x.yaml");
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error("expected the config to be rejected");
}

describe("training config", () => {
  it("accepts a minimal config, fills defaults and resolves paths against the cwd", () => {
    const c = parseTrainConfig(base(), "x.yaml", "/some/where");
    expect(c.training.mask_probability).toBe(0.15);
    expect(c.training.lr).toBe(1e-3);
    expect(c.data.tokens).toBe("/some/where/runs/demo/tokens");
    expect(c.output.dir).toBe("/some/where/runs/demo/model");
    expect(resolveModelSection(c.model)).toMatchObject({ hidden_size: 256, num_hidden_layers: 6, hidden_act: "relu" });
  });

  it("names the key and the bad value for a wrong type", () => {
    const o = base();
    (o.training as Record<string, unknown>).lr = "abc";
    expect(err(o)).toBe('configs/x.yaml: training.lr: expected a positive number, got "abc"');
  });

  it("rejects unknown keys by name, at any depth", () => {
    const o = { ...base(), trainig: {} } as Record<string, unknown>;
    (o.model as Record<string, unknown>).hiden_size = 128;
    const m = err(o);
    expect(m).toContain("configs/x.yaml: trainig: unknown key");
    expect(m).toContain("model.hiden_size: unknown key");
  });

  it("names enum, range and missing-key problems", () => {
    const o = base() as Record<string, any>;
    o.training.schedule = "exponential";
    o.training.mask_probability = 1.5;
    o.training.batch_size = 2.5;
    delete o.data.tokens;
    const m = err(o);
    expect(m).toContain('training.schedule: expected one of linear | cosine, got "exponential"');
    expect(m).toContain("training.mask_probability: expected a number in (0, 1), got 1.5");
    expect(m).toContain("training.batch_size: expected a positive integer, got 2.5");
    expect(m).toContain("data.tokens: required key is missing");
  });

  it("training.workers: an integer >= 1, absent by default (= every core, loop.ts), errors name the key", () => {
    expect(parseTrainConfig(base(), "x.yaml").training.workers).toBeUndefined();
    const ok = base() as Record<string, any>;
    ok.training.workers = 2;
    expect(parseTrainConfig(ok, "x.yaml").training.workers).toBe(2);
    for (const [bad, shown] of [[0, "0"], [1.5, "1.5"], ["2", '"2"'], [-1, "-1"]] as const) {
      const o = base() as Record<string, any>;
      o.training.workers = bad;
      expect(err(o)).toBe(`configs/x.yaml: training.workers: expected an integer >= 1, got ${shown}`);
    }
  });

  it("checks cross-field rules (heads divide hidden, steps or epochs, max_length vs positions)", () => {
    const o = base() as Record<string, any>;
    o.model = { hidden_size: 130, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 64, max_position_embeddings: 256 };
    o.data.max_length = 512;
    delete o.training.max_steps;
    const m = err(o);
    expect(m).toContain("model.hidden_size: 130 is not divisible by model.num_attention_heads 4");
    expect(m).toContain("training.max_steps: give training.max_steps, training.epochs or training.max_tokens");
    expect(m).toContain("data.max_length: 512 exceeds model.max_position_embeddings 256");
    const o2 = base() as Record<string, any>;
    o2.model = { num_hidden_layers: 2 };
    expect(err(o2)).toContain("model.hidden_size: required key is missing");
  });

  it("reports YAML syntax errors and a missing file with the file name", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-cfg-"));
    const f = path.join(dir, "bad.yaml");
    fs.writeFileSync(f, "model: [unclosed\n");
    expect(() => loadTrainConfig(f)).toThrow(new RegExp(`${f}: not valid YAML`));
    expect(() => loadTrainConfig(path.join(dir, "nope.yaml"))).toThrow(/not found/);
    fs.rmSync(dir, { recursive: true });
  });

  it("parses the bundled configs", () => {
    for (const f of ["configs/demo.yaml", "configs/geneformer-v1-6L.yaml"]) {
      const c = loadTrainConfig(f);
      expect(c.training.objective).toBe("mlm");
    }
    expect(loadTrainConfig("configs/demo.yaml").training.workers).toBe(2); // the demo runs on 2 cores
    const g = loadTrainConfig("configs/geneformer-v1-6L.yaml");
    expect(resolveModelSection(g.model)).toMatchObject({ hidden_size: 256, num_hidden_layers: 6, num_attention_heads: 4, intermediate_size: 512, hidden_act: "relu", max_position_embeddings: 2048 });
    expect(g.training).toMatchObject({ lr: 1e-3, warmup_steps: 10000, schedule: "linear", weight_decay: 0.001, batch_size: 12 });
  });

  it("cellfm train --config reports a bad key before doing anything", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cellfm-cfg-"));
    const f = path.join(dir, "x.yaml");
    fs.writeFileSync(f, "model: {preset: geneformer-v1-6l}\ndata: {tokens: t}\ntraining: {max_steps: 5, lr: abc}\noutput: {dir: o}\n");
    await expect(main(["train", "--config", f])).rejects.toThrow(`${f}: training.lr: expected a positive number, got "abc"`);
    // --workers is checked before any data is read
    fs.writeFileSync(f, "model: {preset: geneformer-v1-6l}\ndata: {tokens: t}\ntraining: {max_steps: 5}\noutput: {dir: o}\n");
    await expect(main(["train", "--config", f, "--workers", "0"])).rejects.toThrow("--workers must be an integer >= 1, got 0");
    expect(fs.existsSync(path.join(dir, "o"))).toBe(false);
    fs.rmSync(dir, { recursive: true });
  });
});
